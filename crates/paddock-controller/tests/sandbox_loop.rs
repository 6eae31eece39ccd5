//! The Sandbox controller's exact API calls for creation, suspend and expiry, scripted against
//! a mock API server.

mod common;

use common::{context, context_with, expect, expect_no_more, now, put, stored, typed};
use paddock_api::names::name_hash;
use paddock_api::v1beta1::Sandbox;
use paddock_control::{Controller, CoreConfig, Key, Outcome};
use serde_json::{Value, json};
use std::time::Duration;

const SB: &str = "/apis/agents.x-k8s.io/v1beta1/namespaces/ns/sandboxes/sb";

fn owner() -> Value {
    json!([{
        "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox", "name": "sb",
        "uid": "uid-sb", "controller": true, "blockOwnerDeletion": true
    }])
}

fn sandbox(spec: Value) -> Value {
    json!({
        "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
        "metadata": {"name": "sb", "namespace": "ns", "uid": "uid-sb", "generation": 1, "resourceVersion": "5"},
        "spec": spec
    })
}

fn pod_template() -> Value {
    json!({
        "metadata": {"labels": {"team": "a"}},
        "spec": {"containers": [{"name": "main", "image": "python:3.12", "ports": [{"containerPort": 8888}]}]}
    })
}

#[tokio::test]
async fn sandbox_creates_pvc_pod_annotation_service_and_status_exactly() {
    let (ctx, _children, mut api) = context();
    let hash = name_hash("sb");
    let sb: Sandbox = typed(sandbox(json!({
        "podTemplate": pod_template(),
        "service": true,
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
    })));
    put(&ctx, sb.clone());
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.reconcile(Controller::Sandbox, &Key::of(&sb)).await }
    });

    let pvc = expect(
        &mut api,
        "POST",
        "/api/v1/namespaces/ns/persistentvolumeclaims",
    )
    .await;
    assert_eq!(
        pvc.body,
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-sb", "namespace": "ns",
                         "labels": {"agents.x-k8s.io/sandbox-name-hash": hash},
                         "ownerReferences": owner()},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        })
    );
    assert!(
        pvc.query.contains("fieldManager=sandbox-controller"),
        "{}",
        pvc.query
    );
    let body = pvc.body.clone();
    pvc.respond(201, &stored(body, "uid-pvc", "10"));

    let pod = expect(&mut api, "POST", "/api/v1/namespaces/ns/pods").await;
    assert_eq!(
        pod.body,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "sb", "namespace": "ns",
                "labels": {"agents.x-k8s.io/sandbox-name-hash": hash, "team": "a"},
                "annotations": {"agents.x-k8s.io/propagated-labels": "team"},
                "ownerReferences": owner()
            },
            "spec": {
                "containers": [{"name": "main", "image": "python:3.12", "ports": [{"containerPort": 8888}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-sb"}}]
            }
        })
    );
    assert!(pod.query.contains("fieldManager=sandbox-controller"));
    let body = pod.body.clone();
    pod.respond(201, &stored(body, "uid-pod", "11"));

    let ann = expect(&mut api, "PATCH", SB).await;
    assert_eq!(
        ann.body,
        json!({"metadata": {"annotations": {"agents.x-k8s.io/pod-name": "sb"}}})
    );
    ann.ok(&sandbox(json!({"podTemplate": pod_template()})));

    let svc = expect(&mut api, "POST", "/api/v1/namespaces/ns/services").await;
    assert_eq!(
        svc.body,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "sb", "namespace": "ns",
                         "labels": {"agents.x-k8s.io/sandbox-name-hash": hash},
                         "ownerReferences": owner()},
            "spec": {"clusterIP": "None",
                     "selector": {"agents.x-k8s.io/sandbox-name-hash": hash},
                     "ports": [{"name": "p-8888-tcp", "port": 8888, "protocol": "TCP", "targetPort": 8888}]}
        })
    );
    let body = svc.body.clone();
    svc.respond(201, &stored(body, "uid-svc", "12"));

    let status = expect(&mut api, "PATCH", &format!("{SB}/status")).await;
    let s = &status.body["status"];
    assert_eq!(s["service"], "sb");
    assert_eq!(s["serviceFQDN"], "sb.ns.svc.cluster.local");
    assert_eq!(
        s["selector"],
        format!("agents.x-k8s.io/sandbox-name-hash={hash}")
    );
    let ready = s["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "DependenciesNotReady");
    assert_eq!(ready["observedGeneration"], 1);
    assert!(
        status.body.get("metadata").is_none(),
        "the Sandbox status write carries no lock"
    );
    status.ok(&sandbox(json!({"podTemplate": pod_template()})));

    let action = run.await.expect("join");
    assert_eq!(action, Outcome::Done);
    expect_no_more(&mut api).await;
}

/// A pod just created is not Ready: its status waits for the pod's own events (or the settle
/// time), so a pod that starts at once costs one status write.
#[tokio::test]
async fn a_new_pods_not_ready_status_is_held_while_it_settles() {
    let settle = CoreConfig::API_SERVER_WRITE_SAVING.0;
    let (ctx, _children, mut api) = context_with(CoreConfig {
        new_pod_status_settle: settle,
        ..CoreConfig::default()
    });
    let sb: Sandbox = typed(sandbox(json!({"podTemplate": pod_template()})));
    put(&ctx, sb.clone());
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.reconcile(Controller::Sandbox, &Key::of(&sb)).await }
    });
    let pod = expect(&mut api, "POST", "/api/v1/namespaces/ns/pods").await;
    let body = pod.body.clone();
    pod.respond(201, &stored(body, "uid-pod", "11"));
    expect(&mut api, "PATCH", SB)
        .await
        .ok(&sandbox(json!({"podTemplate": pod_template()})));
    assert_eq!(run.await.expect("join"), Outcome::RequeueAfter(settle));
    expect_no_more(&mut api).await;
}

fn running_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "sb", "namespace": "ns", "uid": "uid-pod", "resourceVersion": "20",
                     "labels": {"agents.x-k8s.io/sandbox-name-hash": name_hash("sb")},
                     "ownerReferences": owner()},
        "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "python:3.12"}]},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}],
                   "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}
    })
}

#[tokio::test]
async fn suspend_deletes_only_the_pod_with_its_uid_and_keeps_service() {
    let (ctx, mut w, mut api) = context();
    let mut sb = sandbox(
        json!({"podTemplate": pod_template(), "operatingMode": "Suspended", "service": true}),
    );
    sb["metadata"]["annotations"] = json!({"agents.x-k8s.io/pod-name": "sb"});
    let sb: Sandbox = typed(sb);
    put(&ctx, sb.clone());
    w.put_pod(typed(running_pod()));
    w.put_service(typed(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "sb", "namespace": "ns", "uid": "uid-svc", "resourceVersion": "21",
                     "labels": {"agents.x-k8s.io/sandbox-name-hash": name_hash("sb")}, "ownerReferences": owner()},
        "spec": {"clusterIP": "None", "selector": {"agents.x-k8s.io/sandbox-name-hash": name_hash("sb")},
                 "ports": [{"name": "p-8888-tcp", "port": 8888, "protocol": "TCP", "targetPort": 8888}]}
    })));
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.reconcile(Controller::Sandbox, &Key::of(&sb)).await }
    });

    let del = expect(&mut api, "DELETE", "/api/v1/namespaces/ns/pods/sb").await;
    assert_eq!(del.body["preconditions"], json!({"uid": "uid-pod"}));
    del.ok(&running_pod());
    let ann = expect(&mut api, "PATCH", SB).await;
    assert_eq!(
        ann.body,
        json!({"metadata": {"annotations": {"agents.x-k8s.io/pod-name": null}}})
    );
    ann.ok(&sandbox(json!({"podTemplate": pod_template()})));
    let status = expect(&mut api, "PATCH", &format!("{SB}/status")).await;
    let conds = status.body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .clone();
    let find = |t: &str| {
        conds
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(find("Ready")["reason"], "SandboxSuspended");
    assert_eq!(find("Suspended")["status"], "False");
    assert_eq!(find("Suspended")["reason"], "PodTerminating");
    assert_eq!(
        status.body["status"]["service"], "sb",
        "the Service is kept while suspended"
    );
    status.ok(&sandbox(json!({"podTemplate": pod_template()})));
    assert_eq!(run.await.expect("join"), Outcome::Done);
    expect_no_more(&mut api).await;
}

fn expired(policy: &str, already_marked: bool) -> Sandbox {
    let mut sb = sandbox(json!({
        "podTemplate": pod_template(), "service": true,
        "shutdownTime": "2026-09-01T11:00:00Z", "shutdownPolicy": policy
    }));
    if already_marked {
        sb["status"] = json!({
            "service": "sb", "serviceFQDN": "sb.ns.svc.cluster.local", "podIPs": ["10.0.0.7"],
            "selector": format!("agents.x-k8s.io/sandbox-name-hash={}", name_hash("sb")),
            "conditions": [{"type": "Ready", "status": "False", "reason": "SandboxExpired",
                            "message": "Sandbox has expired", "lastTransitionTime": "2026-09-01T11:00:01Z",
                            "observedGeneration": 1}]
        });
    }
    typed(sb)
}

fn seed_children(w: &mut paddock_controller::workloads::ChildWriters) {
    w.put_pod(typed(running_pod()));
    w.put_service(typed(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "sb", "namespace": "ns", "uid": "uid-svc", "ownerReferences": owner()},
        "spec": {"clusterIP": "None"}
    })));
}

#[tokio::test]
async fn expiry_first_marks_the_sandbox_expired_and_requeues_at_once() {
    let (ctx, mut w, mut api) = context();
    let sb = expired("Retain", false);
    put(&ctx, sb.clone());
    seed_children(&mut w);
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.reconcile(Controller::Sandbox, &Key::of(&sb)).await }
    });
    let status = expect(&mut api, "PATCH", &format!("{SB}/status")).await;
    let ready = &status.body["status"]["conditions"][0];
    assert_eq!(ready["reason"], "SandboxExpired");
    assert_eq!(
        ready["lastTransitionTime"],
        serde_json::to_value(now()).expect("time")
    );
    status.ok(&sandbox(json!({"podTemplate": pod_template()})));
    assert_eq!(
        run.await.expect("join"),
        Outcome::RequeueAfter(Duration::ZERO)
    );
    expect_no_more(&mut api).await;
}

#[tokio::test]
async fn expiry_with_retain_deletes_pod_and_service_and_clears_status() {
    let (ctx, mut w, mut api) = context();
    let sb = expired("Retain", true);
    put(&ctx, sb.clone());
    seed_children(&mut w);
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.reconcile(Controller::Sandbox, &Key::of(&sb)).await }
    });
    let pod = expect(&mut api, "DELETE", "/api/v1/namespaces/ns/pods/sb").await;
    assert_eq!(pod.body["preconditions"]["uid"], "uid-pod");
    pod.ok(&running_pod());
    let svc = expect(&mut api, "DELETE", "/api/v1/namespaces/ns/services/sb").await;
    assert_eq!(svc.body["preconditions"]["uid"], "uid-svc");
    svc.ok(&json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
    let status = expect(&mut api, "PATCH", &format!("{SB}/status")).await;
    let s = &status.body["status"];
    for cleared in ["service", "serviceFQDN", "podIPs", "selector"] {
        assert_eq!(s[cleared], Value::Null, "{cleared} is cleared: {s}");
        assert!(
            s.as_object().expect("object").contains_key(cleared),
            "{cleared} is sent as null"
        );
    }
    status.ok(&sandbox(json!({"podTemplate": pod_template()})));
    assert_eq!(run.await.expect("join"), Outcome::Done);
    expect_no_more(&mut api).await;
}

#[tokio::test]
async fn expiry_with_delete_removes_children_then_the_sandbox() {
    let (ctx, mut w, mut api) = context();
    let sb = expired("Delete", true);
    put(&ctx, sb.clone());
    seed_children(&mut w);
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.reconcile(Controller::Sandbox, &Key::of(&sb)).await }
    });
    expect(&mut api, "DELETE", "/api/v1/namespaces/ns/pods/sb")
        .await
        .ok(&running_pod());
    expect(&mut api, "DELETE", "/api/v1/namespaces/ns/services/sb")
        .await
        .ok(&json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
    let del = expect(&mut api, "DELETE", SB).await;
    assert_eq!(del.body["preconditions"]["uid"], "uid-sb");
    del.ok(&sandbox(json!({"podTemplate": pod_template()})));
    assert_eq!(run.await.expect("join"), Outcome::Done);
    expect_no_more(&mut api).await;
}

#[tokio::test]
async fn a_rejected_pod_is_invalid_configuration_without_requeue() {
    let (ctx, _children, mut api) = context();
    let sb: Sandbox = typed(sandbox(json!({"podTemplate": pod_template()})));
    put(&ctx, sb.clone());
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.reconcile(Controller::Sandbox, &Key::of(&sb)).await }
    });
    expect(&mut api, "POST", "/api/v1/namespaces/ns/pods")
        .await
        .fail(422, "Invalid");
    let status = expect(&mut api, "PATCH", &format!("{SB}/status")).await;
    let ready = status.body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .expect("Ready");
    assert_eq!(ready["reason"], "InvalidConfiguration");
    status.ok(&sandbox(json!({"podTemplate": pod_template()})));
    assert_eq!(run.await.expect("join"), Outcome::Done);
    expect_no_more(&mut api).await;
}
