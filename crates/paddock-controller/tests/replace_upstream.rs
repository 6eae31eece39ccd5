//! Replacing upstream's controller in place (docs/compatibility.md): the API server holds
//! objects exactly as upstream 1.0's controller leaves them — a template with its
//! NetworkPolicy, a full warm pool whose members carry upstream's labels (and a
//! `sandbox-template-hash` computed from Go's JSON, not paddock's), a claim bound to an adopted
//! member, a cold claim, their Pods and Services — and paddock's controller starts on them.
//! It must restart no Pod, lose no claim, adopt no member twice and keep the pool full: the
//! only writes allowed are its Lease, the CRDs' conversion CA and status it owns.

mod common;

use std::time::Duration;

use common::start_controller;
use paddock_api::names::name_hash;
use paddock_controller::ControllerArgs;
use paddock_testkit::kube::FakeApiServer;
use paddock_testkit::kube::cluster::{
    create_claim, spawn_kubelet, wait_for, wait_pool_full, wait_quiet,
};
use serde_json::{Value, json};

const NS: &str = "agents";
const SANDBOXES: &str = "agents.x-k8s.io/sandboxes";
const POOLS: &str = "extensions.agents.x-k8s.io/sandboxwarmpools";
const CLAIMS: &str = "extensions.agents.x-k8s.io/sandboxclaims";
const TEMPLATES: &str = "extensions.agents.x-k8s.io/sandboxtemplates";
const TIME: &str = "2026-11-30T09:00:00Z";

fn owner(kind: &str, api_version: &str, obj: &Value) -> Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
}

/// The pod spec upstream builds from the template: its containers plus the secure defaults.
fn member_pod_spec() -> Value {
    json!({"containers": [{"name": "python", "image": "python:3.12-slim", "ports": [{"containerPort": 8888}]}],
           "automountServiceAccountToken": false, "dnsPolicy": "None",
           "dnsConfig": {"nameservers": ["8.8.8.8", "1.1.1.1"]}})
}

fn ready_status(name: &str, ip: &str) -> Value {
    json!({"service": name, "serviceFQDN": format!("{name}.{NS}.svc.cluster.local"),
           "podIPs": [ip], "selector": format!("agents.x-k8s.io/sandbox-name-hash={}", name_hash(name)),
           "conditions": [
             {"type": "Ready", "status": "True", "reason": "DependenciesReady",
              "message": "Pod is Ready; Service Exists", "lastTransitionTime": TIME, "observedGeneration": 1},
             {"type": "Suspended", "status": "False", "reason": "NotSuspended",
              "message": "Sandbox is not suspended", "lastTransitionTime": TIME, "observedGeneration": 1},
             {"type": "PodScheduled", "status": "True", "reason": "PodScheduled",
              "message": "", "lastTransitionTime": TIME, "observedGeneration": 1}]})
}

/// A Sandbox's Pod (its pod template's metadata propagated, as the contract says) and headless
/// Service as upstream's Sandbox controller made them, Running.
fn children(api: &FakeApiServer, sandbox: &Value, ip: &str) {
    let name = sandbox["metadata"]["name"].as_str().expect("name");
    let typed: paddock_api::v1beta1::Sandbox =
        serde_json::from_value(sandbox.clone()).expect("sandbox");
    let mut pod =
        serde_json::to_value(paddock_plan::sandbox::desired_pod(&typed, &name_hash(name)))
            .expect("pod");
    pod["metadata"]["creationTimestamp"] = json!(TIME);
    pod["status"] = json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]});
    api.insert("/pods", pod);
    let owned = owner("Sandbox", "agents.x-k8s.io/v1beta1", sandbox);
    api.insert("/services", json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "ownerReferences": owned,
                     "labels": {"agents.x-k8s.io/sandbox-name-hash": name_hash(name)}},
        "spec": {"clusterIP": "None", "selector": {"agents.x-k8s.io/sandbox-name-hash": name_hash(name)}}
    }));
}

struct Upstream {
    api: FakeApiServer,
    /// Pod name → UID, as seeded.
    pods: Vec<(String, String)>,
}

/// What upstream 1.0 leaves behind.
fn seed() -> Upstream {
    let api = FakeApiServer::new().recording();
    let template = api.insert(TEMPLATES, json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate",
        "metadata": {"name": "python", "namespace": NS, "generation": 1,
                     "labels": {"agents.x-k8s.io/sandbox-template-ref-hash": name_hash("python")}},
        "spec": {"podTemplate": {"spec": {"containers": [
            {"name": "python", "image": "python:3.12-slim", "ports": [{"containerPort": 8888}]}]}}}
    }));
    let typed: paddock_api::v1beta1::SandboxTemplate =
        serde_json::from_value(template.clone()).expect("template");
    api.insert("networking.k8s.io/networkpolicies", json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "python-network-policy", "namespace": NS,
                     "ownerReferences": owner("SandboxTemplate", "extensions.agents.x-k8s.io/v1beta1", &template)},
        "spec": paddock_plan::template::desired_network_policy_spec(&typed)
    }));
    let pool = api.insert(POOLS, json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxWarmPool",
        "metadata": {"name": "python-pool", "namespace": NS, "generation": 1},
        "spec": {"replicas": 2, "sandboxTemplateRef": {"name": "python"}},
        "status": {"replicas": 2, "readyReplicas": 2, "observedGeneration": 1,
                   "selector": format!("agents.x-k8s.io/warm-pool-sandbox={}", name_hash("python-pool"))}
    }));
    let member_labels = json!({
        "agents.x-k8s.io/warm-pool-sandbox": name_hash("python-pool"),
        "agents.x-k8s.io/sandbox-template-ref-hash": name_hash("python"),
        // Go's JSON of the blueprint hashes differently from paddock's.
        "agents.x-k8s.io/sandbox-template-hash": "5c0a77e1",
        "agents.x-k8s.io/sandbox-pod-template-hash": "9d21f4b3",
        "agents.x-k8s.io/launch-type": "warm",
        "agents.x-k8s.io/created-by": "controller"
    });
    let mut pods = Vec::new();
    let mut member = |name: &str, ip: &str| {
        let sb = api.insert(SANDBOXES, json!({
            "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
            "metadata": {"name": name, "namespace": NS, "generation": 1, "creationTimestamp": TIME,
                         "labels": member_labels,
                         "annotations": {"agents.x-k8s.io/sandbox-template-ref": "python"},
                         "ownerReferences": owner("SandboxWarmPool", "extensions.agents.x-k8s.io/v1beta1", &pool)},
            "spec": {"podTemplate": {
                "metadata": {"labels": member_labels,
                             "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}},
                "spec": member_pod_spec()}},
            "status": ready_status(name, ip)
        }));
        children(&api, &sb, ip);
        pods.push(name.to_owned());
    };
    member("python-pool-x7k2p", "10.8.0.11");
    member("python-pool-q9m4t", "10.8.0.12");

    // A claim that adopted a member: the member is the claim's now, without the pool's labels.
    let warm = api.insert(
        CLAIMS,
        json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
            "metadata": {"name": "task-1", "namespace": NS, "generation": 1,
                         "labels": {"agents.x-k8s.io/created-by": "python-client"},
                         "annotations": {"agents.x-k8s.io/controller-first-observed-at": TIME,
                                         "agents.x-k8s.io/claim-first-ready-at": TIME}},
            "spec": {"warmPoolRef": {"name": "python-pool"}},
            "status": {"sandbox": {"name": "python-pool-b5n8w", "podIPs": ["10.8.0.10"]},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "DependenciesReady",
                                       "message": "Pod is Ready; Service Exists",
                                       "lastTransitionTime": TIME, "observedGeneration": 1}]}
        }),
    );
    let claimed_labels = json!({
        "agents.x-k8s.io/sandbox-template-ref-hash": name_hash("python"),
        "agents.x-k8s.io/launch-type": "warm",
        "agents.x-k8s.io/claim-uid": warm["metadata"]["uid"],
        "agents.x-k8s.io/created-by": "python-client"
    });
    // Adoption sets the pod template's metadata to the template's plus the claim's identity.
    let claimed_pod_labels = json!({
        "agents.x-k8s.io/sandbox-template-ref-hash": name_hash("python"),
        "agents.x-k8s.io/claim-uid": warm["metadata"]["uid"],
        "agents.x-k8s.io/created-by": "python-client"
    });
    let adopted = api.insert(SANDBOXES, json!({
        "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
        "metadata": {"name": "python-pool-b5n8w", "namespace": NS, "generation": 1, "creationTimestamp": TIME,
                     "labels": claimed_labels,
                     "annotations": {"agents.x-k8s.io/sandbox-template-ref": "python"},
                     "ownerReferences": owner("SandboxClaim", "extensions.agents.x-k8s.io/v1beta1", &warm)},
        "spec": {"podTemplate": {"metadata": {"labels": claimed_pod_labels}, "spec": member_pod_spec()}},
        "status": ready_status("python-pool-b5n8w", "10.8.0.10")
    }));
    children(&api, &adopted, "10.8.0.10");
    pods.push("python-pool-b5n8w".to_owned());

    // A claim served cold: a Sandbox named like it.
    let cold = api.insert(
        CLAIMS,
        json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
            "metadata": {"name": "task-2", "namespace": NS, "generation": 1,
                         "annotations": {"agents.x-k8s.io/controller-first-observed-at": TIME,
                                         "agents.x-k8s.io/claim-first-ready-at": TIME}},
            "spec": {"warmPoolRef": {"name": "shadow-pool-python"}},
            "status": {"sandbox": {"name": "task-2", "podIPs": ["10.8.0.20"]},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "DependenciesReady",
                                       "message": "Pod is Ready; Service Exists",
                                       "lastTransitionTime": TIME, "observedGeneration": 1}]}
        }),
    );
    let cold_labels = json!({
        "agents.x-k8s.io/sandbox-template-ref-hash": name_hash("python"),
        "agents.x-k8s.io/launch-type": "cold",
        "agents.x-k8s.io/claim-uid": cold["metadata"]["uid"]
    });
    let cold_pod_labels = json!({
        "agents.x-k8s.io/sandbox-template-ref-hash": name_hash("python"),
        "agents.x-k8s.io/claim-uid": cold["metadata"]["uid"]
    });
    let cold_sb = api.insert(SANDBOXES, json!({
        "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
        "metadata": {"name": "task-2", "namespace": NS, "generation": 1, "creationTimestamp": TIME,
                     "labels": cold_labels,
                     "annotations": {"agents.x-k8s.io/sandbox-template-ref": "python"},
                     "ownerReferences": owner("SandboxClaim", "extensions.agents.x-k8s.io/v1beta1", &cold)},
        "spec": {"podTemplate": {"metadata": {"labels": cold_pod_labels}, "spec": member_pod_spec()}},
        "status": ready_status("task-2", "10.8.0.20")
    }));
    children(&api, &cold_sb, "10.8.0.20");
    pods.push("task-2".to_owned());

    let pods = pods
        .into_iter()
        .map(|name| {
            let uid = api.get("/pods", NS, &name).expect("pod")["metadata"]["uid"]
                .as_str()
                .expect("uid")
                .to_owned();
            (name, uid)
        })
        .collect();
    Upstream { api, pods }
}

fn describe(r: &paddock_testkit::kube::RequestRecord) -> String {
    format!("{} {}", r.method, r.path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paddock_takes_over_upstreams_objects_without_restarting_or_rebinding_anything() {
    let Upstream { api, pods } = seed();
    let before_sandboxes = api.list(SANDBOXES);
    let shutdown = start_controller(&api, ControllerArgs::default());
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_quiet(&api, Duration::from_millis(800)).await;

    let writes: Vec<String> = api
        .request_log()
        .iter()
        .filter(|r| r.is_write())
        .map(describe)
        .collect();
    // In the sandboxes' namespace, the only writes: each Sandbox gets the `pod-name`
    // annotation older SDKs read (upstream 1.0 neither writes nor reads it), once.
    let in_namespace: Vec<&String> = writes
        .iter()
        .filter(|w| w.contains(&format!("/namespaces/{NS}/")))
        .collect();
    let mut patched: Vec<&str> = in_namespace
        .iter()
        .map(|w| {
            assert!(
                w.starts_with("PATCH /apis/agents.x-k8s.io/v1beta1/") && !w.ends_with("/status"),
                "only Sandbox metadata may change: {w} in {writes:#?}"
            );
            w.rsplit('/').next().unwrap_or_default()
        })
        .collect();
    patched.sort_unstable();
    assert_eq!(
        patched,
        [
            "python-pool-b5n8w",
            "python-pool-q9m4t",
            "python-pool-x7k2p",
            "task-2"
        ],
        "{writes:#?}"
    );
    for (name, uid) in &pods {
        let pod = api.get("/pods", NS, name).expect("pod still there");
        assert_eq!(
            pod["metadata"]["uid"].as_str(),
            Some(uid.as_str()),
            "{name} not recreated"
        );
    }
    // Claims stay bound to what they had; no member changed hands.
    for (claim, bound) in [("task-1", "python-pool-b5n8w"), ("task-2", "task-2")] {
        let c = api.get(CLAIMS, NS, claim).expect("claim");
        assert_eq!(c["status"]["sandbox"]["name"], bound, "{claim}: {c}");
        let ready = c["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|x| x["type"] == "Ready"))
            .cloned()
            .expect("Ready");
        assert_eq!(ready["status"], "True", "{claim}: {c}");
    }
    let after = api.list(SANDBOXES);
    assert_eq!(after.len(), before_sandboxes.len(), "{after:#?}");
    for sb in &after {
        let name = sb["metadata"]["name"].as_str().unwrap_or_default();
        let was = before_sandboxes
            .iter()
            .find(|b| b["metadata"]["name"] == name)
            .expect("same Sandboxes");
        assert_eq!(
            sb["metadata"]["ownerReferences"], was["metadata"]["ownerReferences"],
            "{name} keeps its owner"
        );
        assert_eq!(
            sb["metadata"]["labels"], was["metadata"]["labels"],
            "{name}"
        );
        assert_eq!(sb["spec"], was["spec"], "{name}: no spec change");
        assert_eq!(
            sb["metadata"]["generation"], was["metadata"]["generation"],
            "{name}"
        );
        let mut annotations = was["metadata"]["annotations"].clone();
        annotations["agents.x-k8s.io/pod-name"] = json!(name);
        assert_eq!(sb["metadata"]["annotations"], annotations, "{name}");
    }
    let pool = api.get(POOLS, NS, "python-pool").expect("pool");
    assert_eq!(
        (
            pool["status"]["replicas"].as_i64(),
            pool["status"]["readyReplicas"].as_i64()
        ),
        (Some(2), Some(2))
    );

    // A new claim takes one of upstream's members (never the one already claimed), and the
    // pool refills behind it.
    let kubelet = spawn_kubelet(&api);
    create_claim(&api, NS, "task-3", "python-pool").await;
    let bound = wait_for("task-3 bound", Duration::from_secs(10), || {
        api.get(CLAIMS, NS, "task-3")
            .and_then(|c| c["status"]["sandbox"]["name"].as_str().map(str::to_owned))
    })
    .await;
    assert!(
        ["python-pool-x7k2p", "python-pool-q9m4t"].contains(&bound.as_str()),
        "{bound}"
    );
    wait_pool_full(&api, NS, "python-pool", 2).await;
    let b5n8w = api
        .get(SANDBOXES, NS, "python-pool-b5n8w")
        .expect("still there");
    assert_eq!(b5n8w["metadata"]["ownerReferences"][0]["name"], "task-1");
    kubelet.abort();
    shutdown.cancel();
}
