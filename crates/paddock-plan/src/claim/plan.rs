//! The claim planner's inputs and outputs: tunables, what the driver observed, and the plan
//! (actions, status, requeue) it gets back.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_api::v1beta1::{
    Sandbox, SandboxClaim, SandboxClaimStatus, SandboxTemplate, SandboxWarmPool,
};
use serde::{Deserialize, Serialize};

use crate::outcome::{Event, ObjectRef, PlanError, Propagation};
use crate::patch::{MetadataPatch, SandboxPatch};

/// Tunables, with upstream's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimConfig {
    /// Label domains `additionalPodMetadata` may use (ConfigMap `agent-sandbox-config` key
    /// `allowed-label-domains`); empty = `sandbox.users.io`.
    pub allowed_label_domains: Vec<String>,
    /// How long a young claim waits for warm members that have no pod IP yet before going cold
    /// (2 s).
    pub pending_address_grace: Duration,
    /// Requeue interval while waiting for such members (500 ms).
    pub pending_address_requeue: Duration,
    /// Requeue while the pool or template is missing (1 min; watches usually wake it sooner).
    pub missing_dependency_requeue: Duration,
    /// Requeue after a cold create hit AlreadyExists (200 ms).
    pub create_pending_requeue: Duration,
    /// Stamp `controller-first-observed-at` and `claim-first-ready-at` (upstream's
    /// `--disable-claim-observability-annotations` turns this off).
    pub observability_annotations: bool,
}

impl Default for ClaimConfig {
    fn default() -> Self {
        Self {
            allowed_label_domains: Vec::new(),
            pending_address_grace: Duration::from_secs(2),
            pending_address_requeue: Duration::from_millis(500),
            missing_dependency_requeue: Duration::from_secs(60),
            create_pending_requeue: Duration::from_millis(200),
            observability_annotations: true,
        }
    }
}

/// What the driver observed for one claim.
#[derive(Clone, Debug)]
pub struct ClaimInput<'a> {
    /// The claim (storage version; v1alpha1 claims arrive converted).
    pub claim: &'a SandboxClaim,
    /// The pool `spec.warmPoolRef.name` in the claim's namespace, if found.
    pub pool: Option<&'a SandboxWarmPool>,
    /// The template [`template_name_for`](super::template_name_for) names, if found.
    pub template: Option<&'a SandboxTemplate>,
    /// Sandboxes in the claim's namespace: those named by `status.sandbox.name`, by the
    /// `sandbox-name` annotation or legacy label, and like the claim; those controlled by the
    /// claim; and the members of the referenced pool. More is harmless.
    pub sandboxes: Vec<&'a Sandbox>,
    /// Members other claims hold (named by their `sandbox-name` annotations or being adopted
    /// by them right now); skipped as candidates to avoid pointless conflicts.
    pub reserved: BTreeSet<String>,
    /// The NetworkPolicy named `<claim>-network-policy`, if any (legacy per-claim policy).
    pub legacy_network_policy: Option<&'a NetworkPolicy>,
    /// The current time.
    pub now: &'a Time,
    /// When the controller first observed the claim (kept in memory; `None`: now).
    pub first_observed: Option<&'a Time>,
    /// Tunables.
    pub config: &'a ClaimConfig,
}

/// Adopting a warm member: two writes, in order, each conditional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Adoption {
    /// The member.
    pub sandbox_name: String,
    /// Step 1: the claim's `sandbox-name` annotation, locked to the claim's resourceVersion
    /// (absent when the annotation already names the member: completing an adoption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_patch: Option<MetadataPatch>,
    /// Step 2: the member patch, locked to the member's resourceVersion.
    pub sandbox_patch: SandboxPatch,
    /// Whether the member was Ready when chosen (metrics `pod_condition`).
    pub ready: bool,
}

/// One step of a claim reconcile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum ClaimAction {
    /// Delete the legacy per-claim NetworkPolicy (it is controlled by the claim).
    DeleteLegacyNetworkPolicy {
        /// The policy, UID as precondition.
        target: ObjectRef,
    },
    /// Merge-patch the claim's metadata, conditional on `patch.resource_version` (the claim's
    /// observed version; the driver substitutes the version its own previous claim write in
    /// this plan returned).
    PatchClaim {
        /// The edits.
        patch: MetadataPatch,
    },
    /// Adopt a warm member (see [`Adoption`]).
    Adopt {
        /// The two writes.
        adoption: Adoption,
    },
    /// Merge-patch the bound Sandbox (launch type, labels, pod-template metadata refresh).
    PatchSandbox {
        /// The edits.
        patch: SandboxPatch,
    },
    /// Create the cold Sandbox named after the claim.
    CreateSandbox {
        /// The complete object.
        sandbox: Box<Sandbox>,
    },
    /// Delete a Sandbox the claim controls (expiry with `Retain`, or a duplicate).
    DeleteSandbox {
        /// The Sandbox, UID as precondition.
        target: ObjectRef,
    },
    /// Delete the claim itself (expiry with `Delete` / `DeleteForeground`).
    DeleteClaim {
        /// Background or foreground.
        propagation: Propagation,
    },
    /// Record an Event on the claim.
    Event {
        /// The event.
        event: Event,
    },
}

/// For metrics: the claim just became Ready for the first time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirstReady {
    /// `warm`, `cold` or `unknown`.
    pub launch_type: String,
    /// The template, from the Sandbox's `sandbox-template-ref` annotation (`unknown` if absent).
    pub sandbox_template: String,
}

/// The plan for one claim reconcile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimPlan {
    /// Actions in order; stop at the first failure and use
    /// [`claim_status_after_failure`](super::claim_status_after_failure).
    pub actions: Vec<ClaimAction>,
    /// The status after the actions succeed (conditions sorted by type).
    pub status: SandboxClaimStatus,
    /// Whether `status` differs from the stored one. Written as a merge patch conditional on
    /// the claim's resourceVersion; a conflict is dropped (another event requeues).
    pub write_status: bool,
    /// Reconcile again after this long (`Some(ZERO)` = at once).
    pub requeue_after: Option<Duration>,
    /// An error to log; `Transient` = retry with backoff, `Permanent` = the status says it all.
    pub error: Option<PlanError>,
    /// Set when this plan makes the claim Ready for the first time.
    pub first_ready: Option<FirstReady>,
    /// The observability annotations (`controller-first-observed-at`, `claim-first-ready-at`,
    /// `sandbox-name`), merged into the claim's metadata after the status write lands (without
    /// a resourceVersion lock: it only adds these keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotate: Option<MetadataPatch>,
}
