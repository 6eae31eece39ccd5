//! Errors: [`ControllerError`] for start-up and shutdown (what `run` returns), and
//! [`ReconcileError`] for one reconcile (logged, counted, retried with backoff).

use std::net::SocketAddr;

/// Why the controller could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A flag has a value upstream also rejects.
    #[error("invalid flag {flag}={value:?}: {rule}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
        /// What is allowed.
        rule: &'static str,
    },
    /// No cluster to talk to.
    #[error(
        "cannot configure the Kubernetes client: {0}; run inside a cluster (service-account mount) or point KUBECONFIG at a kubeconfig"
    )]
    KubeConfig(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The leader-election namespace is unknown.
    #[error(
        "cannot find the leader-election namespace: not running in a cluster; pass --leader-election-namespace or --leader-elect=false"
    )]
    LeaderElectionNamespace,
    /// Leadership was lost while running (the process must restart to stay safe).
    #[error("lost the leader-election lease {lease}: {reason}")]
    LeadershipLost {
        /// Lease name.
        lease: String,
        /// Why.
        reason: String,
    },
    /// Webhook certificates could not be created, loaded or injected.
    #[error("conversion webhook certificates: {0}")]
    Certificates(String),
    /// An API call the start-up depends on failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// Why one reconcile failed; the error policy retries it with per-object backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The planner reported a transient problem (the status already says so).
    #[error("{0}")]
    Plan(String),
    /// Applying an action failed.
    #[error("{action} failed: {message}")]
    Apply {
        /// Which action.
        action: &'static str,
        /// The API error.
        message: String,
    },
}

impl ReconcileError {
    /// A short label for the `controller_runtime_reconcile_errors_total` breakdown in logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Plan(_) => "plan",
            Self::Apply { .. } => "apply",
        }
    }
}
