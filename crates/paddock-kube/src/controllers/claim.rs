//! The SandboxClaim controller (contract §2.5). Every claim write is conditional: the driver
//! threads the claim's resourceVersion through the plan's claim writes (each one locked to
//! the version the previous one returned), so a write only lands if nobody else changed the
//! claim. Adoption is the planner's two conditional writes; members being adopted right now
//! are reserved for their claim so other claims skip them.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use paddock_api::names::{
    CLIENT_FIRST_REQUESTED_AT, CONTROLLER_FIRST_OBSERVED_AT, CREATED_BY, SANDBOX_NAME,
    WEBHOOK_FIRST_OBSERVED_AT, name_hash, normalize_created_by,
};
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxClaimStatus};
use paddock_plan::claim::{
    ClaimAction, ClaimInput, ClaimPlan, claim_status_after_failure, plan_claim, template_name_for,
};
use paddock_plan::outcome::{ApplyFailure, ErrorClass, FailureKind, ObjectRef};
use paddock_plan::patch::merge_patch_between;
use serde_json::{Value, json};

use super::{Context, Reporting, action_for, adopting_by_others, lock};
use crate::cache::{Caches, index_key, owner_key};
use crate::driver::ApiFailure;
use crate::error::ReconcileError;
use crate::metrics::{ClaimCreationLabels, ClaimLatencyLabels, UNKNOWN_CLAIM_TEMPLATE};

/// The reconcile entry point for the work queue.
pub fn reconcile(
    c: Arc<SandboxClaim>,
    ctx: Arc<Context>,
) -> BoxFuture<'static, Result<Action, ReconcileError>> {
    async move { reconcile_claim(&c, &ctx).await }.boxed()
}

fn annotation<'a>(claim: &'a SandboxClaim, key: &str) -> Option<&'a str> {
    claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The Sandboxes a claim's plan needs: named by its status, its `sandbox-name` annotation or
/// legacy label, or like the claim; controlled by it; members of its pool.
pub fn candidate_sandboxes(ctx: &Context, claim: &SandboxClaim) -> Vec<Arc<Sandbox>> {
    let ns = claim.namespace().unwrap_or_default();
    let mut names: BTreeSet<String> = BTreeSet::new();
    names.insert(claim.name_any());
    if let Some(n) = claim
        .status
        .as_ref()
        .and_then(|s| s.sandbox.as_ref())
        .and_then(|s| s.name.clone())
    {
        names.insert(n);
    }
    if let Some(n) = annotation(claim, SANDBOX_NAME) {
        names.insert(n.to_owned());
    }
    if let Some(n) = claim
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SANDBOX_NAME))
    {
        names.insert(n.clone());
    }
    let idx = &ctx.caches.indexes.sandboxes;
    if let Some(uid) = &claim.metadata.uid {
        names.extend(idx.get(&owner_key(uid)));
    }
    names.extend(idx.get(&index_key(&ns, &name_hash(&claim.spec.warm_pool_ref.name))));
    names
        .iter()
        .filter(|n| !n.is_empty())
        .filter_map(|n| Caches::get(&ctx.caches.sandboxes, &ns, n))
        .collect()
}

/// Members other claims hold: named by their `sandbox-name` annotation, or being adopted by
/// them now.
fn reserved(ctx: &Context, claim: &SandboxClaim, sandboxes: &[Arc<Sandbox>]) -> BTreeSet<String> {
    let ns = claim.namespace().unwrap_or_default();
    let me = claim.name_any();
    let mut out = adopting_by_others(ctx, &ns, &me);
    for sb in sandboxes {
        let n = sb.name_any();
        let holders = ctx
            .caches
            .indexes
            .claims
            .get(&format!("sandbox:{}", index_key(&ns, &n)));
        if holders.iter().any(|c| *c != me) {
            out.insert(n);
        }
    }
    out
}

/// One claim reconcile.
///
/// # Errors
/// A transient planner error or a failed write (the status says why); retried with backoff.
pub async fn reconcile_claim(
    claim: &SandboxClaim,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let now = (ctx.clock)();
    let pool = Caches::get(&ctx.caches.pools, &ns, &claim.spec.warm_pool_ref.name);
    let template = template_name_for(claim, pool.as_deref())
        .and_then(|t| Caches::get(&ctx.caches.templates, &ns, &t));
    let sandboxes = candidate_sandboxes(ctx, claim);
    let legacy_np = Caches::get(
        &ctx.caches.network_policies,
        &ns,
        &format!("{name}-network-policy"),
    );
    let input = ClaimInput {
        claim,
        pool: pool.as_deref(),
        template: template.as_deref(),
        sandboxes: sandboxes.iter().map(AsRef::as_ref).collect(),
        reserved: reserved(ctx, claim, &sandboxes),
        legacy_network_policy: legacy_np.as_deref(),
        now: &now,
        config: &ctx.config.claim,
    };
    let plan = plan_claim(&input);

    let mut rv = claim.metadata.resource_version.clone();
    let mut failure = None;
    let mut claim_deleted = false;
    for (i, action) in plan.actions.iter().enumerate() {
        let result = apply(ctx, claim, &ns, &name, &mut rv, action).await;
        match result {
            Ok(()) => {
                claim_deleted |= matches!(action, ClaimAction::DeleteClaim { .. });
            }
            Err(f) => {
                failure = Some(ApplyFailure {
                    action_index: i,
                    kind: f.kind,
                    message: f.message,
                });
                break;
            }
        }
    }

    let (status, requeue, error) = match &failure {
        None => (
            plan.write_status.then(|| plan.status.clone()),
            plan.requeue_after,
            plan.error.clone(),
        ),
        Some(f) => {
            let outcome = claim_status_after_failure(&input, &plan, f);
            (outcome.status, outcome.requeue_after, Some(outcome.error))
        }
    };
    if let Some(status) = status.filter(|_| !claim_deleted) {
        write_status(ctx, claim, &ns, &name, rv.as_deref(), &status).await?;
    }
    if failure.is_none() {
        record_first_ready(ctx, claim, &plan, &now);
    }
    match error {
        Some(e) if e.class == ErrorClass::Transient => {
            if let Some(d) = requeue {
                tracing::debug!(claim = %format!("{ns}/{name}"), error = %e.message, "retrying");
                return Ok(Action::requeue(d));
            }
            Err(match &failure {
                Some(f) => ReconcileError::Apply {
                    action: action_name(plan.actions.get(f.action_index)),
                    message: f.message.clone(),
                },
                None => ReconcileError::Plan(e.message),
            })
        }
        Some(e) => {
            tracing::info!(claim = %format!("{ns}/{name}"), error = %e.message, "permanent error; not retrying until the claim changes");
            Ok(action_for(requeue))
        }
        None => Ok(action_for(requeue)),
    }
}

/// The status merge patch, conditional on the claim's latest known resourceVersion; a
/// conflict is dropped (another event will requeue), as upstream does.
async fn write_status(
    ctx: &Context,
    claim: &SandboxClaim,
    ns: &str,
    name: &str,
    rv: Option<&str>,
    status: &SandboxClaimStatus,
) -> Result<(), ReconcileError> {
    let old = serde_json::to_value(claim.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
    let new = serde_json::to_value(status).unwrap_or(Value::Null);
    let mut patch = json!({ "status": merge_patch_between(&old, &new) });
    if let Some(rv) = rv {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    match ctx
        .driver
        .patch_status::<SandboxClaim>(ns, name, &patch)
        .await
    {
        Ok(_) => Ok(()),
        Err(f) if matches!(f.kind, FailureKind::Conflict | FailureKind::NotFound) => {
            tracing::debug!(claim = %format!("{ns}/{name}"), "status write lost a race; a later event requeues");
            Ok(())
        }
        Err(f) => Err(ReconcileError::Apply {
            action: "status update",
            message: f.message,
        }),
    }
}

fn action_name(action: Option<&ClaimAction>) -> &'static str {
    match action {
        Some(ClaimAction::DeleteLegacyNetworkPolicy { .. }) => "delete legacy network policy",
        Some(ClaimAction::PatchClaim { .. }) => "patch claim",
        Some(ClaimAction::Adopt { .. }) => "adopt warm sandbox",
        Some(ClaimAction::PatchSandbox { .. }) => "patch sandbox",
        Some(ClaimAction::CreateSandbox { .. }) => "create sandbox",
        Some(ClaimAction::DeleteSandbox { .. }) => "delete sandbox",
        Some(ClaimAction::DeleteClaim { .. }) => "delete claim",
        Some(ClaimAction::Event { .. }) => "record event",
        None => "apply",
    }
}

fn created_by(claim: &SandboxClaim) -> String {
    claim
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CREATED_BY))
        .map_or("unknown", |v| normalize_created_by(v))
        .to_owned()
}

fn count_creation(
    ctx: &Context,
    claim: &SandboxClaim,
    sb: Option<&Sandbox>,
    launch: &str,
    pool: &str,
    ready: bool,
) {
    ctx.metrics
        .claim_creation
        .get_or_create(&ClaimCreationLabels {
            namespace: claim.namespace().unwrap_or_default(),
            sandbox_template: sb
                .and_then(crate::metrics::sandbox_template)
                .unwrap_or(UNKNOWN_CLAIM_TEMPLATE)
                .to_owned(),
            launch_type: launch.to_owned(),
            warmpool_name: pool.to_owned(),
            pod_condition: if ready { "ready" } else { "not_ready" }.to_owned(),
            created_by: created_by(claim),
        })
        .inc();
}

/// Applies one action; claim writes are locked to `rv`, which is advanced on success.
async fn apply(
    ctx: &Context,
    claim: &SandboxClaim,
    ns: &str,
    name: &str,
    rv: &mut Option<String>,
    action: &ClaimAction,
) -> Result<(), ApiFailure> {
    let d = &ctx.driver;
    match action {
        ClaimAction::DeleteLegacyNetworkPolicy { target } => {
            d.delete::<NetworkPolicy>(ns, target, None).await
        }
        ClaimAction::PatchClaim { patch } => {
            let mut patch = patch.clone();
            patch.resource_version.clone_from(rv);
            let updated = d
                .merge_patch::<SandboxClaim>(ns, name, &patch.to_merge_patch())
                .await?;
            rv.clone_from(&updated.metadata.resource_version);
            Ok(())
        }
        ClaimAction::Adopt { adoption } => {
            let member_key = format!("{ns}/{}", adoption.sandbox_name);
            lock(&ctx.adopting).insert(member_key.clone(), name.to_owned());
            let result = async {
                if let Some(claim_patch) = &adoption.claim_patch {
                    let mut patch = claim_patch.clone();
                    patch.resource_version.clone_from(rv);
                    let updated = d
                        .merge_patch::<SandboxClaim>(ns, name, &patch.to_merge_patch())
                        .await?;
                    rv.clone_from(&updated.metadata.resource_version);
                }
                let current = Caches::get(&ctx.caches.sandboxes, ns, &adoption.sandbox_name)
                    .map(|s| (*s).clone())
                    .unwrap_or_default();
                let adopted = d
                    .merge_patch::<Sandbox>(
                        ns,
                        &adoption.sandbox_name,
                        &adoption.sandbox_patch.to_merge_patch(&current),
                    )
                    .await?;
                count_creation(
                    ctx,
                    claim,
                    Some(&adopted),
                    "warm",
                    &claim.spec.warm_pool_ref.name,
                    adoption.ready,
                );
                Ok(())
            }
            .await;
            lock(&ctx.adopting).remove(&member_key);
            result
        }
        ClaimAction::PatchSandbox { patch } => {
            let current = Caches::get(&ctx.caches.sandboxes, ns, &patch.name)
                .map(|s| (*s).clone())
                .unwrap_or_default();
            d.merge_patch::<Sandbox>(ns, &patch.name, &patch.to_merge_patch(&current))
                .await
                .map(drop)
        }
        ClaimAction::CreateSandbox { sandbox } => {
            let created = d.create::<Sandbox>(ns, sandbox).await?;
            count_creation(
                ctx,
                claim,
                Some(&created),
                "cold",
                &claim.spec.warm_pool_ref.name,
                false,
            );
            Ok(())
        }
        ClaimAction::DeleteSandbox { target } => d.delete::<Sandbox>(ns, target, None).await,
        ClaimAction::DeleteClaim { propagation } => {
            let target = ObjectRef::new(name, claim.metadata.uid.as_deref());
            d.delete::<SandboxClaim>(ns, &target, Some(*propagation))
                .await
        }
        ClaimAction::Event { event } => {
            ctx.record(Reporting::Claim, claim.object_ref(&()), event)
                .await;
            Ok(())
        }
    }
}

fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// The claim start-up histograms, once, on the plan that makes the claim Ready first.
fn record_first_ready(ctx: &Context, claim: &SandboxClaim, plan: &ClaimPlan, now: &Time) {
    let Some(first) = &plan.first_ready else {
        return;
    };
    let labels = ClaimLatencyLabels {
        launch_type: first.launch_type.clone(),
        sandbox_template: first.sandbox_template.clone(),
    };
    let since = |key: &str| {
        annotation(claim, key)
            .and_then(parse_time)
            .map(|t| now.0.duration_since(t).as_millis_f64().max(0.0))
    };
    let m = &ctx.metrics;
    if let Some(ms) = since(CONTROLLER_FIRST_OBSERVED_AT) {
        m.claim_controller_startup_latency
            .get_or_create(&labels)
            .observe(ms);
    }
    if let Some(ms) = since(CLIENT_FIRST_REQUESTED_AT) {
        m.client_claim_startup_latency
            .get_or_create(&labels)
            .observe(ms);
    }
    if let Some(ms) = since(WEBHOOK_FIRST_OBSERVED_AT) {
        m.claim_startup_latency.get_or_create(&labels).observe(ms);
    }
}
