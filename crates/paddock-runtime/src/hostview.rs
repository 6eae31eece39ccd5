//! The built-in `host` image: read-only views of this host's `/usr`, `/bin`, `/lib*`, `/sbin`
//! and `/etc`, with every secret masked, and no `/root` or `/home`. Computed once when the
//! runtime opens; both backends turn it into mounts.
//!
//! Masked: a fixed list (`/etc/shadow`, `/etc/gshadow`, ssh host keys, …) plus every file or
//! directory under `/etc` that is not world-readable, because inside a bwrap sandbox the host's
//! root-owned files appear to belong to the sandbox user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One top-level entry of the host view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    /// Bind the host directory read-only at the same path.
    Bind(PathBuf),
    /// Recreate the host's symlink (`/bin -> usr/bin` on merged-/usr systems).
    Symlink { path: PathBuf, target: PathBuf },
}

/// What the `host` image consists of on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    pub entries: Vec<HostEntry>,
    /// Files to cover with an empty file.
    pub masked_files: Vec<PathBuf>,
    /// Directories to cover with an empty directory.
    pub masked_dirs: Vec<PathBuf>,
}

const TOP_LEVEL: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

const ALWAYS_MASKED: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/security/opasswd",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
    "/etc/ssl/private",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/machine-id",
];

impl HostView {
    /// Inspects this host.
    pub fn scan() -> Self {
        Self::scan_root(Path::new("/"))
    }

    /// Inspects the tree under `root` (a test hook; `/` in production). Paths in the result are
    /// sandbox paths (absolute, as seen from inside).
    pub fn scan_root(root: &Path) -> Self {
        let host = |p: &str| root.join(p.trim_start_matches('/'));
        let mut entries = Vec::new();
        for top in TOP_LEVEL {
            let Ok(meta) = std::fs::symlink_metadata(host(top)) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(host(top)) {
                    entries.push(HostEntry::Symlink {
                        path: PathBuf::from(top),
                        target,
                    });
                }
            } else if meta.is_dir() {
                entries.push(HostEntry::Bind(PathBuf::from(top)));
            }
        }
        let mut masked_files = Vec::new();
        let mut masked_dirs = Vec::new();
        for path in ALWAYS_MASKED {
            match std::fs::symlink_metadata(host(path)) {
                Ok(m) if m.is_dir() => masked_dirs.push(PathBuf::from(path)),
                Ok(m) if m.is_file() => masked_files.push(PathBuf::from(path)),
                _ => {}
            }
        }
        scan_unreadable(
            root,
            Path::new("/etc"),
            0,
            &mut masked_files,
            &mut masked_dirs,
        );
        masked_files.sort();
        masked_files.dedup();
        masked_dirs.sort();
        masked_dirs.dedup();
        // A file under a masked directory is hidden already.
        masked_files.retain(|f| !masked_dirs.iter().any(|d| f.starts_with(d)));
        let dirs = masked_dirs.clone();
        masked_dirs.retain(|d| !dirs.iter().any(|other| other != d && d.starts_with(other)));
        Self {
            entries,
            masked_files,
            masked_dirs,
        }
    }

    /// Directories the sandbox's rootfs needs as mount points for this view.
    pub fn bind_targets(&self) -> impl Iterator<Item = &Path> {
        self.entries.iter().filter_map(|e| match e {
            HostEntry::Bind(p) => Some(p.as_path()),
            HostEntry::Symlink { .. } => None,
        })
    }
}

/// Walks `dir` (a sandbox path under `root`) without following symlinks, collecting entries
/// that other users may not read.
fn scan_unreadable(
    root: &Path,
    dir: &Path,
    depth: usize,
    files: &mut Vec<PathBuf>,
    dirs: &mut Vec<PathBuf>,
) {
    if depth > 8 {
        return;
    }
    let Ok(read) = std::fs::read_dir(root.join(dir.strip_prefix("/").unwrap_or(dir))) else {
        return;
    };
    for entry in read.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let path = dir.join(entry.file_name());
        let mode = meta.permissions().mode();
        if meta.is_dir() {
            if mode & 0o005 != 0o005 {
                dirs.push(path);
            } else {
                scan_unreadable(root, &path, depth + 1, files, dirs);
            }
        } else if meta.is_file() && mode & 0o004 == 0 {
            files.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn secrets_and_unreadable_files_are_masked_and_symlinks_kept() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        fs::create_dir_all(r.join("etc/ssh")).unwrap();
        fs::create_dir_all(r.join("etc/private-dir")).unwrap();
        fs::create_dir_all(r.join("root")).unwrap();
        fs::write(r.join("etc/shadow"), "x").unwrap();
        fs::write(r.join("etc/hosts"), "x").unwrap();
        fs::write(r.join("etc/ssh/ssh_host_ed25519_key"), "k").unwrap();
        fs::write(r.join("etc/app.key"), "k").unwrap();
        fs::set_permissions(r.join("etc/app.key"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(r.join("etc/private-dir/inner"), "k").unwrap();
        fs::set_permissions(
            r.join("etc/private-dir/inner"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        fs::set_permissions(r.join("etc/private-dir"), fs::Permissions::from_mode(0o700)).unwrap();
        let view = HostView::scan_root(r);
        assert!(view.entries.contains(&HostEntry::Bind("/usr".into())));
        assert!(view.entries.contains(&HostEntry::Symlink {
            path: "/bin".into(),
            target: "usr/bin".into()
        }));
        assert!(view.entries.contains(&HostEntry::Bind("/etc".into())));
        assert!(
            !view
                .entries
                .iter()
                .any(|e| matches!(e, HostEntry::Bind(p) if p == Path::new("/root")))
        );
        for f in [
            "/etc/shadow",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/app.key",
        ] {
            assert!(
                view.masked_files.contains(&PathBuf::from(f)),
                "{f}: {view:?}"
            );
        }
        assert!(!view.masked_files.contains(&PathBuf::from("/etc/hosts")));
        assert_eq!(view.masked_dirs, vec![PathBuf::from("/etc/private-dir")]);
        assert!(
            !view
                .masked_files
                .contains(&PathBuf::from("/etc/private-dir/inner"))
        );
    }
}
