//! The SandboxTemplate loop (contract §2.3): the `sandbox-template-ref-hash` label on the
//! template, and the template-managed NetworkPolicy `<template>-network-policy` (a real policy
//! on a cluster; a record on one machine, where sandboxes have no network at all).

use paddock_api::kinds::Kind;
use paddock_api::names::network_policy_name;
use paddock_api::v1beta1::SandboxTemplate;
use paddock_plan::outcome::ErrorClass;
use paddock_plan::template::{TemplateAction, TemplateInput, plan_template};

use crate::cache::Key;
use crate::core::{Core, Outcome};
use crate::ports::{Part, PolicyWrite, WriteError};

fn action_name(action: &TemplateAction) -> &'static str {
    match action {
        TemplateAction::PatchTemplate { .. } => "label template",
        TemplateAction::CreateNetworkPolicy { .. } => "create network policy",
        TemplateAction::UpdateNetworkPolicy { .. } => "update network policy",
        TemplateAction::DeleteNetworkPolicy { .. } => "delete network policy",
    }
}

/// One template reconcile.
pub(crate) async fn reconcile(core: &Core, key: &Key) -> Outcome {
    let Some(template) = core
        .cache()
        .get::<SandboxTemplate>(&key.namespace, &key.name)
    else {
        core.ports
            .workloads
            .template_gone(&key.namespace, &key.name);
        return Outcome::Done;
    };
    let _trace = crate::traces::start_reconcile(
        crate::ports::Controller::Template,
        &key.namespace,
        &key.name,
        template.metadata.annotations.as_ref(),
        template.metadata.labels.as_ref(),
    );
    let policy = core
        .ports
        .workloads
        .network_policy(&key.namespace, &network_policy_name(&key.name));
    let plan = plan_template(&TemplateInput {
        template: &template,
        network_policy: policy.as_ref(),
    });
    for action in &plan.actions {
        if let Err(e) = apply(core, key, action).await {
            return Outcome::Retry(format!("{}: {e}", action_name(action)));
        }
    }
    match plan.error {
        Some(e) if e.class == ErrorClass::Transient => Outcome::Retry(e.message),
        Some(e) => {
            tracing::info!(template = %key, error = %e.message, "permanent error; not retrying until the template changes");
            Outcome::Done
        }
        None => Outcome::Done,
    }
}

async fn apply(core: &Core, key: &Key, action: &TemplateAction) -> Result<(), WriteError> {
    let ns = key.namespace.as_str();
    let workloads = &core.ports.workloads;
    match action {
        TemplateAction::PatchTemplate { patch } => core
            .patch(
                Kind::SandboxTemplate,
                ns,
                &key.name,
                Part::Main,
                &patch.to_merge_patch(),
            )
            .await
            .map(drop),
        TemplateAction::CreateNetworkPolicy { network_policy } => {
            workloads
                .write_network_policy(ns, PolicyWrite::Create(network_policy))
                .await
        }
        TemplateAction::UpdateNetworkPolicy {
            name,
            resource_version,
            spec,
        } => {
            workloads
                .write_network_policy(
                    ns,
                    PolicyWrite::Update {
                        name,
                        resource_version: resource_version.as_deref(),
                        spec,
                    },
                )
                .await
        }
        TemplateAction::DeleteNetworkPolicy { target } => {
            workloads
                .write_network_policy(ns, PolicyWrite::Delete(target))
                .await
        }
    }
}
