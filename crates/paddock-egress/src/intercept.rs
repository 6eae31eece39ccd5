//! Credentials that never enter the sandbox: for a destination whose rule injects a secret, the
//! proxy ends the sandbox's TLS with a certificate from the sandbox's own CA (which only that
//! sandbox trusts), puts the secret where the sandbox wrote its placeholder, and sends the
//! request on over a new TLS connection checked against the host's trust roots.
//!
//! The sandbox only ever holds a placeholder (`paddock-placeholder-…`, random per sandbox). The
//! placeholder is swapped only in requests to the rule's exact host name and port; sent
//! anywhere else it stays a meaningless string.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use paddock_api::policy::CredentialInjection;
use paddock_policy::Verdict;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::SandboxEgress;

type Body = BoxBody<Bytes, hyper::Error>;

/// A sandbox's own certificate authority, and the leaf certificates it made so far.
pub struct SandboxCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    leaves: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for SandboxCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxCa").finish_non_exhaustive()
    }
}

impl SandboxCa {
    /// A new CA for one sandbox (its key never leaves this process).
    ///
    /// # Errors
    /// Key generation failed.
    pub fn new(sandbox: &str) -> Result<Self, rcgen::Error> {
        Self::from_key(sandbox, rcgen::KeyPair::generate()?)
    }

    /// The CA of a sandbox again, from its key (after a restart: the sandbox still trusts the
    /// certificate it was given, which the same key and name reproduce).
    ///
    /// # Errors
    /// The key does not parse.
    pub fn from_key_pem(sandbox: &str, key_pem: &str) -> Result<Self, rcgen::Error> {
        Self::from_key(sandbox, rcgen::KeyPair::from_pem(key_pem)?)
    }

    /// The CA's private key (PEM), to keep on this host for a restart.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    fn from_key(sandbox: &str, key: rcgen::KeyPair) -> Result<Self, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("paddock egress CA for {sandbox}"),
        );
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate, for the sandbox's trust store.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A TLS server config presenting a certificate for `host`, made once per host.
    fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, String> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host = host.as_str();
        let mut leaves = self
            .leaves
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = leaves.get(host) {
            return Ok(Arc::clone(c));
        }
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = rcgen::CertificateParams::new(vec![host.to_owned()])
            .map_err(|e| e.to_string())?
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        leaves.insert(host.to_owned(), Arc::clone(&config));
        Ok(config)
    }
}

/// The placeholders a sandbox holds instead of secrets, by `rule/header`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placeholders {
    by_injection: BTreeMap<String, String>,
}

fn injection_key(rule: &str, injection: &CredentialInjection) -> String {
    format!("{rule}/{}", injection.header.to_ascii_lowercase())
}

impl Placeholders {
    /// Fresh random placeholders for every injection of the rules.
    pub fn new<'a>(
        injections: impl IntoIterator<Item = (&'a str, &'a CredentialInjection)>,
    ) -> Self {
        let mut by_injection = BTreeMap::new();
        for (rule, injection) in injections {
            by_injection
                .entry(injection_key(rule, injection))
                .or_insert_with(random_placeholder);
        }
        Self { by_injection }
    }

    /// Placeholders derived from a Sandbox's uid (the in-cluster proxy: the controller derives
    /// the same ones for the Pod's environment).
    pub fn derived<'a>(
        uid: &str,
        injections: impl IntoIterator<Item = (&'a str, &'a CredentialInjection)>,
    ) -> Self {
        let by_injection = injections
            .into_iter()
            .map(|(rule, i)| {
                (
                    injection_key(rule, i),
                    paddock_policy::placeholder::derived(uid, rule, &i.header),
                )
            })
            .collect();
        Self { by_injection }
    }

    /// The placeholder of one injection.
    pub fn get(&self, rule: &str, injection: &CredentialInjection) -> Option<&str> {
        self.by_injection
            .get(&injection_key(rule, injection))
            .map(String::as_str)
    }

    /// The environment the sandbox gets: each injection's `env` set to its placeholder.
    pub fn env<'a>(
        &self,
        injections: impl IntoIterator<Item = (&'a str, &'a CredentialInjection)>,
    ) -> Vec<(String, String)> {
        injections
            .into_iter()
            .filter_map(|(rule, i)| {
                let env = i.env.clone()?;
                Some((env, self.get(rule, i)?.to_owned()))
            })
            .collect()
    }
}

fn random_placeholder() -> String {
    let mut bytes = [0u8; 16];
    // Without OS randomness the placeholder is still unique per sandbox, only guessable; it
    // is never a secret itself.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("paddock-placeholder-{hex}")
}

/// What one intercepted request did, for the record.
pub(crate) struct InterceptedRequest {
    pub method: String,
    pub path: String,
    pub verdict: Verdict,
    pub credentials: Vec<String>,
    pub error: Option<String>,
}

/// Serves the sandbox's side of an intercepted tunnel: TLS with a leaf from the sandbox's CA,
/// each request checked, its placeholders swapped and sent on over `upstream` (TLS to the real
/// server). `on_request` is told about each request.
pub(crate) async fn serve<C, U>(
    client: C,
    upstream: U,
    host: String,
    port: u16,
    egress: Arc<SandboxEgress>,
    context: crate::proxy::Context,
    on_request: impl Fn(InterceptedRequest) + Send + Sync + 'static,
) -> Result<(), String>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ca = egress
        .ca()
        .ok_or_else(|| "this sandbox has no egress CA".to_owned())?;
    let server_config = ca.server_config(&host)?;
    let client_tls = tokio_rustls::TlsAcceptor::from(server_config)
        .accept(client)
        .await
        .map_err(|e| format!("TLS with the sandbox: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| format!("{host}: {e}"))?;
    let upstream_tls = tokio_rustls::TlsConnector::from(Arc::clone(&context.upstream_tls))
        .connect(name, upstream)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(upstream_tls))
        .await
        .map_err(|e| format!("HTTP with {host}: {e}"))?;
    tokio::spawn(conn);
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    let on_request = Arc::new(on_request);
    let service = service_fn(move |req: Request<Incoming>| {
        let sender = Arc::clone(&sender);
        let egress = Arc::clone(&egress);
        let host = host.clone();
        let on_request = Arc::clone(&on_request);
        let secrets = Arc::clone(&context.secrets);
        async move {
            Ok::<_, std::convert::Infallible>(
                one_request(
                    req,
                    (&host, port),
                    &egress,
                    secrets.as_ref(),
                    &sender,
                    on_request.as_ref(),
                )
                .await,
            )
        }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client_tls), service)
        .await
        .map_err(|e| e.to_string())
}

/// Replaces secrets in response headers (a server that echoes the credential back) with the
/// placeholder, so the answer does not carry the secret into the sandbox. Bodies are not
/// rewritten: `docs/egress.md` says so.
fn scrub(headers: &mut http::HeaderMap, used: &[(String, String)]) {
    for value in headers.values_mut() {
        let Ok(text) = value.to_str() else { continue };
        let mut clean = text.to_owned();
        for (secret, placeholder) in used {
            if !secret.is_empty() && clean.contains(secret.as_str()) {
                clean = clean.replace(secret.as_str(), placeholder);
            }
        }
        if clean != text
            && let Ok(v) = HeaderValue::from_str(&clean)
        {
            *value = v;
        }
    }
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("paddock egress: {message}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

async fn one_request(
    mut req: Request<Incoming>,
    (host, port): (&str, u16),
    egress: &SandboxEgress,
    secrets: &dyn crate::secrets::SecretStore,
    sender: &tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Incoming>>,
    on_request: &(dyn Fn(InterceptedRequest) + Send + Sync),
) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    // The request goes to the host the tunnel was judged (and the secret meant) for.
    let authority = if port == 443 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    if let Ok(v) = HeaderValue::from_str(&authority) {
        req.headers_mut().insert(http::header::HOST, v);
    }
    let rules = egress.rules();
    let decision = rules.request(host, port, &method, &path);
    let mut record = InterceptedRequest {
        method,
        path,
        verdict: decision.verdict.clone(),
        credentials: Vec::new(),
        error: None,
    };
    if let Verdict::Deny(reason) = &decision.verdict {
        let response = text(StatusCode::FORBIDDEN, reason.to_string());
        on_request(record);
        return response;
    }
    // Each request inside an intercepted tunnel counts against the request limit, as a plain
    // HTTP request does.
    if let Err(reason) = egress.start_request(&rules) {
        let response = text(StatusCode::FORBIDDEN, reason.to_string());
        record.verdict = Verdict::Deny(reason);
        on_request(record);
        return response;
    }
    // The secrets put into this request, each with what the sandbox may see instead.
    let mut used: Vec<(String, String)> = Vec::new();
    for (rule, injection) in rules.injections_for(host, port) {
        let namespace = egress.namespace();
        let secret = match secrets.read(&namespace, &injection.value_from).await {
            Ok(s) => s,
            Err(e) => {
                record.error = Some(e.clone());
                on_request(record);
                return text(StatusCode::BAD_GATEWAY, e);
            }
        };
        let placeholder = egress
            .placeholders()
            .get(rule, injection)
            .map(str::to_owned);
        let mut swapped = false;
        used.push((secret.clone(), placeholder.clone().unwrap_or_default()));
        let header = injection.header.as_str();
        // Only in the rule's own header: a placeholder in any other header (one a server may
        // echo back in a body) stays a placeholder.
        if let Some(placeholder) = &placeholder
            && let Some(value) = req.headers_mut().get_mut(header)
            && let Ok(text) = value.to_str()
            && text.contains(placeholder.as_str())
            && let Ok(v) = HeaderValue::from_str(&text.replace(placeholder.as_str(), &secret))
        {
            *value = v;
            swapped = true;
        }
        if !swapped && !req.headers().contains_key(header) {
            let format = injection.format.as_deref().unwrap_or("{secret}");
            if let (Ok(name), Ok(v)) = (
                http::HeaderName::from_bytes(header.as_bytes()),
                HeaderValue::from_str(&format.replace("{secret}", &secret)),
            ) {
                req.headers_mut().insert(name, v);
                swapped = true;
            }
        }
        if swapped {
            record.credentials.push(format!("{rule}/{header}"));
        }
    }
    let uri = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    *req.uri_mut() = uri;
    let mut sender = sender.lock().await;
    let result = match sender.ready().await {
        Ok(()) => sender.send_request(req).await,
        Err(e) => Err(e),
    };
    drop(sender);
    let response = match result {
        Ok(mut r) => {
            scrub(r.headers_mut(), &used);
            r.map(BodyExt::boxed)
        }
        Err(e) => {
            record.error = Some(e.to_string());
            text(StatusCode::BAD_GATEWAY, format!("{host}: {e}"))
        }
    };
    on_request(record);
    response
}
