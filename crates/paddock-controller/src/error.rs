//! [`ControllerError`]: why `paddock controller` could not start, or stopped abnormally.

/// Why the controller could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// `--enable-tracing` could not set up its exporter.
    #[error("{0}")]
    Tracing(String),
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
    /// No cluster to talk to, or a port in use.
    #[error(transparent)]
    Kube(#[from] paddock_kube::KubeError),
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
    /// The conversion webhook cannot serve.
    #[error("{0}; to run without it (only one API version stored), pass --enable-webhook=false")]
    Webhook(#[from] paddock_webhook::WebhookError),
}
