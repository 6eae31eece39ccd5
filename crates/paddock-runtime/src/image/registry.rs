//! A small OCI distribution-spec v2 client: manifests (index / list → this platform), blobs
//! streamed to disk while hashed and verified, anonymous / basic / bearer auth through the
//! `WWW-Authenticate` flow, plain HTTP only for registries the caller marked insecure, retries
//! with backoff on transient failures, and per-layer progress.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::ImageError;
use super::auth::{Challenge, Credentials, TokenResponse, parse_challenge};
use super::manifest::{Descriptor, MANIFEST_ACCEPT, MAX_DOCUMENT_BYTES};
use super::reference::{RegistryRef, valid_digest};

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) reached over plain HTTP. Opt-in only: everything else is HTTPS.
    pub insecure: Vec<String>,
    /// Credentials by registry (`host[:port]`, `docker.io` for Docker Hub).
    pub credentials: BTreeMap<String, Credentials>,
    /// Extra attempts after a transient failure (connection error, 429, 5xx).
    pub retries: u32,
    /// Time allowed for a response's headers, and between two chunks of a body.
    pub timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            credentials: BTreeMap::new(),
            retries: 3,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Progress of one blob download, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct PullProgress<'a> {
    /// The blob's digest.
    pub digest: &'a str,
    /// Bytes received so far.
    pub done: u64,
    /// The blob's size from its descriptor.
    pub total: u64,
}

/// The callback receiving download progress.
pub type ProgressFn = dyn Fn(&PullProgress<'_>) + Send + Sync;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The registry client; cheap to share behind an `Arc`, caches bearer tokens per repository.
pub struct RegistryClient {
    config: RegistryConfig,
    plain: Client<HttpConnector, Empty<Bytes>>,
    tls: OnceLock<Result<HttpsClient, String>>,
    /// `Authorization` header values by (registry, repository).
    auth: Mutex<HashMap<(String, String), String>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether a failed HTTPS request met a server speaking plain HTTP.
fn is_tls_mismatch(chain: &str) -> bool {
    chain.contains("InvalidContentType") || chain.contains("corrupt message")
}

/// A failure worth retrying, or not.
enum Attempt {
    Transient(String),
    Fatal(ImageError),
}

impl RegistryClient {
    pub fn new(config: RegistryConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        let plain = Client::builder(TokioExecutor::new()).build(connector);
        Self {
            config,
            plain,
            tls: OnceLock::new(),
            auth: Mutex::new(HashMap::new()),
        }
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.config.insecure.iter().any(|r| r == registry)
    }

    fn base_url(&self, r: &RegistryRef) -> String {
        let scheme = if self.is_insecure(&r.registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", r.api_host())
    }

    fn tls_client(&self) -> Result<&HttpsClient, String> {
        self.tls
            .get_or_init(|| {
                let builder = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|e| {
                        format!(
                            "no TLS root certificates on this host ({e}); install ca-certificates"
                        )
                    })?;
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_connect_timeout(Some(self.config.timeout));
                let connector = builder.https_only().enable_http1().wrap_connector(http);
                Ok(Client::builder(TokioExecutor::new()).build(connector))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn send(&self, request: Request<Empty<Bytes>>) -> Result<Response<Incoming>, Attempt> {
        let future = async {
            if request.uri().scheme_str() == Some("https") {
                let client = self.tls_client().map_err(|e| {
                    Attempt::Fatal(ImageError::Registry {
                        registry: request.uri().host().unwrap_or_default().to_owned(),
                        message: e,
                    })
                })?;
                let host = request
                    .uri()
                    .authority()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                client.request(request).await.map_err(|e| {
                    let chain = error_chain(&e);
                    if is_tls_mismatch(&chain) {
                        // Retrying cannot help: the far end does not speak TLS.
                        Attempt::Fatal(ImageError::Registry {
                            registry: host.clone(),
                            message: format!(
                                "{chain}: the registry does not answer over HTTPS; if it is a plain-HTTP registry, mark it insecure (paddock serve --insecure-registry {host})"
                            ),
                        })
                    } else {
                        Attempt::Transient(chain)
                    }
                })
            } else {
                self.plain
                    .request(request)
                    .await
                    .map_err(|e| Attempt::Transient(error_chain(&e)))
            }
        };
        match tokio::time::timeout(self.config.timeout, future).await {
            Ok(result) => result,
            Err(_) => Err(Attempt::Transient(format!(
                "no response within {:?}",
                self.config.timeout
            ))),
        }
    }

    /// GET `url` for repository `r`, answering auth challenges, following redirects (without
    /// credentials to other hosts) and retrying transient failures.
    async fn get(
        &self,
        r: &RegistryRef,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response<Incoming>, ImageError> {
        let key = (r.registry.clone(), r.repository.clone());
        let mut authenticated = false;
        let mut attempt = 0;
        let mut url = url.to_owned();
        let mut redirects = 0;
        let origin = self.base_url(r);
        loop {
            let auth = if url.starts_with(&origin) {
                self.cached_auth(&key)
            } else {
                None
            };
            let mut builder = Request::get(&url).header(header::USER_AGENT, "paddock");
            if let Some(accept) = accept {
                builder = builder.header(header::ACCEPT, accept);
            }
            if let Some(auth) = auth {
                builder = builder.header(header::AUTHORIZATION, auth);
            }
            let request = builder
                .body(Empty::new())
                .map_err(|e| registry_error(r, format!("bad request URL {url}: {e}")))?;
            let message = match self.send(request).await {
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED && !authenticated {
                        let challenge = response
                            .headers()
                            .get(header::WWW_AUTHENTICATE)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let value = self.authenticate(r, challenge.as_deref()).await?;
                        self.auth
                            .lock()
                            .map_err(|_| registry_error(r, "auth cache poisoned".into()))?
                            .insert(key.clone(), value);
                        authenticated = true;
                        continue;
                    }
                    if status.is_redirection() {
                        let location = response
                            .headers()
                            .get(header::LOCATION)
                            .and_then(|v| v.to_str().ok());
                        let Some(location) = location else {
                            return Err(registry_error(
                                r,
                                format!("{status} without a Location from {url}"),
                            ));
                        };
                        redirects += 1;
                        if redirects > 5 {
                            return Err(registry_error(r, "too many redirects".into()));
                        }
                        url = absolute_location(&url, location);
                        let allowed = url.starts_with("https://")
                            || (url.starts_with("http://") && self.is_insecure(&r.registry));
                        if !allowed {
                            return Err(registry_error(
                                r,
                                format!("refusing to follow a redirect to {url}"),
                            ));
                        }
                        continue;
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        format!("{status} from {url}")
                    } else {
                        return Ok(response);
                    }
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Transient(message)) => message,
            };
            if attempt >= self.config.retries {
                return Err(registry_error(
                    r,
                    format!("{message} (after {} attempts)", attempt + 1),
                ));
            }
            tracing::debug!(registry = %r.registry, %message, attempt, "retrying registry request");
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    fn cached_auth(&self, key: &(String, String)) -> Option<String> {
        self.auth.lock().ok().and_then(|m| m.get(key).cloned())
    }

    /// Answers a 401: Basic with configured credentials, or Bearer via the token endpoint.
    async fn authenticate(
        &self,
        r: &RegistryRef,
        challenge: Option<&str>,
    ) -> Result<String, ImageError> {
        let unauthorized = |message: String| ImageError::Unauthorized {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            message,
        };
        let credentials = self.config.credentials.get(&r.registry);
        match challenge.and_then(parse_challenge) {
            Some(Challenge::Basic) => credentials
                .map(Credentials::basic_header)
                .ok_or_else(|| unauthorized("it asks for a username and password".into())),
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let insecure_ok = self.is_insecure(&r.registry);
                if !(realm.starts_with("https://") || (insecure_ok && realm.starts_with("http://")))
                {
                    return Err(unauthorized(format!("token realm {realm:?} is not HTTPS")));
                }
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", r.repository));
                let mut url = format!(
                    "{realm}{}scope={}",
                    if realm.contains('?') { '&' } else { '?' },
                    encode(&scope)
                );
                if let Some(service) = service {
                    url.push_str("&service=");
                    url.push_str(&encode(&service));
                }
                let mut builder = Request::get(&url).header(header::USER_AGENT, "paddock");
                if let Some(c) = credentials {
                    builder = builder.header(header::AUTHORIZATION, c.basic_header());
                }
                let request = builder
                    .body(Empty::new())
                    .map_err(|e| unauthorized(format!("bad token URL: {e}")))?;
                let response = match self.send(request).await {
                    Ok(response) => response,
                    Err(Attempt::Fatal(e)) => return Err(e),
                    Err(Attempt::Transient(m)) => {
                        return Err(unauthorized(format!("token endpoint {realm}: {m}")));
                    }
                };
                let status = response.status();
                let body = read_limited(response.into_body(), 1 << 20, self.config.timeout)
                    .await
                    .map_err(|e| unauthorized(format!("token endpoint {realm}: {e}")))?;
                if !status.is_success() {
                    return Err(unauthorized(format!(
                        "token endpoint {realm} answered {status}"
                    )));
                }
                let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
                    unauthorized(format!("token endpoint {realm} sent no JSON token: {e}"))
                })?;
                let token = token.token.or(token.access_token).filter(|t| !t.is_empty());
                token.map(|t| format!("Bearer {t}")).ok_or_else(|| {
                    unauthorized(format!("token endpoint {realm} sent an empty token"))
                })
            }
            None => Err(unauthorized("it sent no Basic or Bearer challenge".into())),
        }
    }

    /// Fetches a manifest by tag or digest: its bytes, media type and digest (verified when the
    /// reference is a digest).
    ///
    /// # Errors
    /// Not found, unauthorized, transport failures, oversize or digest mismatch.
    pub async fn fetch_manifest(
        &self,
        r: &RegistryRef,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>, String), ImageError> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base_url(r),
            r.repository,
            reference
        );
        let response = self.get(r, &url, Some(MANIFEST_ACCEPT)).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(ImageError::NotFound {
                reference: format!("{}/{}:{reference}", r.registry, r.repository),
                message: "manifest unknown".into(),
            });
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ImageError::Unauthorized {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
                message: format!("{status}"),
            });
        }
        if !status.is_success() {
            return Err(registry_error(r, format!("manifest {reference}: {status}")));
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(
            response.into_body(),
            MAX_DOCUMENT_BYTES,
            self.config.timeout,
        )
        .await
        .map_err(|e| registry_error(r, format!("manifest {reference}: {e}")))?;
        let digest = sha256_digest(&body);
        if valid_digest(reference) && digest != reference {
            return Err(ImageError::DigestMismatch {
                digest: reference.to_owned(),
                message: format!("the registry sent a manifest hashing to {digest}"),
            });
        }
        Ok((body.to_vec(), content_type, digest))
    }

    /// Downloads a blob to `dest` (created or truncated), hashing as it streams; fails, leaving
    /// no file, unless the size and sha256 match the descriptor.
    ///
    /// # Errors
    /// Transport failures after retries, oversize, digest mismatch, disk errors.
    pub async fn fetch_blob(
        &self,
        r: &RegistryRef,
        blob: &Descriptor,
        dest: &Path,
        progress: &ProgressFn,
    ) -> Result<(), ImageError> {
        if !valid_digest(&blob.digest) {
            return Err(ImageError::Manifest {
                reference: r.to_string(),
                message: format!("unsupported digest {:?} (only sha256)", blob.digest),
            });
        }
        let url = format!(
            "{}/v2/{}/blobs/{}",
            self.base_url(r),
            r.repository,
            blob.digest
        );
        let mut attempt = 0;
        loop {
            match self.fetch_blob_once(r, &url, blob, dest, progress).await {
                Ok(()) => return Ok(()),
                Err(Attempt::Fatal(e)) => {
                    let _ = std::fs::remove_file(dest);
                    return Err(e);
                }
                Err(Attempt::Transient(message)) => {
                    let _ = std::fs::remove_file(dest);
                    if attempt >= self.config.retries {
                        return Err(registry_error(
                            r,
                            format!("blob {}: {message}", blob.digest),
                        ));
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn fetch_blob_once(
        &self,
        r: &RegistryRef,
        url: &str,
        blob: &Descriptor,
        dest: &Path,
        progress: &ProgressFn,
    ) -> Result<(), Attempt> {
        let response = self.get(r, url, None).await.map_err(Attempt::Fatal)?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(Attempt::Fatal(ImageError::NotFound {
                reference: format!("{}/{}@{}", r.registry, r.repository, blob.digest),
                message: "blob unknown".into(),
            }));
        }
        if !status.is_success() {
            return Err(Attempt::Fatal(registry_error(
                r,
                format!("blob {}: {status}", blob.digest),
            )));
        }
        let file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| Attempt::Fatal(ImageError::io("create", dest)(e)))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut hasher = Sha256::new();
        let mut done: u64 = 0;
        let mut reported: u64 = 0;
        let mut body = response.into_body();
        progress(&PullProgress {
            digest: &blob.digest,
            done: 0,
            total: blob.size,
        });
        loop {
            let frame = match tokio::time::timeout(self.config.timeout, body.frame()).await {
                Err(_) => {
                    return Err(Attempt::Transient(format!(
                        "stalled for {:?}",
                        self.config.timeout
                    )));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(Attempt::Transient(error_chain(&e))),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            done += data.len() as u64;
            if done > blob.size {
                return Err(Attempt::Fatal(ImageError::DigestMismatch {
                    digest: blob.digest.clone(),
                    message: format!(
                        "the registry sent more than the {} bytes the manifest declares",
                        blob.size
                    ),
                }));
            }
            hasher.update(&data);
            out.write_all(&data)
                .await
                .map_err(|e| Attempt::Fatal(ImageError::io("write", dest)(e)))?;
            if done - reported >= 256 * 1024 || done == blob.size {
                reported = done;
                progress(&PullProgress {
                    digest: &blob.digest,
                    done,
                    total: blob.size,
                });
            }
        }
        out.flush()
            .await
            .map_err(|e| Attempt::Fatal(ImageError::io("write", dest)(e)))?;
        if done != blob.size {
            return Err(Attempt::Transient(format!(
                "got {done} of {} bytes",
                blob.size
            )));
        }
        let actual = format!("sha256:{}", hex(&hasher.finalize()));
        if actual != blob.digest {
            return Err(Attempt::Fatal(ImageError::DigestMismatch {
                digest: blob.digest.clone(),
                message: format!("the content hashes to {actual}"),
            }));
        }
        Ok(())
    }
}

fn registry_error(r: &RegistryRef, message: String) -> ImageError {
    ImageError::Registry {
        registry: r.registry.clone(),
        message,
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = 200u64.saturating_mul(1 << attempt.min(6));
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            % 100,
    );
    Duration::from_millis(base + jitter)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Resolves a `Location` header against the URL it came from.
fn absolute_location(from: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let origin_end = from.find("://").map_or(0, |i| i + 3);
    let host_end = from[origin_end..]
        .find('/')
        .map_or(from.len(), |i| origin_end + i);
    format!(
        "{}{}",
        &from[..host_end],
        if location.starts_with('/') {
            location.to_owned()
        } else {
            format!("/{location}")
        }
    )
}

/// Reads a whole body, failing beyond `limit` bytes.
async fn read_limited(mut body: Incoming, limit: u64, timeout: Duration) -> Result<Bytes, String> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(timeout, body.frame()).await {
            Err(_) => return Err(format!("stalled for {timeout:?}")),
            Ok(None) => return Ok(Bytes::from(out)),
            Ok(Some(Err(e))) => return Err(error_chain(&e)),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if out.len() as u64 + data.len() as u64 > limit {
                        return Err(format!("larger than {limit} bytes"));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
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

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `sha256:<hex>` of `data`.
pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations_resolve_against_the_origin() {
        assert_eq!(
            absolute_location("http://h:5000/v2/a/blobs/x", "/b/c?d=1"),
            "http://h:5000/b/c?d=1"
        );
        assert_eq!(
            absolute_location("http://h/v2", "https://cdn/x"),
            "https://cdn/x"
        );
    }

    #[test]
    fn scopes_are_percent_encoded() {
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }

    #[test]
    fn digests_are_lowercase_hex_sha256() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
