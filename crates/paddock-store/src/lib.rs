//! The object store: Kubernetes API-server semantics for the Agent Sandbox kinds (or any kind),
//! in memory for tests and durable on an embedded database (redb) for `paddock serve`.
//!
//! Objects are JSON values with the Kubernetes envelope; a [`ResourceType`] says which kind an
//! operation is about. [`ObjectStore`] is the contract (uids, resource versions, generations,
//! optimistic concurrency, status apart from spec, finalizers, owner references with background,
//! foreground and orphan deletion, label and field selectors, `generateName`, and a watch feed
//! that resumes from any retained revision); [`MemoryStore`] and [`RedbStore`] implement it with
//! one shared write pipeline, so they behave identically.
//!
//! # Layout
//! - [`object_store`]: the trait, its options and results, watch streams, typed helpers.
//! - [`error`][]: [`StoreError`].
//! - [`resource`][]: [`ResourceType`].
//! - [`selector`]: label and field selectors.
//! - [`meta`]: reading metadata of JSON objects; finalizer names.
//! - [`validation`]: names, labels, annotations, finalizers, owner references.
//! - [`merge_patch`]: RFC 7386.
//! - `pipeline`: the write pipeline (an executor thread and a persister thread, with group
//!   commit), the published state that reads use, garbage collection, and the change log that
//!   watches read.
//! - [`MemoryStore`] (`memory`) and [`RedbStore`] (`durable`): the two implementations.
//!
//! # Threads and costs
//! Each store runs two threads (`paddock-store-exec`, `paddock-store-persist`); the async API
//! only queues work and awaits answers, so it never blocks a runtime thread on the disk (two
//! calls do block: [`RedbStore::open`] reads the store, and dropping a store waits until what was
//! queued is committed and the change log is checkpointed). Reads
//! are served from memory (the whole store is held in memory; objects are shared, not copied,
//! between the published state and the watch log), and writes from many callers are committed
//! together. Memory: every object, plus up to `StoreOptions::watch_history` retained versions.
//!
//! # Example
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use paddock_store::{MemoryStore, ObjectStore, ResourceType};
//! use serde_json::json;
//!
//! const SANDBOX: ResourceType = ResourceType::namespaced("agents.x-k8s.io", "sandboxes", "Sandbox");
//! let store = MemoryStore::new()?;
//! let created = store
//!     .create(SANDBOX, json!({"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
//!         "metadata": {"namespace": "default", "generateName": "sb-"}, "spec": {}}))
//!     .await?;
//! assert_eq!(created["metadata"]["generation"], 1);
//! # Ok::<(), paddock_store::StoreError>(())
//! # }).unwrap();
//! ```

mod durable;
pub mod error;
mod memory;
pub mod merge_patch;
pub mod meta;
pub mod object_store;
mod pipeline;
pub mod resource;
pub mod selector;
pub mod validation;

pub use durable::{DATABASE_FILE, OpenReport, RedbStore, default_home};
pub use error::{Result, StoreError};
pub use memory::MemoryStore;
pub use object_store::{
    DeleteOptions, Deleted, ListOptions, ObjectList, ObjectStore, ObjectStoreExt, Preconditions,
    PropagationPolicy, StoreFuture, WatchEvent, WatchEventType, WatchOptions, WatchSource,
    WatchStart, WatchStream,
};
pub use pipeline::StoreOptions;
pub use resource::ResourceType;
pub use selector::{FieldSelector, LabelSelector};
