//! The SandboxTemplate controller (contract §2.3): the `sandbox-template-ref-hash` label on
//! the template and the template-managed NetworkPolicy `<template>-network-policy`.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use paddock_api::v1beta1::SandboxTemplate;
use paddock_plan::outcome::FailureKind;
use paddock_plan::template::{TemplateAction, TemplateInput, network_policy_name, plan_template};

use super::Context;
use crate::cache::Caches;
use crate::driver::ApiFailure;
use crate::error::ReconcileError;

/// The reconcile entry point for the work queue.
pub fn reconcile(
    t: Arc<SandboxTemplate>,
    ctx: Arc<Context>,
) -> BoxFuture<'static, Result<Action, ReconcileError>> {
    async move { reconcile_template(&t, &ctx).await }.boxed()
}

/// One template reconcile.
///
/// # Errors
/// A foreign NetworkPolicy in the way, or a failed write; retried with backoff.
pub async fn reconcile_template(
    t: &SandboxTemplate,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let ns = t.namespace().unwrap_or_default();
    let name = t.name_any();
    let np = Caches::get(
        &ctx.caches.network_policies,
        &ns,
        &network_policy_name(&name),
    );
    let plan = plan_template(&TemplateInput {
        template: t,
        network_policy: np.as_deref(),
    });
    for action in &plan.actions {
        if let Err(f) = apply(ctx, &ns, &name, action).await {
            return Err(ReconcileError::Apply {
                action: match action {
                    TemplateAction::PatchTemplate { .. } => "label template",
                    TemplateAction::CreateNetworkPolicy { .. } => "create network policy",
                    TemplateAction::UpdateNetworkPolicy { .. } => "update network policy",
                    TemplateAction::DeleteNetworkPolicy { .. } => "delete network policy",
                },
                message: f.message,
            });
        }
    }
    match plan.error {
        Some(e) => Err(ReconcileError::Plan(e.message)),
        None => Ok(Action::await_change()),
    }
}

async fn apply(
    ctx: &Context,
    ns: &str,
    name: &str,
    action: &TemplateAction,
) -> Result<(), ApiFailure> {
    let d = &ctx.driver;
    match action {
        TemplateAction::PatchTemplate { patch } => d
            .merge_patch::<SandboxTemplate>(ns, name, &patch.to_merge_patch())
            .await
            .map(drop),
        TemplateAction::CreateNetworkPolicy { network_policy } => d
            .create::<NetworkPolicy>(ns, network_policy)
            .await
            .map(drop),
        TemplateAction::UpdateNetworkPolicy {
            name: np_name,
            resource_version,
            spec,
        } => {
            let Some(current) = Caches::get(&ctx.caches.network_policies, ns, np_name) else {
                return Err(ApiFailure {
                    kind: FailureKind::NotFound,
                    message: format!("network policy {np_name:?} is no longer in the cache"),
                });
            };
            let mut updated = (*current).clone();
            updated.spec = Some((**spec).clone());
            updated
                .metadata
                .resource_version
                .clone_from(resource_version);
            d.replace::<NetworkPolicy>(ns, np_name, &updated)
                .await
                .map(drop)
        }
        TemplateAction::DeleteNetworkPolicy { target } => {
            d.delete::<NetworkPolicy>(ns, target, None).await
        }
    }
}
