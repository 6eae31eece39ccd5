//! The client and its transport: HTTP/1.1 keep-alive to the gateway, bearer auth, error
//! mapping, and retries for idempotent requests only (a POST is sent once, so a retry never runs
//! a command twice).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, ErrorCode, Result};
use crate::types::{Applied, CreateSandbox, SandboxInfo};

/// The default address of `paddock serve`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7878";

type Body = BoxBody<Bytes, std::io::Error>;

/// A request body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A streamed request body.
pub(crate) fn streamed<S>(stream: S) -> Body
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
{
    BodyExt::boxed(StreamBody::new(stream.map_ok(Frame::data)))
}

/// The home directory `paddock serve` uses by default (where its token is).
pub fn default_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("PADDOCK_HOME") {
        return Some(PathBuf::from(h));
    }
    if rustix::process::geteuid().is_root() {
        return Some(PathBuf::from("/var/lib/paddock"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/paddock"))
}

/// A client of one gateway. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: String,
    authority: String,
    token: Option<String>,
    http: HyperClient<HttpConnector, Body>,
    retries: u32,
}

impl Client {
    /// A client of the gateway at `url` (`http://host:port`), authenticating with `token`.
    ///
    /// # Errors
    /// `url` is not an `http://host:port` URL.
    pub fn new(url: &str, token: Option<String>) -> Result<Self> {
        let base = url.trim_end_matches('/').to_owned();
        let authority = base
            .strip_prefix("http://")
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidArgument,
                    format!("the gateway URL {url:?} must start with http://"),
                )
            })?
            .to_owned();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self {
            inner: Arc::new(Inner {
                base,
                authority,
                token,
                http,
                retries: 3,
            }),
        })
    }

    /// A client configured from the environment: `PADDOCK_URL` (default
    /// `http://127.0.0.1:7878`), `PADDOCK_TOKEN`, else the token file of `paddock serve`
    /// (`$PADDOCK_HOME/token`).
    ///
    /// # Errors
    /// A malformed `PADDOCK_URL`.
    pub fn from_env() -> Result<Self> {
        let url = std::env::var("PADDOCK_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let token = std::env::var("PADDOCK_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| {
                let path = default_home()?.join("token");
                std::fs::read_to_string(path)
                    .ok()
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
            });
        Self::new(&url, token)
    }

    /// The gateway's base URL.
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// `host:port` of the gateway.
    pub fn authority(&self) -> &str {
        &self.inner.authority
    }

    /// The bearer token, if any.
    pub fn token(&self) -> Option<&str> {
        self.inner.token.as_deref()
    }

    fn build(
        &self,
        method: &Method,
        path: &str,
        body: Body,
        content_type: Option<&str>,
    ) -> Result<Request<Body>> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.inner.base));
        if let Some(token) = &self.inner.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req.body(body).map_err(|e| {
            Error::new(
                ErrorCode::InvalidArgument,
                format!("cannot build request for {path}: {e}"),
            )
        })
    }

    fn connection_error(&self, e: &hyper_util::client::legacy::Error) -> Error {
        use std::error::Error as _;
        let mut cause = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        Error::new(
            ErrorCode::ConnectionFailed,
            format!(
                "cannot reach paddock at {} ({cause}); start it with `paddock serve` (or set PADDOCK_URL)",
                self.inner.base
            ),
        )
    }

    /// Sends a request and returns the response head and streaming body on success.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<http::Response<Incoming>> {
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        );
        let attempts = if idempotent {
            self.inner.retries + 1
        } else {
            1
        };
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=attempts {
            let (b, ct) = match &body {
                Some((bytes, ct)) => (full(bytes.clone()), Some(*ct)),
                None => (full(Bytes::new()), None),
            };
            let req = self.build(&method, path, b, ct)?;
            match self.inner.http.request(req).await {
                Err(e) if attempt < attempts => {
                    let _ = e;
                }
                Err(e) => return Err(self.connection_error(&e)),
                Ok(resp)
                    if resp.status().is_success()
                        || resp.status() == StatusCode::SWITCHING_PROTOCOLS =>
                {
                    return Ok(resp);
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let bytes = resp
                        .into_body()
                        .collect()
                        .await
                        .map(http_body_util::Collected::to_bytes)
                        .unwrap_or_default();
                    let err = Error::from_response(status, &bytes);
                    let transient = matches!(status, 502 | 504)
                        || (status == 503 && err.code == ErrorCode::Unavailable);
                    if !(transient && attempt < attempts) {
                        return Err(err);
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Err(Error::new(ErrorCode::Internal, "retries exhausted"))
    }

    /// Sends a request with a streaming body (never retried).
    pub(crate) async fn send_stream(
        &self,
        method: Method,
        path: &str,
        body: Body,
        content_type: &str,
    ) -> Result<http::Response<Incoming>> {
        let req = self.build(&method, path, body, Some(content_type))?;
        let resp = self
            .inner
            .http
            .request(req)
            .await
            .map_err(|e| self.connection_error(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        Err(Error::from_response(status, &bytes))
    }

    /// Sends a request and reads the whole body.
    pub(crate) async fn bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<Bytes> {
        let resp = self.send(method, path, body).await?;
        resp.into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .map_err(|e| {
                Error::new(
                    ErrorCode::ConnectionFailed,
                    format!("reading the response: {e}"),
                )
            })
    }

    /// Sends a JSON request and decodes a JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let body = body.map(|b| (Bytes::from(b.to_string()), "application/json"));
        let bytes = self.bytes(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorCode::Protocol,
                format!("unexpected answer from {path}: {e}"),
            )
        })
    }

    /// `GET /healthz`.
    ///
    /// # Errors
    /// The gateway is not reachable or not healthy.
    pub async fn health(&self) -> Result<()> {
        self.bytes(Method::GET, "/healthz", None).await.map(|_| ())
    }

    /// `GET /v1/info`.
    ///
    /// # Errors
    /// As any call.
    pub async fn info(&self) -> Result<Value> {
        self.json(Method::GET, "/v1/info", None).await
    }

    /// Creates a sandbox and (unless `wait: false`) waits until it is Ready.
    ///
    /// # Errors
    /// As any call; a claim that fails terminally carries its reason.
    pub async fn create_sandbox(&self, req: &CreateSandbox) -> Result<SandboxInfo> {
        let body = serde_json::to_value(req)
            .map_err(|e| Error::new(ErrorCode::InvalidArgument, e.to_string()))?;
        self.json(Method::POST, "/v1/sandboxes", Some(&body)).await
    }

    /// Lists sandboxes (all namespaces when `namespace` is `None`).
    ///
    /// # Errors
    /// As any call.
    pub async fn sandboxes(&self, namespace: Option<&str>) -> Result<Vec<SandboxInfo>> {
        let path = match namespace {
            Some(ns) => format!("/v1/sandboxes?namespace={}", encode(ns)),
            None => "/v1/sandboxes".to_owned(),
        };
        let list: Value = self.json(Method::GET, &path, None).await?;
        serde_json::from_value(
            list.get("items")
                .cloned()
                .unwrap_or(Value::Array(Vec::new())),
        )
        .map_err(|e| Error::new(ErrorCode::Protocol, e.to_string()))
    }

    /// A handle on a sandbox (by Sandbox or claim name); no request is made.
    pub fn sandbox(&self, name: &str, namespace: &str) -> crate::sandbox::Sandbox {
        crate::sandbox::Sandbox::new(self.clone(), name, namespace)
    }

    /// Creates or updates every object of a YAML/JSON manifest.
    ///
    /// # Errors
    /// Validation problems come back as `InvalidObject` with `details`.
    pub async fn apply(&self, manifest: &str, namespace: Option<&str>) -> Result<Vec<Applied>> {
        let path = match namespace {
            Some(ns) => format!("/v1/apply?namespace={}", encode(ns)),
            None => "/v1/apply".to_owned(),
        };
        let bytes = self
            .bytes(
                Method::POST,
                &path,
                Some((Bytes::from(manifest.to_owned()), "application/yaml")),
            )
            .await?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::new(ErrorCode::Protocol, e.to_string()))?;
        serde_json::from_value(
            v.get("results")
                .cloned()
                .unwrap_or(Value::Array(Vec::new())),
        )
        .map_err(|e| Error::new(ErrorCode::Protocol, e.to_string()))
    }

    /// Pulls an image into the server's cache, calling `on_event` with each progress event
    /// (`{"type":"progress","digest","done","total"}`); returns the final `done` event.
    ///
    /// # Errors
    /// The pull failed (the error names the image and why), or the server cannot pull.
    pub async fn pull_image(&self, image: &str, mut on_event: impl FnMut(&Value)) -> Result<Value> {
        use http_body_util::BodyExt as _;
        let body = serde_json::json!({"image": image}).to_string();
        let resp = self
            .send(
                Method::POST,
                "/v1/images/pull",
                Some((Bytes::from(body), "application/json")),
            )
            .await?;
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Error::new(
                    ErrorCode::ConnectionFailed,
                    format!("the pull stream broke: {e}"),
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                match event.get("type").and_then(Value::as_str) {
                    Some("done") => return Ok(event),
                    Some("error") => {
                        let message = event
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("the pull failed")
                            .to_owned();
                        return Err(Error::new(ErrorCode::Unavailable, message));
                    }
                    _ => on_event(&event),
                }
            }
        }
        Err(Error::new(
            ErrorCode::Protocol,
            "the pull stream ended without a result",
        ))
    }

    /// Any JSON call on the object API (`/apis/...`).
    ///
    /// # Errors
    /// As any call.
    pub async fn object_call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        self.json(method, path, body).await
    }

    /// Watches a collection of the object API (`/apis/...`, `?watch=true`): the events
    /// (`{"type": "ADDED"|"MODIFIED"|"DELETED", "object": …}`) after `resource_version`.
    ///
    /// # Errors
    /// As any call; the watch itself ends with an error when the stream breaks.
    pub async fn watch_objects(
        &self,
        collection: &str,
        resource_version: Option<&str>,
    ) -> Result<ObjectWatch> {
        let mut path = format!("{collection}?watch=true");
        if let Some(rv) = resource_version {
            path.push_str(&format!("&resourceVersion={}", encode(rv)));
        }
        let resp = self.send(Method::GET, &path, None).await?;
        Ok(ObjectWatch {
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }
}

/// The events of [`Client::watch_objects`], one JSON object each.
pub struct ObjectWatch {
    body: Incoming,
    buf: Vec<u8>,
}

impl std::fmt::Debug for ObjectWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWatch")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl ObjectWatch {
    /// The next event; `None` when the server ends the watch.
    ///
    /// # Errors
    /// The stream broke, or the server sent an `ERROR` event (its message is the error's).
    pub async fn next(&mut self) -> Option<Result<Value>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if event.get("type").and_then(Value::as_str) == Some("ERROR") {
                    let message = event
                        .pointer("/object/message")
                        .and_then(Value::as_str)
                        .unwrap_or("the watch failed")
                        .to_owned();
                    return Some(Err(Error::new(ErrorCode::Unavailable, message)));
                }
                return Some(Ok(event));
            }
            match self.body.frame().await? {
                Err(e) => {
                    return Some(Err(Error::new(
                        ErrorCode::ConnectionFailed,
                        format!("the watch broke: {e}"),
                    )));
                }
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// Percent-encodes one path segment or query value.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a path, keeping `/` between segments.
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(encode)
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_segment_by_segment() {
        assert_eq!(encode_path("/a b/c%d/../x"), "a%20b/c%25d/../x");
        assert_eq!(encode("ns-1"), "ns-1");
    }

    #[test]
    fn urls_must_be_http() {
        assert!(Client::new("https://x", None).is_err());
        let c = Client::new("http://127.0.0.1:7878/", None).unwrap();
        assert_eq!(
            (c.url(), c.authority()),
            ("http://127.0.0.1:7878", "127.0.0.1:7878")
        );
    }
}
