//! `--enable-tracing` against an in-process OTLP/gRPC collector: a claim made with a trace
//! context (as upstream's Python SDK makes it) is reconciled in that trace, its Sandbox carries
//! the context on and is reconciled in it too, and a Sandbox made without one gets one stamped.

mod common;

use std::time::Duration;

use common::start_controller;
use paddock_controller::ControllerArgs;
use paddock_testkit::kube::FakeApiServer;
use paddock_testkit::kube::cluster::wait_for;
use paddock_testkit::otlp::with_collector;
use serde_json::json;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const ANNOTATION: &str = "opentelemetry.io/trace-context";

#[test]
fn reconciles_continue_the_claims_trace_and_reach_an_otlp_collector() {
    with_collector(|collector| async move {
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
        let parent =
            json!({"traceparent": format!("00-{TRACE_ID}-00f067aa0ba902b7-01")}).to_string();
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
                .and_then(|s| {
                    s["metadata"]["annotations"][ANNOTATION]
                        .as_str()
                        .map(str::to_owned)
                })
        })
        .await;
        assert!(stamped.contains("\"traceparent\":\"00-"), "{stamped}");

        // The spans reach the collector (the batch exporter sends within seconds).
        let seen = wait_for("spans at the collector", Duration::from_secs(20), || {
            let s = collector.spans();
            let has = |name: &str| s.iter().any(|x| x.name == name && x.trace_id == TRACE_ID);
            (has("ReconcileSandboxClaim") && has("ReconcileSandbox") && has("reconcilePod"))
                .then_some(s)
        })
        .await;
        assert!(
            seen.iter().all(|x| x.service == "agent-sandbox-controller"),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(|x| x.name == "ReconcileSandboxTemplate"),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(|x| x.name == "ReconcileSandbox"
                && x.attributes.contains(&"sandbox.name=traced".to_owned())),
            "{seen:?}"
        );
        shutdown.cancel();
    });
}
