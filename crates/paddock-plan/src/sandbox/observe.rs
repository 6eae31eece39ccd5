//! What a driver observed of a Sandbox's children, in a shape both drivers can fill: the
//! Kubernetes driver from Pods, Services and PVCs (`from_pod`, ...), the embedded driver from
//! its local workload (phase Running/Succeeded/Failed, Ready = the agent answers, IPs none or
//! loopback).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::{Deserialize, Serialize};

/// Pod phase values (`status.phase`).
pub mod phase {
    /// Accepted, not all containers running yet.
    pub const PENDING: &str = "Pending";
    /// Bound to a node, at least one container running.
    pub const RUNNING: &str = "Running";
    /// All containers exited successfully; will not restart.
    pub const SUCCEEDED: &str = "Succeeded";
    /// All containers exited, at least one failed; will not restart.
    pub const FAILED: &str = "Failed";
}

/// A pod condition as observed (status `True`/`False`/`Unknown`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodConditionObservation {
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Reason, e.g. `Unschedulable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One pod (or local workload) the Sandbox may be backed by.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodObservation {
    /// Pod name.
    pub name: String,
    /// Pod UID (delete precondition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// All owner references (the controller reference decides ownership).
    #[serde(default)]
    pub owner_references: Vec<OwnerReference>,
    /// Labels (the `adoptable` and `sandbox-name-hash` labels decide adoption).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (the `propagated-*` bookkeeping lives here).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`; empty when not reported.
    #[serde(default)]
    pub phase: String,
    /// The pod's `Ready` condition, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<PodConditionObservation>,
    /// The pod's `PodScheduled` condition, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<PodConditionObservation>,
    /// `status.podIPs` (empty until the pod has an address).
    #[serde(default)]
    pub pod_ips: Vec<String>,
    /// `spec.nodeName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Whether the pod has a deletion timestamp.
    #[serde(default)]
    pub terminating: bool,
}

fn owner_refs(meta: &ObjectMeta) -> Vec<OwnerReference> {
    meta.owner_references.clone().unwrap_or_default()
}

impl PodObservation {
    /// Observes a Kubernetes Pod.
    pub fn from_pod(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let condition = |type_: &str| {
            status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
                .map(|c| PodConditionObservation {
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                })
        };
        Self {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone(),
            owner_references: owner_refs(&pod.metadata),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            annotations: pod.metadata.annotations.clone().unwrap_or_default(),
            phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
            ready: condition("Ready"),
            scheduled: condition("PodScheduled"),
            pod_ips: status
                .and_then(|s| s.pod_ips.as_ref())
                .map(|ips| ips.iter().map(|ip| ip.ip.clone()).collect())
                .unwrap_or_default(),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            terminating: pod.metadata.deletion_timestamp.is_some(),
        }
    }

    /// Whether the `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        self.ready.as_ref().is_some_and(|c| c.status == "True")
    }
}

/// The Service named like the Sandbox.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceObservation {
    /// Service name.
    pub name: String,
    /// Service UID (delete precondition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// resourceVersion (the adoption update is conditional on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Owner references.
    #[serde(default)]
    pub owner_references: Vec<OwnerReference>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `spec.selector`.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// `spec.clusterIP` (`None` for headless).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// `spec.ports`.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
}

impl ServiceObservation {
    /// Observes a Kubernetes Service.
    pub fn from_service(svc: &Service) -> Self {
        let spec = svc.spec.as_ref();
        Self {
            name: svc.metadata.name.clone().unwrap_or_default(),
            uid: svc.metadata.uid.clone(),
            resource_version: svc.metadata.resource_version.clone(),
            owner_references: owner_refs(&svc.metadata),
            labels: svc.metadata.labels.clone().unwrap_or_default(),
            selector: spec.and_then(|s| s.selector.clone()).unwrap_or_default(),
            cluster_ip: spec.and_then(|s| s.cluster_ip.clone()),
            ports: spec.and_then(|s| s.ports.clone()).unwrap_or_default(),
        }
    }
}

/// A PersistentVolumeClaim named `<vct>-<sandbox>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PvcObservation {
    /// PVC name.
    pub name: String,
    /// Owner references.
    #[serde(default)]
    pub owner_references: Vec<OwnerReference>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl PvcObservation {
    /// Observes a Kubernetes PVC.
    pub fn from_pvc(pvc: &PersistentVolumeClaim) -> Self {
        Self {
            name: pvc.metadata.name.clone().unwrap_or_default(),
            owner_references: owner_refs(&pvc.metadata),
            labels: pvc.metadata.labels.clone().unwrap_or_default(),
        }
    }
}
