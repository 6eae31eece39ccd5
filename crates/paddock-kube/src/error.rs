//! What can go wrong reaching a cluster or binding a port, and how API errors are classified.

use std::net::SocketAddr;

use paddock_plan::outcome::FailureKind;

/// Why a Kubernetes command could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No cluster to talk to.
    #[error(
        "cannot configure the Kubernetes client: {0}; pass --kubeconfig FILE, set KUBECONFIG, or run inside a cluster (service-account mount)"
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
}

/// Classifies a client error the way the planners understand failures, with the message the
/// API server gave.
pub fn classify(err: &kube::Error) -> (FailureKind, String) {
    match err {
        kube::Error::Api(status) => {
            let kind = match status.code {
                409 if status.reason == "AlreadyExists" => FailureKind::AlreadyExists,
                409 => FailureKind::Conflict,
                404 => FailureKind::NotFound,
                422 => FailureKind::Invalid,
                _ => FailureKind::Other,
            };
            let message = if status.message.is_empty() {
                format!("{} ({})", status.reason, status.code)
            } else {
                status.message.clone()
            };
            (kind, message)
        }
        other => (FailureKind::Other, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.to_owned(),
            message: format!("{reason} message"),
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn failures_are_classified_like_the_planners_expect() {
        let kind = |code, reason| classify(&api_error(code, reason)).0;
        assert_eq!(kind(409, "AlreadyExists"), FailureKind::AlreadyExists);
        assert_eq!(kind(409, "Conflict"), FailureKind::Conflict);
        assert_eq!(kind(404, "NotFound"), FailureKind::NotFound);
        assert_eq!(kind(422, "Invalid"), FailureKind::Invalid);
        assert_eq!(kind(500, "InternalError"), FailureKind::Other);
        assert_eq!(classify(&api_error(422, "Invalid")).1, "Invalid message");
    }
}
