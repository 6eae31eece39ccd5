//! Shared scaffolding of the scripted loop tests: the control core on the controller's ports,
//! with an API server the test answers request by request, caches filled by hand, and a fixed
//! clock.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_api::stored::StoredKind;
use paddock_control::{Core, CoreConfig, LogEvents, ManualClock, WatchEvent};
use paddock_controller::run::kube_core;
use paddock_controller::workloads::ChildWriters;
pub use paddock_testkit::kube::scripted::{
    ApiHandle, Received, expect, expect_no_more, scripted_client, stored, typed,
};

/// The fixed "now" of every scenario.
pub fn now() -> Time {
    Time("2026-09-01T12:00:00Z".parse().expect("timestamp"))
}

/// A core over empty caches and a scripted API server.
pub fn context() -> (Arc<Core>, ChildWriters, ApiHandle) {
    context_with(CoreConfig::default())
}

/// As [`context`] with custom knobs.
pub fn context_with(config: CoreConfig) -> (Arc<Core>, ChildWriters, ApiHandle) {
    let (client, handle) = scripted_client();
    let (core, mut children) = kube_core(
        &client,
        config,
        None,
        Arc::new(ManualClock::new(now())),
        Arc::new(LogEvents),
    );
    children.mark_ready();
    (core, children, handle)
}

/// Puts an object in the core's cache, as its watch would.
pub fn put<K: StoredKind>(core: &Core, object: K) {
    core.observe(K::KIND, WatchEvent::Applied(object.into_object()));
}

/// Registers the four CRDs (the controller patches their conversion CA at start) and runs the
/// whole controller (`run_with`: every loop, the real Event recorders) over `api` until the
/// returned token is cancelled. `args` sets the flags under test; listeners are turned off.
pub fn start_controller(
    api: &paddock_testkit::kube::FakeApiServer,
    args: paddock_controller::ControllerArgs,
) -> tokio_util::sync::CancellationToken {
    for kind in paddock_api::kinds::Kind::ALL {
        api.insert(
            "apiextensions.k8s.io/customresourcedefinitions",
            serde_json::json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": kind.crd_name()}, "spec": {"group": kind.group()}}),
        );
    }
    let mut settings = paddock_controller::ControllerArgs {
        extensions: true,
        metrics_bind_address: "0".into(),
        health_probe_bind_address: "0".into(),
        leader_election_namespace: "agent-sandbox-system".into(),
        webhook_port: 1,
        ..args
    }
    .validate()
    .expect("valid flags");
    if let Some(w) = settings.webhook.as_mut() {
        w.addr = "127.0.0.1:0".parse().expect("addr");
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(paddock_controller::run::run_with(
        api.client(),
        settings,
        shutdown.clone(),
    ));
    shutdown
}

/// Plays the kubelet for one pod: it reaches `phase`, Ready while it runs.
pub fn set_pod_phase(
    api: &paddock_testkit::kube::FakeApiServer,
    namespace: &str,
    name: &str,
    phase: &str,
) {
    let ready = if phase == "Running" { "True" } else { "False" };
    let status = serde_json::json!({"status": {"phase": phase, "podIP": "10.4.0.7", "podIPs": [{"ip": "10.4.0.7"}],
        "conditions": [{"type": "Ready", "status": ready}, {"type": "PodScheduled", "status": "True"}]}});
    assert!(
        api.merge("/pods", namespace, name, &status, true)
            .is_success()
    );
}
