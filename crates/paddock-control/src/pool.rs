//! The SandboxWarmPool loop (contract §2.4). The pool's expectations live here, in memory, as
//! ReplicaSet's do: the planner gets them back on every reconcile, each created member's name is
//! recorded from the create response, and a delete that lost a race to a claim is forgotten.
//! Creates run in slow-start batches (1, 2, 4, … in parallel, stopping after the first failed
//! batch); the refill rate limit and the replenish hold become the planner's `create_allowance`.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::join_all;
use paddock_api::kinds::Kind;
use paddock_api::stored::Object;
use paddock_api::v1beta1::{Sandbox, SandboxTemplate, SandboxWarmPool};
use paddock_plan::outcome::{ErrorClass, FailureKind};
use paddock_plan::patch::merge_patch_between;
use paddock_plan::pool::{PoolAction, PoolExpectations, PoolInput, plan_pool};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::cache::Key;
use crate::core::{Core, Outcome, lock};
use crate::ports::{Controller, Part, object_reference};

/// What the loop remembers about one pool between reconciles.
#[derive(Clone, Debug, Default)]
pub struct PoolState {
    /// The planner's expectations plus the names of members created since.
    pub expectations: PoolExpectations,
    /// Whether the last plan held unschedulable members.
    pub not_progressing: bool,
    /// Active members at the last reconcile (a drop arms the replenish hold).
    pub last_replicas: Option<i32>,
    /// Refills are held until then.
    pub hold_until: Option<Instant>,
    /// Refill token bucket: tokens and when it was last topped up.
    pub tokens: Option<(f64, Instant)>,
    /// Since when a status change has been held back while the pool changes.
    pub status_held_since: Option<Instant>,
}

/// The create allowance from the refill bucket and the replenish hold, and when to look again
/// if it holds creates back.
fn allowance(core: &Core, state: &mut PoolState, now: Instant) -> (Option<u32>, Option<Duration>) {
    let mut allowance: Option<u32> = None;
    let mut wake = None;
    if let Some(until) = state.hold_until {
        if now < until {
            allowance = Some(0);
            wake = Some(until - now);
        } else {
            state.hold_until = None;
        }
    }
    if let Some(rate) = core.config.refill_rate {
        let capacity = rate.max(1.0);
        let (tokens, last) = state.tokens.unwrap_or((capacity, now));
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(capacity);
        state.tokens = Some((tokens, now));
        // Whole tokens only; the bucket holds at most max(1, rate) of them, clamped to u32.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let whole = tokens.floor().clamp(0.0, f64::from(u32::MAX)) as u32;
        allowance = Some(allowance.map_or(whole, |a| a.min(whole)));
        if whole == 0 {
            let need = (1.0 - tokens) / rate;
            let d = Duration::from_secs_f64(need.max(0.001));
            wake = Some(wake.map_or(d, |w: Duration| w.max(d)));
        }
    }
    (allowance, wake)
}

fn with_state(core: &Core, key: &Key, f: impl FnOnce(&mut PoolState)) {
    if let Some(s) = lock(&core.pools).get_mut(key) {
        f(s);
    }
}

/// One pool reconcile.
pub(crate) async fn reconcile(core: &Core, key: &Key) -> Outcome {
    let cache = core.cache();
    let Some(pool) = cache.get::<SandboxWarmPool>(&key.namespace, &key.name) else {
        lock(&core.pools).remove(key);
        return Outcome::Done;
    };
    let ns = key.namespace.as_str();
    let now = core.ports.clock.now();
    let template = cache.get::<SandboxTemplate>(ns, &pool.spec.sandbox_template_ref.name);
    let members = cache.pool_members(ns, &key.name);
    let mut state = lock(&core.pools).get(key).cloned().unwrap_or_default();
    let seen_created: BTreeSet<String> = state
        .expectations
        .creates
        .iter()
        .filter(|n| cache.get::<Sandbox>(ns, n).is_some())
        .cloned()
        .collect();
    let plan_with = |state: &mut PoolState| {
        let (create_allowance, hold_wake) = allowance(core, state, Instant::now());
        let input = PoolInput {
            pool: &pool,
            template: template.as_deref(),
            members: members.iter().map(AsRef::as_ref).collect(),
            expectations: &state.expectations,
            seen_created: seen_created.clone(),
            create_allowance,
            was_not_progressing: state.not_progressing,
            now: &now,
            config: &core.config.pool,
        };
        (plan_pool(&input), hold_wake)
    };
    let (mut plan, mut hold_wake) = plan_with(&mut state);
    let replicas = plan.status.replicas;
    if let (Some(before), Some(after)) = (state.last_replicas, replicas)
        && after < before
        && !core.config.replenish_delay.is_zero()
    {
        // A member left (adopted, deleted): hold the refill from this very reconcile, so the
        // replacement does not compete with the claim that took the member.
        state.hold_until = Some(Instant::now() + core.config.replenish_delay);
        (plan, hold_wake) = plan_with(&mut state);
    }
    state.expectations = plan.expectations.clone();
    state.not_progressing = plan.not_progressing;
    state.last_replicas = replicas;
    lock(&core.pools).insert(key.clone(), state);

    let mut failures: Vec<String> = Vec::new();
    let mut creates: Vec<&Sandbox> = Vec::new();
    for action in &plan.actions {
        match action {
            PoolAction::CreateMember { sandbox } => creates.push(sandbox),
            PoolAction::PatchMember {
                name: member,
                patch,
            } => {
                if let Err(e) = core
                    .patch(
                        Kind::Sandbox,
                        ns,
                        member,
                        Part::Main,
                        &patch.to_merge_patch(),
                    )
                    .await
                {
                    failures.push(format!("patch member {member:?}: {e}"));
                }
            }
            PoolAction::DeleteMember { target, reason } => {
                match core.delete(Kind::Sandbox, ns, target, None).await {
                    Ok(()) => {
                        tracing::debug!(pool = %key, member = %target.name, ?reason, "deleted member");
                    }
                    Err(e) if e.kind == FailureKind::Conflict => {
                        with_state(core, key, |s| s.expectations.forget_delete(&target.name));
                    }
                    Err(e) => failures.push(format!("delete member {:?}: {e}", target.name)),
                }
            }
            PoolAction::Event { event } => {
                core.record(Controller::Pool, &object_reference(pool.as_ref()), event)
                    .await;
            }
        }
    }
    let created = create_members(core, key, &creates, &mut failures).await;
    if core.config.refill_rate.is_some() && created > 0 {
        with_state(core, key, |s| {
            if let Some((tokens, at)) = s.tokens {
                s.tokens = Some(((tokens - f64::from(created)).max(0.0), at));
            }
        });
    }
    let status_wake = if plan.write_status {
        status_hold(core, &pool, &plan, creates.is_empty(), key)
    } else {
        with_state(core, key, |s| s.status_held_since = None);
        None
    };
    if plan.write_status && status_wake.is_none() {
        let old =
            serde_json::to_value(pool.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
        let new = serde_json::to_value(&plan.status).unwrap_or(Value::Null);
        let patch = json!({ "status": merge_patch_between(&old, &new) });
        if let Err(e) = core
            .patch(Kind::SandboxWarmPool, ns, &key.name, Part::Status, &patch)
            .await
            && e.kind != FailureKind::NotFound
        {
            failures.push(format!("status update: {e}"));
        }
    }
    if !failures.is_empty() {
        return Outcome::Retry(failures.join("; "));
    }
    if let Some(e) = plan.error
        && e.class == ErrorClass::Transient
    {
        return Outcome::Retry(e.message);
    }
    let wants_more = plan.wanted_creates > u32::try_from(creates.len()).unwrap_or(u32::MAX);
    let requeue = [
        plan.requeue_after,
        hold_wake.filter(|_| wants_more),
        status_wake,
    ]
    .into_iter()
    .flatten()
    .min();
    Outcome::after(requeue)
}

/// Whether to hold the pool's status change back, and for how long: while the pool is in
/// motion (short of its replicas, members not Ready, creates pending) at the same generation,
/// changes wait until it settles or `pool_status_coalesce` passes, so an adoption and its
/// refill cost one status write (often none: the settled status equals the stored one).
fn status_hold(
    core: &Core,
    pool: &SandboxWarmPool,
    plan: &paddock_plan::pool::PoolPlan,
    no_creates_now: bool,
    key: &Key,
) -> Option<Duration> {
    let window = core.config.pool_status_coalesce;
    let stored = pool.status.as_ref();
    let desired = pool.spec.replicas.unwrap_or(1);
    let replicas = plan.status.replicas.unwrap_or(0);
    let settled = no_creates_now
        && plan.wanted_creates == 0
        && replicas == desired
        && plan.status.ready_replicas.unwrap_or(0) == replicas;
    let same_generation =
        stored.is_some_and(|s| s.observed_generation == plan.status.observed_generation);
    let mut out = None;
    with_state(core, key, |s| {
        if window.is_zero() || settled || !same_generation {
            s.status_held_since = None;
            return;
        }
        let now = Instant::now();
        let since = *s.status_held_since.get_or_insert(now);
        let held = now.duration_since(since);
        if held < window {
            out = Some(window - held);
        } else {
            s.status_held_since = None;
        }
    });
    out
}

/// Creates members in slow-start batches (1, 2, 4, …), recording each created name in the
/// pool's expectations; stops after a batch with a failure. Returns how many were created.
async fn create_members(
    core: &Core,
    key: &Key,
    creates: &[&Sandbox],
    failures: &mut Vec<String>,
) -> u32 {
    let mut created = 0u32;
    let mut batch = 1usize;
    let mut rest = creates;
    while !rest.is_empty() {
        let n = batch.min(rest.len());
        let (now, later) = rest.split_at(n);
        rest = later;
        let results = join_all(
            now.iter()
                .map(|sb| core.create(Object::Sandbox(named_member(sb)))),
        )
        .await;
        let mut failed = false;
        for r in results {
            match r {
                Ok(sb) => {
                    created += 1;
                    let name = sb.name().to_owned();
                    with_state(core, key, |s| s.expectations.record_created(&name));
                }
                Err(e) => {
                    failed = true;
                    failures.push(format!("create member: {e}"));
                }
            }
        }
        if failed {
            if !rest.is_empty() {
                tracing::info!(pool = %key, skipped = rest.len(), "skipping further creates after a failure");
            }
            break;
        }
        batch = batch.saturating_mul(2);
    }
    created
}

/// The member with a name of its own, made as the API server makes one from `generateName`,
/// so its create also carries the `pod-name` annotation the Sandbox loop would otherwise patch
/// in afterwards. A clash fails the create like any other (AlreadyExists) and the next
/// reconcile tries a new name; without randomness the API server names it, as before.
fn named_member(member: &Sandbox) -> Sandbox {
    let mut sb = member.clone();
    let mut random = [0u8; 32];
    let name = sb.metadata.generate_name.as_deref().and_then(|prefix| {
        getrandom::fill(&mut random).ok()?;
        paddock_api::names::generated_name(prefix, random)
    });
    if let Some(name) = name {
        sb.metadata.generate_name = None;
        sb.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(paddock_api::names::POD_NAME.to_owned(), name.clone());
        sb.metadata.name = Some(name);
    }
    sb
}
