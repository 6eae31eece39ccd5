//! Upstream 1.0's browser routing (contract §11.2): a sandbox's port opened from a URL,
//! `<prefix>/<namespace>/<id>/<port>/<rest>` (preview URLs), with the token carried once in a
//! query parameter and then in a session cookie scoped to that sandbox's path, and a check of
//! `Origin` on cookie-carried requests against cross-site WebSocket hijacking.
//!
//! Pure parsing and decisions; the server applies them.

use http::HeaderMap;

use crate::router_contract::{RouteError, is_dns_label};

/// `--path-routing-prefix`: must start with `/`, must not end with `/`, no whitespace or
/// control characters.
///
/// # Errors
/// What is wrong with it.
pub fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if !prefix.starts_with('/') {
        return Err("must start with /");
    }
    if prefix.ends_with('/') {
        return Err("must not end with /");
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not hold whitespace or control characters");
    }
    Ok(())
}

/// A request routed by its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRoute {
    /// Namespace.
    pub namespace: String,
    /// Sandbox name.
    pub sandbox: String,
    /// Port inside the sandbox.
    pub port: u16,
    /// What the sandbox receives: `/` + the rest, escapes kept (`/` when absent); no query.
    pub upstream_path: String,
    /// `<prefix>/<namespace>/<id>/<port>/`, the session cookie's `Path`, as the client sent it.
    pub base: String,
}

fn bad(detail: &str) -> RouteError {
    RouteError {
        status: 400,
        detail: detail.to_owned(),
    }
}

fn decode(segment: &str) -> Result<String, RouteError> {
    let invalid = || bad("Invalid percent-encoding in path.");
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(invalid)?;
            let text = std::str::from_utf8(hex).map_err(|_| invalid())?;
            out.push(u8::from_str_radix(text, 16).map_err(|_| invalid())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid())
}

/// The route of an escaped request path under `prefix`: `None` when the path is not under
/// `<prefix>/` (header routing applies), else the route or upstream's 400.
pub fn parse(path: &str, prefix: &str) -> Option<Result<PathRoute, RouteError>> {
    let after = path.strip_prefix(prefix)?.strip_prefix('/')?;
    Some(parse_after(prefix, after))
}

fn parse_after(prefix: &str, after: &str) -> Result<PathRoute, RouteError> {
    let form = || {
        bad(&format!(
            "Path-routed request must have the form {prefix}/<namespace>/<id>/<port>/..."
        ))
    };
    let mut parts = after.splitn(4, '/');
    let (Some(ns), Some(id), Some(port)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(form());
    };
    if ns.is_empty() || id.is_empty() || port.is_empty() {
        return Err(form());
    }
    let rest = parts.next();
    let namespace = decode(ns)?;
    let sandbox = decode(id)?;
    let port_text = decode(port)?;
    if !is_dns_label(&namespace) {
        return Err(bad("Invalid namespace format."));
    }
    if !is_dns_label(&sandbox) {
        return Err(bad("Invalid sandbox ID format."));
    }
    let port = port_text
        .parse::<u16>()
        .ok()
        .filter(|p| *p >= 1 && !port_text.starts_with('+'))
        .ok_or_else(|| bad("Invalid port format."))?;
    Ok(PathRoute {
        namespace,
        sandbox,
        port,
        upstream_path: format!("/{}", rest.unwrap_or_default()),
        base: format!("{prefix}/{ns}/{id}/{port}/"),
    })
}

/// `SameSite` of the session cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SameSite {
    /// `Lax` (the default).
    #[default]
    Lax,
    /// `Strict`.
    Strict,
    /// `None` (needs `Secure`).
    None,
}

impl SameSite {
    /// From the flag's value.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "lax" => Some(Self::Lax),
            "strict" => Some(Self::Strict),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    fn attribute(self) -> &'static str {
        match self {
            Self::Lax => "Lax",
            Self::Strict => "Strict",
            Self::None => "None",
        }
    }
}

/// Cookie sessions for path-routed requests (`--authz-cookie-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieSessions {
    /// The cookie's name.
    pub name: String,
    /// The query parameter a first request brings the token in, if any.
    pub query_param: Option<String>,
    /// `SameSite`.
    pub same_site: SameSite,
    /// Leave `Secure` out (plain-HTTP development only).
    pub insecure: bool,
    /// Other origins allowed to send cookie-carried requests, normalised.
    pub allowed_origins: Vec<String>,
    /// Take the scheme of the router's own origin from `X-Forwarded-Proto`.
    pub trust_forwarded_proto: bool,
}

/// Characters allowed in the cookie's and the parameter's names.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

/// `scheme://host[:port]`, lower-cased, default ports dropped; `None` for anything with a
/// path, query, fragment or user info.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().to_ascii_lowercase();
    let (scheme, rest) = origin.split_once("://")?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#', '@'])
    {
        return None;
    }
    let rest = match (scheme, rest.rsplit_once(':')) {
        ("https", Some((host, "443"))) | ("http", Some((host, "80"))) => host,
        _ => rest,
    };
    Some(format!("{scheme}://{rest}"))
}

/// Where the credential of a request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// `Authorization: Bearer`.
    Header,
    /// The query parameter (a first visit).
    Query,
    /// The session cookie.
    Cookie,
}

impl CookieSessions {
    /// The token in the query parameter, and the query without it (other parameters keep
    /// their order and encoding).
    pub fn from_query(&self, query: Option<&str>) -> Option<(String, Option<String>)> {
        let param = self.query_param.as_deref()?;
        let query = query?;
        let mut token = None;
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let key = pair.split('=').next().unwrap_or_default();
            if key == param && token.is_none() {
                let value = pair.split_once('=').map_or("", |(_, v)| v);
                token = Some(
                    decode(value)
                        .unwrap_or_else(|_| value.to_owned())
                        .replace('+', " "),
                );
            } else {
                kept.push(pair);
            }
        }
        let token = token.filter(|t| !t.is_empty())?;
        Some((token, (!kept.is_empty()).then(|| kept.join("&"))))
    }

    /// The session cookie's value, from any `Cookie` line.
    pub fn from_cookies(&self, headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|line| line.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == self.name)
            .map(|(_, v)| v.trim_matches('"').to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Removes the session cookie from every `Cookie` line, keeping the others.
    pub fn strip_cookie(&self, headers: &mut HeaderMap) {
        let lines: Vec<String> = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|line| {
                line.split(';')
                    .map(str::trim)
                    .filter(|pair| {
                        !pair.is_empty() && pair.split('=').next() != Some(self.name.as_str())
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|l| !l.is_empty())
            .collect();
        headers.remove(http::header::COOKIE);
        for line in lines {
            if let Ok(v) = http::HeaderValue::from_str(&line) {
                headers.append(http::header::COOKIE, v);
            }
        }
    }

    /// The `Set-Cookie` value for `token` under `base` (no expiry: a browser-session cookie,
    /// valid as long as the token).
    pub fn set_cookie(&self, token: &str, base: &str) -> String {
        let secure = if self.insecure { "" } else { "; Secure" };
        format!(
            "{}={token}; Path={base}; HttpOnly{secure}; SameSite={}",
            self.name,
            self.same_site.attribute()
        )
    }

    /// Whether a cookie-carried request's `Origin` may use the session: none, the router's own
    /// (`scheme://Host`), or one allowed by the flag.
    pub fn origin_allowed(&self, headers: &HeaderMap, tls: bool) -> bool {
        let Some(origin) = headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
        else {
            return true;
        };
        let Some(origin) = normalize_origin(origin) else {
            return false;
        };
        let forwarded = self
            .trust_forwarded_proto
            .then(|| headers.get("x-forwarded-proto"))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let scheme = forwarded.unwrap_or_else(|| if tls { "https" } else { "http" }.to_owned());
        let own = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(|host| normalize_origin(&format!("{scheme}://{host}")));
        own.as_deref() == Some(origin.as_str()) || self.allowed_origins.contains(&origin)
    }
}

/// Whether a token can be a cookie value (RFC 6265 cookie-octets).
pub fn is_cookie_octets(token: &str) -> bool {
    token
        .bytes()
        .all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> CookieSessions {
        CookieSessions {
            name: "sbx_session".into(),
            query_param: Some("token".into()),
            same_site: SameSite::Lax,
            insecure: false,
            allowed_origins: vec!["https://ide.example.com".into()],
            trust_forwarded_proto: false,
        }
    }

    #[test]
    fn a_path_names_namespace_sandbox_and_port_and_keeps_the_rest_escaped() {
        let r = parse("/sandbox/team-a/sb-1/8080/app/a%2Fb", "/sandbox")
            .expect("under the prefix")
            .expect("valid");
        assert_eq!(
            r,
            PathRoute {
                namespace: "team-a".into(),
                sandbox: "sb-1".into(),
                port: 8080,
                upstream_path: "/app/a%2Fb".into(),
                base: "/sandbox/team-a/sb-1/8080/".into(),
            }
        );
        let bare = parse("/sandbox/team-a/sb-1/8080", "/sandbox")
            .unwrap()
            .unwrap();
        assert_eq!(bare.upstream_path, "/");
        let encoded = parse("/sandbox/team%2Da/sb-1/80%38%30/", "/sandbox")
            .unwrap()
            .unwrap();
        assert_eq!((encoded.namespace.as_str(), encoded.port), ("team-a", 8080));
    }

    #[test]
    fn paths_outside_the_prefix_fall_through_and_bad_ones_get_upstreams_details() {
        assert!(parse("/sandboxes/a/b/1/", "/sandbox").is_none());
        assert!(parse("/sandbox", "/sandbox").is_none());
        assert!(parse("/v1/health", "/sandbox").is_none());
        let detail = |p: &str| parse(p, "/sandbox").unwrap().unwrap_err().detail;
        assert_eq!(
            detail("/sandbox/a/b"),
            "Path-routed request must have the form /sandbox/<namespace>/<id>/<port>/..."
        );
        assert_eq!(
            detail("/sandbox/a%zz/b/1/"),
            "Invalid percent-encoding in path."
        );
        assert_eq!(detail("/sandbox/A/b/1/"), "Invalid namespace format.");
        assert_eq!(detail("/sandbox/a/b_c/1/"), "Invalid sandbox ID format.");
        for port in ["0", "65536", "x", "+80"] {
            assert_eq!(
                detail(&format!("/sandbox/a/b/{port}/")),
                "Invalid port format."
            );
        }
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("/sandbox").is_ok());
        assert!(check_prefix("sandbox").is_err());
        assert!(check_prefix("/sandbox/").is_err());
        assert!(check_prefix("/sand box").is_err());
    }

    #[test]
    fn the_query_token_is_taken_out_and_the_rest_kept_in_order() {
        let s = sessions();
        assert_eq!(
            s.from_query(Some("a=1&token=v2.k.p.s&b=%20x")),
            Some(("v2.k.p.s".into(), Some("a=1&b=%20x".into())))
        );
        assert_eq!(s.from_query(Some("token=abc")), Some(("abc".into(), None)));
        assert_eq!(s.from_query(Some("a=1")), None);
        assert_eq!(s.from_query(None), None);
    }

    #[test]
    fn the_session_cookie_is_read_and_stripped_leaving_the_others() {
        let s = sessions();
        let mut h = HeaderMap::new();
        h.append("cookie", "theme=dark; sbx_session=tok".parse().unwrap());
        h.append("cookie", "lang=en".parse().unwrap());
        assert_eq!(s.from_cookies(&h).as_deref(), Some("tok"));
        s.strip_cookie(&mut h);
        let lines: Vec<&str> = h
            .get_all("cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(lines, ["theme=dark", "lang=en"]);
        assert_eq!(
            s.set_cookie("tok", "/sandbox/a/b/1/"),
            "sbx_session=tok; Path=/sandbox/a/b/1/; HttpOnly; Secure; SameSite=Lax"
        );
    }

    #[test]
    fn origins_the_router_itself_or_the_allowlist_only() {
        let s = sessions();
        let headers = |origin: Option<&str>, host: &str| {
            let mut h = HeaderMap::new();
            h.insert("host", host.parse().unwrap());
            if let Some(o) = origin {
                h.insert("origin", o.parse().unwrap());
            }
            h
        };
        assert!(s.origin_allowed(&headers(None, "r.example.com"), true));
        assert!(s.origin_allowed(
            &headers(Some("https://r.example.com"), "r.example.com"),
            true
        ));
        assert!(s.origin_allowed(
            &headers(Some("https://r.example.com:443"), "r.example.com"),
            true
        ));
        assert!(!s.origin_allowed(
            &headers(Some("http://r.example.com"), "r.example.com"),
            true
        ));
        assert!(s.origin_allowed(
            &headers(Some("HTTPS://IDE.example.com"), "r.example.com"),
            true
        ));
        assert!(!s.origin_allowed(
            &headers(Some("https://evil.example"), "r.example.com"),
            true
        ));
        assert!(!s.origin_allowed(&headers(Some("null"), "r.example.com"), true));
        let mut behind = headers(Some("https://r.example.com"), "r.example.com");
        behind.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(!s.origin_allowed(&behind, false), "not trusted");
        let trusting = CookieSessions {
            trust_forwarded_proto: true,
            ..sessions()
        };
        assert!(trusting.origin_allowed(&behind, false));
        assert_eq!(normalize_origin("https://a.b/c"), None);
        assert!(is_cookie_octets("v2.k1.abc-_.def"));
        assert!(!is_cookie_octets("a b;"));
    }
}
