//! Upstream's sandbox-router request contract (contract §4.1): which sandbox a request is for,
//! read from the `X-Sandbox-*` headers with upstream's validation and error texts, and which
//! headers must not travel on to the sandbox.
//!
//! Pure parsing; the proxy that acts on a [`RouteTarget`] lives with the server.

use std::net::IpAddr;

pub use paddock_backend::targets::pod_ip_allowed;
use std::time::Duration;

use http::HeaderMap;

/// Header naming the Sandbox (its name = pod name = Service name). Required.
pub const SANDBOX_ID: &str = "x-sandbox-id";
/// Header naming the Sandbox's namespace (default `default`).
pub const SANDBOX_NAMESPACE: &str = "x-sandbox-namespace";
/// Header naming the port inside the sandbox (default 8888).
pub const SANDBOX_PORT: &str = "x-sandbox-port";
/// Header giving the pod IP directly (guarded against SSRF).
pub const SANDBOX_POD_IP: &str = "x-sandbox-pod-ip";
/// Header giving the Sandbox UID (the Go router's cache key).
pub const SANDBOX_UID: &str = "x-sandbox-uid";
/// Header giving a per-request timeout in seconds, capped at the proxy timeout.
pub const SANDBOX_TIMEOUT: &str = "x-sandbox-timeout";

/// The default port of the sandbox runtime (upstream's python runtime listens on 8888).
pub use paddock_backend::targets::DEFAULT_PORT;

/// Where a routed request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTarget {
    /// The Sandbox name.
    pub sandbox: String,
    /// Its namespace.
    pub namespace: String,
    /// The port inside the sandbox.
    pub port: u16,
    /// A pod IP given by the client, already checked against the SSRF guard.
    pub pod_ip: Option<IpAddr>,
    /// The Sandbox UID, when given.
    pub uid: Option<String>,
    /// How long to wait for the sandbox: the client's `X-Sandbox-Timeout`, capped at the
    /// proxy timeout.
    pub timeout: Duration,
}

/// A request the router refuses, with upstream's status code and `detail` text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct RouteError {
    /// HTTP status code.
    pub status: u16,
    /// Upstream's message, sent as `{"detail": ...}`.
    pub detail: String,
}

impl RouteError {
    fn bad_request(detail: &str) -> Self {
        Self {
            status: 400,
            detail: detail.to_owned(),
        }
    }

    /// The JSON body upstream's router answers with.
    pub fn body(&self) -> String {
        serde_json::json!({ "detail": self.detail }).to_string()
    }
}

/// Options of the contract that a deployment may change.
#[derive(Clone, Copy, Debug)]
pub struct RouteOptions {
    /// Upper bound of a proxied request (upstream default 180 s).
    pub proxy_timeout: Duration,
    /// Accept loopback pod IPs (the Go router's `--allow-loopback-pod-ip`).
    pub allow_loopback_pod_ip: bool,
}

impl Default for RouteOptions {
    fn default() -> Self {
        Self {
            proxy_timeout: Duration::from_secs(180),
            allow_loopback_pod_ip: false,
        }
    }
}

/// Whether the request is addressed through the router contract at all.
pub fn is_routed(headers: &HeaderMap) -> bool {
    headers.contains_key(SANDBOX_ID)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, RouteError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| RouteError::bad_request(&format!("Invalid {name} header."))),
    }
}

/// A DNS-1123 label, as upstream validates namespaces and sandbox IDs.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Reads the routing headers with upstream's validation.
///
/// # Errors
/// 400 with upstream's exact `detail` text for a missing or malformed header.
pub fn parse(headers: &HeaderMap, options: RouteOptions) -> Result<RouteTarget, RouteError> {
    let sandbox = header(headers, SANDBOX_ID)?
        .ok_or_else(|| RouteError::bad_request("X-Sandbox-ID header is required."))?;
    if !is_dns_label(sandbox) {
        return Err(RouteError::bad_request("Invalid sandbox ID format."));
    }
    let namespace = header(headers, SANDBOX_NAMESPACE)?
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    if !is_dns_label(namespace) {
        return Err(RouteError::bad_request("Invalid namespace format."));
    }
    let port = match header(headers, SANDBOX_PORT)?.filter(|s| !s.is_empty()) {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| RouteError::bad_request("Invalid port format."))?,
    };
    let pod_ip = match header(headers, SANDBOX_POD_IP)?.filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => {
            let ip: IpAddr = raw
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| RouteError::bad_request("Invalid target IP address."))?;
            if !pod_ip_allowed(ip, options.allow_loopback_pod_ip) {
                return Err(RouteError::bad_request("Invalid target IP address."));
            }
            Some(ip)
        }
    };
    let uid = header(headers, SANDBOX_UID)?
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let timeout = match header(headers, SANDBOX_TIMEOUT)?.and_then(|t| t.parse::<f64>().ok()) {
        Some(secs) if secs.is_finite() && secs > 0.0 => {
            Duration::from_secs_f64(secs).min(options.proxy_timeout)
        }
        _ => options.proxy_timeout,
    };
    Ok(RouteTarget {
        sandbox: sandbox.to_owned(),
        namespace: namespace.to_owned(),
        port,
        pod_ip,
        uid,
        timeout,
    })
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) that a proxy never forwards.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes what must not reach the sandbox: `Host`, `Authorization` (consumed by the router's
/// own auth), hop-by-hop headers and those named in `Connection`, and the `X-Sandbox-*` routing
/// headers. Keeps `Upgrade`/`Connection` when `keep_upgrade` (WebSocket relays set them anew).
pub fn strip_request_headers(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    for name in HOP_BY_HOP.iter().map(|s| (*s).to_owned()).chain(listed) {
        if keep_upgrade && (name == "upgrade" || name == "connection") {
            continue;
        }
        headers.remove(name.as_str());
    }
    headers.remove(http::header::HOST);
    headers.remove(http::header::AUTHORIZATION);
    let routing: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-sandbox-"))
        .cloned()
        .collect();
    for name in routing {
        headers.remove(name);
    }
}

/// Removes hop-by-hop headers from a response before it goes back to the client.
pub fn strip_response_headers(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        parse(&headers(pairs), RouteOptions::default())
            .unwrap_err()
            .detail
    }

    #[test]
    fn defaults_follow_upstream() {
        let t = parse(
            &headers(&[("X-Sandbox-ID", "my-sandbox")]),
            RouteOptions::default(),
        )
        .unwrap();
        assert_eq!(
            (t.namespace.as_str(), t.port, t.pod_ip),
            ("default", 8888, None)
        );
        assert_eq!(t.timeout, Duration::from_secs(180));
    }

    #[test]
    fn missing_and_malformed_headers_get_upstreams_messages() {
        assert_eq!(err(&[]), "X-Sandbox-ID header is required.");
        assert_eq!(
            err(&[("X-Sandbox-ID", "Bad_Name")]),
            "Invalid sandbox ID format."
        );
        assert_eq!(
            err(&[("X-Sandbox-ID", &"a".repeat(64))]),
            "Invalid sandbox ID format."
        );
        assert_eq!(
            err(&[("X-Sandbox-ID", "a"), ("X-Sandbox-Namespace", "-ns")]),
            "Invalid namespace format."
        );
        assert_eq!(
            err(&[("X-Sandbox-ID", "a"), ("X-Sandbox-Port", "0")]),
            "Invalid port format."
        );
        assert_eq!(
            err(&[("X-Sandbox-ID", "a"), ("X-Sandbox-Port", "70000")]),
            "Invalid port format."
        );
        assert_eq!(
            err(&[("X-Sandbox-ID", "a"), ("X-Sandbox-Pod-IP", "not-an-ip")]),
            "Invalid target IP address."
        );
    }

    #[test]
    fn pod_ip_guard_blocks_metadata_loopback_and_multicast() {
        for bad in [
            "169.254.169.254",
            "127.0.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "::ffff:169.254.169.254",
        ] {
            assert_eq!(
                err(&[("X-Sandbox-ID", "a"), ("X-Sandbox-Pod-IP", bad)]),
                "Invalid target IP address.",
                "{bad}"
            );
        }
        let ok = parse(
            &headers(&[("X-Sandbox-ID", "a"), ("X-Sandbox-Pod-IP", "[fd00::5]")]),
            RouteOptions::default(),
        )
        .unwrap();
        assert_eq!(ok.pod_ip, Some("fd00::5".parse().unwrap()));
        let loopback = RouteOptions {
            allow_loopback_pod_ip: true,
            ..RouteOptions::default()
        };
        assert!(
            parse(
                &headers(&[("X-Sandbox-ID", "a"), ("X-Sandbox-Pod-IP", "127.0.0.1")]),
                loopback
            )
            .is_ok()
        );
    }

    #[test]
    fn timeout_is_capped_at_the_proxy_timeout() {
        let t = parse(
            &headers(&[("X-Sandbox-ID", "a"), ("X-Sandbox-Timeout", "2.5")]),
            RouteOptions::default(),
        )
        .unwrap();
        assert_eq!(t.timeout, Duration::from_millis(2500));
        let t = parse(
            &headers(&[("X-Sandbox-ID", "a"), ("X-Sandbox-Timeout", "9999")]),
            RouteOptions::default(),
        )
        .unwrap();
        assert_eq!(t.timeout, Duration::from_secs(180));
        let t = parse(
            &headers(&[("X-Sandbox-ID", "a"), ("X-Sandbox-Timeout", "-1")]),
            RouteOptions::default(),
        )
        .unwrap();
        assert_eq!(t.timeout, Duration::from_secs(180));
    }

    #[test]
    fn stripping_removes_auth_routing_and_hop_by_hop_headers() {
        let mut h = headers(&[
            ("Host", "router"),
            ("Authorization", "Bearer secret"),
            ("Connection", "keep-alive, X-Custom-Hop"),
            ("X-Custom-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("X-Sandbox-ID", "a"),
            ("X-Sandbox-Port", "8888"),
            ("Content-Type", "application/json"),
        ]);
        strip_request_headers(&mut h, false);
        let left: Vec<&str> = h.keys().map(http::HeaderName::as_str).collect();
        assert_eq!(left, ["content-type"]);
    }

    #[test]
    fn error_body_is_upstreams_json() {
        assert_eq!(
            RouteError::bad_request("Invalid port format.").body(),
            r#"{"detail":"Invalid port format."}"#
        );
    }
}
