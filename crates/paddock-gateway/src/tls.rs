//! HTTPS for the gateway, as upstream's router serves it (contract §11.3): a certificate read
//! from files and reloaded when they change (a failed load keeps the one in use; each attempt
//! counted in `sandbox_router_cert_reloads_total{outcome}`), and client certificates checked
//! against a CA under `--mtls-mode optional|required`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often the certificate files are checked for a change.
pub const RELOAD_POLL: Duration = Duration::from_millis(250);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `--mtls-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MtlsMode {
    /// No client certificates.
    #[default]
    Off,
    /// A client certificate, when presented, must verify.
    Optional,
    /// Every client presents a certificate that verifies.
    Required,
}

impl MtlsMode {
    /// From the flag's value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Self::Off),
            "optional" => Some(Self::Optional),
            "required" => Some(Self::Required),
            _ => None,
        }
    }
}

/// Marks a request that arrived over TLS (its origin's scheme is `https`).
#[derive(Clone, Copy, Debug)]
pub struct ViaTls;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads a certificate chain and its key from PEM files.
///
/// # Errors
/// A file that cannot be read or parsed, no certificate, or a key that does not fit.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let cert_pem = std::fs::read(cert).map_err(|e| format!("reading {}: {e}", cert.display()))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("reading {}: {e}", key.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("{}: {e}", key.display()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(certified)
}

/// The certificate in use, swapped when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
    cert: PathBuf,
    key: PathBuf,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

impl ReloadingCert {
    /// Loads the files once.
    ///
    /// # Errors
    /// As [`load_certified_key`].
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, String> {
        let certified = load_certified_key(cert, key)?;
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(certified)),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }))
    }

    fn fingerprint(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        Some((
            std::fs::read(&self.cert).ok()?,
            std::fs::read(&self.key).ok()?,
        ))
    }

    /// Reloads when the files' contents change (Kubernetes Secret volumes swap a `..data`
    /// link, which this sees too), until `stop`.
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>, stop: CancellationToken) {
        let mut seen = self.fingerprint();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RELOAD_POLL) => {}
            }
            let now = self.fingerprint();
            if now == seen || now.is_none() {
                continue;
            }
            seen = now;
            match load_certified_key(&self.cert, &self.key) {
                Ok(certified) => {
                    if let Ok(mut current) = self.current.write() {
                        *current = Arc::new(certified);
                    }
                    metrics.cert_reload(true);
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    metrics.cert_reload(false);
                    tracing::warn!(error = %e, "TLS certificate reload failed; keeping the one in use");
                }
            }
        }
    }
}

/// The server's TLS configuration: the reloading certificate, client certificates per `mode`
/// against `client_ca`, ALPN `h2` and `http/1.1`.
///
/// # Errors
/// An unreadable or empty client CA, or one rustls refuses.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    mode: MtlsMode,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (mode, client_ca) {
        (MtlsMode::Off, _) => builder.with_no_client_auth(),
        (_, None) => return Err("--mtls-mode needs --tls-client-ca-file".to_owned()),
        (mode, Some(ca)) => {
            let pem = std::fs::read(ca).map_err(|e| format!("reading {}: {e}", ca.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{} holds no certificate", ca.display()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if mode == MtlsMode::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `app` over TLS on `listener` until `shutdown`.
pub async fn serve_tls(
    listener: TcpListener,
    config: rustls::ServerConfig,
    app: Router,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(Arc::new(config));
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTPS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, shutdown) = (acceptor.clone(), app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service =
                hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ViaTls);
                    let app = app.clone();
                    async move {
                        let response =
                            tower::ServiceExt::oneshot(app, req.map(axum::body::Body::new)).await;
                        Ok::<_, Infallible>(match response {
                            Ok(r) => r,
                            Err(never) => match never {},
                        })
                    }
                });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::select! {
                _ = conn => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}
