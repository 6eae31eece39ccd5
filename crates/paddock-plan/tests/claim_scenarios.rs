//! SandboxClaim planner scenarios (contract §2.5), one per behaviour.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar, PersistentVolumeClaimSpec};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use paddock_api::names::name_hash;
use paddock_api::v1beta1::*;
use paddock_plan::claim::*;
use paddock_plan::outcome::{ApplyFailure, ErrorClass, FailureKind, Propagation};
use paddock_plan::ownership::controller_ref;
use paddock_plan::patch::SandboxPatch;

struct World {
    claim: SandboxClaim,
    pool: Option<SandboxWarmPool>,
    template: Option<SandboxTemplate>,
    sandboxes: Vec<Sandbox>,
    reserved: BTreeSet<String>,
    legacy_np: Option<NetworkPolicy>,
    config: ClaimConfig,
    now: Time,
}

impl World {
    fn new() -> Self {
        let mut claim = claim("c", "pool");
        claim.metadata.annotations = Some(map(&[(
            "agents.x-k8s.io/controller-first-observed-at",
            "x",
        )]));
        claim.metadata.creation_timestamp = Some(t(0));
        Self {
            claim,
            pool: Some(pool("pool", "tpl", Some(3))),
            template: Some(template("tpl")),
            sandboxes: vec![],
            reserved: BTreeSet::new(),
            legacy_np: None,
            config: ClaimConfig::default(),
            now: t(10),
        }
    }

    fn member(&self, name: &str, ready: bool, node: Option<&str>, created: i64) -> Sandbox {
        member(
            self.pool.as_ref().unwrap(),
            self.template.as_ref().unwrap(),
            name,
            ready,
            node,
            created,
        )
    }

    fn input(&self) -> ClaimInput<'_> {
        ClaimInput {
            claim: &self.claim,
            pool: self.pool.as_ref(),
            template: self.template.as_ref(),
            sandboxes: self.sandboxes.iter().collect(),
            reserved: self.reserved.clone(),
            legacy_network_policy: self.legacy_np.as_ref(),
            now: &self.now,
            first_observed: None,
            config: &self.config,
        }
    }

    fn plan(&self) -> ClaimPlan {
        plan_claim(&self.input())
    }
}

fn adoption(p: &ClaimPlan) -> Option<&Adoption> {
    p.actions.iter().find_map(|a| match a {
        ClaimAction::Adopt { adoption } => Some(adoption),
        _ => None,
    })
}

fn created(p: &ClaimPlan) -> Option<&Sandbox> {
    p.actions.iter().find_map(|a| match a {
        ClaimAction::CreateSandbox { sandbox } => Some(sandbox.as_ref()),
        _ => None,
    })
}

fn sandbox_patch(p: &ClaimPlan) -> Option<&SandboxPatch> {
    p.actions.iter().find_map(|a| match a {
        ClaimAction::PatchSandbox { patch } => Some(patch),
        _ => None,
    })
}

fn claim_patches(p: &ClaimPlan) -> Vec<&paddock_plan::patch::MetadataPatch> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            ClaimAction::PatchClaim { patch } => Some(patch),
            _ => None,
        })
        .collect()
}

fn ready(p: &ClaimPlan) -> Option<(String, String, String)> {
    triple(&p.status.conditions, "Ready")
}

fn bound(p: &ClaimPlan) -> Option<String> {
    p.status.sandbox.as_ref().and_then(|s| s.name.clone())
}

#[test]
fn claim_adopts_ready_member_first() {
    let mut w = World::new();
    w.sandboxes = vec![
        w.member("pool-old", false, None, 0),
        w.member("pool-new", true, None, 5),
    ];
    let p = w.plan();
    assert_eq!(adoption(&p).unwrap().sandbox_name, "pool-new");
    assert!(adoption(&p).unwrap().ready);
    assert_eq!(bound(&p).as_deref(), Some("pool-new"));
    assert_eq!(ready(&p), s3("True", "DependenciesReady", "Pod is Ready"));
    assert_eq!(
        find(&p.status.conditions, "Ready")
            .unwrap()
            .observed_generation,
        Some(3)
    );
    assert!(created(&p).is_none());
    assert!(p.actions.iter().any(|a| matches!(a, ClaimAction::Event { event } if event.reason == "SandboxAdopted" && event.note == "Adopted warm pool Sandbox \"pool-new\"")));
}

#[test]
fn claim_prefers_the_node_with_most_remaining_members() {
    let mut w = World::new();
    w.sandboxes = vec![
        w.member("a-1", true, Some("node-a"), 0),
        w.member("b-1", true, Some("node-b"), 1),
        w.member("b-2", true, Some("node-b"), 2),
        w.member("unscheduled", true, None, -5),
    ];
    assert_eq!(adoption(&w.plan()).unwrap().sandbox_name, "b-1");
    // Ties go to the oldest.
    w.sandboxes = vec![
        w.member("a-1", true, Some("node-a"), 3),
        w.member("b-1", true, Some("node-b"), 1),
    ];
    assert_eq!(adoption(&w.plan()).unwrap().sandbox_name, "b-1");
    // Without nodes, the oldest.
    w.sandboxes = vec![w.member("x", true, None, 3), w.member("y", true, None, 1)];
    assert_eq!(adoption(&w.plan()).unwrap().sandbox_name, "y");
}

#[test]
fn claim_falls_back_to_a_not_ready_member() {
    let mut w = World::new();
    w.sandboxes = vec![
        w.member("slow-2", false, None, 2),
        w.member("slow-1", false, None, 1),
    ];
    let p = w.plan();
    let a = adoption(&p).unwrap();
    assert_eq!(a.sandbox_name, "slow-1");
    assert!(!a.ready);
    assert_eq!(
        ready(&p),
        s3(
            "False",
            "DependenciesNotReady",
            "Pod is Running but not Ready"
        )
    );
}

#[test]
fn young_claim_waits_for_members_without_an_address_then_goes_cold() {
    let mut w = World::new();
    let mut m = w.member("pool-x", false, None, 0);
    m.status.as_mut().unwrap().pod_ips = None;
    w.sandboxes = vec![m];
    w.now = t(1);
    let p = w.plan();
    assert!(adoption(&p).is_none() && created(&p).is_none());
    assert_eq!(p.requeue_after, Some(Duration::from_millis(500)));
    assert_eq!(
        ready(&p),
        s3("False", "SandboxMissing", "Sandbox does not exist")
    );

    w.now = t(2);
    let p = w.plan();
    assert_eq!(created(&p).unwrap().metadata.name.as_deref(), Some("c"));
}

#[test]
fn reserved_stale_foreign_and_terminating_members_are_not_candidates() {
    let mut w = World::new();
    let mut other_pool = w.member("other-1", true, None, 0);
    other_pool.metadata.owner_references = Some(vec![controller_ref(
        "extensions.agents.x-k8s.io/v1beta1",
        "SandboxWarmPool",
        "other",
        "uid-other",
    )]);
    let mut terminating = w.member("dying", true, None, 0);
    terminating.metadata.deletion_timestamp = Some(t(1));
    let mut other_ns = w.member("elsewhere", true, None, 0);
    other_ns.metadata.namespace = Some("team-b".into());
    let mut unlabelled = w.member("unlabelled", true, None, 0);
    unlabelled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .remove("agents.x-k8s.io/warm-pool-sandbox");
    w.sandboxes = vec![
        other_pool,
        terminating,
        other_ns,
        unlabelled,
        w.member("taken", true, None, 0),
    ];
    w.reserved.insert("taken".into());
    let p = w.plan();
    assert!(adoption(&p).is_none());
    assert_eq!(created(&p).unwrap().metadata.name.as_deref(), Some("c"));
}

#[test]
fn recreate_pool_claims_skip_stale_members() {
    let mut w = World::new();
    let mut stale = w.member("stale", true, None, 0);
    stale.spec.blueprint.pod_template.spec.containers[0].image = Some("python:2".into());
    stale
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("agents.x-k8s.io/sandbox-template-hash".into(), "0".into());
    w.sandboxes = vec![stale];
    assert_eq!(
        adoption(&w.plan()).unwrap().sandbox_name,
        "stale",
        "OnReplenish hands out stale members"
    );
    w.pool.as_mut().unwrap().spec.update_strategy = Some(WarmPoolUpdateStrategy {
        type_: Some(WarmPoolUpdateStrategyType::Recreate),
    });
    assert!(adoption(&w.plan()).is_none());
}

#[test]
fn adoption_patch_makes_exactly_the_contract_edits() {
    let mut w = World::new();
    w.claim.metadata.labels = Some(map(&[("agents.x-k8s.io/created-by", "python-client")]));
    w.claim.metadata.annotations.as_mut().unwrap().insert(
        "opentelemetry.io/trace-context".into(),
        "{\"traceparent\":\"00-1\"}".into(),
    );
    w.claim.spec.additional_pod_metadata = Some(PodMetadata {
        labels: Some(map(&[("sandbox.users.io/team", "blue")])),
        annotations: Some(map(&[("note2", "x")])),
    });
    w.sandboxes = vec![w.member("pool-m", true, None, 0)];
    let p = w.plan();
    let a = adoption(&p).unwrap();
    assert!(
        a.claim_patch.is_none(),
        "the driver reserves the member; the claim is not written before it"
    );

    let sp = &a.sandbox_patch;
    assert_eq!(sp.name, "pool-m");
    assert_eq!(sp.metadata.resource_version.as_deref(), Some("rv-pool-m"));
    let l = &sp.metadata.labels;
    assert_eq!(l.get("agents.x-k8s.io/warm-pool-sandbox"), Some(&None));
    assert_eq!(
        l.get("agents.x-k8s.io/sandbox-pod-template-hash"),
        Some(&None)
    );
    assert_eq!(l.get("agents.x-k8s.io/sandbox-template-hash"), Some(&None));
    assert_eq!(
        l.get("agents.x-k8s.io/launch-type"),
        Some(&Some("warm".to_owned()))
    );
    assert_eq!(
        l.get("agents.x-k8s.io/claim-uid"),
        Some(&Some("uid-c".to_owned()))
    );
    assert_eq!(
        l.get("agents.x-k8s.io/created-by"),
        Some(&Some("python-client".to_owned()))
    );
    assert_eq!(
        l.get("agents.x-k8s.io/sandbox-template-ref-hash"),
        Some(&Some(name_hash("tpl")))
    );
    let ann = &sp.metadata.annotations;
    assert_eq!(
        ann.get("agents.x-k8s.io/pod-name"),
        Some(&Some("pool-m".to_owned()))
    );
    assert_eq!(
        ann.get("opentelemetry.io/trace-context"),
        Some(&Some("{\"traceparent\":\"00-1\"}".to_owned()))
    );
    assert_eq!(
        sp.metadata.owner_references,
        Some(vec![controller_ref(
            "extensions.agents.x-k8s.io/v1beta1",
            "SandboxClaim",
            "c",
            "uid-c"
        )])
    );
    let pm = sp.pod_template_metadata.clone().unwrap();
    assert_eq!(
        pm.labels.unwrap(),
        map(&[
            ("app", "agent"),
            ("agents.x-k8s.io/claim-uid", "uid-c"),
            ("agents.x-k8s.io/created-by", "python-client"),
            (
                "agents.x-k8s.io/sandbox-template-ref-hash",
                &name_hash("tpl")
            ),
            ("sandbox.users.io/team", "blue"),
        ])
    );
    assert_eq!(
        pm.annotations.unwrap(),
        map(&[("note", "hello"), ("note2", "x")]),
        "safe-to-evict is gone"
    );

    // Applied, the member is the claim's and out of the pool.
    let mut after = w.sandboxes[0].clone();
    sp.apply(&mut after);
    assert!(paddock_plan::ownership::is_controlled_by(
        &after.metadata,
        "uid-c"
    ));
    assert!(!is_adoptable_member(&after, Some(NS), "pool"));
    let json = sp.to_merge_patch(&w.sandboxes[0]);
    assert_eq!(json["metadata"]["resourceVersion"], "rv-pool-m");
    assert_eq!(
        json["spec"]["podTemplate"]["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"],
        serde_json::Value::Null
    );
}

#[test]
fn bound_sandbox_from_status_is_used_and_gets_its_launch_type() {
    let mut w = World::new();
    let mut sb = claimed("pool-m", &w.claim);
    sb.metadata.labels = None;
    sb.status = Some(SandboxStatus {
        conditions: Some(vec![cond(
            "Ready",
            "True",
            "DependenciesReady",
            "Pod is Ready",
        )]),
        pod_ips: Some(vec!["10.0.0.9".into()]),
        ..SandboxStatus::default()
    });
    w.sandboxes = vec![sb, w.member("pool-z", true, None, 0)];
    w.claim.status = Some(SandboxClaimStatus {
        conditions: None,
        sandbox: Some(ClaimSandboxStatus {
            name: Some("pool-m".into()),
            pod_ips: None,
        }),
    });
    let p = w.plan();
    assert!(adoption(&p).is_none());
    let patch = sandbox_patch(&p).unwrap();
    assert_eq!(
        patch.metadata.labels.get("agents.x-k8s.io/launch-type"),
        Some(&Some("warm".to_owned()))
    );
    assert_eq!(
        patch
            .metadata
            .labels
            .get("agents.x-k8s.io/sandbox-template-ref-hash"),
        Some(&Some(name_hash("tpl")))
    );
    assert!(
        patch.pod_template_metadata.is_some(),
        "claim identity is added to the pod template"
    );
    assert_eq!(
        p.status.sandbox.as_ref().unwrap().pod_ips,
        Some(vec!["10.0.0.9".to_owned()])
    );
}

#[test]
fn claim_metadata_changes_propagate_to_the_bound_sandbox() {
    let mut w = World::new();
    let tpl = w.template.clone().unwrap();
    let mut sb = claimed("c", &w.claim);
    sb.metadata.labels = Some(map(&[
        ("agents.x-k8s.io/launch-type", "cold"),
        (
            "agents.x-k8s.io/sandbox-template-ref-hash",
            &name_hash("tpl"),
        ),
        ("agents.x-k8s.io/created-by", "go-client"),
    ]));
    sb.spec.blueprint.pod_template.metadata = Some(claim_pod_metadata(&tpl, &w.claim).unwrap());
    w.sandboxes = vec![sb];
    let p = w.plan();
    let patch = sandbox_patch(&p).unwrap();
    assert_eq!(
        patch.metadata.labels,
        [("agents.x-k8s.io/created-by".to_owned(), None)].into()
    );
    assert!(patch.pod_template_metadata.is_none());

    w.claim.spec.additional_pod_metadata = Some(PodMetadata {
        labels: Some(map(&[("sandbox.users.io/x", "1")])),
        annotations: None,
    });
    let p = w.plan();
    let pm = sandbox_patch(&p)
        .unwrap()
        .pod_template_metadata
        .clone()
        .unwrap();
    assert_eq!(
        pm.labels
            .unwrap()
            .get("sandbox.users.io/x")
            .map(String::as_str),
        Some("1")
    );

    // Without the template, additions cannot be merged safely.
    w.template = None;
    let p = w.plan();
    assert_eq!(ready(&p).unwrap().1, "ReconcilerError");
    assert!(
        ready(&p)
            .unwrap()
            .2
            .starts_with("Error seen: failed to get template for metadata propagation:")
    );
}

#[test]
fn annotation_naming_a_pool_member_completes_the_adoption() {
    let mut w = World::new();
    w.claim
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("agents.x-k8s.io/sandbox-name".into(), "pool-m".into());
    w.sandboxes = vec![
        w.member("pool-m", true, None, 0),
        w.member("pool-older", true, None, -10),
    ];
    let p = w.plan();
    let a = adoption(&p).unwrap();
    assert_eq!(a.sandbox_name, "pool-m", "never switches candidate");
    assert!(a.claim_patch.is_none());
}

#[test]
fn legacy_label_is_migrated_to_the_annotation() {
    let mut w = World::new();
    w.claim.metadata.labels = Some(map(&[("agents.x-k8s.io/sandbox-name", "pool-m")]));
    w.sandboxes = vec![claimed("pool-m", &w.claim)];
    let p = w.plan();
    let patches = claim_patches(&p);
    assert_eq!(
        patches[0].labels.get("agents.x-k8s.io/sandbox-name"),
        Some(&None)
    );
    assert_eq!(
        patches[0].annotations.get("agents.x-k8s.io/sandbox-name"),
        Some(&Some("pool-m".to_owned()))
    );
    assert_eq!(patches[0].resource_version.as_deref(), Some("100"));
    assert_eq!(bound(&p).as_deref(), Some("pool-m"));
}

#[test]
fn stale_sandbox_references_are_removed_and_another_member_taken() {
    for case in ["taken by another claim", "missing"] {
        let mut w = World::new();
        w.claim
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("agents.x-k8s.io/sandbox-name".into(), "pool-m".into());
        let other = claim("other", "pool");
        if case == "taken by another claim" {
            w.sandboxes.push(claimed("pool-m", &other));
        }
        w.sandboxes.push(w.member("pool-n", true, None, 0));
        let p = w.plan();
        assert_eq!(
            claim_patches(&p)[0]
                .annotations
                .get("agents.x-k8s.io/sandbox-name"),
            Some(&None),
            "{case}"
        );
        assert_eq!(adoption(&p).unwrap().sandbox_name, "pool-n", "{case}");
    }
}

#[test]
fn sandbox_named_like_the_claim_must_be_controlled_by_it() {
    let mut w = World::new();
    w.sandboxes = vec![sandbox("c")];
    let p = w.plan();
    assert_eq!(
        ready(&p),
        s3(
            "False",
            "ReconcilerError",
            "Error seen: sandbox \"c\" is not controlled by claim \"c\". Please use a different claim name or delete the sandbox manually"
        )
    );
    assert_eq!(p.error.unwrap().class, ErrorClass::Transient);

    w.sandboxes = vec![claimed("c", &w.claim), w.member("pool-m", true, None, 0)];
    let p = w.plan();
    assert!(adoption(&p).is_none() && created(&p).is_none());
    assert_eq!(bound(&p).as_deref(), Some("c"));
    assert_eq!(
        ready(&p),
        s3("False", "SandboxNotReady", "Sandbox is not ready")
    );
}

#[test]
fn second_sandbox_controlled_by_the_claim_is_deleted() {
    let mut w = World::new();
    w.claim.status = Some(SandboxClaimStatus {
        conditions: None,
        sandbox: Some(ClaimSandboxStatus {
            name: Some("c".into()),
            pod_ips: None,
        }),
    });
    let mut dup = claimed("pool-m", &w.claim);
    dup.metadata.creation_timestamp = Some(t(5));
    w.sandboxes = vec![claimed("c", &w.claim), dup];
    let p = w.plan();
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, ClaimAction::DeleteSandbox { target } if target.name == "pool-m"))
    );
    assert_eq!(bound(&p).as_deref(), Some("c"));
}

#[test]
fn lost_binding_is_recovered_from_ownership_instead_of_taking_another() {
    let mut w = World::new();
    w.sandboxes = vec![
        claimed("pool-m", &w.claim),
        w.member("pool-n", true, None, 0),
    ];
    let p = w.plan();
    assert!(adoption(&p).is_none() && created(&p).is_none());
    assert_eq!(bound(&p).as_deref(), Some("pool-m"));
    assert!(
        claim_patches(&p).is_empty(),
        "the status names it; no annotation round trip"
    );
}

#[test]
fn cold_sandbox_is_named_after_the_claim_with_every_label_and_default() {
    let mut w = World::new();
    w.claim.metadata.labels = Some(map(&[("agents.x-k8s.io/created-by", "go-client")]));
    w.claim.spec.lifecycle = Some(ClaimLifecycle {
        shutdown_time: Some(t(1000)),
        ..ClaimLifecycle::default()
    });
    w.claim.spec.additional_pod_metadata = Some(PodMetadata {
        labels: Some(map(&[("sandbox.users.io/team", "red")])),
        annotations: None,
    });
    let p = w.plan();
    let sb = created(&p).unwrap();
    assert_eq!(sb.metadata.name.as_deref(), Some("c"));
    assert_eq!(
        sb.metadata.labels.clone().unwrap(),
        map(&[
            ("agents.x-k8s.io/claim-uid", "uid-c"),
            ("agents.x-k8s.io/created-by", "go-client"),
            ("agents.x-k8s.io/launch-type", "cold"),
            (
                "agents.x-k8s.io/sandbox-template-ref-hash",
                &name_hash("tpl")
            ),
        ])
    );
    assert_eq!(
        sb.metadata.annotations.clone().unwrap(),
        map(&[
            ("agents.x-k8s.io/sandbox-template-ref", "tpl"),
            ("agents.x-k8s.io/pod-name", "c")
        ])
    );
    assert_eq!(
        sb.metadata.owner_references,
        Some(vec![controller_ref(
            "extensions.agents.x-k8s.io/v1beta1",
            "SandboxClaim",
            "c",
            "uid-c"
        )])
    );
    assert_eq!(
        sb.spec.lifecycle,
        Lifecycle::default(),
        "claim shutdownTime is not copied"
    );
    let pl = sb
        .spec
        .blueprint
        .pod_template
        .metadata
        .clone()
        .unwrap()
        .labels
        .unwrap();
    assert_eq!(
        pl.get("sandbox.users.io/team").map(String::as_str),
        Some("red")
    );
    assert_eq!(
        pl.get("agents.x-k8s.io/claim-uid").map(String::as_str),
        Some("uid-c")
    );
    assert_eq!(
        sb.spec
            .blueprint
            .pod_template
            .spec
            .automount_service_account_token,
        Some(false)
    );
    assert!(p.actions.iter().any(
        |a| matches!(a, ClaimAction::Event { event } if event.reason == "SandboxProvisioned")
    ));
    assert_eq!(bound(&p).as_deref(), Some("c"));
    assert_eq!(
        p.requeue_after,
        Some(Duration::from_secs(990)),
        "requeue at the claim's expiry"
    );
}

#[test]
fn missing_pool_and_template_have_their_own_reasons() {
    let mut w = World::new();
    w.pool = None;
    let p = w.plan();
    assert_eq!(
        ready(&p),
        s3(
            "False",
            "WarmPoolNotFound",
            "SandboxWarmPool \"pool\" not found"
        )
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(60)));
    assert_eq!(p.error, None);

    let mut w = World::new();
    w.template = None;
    let p = w.plan();
    assert_eq!(
        ready(&p),
        s3(
            "False",
            "TemplateNotFound",
            "SandboxTemplate \"tpl\" not found"
        )
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(60)));
}

#[test]
fn missing_shadow_pool_still_gives_a_cold_sandbox_from_the_template() {
    let alpha = paddock_api::v1alpha1::SandboxClaim {
        metadata: meta("c"),
        spec: paddock_api::v1alpha1::SandboxClaimSpec {
            sandbox_template_ref: NameRef { name: "tpl".into() },
            warmpool: Some("none".into()),
            ..paddock_api::v1alpha1::SandboxClaimSpec::default()
        },
        status: None,
    };
    let mut w = World::new();
    w.claim = paddock_api::convert::claim_to_v1beta1(alpha);
    assert_eq!(w.claim.spec.warm_pool_ref.name, "shadow-pool-tpl");
    assert_eq!(template_name_for(&w.claim, None).as_deref(), Some("tpl"));
    w.pool = None;
    let p = w.plan();
    assert_eq!(created(&p).unwrap().metadata.name.as_deref(), Some("c"));

    // An explicit v1alpha1 pool name becomes the pool reference.
    let alpha = paddock_api::v1alpha1::SandboxClaim {
        metadata: meta("c"),
        spec: paddock_api::v1alpha1::SandboxClaimSpec {
            sandbox_template_ref: NameRef { name: "tpl".into() },
            warmpool: Some("pool".into()),
            ..paddock_api::v1alpha1::SandboxClaimSpec::default()
        },
        status: None,
    };
    let mut w = World::new();
    w.claim = paddock_api::convert::claim_to_v1beta1(alpha);
    w.sandboxes = vec![w.member("pool-m", true, None, 0)];
    assert_eq!(adoption(&w.plan()).unwrap().sandbox_name, "pool-m");
}

/// A container name and the `(name, value)` env it should end up with.
type ContainerEnv = (&'static str, Vec<(&'static str, &'static str)>);

fn env(name: &str, value: &str, container: Option<&str>) -> ClaimEnvVar {
    ClaimEnvVar {
        name: name.into(),
        value: value.into(),
        container_name: container.map(str::to_owned),
    }
}

#[test]
fn env_forces_a_cold_start_under_the_injection_policy() {
    struct Case {
        name: &'static str,
        policy: Option<EnvVarsInjectionPolicy>,
        envs: Vec<ClaimEnvVar>,
        env_from: bool,
        want: Result<Vec<ContainerEnv>, &'static str>,
    }
    let cases = vec![
        Case {
            name: "disallowed by default",
            policy: None,
            envs: vec![env("A", "1", None)],
            env_from: false,
            want: Err(
                "environment variable injection rejected: environment variable injection is not allowed by the template policy",
            ),
        },
        Case {
            name: "allowed appends",
            policy: Some(EnvVarsInjectionPolicy::Allowed),
            envs: vec![env("A", "1", None), env("B", "2", Some("init"))],
            env_from: false,
            want: Ok(vec![
                ("main", vec![("EXISTING", "x"), ("A", "1")]),
                ("init", vec![("B", "2")]),
            ]),
        },
        Case {
            name: "allowed refuses overrides",
            policy: Some(EnvVarsInjectionPolicy::Allowed),
            envs: vec![env("EXISTING", "y", None)],
            env_from: false,
            want: Err(
                "environment variable injection rejected: environment variable override is not allowed by the template policy for variable \"EXISTING\"",
            ),
        },
        Case {
            name: "allowed refuses envFrom containers",
            policy: Some(EnvVarsInjectionPolicy::Allowed),
            envs: vec![env("A", "1", None)],
            env_from: true,
            want: Err(
                "environment variable injection rejected: container \"main\" uses EnvFrom sources; Allowed policy cannot safely prevent overriding EnvFrom-provided variables",
            ),
        },
        Case {
            name: "overrides replaces",
            policy: Some(EnvVarsInjectionPolicy::Overrides),
            envs: vec![env("EXISTING", "y", Some("main"))],
            env_from: true,
            want: Ok(vec![("main", vec![("EXISTING", "y")])]),
        },
        Case {
            name: "unknown container",
            policy: Some(EnvVarsInjectionPolicy::Overrides),
            envs: vec![env("A", "1", Some("nope"))],
            env_from: false,
            want: Err(
                "environment variable injection rejected: target container \"nope\" not found in template for environment variable \"A\"",
            ),
        },
    ];
    for c in cases {
        let mut w = World::new();
        let tpl = w.template.as_mut().unwrap();
        tpl.spec.env_vars_injection_policy = c.policy;
        let spec = &mut tpl.spec.blueprint.pod_template.spec;
        spec.containers[0].env = Some(vec![EnvVar {
            name: "EXISTING".into(),
            value: Some("x".into()),
            value_from: None,
        }]);
        if c.env_from {
            spec.containers[0].env_from = Some(vec![EnvFromSource::default()]);
        }
        spec.init_containers = Some(vec![Container {
            name: "init".into(),
            ..Container::default()
        }]);
        w.claim.spec.env = Some(c.envs);
        w.sandboxes = vec![w.member("pool-m", true, None, 0)];
        let p = w.plan();
        assert!(
            adoption(&p).is_none(),
            "{}: env forces a cold start",
            c.name
        );
        match c.want {
            Err(msg) => {
                assert_eq!(
                    ready(&p),
                    s3("False", "EnvVarsInjectionRejected", msg),
                    "{}",
                    c.name
                );
                assert_eq!(
                    p.error.as_ref().unwrap().class,
                    ErrorClass::Permanent,
                    "{}",
                    c.name
                );
                assert!(created(&p).is_none());
            }
            Ok(want) => {
                let sb = created(&p).unwrap_or_else(|| panic!("{}: {:?}", c.name, ready(&p)));
                let spec = &sb.spec.blueprint.pod_template.spec;
                for (container, vars) in want {
                    let found = spec
                        .containers
                        .iter()
                        .chain(spec.init_containers.iter().flatten())
                        .find(|x| x.name == container)
                        .unwrap();
                    let got: Vec<(String, String)> = found
                        .env
                        .iter()
                        .flatten()
                        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                        .collect();
                    let want: Vec<(String, String)> = vars
                        .iter()
                        .map(|(a, b)| ((*a).into(), (*b).into()))
                        .collect();
                    assert_eq!(got, want, "{}", c.name);
                }
            }
        }
    }
}

fn vct(name: &str, size: &str) -> PersistentVolumeClaimTemplate {
    PersistentVolumeClaimTemplate {
        metadata: Some(EmbeddedObjectMetadata {
            name: Some(name.into()),
            ..EmbeddedObjectMetadata::default()
        }),
        spec: PersistentVolumeClaimSpec {
            storage_class_name: Some(size.into()),
            ..PersistentVolumeClaimSpec::default()
        },
    }
}

#[test]
fn volume_claim_templates_force_a_cold_start_under_their_policy() {
    struct Case {
        name: &'static str,
        policy: Option<VolumeClaimTemplatesPolicy>,
        claim: Vec<PersistentVolumeClaimTemplate>,
        want: Result<Vec<(&'static str, &'static str)>, &'static str>,
    }
    let cases = vec![
        Case {
            name: "disallowed",
            policy: None,
            claim: vec![vct("extra", "x")],
            want: Err(
                "failed to merge volume claim templates: volume claim templates are disallowed by the template",
            ),
        },
        Case {
            name: "allowed appends",
            policy: Some(VolumeClaimTemplatesPolicy::Allowed),
            claim: vec![vct("extra", "x")],
            want: Ok(vec![("data", "t"), ("extra", "x")]),
        },
        Case {
            name: "allowed refuses same name",
            policy: Some(VolumeClaimTemplatesPolicy::Allowed),
            claim: vec![vct("data", "x")],
            want: Err(
                "failed to merge volume claim templates: overriding volume claim templates is forbidden by the template: cannot override template volume \"data\"",
            ),
        },
        Case {
            name: "overrides replaces and appends",
            policy: Some(VolumeClaimTemplatesPolicy::Overrides),
            claim: vec![vct("extra", "x"), vct("data", "y")],
            want: Ok(vec![("data", "y"), ("extra", "x")]),
        },
        Case {
            name: "empty name",
            policy: Some(VolumeClaimTemplatesPolicy::Overrides),
            claim: vec![vct("", "x")],
            want: Err(
                "failed to merge volume claim templates: claim: invalid volume claim templates: name at index 0 is empty",
            ),
        },
        Case {
            name: "duplicate name",
            policy: Some(VolumeClaimTemplatesPolicy::Overrides),
            claim: vec![vct("a", "x"), vct("a", "y")],
            want: Err(
                "failed to merge volume claim templates: claim: invalid volume claim templates: duplicate name \"a\"",
            ),
        },
    ];
    for c in cases {
        let mut w = World::new();
        let tpl = w.template.as_mut().unwrap();
        tpl.spec.volume_claim_templates_policy = c.policy;
        tpl.spec.blueprint.volume_claim_templates = Some(vec![vct("data", "t")]);
        w.claim.spec.volume_claim_templates = Some(c.claim);
        w.sandboxes = vec![w.member("pool-m", true, None, 0)];
        let p = w.plan();
        assert!(adoption(&p).is_none(), "{}", c.name);
        match c.want {
            Err(msg) => {
                assert_eq!(
                    ready(&p),
                    s3("False", "VolumeClaimTemplatesError", msg),
                    "{}",
                    c.name
                );
                assert_eq!(p.error.as_ref().unwrap().class, ErrorClass::Permanent);
            }
            Ok(want) => {
                let vcts = created(&p)
                    .unwrap()
                    .spec
                    .blueprint
                    .volume_claim_templates
                    .clone()
                    .unwrap();
                let got: Vec<(String, String)> = vcts
                    .iter()
                    .map(|v| {
                        (
                            v.name().to_owned(),
                            v.spec.storage_class_name.clone().unwrap_or_default(),
                        )
                    })
                    .collect();
                let want: Vec<(String, String)> = want
                    .iter()
                    .map(|(a, b)| ((*a).into(), (*b).into()))
                    .collect();
                assert_eq!(got, want, "{}", c.name);
            }
        }
    }
}

#[test]
fn invalid_additional_pod_metadata_is_reported_without_retry() {
    let mut w = World::new();
    w.claim.spec.additional_pod_metadata = Some(PodMetadata {
        labels: Some(map(&[("example.com/team", "a")])),
        annotations: None,
    });
    let p = w.plan();
    assert_eq!(
        ready(&p),
        s3(
            "False",
            "InvalidMetadata",
            "invalid additionalPodMetadata: failed to validate label \"example.com/team\": label domain \"example.com\" is not in the allowlist"
        )
    );
    assert_eq!(p.error.as_ref().unwrap().class, ErrorClass::Permanent);
    assert!(created(&p).is_none());

    w.config.allowed_label_domains = vec!["example.com".into()];
    assert!(created(&w.plan()).is_some());
}

#[test]
fn additions_conflicting_with_the_template_are_a_reconciler_error() {
    let mut w = World::new();
    w.template
        .as_mut()
        .unwrap()
        .spec
        .blueprint
        .pod_template
        .metadata = Some(PodMetadata {
        labels: Some(map(&[("sandbox.users.io/team", "red")])),
        annotations: None,
    });
    w.claim.spec.additional_pod_metadata = Some(PodMetadata {
        labels: Some(map(&[("sandbox.users.io/team", "blue")])),
        annotations: None,
    });
    let p = w.plan();
    assert_eq!(
        ready(&p),
        s3(
            "False",
            "ReconcilerError",
            "Error seen: metadata override conflict: label \"sandbox.users.io/team\" is defined in template with value \"red\", but claim requests \"blue\""
        )
    );
    assert_eq!(p.error.unwrap().class, ErrorClass::Transient);
}

fn bound_world(
    sandbox_conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
) -> World {
    let mut w = World::new();
    let tpl = w.template.clone().unwrap();
    let mut sb = claimed("c", &w.claim);
    sb.metadata.labels = Some(map(&[
        ("agents.x-k8s.io/launch-type", "cold"),
        (
            "agents.x-k8s.io/sandbox-template-ref-hash",
            &name_hash("tpl"),
        ),
    ]));
    sb.spec.blueprint.pod_template.metadata = Some(claim_pod_metadata(&tpl, &w.claim).unwrap());
    sb.status = Some(SandboxStatus {
        conditions: Some(sandbox_conditions),
        pod_ips: Some(vec!["10.0.0.1".into()]),
        ..SandboxStatus::default()
    });
    w.sandboxes = vec![sb];
    w
}

#[test]
fn sandbox_ready_condition_is_forwarded_verbatim_with_the_claim_generation() {
    let mut source = cond(
        "Ready",
        "False",
        "DependenciesNotReady",
        "Pod exists with phase: Pending; Service does not exist",
    );
    source.observed_generation = Some(1);
    let w = bound_world(vec![source.clone()]);
    let p = w.plan();
    assert_eq!(p.actions, vec![], "nothing to change on the Sandbox");
    let c = find(&p.status.conditions, "Ready").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        ("False", "DependenciesNotReady", source.message.as_str())
    );
    assert_eq!(c.observed_generation, Some(3));
    assert_eq!(
        p.status.sandbox.as_ref().unwrap().pod_ips,
        Some(vec!["10.0.0.1".to_owned()])
    );
    assert!(p.write_status);
}

#[test]
fn claim_reasons_for_sandbox_states() {
    let w = bound_world(vec![cond(
        "Ready",
        "False",
        "SandboxExpired",
        "Sandbox has expired",
    )]);
    assert_eq!(
        ready(&w.plan()),
        s3(
            "False",
            "SandboxExpired",
            "Underlying Sandbox resource has expired independently of the Claim."
        )
    );
    let w = bound_world(vec![]);
    assert_eq!(
        ready(&w.plan()),
        s3("False", "SandboxNotReady", "Sandbox is not ready")
    );
}

#[test]
fn finished_is_mirrored_and_removed() {
    let w = bound_world(vec![
        cond(
            "Ready",
            "False",
            "PodSucceeded",
            "Pod completed successfully",
        ),
        cond(
            "Finished",
            "True",
            "PodSucceeded",
            "Pod completed successfully",
        ),
    ]);
    let p = w.plan();
    assert_eq!(
        triple(&p.status.conditions, "Finished"),
        s3("True", "PodSucceeded", "Pod completed successfully")
    );
    assert_eq!(
        ready(&p),
        s3("False", "PodSucceeded", "Pod completed successfully")
    );
    let types: Vec<&str> = p
        .status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(types, vec!["Finished", "Ready"], "sorted by type");

    let mut w = bound_world(vec![cond(
        "Ready",
        "True",
        "DependenciesReady",
        "Pod is Ready",
    )]);
    w.claim.status = Some(p.status);
    let p = w.plan();
    assert!(find(&p.status.conditions, "Finished").is_none());
}

#[test]
fn claim_expiry_marks_first_then_applies_the_policy() {
    let mut w = bound_world(vec![cond(
        "Ready",
        "True",
        "DependenciesReady",
        "Pod is Ready",
    )]);
    w.claim.spec.lifecycle = Some(ClaimLifecycle {
        shutdown_time: Some(t(5)),
        ..ClaimLifecycle::default()
    });
    let p = w.plan();
    assert_eq!(
        ready(&p),
        s3(
            "False",
            "ClaimExpired",
            "Claim expired. Sandbox cleanup initiated."
        )
    );
    assert_eq!(p.requeue_after, Some(Duration::ZERO));
    assert!(p.actions.iter().any(|a| matches!(a, ClaimAction::Event { event } if event.reason == "ClaimExpired" && event.action == "Claim Expired")));
    assert!(!p.actions.iter().any(|a| matches!(
        a,
        ClaimAction::DeleteSandbox { .. } | ClaimAction::DeleteClaim { .. }
    )));

    w.claim.status = Some(p.status);
    for (policy, want) in [
        (
            Some(ClaimShutdownPolicy::Delete),
            Some(Propagation::Background),
        ),
        (
            Some(ClaimShutdownPolicy::DeleteForeground),
            Some(Propagation::Foreground),
        ),
        (None, None),
    ] {
        w.claim.spec.lifecycle.as_mut().unwrap().shutdown_policy = policy;
        let p = w.plan();
        let deleted_claim = p.actions.iter().find_map(|a| match a {
            ClaimAction::DeleteClaim { propagation } => Some(*propagation),
            _ => None,
        });
        assert_eq!(deleted_claim, want);
        if want.is_none() {
            assert!(p.actions.iter().any(|a| matches!(a, ClaimAction::DeleteSandbox { target } if target.name == "c" && target.uid.as_deref() == Some("uid-c"))));
            assert_eq!(
                ready(&p),
                s3(
                    "False",
                    "ClaimExpired",
                    "Claim expired. Sandbox cleanup initiated."
                )
            );
            assert_eq!(bound(&p).as_deref(), Some("c"));
            assert_eq!(p.requeue_after, None);
        } else {
            assert!(!p.write_status);
        }
    }
}

#[test]
fn expired_retain_claim_skips_a_sandbox_it_does_not_own() {
    let mut w = World::new();
    w.claim.spec.lifecycle = Some(ClaimLifecycle {
        shutdown_time: Some(t(5)),
        ..ClaimLifecycle::default()
    });
    w.claim.status = Some(SandboxClaimStatus {
        conditions: Some(vec![cond(
            "Ready",
            "False",
            "ClaimExpired",
            "Claim expired. Sandbox cleanup initiated.",
        )]),
        sandbox: None,
    });
    w.sandboxes = vec![sandbox("c")];
    let p = w.plan();
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, ClaimAction::DeleteSandbox { .. }))
    );
    assert_eq!(
        ready(&p),
        s3(
            "False",
            "ClaimExpired",
            "Claim expired. sandbox not owned by this claim: sandbox \"c\" is not owned by claim \"c\"; deletion skipped."
        )
    );
    assert_eq!(p.error.unwrap().class, ErrorClass::Permanent);
}

#[test]
fn expiry_is_the_earlier_of_shutdown_time_and_finished_plus_ttl() {
    let mut w = bound_world(vec![cond(
        "Ready",
        "True",
        "DependenciesReady",
        "Pod is Ready",
    )]);
    let finished = cond("Finished", "True", "PodSucceeded", "done");
    w.claim.status = Some(SandboxClaimStatus {
        conditions: Some(vec![finished.clone()]),
        sandbox: None,
    });
    w.claim.spec.lifecycle = Some(ClaimLifecycle {
        shutdown_time: Some(t(100)),
        ttl_seconds_after_finished: Some(30),
        shutdown_policy: None,
    });
    assert_eq!(
        claim_expiry(&w.claim, std::slice::from_ref(&finished)),
        Some(t(30))
    );
    assert_eq!(claim_expiry(&w.claim, &[]), Some(t(100)));
    w.now = t(31);
    let p = w.plan();
    assert_eq!(ready(&p).unwrap().1, "ClaimExpired");

    // A Finished condition that arrives in this pass expires the claim in the same pass.
    let mut w = bound_world(vec![
        cond(
            "Ready",
            "False",
            "PodSucceeded",
            "Pod completed successfully",
        ),
        cond(
            "Finished",
            "True",
            "PodSucceeded",
            "Pod completed successfully",
        ),
    ]);
    w.claim.spec.lifecycle = Some(ClaimLifecycle {
        ttl_seconds_after_finished: Some(0),
        ..ClaimLifecycle::default()
    });
    let p = w.plan();
    assert_eq!(ready(&p).unwrap().1, "ClaimExpired");
    assert_eq!(p.requeue_after, Some(Duration::ZERO));
}

#[test]
fn first_observation_and_first_ready_are_stamped_once() {
    let mut w = bound_world(vec![cond(
        "Ready",
        "True",
        "DependenciesReady",
        "Pod is Ready",
    )]);
    w.claim.metadata.annotations = None;
    w.sandboxes[0].metadata.annotations =
        Some(map(&[("agents.x-k8s.io/sandbox-template-ref", "tpl")]));
    let p = w.plan();
    assert!(
        claim_patches(&p).is_empty(),
        "nothing is written before the status"
    );
    let annotate = p
        .annotate
        .as_ref()
        .expect("the annotations, after the status");
    assert_eq!(annotate.resource_version, None);
    assert_eq!(
        annotate
            .annotations
            .get("agents.x-k8s.io/controller-first-observed-at"),
        Some(&Some(paddock_plan::time::rfc3339_nano(&t(10))))
    );
    assert_eq!(
        annotate
            .annotations
            .get("agents.x-k8s.io/claim-first-ready-at"),
        Some(&Some(paddock_plan::time::rfc3339_nano(&t(10))))
    );
    assert_eq!(
        p.first_ready,
        Some(FirstReady {
            launch_type: "cold".into(),
            sandbox_template: "tpl".into()
        })
    );
    w.claim.metadata.annotations = Some(map(&[
        ("agents.x-k8s.io/controller-first-observed-at", "x"),
        ("agents.x-k8s.io/claim-first-ready-at", "y"),
    ]));
    let p = w.plan();
    assert!(claim_patches(&p).is_empty() && p.annotate.is_none());
    assert_eq!(p.first_ready, None);

    w.config.observability_annotations = false;
    w.claim.metadata.annotations = None;
    let p = w.plan();
    assert!(claim_patches(&p).is_empty() && p.annotate.is_none());
    assert!(p.first_ready.is_some(), "the metrics still count it");
}

#[test]
fn legacy_per_claim_network_policy_is_deleted_when_the_claim_controls_it() {
    let mut w = World::new();
    let np = NetworkPolicy {
        metadata: ObjectMeta {
            name: Some("c-network-policy".into()),
            uid: Some("np1".into()),
            owner_references: Some(vec![controller_ref(
                "extensions.agents.x-k8s.io/v1alpha1",
                "SandboxClaim",
                "c",
                "uid-c",
            )]),
            ..ObjectMeta::default()
        },
        spec: None,
    };
    w.legacy_np = Some(np.clone());
    let p = w.plan();
    assert!(
        matches!(&p.actions[0], ClaimAction::DeleteLegacyNetworkPolicy { target } if target.uid.as_deref() == Some("np1"))
    );
    let mut foreign = np;
    foreign.metadata.owner_references = None;
    w.legacy_np = Some(foreign);
    assert!(
        !w.plan()
            .actions
            .iter()
            .any(|a| matches!(a, ClaimAction::DeleteLegacyNetworkPolicy { .. }))
    );
}

#[test]
fn deleting_claim_only_cleans_up_the_legacy_policy() {
    let mut w = World::new();
    w.claim.metadata.deletion_timestamp = Some(t(1));
    let p = w.plan();
    assert_eq!(p.actions, vec![]);
    assert!(!p.write_status);
}

#[test]
fn failures_map_to_claim_reasons() {
    let mut w = World::new();
    w.sandboxes = vec![w.member("pool-m", true, None, 0)];
    let p = w.plan();
    let adopt_index = p
        .actions
        .iter()
        .position(|a| matches!(a, ClaimAction::Adopt { .. }))
        .unwrap();
    let out = claim_status_after_failure(
        &w.input(),
        &p,
        &ApplyFailure {
            action_index: adopt_index,
            kind: FailureKind::Conflict,
            message: "409".into(),
        },
    );
    let status = out.status.unwrap();
    assert_eq!(
        triple(&status.conditions, "Ready").unwrap().1,
        "AdoptionConflict"
    );
    assert_eq!(
        status.sandbox, None,
        "no binding to the member that was lost"
    );
    assert_eq!(out.requeue_after, Some(Duration::ZERO));

    let mut w = World::new();
    w.sandboxes.clear();
    let p = w.plan();
    let create_index = p
        .actions
        .iter()
        .position(|a| matches!(a, ClaimAction::CreateSandbox { .. }))
        .unwrap();
    let out = claim_status_after_failure(
        &w.input(),
        &p,
        &ApplyFailure {
            action_index: create_index,
            kind: FailureKind::AlreadyExists,
            message: "exists".into(),
        },
    );
    assert_eq!(
        triple(&out.status.unwrap().conditions, "Ready").unwrap().1,
        "SandboxCreatePending"
    );
    assert_eq!(out.requeue_after, Some(Duration::from_millis(200)));

    let out = claim_status_after_failure(
        &w.input(),
        &p,
        &ApplyFailure {
            action_index: create_index,
            kind: FailureKind::Other,
            message: "etcd down".into(),
        },
    );
    assert_eq!(
        triple(&out.status.unwrap().conditions, "Ready"),
        s3("False", "ReconcilerError", "Error seen: etcd down")
    );
    assert_eq!(out.error.class, ErrorClass::Transient);
}

#[test]
fn claim_plan_serialises() {
    let mut w = World::new();
    w.sandboxes = vec![w.member("pool-m", true, None, 0)];
    let p = w.plan();
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["actions"][0]["action"], "adopt");
    let back: ClaimPlan = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn a_status_naming_a_member_still_seen_in_its_pool_waits_for_the_cache() {
    // Another controller adopted pool-m and wrote this status; this one's cache lags.
    let mut w = World::new();
    w.sandboxes = vec![
        w.member("pool-m", true, None, 0),
        w.member("pool-n", true, None, 1),
    ];
    w.claim.status = Some(SandboxClaimStatus {
        sandbox: Some(ClaimSandboxStatus {
            name: Some("pool-m".into()),
            pod_ips: None,
        }),
        conditions: Some(vec![cond(
            "Ready",
            "True",
            "DependenciesReady",
            "Pod is Ready",
        )]),
    });
    let p = w.plan();
    assert!(p.actions.is_empty(), "no second adoption: {:?}", p.actions);
    assert!(!p.write_status, "the Ready status stays");
    assert_eq!(p.requeue_after, Some(Duration::from_millis(50)));
}
