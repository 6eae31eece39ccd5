//! The port between the gateway and where sandboxes live: the [`Backend`] trait (objects of the
//! four kinds, watches, where a sandbox's agent answers, logs, image pulls), the [`ApiError`]
//! every layer answers with, [`TokenVerifier`] for bearer tokens checked elsewhere, and
//! paddock's own annotations.
//!
//! The gateway depends on this port; the backends (the embedded engine of `paddock serve`, the
//! Kubernetes backend of `paddock gateway`) implement it. Neither side depends on the other.
//!
//! # Layout
//! - [`backend`]: the trait and the types that cross it (typed objects in the storage version).
//! - [`error`]: [`ApiError`] and its stable [`Code`]s.
//! - [`auth`]: [`TokenVerifier`] and its [`Verdict`].
//! - [`annotations`]: annotations paddock itself defines.
//! - [`targets`]: the default sandbox port, and the pod IPs a proxy refuses (the SSRF guard).

pub mod annotations;
pub mod auth;
pub mod backend;
pub mod error;
pub mod targets;

pub use auth::{TokenVerifier, Verdict};
pub use backend::{
    Backend, BoxFuture, ByteStream, EgressFeed, EgressStream, Endpoint, EventStream, ObjectEvent,
    ObjectList, ObjectWatch, Part, Propagation, Target, Termination, WatchEventType,
};
pub use error::{ApiError, Code};
pub use paddock_wire::{EgressKind, EgressLog, EgressRecord};
