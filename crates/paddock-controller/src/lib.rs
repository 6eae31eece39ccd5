//! `paddock controller`: the drop-in replacement for upstream's agent-sandbox controller. It
//! runs the control core of `paddock-control` with its ports on the Kubernetes API server —
//! the four kinds as objects, Sandboxes' children as Pods, Services, PVCs and NetworkPolicies
//! the kubelet and the cluster act on, Events through the Events API — under leader election,
//! with upstream's flags, metrics and probes, and the conversion webhook of `paddock-webhook`.
//! No reconcile logic lives here.
//!
//! # Layout
//! - [`args`]: the flags (upstream's names and defaults) and their start-up validation.
//! - [`run`](mod@run): wiring and graceful shutdown; [`run()`] is the entry point.
//! - [`objects`]: the `Objects` port (the four kinds through the API server).
//! - [`workloads`]: the `Workloads` port (Pods, Services, PVCs, NetworkPolicies).
//! - [`events`]: the `Events` port (upstream's recorders).
//! - [`writes`]: the API writes, with failures classified for the planners.
//! - [`leader`]: leader election on a Lease.
//! - [`probes`]: the metrics and probe servers.
//! - [`error`]: why the controller cannot start.

pub mod args;
pub mod egress;
pub mod error;
pub mod events;
pub mod leader;
pub mod objects;
pub mod probes;
pub mod run;
pub mod workloads;
pub mod writes;

pub use args::ControllerArgs;
pub use error::ControllerError;
pub use run::run;
