//! The Sandbox planner (contract §2.2, conditions §1.3): from a Sandbox and what the driver
//! observed of its pod, Service and PVCs, the ordered actions that make them match, the new
//! status, when to look again, and whether an error is worth retrying.
//!
//! Order of actions: PVCs, then the pod, then the `pod-name` annotation on the Sandbox, then the
//! Service, then Events. A driver applies them in order and stops at the first failure (then
//! writes [`status_after_failure`] instead of the plan's status). The plan's status is written
//! (status subresource, merge patch, no lock: the Sandbox planner is its only writer) only when
//! [`SandboxPlan::write_status`] is set.

mod conditions;
pub mod lifecycle;
mod observe;
mod pod;
mod service;

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_api::conditions::{self as conds, sandbox as reason, status as cstatus, types};
use paddock_api::names::{ADOPTABLE, POD_NAME, SANDBOX_NAME_HASH, name_hash, sandbox_selector};
use paddock_api::syntax::{dns1123_label, dns1123_subdomain};
use paddock_api::v1beta1::{OperatingMode, Sandbox, SandboxStatus, ShutdownPolicy};
use serde::{Deserialize, Serialize};

pub use observe::{
    PodConditionObservation, PodObservation, PvcObservation, ServiceObservation, phase,
};
pub use pod::{
    EXTENSION_POD_LABELS, desired_pod, desired_pvc, extension_labels, merge_claim_volumes,
    pod_metadata_edits, pvc_name, sandbox_owner_ref,
};
pub use service::{ServiceEdit, derive_ports, desired_service, hash_selector, ports_equal};

use self::conditions::{ChildError, ConditionInputs, PodView, apply_conditions};
use crate::outcome::{ApplyFailure, ErrorClass, Event, FailureKind, ObjectRef, PlanError};
use crate::ownership::{Ownership, describe_owner, ownership, with_controller};
use crate::patch::MetadataPatch;
use crate::time::until;

/// The shortest requeue before a future `shutdownTime`.
pub const MIN_EXPIRY_REQUEUE: Duration = Duration::from_secs(2);

/// What the driver observed for one Sandbox. A lookup that failed is an `Err` with the
/// driver's message; the planner reports it in the `Ready` condition and asks for a retry.
#[derive(Clone, Debug)]
pub struct SandboxInput<'a> {
    /// The Sandbox (storage version).
    pub sandbox: &'a Sandbox,
    /// Pods in the Sandbox's namespace carrying `sandbox-name-hash=<hash>`, plus the pod named
    /// by the `pod-name` annotation (or named like the Sandbox) if that one exists.
    pub pods: Result<Vec<PodObservation>, String>,
    /// The Service named like the Sandbox, if it exists.
    pub service: Result<Option<ServiceObservation>, String>,
    /// The PVCs named `<vct>-<sandbox>` that exist.
    pub pvcs: Result<Vec<PvcObservation>, String>,
    /// Cluster DNS domain for `status.serviceFQDN` (`cluster.local` by default).
    pub cluster_domain: &'a str,
    /// The current time.
    pub now: &'a Time,
}

/// One step of a Sandbox reconcile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum SandboxAction {
    /// Create a PVC (controller reference to the Sandbox set).
    CreatePvc {
        /// The complete object.
        pvc: Box<PersistentVolumeClaim>,
    },
    /// Adopt an unowned PVC: merge-patch its owner references.
    AdoptPvc {
        /// PVC name.
        name: String,
        /// The owner-reference edit.
        patch: MetadataPatch,
    },
    /// Create the pod (field manager `sandbox-controller`). On AlreadyExists the driver
    /// requeues at once: the next plan treats the pod as existing.
    CreatePod {
        /// The complete object.
        pod: Box<Pod>,
    },
    /// Merge-patch an existing pod's labels, annotations and (when adopting) owner references.
    PatchPod {
        /// Pod name.
        name: String,
        /// The edits.
        patch: MetadataPatch,
    },
    /// Delete a pod the Sandbox owns (suspend, expiry).
    DeletePod {
        /// The pod, UID as precondition.
        target: ObjectRef,
    },
    /// Merge-patch the Sandbox's own metadata (the `pod-name` annotation).
    PatchSandbox {
        /// The edits.
        patch: MetadataPatch,
    },
    /// Create the headless Service.
    CreateService {
        /// The complete object.
        service: Box<Service>,
    },
    /// Adopt an unowned Service: full update (conditional on its resourceVersion) with the
    /// label, selector, ports and owner references set.
    AdoptService {
        /// Service name.
        name: String,
        /// The edits.
        edit: ServiceEdit,
    },
    /// Repair drift on an owned Service (merge patch).
    PatchService {
        /// Service name.
        name: String,
        /// The edits.
        edit: ServiceEdit,
    },
    /// Delete an owned Service.
    DeleteService {
        /// The Service, UID as precondition.
        target: ObjectRef,
    },
    /// Delete the Sandbox itself (expired with `shutdownPolicy: Delete`).
    DeleteSandbox {
        /// The Sandbox, UID as precondition.
        target: ObjectRef,
    },
    /// Record an Event on the Sandbox.
    Event {
        /// The event.
        event: Event,
    },
}

/// The plan for one Sandbox reconcile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxPlan {
    /// Actions in order.
    pub actions: Vec<SandboxAction>,
    /// The status after the actions succeed.
    pub status: SandboxStatus,
    /// Whether to write `status` (it changed, and is not a `nodeName`-only change of a Sandbox
    /// that is not Ready yet).
    pub write_status: bool,
    /// Reconcile again after this long (`Some(ZERO)` = at once) even without a watch event.
    pub requeue_after: Option<Duration>,
    /// An error to log; `Transient` means retry with backoff, `Permanent` means do not requeue.
    pub error: Option<PlanError>,
}

impl SandboxPlan {
    fn unchanged(sandbox: &Sandbox) -> Self {
        Self {
            actions: Vec::new(),
            status: sandbox.status.clone().unwrap_or_default(),
            write_status: false,
            requeue_after: None,
            error: None,
        }
    }
}

fn is_adoptable(labels: &std::collections::BTreeMap<String, String>, hash: &str) -> bool {
    labels.get(ADOPTABLE).map(String::as_str) == Some("true")
        || labels.get(SANDBOX_NAME_HASH).map(String::as_str) == Some(hash)
}

fn adopt_refusal(what: &str, name: &str) -> String {
    format!(
        "cannot adopt unowned {what} {name:?}: missing required pool authorization label ({ADOPTABLE:?}) or sandbox tracking label ({SANDBOX_NAME_HASH:?})"
    )
}

fn foreign_owner(what: &str, name: &str, owner: &str, sandbox: &str) -> String {
    format!("{what} {name:?} is owned by {owner}, not by sandbox {sandbox:?}")
}

fn ready_reason(status: &SandboxStatus) -> Option<&str> {
    status
        .conditions
        .as_deref()
        .and_then(|c| conds::find(c, types::READY))
        .map(|c| c.reason.as_str())
}

fn expired_condition(
    sandbox: &Sandbox,
    now: &Time,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conds::new(
        types::READY,
        cstatus::FALSE,
        reason::SANDBOX_EXPIRED,
        "Sandbox has expired",
        sandbox.metadata.generation,
        now.clone(),
    )
}

fn normalized(mut status: SandboxStatus) -> SandboxStatus {
    if status.conditions.as_ref().is_some_and(Vec::is_empty) {
        status.conditions = None;
    }
    if status.pod_ips.as_ref().is_some_and(Vec::is_empty) {
        status.pod_ips = None;
    }
    status
}

/// Whether `new` should be written over `old`: it differs, and is not a change of `nodeName`
/// alone on a Sandbox that is not Ready (that rides along with the Ready transition).
pub fn should_write_status(old: &SandboxStatus, new: &SandboxStatus) -> bool {
    if old == new {
        return false;
    }
    if old.node_name != new.node_name {
        let mut scratch = new.clone();
        scratch.node_name.clone_from(&old.node_name);
        let ready = new
            .conditions
            .as_deref()
            .is_some_and(|c| conds::is_true(c, types::READY));
        if scratch == *old && !ready {
            return false;
        }
    }
    true
}

/// Plans one Sandbox reconcile (contract §2.2).
pub fn plan_sandbox(input: &SandboxInput<'_>) -> SandboxPlan {
    let sandbox = input.sandbox;
    if sandbox.metadata.deletion_timestamp.is_some() {
        return SandboxPlan::unchanged(sandbox);
    }
    let name = sandbox.metadata.name.as_deref().unwrap_or_default();
    let uid = sandbox.metadata.uid.as_deref().unwrap_or_default();
    if name.is_empty() || uid.is_empty() {
        let mut plan = SandboxPlan::unchanged(sandbox);
        plan.error = Some(PlanError::transient(
            "Sandbox has no metadata.name or metadata.uid yet; the store assigns them on create",
        ));
        return plan;
    }
    if let Some(shutdown) = &sandbox.spec.lifecycle.shutdown_time
        && input.now >= shutdown
    {
        return plan_expired(input, name, uid);
    }
    plan_active(input, name, uid)
}

fn plan_expired(input: &SandboxInput<'_>, name: &str, uid: &str) -> SandboxPlan {
    let sandbox = input.sandbox;
    let old = sandbox.status.clone().unwrap_or_default();
    let mut plan = SandboxPlan::unchanged(sandbox);
    if ready_reason(&old) != Some(reason::SANDBOX_EXPIRED) {
        let mut status = old.clone();
        let mut c = status.conditions.take().unwrap_or_default();
        conds::set(&mut c, expired_condition(sandbox, input.now));
        conds::remove(&mut c, types::POD_SCHEDULED);
        status.conditions = Some(c);
        let status = normalized(status);
        plan.write_status = status != old;
        plan.status = status;
        plan.requeue_after = Some(Duration::ZERO);
        return plan;
    }
    let mut errors = Vec::new();
    match &input.pods {
        Err(e) => errors.push(format!("failed to get pod: {e}")),
        Ok(pods) => {
            let tracked = tracked_pod_name(sandbox, name);
            if let Some(p) = pods.iter().find(|p| p.name == tracked)
                && ownership(&p.owner_references, uid) == Ownership::Owned
                && !p.terminating
            {
                plan.actions.push(SandboxAction::DeletePod {
                    target: ObjectRef::new(&p.name, p.uid.as_deref()),
                });
            }
        }
    }
    match &input.service {
        Err(e) => errors.push(format!("failed to get service: {e}")),
        Ok(Some(svc)) if ownership(&svc.owner_references, uid) == Ownership::Owned => {
            plan.actions.push(SandboxAction::DeleteService {
                target: ObjectRef::new(&svc.name, svc.uid.as_deref()),
            });
        }
        Ok(_) => {}
    }
    if sandbox.spec.lifecycle.effective_shutdown_policy() == ShutdownPolicy::Delete {
        plan.actions.push(SandboxAction::DeleteSandbox {
            target: ObjectRef::new(name, Some(uid)),
        });
        if !errors.is_empty() {
            plan.error = Some(PlanError::transient(errors.join("\n")));
        }
        return plan;
    }
    if !errors.is_empty() {
        plan.error = Some(PlanError::transient(errors.join("\n")));
        return plan;
    }
    let mut c = old.conditions.clone().unwrap_or_default();
    conds::set(&mut c, expired_condition(sandbox, input.now));
    let status = normalized(SandboxStatus {
        conditions: Some(c),
        ..SandboxStatus::default()
    });
    plan.write_status = status != old;
    plan.status = status;
    plan
}

fn tracked_pod_name<'a>(sandbox: &'a Sandbox, name: &'a str) -> &'a str {
    sandbox
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_NAME))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .unwrap_or(name)
}

/// The pod the plan ends up with, owned by the Sandbox or not.
struct ChosenPod {
    pod: PodObservation,
    owned: bool,
}

fn plan_active(input: &SandboxInput<'_>, name: &str, uid: &str) -> SandboxPlan {
    let sandbox = input.sandbox;
    let old = sandbox.status.clone().unwrap_or_default();
    let hash = name_hash(name);
    let mut actions = Vec::new();
    let mut errors: Vec<ChildError> = Vec::new();
    let mut invalid: Option<String> = None;
    let owner = sandbox_owner_ref(sandbox);

    // PVCs, in template order; stop at the first one in the way.
    let vcts = sandbox
        .spec
        .blueprint
        .volume_claim_templates
        .as_deref()
        .unwrap_or_default();
    match &input.pvcs {
        Err(e) if !vcts.is_empty() => {
            errors.push(ChildError::Other(format!("failed to get PVC: {e}")))
        }
        Err(_) => {}
        Ok(pvcs) => {
            for vct in vcts {
                let pvc_name = pvc_name(vct, name);
                let problems = dns1123_subdomain(&pvc_name);
                if !problems.is_empty() {
                    invalid = Some(format!(
                        "PersistentVolumeClaim {pvc_name:?} is invalid: metadata.name: Invalid value: {pvc_name:?}: {}",
                        problems.join(", ")
                    ));
                    break;
                }
                let Some(existing) = pvcs.iter().find(|p| p.name == pvc_name) else {
                    actions.push(SandboxAction::CreatePvc {
                        pvc: Box::new(desired_pvc(sandbox, vct, &hash)),
                    });
                    continue;
                };
                match ownership(&existing.owner_references, uid) {
                    Ownership::Owned => {}
                    Ownership::Unowned if is_adoptable(&existing.labels, &hash) => {
                        let patch = MetadataPatch {
                            owner_references: Some(with_controller(
                                &existing.owner_references,
                                owner.clone(),
                            )),
                            ..MetadataPatch::default()
                        };
                        actions.push(SandboxAction::AdoptPvc {
                            name: pvc_name,
                            patch,
                        });
                    }
                    Ownership::Unowned => {
                        errors.push(ChildError::Other(adopt_refusal("PVC", &pvc_name)));
                        break;
                    }
                    Ownership::OwnedByOther(o) => {
                        errors.push(ChildError::Other(foreign_owner(
                            "PVC",
                            &pvc_name,
                            &describe_owner(o),
                            name,
                        )));
                        break;
                    }
                }
            }
        }
    }

    // The pod.
    let suspended = sandbox.spec.effective_operating_mode() == OperatingMode::Suspended;
    let annotation_present = sandbox
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(POD_NAME));
    let mut annotation_now = annotation_present;
    let mut annotation_set: Option<String> = None;
    let mut pod_error = false;
    let mut multiple_pods = false;
    let mut chosen: Option<ChosenPod> = None;
    match &input.pods {
        Err(e) => {
            errors.push(ChildError::Other(format!("pod list failed: {e}")));
            pod_error = true;
        }
        Ok(pods) => {
            let tracked = tracked_pod_name(sandbox, name);
            let is_owned =
                |p: &PodObservation| ownership(&p.owner_references, uid) == Ownership::Owned;
            let mut owned: Vec<&PodObservation> = pods
                .iter()
                .filter(|p| p.labels.get(SANDBOX_NAME_HASH) == Some(&hash) && is_owned(p))
                .collect();
            let named = pods.iter().find(|p| p.name == tracked);
            if named.is_none() && annotation_now {
                annotation_now = false;
            }
            if let Some(n) = named
                && is_owned(n)
                && !owned.iter().any(|o| o.name == n.name)
            {
                owned.push(n);
            }
            if owned.len() > 1 {
                errors.push(ChildError::MultiplePods(format!(
                    "multiple Pods ({}) are controlled by this Sandbox; refusing to choose or create a Pod",
                    owned.len()
                )));
                pod_error = true;
                multiple_pods = true;
            } else {
                let mut current = named;
                if let [only] = owned.as_slice()
                    && current.is_none_or(|c| c.name != only.name)
                {
                    annotation_now = false;
                    current = Some(*only);
                }
                if suspended {
                    if let Some(p) = current {
                        let own = is_owned(p);
                        if own && !p.terminating {
                            actions.push(SandboxAction::DeletePod {
                                target: ObjectRef::new(&p.name, p.uid.as_deref()),
                            });
                        }
                        chosen = Some(ChosenPod {
                            pod: p.clone(),
                            owned: own,
                        });
                    }
                    annotation_now = false;
                } else if let Some(p) = current {
                    match ownership(&p.owner_references, uid) {
                        Ownership::OwnedByOther(o) => {
                            annotation_now = false;
                            errors.push(ChildError::Other(foreign_owner(
                                "pod",
                                &p.name,
                                &describe_owner(o),
                                name,
                            )));
                            pod_error = true;
                        }
                        Ownership::Unowned if !is_adoptable(&p.labels, &hash) => {
                            errors.push(ChildError::Other(adopt_refusal("pod", &p.name)));
                            pod_error = true;
                        }
                        own => {
                            let mut patch = pod_metadata_edits(p, sandbox, &hash);
                            if own == Ownership::Unowned {
                                patch.owner_references =
                                    Some(with_controller(&p.owner_references, owner.clone()));
                            }
                            if !patch.is_empty() {
                                actions.push(SandboxAction::PatchPod {
                                    name: p.name.clone(),
                                    patch,
                                });
                            }
                            if !annotation_now {
                                annotation_set = Some(p.name.clone());
                            }
                            chosen = Some(ChosenPod {
                                pod: p.clone(),
                                owned: true,
                            });
                        }
                    }
                } else {
                    let new_pod = desired_pod(sandbox, &hash);
                    let meta = &new_pod.metadata;
                    let observed = PodObservation {
                        name: name.to_owned(),
                        uid: None,
                        owner_references: meta.owner_references.clone().unwrap_or_default(),
                        labels: meta.labels.clone().unwrap_or_default(),
                        annotations: meta.annotations.clone().unwrap_or_default(),
                        phase: phase::PENDING.to_owned(),
                        ..PodObservation::default()
                    };
                    actions.push(SandboxAction::CreatePod {
                        pod: Box::new(new_pod),
                    });
                    annotation_set = Some(name.to_owned());
                    chosen = Some(ChosenPod {
                        pod: observed,
                        owned: true,
                    });
                }
            }
        }
    }
    let current_annotation = sandbox
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_NAME));
    let mut sandbox_patch = MetadataPatch::default();
    match &annotation_set {
        Some(v) if current_annotation != Some(v) => {
            sandbox_patch.set_annotation(POD_NAME, v);
        }
        Some(_) => {}
        None if annotation_present && !annotation_now => {
            sandbox_patch.remove_annotation(POD_NAME);
        }
        None => {}
    }
    if !sandbox_patch.is_empty() {
        actions.push(SandboxAction::PatchSandbox {
            patch: sandbox_patch,
        });
    }

    let mut status = old.clone();
    match &chosen {
        Some(c) => {
            status.selector = Some(sandbox_selector(name));
            if c.owned {
                status.pod_ips = Some(c.pod.pod_ips.clone());
                status.node_name.clone_from(&c.pod.node_name);
            } else {
                status.pod_ips = None;
                status.node_name = None;
            }
        }
        None => {
            status.pod_ips = None;
            status.node_name = None;
        }
    }

    // The Service (left alone while the pod mapping is ambiguous).
    let mut service_present = false;
    if !multiple_pods {
        let desired = sandbox.spec.blueprint.service;
        let fqdn = format!(
            "{name}.{}.svc.{}",
            sandbox.metadata.namespace.as_deref().unwrap_or("default"),
            input.cluster_domain
        );
        let set_service_status = |status: &mut SandboxStatus, present: bool| {
            if present {
                status.service = Some(name.to_owned());
                status.service_fqdn = Some(fqdn.clone());
            } else {
                status.service = None;
                status.service_fqdn = None;
            }
        };
        match &input.service {
            Err(e) => errors.push(ChildError::Other(format!("service get failed: {e}"))),
            Ok(None) => {
                if desired == Some(true) {
                    let problems = dns1123_label(name);
                    if problems.is_empty() {
                        actions.push(SandboxAction::CreateService {
                            service: Box::new(desired_service(
                                sandbox,
                                &hash,
                                derive_ports(sandbox),
                            )),
                        });
                        set_service_status(&mut status, true);
                        service_present = true;
                    } else {
                        invalid = Some(format!(
                            "Service {name:?} is invalid: metadata.name: Invalid value: {name:?}: {}",
                            problems.join(", ")
                        ));
                        set_service_status(&mut status, false);
                    }
                } else {
                    set_service_status(&mut status, false);
                }
            }
            Ok(Some(svc)) => {
                let own = ownership(&svc.owner_references, uid);
                if desired == Some(false) {
                    if own == Ownership::Owned {
                        actions.push(SandboxAction::DeleteService {
                            target: ObjectRef::new(&svc.name, svc.uid.as_deref()),
                        });
                    }
                    set_service_status(&mut status, false);
                } else {
                    let selector = hash_selector(&hash);
                    match own {
                        Ownership::OwnedByOther(o) => {
                            errors.push(ChildError::Other(foreign_owner(
                                "service",
                                &svc.name,
                                &describe_owner(o),
                                name,
                            )));
                        }
                        Ownership::Unowned if desired.is_none() => {
                            set_service_status(&mut status, false);
                        }
                        Ownership::Unowned => {
                            let cluster_ip = svc.cluster_ip.as_deref().unwrap_or_default();
                            if !is_adoptable(&svc.labels, &hash) {
                                errors.push(ChildError::Other(adopt_refusal("service", &svc.name)));
                            } else if !cluster_ip.is_empty() && cluster_ip != "None" {
                                errors.push(ChildError::Other(format!(
                                    "cannot adopt service {:?}: ClusterIP is {cluster_ip:?} (expected \"None\", field is immutable)",
                                    svc.name
                                )));
                            } else {
                                actions.push(SandboxAction::AdoptService {
                                    name: svc.name.clone(),
                                    edit: ServiceEdit {
                                        resource_version: svc.resource_version.clone(),
                                        labels: selector.clone(),
                                        selector: Some(selector),
                                        ports: Some(derive_ports(sandbox)),
                                        owner_references: Some(with_controller(
                                            &svc.owner_references,
                                            owner.clone(),
                                        )),
                                    },
                                });
                                set_service_status(&mut status, true);
                                service_present = true;
                            }
                        }
                        Ownership::Owned => {
                            let mut edit = ServiceEdit::default();
                            if svc.labels.get(SANDBOX_NAME_HASH) != Some(&hash) {
                                edit.labels
                                    .insert(SANDBOX_NAME_HASH.to_owned(), hash.clone());
                            }
                            if svc.selector != selector {
                                edit.selector = Some(selector);
                            }
                            let ports = derive_ports(sandbox);
                            if desired == Some(true) && !ports_equal(&svc.ports, &ports) {
                                edit.ports = Some(ports);
                            }
                            if edit != ServiceEdit::default() {
                                actions.push(SandboxAction::PatchService {
                                    name: svc.name.clone(),
                                    edit,
                                });
                            }
                            set_service_status(&mut status, true);
                            service_present = true;
                        }
                    }
                }
            }
        }
    }

    // Conditions.
    let mut c = status.conditions.take().unwrap_or_default();
    let view = chosen.as_ref().map(|c| PodView {
        pod: &c.pod,
        owned: c.owned,
    });
    apply_conditions(
        &mut c,
        &ConditionInputs {
            sandbox,
            errors: &errors,
            service_present,
            pod: view,
            pod_error: pod_error && chosen.is_none(),
            now: input.now,
        },
    );
    if let Some(msg) = &invalid {
        conds::set(
            &mut c,
            conds::new(
                types::READY,
                cstatus::FALSE,
                reason::INVALID_CONFIGURATION,
                msg.clone(),
                sandbox.metadata.generation,
                input.now.clone(),
            ),
        );
    }
    status.conditions = Some(c);
    let status = normalized(status);

    if multiple_pods && ready_reason(&old) != Some(reason::MULTIPLE_PODS) {
        let msg = errors
            .iter()
            .find_map(|e| match e {
                ChildError::MultiplePods(m) => Some(m.clone()),
                ChildError::Other(_) => None,
            })
            .unwrap_or_default();
        actions.push(SandboxAction::Event {
            event: Event::warning(reason::MULTIPLE_PODS, "Reconciling", msg),
        });
    }

    let other_errors: Vec<&str> = errors
        .iter()
        .filter_map(|e| match e {
            ChildError::Other(m) => Some(m.as_str()),
            ChildError::MultiplePods(_) => None,
        })
        .collect();
    let error = if let Some(msg) = invalid {
        Some(PlanError::permanent(msg))
    } else if other_errors.is_empty() {
        None
    } else {
        Some(PlanError::transient(other_errors.join("\n")))
    };
    let requeue_after = match (&error, &sandbox.spec.lifecycle.shutdown_time) {
        (Some(e), _) if e.class == ErrorClass::Permanent => None,
        (_, Some(t)) => Some(until(input.now, t).max(MIN_EXPIRY_REQUEUE)),
        (_, None) => None,
    };
    SandboxPlan {
        actions,
        write_status: should_write_status(&old, &status),
        status,
        requeue_after,
        error,
    }
}

/// The status to write when applying `plan` failed: `Ready=False` with `InvalidConfiguration`
/// for a permanent `Invalid` rejection (no requeue), else `ReconcilerError` ("Error seen: …",
/// retry with backoff; an AlreadyExists on create is retried at once).
pub fn status_after_failure(
    sandbox: &Sandbox,
    plan: &SandboxPlan,
    failure: &ApplyFailure,
    now: &Time,
) -> (SandboxStatus, PlanError) {
    let mut status = plan.status.clone();
    let mut c = status.conditions.take().unwrap_or_default();
    let (why, msg, error) = match failure.kind {
        FailureKind::Invalid => (
            reason::INVALID_CONFIGURATION,
            failure.message.clone(),
            PlanError::permanent(failure.message.clone()),
        ),
        _ => (
            reason::RECONCILER_ERROR,
            format!("Error seen: {}", failure.message),
            PlanError::transient(failure.message.clone()),
        ),
    };
    conds::set(
        &mut c,
        conds::new(
            types::READY,
            cstatus::FALSE,
            why,
            msg,
            sandbox.metadata.generation,
            now.clone(),
        ),
    );
    status.conditions = Some(c);
    (status, error)
}
