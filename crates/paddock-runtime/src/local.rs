//! [`LocalRuntime`]: the [`Runtime`] of this host. It owns the runtime root directory, the image
//! cache, the host view, cgroups and both backends, and picks the backend per workload from its
//! runtime class. A missing backend is an error with the remedy, never a fallback.
//!
//! `<root>/`: `images/` (cache), `workloads/<id>/` (see `workdir`), `runsc/` (runsc's private
//! `--root`), `host/` (the empty file and directory that mask host secrets).

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::agent::{self, resolve_with_image};
use crate::bwrap::{self, Bwrap, BwrapInput, PreparedBwrap};
use crate::cgroup::{CgroupMode, WorkloadCgroup};
use crate::gvisor::{self, BundleInput, Gvisor};
use crate::hostview::HostView;
use crate::image::{ImageConfig, ImageRef, ImageStore, PulledImage, RegistryConfig};
use crate::runtime::{
    BoxFuture, Runtime, RuntimeError, Workload, WorkloadId, WorkloadInfo, WorkloadState,
};
use crate::spec::{ResourceLimits, RuntimeClass, WorkloadSpec};
use crate::workdir::{ResolvedMount, WorkloadDir, WorkloadMeta};

/// How to open the local runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// All state lives here (e.g. `$PADDOCK_HOME/runtime`); created 0700.
    pub root: PathBuf,
    /// The static `paddock-agent` binary, bind-mounted read-only into every sandbox.
    pub agent_binary: PathBuf,
    pub registry: RegistryConfig,
    /// Limits for fields a spec leaves unset. Memory and pids are always bounded so that one
    /// sandbox cannot take the host down.
    pub default_limits: ResourceLimits,
    /// How long the agent may take to answer its health check after start.
    pub ready_timeout: Duration,
    /// `runsc` to use; searched in `PATH` when `None`.
    pub runsc: Option<PathBuf>,
    /// `bwrap` to use; searched in `PATH` when `None`.
    pub bwrap: Option<PathBuf>,
    /// bwrap processes kept started and joined to a fresh cgroup, waiting for a workload (cgroup
    /// v1 hosts only, where joining a cgroup costs ~10 ms). 0 disables the pool.
    pub bwrap_pool: usize,
}

impl RuntimeConfig {
    /// Defaults: 2 GiB memory, 1024 tasks, no CPU cap, 15 s to become ready.
    pub fn new(root: impl Into<PathBuf>, agent_binary: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            agent_binary: agent_binary.into(),
            registry: RegistryConfig::default(),
            default_limits: ResourceLimits {
                memory_bytes: Some(2 << 30),
                cpu_millis: None,
                pids: Some(1024),
            },
            ready_timeout: Duration::from_secs(15),
            runsc: None,
            bwrap: None,
            bwrap_pool: 2,
        }
    }
}

/// Why a backend cannot run here, and the fix.
#[derive(Debug, Clone)]
pub(crate) struct Unavailable {
    pub reason: String,
    pub remedy: String,
}

/// The local runtime. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct LocalRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: RuntimeConfig,
    images: ImageStore,
    host_view: HostView,
    mask_file: PathBuf,
    mask_dir: PathBuf,
    workloads: PathBuf,
    cgroups: CgroupMode,
    cgroup_parent: String,
    gvisor: Result<Gvisor, Unavailable>,
    bwrap: Result<Bwrap, Unavailable>,
    locks: Mutex<HashMap<WorkloadId, Arc<tokio::sync::Mutex<()>>>>,
    /// Prepared bwrap processes and their (unlimited, not yet named) cgroups.
    pool: Mutex<Vec<(PreparedBwrap, WorkloadCgroup)>>,
    pool_dir: PathBuf,
    refilling: AtomicBool,
}

impl Drop for Inner {
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

/// Finds `name` in `PATH`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.is_file()
                && p.metadata()
                    .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        })
}

pub(crate) fn find_runsc(configured: Option<&Path>) -> Result<PathBuf, Unavailable> {
    configured
        .map(Path::to_owned)
        .or_else(|| which("runsc"))
        .filter(|p| p.is_file())
        .ok_or_else(|| Unavailable {
            reason: "runsc (gVisor) is not installed".into(),
            remedy: "apt-get install runsc".into(),
        })
}

pub(crate) fn find_bwrap(configured: Option<&Path>) -> Result<PathBuf, Unavailable> {
    let bwrap = configured
        .map(Path::to_owned)
        .or_else(|| which("bwrap"))
        .filter(|p| p.is_file())
        .ok_or_else(|| Unavailable {
            reason: "bubblewrap is not installed".into(),
            remedy: "apt-get install bubblewrap".into(),
        })?;
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if max == Some(0) {
        return Err(Unavailable {
            reason: "user namespaces are disabled (user.max_user_namespaces = 0)".into(),
            remedy: "sysctl -w user.max_user_namespaces=15000".into(),
        });
    }
    Ok(bwrap)
}

impl LocalRuntime {
    /// Opens (creating) the runtime root: image cache, host view, cgroup detection, backends.
    /// Stale runsc lock files are removed. A missing backend does not fail here; creating a
    /// workload on it does, with the remedy.
    ///
    /// # Errors
    /// The root cannot be created or the seccomp filter cannot be built.
    pub fn open(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let root = &config.root;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(RuntimeError::io("create", root))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))
            .map_err(RuntimeError::io("chmod", root))?;
        let workloads = root.join("workloads");
        let host = root.join("host");
        let state_root = root.join("runsc");
        for dir in [&workloads, &host, &state_root] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(dir)
                .map_err(RuntimeError::io("create", dir))?;
        }
        let mask_file = host.join("empty-file");
        let mask_dir = host.join("empty-dir");
        if !mask_file.exists() {
            std::fs::write(&mask_file, b"").map_err(RuntimeError::io("create", &mask_file))?;
        }
        std::fs::set_permissions(&mask_file, std::fs::Permissions::from_mode(0o444))
            .map_err(RuntimeError::io("chmod", &mask_file))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o555)
            .create(&mask_dir)
            .map_err(RuntimeError::io("create", &mask_dir))?;
        clean_stale_locks(&state_root);
        let pool_dir = root.join("pool");
        let _ = std::fs::remove_dir_all(&pool_dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&pool_dir)
            .map_err(RuntimeError::io("create", &pool_dir))?;
        let images = ImageStore::open(&root.join("images"), config.registry.clone())?;
        let tag: String = crate::image::hex(&Sha256::digest(root.as_os_str().as_encoded_bytes()))
            .chars()
            .take(8)
            .collect();
        let seccomp = [
            crate::seccomp::to_bytes(&crate::seccomp::deny_filter().map_err(|e| {
                RuntimeError::Command {
                    command: "seccomp".into(),
                    message: e.to_string(),
                }
            })?),
            crate::seccomp::to_bytes(&crate::seccomp::clone3_filter().map_err(|e| {
                RuntimeError::Command {
                    command: "seccomp".into(),
                    message: e.to_string(),
                }
            })?),
        ];
        let gvisor = find_runsc(config.runsc.as_deref()).map(|runsc| Gvisor {
            runsc,
            state_root: state_root.clone(),
            id_prefix: format!("p{tag}"),
        });
        let bwrap = find_bwrap(config.bwrap.as_deref()).map(|bwrap| Bwrap {
            bwrap,
            seccomp: Arc::new(seccomp),
        });
        let runtime = Self {
            inner: Arc::new(Inner {
                images,
                host_view: HostView::scan(),
                mask_file,
                mask_dir,
                workloads,
                cgroups: CgroupMode::detect(),
                cgroup_parent: format!("paddock-{tag}"),
                gvisor,
                bwrap,
                locks: Mutex::new(HashMap::new()),
                pool: Mutex::new(Vec::new()),
                pool_dir,
                refilling: AtomicBool::new(false),
                config,
            }),
        };
        WorkloadCgroup::remove_stale(
            &runtime.inner.cgroups,
            &runtime.inner.cgroup_parent,
            "pool-",
        );
        runtime.refill_pool();
        Ok(runtime)
    }

    /// Ends the pre-started bwrap processes (before the process exits; workloads are left
    /// running). The pool refills on the next create.
    pub fn close_pool(&self) {
        let pool = std::mem::take(
            &mut *self
                .inner
                .pool
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (prepared, cgroup) in pool {
            Bwrap::discard(prepared);
            remove_when_empty(&cgroup);
        }
    }

    /// Tops the bwrap pool up in the background (no-op without a tokio runtime, on cgroup v2, or
    /// when the pool is disabled).
    fn refill_pool(&self) {
        let inner = &self.inner;
        if inner.config.bwrap_pool == 0
            || !matches!(inner.cgroups, CgroupMode::V1 { .. })
            || inner.bwrap.is_err()
        {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if inner.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        handle.spawn_blocking(move || {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let inner = &this.inner;
            while inner.pool.lock().map(|p| p.len()).unwrap_or(usize::MAX) < inner.config.bwrap_pool
            {
                let Ok(bwrap) = &inner.bwrap else { break };
                let name = format!(
                    "pool-{}-{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                let Ok(cgroup) = WorkloadCgroup::create(
                    &inner.cgroups,
                    &inner.cgroup_parent,
                    &name,
                    &ResourceLimits::default(),
                ) else {
                    break;
                };
                let prepared = cgroup
                    .open_procs()
                    .map_err(|e| e.to_string())
                    .and_then(|procs| {
                        bwrap.prepare(&inner.pool_dir.join(format!("{name}.json")), procs)
                    });
                match prepared {
                    Ok(prepared) => match inner.pool.lock() {
                        Ok(mut pool) => pool.push((prepared, cgroup)),
                        Err(_) => break,
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot prepare a pooled bwrap");
                        cgroup.remove();
                        break;
                    }
                }
            }
            inner.refilling.store(false, Ordering::Release);
        });
    }

    /// A prepared bwrap in the workload's own cgroup (named after it, limits set): from the pool
    /// when one is ready, else started now.
    fn prepared_bwrap(
        &self,
        id: &WorkloadId,
        dir: &WorkloadDir,
        limits: &ResourceLimits,
    ) -> Result<PreparedBwrap, RuntimeError> {
        let inner = &self.inner;
        let limits_err = |reason: String| RuntimeError::Limits {
            reason,
            remedy: "run paddock as root, or delegate a cgroup to it".into(),
        };
        let pooled = inner.pool.lock().ok().and_then(|mut p| p.pop());
        if let Some((mut prepared, pool_cgroup)) = pooled {
            let adopted = pool_cgroup
                .rename(&inner.cgroups, &inner.cgroup_parent, id.as_str())
                .and_then(|cgroup| cgroup.set_limits(&inner.cgroups, limits))
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
                    remove_when_empty(&self.cgroup(id));
                }
            }
        }
        let bwrap = inner
            .bwrap
            .as_ref()
            .map_err(|u| Self::unavailable(RuntimeClass::Bwrap, u))?;
        let cgroup =
            WorkloadCgroup::create(&inner.cgroups, &inner.cgroup_parent, id.as_str(), limits)
                .map_err(|e| limits_err(e.to_string()))?;
        let procs = cgroup.open_procs().map_err(|e| limits_err(e.to_string()))?;
        bwrap
            .prepare(&dir.bwrap_status(), procs)
            .map_err(|message| RuntimeError::Start {
                backend: RuntimeClass::Bwrap,
                id: id.clone(),
                message,
            })
    }

    /// The image cache, e.g. to pull with a progress bar before creating.
    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }

    /// The agent socket of a workload (whether or not it exists).
    pub fn agent_socket(&self, id: &WorkloadId) -> PathBuf {
        self.dir(id).socket()
    }

    /// Where the workload's main process writes its output on this host (whether or not it
    /// exists: a sandbox without a main process has none).
    pub fn main_log(&self, id: &WorkloadId) -> PathBuf {
        self.dir(id).run_dir().join(agent::MAIN_LOG)
    }

    /// Host pids of the workload's processes outside the sandbox (runsc sandbox and gofer, or
    /// bwrap and everything in its cgroup); empty when none is left.
    pub fn host_processes(&self, id: &WorkloadId) -> Vec<i32> {
        let mut pids = match &self.inner.gvisor {
            Ok(g) => g.processes(id),
            Err(_) => Vec::new(),
        };
        pids.extend(self.cgroup(id).pids());
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Workloads (by id) that are running or stopping, without calling runsc: for the periodic
    /// check that notices sandboxes dying on their own.
    pub fn alive_workloads(&self) -> std::collections::HashSet<String> {
        let gvisor_live = match &self.inner.gvisor {
            Ok(g) => g.live_ids(),
            Err(_) => std::collections::HashSet::new(),
        };
        let Ok(entries) = std::fs::read_dir(&self.inner.workloads) else {
            return std::collections::HashSet::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let id = WorkloadId::new(entry.file_name().to_str()?).ok()?;
                let dir = self.dir(&id);
                let meta = dir.read_meta()?;
                let alive = dir.stopping_marker().exists()
                    || match meta.runtime_class {
                        RuntimeClass::Bwrap => {
                            Self::bwrap_state(&dir, &meta) == WorkloadState::Running
                        }
                        RuntimeClass::Gvisor => gvisor_live.contains(id.as_str()),
                    };
                alive.then(|| id.as_str().to_owned())
            })
            .collect()
    }

    /// The cgroup directories that would hold the workload (for checks after teardown).
    pub fn cgroup_exists(&self, id: &WorkloadId) -> bool {
        self.cgroup(id).exists()
    }

    /// The workload's directory on the host.
    pub fn workload_path(&self, id: &WorkloadId) -> PathBuf {
        self.dir(id).path
    }

    fn dir(&self, id: &WorkloadId) -> WorkloadDir {
        WorkloadDir::new(&self.inner.workloads, id.as_str())
    }

    fn cgroup(&self, id: &WorkloadId) -> WorkloadCgroup {
        WorkloadCgroup::path_for(&self.inner.cgroups, &self.inner.cgroup_parent, id.as_str())
    }

    fn lock(&self, id: &WorkloadId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        Arc::clone(locks.entry(id.clone()).or_default())
    }

    fn unavailable(class: RuntimeClass, u: &Unavailable) -> RuntimeError {
        RuntimeError::Unavailable {
            class,
            reason: u.reason.clone(),
            remedy: u.remedy.clone(),
        }
    }

    async fn create_locked(
        &self,
        id: &WorkloadId,
        spec: &WorkloadSpec,
    ) -> Result<Workload, RuntimeError> {
        let inner = &self.inner;
        match spec.runtime_class {
            RuntimeClass::Gvisor => drop(
                inner
                    .gvisor
                    .as_ref()
                    .map_err(|u| Self::unavailable(RuntimeClass::Gvisor, u))?,
            ),
            RuntimeClass::Bwrap => drop(
                inner
                    .bwrap
                    .as_ref()
                    .map_err(|u| Self::unavailable(RuntimeClass::Bwrap, u))?,
            ),
        }
        let agent_ok = std::fs::metadata(&inner.config.agent_binary).map(|m| m.is_file());
        if !matches!(agent_ok, Ok(true)) {
            return Err(RuntimeError::AgentBinary {
                path: inner.config.agent_binary.clone(),
                reason: "not a file".into(),
            });
        }
        if inner.cgroups == CgroupMode::None {
            return Err(RuntimeError::Limits {
                reason: "no cgroup filesystem at /sys/fs/cgroup".into(),
                remedy: "mount cgroup2 at /sys/fs/cgroup".into(),
            });
        }
        let dir = self.dir(id);
        if dir.path.exists() {
            return Err(RuntimeError::AlreadyExists { id: id.clone() });
        }
        let (pulled, image_config): (Option<PulledImage>, ImageConfig) = match &spec.image {
            ImageRef::Host => (None, ImageConfig::default()),
            image => {
                let pulled = inner.images.get_or_pull(image, &|_| {}).await?;
                let config = pulled.config.clone();
                (Some(pulled), config)
            }
        };
        let resolved = resolve_with_image(spec, &image_config);
        let limits = resolved.limits.or(inner.config.default_limits);
        let uid = resolved.run_as_user.unwrap_or(0);
        let gid = resolved.run_as_group.unwrap_or(0);
        // gVisor checks the host owner against the sandbox uid; bwrap maps the sandbox user to
        // ours, so there the directory stays ours.
        dir.create(match spec.runtime_class {
            RuntimeClass::Gvisor => Some((uid, gid)),
            RuntimeClass::Bwrap => None,
        })?;
        let mut meta = WorkloadMeta {
            runtime_class: spec.runtime_class,
            image: spec.image.to_string(),
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            pid: None,
            pid_start_time: None,
        };
        let started = async {
            dir.write_meta(&meta)?;
            let volumes = dir.volumes(&resolved.mounts)?;
            match spec.runtime_class {
                RuntimeClass::Gvisor => {
                    self.start_gvisor(id, &dir, &resolved, pulled.as_ref(), &volumes, limits)
                        .await
                }
                RuntimeClass::Bwrap => {
                    self.start_bwrap(
                        id,
                        &dir,
                        &resolved,
                        pulled.as_ref(),
                        &volumes,
                        limits,
                        &mut meta,
                    )
                    .await
                }
            }
        }
        .await;
        // A main process that finishes before the agent's first health check (a quick job)
        // is a workload that ran, not one that failed to start: its status file says how it
        // ended, and `state` reports it.
        let finished_early = dir.run_dir().join(agent::MAIN_STATUS).exists();
        if let Err(e) = started
            && !finished_early
        {
            if let Err(cleanup) = self.teardown_unlocked(id).await {
                tracing::warn!(id = %id, error = %cleanup, "cleanup after a failed create");
            }
            return Err(e);
        }
        Ok(Workload {
            id: id.clone(),
            runtime_class: spec.runtime_class,
            agent_socket: dir.socket(),
        })
    }

    async fn start_gvisor(
        &self,
        id: &WorkloadId,
        dir: &WorkloadDir,
        spec: &WorkloadSpec,
        image: Option<&PulledImage>,
        volumes: &[ResolvedMount],
        limits: ResourceLimits,
    ) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let gvisor = inner
            .gvisor
            .as_ref()
            .map_err(|u| Self::unavailable(RuntimeClass::Gvisor, u))?;
        let (rootfs, read_only_root, host_view) = match image {
            None => (
                dir.host_skeleton(&inner.host_view)?,
                true,
                Some(&inner.host_view),
            ),
            Some(image) => (
                dir.mount_overlay(&image.rootfs)?,
                spec.read_only_rootfs,
                None,
            ),
        };
        let run_dir = dir.run_dir();
        let config = gvisor::oci_config(&BundleInput {
            spec,
            rootfs: &rootfs,
            read_only_root,
            host_view,
            mask_file: &inner.mask_file,
            mask_dir: &inner.mask_dir,
            agent_binary: &inner.config.agent_binary,
            run_dir: &run_dir,
            volumes,
            limits,
            cgroups_path: Some(format!("/{}/{}", inner.cgroup_parent, id)),
        });
        gvisor.start(id, dir, &config).await?;
        let g = gvisor.clone();
        let id2 = id.clone();
        agent::wait_ready(&dir.socket(), inner.config.ready_timeout, move || {
            !g.processes(&id2).is_empty()
        })
        .await
        .map_err(|e| RuntimeError::NotReady {
            id: id.clone(),
            message: e.to_string(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_bwrap(
        &self,
        id: &WorkloadId,
        dir: &WorkloadDir,
        spec: &WorkloadSpec,
        image: Option<&PulledImage>,
        volumes: &[ResolvedMount],
        limits: ResourceLimits,
        meta: &mut WorkloadMeta,
    ) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        inner
            .bwrap
            .as_ref()
            .map_err(|u| Self::unavailable(RuntimeClass::Bwrap, u))?;
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
                crate::workdir::create_mount_points(&merged, &dirs, &[agent::AGENT_PATH])?;
                Some(merged)
            }
        };
        let prepared = self.prepared_bwrap(id, dir, &limits)?;
        self.refill_pool();
        let run_dir = dir.run_dir();
        let args = bwrap::bwrap_args(&BwrapInput {
            spec,
            rootfs: rootfs.as_deref(),
            read_only_root: spec.read_only_rootfs,
            host_view: Some(&inner.host_view),
            mask_file: &inner.mask_file,
            mask_dir: &inner.mask_dir,
            agent_binary: &inner.config.agent_binary,
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
        meta.pid_start_time = bwrap::process_start_time(pid);
        dir.write_meta(meta)?;
        let status_path = dir.bwrap_status();
        agent::wait_ready(&dir.socket(), inner.config.ready_timeout, move || bwrap::read_status(&status_path).exit_code.is_none())
            .await
            .map_err(|e| match e {
                agent::ReadinessError::Exited => RuntimeError::Start {
                    backend: RuntimeClass::Bwrap,
                    id: id.clone(),
                    message: format!(
                        "bwrap exited (code {:?}) before the agent was ready; `paddock doctor` shows what this host lacks",
                        bwrap::read_status(&dir.bwrap_status()).exit_code
                    ),
                },
                other => RuntimeError::NotReady { id: id.clone(), message: other.to_string() },
            })
    }

    fn bwrap_state(dir: &WorkloadDir, meta: &WorkloadMeta) -> WorkloadState {
        if let Some(code) = bwrap::read_status(&dir.bwrap_status()).exit_code {
            return WorkloadState::Exited { code: Some(code) };
        }
        match (meta.pid, meta.pid_start_time) {
            (Some(pid), Some(start)) if bwrap::process_start_time(pid) == Some(start) => {
                WorkloadState::Running
            }
            _ => WorkloadState::Exited { code: None },
        }
    }

    async fn teardown_unlocked(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let dir = self.dir(id);
        let meta = dir.read_meta();
        // Without metadata (torn down already, or a create that died early) only call runsc
        // when it holds something: each call is ~50 ms of CPU.
        let gvisor = match meta.as_ref().map(|m| m.runtime_class) {
            Some(class) => class == RuntimeClass::Gvisor,
            None => inner.gvisor.as_ref().is_ok_and(|g| g.holds(id)),
        };
        if gvisor && let Ok(g) = &inner.gvisor {
            g.destroy(id).await?;
        }
        let cgroup = self.cgroup(id);
        if let Some(meta) = &meta
            && let (Some(pid), Some(start)) = (meta.pid, meta.pid_start_time)
            && bwrap::process_start_time(pid) == Some(start)
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        cgroup.kill_all().await;
        cgroup.remove();
        dir.remove()
    }
}

fn clean_stale_locks(state_root: &Path) {
    let Ok(entries) = std::fs::read_dir(state_root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "lock") && !path.with_extension("state").exists() {
            let _ = std::fs::remove_file(&path);
        }
    }
}

impl Runtime for LocalRuntime {
    fn create<'a>(
        &'a self,
        id: &'a WorkloadId,
        spec: &'a WorkloadSpec,
    ) -> BoxFuture<'a, Result<Workload, RuntimeError>> {
        Box::pin(async move {
            let lock = self.lock(id);
            let _guard = lock.lock().await;
            self.create_locked(id, spec).await
        })
    }

    fn state<'a>(
        &'a self,
        id: &'a WorkloadId,
    ) -> BoxFuture<'a, Result<WorkloadState, RuntimeError>> {
        Box::pin(self.state_of(id))
    }

    fn stop<'a>(&'a self, id: &'a WorkloadId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.stop_in_background(id))
    }

    fn teardown<'a>(&'a self, id: &'a WorkloadId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let lock = self.lock(id);
            let _guard = lock.lock().await;
            self.teardown_unlocked(id).await
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<WorkloadInfo>, RuntimeError>> {
        Box::pin(self.list_all())
    }

    fn alive_workloads(&self) -> std::collections::HashSet<String> {
        LocalRuntime::alive_workloads(self)
    }

    fn main_log(&self, id: &WorkloadId) -> PathBuf {
        LocalRuntime::main_log(self, id)
    }

    fn pull<'a>(
        &'a self,
        image: &'a ImageRef,
        progress: &'a crate::image::ProgressFn,
    ) -> BoxFuture<'a, Result<PulledImage, RuntimeError>> {
        Box::pin(async move { Ok(self.images().pull(image, progress).await?) })
    }

    fn close(&self) {
        self.close_pool();
    }
}

impl LocalRuntime {
    async fn state_of(&self, id: &WorkloadId) -> Result<WorkloadState, RuntimeError> {
        let dir = self.dir(id);
        if !dir.path.exists() {
            return Ok(WorkloadState::Missing);
        }
        if dir.stopping_marker().exists() {
            return Ok(WorkloadState::Stopping);
        }
        let Some(meta) = dir.read_meta() else {
            return Ok(WorkloadState::Exited { code: None });
        };
        let state = match meta.runtime_class {
            RuntimeClass::Bwrap => Self::bwrap_state(&dir, &meta),
            RuntimeClass::Gvisor => match &self.inner.gvisor {
                Ok(g) => match g.state(id).await {
                    WorkloadState::Missing => WorkloadState::Exited { code: None },
                    other => other,
                },
                Err(_) => WorkloadState::Exited { code: None },
            },
        };
        Ok(with_main_status(&dir, state))
    }

    async fn stop_in_background(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        if !dir.path.exists() {
            return Ok(());
        }
        let marker = dir.stopping_marker();
        std::fs::write(&marker, b"").map_err(RuntimeError::io("mark stopping", &marker))?;
        let this = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            if let Err(e) = this.teardown(&id).await {
                tracing::warn!(id = %id, error = %e, "background teardown failed");
            }
        });
        Ok(())
    }

    async fn list_all(&self) -> Result<Vec<WorkloadInfo>, RuntimeError> {
        let entries = std::fs::read_dir(&self.inner.workloads)
            .map_err(RuntimeError::io("list", &self.inner.workloads))?;
        let gvisor_states: HashMap<String, WorkloadState> = match &self.inner.gvisor {
            Ok(g) => g.states().await.into_iter().collect(),
            Err(_) => HashMap::new(),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(id) = WorkloadId::new(name) else {
                continue;
            };
            let dir = self.dir(&id);
            let Some(meta) = dir.read_meta() else {
                continue;
            };
            let state = if dir.stopping_marker().exists() {
                WorkloadState::Stopping
            } else {
                match meta.runtime_class {
                    RuntimeClass::Bwrap => Self::bwrap_state(&dir, &meta),
                    RuntimeClass::Gvisor => gvisor_states
                        .get(id.as_str())
                        .copied()
                        .unwrap_or(WorkloadState::Exited { code: None }),
                }
            };
            let state = with_main_status(&dir, state);
            out.push(WorkloadInfo {
                workload: Workload {
                    id,
                    runtime_class: meta.runtime_class,
                    agent_socket: dir.socket(),
                },
                state,
            });
        }
        out.sort_by(|a, b| a.workload.id.cmp(&b.workload.id));
        Ok(out)
    }
}

/// An exited workload's code from its main process's status file (the agent writes it into the
/// run directory before it exits), when the backend does not know it (gVisor forgets exit codes).
fn with_main_status(dir: &WorkloadDir, state: WorkloadState) -> WorkloadState {
    if !matches!(state, WorkloadState::Exited { code: None }) {
        return state;
    }
    let path = dir.run_dir().join(agent::MAIN_STATUS);
    let code = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("exit_code").and_then(serde_json::Value::as_i64))
        .and_then(|c| i32::try_from(c).ok());
    WorkloadState::Exited { code }
}
