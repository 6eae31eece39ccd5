//! The static `paddock-controller` binary of deploy/Dockerfile, as a process: it serves the
//! gateway from a kubeconfig (given with `--kubeconfig`, or in `KUBECONFIG`) against the
//! in-memory API server over real HTTP, and stops cleanly on SIGTERM.
#![cfg(feature = "kubernetes")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::Method;
use paddock_testkit::kube::FakeApiServer;
use paddock_testkit::kube::cluster::write_kubeconfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TEMPLATES: &str = "extensions.agents.x-k8s.io/sandboxtemplates";
const NS: &str = "team-a";
const TOKEN: &str = "shared-test-token";

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `paddock-controller gateway`, with the kubeconfig from `--kubeconfig` (`by_flag`) or
/// `KUBECONFIG`, lists templates through it in v1alpha1, and stops it with SIGTERM.
async fn serves_the_gateway_from_a_kubeconfig(by_flag: bool) {
    let api = FakeApiServer::new();
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api_addr = api_listener.local_addr().expect("addr");
    let stop_api = CancellationToken::new();
    tokio::spawn(api.clone().serve(api_listener, stop_api.clone()));
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = write_kubeconfig(dir.path(), api_addr, Some(NS));
    api.insert(
        TEMPLATES,
        json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate",
            "metadata": {"name": "python", "namespace": NS},
            "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "python:3.12"}]}}}
        }),
    );

    let port = paddock_testkit::registry::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_paddock-controller"));
    command
        .args(["gateway", "--listen", &listen, "--log-format", "text"])
        .env("PADDOCK_GATEWAY_TOKEN", TOKEN)
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if by_flag {
        command.arg("--kubeconfig").arg(&kubeconfig);
    } else {
        command.env("KUBECONFIG", &kubeconfig);
    }
    let mut child = command.spawn().expect("start paddock-controller gateway");
    wait_for("the gateway to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
    let sdk =
        paddock_client::Client::new(&format!("http://{listen}"), Some(TOKEN.to_owned())).unwrap();
    let info = sdk.info().await.expect("info");
    assert_eq!(info["backend"], "kubernetes");
    let list = sdk
        .object_call(
            Method::GET,
            &format!("/apis/extensions.agents.x-k8s.io/v1alpha1/namespaces/{NS}/sandboxtemplates"),
            None,
        )
        .await
        .expect("list");
    assert_eq!(list["items"][0]["metadata"]["name"], "python");
    assert_eq!(
        list["items"][0]["apiVersion"],
        "extensions.agents.x-k8s.io/v1alpha1"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read as _;
        let _ = err.read_to_string(&mut log);
    }
    assert!(status.success(), "exit {status}: {log}");
    assert!(log.contains("paddock gateway is ready"), "{log}");
    assert!(!log.contains(TOKEN), "the token is never logged: {log}");
    stop_api.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_gateway_from_the_kubeconfig_in_kubeconfig_env() {
    serves_the_gateway_from_a_kubeconfig(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_gateway_from_the_kubeconfig_flag() {
    serves_the_gateway_from_a_kubeconfig(true).await;
}

#[test]
fn a_missing_kubeconfig_is_named_in_the_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_paddock-controller"))
        .args([
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "--leader-elect=false",
            "--enable-webhook=false",
            "--metrics-bind-address=0",
            "--health-probe-bind-address=0",
        ])
        .output()
        .expect("run paddock-controller");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
}

/// The conversion webhook cannot get its certificates into place (here: no CRDs to inject its
/// CA into): the controller says so in one line naming the flag that turns it off, and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_cannot_serve_is_named_and_the_controller_runs_without_it() {
    let api = FakeApiServer::new();
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api_addr = api_listener.local_addr().expect("addr");
    let stop_api = CancellationToken::new();
    tokio::spawn(api.clone().serve(api_listener, stop_api.clone()));
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = write_kubeconfig(dir.path(), api_addr, None);
    let health = paddock_testkit::registry::free_port();
    let webhook = paddock_testkit::registry::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paddock-controller"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "--leader-elect=false",
            "--metrics-bind-address=0",
            &format!("--health-probe-bind-address=127.0.0.1:{health}"),
            &format!("--webhook-port={webhook}"),
        ])
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start paddock-controller");
    wait_for("the controller's readiness probe", || {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", health)).ok()?;
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        answer.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the controller exited"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read as _;
        let _ = err.read_to_string(&mut log);
    }
    let line = log
        .lines()
        .find(|l| l.contains("conversion webhook cannot serve"))
        .unwrap_or_else(|| panic!("no warning about the webhook: {log}"));
    assert!(line.contains("--enable-webhook=false"), "{line}");
    stop_api.cancel();
}
