//! The tools built on agent-sandbox, unchanged (docs/compatibility.md): their exact objects, in
//! the `v1alpha1` they still write, against the whole controller (`run_with`) and an API server
//! that stores `v1beta1` and converts through paddock's own conversion webhook code.

use std::time::{Duration, Instant};

mod common;

use common::{set_pod_phase as set_phase, start_controller};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use paddock_controller::ControllerArgs;
use paddock_testkit::kube::cluster::wait_for as wait;
use paddock_testkit::kube::{FakeApiServer, converting_api_server};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

/// The controller with every loop, over an API server that converts `v1alpha1`.
fn start() -> (FakeApiServer, CancellationToken) {
    let api = converting_api_server();
    let shutdown = start_controller(&api, ControllerArgs::default());
    (api, shutdown)
}

async fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait(what, WAIT, f).await
}

const PODS: &str = "/pods";

/// `agents.x-k8s.io/v1alpha1` Sandboxes, as the tools' clients reach them.
fn alpha_sandboxes(api: &FakeApiServer, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "agents.x-k8s.io".into(),
        version: "v1alpha1".into(),
        api_version: "agents.x-k8s.io/v1alpha1".into(),
        kind: "Sandbox".into(),
        plural: "sandboxes".into(),
    };
    Api::namespaced_with(api.unrecorded().client(), ns, &ar)
}

fn condition(obj: &Value, type_: &str) -> Option<Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .cloned()
}

async fn get_alpha(sandboxes: &Api<DynamicObject>, name: &str) -> Option<Value> {
    sandboxes
        .get_opt(name)
        .await
        .expect("GET in v1alpha1")
        .map(|o| serde_json::to_value(o).expect("json"))
}

/// kubectl-ai `--sandbox=agent-sandbox` (pkg/sandbox/agentsandbox.go): its Sandbox, its
/// 2 s poll for Ready, exec into the Pod named like the Sandbox, delete with grace 0 and wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_ai_sandbox_mode_works_unchanged() {
    let (api, shutdown) = start();
    let sandboxes = alpha_sandboxes(&api, "computer");
    let name = "kubectl-ai-sandbox-3f9a1c2e";
    let fixture: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "agents.x-k8s.io/v1alpha1", "kind": "Sandbox",
        "metadata": {"name": name, "namespace": "computer"},
        "spec": {
            "replicas": 1,
            "podTemplate": {"spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "main", "image": "bitnami/kubectl:latest",
                    "command": ["sleep", "infinity"],
                    "volumeMounts": [{"name": "kubeconfig", "mountPath": "/root/.kube", "readOnly": true}]
                }],
                "volumes": [{"name": "kubeconfig", "configMap": {"name": "kubectl-ai-kubeconfig"}}]
            }}
        }
    }))
    .expect("fixture");
    sandboxes
        .create(&PostParams::default(), &fixture)
        .await
        .expect("kubectl-ai creates its v1alpha1 Sandbox");

    // It execs into the Pod named exactly like the Sandbox, container `main`.
    let pod = wait_for("the Pod named like the Sandbox", || {
        api.get(PODS, "computer", name)
    })
    .await;
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers[0]["name"], "main");
    assert_eq!(containers[0]["command"], json!(["sleep", "infinity"]));
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(
        pod["spec"]["volumes"][0]["configMap"]["name"],
        "kubectl-ai-kubeconfig"
    );
    set_phase(&api, "computer", name, "Running");

    // Its poll: GET in v1alpha1 until Ready=True.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = loop {
        let sb = get_alpha(&sandboxes, name)
            .await
            .expect("the Sandbox exists");
        if condition(&sb, "Ready").is_some_and(|c| c["status"] == "True") {
            break sb;
        }
        assert!(Instant::now() < deadline, "never Ready: {sb}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ready["apiVersion"], "agents.x-k8s.io/v1alpha1");
    assert_eq!(
        ready["spec"]["replicas"], 1,
        "read back as written: {ready}"
    );
    let stored = api
        .get("agents.x-k8s.io/sandboxes", "computer", name)
        .expect("stored");
    assert_eq!(
        stored["apiVersion"], "agents.x-k8s.io/v1beta1",
        "stored converted: {stored}"
    );

    // Close: delete with grace period 0, then wait until it is gone (its limit is 60 s).
    let started = Instant::now();
    sandboxes
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete");
    while get_alpha(&sandboxes, name).await.is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the Sandbox is still there after 2 s (finalizers?)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
}

/// Sympozium's AgentRun with `agentSandbox.enabled` (internal/controller, its Sandbox builder):
/// detection by listing v1alpha1 Sandboxes, a Sandbox owned by a kind paddock does not know, a
/// finished Pod that must stay for its logs, and a Sandbox that says it finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sympozium_agent_run_sandbox_works_unchanged() {
    let (api, shutdown) = start();
    let sandboxes = alpha_sandboxes(&api, "sympozium");

    // Detection: listing `sandboxes` in agents.x-k8s.io/v1alpha1 succeeds.
    sandboxes
        .list(&ListParams::default())
        .await
        .expect("v1alpha1 Sandboxes are served");

    let name = "sb-weekly-report-x7k2p";
    let labels = json!({"sympozium.ai/agent-run": "weekly-report-x7k2p",
                        "sympozium.ai/instance": "ops", "app.kubernetes.io/managed-by": "sympozium"});
    let fixture: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "agents.x-k8s.io/v1alpha1", "kind": "Sandbox",
        "metadata": {
            "name": name, "namespace": "sympozium", "labels": labels,
            "ownerReferences": [{"apiVersion": "sympozium.ai/v1alpha1", "kind": "AgentRun",
                "name": "weekly-report-x7k2p", "uid": "0a6f2d4e-agentrun",
                "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"podTemplate": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 1000,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [
                    {"name": "agent", "image": "ghcr.io/sympozium-ai/agent-runner:v0.9.0",
                     "env": [{"name": "TASK", "value": "weekly report"}],
                     "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                                         "capabilities": {"drop": ["ALL"]}},
                     "volumeMounts": [{"name": "workspace", "mountPath": "/workspace"}]},
                    {"name": "ipc-bridge", "image": "ghcr.io/sympozium-ai/ipc-bridge:v0.9.0"}
                ],
                "volumes": [{"name": "workspace", "emptyDir": {}}]
            }
        }}
    }))
    .expect("fixture");
    sandboxes
        .create(&PostParams::default(), &fixture)
        .await
        .expect("Sympozium creates its v1alpha1 Sandbox");

    let pod = wait_for("the Pod named like the Sandbox", || {
        api.get(PODS, "sympozium", name)
    })
    .await;
    assert_eq!(pod["spec"]["containers"].as_array().map(Vec::len), Some(2));
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 1000);
    assert_eq!(
        pod["metadata"]["labels"]["sympozium.ai/agent-run"],
        "weekly-report-x7k2p"
    );
    // Garbage collection: the Pod is the Sandbox's, the Sandbox stays the AgentRun's.
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Sandbox");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    let stored = get_alpha(&sandboxes, name).await.expect("sandbox");
    assert_eq!(stored["metadata"]["ownerReferences"][0]["kind"], "AgentRun");
    assert_eq!(stored["metadata"]["labels"]["sympozium.ai/instance"], "ops");
    assert!(
        stored["spec"].get("replicas").is_none_or(|r| r == 1),
        "{stored}"
    );

    set_phase(&api, "sympozium", name, "Running");
    wait_for("Ready=True", || {
        api.get("agents.x-k8s.io/sandboxes", "sympozium", name)
            .filter(|s| condition(s, "Ready").is_some_and(|c| c["status"] == "True"))
    })
    .await;

    // The agent finishes: the Pod stays (its logs are read), the Sandbox says so.
    set_phase(&api, "sympozium", name, "Succeeded");
    let deadline = Instant::now() + Duration::from_secs(10);
    let finished = loop {
        let sb = get_alpha(&sandboxes, name).await.expect("sandbox");
        if condition(&sb, "Finished").is_some_and(|c| c["status"] == "True") {
            break sb;
        }
        assert!(Instant::now() < deadline, "never Finished: {sb}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let done = condition(&finished, "Finished").expect("Finished");
    assert_eq!(done["reason"], "PodSucceeded");
    assert!(!done["message"].as_str().unwrap_or_default().is_empty());
    let ready = condition(&finished, "Ready").expect("Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("PodSucceeded"))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pod = api
        .get(PODS, "sympozium", name)
        .expect("a finished Pod stays");
    assert_eq!(pod["status"]["phase"], "Succeeded", "not restarted");
    shutdown.cancel();
}
