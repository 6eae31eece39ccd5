//! The claim planner's state machine: one pass over a claim, from metadata and expiry through
//! find-or-adopt to the status and when to look again.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use paddock_api::conditions::{self as conds, claim as reason, status as cstatus, types};
use paddock_api::v1beta1::{ClaimShutdownPolicy, Sandbox, SandboxClaim, SandboxClaimStatus};

use super::ClaimError;
use super::expiry::{CLAIM_EXPIRED_MESSAGE, claim_expiry, expired_event};
use super::find::Found;
use super::plan::{ClaimAction, ClaimInput, ClaimPlan, FirstReady};
use super::status::{normalized_status, ready_condition};
use crate::outcome::{Event, ObjectRef, PlanError, Propagation};
use crate::ownership::controller_of_meta;
use crate::patch::MetadataPatch;
use crate::time::{min_requeue, until};

/// Plans one claim reconcile (contract §2.5).
pub fn plan_claim(input: &ClaimInput<'_>) -> ClaimPlan {
    let mut planner = Planner::new(input);
    planner.run();
    planner.finish()
}

pub(super) struct Planner<'a, 'i> {
    pub(super) input: &'i ClaimInput<'a>,
    pub(super) claim: &'a SandboxClaim,
    pub(super) name: &'a str,
    pub(super) old_status: SandboxClaimStatus,
    pub(super) actions: Vec<ClaimAction>,
    pub(super) status: Option<SandboxClaimStatus>,
    pub(super) requeue: Option<Duration>,
    error: Option<PlanError>,
    pub(super) first_ready: Option<FirstReady>,
    pub(super) annotate: Option<MetadataPatch>,
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
            annotate: None,
        }
    }

    pub(super) fn generation(&self) -> Option<i64> {
        self.claim.metadata.generation
    }

    pub(super) fn claim_uid(&self) -> &'a str {
        self.claim.metadata.uid.as_deref().unwrap_or_default()
    }

    pub(super) fn claim_lock(&self) -> MetadataPatch {
        MetadataPatch::locked(self.claim.metadata.resource_version.as_deref())
    }

    pub(super) fn namespace(&self) -> Option<&'a str> {
        self.claim.metadata.namespace.as_deref()
    }

    pub(super) fn by_name(&self, name: &str) -> Option<&'a Sandbox> {
        self.input.sandboxes.iter().copied().find(|s| {
            s.metadata.name.as_deref() == Some(name)
                && s.metadata.namespace.as_deref() == self.namespace()
        })
    }

    pub(super) fn ready(&self, status: &str, why: &str, msg: impl Into<String>) -> Condition {
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
            && np.metadata.name.as_deref()
                == Some(&paddock_api::names::network_policy_name(self.name))
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
                Ok(Found::CacheBehind(d)) => {
                    self.requeue = min_requeue(self.requeue, Some(d));
                    return;
                }
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
            annotate: self.annotate,
        }
    }
}
