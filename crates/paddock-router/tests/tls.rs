//! The gateway over HTTPS: `--mtls-mode required|optional` with a client CA, and the
//! certificate reloaded when its files change (a bad file keeps the one in use), counted in
//! `sandbox_router_cert_reloads_total`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paddock_router::args::GatewayArgs;
use paddock_testkit::kube::FakeApiServer;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "tls-test-token";

struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tls test CA");
        let ca = params.self_signed(&key).expect("ca");
        Self {
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// `(cert PEM, key PEM, cert DER)` for `name`.
    fn leaf(&self, name: &str) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// One HTTPS `GET /healthz`: the status and the server's certificate, or the handshake error.
async fn get(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<(u16, Vec<u8>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            use rustls::pki_types::pem::PemObject;
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("chain");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let peer = tls.get_ref().1.peer_certificates().expect("server cert")[0].to_vec();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not HTTP: {text}"))?;
    Ok((code, peer))
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    // Written aside and renamed over, as a Secret volume updates.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
    path
}

async fn start(args: GatewayArgs) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let settings = args
        .validate_with_env(Some(TOKEN.to_owned()))
        .expect("valid flags");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let api = FakeApiServer::new();
    let server = tokio::spawn(async move {
        paddock_router::run::run_with(api.client(), &settings, listener, stop)
            .await
            .expect("gateway runs");
    });
    (shutdown, server)
}

async fn wait_until_served(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "HTTPS never listens");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_required_client_certificates_and_a_reloaded_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new();
    let (cert, key, first_der) = pki.leaf("localhost");
    let cert_path = write(dir.path(), "tls.crt", &cert);
    let key_path = write(dir.path(), "tls.key", &key);
    let ca_path = write(dir.path(), "ca.crt", &pki.ca_pem);
    let (client_cert, client_key, _) = pki.leaf("agent-host");
    let port = paddock_testkit::registry::free_port();
    let metrics_port = paddock_testkit::registry::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let (shutdown, server) = start(GatewayArgs {
        https_bind_address: addr.to_string(),
        tls_cert_file: Some(cert_path),
        tls_key_file: Some(key_path),
        mtls_mode: "required".into(),
        tls_client_ca_file: Some(ca_path),
        metrics_bind_address: format!("127.0.0.1:{metrics_port}"),
        ..GatewayArgs::default()
    })
    .await;
    wait_until_served(addr).await;

    let (code, served) = get(addr, &pki.ca_pem, Some((&client_cert, &client_key)))
        .await
        .expect("a client with a certificate gets in");
    assert_eq!((code, served == first_der), (200, true));
    assert!(
        get(addr, &pki.ca_pem, None).await.is_err(),
        "no client certificate, no connection"
    );
    let stranger = Pki::new();
    let (sc, sk, _) = stranger.leaf("stranger");
    assert!(
        get(addr, &pki.ca_pem, Some((&sc, &sk))).await.is_err(),
        "a certificate from another CA is refused"
    );

    // New files: the next connection gets the new certificate.
    let (cert2, key2, second_der) = pki.leaf("localhost");
    write(dir.path(), "tls.key", &key2);
    write(dir.path(), "tls.crt", &cert2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, served) = get(addr, &pki.ca_pem, Some((&client_cert, &client_key)))
            .await
            .expect("served");
        if served == second_der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate is never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A broken file keeps the certificate in use.
    write(dir.path(), "tls.crt", "not a certificate");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (code, served) = get(addr, &pki.ca_pem, Some((&client_cert, &client_key)))
        .await
        .expect("still served");
    assert_eq!((code, served == second_der), (200, true));
    let metrics = tokio::process::Command::new("curl")
        .args(["-sS", &format!("http://127.0.0.1:{metrics_port}/metrics")])
        .output()
        .await
        .expect("curl");
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        text.contains("sandbox_router_cert_reloads_total{outcome=\"failure\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("sandbox_router_cert_reloads_total{outcome=\"success\"}"),
        "{text}"
    );
    shutdown.cancel();
    let _ = server.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_certificates_are_checked_only_when_presented() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new();
    let (cert, key, _) = pki.leaf("localhost");
    let port = paddock_testkit::registry::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let (shutdown, server) = start(GatewayArgs {
        https_bind_address: addr.to_string(),
        tls_cert_file: Some(write(dir.path(), "tls.crt", &cert)),
        tls_key_file: Some(write(dir.path(), "tls.key", &key)),
        mtls_mode: "optional".into(),
        tls_client_ca_file: Some(write(dir.path(), "ca.crt", &pki.ca_pem)),
        ..GatewayArgs::default()
    })
    .await;
    wait_until_served(addr).await;
    assert_eq!(
        get(addr, &pki.ca_pem, None)
            .await
            .expect("no cert is fine")
            .0,
        200
    );
    let stranger = Pki::new();
    let (sc, sk, _) = stranger.leaf("stranger");
    assert!(get(addr, &pki.ca_pem, Some((&sc, &sk))).await.is_err());

    // The flags are checked as a set.
    let bad = |a: GatewayArgs| {
        a.validate_with_env(Some(TOKEN.into()))
            .expect_err("invalid")
            .to_string()
    };
    assert!(
        bad(GatewayArgs {
            mtls_mode: "required".into(),
            ..GatewayArgs::default()
        })
        .contains("needs --https-bind-address")
    );
    assert!(
        bad(GatewayArgs {
            https_bind_address: ":8443".into(),
            ..GatewayArgs::default()
        })
        .contains("needs --tls-cert-file")
    );
    assert!(
        bad(GatewayArgs {
            mtls_mode: "sometimes".into(),
            ..GatewayArgs::default()
        })
        .contains("off, optional or required")
    );
    shutdown.cancel();
    let _ = server.await;
}
