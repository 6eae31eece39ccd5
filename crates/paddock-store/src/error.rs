//! The store's error type: the API outcomes a caller maps to HTTP statuses (not found, conflict,
//! gone, invalid) and storage failures carrying what failed, where, and what to do.

use std::path::PathBuf;
use std::sync::Arc;

/// Everything a store operation can fail with.
///
/// The first five variants are API outcomes with the meaning Kubernetes gives them; the rest are
/// failures of the store itself. `code()` and `http_status()` give the stable mapping the gateway
/// exposes. The type is `Clone` so one storage failure can be reported to every caller of a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist (HTTP 404).
    #[error("{resource} \"{}\" not found", qualified(namespace, name))]
    NotFound {
        /// Resource id, e.g. `sandboxes.agents.x-k8s.io`.
        resource: String,
        /// Empty for cluster-scoped resources.
        namespace: String,
        name: String,
    },
    /// An object with this name already exists, possibly still terminating (HTTP 409).
    #[error("{resource} \"{}\" already exists", qualified(namespace, name))]
    AlreadyExists {
        resource: String,
        namespace: String,
        name: String,
    },
    /// A stale resourceVersion on update, or a failed delete precondition (HTTP 409). Re-read the
    /// object and retry.
    #[error(
        "operation on {resource} \"{}\" conflicts: {reason}",
        qualified(namespace, name)
    )]
    Conflict {
        resource: String,
        namespace: String,
        name: String,
        reason: String,
    },
    /// A watch asked for changes after a resourceVersion older than the retained change log, or
    /// fell too far behind it (HTTP 410). List again and watch from the list's resourceVersion.
    #[error(
        "resourceVersion {requested} is too old: the oldest retained change follows {oldest}; \
         list again and watch from the list's resourceVersion"
    )]
    Gone {
        /// The resourceVersion the watch needed to continue from.
        requested: u64,
        /// Changes after this revision are retained; everything up to it is gone.
        oldest: u64,
    },
    /// The request is malformed: `field` names what is wrong (a JSON path or parameter name).
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A stored object could not be converted to or from the caller's type.
    #[error("cannot convert {what}: {reason}")]
    Decode { what: String, reason: String },
    /// The embedded database failed; `context` says what the store was doing.
    #[error("storage failure while {context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: Arc<redb::Error>,
    },
    /// A file-system operation on the store's directory failed.
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: String,
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A stored record cannot be read back.
    #[error(
        "stored record {key} is corrupt: {reason}; restore the store directory from a backup \
         or delete the record"
    )]
    Corrupt { key: String, reason: String },
    /// The store cannot accept writes (closed, or stopped after a failed commit).
    #[error("store unavailable: {reason}")]
    Unavailable { reason: String },
}

impl StoreError {
    /// A stable machine-readable code, the Kubernetes `Status.reason` where one exists.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "NotFound",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } => "Conflict",
            Self::Gone { .. } => "Expired",
            Self::Invalid { .. } => "Invalid",
            Self::Decode { .. } => "BadRequest",
            Self::Storage { .. } | Self::Io { .. } | Self::Corrupt { .. } => "InternalError",
            Self::Unavailable { .. } => "ServiceUnavailable",
        }
    }

    /// The HTTP status Kubernetes answers with for this outcome.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotFound { .. } => 404,
            Self::AlreadyExists { .. } | Self::Conflict { .. } => 409,
            Self::Gone { .. } => 410,
            Self::Invalid { .. } => 422,
            Self::Decode { .. } => 400,
            Self::Storage { .. } | Self::Io { .. } | Self::Corrupt { .. } => 500,
            Self::Unavailable { .. } => 503,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn storage(context: impl Into<String>, source: impl Into<redb::Error>) -> Self {
        Self::Storage {
            context: context.into(),
            source: Arc::new(source.into()),
        }
    }
}

fn qualified(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}/{name}")
    }
}

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_message_names_resource_and_namespaced_name() {
        let err = StoreError::NotFound {
            resource: "sandboxes.agents.x-k8s.io".into(),
            namespace: "default".into(),
            name: "sb".into(),
        };
        assert_eq!(
            err.to_string(),
            "sandboxes.agents.x-k8s.io \"default/sb\" not found"
        );
        assert_eq!(err.http_status(), 404);
        assert_eq!(err.code(), "NotFound");
    }

    #[test]
    fn gone_maps_to_410_and_tells_the_caller_to_relist() {
        let err = StoreError::Gone {
            requested: 3,
            oldest: 10,
        };
        assert_eq!(err.http_status(), 410);
        assert!(err.to_string().contains("list again"), "{err}");
    }
}
