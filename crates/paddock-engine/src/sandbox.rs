//! The Sandbox controller on one machine: the planner of contract §2.2 applied to local
//! workloads (the pod), host directories (the PVCs) and a Service record.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use paddock_api::conditions;
use paddock_api::kinds::Kind;
use paddock_api::names;
use paddock_api::v1beta1::Sandbox;
use paddock_plan::outcome::{ApplyFailure, ErrorClass, FailureKind};
use paddock_plan::sandbox::{
    PvcObservation, SandboxAction, SandboxInput, ServiceObservation, plan_sandbox,
    status_after_failure,
};
use paddock_runtime::WorkloadId;
use paddock_store::{DeleteOptions, ObjectStore, Preconditions};
use serde_json::Value;

use crate::controller::{Outcome, Reconciler};
use crate::informer::{Informer, Key};
use crate::resources::resource;
use crate::store_errors::failure_kind;
use crate::workloads::Workloads;

/// The condition reporting pod-template fields this host cannot honour (never silently dropped).
pub const FIELDS_HONOURED: &str = "FieldsHonoured";

/// The Sandbox controller.
#[derive(Debug)]
pub struct SandboxController {
    store: Arc<dyn ObjectStore>,
    informer: Arc<Informer>,
    workloads: Arc<Workloads>,
    cluster_domain: String,
    services: Mutex<HashMap<Key, Service>>,
    /// The last state of each Sandbox, to clean up after it once it is deleted.
    last_seen: Mutex<HashMap<Key, (String, Vec<String>)>>,
}

impl SandboxController {
    /// The controller.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        informer: Arc<Informer>,
        workloads: Arc<Workloads>,
        cluster_domain: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            informer,
            workloads,
            cluster_domain,
            services: Mutex::default(),
            last_seen: Mutex::default(),
        })
    }

    fn services(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Service>> {
        self.services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After a Sandbox is gone: its workload is stopped and its volumes removed (on a cluster,
    /// garbage collection deletes its pod and PVCs).
    fn cleanup(&self, key: &Key) {
        self.workloads.delete(key);
        self.services().remove(key);
        let seen = self
            .last_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
        if let Some((_, claims)) = seen {
            self.workloads.remove_volumes(&key.0, &claims);
        }
    }

    fn pvc_observations(&self, sandbox: &Sandbox, key: &Key) -> Vec<PvcObservation> {
        let owner = OwnerReference {
            api_version: Sandbox::API_VERSION.to_owned(),
            kind: Sandbox::KIND.to_owned(),
            name: key.1.clone(),
            uid: sandbox.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        claim_names(sandbox, &key.1)
            .into_iter()
            .filter(|claim| self.workloads.volume_exists(&key.0, claim))
            .map(|name| PvcObservation {
                name,
                owner_references: vec![owner.clone()],
                labels: BTreeMap::from([(
                    names::SANDBOX_NAME_HASH.to_owned(),
                    names::name_hash(&key.1),
                )]),
            })
            .collect()
    }

    async fn apply(
        &self,
        key: &Key,
        workload: &WorkloadId,
        action: &SandboxAction,
    ) -> Result<(), (FailureKind, String)> {
        let store_err = |e: paddock_store::StoreError| (failure_kind(&e), e.to_string());
        match action {
            SandboxAction::CreatePvc { pvc } => {
                let name = pvc.metadata.name.clone().unwrap_or_default();
                self.workloads.create_volume(&key.0, &name).map_err(|e| {
                    (
                        FailureKind::Other,
                        format!("creating the volume {name}: {e}"),
                    )
                })?;
            }
            SandboxAction::AdoptPvc { .. } => {}
            SandboxAction::CreatePod { pod } => {
                self.workloads.create(key.clone(), workload.clone(), pod)
            }
            SandboxAction::PatchPod { patch, .. } => self.workloads.patch(key, patch),
            SandboxAction::DeletePod { .. } => self.workloads.delete(key),
            SandboxAction::PatchSandbox { patch } => {
                let updated = self
                    .store
                    .patch(
                        resource(Kind::Sandbox),
                        &key.0,
                        &key.1,
                        patch.to_merge_patch(),
                    )
                    .await
                    .map_err(store_err)?;
                self.informer.observe_write(Kind::Sandbox, &updated);
            }
            SandboxAction::CreateService { service } => {
                self.services().insert(key.clone(), (**service).clone());
            }
            SandboxAction::AdoptService { edit, .. } | SandboxAction::PatchService { edit, .. } => {
                if let Some(svc) = self.services().get_mut(key) {
                    edit.apply(svc);
                }
            }
            SandboxAction::DeleteService { .. } => {
                self.services().remove(key);
            }
            SandboxAction::DeleteSandbox { target } => {
                let options = DeleteOptions {
                    preconditions: Preconditions {
                        uid: target.uid.clone(),
                        resource_version: target.resource_version.clone(),
                    },
                    ..DeleteOptions::default()
                };
                self.store
                    .delete(resource(Kind::Sandbox), &key.0, &key.1, options)
                    .await
                    .map_err(store_err)?;
            }
            SandboxAction::Event { event } => {
                tracing::info!(sandbox = %key.1, namespace = %key.0, reason = %event.reason, note = %event.note, "event");
            }
        }
        Ok(())
    }
}

/// The PVC names of a Sandbox's volume claim templates (`<vct>-<sandbox>`).
fn claim_names(sandbox: &Sandbox, name: &str) -> Vec<String> {
    sandbox
        .spec
        .blueprint
        .volume_claim_templates
        .iter()
        .flatten()
        .map(|t| format!("{}-{name}", t.name()))
        .collect()
}

impl Reconciler for SandboxController {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn reconcile(&self, key: &Key) -> Outcome {
        let Some(value) = self.informer.get(Kind::Sandbox, &key.0, &key.1) else {
            self.cleanup(key);
            return Outcome::Done;
        };
        let sandbox: Sandbox = match serde_json::from_value((*value).clone()) {
            Ok(s) => s,
            Err(e) => return Outcome::Retry(format!("stored Sandbox does not decode: {e}")),
        };
        let uid = sandbox.metadata.uid.clone().unwrap_or_default();
        self.last_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.clone(), (uid.clone(), claim_names(&sandbox, &key.1)));
        if sandbox.metadata.deletion_timestamp.is_some() {
            self.workloads.delete(key);
            return Outcome::Done;
        }
        let Ok(workload) = WorkloadId::new(uid.clone()) else {
            return Outcome::Retry(format!("Sandbox uid {uid:?} is not a usable workload id"));
        };
        // A local pod of an earlier Sandbox with this name goes first.
        if self
            .workloads
            .get(key)
            .is_some_and(|p| p.workload != workload)
        {
            self.workloads.delete(key);
        }
        let now = Time(jiff::Timestamp::now());
        let service = self
            .services()
            .get(key)
            .map(ServiceObservation::from_service);
        let input = SandboxInput {
            sandbox: &sandbox,
            pods: Ok(self.workloads.observe(key)),
            service: Ok(service),
            pvcs: Ok(self.pvc_observations(&sandbox, key)),
            cluster_domain: &self.cluster_domain,
            now: &now,
        };
        let plan = plan_sandbox(&input);
        let mut status = plan.status.clone();
        let mut error = plan.error.clone();
        for (index, action) in plan.actions.iter().enumerate() {
            if let Err((kind, message)) = self.apply(key, &workload, action).await {
                let failure = ApplyFailure {
                    action_index: index,
                    kind,
                    message,
                };
                let (failed_status, plan_error) =
                    status_after_failure(&sandbox, &plan, &failure, &now);
                status = failed_status;
                error = Some(plan_error);
                break;
            }
        }
        add_fields_honoured(
            &mut status,
            &self.workloads,
            key,
            sandbox.metadata.generation,
            &now,
        );
        let old =
            serde_json::to_value(sandbox.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
        let new = serde_json::to_value(&status).unwrap_or(Value::Null);
        if old != new
            && (plan.write_status
                || error.is_some()
                || differs_only_in_local_conditions(&old, &new))
        {
            let object = serde_json::json!({
                "apiVersion": Sandbox::API_VERSION, "kind": Sandbox::KIND,
                "metadata": {"name": key.1, "namespace": key.0, "uid": uid},
                "status": new,
            });
            match self
                .store
                .update_status(resource(Kind::Sandbox), object)
                .await
            {
                Ok(updated) => self.informer.observe_write(Kind::Sandbox, &updated),
                Err(e) if failure_kind(&e) == FailureKind::NotFound => return Outcome::Done,
                Err(e) => return Outcome::Retry(format!("writing status: {e}")),
            }
        }
        match (error, plan.requeue_after) {
            (Some(e), _) if e.class == ErrorClass::Transient => Outcome::Retry(e.message),
            (_, Some(d)) => Outcome::RequeueAfter(d),
            _ => Outcome::Done,
        }
    }
}

fn differs_only_in_local_conditions(old: &Value, new: &Value) -> bool {
    let local = |v: &Value| {
        v.get("conditions").and_then(Value::as_array).and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(FIELDS_HONOURED))
                .cloned()
        })
    };
    local(old) != local(new)
}

/// Adds the local `FieldsHonoured` condition: False with the fields this host ignores, True
/// otherwise (only once a workload was started, so it reflects a real mapping).
fn add_fields_honoured(
    status: &mut paddock_api::v1beta1::SandboxStatus,
    workloads: &Workloads,
    key: &Key,
    generation: Option<i64>,
    now: &Time,
) {
    // Only a started workload reflects a real mapping; while none runs the planner's
    // conditions stand as they are.
    let Some(pod) = workloads.get(key).filter(|p| p.runtime_class.is_some()) else {
        return;
    };
    let mut c = status.conditions.take().unwrap_or_default();
    let condition = if pod.unhonoured.is_empty() {
        conditions::new(
            FIELDS_HONOURED,
            conditions::status::TRUE,
            "AllFieldsHonoured",
            "every field of the pod template is honoured on this host",
            generation,
            now.clone(),
        )
    } else {
        let list: Vec<String> = pod
            .unhonoured
            .iter()
            .map(|u| format!("{}: {}", u.path, u.reason))
            .collect();
        conditions::new(
            FIELDS_HONOURED,
            conditions::status::FALSE,
            "UnhonouredFields",
            format!("not honoured on this host: {}", list.join("; ")),
            generation,
            now.clone(),
        )
    };
    conditions::set(&mut c, condition);
    c.sort_by(|a, b| a.type_.cmp(&b.type_));
    status.conditions = Some(c);
}
