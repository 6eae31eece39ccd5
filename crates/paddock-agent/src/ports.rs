//! Port forwarding: `/v1/ports/{port}/{*path}` proxies HTTP to a server the workload runs on
//! `127.0.0.1:{port}` inside the sandbox — any method, the raw path and query kept, bodies
//! streamed both ways, WebSocket (HTTP/1.1 upgrade) connections relayed. The gateway uses it to
//! honour upstream's `X-Sandbox-Port` for servers the workload runs.

use paddock_wire::Code;
use std::io;
use std::net::Ipv4Addr;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::header::{AUTHORIZATION, CONNECTION, HOST, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::ApiError;
use crate::state::SharedState;

/// Headers about one connection rather than the message (RFC 9110 §7.6.1); never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/ports/{port}", any(forward))
        .route("/v1/ports/{port}/", any(forward))
        .route("/v1/ports/{port}/{*path}", any(forward))
}

/// The port and the origin-form target (`/path?query`, as received: escapes kept) of a
/// `/v1/ports/...` URI.
fn split_target(uri: &Uri) -> Result<(u16, String), ApiError> {
    let rest = uri.path().strip_prefix("/v1/ports/").unwrap_or("");
    let (port, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            ApiError::invalid(format!("port {port:?} must be a number from 1 to 65535"))
        })?;
    let mut target = path.to_owned();
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    Ok((port, target))
}

/// Removes hop-by-hop headers, including those the `Connection` header lists.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The protocol a request asks to upgrade to (`Connection: upgrade` plus `Upgrade`).
fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers.get_all(CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    if asks {
        headers.get(UPGRADE).cloned()
    } else {
        None
    }
}

fn unavailable(port: u16, err: &io::Error) -> ApiError {
    let message = if err.kind() == io::ErrorKind::ConnectionRefused {
        format!("nothing listens on port {port} inside the sandbox")
    } else {
        format!("cannot connect to port {port} inside the sandbox: {err}")
    };
    ApiError::new(StatusCode::BAD_GATEWAY, Code::Unavailable, message)
}

fn bad_gateway(port: u16, err: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        Code::Unavailable,
        format!("the server on port {port} inside the sandbox failed: {err}"),
    )
}

async fn forward(State(state): State<SharedState>, request: Request) -> Response {
    match proxy(&state, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn proxy(state: &SharedState, request: Request) -> Result<Response, ApiError> {
    let (port, target) = split_target(request.uri())?;
    let uri: Uri = target
        .parse()
        .map_err(|err| ApiError::invalid(format!("invalid path {target:?}: {err}")))?;
    let (mut parts, body) = request.into_parts();
    let upgrade = requested_upgrade(&parts.headers);
    let client_upgrade = upgrade
        .as_ref()
        .and_then(|_| parts.extensions.remove::<OnUpgrade>());
    let mut headers = std::mem::take(&mut parts.headers);
    strip_hop_by_hop(&mut headers);
    if state.config.token.is_some() {
        // The agent's own credential is not the workload's business.
        headers.remove(AUTHORIZATION);
    }
    if let Some(protocol) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol);
    }
    if let Ok(host) = HeaderValue::from_str(&format!("127.0.0.1:{port}")) {
        headers.insert(HOST, host);
    }
    let mut upstream = http::Request::new(body);
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = uri;
    *upstream.version_mut() = Version::HTTP_11;
    *upstream.headers_mut() = headers;

    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|err| unavailable(port, &err))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| bad_gateway(port, &err))?;
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!(port, error = %err, "forwarded connection ended with an error");
        }
    });
    let mut response = sender
        .send_request(upstream)
        .await
        .map_err(|err| bad_gateway(port, &err))?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(bad_gateway(
                port,
                &"it switched protocols without an HTTP/1.1 upgrade request",
            ));
        };
        let server_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, server_upgrade) {
                Ok((client, server)) => {
                    let mut client = TokioIo::new(client);
                    let mut server = TokioIo::new(server);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                Err(err) => tracing::debug!(port, error = %err, "upgrade relay failed"),
            }
        });
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_the_raw_path_and_query() {
        let uri: Uri = "/v1/ports/8080/a%2Fb/c?x=1&y=%20".parse().unwrap();
        assert_eq!(
            split_target(&uri).unwrap(),
            (8080, "/a%2Fb/c?x=1&y=%20".to_owned())
        );
        let uri: Uri = "/v1/ports/3000".parse().unwrap();
        assert_eq!(split_target(&uri).unwrap(), (3000, "/".to_owned()));
        let uri: Uri = "/v1/ports/3000/?q".parse().unwrap();
        assert_eq!(split_target(&uri).unwrap(), (3000, "/?q".to_owned()));
        for bad in ["/v1/ports/0/x", "/v1/ports/65536", "/v1/ports/http/x"] {
            let uri: Uri = bad.parse().unwrap();
            assert!(split_target(&uri).is_err(), "{bad}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_lists_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }
}
