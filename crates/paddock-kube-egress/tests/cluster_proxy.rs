//! `paddock egress` against the in-process API server: a sandbox Pod is told apart by its
//! address, judged by its Sandbox's policy, and a secret from a Kubernetes Secret reaches the
//! destination in place of the placeholder the controller gives the Pod. Test hosts live in a
//! namespace the test makes; never the internet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use clap::Parser as _;
use paddock_kube_egress::run::{CA_BUNDLE_KEY, CA_CONFIGMAP, EgressArgs, run_with};
use paddock_testkit::kube::FakeApiServer;
use paddock_testkit::net::TestHosts;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The command line, as `paddock egress` parses it.
#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    args: EgressArgs,
}

/// Seeds a policy, its Secret, a Sandbox naming it and the Sandbox's Pod at `pod_ip`; the
/// Sandbox's uid (the API server assigns it).
fn seed(api: &FakeApiServer, hosts: &TestHosts, pod_ip: &str) -> String {
    api.insert(
        "paddock.dev/sandboxpolicies",
        json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "SandboxPolicy",
            "metadata": {"name": "creds", "namespace": "default"},
            "spec": {"egress": {"rules": [{
                "name": "api", "domains": ["allowed.test"], "cidrs": [hosts.cidr("allowed.test")],
                "inject": [{"header": "Authorization", "format": "Bearer {secret}",
                            "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "token"}}}],
            }]}},
        }),
    );
    api.insert(
        "/secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "api-token", "namespace": "default"},
               "data": {"token": "Y2x1c3Rlci1zZWNyZXQ="}}),
    );
    let sandbox = api.insert(
        "agents.x-k8s.io/sandboxes",
        json!({"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
               "metadata": {"name": "sb", "namespace": "default",
                            "annotations": {"paddock.dev/policy": "creds"}},
               "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "x"}]}}}}),
    );
    let uid = sandbox["metadata"]["uid"].as_str().expect("uid").to_owned();
    api.insert(
        "/pods",
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "sb", "namespace": "default",
                            "ownerReferences": [{"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
                                                 "name": "sb", "uid": uid, "controller": true}]},
               "spec": {"containers": [{"name": "main", "image": "x"}]},
               "status": {"phase": "Running", "podIP": pod_ip}}),
    );
    uid
}

/// A plain GET's body.
async fn get_text(url: &str) -> String {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", url])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn curl(proxy: &str, cacert: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--proxy", proxy, "--cacert"])
        .arg(cacert)
        .args(args)
        .env_clear()
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_pod_is_judged_by_its_policy_and_gets_its_secret_from_a_kubernetes_secret() {
    if !TestHosts::available() {
        eprintln!("skipped: needs root and ip(8)");
        return;
    }
    let hosts = TestHosts::start();
    let api = FakeApiServer::new().recording();
    // Connections from this test come from 127.0.0.1: that is the "Pod's" address.
    let uid = seed(&api, &hosts, "127.0.0.1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), &hosts.ca_pem).unwrap();
    let listen = listener.local_addr().unwrap().to_string();
    let dns = hosts.dns().to_string();
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api_listen = format!("127.0.0.1:{api_port}");
    let args = Cli::parse_from([
        "paddock-egress",
        "--listen",
        &listen,
        "--api-listen",
        &api_listen,
        "--egress-dns",
        &dns,
        "--egress-ca-file",
        ca_file.path().to_str().unwrap(),
    ])
    .args;
    let shutdown = CancellationToken::new();
    let client = api.client();
    let stop = shutdown.clone();
    let server = tokio::spawn(async move { run_with(client, &args, listener, stop).await });

    // The CA sandboxes trust is published in their namespace; its key stays in the proxy's.
    let mut bundle = None;
    for _ in 0..100 {
        if let Some(cm) = api.get("/configmaps", "default", CA_CONFIGMAP) {
            bundle = cm["data"][CA_BUNDLE_KEY].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(bundle) = bundle else {
        shutdown.cancel();
        panic!("the CA ConfigMap is not published: {:?}", server.await);
    };
    assert!(
        api.get("/secrets", "agent-sandbox-system", "paddock-egress-ca")
            .is_some()
    );
    assert!(!bundle.contains("PRIVATE KEY"));
    let trust = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(trust.path(), &bundle).unwrap();

    let placeholder = paddock_policy::placeholder::derived(&uid, "api", "Authorization");
    let header = format!("Authorization: Bearer {placeholder}");
    let (code, out, err) = curl(
        &proxy,
        trust.path(),
        &["-H", &header, "https://allowed.test/v1"],
    )
    .await;
    assert_eq!(
        (code, out.as_str()),
        (0, "hello from allowed.test: GET /v1"),
        "{err}"
    );
    assert!(
        hosts
            .seen_authorization()
            .contains(&"Bearer cluster-secret".to_owned()),
        "{:?}",
        hosts.seen_authorization()
    );

    let (code, _, err) = curl(&proxy, trust.path(), &["https://denied.test/"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("403"), "{err}");

    // The record, as `paddock gateway` reads it from the proxy's API; and the metrics.
    let url = format!("http://{api_listen}/v1/sandboxes/default/sb/egress");
    let mut feed = None;
    for _ in 0..100 {
        let f = paddock_kube_backend::egress::read(&url, false)
            .await
            .unwrap();
        if f.records.iter().any(|r| r.host == "denied.test") {
            feed = Some(f);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let feed = feed.expect("the records reach the API");
    let used = feed
        .records
        .iter()
        .find(|r| r.path.as_deref() == Some("/v1"))
        .expect("the intercepted request");
    assert_eq!(used.credentials, vec!["api/Authorization".to_owned()]);
    assert!(
        feed.records
            .iter()
            .any(|r| r.host == "denied.test" && !r.allowed)
    );
    let metrics = get_text(&format!("http://{api_listen}/metrics")).await;
    assert!(
        metrics.contains("paddock_egress_decisions_total{namespace=\"default\",sandbox=\"sb\""),
        "{metrics}"
    );

    // The Pod goes: its address is a stranger now, refused.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(api.unrecorded().client(), "default");
    pods.delete("sb", &Default::default()).await.unwrap();
    let mut refused = false;
    for _ in 0..40 {
        let (_, out, _) = curl(
            &proxy,
            trust.path(),
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "http://allowed.test/",
            ],
        )
        .await;
        if out == "403" {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "a deleted Pod's address is no longer served");
    shutdown.cancel();
    server.await.unwrap().unwrap();

    // Every request it made is granted by deploy/egress/rbac.yaml, in the right scope.
    let (cluster, namespaced) = granted();
    for r in api.requests() {
        let (group, resource, verb, ns) =
            paddock_testkit::kube::scripted::authz(&r).expect("a resource request");
        let key = (group.clone(), resource.clone(), verb.clone());
        assert!(
            cluster.contains(&key)
                || (ns.as_deref() == Some("agent-sandbox-system") && namespaced.contains(&key)),
            "{r} needs {verb} on {resource} in group {group:?}, which deploy/egress/rbac.yaml does not grant"
        );
    }
}

/// What deploy/egress/rbac.yaml grants, cluster-wide and in the proxy's namespace.
fn granted() -> (
    paddock_testkit::kube::rbac::Grants,
    paddock_testkit::kube::rbac::Grants,
) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/egress/rbac.yaml");
    paddock_testkit::kube::rbac::granted(&[std::path::Path::new(path)])
}
