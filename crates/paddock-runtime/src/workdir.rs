//! One workload's directory on the host and everything in it: metadata, the agent's socket
//! directory, emptyDir volumes, the writable layer (an overlay over the shared image rootfs, or
//! a skeleton root for the `host` image under gVisor), and its removal.
//!
//! `<root>/workloads/<id>/`: `meta.json`, `run/` (→ `/.paddock/run`), `volumes/<name>/`,
//! `rootfs/` (overlay mount point or skeleton), `upper/` + `work/` (overlay), `bundle/` (runsc),
//! `bwrap-status.json`, `stopping` (marker).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hostview::{HostEntry, HostView};
use crate::runtime::RuntimeError;
use crate::spec::{RuntimeClass, VolumeMount, VolumeSource};

/// Persistent facts about a workload, written before it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadMeta {
    pub runtime_class: RuntimeClass,
    pub image: String,
    pub created_unix_ms: u64,
    /// bwrap only: the monitor process and its start time (to survive pid reuse).
    #[serde(default)]
    pub pid: Option<i32>,
    #[serde(default)]
    pub pid_start_time: Option<u64>,
}

/// A mount the backend must add, with host paths resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedMount {
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    Tmpfs {
        target: String,
        size_bytes: Option<u64>,
    },
}

/// Paths of one workload's directory.
#[derive(Debug, Clone)]
pub struct WorkloadDir {
    pub path: PathBuf,
}

impl WorkloadDir {
    pub fn new(workloads_root: &Path, id: &str) -> Self {
        Self {
            path: workloads_root.join(id),
        }
    }
    pub fn meta(&self) -> PathBuf {
        self.path.join("meta.json")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.path.join("run")
    }
    pub fn socket(&self) -> PathBuf {
        self.run_dir().join(crate::agent::SOCKET_NAME)
    }
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }
    pub fn bundle(&self) -> PathBuf {
        self.path.join("bundle")
    }
    pub fn bwrap_status(&self) -> PathBuf {
        self.path.join("bwrap-status.json")
    }
    pub fn stopping_marker(&self) -> PathBuf {
        self.path.join("stopping")
    }

    pub fn read_meta(&self) -> Option<WorkloadMeta> {
        serde_json::from_slice(&std::fs::read(self.meta()).ok()?).ok()
    }

    pub fn write_meta(&self, meta: &WorkloadMeta) -> Result<(), RuntimeError> {
        let bytes = serde_json::to_vec(meta)
            .map_err(|e| RuntimeError::io("encode", self.meta())(std::io::Error::other(e)))?;
        let tmp = self.path.join("meta.json.tmp");
        std::fs::write(&tmp, bytes).map_err(RuntimeError::io("write", &tmp))?;
        std::fs::rename(&tmp, self.meta()).map_err(RuntimeError::io("write", self.meta()))
    }

    /// Creates the directory (failing if it exists) with the run directory, owned by `owner`
    /// (host ids) so the agent can create its socket there.
    pub fn create(&self, owner: Option<(u32, u32)>) -> Result<(), RuntimeError> {
        std::fs::DirBuilder::new()
            .mode(0o711)
            .create(&self.path)
            .map_err(RuntimeError::io("create", &self.path))?;
        let run = self.run_dir();
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&run)
            .map_err(RuntimeError::io("create", &run))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&run, Some(uid), Some(gid))
                .map_err(RuntimeError::io("chown", &run))?;
        }
        Ok(())
    }

    /// Host sources for the spec's volumes: emptyDirs inside this directory (mode 0777, as
    /// Kubernetes makes them), host directories created when missing, `subPath` below either.
    pub fn volumes(&self, mounts: &[VolumeMount]) -> Result<Vec<ResolvedMount>, RuntimeError> {
        let mut out = Vec::with_capacity(mounts.len());
        for mount in mounts {
            let base = match &mount.source {
                VolumeSource::Memory { size_limit } => {
                    out.push(ResolvedMount::Tmpfs {
                        target: mount.container_path.clone(),
                        size_bytes: *size_limit,
                    });
                    continue;
                }
                VolumeSource::EmptyDir => self.path.join("volumes").join(&mount.name),
                VolumeSource::HostDir { path } => path.clone(),
            };
            make_shared_dir(&base)?;
            let source = match &mount.sub_path {
                Some(sub) => {
                    let p = base.join(sub);
                    make_shared_dir(&p)?;
                    p
                }
                None => base,
            };
            out.push(ResolvedMount::Bind {
                source,
                target: mount.container_path.clone(),
                read_only: mount.read_only,
            });
        }
        Ok(out)
    }

    /// Mounts an overlay of the shared image `lower` at `rootfs/`, writes going to `upper/`.
    pub fn mount_overlay(&self, lower: &Path) -> Result<PathBuf, RuntimeError> {
        let (upper, work, merged) = (
            self.path.join("upper"),
            self.path.join("work"),
            self.rootfs(),
        );
        for dir in [&upper, &work, &merged] {
            std::fs::create_dir(dir).map_err(RuntimeError::io("create", dir))?;
        }
        for p in [lower, &upper, &work] {
            let s = p.to_string_lossy();
            if s.contains([',', ':', '\\']) {
                return Err(RuntimeError::io("mount overlay with", p)(
                    std::io::Error::other(
                        "paths with ',' ':' or '\\' cannot be overlay layers; choose a runtime root without them",
                    ),
                ));
            }
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let data = std::ffi::CString::new(options)
            .map_err(|e| RuntimeError::io("mount overlay at", &merged)(std::io::Error::other(e)))?;
        rustix::mount::mount(
            "overlay",
            &merged,
            "overlay",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            Some(data.as_c_str()),
        )
        .map_err(|e| RuntimeError::io("mount overlay at", &merged)(e.into()))?;
        Ok(merged)
    }

    /// A per-workload root for the `host` image under gVisor: mount points for the host view,
    /// its symlinks, and the agent's paths. runsc creates missing mount points in the rootfs, so
    /// it must never be shared.
    pub fn host_skeleton(&self, view: &HostView) -> Result<PathBuf, RuntimeError> {
        let root = self.rootfs();
        let mkdir = |p: &Path| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(p)
                .map_err(RuntimeError::io("create", p))
        };
        mkdir(&root)?;
        for entry in &view.entries {
            match entry {
                HostEntry::Bind(p) => mkdir(&root.join(p.strip_prefix("/").unwrap_or(p)))?,
                HostEntry::Symlink { path, target } => {
                    let at = root.join(path.strip_prefix("/").unwrap_or(path));
                    std::os::unix::fs::symlink(target, &at)
                        .map_err(RuntimeError::io("symlink", &at))?;
                }
            }
        }
        for dir in [
            "tmp",
            "proc",
            "dev",
            "sys",
            ".paddock/bin",
            ".paddock/lib",
            ".paddock/run",
        ] {
            mkdir(&root.join(dir))?;
        }
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .map_err(RuntimeError::io("chmod", root.join("tmp")))?;
        for file in [".paddock/bin/agent", ".paddock/lib/noautomount.so"] {
            let at = root.join(file);
            std::fs::write(&at, b"").map_err(RuntimeError::io("create", &at))?;
        }
        Ok(root)
    }

    /// Unmounts the overlay (if any) and removes the directory. Fails, removing nothing, if a
    /// mount under it cannot be released.
    pub fn remove(&self) -> Result<(), RuntimeError> {
        if !self.path.exists() {
            return Ok(());
        }
        for mount in mounts_under(&self.path) {
            if rustix::mount::unmount(&mount, rustix::mount::UnmountFlags::empty()).is_err() {
                rustix::mount::unmount(&mount, rustix::mount::UnmountFlags::DETACH)
                    .map_err(|e| RuntimeError::io("unmount", &mount)(e.into()))?;
            }
        }
        if let Some(mount) = mounts_under(&self.path).into_iter().next() {
            return Err(RuntimeError::io("unmount", &mount)(std::io::Error::other(
                "still mounted",
            )));
        }
        std::fs::remove_dir_all(&self.path).map_err(RuntimeError::io("remove", &self.path))
    }
}

/// Creates mount points inside an image root before bwrap mounts onto them, so bwrap never has
/// to create them itself (it would follow the image's symlinks on the host). Every component
/// must be a real directory: a symlink on the way is refused, since the image controls them.
pub fn create_mount_points(root: &Path, dirs: &[&str], files: &[&str]) -> Result<(), RuntimeError> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeError::io("open", root)(e.into()))?;
    let refuse = |path: &str, e: rustix::io::Errno| {
        RuntimeError::io("prepare mount point", path)(std::io::Error::other(format!(
            "{e}: every directory on the way must be a real directory in the image, not a symlink"
        )))
    };
    let ensure_dir = |rel: &Path, display: &str| -> Result<OwnedFdPath, RuntimeError> {
        let mut current = rustix::fs::openat(
            &root_fd,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| refuse(display, e))?;
        for component in rel.components() {
            let name = component.as_os_str();
            match rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(refuse(display, e)),
            }
            current = rustix::fs::openat2(
                &current,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                resolve,
            )
            .map_err(|e| refuse(display, e))?;
        }
        Ok(OwnedFdPath(current))
    };
    for dir in dirs {
        ensure_dir(Path::new(dir.trim_start_matches('/')), dir)?;
    }
    for file in files {
        let rel = Path::new(file.trim_start_matches('/'));
        let parent = ensure_dir(rel.parent().unwrap_or(Path::new("")), file)?;
        let Some(name) = rel.file_name() else {
            continue;
        };
        match rustix::fs::openat2(
            &parent.0,
            name,
            OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
            resolve,
        ) {
            Ok(_) => {}
            Err(e) => return Err(refuse(file, e)),
        }
    }
    Ok(())
}

struct OwnedFdPath(std::os::fd::OwnedFd);

fn make_shared_dir(path: &Path) -> Result<(), RuntimeError> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o777)
        .create(path)
        .map_err(RuntimeError::io("create volume", path))?;
    // The umask narrowed it; any sandbox user must be able to write, as with emptyDir.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
        .map_err(RuntimeError::io("chmod", path))
}

/// Mount points at or below `dir` in this mount namespace, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_created_but_never_through_image_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = t.path();
        create_mount_points(root, &["/data/deep", "proc"], &["/.paddock/bin/agent"]).unwrap();
        assert!(root.join("data/deep").is_dir());
        assert!(root.join(".paddock/bin/agent").is_file());
        std::os::unix::fs::symlink(outside.path(), root.join("evil")).unwrap();
        assert!(create_mount_points(root, &["/evil/x"], &[]).is_err());
        assert!(!outside.path().join("x").exists());
        std::os::unix::fs::symlink(outside.path().join("f"), root.join("file-link")).unwrap();
        assert!(create_mount_points(root, &[], &["/file-link"]).is_err());
        assert!(!outside.path().join("f").exists());
    }

    #[test]
    fn mountinfo_octal_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn volumes_resolve_to_emptydirs_host_dirs_subpaths_and_tmpfs() {
        let t = tempfile::tempdir().unwrap();
        let dir = WorkloadDir::new(t.path(), "w1");
        std::fs::create_dir(&dir.path).unwrap();
        let claim = t.path().join("claims/data-w1");
        let mounts = vec![
            VolumeMount {
                name: "scratch".into(),
                container_path: "/s".into(),
                read_only: false,
                sub_path: None,
                source: VolumeSource::EmptyDir,
            },
            VolumeMount {
                name: "data".into(),
                container_path: "/d".into(),
                read_only: true,
                sub_path: Some("x/y".into()),
                source: VolumeSource::HostDir {
                    path: claim.clone(),
                },
            },
            VolumeMount {
                name: "mem".into(),
                container_path: "/m".into(),
                read_only: false,
                sub_path: None,
                source: VolumeSource::Memory {
                    size_limit: Some(1 << 20),
                },
            },
        ];
        let resolved = dir.volumes(&mounts).unwrap();
        assert_eq!(
            resolved[0],
            ResolvedMount::Bind {
                source: dir.path.join("volumes/scratch"),
                target: "/s".into(),
                read_only: false
            }
        );
        assert_eq!(
            resolved[1],
            ResolvedMount::Bind {
                source: claim.join("x/y"),
                target: "/d".into(),
                read_only: true
            }
        );
        assert_eq!(
            resolved[2],
            ResolvedMount::Tmpfs {
                target: "/m".into(),
                size_bytes: Some(1 << 20)
            }
        );
        let mode = std::fs::metadata(dir.path.join("volumes/scratch"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o777);
        dir.remove().unwrap();
        assert!(!dir.path.exists());
        assert!(
            claim.join("x/y").exists(),
            "host directories outlive the workload"
        );
    }
}
