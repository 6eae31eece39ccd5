//! The conversion webhook over real sockets: HTTPS with the generated CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use paddock_webhook::certs;
use paddock_webhook::server::serve_webhook;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

async fn send<S>(io: S, req: Request<Full<Bytes>>) -> (u16, Bytes)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    (
        status,
        resp.into_body().collect().await.expect("body").to_bytes(),
    )
}

#[tokio::test]
async fn conversion_review_round_trips_over_https_with_the_generated_ca() {
    let names = certs::dns_names(
        "agent-sandbox-webhook-service",
        "agent-sandbox-system",
        "cluster.local",
    );
    let bundle = certs::generate(&names).expect("certs");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_webhook(
        listener,
        certs::server_config(&bundle).expect("tls"),
        shutdown.clone(),
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(bundle.ca_pem.as_bytes()).expect("ca"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(certs::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let review = |desired: &str, objects: Vec<Value>| {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "request": {"uid": "7f3c", "desiredAPIVersion": desired, "objects": objects}
        })
    };
    let post = |body: Value| {
        Request::post("/convert")
            .header(
                "host",
                "agent-sandbox-webhook-service.agent-sandbox-system.svc",
            )
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request")
    };
    let claim = json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1alpha1", "kind": "SandboxClaim",
        "metadata": {"name": "c", "namespace": "ns"},
        "spec": {"sandboxTemplateRef": {"name": "python"}, "warmpool": "none"}
    });
    let mut converted = Vec::new();
    for (desired, obj) in [
        ("extensions.agents.x-k8s.io/v1beta1", claim.clone()),
        ("extensions.agents.x-k8s.io/v1alpha1", Value::Null),
    ] {
        let obj = if obj.is_null() {
            converted.pop().expect("up-converted")
        } else {
            obj
        };
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("agent-sandbox-webhook-service.agent-sandbox-system.svc")
            .expect("name");
        let tls = connector
            .connect(name, tcp)
            .await
            .expect("TLS verifies against the generated CA");
        let (status, body) = send(tls, post(review(desired, vec![obj]))).await;
        assert_eq!(status, 200);
        let resp: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(resp["kind"], "ConversionReview");
        assert_eq!(resp["response"]["uid"], "7f3c");
        assert_eq!(resp["response"]["result"]["status"], "Success", "{resp}");
        converted.push(resp["response"]["convertedObjects"][0].clone());
    }
    let beta_then_alpha = converted.pop().expect("down-converted");
    assert_eq!(
        beta_then_alpha["spec"], claim["spec"],
        "v1alpha1 → v1beta1 → v1alpha1 is exact"
    );
    assert_eq!(
        beta_then_alpha["apiVersion"],
        "extensions.agents.x-k8s.io/v1alpha1"
    );

    // A certificate for another name is refused by the client.
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let wrong = ServerName::try_from("evil.example").expect("name");
    assert!(connector.connect(wrong, tcp).await.is_err());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stops")
        .expect("join");
}
