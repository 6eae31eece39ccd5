//! Applies one image layer (a tar, gzip-compressed or not) onto a root directory, safely.
//!
//! Hostile tars cannot write outside the root: `..` components are rejected; every parent
//! directory is opened with `openat2(RESOLVE_IN_ROOT)`, so a symlink on the way (from this or an
//! earlier layer) is resolved as if the root were `/`; the entry itself is created with `*at`
//! calls that never follow a symlink. Hard links may only point at files inside the root.
//! Device nodes are skipped. OCI whiteouts (`.wh.NAME`) delete from lower layers and opaque
//! markers (`.wh..wh..opq`) clear a directory's lower-layer contents.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Bounds on what one image may unpack to, against decompression bombs.
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    /// Total bytes of file content.
    pub max_bytes: u64,
    /// Total number of tar entries.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_bytes: 32 << 30,
            max_entries: 2_000_000,
        }
    }
}

/// Running totals over the layers of one image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
    /// Character and block devices, never created.
    pub skipped_devices: u64,
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("entry {entry:?} escapes the image root")]
    Escape { entry: String },
    #[error("hard link {entry:?} → {target:?}: {reason}")]
    BadLink {
        entry: String,
        target: String,
        reason: String,
    },
    #[error("reading the layer: {0}")]
    Read(#[source] std::io::Error),
    #[error("{op} {entry:?}: {source}")]
    Io {
        op: &'static str,
        entry: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the image unpacks to more than {limit} {what}; refusing it")]
    TooLarge { what: &'static str, limit: u64 },
    #[error("{0}")]
    Unsupported(String),
}

/// Applies the layer read from `reader` (gzip detected by magic bytes) onto `root`.
///
/// # Errors
/// [`UnpackError`]: hostile or malformed entries, limits, IO failures.
pub fn unpack_layer<R: BufRead>(
    mut reader: R,
    root: &Path,
    limits: &UnpackLimits,
    stats: &mut UnpackStats,
) -> Result<(), UnpackError> {
    let magic = reader.fill_buf().map_err(UnpackError::Read)?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        apply(
            flate2::bufread::MultiGzDecoder::new(reader),
            root,
            limits,
            stats,
        )
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(UnpackError::Unsupported(
            "zstd-compressed layers are not supported yet; push the image with gzip layers".into(),
        ))
    } else {
        apply(reader, root, limits, stats)
    }
}

fn apply<R: Read>(
    reader: R,
    root: &Path,
    limits: &UnpackLimits,
    stats: &mut UnpackStats,
) -> Result<(), UnpackError> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("open root", root, e))?;
    let mut unpacker = Unpacker {
        root: root_fd,
        limits: *limits,
        is_root: rustix::process::geteuid().is_root(),
        created: HashSet::new(),
        parent_cache: None,
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let entry = entry.map_err(UnpackError::Read)?;
        stats.entries += 1;
        if stats.entries > limits.max_entries {
            return Err(UnpackError::TooLarge {
                what: "entries",
                limit: limits.max_entries,
            });
        }
        unpacker.entry(entry, stats)?;
    }
    Ok(())
}

struct Unpacker {
    root: OwnedFd,
    limits: UnpackLimits,
    is_root: bool,
    /// Paths this layer created, which an opaque marker must keep.
    created: HashSet<PathBuf>,
    /// The last parent directory opened, by its path relative to the root.
    parent_cache: Option<(PathBuf, OwnedFd)>,
}

fn io_err(op: &'static str, entry: impl AsRef<Path>, e: Errno) -> UnpackError {
    UnpackError::Io {
        op,
        entry: entry.as_ref().display().to_string(),
        source: e.into(),
    }
}

/// The entry's path as root-relative normal components; `..` is an escape.
fn clean_path(path: &Path) -> Result<PathBuf, UnpackError> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::Escape {
                    entry: path.display().to_string(),
                });
            }
        }
    }
    Ok(out)
}

impl Unpacker {
    /// Opens (creating as needed) the directory `rel` inside the root, resolving symlinks on
    /// the way as if the root were `/`.
    fn dir(&mut self, rel: &Path) -> Result<&OwnedFd, UnpackError> {
        let hit = self.parent_cache.as_ref().is_some_and(|(p, _)| p == rel);
        if !hit {
            let fd = self.open_dir(rel, true)?;
            self.parent_cache = Some((rel.to_owned(), fd));
        }
        match &self.parent_cache {
            Some((_, fd)) => Ok(fd),
            None => Err(UnpackError::Unsupported(
                "internal: parent cache empty".into(),
            )),
        }
    }

    /// Opens directory `rel` inside the root; creates missing components when `create`.
    fn open_dir(&self, rel: &Path, create: bool) -> Result<OwnedFd, UnpackError> {
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let open = |p: &Path| {
            rustix::fs::openat2(
                &self.root,
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                },
                flags,
                Mode::empty(),
                resolve,
            )
        };
        match open(rel) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(e) => return Err(io_err("open directory", rel, e)),
        }
        // Create the missing components one by one, each inside its resolved parent.
        let mut current = open(Path::new("")).map_err(|e| io_err("open root", rel, e))?;
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            prefix.push(component);
            current = match open(&prefix) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(
                        &current,
                        component.as_os_str(),
                        Mode::from_raw_mode(0o755),
                    ) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_err("create directory", &prefix, e)),
                    }
                    open(&prefix).map_err(|e| io_err("open directory", &prefix, e))?
                }
                Err(e) => return Err(io_err("open directory", &prefix, e)),
            };
        }
        Ok(current)
    }

    fn entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        stats: &mut UnpackStats,
    ) -> Result<(), UnpackError> {
        let raw_path = entry.path().map_err(UnpackError::Read)?.into_owned();
        let path = clean_path(&raw_path)?;
        let Some(name) = path.file_name().map(OsStr::to_owned) else {
            return Ok(()); // the root itself
        };
        let parent = path.parent().map(Path::to_owned).unwrap_or_default();
        let name_bytes = name.as_bytes();
        if name_bytes == OPAQUE_MARKER.as_bytes() {
            return self.opaque(&parent);
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let hidden = OsStr::from_bytes(hidden).to_owned();
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(UnpackError::Escape {
                    entry: raw_path.display().to_string(),
                });
            }
            let dir = self
                .dir(&parent)?
                .try_clone()
                .map_err(|e| UnpackError::Io {
                    op: "dup",
                    entry: parent.display().to_string(),
                    source: e,
                })?;
            return remove_at(&dir, &hidden, &path).map(|_| self.parent_cache = None);
        }
        // A replaced path may be the cached parent (or above it): forget the cache.
        if self
            .parent_cache
            .as_ref()
            .is_some_and(|(p, _)| p.starts_with(&path))
        {
            self.parent_cache = None;
        }
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().map_err(UnpackError::Read)? & 0o7777;
        let uid = header.uid().map_err(UnpackError::Read)?;
        let gid = header.gid().map_err(UnpackError::Read)?;
        let mtime = header.mtime().unwrap_or(0);
        let is_root = self.is_root;
        let dir = self
            .dir(&parent)?
            .try_clone()
            .map_err(|e| UnpackError::Io {
                op: "dup",
                entry: parent.display().to_string(),
                source: e,
            })?;
        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                    Ok(_) => {
                        remove_at(&dir, &name, &path)?;
                        mkdir(&dir, &name, &path)?;
                    }
                    Err(Errno::NOENT) => mkdir(&dir, &name, &path)?,
                    Err(e) => return Err(io_err("stat", &path, e)),
                }
                let fd = rustix::fs::openat(
                    &dir,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err("open directory", &path, e))?;
                // Keep directories traversable by their owner while later entries are written.
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode | 0o700))
                    .map_err(|e| io_err("chmod", &path, e))?;
                if is_root {
                    chown(&fd, uid, gid, &path)?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                replace_non_dir(&dir, &name, &path)?;
                let fd = rustix::fs::openat(
                    &dir,
                    &name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| io_err("create file", &path, e))?;
                let mut file = std::fs::File::from(fd);
                let size = header.entry_size().map_err(UnpackError::Read)?;
                stats.bytes = stats.bytes.saturating_add(size);
                if stats.bytes > self.limits.max_bytes {
                    return Err(UnpackError::TooLarge {
                        what: "bytes",
                        limit: self.limits.max_bytes,
                    });
                }
                std::io::copy(&mut (&mut entry).take(size), &mut file).map_err(|e| {
                    UnpackError::Io {
                        op: "write",
                        entry: path.display().to_string(),
                        source: e,
                    }
                })?;
                if is_root {
                    chown(&file, uid, gid, &path)?;
                }
                // After chown, which clears set-id bits.
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
                    .map_err(|e| io_err("chmod", &path, e))?;
                let time = Timespec {
                    tv_sec: i64::try_from(mtime).unwrap_or(0),
                    tv_nsec: 0,
                };
                let _ = rustix::fs::futimens(
                    &file,
                    &Timestamps {
                        last_access: time,
                        last_modification: time,
                    },
                );
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| {
                        UnpackError::Unsupported(format!(
                            "symlink {} has no target",
                            path.display()
                        ))
                    })?;
                replace_non_dir(&dir, &name, &path)?;
                rustix::fs::symlinkat(target.as_ref(), &dir, &name)
                    .map_err(|e| io_err("create symlink", &path, e))?;
                if is_root {
                    rustix::fs::chownat(
                        &dir,
                        &name,
                        Some(uid_of(uid)),
                        Some(gid_of(gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io_err("chown", &path, e))?;
                }
            }
            tar::EntryType::Link => {
                let target_raw =
                    entry
                        .link_name()
                        .map_err(UnpackError::Read)?
                        .ok_or_else(|| {
                            UnpackError::Unsupported(format!(
                                "hard link {} has no target",
                                path.display()
                            ))
                        })?;
                let target = clean_path(&target_raw).map_err(|_| UnpackError::BadLink {
                    entry: path.display().to_string(),
                    target: target_raw.display().to_string(),
                    reason: "the target escapes the image root".into(),
                })?;
                let Some(target_name) = target.file_name().map(OsStr::to_owned) else {
                    return Err(UnpackError::BadLink {
                        entry: path.display().to_string(),
                        target: target_raw.display().to_string(),
                        reason: "the target is the root".into(),
                    });
                };
                let target_dir = self
                    .open_dir(target.parent().unwrap_or(Path::new("")), false)
                    .map_err(|e| UnpackError::BadLink {
                        entry: path.display().to_string(),
                        target: target_raw.display().to_string(),
                        reason: format!("the target's directory is not in the image ({e})"),
                    })?;
                match rustix::fs::statat(&target_dir, &target_name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {}
                    Ok(_) => {
                        return Err(UnpackError::BadLink {
                            entry: path.display().to_string(),
                            target: target_raw.display().to_string(),
                            reason: "the target is a directory".into(),
                        });
                    }
                    Err(e) => {
                        return Err(UnpackError::BadLink {
                            entry: path.display().to_string(),
                            target: target_raw.display().to_string(),
                            reason: format!("the target does not exist ({e})"),
                        });
                    }
                }
                if target == path {
                    return Ok(());
                }
                replace_non_dir(&dir, &name, &path)?;
                rustix::fs::linkat(&target_dir, &target_name, &dir, &name, AtFlags::empty())
                    .map_err(|e| io_err("create hard link", &path, e))?;
            }
            tar::EntryType::Fifo => {
                replace_non_dir(&dir, &name, &path)?;
                rustix::fs::mknodat(&dir, &name, FileType::Fifo, Mode::from_raw_mode(mode), 0)
                    .map_err(|e| io_err("create fifo", &path, e))?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                stats.skipped_devices += 1;
                return Ok(());
            }
            // PAX and GNU metadata entries are consumed by the tar reader; others carry no file.
            _ => return Ok(()),
        }
        self.created.insert(path);
        Ok(())
    }

    /// `.wh..wh..opq` in `dir`: remove everything lower layers put there.
    fn opaque(&mut self, dir_rel: &Path) -> Result<(), UnpackError> {
        let dir = self.open_dir(dir_rel, true)?;
        let listing = rustix::fs::openat(
            &dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open directory", dir_rel, e))?;
        let mut names: Vec<OsString> = Vec::new();
        for item in rustix::fs::Dir::read_from(&listing).map_err(|e| io_err("list", dir_rel, e))? {
            let item = item.map_err(|e| io_err("list", dir_rel, e))?;
            let name = OsStr::from_bytes(item.file_name().to_bytes());
            if name != "." && name != ".." && !self.created.contains(&dir_rel.join(name)) {
                names.push(name.to_owned());
            }
        }
        for name in names {
            remove_at(&dir, &name, &dir_rel.join(&name))?;
        }
        self.parent_cache = None;
        Ok(())
    }
}

fn uid_of(id: u64) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u32::try_from(id).unwrap_or(65534))
}

fn gid_of(id: u64) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(u32::try_from(id).unwrap_or(65534))
}

fn chown<Fd: AsFd>(fd: Fd, uid: u64, gid: u64, path: &Path) -> Result<(), UnpackError> {
    rustix::fs::fchown(fd, Some(uid_of(uid)), Some(gid_of(gid)))
        .map_err(|e| io_err("chown", path, e))
}

fn mkdir(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<(), UnpackError> {
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755))
        .map_err(|e| io_err("create directory", path, e))
}

/// Removes whatever non-directory is at `name` so a new entry can take its place; a directory
/// there is removed recursively.
fn replace_non_dir(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<(), UnpackError> {
    remove_at(dir, name, path).map(|_| ())
}

/// Removes `name` in `dir` (recursively for directories, never following symlinks).
/// Returns whether something was there.
fn remove_at(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<bool, UnpackError> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(true),
        Err(Errno::NOENT) => return Ok(false),
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(e) => return Err(io_err("remove", path, e)),
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("open directory", path, e))?;
    let mut children = Vec::new();
    for item in rustix::fs::Dir::read_from(&sub).map_err(|e| io_err("list", path, e))? {
        let item = item.map_err(|e| io_err("list", path, e))?;
        let child = OsStr::from_bytes(item.file_name().to_bytes());
        if child != "." && child != ".." {
            children.push(child.to_owned());
        }
    }
    for child in children {
        remove_at(&sub, &child, &path.join(&child))?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
        .map_err(|e| io_err("remove directory", path, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Builds a tar in memory from (path, kind) pairs; raw headers so hostile names are possible.
    enum Item<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
        Device(&'a str),
    }

    fn tar(items: &[Item<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for item in items {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_600_000_000);
            let (path, data): (&str, &[u8]) = match item {
                Item::File(p, d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    (p, d)
                }
                Item::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    (p, &[])
                }
                Item::Symlink(p, t) | Item::HardLink(p, t) => {
                    h.set_entry_type(if matches!(item, Item::Symlink(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    h.set_size(0);
                    set_raw_link(&mut h, t);
                    (p, &[])
                }
                Item::Device(p) => {
                    h.set_entry_type(tar::EntryType::Char);
                    h.set_size(0);
                    (p, &[])
                }
            };
            set_raw_path(&mut h, path);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn set_raw_path(h: &mut tar::Header, path: &str) {
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
    }

    fn set_raw_link(h: &mut tar::Header, target: &str) {
        let link = &mut h.as_old_mut().linkname;
        link.fill(0);
        link[..target.len()].copy_from_slice(target.as_bytes());
    }

    fn unpack(root: &Path, items: &[Item<'_>]) -> Result<UnpackStats, UnpackError> {
        let data = tar(items);
        let mut stats = UnpackStats::default();
        unpack_layer(&data[..], root, &UnpackLimits::default(), &mut stats)?;
        Ok(stats)
    }

    #[test]
    fn files_dirs_symlinks_and_hard_links_are_created() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        unpack(
            root,
            &[
                Item::Dir("etc/"),
                Item::File("etc/hostname", b"box\n"),
                Item::File("bin/busybox", b"ELF"),
                Item::Symlink("bin/sh", "busybox"),
                Item::HardLink("bin/ash", "bin/busybox"),
            ],
        )
        .unwrap();
        assert_eq!(fs::read(root.join("etc/hostname")).unwrap(), b"box\n");
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(fs::read(root.join("bin/ash")).unwrap(), b"ELF");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(root.join("bin/ash")).unwrap().ino(),
            fs::metadata(root.join("bin/busybox")).unwrap().ino()
        );
        assert_eq!(
            fs::metadata(root.join("etc/hostname")).unwrap().mtime(),
            1_600_000_000
        );
    }

    #[test]
    fn dot_dot_entries_are_rejected() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        let err = unpack(&root, &[Item::File("../evil", b"x")]).unwrap_err();
        assert!(matches!(err, UnpackError::Escape { .. }), "{err}");
        assert!(!t.path().join("evil").exists());
    }

    #[test]
    fn writes_through_a_symlink_stay_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // A layer plants a symlink to an absolute host path, then writes through it.
        let target = outside.path().to_str().unwrap();
        // Resolved as if the root were `/`, where the target does not exist: refused.
        let result = unpack(
            root,
            &[
                Item::Symlink("escape", target),
                Item::File("escape/pwned", b"x"),
            ],
        );
        assert!(result.is_err());
        assert!(
            !outside.path().join("pwned").exists(),
            "wrote outside the root"
        );
        // An absolute link to a directory that exists inside the root is followed there.
        unpack(
            root,
            &[
                Item::Dir("inside/"),
                Item::Symlink("abs", "/inside"),
                Item::File("abs/f", b"x"),
            ],
        )
        .unwrap();
        assert!(root.join("inside/f").exists());
        // Relative climbing is clamped at the root too.
        unpack(
            root,
            &[
                Item::Symlink("up", "../../../../.."),
                Item::File("up/tmp-pwned", b"x"),
            ],
        )
        .unwrap();
        assert!(root.join("tmp-pwned").exists());
    }

    #[test]
    fn a_file_entry_replaces_a_symlink_instead_of_following_it() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"original").unwrap();
        let t = tempfile::tempdir().unwrap();
        unpack(
            t.path(),
            &[
                Item::Symlink("f", victim.to_str().unwrap()),
                Item::File("f", b"new"),
            ],
        )
        .unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"original");
        assert_eq!(fs::read(t.path().join("f")).unwrap(), b"new");
    }

    #[test]
    fn hard_links_to_outside_or_missing_targets_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        fs::write(&secret, b"s").unwrap();
        let t = tempfile::tempdir().unwrap();
        let err = unpack(
            t.path(),
            &[Item::HardLink(
                "l",
                "../../../../../../../../../../../../etc/passwd",
            )],
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::BadLink { .. }), "{err}");
        // An absolute target is resolved inside the root, where it does not exist.
        let err = unpack(t.path(), &[Item::HardLink("l", secret.to_str().unwrap())]).unwrap_err();
        assert!(matches!(err, UnpackError::BadLink { .. }), "{err}");
        // Through a symlink planted by the layer: still resolved inside the root.
        let err = unpack(
            t.path(),
            &[
                Item::Symlink("o", outside.path().to_str().unwrap()),
                Item::HardLink("l2", "o/secret"),
            ],
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::BadLink { .. }), "{err}");
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_layers() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        unpack(
            root,
            &[
                Item::File("a/keep", b"1"),
                Item::File("a/gone", b"1"),
                Item::File("o/old1", b"1"),
                Item::Dir("o/olddir/"),
                Item::File("o/olddir/x", b"1"),
            ],
        )
        .unwrap();
        unpack(
            root,
            &[
                Item::File("a/.wh.gone", b""),
                Item::File("o/new", b"2"),
                Item::File("o/.wh..wh..opq", b""),
            ],
        )
        .unwrap();
        assert!(root.join("a/keep").exists());
        assert!(!root.join("a/gone").exists());
        assert!(!root.join("a/.wh.gone").exists());
        assert!(!root.join("o/old1").exists());
        assert!(!root.join("o/olddir").exists());
        assert!(
            root.join("o/new").exists(),
            "the opaque marker keeps this layer's own entries"
        );
        assert!(!root.join("o/.wh..wh..opq").exists());
    }

    #[test]
    fn device_nodes_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let stats = unpack(t.path(), &[Item::Device("dev/mem")]).unwrap();
        assert_eq!(stats.skipped_devices, 1);
        assert!(!t.path().join("dev/mem").exists());
    }

    #[test]
    fn gzip_layers_are_detected_and_limits_enforced() {
        use std::io::Write;
        let t = tempfile::tempdir().unwrap();
        let data = tar(&[Item::File("big", &[7u8; 4096])]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let mut stats = UnpackStats::default();
        unpack_layer(&gz[..], t.path(), &UnpackLimits::default(), &mut stats).unwrap();
        assert_eq!(fs::read(t.path().join("big")).unwrap().len(), 4096);
        let tight = UnpackLimits {
            max_bytes: 1000,
            max_entries: 10,
        };
        let err = unpack_layer(&gz[..], t.path(), &tight, &mut UnpackStats::default()).unwrap_err();
        assert!(matches!(err, UnpackError::TooLarge { .. }), "{err}");
    }
}
