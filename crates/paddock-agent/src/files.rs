//! sandboxd's REST file API (`/v1/files`, with Range, HEAD, atomic PUT, DELETE), health and
//! metadata, plus the streaming helpers the legacy endpoints share: files are read and written
//! in bounded chunks on a blocking thread, never buffered whole.

use paddock_wire::Code;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::confine::PathStyle;
use crate::error::ApiError;
use crate::state::{ChannelBody, SharedState};

/// Size of one read when streaming a file out.
const READ_CHUNK: usize = 256 * 1024;
/// Chunks in flight between the network and the disk thread, each way.
const CHANNEL_DEPTH: usize = 8;

/// Names containing any of these are never served on `/v1/metadata`.
const SENSITIVE_MARKERS: [&str; 10] = [
    "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CRED", "KEY", "AUTH", "BEARER", "PRIVATE", "CERT",
];

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/files", get(get_file).put(put_file).delete(delete_file))
        .route(
            "/v1/files/",
            get(get_file).put(put_file).delete(delete_file),
        )
        .route(
            "/v1/files/{*path}",
            get(get_file).put(put_file).delete(delete_file),
        )
        .route("/v1/health", get(health))
        .route("/v1/metadata", get(metadata))
}

/// The `{*path}` part of a `/v1/files` URL, percent-decoded (`%2F` included).
fn requested_path(uri: &http::Uri) -> Result<String, ApiError> {
    let raw = uri.path().strip_prefix("/v1/files").unwrap_or("");
    let raw = raw.strip_prefix('/').unwrap_or(raw);
    percent_decode(raw).ok_or_else(|| ApiError::invalid("path is not valid percent-encoded UTF-8"))
}

/// Decodes `%XX` escapes; `None` for bad escapes or non-UTF-8 results.
pub fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

use paddock_wire::{DirectoryListing, FileEntry};

/// RFC 3339 UTC with second precision, as Go's `time.RFC3339` prints it.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn http_date(time: SystemTime) -> Option<HeaderValue> {
    let ts = jiff::Timestamp::try_from(time).ok()?;
    HeaderValue::from_str(&ts.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()).ok()
}

async fn get_file(
    State(state): State<SharedState>,
    method: Method,
    headers: HeaderMap,
    request: Request,
) -> Response {
    match serve_get(&state, &method, &headers, request.uri()).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

/// Whether the `format` query parameter of `/v1/files` asks for a tar stream.
fn tar_format(format: Option<&str>) -> Result<bool, ApiError> {
    match format.filter(|f| !f.is_empty()) {
        None => Ok(false),
        Some("tar") => Ok(true),
        Some(other) => Err(ApiError::invalid(format!(
            "unknown format {other:?}: the only format is `tar` (a directory as a tar stream)"
        ))),
    }
}

#[derive(Debug, Deserialize)]
struct GetQuery {
    format: Option<String>,
}

async fn serve_get(
    state: &SharedState,
    method: &Method,
    headers: &HeaderMap,
    uri: &http::Uri,
) -> Result<Response, ApiError> {
    let query = Query::<GetQuery>::try_from_uri(uri)
        .map_err(|err| ApiError::invalid(format!("invalid query: {}", err.body_text())))?;
    let as_tar = tar_format(query.format.as_deref())?;
    let requested = requested_path(uri)?;
    let target = state.root.resolve(&requested, PathStyle::Rooted)?;
    let meta = std::fs::metadata(&target).map_err(|err| ApiError::from_io(&err, &requested))?;
    if as_tar {
        if !meta.is_dir() {
            return Err(ApiError::invalid(format!(
                "format=tar needs a directory, and {requested:?} is a file: download it without format"
            )));
        }
        return Ok(crate::archive::tar_response(target, method == Method::HEAD));
    }
    if meta.is_dir() {
        let listing = list_directory(state, &target, &requested)?;
        return Ok(Json(listing).into_response());
    }
    let file = File::open(&target).map_err(|err| ApiError::from_io(&err, &requested))?;
    let size = meta.len();
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) => parse_range(value, size),
        None => RangeSpec::Full,
    };
    let (status, start, len) = match range {
        RangeSpec::Full => (StatusCode::OK, 0, size),
        RangeSpec::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeSpec::Unsatisfiable => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                Code::InvalidArgument,
                format!("range not satisfiable: the file has {size} bytes"),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        stream_file(file, start, len)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(modified) = meta.modified().ok().and_then(http_date) {
        out.insert(header::LAST_MODIFIED, modified);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        out.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

fn list_directory(
    state: &SharedState,
    target: &Path,
    requested: &str,
) -> Result<DirectoryListing, ApiError> {
    let reader = std::fs::read_dir(target).map_err(|err| ApiError::from_io(&err, requested))?;
    let mut entries = Vec::new();
    for entry in reader.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let meta = if file_type.is_symlink() {
            // Follow the link only if it stays inside the root; broken or escaping links are omitted.
            let Ok(resolved) = state
                .root
                .resolve(&entry.path().to_string_lossy(), PathStyle::Rooted)
            else {
                continue;
            };
            match std::fs::metadata(resolved) {
                Ok(meta) => meta,
                Err(_) => continue,
            }
        } else {
            match entry.metadata() {
                Ok(meta) => meta,
                Err(_) => continue,
            }
        };
        entries.push(FileEntry {
            name,
            size: meta.len(),
            type_: if meta.is_dir() { "directory" } else { "file" }.to_owned(),
            modified_at: meta.modified().map(rfc3339).unwrap_or_default(),
            mode: format!("{:04o}", meta.permissions().mode() & 0o777),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(DirectoryListing {
        path: format!("/{requested}"),
        entries,
    })
}

/// A parsed `Range` header.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    Full,
    Partial { start: u64, end: u64 },
    Unsatisfiable,
}

/// Parses a single `bytes=` range; several ranges are answered with the whole file.
pub fn parse_range(value: &str, size: u64) -> RangeSpec {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeSpec::Unsatisfiable;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeSpec::Unsatisfiable;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = if first.is_empty() {
        match last.parse::<u64>() {
            Ok(0) | Err(_) => return RangeSpec::Unsatisfiable,
            Ok(suffix) => (size.saturating_sub(suffix), size.saturating_sub(1)),
        }
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return RangeSpec::Unsatisfiable;
        };
        let end = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            match last.parse::<u64>() {
                Ok(end) if end >= start => end.min(size.saturating_sub(1)),
                _ => return RangeSpec::Unsatisfiable,
            }
        };
        (start, end)
    };
    if size == 0 || parsed.0 >= size {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Partial {
        start: parsed.0,
        end: parsed.1,
    }
}

/// Streams `len` bytes of `file` from `start`, read on a blocking thread in bounded chunks.
pub fn stream_file(mut file: File, start: u64, len: u64) -> Body {
    let (tx, body) = ChannelBody::channel(CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        if start > 0 && file.seek(SeekFrom::Start(start)).is_err() {
            return;
        }
        let mut remaining = len;
        while remaining > 0 {
            let want = usize::try_from(remaining)
                .unwrap_or(READ_CHUNK)
                .min(READ_CHUNK);
            let mut buf = vec![0u8; want];
            let n = match file.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.truncate(n);
            remaining -= n as u64;
            if tx.blocking_send(Bytes::from(buf)).is_err() {
                return;
            }
        }
    });
    body
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("upload interrupted: {0}")]
    Body(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl WriteError {
    pub fn to_api(&self, what: &str) -> ApiError {
        match self {
            Self::TooLarge { .. } => ApiError::too_large(self.to_string()),
            Self::Body(_) => ApiError::invalid(self.to_string()),
            Self::Io(err) => ApiError::from_io(err, what),
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temp file name in `dir` (`.sandboxd-tmp-<pid>-<n>`), for writes renamed into place.
pub fn temp_sibling(dir: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".sandboxd-tmp-{}-{n}", std::process::id()))
}

/// Writes a file atomically: data goes to a temp file next to the target (on a blocking
/// thread), which is renamed over the target on [`AtomicWriter::commit`]; dropped uncommitted,
/// the temp file is removed.
#[derive(Debug)]
pub struct AtomicWriter {
    tx: Option<mpsc::Sender<Bytes>>,
    join: Option<JoinHandle<io::Result<()>>>,
    temp: PathBuf,
    target: PathBuf,
    written: u64,
    limit: u64,
}

impl AtomicWriter {
    /// Creates the parent directories (0755) and the temp file with `mode`.
    pub fn create(target: &Path, mode: u32, limit: u64) -> io::Result<Self> {
        let parent = target
            .parent()
            .ok_or_else(|| io::Error::other("target has no parent directory"))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
        let (temp, file) = loop {
            let temp = temp_sibling(parent);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
            {
                Ok(file) => break (temp, file),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        };
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let join = tokio::task::spawn_blocking(move || {
            let mut file = file;
            while let Some(chunk) = rx.blocking_recv() {
                file.write_all(&chunk)?;
            }
            Ok(())
        });
        Ok(Self {
            tx: Some(tx),
            join: Some(join),
            temp,
            target: target.to_path_buf(),
            written: 0,
            limit,
        })
    }

    /// Queues a chunk for writing.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), WriteError> {
        self.written += chunk.len() as u64;
        if self.written > self.limit {
            return Err(WriteError::TooLarge { limit: self.limit });
        }
        let Some(tx) = self.tx.as_ref() else {
            return Err(WriteError::Body("writer closed".into()));
        };
        if tx.send(chunk).await.is_err() {
            return Err(self
                .finish_writer()
                .await
                .err()
                .unwrap_or_else(|| io::Error::other("disk writer stopped"))
                .into());
        }
        Ok(())
    }

    async fn finish_writer(&mut self) -> io::Result<()> {
        self.tx = None;
        match self.join.take() {
            Some(join) => join.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }

    /// Flushes and renames the temp file over the target; returns the bytes written.
    pub async fn commit(mut self) -> Result<u64, WriteError> {
        self.finish_writer().await?;
        std::fs::rename(&self.temp, &self.target)?;
        self.temp = PathBuf::new();
        Ok(self.written)
    }

    /// Streams a whole request body into the file and commits it.
    pub async fn write_body(mut self, body: Body) -> Result<u64, WriteError> {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| WriteError::Body(err.to_string()))?;
            if let Ok(data) = frame.into_data() {
                self.write(data).await?;
            }
        }
        self.commit().await
    }
}

impl Drop for AtomicWriter {
    fn drop(&mut self) {
        self.tx = None;
        if !self.temp.as_os_str().is_empty() {
            let temp = std::mem::take(&mut self.temp);
            let join = self.join.take();
            // Remove after the writer thread let go of the file.
            tokio::spawn(async move {
                if let Some(join) = join {
                    let _ = join.await;
                }
                let _ = std::fs::remove_file(temp);
            });
        }
    }
}

/// Whether a request carries `multipart/form-data`.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

#[derive(Debug, Deserialize)]
struct PutQuery {
    mode: Option<String>,
    format: Option<String>,
}

fn parse_mode(mode: Option<&str>) -> Result<u32, ApiError> {
    let Some(mode) = mode.filter(|m| !m.is_empty()) else {
        return Ok(0o644);
    };
    let valid = mode.len() == 4
        && mode.starts_with('0')
        && mode.bytes().skip(1).all(|b| (b'0'..=b'7').contains(&b));
    if !valid {
        return Err(ApiError::invalid(format!(
            "mode {mode:?} must match ^0[0-7]{{3}}$"
        )));
    }
    u32::from_str_radix(mode, 8).map_err(|err| ApiError::invalid(err.to_string()))
}

async fn put_file(
    State(state): State<SharedState>,
    query: Result<Query<PutQuery>, QueryRejection>,
    request: Request,
) -> Response {
    let query = match crate::process_api::query_or_400(query) {
        Ok(query) => query,
        Err(err) => return err.into_response(),
    };
    match serve_put(&state, query, request).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => err.into_response(),
    }
}

async fn serve_put(state: &SharedState, query: PutQuery, request: Request) -> Result<(), ApiError> {
    if tar_format(query.format.as_deref())? {
        return put_tar(state, query, request).await;
    }
    let mode = parse_mode(query.mode.as_deref())?;
    let requested = requested_path(request.uri())?;
    let target = state.root.resolve(&requested, PathStyle::Rooted)?;
    if target.is_dir() {
        return Err(ApiError::invalid(format!(
            "target path {requested:?} is a directory"
        )));
    }
    let limit = state.config.limits.max_upload_bytes;
    let writer = AtomicWriter::create(&target, mode, limit)
        .map_err(|err| ApiError::from_io(&err, &requested))?;
    if is_multipart(request.headers()) {
        let mut multipart = Multipart::from_request(request, state)
            .await
            .map_err(|err| {
                ApiError::invalid(format!("invalid multipart body: {}", err.body_text()))
            })?;
        loop {
            let field = multipart.next_field().await.map_err(|err| {
                ApiError::invalid(format!("invalid multipart body: {}", err.body_text()))
            })?;
            let Some(field) = field else {
                return Err(ApiError::invalid(
                    "multipart body is missing the required \"file\" part",
                ));
            };
            if field.name() == Some("file") {
                write_field(writer, field, &requested).await?;
                return Ok(());
            }
        }
    }
    writer
        .write_body(request.into_body())
        .await
        .map_err(|err| err.to_api(&requested))?;
    Ok(())
}

/// `PUT /v1/files/{dir}?format=tar`: extracts the body into the directory.
async fn put_tar(state: &SharedState, query: PutQuery, request: Request) -> Result<(), ApiError> {
    if query.mode.as_deref().is_some_and(|m| !m.is_empty()) {
        return Err(ApiError::invalid(
            "mode does not apply to format=tar: entries keep the modes stored in the archive",
        ));
    }
    let requested = requested_path(request.uri())?;
    let target = state.root.resolve(&requested, PathStyle::Rooted)?;
    if let Ok(meta) = std::fs::metadata(&target)
        && !meta.is_dir()
    {
        return Err(ApiError::invalid(format!(
            "{requested:?} is a file: format=tar extracts into a directory"
        )));
    }
    crate::archive::extract(
        target,
        request.into_body(),
        state.config.limits.max_upload_bytes,
    )
    .await
    .map_err(|err| err.to_api(&requested))
}

/// Streams one multipart field into `writer` and commits it.
pub async fn write_field(
    mut writer: AtomicWriter,
    mut field: axum::extract::multipart::Field<'_>,
    what: &str,
) -> Result<u64, ApiError> {
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => writer.write(chunk).await.map_err(|err| err.to_api(what))?,
            Ok(None) => break,
            Err(err) => {
                return Err(ApiError::invalid(format!(
                    "invalid multipart body: {}",
                    err.body_text()
                )));
            }
        }
    }
    writer.commit().await.map_err(|err| err.to_api(what))
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    recursive: Option<String>,
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

async fn delete_file(
    State(state): State<SharedState>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
    request: Request,
) -> Response {
    let query = match crate::process_api::query_or_400(query) {
        Ok(query) => query,
        Err(err) => return err.into_response(),
    };
    match serve_delete(&state, query, request.uri()) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => err.into_response(),
    }
}

fn serve_delete(state: &SharedState, query: DeleteQuery, uri: &http::Uri) -> Result<(), ApiError> {
    let requested = requested_path(uri)?;
    let target = state.root.resolve(&requested, PathStyle::Rooted)?;
    let meta =
        std::fs::symlink_metadata(&target).map_err(|err| ApiError::from_io(&err, &requested))?;
    let recursive = match query.recursive.as_deref().filter(|r| !r.is_empty()) {
        None => false,
        Some(value) => parse_go_bool(value)
            .ok_or_else(|| ApiError::invalid(format!("recursive {value:?} must be a boolean")))?,
    };
    let not_empty = || {
        ApiError::new(
            StatusCode::CONFLICT,
            Code::Conflict,
            "directory is not empty; pass recursive=true to remove it",
        )
    };
    if state.root.is_root(&target) {
        if !recursive {
            return Err(not_empty());
        }
        // The root itself (often a volume mount) stays; only its contents go.
        let entries =
            std::fs::read_dir(&target).map_err(|err| ApiError::from_io(&err, &requested))?;
        for entry in entries.flatten() {
            remove_any(&entry.path(), true).map_err(|err| ApiError::from_io(&err, &requested))?;
        }
        return Ok(());
    }
    let result = if meta.is_dir() {
        remove_any(&target, recursive)
    } else {
        std::fs::remove_file(&target)
    };
    result.map_err(|err| {
        if err.kind() == io::ErrorKind::DirectoryNotEmpty {
            not_empty()
        } else {
            ApiError::from_io(&err, &requested)
        }
    })
}

fn remove_any(path: &Path, recursive: bool) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    if recursive {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_dir(path)
    }
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    uptime_seconds: u64,
}

async fn health(State(state): State<SharedState>) -> Response {
    if state.shutting_down.load(Ordering::Acquire) {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Unavailable,
            "sandboxd is shutting down",
        )
        .into_response();
    }
    Json(Health {
        status: "ok",
        uptime_seconds: state.started.elapsed().as_secs(),
    })
    .into_response()
}

#[derive(Debug, Serialize)]
struct Metadata {
    env: BTreeMap<String, String>,
}

/// Whether an environment variable name looks like it holds a credential.
pub fn is_sensitive_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SENSITIVE_MARKERS
        .iter()
        .any(|marker| upper.contains(marker))
}

async fn metadata(State(state): State<SharedState>) -> Json<Metadata> {
    let prefix = &state.config.metadata_env_prefix;
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(name, _)| name.starts_with(prefix.as_str()) && !is_sensitive_name(name))
        .collect();
    Json(Metadata { env })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_http_says() {
        assert_eq!(
            parse_range("bytes=0-4", 10),
            RangeSpec::Partial { start: 0, end: 4 }
        );
        assert_eq!(
            parse_range("bytes=5-", 10),
            RangeSpec::Partial { start: 5, end: 9 }
        );
        assert_eq!(
            parse_range("bytes=-3", 10),
            RangeSpec::Partial { start: 7, end: 9 }
        );
        assert_eq!(
            parse_range("bytes=8-100", 10),
            RangeSpec::Partial { start: 8, end: 9 }
        );
        assert_eq!(parse_range("bytes=10-", 10), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 10), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("items=1-2", 10), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), RangeSpec::Full);
    }

    #[test]
    fn modes_must_be_four_octal_digits() {
        assert_eq!(parse_mode(None).unwrap(), 0o644);
        assert_eq!(parse_mode(Some("0755")).unwrap(), 0o755);
        for bad in ["755", "0855", "07555", "abcd"] {
            assert!(parse_mode(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn credential_like_names_are_sensitive() {
        for name in [
            "SANDBOX_API_KEY",
            "SANDBOX_token",
            "SANDBOX_DB_PASSWD",
            "SANDBOX_CERT_PEM",
        ] {
            assert!(is_sensitive_name(name), "{name}");
        }
        assert!(!is_sensitive_name("SANDBOX_ID"));
    }

    #[test]
    fn percent_decoding_handles_slashes_and_rejects_garbage() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
