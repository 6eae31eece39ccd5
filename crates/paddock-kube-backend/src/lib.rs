//! The gateway's backend on a Kubernetes cluster: `paddock gateway` serves paddock's REST API
//! and upstream's sandbox-router contract from it. Objects live in the Kubernetes API; a
//! sandbox's agent is reached at its pod IP; bearer tokens can be checked with the cluster's
//! TokenReview. It implements the `paddock-backend` port and knows nothing of the gateway.
//!
//! - [`backend`]: [`KubeBackend`], the `Backend` over the Kubernetes API.
//! - [`tokenreview`]: [`TokenReviewVerifier`], `--auth tokenreview` with its decision cache.
//! - [`cache`]: [`SandboxCache`], the watch-fed Sandboxes routing reads.

pub mod backend;
pub mod cache;
pub mod egress;
pub mod permissions;
pub mod tokenreview;

pub use backend::{BackendConfig, KubeBackend};
pub use cache::{SandboxCache, SandboxCacheScope};
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
    ("paddock.dev", "sandboxpolicies", &["get"]),
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
