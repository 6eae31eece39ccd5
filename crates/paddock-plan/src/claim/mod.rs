//! The SandboxClaim planner (contract §2.5): expiry, `additionalPodMetadata` validation,
//! find-or-adopt (bound Sandbox, adoption in progress, Sandbox named like the claim, warm
//! member, cold Sandbox), the claim status with the Sandbox's `Ready` forwarded, and when to
//! look again.
//!
//! Adoption is safe under concurrency by construction of [`ClaimAction::Adopt`]: the driver
//! first writes the claim's `sandbox-name` annotation conditional on the claim's
//! resourceVersion, then patches the member conditional on the member's resourceVersion. Of two
//! claims racing for one member, at most one member patch succeeds; the loser's next plan sees
//! the member controlled by another claim, drops its stale annotation and picks again. A member
//! is never handed to two claims, and a claim never switches candidate within one pass.

mod adopt;
mod cold;
mod metadata;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use paddock_api::conditions::{
    self as conds, claim as reason, sandbox as sandbox_reason, status as cstatus, types,
};
use paddock_api::names::{
    CLAIM_FIRST_READY_AT, CONTROLLER_FIRST_OBSERVED_AT, CREATED_BY, LAUNCH_TYPE, LAUNCH_TYPE_COLD,
    LAUNCH_TYPE_WARM, SANDBOX_NAME, SANDBOX_TEMPLATE_REF, SANDBOX_TEMPLATE_REF_HASH,
    SHADOW_POOL_PREFIX, name_hash,
};
use paddock_api::v1beta1::{
    ClaimSandboxStatus, ClaimShutdownPolicy, Sandbox, SandboxClaim, SandboxClaimStatus,
    SandboxTemplate, SandboxWarmPool, WarmPoolUpdateStrategyType,
};
use serde::{Deserialize, Serialize};

pub use adopt::is_adoptable_member;
pub use cold::{inject_env, merge_volume_claim_templates};
pub use metadata::{
    DEFAULT_ALLOWED_LABEL_DOMAIN, RESTRICTED_ANNOTATION_DOMAINS, claim_pod_metadata,
    merge_pod_metadata, validate_additional_pod_metadata,
};

use self::adopt::{Choice, adoption_patch, choose};
use crate::hash::semantically_equal;
use crate::outcome::{
    ApplyFailure, ErrorClass, Event, FailureKind, ObjectRef, PlanError, Propagation,
};
use crate::ownership::{controller_of_meta, is_controlled_by, is_extensions_kind};
use crate::patch::{MetadataPatch, SandboxPatch};
use crate::pool::{TemplateFingerprint, is_ready};
use crate::time::{add_seconds, min_requeue, rfc3339_nano, since, until};

/// Message of the claim `Ready` condition on first detecting expiry.
pub const CLAIM_EXPIRED_MESSAGE: &str = "Claim expired. Sandbox cleanup initiated.";
/// Message when the bound Sandbox expired on its own.
pub const SANDBOX_EXPIRED_MESSAGE: &str =
    "Underlying Sandbox resource has expired independently of the Claim.";

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
    /// The template [`template_name_for`] names, if found.
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
    /// Actions in order; stop at the first failure and use [`claim_status_after_failure`].
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
}

/// Errors with a claim-level reason.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ClaimError {
    TemplateNotFound(String),
    WarmPoolNotFound,
    InvalidMetadata(String),
    EnvVarsInjectionRejected(String),
    VolumeClaimTemplates(String),
    NotOwned(String),
    Other(String),
}

/// The template a claim's Sandbox is made from: the pool's `sandboxTemplateRef`; for a missing
/// `shadow-pool-<template>` pool (v1alpha1 `warmpool: none|default` converted), `<template>`,
/// because upstream's migration pre-creates such pools with `replicas: 0` and the claim must
/// still get a cold Sandbox. `None`: the pool is missing (`WarmPoolNotFound`).
pub fn template_name_for(claim: &SandboxClaim, pool: Option<&SandboxWarmPool>) -> Option<String> {
    match pool {
        Some(p) => Some(p.spec.sandbox_template_ref.name.clone()),
        None => claim
            .spec
            .warm_pool_ref
            .name
            .strip_prefix(SHADOW_POOL_PREFIX)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
    }
}

/// When the claim expires: the earlier of `lifecycle.shutdownTime` and (its `Finished`
/// condition True) `lastTransitionTime + ttlSecondsAfterFinished`.
pub fn claim_expiry(claim: &SandboxClaim, conditions: &[Condition]) -> Option<Time> {
    let lifecycle = claim.spec.lifecycle.as_ref()?;
    let ttl = lifecycle.ttl_seconds_after_finished.and_then(|ttl| {
        conds::find(conditions, types::FINISHED)
            .filter(|c| c.status == cstatus::TRUE)
            .map(|c| add_seconds(&c.last_transition_time, i64::from(ttl)))
    });
    match (lifecycle.shutdown_time.clone(), ttl) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn annotation<'a>(claim: &'a SandboxClaim, key: &str) -> Option<&'a str> {
    claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn claim_label<'a>(claim: &'a SandboxClaim, key: &str) -> Option<&'a str> {
    claim
        .metadata
        .labels
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn ready_condition(conditions: &[Condition]) -> Option<&Condition> {
    conds::find(conditions, types::READY)
}

fn sandbox_conditions(sb: &Sandbox) -> &[Condition] {
    sb.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

fn sorted(mut conditions: Vec<Condition>) -> Vec<Condition> {
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    conditions
}

fn normalized_status(mut status: SandboxClaimStatus) -> SandboxClaimStatus {
    status.conditions = status.conditions.map(sorted).filter(|c| !c.is_empty());
    if status
        .sandbox
        .as_ref()
        .is_some_and(|s| s.name.is_none() && s.pod_ips.as_ref().is_none_or(Vec::is_empty))
    {
        status.sandbox = None;
    }
    status
}

/// Plans one claim reconcile (contract §2.5).
pub fn plan_claim(input: &ClaimInput<'_>) -> ClaimPlan {
    let mut planner = Planner::new(input);
    planner.run();
    planner.finish()
}

struct Planner<'a, 'i> {
    input: &'i ClaimInput<'a>,
    claim: &'a SandboxClaim,
    name: &'a str,
    old_status: SandboxClaimStatus,
    actions: Vec<ClaimAction>,
    status: Option<SandboxClaimStatus>,
    requeue: Option<Duration>,
    error: Option<PlanError>,
    first_ready: Option<FirstReady>,
}

/// What find-or-adopt settled on.
enum Found {
    /// This Sandbox (existing, just adopted, or just created) is the claim's.
    Sandbox {
        sandbox: Box<Sandbox>,
        launch: &'static str,
    },
    /// Warm members are still waiting for an address: look again shortly.
    Wait(Duration),
}

impl<'a, 'i> Planner<'a, 'i> {
    fn new(input: &'i ClaimInput<'a>) -> Self {
        let claim = input.claim;
        Self {
            input,
            claim,
            name: claim.metadata.name.as_deref().unwrap_or_default(),
            old_status: normalized_status(claim.status.clone().unwrap_or_default()),
            actions: Vec::new(),
            status: None,
            requeue: None,
            error: None,
            first_ready: None,
        }
    }

    fn generation(&self) -> Option<i64> {
        self.claim.metadata.generation
    }

    fn claim_uid(&self) -> &'a str {
        self.claim.metadata.uid.as_deref().unwrap_or_default()
    }

    fn claim_lock(&self) -> MetadataPatch {
        MetadataPatch::locked(self.claim.metadata.resource_version.as_deref())
    }

    fn namespace(&self) -> Option<&'a str> {
        self.claim.metadata.namespace.as_deref()
    }

    fn by_name(&self, name: &str) -> Option<&'a Sandbox> {
        self.input.sandboxes.iter().copied().find(|s| {
            s.metadata.name.as_deref() == Some(name)
                && s.metadata.namespace.as_deref() == self.namespace()
        })
    }

    fn ready(&self, status: &str, why: &str, msg: impl Into<String>) -> Condition {
        conds::new(
            types::READY,
            status,
            why,
            msg,
            self.generation(),
            self.input.now.clone(),
        )
    }

    fn run(&mut self) {
        let claim = self.claim;
        if self.claim_uid().is_empty() || self.name.is_empty() {
            self.error = Some(PlanError::transient(
                "SandboxClaim has no metadata.name or metadata.uid yet; the store assigns them on create",
            ));
            return;
        }
        if let Some(np) = self.input.legacy_network_policy
            && np.metadata.name.as_deref() == Some(&format!("{}-network-policy", self.name))
            && controller_of_meta(&np.metadata)
                .is_some_and(|r| r.uid == self.claim_uid() && r.kind == SandboxClaim::KIND)
        {
            self.actions.push(ClaimAction::DeleteLegacyNetworkPolicy {
                target: ObjectRef::new(
                    np.metadata.name.as_deref().unwrap_or_default(),
                    np.metadata.uid.as_deref(),
                ),
            });
        }
        if claim.metadata.deletion_timestamp.is_some() {
            return;
        }
        if self.input.config.observability_annotations
            && annotation(claim, CONTROLLER_FIRST_OBSERVED_AT).is_none_or(str::is_empty)
        {
            let mut patch = self.claim_lock();
            patch.set_annotation(CONTROLLER_FIRST_OBSERVED_AT, &rfc3339_nano(self.input.now));
            self.actions.push(ClaimAction::PatchClaim { patch });
        }

        let old_conditions = self.old_status.conditions.clone().unwrap_or_default();
        let expiry = claim_expiry(claim, &old_conditions);
        let expired = expiry.as_ref().is_some_and(|t| self.input.now >= t);
        let marked =
            ready_condition(&old_conditions).is_some_and(|c| c.reason == reason::CLAIM_EXPIRED);
        if expired && !marked {
            self.mark_expired();
            return;
        }
        let policy = claim
            .spec
            .lifecycle
            .as_ref()
            .map_or(ClaimShutdownPolicy::Retain, |l| {
                l.effective_shutdown_policy()
            });
        if expired && policy != ClaimShutdownPolicy::Retain {
            let (propagation, word) = match policy {
                ClaimShutdownPolicy::DeleteForeground => {
                    (Propagation::Foreground, "DeleteForeground")
                }
                _ => (Propagation::Background, "Delete"),
            };
            self.actions.push(ClaimAction::Event {
                event: Event::normal(
                    reason::CLAIM_EXPIRED,
                    "Deleting",
                    format!("Deleting Claim (ShutdownPolicy={word})"),
                ),
            });
            self.actions.push(ClaimAction::DeleteClaim { propagation });
            return;
        }

        let (sandbox, err, launch, wait) = if expired {
            let (sb, err) = self.reconcile_expired();
            (sb, err, None, None)
        } else {
            match self.reconcile_active() {
                Ok(Found::Sandbox { sandbox, launch }) => {
                    (Some(*sandbox), None, Some(launch), None)
                }
                Ok(Found::Wait(d)) => (None, None, None, Some(d)),
                Err(e) => (None, Some(e), None, None),
            }
        };
        self.set_status(sandbox.as_ref(), err.as_ref(), expired, launch);

        if let Some(e) = &err {
            match e {
                ClaimError::TemplateNotFound(_) | ClaimError::WarmPoolNotFound => {
                    self.requeue = min_requeue(
                        self.requeue,
                        Some(self.input.config.missing_dependency_requeue),
                    );
                }
                ClaimError::InvalidMetadata(m)
                | ClaimError::EnvVarsInjectionRejected(m)
                | ClaimError::VolumeClaimTemplates(m)
                | ClaimError::NotOwned(m) => self.error = Some(PlanError::permanent(m.clone())),
                ClaimError::Other(m) => self.error = Some(PlanError::transient(m.clone())),
            }
        }
        self.requeue = min_requeue(self.requeue, wait);

        if !expired {
            let new_conditions = self
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            match claim_expiry(claim, &new_conditions) {
                Some(t) if self.input.now >= &t => {
                    let mut status = self.status.take().unwrap_or_default();
                    let mut c = status.conditions.take().unwrap_or_default();
                    conds::set(
                        &mut c,
                        self.ready(cstatus::FALSE, reason::CLAIM_EXPIRED, CLAIM_EXPIRED_MESSAGE),
                    );
                    status.conditions = Some(c);
                    self.status = Some(status);
                    self.actions.push(expired_event());
                    self.requeue = Some(Duration::ZERO);
                }
                Some(t) => {
                    self.requeue = min_requeue(self.requeue, Some(until(self.input.now, &t)))
                }
                None => {}
            }
        }
    }

    fn mark_expired(&mut self) {
        let mut status = self.old_status.clone();
        let mut c = status.conditions.take().unwrap_or_default();
        conds::set(
            &mut c,
            self.ready(cstatus::FALSE, reason::CLAIM_EXPIRED, CLAIM_EXPIRED_MESSAGE),
        );
        status.conditions = Some(c);
        self.status = Some(status);
        self.actions.push(expired_event());
        self.requeue = Some(Duration::ZERO);
    }

    fn reconcile_expired(&mut self) -> (Option<Sandbox>, Option<ClaimError>) {
        let target = self
            .old_status
            .sandbox
            .as_ref()
            .and_then(|s| s.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.name.to_owned());
        let Some(sb) = self.by_name(&target) else {
            return (None, None);
        };
        if !is_controlled_by(&sb.metadata, self.claim_uid()) {
            return (
                None,
                Some(ClaimError::NotOwned(format!(
                    "sandbox not owned by this claim: sandbox {target:?} is not owned by claim {:?}",
                    self.name
                ))),
            );
        }
        if sb.metadata.deletion_timestamp.is_none() {
            self.actions.push(ClaimAction::DeleteSandbox {
                target: ObjectRef::new(&target, sb.metadata.uid.as_deref()),
            });
        }
        (Some(sb.clone()), None)
    }

    fn reconcile_active(&mut self) -> Result<Found, ClaimError> {
        let claim = self.claim;
        validate_additional_pod_metadata(
            claim.spec.additional_pod_metadata.as_ref(),
            &self.input.config.allowed_label_domains,
        )
        .map_err(|e| ClaimError::InvalidMetadata(format!("invalid additionalPodMetadata: {e}")))?;

        let found = self.find_or_adopt()?;
        if let Found::Sandbox { sandbox, launch } = &found {
            self.refresh_bound(sandbox, launch)?;
            self.delete_duplicates(sandbox);
        }
        Ok(found)
    }

    /// The template for this claim, or why there is none.
    fn template(&self) -> Result<&'a SandboxTemplate, ClaimError> {
        let wanted =
            template_name_for(self.claim, self.input.pool).ok_or(ClaimError::WarmPoolNotFound)?;
        match self.input.template {
            Some(t) if t.metadata.name.as_deref() == Some(wanted.as_str()) => Ok(t),
            _ => Err(ClaimError::TemplateNotFound(format!(
                "SandboxTemplate {wanted:?} not found"
            ))),
        }
    }

    fn recreate_fingerprint(&self) -> Option<TemplateFingerprint> {
        let pool = self.input.pool?;
        let recreate = pool.spec.update_strategy.as_ref().and_then(|s| s.type_)
            == Some(WarmPoolUpdateStrategyType::Recreate);
        if !recreate {
            return None;
        }
        self.template().ok().map(TemplateFingerprint::new)
    }

    fn find_or_adopt(&mut self) -> Result<Found, ClaimError> {
        let claim = self.claim;
        let uid = self.claim_uid();
        let annotated = annotation(claim, SANDBOX_NAME).filter(|v| !v.is_empty());
        let labelled = claim_label(claim, SANDBOX_NAME).filter(|v| !v.is_empty());

        // a. The Sandbox the status names.
        if let Some(status_name) = self
            .old_status
            .sandbox
            .as_ref()
            .and_then(|s| s.name.as_deref())
            && let Some(sb) = self.by_name(status_name)
            && is_controlled_by(&sb.metadata, uid)
        {
            let warm = annotated == Some(status_name)
                || labelled == Some(status_name)
                || status_name != self.name;
            return Ok(Found::Sandbox {
                sandbox: Box::new(sb.clone()),
                launch: if warm {
                    LAUNCH_TYPE_WARM
                } else {
                    LAUNCH_TYPE_COLD
                },
            });
        }

        // b. The Sandbox the annotation (or legacy label) names.
        let assigned = annotated
            .map(|n| (n, false))
            .or(labelled.map(|n| (n, true)));
        if let Some((sb_name, from_label)) = assigned {
            let migrate = |p: &mut MetadataPatch| {
                if from_label {
                    p.set_annotation(SANDBOX_NAME, sb_name)
                        .remove_label(SANDBOX_NAME);
                }
            };
            match self.by_name(sb_name) {
                Some(sb) if is_controlled_by(&sb.metadata, uid) => {
                    let mut patch = self.claim_lock();
                    migrate(&mut patch);
                    if !patch.is_empty() {
                        self.actions.push(ClaimAction::PatchClaim { patch });
                    }
                    return Ok(Found::Sandbox {
                        sandbox: Box::new(sb.clone()),
                        launch: LAUNCH_TYPE_WARM,
                    });
                }
                Some(sb)
                    if controller_of_meta(&sb.metadata)
                        .is_some_and(|r| is_extensions_kind(r, SandboxWarmPool::KIND))
                        && self.verify_candidate(sb) =>
                {
                    let mut claim_patch = self.claim_lock();
                    migrate(&mut claim_patch);
                    return self.adopt(sb, (!claim_patch.is_empty()).then_some(claim_patch));
                }
                _ => {
                    let mut patch = self.claim_lock();
                    if from_label {
                        patch.remove_label(SANDBOX_NAME);
                    } else {
                        patch.remove_annotation(SANDBOX_NAME);
                    }
                    self.actions.push(ClaimAction::PatchClaim { patch });
                }
            }
        }

        // c. The Sandbox named like the claim.
        if let Some(sb) = self.by_name(self.name) {
            if !is_controlled_by(&sb.metadata, uid) {
                return Err(ClaimError::Other(format!(
                    "sandbox {:?} is not controlled by claim {:?}. Please use a different claim name or delete the sandbox manually",
                    self.name, self.name
                )));
            }
            return Ok(Found::Sandbox {
                sandbox: Box::new(sb.clone()),
                launch: LAUNCH_TYPE_COLD,
            });
        }

        // Any other Sandbox the claim controls (its binding was lost to a dropped write or a
        // stale cache): keep it rather than take a second one.
        if let Some(sb) = self.owned_sandboxes().into_iter().next() {
            let mut patch = self.claim_lock();
            let sb_name = sb.metadata.name.as_deref().unwrap_or_default();
            patch.set_annotation(SANDBOX_NAME, sb_name);
            self.actions.push(ClaimAction::PatchClaim { patch });
            return Ok(Found::Sandbox {
                sandbox: Box::new(sb.clone()),
                launch: LAUNCH_TYPE_WARM,
            });
        }

        // d. env or volume claim templates force a cold start.
        let forced_cold = claim.spec.env.as_ref().is_some_and(|e| !e.is_empty())
            || claim
                .spec
                .volume_claim_templates
                .as_ref()
                .is_some_and(|v| !v.is_empty());
        if !forced_cold {
            // e. Adopt from the warm pool.
            let pool_name = claim.spec.warm_pool_ref.name.as_str();
            let candidates: Vec<&Sandbox> = self
                .input
                .sandboxes
                .iter()
                .copied()
                .filter(|sb| is_adoptable_member(sb, self.namespace(), pool_name))
                .filter(|sb| {
                    !self
                        .input
                        .reserved
                        .contains(sb.metadata.name.as_deref().unwrap_or_default())
                })
                .collect();
            let fingerprint = self.recreate_fingerprint();
            match choose(candidates, fingerprint.as_ref()) {
                Choice::Take(sb) => {
                    let mut claim_patch = self.claim_lock();
                    claim_patch.set_annotation(
                        SANDBOX_NAME,
                        sb.metadata.name.as_deref().unwrap_or_default(),
                    );
                    return self.adopt(sb, Some(claim_patch));
                }
                Choice::Pending => {
                    let age = claim
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map_or(Duration::ZERO, |t| since(self.input.now, t));
                    let grace = self.input.config.pending_address_grace;
                    if age < grace {
                        let wait = (grace - age).min(self.input.config.pending_address_requeue);
                        return Ok(Found::Wait(wait.max(Duration::from_millis(1))));
                    }
                }
                Choice::Empty => {}
            }
        }

        // f. Cold.
        let template = self.template()?;
        let sandbox = cold::build_cold_sandbox(claim, template)?;
        self.actions.push(ClaimAction::CreateSandbox {
            sandbox: Box::new(sandbox.clone()),
        });
        self.actions.push(ClaimAction::Event {
            event: Event::normal(
                "SandboxProvisioned",
                "Provisioning",
                format!("Created Sandbox {:?}", self.name),
            ),
        });
        Ok(Found::Sandbox {
            sandbox: Box::new(sandbox),
            launch: LAUNCH_TYPE_COLD,
        })
    }

    fn owned_sandboxes(&self) -> Vec<&'a Sandbox> {
        let mut owned: Vec<&Sandbox> = self
            .input
            .sandboxes
            .iter()
            .copied()
            .filter(|sb| {
                sb.metadata.namespace.as_deref() == self.namespace()
                    && sb.metadata.deletion_timestamp.is_none()
                    && is_controlled_by(&sb.metadata, self.claim_uid())
            })
            .collect();
        owned.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        owned.dedup_by(|a, b| a.metadata.name == b.metadata.name);
        owned
    }

    fn verify_candidate(&self, sb: &Sandbox) -> bool {
        is_adoptable_member(sb, self.namespace(), &self.claim.spec.warm_pool_ref.name)
            && self
                .recreate_fingerprint()
                .is_none_or(|fp| !fp.is_stale(sb))
    }

    fn adopt(
        &mut self,
        member: &Sandbox,
        claim_patch: Option<MetadataPatch>,
    ) -> Result<Found, ClaimError> {
        let template = self.template().ok();
        let sandbox_patch =
            adoption_patch(self.claim, member, template).map_err(ClaimError::Other)?;
        let mut after = member.clone();
        sandbox_patch.apply(&mut after);
        let member_name = member.metadata.name.clone().unwrap_or_default();
        self.actions.push(ClaimAction::Adopt {
            adoption: Adoption {
                sandbox_name: member_name.clone(),
                claim_patch,
                sandbox_patch,
                ready: is_ready(member),
            },
        });
        self.actions.push(ClaimAction::Event {
            event: Event::normal(
                "SandboxAdopted",
                "Adoption",
                format!("Adopted warm pool Sandbox {member_name:?}"),
            ),
        });
        Ok(Found::Sandbox {
            sandbox: Box::new(after),
            launch: LAUNCH_TYPE_WARM,
        })
    }

    /// Keeps the bound Sandbox's claim-derived metadata current (so later `additionalPodMetadata`
    /// edits reach it) and makes sure it has a `launch-type`.
    fn refresh_bound(&mut self, sandbox: &Sandbox, launch: &str) -> Result<(), ClaimError> {
        let just_written = self.actions.iter().any(|a| {
            matches!(
                a,
                ClaimAction::Adopt { .. } | ClaimAction::CreateSandbox { .. }
            )
        });
        if just_written {
            return Ok(());
        }
        let name = sandbox.metadata.name.clone().unwrap_or_default();
        let mut patch = SandboxPatch {
            name,
            ..SandboxPatch::default()
        };
        let labels = sandbox.metadata.labels.clone().unwrap_or_default();
        match self.template() {
            Ok(t) => {
                let merged = claim_pod_metadata(t, self.claim).map_err(ClaimError::Other)?;
                let current = sandbox
                    .spec
                    .blueprint
                    .pod_template
                    .metadata
                    .clone()
                    .unwrap_or_default();
                if !semantically_equal(&merged, &current) {
                    patch.pod_template_metadata = Some(merged);
                }
                let hash = name_hash(t.metadata.name.as_deref().unwrap_or_default());
                if labels.get(SANDBOX_TEMPLATE_REF_HASH) != Some(&hash) {
                    patch.metadata.set_label(SANDBOX_TEMPLATE_REF_HASH, &hash);
                }
                match metadata::claim_created_by(self.claim) {
                    Some(v) if labels.get(CREATED_BY).map(String::as_str) != Some(v) => {
                        patch.metadata.set_label(CREATED_BY, v);
                    }
                    None if labels.contains_key(CREATED_BY) => {
                        patch.metadata.remove_label(CREATED_BY);
                    }
                    _ => {}
                }
            }
            Err(e) => {
                let additions = self.claim.spec.additional_pod_metadata.as_ref();
                if additions.is_some_and(|m| {
                    m.labels.as_ref().is_some_and(|l| !l.is_empty())
                        || m.annotations.as_ref().is_some_and(|a| !a.is_empty())
                }) {
                    return Err(ClaimError::Other(format!(
                        "failed to get template for metadata propagation: {}",
                        error_text(&e, self.claim)
                    )));
                }
            }
        }
        if !labels.contains_key(LAUNCH_TYPE) {
            patch.metadata.set_label(LAUNCH_TYPE, launch);
        }
        if !patch.is_empty() {
            self.actions.push(ClaimAction::PatchSandbox { patch });
        }
        Ok(())
    }

    fn delete_duplicates(&mut self, keep: &Sandbox) {
        for sb in self.owned_sandboxes() {
            if sb.metadata.name != keep.metadata.name {
                self.actions.push(ClaimAction::DeleteSandbox {
                    target: ObjectRef::new(
                        sb.metadata.name.as_deref().unwrap_or_default(),
                        sb.metadata.uid.as_deref(),
                    ),
                });
            }
        }
    }

    fn compute_ready(
        &self,
        sandbox: Option<&Sandbox>,
        err: Option<&ClaimError>,
        expired: bool,
    ) -> Condition {
        if let Some(e) = err {
            let pool = &self.claim.spec.warm_pool_ref.name;
            return match e {
                ClaimError::TemplateNotFound(m) => {
                    self.ready(cstatus::FALSE, reason::TEMPLATE_NOT_FOUND, m.clone())
                }
                ClaimError::WarmPoolNotFound => self.ready(
                    cstatus::FALSE,
                    reason::WARM_POOL_NOT_FOUND,
                    format!("SandboxWarmPool {pool:?} not found"),
                ),
                ClaimError::InvalidMetadata(m) => {
                    self.ready(cstatus::FALSE, reason::INVALID_METADATA, m.clone())
                }
                ClaimError::EnvVarsInjectionRejected(m) => self.ready(
                    cstatus::FALSE,
                    reason::ENV_VARS_INJECTION_REJECTED,
                    m.clone(),
                ),
                ClaimError::VolumeClaimTemplates(m) => self.ready(
                    cstatus::FALSE,
                    reason::VOLUME_CLAIM_TEMPLATES_ERROR,
                    m.clone(),
                ),
                ClaimError::NotOwned(m) => self.ready(
                    cstatus::FALSE,
                    reason::CLAIM_EXPIRED,
                    format!("Claim expired. {m}; deletion skipped."),
                ),
                ClaimError::Other(m) => self.ready(
                    cstatus::FALSE,
                    reason::RECONCILER_ERROR,
                    format!("Error seen: {m}"),
                ),
            };
        }
        if expired {
            return self.ready(cstatus::FALSE, reason::CLAIM_EXPIRED, CLAIM_EXPIRED_MESSAGE);
        }
        let Some(sb) = sandbox else {
            return self.ready(
                cstatus::FALSE,
                reason::SANDBOX_MISSING,
                "Sandbox does not exist",
            );
        };
        match ready_condition(sandbox_conditions(sb)) {
            Some(c) if c.reason == sandbox_reason::SANDBOX_EXPIRED => self.ready(
                cstatus::FALSE,
                reason::SANDBOX_EXPIRED,
                SANDBOX_EXPIRED_MESSAGE,
            ),
            Some(c) => Condition {
                observed_generation: self.generation(),
                ..c.clone()
            },
            None => self.ready(
                cstatus::FALSE,
                reason::SANDBOX_NOT_READY,
                "Sandbox is not ready",
            ),
        }
    }

    fn set_status(
        &mut self,
        sandbox: Option<&Sandbox>,
        err: Option<&ClaimError>,
        expired: bool,
        launch: Option<&str>,
    ) {
        let mut status = self.old_status.clone();
        let mut c = status.conditions.take().unwrap_or_default();
        conds::set(&mut c, self.compute_ready(sandbox, err, expired));
        match sandbox {
            Some(sb) => match conds::find(sandbox_conditions(sb), types::FINISHED) {
                Some(f) => {
                    conds::set(&mut c, f.clone());
                }
                None => {
                    conds::remove(&mut c, types::FINISHED);
                }
            },
            None if !expired => {
                conds::remove(&mut c, types::FINISHED);
            }
            None => {}
        }
        status.conditions = Some(c);
        match sandbox {
            Some(sb) => {
                status.sandbox = Some(ClaimSandboxStatus {
                    name: sb.metadata.name.clone(),
                    pod_ips: sb
                        .status
                        .as_ref()
                        .and_then(|s| s.pod_ips.clone())
                        .filter(|v| !v.is_empty()),
                });
            }
            None if err.is_none() || matches!(err, Some(ClaimError::NotOwned(_))) => {
                status.sandbox = None
            }
            None => {}
        }
        let status = normalized_status(status);

        let was_ready = self
            .old_status
            .conditions
            .as_deref()
            .is_some_and(|c| conds::is_true(c, types::READY));
        let now_ready = status
            .conditions
            .as_deref()
            .is_some_and(|c| conds::is_true(c, types::READY));
        if now_ready && !was_ready && annotation(self.claim, CLAIM_FIRST_READY_AT).is_none() {
            let template = sandbox
                .and_then(|sb| sb.metadata.annotations.as_ref())
                .and_then(|a| a.get(SANDBOX_TEMPLATE_REF))
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned());
            let launch = launch
                .map(str::to_owned)
                .or_else(|| {
                    sandbox
                        .and_then(|sb| sb.metadata.labels.as_ref())
                        .and_then(|l| l.get(LAUNCH_TYPE))
                        .cloned()
                })
                .unwrap_or_else(|| "unknown".to_owned());
            self.first_ready = Some(FirstReady {
                launch_type: launch,
                sandbox_template: template,
            });
            if self.input.config.observability_annotations {
                let mut patch = self.claim_lock();
                patch.set_annotation(CLAIM_FIRST_READY_AT, &rfc3339_nano(self.input.now));
                self.actions.push(ClaimAction::PatchClaim { patch });
            }
        }
        self.status = Some(status);
    }

    fn finish(self) -> ClaimPlan {
        let status = self.status.map(normalized_status);
        let write_status = status.as_ref().is_some_and(|s| *s != self.old_status);
        ClaimPlan {
            actions: self.actions,
            status: status.unwrap_or(self.old_status),
            write_status,
            requeue_after: self.requeue,
            error: self.error,
            first_ready: self.first_ready,
        }
    }
}

fn error_text(e: &ClaimError, claim: &SandboxClaim) -> String {
    match e {
        ClaimError::WarmPoolNotFound => format!(
            "SandboxWarmPool {:?} not found",
            claim.spec.warm_pool_ref.name
        ),
        ClaimError::TemplateNotFound(m)
        | ClaimError::InvalidMetadata(m)
        | ClaimError::EnvVarsInjectionRejected(m)
        | ClaimError::VolumeClaimTemplates(m)
        | ClaimError::NotOwned(m)
        | ClaimError::Other(m) => m.clone(),
    }
}

fn expired_event() -> ClaimAction {
    ClaimAction::Event {
        event: Event::normal(reason::CLAIM_EXPIRED, "Claim Expired", "Claim expired"),
    }
}

/// What to do when applying a claim plan failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureOutcome {
    /// The status to write instead of the plan's (`None`: write nothing).
    pub status: Option<SandboxClaimStatus>,
    /// Reconcile again after this long.
    pub requeue_after: Option<Duration>,
    /// What to log.
    pub error: PlanError,
}

/// The status and requeue after `failure` stopped `plan`: a lost adoption race (409/404 on
/// either adoption write) is `AdoptionConflict`, retried at once without switching candidate in
/// this pass; an AlreadyExists on the cold create is `SandboxCreatePending` (retry in 200 ms);
/// a conflict on a claim-metadata write writes nothing and retries at once; anything else is
/// `ReconcilerError` with backoff (`Invalid` is permanent).
pub fn claim_status_after_failure(
    input: &ClaimInput<'_>,
    plan: &ClaimPlan,
    failure: &ApplyFailure,
) -> FailureOutcome {
    let claim = input.claim;
    let mut status = normalized_status(claim.status.clone().unwrap_or_default());
    let action = plan.actions.get(failure.action_index);
    let cond = |why: &str, msg: String| {
        conds::new(
            types::READY,
            cstatus::FALSE,
            why,
            msg,
            claim.metadata.generation,
            input.now.clone(),
        )
    };
    let (condition, requeue, error) = match (action, failure.kind) {
        (Some(ClaimAction::Adopt { adoption }), FailureKind::Conflict | FailureKind::NotFound) => (
            Some(cond(
                reason::ADOPTION_CONFLICT,
                format!(
                    "Warm pool Sandbox {:?} was changed or taken concurrently; retrying",
                    adoption.sandbox_name
                ),
            )),
            Some(Duration::ZERO),
            PlanError::transient(failure.message.clone()),
        ),
        (Some(ClaimAction::CreateSandbox { sandbox }), FailureKind::AlreadyExists) => (
            Some(cond(
                reason::SANDBOX_CREATE_PENDING,
                format!(
                    "Sandbox {:?} already exists but is not observed yet; waiting",
                    sandbox.metadata.name.as_deref().unwrap_or_default()
                ),
            )),
            Some(input.config.create_pending_requeue),
            PlanError::transient(failure.message.clone()),
        ),
        (Some(ClaimAction::PatchClaim { .. }), FailureKind::Conflict | FailureKind::NotFound) => (
            None,
            Some(Duration::ZERO),
            PlanError::transient(failure.message.clone()),
        ),
        (_, kind) => {
            let error = if kind == FailureKind::Invalid {
                PlanError::permanent(failure.message.clone())
            } else {
                PlanError::transient(failure.message.clone())
            };
            (
                Some(cond(
                    reason::RECONCILER_ERROR,
                    format!("Error seen: {}", failure.message),
                )),
                None,
                error,
            )
        }
    };
    let status = condition.map(|c| {
        let mut list = status.conditions.take().unwrap_or_default();
        conds::set(&mut list, c);
        status.conditions = Some(list);
        normalized_status(status)
    });
    let requeue_after = match (requeue, error.class) {
        (Some(r), _) => Some(r),
        (None, ErrorClass::Permanent) => None,
        (None, ErrorClass::Transient) => None,
    };
    FailureOutcome {
        status,
        requeue_after,
        error,
    }
}
