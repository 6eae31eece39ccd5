//! `--enable-tracing` against an in-process OTLP/gRPC collector: a claim made with a trace
//! context (as upstream's Python SDK makes it) is reconciled in that trace, its Sandbox carries
//! the context on and is reconciled in it too, and a Sandbox made without one gets one stamped.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::start_controller;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use paddock_controller::ControllerArgs;
use paddock_testkit::kube::FakeApiServer;
use paddock_testkit::kube::cluster::wait_for;
use serde_json::json;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const ANNOTATION: &str = "opentelemetry.io/trace-context";

#[derive(Clone, Default)]
struct Collector {
    /// (service name, span name, trace id hex).
    spans: Arc<Mutex<Vec<(String, String, String)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("lock");
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    let trace: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    spans.push((service.clone(), span.name, trace));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[test]
fn reconciles_continue_the_claims_trace_and_reach_an_otlp_collector() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = std_listener.local_addr().expect("addr");
    // SAFETY: no other thread runs yet (the runtime is built below); the exporter reads the
    // standard variable, as it does in a deployment.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let collector = Collector::default();
        std_listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );

        let api = FakeApiServer::new();
        let shutdown = start_controller(
            &api,
            ControllerArgs {
                enable_tracing: true,
                ..ControllerArgs::default()
            },
        );
        api.insert(
            "extensions.agents.x-k8s.io/sandboxtemplates",
            json!({"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate",
                   "metadata": {"name": "tpl", "namespace": "ns"},
                   "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}}),
        );
        let parent = json!({"traceparent": format!("00-{TRACE_ID}-00f067aa0ba902b7-01")}).to_string();
        api.insert(
            "extensions.agents.x-k8s.io/sandboxclaims",
            json!({"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
                   "metadata": {"name": "traced", "namespace": "ns",
                                "annotations": {ANNOTATION: parent}},
                   "spec": {"warmPoolRef": {"name": "shadow-pool-tpl"}}}),
        );
        let sandbox = wait_for("the claim's Sandbox", Duration::from_secs(10), || {
            api.get("agents.x-k8s.io/sandboxes", "ns", "traced")
        })
        .await;
        assert_eq!(
            sandbox["metadata"]["annotations"][ANNOTATION].as_str(),
            Some(parent.as_str()),
            "the claim's trace context is carried to its Sandbox"
        );
        let pod = wait_for("its pod", Duration::from_secs(10), || {
            api.get("/pods", "ns", "traced")
        })
        .await;
        assert!(
            pod["metadata"]["annotations"].get(ANNOTATION).is_none(),
            "never on a Pod"
        );

        // A Sandbox made without a trace context gets one.
        api.insert(
            "agents.x-k8s.io/sandboxes",
            json!({"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
                   "metadata": {"name": "bare", "namespace": "ns"},
                   "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}}),
        );
        let stamped = wait_for("a stamped trace context", Duration::from_secs(10), || {
            api.get("agents.x-k8s.io/sandboxes", "ns", "bare")
                .and_then(|s| s["metadata"]["annotations"][ANNOTATION].as_str().map(str::to_owned))
        })
        .await;
        assert!(stamped.contains("\"traceparent\":\"00-"), "{stamped}");

        // The spans reach the collector (the batch exporter sends within seconds).
        let spans = collector.spans.clone();
        let seen = wait_for("spans at the collector", Duration::from_secs(20), || {
            let s = spans.lock().expect("lock").clone();
            let has = |name: &str| s.iter().any(|(_, n, t)| n == name && t == TRACE_ID);
            (has("ReconcileSandboxClaim") && has("ReconcileSandbox") && has("reconcilePod"))
                .then_some(s)
        })
        .await;
        assert!(
            seen.iter()
                .all(|(service, _, _)| service.contains("agent-sandbox-controller")),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(|(_, n, _)| n == "ReconcileSandboxTemplate"),
            "{seen:?}"
        );
        shutdown.cancel();
    });
}
