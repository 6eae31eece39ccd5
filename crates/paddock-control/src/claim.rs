//! The SandboxClaim loop (contract §2.5). Every claim write is conditional: the claim's
//! resourceVersion is threaded through the plan's claim writes (each one locked to the version
//! the previous one returned), so a write only lands if nobody else changed the claim.
//! Adoption is the planner's two conditional writes; members being adopted right now are
//! reserved for their claim so other claims skip them. Adoption changes metadata only: the warm
//! member keeps running.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_api::kinds::Kind;
use paddock_api::names::{
    CLIENT_FIRST_REQUESTED_AT, CONTROLLER_FIRST_OBSERVED_AT, CREATED_BY, SANDBOX_NAME,
    WEBHOOK_FIRST_OBSERVED_AT, network_policy_name, normalize_created_by,
};
use paddock_api::stored::Object;
use paddock_api::v1beta1::{
    Sandbox, SandboxClaim, SandboxClaimStatus, SandboxTemplate, SandboxWarmPool,
};
use paddock_plan::claim::{
    ClaimAction, ClaimInput, ClaimPlan, claim_status_after_failure, plan_claim, template_name_for,
};
use paddock_plan::outcome::{ApplyFailure, ErrorClass, FailureKind, ObjectRef};
use paddock_plan::patch::merge_patch_between;
use serde_json::{Value, json};

use crate::cache::{Key, index};
use crate::core::{Core, Outcome, lock};
use crate::metrics::{
    ClaimCreationLabels, ClaimLatencyLabels, UNKNOWN_CLAIM_TEMPLATE, sandbox_template,
};
use crate::ports::{Controller, Part, PolicyWrite, WriteError, object_reference};

fn annotation<'a>(claim: &'a SandboxClaim, key: &str) -> Option<&'a str> {
    claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The Sandboxes a claim's plan needs: named by its status, its `sandbox-name` annotation or
/// older label, or like the claim; controlled by it; members of its pool.
pub fn candidate_sandboxes(core: &Core, claim: &SandboxClaim) -> Vec<Arc<Sandbox>> {
    let key = Key::of(claim);
    let cache = core.cache();
    let mut names: BTreeSet<String> = BTreeSet::new();
    names.insert(key.name.clone());
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
    let mut out: Vec<Arc<Sandbox>> = names
        .iter()
        .filter(|n| !n.is_empty())
        .filter_map(|n| cache.get::<Sandbox>(&key.namespace, n))
        .collect();
    let mut seen: BTreeSet<String> = out.iter().filter_map(|s| s.metadata.name.clone()).collect();
    let owned = claim
        .metadata
        .uid
        .as_deref()
        .map(|uid| cache.by_index::<Sandbox>(&index::controlled_by(uid)))
        .unwrap_or_default();
    let members = cache.pool_members(&key.namespace, &claim.spec.warm_pool_ref.name);
    for sb in owned.into_iter().chain(members) {
        if let Some(n) = sb.metadata.name.clone()
            && seen.insert(n)
        {
            out.push(sb);
        }
    }
    out
}

/// Members other claims hold: named by their `sandbox-name` annotation, or reserved for them
/// (`adopting`: handed to a claim by its plan and not yet written).
fn reserved(
    core: &Core,
    adopting: &HashMap<Key, String>,
    claim: &SandboxClaim,
    sandboxes: &[Arc<Sandbox>],
) -> BTreeSet<String> {
    let me = Key::of(claim);
    let mut out: BTreeSet<String> = adopting
        .iter()
        .filter(|(member, c)| member.namespace == me.namespace && **c != me.name)
        .map(|(member, _)| member.name.clone())
        .collect();
    for sb in sandboxes {
        let name = sb.metadata.name.as_deref().unwrap_or_default();
        let holders = core
            .cache()
            .keys_by_index::<SandboxClaim>(&index::claims_holding(&me.namespace, name));
        if holders.iter().any(|c| c.name != me.name) {
            out.insert(name.to_owned());
        }
    }
    out
}

/// The members `plan` adopts.
fn adopted_members(namespace: &str, plan: &ClaimPlan) -> Vec<Key> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            ClaimAction::Adopt { adoption } => Some(Key::new(namespace, &adoption.sandbox_name)),
            _ => None,
        })
        .collect()
}

/// One claim reconcile.
/// With tracing on, gives a claim that lacks one the trace-context annotation of this
/// reconcile (so the Sandbox made for it continues the trace); returns the claim as stamped.
async fn stamp_trace_context(
    core: &Core,
    key: &Key,
    claim: &SandboxClaim,
    trace: Option<&opentelemetry::Context>,
) -> Option<SandboxClaim> {
    use paddock_api::names::TRACE_CONTEXT;
    if !core.config.otel_tracing
        || claim.metadata.deletion_timestamp.is_some()
        || claim
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(TRACE_CONTEXT))
    {
        return None;
    }
    let value = trace.and_then(crate::traces::carrier)?;
    let patch = serde_json::json!({"metadata": {"annotations": {TRACE_CONTEXT: value}}});
    if let Err(e) = core
        .patch(
            Kind::SandboxClaim,
            &key.namespace,
            &key.name,
            Part::Main,
            &patch,
        )
        .await
    {
        tracing::debug!(claim = %key, error = %e, "cannot stamp the trace context");
        return None;
    }
    let mut stamped = claim.clone();
    stamped
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(TRACE_CONTEXT.to_owned(), value);
    Some(stamped)
}

pub(crate) async fn reconcile(core: &Core, key: &Key) -> Outcome {
    let cache = core.cache();
    let Some(claim) = cache.get::<SandboxClaim>(&key.namespace, &key.name) else {
        lock(&core.first_observed).remove(key);
        return Outcome::Done;
    };
    let ns = key.namespace.as_str();
    let trace = crate::traces::start_reconcile(
        Controller::Claim,
        ns,
        &key.name,
        claim.metadata.annotations.as_ref(),
        claim.metadata.labels.as_ref(),
    );
    let claim = match stamp_trace_context(core, key, &claim, trace.as_ref()).await {
        Some(stamped) => Arc::new(stamped),
        None => claim,
    };
    let now = core.ports.clock.now();
    let pool = cache.get::<SandboxWarmPool>(ns, &claim.spec.warm_pool_ref.name);
    let template = template_name_for(&claim, pool.as_deref())
        .and_then(|t| cache.get::<SandboxTemplate>(ns, &t));
    let sandboxes = candidate_sandboxes(core, &claim);
    let legacy_policy = core
        .ports
        .workloads
        .network_policy(ns, &network_policy_name(&key.name));
    let first_observed = lock(&core.first_observed)
        .entry(key.clone())
        .or_insert_with(|| now.clone())
        .clone();
    // Planning and reserving the member it picks happen under one lock: claims reconciled at
    // once are handed different members (upstream's per-pool queue), so a burst adopts in
    // parallel instead of racing for the oldest member.
    let (input, plan, reservations) = {
        let mut adopting = lock(&core.adopting);
        let input = ClaimInput {
            claim: &claim,
            pool: pool.as_deref(),
            template: template.as_deref(),
            sandboxes: sandboxes.iter().map(AsRef::as_ref).collect(),
            reserved: reserved(core, &adopting, &claim, &sandboxes),
            legacy_network_policy: legacy_policy.as_ref(),
            now: &now,
            first_observed: Some(&first_observed),
            config: &core.config.claim,
        };
        let plan = plan_claim(&input);
        let reservations = adopted_members(ns, &plan);
        for member in &reservations {
            adopting.insert(member.clone(), key.name.clone());
        }
        (input, plan, reservations)
    };

    let mut rv = claim.metadata.resource_version.clone();
    let mut failure = None;
    // Events are recorded after the status write: they are writes too, and the claim's
    // watchers wait for the status.
    let mut events = Vec::new();
    for (i, action) in plan.actions.iter().enumerate() {
        if let ClaimAction::Event { event } = action {
            events.push(event);
            continue;
        }
        if let Err(e) = apply(core, &claim, key, &mut rv, action).await {
            failure = Some(ApplyFailure {
                action_index: i,
                kind: e.kind,
                message: e.message,
            });
            break;
        }
    }
    // The adopted member now carries the claim's owner reference in the cache (writes go
    // through it), so no later plan offers it to another claim.
    {
        let mut adopting = lock(&core.adopting);
        for member in &reservations {
            adopting.remove(member);
        }
    }
    let (status, requeue, error) = match &failure {
        None => (
            plan.write_status.then(|| plan.status.clone()),
            plan.requeue_after,
            plan.error.clone(),
        ),
        Some(f) => {
            if !matches!(f.kind, FailureKind::Conflict | FailureKind::NotFound) {
                tracing::warn!(claim = %key, error = %f.message, "claim action failed");
            }
            let outcome = claim_status_after_failure(&input, &plan, f);
            (outcome.status, outcome.requeue_after, Some(outcome.error))
        }
    };
    let status_landed = match status {
        Some(status) => match write_status(core, &claim, key, rv.as_deref(), &status).await {
            Ok(landed) => landed,
            Err(e) => return Outcome::Retry(format!("writing the claim's status: {e}")),
        },
        None => false,
    };
    for event in events {
        core.record(Controller::Claim, &object_reference(claim.as_ref()), event)
            .await;
    }
    if failure.is_none() && status_landed && plan.first_ready.is_some() {
        record_first_ready(core, &claim, &plan, &now, &first_observed);
        if let Some(patch) = &plan.annotate {
            annotate(core, key, patch).await;
        }
    }
    if failure.is_none() && (status_landed || !plan.write_status) && plan.status.is_ready() {
        lock(&core.first_observed).remove(key);
    }
    match error {
        Some(e) if e.class == ErrorClass::Transient => match requeue {
            Some(d) => Outcome::RequeueAfter(d),
            None => Outcome::Retry(e.message),
        },
        Some(e) => {
            tracing::info!(claim = %key, error = %e.message, "permanent error; not retrying until the claim changes");
            Outcome::after(requeue)
        }
        None => Outcome::after(requeue),
    }
}

/// Merges the observability annotations into the claim's metadata. Best effort: they are
/// for people and dashboards, and the metrics were already recorded from memory.
async fn annotate(core: &Core, key: &Key, patch: &paddock_plan::patch::MetadataPatch) {
    if let Err(e) = merge_claim_metadata(core, key, patch, None).await
        && e.kind != FailureKind::NotFound
    {
        tracing::debug!(claim = %key, error = %e.message, "could not annotate the claim");
    }
}

/// The status as a merge patch, conditional on the claim's latest known resourceVersion.
/// Returns whether it landed: a conflict or a claim already gone is dropped, as another event
/// reconciles it again.
async fn write_status(
    core: &Core,
    claim: &SandboxClaim,
    key: &Key,
    rv: Option<&str>,
    status: &SandboxClaimStatus,
) -> Result<bool, WriteError> {
    let old = serde_json::to_value(claim.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
    let new = serde_json::to_value(status).unwrap_or(Value::Null);
    let mut patch = json!({ "status": merge_patch_between(&old, &new) });
    if let Some(rv) = rv {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    match core
        .patch(
            Kind::SandboxClaim,
            &key.namespace,
            &key.name,
            Part::Status,
            &patch,
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.kind, FailureKind::Conflict | FailureKind::NotFound) => {
            tracing::debug!(claim = %key, "status write lost a race; a later event reconciles again");
            Ok(false)
        }
        Err(e) => Err(e),
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

fn count_creation(core: &Core, claim: &SandboxClaim, sb: &Sandbox, launch: &str, ready: bool) {
    core.metrics()
        .claim_creation
        .get_or_create(&ClaimCreationLabels {
            namespace: claim.metadata.namespace.clone().unwrap_or_default(),
            sandbox_template: sandbox_template(sb)
                .unwrap_or(UNKNOWN_CLAIM_TEMPLATE)
                .to_owned(),
            launch_type: launch.to_owned(),
            warmpool_name: claim.spec.warm_pool_ref.name.clone(),
            pod_condition: if ready { "ready" } else { "not_ready" }.to_owned(),
            created_by: created_by(claim),
        })
        .inc();
}

/// Merges `patch` into the claim's metadata, locked to `rv` when given.
async fn merge_claim_metadata(
    core: &Core,
    key: &Key,
    patch: &paddock_plan::patch::MetadataPatch,
    rv: Option<String>,
) -> Result<Object, WriteError> {
    let mut patch = patch.clone();
    patch.resource_version = rv;
    core.patch(
        Kind::SandboxClaim,
        &key.namespace,
        &key.name,
        Part::Main,
        &patch.to_merge_patch(),
    )
    .await
}

/// Patches the claim's metadata, locked to `rv`, which advances on success.
async fn patch_claim(
    core: &Core,
    key: &Key,
    rv: &mut Option<String>,
    patch: &paddock_plan::patch::MetadataPatch,
) -> Result<(), WriteError> {
    let updated = merge_claim_metadata(core, key, patch, rv.clone()).await?;
    *rv = Some(updated.resource_version().to_owned());
    Ok(())
}

fn typed_sandbox(object: Object) -> Sandbox {
    object.into_typed().unwrap_or_default()
}

/// Applies one action; claim writes are locked to `rv`, which advances on success.
async fn apply(
    core: &Core,
    claim: &SandboxClaim,
    key: &Key,
    rv: &mut Option<String>,
    action: &ClaimAction,
) -> Result<(), WriteError> {
    let ns = key.namespace.as_str();
    match action {
        ClaimAction::DeleteLegacyNetworkPolicy { target } => {
            core.ports
                .workloads
                .write_network_policy(ns, PolicyWrite::Delete(target))
                .await
        }
        ClaimAction::PatchClaim { patch } => patch_claim(core, key, rv, patch).await,
        ClaimAction::Adopt { adoption } => {
            async {
                if let Some(claim_patch) = &adoption.claim_patch {
                    patch_claim(core, key, rv, claim_patch).await?;
                }
                let current = core
                    .cache()
                    .get::<Sandbox>(ns, &adoption.sandbox_name)
                    .map(|s| (*s).clone())
                    .unwrap_or_default();
                let adopted = core
                    .patch(
                        Kind::Sandbox,
                        ns,
                        &adoption.sandbox_name,
                        Part::Main,
                        &adoption.sandbox_patch.to_merge_patch(&current),
                    )
                    .await?;
                tracing::info!(claim = %key, sandbox = %adoption.sandbox_name, "adopted a warm sandbox");
                count_creation(core, claim, &typed_sandbox(adopted), "warm", adoption.ready);
                Ok(())
            }
            .await
        }
        ClaimAction::PatchSandbox { patch } => {
            let current = core
                .cache()
                .get::<Sandbox>(ns, &patch.name)
                .map(|s| (*s).clone())
                .unwrap_or_default();
            core.patch(
                Kind::Sandbox,
                ns,
                &patch.name,
                Part::Main,
                &patch.to_merge_patch(&current),
            )
            .await
            .map(drop)
        }
        ClaimAction::CreateSandbox { sandbox } => {
            let created = core.create(Object::Sandbox((**sandbox).clone())).await?;
            tracing::info!(claim = %key, "created a cold sandbox");
            count_creation(core, claim, &typed_sandbox(created), "cold", false);
            Ok(())
        }
        ClaimAction::DeleteSandbox { target } => core.delete(Kind::Sandbox, ns, target, None).await,
        ClaimAction::DeleteClaim { propagation } => {
            let target = ObjectRef::new(&key.name, claim.metadata.uid.as_deref());
            core.delete(Kind::SandboxClaim, ns, &target, Some(*propagation))
                .await
        }
        ClaimAction::Event { event } => {
            core.record(Controller::Claim, &object_reference(claim), event)
                .await;
            Ok(())
        }
    }
}

fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// The claim start-up histograms, once, on the plan that makes the claim Ready first.
fn record_first_ready(
    core: &Core,
    claim: &SandboxClaim,
    plan: &ClaimPlan,
    now: &Time,
    first_observed: &Time,
) {
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
    let m = core.metrics();
    let observed = since(CONTROLLER_FIRST_OBSERVED_AT).unwrap_or_else(|| {
        now.0
            .duration_since(first_observed.0)
            .as_millis_f64()
            .max(0.0)
    });
    m.claim_controller_startup_latency
        .get_or_create(&labels)
        .observe(observed);
    if let Some(ms) = since(CLIENT_FIRST_REQUESTED_AT) {
        m.client_claim_startup_latency
            .get_or_create(&labels)
            .observe(ms);
    }
    if let Some(ms) = since(WEBHOOK_FIRST_OBSERVED_AT) {
        m.claim_startup_latency.get_or_create(&labels).observe(ms);
    }
}
