//! What every plan shares: errors with a retry class, Events to record, references to objects
//! to delete, and how a driver reports an action that failed.

use serde::{Deserialize, Serialize};

/// Whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorClass {
    /// Retry with backoff (a conflict, a missing dependency, an object in the way).
    Transient,
    /// Retrying cannot help until the user changes the object: do not requeue; the status
    /// already says what is wrong.
    Permanent,
}

/// An error the planner found in the observed state. The plan's status already reports it; the
/// driver logs it and requeues according to `class`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanError {
    /// Whether to retry.
    pub class: ErrorClass,
    /// What is wrong, for logs.
    pub message: String,
}

impl PlanError {
    /// A transient error.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Transient,
            message: message.into(),
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            message: message.into(),
        }
    }
}

/// `Normal` or `Warning`, as Kubernetes Events have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something needs attention.
    Warning,
}

/// An Event to record on the reconciled object (upstream's reasons and actions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: EventType,
    /// Machine-readable reason, e.g. `SandboxAdopted`.
    pub reason: String,
    /// What was being done, e.g. `Adoption`.
    pub action: String,
    /// Human-readable note.
    pub note: String,
}

impl Event {
    /// A `Normal` event.
    pub fn normal(reason: &str, action: &str, note: impl Into<String>) -> Self {
        Self {
            type_: EventType::Normal,
            reason: reason.to_owned(),
            action: action.to_owned(),
            note: note.into(),
        }
    }

    /// A `Warning` event.
    pub fn warning(reason: &str, action: &str, note: impl Into<String>) -> Self {
        Self {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            action: action.to_owned(),
            note: note.into(),
        }
    }
}

/// An object to delete, with the preconditions the delete must carry so it never removes a
/// different object of the same name or one that changed since it was observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// Name in the reconciled object's namespace.
    pub name: String,
    /// Precondition: the object's UID (when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Precondition: the object's resourceVersion (when the delete must lose to any concurrent
    /// change, e.g. a warm member a claim may be adopting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

impl ObjectRef {
    /// A reference by name and UID.
    pub fn new(name: &str, uid: Option<&str>) -> Self {
        Self {
            name: name.to_owned(),
            uid: uid.map(str::to_owned),
            resource_version: None,
        }
    }
}

/// How a delete propagates to dependents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Propagation {
    /// Delete now; the garbage collector removes dependents afterwards.
    Background,
    /// Keep the object (with a deletion timestamp) until its dependents are gone.
    Foreground,
}

/// How an action failed when the driver applied it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// 409: the object changed since it was observed (optimistic lock lost).
    Conflict,
    /// 404: the object is gone.
    NotFound,
    /// 409 AlreadyExists on create (usually cache lag).
    AlreadyExists,
    /// 422 Invalid: the apiserver (or store validation) rejects the object; permanent.
    Invalid,
    /// Anything else (network, 5xx, store IO).
    Other,
}

/// An action the driver could not apply. Drivers stop at the first failure and ask the
/// planner's `*_after_failure` function for the status to write instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyFailure {
    /// Index of the failed action in the plan's `actions`.
    pub action_index: usize,
    /// What kind of failure.
    pub kind: FailureKind,
    /// The error message, for the status and logs.
    pub message: String,
}
