//! `paddock gateway` on a cluster: the real gateway server on a real port, backed by
//! [`KubeBackend`](paddock_kube_backend::KubeBackend) over the in-memory API server, with the
//! test playing the controller and the kubelet, and the real static agent as a plain process on
//! loopback standing in for a pod (its "pod IP" is 127.0.0.1, admitted by
//! `--allow-loopback-pod-ip`). Every API call the gateway makes is checked against its RBAC.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use paddock_client::{CreateSandbox, ErrorCode, ProcessRequest};
use paddock_router::args::{AuthMode, GatewayArgs};
use paddock_testkit::kube::FakeApiServer;
use paddock_testkit::kube::scripted::authz;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SANDBOXES: &str = "agents.x-k8s.io/sandboxes";
const CLAIMS: &str = "extensions.agents.x-k8s.io/sandboxclaims";
const TEMPLATES: &str = "extensions.agents.x-k8s.io/sandboxtemplates";
const PODS: &str = "/pods";
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

/// The real static agent, listening on loopback as a sandbox's pod would on its pod IP.
struct Agent {
    child: Child,
    port: u16,
    grpc: u16,
    root: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    async fn start() -> Agent {
        let root = tempfile::tempdir().expect("tempdir");
        let port = paddock_testkit::registry::free_port();
        let grpc = paddock_testkit::registry::free_port();
        let child = Command::new(paddock_testkit::agent_binary())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
            .arg("--root-dir")
            .arg(root.path())
            .arg("--base-dir")
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent");
        let agent = Agent {
            child,
            port,
            grpc,
            root,
        };
        wait_for("the agent to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .await;
        agent
    }
}

/// A gateway on a free loopback port over a (recording) fake API server.
struct Gateway {
    api: FakeApiServer,
    url: String,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn args(agent_port: u16) -> GatewayArgs {
    GatewayArgs {
        allow_loopback_pod_ip: true,
        agent_port,
        ..GatewayArgs::default()
    }
}

impl Gateway {
    async fn start(args: GatewayArgs) -> Gateway {
        let api = FakeApiServer::new().recording();
        let settings = args
            .validate_with_env(Some(TOKEN.to_owned()))
            .expect("valid flags");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let client = api.client();
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            paddock_router::run::run_with(client, &settings, listener, stop)
                .await
                .expect("gateway runs");
        });
        Gateway {
            api,
            url,
            shutdown,
            server: Some(server),
        }
    }

    fn sdk(&self) -> paddock_client::Client {
        paddock_client::Client::new(&self.url, Some(TOKEN.to_owned())).expect("client")
    }

    /// Checks that every API call so far is one deploy/router/rbac.yaml grants, then stops the
    /// gateway and checks it stops promptly.
    async fn finish(mut self) {
        let declared = declared_calls();
        for request in self.api.requests() {
            let Some((group, resource, verb, _)) = authz(&request) else {
                continue;
            };
            let call = (group, resource, verb);
            assert!(
                declared.contains(&call),
                "{request} needs {call:?}, which the gateway's RBAC (gateway::API_CALLS) does not grant"
            );
        }
        self.shutdown.cancel();
        let server = self.server.take().expect("running");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the gateway stops within 5 s of shutdown")
            .expect("join");
    }
}

fn declared_calls() -> BTreeSet<(String, String, String)> {
    paddock_kube_backend::API_CALLS
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned()))
        })
        .collect()
}

/// A raw HTTP call (for headers the SDK does not send, and streams).
async fn call(
    url: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> http::Response<hyper::body::Incoming> {
    let client: HttpClient<HttpConnector, Full<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("{url}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    client
        .request(req.body(Full::new(body)).expect("request"))
        .await
        .expect("the gateway answers")
}

async fn call_json(
    url: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let resp = call(url, method, path, headers, body).await;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// The next `n` NDJSON events of a watch (at most 5 s).
async fn next_events(body: &mut hyper::body::Incoming, n: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut pending = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while events.len() < n {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("watch events in time")
            .expect("stream open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            pending.push_str(&String::from_utf8_lossy(&data));
            while let Some(i) = pending.find('\n') {
                let line: Value = serde_json::from_str(&pending[..i]).expect("event json");
                pending.drain(..=i);
                events.push(line);
            }
        }
    }
    events
}

fn template() -> Value {
    json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate",
        "metadata": {"name": "python", "namespace": NS},
        "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "python:3.12"}]}}}
    })
}

/// A Ready Sandbox as the controller and kubelet leave it, reachable at `ip`.
fn ready_sandbox(name: &str, ip: Option<&str>, owner: Option<&Value>) -> Value {
    let mut sandbox = json!({
        "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
        "metadata": {"name": name, "namespace": NS,
                     "annotations": {"agents.x-k8s.io/pod-name": name}},
        "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "python:3.12"}]}},
                 "operatingMode": "Running"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "DependenciesReady",
                                   "message": "Pod is Ready", "lastTransitionTime": "2026-09-01T12:00:00Z"}]}
    });
    if let Some(ip) = ip {
        sandbox["status"]["podIPs"] = json!([ip]);
    }
    if let Some(claim) = owner {
        sandbox["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
            "name": claim["metadata"]["name"], "uid": claim["metadata"]["uid"],
            "controller": true, "blockOwnerDeletion": true
        }]);
    }
    sandbox
}

/// Plays the claim controller and the kubelet for one claim: a cold-start Sandbox of the claim's
/// name, Ready at `ip`, and the claim's status pointing at it.
async fn bind_claim_when_created(api: FakeApiServer, name: &str, ip: &str) -> Value {
    let claim = wait_for("the SandboxClaim", || api.get(CLAIMS, NS, name)).await;
    api.insert(SANDBOXES, ready_sandbox(name, Some(ip), Some(&claim)));
    let status = json!({"status": {
        "sandbox": {"name": name, "podIPs": [ip]},
        "conditions": [{"type": "Ready", "status": "True", "reason": "SandboxReady",
                        "message": "Sandbox is ready", "lastTransitionTime": "2026-09-01T12:00:01Z"}]
    }});
    assert!(api.merge(CLAIMS, NS, name, &status, true).is_success());
    claim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_creates_a_template_sandbox_through_a_claim_and_runs_commands_and_files_in_it() {
    let agent = Agent::start().await;
    let gw = Gateway::start(args(agent.port)).await;
    gw.api.insert(TEMPLATES, template());
    let binder = tokio::spawn(bind_claim_when_created(
        gw.api.clone(),
        "sb-tpl",
        "127.0.0.1",
    ));

    let sdk = gw.sdk();
    let mut create = CreateSandbox::template("python");
    create.name = Some("sb-tpl".into());
    create.namespace = Some(NS.into());
    create.labels.insert("team".into(), "a".into());
    let info = sdk
        .create_sandbox(&create)
        .await
        .expect("created and Ready");
    assert_eq!(info.name, "sb-tpl");
    assert!(info.ready, "{info:?}");
    assert_eq!(info.claim.as_deref(), Some("sb-tpl"));

    // The claim the controller saw has upstream's v1beta1 shape.
    let claim = binder.await.expect("binder");
    assert_eq!(claim["apiVersion"], "extensions.agents.x-k8s.io/v1beta1");
    assert_eq!(claim["kind"], "SandboxClaim");
    assert_eq!(claim["spec"]["warmPoolRef"]["name"], "shadow-pool-python");
    assert_eq!(
        claim["metadata"]["labels"]["agents.x-k8s.io/created-by"],
        "paddock"
    );
    assert_eq!(claim["metadata"]["labels"]["team"], "a");
    assert!(
        claim["metadata"]["annotations"]["agents.x-k8s.io/client-first-requested-at"].is_string()
    );

    // Exec and files reach the agent at the Sandbox's pod IP.
    let sandbox = sdk.sandbox("sb-tpl", NS);
    let out = sandbox
        .exec(&ProcessRequest::shell("echo hello from the pod"))
        .await
        .expect("exec");
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.stdout_text(), "hello from the pod\n");
    sandbox
        .write_file("notes/hello.txt", b"round trip".to_vec(), None)
        .await
        .expect("write");
    assert_eq!(
        std::fs::read(agent.root.path().join("notes/hello.txt")).expect("on the agent's disk"),
        b"round trip"
    );
    let back = sandbox.read_file("notes/hello.txt").await.expect("read");
    assert_eq!(&back[..], b"round trip");

    // Deleting removes the claim (its Sandbox goes with it by garbage collection).
    sandbox.delete().await.expect("delete");
    assert!(gw.api.get(CLAIMS, NS, "sb-tpl").is_none());
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_contract_headers_reach_the_agent_and_metadata_pod_ips_are_refused() {
    let agent = Agent::start().await;
    let metrics_port = paddock_testkit::registry::free_port();
    let gw = Gateway::start(GatewayArgs {
        metrics_bind_address: format!("127.0.0.1:{metrics_port}"),
        ..args(agent.port)
    })
    .await;
    gw.api.insert(
        SANDBOXES,
        ready_sandbox("sb-router", Some("127.0.0.1"), None),
    );
    let port = agent.port.to_string();
    let bearer = format!("Bearer {TOKEN}");
    let execute = json!({"command": "echo routed"});

    // By name: the gateway finds the pod IP in the Sandbox's status.
    for headers in [
        vec![
            ("x-sandbox-id", "sb-router"),
            ("x-sandbox-namespace", NS),
            ("x-sandbox-port", port.as_str()),
        ],
        // Upstream's default port stands for the agent's port.
        vec![
            ("x-sandbox-id", "sb-router"),
            ("x-sandbox-namespace", NS),
            ("x-sandbox-port", "8888"),
        ],
        // The client names the pod IP itself (loopback admitted by --allow-loopback-pod-ip).
        vec![
            ("x-sandbox-id", "sb-router"),
            ("x-sandbox-namespace", NS),
            ("x-sandbox-port", port.as_str()),
            ("x-sandbox-pod-ip", "127.0.0.1"),
        ],
    ] {
        let mut h = headers.clone();
        h.push(("authorization", &bearer));
        let (status, body) =
            call_json(&gw.url, Method::POST, "/execute", &h, Some(execute.clone())).await;
        assert_eq!(status, 200, "{headers:?}: {body}");
        assert_eq!(body["stdout"], "routed\n", "{body}");
        assert_eq!(body["exit_code"], 0);
    }

    // The SSRF guard: cloud metadata is never a pod.
    let (status, body) = call_json(
        &gw.url,
        Method::POST,
        "/execute",
        &[
            ("x-sandbox-id", "sb-router"),
            ("x-sandbox-namespace", NS),
            ("x-sandbox-pod-ip", "169.254.169.254"),
            ("authorization", &bearer),
        ],
        Some(execute.clone()),
    )
    .await;
    assert_eq!(
        (status, body),
        (400, json!({"detail": "Invalid target IP address."}))
    );

    // Unknown sandbox: upstream's 502; no token: upstream's 401.
    let (status, body) = call_json(
        &gw.url,
        Method::POST,
        "/execute",
        &[
            ("x-sandbox-id", "nope"),
            ("x-sandbox-namespace", NS),
            ("authorization", &bearer),
        ],
        Some(execute.clone()),
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(
        body["detail"],
        "Could not connect to the backend sandbox: nope"
    );
    let (status, body) = call_json(
        &gw.url,
        Method::POST,
        "/execute",
        &[("x-sandbox-id", "sb-router"), ("x-sandbox-namespace", NS)],
        Some(execute),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["detail"], "Missing or invalid Authorization header.");

    // Upstream's router metrics, on the metrics listener with no token.
    let response = call(
        &format!("http://127.0.0.1:{metrics_port}"),
        Method::GET,
        "/metrics",
        &[],
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8(body.to_vec()).expect("utf8");
    for line in [
        format!(
            "sandbox_router_requests_total{{method=\"POST\",code=\"200\",sandbox_namespace=\"{NS}\"}} 3"
        ),
        format!(
            "sandbox_router_requests_total{{method=\"POST\",code=\"502\",sandbox_namespace=\"{NS}\"}} 1"
        ),
        "sandbox_router_requests_total{method=\"POST\",code=\"400\",sandbox_namespace=\"-\"} 1"
            .to_owned(),
        format!(
            "sandbox_router_authz_decisions_total{{sandbox_namespace=\"{NS}\",decision=\"deny\"}} 1"
        ),
        format!(
            "sandbox_router_authz_decisions_total{{sandbox_namespace=\"{NS}\",decision=\"allow\"}} 4"
        ),
        format!("sandbox_router_request_size_bytes_count{{sandbox_namespace=\"{NS}\"}} 3"),
        format!("sandbox_router_response_size_bytes_count{{sandbox_namespace=\"{NS}\"}} 3"),
        "sandbox_router_inflight_requests 0".to_owned(),
        "sandbox_router_build_info{".to_owned(),
    ] {
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    let bytes = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{sandbox_namespace=\"{NS}\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
    };
    let sent = serde_json::to_vec(&json!({"command": "echo routed"}))
        .expect("json")
        .len() as u64;
    assert_eq!(bytes("sandbox_router_client_rx_bytes_total"), 3 * sent);
    assert_eq!(bytes("sandbox_router_upstream_tx_bytes_total"), 3 * sent);
    assert!(bytes("sandbox_router_client_tx_bytes_total") > 0);
    assert_eq!(
        bytes("sandbox_router_client_tx_bytes_total"),
        bytes("sandbox_router_upstream_rx_bytes_total")
    );
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_api_stores_v1beta1_while_the_client_speaks_v1alpha1_and_watches_changes() {
    let gw = Gateway::start(args(8888)).await;
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let base = format!("/apis/agents.x-k8s.io/v1alpha1/namespaces/{NS}/sandboxes");
    let v1alpha1 = json!({
        "apiVersion": "agents.x-k8s.io/v1alpha1", "kind": "Sandbox",
        "metadata": {"name": "obj"},
        "spec": {"replicas": 1, "podTemplate": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}
    });
    let (status, created) = call_json(&gw.url, Method::POST, &base, &auth, Some(v1alpha1)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["apiVersion"], "agents.x-k8s.io/v1alpha1");
    assert_eq!(created["spec"]["replicas"], 1);

    // The API server holds the storage version.
    let stored = gw.api.get(SANDBOXES, NS, "obj").expect("stored");
    assert_eq!(stored["apiVersion"], "agents.x-k8s.io/v1beta1");
    assert_eq!(stored["spec"]["operatingMode"], "Running");
    assert!(stored["spec"].get("replicas").is_none(), "{stored}");

    let (status, got) = call_json(&gw.url, Method::GET, &format!("{base}/obj"), &auth, None).await;
    assert_eq!(status, 200);
    assert_eq!(got["spec"]["replicas"], 1);
    assert_eq!(got["metadata"]["uid"], stored["metadata"]["uid"]);

    let (status, list) = call_json(&gw.url, Method::GET, &base, &auth, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["kind"], "SandboxList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    assert_eq!(
        rv, stored["metadata"]["resourceVersion"],
        "the list's resourceVersion is the apiserver's"
    );

    // Watch from the list's resourceVersion: the status update and the delete arrive, in v1alpha1.
    let watch = call(
        &gw.url,
        Method::GET,
        &format!("{base}?watch=true&resourceVersion={rv}"),
        &auth,
        None,
    )
    .await;
    assert_eq!(watch.status(), 200);
    let mut body = watch.into_body();
    let mut with_status = got.clone();
    with_status["status"] = json!({"replicas": 1, "conditions": [{"type": "Ready", "status": "True",
        "reason": "DependenciesReady", "message": "", "lastTransitionTime": "2026-09-01T12:00:00Z"}]});
    let (status, updated) = call_json(
        &gw.url,
        Method::PUT,
        &format!("{base}/obj/status"),
        &auth,
        Some(with_status),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        gw.api.get(SANDBOXES, NS, "obj").expect("stored")["status"]["conditions"][0]["status"],
        "True"
    );
    let (status, _) = call_json(&gw.url, Method::DELETE, &format!("{base}/obj"), &auth, None).await;
    assert_eq!(status, 200);
    assert!(gw.api.get(SANDBOXES, NS, "obj").is_none());

    let events = next_events(&mut body, 2).await;
    assert_eq!(events[0]["type"], "MODIFIED");
    assert_eq!(
        events[0]["object"]["apiVersion"],
        "agents.x-k8s.io/v1alpha1"
    );
    assert_eq!(
        events[0]["object"]["status"]["conditions"][0]["status"],
        "True"
    );
    assert_eq!(events[1]["type"], "DELETED");
    drop(body);

    // Writes the apiserver refuses keep its code: a second create is ALREADY_EXISTS.
    gw.api.insert(TEMPLATES, template());
    let (status, err) = call_json(
        &gw.url,
        Method::POST,
        &format!("/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/{NS}/sandboxtemplates"),
        &auth,
        Some(template()),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("ALREADY_EXISTS")),
        "{err}"
    );
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_that_is_not_ready_gets_an_error_naming_its_state() {
    let gw = Gateway::start(args(8888)).await;
    let mut pending = ready_sandbox("sb-pending", None, None);
    pending["status"]["conditions"][0] = json!({"type": "Ready", "status": "False",
        "reason": "DependenciesNotReady", "message": "Pod exists with phase: Pending",
        "lastTransitionTime": "2026-09-01T12:00:00Z"});
    gw.api.insert(SANDBOXES, pending);
    let err = gw
        .sdk()
        .sandbox("sb-pending", NS)
        .exec(&ProcessRequest::shell("true"))
        .await
        .expect_err("not ready");
    assert_eq!(err.code, ErrorCode::SandboxNotReady, "{err:?}");
    assert_eq!(err.status, Some(503));
    assert!(
        err.message
            .contains("not Ready (DependenciesNotReady: Pod exists with phase: Pending)"),
        "{}",
        err.message
    );

    let mut suspended = ready_sandbox("sb-paused", Some("10.0.0.9"), None);
    suspended["spec"]["operatingMode"] = json!("Suspended");
    gw.api.insert(SANDBOXES, suspended);
    let err = gw
        .sdk()
        .sandbox("sb-paused", NS)
        .exec(&ProcessRequest::shell("true"))
        .await
        .expect_err("suspended");
    assert_eq!(err.code, ErrorCode::SandboxNotReady);
    assert!(
        err.message.contains("suspended; resume it first"),
        "{}",
        err.message
    );
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_without_status_ips_is_reached_through_its_pod() {
    let agent = Agent::start().await;
    let gw = Gateway::start(args(agent.port)).await;
    let mut sandbox = ready_sandbox("sb-old", None, None);
    sandbox["metadata"]["annotations"]["agents.x-k8s.io/pod-name"] = json!("sb-old-pod");
    gw.api.insert(SANDBOXES, sandbox);
    gw.api.insert(
        PODS,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sb-old-pod", "namespace": NS},
               "status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}}),
    );
    let out = gw
        .sdk()
        .sandbox("sb-old", NS)
        .exec(&ProcessRequest::shell("echo via pod"))
        .await
        .expect("exec");
    assert_eq!(out.stdout_text(), "via pod\n");
    assert!(
        gw.api
            .requests()
            .iter()
            .any(|r| r == &format!("GET /api/v1/namespaces/{NS}/pods/sb-old-pod")),
        "the Pod named in the annotation was read"
    );
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_the_pod_log_of_the_sandbox_main_container() {
    let gw = Gateway::start(args(8888)).await;
    let mut sandbox = ready_sandbox("sb-log", Some("10.0.0.7"), None);
    sandbox["metadata"]["annotations"]["agents.x-k8s.io/pod-name"] = json!("sb-log-pod");
    gw.api.insert(SANDBOXES, sandbox);
    gw.api.insert(
        PODS,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sb-log-pod", "namespace": NS}}),
    );
    gw.api
        .set_pod_log(NS, "sb-log-pod", "serving on :8000\nGET / 200\n");
    let mut log = Vec::new();
    let n = gw
        .sdk()
        .sandbox("sb-log", NS)
        .logs(true, &mut log)
        .await
        .expect("logs");
    assert_eq!(
        String::from_utf8_lossy(&log),
        "serving on :8000\nGET / 200\n"
    );
    assert_eq!(n, log.len() as u64);
    assert!(
        gw.api
            .requests()
            .iter()
            .any(|r| r == &format!("GET /api/v1/namespaces/{NS}/pods/sb-log-pod/log")),
        "the log of the Pod named in the annotation was read: {:?}",
        gw.api.requests()
    );

    // No pod (suspended, unscheduled): not ready, said so; no sandbox: not found.
    gw.api
        .insert(SANDBOXES, ready_sandbox("sb-nopod", None, None));
    let err = gw
        .sdk()
        .sandbox("sb-nopod", NS)
        .logs(false, &mut Vec::new())
        .await
        .expect_err("no pod");
    assert_eq!(err.code, ErrorCode::SandboxNotReady, "{err:?}");
    assert!(err.message.contains("no pod"), "{}", err.message);
    let err = gw
        .sdk()
        .sandbox("sb-missing", NS)
        .logs(false, &mut Vec::new())
        .await
        .expect_err("no sandbox");
    assert_eq!(err.code, ErrorCode::NotFound, "{err:?}");
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenreview_admits_accepted_tokens_refuses_others_and_caches_decisions() {
    let agent = Agent::start().await;
    let gw = Gateway::start(GatewayArgs {
        auth: AuthMode::Tokenreview,
        authz_tokenreview_audiences: vec!["sandbox-router".into()],
        ..args(agent.port)
    })
    .await;
    gw.api.accept_token(
        "good-token",
        "system:serviceaccount:team-a:agent",
        &["sandbox-router"],
    );
    gw.api.accept_token(
        "apiserver-only-token",
        "system:serviceaccount:team-a:default",
        &[],
    );
    gw.api
        .insert(SANDBOXES, ready_sandbox("sb-auth", Some("127.0.0.1"), None));
    let reviews = |api: &FakeApiServer| {
        api.requests()
            .iter()
            .filter(|r| *r == "POST /apis/authentication.k8s.io/v1/tokenreviews")
            .count()
    };
    let client = |token: Option<&str>| {
        paddock_client::Client::new(&gw.url, token.map(str::to_owned)).expect("client")
    };

    for _ in 0..3 {
        client(Some("good-token"))
            .info()
            .await
            .expect("an accepted token passes");
    }
    assert_eq!(
        reviews(&gw.api),
        1,
        "one TokenReview, then the cached decision"
    );

    for token in [Some("apiserver-only-token"), Some("made-up"), None] {
        let err = client(token).info().await.expect_err("refused");
        assert_eq!(err.code, ErrorCode::Unauthenticated, "{token:?}: {err:?}");
        assert_eq!(err.status, Some(401));
    }
    let (status, body) = call_json(
        &gw.url,
        Method::GET,
        "/v1/info",
        &[("authorization", "Bearer made-up")],
        None,
    )
    .await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"code": "UNAUTHENTICATED", "message": "invalid token"})
        )
    );
    assert_eq!(reviews(&gw.api), 3, "refusals are cached too");

    // Routed (upstream router) traffic is checked the same way.
    let port = agent.port.to_string();
    let routed = |auth: &'static str| {
        let port = port.clone();
        let url = gw.url.clone();
        async move {
            call_json(
                &url,
                Method::POST,
                "/execute",
                &[
                    ("x-sandbox-id", "sb-auth"),
                    ("x-sandbox-namespace", NS),
                    ("x-sandbox-port", &port),
                    ("authorization", auth),
                ],
                Some(json!({"command": "echo ok"})),
            )
            .await
        }
    };
    let (status, body) = routed("Bearer good-token").await;
    assert_eq!((status, &body["stdout"]), (200, &json!("ok\n")), "{body}");
    let (status, body) = routed("Bearer made-up").await;
    assert_eq!((status, body), (401, json!({"detail": "Invalid token."})));
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_sandbox_without_agent_image_is_refused_with_the_remedy() {
    let gw = Gateway::start(args(8888)).await;
    let mut create = CreateSandbox::image("python:3.12");
    create.namespace = Some(NS.into());
    let err = gw.sdk().create_sandbox(&create).await.expect_err("refused");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(err.message.contains("--agent-image"), "{}", err.message);
    assert!(err.message.contains("template"), "{}", err.message);
    assert!(gw.api.list(SANDBOXES).is_empty(), "nothing was created");
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_sandbox_with_agent_image_runs_the_agent_as_the_pods_main_process() {
    let gw = Gateway::start(GatewayArgs {
        agent_image: Some("registry.example/paddock-agent:0.1".into()),
        ..args(8888)
    })
    .await;
    let sdk = gw.sdk();
    let mut create = CreateSandbox::image("python:3.12");
    create.name = Some("sb-image".into());
    create.namespace = Some(NS.into());
    create.command = Some(vec!["python3".into(), "-m".into(), "http.server".into()]);
    create.working_dir = Some("/srv".into());
    create.wait = Some(false);
    let info = sdk.create_sandbox(&create).await.expect("created");
    assert_eq!(info.name, "sb-image");

    let stored = gw.api.get(SANDBOXES, NS, "sb-image").expect("stored");
    let pod = &stored["spec"]["podTemplate"]["spec"];
    let init = &pod["initContainers"][0];
    assert_eq!(init["image"], "registry.example/paddock-agent:0.1");
    assert_eq!(
        init["command"],
        json!(["cp", "/paddock-agent", "/.paddock/bin/paddock-agent"])
    );
    assert_eq!(
        init["volumeMounts"][0],
        json!({"name": "paddock-agent", "mountPath": "/.paddock/bin"})
    );
    assert_eq!(
        pod["volumes"],
        json!([{"name": "paddock-agent", "emptyDir": {}}])
    );
    let main = &pod["containers"][0];
    assert_eq!(main["image"], "python:3.12");
    assert_eq!(
        main["command"],
        json!([
            "/.paddock/bin/paddock-agent",
            "--listen",
            "0.0.0.0:8888",
            "--root-dir",
            "/srv",
            "--base-dir",
            "/srv",
            "--",
            "python3",
            "-m",
            "http.server"
        ])
    );
    assert!(main.get("args").is_none());
    assert_eq!(
        main["volumeMounts"],
        json!([{"name": "paddock-agent", "mountPath": "/.paddock/bin", "readOnly": true}])
    );
    assert_eq!(main["ports"][0]["name"], "agent");
    assert_eq!(main["ports"][0]["containerPort"], 8888);
    assert_eq!(
        main["readinessProbe"]["httpGet"],
        json!({"path": "/v1/health", "port": 8888})
    );

    // Without a command the agent runs alone (an idle sandbox waiting for exec).
    let mut idle = CreateSandbox::image("busybox");
    idle.name = Some("sb-idle".into());
    idle.namespace = Some(NS.into());
    idle.wait = Some(false);
    sdk.create_sandbox(&idle).await.expect("created");
    let stored = gw.api.get(SANDBOXES, NS, "sb-idle").expect("stored");
    assert_eq!(
        stored["spec"]["podTemplate"]["spec"]["containers"][0]["command"],
        json!(["/.paddock/bin/paddock-agent", "--listen", "0.0.0.0:8888"])
    );

    // Host directories are node directories on a cluster: refused.
    let mut host = CreateSandbox::image("busybox");
    host.namespace = Some(NS.into());
    host.volumes.push(paddock_client::HostVolume {
        host_path: "/etc".into(),
        mount_path: "/host".into(),
        read_only: true,
    });
    let err = sdk.create_sandbox(&host).await.expect_err("refused");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(
        err.message.contains("volumeClaimTemplates"),
        "{}",
        err.message
    );
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_api_calls_name_the_missing_permission() {
    let gw = Gateway::start(args(8888)).await;
    gw.api.insert(TEMPLATES, template());
    gw.api
        .forbid("list", "extensions.agents.x-k8s.io/sandboxwarmpools");
    let mut create = CreateSandbox::template("python");
    create.namespace = Some(NS.into());
    let err = gw
        .sdk()
        .create_sandbox(&create)
        .await
        .expect_err("forbidden");
    assert_eq!(err.code, ErrorCode::PermissionDenied, "{err:?}");
    assert_eq!(err.status, Some(403));
    assert!(
        err.message.contains(
            "cannot list resource \"sandboxwarmpools\" in API group \"extensions.agents.x-k8s.io\""
        ),
        "{}",
        err.message
    );
    assert!(err.message.contains("service account"), "{}", err.message);
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_says_kubernetes_and_health_needs_no_token() {
    let gw = Gateway::start(args(8888)).await;
    let info = gw.sdk().info().await.expect("info");
    assert_eq!(info["backend"], "kubernetes");
    assert_eq!(info["details"]["runtimes"], json!(["cluster"]));
    assert_eq!(info["details"]["imageSandboxes"], false);
    let (status, body) = call_json(&gw.url, Method::GET, "/healthz", &[], None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_from_its_last_resource_version_when_the_api_server_ends_it() {
    let gw = Gateway::start(args(8888)).await;
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    gw.api.insert(SANDBOXES, ready_sandbox("w1", None, None));
    let base = format!("/apis/agents.x-k8s.io/v1beta1/namespaces/{NS}/sandboxes");
    let (_, list) = call_json(&gw.url, Method::GET, &base, &auth, None).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    let watch = call(
        &gw.url,
        Method::GET,
        &format!("{base}?watch=true&resourceVersion={rv}"),
        &auth,
        None,
    )
    .await;
    let mut body = watch.into_body();

    // The apiserver ends the watch (its timeout); changes made meanwhile still arrive, once.
    gw.api.end_watches();
    gw.api.insert(SANDBOXES, ready_sandbox("w2", None, None));
    let first = next_events(&mut body, 1).await;
    gw.api.end_watches();
    let patch = json!({"metadata": {"labels": {"seen": "yes"}}});
    assert!(
        gw.api
            .merge(SANDBOXES, NS, "w1", &patch, false)
            .is_success()
    );
    let second = next_events(&mut body, 1).await;
    assert_eq!(
        (
            first[0]["type"].as_str(),
            first[0]["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("w2"))
    );
    assert_eq!(
        (
            second[0]["type"].as_str(),
            second[0]["object"]["metadata"]["name"].as_str()
        ),
        (Some("MODIFIED"), Some("w1"))
    );
    let watches = gw
        .api
        .requests()
        .iter()
        .filter(|r| {
            *r == &format!("GET /apis/agents.x-k8s.io/v1beta1/namespaces/{NS}/sandboxes?watch")
        })
        .count();
    assert_eq!(watches, 3, "the gateway re-opened the watch after each end");
    drop(body);
    gw.finish().await;
}

/// Routing reads a Ready sandbox from the watch-fed cache: after the cache holds it, requests
/// make no API call; with `--cache-enabled=false` each one GETs the Sandbox (upstream's default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_reads_sandboxes_from_the_watch_fed_cache_unless_disabled() {
    let agent = Agent::start().await;
    for cache in [true, false] {
        let gw = Gateway::start(GatewayArgs {
            cache_enabled: cache,
            ..args(agent.port)
        })
        .await;
        gw.api.insert(
            SANDBOXES,
            ready_sandbox("sb-cached", Some("127.0.0.1"), None),
        );
        let sandbox = gw.sdk().sandbox("sb-cached", NS);
        // The first request may come before the watch delivers the Sandbox (it then GETs).
        sandbox
            .exec(&ProcessRequest::shell("true"))
            .await
            .expect("exec");
        let get = format!("GET /apis/agents.x-k8s.io/v1beta1/namespaces/{NS}/sandboxes/sb-cached");
        let gets = |api: &FakeApiServer| api.requests().iter().filter(|r| **r == get).count();
        if cache {
            wait_for("the cache to hold the sandbox", || {
                (gw.api
                    .requests()
                    .iter()
                    .any(|r| r.ends_with("/sandboxes?watch")))
                .then_some(())
            })
            .await;
        }
        let before = gets(&gw.api);
        for _ in 0..5 {
            let out = sandbox
                .exec(&ProcessRequest::shell("echo hi"))
                .await
                .expect("exec");
            assert_eq!(out.stdout_text(), "hi\n");
        }
        let per_request = gets(&gw.api) - before;
        if cache {
            assert_eq!(
                per_request,
                0,
                "cached: no GET per request: {:#?}",
                gw.api.requests()
            );
            // A change to the cached Sandbox replaces its entry: counted as upstream counts it.
            let patch = json!({"metadata": {"labels": {"touched": "yes"}}});
            assert!(
                gw.api
                    .merge(SANDBOXES, NS, "sb-cached", &patch, false)
                    .is_success()
            );
            let bearer = format!("Bearer {TOKEN}");
            let line =
                format!("sandbox_router_cache_invalidations_total{{sandbox_namespace=\"{NS}\"}} 1");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let response = call(
                    &gw.url,
                    Method::GET,
                    "/metrics",
                    &[("authorization", &bearer)],
                    None,
                )
                .await;
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                let text = String::from_utf8_lossy(&body).into_owned();
                if text.contains(&line) {
                    break;
                }
                assert!(Instant::now() < deadline, "{line} never in\n{text}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            // One GET per request; the sandbox's permissions are kept a second, so the five
            // requests ask for them at most once (here: already asked before `before`).
            assert!(
                (5..=6).contains(&per_request),
                "uncached: one GET per request, {per_request}"
            );
        }
        gw.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxs_permissions_are_enforced_on_a_cluster_too() {
    let agent = Agent::start().await;
    let gw = Gateway::start(args(agent.port)).await;
    gw.api.insert(
        "paddock.dev/sandboxpolicies",
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "SandboxPolicy",
               "metadata": {"name": "ro", "namespace": NS},
               "spec": {"permissions": {"exec": {"allow": ["python3"]},
                                        "files": {"write": {"level": "never"}}}}}),
    );
    let mut sandbox = ready_sandbox("sb-ro", Some("127.0.0.1"), None);
    sandbox["metadata"]["annotations"]["paddock.dev/policy"] = json!("ro");
    gw.api.insert(SANDBOXES, sandbox);
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let path = |rest: &str| format!("/v1/sandboxes/sb-ro/{rest}?namespace={NS}");

    let (status, body) = call_json(
        &gw.url,
        Method::POST,
        &path("exec"),
        &auth,
        Some(json!({"command": "echo hi"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "PERMISSION_DENIED");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("does not allow running sh"),
        "{body}"
    );
    let (status, body) = call_json(
        &gw.url,
        Method::POST,
        &path("exec"),
        &auth,
        Some(json!({"argv": ["python3", "-c", "print(1)"]})),
    )
    .await;
    assert_eq!(
        (status, body["stdout"].clone()),
        (200, json!("1\n")),
        "{body}"
    );
    let (status, body) = call_json(
        &gw.url,
        Method::PUT,
        &path("files/tmp/x"),
        &auth,
        Some(json!("x")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("does not allow writing /tmp/x"),
        "{body}"
    );

    // Upstream's route to the agent cannot be checked call by call: refused.
    let (status, body) = call_json(
        &gw.url,
        Method::POST,
        "/execute",
        &[
            ("x-sandbox-id", "sb-ro"),
            ("x-sandbox-namespace", NS),
            ("authorization", &bearer),
        ],
        Some(json!({"command": "echo routed"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_scoped_tokens_are_minted_by_the_gateway_and_bound_to_the_sandboxs_uid() {
    use paddock_gateway::scoped_v2::SigningKeyFile;
    let agent = Agent::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKeyFile::generate("cluster-1").expect("key");
    let (signing, keys) = (
        dir.path().join("signing.json"),
        dir.path().join("keys.json"),
    );
    std::fs::write(&signing, key.to_json()).expect("write");
    std::fs::write(&keys, key.verification_json()).expect("write");
    let gw = Gateway::start(GatewayArgs {
        auth: AuthMode::Scoped,
        authz_scoped_token_verification_keys_file: Some(keys.clone()),
        scoped_token_signing_key_file: Some(signing),
        ..args(agent.port)
    })
    .await;
    gw.api
        .insert(SANDBOXES, ready_sandbox("sb-v2", Some("127.0.0.1"), None));
    let port = agent.port.to_string();
    let admin = format!("Bearer {TOKEN}");

    // The admin mints a token for POST /execute on the agent's port.
    let (status, minted) = call_json(
        &gw.url,
        Method::POST,
        &format!("/v1/sandboxes/sb-v2/tokens?namespace={NS}"),
        &[("authorization", &admin)],
        Some(json!({"port": agent.port, "method": "post", "path": "/execute", "ttlSeconds": 600})),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("v2.cluster-1."), "{token}");
    assert_eq!(minted["sandbox"], "sb-v2");
    let bearer = format!("Bearer {token}");
    let routed =
        |method: Method, path: &'static str, extra: Option<(&'static str, &'static str)>| {
            let (url, bearer, port) = (gw.url.clone(), bearer.clone(), port.clone());
            async move {
                let mut h = vec![
                    ("x-sandbox-id", "sb-v2"),
                    ("x-sandbox-namespace", NS),
                    ("x-sandbox-port", port.as_str()),
                    ("authorization", bearer.as_str()),
                ];
                h.extend(extra);
                call_json(&url, method, path, &h, Some(json!({"command": "echo v2"}))).await
            }
        };
    let (status, body) = routed(Method::POST, "/execute", None).await;
    assert_eq!(
        (status, body["stdout"].as_str()),
        (200, Some("v2\n")),
        "{body}"
    );
    // Another method, another path, a pod IP: forbidden; a bad signature: unauthenticated.
    assert_eq!(
        routed(Method::GET, "/execute", None).await,
        (403, json!({"detail": "forbidden"}))
    );
    assert_eq!(routed(Method::POST, "/execute/x", None).await.0, 403);
    assert_eq!(
        routed(
            Method::POST,
            "/execute",
            Some(("x-sandbox-pod-ip", "127.0.0.1"))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        routed(
            Method::POST,
            "/execute",
            Some(("x-sandbox-uid", "someone-else"))
        )
        .await
        .0,
        403
    );
    // One signature character changed (not the last: its low bits carry no data).
    let at = token.len() - 10;
    let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("Bearer {}{flipped}{}", &token[..at], &token[at + 1..]);
    let (status, body) = call_json(
        &gw.url,
        Method::POST,
        "/execute",
        &[
            ("x-sandbox-id", "sb-v2"),
            ("x-sandbox-namespace", NS),
            ("x-sandbox-port", port.as_str()),
            ("authorization", forged.as_str()),
        ],
        Some(json!({"command": "echo no"})),
    )
    .await;
    assert_eq!((status, body), (401, json!({"detail": "unauthenticated"})));

    // The Sandbox is recreated under the same name: the old token no longer passes.
    let ar = kube::discovery::ApiResource {
        group: "agents.x-k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "agents.x-k8s.io/v1beta1".into(),
        kind: "Sandbox".into(),
        plural: "sandboxes".into(),
    };
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(gw.api.unrecorded().client(), NS, &ar);
    api.delete("sb-v2", &kube::api::DeleteParams::default())
        .await
        .expect("delete");
    gw.api
        .insert(SANDBOXES, ready_sandbox("sb-v2", Some("127.0.0.1"), None));
    let deadline = Instant::now() + Duration::from_secs(10);
    while routed(Method::POST, "/execute", None).await.0 != 403 {
        assert!(Instant::now() < deadline, "the old token still passes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Start-up refuses a verification-keys file that is not one, naming it.
    std::fs::write(&keys, r#"{"keys":[]}"#).expect("write");
    let err = GatewayArgs {
        auth: AuthMode::Scoped,
        authz_scoped_token_verification_keys_file: Some(keys.clone()),
        ..GatewayArgs::default()
    }
    .validate_with_env(None)
    .expect_err("no keys")
    .to_string();
    assert!(
        err.contains("keys.json") && err.contains("no keys"),
        "{err}"
    );
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_port_opens_from_a_path_with_a_session_cookie_and_origin_checks() {
    let agent = Agent::start().await;
    let gw = Gateway::start(GatewayArgs {
        path_routing_prefix: "/sandbox".into(),
        authz_cookie_name: "sbx_session".into(),
        authz_cookie_query_param: "token".into(),
        authz_cookie_insecure: true,
        authz_cookie_allowed_origins: vec!["http://IDE.example.com:80".into()],
        ..args(agent.port)
    })
    .await;
    gw.api
        .insert(SANDBOXES, ready_sandbox("sb-web", Some("127.0.0.1"), None));
    let base = format!("/sandbox/{NS}/sb-web/{}/", agent.port);

    // A first visit brings the token in the URL: a redirect sets the cookie and drops it.
    let first = call(
        &gw.url,
        Method::GET,
        &format!("{base}v1/health?token={TOKEN}&x=1"),
        &[],
        None,
    )
    .await;
    assert_eq!(first.status(), 302);
    let h = first.headers();
    assert_eq!(h["location"], format!("{base}v1/health?x=1"));
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(
        h["set-cookie"],
        format!("sbx_session={TOKEN}; Path={base}; HttpOnly; SameSite=Lax")
    );

    // Then the cookie carries it; the rest of the path reaches the sandbox's port.
    let cookie = format!("theme=dark; sbx_session={TOKEN}");
    let status = |origin: Option<&str>, cookie: &str| {
        let url = gw.url.clone();
        let path = format!("{base}v1/health?x=1");
        let (origin, cookie) = (origin.map(str::to_owned), cookie.to_owned());
        async move {
            let mut h = vec![("cookie", cookie.as_str())];
            h.extend(origin.as_deref().map(|o| ("origin", o)));
            call(&url, Method::GET, &path, &h, None)
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(None, &cookie).await, 200);
    assert_eq!(
        status(Some(&gw.url), &cookie).await,
        200,
        "the router's own origin"
    );
    assert_eq!(status(Some("http://ide.example.com"), &cookie).await, 200);
    assert_eq!(status(Some("https://evil.example"), &cookie).await, 403);
    assert_eq!(status(None, "sbx_session=wrong").await, 401);
    assert_eq!(status(None, "theme=dark").await, 401);

    // A bearer token works on a path too, for any method; bad paths get upstream's 400s.
    let bearer = format!("Bearer {TOKEN}");
    let (code, body) = call_json(
        &gw.url,
        Method::POST,
        &format!("{base}execute"),
        &[("authorization", &bearer)],
        Some(json!({"command": "echo by-path"})),
    )
    .await;
    assert_eq!(
        (code, body["stdout"].as_str()),
        (200, Some("by-path\n")),
        "{body}"
    );
    let (code, body) = call_json(
        &gw.url,
        Method::GET,
        "/sandbox/team-a/sb-web",
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(
        (code, body),
        (
            400,
            json!({"detail": "Path-routed request must have the form /sandbox/<namespace>/<id>/<port>/..."})
        )
    );
    let (code, body) = call_json(
        &gw.url,
        Method::GET,
        "/sandbox/team-a/sb-web/0/",
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(
        (code, body),
        (400, json!({"detail": "Invalid port format."}))
    );
    // Outside the prefix, the API is untouched.
    let (code, _) = call_json(
        &gw.url,
        Method::GET,
        "/v1/info",
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(code, 200);

    // The flags are checked as a set.
    let bad = |a: GatewayArgs| {
        a.validate_with_env(Some(TOKEN.into()))
            .expect_err("invalid")
            .to_string()
    };
    assert!(
        bad(GatewayArgs {
            path_routing_prefix: "/sandbox/".into(),
            ..GatewayArgs::default()
        })
        .contains("must not end with /")
    );
    assert!(
        bad(GatewayArgs {
            authz_cookie_name: "s".into(),
            ..GatewayArgs::default()
        })
        .contains("needs --path-routing-prefix")
    );
    assert!(
        bad(GatewayArgs {
            authz_cookie_query_param: "t".into(),
            ..GatewayArgs::default()
        })
        .contains("needs --authz-cookie-name")
    );
    assert!(
        bad(GatewayArgs {
            path_routing_prefix: "/s".into(),
            authz_cookie_name: "s".into(),
            authz_cookie_samesite: "none".into(),
            authz_cookie_insecure: true,
            ..GatewayArgs::default()
        })
        .contains("SameSite=None")
    );
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reaches_the_sandboxs_grpc_port_through_the_router_and_failures_are_grpc_statuses() {
    use paddock_agent::grpc::pb::process_service_client::ProcessServiceClient;
    use paddock_agent::grpc::pb::{ExecuteRequest, ProcessConfig};
    let agent = Agent::start().await;
    let gw = Gateway::start(args(agent.port)).await;
    gw.api
        .insert(SANDBOXES, ready_sandbox("sb-grpc", Some("127.0.0.1"), None));
    let channel = tonic::transport::Channel::from_shared(gw.url.clone())
        .expect("url")
        .connect()
        .await
        .expect("h2c to the gateway");
    let grpc_port = agent.grpc.to_string();
    let with_headers = move |id: &'static str, token: &'static str| {
        let port = grpc_port.clone();
        move |mut req: tonic::Request<()>| {
            let m = req.metadata_mut();
            m.insert("x-sandbox-id", id.parse().expect("ascii"));
            m.insert("x-sandbox-namespace", NS.parse().expect("ascii"));
            m.insert("x-sandbox-port", port.parse().expect("ascii"));
            m.insert(
                "authorization",
                format!("Bearer {token}").parse().expect("ascii"),
            );
            Ok(req)
        }
    };
    let request = || ExecuteRequest {
        config: Some(ProcessConfig {
            command: vec!["sh".into(), "-c".into(), "echo over grpc; exit 3".into()],
            env_vars: Default::default(),
            cwd: None,
        }),
    };
    let mut client =
        ProcessServiceClient::with_interceptor(channel.clone(), with_headers("sb-grpc", TOKEN));
    let reply = client
        .execute(request())
        .await
        .expect("the sandbox's gRPC answers")
        .into_inner();
    assert_eq!(
        (reply.exit_code, reply.stdout.as_slice()),
        (3, &b"over grpc\n"[..])
    );

    // The router's own refusals arrive as gRPC statuses.
    let mut stranger =
        ProcessServiceClient::with_interceptor(channel.clone(), with_headers("sb-grpc", "wrong"));
    let status = stranger.execute(request()).await.expect_err("bad token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let mut missing =
        ProcessServiceClient::with_interceptor(channel, with_headers("no-such", TOKEN));
    let status = missing.execute(request()).await.expect_err("no sandbox");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("no-such"), "{status:?}");
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_from_a_browser_is_translated_to_grpc_for_the_sandbox() {
    use paddock_agent::grpc::pb::{ExecuteRequest, ExecuteResponse, ProcessConfig};
    use prost::Message as _;
    let agent = Agent::start().await;
    let gw = Gateway::start(args(agent.port)).await;
    gw.api.insert(
        SANDBOXES,
        ready_sandbox("sb-web-grpc", Some("127.0.0.1"), None),
    );
    let message = ExecuteRequest {
        config: Some(ProcessConfig {
            command: vec!["sh".into(), "-c".into(), "echo from grpc-web".into()],
            env_vars: Default::default(),
            cwd: None,
        }),
    }
    .encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    body.extend_from_slice(&message);
    let client: HttpClient<HttpConnector, Full<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("{}/process.v1.ProcessService/Execute", gw.url))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("x-sandbox-id", "sb-web-grpc")
        .header("x-sandbox-namespace", NS)
        .header("x-sandbox-port", agent.grpc.to_string())
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let response = client.request(req).await.expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    // A message frame, then the trailers as a frame flagged 0x80.
    assert_eq!(bytes[0], 0);
    let len = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes")) as usize;
    let reply = ExecuteResponse::decode(&bytes[5..5 + len]).expect("an ExecuteResponse");
    assert_eq!(reply.stdout, b"from grpc-web\n");
    let rest = &bytes[5 + len..];
    assert_eq!(rest[0], 0x80, "a trailer frame");
    let trailers = String::from_utf8_lossy(&rest[5..]).to_ascii_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    gw.finish().await;
}
