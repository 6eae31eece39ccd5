//! The contract: the [`ObjectStore`] trait the gateway and the controllers' embedded driver are
//! written against, its option and result types, the watch stream, and typed helpers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::meta;
use crate::resource::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};

/// The boxed future every store operation returns, so the trait can be used as
/// `Arc<dyn ObjectStore>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What happens to an object's dependents (objects whose `ownerReferences` name it) on delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PropagationPolicy {
    /// The owner goes now; its dependents are deleted by the garbage collector (the default).
    #[default]
    Background,
    /// The owner stays, terminating with the `foregroundDeletion` finalizer, until every
    /// dependent with `blockOwnerDeletion: true` is gone; dependents are deleted first.
    Foreground,
    /// The owner goes; its dependents stay, with the owner removed from their ownerReferences.
    Orphan,
}

/// Conditions a delete checks first; a mismatch is a [`StoreError::Conflict`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// The object must have this uid (guards against deleting a re-created namesake).
    pub uid: Option<String>,
    /// The object must be at exactly this resourceVersion.
    pub resource_version: Option<String>,
}

/// Options of [`ObjectStore::delete`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// `None` means `Background`, except that an object already carrying the `orphan` or
    /// `foregroundDeletion` finalizer keeps that behaviour.
    pub propagation_policy: Option<PropagationPolicy>,
    pub preconditions: Preconditions,
}

impl DeleteOptions {
    /// Delete with this propagation policy.
    pub fn propagation(policy: PropagationPolicy) -> Self {
        Self {
            propagation_policy: Some(policy),
            ..Self::default()
        }
    }
}

/// Options of [`ObjectStore::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// One namespace, or every namespace when `None`.
    pub namespace: Option<String>,
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
}

impl ListOptions {
    /// Everything in one namespace.
    pub fn namespace(namespace: impl Into<String>) -> Self {
        Self {
            namespace: Some(namespace.into()),
            ..Self::default()
        }
    }

    /// Adds a label selector.
    pub fn labels(mut self, selector: LabelSelector) -> Self {
        self.label_selector = selector;
        self
    }
}

/// The result of [`ObjectStore::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectList {
    /// Matching objects, ordered by namespace then name.
    pub items: Vec<Value>,
    /// The store revision the list reflects: watch from here to follow it with no gap.
    pub resource_version: String,
}

/// The result of [`ObjectStore::delete`].
#[derive(Debug, Clone, PartialEq)]
pub enum Deleted {
    /// The object is gone; this is its last state, at the revision of its deletion.
    Removed(Value),
    /// The object still exists with `deletionTimestamp` set, waiting for its finalizers (or, in
    /// foreground deletion, its dependents) to go.
    Terminating(Value),
}

impl Deleted {
    pub fn object(&self) -> &Value {
        match self {
            Self::Removed(object) | Self::Terminating(object) => object,
        }
    }

    pub fn into_object(self) -> Value {
        match self {
            Self::Removed(object) | Self::Terminating(object) => object,
        }
    }

    /// Whether the object is gone from the store.
    pub fn is_removed(&self) -> bool {
        matches!(self, Self::Removed(_))
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WatchStart {
    /// A synthetic `Added` event for every object that matches now, then every later change
    /// (Kubernetes' watch without a resourceVersion).
    #[default]
    InitialState,
    /// Only changes made after the watch starts.
    Now,
    /// Every change after this resourceVersion (exclusive): replayed from the retained change log,
    /// then live. Older than the log → [`StoreError::Gone`].
    After(String),
}

/// Options of [`ObjectStore::watch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// One namespace, or every namespace when `None`.
    pub namespace: Option<String>,
    /// As in Kubernetes, an object whose labels stop matching is reported `Deleted`, and one that
    /// starts matching `Added`.
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub start: WatchStart,
}

impl WatchOptions {
    /// Every change after `resource_version` (typically a list's).
    pub fn after(resource_version: impl Into<String>) -> Self {
        Self {
            start: WatchStart::After(resource_version.into()),
            ..Self::default()
        }
    }
}

/// The kind of change a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
}

/// One change, with the object as it is after the change (for `Deleted`, its last state at the
/// revision of the deletion).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WatchEvent {
    #[serde(rename = "type")]
    pub event_type: WatchEventType,
    pub object: Value,
}

impl WatchEvent {
    /// The revision of this change (the object's `metadata.resourceVersion`).
    pub fn resource_version(&self) -> &str {
        meta::resource_version(&self.object)
    }

    /// The object decoded as `T`.
    ///
    /// # Errors
    /// [`StoreError::Decode`] when the object does not fit `T`.
    pub fn object_as<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.object).map_err(|e| decode_error::<T>(e))
    }
}

/// The source behind a [`WatchStream`]; implement it to back the trait with another store.
pub trait WatchSource: Send + fmt::Debug {
    /// The next event; `None` once the watch has ended. After an error the watch is over.
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<Result<WatchEvent>>> + Send + '_>>;
}

/// A stream of changes in revision order, with no gap and no duplicate.
///
/// The store never waits for a watcher: a watcher that falls behind the retained change log
/// receives [`StoreError::Gone`] and must list again. The stream ends (`None`) when the store
/// closes. Dropping the stream cancels the watch.
#[derive(Debug)]
pub struct WatchStream {
    source: Box<dyn WatchSource>,
}

impl WatchStream {
    pub fn new(source: impl WatchSource + 'static) -> Self {
        Self {
            source: Box::new(source),
        }
    }

    /// The next event, waiting for one if needed.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future loses no event.
    pub async fn next(&mut self) -> Option<Result<WatchEvent>> {
        self.source.next().await
    }
}

/// An object store with Kubernetes API-server semantics.
///
/// Objects are JSON values with the Kubernetes envelope (`apiVersion`, `kind`, `metadata`,
/// `spec`, `status`), identified by resource type, namespace and name. What the store maintains,
/// as the API server does:
///
/// - **Identity**: `metadata.uid` (random UUID v4) and `creationTimestamp` (RFC 3339, whole
///   seconds) are set on create and can never change. Names are DNS-1123 subdomains; callers may
///   impose stricter rules. `generateName` appends 5 random characters and retries on collision.
/// - **resourceVersion**: one store-wide revision, increased by every change (each object written
///   by an operation, including by garbage collection, gets its own). It is a decimal string and
///   only ever grows, across restarts too.
/// - **generation**: 1 on create, increased when anything outside `metadata` and `status`
///   changes, and once when deletion starts.
/// - **Optimistic concurrency**: an update carrying a `resourceVersion` other than the stored one
///   fails with [`StoreError::Conflict`]; an empty one updates unconditionally. A write that
///   changes nothing is not a change: it returns the stored object with its resourceVersion.
/// - **Status apart from spec**: `create` drops `status`, `update`/`patch` keep the stored
///   `status`, `update_status`/`patch_status` change only `status`.
/// - **Deletion**: finalizers hold a deleted object (with `deletionTimestamp`) until updates
///   remove them; a terminating object cannot gain finalizers. Owner references cascade:
///   see [`PropagationPolicy`]. Garbage collection is complete when the write that makes an
///   object garbage returns, and is atomic with it.
/// - **Watch**: every change, in revision order, from any retained revision.
///
/// Every acknowledged write is visible to every later read (reads see one's own writes). Reads
/// never wait for writes in progress. The durable implementation makes every write durable
/// before acknowledging it.
///
/// Errors: [`StoreError::NotFound`], [`StoreError::AlreadyExists`], [`StoreError::Conflict`],
/// [`StoreError::Gone`] and [`StoreError::Invalid`] are answers about the request; the other
/// variants are failures of the store.
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Reads one object.
    fn get(&self, resource: ResourceType, namespace: &str, name: &str) -> StoreFuture<'_, Value>;

    /// Lists objects of one type, with the revision the list reflects.
    fn list(&self, resource: ResourceType, options: ListOptions) -> StoreFuture<'_, ObjectList>;

    /// Creates an object from `object` (its `metadata.namespace` and `metadata.name` or
    /// `generateName`; `resourceVersion` must be empty). Returns the stored object.
    ///
    /// Fails with `AlreadyExists` when the name is taken (also by a terminating object), and
    /// `Invalid` for a malformed envelope, name or metadata.
    fn create(&self, resource: ResourceType, object: Value) -> StoreFuture<'_, Value>;

    /// Replaces an object, except `status` and the fields the store owns (uid, timestamps,
    /// generation). `metadata.resourceVersion`, when set, must match the stored one; a set
    /// `metadata.uid` must match too. Removing the last finalizer of a terminating object
    /// deletes it (the returned object is its last state).
    fn update(&self, resource: ResourceType, object: Value) -> StoreFuture<'_, Value>;

    /// Replaces only `status` (the rest of `object` is ignored apart from name, namespace,
    /// resourceVersion and uid, which work as in [`ObjectStore::update`]).
    fn update_status(&self, resource: ResourceType, object: Value) -> StoreFuture<'_, Value>;

    /// Applies a JSON merge patch (RFC 7386) to the object, then updates it as `update` does
    /// (changes to `status` are ignored). A `metadata.resourceVersion` in the patch is a
    /// precondition.
    fn patch(
        &self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
        patch: Value,
    ) -> StoreFuture<'_, Value>;

    /// Applies a JSON merge patch and keeps only its effect on `status`.
    fn patch_status(
        &self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
        patch: Value,
    ) -> StoreFuture<'_, Value>;

    /// Deletes an object: removes it now, or marks it terminating while finalizers remain.
    /// Dependents are handled per [`DeleteOptions::propagation_policy`]. Deleting an object that
    /// is already terminating returns it unchanged (or switches its propagation policy).
    fn delete(
        &self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
        options: DeleteOptions,
    ) -> StoreFuture<'_, Deleted>;

    /// Watches changes to objects of one type. To follow a list with no gap, watch with
    /// `WatchStart::After(list.resource_version)`.
    ///
    /// Fails with `Gone` when the start revision is older than the retained change log.
    fn watch(&self, resource: ResourceType, options: WatchOptions) -> StoreFuture<'_, WatchStream>;
}

fn decode_error<T>(e: serde_json::Error) -> StoreError {
    StoreError::Decode {
        what: format!("object to {}", std::any::type_name::<T>()),
        reason: e.to_string(),
    }
}

fn to_json<T: Serialize>(object: &T) -> Result<Value> {
    serde_json::to_value(object).map_err(|e| StoreError::Decode {
        what: format!("{} to JSON", std::any::type_name::<T>()),
        reason: e.to_string(),
    })
}

fn from_json<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| decode_error::<T>(e))
}

/// Typed helpers over any [`ObjectStore`], including `dyn ObjectStore`: objects are converted
/// with serde on the caller's side.
pub trait ObjectStoreExt: ObjectStore {
    /// [`ObjectStore::get`], decoded as `T`.
    fn get_as<T: DeserializeOwned + Send>(
        &self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<T>> + Send {
        let fut = self.get(resource, namespace, name);
        async move { from_json(fut.await?) }
    }

    /// [`ObjectStore::list`], items decoded as `T`, with the list's resourceVersion.
    fn list_as<T: DeserializeOwned + Send>(
        &self,
        resource: ResourceType,
        options: ListOptions,
    ) -> impl Future<Output = Result<(Vec<T>, String)>> + Send {
        let fut = self.list(resource, options);
        async move {
            let list = fut.await?;
            let items = list
                .items
                .into_iter()
                .map(from_json)
                .collect::<Result<Vec<T>>>()?;
            Ok((items, list.resource_version))
        }
    }

    /// [`ObjectStore::create`] from and to `T`.
    fn create_typed<T: Serialize + DeserializeOwned + Send>(
        &self,
        resource: ResourceType,
        object: &T,
    ) -> impl Future<Output = Result<T>> + Send {
        let fut = to_json(object).map(|value| self.create(resource, value));
        async move { from_json(fut?.await?) }
    }

    /// [`ObjectStore::update`] from and to `T`.
    fn update_typed<T: Serialize + DeserializeOwned + Send>(
        &self,
        resource: ResourceType,
        object: &T,
    ) -> impl Future<Output = Result<T>> + Send {
        let fut = to_json(object).map(|value| self.update(resource, value));
        async move { from_json(fut?.await?) }
    }

    /// [`ObjectStore::update_status`] from and to `T`.
    fn update_status_typed<T: Serialize + DeserializeOwned + Send>(
        &self,
        resource: ResourceType,
        object: &T,
    ) -> impl Future<Output = Result<T>> + Send {
        let fut = to_json(object).map(|value| self.update_status(resource, value));
        async move { from_json(fut?.await?) }
    }
}

impl<S: ObjectStore + ?Sized> ObjectStoreExt for S {}
