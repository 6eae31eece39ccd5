//! What every Kubernetes part of paddock shares: the client (a kubeconfig or the in-cluster
//! service account, with client-go's client-side rate limit), the `--kubeconfig` and logging
//! flags, shutdown on SIGTERM, and how API errors are classified.
//!
//! The parts themselves are crates of their own: `paddock-controller` (the control core on the
//! API server), `paddock-webhook` (conversion), `paddock-kube-backend` (the gateway's backend).
//!
//! # Layout
//! - [`client`]: connecting (`connect`) and the rate limit.
//! - [`logging`]: the logging flags.
//! - [`flags`]: Go-style durations.
//! - [`signals`]: shutdown on SIGTERM.
//! - [`error`]: why a command cannot start, and error classification.

pub mod client;
pub mod error;
pub mod flags;
pub mod logging;
pub mod otel;
pub mod signals;

pub use client::{ClusterArgs, connect};
pub use error::{KubeError, classify};
pub use logging::LogArgs;
