//! The Sandbox loop (contract §2.2): observe the Sandbox's children through the
//! [`Workloads`](crate::ports::Workloads) port, run `plan_sandbox`, apply PVC → pod →
//! annotation → Service → delete → Event in order (stop at the first failure), and merge-patch
//! the status. A terminating or deleted Sandbox releases its workload (on a cluster the garbage
//! collector does that, and the port does nothing).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use paddock_api::conditions::{self as conds, types};
use paddock_api::kinds::Kind;
use paddock_api::v1beta1::{Sandbox, SandboxStatus};
use paddock_plan::outcome::{ApplyFailure, ErrorClass, FailureKind};
use paddock_plan::patch::merge_patch_between;
use paddock_plan::sandbox::lifecycle::{self, Lifecycle};
use paddock_plan::sandbox::{SandboxAction, SandboxInput, plan_sandbox, status_after_failure};
use serde_json::{Value, json};

use crate::cache::Key;
use crate::core::{Core, Outcome, lock};
use crate::metrics::{
    CreationLatencyLabels, ExpiredLabels, FinishedLabels, LifecycleLabels, LifecycleResultLabels,
    UNKNOWN_CLAIM_TEMPLATE, launch_type, sandbox_template,
};
use crate::ports::{Controller, Part, Release, WriteError, object_reference};

fn action_name(action: Option<&SandboxAction>) -> &'static str {
    match action {
        Some(SandboxAction::CreatePvc { .. }) => "create PVC",
        Some(SandboxAction::AdoptPvc { .. }) => "adopt PVC",
        Some(SandboxAction::CreatePod { .. }) => "create pod",
        Some(SandboxAction::PatchPod { .. }) => "patch pod",
        Some(SandboxAction::DeletePod { .. }) => "delete pod",
        Some(SandboxAction::PatchSandbox { .. }) => "patch sandbox",
        Some(SandboxAction::CreateService { .. }) => "create service",
        Some(SandboxAction::AdoptService { .. }) => "adopt service",
        Some(SandboxAction::PatchService { .. }) => "patch service",
        Some(SandboxAction::DeleteService { .. }) => "delete service",
        Some(SandboxAction::DeleteSandbox { .. }) => "delete sandbox",
        Some(SandboxAction::Event { .. }) => "record event",
        None => "apply",
    }
}

/// One Sandbox reconcile.
pub(crate) async fn reconcile(core: &Core, key: &Key) -> Outcome {
    let workloads = &core.ports.workloads;
    let Some(sb) = core.cache().get::<Sandbox>(&key.namespace, &key.name) else {
        lock(&core.settling).remove(key);
        lock(&core.lifecycle_marks).remove(key);
        workloads.release(&key.namespace, &key.name, Release::Gone);
        return Outcome::Done;
    };
    if sb.metadata.deletion_timestamp.is_some() {
        workloads.release(&key.namespace, &key.name, Release::Terminating);
        return Outcome::Done;
    }
    let trace = crate::traces::start_reconcile(
        Controller::Sandbox,
        &key.namespace,
        &key.name,
        sb.metadata.annotations.as_ref(),
        sb.metadata.labels.as_ref(),
    );
    stamp_trace_context(core, key, &sb, trace.as_ref()).await;
    let now = core.ports.clock.now();
    let children = workloads.observe(&sb);
    let input = SandboxInput {
        sandbox: &sb,
        pods: children.pods,
        service: children.service,
        pvcs: children.pvcs,
        cluster_domain: &core.config.cluster_domain,
        now: &now,
    };
    let plan = plan_sandbox(&input);
    if let Some(cx) = &trace {
        trace_children(cx, &input, &plan);
    }
    let mut failure = None;
    for (i, action) in plan.actions.iter().enumerate() {
        if let Err(e) = apply(core, &sb, key, action).await {
            failure = Some(ApplyFailure {
                action_index: i,
                kind: e.kind,
                message: e.message,
            });
            break;
        }
    }
    let old = sb.status.clone().unwrap_or_default();
    let (mut status, planned_write, error, requeue_after) = match &failure {
        None => (
            plan.status.clone(),
            plan.write_status,
            plan.error.clone(),
            plan.requeue_after,
        ),
        Some(f) => {
            let (status, error) = status_after_failure(&sb, &plan, f, &now);
            // A pod that already exists (a stale cache) is seen by the next plan: look again now.
            let pod_exists = f.kind == FailureKind::AlreadyExists
                && matches!(
                    plan.actions.get(f.action_index),
                    Some(SandboxAction::CreatePod { .. })
                );
            (
                status,
                true,
                Some(error),
                pod_exists.then_some(Duration::ZERO),
            )
        }
    };
    let tier_changed = add_tier_conditions(&mut status, &old, workloads.conditions(&sb, &now));
    if let Some(wait) = settling(
        core,
        key,
        &plan,
        failure.is_none() && error.is_none(),
        &status,
    ) {
        // The new pod's own events bring a newer status within moments; write that one.
        return Outcome::RequeueAfter(requeue_after.map_or(wait, |d| d.min(wait)));
    }
    if status != old && (planned_write || tier_changed) {
        if let Err(e) = write_status(core, key, &old, &status).await {
            return Outcome::Retry(format!("writing the Sandbox's status: {e}"));
        }
        record_creation_latency(core, &sb, &old, &status);
        report_lifecycle(core, key, &sb, &old, &status, &now).await;
    }
    match error {
        Some(e) if e.class == ErrorClass::Transient => match requeue_after {
            Some(d) if d.is_zero() => Outcome::RequeueAfter(d),
            _ => Outcome::Retry(match &failure {
                Some(f) => format!(
                    "{}: {}",
                    action_name(plan.actions.get(f.action_index)),
                    f.message
                ),
                None => e.message,
            }),
        },
        Some(e) => {
            tracing::info!(sandbox = %key, error = %e.message, "permanent error; not retrying until the Sandbox changes");
            Outcome::Done
        }
        None => Outcome::after(requeue_after),
    }
}

/// How long to hold a not-Ready status back because this Sandbox's pod was created less than
/// `new_pod_status_settle` ago (`None`: write it now).
fn settling(
    core: &Core,
    key: &Key,
    plan: &paddock_plan::sandbox::SandboxPlan,
    clean: bool,
    status: &SandboxStatus,
) -> Option<Duration> {
    let settle = core.config.new_pod_status_settle;
    let mut settling = lock(&core.settling);
    let now = tokio::time::Instant::now();
    let created_pod = plan
        .actions
        .iter()
        .any(|a| matches!(a, SandboxAction::CreatePod { .. }));
    if clean && created_pod && !settle.is_zero() {
        settling.insert(key.clone(), now + settle);
    }
    match settling.get(key) {
        Some(until) if clean && *until > now && !status.is_ready() => Some(*until - now),
        Some(_) => {
            settling.remove(key);
            None
        }
        None => None,
    }
}

/// Sets the tier's own conditions on `status` (keeping a condition's transition time while its
/// status holds); returns whether any of them differs from `old`.
fn add_tier_conditions(
    status: &mut SandboxStatus,
    old: &SandboxStatus,
    extra: Vec<Condition>,
) -> bool {
    if extra.is_empty() {
        return false;
    }
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let mut conditions = status.conditions.take().unwrap_or_default();
    let mut changed = false;
    for condition in extra {
        let type_ = condition.type_.clone();
        if conds::find(&conditions, &type_).is_none()
            && let Some(before) = conds::find(&old_conditions, &type_)
        {
            conditions.push(before.clone());
        }
        conds::set(&mut conditions, condition);
        changed |= conds::find(&conditions, &type_) != conds::find(&old_conditions, &type_);
    }
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    status.conditions = Some(conditions);
    changed
}

async fn write_status(
    core: &Core,
    key: &Key,
    old: &SandboxStatus,
    new: &SandboxStatus,
) -> Result<(), WriteError> {
    let old_v = serde_json::to_value(old).unwrap_or(Value::Null);
    let new_v = serde_json::to_value(new).unwrap_or(Value::Null);
    let patch = json!({ "status": merge_patch_between(&old_v, &new_v) });
    match core
        .patch(
            Kind::Sandbox,
            &key.namespace,
            &key.name,
            Part::Status,
            &patch,
        )
        .await
    {
        Err(e) if e.kind != FailureKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn ready_since(status: &SandboxStatus) -> Option<&Time> {
    status
        .conditions
        .as_deref()
        .and_then(|c| conds::find(c, types::READY))
        .filter(|c| c.status == conds::status::TRUE)
        .map(|c| &c.last_transition_time)
}

/// `agent_sandbox_creation_latency_ms` on the first transition to Ready.
fn record_creation_latency(core: &Core, sb: &Sandbox, old: &SandboxStatus, new: &SandboxStatus) {
    if ready_since(old).is_some() {
        return;
    }
    let (Some(ready_at), Some(created)) =
        (ready_since(new), sb.metadata.creation_timestamp.as_ref())
    else {
        return;
    };
    let ms = ready_at
        .0
        .duration_since(created.0)
        .as_millis_f64()
        .max(0.0);
    core.metrics()
        .creation_latency
        .get_or_create(&CreationLatencyLabels {
            namespace: sb.metadata.namespace.clone().unwrap_or_default(),
            launch_type: launch_type(sb).to_owned(),
            sandbox_template: sandbox_template(sb)
                .unwrap_or(UNKNOWN_CLAIM_TEMPLATE)
                .to_owned(),
        })
        .observe(ms);
}

/// Upstream's child spans of `ReconcileSandbox`: `reconcilePod` (with the pod's observed
/// phase as an event) and, when the Sandbox has volumes, `reconcilePVCs`.
fn trace_children(
    cx: &opentelemetry::Context,
    input: &SandboxInput<'_>,
    plan: &paddock_plan::sandbox::SandboxPlan,
) {
    use opentelemetry::KeyValue;
    let pod = input.pods.as_ref().ok().and_then(|pods| pods.first());
    let created = plan.actions.iter().find_map(|a| match a {
        SandboxAction::CreatePod { pod } => pod.metadata.name.clone(),
        _ => None,
    });
    let event = match (pod, created) {
        (Some(p), _) => Some((
            "ExistingPodStatusObserved",
            vec![
                KeyValue::new("pod.Name", p.name.clone()),
                KeyValue::new("pod.Phase", p.phase.clone()),
            ],
        )),
        (None, Some(name)) => Some((
            "NewPodStatusObserved",
            vec![
                KeyValue::new("pod.Name", name),
                KeyValue::new("pod.Phase", "Pending"),
            ],
        )),
        (None, None) => None,
    };
    crate::traces::child(cx, "reconcilePod", event);
    if input
        .sandbox
        .spec
        .blueprint
        .volume_claim_templates
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        crate::traces::child(cx, "reconcilePVCs", None);
    }
}

/// With tracing on, gives a Sandbox that lacks one the trace-context annotation of this
/// reconcile (upstream's Sandbox controller does; a claim's Sandbox has its claim's already).
async fn stamp_trace_context(
    core: &Core,
    key: &Key,
    sb: &Sandbox,
    trace: Option<&opentelemetry::Context>,
) {
    use paddock_api::names::TRACE_CONTEXT;
    if !core.config.otel_tracing
        || sb
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(TRACE_CONTEXT))
    {
        return;
    }
    let Some(value) = trace.and_then(crate::traces::carrier) else {
        return;
    };
    let patch = json!({"metadata": {"annotations": {TRACE_CONTEXT: value}}});
    if let Err(e) = core
        .patch(Kind::Sandbox, &key.namespace, &key.name, Part::Main, &patch)
        .await
    {
        tracing::debug!(sandbox = %key, error = %e, "cannot stamp the trace context");
    }
}

/// A suspension or resumption under way, and when it was first seen.
#[derive(Clone, Debug)]
pub(crate) struct LifecycleMark {
    suspending: bool,
    since: Time,
}

fn millis_between(from: &Time, to: &Time) -> f64 {
    to.0.duration_since(from.0).as_millis_f64().max(0.0)
}

/// Records the Events and metrics of each lifecycle step between the written statuses.
async fn report_lifecycle(
    core: &Core,
    key: &Key,
    sb: &Sandbox,
    old: &SandboxStatus,
    new: &SandboxStatus,
    now: &Time,
) {
    let steps = lifecycle::transitions(sb, old, new);
    if steps.is_empty() {
        return;
    }
    let metrics = core.metrics();
    let labels = LifecycleLabels::of(sb);
    let with_result = |result: &str| LifecycleResultLabels {
        namespace: labels.namespace.clone(),
        sandbox_template: labels.sandbox_template.clone(),
        owned_by: labels.owned_by.clone(),
        result: result.to_owned(),
    };
    for step in &steps {
        match step {
            Lifecycle::SuspendRequested => {
                metrics
                    .suspend_total
                    .get_or_create(&with_result("requested"))
                    .inc();
                lock(&core.lifecycle_marks).insert(
                    key.clone(),
                    LifecycleMark {
                        suspending: true,
                        since: now.clone(),
                    },
                );
            }
            Lifecycle::Suspended => {
                metrics
                    .suspend_total
                    .get_or_create(&with_result("pod_terminated"))
                    .inc();
                let mark = lock(&core.lifecycle_marks).remove(key);
                if let Some(m) = mark.filter(|m| m.suspending) {
                    metrics
                        .suspend_latency
                        .get_or_create(&labels)
                        .observe(millis_between(&m.since, now));
                }
            }
            Lifecycle::SuspendFailed => {
                metrics
                    .suspend_total
                    .get_or_create(&with_result("error"))
                    .inc();
            }
            Lifecycle::ResumeRequested => {
                metrics
                    .resume_total
                    .get_or_create(&with_result("requested"))
                    .inc();
                lock(&core.lifecycle_marks).insert(
                    key.clone(),
                    LifecycleMark {
                        suspending: false,
                        since: now.clone(),
                    },
                );
            }
            Lifecycle::Ready => {
                let mark = lock(&core.lifecycle_marks).remove(key);
                if let Some(m) = mark.filter(|m| !m.suspending) {
                    metrics
                        .resume_total
                        .get_or_create(&with_result("ready"))
                        .inc();
                    metrics
                        .resume_latency
                        .get_or_create(&labels)
                        .observe(millis_between(&m.since, now));
                }
            }
            Lifecycle::Finished { succeeded, .. } => {
                metrics
                    .finished_total
                    .get_or_create(&FinishedLabels {
                        namespace: labels.namespace.clone(),
                        sandbox_template: labels.sandbox_template.clone(),
                        owned_by: labels.owned_by.clone(),
                        reason: if *succeeded {
                            "PodSucceeded"
                        } else {
                            "PodFailed"
                        }
                        .to_owned(),
                    })
                    .inc();
            }
            Lifecycle::Expired { policy } => {
                metrics
                    .expired_total
                    .get_or_create(&ExpiredLabels {
                        namespace: labels.namespace.clone(),
                        sandbox_template: labels.sandbox_template.clone(),
                        owned_by: labels.owned_by.clone(),
                        shutdown_policy: format!("{policy:?}"),
                    })
                    .inc();
            }
        }
        if let Some(event) = step.event() {
            core.record(Controller::Sandbox, &object_reference(sb), &event)
                .await;
        }
    }
}

async fn apply(
    core: &Core,
    sb: &Sandbox,
    key: &Key,
    action: &SandboxAction,
) -> Result<(), WriteError> {
    match action {
        SandboxAction::PatchSandbox { patch } => core
            .patch(
                Kind::Sandbox,
                &key.namespace,
                &key.name,
                Part::Main,
                &patch.to_merge_patch(),
            )
            .await
            .map(drop),
        SandboxAction::DeleteSandbox { target } => {
            core.delete(Kind::Sandbox, &key.namespace, target, None)
                .await
        }
        SandboxAction::Event { event } => {
            core.record(Controller::Sandbox, &object_reference(sb), event)
                .await;
            Ok(())
        }
        SandboxAction::CreatePod { pod } => {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let result = core.ports.workloads.apply(sb, action).await;
            let event = match &result {
                Ok(()) => lifecycle::pod_created_event(name),
                // A stale cache, not a failure: the next plan sees the pod.
                Err(e) if e.kind == FailureKind::AlreadyExists => return result,
                Err(e) => lifecycle::pod_create_failed_event(name, &e.message),
            };
            core.record(Controller::Sandbox, &object_reference(sb), &event)
                .await;
            result
        }
        child => core.ports.workloads.apply(sb, child).await,
    }
}
