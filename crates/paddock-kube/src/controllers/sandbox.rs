//! The Sandbox controller (contract §2.2): observe the Sandbox's pods, Service and PVCs in the
//! caches, run `plan_sandbox`, apply PVC → Pod → annotation → Service → delete → Event in
//! order (stop at the first failure), and merge-patch the status subresource.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use paddock_api::conditions::{self as conds, types};
use paddock_api::names::{POD_NAME, name_hash};
use paddock_api::v1beta1::{Sandbox, SandboxStatus};
use paddock_plan::outcome::{ApplyFailure, ErrorClass, FailureKind};
use paddock_plan::patch::merge_patch_between;
use paddock_plan::sandbox::{
    PodObservation, PvcObservation, SandboxAction, SandboxInput, SandboxPlan, ServiceObservation,
    plan_sandbox, pvc_name, status_after_failure,
};
use serde_json::{Value, json};

use super::{Context, Reporting, action_for};
use crate::cache::{Caches, index_key};
use crate::driver::ApiFailure;
use crate::error::ReconcileError;
use crate::metrics::{CreationLatencyLabels, launch_type, sandbox_template};

/// The reconcile entry point for the work queue.
pub fn reconcile(
    sb: Arc<Sandbox>,
    ctx: Arc<Context>,
) -> BoxFuture<'static, Result<Action, ReconcileError>> {
    async move { reconcile_sandbox(&sb, &ctx).await }.boxed()
}

/// What the caches hold for one Sandbox, as planner observations.
pub fn observe(
    ctx: &Context,
    sb: &Sandbox,
) -> (
    Vec<PodObservation>,
    Option<ServiceObservation>,
    Vec<PvcObservation>,
) {
    let ns = sb.metadata.namespace.as_deref().unwrap_or_default();
    let name = sb.metadata.name.as_deref().unwrap_or_default();
    let caches = &ctx.caches;
    let mut names: BTreeSet<String> = caches
        .indexes
        .pods
        .get(&index_key(ns, &name_hash(name)))
        .into_iter()
        .collect();
    let tracked = sb
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_NAME))
        .filter(|v| !v.is_empty())
        .map_or(name, String::as_str);
    names.insert(tracked.to_owned());
    let pods = names
        .iter()
        .filter_map(|n| Caches::get(&caches.pods, ns, n))
        .map(|p| PodObservation::from_pod(&p))
        .collect();
    let service =
        Caches::get(&caches.services, ns, name).map(|s| ServiceObservation::from_service(&s));
    let pvcs = sb
        .spec
        .blueprint
        .volume_claim_templates
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|vct| Caches::get(&caches.pvcs, ns, &pvc_name(vct, name)))
        .map(|m| PvcObservation {
            name: m.metadata.name.clone().unwrap_or_default(),
            owner_references: m.metadata.owner_references.clone().unwrap_or_default(),
            labels: m.metadata.labels.clone().unwrap_or_default(),
        })
        .collect();
    (pods, service, pvcs)
}

/// One Sandbox reconcile: plan, apply, write status.
///
/// # Errors
/// A transient planner error or a failed action (the status already reports it); the work
/// queue retries with backoff.
pub async fn reconcile_sandbox(sb: &Sandbox, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = sb.namespace().unwrap_or_default();
    let name = sb.name_any();
    let now = (ctx.clock)();
    let (pods, service, pvcs) = observe(ctx, sb);
    let input = SandboxInput {
        sandbox: sb,
        pods: Ok(pods),
        service: Ok(service),
        pvcs: Ok(pvcs),
        cluster_domain: &ctx.config.cluster_domain,
        now: &now,
    };
    let plan = plan_sandbox(&input);
    let mut failure = None;
    for (i, action) in plan.actions.iter().enumerate() {
        if let Err(f) = apply(ctx, sb, &ns, &name, &plan, action).await {
            failure = Some(ApplyFailure {
                action_index: i,
                kind: f.kind,
                message: f.message,
            });
            break;
        }
    }
    let old = sb.status.clone().unwrap_or_default();
    let (status, write, error, requeue_after) = match &failure {
        None => (
            plan.status.clone(),
            plan.write_status,
            plan.error.clone(),
            plan.requeue_after,
        ),
        Some(f) => {
            let (status, error) = status_after_failure(sb, &plan, f, &now);
            let created_pod_exists = f.kind == FailureKind::AlreadyExists
                && matches!(
                    plan.actions.get(f.action_index),
                    Some(SandboxAction::CreatePod { .. })
                );
            let requeue = created_pod_exists.then_some(Duration::ZERO);
            let write = status != old;
            (status, write, Some(error), requeue)
        }
    };
    if write {
        write_status(ctx, &ns, &name, &old, &status).await?;
        record_creation_latency(ctx, sb, &old, &status);
    }
    match error {
        Some(e) if e.class == ErrorClass::Transient => {
            if let Some(d) = requeue_after.filter(|d| d.is_zero()) {
                tracing::debug!(sandbox = %format!("{ns}/{name}"), error = %e.message, "retrying at once");
                return Ok(Action::requeue(d));
            }
            Err(match failure {
                Some(f) => ReconcileError::Apply {
                    action: action_name(plan.actions.get(f.action_index)),
                    message: f.message,
                },
                None => ReconcileError::Plan(e.message),
            })
        }
        Some(e) => {
            tracing::info!(sandbox = %format!("{ns}/{name}"), error = %e.message, "permanent error; not retrying until the Sandbox changes");
            Ok(Action::await_change())
        }
        None => Ok(action_for(requeue_after)),
    }
}

async fn write_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    old: &SandboxStatus,
    new: &SandboxStatus,
) -> Result<(), ReconcileError> {
    let old_v = serde_json::to_value(old).unwrap_or(Value::Null);
    let new_v = serde_json::to_value(new).unwrap_or(Value::Null);
    let patch = json!({ "status": merge_patch_between(&old_v, &new_v) });
    match ctx.driver.patch_status::<Sandbox>(ns, name, &patch).await {
        Ok(_) => Ok(()),
        Err(f) if f.kind == FailureKind::NotFound => Ok(()),
        Err(f) => Err(ReconcileError::Apply {
            action: "status update",
            message: f.message,
        }),
    }
}

fn ready_since(
    status: &SandboxStatus,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    status
        .conditions
        .as_deref()
        .and_then(|c| conds::find(c, types::READY))
        .filter(|c| c.status == conds::status::TRUE)
        .map(|c| &c.last_transition_time)
}

/// `agent_sandbox_creation_latency_ms` on the first transition to Ready.
fn record_creation_latency(ctx: &Context, sb: &Sandbox, old: &SandboxStatus, new: &SandboxStatus) {
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
    ctx.metrics
        .creation_latency
        .get_or_create(&CreationLatencyLabels {
            namespace: sb.metadata.namespace.clone().unwrap_or_default(),
            launch_type: launch_type(sb).to_owned(),
            sandbox_template: sandbox_template(sb)
                .unwrap_or(crate::metrics::UNKNOWN_CLAIM_TEMPLATE)
                .to_owned(),
        })
        .observe(ms);
}

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

async fn apply(
    ctx: &Context,
    sb: &Sandbox,
    ns: &str,
    name: &str,
    _plan: &SandboxPlan,
    action: &SandboxAction,
) -> Result<(), ApiFailure> {
    let d = &ctx.driver;
    match action {
        SandboxAction::CreatePvc { pvc } => {
            d.create::<PersistentVolumeClaim>(ns, pvc).await.map(drop)
        }
        SandboxAction::AdoptPvc { name: pvc, patch } => d
            .merge_patch::<PersistentVolumeClaim>(ns, pvc, &patch.to_merge_patch())
            .await
            .map(drop),
        SandboxAction::CreatePod { pod } => d.create::<Pod>(ns, pod).await.map(drop),
        SandboxAction::PatchPod { name: pod, patch } => d
            .merge_patch::<Pod>(ns, pod, &patch.to_merge_patch())
            .await
            .map(drop),
        SandboxAction::DeletePod { target } => d.delete::<Pod>(ns, target, None).await,
        SandboxAction::PatchSandbox { patch } => d
            .merge_patch::<Sandbox>(ns, name, &patch.to_merge_patch())
            .await
            .map(drop),
        SandboxAction::CreateService { service } => {
            d.create::<Service>(ns, service).await.map(drop)
        }
        SandboxAction::AdoptService { name: svc, edit } => {
            let Some(current) = Caches::get(&ctx.caches.services, ns, svc) else {
                return Err(ApiFailure {
                    kind: FailureKind::NotFound,
                    message: format!("service {svc:?} is no longer in the cache"),
                });
            };
            let mut updated = (*current).clone();
            edit.apply(&mut updated);
            updated
                .metadata
                .resource_version
                .clone_from(&edit.resource_version);
            d.replace::<Service>(ns, svc, &updated).await.map(drop)
        }
        SandboxAction::PatchService { name: svc, edit } => {
            let old_selector = Caches::get(&ctx.caches.services, ns, svc)
                .and_then(|s| s.spec.as_ref().and_then(|sp| sp.selector.clone()))
                .unwrap_or_default();
            d.merge_patch::<Service>(ns, svc, &edit.to_merge_patch(&old_selector))
                .await
                .map(drop)
        }
        SandboxAction::DeleteService { target } => d.delete::<Service>(ns, target, None).await,
        SandboxAction::DeleteSandbox { target } => d.delete::<Sandbox>(ns, target, None).await,
        SandboxAction::Event { event } => {
            ctx.record(Reporting::Sandbox, sb.object_ref(&()), event)
                .await;
            Ok(())
        }
    }
}
