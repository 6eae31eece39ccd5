//! What happened to a Sandbox between two of its statuses: it became Ready, was asked to
//! suspend, finished suspending, was resumed, its pod finished, it expired. Upstream reports
//! each as an Event (contract §11.6) and counts it (contract §11.4); both tiers derive them
//! here, from the status the controller wrote, so a retried write reports nothing twice.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use paddock_api::common::ShutdownPolicy;
use paddock_api::conditions::{self as conds, sandbox as reason, sandbox_events, status, types};
use paddock_api::v1beta1::{Sandbox, SandboxStatus};

use crate::outcome::Event;

/// One step in a Sandbox's life, seen as a change from the old status to the new.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// `Ready` became True.
    Ready,
    /// `spec.operatingMode: Suspended` was first acted on (the pod is being removed).
    SuspendRequested,
    /// The pod is gone: `Suspended=True/PodTerminated`.
    Suspended,
    /// Suspension cannot complete (a pod it does not own, or an unknown pod state).
    SuspendFailed,
    /// A fully suspended Sandbox was asked to run again.
    ResumeRequested,
    /// The owned pod reached a terminal phase: `Finished=True` with `PodSucceeded` or `PodFailed`.
    Finished {
        /// Whether the pod succeeded.
        succeeded: bool,
        /// The condition's message.
        message: String,
    },
    /// `spec.lifecycle.shutdownTime` passed.
    Expired {
        /// What happens to the Sandbox object now.
        policy: ShutdownPolicy,
    },
}

fn condition<'a>(s: &'a SandboxStatus, type_: &str) -> Option<&'a Condition> {
    s.conditions.as_deref().and_then(|c| conds::find(c, type_))
}

fn holds(s: &SandboxStatus, type_: &str, reason: &str) -> bool {
    condition(s, type_).is_some_and(|c| c.reason == reason)
}

fn is_true(s: &SandboxStatus, type_: &str) -> bool {
    condition(s, type_).is_some_and(|c| c.status == status::TRUE)
}

/// Whether the Suspended condition says some suspension is under way or done.
fn suspending(s: &SandboxStatus) -> bool {
    condition(s, types::SUSPENDED).is_some_and(|c| c.reason != reason::NOT_SUSPENDED)
}

/// The steps from `old` to `new`, in the order they happened.
pub fn transitions(sandbox: &Sandbox, old: &SandboxStatus, new: &SandboxStatus) -> Vec<Lifecycle> {
    let mut out = Vec::new();
    if !suspending(old) && suspending(new) {
        out.push(Lifecycle::SuspendRequested);
    }
    let stuck = |s: &SandboxStatus| {
        holds(s, types::SUSPENDED, reason::POD_NOT_OWNED)
            || holds(s, types::SUSPENDED, reason::POD_STATE_UNKNOWN)
    };
    if stuck(new) && !stuck(old) {
        out.push(Lifecycle::SuspendFailed);
    }
    if !is_true(old, types::SUSPENDED) && is_true(new, types::SUSPENDED) {
        out.push(Lifecycle::Suspended);
    }
    if is_true(old, types::SUSPENDED) && !suspending(new) {
        out.push(Lifecycle::ResumeRequested);
    }
    if !is_true(old, types::FINISHED)
        && let Some(c) = condition(new, types::FINISHED).filter(|c| c.status == status::TRUE)
    {
        out.push(Lifecycle::Finished {
            succeeded: c.reason == reason::POD_SUCCEEDED,
            message: c.message.clone(),
        });
    }
    if !is_true(old, types::READY) && is_true(new, types::READY) {
        out.push(Lifecycle::Ready);
    }
    if !holds(old, types::READY, reason::SANDBOX_EXPIRED)
        && holds(new, types::READY, reason::SANDBOX_EXPIRED)
    {
        out.push(Lifecycle::Expired {
            policy: sandbox.spec.lifecycle.effective_shutdown_policy(),
        });
    }
    out
}

impl Lifecycle {
    /// The Event upstream's Sandbox controller records for this step, if any (contract §11.6).
    pub fn event(&self) -> Option<Event> {
        Some(match self {
            Self::Ready => Event::normal(
                sandbox_events::SANDBOX_READY,
                "Reconciling",
                "Sandbox is ready",
            ),
            Self::SuspendRequested => Event::normal(
                reason::SANDBOX_SUSPENDED,
                "Suspension",
                "Suspending Sandbox (operatingMode=Suspended)",
            ),
            Self::Finished {
                succeeded: true,
                message,
            } => Event::normal(reason::POD_SUCCEEDED, "Reconciling", message.clone()),
            Self::Finished {
                succeeded: false,
                message,
            } => Event::warning(reason::POD_FAILED, "Reconciling", message.clone()),
            // With `Delete` the Sandbox is gone before anyone could read the Event.
            Self::Expired {
                policy: ShutdownPolicy::Retain,
            } => Event::normal(
                reason::SANDBOX_EXPIRED,
                "Expiry",
                "Sandbox expired (ShutdownPolicy=Retain)",
            ),
            Self::Expired { .. }
            | Self::Suspended
            | Self::SuspendFailed
            | Self::ResumeRequested => return None,
        })
    }
}

/// The Event recorded once the pod create call succeeded.
pub fn pod_created_event(pod: &str) -> Event {
    Event::normal(
        sandbox_events::SANDBOX_POD_CREATED,
        "PodCreation",
        format!("Created Pod {pod:?}"),
    )
}

/// The Event recorded when the pod create call failed.
pub fn pod_create_failed_event(pod: &str, error: &str) -> Event {
    Event::warning(
        sandbox_events::SANDBOX_POD_CREATE_FAILED,
        "PodCreation",
        format!("Failed to create Pod {pod:?}: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::EventType;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn with(conditions: &[(&str, &str, &str)]) -> SandboxStatus {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        SandboxStatus {
            conditions: Some(
                conditions
                    .iter()
                    .map(|(t, s, r)| conds::new(t, s, r, "m", None, now.clone()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn sandbox() -> Sandbox {
        Sandbox::new("a", Default::default())
    }

    #[test]
    fn becoming_ready_is_reported_once() {
        let old = with(&[(types::READY, status::FALSE, reason::DEPENDENCIES_NOT_READY)]);
        let new = with(&[(types::READY, status::TRUE, reason::DEPENDENCIES_READY)]);
        assert_eq!(transitions(&sandbox(), &old, &new), vec![Lifecycle::Ready]);
        assert!(transitions(&sandbox(), &new, &new).is_empty());
        let e = Lifecycle::Ready.event().expect("an event");
        assert_eq!(e.reason, "SandboxReady");
    }

    #[test]
    fn suspension_is_requested_then_done_then_resumed() {
        let running = with(&[
            (types::READY, status::TRUE, reason::DEPENDENCIES_READY),
            (types::SUSPENDED, status::FALSE, reason::NOT_SUSPENDED),
        ]);
        let terminating = with(&[
            (types::READY, status::FALSE, reason::SANDBOX_SUSPENDED),
            (types::SUSPENDED, status::FALSE, reason::POD_TERMINATING),
        ]);
        let done = with(&[
            (types::READY, status::FALSE, reason::SANDBOX_SUSPENDED),
            (types::SUSPENDED, status::TRUE, reason::POD_TERMINATED),
        ]);
        let resuming = with(&[
            (types::READY, status::FALSE, reason::DEPENDENCIES_NOT_READY),
            (types::SUSPENDED, status::FALSE, reason::NOT_SUSPENDED),
        ]);
        let sb = sandbox();
        assert_eq!(
            transitions(&sb, &running, &terminating),
            vec![Lifecycle::SuspendRequested]
        );
        assert_eq!(
            transitions(&sb, &terminating, &done),
            vec![Lifecycle::Suspended]
        );
        assert_eq!(
            transitions(&sb, &running, &done),
            vec![Lifecycle::SuspendRequested, Lifecycle::Suspended]
        );
        assert_eq!(
            transitions(&sb, &done, &resuming),
            vec![Lifecycle::ResumeRequested]
        );
        assert_eq!(
            transitions(&sb, &resuming, &running),
            vec![Lifecycle::Ready]
        );
        let e = Lifecycle::SuspendRequested.event().expect("an event");
        assert_eq!(
            (e.reason.as_str(), e.type_),
            ("SandboxSuspended", EventType::Normal)
        );
    }

    #[test]
    fn a_failed_pod_is_a_warning_and_a_succeeded_one_is_not() {
        let old = with(&[(types::READY, status::TRUE, reason::DEPENDENCIES_READY)]);
        let failed = with(&[(types::FINISHED, status::TRUE, reason::POD_FAILED)]);
        let t = transitions(&sandbox(), &old, &failed);
        assert!(
            matches!(
                &t[..],
                [Lifecycle::Finished {
                    succeeded: false,
                    ..
                }]
            ),
            "{t:?}"
        );
        let e = t[0].event().expect("an event");
        assert_eq!(
            (e.reason.as_str(), e.type_),
            ("PodFailed", EventType::Warning)
        );
        let ok = with(&[(types::FINISHED, status::TRUE, reason::POD_SUCCEEDED)]);
        let e = transitions(&sandbox(), &old, &ok)[0]
            .event()
            .expect("an event");
        assert_eq!(
            (e.reason.as_str(), e.type_),
            ("PodSucceeded", EventType::Normal)
        );
    }

    #[test]
    fn expiry_is_an_event_only_when_the_sandbox_is_retained() {
        let old = with(&[(types::READY, status::TRUE, reason::DEPENDENCIES_READY)]);
        let new = with(&[(types::READY, status::FALSE, reason::SANDBOX_EXPIRED)]);
        let mut sb = sandbox();
        let t = transitions(&sb, &old, &new);
        assert_eq!(
            t,
            vec![Lifecycle::Expired {
                policy: ShutdownPolicy::Retain
            }]
        );
        assert_eq!(
            t[0].event().map(|e| e.reason),
            Some("SandboxExpired".into())
        );
        sb.spec.lifecycle.shutdown_policy = Some(ShutdownPolicy::Delete);
        let t = transitions(&sb, &old, &new);
        assert_eq!(t[0].event(), None);
    }
}
