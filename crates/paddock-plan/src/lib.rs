//! Planners: pure functions from observed objects to actions.
//!
//! The behaviour of upstream's Sandbox, SandboxTemplate, SandboxWarmPool and SandboxClaim
//! controllers (contract §2.2–§2.5) lives here once; the embedded driver and the Kubernetes
//! driver feed it what they observed and apply the actions it returns. No IO, no clock reads
//! (`now` is an input), no randomness (warm members get `generateName`, the driver or apiserver
//! picks the suffix).
//!
//! # Layout
//! - [`sandbox`]: Sandbox → pod, Service, PVCs, status and conditions (§2.2, §1.3).
//! - [`template`]: SandboxTemplate → ref-hash label, managed NetworkPolicy, secure pod defaults
//!   (§2.3).
//! - [`pool`]: SandboxWarmPool → members, staleness, readiness grace, scaling with
//!   expectations, status (§2.4).
//! - [`claim`]: SandboxClaim → expiry, metadata validation, find-or-adopt, cold Sandbox, status
//!   forwarding (§2.5).
//! - [`patch`]: metadata edits as data and JSON merge patches built from them.
//! - [`outcome`]: errors with a retry class, Events, delete targets, apply failures.
//! - [`ownership`]: controller references.
//! - [`hash`]: template hashes and semantic equality.
//! - [`time`]: deadline arithmetic on `metav1.Time`.
//!
//! `docs/planners.md` describes, for driver authors, what to do with each action: order,
//! optimistic locks, expectations bookkeeping and requeues.

pub mod claim;
pub mod hash;
pub mod outcome;
pub mod ownership;
pub mod patch;
pub mod pool;
pub mod sandbox;
pub mod template;
pub mod time;
