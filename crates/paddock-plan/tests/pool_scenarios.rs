//! SandboxWarmPool planner scenarios (contract §2.4), one per behaviour.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_api::names::{name_hash, warm_pool_selector};
use paddock_api::v1beta1::*;
use paddock_plan::hash::{blueprint_hash, pod_template_hash};
use paddock_plan::outcome::EventType;
use paddock_plan::ownership::controller_ref;
use paddock_plan::pool::*;

struct World {
    pool: SandboxWarmPool,
    template: Option<SandboxTemplate>,
    members: Vec<Sandbox>,
    expectations: PoolExpectations,
    seen_created: BTreeSet<String>,
    allowance: Option<u32>,
    was_not_progressing: bool,
    config: PoolConfig,
    now: Time,
}

impl World {
    fn new(replicas: Option<i32>) -> Self {
        Self {
            pool: pool("pool", "tpl", replicas),
            template: Some(template("tpl")),
            members: vec![],
            expectations: PoolExpectations::default(),
            seen_created: BTreeSet::new(),
            allowance: None,
            was_not_progressing: false,
            config: PoolConfig::default(),
            now: t(10),
        }
    }

    fn member(&self, name: &str, ready: bool, created: i64) -> Sandbox {
        member(
            &self.pool,
            self.template.as_ref().unwrap(),
            name,
            ready,
            None,
            created,
        )
    }

    fn plan(&self) -> PoolPlan {
        plan_pool(&PoolInput {
            pool: &self.pool,
            template: self.template.as_ref(),
            members: self.members.iter().collect(),
            expectations: &self.expectations,
            seen_created: self.seen_created.clone(),
            create_allowance: self.allowance,
            was_not_progressing: self.was_not_progressing,
            now: &self.now,
            config: &self.config,
        })
    }
}

fn creates(p: &PoolPlan) -> Vec<&Sandbox> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            PoolAction::CreateMember { sandbox } => Some(sandbox.as_ref()),
            _ => None,
        })
        .collect()
}

fn deletes(p: &PoolPlan) -> Vec<(String, DeleteReason)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            PoolAction::DeleteMember { target, reason } => Some((target.name.clone(), *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn pool_creates_members_up_to_replicas_defaulting_to_one() {
    assert_eq!(creates(&World::new(None).plan()).len(), 1);
    let mut w = World::new(Some(3));
    w.members = vec![w.member("pool-a", true, 0)];
    let p = w.plan();
    assert_eq!(creates(&p).len(), 2);
    assert_eq!(p.wanted_creates, 2);
    assert_eq!(p.expectations.since, Some(t(10)));
}

#[test]
fn member_object_carries_every_label_annotation_and_default() {
    let w = World::new(Some(1));
    let p = w.plan();
    let m = creates(&p)[0];
    let tpl = w.template.as_ref().unwrap();
    assert_eq!(m.metadata.generate_name.as_deref(), Some("pool-"));
    assert_eq!(m.metadata.name, None);
    assert_eq!(m.metadata.namespace.as_deref(), Some(NS));
    let identity = [
        ("agents.x-k8s.io/warm-pool-sandbox", name_hash("pool")),
        (
            "agents.x-k8s.io/sandbox-template-ref-hash",
            name_hash("tpl"),
        ),
        (
            "agents.x-k8s.io/sandbox-pod-template-hash",
            pod_template_hash(&tpl.spec.blueprint.pod_template),
        ),
        (
            "agents.x-k8s.io/sandbox-template-hash",
            blueprint_hash(&tpl.spec.blueprint),
        ),
    ];
    let labels = m.metadata.labels.clone().unwrap();
    for (k, v) in &identity {
        assert_eq!(labels.get(*k), Some(v), "{k}");
    }
    assert_eq!(
        labels
            .get("agents.x-k8s.io/launch-type")
            .map(String::as_str),
        Some("warm")
    );
    assert_eq!(
        labels.get("agents.x-k8s.io/created-by").map(String::as_str),
        Some("controller")
    );
    assert_eq!(
        m.metadata.annotations.clone().unwrap(),
        map(&[("agents.x-k8s.io/sandbox-template-ref", "tpl")])
    );
    let pod_meta = m.spec.blueprint.pod_template.metadata.clone().unwrap();
    let pod_labels = pod_meta.labels.unwrap();
    for (k, v) in &identity {
        assert_eq!(pod_labels.get(*k), Some(v), "pod template {k}");
    }
    assert_eq!(pod_labels.get("app").map(String::as_str), Some("agent"));
    assert_eq!(
        pod_meta
            .annotations
            .unwrap()
            .get("cluster-autoscaler.kubernetes.io/safe-to-evict")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        m.spec
            .blueprint
            .pod_template
            .spec
            .automount_service_account_token,
        Some(false)
    );
    assert_eq!(
        m.spec.blueprint.pod_template.spec.dns_policy.as_deref(),
        Some("None")
    );
    assert_eq!(
        m.metadata.owner_references,
        Some(vec![controller_ref(
            "extensions.agents.x-k8s.io/v1beta1",
            "SandboxWarmPool",
            "pool",
            "uid-pool"
        )])
    );
    assert_eq!(m.spec.lifecycle, Lifecycle::default());
}

#[test]
fn eviction_annotation_respects_the_flag_and_the_template() {
    let mut w = World::new(Some(1));
    w.config.enable_eviction_annotation = false;
    let p = w.plan();
    let ann = creates(&p)[0]
        .spec
        .blueprint
        .pod_template
        .metadata
        .clone()
        .unwrap()
        .annotations
        .unwrap();
    assert!(!ann.contains_key("cluster-autoscaler.kubernetes.io/safe-to-evict"));

    let mut w = World::new(Some(1));
    w.template
        .as_mut()
        .unwrap()
        .spec
        .blueprint
        .pod_template
        .metadata = Some(PodMetadata {
        labels: None,
        annotations: Some(map(&[(
            "cluster-autoscaler.kubernetes.io/safe-to-evict",
            "false",
        )])),
    });
    let p = w.plan();
    let ann = creates(&p)[0]
        .spec
        .blueprint
        .pod_template
        .metadata
        .clone()
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(
        ann.get("cluster-autoscaler.kubernetes.io/safe-to-evict")
            .map(String::as_str),
        Some("false")
    );
}

#[test]
fn creates_are_capped_by_batch_size_and_allowance() {
    let mut w = World::new(Some(10));
    w.config.max_batch_size = 4;
    assert_eq!(creates(&w.plan()).len(), 4);
    w.allowance = Some(1);
    let p = w.plan();
    assert_eq!(creates(&p).len(), 1);
    assert_eq!(p.wanted_creates, 4);
    w.allowance = Some(0);
    assert_eq!(creates(&w.plan()).len(), 0);
}

#[test]
fn pool_waits_for_its_creates_to_be_observed_before_creating_again() {
    let mut w = World::new(Some(3));
    w.expectations.record_created("pool-a");
    w.expectations.record_created("pool-b");
    w.expectations.since = Some(t(9));
    w.members = vec![w.member("pool-a", false, 9)];
    let p = w.plan();
    assert_eq!(creates(&p).len(), 0, "pool-b is not visible yet");
    assert_eq!(p.requeue_after, Some(Duration::from_secs(30)));
    assert_eq!(
        p.expectations.creates,
        BTreeSet::from(["pool-b".to_owned()])
    );

    // A member a claim adopted before the pool saw it still counts as observed.
    w.seen_created.insert("pool-b".into());
    let p = w.plan();
    assert_eq!(creates(&p).len(), 2);
    assert!(p.expectations.creates.is_empty());

    // Expectations expire after five minutes.
    w.seen_created.clear();
    w.now = t(9 + 301);
    let p = w.plan();
    assert_eq!(creates(&p).len(), 2);
}

#[test]
fn status_reports_replicas_ready_selector_and_generation() {
    let mut w = World::new(Some(3));
    w.members = vec![
        w.member("pool-a", true, 0),
        w.member("pool-b", false, 5),
        w.member("pool-c", true, 1),
    ];
    let p = w.plan();
    assert_eq!(
        p.status,
        SandboxWarmPoolStatus {
            replicas: Some(3),
            ready_replicas: Some(2),
            selector: Some(warm_pool_selector("pool")),
            observed_generation: Some(3),
        }
    );
    assert!(p.write_status);
    w.pool.status = Some(p.status.clone());
    assert!(!w.plan().write_status);
}

#[test]
fn pool_scales_down_not_ready_then_newest() {
    let mut w = World::new(Some(1));
    w.members = vec![
        w.member("old-ready", true, 0),
        w.member("new-ready", true, 8),
        w.member("mid-not-ready", false, 4),
        w.member("old-not-ready", false, 1),
    ];
    let p = w.plan();
    let order: Vec<String> = deletes(&p).into_iter().map(|(n, _)| n).collect();
    assert_eq!(order, vec!["mid-not-ready", "old-not-ready", "new-ready"]);
    assert!(
        deletes(&p)
            .iter()
            .all(|(_, r)| *r == DeleteReason::ScaleDown)
    );
    assert_eq!(p.expectations.deletes.len(), 3);
    // Deletes are conditional on uid and resourceVersion.
    let target = p.actions.iter().find_map(|a| match a {
        PoolAction::DeleteMember { target, .. } => Some(target),
        _ => None,
    });
    assert_eq!(
        target.unwrap().resource_version.as_deref(),
        Some("rv-mid-not-ready")
    );
    assert_eq!(target.unwrap().uid.as_deref(), Some("uid-mid-not-ready"));

    w.config.max_batch_size = 1;
    assert_eq!(deletes(&w.plan()).len(), 1);
}

#[test]
fn scale_down_waits_for_outstanding_expectations() {
    let mut w = World::new(Some(1));
    w.members = vec![w.member("a", true, 0), w.member("b", true, 1)];
    w.expectations.record_created("c");
    w.expectations.since = Some(t(9));
    let p = w.plan();
    assert!(deletes(&p).is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(30)));
}

#[test]
fn deleted_members_count_as_terminating_until_gone() {
    let mut w = World::new(Some(2));
    let mut gone = w.member("a", true, 0);
    gone.metadata.deletion_timestamp = Some(t(9));
    w.members = vec![gone, w.member("b", true, 1)];
    let p = w.plan();
    assert_eq!(
        creates(&p).len(),
        0,
        "the terminating member still occupies its slot"
    );
    assert_eq!(p.status.replicas, Some(1));

    // A member this pool deleted but the cache still shows live also counts as terminating.
    let mut w = World::new(Some(2));
    w.members = vec![w.member("a", true, 0), w.member("b", true, 1)];
    w.expectations.deletes.insert("a".into());
    w.expectations.since = Some(t(9));
    let p = w.plan();
    assert_eq!(creates(&p).len(), 0);
    assert_eq!(p.status.replicas, Some(1));
    assert_eq!(p.expectations.deletes, BTreeSet::from(["a".to_owned()]));
}

fn stale_variants(w: &World) -> Vec<(&'static str, Sandbox, bool)> {
    let base = w.member("m", true, 0);
    let mut renamed = base.clone();
    renamed.metadata.labels.as_mut().unwrap().insert(
        "agents.x-k8s.io/sandbox-template-ref-hash".into(),
        name_hash("other-template"),
    );
    let mut old_hash_same_spec = base.clone();
    old_hash_same_spec.metadata.labels.as_mut().unwrap().insert(
        "agents.x-k8s.io/sandbox-template-hash".into(),
        "00000000".into(),
    );
    let mut old_hash_new_image = old_hash_same_spec.clone();
    old_hash_new_image
        .spec
        .blueprint
        .pod_template
        .spec
        .containers[0]
        .image = Some("python:2".into());
    let mut old_hash_new_service = old_hash_same_spec.clone();
    old_hash_new_service.spec.blueprint.service = Some(true);
    let mut old_hash_metadata_only = old_hash_same_spec.clone();
    old_hash_metadata_only.spec.blueprint.pod_template.metadata = None;
    vec![
        ("fresh", base, false),
        ("another template", renamed, true),
        ("hash differs, spec equal", old_hash_same_spec, false),
        ("image differs", old_hash_new_image, true),
        ("service differs", old_hash_new_service, true),
        ("metadata-only difference", old_hash_metadata_only, false),
    ]
}

#[test]
fn staleness_follows_template_ref_hash_blueprint_hash_then_semantics() {
    let w = World::new(Some(1));
    let fp = TemplateFingerprint::new(w.template.as_ref().unwrap());
    for (name, m, stale) in stale_variants(&w) {
        assert_eq!(fp.is_stale(&m), stale, "{name}");
    }
}

#[test]
fn recreate_deletes_stale_members_and_on_replenish_keeps_them() {
    for (strategy, deleted) in [
        (Some(WarmPoolUpdateStrategyType::Recreate), true),
        (Some(WarmPoolUpdateStrategyType::OnReplenish), false),
        (None, false),
    ] {
        let mut w = World::new(Some(1));
        w.pool.spec.update_strategy = Some(WarmPoolUpdateStrategy { type_: strategy });
        let mut m = w.member("m", true, 0);
        m.spec.blueprint.pod_template.spec.containers[0].image = Some("python:2".into());
        m.metadata.labels.as_mut().unwrap().insert(
            "agents.x-k8s.io/sandbox-template-hash".into(),
            "00000000".into(),
        );
        w.members = vec![m];
        let p = w.plan();
        assert_eq!(
            deletes(&p),
            if deleted {
                vec![("m".to_owned(), DeleteReason::Stale)]
            } else {
                vec![]
            }
        );
        assert_eq!(
            creates(&p).len(),
            0,
            "replacement waits until the stale member is gone"
        );
    }
}

#[test]
fn orphans_are_adopted_when_fresh_and_deleted_when_stale() {
    let mut w = World::new(Some(2));
    let mut fresh = w.member("fresh", true, 0);
    fresh.metadata.owner_references = None;
    fresh
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .remove("agents.x-k8s.io/launch-type");
    let mut stale = w.member("stale", true, 0);
    stale.metadata.owner_references = None;
    stale.spec.blueprint.pod_template.spec.containers[0].image = Some("python:2".into());
    stale
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("agents.x-k8s.io/sandbox-template-hash".into(), "0".into());
    w.members = vec![fresh, stale];
    let p = w.plan();
    let patch = p
        .actions
        .iter()
        .find_map(|a| match a {
            PoolAction::PatchMember { name, patch } if name == "fresh" => Some(patch),
            _ => None,
        })
        .unwrap();
    assert_eq!(patch.resource_version.as_deref(), Some("rv-fresh"));
    assert_eq!(patch.owner_references.as_ref().unwrap()[0].uid, "uid-pool");
    assert_eq!(
        patch.labels.get("agents.x-k8s.io/launch-type"),
        Some(&Some("warm".to_owned()))
    );
    assert_eq!(
        deletes(&p),
        vec![("stale".to_owned(), DeleteReason::StaleOrphan)]
    );
    assert_eq!(p.status.replicas, Some(1));
}

#[test]
fn members_owned_by_someone_else_are_ignored() {
    let mut w = World::new(Some(1));
    let mut m = w.member("m", true, 0);
    m.metadata.owner_references = Some(vec![controller_ref(
        "extensions.agents.x-k8s.io/v1beta1",
        "SandboxClaim",
        "c",
        "uid-c",
    )]);
    w.members = vec![m];
    let p = w.plan();
    assert_eq!(p.status.replicas, Some(0));
    assert_eq!(creates(&p).len(), 1);
    assert!(deletes(&p).is_empty());
}

#[test]
fn owned_member_without_launch_type_gets_it() {
    let mut w = World::new(Some(1));
    let mut m = w.member("m", true, 0);
    m.metadata
        .labels
        .as_mut()
        .unwrap()
        .remove("agents.x-k8s.io/launch-type");
    w.members = vec![m];
    let p = w.plan();
    assert!(
        matches!(&p.actions[..], [PoolAction::PatchMember { name, patch }] if name == "m" && patch.labels.get("agents.x-k8s.io/launch-type") == Some(&Some("warm".to_owned())))
    );
}

#[test]
fn not_ready_member_within_grace_is_kept_and_the_pool_requeues_at_the_deadline() {
    let mut w = World::new(Some(1));
    w.members = vec![w.member("m", false, 0)];
    w.now = t(100);
    let p = w.plan();
    assert!(deletes(&p).is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(300 - 100 + 2)));
}

#[test]
fn not_ready_member_past_grace_is_replaced() {
    let mut w = World::new(Some(1));
    w.members = vec![w.member("m", false, 0)];
    w.now = t(301);
    let p = w.plan();
    assert_eq!(
        deletes(&p),
        vec![("m".to_owned(), DeleteReason::NotReadyAfterGrace)]
    );
    assert_eq!(
        creates(&p).len(),
        0,
        "replaced once the deletion is observed"
    );
}

#[test]
fn unschedulable_member_past_grace_is_held_with_a_warning() {
    let mut w = World::new(Some(1));
    let mut m = w.member("m", false, 0);
    m.status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()
        .push(cond(
            "PodScheduled",
            "False",
            "Unschedulable",
            "0/3 nodes are available",
        ));
    w.members = vec![m];
    w.now = t(400);
    let p = w.plan();
    assert!(deletes(&p).is_empty());
    assert!(p.not_progressing);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(60)));
    let event = p.actions.iter().find_map(|a| match a {
        PoolAction::Event { event } => Some(event),
        _ => None,
    });
    assert_eq!(
        event.map(|e| (e.type_, e.reason.as_str())),
        Some((EventType::Warning, "WarmPoolNotProgressing"))
    );

    // No repeated warning; a Progressing event once the pool recovers.
    w.was_not_progressing = true;
    assert!(
        !w.plan()
            .actions
            .iter()
            .any(|a| matches!(a, PoolAction::Event { .. }))
    );
    w.members = vec![w.member("m", true, 0)];
    let p = w.plan();
    assert!(!p.not_progressing);
    assert!(p.actions.iter().any(|a| matches!(a, PoolAction::Event { event } if event.reason == "WarmPoolProgressing" && event.type_ == EventType::Normal)));
}

#[test]
fn missing_template_blocks_creates_and_reports_an_error() {
    let mut w = World::new(Some(2));
    w.template = None;
    let p = w.plan();
    assert!(creates(&p).is_empty());
    assert!(p.error.unwrap().message.contains("SandboxTemplate \"tpl\""));
    assert_eq!(p.status.replicas, Some(0));
}

#[test]
fn deleting_pool_does_nothing_and_forgets_expectations() {
    let mut w = World::new(Some(2));
    w.pool.metadata.deletion_timestamp = Some(t(1));
    w.expectations.record_created("x");
    let p = w.plan();
    assert_eq!(p.actions, vec![]);
    assert!(p.expectations.is_empty());
}

#[test]
fn zero_replicas_keeps_nothing() {
    let mut w = World::new(Some(0));
    w.members = vec![w.member("a", true, 0)];
    let p = w.plan();
    assert_eq!(deletes(&p).len(), 1);
    assert!(creates(&p).is_empty());
}

#[test]
fn pool_plan_serialises() {
    let p = World::new(Some(1)).plan();
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["actions"][0]["action"], "createMember");
    let back: PoolPlan = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
}
