//! The SandboxWarmPool controller (contract §2.4). The pool's expectations live here, in
//! memory, as ReplicaSet's do: the planner gets them back on every reconcile, each created
//! member's name is recorded from the create response, and a delete that lost a race to a claim
//! is forgotten. Creates run in slow-start batches (1, 2, 4, … in parallel, stopping after the
//! first failed batch); the refill rate limit and replenish hold become the planner's
//! `create_allowance`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use paddock_api::names::name_hash;
use paddock_api::v1beta1::{Sandbox, SandboxWarmPool};
use paddock_plan::outcome::FailureKind;
use paddock_plan::patch::merge_patch_between;
use paddock_plan::pool::{PoolAction, PoolExpectations, PoolInput, plan_pool};
use serde_json::{Value, json};

use super::{Context, Reporting, lock};
use crate::cache::{Caches, index_key};
use crate::error::ReconcileError;

/// What the controller remembers about one pool between reconciles.
#[derive(Clone, Debug, Default)]
pub struct PoolState {
    /// The planner's expectations plus the names of members created since.
    pub expectations: PoolExpectations,
    /// Whether the last plan held unschedulable members.
    pub not_progressing: bool,
    /// Active members at the last reconcile (a drop arms the replenish hold).
    pub last_replicas: Option<i32>,
    /// Refills are held until then (`--sandbox-warm-pool-replenish-delay`).
    pub hold_until: Option<Instant>,
    /// Refill token bucket: tokens and when it was last topped up.
    pub tokens: Option<(f64, Instant)>,
}

/// The reconcile entry point for the work queue.
pub fn reconcile(
    p: Arc<SandboxWarmPool>,
    ctx: Arc<Context>,
) -> BoxFuture<'static, Result<Action, ReconcileError>> {
    async move { reconcile_pool(&p, &ctx).await }.boxed()
}

fn pool_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// The members the cache holds for a pool (labelled `warm-pool-sandbox=<NameHash(pool)>`).
pub fn members(ctx: &Context, ns: &str, pool: &str) -> Vec<Arc<Sandbox>> {
    ctx.caches
        .indexes
        .sandboxes
        .get(&index_key(ns, &name_hash(pool)))
        .iter()
        .filter_map(|n| Caches::get(&ctx.caches.sandboxes, ns, n))
        .collect()
}

/// The create allowance from the refill bucket and the replenish hold, and when to look again
/// if it holds creates back.
fn allowance(
    ctx: &Context,
    state: &mut PoolState,
    now: Instant,
) -> (Option<u32>, Option<Duration>) {
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
    if let Some(rate) = ctx.config.refill_rate {
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

/// One pool reconcile.
///
/// # Errors
/// A failed create, delete, patch or status write; retried with backoff.
pub async fn reconcile_pool(
    pool: &SandboxWarmPool,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let ns = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    let key = pool_key(&ns, &name);
    let now = (ctx.clock)();
    let template = Caches::get(
        &ctx.caches.templates,
        &ns,
        &pool.spec.sandbox_template_ref.name,
    );
    let members = members(ctx, &ns, &name);
    let mut state = lock(&ctx.pools).get(&key).cloned().unwrap_or_default();
    let seen_created: BTreeSet<String> = state
        .expectations
        .creates
        .iter()
        .filter(|n| Caches::get(&ctx.caches.sandboxes, &ns, n).is_some())
        .cloned()
        .collect();
    let (create_allowance, hold_wake) = allowance(ctx, &mut state, Instant::now());
    let input = PoolInput {
        pool,
        template: template.as_deref(),
        members: members.iter().map(AsRef::as_ref).collect(),
        expectations: &state.expectations,
        seen_created,
        create_allowance,
        was_not_progressing: state.not_progressing,
        now: &now,
        config: &ctx.config.pool,
    };
    let plan = plan_pool(&input);
    state.expectations = plan.expectations.clone();
    state.not_progressing = plan.not_progressing;
    let replicas = plan.status.replicas;
    if let (Some(before), Some(after)) = (state.last_replicas, replicas)
        && after < before
        && !ctx.config.replenish_delay.is_zero()
    {
        state.hold_until = Some(Instant::now() + ctx.config.replenish_delay);
    }
    state.last_replicas = replicas;
    lock(&ctx.pools).insert(key.clone(), state);

    let mut failures: Vec<String> = Vec::new();
    let mut creates: Vec<&Sandbox> = Vec::new();
    for action in &plan.actions {
        match action {
            PoolAction::CreateMember { sandbox } => creates.push(sandbox),
            PoolAction::PatchMember {
                name: member,
                patch,
            } => {
                if let Err(f) = ctx
                    .driver
                    .merge_patch::<Sandbox>(&ns, member, &patch.to_merge_patch())
                    .await
                {
                    failures.push(format!("patch member {member:?}: {f}"));
                }
            }
            PoolAction::DeleteMember { target, reason } => {
                match ctx.driver.delete::<Sandbox>(&ns, target, None).await {
                    Ok(()) => {
                        tracing::debug!(pool = %key, member = %target.name, ?reason, "deleted member")
                    }
                    Err(f) => {
                        if f.kind == FailureKind::Conflict {
                            with_state(ctx, &key, |s| s.expectations.forget_delete(&target.name));
                        } else {
                            failures.push(format!("delete member {:?}: {f}", target.name));
                        }
                    }
                }
            }
            PoolAction::Event { event } => {
                ctx.record(Reporting::Pool, pool.object_ref(&()), event)
                    .await
            }
        }
    }
    let created = create_members(ctx, &ns, &key, &creates, &mut failures).await;
    if ctx.config.refill_rate.is_some() && created > 0 {
        with_state(ctx, &key, |s| {
            if let Some((tokens, at)) = s.tokens {
                s.tokens = Some(((tokens - f64::from(created)).max(0.0), at));
            }
        });
    }
    if plan.write_status {
        let old =
            serde_json::to_value(pool.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
        let new = serde_json::to_value(&plan.status).unwrap_or(Value::Null);
        let patch = json!({ "status": merge_patch_between(&old, &new) });
        if let Err(f) = ctx
            .driver
            .patch_status::<SandboxWarmPool>(&ns, &name, &patch)
            .await
            && f.kind != FailureKind::NotFound
        {
            failures.push(format!("status update: {f}"));
        }
    }
    if !failures.is_empty() {
        return Err(ReconcileError::Apply {
            action: "warm pool",
            message: failures.join("; "),
        });
    }
    if let Some(e) = plan.error {
        return Err(ReconcileError::Plan(e.message));
    }
    let wants_more = plan.wanted_creates > u32::try_from(creates.len()).unwrap_or(u32::MAX);
    let requeue = match (plan.requeue_after, hold_wake.filter(|_| wants_more)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(super::action_for(requeue))
}

fn with_state(ctx: &Context, key: &str, f: impl FnOnce(&mut PoolState)) {
    if let Some(s) = lock(&ctx.pools).get_mut(key) {
        f(s);
    }
}

/// Creates members in slow-start batches (1, 2, 4, …), recording each created name in the
/// pool's expectations; stops after a batch with a failure. Returns how many were created.
async fn create_members(
    ctx: &Context,
    ns: &str,
    key: &str,
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
        let results = join_all(now.iter().map(|sb| ctx.driver.create::<Sandbox>(ns, sb))).await;
        let mut failed = false;
        for r in results {
            match r {
                Ok(sb) => {
                    created += 1;
                    let name = sb.name_any();
                    with_state(ctx, key, |s| s.expectations.record_created(&name));
                }
                Err(f) => {
                    failed = true;
                    failures.push(format!("create member: {f}"));
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
