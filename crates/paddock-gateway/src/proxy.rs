//! Forwarding a client's request to a sandbox (its agent, or a port inside it): headers
//! cleaned, bodies streamed both ways, WebSocket upgrades relayed byte for byte.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, Request, StatusCode, header};
use hyper_util::rt::TokioIo;

use crate::agent_client::{AgentClient, uri};
use crate::router_contract::{strip_request_headers, strip_response_headers};
use paddock_backend::Target;

/// Why a forwarded request failed before the sandbox answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Nothing accepted the connection (the agent is down, or nothing listens on that port).
    #[error("could not connect to the sandbox: {0}")]
    Connect(String),
    /// The sandbox did not answer in time.
    #[error("the sandbox did not answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be built (a path a URI cannot hold).
    #[error("cannot forward this request: {0}")]
    BadRequest(String),
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).is_some()
        && headers
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Sends `req` to `target` at `path_and_query` (the target's path prefix is added here) and
/// returns the sandbox's response, streaming. `timeout` bounds the wait for response headers.
///
/// # Errors
/// Connection failures and timeouts, for the caller to turn into its own error format.
pub async fn forward(
    client: &AgentClient,
    target: &Target,
    mut req: Request<Body>,
    path_and_query: &str,
    timeout: Duration,
) -> Result<Response, ForwardError> {
    let upgrade = wants_upgrade(req.headers());
    let full = format!("{}{}", target.path_prefix, path_and_query);
    let uri = uri(&target.endpoint, &full).map_err(|e| ForwardError::BadRequest(e.to_string()))?;
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut out = Request::builder()
        .method(parts.method)
        .uri(uri)
        .version(http::Version::HTTP_11);
    if let Some(headers) = out.headers_mut() {
        *headers = parts.headers;
        strip_request_headers(headers, upgrade);
    }
    let out = out
        .body(body)
        .map_err(|e| ForwardError::BadRequest(e.to_string()))?;
    let response = match tokio::time::timeout(timeout, client.request(out)).await {
        Err(_) => return Err(ForwardError::Timeout(timeout)),
        Ok(Err(e)) => return Err(ForwardError::Connect(connect_reason(&e))),
        Ok(Ok(r)) => r,
    };
    if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
        (client_upgrade, response.status())
    {
        let (mut parts, body) = response.into_parts();
        let mut sandbox_side = hyper::Response::from_parts(parts.clone(), body);
        let sandbox_upgrade = hyper::upgrade::on(&mut sandbox_side);
        tokio::spawn(async move {
            let (Ok(client_io), Ok(sandbox_io)) = (client_upgrade.await, sandbox_upgrade.await)
            else {
                return;
            };
            let mut client_io = TokioIo::new(client_io);
            let mut sandbox_io = TokioIo::new(sandbox_io);
            let _ = tokio::io::copy_bidirectional(&mut client_io, &mut sandbox_io).await;
        });
        parts.headers.remove(header::CONTENT_LENGTH);
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = response.into_parts();
    strip_response_headers(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}

fn connect_reason(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    reason
}

/// Whether a request is gRPC: HTTP/2, `POST`, and `Content-Type: application/grpc` or
/// `application/grpc+<codec>` (gRPC-Web is not: it rides HTTP/1.1 and is forwarded as is).
pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.version() == http::Version::HTTP_2
        && req.method() == http::Method::POST
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct == "application/grpc" || ct.starts_with("application/grpc+"))
}

/// A gRPC `grpc-timeout` (1–8 digits and a unit `H M S m u n`), if valid.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Sends a gRPC request to `target` over h2c and returns the sandbox's response, trailers
/// included, streaming.
///
/// # Errors
/// As [`forward`].
pub async fn forward_grpc(
    client: &AgentClient,
    target: &Target,
    req: Request<Body>,
    path_and_query: &str,
    timeout: Duration,
) -> Result<Response, ForwardError> {
    let full = format!("{}{}", target.path_prefix, path_and_query);
    let uri = uri(&target.endpoint, &full).map_err(|e| ForwardError::BadRequest(e.to_string()))?;
    let (parts, body) = req.into_parts();
    let mut out = Request::builder()
        .method(parts.method)
        .uri(uri)
        .version(http::Version::HTTP_2);
    if let Some(headers) = out.headers_mut() {
        *headers = parts.headers;
        strip_request_headers(headers, false);
        headers.insert(header::TE, http::HeaderValue::from_static("trailers"));
    }
    let out = out
        .body(body)
        .map_err(|e| ForwardError::BadRequest(e.to_string()))?;
    let response = match tokio::time::timeout(timeout, client.request(out)).await {
        Err(_) => return Err(ForwardError::Timeout(timeout)),
        Ok(Err(e)) => return Err(ForwardError::Connect(connect_reason(&e))),
        Ok(Ok(r)) => r,
    };
    let (mut parts, body) = response.into_parts();
    strip_response_headers(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Whether a request is binary gRPC-Web (`application/grpc-web` or `application/grpc-web+…`,
/// not the base64 `-text` form), which the router translates to gRPC for the sandbox.
pub fn is_grpc_web<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::POST
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                (ct == "application/grpc-web" || ct.starts_with("application/grpc-web+"))
                    && !ct.starts_with("application/grpc-web-text")
            })
}

/// Sends a gRPC-Web request to `target` as gRPC over h2c and answers in gRPC-Web: the same
/// length-prefixed messages, and the gRPC trailers as a final frame flagged `0x80`.
///
/// # Errors
/// As [`forward`].
pub async fn forward_grpc_web(
    client: &AgentClient,
    target: &Target,
    mut req: Request<Body>,
    path_and_query: &str,
    timeout: Duration,
) -> Result<Response, ForwardError> {
    let web_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| http::HeaderValue::from_static("application/grpc-web"));
    let grpc_type = web_type
        .to_str()
        .unwrap_or("application/grpc-web")
        .replacen("application/grpc-web", "application/grpc", 1);
    if let Ok(v) = http::HeaderValue::from_str(&grpc_type) {
        req.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    req.headers_mut().remove("x-grpc-web");
    *req.version_mut() = http::Version::HTTP_2;
    let response = forward_grpc(client, target, req, path_and_query, timeout).await?;
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(header::CONTENT_TYPE, web_type);
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(
        parts,
        Body::new(GrpcWebBody {
            inner: body,
            done: false,
        }),
    ))
}

/// gRPC's body with its trailers turned into a gRPC-Web trailer frame.
struct GrpcWebBody {
    inner: Body,
    done: bool,
}

fn trailer_frame(trailers: &HeaderMap) -> bytes::Bytes {
    let mut text = String::new();
    for (k, v) in trailers {
        text.push_str(k.as_str());
        text.push(':');
        text.push_str(v.to_str().unwrap_or_default());
        text.push_str("\r\n");
    }
    let mut frame = Vec::with_capacity(5 + text.len());
    frame.push(0x80);
    frame.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(text.as_bytes());
    bytes::Bytes::from(frame)
}

impl http_body::Body for GrpcWebBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_trailers() {
                Ok(trailers) => {
                    self.done = true;
                    Poll::Ready(Some(Ok(http_body::Frame::data(trailer_frame(&trailers)))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

/// The gRPC status code of a router failure with HTTP status `status` (upstream's mapping).
pub fn grpc_status_of(status: u16) -> u8 {
    match status {
        400 => 3,
        401 => 16,
        403 => 7,
        502 => 14,
        504 => 4,
        _ => 13,
    }
}

/// A trailers-only gRPC answer for a failure the router made itself: HTTP 200,
/// `Content-Type: application/grpc`, `Grpc-Status` and a percent-encoded `Grpc-Message`.
pub fn grpc_failure(status: u16, message: &str) -> Response {
    let encoded: String = message
        .bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut r = Response::new(Body::empty());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    h.insert(
        "grpc-status",
        http::HeaderValue::from(u16::from(grpc_status_of(status))),
    );
    if let Ok(v) = http::HeaderValue::from_str(&encoded) {
        h.insert("grpc-message", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_says() {
        let t = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(t("5S"), Some(Duration::from_secs(5)));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("123456789S"), None, "at most 8 digits");
        assert_eq!(t("5"), None);
        assert_eq!(t("S"), None);
        assert_eq!(t("5x"), None);
    }

    #[test]
    fn router_failures_map_to_upstreams_grpc_codes() {
        let r = grpc_failure(403, "forbidden 100%");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(r.headers()["grpc-message"], "forbidden 100%25");
        assert_eq!(grpc_status_of(401), 16);
        assert_eq!(grpc_status_of(502), 14);
        assert_eq!(grpc_status_of(500), 13);
    }
}
