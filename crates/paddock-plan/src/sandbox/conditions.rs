//! The Sandbox conditions of contract §1.3: `Suspended` (always present), `Finished` (only while
//! an owned pod is terminal), `PodScheduled` (mirrors the owned pod's), and `Ready`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use paddock_api::conditions::{self, sandbox as reason, status, types};
use paddock_api::v1beta1::{OperatingMode, Sandbox};

use super::observe::{PodObservation, phase};

/// The pod the conditions are computed from, and whether the Sandbox owns it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PodView<'a> {
    pub(crate) pod: &'a PodObservation,
    pub(crate) owned: bool,
}

/// What went wrong while reconciling children, for the `Ready` condition.
#[derive(Clone, Debug)]
pub(crate) enum ChildError {
    /// More than one pod is controlled by the Sandbox.
    MultiplePods(String),
    /// Any other error (joined messages).
    Other(String),
}

pub(crate) struct ConditionInputs<'a> {
    pub(crate) sandbox: &'a Sandbox,
    pub(crate) errors: &'a [ChildError],
    pub(crate) service_present: bool,
    pub(crate) pod: Option<PodView<'a>>,
    /// The pod step failed (so a missing pod does not prove there is none).
    pub(crate) pod_error: bool,
    pub(crate) now: &'a Time,
}

fn cond(i: &ConditionInputs<'_>, type_: &str, st: &str, why: &str, msg: &str) -> Condition {
    conditions::new(
        type_,
        st,
        why,
        msg,
        i.sandbox.metadata.generation,
        i.now.clone(),
    )
}

fn suspended_mode(sandbox: &Sandbox) -> bool {
    sandbox.spec.effective_operating_mode() == OperatingMode::Suspended
}

fn suspended(i: &ConditionInputs<'_>) -> Condition {
    if !suspended_mode(i.sandbox) {
        return cond(
            i,
            types::SUSPENDED,
            status::FALSE,
            reason::NOT_SUSPENDED,
            "Sandbox is not suspended",
        );
    }
    match i.pod {
        None if i.pod_error => cond(
            i,
            types::SUSPENDED,
            status::UNKNOWN,
            reason::POD_STATE_UNKNOWN,
            "Pod state is unknown. Sandbox suspension cannot be confirmed",
        ),
        None => cond(
            i,
            types::SUSPENDED,
            status::TRUE,
            reason::POD_TERMINATED,
            "Pod has been terminated. Sandbox is suspended",
        ),
        Some(p) if !p.owned => cond(
            i,
            types::SUSPENDED,
            status::FALSE,
            reason::POD_NOT_OWNED,
            "Refused to delete pod because it is not owned by this sandbox",
        ),
        Some(_) => cond(
            i,
            types::SUSPENDED,
            status::FALSE,
            reason::POD_TERMINATING,
            "Pod is terminating. Sandbox is suspending",
        ),
    }
}

fn finished(i: &ConditionInputs<'_>) -> Option<Condition> {
    let p = i.pod.filter(|p| p.owned)?;
    match p.pod.phase.as_str() {
        phase::SUCCEEDED => Some(cond(
            i,
            types::FINISHED,
            status::TRUE,
            reason::POD_SUCCEEDED,
            "Pod completed successfully",
        )),
        phase::FAILED => Some(cond(
            i,
            types::FINISHED,
            status::TRUE,
            reason::POD_FAILED,
            "Pod failed",
        )),
        _ => None,
    }
}

fn pod_scheduled(i: &ConditionInputs<'_>) -> Option<Condition> {
    if i.pod.is_none() && i.pod_error {
        return Some(cond(
            i,
            types::POD_SCHEDULED,
            status::UNKNOWN,
            reason::POD_SCHEDULING_UNKNOWN,
            "Pod state is unknown. Pod scheduling cannot be determined",
        ));
    }
    let p = i.pod.filter(|p| p.owned)?;
    Some(match &p.pod.scheduled {
        Some(c) => {
            let why = match c.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => r,
                None if c.status == status::TRUE => reason::POD_SCHEDULED,
                None => reason::POD_SCHEDULING_UNKNOWN,
            };
            cond(
                i,
                types::POD_SCHEDULED,
                &c.status,
                why,
                c.message.as_deref().unwrap_or_default(),
            )
        }
        None => cond(
            i,
            types::POD_SCHEDULED,
            status::UNKNOWN,
            reason::POD_SCHEDULING_UNKNOWN,
            "Pod has not reported a PodScheduled condition yet",
        ),
    })
}

fn ready(i: &ConditionInputs<'_>) -> Condition {
    let not_ready = |why: &str, msg: &str| cond(i, types::READY, status::FALSE, why, msg);
    if let Some(msg) = i.errors.iter().find_map(|e| match e {
        ChildError::MultiplePods(m) => Some(m),
        ChildError::Other(_) => None,
    }) {
        return not_ready(reason::MULTIPLE_PODS, msg);
    }
    if !i.errors.is_empty() {
        let joined = i
            .errors
            .iter()
            .map(|e| match e {
                ChildError::MultiplePods(m) | ChildError::Other(m) => m.as_str(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        return not_ready(reason::RECONCILER_ERROR, &format!("Error seen: {joined}"));
    }
    if suspended_mode(i.sandbox) {
        let msg = if i.pod.is_some() {
            "Sandbox is suspending"
        } else {
            "Sandbox is suspended"
        };
        return not_ready(reason::SANDBOX_SUSPENDED, msg);
    }
    if let Some(p) = i.pod {
        match p.pod.phase.as_str() {
            phase::SUCCEEDED => {
                return not_ready(reason::POD_SUCCEEDED, "Pod completed successfully");
            }
            phase::FAILED => return not_ready(reason::POD_FAILED, "Pod failed"),
            _ => {}
        }
    }
    let mut pod_ready = false;
    let mut message = match i.pod {
        None => "Pod does not exist".to_owned(),
        Some(p) if p.pod.phase == phase::RUNNING => {
            if !p.pod.is_ready() {
                "Pod is Running but not Ready".to_owned()
            } else if p.pod.pod_ips.is_empty() {
                "Pod is Ready but has no podIPs yet".to_owned()
            } else {
                pod_ready = true;
                "Pod is Ready".to_owned()
            }
        }
        Some(p) => format!("Pod exists with phase: {}", p.pod.phase),
    };
    let service_required = match i.sandbox.spec.blueprint.service {
        Some(required) => required,
        None => i.service_present,
    };
    let mut service_ready = true;
    if service_required {
        if i.service_present {
            message.push_str("; Service Exists");
        } else {
            message.push_str("; Service does not exist");
            service_ready = false;
        }
    }
    if pod_ready && service_ready {
        cond(
            i,
            types::READY,
            status::TRUE,
            reason::DEPENDENCIES_READY,
            &message,
        )
    } else {
        not_ready(reason::DEPENDENCIES_NOT_READY, &message)
    }
}

/// Sets every condition on `conditions`: computed ones replace their type (transition time kept
/// when the status does not change), `Finished` and `PodScheduled` are removed when they do
/// not apply.
pub(crate) fn apply_conditions(conditions: &mut Vec<Condition>, i: &ConditionInputs<'_>) {
    conditions::set(conditions, suspended(i));
    match finished(i) {
        Some(c) => {
            conditions::set(conditions, c);
        }
        None => {
            conditions::remove(conditions, types::FINISHED);
        }
    }
    match pod_scheduled(i) {
        Some(c) => {
            conditions::set(conditions, c);
        }
        None => {
            conditions::remove(conditions, types::POD_SCHEDULED);
        }
    }
    conditions::set(conditions, ready(i));
}
