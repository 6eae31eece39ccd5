//! A handle on one sandbox: commands, processes and files, through the gateway.

use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::client::{Client, encode, encode_path, header_value, streamed};
use crate::error::{Error, ErrorCode, Result};
use crate::types::{
    ExecResult, ExitStatus, FileEntry, ProcessEvent, ProcessInfo, ProcessRequest, SandboxInfo,
};

/// A sandbox on a gateway.
#[derive(Clone, Debug)]
pub struct Sandbox {
    client: Client,
    name: String,
    namespace: String,
}

/// A WebSocket attached to a process: send stdin/resize/signal, receive events.
pub type ProcessSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Copies a streamed response body into `out`; `what` names it in errors.
async fn copy_body(
    resp: http::Response<hyper::body::Incoming>,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    what: &str,
) -> Result<u64> {
    use tokio::io::AsyncWriteExt;
    let mut body = resp.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| Error::new(ErrorCode::ConnectionFailed, format!("reading {what}: {e}")))?;
        if let Ok(data) = frame.into_data() {
            out.write_all(&data)
                .await
                .map_err(|e| Error::new(ErrorCode::Internal, format!("writing: {e}")))?;
            total += data.len() as u64;
        }
    }
    out.flush()
        .await
        .map_err(|e| Error::new(ErrorCode::Internal, format!("writing: {e}")))?;
    Ok(total)
}

fn protocol(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Protocol, e.to_string())
}

impl Sandbox {
    pub(crate) fn new(client: Client, name: &str, namespace: &str) -> Self {
        Self {
            client,
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    /// The sandbox's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn path(&self, rest: &str, query: &[(&str, String)]) -> String {
        let mut p = format!(
            "/v1/sandboxes/{}{rest}?namespace={}",
            encode(&self.name),
            encode(&self.namespace)
        );
        for (k, v) in query {
            p.push_str(&format!("&{k}={}", encode(v)));
        }
        p
    }

    /// The sandbox's description.
    ///
    /// # Errors
    /// As any call.
    pub async fn info(&self) -> Result<SandboxInfo> {
        self.client
            .json(Method::GET, &self.path("", &[]), None)
            .await
    }

    /// Deletes the sandbox (its claim, when it has one); a missing sandbox is fine.
    ///
    /// # Errors
    /// As any call.
    pub async fn delete(&self) -> Result<()> {
        match self
            .client
            .bytes(Method::DELETE, &self.path("", &[]), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == ErrorCode::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Suspends the sandbox.
    ///
    /// # Errors
    /// As any call.
    pub async fn pause(&self) -> Result<SandboxInfo> {
        self.client
            .json(Method::POST, &self.path("/pause", &[]), None)
            .await
    }

    /// Suspends the sandbox (upstream's word for [`Sandbox::pause`]).
    ///
    /// # Errors
    /// As any call.
    pub async fn suspend(&self) -> Result<SandboxInfo> {
        self.pause().await
    }

    /// Resumes the sandbox and waits until it is Ready.
    ///
    /// # Errors
    /// As any call.
    pub async fn resume(&self) -> Result<SandboxInfo> {
        self.client
            .json(Method::POST, &self.path("/resume", &[]), None)
            .await
    }

    /// Mints a v2 scoped token (upstream's router format) for one port, method and path of
    /// this sandbox; the gateway must hold a signing key (`--scoped-token-signing-key-file`).
    ///
    /// # Errors
    /// As any call; `FailedPrecondition` when the gateway mints no tokens.
    pub async fn mint_token(
        &self,
        req: &paddock_wire::MintToken,
    ) -> Result<paddock_wire::MintedToken> {
        let body = serde_json::to_value(req).map_err(protocol)?;
        self.client
            .json(Method::POST, &self.path("/tokens", &[]), Some(&body))
            .await
    }

    /// Runs a command to completion and returns its output.
    ///
    /// # Errors
    /// As any call (a non-zero exit is not an error).
    pub async fn exec(&self, req: &ProcessRequest) -> Result<ExecResult> {
        let body = serde_json::to_value(req).map_err(protocol)?;
        self.client
            .json(Method::POST, &self.path("/exec", &[]), Some(&body))
            .await
    }

    /// Runs a command and calls `on_event` for each event as it happens; returns how it ended.
    ///
    /// # Errors
    /// As any call; a stream that ends without an exit event is a `Protocol` error.
    pub async fn run_streaming(
        &self,
        req: &ProcessRequest,
        mut on_event: impl FnMut(&ProcessEvent),
    ) -> Result<ExitStatus> {
        let body = serde_json::to_value(req).map_err(protocol)?;
        let resp = self
            .client
            .send(
                Method::POST,
                &self.path("/processes", &[]),
                Some((Bytes::from(body.to_string()), "application/json")),
            )
            .await?;
        let mut lines = std::pin::pin!(ndjson(resp.into_body()));
        while let Some(line) = lines.next().await {
            let event = line?;
            on_event(&event);
            match event {
                ProcessEvent::Exit(status) => return Ok(status),
                ProcessEvent::Error { code, message } => {
                    return Err(Error::new(
                        ErrorCode::Internal,
                        format!("{code}: {message}"),
                    ));
                }
                _ => {}
            }
        }
        Err(Error::new(
            ErrorCode::Protocol,
            "the process stream ended without an exit event (the sandbox went away?)",
        ))
    }

    /// Starts a background process that outlives this call.
    ///
    /// # Errors
    /// As any call.
    pub async fn start(&self, req: &ProcessRequest) -> Result<ProcessInfo> {
        let mut req = req.clone();
        req.background = true;
        let body = serde_json::to_value(&req).map_err(protocol)?;
        self.client
            .json(Method::POST, &self.path("/processes", &[]), Some(&body))
            .await
    }

    /// The processes of the sandbox.
    ///
    /// # Errors
    /// As any call.
    pub async fn processes(&self) -> Result<Vec<ProcessInfo>> {
        let v: Value = self
            .client
            .json(Method::GET, &self.path("/processes", &[]), None)
            .await?;
        serde_json::from_value(
            v.get("processes")
                .cloned()
                .unwrap_or(Value::Array(Vec::new())),
        )
        .map_err(protocol)
    }

    /// Sends a signal (`SIGTERM`, `INT`, `9`...) to a process group.
    ///
    /// # Errors
    /// As any call.
    pub async fn signal(&self, process: u64, signal: &str) -> Result<()> {
        let body = json!({"signal": signal});
        self.client
            .bytes(
                Method::POST,
                &self.path(&format!("/processes/{process}/signal"), &[]),
                Some((Bytes::from(body.to_string()), "application/json")),
            )
            .await
            .map(|_| ())
    }

    /// Waits up to `timeout_ms` for a process to exit; returns its info either way.
    ///
    /// # Errors
    /// As any call.
    pub async fn wait(&self, process: u64, timeout_ms: u64) -> Result<ProcessInfo> {
        self.client
            .json(
                Method::GET,
                &self.path(
                    &format!("/processes/{process}/wait"),
                    &[("timeout_ms", timeout_ms.to_string())],
                ),
                None,
            )
            .await
    }

    /// Replays a process's output from `offset` and, with `follow`, follows it to its exit.
    ///
    /// # Errors
    /// As any call.
    pub async fn output(
        &self,
        process: u64,
        offset: u64,
        follow: bool,
    ) -> Result<impl Stream<Item = Result<ProcessEvent>>> {
        let path = self.path(
            &format!("/processes/{process}/output"),
            &[
                ("offset", offset.to_string()),
                ("follow", follow.to_string()),
            ],
        );
        let resp = self.client.send(Method::GET, &path, None).await?;
        Ok(ndjson(resp.into_body()))
    }

    /// Reads a whole file.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied` (outside the sandbox root), ...
    pub async fn read_file(&self, path: &str) -> Result<Bytes> {
        self.client
            .bytes(Method::GET, &self.file_path(path, &[]), None)
            .await
    }

    /// Streams a file into `out`; returns the bytes copied.
    ///
    /// # Errors
    /// As [`Sandbox::read_file`], and write errors of `out`.
    pub async fn download(
        &self,
        path: &str,
        tar: bool,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64> {
        let query: Vec<(&str, String)> = if tar {
            vec![("format", "tar".to_owned())]
        } else {
            Vec::new()
        };
        let resp = self
            .client
            .send(Method::GET, &self.file_path(path, &query), None)
            .await?;
        copy_body(resp, out, path).await
    }

    /// Streams the output of the sandbox's main process into `out`: what it wrote so far and,
    /// with `follow`, what it writes until it ends. Returns the bytes copied.
    ///
    /// # Errors
    /// `SandboxNotReady` when the sandbox has no workload (suspended, not started), write
    /// errors of `out`, ...
    pub async fn logs(
        &self,
        follow: bool,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64> {
        let query = [("follow", follow.to_string())];
        let resp = self
            .client
            .send(Method::GET, &self.path("/logs", &query), None)
            .await?;
        copy_body(resp, out, "the log").await
    }

    /// The sandbox's egress record: every connection, request and DNS question its egress proxy
    /// answered, oldest first (empty when the sandbox has no network).
    ///
    /// # Errors
    /// As any call.
    pub async fn egress(&self) -> Result<Vec<paddock_wire::EgressRecord>> {
        let log: paddock_wire::EgressLog = self
            .client
            .json(Method::GET, &self.path("/egress", &[]), None)
            .await?;
        Ok(log.items)
    }

    /// Follows the egress record: calls `on_record` with each kept record, then with each new
    /// one as its connection ends, until it returns `false` or the sandbox goes away.
    ///
    /// # Errors
    /// As any call; a line that is not a record is a `Protocol` error.
    pub async fn follow_egress(
        &self,
        on_record: impl FnMut(&paddock_wire::EgressRecord) -> bool,
    ) -> Result<()> {
        let query = [("follow", "true".to_owned())];
        self.follow_lines(&self.path("/egress", &query), "an egress record", on_record)
            .await
    }

    /// Calls `on_item` with each JSON line of a streamed answer until it returns `false` or
    /// the stream ends.
    async fn follow_lines<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
        mut on_item: impl FnMut(&T) -> bool,
    ) -> Result<()> {
        let resp = self.client.send(Method::GET, path, None).await?;
        let mut body = resp.into_body();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Error::new(ErrorCode::ConnectionFailed, format!("reading {what}: {e}"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let item: T = serde_json::from_slice(&line[..line.len() - 1]).map_err(protocol)?;
                if !on_item(&item) {
                    return Ok(());
                }
            }
            if pending.len() > 1 << 20 {
                return Err(protocol(format!("{what} line longer than 1 MiB")));
            }
        }
        Ok(())
    }

    /// A path's type, size, mode and modification time (a final symlink is described, not
    /// followed).
    ///
    /// # Errors
    /// As any call; `NotFound` when nothing is there.
    pub async fn stat(&self, path: &str) -> Result<paddock_wire::FileStat> {
        self.client
            .json(Method::GET, &self.fs_path("stat", &[("path", path)]), None)
            .await
    }

    /// Makes a directory and its parents (`mkdir -p`).
    ///
    /// # Errors
    /// As any call; `AlreadyExists` when a file has that name.
    pub async fn mkdir(&self, path: &str) -> Result<paddock_wire::FileStat> {
        self.client
            .json(
                Method::POST,
                &self.fs_path("mkdir", &[("path", path)]),
                None,
            )
            .await
    }

    /// Moves (renames) a file or directory; `overwrite` replaces what is at `to`.
    ///
    /// # Errors
    /// As any call; `AlreadyExists` when `to` exists and `overwrite` is off.
    pub async fn move_path(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        let ow = overwrite.to_string();
        let path = self.fs_path("move", &[("from", from), ("to", to), ("overwrite", &ow)]);
        self.client
            .bytes(Method::POST, &path, None)
            .await
            .map(|_| ())
    }

    /// Copies a file, or a directory with everything in it; `overwrite` replaces what is at `to`.
    ///
    /// # Errors
    /// As any call; `AlreadyExists` when `to` exists and `overwrite` is off.
    pub async fn copy_path(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        let ow = overwrite.to_string();
        let path = self.fs_path("copy", &[("from", from), ("to", to), ("overwrite", &ow)]);
        self.client
            .bytes(Method::POST, &path, None)
            .await
            .map(|_| ())
    }

    /// Watches a directory (and, with `recursive`, everything under it): calls `on_event`
    /// with each change until it returns `false` or the directory goes (a last `error` event).
    ///
    /// # Errors
    /// As any call; `NotFound` when the directory does not exist.
    pub async fn watch(
        &self,
        path: &str,
        recursive: bool,
        on_event: impl FnMut(&paddock_wire::FileEvent) -> bool,
    ) -> Result<()> {
        let r = recursive.to_string();
        let path = self.fs_path("watch", &[("path", path), ("recursive", &r)]);
        self.follow_lines(&path, "a file event", on_event).await
    }

    fn fs_path(&self, op: &str, query: &[(&str, &str)]) -> String {
        let query: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.path(&format!("/fs/{op}"), &query)
    }

    /// Writes a file atomically (parents created), with an optional mode such as `0755`.
    ///
    /// # Errors
    /// As any call.
    pub async fn write_file(
        &self,
        path: &str,
        data: impl Into<Bytes>,
        mode: Option<&str>,
    ) -> Result<()> {
        let query: Vec<(&str, String)> = mode
            .map(|m| vec![("mode", m.to_owned())])
            .unwrap_or_default();
        self.client
            .bytes(
                Method::PUT,
                &self.file_path(path, &query),
                Some((data.into(), "application/octet-stream")),
            )
            .await
            .map(|_| ())
    }

    /// Streams `body` into a file, or (with `tar`) extracts it as a tar into a directory.
    ///
    /// # Errors
    /// As any call.
    pub async fn upload<S>(&self, path: &str, tar: bool, body: S) -> Result<()>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
    {
        let query: Vec<(&str, String)> = if tar {
            vec![("format", "tar".to_owned())]
        } else {
            Vec::new()
        };
        let ct = if tar {
            "application/x-tar"
        } else {
            "application/octet-stream"
        };
        self.client
            .send_stream(
                Method::PUT,
                &self.file_path(path, &query),
                streamed(body),
                ct,
            )
            .await
            .map(|_| ())
    }

    /// Lists a directory.
    ///
    /// # Errors
    /// As any call.
    pub async fn list(&self, path: &str) -> Result<Vec<FileEntry>> {
        let v: Value = self
            .client
            .json(Method::GET, &self.file_path(path, &[]), None)
            .await?;
        serde_json::from_value(
            v.get("entries")
                .cloned()
                .unwrap_or(Value::Array(Vec::new())),
        )
        .map_err(protocol)
    }

    /// Whether a path exists.
    ///
    /// # Errors
    /// As any call, except that `NotFound` is `false`.
    pub async fn exists(&self, path: &str) -> Result<bool> {
        match self
            .client
            .bytes(Method::HEAD, &self.file_path(path, &[]), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code == ErrorCode::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a file, or a directory with `recursive`.
    ///
    /// # Errors
    /// `Conflict` for a non-empty directory without `recursive`.
    pub async fn remove(&self, path: &str, recursive: bool) -> Result<()> {
        self.client
            .bytes(
                Method::DELETE,
                &self.file_path(path, &[("recursive", recursive.to_string())]),
                None,
            )
            .await
            .map(|_| ())
    }

    fn file_path(&self, path: &str, query: &[(&str, String)]) -> String {
        self.path(&format!("/files/{}", encode_path(path)), query)
    }

    /// Starts a process and attaches a WebSocket to it (stdin, resize and signals from the
    /// client; output and exit from the sandbox).
    ///
    /// # Errors
    /// The socket cannot be opened, or the start is refused.
    pub async fn attach(&self, req: &ProcessRequest) -> Result<ProcessSocket> {
        let url = format!(
            "ws://{}{}",
            self.client.authority(),
            self.path("/processes/ws", &[])
        );
        let mut request = url.into_client_request().map_err(protocol)?;
        if let Some(token) = self.client.token() {
            request.headers_mut().insert(
                http::header::AUTHORIZATION,
                header_value(&format!("Bearer {token}")),
            );
        }
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorCode::ConnectionFailed,
                    format!("opening the process socket: {e}"),
                )
            })?;
        let start = serde_json::to_string(req).map_err(protocol)?;
        socket.send(Message::text(start)).await.map_err(protocol)?;
        Ok(socket)
    }
}

/// Splits a streaming body into NDJSON events.
fn ndjson(body: hyper::body::Incoming) -> impl Stream<Item = Result<ProcessEvent>> {
    futures_util::stream::unfold(
        (body, Vec::<u8>::new(), false),
        |(mut body, mut buf, mut done)| async move {
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let parsed = serde_json::from_slice::<Value>(&line)
                        .map_err(protocol)
                        .and_then(|v| {
                            ProcessEvent::parse(&v).ok_or_else(|| {
                                Error::new(ErrorCode::Protocol, format!("unknown event {v}"))
                            })
                        });
                    return Some((parsed, (body, buf, done)));
                }
                if done {
                    return None;
                }
                match body.frame().await {
                    None => done = true,
                    Some(Err(e)) => {
                        return Some((
                            Err(Error::new(
                                ErrorCode::ConnectionFailed,
                                format!("the process stream broke: {e}"),
                            )),
                            (body, buf, true),
                        ));
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            buf.extend_from_slice(&data);
                        }
                    }
                }
            }
        },
    )
}
