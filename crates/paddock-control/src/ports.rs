//! The ports: everything the control core needs from the world, as small typed traits. Each
//! tier implements them once (the embedded store and local runtime; the Kubernetes API server)
//! and the core's loops never know which tier they run on.
//!
//! - [`Objects`]: where the four kinds live — watch, create, merge-patch, delete, with
//!   resourceVersion preconditions and conflicts. Reads come from the core's cache, which the
//!   watches fill.
//! - [`Workloads`]: what a Sandbox is made of and runs on — its pod, Service, volumes and the
//!   network policy of its template. On one machine: the local runtime, host directories and
//!   records. On Kubernetes: Pods, Services, PVCs and NetworkPolicies in the API server, which
//!   the kubelet then runs.
//! - [`Clock`]: the time the planners see.
//! - [`Events`]: where the planners' Events go (the Events API on a cluster, the log locally).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use futures_util::Stream;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use paddock_api::kinds::Kind;
use paddock_api::stored::{Object, StoredKind};
use paddock_api::v1beta1::Sandbox;
use paddock_plan::outcome::{Event, FailureKind, ObjectRef, Propagation};
use paddock_plan::sandbox::{PodObservation, PvcObservation, SandboxAction, ServiceObservation};
use serde_json::Value;

/// A boxed future, so ports can be used as `Arc<dyn Port>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A boxed stream.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// A write that failed, classified the way the planners understand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WriteError {
    /// Conflict, NotFound, AlreadyExists, Invalid or Other.
    pub kind: FailureKind,
    /// What the store or API server said.
    pub message: String,
}

impl WriteError {
    /// An error of `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// What a watch of one kind reports.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    /// Every object of the kind, as a (re)list found them: the cache's content is replaced, and
    /// objects missing from it are reported deleted.
    Listed(Vec<Object>),
    /// An object was added or changed.
    Applied(Object),
    /// An object is gone; its last state.
    Deleted(Object),
}

/// Which part of an object a patch changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Everything but `status`.
    Main,
    /// The status subresource.
    Status,
}

/// Where the four kinds live.
pub trait Objects: Send + Sync + 'static {
    /// Lists then watches every object of `kind`, in every namespace, until the stream is
    /// dropped; after a watch error the implementation relists by itself (and reports it with
    /// [`WatchEvent::Listed`]). An `Err` item is logged and otherwise ignored.
    fn watch(&self, kind: Kind) -> BoxStream<Result<WatchEvent, String>>;

    /// Creates an object (`metadata.generateName` allowed); returns it as stored.
    fn create(&self, object: Object) -> BoxFuture<'_, Result<Object, WriteError>>;

    /// Applies a JSON merge patch; a `metadata.resourceVersion` in it is a precondition
    /// (a mismatch is a [`FailureKind::Conflict`]).
    fn patch<'a>(
        &'a self,
        kind: Kind,
        namespace: &'a str,
        name: &'a str,
        part: Part,
        patch: &'a Value,
    ) -> BoxFuture<'a, Result<Object, WriteError>>;

    /// Deletes `target` (its uid and resourceVersion, when set, are preconditions). An object
    /// already gone is a [`FailureKind::NotFound`].
    fn delete<'a>(
        &'a self,
        kind: Kind,
        namespace: &'a str,
        target: &'a ObjectRef,
        propagation: Option<Propagation>,
    ) -> BoxFuture<'a, Result<(), WriteError>>;
}

/// A Sandbox's children as a tier sees them: the planner's observations.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// The pods that belong to the Sandbox (by label or by name), or why they cannot be read.
    pub pods: Result<Vec<PodObservation>, String>,
    /// The Service named like the Sandbox.
    pub service: Result<Option<ServiceObservation>, String>,
    /// The PVCs of its volume claim templates that exist.
    pub pvcs: Result<Vec<PvcObservation>, String>,
}

impl Default for Children {
    /// No pod, no Service, no PVC.
    fn default() -> Self {
        Self {
            pods: Ok(Vec::new()),
            service: Ok(None),
            pvcs: Ok(Vec::new()),
        }
    }
}

/// A change to a template's NetworkPolicy (or an older controller's per-claim one).
#[derive(Clone, Copy, Debug)]
pub enum PolicyWrite<'a> {
    /// Create it (its controller reference is set).
    Create(&'a NetworkPolicy),
    /// Replace its spec, conditional on `resource_version`.
    Update {
        /// The policy's name.
        name: &'a str,
        /// Optimistic lock.
        resource_version: Option<&'a str>,
        /// The new spec.
        spec: &'a NetworkPolicySpec,
    },
    /// Delete it (uid precondition).
    Delete(&'a ObjectRef),
}

/// Why a Sandbox's workload is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The Sandbox has a deletion timestamp.
    Terminating,
    /// The Sandbox is gone from the store.
    Gone,
}

/// What a Sandbox is made of and runs on.
pub trait Workloads: Send + Sync + 'static {
    /// The Sandbox's pods, Service and PVCs.
    fn observe(&self, sandbox: &Sandbox) -> Children;

    /// Applies one of the Sandbox planner's child actions: `CreatePvc`, `AdoptPvc`,
    /// `CreatePod`, `PatchPod`, `DeletePod`, `CreateService`, `AdoptService`, `PatchService`
    /// or `DeleteService` (the core applies the others itself).
    fn apply<'a>(
        &'a self,
        sandbox: &'a Sandbox,
        action: &'a SandboxAction,
    ) -> BoxFuture<'a, Result<(), WriteError>>;

    /// Conditions this tier adds to a Sandbox's status (the local runtime's `FieldsHonoured`).
    fn conditions(&self, sandbox: &Sandbox, now: &Time) -> Vec<Condition> {
        let _ = (sandbox, now);
        Vec::new()
    }

    /// A Sandbox is terminating or gone: release what runs it. On a cluster the garbage
    /// collector does this, and nothing is to be done.
    fn release(&self, namespace: &str, name: &str, why: Release) {
        let _ = (namespace, name, why);
    }

    /// The NetworkPolicy of this name, if it exists.
    fn network_policy(&self, namespace: &str, name: &str) -> Option<NetworkPolicy>;

    /// Creates, updates or deletes a NetworkPolicy.
    fn write_network_policy<'a>(
        &'a self,
        namespace: &'a str,
        write: PolicyWrite<'a>,
    ) -> BoxFuture<'a, Result<(), WriteError>>;

    /// A SandboxTemplate is gone (its policy goes with it).
    fn template_gone(&self, namespace: &str, name: &str) {
        let _ = (namespace, name);
    }

    /// Resolves once this tier's view of children is complete (its caches have listed).
    fn synced(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The time the planners see.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> Time;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time {
        Time(jiff::Timestamp::now())
    }
}

/// A clock that says what it is told, for tests and simulations.
#[derive(Debug)]
pub struct ManualClock(Mutex<Time>);

impl ManualClock {
    /// A clock stopped at `now`.
    pub fn new(now: Time) -> Self {
        Self(Mutex::new(now))
    }

    /// Sets the time.
    pub fn set(&self, now: Time) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
    }

    /// Moves the time forward.
    pub fn advance(&self, by: std::time::Duration) {
        let mut t = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(d) = jiff::SignedDuration::try_from(by)
            && let Ok(later) = t.0.checked_add(d)
        {
            t.0 = later;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Time {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The four controllers, by the names upstream's metrics and Event recorders use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Controller {
    /// Sandbox → pod, Service, PVCs.
    Sandbox,
    /// SandboxTemplate → NetworkPolicy.
    Template,
    /// SandboxWarmPool → members.
    Pool,
    /// SandboxClaim → adoption or a cold Sandbox.
    Claim,
}

impl Controller {
    /// Every controller.
    pub const ALL: [Controller; 4] = [
        Controller::Sandbox,
        Controller::Template,
        Controller::Pool,
        Controller::Claim,
    ];

    /// The controller-runtime name (`controller` label of the reconcile metrics).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Template => "sandboxtemplate",
            Self::Pool => "sandboxwarmpool",
            Self::Claim => "sandboxclaim",
        }
    }

    /// The Event recorder's reporting controller (upstream's names).
    pub fn reporter(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox-controller",
            Self::Template => "sandboxtemplate-controller",
            Self::Pool => "sandboxwarmpool-controller",
            Self::Claim => "sandboxclaim-controller",
        }
    }

    /// The kind it reconciles.
    pub fn kind(self) -> Kind {
        match self {
            Self::Sandbox => Kind::Sandbox,
            Self::Template => Kind::SandboxTemplate,
            Self::Pool => Kind::SandboxWarmPool,
            Self::Claim => Kind::SandboxClaim,
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the planners' Events go. Recording is best effort: a failure is the sink's to log.
pub trait Events: Send + Sync + 'static {
    /// Records `event` about `regarding`, reported by `controller`.
    fn record<'a>(
        &'a self,
        controller: Controller,
        regarding: &'a ObjectReference,
        event: &'a Event,
    ) -> BoxFuture<'a, ()>;
}

/// Events written to the log (the embedded engine, tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogEvents;

impl Events for LogEvents {
    fn record<'a>(
        &'a self,
        controller: Controller,
        regarding: &'a ObjectReference,
        event: &'a Event,
    ) -> BoxFuture<'a, ()> {
        tracing::info!(
            controller = controller.reporter(),
            kind = regarding.kind.as_deref().unwrap_or_default(),
            namespace = regarding.namespace.as_deref().unwrap_or_default(),
            name = regarding.name.as_deref().unwrap_or_default(),
            reason = %event.reason,
            note = %event.note,
            "event"
        );
        Box::pin(std::future::ready(()))
    }
}

/// The reference an Event about `object` carries.
pub fn object_reference<K: StoredKind>(object: &K) -> ObjectReference {
    let meta = object.meta();
    ObjectReference {
        api_version: Some(format!("{}/v1beta1", K::KIND.group())),
        kind: Some(K::KIND.as_str().to_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}
