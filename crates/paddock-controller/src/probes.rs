//! The controller's plain-HTTP endpoints: metrics (`GET /metrics`) and probes (`GET /healthz`,
//! `GET /readyz`). Each server takes its listener and a shutdown token, so tests bind
//! `127.0.0.1:0` and stop cleanly; on shutdown a server stops accepting and lets in-flight
//! requests finish.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use paddock_control::metrics::Metrics;

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

async fn drain(graceful: GracefulShutdown) {
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
    }
}

/// Readiness of the process (`/readyz`): set once start-up is done.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the process ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What a plain-HTTP server answers.
#[derive(Clone, Debug)]
pub enum Endpoints {
    /// `/metrics`.
    Metrics(Arc<Metrics>),
    /// `/healthz` (always ok) and `/readyz` (ok once ready).
    Health(Readiness),
}

fn plain_handler(endpoints: &Endpoints, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use GET\n");
    }
    match (endpoints, req.uri().path()) {
        (Endpoints::Metrics(m), "/metrics") => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            m.encode(),
        ),
        (Endpoints::Health(_), "/healthz") => respond(StatusCode::OK, "text/plain", "ok"),
        (Endpoints::Health(r), "/readyz") if r.is_ready() => {
            respond(StatusCode::OK, "text/plain", "ok")
        }
        (Endpoints::Health(_), "/readyz") => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting: certificates or caches not ready\n",
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Serves metrics or probes over plain HTTP on `listener` until `shutdown`.
pub async fn serve_plain(listener: TcpListener, endpoints: Endpoints, shutdown: CancellationToken) {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, _peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let endpoints = endpoints.clone();
        let conn = auto::Builder::new(TokioExecutor::new())
            .serve_connection(
                TokioIo::new(tcp),
                service_fn(move |req| {
                    let r = plain_handler(&endpoints, &req);
                    async move { Ok::<_, Infallible>(r) }
                }),
            )
            .into_owned();
        let fut = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = fut.await;
        });
    }
    drain(graceful).await;
}
