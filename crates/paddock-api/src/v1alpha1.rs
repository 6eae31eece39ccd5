//! `v1alpha1`: the deprecated version that kubectl-ai, Sympozium and SDK 0.x still write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::common::*;
use crate::object::{NoStatus, root_object};

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
    /// 1 (default) runs the sandbox, 0 suspends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1), extend("default" = 1))]
    pub replicas: Option<i32>,
}

impl SandboxSpec {
    /// The replica count with its default applied.
    pub fn effective_replicas(&self) -> i32 {
        self.replicas.unwrap_or(1)
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
    /// Number of pods: 1 while running, 0 while suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// `Ready`, `Suspended`, `Finished` and `PodScheduled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Label selector of the sandbox's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// IPs of the pod.
    #[serde(default, rename = "podIPs", skip_serializing_if = "Option::is_none")]
    pub pod_ips: Option<Vec<String>>,
}

root_object! {
    /// An isolated, stateful, singleton workload: one pod, optional volumes and Service.
    Sandbox {
        group: "agents.x-k8s.io",
        version: "v1alpha1",
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
}

root_object! {
    /// A reusable description of a sandbox, referenced by claims and warm pools.
    SandboxTemplate {
        group: "extensions.agents.x-k8s.io",
        version: "v1alpha1",
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
    /// The template the sandbox is made from.
    pub sandbox_template_ref: NameRef,
    /// `none` never uses a pool; `default` (or empty) uses any pool of the template; any other
    /// value names the pool to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "default"))]
    pub warmpool: Option<String>,
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
}

/// The `warmpool` value meaning "never use a pool".
pub const WARMPOOL_NONE: &str = "none";
/// The `warmpool` value meaning "any pool of the template" (also the default).
pub const WARMPOOL_DEFAULT: &str = "default";

root_object! {
    /// A request for a sandbox made from a template, possibly from a warm pool.
    SandboxClaim {
        group: "extensions.agents.x-k8s.io",
        version: "v1alpha1",
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
    /// Number of ready sandboxes to keep.
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// The template the pool's sandboxes are made from.
    pub sandbox_template_ref: NameRef,
    /// How stale members are replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<WarmPoolUpdateStrategy>,
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
    /// Label selector of the members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

root_object! {
    /// A pool of ready sandboxes made from one template, handed out to claims.
    SandboxWarmPool {
        group: "extensions.agents.x-k8s.io",
        version: "v1alpha1",
        kind: "SandboxWarmPool",
        plural: "sandboxwarmpools",
        spec: SandboxWarmPoolSpec,
        status: SandboxWarmPoolStatus,
    }
}
