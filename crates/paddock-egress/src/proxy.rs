//! The HTTP proxy a sandbox talks to: CONNECT tunnels (HTTPS, git, anything over TCP) and
//! plain-HTTP requests in absolute form, each judged by the sandbox's rules, connected to the
//! addresses the proxy resolved, counted against the limits and recorded.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use paddock_policy::{Decision, DenyReason, Destination, EgressRules, Verdict};
use paddock_wire::{EgressKind, EgressRecord};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::resolve::Resolver;
use crate::sni::{FirstFlight, read_first_flight};
use crate::{SandboxEgress, now};

type Body = BoxBody<Bytes, hyper::Error>;

/// The header on the proxy's own answers that says a request was denied, and why.
pub const DENIED_HEADER: &str = "x-paddock-egress-denied";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Each direction of a tunnel copies through a buffer this big (tokio's default of 8 KiB costs
/// a fifth of the throughput of a large download).
const COPY_BUFFER: usize = 64 * 1024;

/// What every connection of the proxy shares: how names resolve and which roots upstream TLS
/// trusts.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub resolver: Resolver,
    pub upstream_tls: Arc<rustls::ClientConfig>,
    pub secrets: Arc<dyn crate::secrets::SecretStore>,
}

impl Context {
    pub(crate) fn new(
        resolver: Resolver,
        extra_roots_pem: &[String],
        secrets: Arc<dyn crate::secrets::SecretStore>,
    ) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        for pem in extra_roots_pem {
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()).flatten()
            {
                let _ = roots.add(cert);
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| {
                // The ring provider supports the default versions; this branch is never taken.
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            });
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            resolver,
            upstream_tls: Arc::new(config),
            secrets,
        }
    }
}

/// Accepts connections from the sandbox until the task is aborted.
/// Tells which sandbox a connection comes from, by its peer address (the in-cluster proxy
/// serves every sandbox Pod on one listener); `None` for a stranger.
pub type Identify = Arc<dyn Fn(IpAddr) -> Option<Arc<SandboxEgress>> + Send + Sync>;

/// Accepts connections from one sandbox until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, egress: Arc<SandboxEgress>, context: Context) {
    serve_identified(
        listener,
        Arc::new(move |_| Some(Arc::clone(&egress))),
        context,
    )
    .await;
}

/// Accepts connections from many sandboxes, each judged by the rules of the sandbox its peer
/// address belongs to; a peer that is no sandbox gets 403 for every request.
pub(crate) async fn serve_identified(listener: TcpListener, identify: Identify, context: Context) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "egress proxy accept");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let egress = identify(crate::address_of(peer));
        let context = context.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let egress = egress.clone();
                let context = context.clone();
                async move {
                    Ok::<_, Infallible>(match egress {
                        Some(egress) => handle(req, egress, context).await,
                        None => denied(&format!(
                            "{} is not a sandbox this proxy serves (no Pod of a Sandbox with a SandboxPolicy has this address)",
                            peer.ip()
                        )),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .preserve_header_case(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    egress: Arc<SandboxEgress>,
    context: Context,
) -> Response<Body> {
    if req.method() == Method::CONNECT {
        connect(req, egress, context).await
    } else {
        forward(req, egress, &context.resolver).await
    }
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(format!("{message}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn denied(reason: &str) -> Response<Body> {
    let mut response = text(StatusCode::FORBIDDEN, format!("paddock egress: {reason}"));
    if let Ok(v) = HeaderValue::from_str(reason) {
        response.headers_mut().insert(DENIED_HEADER, v);
    }
    response
}

/// A record of a connection being judged, filled in as it goes.
struct Pending {
    kind: EgressKind,
    host: String,
    port: u16,
    method: Option<String>,
    path: Option<String>,
    started: Instant,
    time: String,
}

impl Pending {
    fn new(kind: EgressKind, host: &str, port: u16) -> Self {
        Self {
            kind,
            host: host.to_owned(),
            port,
            method: None,
            path: None,
            started: Instant::now(),
            time: now(),
        }
    }

    /// Records a connection the rules allowed but that could not be made.
    fn failed(self, egress: &SandboxEgress, message: &str) {
        egress.record(EgressRecord {
            time: self.time,
            kind: self.kind,
            host: self.host,
            port: self.port,
            address: None,
            method: self.method,
            path: self.path,
            allowed: false,
            rule: None,
            reason: Some(message.to_owned()),
            audited: false,
            credentials: Vec::new(),
            bytes_sent: 0,
            bytes_received: 0,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }

    fn finish(
        self,
        egress: &SandboxEgress,
        address: Option<IpAddr>,
        decision: Result<&Decision, &DenyReason>,
        bytes: (u64, u64),
    ) {
        let (allowed, rule, reason, audited) = match decision {
            Ok(d) => match &d.verdict {
                Verdict::Allow { rule } => (
                    true,
                    Some(rule.clone()),
                    d.audited.as_ref().map(ToString::to_string),
                    d.audited.is_some(),
                ),
                Verdict::Deny(r) => (false, None, Some(r.to_string()), false),
            },
            Err(r) => (false, None, Some(r.to_string()), false),
        };
        egress.record(EgressRecord {
            time: self.time,
            kind: self.kind,
            host: self.host,
            port: self.port,
            address: address.map(|a| a.to_string()),
            method: self.method,
            path: self.path,
            allowed,
            rule,
            reason,
            audited,
            credentials: Vec::new(),
            bytes_sent: bytes.0,
            bytes_received: bytes.1,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }
}

/// Why a connection that the rules allowed could not be made.
enum Upstream {
    Denied(DenyReason),
    Failed(StatusCode, String),
}

/// Resolves and connects to `host:port` as the rules allow: the decision to record (the
/// host's, or the addresses' when they were the ones to audit) and the stream.
async fn open_upstream(
    rules: &EgressRules,
    host: &str,
    port: u16,
    host_decision: Decision,
    resolver: &Resolver,
) -> Result<(TcpStream, IpAddr, Decision), Upstream> {
    let addresses = match Destination::parse(host) {
        Destination::Ip(ip) => vec![ip],
        Destination::Name(name) => match resolver.resolve(name).await {
            Ok(found) => found,
            Err(e) => return Err(Upstream::Failed(StatusCode::BAD_GATEWAY, e.to_string())),
        },
    };
    let (usable, address_decision) = match Destination::parse(host) {
        Destination::Ip(_) => (addresses, host_decision.clone()),
        Destination::Name(_) => rules.addresses(host, port, &addresses),
    };
    if let Verdict::Deny(reason) = address_decision.verdict {
        return Err(Upstream::Denied(reason));
    }
    let decision = if address_decision.audited.is_some() {
        address_decision
    } else {
        host_decision
    };
    let mut last = String::from("no address");
    for ip in usable {
        let addr = SocketAddr::new(ip, port);
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, ip, decision));
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out"),
        }
    }
    Err(Upstream::Failed(
        StatusCode::BAD_GATEWAY,
        format!("cannot connect to {host} port {port} ({last})"),
    ))
}

/// Lets a connection through, or answers why not (and records it): the rules' decision, the
/// limits, then the addresses the host resolved to and the connection itself.
async fn admit(
    egress: &SandboxEgress,
    rules: &EgressRules,
    pending: Pending,
    decision: Decision,
    resolver: &Resolver,
) -> Result<(Pending, TcpStream, IpAddr, Decision), Response<Body>> {
    if let Verdict::Deny(reason) = &decision.verdict {
        let response = denied(&reason.to_string());
        pending.finish(egress, None, Ok(&decision), (0, 0));
        return Err(response);
    }
    if let Err(reason) = egress.start_request(rules) {
        let response = denied(&reason.to_string());
        pending.finish(egress, None, Err(&reason), (0, 0));
        return Err(response);
    }
    let (host, port) = (pending.host.clone(), pending.port);
    match open_upstream(rules, &host, port, decision, resolver).await {
        Ok((upstream, address, decision)) => Ok((pending, upstream, address, decision)),
        Err(Upstream::Denied(reason)) => {
            let response = denied(&reason.to_string());
            pending.finish(egress, None, Err(&reason), (0, 0));
            Err(response)
        }
        Err(Upstream::Failed(status, message)) => {
            pending.failed(egress, &message);
            Err(text(status, format!("paddock egress: {message}")))
        }
    }
}

/// `host` and `port` of an authority, with a default port.
fn split_authority(authority: &http::uri::Authority, default_port: u16) -> (String, u16) {
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    (
        host.to_owned(),
        authority.port_u16().unwrap_or(default_port),
    )
}

async fn connect(
    mut req: Request<Incoming>,
    egress: Arc<SandboxEgress>,
    context: Context,
) -> Response<Body> {
    let Some(authority) = req.uri().authority().cloned() else {
        return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port".into());
    };
    let (host, port) = split_authority(&authority, 443);
    let pending = Pending::new(EgressKind::Connect, &host, port);
    let rules = egress.rules();
    // A destination that receives credentials is intercepted, so its requests are checked one
    // by one (and rules restricted to some requests can allow it).
    let intercept = !rules.injections_for(&host, port).is_empty() && egress.ca().is_some();
    let decision = rules.connect(Destination::parse(&host), port, !intercept);
    let (pending, upstream, address, decision) =
        match admit(&egress, &rules, pending, decision, &context.resolver).await {
            Ok(admitted) => admitted,
            Err(response) => return response,
        };
    let on_upgrade = hyper::upgrade::on(&mut req);
    if intercept {
        tokio::spawn(intercepted(
            on_upgrade,
            upstream,
            host,
            port,
            address,
            egress,
            context.clone(),
            (pending, decision),
        ));
        return Response::new(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        );
    }
    tokio::spawn(async move {
        let counters = Arc::new(Counters::default());
        let outcome = async {
            let upgraded = on_upgrade.await.map_err(std::io::Error::other)?;
            let mut client = TokioIo::new(upgraded);
            let mut upstream = Counted::new(upstream, Arc::clone(&egress), Arc::clone(&counters));
            let mut first = Vec::new();
            let wait = if port == 443 {
                Duration::from_secs(30)
            } else {
                Duration::from_millis(300)
            };
            let flight = read_first_flight(&mut client, &mut first, wait).await?;
            if flight == FirstFlight::IncompleteTls {
                return Ok(Some(DenyReason::IncompleteHandshake { host: host.clone() }));
            }
            if let FirstFlight::Tls(Some(server_name)) = &flight
                && !server_name.eq_ignore_ascii_case(&host)
                && !rules
                    .connect(Destination::Name(server_name), port, true)
                    .allowed()
            {
                return Ok(Some(DenyReason::ServerNameMismatch {
                    host: host.clone(),
                    server_name: server_name.clone(),
                }));
            }
            upstream.write_all(&first).await?;
            tokio::io::copy_bidirectional_with_sizes(
                &mut client,
                &mut upstream,
                COPY_BUFFER,
                COPY_BUFFER,
            )
            .await?;
            Ok::<_, std::io::Error>(None)
        }
        .await;
        let bytes = counters.get();
        match outcome {
            Ok(Some(reason)) => pending.finish(&egress, Some(address), Err(&reason), bytes),
            _ => pending.finish(&egress, Some(address), Ok(&decision), bytes),
        }
    });
    Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed(),
    )
}

/// An intercepted tunnel: each request is recorded on its own, the tunnel as a whole at its end.
#[allow(clippy::too_many_arguments)]
async fn intercepted(
    on_upgrade: hyper::upgrade::OnUpgrade,
    upstream: TcpStream,
    host: String,
    port: u16,
    address: IpAddr,
    egress: Arc<SandboxEgress>,
    context: Context,
    (pending, decision): (Pending, Decision),
) {
    let Ok(upgraded) = on_upgrade.await else {
        return;
    };
    let counters = Arc::new(Counters::default());
    let upstream = Counted::new(upstream, Arc::clone(&egress), Arc::clone(&counters));
    let record_egress = Arc::clone(&egress);
    let record_host = host.clone();
    let on_request = move |r: crate::intercept::InterceptedRequest| {
        let (allowed, rule, reason) = match &r.verdict {
            Verdict::Allow { rule } => (r.error.is_none(), Some(rule.clone()), r.error.clone()),
            Verdict::Deny(reason) => (false, None, Some(reason.to_string())),
        };
        record_egress.record(EgressRecord {
            time: now(),
            kind: EgressKind::Http,
            host: record_host.clone(),
            port,
            address: Some(address.to_string()),
            method: Some(r.method),
            path: Some(r.path),
            allowed,
            rule,
            reason,
            audited: false,
            credentials: r.credentials,
            bytes_sent: 0,
            bytes_received: 0,
            duration_ms: 0,
        });
    };
    let outcome = crate::intercept::serve(
        TokioIo::new(upgraded),
        upstream,
        host,
        port,
        Arc::clone(&egress),
        context,
        on_request,
    )
    .await;
    let bytes = counters.get();
    match outcome {
        Ok(()) => pending.finish(&egress, Some(address), Ok(&decision), bytes),
        Err(message) => pending.failed(&egress, &message),
    }
}

/// Headers that belong to one hop and are not forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

async fn forward(
    req: Request<Incoming>,
    egress: Arc<SandboxEgress>,
    resolver: &Resolver,
) -> Response<Body> {
    let uri = req.uri().clone();
    let Some(authority) = uri.authority().cloned() else {
        return text(
            StatusCode::BAD_REQUEST,
            "this is paddock's egress proxy: send requests through it (HTTP_PROXY), not to it"
                .into(),
        );
    };
    if uri.scheme_str() != Some("http") {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "the proxy forwards http:// URLs; use CONNECT for {}",
                uri.scheme_str().unwrap_or("this scheme")
            ),
        );
    }
    let (host, port) = split_authority(&authority, 80);
    let path = uri.path().to_owned();
    let method = req.method().as_str().to_owned();
    let mut pending = Pending::new(EgressKind::Http, &host, port);
    pending.method = Some(method.clone());
    pending.path = Some(path.clone());
    let rules = egress.rules();
    let decision = rules.request(&host, port, &method, &path);
    let (pending, upstream, address, decision) =
        match admit(&egress, &rules, pending, decision, resolver).await {
            Ok(admitted) => admitted,
            Err(response) => return response,
        };
    let counters = Arc::new(Counters::default());
    let io = Counted::new(upstream, Arc::clone(&egress), Arc::clone(&counters));
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(pair) => pair,
        Err(e) => return text(StatusCode::BAD_GATEWAY, format!("paddock egress: {e}")),
    };
    let record_egress = Arc::clone(&egress);
    let record_counters = Arc::clone(&counters);
    tokio::spawn(async move {
        let _ = conn.await;
        pending.finish(
            &record_egress,
            Some(address),
            Ok(&decision),
            record_counters.get(),
        );
    });
    let (mut parts, body) = req.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    parts.uri = match uri.path_and_query() {
        Some(pq) => pq
            .as_str()
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/")),
        None => http::Uri::from_static("/"),
    };
    // The request goes to the host it was judged for: the sandbox's own Host header could
    // name another site on the same address (a shared front end).
    if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
        parts.headers.insert(http::header::HOST, v);
    }
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, body.boxed())
        }
        Err(e) => text(StatusCode::BAD_GATEWAY, format!("paddock egress: {e}")),
    }
}

/// Bytes each way on one connection.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Counters {
    fn get(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }
}

/// The upstream side of a connection, counting bytes into the connection's record and the
/// sandbox's byte limit; once the limit is passed, reads and writes fail.
struct Counted {
    inner: TcpStream,
    egress: Arc<SandboxEgress>,
    counters: Arc<Counters>,
}

impl Counted {
    fn new(inner: TcpStream, egress: Arc<SandboxEgress>, counters: Arc<Counters>) -> Self {
        Self {
            inner,
            egress,
            counters,
        }
    }
}

fn limit_spent() -> std::io::Error {
    std::io::Error::other("the sandbox's egress byte limit is spent")
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            this.counters.received.fetch_add(n, Ordering::Relaxed);
            if !this.egress.spend_bytes(n) {
                return Poll::Ready(Err(limit_spent()));
            }
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                this.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
                if this.egress.spend_bytes(n as u64) {
                    Poll::Ready(Ok(n))
                } else {
                    Poll::Ready(Err(limit_spent()))
                }
            }
            other => other,
        }
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
