//! Claim expiry (contract §2.5): when a claim expires, marking it expired, and deleting the
//! Sandbox it controls when the claim is retained.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use paddock_api::conditions::{self as conds, claim as reason, status as cstatus, types};
use paddock_api::v1beta1::{Sandbox, SandboxClaim};

use super::ClaimError;
use super::plan::ClaimAction;
use super::planner::Planner;
use crate::outcome::{Event, ObjectRef};
use crate::ownership::is_controlled_by;
use crate::time::add_seconds;

/// Message of the claim `Ready` condition on first detecting expiry.
pub const CLAIM_EXPIRED_MESSAGE: &str = "Claim expired. Sandbox cleanup initiated.";

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

impl Planner<'_, '_> {
    pub(super) fn mark_expired(&mut self) {
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

    pub(super) fn reconcile_expired(&mut self) -> (Option<Sandbox>, Option<ClaimError>) {
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
}

pub(super) fn expired_event() -> ClaimAction {
    ClaimAction::Event {
        event: Event::normal(reason::CLAIM_EXPIRED, "Claim Expired", "Claim expired"),
    }
}
