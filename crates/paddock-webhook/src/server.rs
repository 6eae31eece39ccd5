//! The webhook's HTTPS server: `POST /convert` with a ConversionReview. It takes its listener
//! and a shutdown token, so tests bind `127.0.0.1:0` and stop cleanly; on shutdown it stops
//! accepting and lets in-flight requests finish.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::convert::review;

/// Largest ConversionReview body accepted (a list conversion carries every object at once).
pub const MAX_REVIEW_BYTES: usize = 64 * 1024 * 1024;
/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn error_json(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    respond(status, "application/json", body)
}

/// Handles one webhook request.
pub async fn webhook_handler(req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() != "/convert" {
        return error_json(
            StatusCode::NOT_FOUND,
            "not found: the webhook serves POST /convert",
        );
    }
    if req.method() != Method::POST {
        return error_json(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST with a ConversionReview",
        );
    }
    let body = match Limited::new(req.into_body(), MAX_REVIEW_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error_json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "cannot read the ConversionReview (at most {MAX_REVIEW_BYTES} bytes): {e}"
                ),
            );
        }
    };
    match review(&body) {
        Ok(resp) => match serde_json::to_vec(&resp) {
            Ok(json) => respond(StatusCode::OK, "application/json", json),
            Err(e) => error_json(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Err(e) => error_json(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// Serves the conversion webhook over TLS on `listener` until `shutdown`.
pub async fn serve_webhook(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(
                TokioIo::new(tls),
                service_fn(|req| async { Ok::<_, Infallible>(webhook_handler(req).await) }),
            );
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
            }
        });
    }
    drain(graceful).await;
}

async fn drain(graceful: GracefulShutdown) {
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
    }
}
