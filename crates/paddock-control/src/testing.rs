//! The conformance suite: scenarios every tier runs against its own adapter — the embedded
//! engine over its store and a recording runtime, the Kubernetes controller over the in-memory
//! API server with a stand-in kubelet — so behaviour that drifts between the tiers fails a
//! test. A tier implements [`Tier`]; [`conformance_suite!`](crate::conformance_suite) turns
//! every scenario into a `#[tokio::test]` for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_api::conditions::{self as conds, types};
use paddock_api::kinds::Kind;
use paddock_api::names;
use paddock_api::stored::{Object, StoredKind};
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate, SandboxWarmPool};
use serde_json::{Value, json};

use crate::core::Core;
use crate::ports::{BoxFuture, Clock};

/// A clock at the wall-clock time plus an offset the test moves: time flows (deadlines the
/// loops requeue for arrive), and what the planners see is under the test's control.
#[derive(Debug, Default)]
pub struct TestClock {
    offset: Mutex<jiff::SignedDuration>,
}

impl TestClock {
    /// Moves the clock `by` into the future.
    pub fn advance(&self, by: Duration) {
        let mut o = self.offset.lock().unwrap();
        *o = o.saturating_add(jiff::SignedDuration::try_from(by).unwrap());
    }
}

impl Clock for TestClock {
    fn now(&self) -> Time {
        let offset = *self.offset.lock().unwrap();
        Time(jiff::Timestamp::now().checked_add(offset).unwrap())
    }
}

/// A tier under test: a running core over the tier's real ports, and the tier's store as a
/// user reaches it.
pub trait Tier: Send + Sync {
    /// The running core.
    fn core(&self) -> &Arc<Core>;

    /// The clock the core's planners see.
    fn clock(&self) -> &TestClock;

    /// Creates an object in the tier's store, as a user would; returns it as stored.
    fn create(&self, object: Object) -> BoxFuture<'_, Object>;

    /// Reads an object from the tier's store (not the core's cache).
    fn get(&self, kind: Kind, namespace: &str, name: &str) -> BoxFuture<'_, Option<Object>>;

    /// Lists the objects of a kind in a namespace from the tier's store.
    fn list(&self, kind: Kind, namespace: &str) -> BoxFuture<'_, Vec<Object>>;

    /// Merge-patches an object's spec or metadata in the tier's store, as a user would.
    fn patch(&self, kind: Kind, namespace: &str, name: &str, patch: Value) -> BoxFuture<'_, ()>;
}

/// The namespace every scenario works in.
pub const NS: &str = "conformance";

/// Decodes a stored object from JSON written in a scenario.
pub fn object(kind: Kind, value: Value) -> Object {
    Object::from_value(kind, value).expect("a valid object")
}

/// Waits (at most 20 s) until `check` answers `Some`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get_typed<K: StoredKind>(tier: &impl Tier, name: &str) -> Option<K> {
    tier.get(K::KIND, NS, name)
        .await
        .and_then(Object::into_typed)
}

fn ready_reason(
    conditions: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]>,
) -> Option<(String, String)> {
    conditions
        .and_then(|c| conds::find(c, types::READY))
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn sandbox_ready(sb: &Sandbox) -> bool {
    sb.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .is_some_and(|c| conds::is_true(c, types::READY))
}

fn claim_ready(claim: &SandboxClaim) -> bool {
    claim
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .is_some_and(|c| conds::is_true(c, types::READY))
}

fn template(name: &str) -> Object {
    object(
        Kind::SandboxTemplate,
        json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "host"}]}}}
        }),
    )
}

fn pool(name: &str, template: &str, replicas: i32) -> Object {
    object(
        Kind::SandboxWarmPool,
        json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxWarmPool",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "sandboxTemplateRef": {"name": template}}
        }),
    )
}

fn claim(name: &str, pool: &str, extra_spec: Value) -> Object {
    let mut spec = json!({"warmPoolRef": {"name": pool}});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    object(
        Kind::SandboxClaim,
        json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec
        }),
    )
}

async fn ready_pool(tier: &impl Tier, name: &str, replicas: i32) -> Vec<Sandbox> {
    tier.create(template("tpl")).await;
    tier.create(pool(name, "tpl", replicas)).await;
    let want = usize::try_from(replicas).unwrap();
    eventually("the pool's members to be Ready", || async {
        let members: Vec<Sandbox> = tier
            .list(Kind::Sandbox, NS)
            .await
            .into_iter()
            .filter_map(Object::into_typed::<Sandbox>)
            .filter(|s| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(names::WARM_POOL_SANDBOX))
                    == Some(&names::name_hash(name))
            })
            .collect();
        (members.len() == want && members.iter().all(sandbox_ready)).then_some(members)
    })
    .await
}

/// A Sandbox gets its pod and Service and becomes Ready with the status upstream writes.
pub async fn sandbox_becomes_ready_with_its_status(tier: impl Tier) {
    tier.create(object(
        Kind::Sandbox,
        json!({
            "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
            "metadata": {"name": "sb", "namespace": NS},
            "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "host"}]}}}
        }),
    ))
    .await;
    let sb: Sandbox = eventually("the Sandbox to be Ready", || async {
        get_typed::<Sandbox>(&tier, "sb")
            .await
            .filter(sandbox_ready)
    })
    .await;
    let status = sb.status.clone().unwrap();
    assert_eq!(
        status.selector.as_deref(),
        Some(names::sandbox_selector("sb").as_str())
    );
    assert!(status.pod_ips.is_some_and(|ips| !ips.is_empty()));
    assert_eq!(
        sb.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::POD_NAME))
            .map(String::as_str),
        Some("sb")
    );
    let ready = conds::find(status.conditions.as_deref().unwrap(), types::READY).unwrap();
    assert_eq!(ready.reason, "DependenciesReady");
    assert_eq!(ready.observed_generation, sb.metadata.generation);
}

/// A template gets its ref-hash label; a pool fills to its replicas and reports them Ready.
pub async fn pool_fills_to_its_replicas_and_reports_them(tier: impl Tier) {
    let members = ready_pool(&tier, "pool", 2).await;
    assert_eq!(members.len(), 2);
    let tpl = eventually("the template's ref-hash label", || async {
        get_typed::<SandboxTemplate>(&tier, "tpl")
            .await
            .filter(|t| {
                t.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(names::SANDBOX_TEMPLATE_REF_HASH))
                    == Some(&names::name_hash("tpl"))
            })
    })
    .await;
    assert!(tpl.metadata.labels.is_some());
    eventually("the pool's status", || async {
        get_typed::<SandboxWarmPool>(&tier, "pool")
            .await
            .and_then(|p| p.status)
            .filter(|s| s.ready_replicas == Some(2) && s.replicas == Some(2))
    })
    .await;
}

/// A claim adopts a Ready member (no new Sandbox started for it), and the pool refills.
pub async fn claim_adopts_a_ready_member_and_the_pool_refills(tier: impl Tier) {
    let members = ready_pool(&tier, "pool", 1).await;
    let member = members[0].metadata.name.clone().unwrap();
    tier.create(claim("c1", "pool", json!({}))).await;
    let c = eventually("the claim to be Ready", || async {
        get_typed::<SandboxClaim>(&tier, "c1")
            .await
            .filter(claim_ready)
    })
    .await;
    let bound = c
        .status
        .as_ref()
        .and_then(|s| s.sandbox.as_ref())
        .and_then(|s| s.name.clone());
    assert_eq!(
        bound.as_deref(),
        Some(member.as_str()),
        "the Ready member is adopted"
    );
    let adopted = get_typed::<Sandbox>(&tier, &member).await.unwrap();
    let owner = paddock_plan::ownership::controller_of_meta(&adopted.metadata).unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("SandboxClaim", "c1")
    );
    assert!(
        adopted
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(names::WARM_POOL_SANDBOX))
            .is_none(),
        "an adopted member leaves its pool"
    );
    eventually("the pool to refill", || async {
        let fresh: Vec<Sandbox> = tier
            .list(Kind::Sandbox, NS)
            .await
            .into_iter()
            .filter_map(Object::into_typed::<Sandbox>)
            .filter(|s| s.metadata.name.as_deref() != Some(member.as_str()))
            .filter(sandbox_ready)
            .collect();
        (fresh.len() == 1).then_some(())
    })
    .await;
}

/// A pool waits its replenish delay after a member is adopted before it starts the
/// replacement, so the claim (and its first command) has the machine to itself. The tier must
/// configure a delay of at least a second.
pub async fn pool_holds_its_refill_after_an_adoption(tier: impl Tier) {
    let delay = tier.core().config().replenish_delay;
    assert!(
        delay >= Duration::from_secs(1),
        "the tier under test must set a replenish delay of at least 1 s (it has {delay:?})"
    );
    let members = ready_pool(&tier, "pool", 1).await;
    let member = members[0].metadata.name.clone().unwrap();
    let claimed = tokio::time::Instant::now();
    tier.create(claim("c1", "pool", json!({}))).await;
    eventually("the claim to be Ready", || async {
        get_typed::<SandboxClaim>(&tier, "c1")
            .await
            .filter(claim_ready)
    })
    .await;
    let others = || async {
        tier.list(Kind::Sandbox, NS)
            .await
            .into_iter()
            .filter_map(Object::into_typed::<Sandbox>)
            .filter(|s| s.metadata.name.as_deref() != Some(member.as_str()))
            .count()
    };
    if claimed.elapsed() < delay / 2 {
        assert_eq!(
            others().await,
            0,
            "no replacement while the hold lasts ({delay:?} after the adoption)"
        );
    }
    eventually("the pool to refill after the hold", || async {
        (others().await == 1).then_some(())
    })
    .await;
    assert!(
        claimed.elapsed() >= delay,
        "the replacement came {:?} after the claim, before the {delay:?} hold ended",
        claimed.elapsed()
    );
}

/// A claim whose pool does not exist (a v1alpha1 claim's `shadow-pool-<template>`) gets a cold
/// Sandbox named like itself.
pub async fn claim_without_a_pool_gets_a_cold_sandbox_named_like_it(tier: impl Tier) {
    tier.create(template("tpl")).await;
    tier.create(claim("cold", &names::shadow_pool_name("tpl"), json!({})))
        .await;
    let c = eventually("the claim to be Ready", || async {
        get_typed::<SandboxClaim>(&tier, "cold")
            .await
            .filter(claim_ready)
    })
    .await;
    let bound = c.status.and_then(|s| s.sandbox).and_then(|s| s.name);
    assert_eq!(bound.as_deref(), Some("cold"));
    let sb = get_typed::<Sandbox>(&tier, "cold").await.unwrap();
    assert_eq!(
        sb.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(names::LAUNCH_TYPE))
            .map(String::as_str),
        Some(names::LAUNCH_TYPE_COLD)
    );
}

/// A claim naming a pool that is missing and no template either says so, exactly.
pub async fn claim_of_a_missing_pool_says_so(tier: impl Tier) {
    tier.create(claim("lost", "no-such-pool", json!({}))).await;
    let reason = eventually("the claim's Ready condition", || async {
        get_typed::<SandboxClaim>(&tier, "lost")
            .await
            .and_then(|c| ready_reason(c.status.as_ref().and_then(|s| s.conditions.as_deref())))
    })
    .await;
    assert_eq!(reason, ("False".to_owned(), "WarmPoolNotFound".to_owned()));
}

/// The claim's `controller-first-observed-at` is the core's clock, not the host's (the engine
/// once stamped the host's time).
pub async fn first_observed_is_stamped_with_the_cores_clock(tier: impl Tier) {
    tier.clock().advance(Duration::from_secs(3600));
    let before = tier.clock().now();
    tier.create(template("tpl")).await;
    tier.create(claim("stamped", &names::shadow_pool_name("tpl"), json!({})))
        .await;
    let stamp = eventually("the first-observed stamp", || async {
        get_typed::<SandboxClaim>(&tier, "stamped")
            .await
            .and_then(|c| {
                c.metadata
                    .annotations
                    .and_then(|a| a.get(names::CONTROLLER_FIRST_OBSERVED_AT).cloned())
            })
    })
    .await;
    let after = tier.clock().now();
    let at: jiff::Timestamp = stamp.parse().expect("an RFC 3339 stamp");
    assert!(
        before.0 <= at && at <= after.0,
        "{stamp} is not the core's clock (between {} and {})",
        before.0,
        after.0
    );
}

/// An expired claim with `shutdownPolicy: Delete` is marked, then deleted (on both tiers the
/// same writes: the Kubernetes driver once skipped the status write the engine made).
pub async fn expired_claim_is_marked_then_deleted(tier: impl Tier) {
    let members = ready_pool(&tier, "pool", 1).await;
    let past = (tier.clock().now().0 - jiff::SignedDuration::from_secs(1))
        .round(jiff::Unit::Second)
        .unwrap();
    tier.create(claim(
        "expired",
        "pool",
        json!({"lifecycle": {"shutdownTime": past.to_string(), "shutdownPolicy": "Delete"}}),
    ))
    .await;
    eventually("the expired claim to be deleted", || async {
        get_typed::<SandboxClaim>(&tier, "expired")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    // It never adopted the member.
    let member = get_typed::<Sandbox>(&tier, members[0].metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    let owner = paddock_plan::ownership::controller_of_meta(&member.metadata).unwrap();
    assert_eq!(owner.kind, "SandboxWarmPool");
}

/// A Sandbox with `operatingMode: Suspended` has no pod and says it is suspended.
pub async fn suspended_sandbox_has_no_pod_and_says_so(tier: impl Tier) {
    tier.create(object(
        Kind::Sandbox,
        json!({
            "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
            "metadata": {"name": "asleep", "namespace": NS},
            "spec": {"operatingMode": "Suspended",
                     "podTemplate": {"spec": {"containers": [{"name": "main", "image": "host"}]}}}
        }),
    ))
    .await;
    let sb = eventually("the Suspended condition", || async {
        get_typed::<Sandbox>(&tier, "asleep").await.filter(|s| {
            s.status
                .as_ref()
                .and_then(|s| s.conditions.as_deref())
                .is_some_and(|c| conds::is_true(c, types::SUSPENDED))
        })
    })
    .await;
    assert!(!sandbox_ready(&sb));
}

/// An expired Sandbox with `shutdownPolicy: Delete` is deleted.
pub async fn expired_sandbox_with_delete_policy_is_deleted(tier: impl Tier) {
    let past = (tier.clock().now().0 - jiff::SignedDuration::from_secs(1))
        .round(jiff::Unit::Second)
        .unwrap();
    tier.create(object(
        Kind::Sandbox,
        json!({
            "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
            "metadata": {"name": "gone", "namespace": NS},
            "spec": {"shutdownTime": past.to_string(), "shutdownPolicy": "Delete",
                     "podTemplate": {"spec": {"containers": [{"name": "main", "image": "host"}]}}}
        }),
    ))
    .await;
    eventually("the expired Sandbox to be deleted", || async {
        get_typed::<Sandbox>(&tier, "gone")
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

/// Suspending and resuming a Sandbox is counted in upstream's metrics, with the latency of
/// each, and becoming Ready again after a resume is a `ready` resume.
pub async fn suspend_and_resume_are_counted(tier: impl Tier) {
    tier.create(object(
        Kind::Sandbox,
        json!({
            "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
            "metadata": {"name": "nap", "namespace": NS},
            "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "host"}]}}}
        }),
    ))
    .await;
    let has = |type_: &'static str| {
        move |s: &Sandbox| {
            s.status
                .as_ref()
                .and_then(|s| s.conditions.as_deref())
                .is_some_and(|c| conds::is_true(c, type_))
        }
    };
    eventually("nap Ready", || async {
        get_typed::<Sandbox>(&tier, "nap")
            .await
            .filter(has(types::READY))
    })
    .await;
    tier.patch(
        Kind::Sandbox,
        NS,
        "nap",
        json!({"spec": {"operatingMode": "Suspended"}}),
    )
    .await;
    eventually("nap Suspended", || async {
        get_typed::<Sandbox>(&tier, "nap")
            .await
            .filter(has(types::SUSPENDED))
    })
    .await;
    tier.patch(
        Kind::Sandbox,
        NS,
        "nap",
        json!({"spec": {"operatingMode": "Running"}}),
    )
    .await;
    eventually("nap Ready again", || async {
        get_typed::<Sandbox>(&tier, "nap")
            .await
            .filter(has(types::READY))
    })
    .await;
    let labels = format!("namespace=\"{NS}\",sandbox_template=\"unknown\",owned_by=\"None\"");
    let text = eventually("the resume to be counted", || async {
        let text = tier.core().metrics().encode();
        text.contains(&format!(
            "agent_sandbox_resume_total{{{labels},result=\"ready\"}} 1"
        ))
        .then_some(text)
    })
    .await;
    for line in [
        format!("agent_sandbox_suspend_total{{{labels},result=\"requested\"}} 1"),
        format!("agent_sandbox_suspend_total{{{labels},result=\"pod_terminated\"}} 1"),
        format!("agent_sandbox_resume_total{{{labels},result=\"requested\"}} 1"),
        format!("agent_sandbox_suspend_latency_ms_count{{{labels}}} 1"),
        format!("agent_sandbox_resume_latency_ms_count{{{labels}}} 1"),
    ] {
        assert!(text.contains(&line), "{line} in\n{text}");
    }
}

/// Turns every scenario of the conformance suite into a `#[tokio::test]` for one tier.
/// `$tier` is an async expression giving a fresh [`Tier`] for each test.
#[macro_export]
macro_rules! conformance_suite {
    ($tier:expr) => {
        $crate::conformance_suite!(@tests $tier;
            sandbox_becomes_ready_with_its_status,
            pool_fills_to_its_replicas_and_reports_them,
            claim_adopts_a_ready_member_and_the_pool_refills,
            pool_holds_its_refill_after_an_adoption,
            claim_without_a_pool_gets_a_cold_sandbox_named_like_it,
            claim_of_a_missing_pool_says_so,
            first_observed_is_stamped_with_the_cores_clock,
            expired_claim_is_marked_then_deleted,
            suspended_sandbox_has_no_pod_and_says_so,
            expired_sandbox_with_delete_policy_is_deleted,
            suspend_and_resume_are_counted,
        );
    };
    (@tests $tier:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                $crate::testing::$scenario($tier.await).await;
            }
        )*
    };
}
