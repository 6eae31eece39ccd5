//! Planners: pure functions from observed objects to actions.
//!
//! The behaviour of the SandboxTemplate, SandboxWarmPool and SandboxClaim controllers lives here
//! once, and both drivers (embedded and Kubernetes) apply the actions it returns.
