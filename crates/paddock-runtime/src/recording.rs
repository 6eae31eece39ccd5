//! [`RecordingRuntime`]: a [`Runtime`] that starts nothing and records what it was asked, so
//! the control core, the engine and the gateway can be tested without root, runsc or bwrap.
//! A created workload is Running at once; a test ends its main process with
//! [`RecordingRuntime::finish`] or kills it with [`RecordingRuntime::kill`]. Its agent socket
//! is a path nothing listens on: requests forwarded to it fail as to a dead agent.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::ImageRef;
use crate::agent::{MAIN_LOG, MAIN_STATUS, SOCKET_NAME};
use crate::image::{ImageError, PulledImage};
use crate::runtime::{
    BoxFuture, Runtime, RuntimeError, Workload, WorkloadId, WorkloadInfo, WorkloadState,
};
use crate::spec::WorkloadSpec;

/// One call the runtime received.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `create` with this spec.
    Create(WorkloadId, Box<WorkloadSpec>),
    /// `stop`.
    Stop(WorkloadId),
    /// `teardown`.
    Teardown(WorkloadId),
}

#[derive(Debug)]
struct Recorded {
    workload: Workload,
    state: WorkloadState,
}

/// The recording runtime. Workload directories (holding only what a test writes) live under
/// `dir`.
#[derive(Debug)]
pub struct RecordingRuntime {
    dir: PathBuf,
    workloads: Mutex<BTreeMap<WorkloadId, Recorded>>,
    calls: Mutex<Vec<Call>>,
}

impl RecordingRuntime {
    /// A runtime keeping its workloads' run directories under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            workloads: Mutex::default(),
            calls: Mutex::default(),
        }
    }

    fn run_dir(&self, id: &WorkloadId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<WorkloadId, Recorded>> {
        self.workloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, call: Call) {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The workloads that are running now.
    pub fn running(&self) -> Vec<WorkloadId> {
        self.lock()
            .iter()
            .filter(|(_, w)| w.state == WorkloadState::Running)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Ends a workload's main process with `code`, as its agent reports it (a status file next
    /// to its socket, and output in its log).
    ///
    /// # Errors
    /// The run directory cannot be written.
    pub fn finish(&self, id: &WorkloadId, code: i32, output: &str) -> std::io::Result<()> {
        let dir = self.run_dir(id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(MAIN_LOG), output)?;
        std::fs::write(
            dir.join(MAIN_STATUS),
            serde_json::json!({ "exit_code": code }).to_string(),
        )?;
        if let Some(w) = self.lock().get_mut(id) {
            w.state = WorkloadState::Exited { code: Some(code) };
        }
        Ok(())
    }

    /// Kills a workload (its sandbox died without its main process ending).
    pub fn kill(&self, id: &WorkloadId) {
        if let Some(w) = self.lock().get_mut(id) {
            w.state = WorkloadState::Exited { code: None };
        }
    }

    fn socket(&self, id: &WorkloadId) -> PathBuf {
        self.run_dir(id).join(SOCKET_NAME)
    }

    /// The directory under which run directories are kept.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Runtime for RecordingRuntime {
    fn create<'a>(
        &'a self,
        id: &'a WorkloadId,
        spec: &'a WorkloadSpec,
    ) -> BoxFuture<'a, Result<Workload, RuntimeError>> {
        self.record(Call::Create(id.clone(), Box::new(spec.clone())));
        let result = {
            let mut workloads = self.lock();
            if workloads.contains_key(id) {
                Err(RuntimeError::AlreadyExists { id: id.clone() })
            } else {
                let workload = Workload {
                    id: id.clone(),
                    runtime_class: spec.runtime_class,
                    agent_socket: self.socket(id),
                };
                workloads.insert(
                    id.clone(),
                    Recorded {
                        workload: workload.clone(),
                        state: WorkloadState::Running,
                    },
                );
                Ok(workload)
            }
        };
        Box::pin(std::future::ready(result))
    }

    fn state<'a>(
        &'a self,
        id: &'a WorkloadId,
    ) -> BoxFuture<'a, Result<WorkloadState, RuntimeError>> {
        let state = self
            .lock()
            .get(id)
            .map_or(WorkloadState::Missing, |w| w.state);
        Box::pin(std::future::ready(Ok(state)))
    }

    fn stop<'a>(&'a self, id: &'a WorkloadId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.record(Call::Stop(id.clone()));
        if let Some(w) = self.lock().get_mut(id) {
            w.state = WorkloadState::Stopping;
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn teardown<'a>(&'a self, id: &'a WorkloadId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.record(Call::Teardown(id.clone()));
        self.lock().remove(id);
        let _ = std::fs::remove_dir_all(self.run_dir(id));
        Box::pin(std::future::ready(Ok(())))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<WorkloadInfo>, RuntimeError>> {
        let all = self
            .lock()
            .values()
            .map(|w| WorkloadInfo {
                workload: w.workload.clone(),
                state: w.state,
            })
            .collect();
        Box::pin(std::future::ready(Ok(all)))
    }

    fn alive_workloads(&self) -> HashSet<String> {
        self.lock()
            .iter()
            .filter(|(_, w)| matches!(w.state, WorkloadState::Running | WorkloadState::Stopping))
            .map(|(id, _)| id.as_str().to_owned())
            .collect()
    }

    fn main_log(&self, id: &WorkloadId) -> PathBuf {
        self.run_dir(id).join(MAIN_LOG)
    }

    fn pull<'a>(
        &'a self,
        _image: &'a ImageRef,
        _progress: &'a crate::image::ProgressFn,
    ) -> BoxFuture<'a, Result<PulledImage, RuntimeError>> {
        Box::pin(std::future::ready(Err(RuntimeError::Image(
            ImageError::HostImage,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RuntimeClass;

    #[tokio::test]
    async fn records_calls_and_reports_states() {
        let dir = tempfile_dir();
        let rt = RecordingRuntime::new(&dir);
        let id = WorkloadId::new("w1").expect("id");
        let spec = WorkloadSpec::new(RuntimeClass::Gvisor, ImageRef::Host);
        rt.create(&id, &spec).await.expect("create");
        assert_eq!(rt.state(&id).await.expect("state"), WorkloadState::Running);
        assert!(rt.alive_workloads().contains("w1"));
        rt.finish(&id, 3, "done\n").expect("finish");
        assert_eq!(
            rt.state(&id).await.expect("state"),
            WorkloadState::Exited { code: Some(3) }
        );
        rt.teardown(&id).await.expect("teardown");
        assert_eq!(rt.state(&id).await.expect("state"), WorkloadState::Missing);
        assert!(matches!(
            rt.calls().as_slice(),
            [Call::Create(..), Call::Teardown(_)]
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("paddock-recording-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
