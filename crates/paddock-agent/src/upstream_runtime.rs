//! Upstream's legacy python runtime endpoints (`/`, `/execute`, `/upload`, `/download`,
//! `/list`, `/exists`), wire-compatible: same JSON shapes, status codes and error bodies
//! (`{"message": ...}`), confined to `SANDBOX_BASE_DIR`.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::confine::{ConfineError, PathStyle, Root};
use crate::files::{AtomicWriter, percent_decode, stream_file, write_field};
use crate::process::ProcessError;
use crate::spawn::{SpawnError, SpawnSpec};
use crate::state::{BodyError, SharedState, parse_json, read_body};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/", get(root))
        .route("/execute", post(execute))
        .route("/upload", post(upload))
        .route("/download/{*path}", get(download))
        .route("/list/", get(list))
        .route("/list/{*path}", get(list))
        .route("/exists/", get(exists))
        .route("/exists/{*path}", get(exists))
}

/// A legacy error: `{"message": ...}` with a status.
fn message(status: StatusCode, text: impl Into<String>) -> Response {
    LegacyError(status, text.into()).into_response()
}

/// A legacy error response not yet rendered.
#[derive(Debug)]
struct LegacyError(StatusCode, String);

impl IntoResponse for LegacyError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "message": self.1 }))).into_response()
    }
}

fn access_denied() -> LegacyError {
    LegacyError(StatusCode::FORBIDDEN, "Access denied".to_owned())
}

async fn root() -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "message": "Sandbox Runtime is active."}))
}

/// The legacy root, or the error response explaining why it is unusable.
fn legacy_root(state: &SharedState) -> Result<&Root, LegacyError> {
    state.legacy_root.as_ref().map_err(|why| {
        LegacyError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("SANDBOX_BASE_DIR is unusable: {why}"),
        )
    })
}

/// Resolves a legacy path: leading `/` stripped, confined to the base dir.
fn safe_path(state: &SharedState, raw: &str) -> Result<PathBuf, LegacyError> {
    let root = legacy_root(state)?;
    root.resolve(raw, PathStyle::Legacy)
        .map_err(|err| match err {
            ConfineError::Escapes { .. } | ConfineError::InvalidCharacter { .. } => access_denied(),
            ConfineError::Io { .. } => {
                LegacyError(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
            }
        })
}

/// The decoded `{*path}` after a legacy prefix (`/download/`, `/list/`, `/exists/`).
fn tail_path(request_path: &str, prefix: &str) -> Option<String> {
    percent_decode(request_path.strip_prefix(prefix).unwrap_or(""))
}

#[derive(Debug, Deserialize)]
struct ExecuteRequest {
    command: String,
    timeout_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
struct ExecuteResponse {
    stdout: String,
    stderr: String,
    exit_code: i32,
    timed_out: bool,
}

fn failed(reason: impl std::fmt::Display) -> Json<ExecuteResponse> {
    Json(ExecuteResponse {
        stdout: String::new(),
        stderr: format!("Failed to execute command: {reason}"),
        exit_code: 1,
        timed_out: false,
    })
}

async fn execute(State(state): State<SharedState>, body: Body) -> Response {
    let bytes = match read_body(body, state.config.limits.max_request_body).await {
        Ok(bytes) => bytes,
        Err(err @ BodyError::TooLarge { .. }) => {
            return message(StatusCode::PAYLOAD_TOO_LARGE, err.to_string());
        }
        Err(err) => return message(StatusCode::BAD_REQUEST, err.to_string()),
    };
    let request: ExecuteRequest = match parse_json(&bytes) {
        Ok(request) => request,
        Err(why) => return message(StatusCode::BAD_REQUEST, why),
    };
    let root = match legacy_root(&state) {
        Ok(root) => root.path().to_path_buf(),
        Err(error) => return error.into_response(),
    };
    let argv = match shlex_split(&request.command) {
        Ok(argv) => argv,
        Err(why) => return failed(why).into_response(),
    };
    if argv.is_empty() {
        return failed("list index out of range").into_response();
    }
    let timeout = match request.timeout_seconds {
        Some(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs.min(1e9)),
        _ => state.config.legacy_exec_timeout,
    };
    let program = argv[0].clone();
    let spec = SpawnSpec {
        argv,
        env: Vec::new(),
        cwd: root,
        pty: None,
    };
    let max_output = state.config.limits.max_output_bytes;
    let outcome = match state
        .processes
        .exec(&spec, None, Some(timeout), max_output)
        .await
    {
        Ok(outcome) => outcome,
        Err(ProcessError::TooMany { .. }) => {
            return message(
                StatusCode::TOO_MANY_REQUESTS,
                "too many processes are running; retry later",
            );
        }
        Err(ProcessError::Spawn(SpawnError::NotFound { .. })) => {
            return failed(format!("[Errno 2] No such file or directory: '{program}'"))
                .into_response();
        }
        Err(ProcessError::Spawn(SpawnError::PermissionDenied { .. })) => {
            return failed(format!("[Errno 13] Permission denied: '{program}'")).into_response();
        }
        Err(err) => return failed(err).into_response(),
    };
    let mut stderr = String::from_utf8_lossy(&outcome.stderr.data).into_owned();
    if outcome.exit.timed_out {
        if !stderr.is_empty() && !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        stderr.push_str(&format!(
            "Command timed out after {} seconds",
            timeout.as_secs_f64()
        ));
    }
    // Python's returncode: the exit code, or minus the signal number.
    let exit_code = outcome
        .exit
        .exit_code
        .unwrap_or_else(|| -outcome.exit.signal.unwrap_or(0));
    Json(ExecuteResponse {
        stdout: String::from_utf8_lossy(&outcome.stdout.data).into_owned(),
        stderr,
        exit_code,
        timed_out: outcome.exit.timed_out,
    })
    .into_response()
}

async fn upload(State(state): State<SharedState>, request: Request) -> Response {
    let mut multipart = match Multipart::from_request(request, &state).await {
        Ok(multipart) => multipart,
        Err(err) => {
            return message(
                StatusCode::BAD_REQUEST,
                format!("invalid multipart body: {}", err.body_text()),
            );
        }
    };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    "multipart body is missing the required \"file\" part",
                );
            }
            Err(err) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    format!("invalid multipart body: {}", err.body_text()),
                );
            }
        };
        if field.name() != Some("file") {
            continue;
        }
        let Some(filename) = field.file_name().map(str::to_owned) else {
            return message(
                StatusCode::BAD_REQUEST,
                "the \"file\" part has no filename: it names the destination path",
            );
        };
        let target = match safe_path(&state, &filename) {
            Ok(target) => target,
            Err(error) => return error.into_response(),
        };
        if target.is_dir() {
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("File upload failed: '{filename}' is a directory"),
            );
        }
        let writer =
            match AtomicWriter::create(&target, 0o644, state.config.limits.max_upload_bytes) {
                Ok(writer) => writer,
                Err(err) => {
                    return message(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("File upload failed: {err}"),
                    );
                }
            };
        return match write_field(writer, field, &filename).await {
            Ok(_) => message(
                StatusCode::OK,
                format!("File '{filename}' uploaded successfully."),
            ),
            Err(err)
                if err.status == StatusCode::PAYLOAD_TOO_LARGE
                    || err.status == StatusCode::BAD_REQUEST =>
            {
                message(err.status, err.message)
            }
            Err(err) => message(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("File upload failed: {}", err.message),
            ),
        };
    }
}

async fn download(State(state): State<SharedState>, request: Request) -> Response {
    let Some(raw) = tail_path(request.uri().path(), "/download/") else {
        return message(
            StatusCode::BAD_REQUEST,
            "path is not valid percent-encoded UTF-8",
        );
    };
    let target = match safe_path(&state, &raw) {
        Ok(target) => target,
        Err(error) => return error.into_response(),
    };
    let file = match std::fs::File::open(&target) {
        Ok(file) => file,
        Err(_) => return message(StatusCode::NOT_FOUND, "File not found"),
    };
    let meta = match file.metadata() {
        Ok(meta) if meta.is_file() => meta,
        _ => return message(StatusCode::NOT_FOUND, "File not found"),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut response = Response::new(stream_file(file, 0, meta.len()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
    if let Ok(value) = HeaderValue::from_str(&content_disposition(&name)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// `attachment; filename="x"`, or RFC 5987 `filename*=` for non-ASCII names (as Starlette does).
fn content_disposition(name: &str) -> String {
    if name.is_ascii() && !name.contains(['"', '\\']) && !name.chars().any(char::is_control) {
        format!("attachment; filename=\"{name}\"")
    } else {
        let mut encoded = String::new();
        for byte in name.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                encoded.push(char::from(byte));
            } else {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
        format!("attachment; filename*=utf-8''{encoded}")
    }
}

#[derive(Debug, Serialize)]
struct ListEntry {
    name: String,
    size: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    mod_time: f64,
}

async fn list(State(state): State<SharedState>, request: Request) -> Response {
    let Some(raw) = tail_path(request.uri().path(), "/list/") else {
        return message(
            StatusCode::BAD_REQUEST,
            "path is not valid percent-encoded UTF-8",
        );
    };
    let target = match safe_path(&state, &raw) {
        Ok(target) => target,
        Err(error) => return error.into_response(),
    };
    if !target.is_dir() {
        return message(StatusCode::NOT_FOUND, "Path is not a directory");
    }
    let reader = match std::fs::read_dir(&target) {
        Ok(reader) => reader,
        Err(err) => {
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("List files failed: {err}"),
            );
        }
    };
    let mut entries = Vec::new();
    for entry in reader.flatten() {
        // Like os.scandir + stat(): symlinks are followed; broken ones are skipped.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        let mod_time = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        entries.push(ListEntry {
            name: entry.file_name().to_string_lossy().into_owned(),
            size: meta.len(),
            kind: if meta.is_dir() { "directory" } else { "file" },
            mod_time,
        });
    }
    Json(entries).into_response()
}

async fn exists(State(state): State<SharedState>, request: Request) -> Response {
    let Some(raw) = tail_path(request.uri().path(), "/exists/") else {
        return message(
            StatusCode::BAD_REQUEST,
            "path is not valid percent-encoded UTF-8",
        );
    };
    let target = match safe_path(&state, &raw) {
        Ok(target) => target,
        Err(error) => return error.into_response(),
    };
    Json(json!({"path": raw, "exists": target.exists()})).into_response()
}

/// Splits a command line like Python's `shlex.split` (POSIX mode, no comments).
pub fn shlex_split(line: &str) -> Result<Vec<String>, &'static str> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Between,
        Word,
        Quoted(char),
        Escaped(Option<char>),
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut has_word = false;
    let mut mode = Mode::Between;
    for c in line.chars() {
        match mode {
            Mode::Between | Mode::Word => match c {
                ' ' | '\t' | '\r' | '\n' => {
                    if has_word {
                        words.push(std::mem::take(&mut word));
                        has_word = false;
                    }
                    mode = Mode::Between;
                }
                '\\' => {
                    has_word = true;
                    mode = Mode::Escaped(None);
                }
                '\'' | '"' => {
                    has_word = true;
                    mode = Mode::Quoted(c);
                }
                _ => {
                    word.push(c);
                    has_word = true;
                    mode = Mode::Word;
                }
            },
            Mode::Quoted(quote) => {
                if c == quote {
                    mode = Mode::Word;
                } else if c == '\\' && quote == '"' {
                    mode = Mode::Escaped(Some('"'));
                } else {
                    word.push(c);
                }
            }
            Mode::Escaped(inside) => {
                // Inside double quotes a backslash only escapes `"` and `\`.
                if inside.is_some() && c != '"' && c != '\\' {
                    word.push('\\');
                }
                word.push(c);
                mode = match inside {
                    Some(quote) => Mode::Quoted(quote),
                    None => Mode::Word,
                };
            }
        }
    }
    match mode {
        Mode::Quoted(_) => Err("No closing quotation"),
        Mode::Escaped(_) => Err("No escaped character"),
        Mode::Between | Mode::Word => {
            if has_word {
                words.push(word);
            }
            Ok(words)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shlex_matches_python() {
        let cases: [(&str, &[&str]); 8] = [
            ("echo hello world", &["echo", "hello", "world"]),
            ("echo 'a b' \"c d\"", &["echo", "a b", "c d"]),
            ("echo a\\ b", &["echo", "a b"]),
            (r#"echo "a\"b\n""#, &["echo", "a\"b\\n"]),
            ("echo ''", &["echo", ""]),
            ("echo 'it'\"'\"'s'", &["echo", "it's"]),
            ("  spaced   out  ", &["spaced", "out"]),
            (
                "echo #notacomment $HOME",
                &["echo", "#notacomment", "$HOME"],
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(shlex_split(line).unwrap(), expected, "{line}");
        }
    }

    #[test]
    fn shlex_errors_match_python() {
        assert_eq!(shlex_split("echo 'open"), Err("No closing quotation"));
        assert_eq!(shlex_split("echo trailing\\"), Err("No escaped character"));
    }

    #[test]
    fn content_disposition_quotes_or_encodes() {
        assert_eq!(
            content_disposition("a.txt"),
            "attachment; filename=\"a.txt\""
        );
        assert_eq!(
            content_disposition("é.txt"),
            "attachment; filename*=utf-8''%C3%A9.txt"
        );
    }
}
