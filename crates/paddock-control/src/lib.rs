//! The control core: the four reconcile loops of the Agent Sandbox API — Sandbox,
//! SandboxTemplate, SandboxWarmPool, SandboxClaim — written once, for both tiers.
//!
//! Each loop reads the object and what it owns from the core's cache, calls its planner in
//! `paddock-plan`, applies the plan's actions in order, writes the status and says when to look
//! again. It reaches the world only through the [`ports`]: the embedded engine of
//! `paddock serve` and the Kubernetes controller are adapters that implement them and start a
//! [`Core`]. A behaviour that must differ between the tiers is a port, never a second loop.
//!
//! # Layout
//! - [`ports`]: [`Objects`](ports::Objects), [`Workloads`](ports::Workloads),
//!   [`Clock`](ports::Clock), [`Events`](ports::Events).
//! - [`core`](mod@core): [`Core`] — the cache, queues, workers, backoff and shared write helpers.
//! - [`cache`]: typed objects of the four kinds and their indexes, fed by watches.
//! - [`dispatch`]: which reconciles a change wakes; the [`Waker`](dispatch::Waker) tiers use.
//! - [`queue`]: the work queue (deduplicated, one worker per key, delayed requeues).
//! - [`sandbox`], [`template`], [`pool`], [`claim`]: the four loops.
//! - [`metrics`]: upstream's controller metrics, recorded on both tiers.
//! - `testing` (feature `testing`): the conformance suite every adapter runs.

pub mod cache;
pub mod claim;
pub mod core;
pub mod dispatch;
pub mod metrics;
pub mod pool;
pub mod ports;
pub mod queue;
pub mod sandbox;
pub mod template;
#[cfg(feature = "testing")]
pub mod testing;
pub mod traces;

pub use crate::cache::{Cache, Key};
pub use crate::core::{Backoff, Core, CoreConfig, Outcome, Ports, Workers};
pub use crate::dispatch::{Queues, Waker};
pub use crate::ports::{
    Children, Clock, Controller, Events, LogEvents, ManualClock, Objects, Part, PolicyWrite,
    Release, SystemClock, WatchEvent, Workloads, WriteError,
};
