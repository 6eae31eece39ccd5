//! The SandboxClaim controller on one machine: the planner of contract §2.5. Adoption changes
//! metadata only — the warm member keeps running — so a claim against a ready pool is served
//! in a few store writes, no process started.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_api::kinds::Kind;
use paddock_api::names;
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate, SandboxWarmPool};
use paddock_plan::claim::{
    ClaimAction, ClaimConfig, ClaimInput, claim_status_after_failure, plan_claim, template_name_for,
};
use paddock_plan::outcome::{ApplyFailure, ErrorClass, FailureKind, Propagation};
use paddock_plan::patch::MetadataPatch;
use paddock_store::{DeleteOptions, ObjectStore, Preconditions, PropagationPolicy, StoreError};
use serde_json::Value;

use crate::controller::{Outcome, Reconciler};
use crate::informer::{Informer, Key};
use crate::resources::resource;
use crate::store_errors::failure_kind;

/// The claim controller.
#[derive(Debug)]
pub struct ClaimController {
    store: Arc<dyn ObjectStore>,
    informer: Arc<Informer>,
    config: ClaimConfig,
    /// Members some claim is adopting right now (skipped by the others).
    adopting: Mutex<HashSet<(String, String)>>,
}

fn decode<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
    serde_json::from_value(v.clone()).ok()
}

fn rv(v: &Value) -> Option<String> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

impl ClaimController {
    /// The controller.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        informer: Arc<Informer>,
        config: ClaimConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            informer,
            config,
            adopting: Mutex::default(),
        })
    }

    fn adopting(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.adopting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes a claim metadata patch locked to the version this plan last wrote (a chain).
    async fn patch_claim(
        &self,
        key: &Key,
        patch: &MetadataPatch,
        chain: &mut Option<String>,
    ) -> Result<(), StoreError> {
        let mut patch = patch.clone();
        if patch.resource_version.is_some() {
            patch.resource_version.clone_from(chain);
        }
        let updated = self
            .store
            .patch(
                resource(Kind::SandboxClaim),
                &key.0,
                &key.1,
                patch.to_merge_patch(),
            )
            .await?;
        *chain = rv(&updated);
        self.informer.observe_write(Kind::SandboxClaim, &updated);
        Ok(())
    }

    async fn apply(
        &self,
        key: &Key,
        action: &ClaimAction,
        chain: &mut Option<String>,
    ) -> Result<(), StoreError> {
        let ns = &key.0;
        match action {
            ClaimAction::DeleteLegacyNetworkPolicy { .. } => {}
            ClaimAction::PatchClaim { patch } => self.patch_claim(key, patch, chain).await?,
            ClaimAction::Adopt { adoption } => {
                let member = (ns.clone(), adoption.sandbox_name.clone());
                self.adopting().insert(member.clone());
                let result = async {
                    if let Some(patch) = &adoption.claim_patch {
                        self.patch_claim(key, patch, chain).await?;
                    }
                    let current: Sandbox = self
                        .informer
                        .get(Kind::Sandbox, ns, &adoption.sandbox_name)
                        .and_then(|v| decode(&v))
                        .ok_or_else(|| StoreError::NotFound { resource: "sandboxes.agents.x-k8s.io".into(), namespace: ns.clone(), name: adoption.sandbox_name.clone() })?;
                    let patch = adoption.sandbox_patch.to_merge_patch(&current);
                    let updated = self.store.patch(resource(Kind::Sandbox), ns, &adoption.sandbox_name, patch).await?;
                    self.informer.observe_write(Kind::Sandbox, &updated);
                    tracing::info!(claim = %key.1, namespace = %ns, sandbox = %adoption.sandbox_name, "adopted a warm sandbox");
                    Ok(())
                }
                .await;
                self.adopting().remove(&member);
                result?;
            }
            ClaimAction::PatchSandbox { patch } => {
                let current: Option<Sandbox> = self
                    .informer
                    .get(Kind::Sandbox, ns, &patch.name)
                    .and_then(|v| decode(&v));
                if let Some(current) = current {
                    let updated = self
                        .store
                        .patch(
                            resource(Kind::Sandbox),
                            ns,
                            &patch.name,
                            patch.to_merge_patch(&current),
                        )
                        .await?;
                    self.informer.observe_write(Kind::Sandbox, &updated);
                }
            }
            ClaimAction::CreateSandbox { sandbox } => {
                let object = serde_json::to_value(&**sandbox).unwrap_or(Value::Null);
                let created = self.store.create(resource(Kind::Sandbox), object).await?;
                self.informer.observe_write(Kind::Sandbox, &created);
                tracing::info!(claim = %key.1, namespace = %ns, "created a cold sandbox");
            }
            ClaimAction::DeleteSandbox { target } => {
                let options = DeleteOptions {
                    preconditions: Preconditions {
                        uid: target.uid.clone(),
                        resource_version: target.resource_version.clone(),
                    },
                    ..DeleteOptions::default()
                };
                match self
                    .store
                    .delete(resource(Kind::Sandbox), ns, &target.name, options)
                    .await
                {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            ClaimAction::DeleteClaim { propagation } => {
                let policy = match propagation {
                    Propagation::Background => PropagationPolicy::Background,
                    Propagation::Foreground => PropagationPolicy::Foreground,
                };
                match self
                    .store
                    .delete(
                        resource(Kind::SandboxClaim),
                        ns,
                        &key.1,
                        DeleteOptions::propagation(policy),
                    )
                    .await
                {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            ClaimAction::Event { event } => {
                tracing::info!(claim = %key.1, namespace = %ns, reason = %event.reason, note = %event.note, "event");
            }
        }
        Ok(())
    }
}

impl Reconciler for ClaimController {
    fn name(&self) -> &'static str {
        "sandboxclaim"
    }

    async fn reconcile(&self, key: &Key) -> Outcome {
        let Some(value) = self.informer.get(Kind::SandboxClaim, &key.0, &key.1) else {
            return Outcome::Done;
        };
        let Some(claim) = decode::<SandboxClaim>(&value) else {
            return Outcome::Retry("stored SandboxClaim does not decode".to_owned());
        };
        let ns = &key.0;
        let pool: Option<SandboxWarmPool> = self
            .informer
            .get(Kind::SandboxWarmPool, ns, &claim.spec.warm_pool_ref.name)
            .and_then(|v| decode(&v));
        let template: Option<SandboxTemplate> = template_name_for(&claim, pool.as_ref())
            .and_then(|t| self.informer.get(Kind::SandboxTemplate, ns, &t))
            .and_then(|v| decode(&v));
        let all_sandboxes = self.informer.list(Kind::Sandbox, ns);
        let sandboxes: Vec<Sandbox> = all_sandboxes.iter().filter_map(|v| decode(v)).collect();
        let mut reserved: BTreeSet<String> = self
            .informer
            .list(Kind::SandboxClaim, ns)
            .iter()
            .filter(|c| c.pointer("/metadata/name").and_then(Value::as_str) != Some(key.1.as_str()))
            .filter_map(|c| {
                c.pointer(&format!(
                    "/metadata/annotations/{}",
                    names::SANDBOX_NAME.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .map(str::to_owned)
            })
            .collect();
        reserved.extend(
            self.adopting()
                .iter()
                .filter(|(n, _)| n == ns)
                .map(|(_, s)| s.clone()),
        );
        let now = Time(jiff::Timestamp::now());
        let input = ClaimInput {
            claim: &claim,
            pool: pool.as_ref(),
            template: template.as_ref(),
            sandboxes: sandboxes.iter().collect(),
            reserved,
            legacy_network_policy: None,
            now: &now,
            config: &self.config,
        };
        let plan = plan_claim(&input);
        let mut chain = claim.metadata.resource_version.clone();
        let mut status = Some(plan.status.clone()).filter(|_| plan.write_status);
        let mut requeue = plan.requeue_after;
        let mut error = plan.error.clone();
        for (index, action) in plan.actions.iter().enumerate() {
            if let Err(e) = self.apply(key, action, &mut chain).await {
                let failure = ApplyFailure {
                    action_index: index,
                    kind: failure_kind(&e),
                    message: e.to_string(),
                };
                let outcome = claim_status_after_failure(&input, &plan, &failure);
                status = outcome.status;
                requeue = outcome.requeue_after;
                error = Some(outcome.error);
                if failure.kind != FailureKind::Conflict && failure.kind != FailureKind::NotFound {
                    tracing::warn!(claim = %key.1, namespace = %ns, error = %failure.message, "claim action failed");
                }
                break;
            }
        }
        if let Some(status) = status {
            let object = serde_json::json!({
                "apiVersion": SandboxClaim::API_VERSION, "kind": SandboxClaim::KIND,
                "metadata": {"name": key.1, "namespace": ns, "resourceVersion": chain},
                "status": status,
            });
            match self
                .store
                .update_status(resource(Kind::SandboxClaim), object)
                .await
            {
                Ok(updated) => self.informer.observe_write(Kind::SandboxClaim, &updated),
                // Another change beat us; its event reconciles the claim again.
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => return Outcome::Retry(format!("writing status: {e}")),
            }
        }
        match (error, requeue) {
            (_, Some(d)) => Outcome::RequeueAfter(d),
            (Some(e), None) if e.class == ErrorClass::Transient => Outcome::Retry(e.message),
            _ => Outcome::Done,
        }
    }
}
