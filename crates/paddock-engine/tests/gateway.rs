//! The gateway over the embedded engine, as clients see it: auth, upstream's router contract,
//! files and processes forwarded to agents, the object API with both versions, watch, OpenAPI
//! and metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::Method;
use paddock_client::{CreateSandbox, ErrorCode, ProcessEvent, ProcessRequest, TermSize};
use paddock_testkit::TestServer;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A raw HTTP request with curl-like control, answered as (status, body).
async fn raw(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(
            req.body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_owned(),
            )))
            .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn bearer(server: &TestServer) -> String {
    format!("Bearer {}", server.token)
}

async fn sandbox(server: &TestServer, name: &str) -> paddock_client::Sandbox {
    let mut req = CreateSandbox::image("host");
    req.runtime = Some("bwrap".into());
    req.name = Some(name.into());
    server.client.create_sandbox(&req).await.unwrap();
    server.client.sandbox(name, "default")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_needs_the_token_but_health() {
    let server = TestServer::start().await;
    let (status, body) = raw(&server, "GET", "/v1/sandboxes", &[], "").await;
    assert_eq!(status, 401);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "UNAUTHENTICATED");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("$PADDOCK_HOME/token")
    );
    let (status, _) = raw(
        &server,
        "GET",
        "/v1/sandboxes",
        &[("Authorization", "Bearer wrong")],
        "",
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = raw(&server, "GET", "/healthz", &[], "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _) = raw(
        &server,
        "POST",
        "/execute",
        &[("X-Sandbox-ID", "x")],
        r#"{"command":"id"}"#,
    )
    .await;
    assert_eq!(status, 401, "router traffic needs the token too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_router_contract_reaches_the_sandbox() {
    let server = TestServer::start().await;
    let sb = sandbox(&server, "routed").await;
    let auth = bearer(&server);
    let (status, body) = raw(
        &server,
        "POST",
        "/execute",
        &[
            ("Authorization", &auth),
            ("X-Sandbox-ID", "routed"),
            ("Content-Type", "application/json"),
        ],
        r#"{"command": "echo hello"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["stdout"], "hello\n");
    assert_eq!(body["exit_code"], 0);
    for (headers, code, detail) in [
        (
            vec![("X-Sandbox-ID", "Bad_Name")],
            400,
            "Invalid sandbox ID format.",
        ),
        (
            vec![("X-Sandbox-ID", "routed"), ("X-Sandbox-Port", "0")],
            400,
            "Invalid port format.",
        ),
        (
            vec![
                ("X-Sandbox-ID", "routed"),
                ("X-Sandbox-Pod-IP", "169.254.169.254"),
            ],
            400,
            "Invalid target IP address.",
        ),
        (
            vec![("X-Sandbox-ID", "nobody")],
            502,
            "Could not connect to the backend sandbox: nobody",
        ),
    ] {
        let mut h = headers.clone();
        h.push(("Authorization", &auth));
        let (status, body) = raw(&server, "GET", "/", &h, "").await;
        assert_eq!(status, code, "{headers:?}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["detail"], detail);
    }
    // A server the workload runs, reached through X-Sandbox-Port.
    sb.start(&ProcessRequest::shell(
        "cd /tmp && echo served > page.txt && exec python3 -m http.server 9000 --bind 127.0.0.1",
    ))
    .await
    .unwrap();
    let mut answer = (0, String::new());
    for _ in 0..100 {
        answer = raw(
            &server,
            "GET",
            "/page.txt",
            &[
                ("Authorization", &auth),
                ("X-Sandbox-ID", "routed"),
                ("X-Sandbox-Port", "9000"),
            ],
            "",
        )
        .await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer, (200, "served\n".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_directories_travel_through_the_gateway() {
    let server = TestServer::start().await;
    let sb = sandbox(&server, "files").await;
    sb.write_file("/tmp/work/a.txt", "alpha", Some("0600"))
        .await
        .unwrap();
    assert_eq!(
        &sb.read_file("/tmp/work/a.txt").await.unwrap()[..],
        b"alpha"
    );
    assert!(sb.exists("/tmp/work/a.txt").await.unwrap());
    assert!(!sb.exists("/tmp/work/nope").await.unwrap());
    let entries = sb.list("/tmp/work").await.unwrap();
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.name.as_str(), e.mode.as_str()))
            .collect::<Vec<_>>(),
        [("a.txt", "0600")]
    );
    let err = sb.read_file("/etc/../../../etc/shadow").await.unwrap_err();
    assert!(
        matches!(err.code, ErrorCode::PermissionDenied | ErrorCode::NotFound),
        "{err:?}"
    );
    // A directory as a tar, both ways.
    let mut tar = Vec::new();
    sb.download("/tmp/work", true, &mut tar).await.unwrap();
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(tar))]);
    sb.upload("/tmp/copy", true, stream).await.unwrap();
    assert_eq!(
        &sb.read_file("/tmp/copy/a.txt").await.unwrap()[..],
        b"alpha"
    );
    let err = sb.remove("/tmp/copy", false).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    sb.remove("/tmp/copy", true).await.unwrap();
    assert!(!sb.exists("/tmp/copy").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_stream_run_in_the_background_and_attach_on_a_terminal() {
    let server = TestServer::start().await;
    let sb = sandbox(&server, "procs").await;
    let mut seen = Vec::new();
    let status = sb
        .run_streaming(
            &ProcessRequest::shell("echo one; echo two >&2; exit 7"),
            |e| {
                if let ProcessEvent::Stdout { data, .. } | ProcessEvent::Stderr { data, .. } = e {
                    seen.push(String::from_utf8_lossy(data).into_owned());
                }
            },
        )
        .await
        .unwrap();
    assert_eq!(status.exit_code, Some(7));
    assert_eq!(seen.concat().lines().count(), 2);
    let bg = sb
        .start(&ProcessRequest::shell(
            "for i in 1 2 3; do echo $i; done; sleep 30",
        ))
        .await
        .unwrap();
    // Replay from offset 0 once the three lines are out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let replay = loop {
        let mut replay = Vec::new();
        let mut out = Box::pin(sb.output(bg.id, 0, false).await.unwrap());
        while let Some(e) = StreamExt::next(&mut out).await {
            if let ProcessEvent::Stdout { data, .. } = e.unwrap() {
                replay.extend(data);
            }
        }
        if replay.len() >= 6 || tokio::time::Instant::now() > deadline {
            break replay;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(replay, b"1\n2\n3\n");
    sb.signal(bg.id, "SIGTERM").await.unwrap();
    let info = sb.wait(bg.id, 5000).await.unwrap();
    assert_eq!(info.state, paddock_client::ProcessState::Exited);
    // An interactive terminal over the WebSocket.
    let mut req = ProcessRequest::argv(["sh"]);
    req.pty = Some(TermSize { cols: 80, rows: 24 });
    let mut socket = sb.attach(&req).await.unwrap();
    socket
        .send(Message::binary(b"echo pty-$((40+2)); exit 5\n".to_vec()))
        .await
        .unwrap();
    let mut text = String::new();
    let mut exit = None;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
    {
        if let Message::Text(t) = msg.unwrap() {
            match ProcessEvent::parse(&serde_json::from_str(t.as_str()).unwrap()) {
                Some(ProcessEvent::Stdout { data, .. }) => {
                    text.push_str(&String::from_utf8_lossy(&data))
                }
                Some(ProcessEvent::Exit(s)) => {
                    exit = s.exit_code;
                    break;
                }
                _ => {}
            }
        }
    }
    assert!(text.contains("pty-42"), "{text:?}");
    assert_eq!(exit, Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_served_in_both_versions_with_watch_patch_and_conflicts() {
    let server = TestServer::start().await;
    let alpha = json!({
        "apiVersion": "agents.x-k8s.io/v1alpha1", "kind": "Sandbox", "metadata": {"name": "obj"},
        "spec": {"replicas": 0, "podTemplate": {"spec": {"runtimeClassName": "bwrap", "containers": [{"name": "m", "image": "host"}]}}}
    });
    let created = server
        .client
        .object_call(
            Method::POST,
            "/apis/agents.x-k8s.io/v1alpha1/namespaces/default/sandboxes",
            Some(&alpha),
        )
        .await
        .unwrap();
    assert_eq!(created["apiVersion"], "agents.x-k8s.io/v1alpha1");
    assert_eq!(created["spec"]["replicas"], 0);
    let beta = server
        .client
        .object_call(
            Method::GET,
            "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes/obj",
            None,
        )
        .await
        .unwrap();
    assert_eq!(beta["spec"]["operatingMode"], "Suspended");
    assert!(beta["metadata"]["uid"].is_string());
    // A stale resourceVersion is a conflict.
    let mut stale = beta.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let err = server
        .client
        .object_call(
            Method::PUT,
            "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes/obj",
            Some(&stale),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    // A merge patch through v1alpha1 resumes it.
    let (status, body) = raw(
        &server,
        "PATCH",
        "/apis/agents.x-k8s.io/v1alpha1/namespaces/default/sandboxes/obj",
        &[
            ("Authorization", &bearer(&server)),
            ("Content-Type", "application/merge-patch+json"),
        ],
        r#"{"spec": {"replicas": 1}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let beta = server
        .client
        .object_call(
            Method::GET,
            "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes/obj",
            None,
        )
        .await
        .unwrap();
    assert_eq!(beta["spec"]["operatingMode"], "Running");
    // YAML out.
    let (status, yaml) = raw(
        &server,
        "GET",
        "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes/obj",
        &[
            ("Authorization", &bearer(&server)),
            ("Accept", "application/yaml"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(yaml.contains("operatingMode: Running"), "{yaml}");
    // The immutability rule.
    let mut with_vct = beta.clone();
    with_vct["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "d"}, "spec": {}}]);
    let err = server
        .client
        .object_call(
            Method::PUT,
            "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes/obj",
            Some(&with_vct),
        )
        .await
        .unwrap_err();
    assert!(
        err.message.contains("volumeClaimTemplates is immutable"),
        "{}",
        err.message
    );
    // Watch from the list's resourceVersion sees the delete.
    let list = server
        .client
        .object_call(
            Method::GET,
            "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes",
            None,
        )
        .await
        .unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let watcher = {
        let url = server.url.clone();
        let auth = bearer(&server);
        tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Empty<bytes::Bytes>>();
            let req = http::Request::get(format!("{url}/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes?watch=true&resourceVersion={rv}"))
                .header("Authorization", auth)
                .body(http_body_util::Empty::new())
                .unwrap();
            let mut body = client.request(req).await.unwrap().into_body();
            let mut text = String::new();
            while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
                if let Ok(data) = frame.unwrap().into_data() {
                    text.push_str(&String::from_utf8_lossy(&data));
                    if text.contains("\"DELETED\"") {
                        return text;
                    }
                }
            }
            text
        })
    };
    // The watch starts after the list's resourceVersion: the delete is seen however late the
    // watch is established.
    server
        .client
        .object_call(
            Method::DELETE,
            "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes/obj",
            None,
        )
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .unwrap()
        .unwrap();
    assert!(
        seen.lines()
            .any(|l| l.contains("\"DELETED\"") && l.contains("\"obj\"")),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_metrics_and_info_describe_the_service() {
    let server = TestServer::start().await;
    let (status, body) = raw(
        &server,
        "GET",
        "/openapi.json",
        &[("Authorization", &bearer(&server))],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/sandboxes"]["post"].is_object());
    let (_, metrics) = raw(
        &server,
        "GET",
        "/metrics",
        &[("Authorization", &bearer(&server))],
        "",
    )
    .await;
    assert!(
        metrics.contains("paddock_gateway_requests_total"),
        "{metrics}"
    );
    let info = server.client.info().await.unwrap();
    assert_eq!(info["backend"], "embedded");
    let (status, body) = raw(
        &server,
        "GET",
        "/v1/nothing-here",
        &[("Authorization", &bearer(&server))],
        "",
    )
    .await;
    assert_eq!(status, 404);
    assert!(body.contains("NOT_FOUND"));
}
