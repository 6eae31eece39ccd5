//! The [`Runtime`] trait the engine drives, its identifiers, states and errors.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::image::ImageError;
use crate::spec::RuntimeClass;

/// A workload's name on this host: the runsc container id and the directory name. 1–64 of
/// `[a-z0-9._-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkloadId(String);

impl WorkloadId {
    /// # Errors
    /// An id that is empty, too long or has characters outside `[a-z0-9._-]`.
    pub fn new(id: impl Into<String>) -> Result<Self, RuntimeError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.as_bytes()[0].is_ascii_alphanumeric()
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok {
            Ok(Self(id))
        } else {
            Err(RuntimeError::InvalidId { id })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WorkloadId {
    type Error = RuntimeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<WorkloadId> for String {
    fn from(id: WorkloadId) -> String {
        id.0
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a workload is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "phase")]
pub enum WorkloadState {
    Running,
    /// Its init (the agent) exited. `code` is known for bwrap; gVisor does not keep it once the
    /// sandbox is gone, so it is `None` there unless the agent wrote it to its run directory.
    Exited {
        code: Option<i32>,
    },
    /// Stopped by [`Runtime::stop`]; teardown is still in progress.
    Stopping,
    /// Nothing by this id exists on this host.
    Missing,
}

/// A started workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub id: WorkloadId,
    pub runtime_class: RuntimeClass,
    /// The agent's unix socket on the host: HTTP `/v1/…` and the legacy endpoints.
    pub agent_socket: PathBuf,
}

/// A workload found on this host, for re-attaching after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    pub workload: Workload,
    pub state: WorkloadState,
}

/// What went wrong, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "invalid workload id {id:?}: use 1-64 of a-z 0-9 . _ - starting with a letter or digit"
    )]
    InvalidId { id: String },
    #[error("workload {id} already exists on this host")]
    AlreadyExists { id: WorkloadId },
    #[error("workload {id} does not exist on this host")]
    NotFound { id: WorkloadId },
    #[error("the {class} runtime is not available on this host: {reason}. To fix: {remedy}")]
    Unavailable {
        class: RuntimeClass,
        reason: String,
        remedy: String,
    },
    #[error(
        "the agent binary {path} cannot be used: {reason}. Build it with scripts/build-agent.sh (or cargo build -p paddock-agent) and pass its path"
    )]
    AgentBinary { path: PathBuf, reason: String },
    #[error("image: {0}")]
    Image(#[from] ImageError),
    #[error(
        "resource limits cannot be enforced on this host ({reason}); paddock refuses to run a sandbox without them. To fix: {remedy}"
    )]
    Limits { reason: String, remedy: String },
    #[error("{backend} failed to start workload {id}: {message}")]
    Start {
        backend: RuntimeClass,
        id: WorkloadId,
        message: String,
    },
    #[error("workload {id} started but its agent never became ready: {message}")]
    NotReady { id: WorkloadId, message: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {message}")]
    Command { command: String, message: String },
}

impl RuntimeError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// A boxed future, so the runtime can be used as `Arc<dyn Runtime>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs isolated workloads on this host. Implemented by [`crate::LocalRuntime`] (gVisor and
/// bubblewrap) and, for tests that need no root, [`crate::recording::RecordingRuntime`].
pub trait Runtime: Send + Sync + fmt::Debug {
    /// Creates and starts a workload; returns once its agent answers `GET /v1/health`.
    /// On failure nothing of it is left behind.
    fn create<'a>(
        &'a self,
        id: &'a WorkloadId,
        spec: &'a crate::WorkloadSpec,
    ) -> BoxFuture<'a, Result<Workload, RuntimeError>>;

    /// The workload's current state.
    fn state<'a>(
        &'a self,
        id: &'a WorkloadId,
    ) -> BoxFuture<'a, Result<WorkloadState, RuntimeError>>;

    /// Stops a workload and returns at once; killing and teardown continue in the background
    /// (runsc needs ~1.4 s to die). Emptydir volumes go with it; host directories (claims) stay.
    /// Stopping a missing workload is not an error.
    fn stop<'a>(&'a self, id: &'a WorkloadId) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Kills the workload if needed and waits until no process, mount or directory of it is
    /// left. Idempotent.
    fn teardown<'a>(&'a self, id: &'a WorkloadId) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Every workload on this host, running or not, to re-attach after a restart.
    fn list(&self) -> BoxFuture<'_, Result<Vec<WorkloadInfo>, RuntimeError>>;

    /// Workloads (by id) that are running or stopping, cheaply (no call into a backend's CLI):
    /// for the periodic check that notices sandboxes dying on their own.
    fn alive_workloads(&self) -> HashSet<String>;

    /// Where the workload's main process writes its output on this host (whether or not it
    /// exists: a sandbox without a main process has none).
    fn main_log(&self, id: &WorkloadId) -> PathBuf;

    /// Memory a workload uses now (its cgroup's count), when the runtime can tell.
    fn memory_bytes(&self, id: &WorkloadId) -> Option<u64> {
        let _ = id;
        None
    }

    /// Pulls an image into the local cache, reporting progress.
    fn pull<'a>(
        &'a self,
        image: &'a crate::ImageRef,
        progress: &'a crate::image::ProgressFn,
    ) -> BoxFuture<'a, Result<crate::image::PulledImage, RuntimeError>>;

    /// Ends what the runtime keeps pre-started (before the process exits; workloads stay).
    fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_ids_are_safe_directory_and_container_names() {
        assert!(WorkloadId::new("sb-1.a_b").is_ok());
        for bad in ["", "-x", "a/b", "..", "A", "a b", &"x".repeat(65)] {
            assert!(WorkloadId::new(bad).is_err(), "{bad}");
        }
    }
}
