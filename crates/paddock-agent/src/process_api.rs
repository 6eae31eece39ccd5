//! paddock's own process API (`/v1/exec`, `/v1/processes...`): buffered exec, processes
//! streamed as NDJSON or over WebSocket, background processes with replay, stdin, signals,
//! resize and wait. The wire format is documented in `docs/agent-api.md`.

use paddock_wire::Code;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use rustix::process::Signal;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::confine::PathStyle;
use crate::error::ApiError;
use crate::output::{EncodedData, StreamKind, decode_data};
use crate::process::{
    ExitInfo, FollowItem, Follower, ForegroundGuard, ManagedProcess, ProcessInfo, StartSpec,
};
use crate::pty::TermSize;
use crate::spawn::SpawnSpec;
use crate::state::{ChannelBody, SharedState, read_body};

/// Longest a `wait` request may block.
const MAX_WAIT: Duration = Duration::from_secs(3600);

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/exec", post(exec))
        .route("/v1/processes", post(start).get(list))
        .route("/v1/processes/ws", get(start_ws))
        .route("/v1/processes/{id}", get(info).delete(kill_and_forget))
        .route("/v1/processes/{id}/output", get(output))
        .route("/v1/processes/{id}/ws", get(attach_ws))
        .route("/v1/processes/{id}/stdin", post(stdin))
        .route("/v1/processes/{id}/signal", post(signal))
        .route("/v1/processes/{id}/resize", post(resize))
        .route("/v1/processes/{id}/wait", get(wait))
}

/// A process to run, shared by exec, start and the WebSocket start message (the wire type).
pub use paddock_wire::ProcessRequest;

/// What the agent makes of a [`ProcessRequest`].
trait ProcessRequestExt {
    /// The command, environment and working directory to spawn, checked and confined.
    fn spawn_spec(&self, state: &SharedState) -> Result<SpawnSpec, ApiError>;
    /// The initial stdin, decoded.
    fn stdin_bytes(&self) -> Result<Option<Vec<u8>>, ApiError>;
    /// The timeout.
    fn timeout(&self) -> Option<Duration>;
    /// Everything a started process needs.
    fn start_spec(&self, state: &SharedState) -> Result<StartSpec, ApiError>;
}

impl ProcessRequestExt for ProcessRequest {
    fn spawn_spec(&self, state: &SharedState) -> Result<SpawnSpec, ApiError> {
        let argv = match (&self.argv, &self.command) {
            (Some(argv), None) => argv.clone(),
            (None, Some(command)) => vec!["/bin/sh".to_owned(), "-c".to_owned(), command.clone()],
            _ => {
                return Err(ApiError::invalid(
                    "give exactly one of `argv` (a list) or `command` (a shell string)",
                ));
            }
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err(ApiError::invalid(
                "`argv` is empty: give at least the program to run",
            ));
        }
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(ApiError::invalid("`argv` contains a NUL character"));
        }
        for (name, value) in &self.env {
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                return Err(ApiError::invalid(format!(
                    "invalid environment variable {name:?}: names must be non-empty without `=` or NUL, values without NUL"
                )));
            }
        }
        let cwd = match &self.cwd {
            Some(cwd) => state.root.resolve(cwd, PathStyle::Rooted)?,
            None => state.workdir.clone(),
        };
        if !cwd.is_dir() {
            return Err(ApiError::not_found(format!(
                "cwd {:?} is not an existing directory",
                self.cwd.as_deref().unwrap_or("")
            )));
        }
        if let Some(pty) = self.pty
            && (pty.cols == 0 || pty.rows == 0)
        {
            return Err(ApiError::invalid(
                "`pty.cols` and `pty.rows` must be at least 1",
            ));
        }
        Ok(SpawnSpec {
            argv,
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cwd,
            pty: self.pty,
        })
    }

    fn stdin_bytes(&self) -> Result<Option<Vec<u8>>, ApiError> {
        self.stdin
            .as_deref()
            .map(|data| {
                decode_data(data, self.stdin_encoding.as_deref()).map_err(ApiError::invalid)
            })
            .transpose()
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }

    fn start_spec(&self, state: &SharedState) -> Result<StartSpec, ApiError> {
        Ok(StartSpec {
            spawn: self.spawn_spec(state)?,
            timeout: self.timeout(),
            stdin: self.stdin_bytes()?,
            keep_stdin_open: self.keep_stdin_open,
            background: self.background,
        })
    }
}

/// Unwraps query parameters, turning a rejection into a JSON 400 naming the parameter.
pub fn query_or_400<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|err| ApiError::invalid(err.body_text()))
}

fn body_error(err: crate::state::BodyError) -> ApiError {
    match err {
        crate::state::BodyError::TooLarge { .. } => ApiError::too_large(err.to_string()),
        crate::state::BodyError::Read(_) => ApiError::invalid(err.to_string()),
    }
}

/// Reads and parses a JSON request body within the configured limit.
pub async fn json_body<T: serde::de::DeserializeOwned>(
    state: &SharedState,
    body: Body,
) -> Result<T, ApiError> {
    let limit = state.config.limits.max_request_body;
    let bytes = read_body(body, limit).await.map_err(body_error)?;
    crate::state::parse_json(&bytes).map_err(ApiError::invalid)
}

async fn exec(State(state): State<SharedState>, body: Body) -> Result<Response, ApiError> {
    let request: ProcessRequest = json_body(&state, body).await?;
    if request.pty.is_some() || request.background || request.keep_stdin_open {
        return Err(ApiError::invalid(
            "`pty`, `background` and `keep_stdin_open` apply to POST /v1/processes, not /v1/exec",
        ));
    }
    let spec = request.spawn_spec(&state)?;
    let cap = state.config.limits.max_output_bytes;
    let max_output = request.max_output_bytes.map_or(cap, |m| m.min(cap));
    let outcome = state
        .processes
        .exec(&spec, request.stdin_bytes()?, request.timeout(), max_output)
        .await?;
    let stdout = EncodedData::new(&outcome.stdout.data);
    let stderr = EncodedData::new(&outcome.stderr.data);
    let response = paddock_wire::ExecResult {
        exit_code: outcome.exit.exit_code,
        signal: outcome.exit.signal,
        timed_out: outcome.exit.timed_out,
        duration_ms: Some(outcome.exit.duration_ms),
        stdout: stdout.data,
        stdout_encoding: stdout.encoding.map(str::to_owned),
        stdout_truncated: outcome.stdout.truncated,
        stderr: stderr.data,
        stderr_encoding: stderr.encoding.map(str::to_owned),
        stderr_truncated: outcome.stderr.truncated,
    };
    Ok(Json(response).into_response())
}

/// A server-to-client event, the same on NDJSON and WebSocket.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event<'a> {
    Start {
        id: u32,
        pid: i32,
    },
    Stdout {
        offset: u64,
        #[serde(flatten)]
        data: EncodedData,
    },
    Stderr {
        offset: u64,
        #[serde(flatten)]
        data: EncodedData,
    },
    Dropped {
        from: u64,
        to: u64,
    },
    Exit(&'a ExitInfo),
    Error {
        code: &'a str,
        message: &'a str,
    },
}

impl Event<'_> {
    fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        line
    }
}

fn item_event(item: &FollowItem) -> Event<'_> {
    match item {
        FollowItem::Output(chunk) => {
            let data = EncodedData::new(&chunk.data);
            match chunk.stream {
                StreamKind::Stdout => Event::Stdout {
                    offset: chunk.offset,
                    data,
                },
                StreamKind::Stderr => Event::Stderr {
                    offset: chunk.offset,
                    data,
                },
            }
        }
        FollowItem::Dropped { from, to } => Event::Dropped {
            from: *from,
            to: *to,
        },
        FollowItem::Exit(exit) => Event::Exit(exit),
    }
}

fn ndjson_response(body: Body, process: &ManagedProcess) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(id) = HeaderValue::from_str(&process.id.to_string()) {
        response.headers_mut().insert("x-process-id", id);
    }
    response
}

/// Streams a follower as NDJSON until the exit (or until caught up, without `follow`).
fn stream_ndjson(
    mut follower: Follower,
    guard: Option<ForegroundGuard>,
    start_event: bool,
    follow: bool,
) -> Body {
    let (tx, body) = ChannelBody::channel(8);
    tokio::spawn(async move {
        let _guard = guard;
        let process = follower.process().clone();
        if start_event {
            let line = Event::Start {
                id: process.id,
                pid: process.pid,
            }
            .to_line();
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
        loop {
            let item = if follow {
                tokio::select! {
                    item = follower.next() => item,
                    () = tx.closed() => return,
                }
            } else {
                // Without follow: what is buffered now, and the exit if it already happened.
                tokio::time::timeout(Duration::ZERO, follower.next())
                    .await
                    .unwrap_or_default()
            };
            let Some(item) = item else { return };
            let line = item_event(&item).to_line();
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
    });
    body
}

async fn start(State(state): State<SharedState>, body: Body) -> Result<Response, ApiError> {
    let request: ProcessRequest = json_body(&state, body).await?;
    if request.max_output_bytes.is_some() {
        return Err(ApiError::invalid(
            "`max_output_bytes` applies to /v1/exec; started processes keep a replay buffer instead",
        ));
    }
    let spec = request.start_spec(&state)?;
    let (process, guard) = state.processes.start(spec)?;
    if process.background {
        return Ok((StatusCode::CREATED, Json(process.info())).into_response());
    }
    let mut follower = process.follow(0);
    state.processes.attach_backpressure(&mut follower);
    let body = stream_ndjson(follower, guard, true, true);
    Ok(ndjson_response(body, &process))
}

#[derive(Debug, Serialize)]
struct ProcessList {
    processes: Vec<ProcessInfo>,
}

async fn list(State(state): State<SharedState>) -> Json<ProcessList> {
    Json(ProcessList {
        processes: state.processes.list().iter().map(|p| p.info()).collect(),
    })
}

fn lookup(state: &SharedState, id: &str) -> Result<Arc<ManagedProcess>, ApiError> {
    let id: u32 = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("process id {id:?} is not a number")))?;
    Ok(state.processes.get(id)?)
}

async fn info(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<ProcessInfo>, ApiError> {
    Ok(Json(lookup(&state, &id)?.info()))
}

async fn kill_and_forget(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let process = lookup(&state, &id)?;
    if process.state().exit.is_none() {
        process.signal(Signal::KILL);
    }
    state.processes.forget(process.id);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputQuery {
    #[serde(default)]
    offset: u64,
    #[serde(default = "default_true")]
    follow: bool,
}

fn default_true() -> bool {
    true
}

async fn output(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    query: Result<Query<OutputQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query_or_400(query)?;
    let process = lookup(&state, &id)?;
    let follower = process.follow(query.offset);
    Ok(ndjson_response(
        stream_ndjson(follower, None, false, query.follow),
        &process,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StdinQuery {
    #[serde(default)]
    eof: bool,
}

async fn stdin(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    query: Result<Query<StdinQuery>, QueryRejection>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let query = query_or_400(query)?;
    let process = lookup(&state, &id)?;
    let data = read_body(body, state.config.limits.max_request_body)
        .await
        .map_err(body_error)?;
    if !data.is_empty() {
        process.write_stdin(&data).await?;
    } else if !query.eof && !process.has_stdin().await {
        return Err(crate::process::ProcessError::StdinClosed { id: process.id }.into());
    }
    if query.eof {
        process.close_stdin().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A signal given by name (`"SIGTERM"`, `"TERM"`) or number (`15`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SignalSpec {
    Number(i32),
    Name(String),
}

impl SignalSpec {
    pub fn to_signal(&self) -> Result<Signal, ApiError> {
        let number = match self {
            Self::Number(n) => *n,
            Self::Name(name) => {
                let upper = name.trim().to_ascii_uppercase();
                let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
                match bare {
                    "HUP" => 1,
                    "INT" => 2,
                    "QUIT" => 3,
                    "KILL" => 9,
                    "USR1" => 10,
                    "USR2" => 12,
                    "TERM" => 15,
                    "CONT" => 18,
                    "STOP" => 19,
                    "TSTP" => 20,
                    "WINCH" => 28,
                    _ => bare.parse().unwrap_or(0),
                }
            }
        };
        Signal::from_named_raw(number).ok_or_else(|| {
            ApiError::invalid(format!(
                "unknown signal {self:?}: use a name like \"SIGTERM\" or a number like 15"
            ))
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalRequest {
    signal: SignalSpec,
}

async fn signal(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let process = lookup(&state, &id)?;
    let request: SignalRequest = json_body(&state, body).await?;
    let signal = request.signal.to_signal()?;
    if process.state().exit.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            Code::FailedPrecondition,
            format!("process {} has already exited", process.id),
        ));
    }
    process.signal(signal);
    Ok(StatusCode::NO_CONTENT)
}

async fn resize(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let process = lookup(&state, &id)?;
    let size: TermSize = json_body(&state, body).await?;
    if size.cols == 0 || size.rows == 0 {
        return Err(ApiError::invalid("`cols` and `rows` must be at least 1"));
    }
    process.resize(size)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    #[serde(default = "default_wait_ms")]
    timeout_ms: u64,
}

fn default_wait_ms() -> u64 {
    30_000
}

async fn wait(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<ProcessInfo>, ApiError> {
    let query = query_or_400(query)?;
    let process = lookup(&state, &id)?;
    process
        .wait(Duration::from_millis(query.timeout_ms).min(MAX_WAIT))
        .await;
    Ok(Json(process.info()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachQuery {
    #[serde(default)]
    offset: u64,
}

async fn start_ws(State(state): State<SharedState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |mut socket| async move {
        let first = match socket.recv().await {
            Some(Ok(Message::Text(text))) => text,
            _ => return,
        };
        let started = crate::state::parse_json::<ProcessRequest>(first.as_bytes())
            .map_err(ApiError::invalid)
            .and_then(|request| request.start_spec(&state))
            .and_then(|spec| state.processes.start(spec).map_err(ApiError::from));
        match started {
            Ok((process, guard)) => {
                let mut follower = process.follow(0);
                if guard.is_some() {
                    state.processes.attach_backpressure(&mut follower);
                }
                let start = Event::Start {
                    id: process.id,
                    pid: process.pid,
                }
                .to_line();
                if send_line(&mut socket, start).await {
                    run_socket(socket, follower).await;
                }
                drop(guard);
            }
            Err(err) => {
                let line = Event::Error {
                    code: err.code.as_str(),
                    message: &err.message,
                }
                .to_line();
                send_line(&mut socket, line).await;
                let _ = socket.send(Message::Close(None)).await;
            }
        }
    })
}

async fn attach_ws(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    query: Result<Query<AttachQuery>, QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let query = query_or_400(query)?;
    let process = lookup(&state, &id)?;
    let follower = process.follow(query.offset);
    Ok(upgrade.on_upgrade(move |socket| run_socket(socket, follower)))
}

async fn send_line(socket: &mut WebSocket, mut line: Vec<u8>) -> bool {
    line.pop(); // the NDJSON newline
    let text = String::from_utf8(line).unwrap_or_default();
    socket.send(Message::Text(text.into())).await.is_ok()
}

/// A client-to-server WebSocket message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Stdin {
        data: String,
        encoding: Option<String>,
    },
    Eof,
    Resize {
        cols: u16,
        rows: u16,
    },
    Signal {
        signal: SignalSpec,
    },
}

enum StdinCommand {
    Data(Vec<u8>),
    Eof,
}

/// Forwards output and the exit to the socket and applies the client's control messages.
async fn run_socket(mut socket: WebSocket, mut follower: Follower) {
    let process = follower.process().clone();
    // Stdin goes through a queue so a child that does not read cannot stall the output.
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<StdinCommand>(64);
    let stdin_process = process.clone();
    let stdin_task = tokio::spawn(async move {
        while let Some(command) = stdin_rx.recv().await {
            let result = match command {
                StdinCommand::Data(data) => stdin_process.write_stdin(&data).await,
                StdinCommand::Eof => stdin_process.close_stdin().await,
            };
            if result.is_err() {
                return;
            }
        }
    });
    loop {
        tokio::select! {
            item = follower.next() => {
                let Some(item) = item else { break };
                let is_exit = matches!(item, FollowItem::Exit(_));
                if !send_line(&mut socket, item_event(&item).to_line()).await {
                    break;
                }
                if is_exit {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            }
            message = socket.recv() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(data))) => {
                        let _ = stdin_tx.send(StdinCommand::Data(data.to_vec())).await;
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                if let Err(err) = apply_client_message(&process, &stdin_tx, text.as_str()).await {
                    let line = Event::Error { code: err.code.as_str(), message: &err.message }.to_line();
                    if !send_line(&mut socket, line).await {
                        break;
                    }
                }
            }
        }
    }
    drop(stdin_tx);
    stdin_task.abort();
}

async fn apply_client_message(
    process: &ManagedProcess,
    stdin: &mpsc::Sender<StdinCommand>,
    text: &str,
) -> Result<(), ApiError> {
    let message: ClientMessage = serde_json::from_str(text)
        .map_err(|err| ApiError::invalid(format!("invalid message: {err}")))?;
    match message {
        ClientMessage::Stdin { data, encoding } => {
            let bytes = decode_data(&data, encoding.as_deref()).map_err(ApiError::invalid)?;
            let _ = stdin.send(StdinCommand::Data(bytes)).await;
        }
        ClientMessage::Eof => {
            let _ = stdin.send(StdinCommand::Eof).await;
        }
        ClientMessage::Resize { cols, rows } => {
            if cols == 0 || rows == 0 {
                return Err(ApiError::invalid("`cols` and `rows` must be at least 1"));
            }
            process.resize(TermSize { cols, rows })?;
        }
        ClientMessage::Signal { signal } => process.signal(signal.to_signal()?),
    }
    Ok(())
}
