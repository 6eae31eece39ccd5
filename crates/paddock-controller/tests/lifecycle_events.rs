//! The Sandbox controller's lifecycle Events as upstream 1.0.4 records them (contract §11.6),
//! through the real events.k8s.io recorder of `run_with`, and `--disable-sandbox-events`.

use std::time::Duration;

mod common;

use common::start_controller;
use paddock_controller::ControllerArgs;
use paddock_testkit::kube::FakeApiServer;
use paddock_testkit::kube::cluster::wait_for as wait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn start(args: ControllerArgs) -> (FakeApiServer, CancellationToken) {
    let api = FakeApiServer::new();
    let shutdown = start_controller(&api, args);
    (api, shutdown)
}

async fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait(what, Duration::from_secs(10), f).await
}

fn set_phase(api: &FakeApiServer, name: &str, phase: &str) {
    common::set_pod_phase(api, "ns", name, phase);
}

const SANDBOXES: &str = "agents.x-k8s.io/sandboxes";
const PODS: &str = "/pods";
const EVENTS: &str = "events.k8s.io/events";

/// `(reason, type, action, note)` of the Events about `name` from the Sandbox controller.
fn sandbox_events(api: &FakeApiServer, name: &str) -> Vec<(String, String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    api.list(EVENTS)
        .into_iter()
        .filter(|e| {
            e["regarding"]["name"] == name && e["reportingController"] == "sandbox-controller"
        })
        .map(|e| {
            (
                s(&e["reason"]),
                s(&e["type"]),
                s(&e["action"]),
                s(&e["note"]),
            )
        })
        .collect()
}

fn sandbox(name: &str) -> Value {
    json!({
        "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"podTemplate": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}]}}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_lifecycle_is_recorded_as_upstreams_events() {
    let (api, shutdown) = start(ControllerArgs::default());
    api.insert(SANDBOXES, sandbox("life"));
    wait_for("pod life", || api.get(PODS, "ns", "life")).await;
    set_phase(&api, "life", "Running");
    let reasons = |api: &FakeApiServer| -> Vec<String> {
        sandbox_events(api, "life")
            .into_iter()
            .map(|e| e.0)
            .collect()
    };
    wait_for("SandboxReady", || {
        Some(reasons(&api)).filter(|r| r.iter().any(|r| r == "SandboxReady"))
    })
    .await;
    let events = sandbox_events(&api, "life");
    let created = events
        .iter()
        .find(|e| e.0 == "SandboxPodCreated")
        .expect("SandboxPodCreated");
    assert_eq!(
        (created.1.as_str(), created.2.as_str(), created.3.as_str()),
        ("Normal", "PodCreation", "Created Pod \"life\"")
    );

    // The pod finishes: PodSucceeded, once, and the pod stays for its logs.
    set_phase(&api, "life", "Succeeded");
    wait_for("PodSucceeded", || {
        Some(reasons(&api)).filter(|r| r.iter().any(|r| r == "PodSucceeded"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        api.get(PODS, "ns", "life").is_some(),
        "a finished pod stays"
    );
    let r = reasons(&api);
    for once in ["SandboxPodCreated", "SandboxReady", "PodSucceeded"] {
        assert_eq!(
            r.iter().filter(|x| *x == once).count(),
            1,
            "{once} once in {r:?}"
        );
    }

    // Suspending: SandboxSuspended.
    assert!(
        api.merge(
            SANDBOXES,
            "ns",
            "life",
            &json!({"spec": {"operatingMode": "Suspended"}}),
            false
        )
        .is_success()
    );
    wait_for("SandboxSuspended", || {
        Some(reasons(&api)).filter(|r| r.iter().any(|r| r == "SandboxSuspended"))
    })
    .await;
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_sandbox_events_records_none_but_claims_still_get_theirs() {
    let (api, shutdown) = start(ControllerArgs {
        disable_sandbox_events: true,
        ..ControllerArgs::default()
    });
    api.insert(
        "extensions.agents.x-k8s.io/sandboxtemplates",
        json!({"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate",
               "metadata": {"name": "tpl", "namespace": "ns"},
               "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}}),
    );
    api.insert(
        "extensions.agents.x-k8s.io/sandboxclaims",
        json!({"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
               "metadata": {"name": "quiet", "namespace": "ns"},
               "spec": {"warmPoolRef": {"name": "shadow-pool-tpl"}}}),
    );
    wait_for("pod quiet", || api.get(PODS, "ns", "quiet")).await;
    set_phase(&api, "quiet", "Running");
    wait_for("SandboxProvisioned", || {
        api.list(EVENTS).into_iter().find(|e| {
            e["reason"] == "SandboxProvisioned"
                && e["reportingController"] == "sandboxclaim-controller"
        })
    })
    .await;
    wait_for("quiet Ready", || {
        api.get(SANDBOXES, "ns", "quiet").filter(|s| {
            s.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sandbox_events(&api, "quiet").is_empty(),
        "{:?}",
        sandbox_events(&api, "quiet")
    );
    shutdown.cancel();
}
