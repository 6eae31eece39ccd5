//! `paddock gateway --enable-tracing` against an in-process OTLP/gRPC collector: a request's
//! `HTTP <method>` span continues the client's `traceparent` with upstream's router
//! attributes, and a claim the gateway creates carries the trace on to the controller.

use std::time::Duration;

use paddock_router::args::GatewayArgs;
use paddock_testkit::kube::FakeApiServer;
use paddock_testkit::kube::cluster::wait_for;
use paddock_testkit::otlp::with_collector;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const TOKEN: &str = "tracing-test-token";

async fn post(url: &str, path: &str, headers: &[(&str, &str)], body: serde_json::Value) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.to_string();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await.expect("write");
    conn.write_all(body.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {text}"))
}

#[test]
fn requests_are_spans_of_the_clients_trace_and_claims_carry_it_on() {
    with_collector(|collector| async move {
        let api = FakeApiServer::new();
        api.insert(
            "extensions.agents.x-k8s.io/sandboxtemplates",
            json!({"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate",
                   "metadata": {"name": "python", "namespace": "team"},
                   "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "python:3.12"}]}}}}),
        );
        let settings = GatewayArgs {
            enable_tracing: true,
            ..GatewayArgs::default()
        }
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
        let traceparent = format!("00-{TRACE_ID}-b7ad6b7169203331-01");

        // A routed request: its span names the sandbox (none answers here: 502).
        let code = post(
            &url,
            "/execute",
            &[
                ("X-Sandbox-ID", "nobody"),
                ("X-Sandbox-Namespace", "team"),
                ("traceparent", &traceparent),
            ],
            json!({"command": "true"}),
        )
        .await;
        assert_eq!(code, 502);

        // A sandbox made through the API: its claim continues the trace.
        let code = post(
            &url,
            "/v1/sandboxes",
            &[("traceparent", &traceparent)],
            json!({"template": "python", "name": "traced", "namespace": "team", "wait": false}),
        )
        .await;
        assert!((200..300).contains(&code), "{code}");
        let claim = api
            .get("extensions.agents.x-k8s.io/sandboxclaims", "team", "traced")
            .expect("the claim");
        let carried = claim["metadata"]["annotations"]["opentelemetry.io/trace-context"]
            .as_str()
            .expect("a trace context on the claim")
            .to_owned();
        assert!(carried.contains(TRACE_ID), "{carried}");

        let spans = wait_for("the request spans", Duration::from_secs(20), || {
            let s = collector.spans();
            let routed = s.iter().any(|x| {
                x.name == "HTTP POST"
                    && x.trace_id == TRACE_ID
                    && x.attributes.contains(&"sandbox.id=nobody".to_owned())
                    && x.attributes.contains(&"sandbox.namespace=team".to_owned())
                    && x.attributes.contains(&"http.status_code=502".to_owned())
            });
            let created = s.iter().any(|x| {
                x.trace_id == TRACE_ID
                    && x.attributes
                        .contains(&"http.target=/v1/sandboxes".to_owned())
            });
            (routed && created).then_some(s)
        })
        .await;
        assert!(
            spans.iter().all(|x| x.service == "sandbox-router"),
            "{spans:?}"
        );
        shutdown.cancel();
        let _ = server.await;
    });
}
