//! [`Isolation`]: one way of isolating a workload on this host — gVisor ([`crate::gvisor`]) or
//! bubblewrap ([`crate::bwrap`]). [`LocalRuntime`](crate::LocalRuntime) does what every
//! workload needs (its directory, image, mounts, limits, cgroup, teardown); a backend only
//! starts, inspects and destroys its sandboxes. A new backend (Kata where the host has it, a
//! gVisor that restores from a checkpoint) is one more implementation of this trait.

use std::path::PathBuf;
use std::time::Duration;

use crate::cgroup::CgroupMode;
use crate::hostview::HostView;
use crate::image::PulledImage;
use crate::runtime::{BoxFuture, RuntimeError, WorkloadId, WorkloadState};
use crate::spec::{ResourceLimits, RuntimeClass, WorkloadSpec};
use crate::workdir::{ResolvedMount, WorkloadDir, WorkloadMeta};

/// What every backend shares about this host.
#[derive(Debug)]
pub(crate) struct HostSetup {
    /// The `host` image's view of this machine.
    pub host_view: HostView,
    /// An empty read-only file that masks host secrets.
    pub mask_file: PathBuf,
    /// An empty read-only directory that masks host secrets.
    pub mask_dir: PathBuf,
    /// The static agent, bind-mounted read-only into every sandbox.
    pub agent_binary: PathBuf,
    /// gVisor's stat shim on this host (`None` when it could not be built).
    pub stat_shim: Option<PathBuf>,
    /// How long the agent may take to answer after start.
    pub ready_timeout: Duration,
    /// Which cgroup hierarchy limits workloads.
    pub cgroups: CgroupMode,
    /// This runtime's cgroup (`paddock-<root hash>`), parent of every workload's.
    pub cgroup_parent: String,
}

/// A workload to start, prepared by the runtime: its directory, resolved spec and image, its
/// mounts and limits.
pub(crate) struct Launch<'a> {
    pub id: &'a WorkloadId,
    pub dir: &'a WorkloadDir,
    pub spec: &'a WorkloadSpec,
    pub image: Option<&'a PulledImage>,
    pub volumes: &'a [ResolvedMount],
    pub limits: ResourceLimits,
    /// Written again by a backend that learns more (bwrap: its pid).
    pub meta: &'a mut WorkloadMeta,
    pub host: &'a HostSetup,
}

/// A workload found on this host, with its metadata.
#[derive(Debug)]
pub(crate) struct Found {
    pub id: WorkloadId,
    pub dir: WorkloadDir,
    pub meta: WorkloadMeta,
}

/// One isolation backend.
pub(crate) trait Isolation: Send + Sync + std::fmt::Debug {
    /// The runtime class it serves.
    fn class(&self) -> RuntimeClass;

    /// The owner the workload's directory must have: gVisor checks it against the sandbox
    /// user; bubblewrap maps the sandbox user to ours and needs none.
    fn dir_owner(&self, uid: u32, gid: u32) -> Option<(u32, u32)>;

    /// Starts the workload and returns once its agent answers its health check.
    fn launch<'a>(&'a self, launch: Launch<'a>) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// The states of these workloads (all of this backend), in order. A workload the backend
    /// no longer knows is `Exited { code: None }`.
    fn states<'a>(&'a self, found: &'a [&'a Found]) -> BoxFuture<'a, Vec<WorkloadState>>;

    /// Which of these workloads are alive, cheaply (no call into the backend's CLI): for the
    /// periodic check that notices sandboxes dying on their own.
    fn alive(&self, found: &[&Found]) -> Vec<bool>;

    /// Kills and removes what of the workload this backend runs; the runtime removes its
    /// cgroup and directory afterwards.
    fn destroy<'a>(
        &'a self,
        id: &'a WorkloadId,
        meta: Option<&'a WorkloadMeta>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Whether the backend may still hold something of a workload whose metadata is gone.
    fn holds(&self, id: &WorkloadId) -> bool;

    /// Host pids of the workload's processes outside its cgroup (gVisor's sandbox and gofer).
    fn host_processes(&self, id: &WorkloadId) -> Vec<i32>;

    /// Prepares work ahead of creates (bubblewrap's pool of started processes).
    fn prewarm(&self) {}

    /// Ends what [`Isolation::prewarm`] holds.
    fn close(&self) {}
}
