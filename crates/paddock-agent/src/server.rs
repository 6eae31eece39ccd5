//! The HTTP server: one router (legacy runtime, sandboxd REST, paddock process API, gRPC) served
//! over HTTP/1.1 and h2c on every listener, with optional bearer auth, idle-connection timeouts
//! and graceful shutdown that terminates child process groups.

use paddock_wire::Code;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustix::process::Signal;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::AgentConfig;
use crate::confine::Root;
use crate::error::{AgentError, ApiError};
use crate::main_process::MainProcess;
use crate::process::ProcessTable;
use crate::reaper::Reaper;
use crate::spawn::Spawner;
use crate::state::{AppState, SharedState};

/// A bound socket the agent serves on.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds a TCP listener (no name resolution: the address is numeric).
    pub async fn tcp(addr: std::net::SocketAddr) -> Result<Self, AgentError> {
        TcpListener::bind(addr)
            .await
            .map(Self::Tcp)
            .map_err(|source| AgentError::BindTcp { addr, source })
    }

    /// Binds a unix socket, replacing a stale socket file left by a previous run.
    pub fn unix(path: impl Into<PathBuf>) -> Result<Self, AgentError> {
        let path = path.into();
        let socket = bind_unix(&path)?;
        Self::from_std_unix(&path, socket)
    }

    /// Serves a unix socket bound earlier with [`bind_unix`] (inside the async runtime).
    pub fn from_std_unix(
        path: &std::path::Path,
        socket: std::os::unix::net::UnixListener,
    ) -> Result<Self, AgentError> {
        UnixListener::from_std(socket)
            .map(Self::Unix)
            .map_err(|source| AgentError::BindUnix {
                path: path.to_path_buf(),
                source,
            })
    }
}

/// Binds a non-blocking unix socket without an async runtime, replacing a stale socket file
/// left by a previous run.
pub fn bind_unix(path: &std::path::Path) -> Result<std::os::unix::net::UnixListener, AgentError> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type())
    {
        let _ = std::fs::remove_file(path);
    }
    let bound = std::os::unix::net::UnixListener::bind(path)
        .and_then(|socket| socket.set_nonblocking(true).map(|()| socket));
    bound.map_err(|source| AgentError::BindUnix {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds the shared state: roots, reaper, process table, and starts the main process.
fn build_state(config: AgentConfig) -> Result<SharedState, AgentError> {
    let root = Root::open(&config.root_dir, true).map_err(|source| AgentError::Root {
        path: config.root_dir.clone(),
        source,
    })?;
    let legacy_root = Root::open(&config.legacy_root, true).map_err(|err| {
        tracing::warn!(path = %config.legacy_root.display(), error = %err, "legacy SANDBOX_BASE_DIR is unusable");
        format!("{}: {err}", config.legacy_root.display())
    });
    let workdir = match &config.workdir {
        Some(dir) => {
            let resolved = root
                .resolve(&dir.to_string_lossy(), crate::confine::PathStyle::Rooted)
                .map_err(|e| AgentError::Root {
                    path: dir.clone(),
                    source: io::Error::other(format!("--workdir: {e}")),
                })?;
            std::fs::create_dir_all(&resolved).map_err(|source| AgentError::Root {
                path: resolved.clone(),
                source,
            })?;
            resolved
        }
        None => root.path().to_path_buf(),
    };
    let reaper = Reaper::start(config.reap_orphans).map_err(AgentError::Signals)?;
    let main = match &config.main {
        Some(spec) => {
            let spawner = Spawner::new(reaper.clone(), config.child_env.clone());
            let main = MainProcess::start(&spawner, spec, &workdir).map_err(|source| {
                AgentError::MainLog {
                    path: spec.log.clone().unwrap_or_default(),
                    source,
                }
            })?;
            Some(main)
        }
        None => None,
    };
    let spawner = Spawner::new(reaper, config.child_env.clone());
    let processes = ProcessTable::new(spawner, config.limits.clone());
    Ok(Arc::new(AppState {
        config,
        root,
        workdir,
        legacy_root,
        processes,
        main,
        started: Instant::now(),
        shutting_down: AtomicBool::new(false),
    }))
}

/// The full router for `state`.
pub fn router(state: SharedState) -> Router {
    let grpc = crate::grpc::service(state.clone());
    Router::new()
        .merge(crate::upstream_runtime::routes())
        .merge(crate::files::routes())
        .merge(crate::fs_ops::routes())
        .merge(crate::process_api::routes())
        .merge(crate::main_process::routes())
        .merge(crate::ports::routes())
        .route_service("/process.v1.ProcessService/{*method}", grpc)
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

async fn not_found(method: Method, uri: http::Uri) -> ApiError {
    ApiError::not_found(format!("no endpoint {method} {}", uri.path()))
}

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, byte) in a.iter().enumerate() {
        diff |= usize::from(byte ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

async fn authorize(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let Some(token) = state.config.token.as_deref() else {
        return next.run(request).await;
    };
    let open =
        request.method() == Method::GET && matches!(request.uri().path(), "/" | "/v1/health");
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if open || presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if is_grpc {
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static("16"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("missing%20or%20wrong%20bearer%20token"),
        );
        return response;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        Code::Unauthenticated,
        "missing or wrong bearer token: send Authorization: Bearer <token>",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Serves `listeners` until `shutdown` is cancelled or the main process (if configured) exits;
/// then stops accepting, lets in-flight requests finish, sends SIGTERM to the main process group
/// and every child process group, SIGKILL after the grace period. Returns the code the agent
/// should exit with: the main process's ([`MainExit::exit_code`]), or 0 without one.
///
/// [`MainExit::exit_code`]: crate::main_process::MainExit::exit_code
pub async fn serve(
    listeners: Vec<Listener>,
    config: AgentConfig,
    shutdown: CancellationToken,
) -> Result<i32, AgentError> {
    if listeners.is_empty() {
        return Err(AgentError::NoListener);
    }
    let grace = config.shutdown_grace;
    let idle = config.limits.idle_timeout;
    let state = build_state(config)?;
    let app = router(state.clone());
    let mut tasks = JoinSet::new();
    let connections = CancellationToken::new();
    let stop = shutdown.child_token();
    for listener in listeners {
        tasks.spawn(accept_loop(
            listener,
            app.clone(),
            stop.clone(),
            connections.clone(),
            idle,
        ));
    }
    let main = state.main.clone();
    let main_exited = async {
        match &main {
            Some(main) => main.wait().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = shutdown.cancelled() => {}
        exit = main_exited => {
            tracing::info!(exit_code = exit.exit_code, "main process exited: shutting down");
        }
    }
    stop.cancel();
    state.shutting_down.store(true, Ordering::Release);
    tracing::info!("shutting down: terminating child processes");
    if let Some(main) = &main {
        main.signal_group(Signal::TERM);
    }
    state.processes.signal_all(Signal::TERM);
    let deadline = tokio::time::Instant::now() + grace;
    let busy =
        || state.processes.running() > 0 || main.as_ref().is_some_and(|m| m.exit().is_none());
    while busy() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if busy() {
        if let Some(main) = &main {
            main.signal_group(Signal::KILL);
        }
        state.processes.signal_all(Signal::KILL);
    }
    let code = match &main {
        Some(main) => {
            // After SIGKILL the exit (and its status file) follows at once.
            match tokio::time::timeout(Duration::from_secs(2), main.wait()).await {
                Ok(exit) => exit.exit_code,
                Err(_) => 128 + Signal::KILL.as_raw(),
            }
        }
        None => 0,
    };
    // Streams end once their processes are gone; give connections a moment, then drop them.
    connections.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    Ok(code)
}

async fn accept_loop(
    listener: Listener,
    app: Router,
    shutdown: CancellationToken,
    connections: CancellationToken,
    idle: Duration,
) {
    let mut open = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = accept(&listener) => accepted,
            Some(_) = open.join_next(), if !open.is_empty() => continue,
        };
        match accepted {
            Ok(Conn::Tcp(stream)) => {
                let _ = stream.set_nodelay(true);
                open.spawn(serve_connection(
                    stream,
                    app.clone(),
                    shutdown.clone(),
                    connections.clone(),
                    idle,
                ));
            }
            Ok(Conn::Unix(stream)) => {
                open.spawn(serve_connection(
                    stream,
                    app.clone(),
                    shutdown.clone(),
                    connections.clone(),
                    idle,
                ));
            }
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    while open.join_next().await.is_some() {}
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> io::Result<Conn> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
    }
}

/// Activity bookkeeping for one connection: last I/O and requests still being answered.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A stream that records activity on every successful read or write.
struct TrackedIo<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if poll.is_ready() {
            self.activity.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if poll.is_ready() {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if poll.is_ready() {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Decrements the in-flight count when the response body is done (or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A response body that holds an [`InFlight`] until it is finished.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, std::convert::Infallible>> + Send>>;

async fn serve_connection<S>(
    stream: S,
    app: Router,
    shutdown: CancellationToken,
    connections: CancellationToken,
    idle: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity {
        epoch: Instant::now(),
        last_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let io = TokioIo::new(TrackedIo {
        inner: stream,
        activity: activity.clone(),
    });
    let service_activity = activity.clone();
    let service =
        hyper::service::service_fn(move |request: http::Request<Incoming>| -> ServiceFuture {
            let app = app.clone();
            service_activity.in_flight.fetch_add(1, Ordering::Relaxed);
            let in_flight = InFlight(service_activity.clone());
            Box::pin(async move {
                let response = app
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|never| match never {});
                Ok(response.map(|inner| TrackedBody {
                    inner,
                    _in_flight: in_flight,
                }))
            })
        });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024);
    let connection = builder.serve_connection_with_upgrades(io, service);
    let mut connection = std::pin::pin!(connection);
    let check_every = (idle / 4).max(Duration::from_millis(10));
    let mut draining = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            () = connections.cancelled() => return,
            () = tokio::time::sleep(check_every), if !draining => {
                if activity.in_flight.load(Ordering::Relaxed) == 0 && activity.idle_for() >= idle {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_whole_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(b"x", b""));
    }
}
