//! Sub-types shared by both API versions (contract §1.2): pod metadata and templates, volume
//! claim templates, and the Sandbox blueprint and lifecycle that Sandbox and SandboxTemplate
//! embed. Pod, PVC and NetworkPolicy types come from `k8s-openapi`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Labels and annotations for a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadata {
    /// Labels to put on the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations to put on the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The pod a sandbox runs: a full core/v1 PodSpec plus the labels and annotations to give it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Specification of the desired behaviour of the pod.
    pub spec: PodSpec,
    /// Metadata to put on the pod; only labels and annotations are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodMetadata>,
}

/// The subset of object metadata a volume claim template may carry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedObjectMetadata {
    /// Name of the claim template; the PVC is named `<name>-<sandbox>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels to put on the PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations to put on the PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A PersistentVolumeClaim to create for each sandbox and mount as the volume of the same name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimTemplate {
    /// Metadata of the claim; `name` names the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<EmbeddedObjectMetadata>,
    /// Specification of the claim.
    pub spec: PersistentVolumeClaimSpec,
}

impl PersistentVolumeClaimTemplate {
    /// The template's name (empty when unset).
    pub fn name(&self) -> &str {
        self.metadata
            .as_ref()
            .and_then(|m| m.name.as_deref())
            .unwrap_or("")
    }
}

/// What a sandbox is made of; embedded inline in Sandbox and SandboxTemplate specs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxBlueprint {
    /// The pod the sandbox runs.
    pub pod_template: PodTemplate,
    /// Persistent volume claims created for the sandbox, one per entry, kept across suspend and
    /// resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaimTemplate>>,
    /// Whether to manage a headless Service named like the sandbox: `true` creates it, `false`
    /// deletes an owned one, unset keeps using an existing one without creating it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<bool>,
}

/// What happens to a Sandbox when its `shutdownTime` passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ShutdownPolicy {
    /// Delete the Sandbox object (and with it everything it owns).
    Delete,
    /// Delete the pod and Service but keep the Sandbox object and its volumes.
    Retain,
}

/// When and how a Sandbox ends; embedded inline in the Sandbox spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    /// Absolute time at which the sandbox expires; unset means never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_time: Option<Time>,
    /// What to do at `shutdownTime` (default `Retain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Retain"))]
    pub shutdown_policy: Option<ShutdownPolicy>,
}

impl Lifecycle {
    /// The shutdown policy with its default applied.
    pub fn effective_shutdown_policy(&self) -> ShutdownPolicy {
        self.shutdown_policy.unwrap_or(ShutdownPolicy::Retain)
    }
}

/// What a SandboxClaim does when it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClaimShutdownPolicy {
    /// Delete the claim (and with it the Sandbox), in the background.
    Delete,
    /// Delete the claim in the foreground: it stays visible until its Sandbox and pod are gone.
    DeleteForeground,
    /// Delete only the claim's Sandbox and keep the claim.
    Retain,
}

/// When a SandboxClaim expires and what happens then.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimLifecycle {
    /// Absolute expiry of the claim. Not copied onto the Sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_time: Option<Time>,
    /// Seconds after the sandbox finished (its `Finished` condition) at which the claim expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
    /// What to do on expiry (default `Retain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Retain"))]
    pub shutdown_policy: Option<ClaimShutdownPolicy>,
}

impl ClaimLifecycle {
    /// The shutdown policy with its default applied.
    pub fn effective_shutdown_policy(&self) -> ClaimShutdownPolicy {
        self.shutdown_policy.unwrap_or(ClaimShutdownPolicy::Retain)
    }
}

/// An environment variable a claim injects into its sandbox's containers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimEnvVar {
    /// Variable name.
    pub name: String,
    /// Variable value.
    pub value: String,
    /// Container (or init container) to set it in; the first container when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
}

/// A reference by name to an object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NameRef {
    /// Name of the referenced object.
    pub name: String,
}

/// Where a sandbox's network rules come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NetworkPolicyManagement {
    /// The controller keeps a NetworkPolicy for the template's sandboxes.
    Managed,
    /// The controller creates none (and deletes one it owns).
    Unmanaged,
}

/// How a template lets claims inject environment variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EnvVarsInjectionPolicy {
    /// Claims may add variables but not override the template's.
    Allowed,
    /// Claims may add and override variables.
    Overrides,
    /// Claims may not set variables.
    Disallowed,
}

/// How a template lets claims add volume claim templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VolumeClaimTemplatesPolicy {
    /// Claims may not add volume claim templates.
    Disallowed,
    /// Claims may add templates with new names.
    Allowed,
    /// Claims may add templates and replace the template's of the same name.
    Overrides,
}

/// The network rules of a template's sandboxes: a restricted NetworkPolicy spec (the controller
/// owns `podSelector` and `policyTypes`). An empty list denies all traffic in that direction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxNetworkPolicy {
    /// Allowed incoming traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub ingress: Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyIngressRule>>,
    /// Allowed outgoing traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub egress: Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyEgressRule>>,
}

/// How a warm pool replaces members that no longer match their template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WarmPoolUpdateStrategyType {
    /// Replace stale unclaimed members at once.
    Recreate,
    /// Replace stale members only as they are claimed.
    OnReplenish,
}

/// A warm pool's update strategy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WarmPoolUpdateStrategy {
    /// `Recreate` or `OnReplenish` (default).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "OnReplenish"))]
    pub type_: Option<WarmPoolUpdateStrategyType>,
}

/// The Sandbox a claim is bound to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSandboxStatus {
    /// Name of the bound Sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// IPs of the bound Sandbox's pod.
    #[serde(default, rename = "podIPs", skip_serializing_if = "Option::is_none")]
    pub pod_ips: Option<Vec<String>>,
}

/// Status of a SandboxClaim (the same in both versions).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxClaimStatus {
    /// `Ready` (forwarded from the Sandbox, or a claim-level reason) and a mirrored `Finished`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
    /// The bound Sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<ClaimSandboxStatus>,
}

impl SandboxClaimStatus {
    /// Whether the `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        self.conditions
            .as_deref()
            .is_some_and(|c| crate::conditions::is_true(c, crate::conditions::types::READY))
    }
}
