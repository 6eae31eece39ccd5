//! [`LocalRuntime`]: the [`Runtime`] of this host. It owns the runtime root directory, the image
//! cache, the host view and cgroups, and does what every workload needs; the isolation itself
//! is one [`Isolation`] backend per runtime class (gVisor, bubblewrap), picked per workload. A
//! missing backend is an error with the remedy, never a fallback.
//!
//! `<root>/`: `images/` (cache), `workloads/<id>/` (see `workdir`), `runsc/` (runsc's private
//! `--root`), `host/` (the empty file and directory that mask host secrets).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::agent::{self, resolve_with_image};
use crate::bwrap::{Bwrap, BwrapIsolation};
use crate::cgroup::{CgroupMode, WorkloadCgroup};
use crate::gvisor::Gvisor;
use crate::hostview::HostView;
use crate::image::{ImageConfig, ImageRef, ImageStore, PulledImage, RegistryConfig};
use crate::isolation::{Found, HostSetup, Isolation, Launch};
use crate::runtime::{
    BoxFuture, Runtime, RuntimeError, Workload, WorkloadId, WorkloadInfo, WorkloadState,
};
use crate::spec::{ResourceLimits, RuntimeClass, WorkloadSpec};
use crate::workdir::{WorkloadDir, WorkloadMeta};

/// How long a new workload's main process must keep running before the create counts as a
/// success: one that ends within it (a missing binary, a bad flag, `exit 3`) is reported as
/// ended, so the sandbox fails instead of being Ready for an instant. Only sandboxes with a main
/// process wait; idle ones (pools, `paddock run`) don't.
pub const MAIN_SETTLE: Duration = Duration::from_millis(150);

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

/// A backend of this host, or why it is missing.
type Backend = Result<Arc<dyn Isolation>, Unavailable>;

#[derive(Debug)]
struct Inner {
    config: RuntimeConfig,
    images: ImageStore,
    host: HostSetup,
    workloads: PathBuf,
    /// One backend per runtime class, or why it is unavailable here.
    backends: Vec<(RuntimeClass, Backend)>,
    locks: Mutex<HashMap<WorkloadId, Arc<tokio::sync::Mutex<()>>>>,
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
        let stat_shim = install_stat_shim(&host)?;
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
        let cgroups = CgroupMode::detect();
        let cgroup_parent = format!("paddock-{tag}");
        let gvisor: Backend = find_runsc(config.runsc.as_deref()).map(|runsc| {
            Arc::new(Gvisor {
                runsc,
                state_root: state_root.clone(),
                id_prefix: format!("p{tag}"),
            }) as Arc<dyn Isolation>
        });
        let bwrap: Backend = find_bwrap(config.bwrap.as_deref()).map(|bwrap| {
            Arc::new(BwrapIsolation::new(
                Bwrap {
                    bwrap,
                    seccomp: Arc::new(seccomp),
                },
                pool_dir,
                config.bwrap_pool,
                cgroups.clone(),
                cgroup_parent.clone(),
            )) as Arc<dyn Isolation>
        });
        WorkloadCgroup::remove_stale(&cgroups, &cgroup_parent, "pool-");
        let runtime = Self {
            inner: Arc::new(Inner {
                images,
                host: HostSetup {
                    host_view: HostView::scan(),
                    mask_file,
                    mask_dir,
                    agent_binary: config.agent_binary.clone(),
                    stat_shim,
                    ready_timeout: config.ready_timeout,
                    cgroups,
                    cgroup_parent,
                },
                workloads,
                backends: vec![(RuntimeClass::Gvisor, gvisor), (RuntimeClass::Bwrap, bwrap)],
                locks: Mutex::new(HashMap::new()),
                config,
            }),
        };
        for (_, backend) in &runtime.inner.backends {
            if let Ok(b) = backend {
                b.prewarm();
            }
        }
        Ok(runtime)
    }

    /// The backend of `class`, or why this host lacks it.
    fn backend(&self, class: RuntimeClass) -> Result<&Arc<dyn Isolation>, RuntimeError> {
        let (_, backend) = self
            .inner
            .backends
            .iter()
            .find(|(c, _)| *c == class)
            .ok_or_else(|| RuntimeError::Unavailable {
                class,
                reason: "no backend serves it".into(),
                remedy: "use gvisor or bwrap".into(),
            })?;
        backend.as_ref().map_err(|u| Self::unavailable(class, u))
    }

    /// The backends this host has.
    fn available(&self) -> impl Iterator<Item = &Arc<dyn Isolation>> {
        self.inner
            .backends
            .iter()
            .filter_map(|(_, b)| b.as_ref().ok())
    }

    /// Ends what the backends keep started ahead (bwrap's pool), before the process exits;
    /// workloads are left running. The pool refills on the next create.
    pub fn close_pool(&self) {
        for b in self.available() {
            b.close();
        }
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
        let mut pids: Vec<i32> = self
            .available()
            .flat_map(|b| b.host_processes(id))
            .collect();
        pids.extend(self.cgroup(id).pids());
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Every workload on this host with its metadata (none for a directory without it).
    fn found(&self) -> Vec<Found> {
        let Ok(entries) = std::fs::read_dir(&self.inner.workloads) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let id = WorkloadId::new(entry.file_name().to_str()?).ok()?;
                let dir = self.dir(&id);
                let meta = dir.read_meta()?;
                Some(Found { id, dir, meta })
            })
            .collect()
    }

    /// Workloads (by id) that are running or stopping, without calling a backend's CLI: for
    /// the periodic check that notices sandboxes dying on their own.
    pub fn alive_workloads(&self) -> HashSet<String> {
        let found = self.found();
        let mut alive: HashSet<String> = found
            .iter()
            .filter(|f| f.dir.stopping_marker().exists())
            .map(|f| f.id.as_str().to_owned())
            .collect();
        for backend in self.available() {
            let mine: Vec<&Found> = found
                .iter()
                .filter(|f| f.meta.runtime_class == backend.class())
                .collect();
            for (f, live) in mine.iter().zip(backend.alive(&mine)) {
                if live {
                    alive.insert(f.id.as_str().to_owned());
                }
            }
        }
        alive
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
        WorkloadCgroup::path_for(
            &self.inner.host.cgroups,
            &self.inner.host.cgroup_parent,
            id.as_str(),
        )
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
        let backend = self.backend(spec.runtime_class)?.clone();
        if inner.config.agent_binary.is_relative() {
            return Err(RuntimeError::AgentBinary {
                path: inner.config.agent_binary.clone(),
                reason:
                    "a relative path (it would be read inside the sandbox); give an absolute one"
                        .into(),
            });
        }
        let agent_ok = std::fs::metadata(&inner.config.agent_binary).map(|m| m.is_file());
        if !matches!(agent_ok, Ok(true)) {
            return Err(RuntimeError::AgentBinary {
                path: inner.config.agent_binary.clone(),
                reason: "not a file".into(),
            });
        }
        if inner.host.cgroups == CgroupMode::None {
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
        dir.create(backend.dir_owner(uid, gid))?;
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
            backend
                .launch(Launch {
                    id,
                    dir: &dir,
                    spec: &resolved,
                    image: pulled.as_ref(),
                    volumes: &volumes,
                    limits,
                    meta: &mut meta,
                    host: &inner.host,
                })
                .await
        }
        .await;
        // A main process that fails at once (not found, a bad flag, a crash on start) must fail
        // the create, not make a sandbox that is Ready for an instant: give it a short window
        // to end before the workload counts as started.
        let status_file = dir.run_dir().join(agent::MAIN_STATUS);
        if started.is_ok() && resolved.command.is_some() {
            let settle_until = std::time::Instant::now() + MAIN_SETTLE;
            while !status_file.exists() && std::time::Instant::now() < settle_until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        // A main process that finishes before the agent's first health check (a quick job)
        // is a workload that ran, not one that failed to start: its status file says how it
        // ended, and `state` reports it.
        let finished_early = status_file.exists();
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

    async fn teardown_unlocked(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        let meta = dir.read_meta();
        // Without metadata (torn down already, or a create that died early) only ask a backend
        // that may still hold something: a runsc call is ~50 ms of CPU.
        for backend in self.available() {
            let ours = match &meta {
                Some(m) => m.runtime_class == backend.class(),
                None => backend.holds(id),
            };
            if ours {
                backend.destroy(id, meta.as_ref()).await?;
            }
        }
        let cgroup = self.cgroup(id);
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

    fn alive_workloads(&self) -> HashSet<String> {
        LocalRuntime::alive_workloads(self)
    }

    fn main_log(&self, id: &WorkloadId) -> PathBuf {
        LocalRuntime::main_log(self, id)
    }

    fn memory_bytes(&self, id: &WorkloadId) -> Option<u64> {
        let host = &self.inner.host;
        WorkloadCgroup::path_for(&host.cgroups, &host.cgroup_parent, id.as_str()).memory_bytes()
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
        let state = match self.backend(meta.runtime_class) {
            Ok(backend) => {
                let found = Found {
                    id: id.clone(),
                    dir: dir.clone(),
                    meta,
                };
                backend
                    .states(&[&found])
                    .await
                    .pop()
                    .unwrap_or(WorkloadState::Exited { code: None })
            }
            Err(_) => WorkloadState::Exited { code: None },
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
        std::fs::read_dir(&self.inner.workloads)
            .map_err(RuntimeError::io("list", &self.inner.workloads))?;
        let found = self.found();
        let mut states: HashMap<String, WorkloadState> = HashMap::new();
        for backend in self.available() {
            let mine: Vec<&Found> = found
                .iter()
                .filter(|f| f.meta.runtime_class == backend.class())
                .filter(|f| !f.dir.stopping_marker().exists())
                .collect();
            if mine.is_empty() {
                continue;
            }
            for (f, state) in mine.iter().zip(backend.states(&mine).await) {
                states.insert(f.id.as_str().to_owned(), state);
            }
        }
        let mut out: Vec<WorkloadInfo> = found
            .into_iter()
            .map(|f| {
                let state = if f.dir.stopping_marker().exists() {
                    WorkloadState::Stopping
                } else {
                    states
                        .get(f.id.as_str())
                        .copied()
                        .unwrap_or(WorkloadState::Exited { code: None })
                };
                WorkloadInfo {
                    state: with_main_status(&f.dir, state),
                    workload: Workload {
                        agent_socket: f.dir.socket(),
                        runtime_class: f.meta.runtime_class,
                        id: f.id,
                    },
                }
            })
            .collect();
        out.sort_by(|a, b| a.workload.id.cmp(&b.workload.id));
        Ok(out)
    }
}

/// Writes gVisor's stat shim into the host directory (replacing an older one, never one that
/// a running sandbox maps: a new file is renamed over it); `None` when it was not built.
fn install_stat_shim(host: &Path) -> Result<Option<PathBuf>, RuntimeError> {
    if crate::gvisor::STAT_SHIM.is_empty() {
        return Ok(None);
    }
    let path = host.join("noautomount.so");
    if std::fs::read(&path).is_ok_and(|b| b == crate::gvisor::STAT_SHIM) {
        return Ok(Some(path));
    }
    let fresh = host.join(format!("noautomount.so.{}", std::process::id()));
    std::fs::write(&fresh, crate::gvisor::STAT_SHIM).map_err(RuntimeError::io("create", &fresh))?;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o444))
        .map_err(RuntimeError::io("chmod", &fresh))?;
    std::fs::rename(&fresh, &path).map_err(RuntimeError::io("rename", &path))?;
    Ok(Some(path))
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
