//! Directories as tar streams (`/v1/files/{dir}?format=tar`). [`pack`] writes a directory as it
//! walks it: paths relative to it, symlinks stored as symlinks and never followed, special files
//! skipped. [`extract`] unpacks an uploaded stream entry by entry, confined to the target
//! directory: absolute names, `..` and entries whose parent resolves outside it through a
//! symlink (one the same archive created included: the tar-slip) are refused; files appear at
//! their final path only when complete. Both run on a blocking thread and move bounded chunks
//! through a channel, so no archive is ever held in memory.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::response::Response;
use bytes::{Buf, Bytes};
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use tar::EntryType;
use tokio::sync::mpsc;

use crate::confine::{ConfineError, PathStyle, Root};
use crate::error::ApiError;
use crate::files::temp_sibling;
use crate::state::FallibleChannelBody;

/// Size of one chunk sent to the client, and of one write to disk.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the network and the disk thread, each way.
const CHANNEL_DEPTH: usize = 8;
/// Most bytes read while advancing from one entry to the next: its header blocks plus extension
/// data (GNU long names, PAX records, sparse maps), which the tar reader keeps in memory.
const MAX_ENTRY_METADATA: u64 = (1 << 20) + 64 * 1024;
/// Path bytes remembered as hard link targets; files beyond it cannot be hard-linked to.
const MAX_TRACKED_NAME_BYTES: usize = 16 << 20;
/// Restrictive directory modes applied at the end (so the directory can be filled first);
/// beyond this many they are applied at once.
const MAX_DEFERRED_MODES: usize = 65_536;

/// A 200 response streaming `dir` as a tar (`head_only`: the headers alone).
pub fn tar_response(dir: PathBuf, head_only: bool) -> Response {
    let body = if head_only {
        Body::empty()
    } else {
        pack_stream(dir)
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    response
}

fn pack_stream(dir: PathBuf) -> Body {
    let (tx, body) = FallibleChannelBody::channel(CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(err) = pack(&dir, writer)
            && err.kind() != io::ErrorKind::BrokenPipe
        {
            tracing::warn!(dir = %dir.display(), error = %err, "tar stream aborted");
            let _ = tx.blocking_send(Err(err));
        }
    });
    body
}

/// Sends what is written as body chunks of about [`CHUNK`] bytes.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Exactly `remaining` bytes of a file that may change while it is read: a file that grew is
/// cut, one that shrank is padded with zeros, so the archive stays well-formed.
struct ExactLength {
    file: File,
    remaining: u64,
    shrunk: bool,
}

impl Read for ExactLength {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = if self.shrunk {
            0
        } else {
            self.file.read(&mut buf[..want])?
        };
        let n = if n == 0 {
            self.shrunk = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Whether an error means the entry vanished while the directory was walked (skipped).
fn vanished(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Writes `dir` as a tar to `out`, depth first, entries of a directory sorted by name.
pub fn pack(dir: &Path, out: impl Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    let mut pending: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let listing = match std::fs::read_dir(dir.join(&relative)) {
            Ok(listing) => listing,
            Err(err) if !relative.as_os_str().is_empty() && vanished(&err) => continue,
            Err(err) => return Err(named(err, &relative)),
        };
        let mut names: Vec<OsString> = Vec::new();
        for entry in listing {
            names.push(entry.map_err(|err| named(err, &relative))?.file_name());
        }
        names.sort();
        let mut subdirectories = Vec::new();
        for name in names {
            let path = relative.join(&name);
            let full = dir.join(&path);
            let meta = match std::fs::symlink_metadata(&full) {
                Ok(meta) => meta,
                Err(err) if vanished(&err) => continue,
                Err(err) => return Err(named(err, &path)),
            };
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            header.set_mode(meta.permissions().mode() & 0o7777);
            let file_type = meta.file_type();
            if file_type.is_dir() {
                header.set_size(0);
                builder.append_data(&mut header, &path, io::empty())?;
                subdirectories.push(path);
            } else if file_type.is_file() {
                // O_NOFOLLOW: a file swapped for a symlink since the walk saw it is not read.
                let file = match OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&full)
                {
                    Ok(file) => file,
                    Err(err) if vanished(&err) => continue,
                    Err(err) => return Err(named(err, &path)),
                };
                let data = ExactLength {
                    file,
                    remaining: meta.len(),
                    shrunk: false,
                };
                builder.append_data(&mut header, &path, data)?;
            } else if file_type.is_symlink() {
                let target = match std::fs::read_link(&full) {
                    Ok(target) => target,
                    Err(err) if vanished(&err) => continue,
                    Err(err) => return Err(named(err, &path)),
                };
                header.set_size(0);
                builder.append_link(&mut header, &path, &target)?;
            }
            // Sockets, FIFOs and devices are skipped.
        }
        pending.extend(subdirectories.into_iter().rev());
    }
    builder.into_inner()?.flush()
}

fn named(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// Why an extraction stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The entry is refused (escaping or invalid name, unsupported type, bad link).
    #[error("tar entry {entry:?}: {reason}")]
    BadEntry { entry: String, reason: String },
    /// Writing the entry failed.
    #[error("tar entry {entry:?}: {source}")]
    Io {
        entry: String,
        #[source]
        source: io::Error,
    },
    /// The stream is not a valid tar.
    #[error("invalid tar stream{}: {source}", after_entry(.after))]
    Stream {
        after: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("upload interrupted: {0}")]
    Body(String),
    #[error("cannot use the target directory: {0}")]
    Target(#[source] io::Error),
}

fn after_entry(after: &Option<String>) -> String {
    after
        .as_ref()
        .map(|entry| format!(" after entry {entry:?}"))
        .unwrap_or_default()
}

impl ExtractError {
    pub fn to_api(&self, what: &str) -> ApiError {
        match self {
            Self::BadEntry { .. } | Self::Stream { .. } | Self::Body(_) => {
                ApiError::invalid(self.to_string())
            }
            Self::TooLarge { .. } => ApiError::too_large(self.to_string()),
            Self::Io { entry, source } => {
                ApiError::from_io(source, &format!("tar entry {entry:?}"))
            }
            Self::Target(source) => ApiError::from_io(source, what),
        }
    }
}

/// Extracts the tar stream `body` (at most `limit` bytes) into `dest`, created if missing.
pub async fn extract(dest: PathBuf, body: Body, limit: u64) -> Result<(), ExtractError> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_DEPTH);
    let worker = tokio::task::spawn_blocking(move || extract_blocking(&dest, rx));
    let mut body = body;
    let mut received = 0u64;
    let mut failure = None;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Err(err) => {
                failure = Some(ExtractError::Body(err.to_string()));
                break;
            }
        };
        received += data.len() as u64;
        if received > limit {
            failure = Some(ExtractError::TooLarge { limit });
            break;
        }
        if tx.send(Ok(data)).await.is_err() {
            // The extractor stopped: done, or failed on an entry.
            break;
        }
    }
    if let Some(failure) = &failure {
        // The entry being written fails and its temp file goes away.
        let _ = tx.send(Err(io::Error::other(failure.to_string()))).await;
    }
    drop(tx);
    let result = worker
        .await
        .map_err(|err| ExtractError::Target(io::Error::other(err)))?;
    match failure {
        Some(failure) => Err(failure),
        None => result,
    }
}

/// Counts the bytes read while armed (between two entries) and refuses more than
/// [`MAX_ENTRY_METADATA`], bounding what the tar reader buffers for one entry.
#[derive(Debug, Default)]
struct Meter {
    armed: Cell<bool>,
    read: Cell<u64>,
}

/// The request body as a blocking reader.
struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
    meter: Rc<Meter>,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(err)) => return Err(err),
                Some(Ok(chunk)) => self.chunk = chunk,
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        if self.meter.armed.get() {
            let read = self.meter.read.get() + n as u64;
            self.meter.read.set(read);
            if read > MAX_ENTRY_METADATA {
                return Err(io::Error::other(
                    "extension headers (long names, PAX records, sparse maps) over 1 MiB for one entry are not supported",
                ));
            }
        }
        Ok(n)
    }
}

fn extract_blocking(
    dest: &Path,
    rx: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<(), ExtractError> {
    let dest = Root::open(dest, true).map_err(ExtractError::Target)?;
    let meter = Rc::new(Meter::default());
    let reader = BodyReader {
        rx,
        chunk: Bytes::new(),
        meter: meter.clone(),
    };
    let mut archive = tar::Archive::new(reader);
    let mut extraction = Extraction {
        dest,
        extracted: HashSet::new(),
        tracked_bytes: 0,
        deferred_modes: Vec::new(),
        last: None,
    };
    let mut entries = archive.entries().map_err(|source| ExtractError::Stream {
        after: None,
        source,
    })?;
    loop {
        meter.read.set(0);
        meter.armed.set(true);
        let next = entries.next();
        meter.armed.set(false);
        let Some(entry) = next else {
            break;
        };
        let mut entry = entry.map_err(|source| ExtractError::Stream {
            after: extraction.last.clone(),
            source,
        })?;
        extraction.extract_one(&mut entry)?;
        // Whatever the entry's handler did not read is skipped here, not metered as metadata.
        io::copy(&mut entry, &mut io::sink()).map_err(|source| ExtractError::Stream {
            after: extraction.last.clone(),
            source,
        })?;
    }
    extraction.finish()
}

/// The components of an entry name relative to the target directory (`.` and empty ones
/// dropped), or why the name is refused.
fn entry_parts(name: &str) -> Result<Vec<&str>, &'static str> {
    if name.starts_with('/') {
        return Err("absolute names are refused: entries must be relative to the directory");
    }
    if name.chars().any(char::is_control) {
        return Err("the name contains a NUL or control character");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("`..` components are refused"),
            part => parts.push(part),
        }
    }
    Ok(parts)
}

/// Removes a temp file unless it was renamed into place.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

struct Extraction {
    dest: Root,
    /// Regular files extracted so far (normalised names): the only hard link targets.
    extracted: HashSet<String>,
    tracked_bytes: usize,
    /// Directories whose mode is applied at the end, in order of appearance.
    deferred_modes: Vec<(PathBuf, u32)>,
    /// The last entry name seen, for errors about the stream.
    last: Option<String>,
}

impl Extraction {
    fn bad(entry: &str, reason: impl Into<String>) -> ExtractError {
        ExtractError::BadEntry {
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }

    fn io(entry: &str) -> impl Fn(io::Error) -> ExtractError + '_ {
        move |source| ExtractError::Io {
            entry: entry.to_owned(),
            source,
        }
    }

    /// Where the directory `parents` really is; it must resolve inside `dest`.
    fn resolve_parent(&self, name: &str, parents: &[&str]) -> Result<PathBuf, ExtractError> {
        self.dest
            .resolve(&parents.join("/"), PathStyle::Rooted)
            .map_err(|err| match err {
                ConfineError::Escapes { .. } => Self::bad(
                    name,
                    "its parent directory resolves outside the target directory through a symlink",
                ),
                ConfineError::InvalidCharacter { .. } => {
                    Self::bad(name, "the name contains a NUL or control character")
                }
                ConfineError::Io { source, .. } => Self::io(name)(source),
            })
    }

    /// The directory an entry goes in, created if missing; it must resolve inside `dest`.
    fn parent_dir(&self, name: &str, parents: &[&str]) -> Result<PathBuf, ExtractError> {
        let parent = self.resolve_parent(name, parents)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&parent)
            .map_err(|err| match err.kind() {
                io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => {
                    Self::bad(name, "its parent is not a directory")
                }
                _ => Self::io(name)(err),
            })?;
        Ok(parent)
    }

    fn extract_one<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry.path_bytes();
        let name = match std::str::from_utf8(&raw) {
            Ok(name) => name.to_owned(),
            Err(_) => {
                return Err(Self::bad(
                    &String::from_utf8_lossy(&raw),
                    "the name is not UTF-8",
                ));
            }
        };
        self.last = Some(name.clone());
        let parts = entry_parts(&name).map_err(|reason| Self::bad(&name, reason))?;
        let Some((file_name, parents)) = parts.split_last() else {
            // `.` or `./`: the target directory itself.
            return Ok(());
        };
        let key = parts.join("/");
        let mode = entry
            .header()
            .mode()
            .map_err(|err| Self::bad(&name, format!("invalid mode: {err}")))?;
        let is_directory =
            kind == EntryType::Directory || (kind == EntryType::Regular && name.ends_with('/'));
        let parent = self.parent_dir(&name, parents)?;
        let target = parent.join(file_name);
        if is_directory {
            self.forget(&key);
            return self.make_directory(&name, &target, mode);
        }
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.write_file(&name, entry, &parent, &target, mode)?;
                self.remember(key);
                Ok(())
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| Self::bad(&name, "symlink without a target"))?;
                self.forget(&key);
                self.make_symlink(&name, OsStr::from_bytes(&link), &parent, &target)
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| Self::bad(&name, "hard link without a target"))?;
                let link = std::str::from_utf8(&link)
                    .map_err(|_| Self::bad(&name, "hard link target is not UTF-8"))?
                    .to_owned();
                self.make_hard_link(&name, &link, &parent, &target)?;
                self.remember(key);
                Ok(())
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                tracing::debug!(entry = %name, "skipping special file in tar upload");
                Ok(())
            }
            other => Err(Self::bad(
                &name,
                format!("unsupported entry type {other:?}"),
            )),
        }
    }

    fn remember(&mut self, key: String) {
        if self.tracked_bytes + key.len() <= MAX_TRACKED_NAME_BYTES {
            self.tracked_bytes += key.len();
            self.extracted.insert(key);
        }
    }

    fn forget(&mut self, key: &str) {
        if self.extracted.remove(key) {
            self.tracked_bytes -= key.len();
        }
    }

    /// Refuses to replace an existing directory with a non-directory.
    fn refuse_directory(name: &str, target: &Path) -> Result<(), ExtractError> {
        match std::fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => Err(Self::bad(
                name,
                "a directory of that name exists; remove it first",
            )),
            _ => Ok(()),
        }
    }

    fn make_directory(&mut self, name: &str, target: &Path, mode: u32) -> Result<(), ExtractError> {
        match std::fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                // A file or symlink of that name is replaced (never followed).
                std::fs::remove_file(target).map_err(Self::io(name))?;
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(target)
                    .map_err(Self::io(name))?;
            }
            Err(_) => std::fs::DirBuilder::new()
                .mode(0o755)
                .create(target)
                .map_err(Self::io(name))?,
        }
        let mode = mode & 0o1777;
        // A directory the agent could not fill (no owner write or search) gets its mode last.
        if mode & 0o300 != 0o300 && self.deferred_modes.len() < MAX_DEFERRED_MODES {
            self.deferred_modes.push((target.to_path_buf(), mode));
            return Ok(());
        }
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
            .map_err(Self::io(name))
    }

    fn write_file<R: Read>(
        &self,
        name: &str,
        entry: &mut tar::Entry<'_, R>,
        parent: &Path,
        target: &Path,
        mode: u32,
    ) -> Result<(), ExtractError> {
        Self::refuse_directory(name, target)?;
        let (temp, mut file) = loop {
            let temp = temp_sibling(parent);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
            {
                Ok(file) => break (TempFile(Some(temp)), file),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(Self::io(name)(err)),
            }
        };
        let size = entry.size();
        let mut buf = vec![0u8; CHUNK];
        let mut copied = 0u64;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ExtractError::Stream {
                        after: Some(name.to_owned()),
                        source,
                    });
                }
            };
            file.write_all(&buf[..n]).map_err(Self::io(name))?;
            copied += n as u64;
        }
        if copied != size {
            return Err(ExtractError::Stream {
                after: Some(name.to_owned()),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the archive ends inside this entry ({copied} of {size} bytes)"),
                ),
            });
        }
        // No setuid, setgid or sticky bit; owners are ignored.
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))
            .map_err(Self::io(name))?;
        if let Ok(mtime) = entry.header().mtime() {
            let _ = file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
        }
        drop(file);
        std::fs::rename(temp.path(), target).map_err(Self::io(name))?;
        temp.keep();
        Ok(())
    }

    fn make_symlink(
        &self,
        name: &str,
        link: &OsStr,
        parent: &Path,
        target: &Path,
    ) -> Result<(), ExtractError> {
        Self::refuse_directory(name, target)?;
        let temp = loop {
            let temp = temp_sibling(parent);
            match std::os::unix::fs::symlink(link, &temp) {
                Ok(()) => break TempFile(Some(temp)),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(Self::io(name)(err)),
            }
        };
        std::fs::rename(temp.path(), target).map_err(Self::io(name))?;
        temp.keep();
        Ok(())
    }

    fn make_hard_link(
        &self,
        name: &str,
        link: &str,
        parent: &Path,
        target: &Path,
    ) -> Result<(), ExtractError> {
        let not_earlier = || {
            Self::bad(
                name,
                format!(
                    "hard link target {link:?} is not a regular file extracted earlier from this archive"
                ),
            )
        };
        let link_parts = entry_parts(link)
            .map_err(|reason| Self::bad(name, format!("hard link target {link:?}: {reason}")))?;
        if !self.extracted.contains(&link_parts.join("/")) {
            return Err(not_earlier());
        }
        let Some((link_file, link_parents)) = link_parts.split_last() else {
            return Err(not_earlier());
        };
        let source_dir = self.resolve_parent(name, link_parents)?;
        let source = source_dir.join(link_file);
        match std::fs::symlink_metadata(&source) {
            Ok(meta) if meta.is_file() => {}
            _ => return Err(not_earlier()),
        }
        Self::refuse_directory(name, target)?;
        let temp = loop {
            let temp = temp_sibling(parent);
            match std::fs::hard_link(&source, &temp) {
                Ok(()) => break TempFile(Some(temp)),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(Self::io(name)(err)),
            }
        };
        std::fs::rename(temp.path(), target).map_err(Self::io(name))?;
        temp.keep();
        Ok(())
    }

    /// Applies the deferred directory modes, innermost (latest) first.
    fn finish(self) -> Result<(), ExtractError> {
        for (path, mode) in self.deferred_modes.into_iter().rev() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(
                |source| ExtractError::Io {
                    entry: path.display().to_string(),
                    source,
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_must_stay_relative_and_below() {
        assert_eq!(entry_parts("./a//b/./c").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(entry_parts("dir/").unwrap(), vec!["dir"]);
        assert!(entry_parts("./").unwrap().is_empty());
        assert!(entry_parts("/etc/passwd").is_err());
        assert!(entry_parts("a/../../b").is_err());
        assert!(entry_parts("a/..").is_err());
        assert!(entry_parts("a\nb").is_err());
    }

    #[test]
    fn a_file_that_shrinks_while_packed_is_padded_and_one_that_grows_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let mut shrunk = Vec::new();
        ExactLength {
            file: File::open(&path).unwrap(),
            remaining: 5,
            shrunk: false,
        }
        .read_to_end(&mut shrunk)
        .unwrap();
        assert_eq!(shrunk, b"abc\0\0");
        let mut cut = Vec::new();
        ExactLength {
            file: File::open(&path).unwrap(),
            remaining: 2,
            shrunk: false,
        }
        .read_to_end(&mut cut)
        .unwrap();
        assert_eq!(cut, b"ab");
    }
}
