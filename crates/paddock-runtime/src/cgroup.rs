//! Cgroups for bubblewrap sandboxes (runsc manages its own from the OCI config): detection of
//! the host's mode (v1, hybrid, v2), one group per workload with memory, pids and CPU limits,
//! joining it before exec, killing everything in it, and removing it.
//!
//! On hybrid hosts (v1 controllers plus an empty v2 `unified` mount) the v1 controllers are
//! used. Groups live under `paddock-<tag>/<id>` in each controller, `<tag>` naming the runtime
//! root so that two installations (or test runs) never share a group.

use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spec::ResourceLimits;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How this host exposes cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupMode {
    /// Pure cgroup v2 at `/sys/fs/cgroup`.
    V2,
    /// v1 controllers (`memory`, `pids`, `cpu`), possibly beside an empty v2 `unified` mount.
    V1 { hybrid: bool },
    /// No usable cgroup filesystem.
    None,
}

impl CgroupMode {
    /// Looks at `/sys/fs/cgroup`.
    pub fn detect() -> Self {
        let root = Path::new(CGROUP_ROOT);
        if root.join("cgroup.controllers").exists() {
            Self::V2
        } else if root.join("memory/memory.limit_in_bytes").exists() && root.join("pids").is_dir() {
            Self::V1 {
                hybrid: root.join("unified/cgroup.procs").exists(),
            }
        } else {
            Self::None
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Self::V2 => "cgroup v2 (unified)",
            Self::V1 { hybrid: true } => "hybrid (cgroup v1 controllers + empty v2 mount)",
            Self::V1 { hybrid: false } => "cgroup v1",
            Self::None => "none",
        }
    }
}

/// Why limits could not be set.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct CgroupError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn write(path: PathBuf, value: &str) -> Result<(), CgroupError> {
    std::fs::write(&path, value).map_err(|source| CgroupError { path, source })
}

/// One workload's cgroup (a directory per v1 controller, or one v2 directory).
#[derive(Debug, Clone)]
pub struct WorkloadCgroup {
    dirs: Vec<PathBuf>,
}

impl WorkloadCgroup {
    /// The group's directories for `parent/id`, without creating them.
    pub fn path_for(mode: &CgroupMode, parent: &str, id: &str) -> Self {
        let root = Path::new(CGROUP_ROOT);
        let dirs = match mode {
            CgroupMode::V2 => vec![root.join(parent).join(id)],
            CgroupMode::V1 { .. } => ["memory", "pids", "cpu"]
                .iter()
                .map(|c| root.join(c).join(parent).join(id))
                .collect(),
            CgroupMode::None => Vec::new(),
        };
        Self { dirs }
    }

    /// Creates the group and writes the limits.
    ///
    /// # Errors
    /// The cgroup filesystem refuses (not root, controller missing, …).
    pub fn create(
        mode: &CgroupMode,
        parent: &str,
        id: &str,
        limits: &ResourceLimits,
    ) -> Result<Self, CgroupError> {
        let group = Self::path_for(mode, parent, id);
        if let CgroupMode::V2 = mode {
            let root = Path::new(CGROUP_ROOT);
            std::fs::create_dir_all(root.join(parent)).map_err(|source| CgroupError {
                path: root.join(parent),
                source,
            })?;
            for dir in [root.to_path_buf(), root.join(parent)] {
                // Enabling may fail for a controller already on; the limit writes below verify.
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+memory +pids +cpu");
            }
        }
        for dir in &group.dirs {
            std::fs::create_dir_all(dir).map_err(|source| CgroupError {
                path: dir.clone(),
                source,
            })?;
        }
        let result = group.set_limits(mode, limits);
        if result.is_err() {
            group.remove();
        }
        result.map(|()| group)
    }

    /// Writes the limits (cheap: no task moves).
    ///
    /// # Errors
    /// A limit file refuses the value.
    pub fn set_limits(
        &self,
        mode: &CgroupMode,
        limits: &ResourceLimits,
    ) -> Result<(), CgroupError> {
        match mode {
            CgroupMode::V2 => {
                let Some(dir) = self.dirs.first() else {
                    return Ok(());
                };
                if let Some(m) = limits.memory_bytes {
                    write(dir.join("memory.max"), &m.to_string())?;
                    let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(p) = limits.pids {
                    write(dir.join("pids.max"), &p.to_string())?;
                }
                if let Some(c) = limits.cpu_millis {
                    write(dir.join("cpu.max"), &format!("{} 100000", c * 100))?;
                }
            }
            CgroupMode::V1 { .. } => {
                for dir in &self.dirs {
                    let controller = dir
                        .components()
                        .nth(4)
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .unwrap_or_default();
                    match controller.as_str() {
                        "memory" => {
                            if let Some(m) = limits.memory_bytes {
                                write(dir.join("memory.limit_in_bytes"), &m.to_string())?;
                                // Without swap accounting this file is absent: the RAM limit holds.
                                let _ = std::fs::write(
                                    dir.join("memory.memsw.limit_in_bytes"),
                                    m.to_string(),
                                );
                            }
                        }
                        "pids" => {
                            if let Some(p) = limits.pids {
                                write(dir.join("pids.max"), &p.to_string())?;
                            }
                        }
                        "cpu" => {
                            if let Some(c) = limits.cpu_millis {
                                write(dir.join("cpu.cfs_period_us"), "100000")?;
                                write(dir.join("cpu.cfs_quota_us"), &(c * 100).to_string())?;
                            }
                        }
                        _ => {}
                    }
                }
            }
            CgroupMode::None => {}
        }
        Ok(())
    }

    /// Renames the group to `parent/id` (cgroup v1 allows renames within a parent; moving tasks
    /// is what is slow, renaming is not).
    ///
    /// # Errors
    /// The rename fails (cgroup v2, or the target exists).
    pub fn rename(
        &self,
        mode: &CgroupMode,
        parent: &str,
        id: &str,
    ) -> Result<WorkloadCgroup, CgroupError> {
        let target = Self::path_for(mode, parent, id);
        for (from, to) in self.dirs.iter().zip(&target.dirs) {
            std::fs::rename(from, to).map_err(|source| CgroupError {
                path: to.clone(),
                source,
            })?;
        }
        Ok(target)
    }

    /// Opens each `cgroup.procs` for writing: a child writes `0` to join before it execs.
    ///
    /// # Errors
    /// A group directory vanished or is not writable.
    pub fn open_procs(&self) -> Result<Vec<OwnedFd>, CgroupError> {
        self.dirs
            .iter()
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|source| CgroupError { path, source })
            })
            .collect()
    }

    /// Memory the group's processes use now (v1 `memory.usage_in_bytes`, v2
    /// `memory.current`; page cache included); `None` without the group.
    pub fn memory_bytes(&self) -> Option<u64> {
        let dir = self.dirs.first()?;
        ["memory.current", "memory.usage_in_bytes"]
            .iter()
            .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .and_then(|s| s.trim().parse().ok())
    }

    /// Process ids in the group.
    pub fn pids(&self) -> Vec<i32> {
        let Some(dir) = self.dirs.first() else {
            return Vec::new();
        };
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILLs every process in the group until it is empty (bounded).
    pub async fn kill_all(&self) {
        if let Some(dir) = self.dirs.first()
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.kill"))
        {
            let _ = f.write_all(b"1");
        }
        for _ in 0..200 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Removes the group's directories (they must be empty of processes), and the parent when
    /// it is left empty.
    pub fn remove(&self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir(dir);
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }

    /// Removes empty groups under `parent` whose names start with `prefix` (left by a previous
    /// process's bwrap pool).
    pub fn remove_stale(mode: &CgroupMode, parent: &str, prefix: &str) {
        let probe = Self::path_for(mode, parent, "probe");
        for dir in probe.dirs.iter().filter_map(|d| d.parent()) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().starts_with(prefix) {
                    // Processes left by an earlier instance that died (pre-started bwraps) go
                    // first: a cgroup with processes cannot be removed.
                    let procs = std::fs::read_to_string(entry.path().join("cgroup.procs"))
                        .unwrap_or_default();
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                            let _ =
                                rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                        }
                    }
                    for _ in 0..50 {
                        if std::fs::remove_dir(entry.path()).is_ok() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
        }
    }

    pub fn exists(&self) -> bool {
        self.dirs.iter().any(|d| d.exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_groups_have_one_directory_per_controller() {
        let g = WorkloadCgroup::path_for(&CgroupMode::V1 { hybrid: true }, "paddock-x", "sb1");
        assert_eq!(
            g.dirs,
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/paddock-x/sb1"),
                PathBuf::from("/sys/fs/cgroup/pids/paddock-x/sb1"),
                PathBuf::from("/sys/fs/cgroup/cpu/paddock-x/sb1"),
            ]
        );
        let v2 = WorkloadCgroup::path_for(&CgroupMode::V2, "paddock-x", "sb1");
        assert_eq!(v2.dirs, vec![PathBuf::from("/sys/fs/cgroup/paddock-x/sb1")]);
    }
}
