//! The extension controllers' exact API calls: a claim adopting a warm member (two
//! conditional writes), losing that race, a pool scaling up (expectations gate the next
//! reconcile) and down, and the template's NetworkPolicy.

mod common;

use std::time::Duration;

use common::{context, expect, expect_no_more, put, stored, typed};
use paddock_api::names::name_hash;
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate, SandboxWarmPool};
use paddock_control::{Controller, Key, Outcome};
use paddock_plan::pool::{PoolConfig, TemplateFingerprint, build_member};
use serde_json::{Value, json};

const POOL_STATUS: &str =
    "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/ns/sandboxwarmpools/pool/status";
const SANDBOXES: &str = "/apis/agents.x-k8s.io/v1beta1/namespaces/ns/sandboxes";
const CLAIM: &str = "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/ns/sandboxclaims/c1";

fn template() -> SandboxTemplate {
    typed(json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate",
        "metadata": {"name": "tpl", "namespace": "ns", "uid": "uid-tpl", "resourceVersion": "3",
                     "labels": {"agents.x-k8s.io/sandbox-template-ref-hash": name_hash("tpl")}},
        "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "python:3.12"}]}}}
    }))
}

fn pool(replicas: i32) -> SandboxWarmPool {
    typed(json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxWarmPool",
        "metadata": {"name": "pool", "namespace": "ns", "uid": "uid-pool", "generation": 1, "resourceVersion": "4"},
        "spec": {"replicas": replicas, "sandboxTemplateRef": {"name": "tpl"}}
    }))
}

/// A member as the pool made it, stored, Ready with an address (or not).
fn member(name: &str, ready: bool, created: &str) -> Sandbox {
    let mut sb = build_member(
        &pool(1),
        &template(),
        &TemplateFingerprint::new(&template()),
        &PoolConfig::default(),
    );
    sb.metadata.name = Some(name.to_owned());
    sb.metadata.generate_name = None;
    sb.metadata.uid = Some(format!("uid-{name}"));
    sb.metadata.resource_version = Some("30".to_owned());
    sb.metadata.generation = Some(1);
    sb.metadata.creation_timestamp = Some(typed(json!(created)));
    sb.status = Some(typed(json!({
        "podIPs": if ready { json!(["10.0.0.9"]) } else { json!([]) },
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                        "reason": if ready { "DependenciesReady" } else { "DependenciesNotReady" },
                        "message": "", "lastTransitionTime": created, "observedGeneration": 1}]
    })));
    sb
}

fn claim() -> SandboxClaim {
    typed(json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
        "metadata": {"name": "c1", "namespace": "ns", "uid": "uid-c1", "generation": 1, "resourceVersion": "10",
                     "creationTimestamp": "2026-09-01T11:59:59Z"},
        "spec": {"warmPoolRef": {"name": "pool"}}
    }))
}

fn with_rv(mut v: Value, rv: &str) -> Value {
    v["metadata"]["resourceVersion"] = json!(rv);
    v
}

fn claim_json() -> Value {
    serde_json::to_value(claim()).expect("json")
}

#[tokio::test]
async fn claim_adopts_a_ready_member_with_one_conditional_write_before_its_status() {
    let (ctx, _children, mut api) = context();
    put(&ctx, template());
    put(&ctx, pool(1));
    let m = member("pool-abcde", true, "2026-09-01T11:00:00Z");
    put(&ctx, m.clone());
    let c = claim();
    put(&ctx, c.clone());
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.reconcile(Controller::Claim, &Key::of(&c)).await }
    });

    // The member is reserved for this claim while it plans: no claim write comes first.
    // The member, locked to its own version, becomes the claim's.
    let adopt = expect(&mut api, "PATCH", &format!("{SANDBOXES}/pool-abcde")).await;
    let meta = &adopt.body["metadata"];
    assert_eq!(meta["resourceVersion"], "30");
    assert_eq!(
        meta["ownerReferences"],
        json!([{"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim", "name": "c1",
                "uid": "uid-c1", "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(
        meta["labels"]["agents.x-k8s.io/warm-pool-sandbox"],
        Value::Null
    );
    assert_eq!(
        meta["labels"]["agents.x-k8s.io/sandbox-template-hash"],
        Value::Null
    );
    assert_eq!(meta["labels"]["agents.x-k8s.io/launch-type"], "warm");
    assert_eq!(meta["labels"]["agents.x-k8s.io/claim-uid"], "uid-c1");
    assert_eq!(
        meta["annotations"]["agents.x-k8s.io/pod-name"],
        "pool-abcde"
    );
    let mut adopted = serde_json::to_value(&m).expect("json");
    adopted["metadata"]["resourceVersion"] = json!("31");
    adopt.ok(&adopted);

    // The status, locked to the observed claim version, forwards the member's Ready.
    let status = expect(&mut api, "PATCH", &format!("{CLAIM}/status")).await;
    assert_eq!(status.body["metadata"]["resourceVersion"], "10");
    assert_eq!(status.body["status"]["sandbox"]["name"], "pool-abcde");
    assert_eq!(
        status.body["status"]["sandbox"]["podIPs"],
        json!(["10.0.0.9"])
    );
    let ready = status.body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .expect("Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "DependenciesReady");
    assert_eq!(
        ready["lastTransitionTime"], "2026-09-01T12:00:00Z",
        "the claim's own transition, not the member's"
    );
    status.ok(&with_rv(claim_json(), "11"));

    // Then, off the claim's critical path, its observability annotations in one patch.
    let annotate = expect(&mut api, "PATCH", CLAIM).await;
    assert_eq!(
        annotate.body,
        json!({"metadata": {"annotations": {
            "agents.x-k8s.io/controller-first-observed-at": "2026-09-01T12:00:00Z",
            "agents.x-k8s.io/claim-first-ready-at": "2026-09-01T12:00:00Z",
            "agents.x-k8s.io/sandbox-name": "pool-abcde"}}})
    );
    annotate.ok(&with_rv(claim_json(), "12"));
    let rest = tokio::time::timeout(Duration::from_millis(200), run).await;
    let action = match rest {
        Ok(joined) => joined.expect("join"),
        Err(_) => panic!("reconcile did not finish"),
    };
    assert_ne!(action, Outcome::RequeueAfter(Duration::ZERO));
    expect_no_more(&mut api).await;
    let text = ctx.metrics().encode();
    assert!(
        text.contains("agent_sandbox_claim_creation_total{namespace=\"ns\",sandbox_template=\"tpl\",launch_type=\"warm\",warmpool_name=\"pool\",pod_condition=\"ready\",created_by=\"unknown\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn claim_that_loses_the_member_race_reports_adoption_conflict_and_retries_at_once() {
    let (ctx, _children, mut api) = context();
    put(&ctx, template());
    put(&ctx, pool(1));
    put(&ctx, member("pool-abcde", true, "2026-09-01T11:00:00Z"));
    let mut c = claim();
    c.metadata.annotations = Some(
        [(
            "agents.x-k8s.io/controller-first-observed-at".to_owned(),
            "2026-09-01T11:59:59Z".to_owned(),
        )]
        .into(),
    );
    put(&ctx, c.clone());
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.reconcile(Controller::Claim, &Key::of(&c)).await }
    });
    expect(&mut api, "PATCH", &format!("{SANDBOXES}/pool-abcde"))
        .await
        .fail(409, "Conflict");
    let status = expect(&mut api, "PATCH", &format!("{CLAIM}/status")).await;
    assert_eq!(status.body["metadata"]["resourceVersion"], "10");
    let ready = &status.body["status"]["conditions"][0];
    assert_eq!(ready["reason"], "AdoptionConflict");
    status.ok(&with_rv(claim_json(), "12"));
    assert_eq!(
        run.await.expect("join"),
        Outcome::RequeueAfter(Duration::ZERO)
    );
    expect_no_more(&mut api).await;
}

#[tokio::test]
async fn pool_scales_up_in_slow_start_batches_and_waits_for_its_creates() {
    let (ctx, _children, mut api) = context();
    put(&ctx, template());
    let p = pool(3);
    put(&ctx, p.clone());
    let run = tokio::spawn({
        let ctx = ctx.clone();
        let p = p.clone();
        async move { ctx.reconcile(Controller::Pool, &Key::of(&p)).await }
    });
    let mut names = Vec::new();
    for i in 0..3 {
        let create = expect(&mut api, "POST", SANDBOXES).await;
        let meta = &create.body["metadata"];
        let given = meta["name"]
            .as_str()
            .expect("a name chosen like generateName's");
        assert!(
            given.starts_with("pool-") && given.len() == "pool-".len() + 5,
            "{given}"
        );
        assert_eq!(meta["annotations"]["agents.x-k8s.io/pod-name"], given);
        assert_eq!(
            meta["labels"]["agents.x-k8s.io/warm-pool-sandbox"],
            name_hash("pool")
        );
        assert_eq!(meta["labels"]["agents.x-k8s.io/launch-type"], "warm");
        assert_eq!(meta["ownerReferences"][0]["kind"], "SandboxWarmPool");
        assert_eq!(
            create.body["spec"]["podTemplate"]["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"],
            "true"
        );
        assert_eq!(
            create.body["spec"]["podTemplate"]["spec"]["automountServiceAccountToken"],
            false
        );
        let name = format!("pool-m{i}");
        let mut obj = create.body.clone();
        obj["metadata"]["name"] = json!(name);
        names.push(name);
        if i == 0 {
            // Slow start: the second create waits for the first to succeed.
            expect_no_more(&mut api).await;
        }
        create.respond(201, &stored(obj, &format!("uid-m{i}"), "40"));
    }
    let status = expect(&mut api, "PATCH", POOL_STATUS).await;
    assert_eq!(
        status.body["status"]["selector"],
        format!("agents.x-k8s.io/warm-pool-sandbox={}", name_hash("pool"))
    );
    let written = status.body["status"].clone();
    status.ok(&serde_json::to_value(&p).expect("json"));
    run.await.expect("join");
    let mut p = p;
    p.status = Some(typed(written));
    put(&ctx, p.clone());
    let exp = ctx
        .pool_state(&Key::new("ns", "pool"))
        .expect("state")
        .expectations;
    assert_eq!(
        exp.creates.iter().cloned().collect::<Vec<_>>(),
        names,
        "created names are expected"
    );

    // The members the creates returned are in the cache at once (the watch has not delivered
    // them yet): nothing is created again; the status counts them.
    let run = tokio::spawn({
        let ctx = ctx.clone();
        let p = p.clone();
        async move { ctx.reconcile(Controller::Pool, &Key::of(&p)).await }
    });
    let status = expect(&mut api, "PATCH", POOL_STATUS).await;
    assert_eq!(status.body["status"]["replicas"], 3, "{}", status.body);
    status.ok(&serde_json::to_value(&p).expect("json"));
    let action = run.await.expect("join");
    assert!(
        !matches!(action, Outcome::Retry(_)),
        "waits for the members to become Ready (their changes wake the pool): {action:?}"
    );
    expect_no_more(&mut api).await;
}

#[tokio::test]
async fn pool_scales_down_not_ready_first_then_newest_with_preconditions() {
    let (ctx, _children, mut api) = context();
    put(&ctx, template());
    let mut p = pool(1);
    p.status = Some(typed(
        json!({"replicas": 3, "readyReplicas": 2, "observedGeneration": 1,
        "selector": format!("agents.x-k8s.io/warm-pool-sandbox={}", name_hash("pool"))}),
    ));
    put(&ctx, p.clone());
    put(&ctx, member("pool-old", true, "2026-09-01T10:00:00Z"));
    put(&ctx, member("pool-new", true, "2026-09-01T11:00:00Z"));
    put(&ctx, member("pool-sick", false, "2026-09-01T11:58:00Z"));
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.reconcile(Controller::Pool, &Key::of(&p)).await }
    });
    let first = expect(&mut api, "DELETE", &format!("{SANDBOXES}/pool-sick")).await;
    assert_eq!(
        first.body["preconditions"],
        json!({"uid": "uid-pool-sick", "resourceVersion": "30"})
    );
    first.ok(&json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
    let second = expect(&mut api, "DELETE", &format!("{SANDBOXES}/pool-new")).await;
    assert_eq!(second.body["preconditions"]["uid"], "uid-pool-new");
    // A claim adopted it meanwhile: the delete loses, and is forgotten.
    second.fail(409, "Conflict");
    assert!(
        !matches!(run.await.expect("join"), Outcome::Retry(_)),
        "a lost delete race is not an error"
    );
    let exp = ctx
        .pool_state(&Key::new("ns", "pool"))
        .expect("state")
        .expectations;
    assert!(exp.deletes.contains("pool-sick"));
    assert!(
        !exp.deletes.contains("pool-new"),
        "a conflicting delete is forgotten"
    );
    expect_no_more(&mut api).await;
}

#[tokio::test]
async fn template_gets_its_secure_default_network_policy() {
    let (ctx, _children, mut api) = context();
    let t = template();
    put(&ctx, t.clone());
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.reconcile(Controller::Template, &Key::of(&t)).await }
    });
    let np = expect(
        &mut api,
        "POST",
        "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies",
    )
    .await;
    assert_eq!(np.body["metadata"]["name"], "tpl-network-policy");
    assert_eq!(
        np.body["metadata"]["ownerReferences"][0]["kind"],
        "SandboxTemplate"
    );
    assert_eq!(
        np.body["spec"]["podSelector"],
        json!({"matchLabels": {"agents.x-k8s.io/sandbox-template-ref-hash": name_hash("tpl")}})
    );
    assert_eq!(np.body["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        np.body["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"],
        "0.0.0.0/0"
    );
    let body = np.body.clone();
    np.respond(201, &stored(body, "uid-np", "50"));
    assert_eq!(run.await.expect("join"), Outcome::Done);
    expect_no_more(&mut api).await;
}

#[tokio::test]
async fn a_template_reconciled_again_before_its_policy_is_watched_creates_it_once() {
    let (ctx, _children, mut api) = context();
    let t = template();
    put(&ctx, t.clone());
    let reconcile = || {
        let ctx = ctx.clone();
        let t = t.clone();
        tokio::spawn(async move { ctx.reconcile(Controller::Template, &Key::of(&t)).await })
    };
    let run = reconcile();
    let np = expect(
        &mut api,
        "POST",
        "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies",
    )
    .await;
    let body = np.body.clone();
    np.respond(201, &stored(body, "uid-np", "50"));
    assert_eq!(run.await.expect("join"), Outcome::Done);
    // The watch has not delivered the policy yet: the second reconcile writes nothing.
    assert_eq!(reconcile().await.expect("join"), Outcome::Done);
    expect_no_more(&mut api).await;
}

#[tokio::test]
async fn a_network_policy_another_replica_already_created_is_not_an_error() {
    let (ctx, _children, mut api) = context();
    let t = template();
    put(&ctx, t.clone());
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.reconcile(Controller::Template, &Key::of(&t)).await }
    });
    expect(
        &mut api,
        "POST",
        "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies",
    )
    .await
    .fail(409, "AlreadyExists");
    assert_eq!(run.await.expect("join"), Outcome::Done);
    expect_no_more(&mut api).await;
}
