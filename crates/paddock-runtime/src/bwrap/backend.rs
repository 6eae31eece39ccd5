//! The bubblewrap [`Isolation`]: a create takes a bwrap process started ahead from the pool
//! (or starts one), renames its cgroup after the workload, sets its limits and hands it its
//! arguments; inspecting reads its status file and monitor pid; destroying kills the monitor
//! (the runtime then empties the cgroup).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Bwrap, BwrapInput, PreparedBwrap, bwrap_args, process_start_time, read_status};
use crate::cgroup::{CgroupMode, WorkloadCgroup};
use crate::isolation::{Found, Isolation, Launch};
use crate::runtime::{BoxFuture, RuntimeError, WorkloadId, WorkloadState};
use std::os::fd::OwnedFd;

use crate::spec::{NetworkAttachment, ResourceLimits, RuntimeClass};
use crate::workdir::{ResolvedMount, WorkloadDir, WorkloadMeta};

/// The bubblewrap backend with its pool of processes started ahead (cgroup v1 hosts only,
/// where joining a cgroup costs ~10 ms). Clones share the pool.
#[derive(Debug, Clone)]
pub(crate) struct BwrapIsolation(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    bwrap: Bwrap,
    /// Prepared bwrap processes and their (unlimited, not yet named) cgroups.
    pool: Mutex<Vec<(PreparedBwrap, WorkloadCgroup)>>,
    pool_dir: PathBuf,
    pool_size: usize,
    refilling: AtomicBool,
    cgroups: CgroupMode,
    cgroup_parent: String,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let pool = std::mem::take(
            self.pool
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (prepared, cgroup) in pool {
            Bwrap::discard(prepared);
            remove_when_empty(&cgroup);
        }
    }
}

/// Kills what is left in a discarded pool group (bwrap's sandboxed child may outlive bwrap for
/// a moment), then removes the group; waits at most ~1 s.
fn remove_when_empty(cgroup: &WorkloadCgroup) {
    for _ in 0..200 {
        let pids = cgroup.pids();
        if pids.is_empty() {
            break;
        }
        for pid in pids.into_iter().filter_map(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cgroup.remove();
}

/// A bwrap workload's state: its status file, else whether its monitor process still runs.
fn bwrap_state(dir: &WorkloadDir, meta: &WorkloadMeta) -> WorkloadState {
    if let Some(code) = read_status(&dir.bwrap_status()).exit_code {
        return WorkloadState::Exited { code: Some(code) };
    }
    match (meta.pid, meta.pid_start_time) {
        (Some(pid), Some(start)) if process_start_time(pid) == Some(start) => {
            WorkloadState::Running
        }
        _ => WorkloadState::Exited { code: None },
    }
}

impl BwrapIsolation {
    /// The backend; `pool_dir` holds the pooled processes' status files (emptied here).
    pub(crate) fn new(
        bwrap: Bwrap,
        pool_dir: PathBuf,
        pool_size: usize,
        cgroups: CgroupMode,
        cgroup_parent: String,
    ) -> Self {
        Self(Arc::new(Shared {
            bwrap,
            pool: Mutex::new(Vec::new()),
            pool_dir,
            pool_size,
            refilling: AtomicBool::new(false),
            cgroups,
            cgroup_parent,
        }))
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Vec<(PreparedBwrap, WorkloadCgroup)>> {
        self.0
            .pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts pooled processes until the pool is full (one blocking thread at a time).
    fn fill(&self) {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let s = &self.0;
        while self.pool().len() < s.pool_size {
            let name = format!(
                "pool-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let Ok(cgroup) = WorkloadCgroup::create(
                &s.cgroups,
                &s.cgroup_parent,
                &name,
                &ResourceLimits::default(),
            ) else {
                break;
            };
            let prepared = cgroup
                .open_procs()
                .map_err(|e| e.to_string())
                .and_then(|procs| {
                    s.bwrap
                        .prepare(&s.pool_dir.join(format!("{name}.json")), procs, None)
                });
            match prepared {
                Ok(prepared) => self.pool().push((prepared, cgroup)),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot prepare a pooled bwrap");
                    cgroup.remove();
                    break;
                }
            }
        }
    }

    /// A prepared bwrap in the workload's own cgroup (named after it, limits set): from the pool
    /// when one is ready, else started now.
    fn prepared(
        &self,
        id: &WorkloadId,
        dir: &WorkloadDir,
        limits: &ResourceLimits,
        network: Option<&NetworkAttachment>,
    ) -> Result<PreparedBwrap, RuntimeError> {
        let s = &self.0;
        let limits_err = |reason: String| RuntimeError::Limits {
            reason,
            remedy: "run paddock as root, or delegate a cgroup to it".into(),
        };
        // Pooled processes were started in our own network namespace; a networked sandbox
        // needs one started in its namespace.
        let pooled = if network.is_some() {
            None
        } else {
            self.pool().pop()
        };
        if let Some((mut prepared, pool_cgroup)) = pooled {
            let adopted = pool_cgroup
                .rename(&s.cgroups, &s.cgroup_parent, id.as_str())
                .and_then(|cgroup| cgroup.set_limits(&s.cgroups, limits))
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    std::fs::rename(&prepared.status_path, dir.bwrap_status())
                        .map_err(|e| e.to_string())
                });
            match adopted {
                Ok(()) => {
                    prepared.status_path = dir.bwrap_status();
                    return Ok(prepared);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "discarding a pooled bwrap");
                    Bwrap::discard(prepared);
                    // Either name may hold it now; the group empties once bwrap is gone.
                    remove_when_empty(&pool_cgroup);
                    remove_when_empty(&WorkloadCgroup::path_for(
                        &s.cgroups,
                        &s.cgroup_parent,
                        id.as_str(),
                    ));
                }
            }
        }
        let cgroup = WorkloadCgroup::create(&s.cgroups, &s.cgroup_parent, id.as_str(), limits)
            .map_err(|e| limits_err(e.to_string()))?;
        let procs = cgroup.open_procs().map_err(|e| limits_err(e.to_string()))?;
        let netns = match network {
            Some(n) => Some(
                std::fs::File::open(&n.netns)
                    .map(OwnedFd::from)
                    .map_err(|e| RuntimeError::Start {
                        backend: RuntimeClass::Bwrap,
                        id: id.clone(),
                        message: format!("network namespace {}: {e}", n.netns.display()),
                    })?,
            ),
            None => None,
        };
        s.bwrap
            .prepare(&dir.bwrap_status(), procs, netns)
            .map_err(|message| RuntimeError::Start {
                backend: RuntimeClass::Bwrap,
                id: id.clone(),
                message,
            })
    }

    async fn launch_workload(&self, launch: Launch<'_>) -> Result<(), RuntimeError> {
        let Launch {
            id,
            dir,
            spec,
            image,
            volumes,
            limits,
            meta,
            host,
        } = launch;
        let rootfs = match image {
            None => None,
            Some(image) => {
                let merged = dir.mount_overlay(&image.rootfs)?;
                let mut dirs: Vec<&str> = vec!["proc", "dev", "tmp", "/.paddock/run"];
                dirs.extend(volumes.iter().map(|v| match v {
                    ResolvedMount::Bind { target, .. } | ResolvedMount::Tmpfs { target, .. } => {
                        target.as_str()
                    }
                }));
                let mut files = vec![crate::agent::AGENT_PATH];
                if let Some(network) = &spec.network {
                    files.push("/etc/resolv.conf");
                    if network.ca_bundle.is_some() {
                        files.push(crate::spec::CA_BUNDLE_PATH);
                    }
                }
                crate::workdir::create_mount_points(&merged, &dirs, &files)?;
                Some(merged)
            }
        };
        let prepared = self.prepared(id, dir, &limits, spec.network.as_ref())?;
        self.prewarm();
        let run_dir = dir.run_dir();
        let args = bwrap_args(&BwrapInput {
            spec,
            rootfs: rootfs.as_deref(),
            read_only_root: spec.read_only_rootfs,
            host_view: Some(&host.host_view),
            mask_file: &host.mask_file,
            mask_dir: &host.mask_dir,
            agent_binary: &host.agent_binary,
            run_dir: &run_dir,
            volumes,
            fds: prepared.fds,
        });
        let pid = Bwrap::launch(prepared, &args).map_err(|message| RuntimeError::Start {
            backend: RuntimeClass::Bwrap,
            id: id.clone(),
            message,
        })?;
        meta.pid = Some(pid);
        meta.pid_start_time = process_start_time(pid);
        dir.write_meta(meta)?;
        let status_path = dir.bwrap_status();
        crate::agent::wait_ready(&dir.socket(), host.ready_timeout, move || {
            read_status(&status_path).exit_code.is_none()
        })
        .await
        .map_err(|e| match e {
            crate::agent::ReadinessError::Exited => RuntimeError::Start {
                backend: RuntimeClass::Bwrap,
                id: id.clone(),
                message: format!(
                    "bwrap exited (code {:?}) before the agent was ready; `paddock doctor` shows what this host lacks",
                    read_status(&dir.bwrap_status()).exit_code
                ),
            },
            other => RuntimeError::NotReady {
                id: id.clone(),
                message: other.to_string(),
            },
        })
    }
}

impl Isolation for BwrapIsolation {
    fn class(&self) -> RuntimeClass {
        RuntimeClass::Bwrap
    }

    fn dir_owner(&self, _uid: u32, _gid: u32) -> Option<(u32, u32)> {
        None
    }

    fn launch<'a>(&'a self, launch: Launch<'a>) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.launch_workload(launch))
    }

    fn states<'a>(&'a self, found: &'a [&'a Found]) -> BoxFuture<'a, Vec<WorkloadState>> {
        let states = found.iter().map(|f| bwrap_state(&f.dir, &f.meta)).collect();
        Box::pin(std::future::ready(states))
    }

    fn alive(&self, found: &[&Found]) -> Vec<bool> {
        found
            .iter()
            .map(|f| bwrap_state(&f.dir, &f.meta) == WorkloadState::Running)
            .collect()
    }

    fn destroy<'a>(
        &'a self,
        _id: &'a WorkloadId,
        meta: Option<&'a WorkloadMeta>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        // The monitor process (if it is still ours: pids are reused); the runtime then kills
        // everything left in the workload's cgroup.
        if let Some(meta) = meta
            && let (Some(pid), Some(start)) = (meta.pid, meta.pid_start_time)
            && process_start_time(pid) == Some(start)
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn holds(&self, _id: &WorkloadId) -> bool {
        false
    }

    fn host_processes(&self, _id: &WorkloadId) -> Vec<i32> {
        Vec::new()
    }

    /// Tops the pool up in the background (no-op without a tokio runtime, on cgroup v2, or
    /// when the pool is disabled).
    fn prewarm(&self) {
        let s = &self.0;
        if s.pool_size == 0 || !matches!(s.cgroups, CgroupMode::V1 { .. }) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if s.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        handle.spawn_blocking(move || {
            this.fill();
            this.0.refilling.store(false, Ordering::Release);
        });
    }

    fn close(&self) {
        let pool = std::mem::take(&mut *self.pool());
        for (prepared, cgroup) in pool {
            Bwrap::discard(prepared);
            remove_when_empty(&cgroup);
        }
    }
}
