//! `paddock gateway`: paddock's REST API (the `paddock-gateway` crate) on a cluster, and a
//! drop-in for upstream's sandbox-router. Objects live in the Kubernetes API; a sandbox's agent
//! is reached at its pod IP; clients authenticate with a shared token, the cluster's
//! TokenReview, upstream's scoped tokens, or not at all (explicit opt-in).
//!
//! - [`backend`]: [`KubeBackend`], the gateway's `Backend` over the Kubernetes API.
//! - [`tokenreview`]: [`TokenReviewVerifier`], `--auth tokenreview` with its decision cache.
//! - [`args`]: the flags and their validation.
//! - [`run`](mod@run): wiring and graceful shutdown; [`run()`] is the entry point.

pub mod args;
pub mod backend;
pub mod run;
pub mod tokenreview;

pub use args::{GatewayArgs, GatewayError};
pub use backend::{BackendConfig, KubeBackend};
pub use run::run;
pub use tokenreview::TokenReviewVerifier;

/// Every (API group, resource, verb) the gateway calls; deploy/router/rbac.yaml grants exactly
/// these (a test checks both directions). `pods get` is the pod-IP fallback for Sandboxes whose
/// status has none; `tokenreviews create` is only used with `--auth tokenreview`.
pub const API_CALLS: &[(&str, &str, &[&str])] = &[
    (
        "agents.x-k8s.io",
        "sandboxes",
        &["get", "list", "watch", "create", "update", "delete"],
    ),
    ("agents.x-k8s.io", "sandboxes/status", &["update"]),
    (
        "extensions.agents.x-k8s.io",
        "sandboxtemplates",
        &["get", "list", "watch", "create", "update", "delete"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxclaims",
        &["get", "list", "watch", "create", "update", "delete"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxclaims/status",
        &["update"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxwarmpools",
        &["get", "list", "watch", "create", "update", "delete"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxwarmpools/status",
        &["update"],
    ),
    ("", "pods", &["get"]),
    ("", "pods/log", &["get"]),
    ("authentication.k8s.io", "tokenreviews", &["create"]),
];
