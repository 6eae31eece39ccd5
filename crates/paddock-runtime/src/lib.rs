//! The local runtime: turns a Sandbox's pod template into an isolated workload on this host
//! (gVisor by default, bubblewrap as the fast tier). It never runs code unsandboxed.
//!
//! Layout:
//! - [`spec`] — [`WorkloadSpec`], what a sandbox is made of (pure data);
//! - [`podspec`] — pod template → `WorkloadSpec` plus the fields not honoured locally (pure);
//! - [`runtime`] — the [`Runtime`] trait, ids, states, errors;
//! - [`recording`] — a runtime that starts nothing and records calls, for tests without root;
//! - [`local`] — [`LocalRuntime`], the trait on this host: directories, images, backends;
//! - `isolation` — the backend trait; [`gvisor`] — OCI bundle and `runsc`; [`bwrap`] —
//!   bubblewrap argv, spawn and its pool: one implementation each;
//! - [`seccomp`], [`cgroup`], [`hostview`] — bwrap's filter, cgroup limits, the `host` image;
//! - [`image`] — registry client, image cache and safe unpacking, local OCI layouts;
//! - [`agent`] — the in-sandbox agent's argv, image-config resolution, readiness probe;
//! - [`doctor`] — which isolation this host offers, and the remedy for what it lacks.
pub mod agent;
pub mod bwrap;
pub mod cgroup;
pub mod doctor;
pub mod gvisor;
pub mod hostview;
pub mod image;
mod isolation;
pub mod local;
pub mod podspec;
pub mod recording;
pub mod runtime;
pub mod seccomp;
pub mod spec;
mod workdir;

pub use image::ImageRef;
pub use local::{LocalRuntime, RuntimeConfig};
pub use podspec::{
    MappedWorkload, PodMappingError, SandboxPod, UnhonouredField, workload_from_pod,
};
pub use runtime::{Runtime, RuntimeError, Workload, WorkloadId, WorkloadInfo, WorkloadState};
pub use spec::{NetworkAttachment, RuntimeClass, WorkloadSpec};
