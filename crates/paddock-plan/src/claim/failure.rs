//! What to do when applying a claim plan failed: the status to write instead, when to look
//! again, and what to log.

use std::time::Duration;

use paddock_api::conditions::{self as conds, claim as reason, status as cstatus, types};
use paddock_api::v1beta1::SandboxClaimStatus;
use serde::{Deserialize, Serialize};

use super::plan::{ClaimAction, ClaimInput, ClaimPlan};
use super::status::normalized_status;
use crate::outcome::{ApplyFailure, ErrorClass, FailureKind, PlanError};

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
