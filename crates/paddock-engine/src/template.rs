//! The SandboxTemplate controller on one machine: the template's ref-hash label, and the
//! NetworkPolicy the planner derives kept as a record. Locally every sandbox runs with no network
//! at all, which is stricter than any policy; the record keeps the planner's view consistent
//! (and answers what a cluster would enforce).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use paddock_api::kinds::Kind;
use paddock_api::v1beta1::SandboxTemplate;
use paddock_plan::outcome::ErrorClass;
use paddock_plan::template::{TemplateAction, TemplateInput, plan_template};
use paddock_store::ObjectStore;

use crate::controller::{Outcome, Reconciler};
use crate::informer::{Informer, Key};
use crate::resources::resource;

/// The template controller.
#[derive(Debug)]
pub struct TemplateController {
    store: Arc<dyn ObjectStore>,
    informer: Arc<Informer>,
    policies: Mutex<HashMap<Key, NetworkPolicy>>,
}

impl TemplateController {
    /// The controller.
    pub fn new(store: Arc<dyn ObjectStore>, informer: Arc<Informer>) -> Arc<Self> {
        Arc::new(Self {
            store,
            informer,
            policies: Mutex::default(),
        })
    }

    fn policies(&self) -> std::sync::MutexGuard<'_, HashMap<Key, NetworkPolicy>> {
        self.policies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Reconciler for TemplateController {
    fn name(&self) -> &'static str {
        "sandboxtemplate"
    }

    async fn reconcile(&self, key: &Key) -> Outcome {
        let Some(value) = self.informer.get(Kind::SandboxTemplate, &key.0, &key.1) else {
            self.policies().remove(key);
            return Outcome::Done;
        };
        let template: SandboxTemplate = match serde_json::from_value((*value).clone()) {
            Ok(t) => t,
            Err(e) => {
                return Outcome::Retry(format!("stored SandboxTemplate does not decode: {e}"));
            }
        };
        let policy = self.policies().get(key).cloned();
        let plan = plan_template(&TemplateInput {
            template: &template,
            network_policy: policy.as_ref(),
        });
        for action in plan.actions {
            match action {
                TemplateAction::PatchTemplate { patch } => {
                    match self
                        .store
                        .patch(
                            resource(Kind::SandboxTemplate),
                            &key.0,
                            &key.1,
                            patch.to_merge_patch(),
                        )
                        .await
                    {
                        Ok(updated) => self.informer.observe_write(Kind::SandboxTemplate, &updated),
                        Err(e) => return Outcome::Retry(format!("labelling the template: {e}")),
                    }
                }
                TemplateAction::CreateNetworkPolicy { network_policy } => {
                    let mut np = *network_policy;
                    np.metadata.resource_version = Some("1".to_owned());
                    self.policies().insert(key.clone(), np);
                }
                TemplateAction::UpdateNetworkPolicy { spec, .. } => {
                    if let Some(np) = self.policies().get_mut(key) {
                        np.spec = Some(*spec);
                    }
                }
                TemplateAction::DeleteNetworkPolicy { .. } => {
                    self.policies().remove(key);
                }
            }
        }
        match plan.error {
            Some(e) if e.class == ErrorClass::Transient => Outcome::Retry(e.message),
            _ => Outcome::Done,
        }
    }
}
