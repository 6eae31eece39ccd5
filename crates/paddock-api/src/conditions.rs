//! Condition types and reasons, spelled exactly as upstream's controllers write them.
//!
//! Clients (the upstream Python SDK among them) match on these strings, so they are part of the
//! wire contract. Helpers to read and set conditions on a list follow the
//! `meta.SetStatusCondition` rules: the transition time only moves when the status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub mod types {
    /// Whether the sandbox (or the claim's sandbox) can serve requests.
    pub const READY: &str = "Ready";
    /// Present while the sandbox is suspended or being suspended.
    pub const SUSPENDED: &str = "Suspended";
    /// Present while an owned pod is in a terminal phase.
    pub const FINISHED: &str = "Finished";
    /// Mirrors the pod's own `PodScheduled` condition.
    pub const POD_SCHEDULED: &str = "PodScheduled";
}

/// Reasons of the Sandbox conditions (contract §1.3).
pub mod sandbox {
    pub const DEPENDENCIES_READY: &str = "DependenciesReady";
    pub const DEPENDENCIES_NOT_READY: &str = "DependenciesNotReady";
    pub const SANDBOX_SUSPENDED: &str = "SandboxSuspended";
    pub const POD_SUCCEEDED: &str = "PodSucceeded";
    pub const POD_FAILED: &str = "PodFailed";
    pub const SANDBOX_EXPIRED: &str = "SandboxExpired";
    pub const RECONCILER_ERROR: &str = "ReconcilerError";
    pub const MULTIPLE_PODS: &str = "MultiplePods";
    pub const INVALID_CONFIGURATION: &str = "InvalidConfiguration";
    pub const POD_TERMINATED: &str = "PodTerminated";
    pub const POD_TERMINATING: &str = "PodTerminating";
    /// Deprecated spelling of [`POD_TERMINATING`] from the v1alpha1 docs.
    pub const POD_NOT_TERMINATED: &str = "PodNotTerminated";
    pub const POD_NOT_OWNED: &str = "PodNotOwned";
    pub const NOT_SUSPENDED: &str = "NotSuspended";
    pub const POD_STATE_UNKNOWN: &str = "PodStateUnknown";
    pub const POD_SCHEDULED: &str = "PodScheduled";
    pub const POD_SCHEDULING_UNKNOWN: &str = "PodSchedulingUnknown";
}

/// Reasons of the Sandbox controller's lifecycle Events (contract §11.6) that are not also
/// condition reasons.
pub mod sandbox_events {
    pub const SANDBOX_POD_CREATED: &str = "SandboxPodCreated";
    pub const SANDBOX_POD_CREATE_FAILED: &str = "SandboxPodCreateFailed";
    pub const SANDBOX_READY: &str = "SandboxReady";
}

/// Reasons of the SandboxClaim `Ready` condition (contract §2.5).
pub mod claim {
    pub const TEMPLATE_NOT_FOUND: &str = "TemplateNotFound";
    pub const WARM_POOL_NOT_FOUND: &str = "WarmPoolNotFound";
    pub const ADOPTION_CONFLICT: &str = "AdoptionConflict";
    pub const ADOPTION_PENDING: &str = "AdoptionPending";
    pub const SANDBOX_CREATE_PENDING: &str = "SandboxCreatePending";
    pub const INVALID_METADATA: &str = "InvalidMetadata";
    pub const ENV_VARS_INJECTION_REJECTED: &str = "EnvVarsInjectionRejected";
    pub const VOLUME_CLAIM_TEMPLATES_ERROR: &str = "VolumeClaimTemplatesError";
    pub const CLAIM_EXPIRED: &str = "ClaimExpired";
    pub const SANDBOX_EXPIRED: &str = "SandboxExpired";
    pub const SANDBOX_MISSING: &str = "SandboxMissing";
    pub const SANDBOX_NOT_READY: &str = "SandboxNotReady";
    pub const RECONCILER_ERROR: &str = "ReconcilerError";

    /// Reasons upstream's Python SDK treats as terminal: waiting longer cannot help.
    pub const TERMINAL: [&str; 8] = [
        INVALID_METADATA,
        ENV_VARS_INJECTION_REJECTED,
        VOLUME_CLAIM_TEMPLATES_ERROR,
        CLAIM_EXPIRED,
        SANDBOX_EXPIRED,
        super::sandbox::INVALID_CONFIGURATION,
        super::sandbox::POD_FAILED,
        super::sandbox::POD_SUCCEEDED,
    ];
}

/// Condition status values.
pub mod status {
    pub const TRUE: &str = "True";
    pub const FALSE: &str = "False";
    pub const UNKNOWN: &str = "Unknown";
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of this type exists with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == status::TRUE)
}

/// Sets `new` in `conditions`, replacing the one of the same type. The transition time of an
/// existing condition is kept unless its status changes, as `meta.SetStatusCondition` does.
/// Returns whether anything changed.
pub fn set(conditions: &mut Vec<Condition>, new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        None => {
            conditions.push(new);
            true
        }
        Some(existing) => {
            let mut next = new;
            if existing.status == next.status {
                next.last_transition_time = existing.last_transition_time.clone();
            }
            if *existing == next {
                false
            } else {
                *existing = next;
                true
            }
        }
    }
}

/// Removes the condition of this type; returns whether one was there.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    before != conditions.len()
}

/// Builds a condition.
pub fn new(
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).expect("valid timestamp"))
    }

    #[test]
    fn set_keeps_transition_time_when_status_is_unchanged() {
        let mut conds = vec![new(types::READY, status::FALSE, "A", "a", Some(1), at(10))];
        assert!(set(
            &mut conds,
            new(types::READY, status::FALSE, "B", "b", Some(2), at(20))
        ));
        assert_eq!(conds[0].last_transition_time, at(10));
        assert_eq!(conds[0].reason, "B");
        assert!(set(
            &mut conds,
            new(types::READY, status::TRUE, "C", "c", Some(2), at(30))
        ));
        assert_eq!(conds[0].last_transition_time, at(30));
    }

    #[test]
    fn set_reports_no_change_for_an_identical_condition() {
        let mut conds = vec![new(types::READY, status::TRUE, "A", "a", Some(1), at(10))];
        assert!(!set(
            &mut conds,
            new(types::READY, status::TRUE, "A", "a", Some(1), at(99))
        ));
    }

    #[test]
    fn remove_and_is_true() {
        let mut conds = vec![new(
            types::FINISHED,
            status::TRUE,
            "PodSucceeded",
            "",
            None,
            at(1),
        )];
        assert!(is_true(&conds, types::FINISHED));
        assert!(remove(&mut conds, types::FINISHED));
        assert!(!remove(&mut conds, types::FINISHED));
        assert!(!is_true(&conds, types::FINISHED));
    }
}
