//! `paddock gateway`: paddock's REST API (`paddock-gateway`) served from the Kubernetes backend
//! (`paddock-kube-backend`) — a drop-in for upstream's sandbox-router (Service
//! `sandbox-router-svc`, port 8080) that also serves paddock's own API. This crate is wiring:
//! flags, client, auth mode, server and graceful shutdown.
//!
//! - [`args`]: the flags and their validation.
//! - [`run`](mod@run): wiring and graceful shutdown; [`run()`] is the entry point.

pub mod args;
pub mod run;

pub use args::{GatewayArgs, GatewayError};
pub use run::run;
