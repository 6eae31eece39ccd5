//! The file operations agents expect beyond read, write, list and remove (`/v1/fs/...`):
//! stat, mkdir, move, copy, and a directory watch streamed as NDJSON. Every path is confined
//! to the root like the files API; a final symlink is the entry itself (stat, move and copy act
//! on the link, never on what it points to), and no operation follows a link out of the root.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{StatusCode, header};
use paddock_wire::{Code, FileEvent, FileStat};
use rustix::fs::inotify;
use serde::Deserialize;
use tokio::io::unix::AsyncFd;

use crate::confine::PathStyle;
use crate::error::ApiError;
use crate::files::rfc3339;
use crate::state::{ChannelBody, SharedState};

/// At most this many watches at once per agent (each holds an inotify instance).
pub const MAX_WATCHES: usize = 64;
static WATCHES: AtomicUsize = AtomicUsize::new(0);

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/fs/stat", get(stat))
        .route("/v1/fs/mkdir", post(mkdir))
        .route("/v1/fs/move", post(move_entry))
        .route("/v1/fs/copy", post(copy))
        .route("/v1/fs/watch", get(watch))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathQuery {
    path: String,
    #[serde(default)]
    parents: Option<bool>,
    #[serde(default)]
    recursive: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FromTo {
    from: String,
    to: String,
    #[serde(default)]
    overwrite: Option<bool>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::invalid(format!("{e}; see docs/agent-api.md (/v1/fs)")))
}

/// The entry a path names, confined: its parent resolved inside the root (symlinks followed
/// there), its last component kept as is. The root itself names the root.
fn entry(state: &SharedState, user_path: &str) -> Result<PathBuf, ApiError> {
    let user_path = relative(user_path);
    let p = Path::new(user_path);
    let Some(name) = p.file_name().filter(|n| *n != "..") else {
        return Ok(state.root.resolve(user_path, PathStyle::Rooted)?);
    };
    let parent = p
        .parent()
        .map_or(String::new(), |d| d.to_string_lossy().into_owned());
    let dir = state.root.resolve(&parent, PathStyle::Rooted)?;
    Ok(dir.join(name))
}

/// A path as the files API takes it: `/a/b` and `a/b` both name `a/b` under the root.
fn relative(user_path: &str) -> &str {
    user_path.trim_start_matches('/')
}

/// The path as the sandbox sees it (`/` + the path under the root).
fn shown(state: &SharedState, real: &Path) -> String {
    let rel = real.strip_prefix(state.root.path()).unwrap_or(real);
    format!("/{}", rel.to_string_lossy())
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "file"
    } else {
        "other"
    }
}

/// A [`FileStat`] of `real` (`meta` from `symlink_metadata` describes a link as a link).
fn describe(state: &SharedState, real: &Path, meta: &std::fs::Metadata) -> FileStat {
    FileStat {
        path: shown(state, real),
        type_: kind_of(meta).to_owned(),
        size: meta.len(),
        mode: format!("{:04o}", meta.permissions().mode() & 0o7777),
        modified_at: meta.modified().map(rfc3339).unwrap_or_default(),
        symlink_target: meta
            .file_type()
            .is_symlink()
            .then(|| std::fs::read_link(real).ok())
            .flatten()
            .map(|t| t.to_string_lossy().into_owned()),
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

async fn stat(
    State(state): State<SharedState>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Response {
    let run = || -> Result<FileStat, ApiError> {
        let q = query(q)?;
        let real = entry(&state, &q.path)?;
        let meta = std::fs::symlink_metadata(&real).map_err(|e| ApiError::from_io(&e, &q.path))?;
        Ok(describe(&state, &real, &meta))
    };
    match run() {
        Ok(s) => json(StatusCode::OK, &s),
        Err(e) => e.into_response(),
    }
}

async fn mkdir(
    State(state): State<SharedState>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Response {
    let run = || -> Result<FileStat, ApiError> {
        let q = query(q)?;
        let real = entry(&state, &q.path)?;
        let exists = std::fs::symlink_metadata(&real).ok();
        if exists.as_ref().is_some_and(|m| !m.is_dir())
            || (exists.is_some() && q.parents == Some(false))
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                Code::AlreadyExists,
                format!("{} exists", q.path),
            ));
        }
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
        builder.recursive(q.parents.unwrap_or(true));
        match builder.create(&real) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    Code::AlreadyExists,
                    format!("{}: a file of that name exists", q.path),
                ));
            }
            Err(e) => return Err(ApiError::from_io(&e, &q.path)),
            Ok(()) => {}
        }
        // `mkdir -p` through a symlinked parent could leave the root: check where it landed.
        let landed = state.root.resolve(relative(&q.path), PathStyle::Rooted)?;
        let meta = std::fs::metadata(&landed).map_err(|e| ApiError::from_io(&e, &q.path))?;
        Ok(describe(&state, &landed, &meta))
    };
    match run() {
        Ok(s) => json(StatusCode::CREATED, &s),
        Err(e) => e.into_response(),
    }
}

/// Refuses a destination that exists unless `overwrite`, and moving or copying a directory
/// into itself.
fn check_destination(from: &Path, to: &Path, overwrite: bool, asked: &str) -> Result<(), ApiError> {
    if to.starts_with(from) {
        return Err(ApiError::invalid(format!(
            "cannot move or copy a path into itself ({asked})"
        )));
    }
    if !overwrite && std::fs::symlink_metadata(to).is_ok() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            Code::AlreadyExists,
            format!("{asked} exists; pass overwrite=true to replace it"),
        ));
    }
    Ok(())
}

async fn move_entry(
    State(state): State<SharedState>,
    q: Result<Query<FromTo>, QueryRejection>,
) -> Response {
    let run = || -> Result<(), ApiError> {
        let q = query(q)?;
        let from = entry(&state, &q.from)?;
        let to = entry(&state, &q.to)?;
        if state.root.is_root(&from) {
            return Err(ApiError::invalid("the sandbox root cannot be moved"));
        }
        std::fs::symlink_metadata(&from).map_err(|e| ApiError::from_io(&e, &q.from))?;
        check_destination(&from, &to, q.overwrite.unwrap_or(false), &q.to)?;
        std::fs::rename(&from, &to).map_err(|e| ApiError::from_io(&e, &q.to))
    };
    match run() {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Copies `from` to `to`: files with their permission bits, directories recursively,
/// symlinks as links (never followed).
fn copy_any(from: &Path, to: &Path) -> io::Result<u64> {
    let meta = std::fs::symlink_metadata(from)?;
    let t = meta.file_type();
    if t.is_symlink() {
        let target = std::fs::read_link(from)?;
        let _ = std::fs::remove_file(to);
        std::os::unix::fs::symlink(target, to)?;
        Ok(0)
    } else if t.is_dir() {
        std::fs::create_dir_all(to)?;
        std::fs::set_permissions(to, meta.permissions())?;
        let mut total = 0;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            total += copy_any(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(total)
    } else if t.is_file() {
        std::fs::copy(from, to)
    } else {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "only files, directories and symlinks are copied",
        ))
    }
}

async fn copy(
    State(state): State<SharedState>,
    q: Result<Query<FromTo>, QueryRejection>,
) -> Response {
    let state2 = state.clone();
    let run = move || -> Result<(), ApiError> {
        let q = query(q)?;
        let from = entry(&state2, &q.from)?;
        let to = entry(&state2, &q.to)?;
        std::fs::symlink_metadata(&from).map_err(|e| ApiError::from_io(&e, &q.from))?;
        check_destination(&from, &to, q.overwrite.unwrap_or(false), &q.to)?;
        copy_any(&from, &to)
            .map(drop)
            .map_err(|e| ApiError::from_io(&e, &q.to))
    };
    match tokio::task::spawn_blocking(run).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal(format!("copy failed: {e}")).into_response(),
    }
}

/// Releases a watch slot when the stream ends.
struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        WATCHES.fetch_sub(1, Ordering::AcqRel);
    }
}

const WATCH_FLAGS: inotify::WatchFlags = inotify::WatchFlags::CREATE
    .union(inotify::WatchFlags::DELETE)
    .union(inotify::WatchFlags::MODIFY)
    .union(inotify::WatchFlags::CLOSE_WRITE)
    .union(inotify::WatchFlags::ATTRIB)
    .union(inotify::WatchFlags::MOVED_FROM)
    .union(inotify::WatchFlags::MOVED_TO)
    .union(inotify::WatchFlags::DELETE_SELF)
    .union(inotify::WatchFlags::MOVE_SELF)
    .union(inotify::WatchFlags::DONT_FOLLOW)
    .union(inotify::WatchFlags::ONLYDIR);

/// Watched directories by watch descriptor.
struct Watches {
    fd: AsyncFd<std::os::fd::OwnedFd>,
    dirs: HashMap<i32, PathBuf>,
    root_wd: i32,
}

impl Watches {
    fn add(&mut self, dir: &Path, recursive: bool) {
        let Ok(wd) = inotify::add_watch(self.fd.get_ref(), dir, WATCH_FLAGS) else {
            return;
        };
        self.dirs.insert(wd, dir.to_path_buf());
        if recursive && let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                // Never through symlinks.
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    self.add(&e.path(), true);
                }
            }
        }
    }
}

fn event_line(event: &FileEvent) -> Bytes {
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

async fn watch(
    State(state): State<SharedState>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let dir = match state.root.resolve(relative(&q.path), PathStyle::Rooted) {
        Ok(d) => d,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match std::fs::metadata(&dir) {
        Err(e) => return ApiError::from_io(&e, &q.path).into_response(),
        Ok(m) if !m.is_dir() => {
            return ApiError::invalid(format!("{} is not a directory", q.path)).into_response();
        }
        Ok(_) => {}
    }
    if WATCHES.fetch_add(1, Ordering::AcqRel) >= MAX_WATCHES {
        WATCHES.fetch_sub(1, Ordering::AcqRel);
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable,
            format!("at most {MAX_WATCHES} watches at once; end one first"),
        )
        .into_response();
    }
    let slot = Slot;
    let fd = match inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
        .map_err(io::Error::from)
        .and_then(|fd| crate::pty::register_fd(fd, tokio::io::Interest::READABLE))
    {
        Ok(fd) => fd,
        Err(e) => return ApiError::internal(format!("cannot watch: {e}")).into_response(),
    };
    let recursive = q.recursive.unwrap_or(false);
    let mut watches = Watches {
        fd,
        dirs: HashMap::new(),
        root_wd: -1,
    };
    watches.add(&dir, recursive);
    watches.root_wd = watches
        .dirs
        .iter()
        .find(|(_, d)| **d == dir)
        .map_or(-1, |(wd, _)| *wd);
    let (tx, body) = ChannelBody::channel(64);
    let shown_root = shown(&state, &dir);
    tokio::spawn(async move {
        let _slot = slot;
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
        loop {
            let mut guard = tokio::select! {
                () = tx.closed() => return,
                ready = watches.fd.readable() => match ready {
                    Ok(g) => g,
                    Err(_) => return,
                },
            };
            let mut out = Vec::new();
            let mut ended = false;
            let mut new_dirs = Vec::new();
            {
                let mut reader = inotify::Reader::new(watches.fd.get_ref(), &mut buf);
                loop {
                    let ev = match reader.next() {
                        Ok(ev) => ev,
                        Err(e) if e == rustix::io::Errno::AGAIN => {
                            guard.clear_ready();
                            break;
                        }
                        Err(_) => {
                            ended = true;
                            break;
                        }
                    };
                    let flags = ev.events();
                    if ev.wd() == watches.root_wd
                        && flags.intersects(
                            inotify::ReadFlags::DELETE_SELF | inotify::ReadFlags::MOVE_SELF,
                        )
                    {
                        out.push(FileEvent {
                            type_: "error".to_owned(),
                            path: shown_root.clone(),
                            is_dir: true,
                            message: Some("watched directory was removed or renamed".to_owned()),
                        });
                        ended = true;
                        break;
                    }
                    let Some(base) = watches.dirs.get(&ev.wd()).cloned() else {
                        continue;
                    };
                    let Some(name) = ev.file_name().map(|n| n.to_string_lossy().into_owned())
                    else {
                        continue;
                    };
                    if name.is_empty() {
                        continue;
                    }
                    let is_dir = flags.contains(inotify::ReadFlags::ISDIR);
                    let type_ = if flags
                        .intersects(inotify::ReadFlags::MOVED_FROM | inotify::ReadFlags::MOVED_TO)
                    {
                        "rename"
                    } else if flags.contains(inotify::ReadFlags::CREATE) {
                        "create"
                    } else if flags.contains(inotify::ReadFlags::DELETE) {
                        "remove"
                    } else if flags
                        .intersects(inotify::ReadFlags::MODIFY | inotify::ReadFlags::CLOSE_WRITE)
                    {
                        "write"
                    } else if flags.contains(inotify::ReadFlags::ATTRIB) {
                        "chmod"
                    } else {
                        continue;
                    };
                    let full = base.join(&name);
                    if recursive
                        && is_dir
                        && flags
                            .intersects(inotify::ReadFlags::CREATE | inotify::ReadFlags::MOVED_TO)
                    {
                        new_dirs.push(full.clone());
                    }
                    // A change reported twice in a row (MODIFY then CLOSE_WRITE) is one write.
                    let event = FileEvent {
                        type_: type_.to_owned(),
                        path: shown(&state, &full),
                        is_dir,
                        message: None,
                    };
                    if out.last() != Some(&event) {
                        out.push(event);
                    }
                }
            }
            for d in new_dirs {
                watches.add(&d, true);
            }
            for event in &out {
                if tx.send(event_line(event)).await.is_err() {
                    return;
                }
            }
            if ended {
                return;
            }
        }
    });
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}
