//! `v1beta1`: the storage version and the only one upstream 1.x serves.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::common::*;
use crate::object::{NoStatus, root_object};

/// Whether a Sandbox should be running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OperatingMode {
    /// The pod runs.
    Running,
    /// The pod is deleted; volumes and Service are kept.
    Suspended,
}

/// Desired state of a Sandbox.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSpec {
    /// The pod, volumes and Service of the sandbox.
    #[serde(flatten)]
    pub blueprint: SandboxBlueprint,
    /// Expiry of the sandbox.
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
    /// `Running` (default) or `Suspended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Running"))]
    pub operating_mode: Option<OperatingMode>,
}

impl SandboxSpec {
    /// The operating mode with its default applied.
    pub fn effective_operating_mode(&self) -> OperatingMode {
        self.operating_mode.unwrap_or(OperatingMode::Running)
    }
}

/// Observed state of a Sandbox.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxStatus {
    /// `<service>.<namespace>.svc.<cluster-domain>` while a Service is in use.
    #[serde(
        default,
        rename = "serviceFQDN",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_fqdn: Option<String>,
    /// Name of the Service in use (the Sandbox's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `Ready`, `Suspended`, `Finished` and `PodScheduled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Label selector of the sandbox's pod: `agents.x-k8s.io/sandbox-name-hash=<hash>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// IPs of the pod.
    #[serde(default, rename = "podIPs", skip_serializing_if = "Option::is_none")]
    pub pod_ips: Option<Vec<String>>,
    /// Node the pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

impl SandboxStatus {
    /// Whether the `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        self.conditions
            .as_deref()
            .is_some_and(|c| crate::conditions::is_true(c, crate::conditions::types::READY))
    }
}

root_object! {
    /// An isolated, stateful, singleton workload: one pod, optional volumes and Service.
    Sandbox {
        group: "agents.x-k8s.io",
        version: "v1beta1",
        kind: "Sandbox",
        plural: "sandboxes",
        spec: SandboxSpec,
        status: SandboxStatus,
    }
}

/// Desired state of a SandboxTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxTemplateSpec {
    /// The pod, volumes and Service of sandboxes made from this template.
    #[serde(flatten)]
    pub blueprint: SandboxBlueprint,
    /// Network rules for the template's sandboxes; unset means the secure default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<SandboxNetworkPolicy>,
    /// `Managed` (default) or `Unmanaged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Managed"))]
    pub network_policy_management: Option<NetworkPolicyManagement>,
    /// Whether claims may set environment variables (default `Disallowed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Disallowed"))]
    pub env_vars_injection_policy: Option<EnvVarsInjectionPolicy>,
    /// Whether claims may add volume claim templates (default `Disallowed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Disallowed"))]
    pub volume_claim_templates_policy: Option<VolumeClaimTemplatesPolicy>,
}

root_object! {
    /// A reusable description of a sandbox, referenced by warm pools.
    SandboxTemplate {
        group: "extensions.agents.x-k8s.io",
        version: "v1beta1",
        kind: "SandboxTemplate",
        plural: "sandboxtemplates",
        spec: SandboxTemplateSpec,
        status: NoStatus,
    }
}

/// Desired state of a SandboxClaim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxClaimSpec {
    /// The warm pool to take a sandbox from; its template describes the sandbox. "No warm pool"
    /// is a pool with `replicas: 0`.
    pub warm_pool_ref: NameRef,
    /// When the claim expires and what happens then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<ClaimLifecycle>,
    /// Labels and annotations added to the sandbox's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_pod_metadata: Option<PodMetadata>,
    /// Environment variables for the sandbox's containers; forces a cold start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub env: Option<Vec<ClaimEnvVar>>,
    /// Extra volume claim templates; forces a cold start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaimTemplate>>,
}

root_object! {
    /// A request for a sandbox from a warm pool (or made cold from its template).
    SandboxClaim {
        group: "extensions.agents.x-k8s.io",
        version: "v1beta1",
        kind: "SandboxClaim",
        plural: "sandboxclaims",
        spec: SandboxClaimSpec,
        status: SandboxClaimStatus,
    }
}

/// Desired state of a SandboxWarmPool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxWarmPoolSpec {
    /// Number of ready sandboxes to keep (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = 1))]
    pub replicas: Option<i32>,
    /// The template the pool's sandboxes are made from.
    pub sandbox_template_ref: NameRef,
    /// How stale members are replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<WarmPoolUpdateStrategy>,
}

impl SandboxWarmPoolSpec {
    /// The replica count with its default applied.
    pub fn effective_replicas(&self) -> i32 {
        self.replicas.unwrap_or(1)
    }
}

/// Observed state of a SandboxWarmPool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxWarmPoolStatus {
    /// Active members, ready or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Members whose Ready condition is True.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Label selector of the members: `agents.x-k8s.io/warm-pool-sandbox=<hash>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

root_object! {
    /// A pool of ready sandboxes made from one template, handed out to claims.
    SandboxWarmPool {
        group: "extensions.agents.x-k8s.io",
        version: "v1beta1",
        kind: "SandboxWarmPool",
        plural: "sandboxwarmpools",
        spec: SandboxWarmPoolSpec,
        status: SandboxWarmPoolStatus,
    }
}
