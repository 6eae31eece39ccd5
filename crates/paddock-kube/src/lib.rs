//! The Kubernetes driver: `paddock controller`, a drop-in replacement for upstream's
//! agent-sandbox controller. It reconciles the four kinds into Pods, headless Services, PVCs
//! and NetworkPolicies by running `paddock-plan`'s planners against reflector caches, serves
//! both API versions through a conversion webhook, and runs under leader election with
//! upstream's metrics, Events and flags. And `paddock gateway`: paddock's REST API and
//! upstream's sandbox-router contract backed by the Kubernetes API.
//!
//! # Layout
//! - [`args`]: the flags (upstream's names and defaults) and their start-up validation.
//! - [`run`](mod@run): wiring and graceful shutdown; [`run()`] is the entry point.
//! - [`client`]: in-cluster or kubeconfig client with client-side rate limiting.
//! - [`cache`]: reflectors (pods trimmed as upstream's), indexes, and the watch → work-queue
//!   fan-out.
//! - [`controllers`]: the Sandbox, SandboxTemplate, SandboxWarmPool and SandboxClaim drivers.
//! - [`driver`]: the API writes, with failures classified for the planners.
//! - [`webhook`]: ConversionReview handling and the webhook certificates.
//! - [`http`]: the webhook (HTTPS), metrics and probe servers.
//! - [`gateway`]: `paddock gateway` — the REST API's Kubernetes backend, TokenReview auth,
//!   flags and wiring.
//! - [`leader`]: leader election on a Lease.
//! - [`metrics`]: upstream's Prometheus metrics.
//! - [`error`]: error types.
//! - `fake` (feature `testing`): an in-memory API server for tests and benchmarks.

pub mod args;
pub mod cache;
pub mod client;
pub mod controllers;
pub mod driver;
pub mod error;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod gateway;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod webhook;

pub use args::ControllerArgs;
pub use error::ControllerError;
pub use gateway::GatewayArgs;
pub use run::run;
