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
