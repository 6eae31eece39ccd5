//! The in-cluster proxy's own small HTTP API (`--api-listen`, port 9090 in deploy/): what
//! `paddock gateway` reads a sandbox's egress record from, and Prometheus metrics. Read-only;
//! deploy/egress admits only the router's pods and the metrics scraper to it.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use paddock_egress::EgressProxy;
use paddock_wire::EgressLog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn handle(proxy: &EgressProxy, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if path == "/healthz" {
        return full(StatusCode::OK, "application/json", r#"{"status":"ok"}"#);
    }
    if path == "/metrics" {
        return full(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            proxy.metrics_text(),
        );
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["v1", "sandboxes", namespace, name, "egress"] = parts.as_slice() else {
        return full(StatusCode::NOT_FOUND, "text/plain", "not found\n");
    };
    let follow = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "follow=true" || p == "follow=1"));
    let Some(egress) = proxy.get(&format!("{namespace}/{name}")) else {
        // A sandbox without a policy (or not seen yet) has no record.
        return full(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&EgressLog::default()).unwrap_or_default(),
        );
    };
    let (records, next) = egress.log().follow();
    if !follow {
        let log = EgressLog { items: records };
        return full(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&log).unwrap_or_default(),
        );
    }
    let line = |r: &paddock_wire::EgressRecord| {
        let mut v = serde_json::to_vec(r).unwrap_or_default();
        v.push(b'\n');
        Ok::<_, Infallible>(Frame::data(Bytes::from(v)))
    };
    let kept: Vec<_> = records.iter().map(line).collect();
    let stream = futures::stream::iter(kept).chain(next.map(move |r| line(&r)));
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    if let Ok(v) = http::HeaderValue::from_str("application/x-ndjson") {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, proxy: EgressProxy, shutdown: CancellationToken) {
    let proxy = Arc::new(proxy);
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let proxy = Arc::clone(&proxy);
                async move { Ok::<_, Infallible>(handle(&proxy, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
