//! The write pipeline both stores share: a two-stage write pipeline with group commit, and a published
//! snapshot that serves reads and watches without waiting for writers.
//!
//! Callers queue write operations. The *executor* thread executes them in arrival order against
//! its working state and appends their changes and answers to the open batch. Whenever the
//! *persister* thread is free, it takes the whole open batch, makes it durable with one commit,
//! publishes its changes (objects and change log, under one lock) and answers its callers.
//! Execution thus overlaps commits, and everything that arrives during a commit goes into the
//! next one (group commit). Every answer, even an error or a no-op, is sent only once all
//! earlier work is durable, and readers see only published state, so nobody ever observes a
//! write a crash could take back. The two stores differ only in [`Persistence`].

pub(crate) mod exec;
pub(crate) mod state;
mod watch;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch as revision_channel};

use crate::error::{Result, StoreError};
use crate::meta;
use crate::object_store::{
    Deleted, ListOptions, ObjectList, WatchOptions, WatchStart, WatchStream,
};
use crate::resource::ResourceType;
use exec::{Op, Outcome};
use state::{Change, ChangeKind, Head, Txn};
use watch::{LogWatch, WatchFilter};

/// Tuning of a store. The defaults suit `paddock serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How many changes the watch log keeps (memory: about this many object versions). A
    /// watcher that falls further behind, or asks to resume from an older revision, gets `Gone`.
    pub watch_history: usize,
    /// Most operations committed together in one transaction (group commit).
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            watch_history: 10_000,
            max_batch: 256,
        }
    }
}

/// Write operations waiting for the executor; senders wait when it is full.
const REQUEST_QUEUE: usize = 4096;
/// Executed operations waiting for a commit before the executor waits for the persister.
const MAX_UNCOMMITTED: usize = 4096;

/// How long the persister waits with no batch before calling [`Persistence::maintain`] idle.
const IDLE_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// When [`Persistence::maintain`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moment {
    /// Right after a batch was answered, with more requests possibly waiting.
    Busy,
    /// No request arrived for a while.
    Idle,
}

/// Makes a batch of changes durable, atomically.
pub(crate) trait Persistence: Send + 'static {
    /// Stores `changes` (in order; later ones win) and `revision` as the store's revision. On
    /// error nothing of the batch may be visible after a restart.
    fn commit(&mut self, changes: &[Change], revision: u64) -> Result<()>;

    /// Whether [`Persistence::maintain`] has work to do when the store goes idle.
    fn has_idle_work(&self) -> bool {
        false
    }

    /// Background upkeep between batches; returns whether more work remains. A failure stops
    /// the store (acknowledged writes are already durable).
    fn maintain(&mut self, _moment: Moment) -> Result<bool> {
        Ok(false)
    }
}

/// Persistence of the in-memory store: nothing to do.
#[derive(Debug)]
pub(crate) struct Volatile;

impl Persistence for Volatile {
    fn commit(&mut self, _changes: &[Change], _revision: u64) -> Result<()> {
        Ok(())
    }
}

/// Committed state as readers see it.
#[derive(Debug)]
pub(crate) struct Published {
    objects: BTreeMap<String, Arc<Value>>,
    /// Changes after `compacted`, one per revision, oldest first.
    log: VecDeque<Arc<Change>>,
    compacted: u64,
    revision: u64,
    history: usize,
}

/// The published state behind a lock held only for copying references in or out.
#[derive(Debug)]
pub(crate) struct Shared {
    published: RwLock<Published>,
}

impl Shared {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Published> {
        // A panic while publishing leaves whole entries behind; keep serving them.
        self.published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Published> {
        self.published
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, changes: Vec<Change>) {
        // Replaced and evicted versions are freed after the lock is released, not under it.
        let mut released = Vec::with_capacity(2 * changes.len());
        {
            let mut published = self.write();
            for change in changes {
                let replaced = match change.kind {
                    ChangeKind::Deleted => published.objects.remove(&change.key),
                    ChangeKind::Added | ChangeKind::Modified => {
                        match published.objects.get_mut(&change.key) {
                            Some(slot) => Some(std::mem::replace(slot, change.object.clone())),
                            None => published
                                .objects
                                .insert(change.key.clone(), change.object.clone()),
                        }
                    }
                };
                released.extend(replaced);
                published.revision = change.revision;
                published.log.push_back(Arc::new(change));
            }
            while published.log.len() > published.history {
                if let Some(evicted) = published.log.pop_front() {
                    published.compacted = evicted.revision;
                    if let Ok(change) = Arc::try_unwrap(evicted) {
                        released.push(change.object);
                        released.extend(change.previous);
                    }
                }
            }
        }
        drop(released);
    }
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// Operations executed against the working state, waiting to be made durable and answered.
#[derive(Default)]
struct OpenBatch {
    changes: Vec<Change>,
    revision: u64,
    replies: Vec<Reply>,
    /// The executor has stopped: commit what is left, then stop.
    closed: bool,
}

/// An answer waiting for its operation to be durable.
type Reply = (oneshot::Sender<Result<Outcome>>, Result<Outcome>);

/// The open batch between executor and persister.
#[derive(Default)]
struct Handoff {
    batch: std::sync::Mutex<OpenBatch>,
    /// Signalled when work is added or the executor stops.
    filled: std::sync::Condvar,
    /// Signalled when the persister takes the batch.
    taken: std::sync::Condvar,
}

impl Handoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, OpenBatch> {
        self.batch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends executed work, waiting first while too much is uncommitted (backpressure).
    fn append(&self, changes: Vec<Change>, revision: u64, replies: Vec<Reply>) {
        let mut batch = self.lock();
        while batch.replies.len() >= MAX_UNCOMMITTED {
            batch = self
                .taken
                .wait(batch)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        batch.changes.extend(changes);
        batch.revision = revision;
        batch.replies.extend(replies);
        drop(batch);
        self.filled.notify_one();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.filled.notify_one();
    }
}

/// Set by the persister when a commit or upkeep fails; the store then refuses writes.
#[derive(Debug, Default)]
struct Failure {
    failed: std::sync::atomic::AtomicBool,
    reason: std::sync::Mutex<Option<StoreError>>,
}

impl Failure {
    fn set(&self, err: StoreError) {
        tracing::error!(error = %err, "store persistence failed; refusing further writes");
        *self
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(err);
        self.failed
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn get(&self) -> Option<StoreError> {
        if !self.failed.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(StoreError::Unavailable {
            reason: format!(
                "an earlier commit failed ({}); restart the store",
                reason
                    .as_ref()
                    .map_or_else(|| "unknown error".to_owned(), ToString::to_string)
            ),
        })
    }
}

/// A running store: the executor and persister threads and the published state.
pub(crate) struct Pipeline {
    requests: Option<mpsc::Sender<Request>>,
    shared: Arc<Shared>,
    revisions: revision_channel::Receiver<u64>,
    executor: Option<JoinHandle<()>>,
    persister: Option<JoinHandle<()>>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let published = self.shared.read();
        f.debug_struct("Pipeline")
            .field("objects", &published.objects.len())
            .field("revision", &published.revision)
            .field("compacted", &published.compacted)
            .finish()
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable {
        reason: "the store's writer has stopped (the store was closed or failed)".into(),
    }
}

fn check_list_scope(resource: &ResourceType, namespace: Option<&str>) -> Result<Option<String>> {
    match namespace.filter(|ns| !ns.is_empty()) {
        Some(ns) if !resource.namespaced => Err(StoreError::invalid(
            "namespace",
            format!("{resource} is cluster-scoped; got namespace {ns:?}"),
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

fn check_key_scope(resource: &ResourceType, namespace: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(StoreError::invalid("name", "a name is required"));
    }
    match (resource.namespaced, namespace.is_empty()) {
        (true, true) => Err(StoreError::invalid(
            "namespace",
            format!("{resource} is namespaced: a namespace is required"),
        )),
        (false, false) => Err(StoreError::invalid(
            "namespace",
            format!("{resource} is cluster-scoped: the namespace must be empty"),
        )),
        _ => Ok(()),
    }
}

fn parse_revision(rv: &str) -> Result<u64> {
    rv.parse::<u64>().map_err(|_| {
        StoreError::invalid(
            "resourceVersion",
            format!("{rv:?} is not a resourceVersion of this store (a decimal number from a list, get or watch)"),
        )
    })
}

impl Pipeline {
    /// Publishes `head` and starts the executor and persister threads.
    pub(crate) fn start(
        head: Head,
        persistence: impl Persistence,
        options: &StoreOptions,
    ) -> Result<Self> {
        if options.watch_history == 0 || options.max_batch == 0 {
            return Err(StoreError::invalid(
                "StoreOptions",
                "watch_history and max_batch must be at least 1",
            ));
        }
        let revision = head.revision();
        let shared = Arc::new(Shared {
            published: RwLock::new(Published {
                objects: head.objects().clone(),
                log: VecDeque::new(),
                compacted: revision,
                revision,
                history: options.watch_history,
            }),
        });
        let (requests, queue) = mpsc::channel(REQUEST_QUEUE);
        let (revision_tx, revisions) = revision_channel::channel(revision);
        let writer_shared = shared.clone();
        let max_batch = options.max_batch;
        let failure = Arc::new(Failure::default());
        let handoff = Arc::new(Handoff::default());
        let persister_failure = failure.clone();
        let persister_handoff = handoff.clone();
        let persister = std::thread::Builder::new()
            .name("paddock-store-persist".into())
            .spawn(move || {
                Persister {
                    handoff: &persister_handoff,
                    persistence,
                    shared: &writer_shared,
                    revisions: &revision_tx,
                    failure: &persister_failure,
                }
                .run();
            })
            .map_err(|e| StoreError::Unavailable {
                reason: format!("cannot start the store's persister thread: {e}"),
            })?;
        let executor = std::thread::Builder::new()
            .name("paddock-store-exec".into())
            .spawn(move || {
                run_executor(queue, head, &handoff, &failure, max_batch);
                handoff.close();
            })
            .map_err(|e| StoreError::Unavailable {
                reason: format!("cannot start the store's executor thread: {e}"),
            })?;
        Ok(Self {
            requests: Some(requests),
            shared,
            revisions,
            executor: Some(executor),
            persister: Some(persister),
        })
    }

    /// Queues `op` and waits for its outcome. If the caller stops waiting, the operation still
    /// completes (as an HTTP request whose client went away).
    pub(crate) async fn submit(&self, op: Op) -> Result<Outcome> {
        let requests = self.requests.as_ref().ok_or_else(closed)?;
        let (reply, response) = oneshot::channel();
        requests
            .send(Request { op, reply })
            .await
            .map_err(|_| closed())?;
        response.await.map_err(|_| closed())?
    }

    pub(crate) async fn write_object(&self, op: Op) -> Result<Value> {
        match self.submit(op).await? {
            Outcome::Object(object) | Outcome::Removed(object) | Outcome::Terminating(object) => {
                Ok((*object).clone())
            }
        }
    }

    pub(crate) async fn delete(&self, op: Op) -> Result<Deleted> {
        Ok(match self.submit(op).await? {
            Outcome::Removed(object) => Deleted::Removed((*object).clone()),
            Outcome::Object(object) | Outcome::Terminating(object) => {
                Deleted::Terminating((*object).clone())
            }
        })
    }

    pub(crate) fn get(
        &self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value> {
        check_key_scope(resource, namespace, name)?;
        let key = resource.key(namespace, name);
        let found = self.shared.read().objects.get(&key).cloned();
        found
            .map(|o| (*o).clone())
            .ok_or_else(|| StoreError::NotFound {
                resource: resource.id(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
    }

    pub(crate) fn list(
        &self,
        resource: &ResourceType,
        options: &ListOptions,
    ) -> Result<ObjectList> {
        let namespace = check_list_scope(resource, options.namespace.as_deref())?;
        let prefix = resource.key_prefix(namespace.as_deref());
        let (found, revision) = {
            let published = self.shared.read();
            let found: Vec<Arc<Value>> = published
                .objects
                .range(prefix.clone()..)
                .take_while(|(key, _)| key.starts_with(&prefix))
                .filter(|(_, o)| {
                    options.label_selector.matches_object(o)
                        && options.field_selector.matches_object(o)
                })
                .map(|(_, o)| o.clone())
                .collect();
            (found, published.revision)
        };
        Ok(ObjectList {
            items: found.iter().map(|o| (**o).clone()).collect(),
            resource_version: revision.to_string(),
        })
    }

    pub(crate) fn watch(
        &self,
        resource: &ResourceType,
        options: WatchOptions,
    ) -> Result<WatchStream> {
        let namespace = check_list_scope(resource, options.namespace.as_deref())?;
        let after = match &options.start {
            WatchStart::After(rv) => Some(parse_revision(rv)?),
            WatchStart::InitialState | WatchStart::Now => None,
        };
        let filter = WatchFilter::new(
            resource.key_prefix(namespace.as_deref()),
            options.label_selector,
            options.field_selector,
        );
        let (cursor, initial) = {
            let published = self.shared.read();
            match (&options.start, after) {
                (_, Some(rv)) if rv < published.compacted => {
                    return Err(StoreError::Gone {
                        requested: rv,
                        oldest: published.compacted,
                    });
                }
                (_, Some(rv)) => (rv, Vec::new()),
                (WatchStart::InitialState, None) => {
                    let initial = published
                        .objects
                        .range(filter.prefix().to_owned()..)
                        .take_while(|(key, _)| key.starts_with(filter.prefix()))
                        .filter(|(_, o)| filter.matches(o))
                        .map(|(_, o)| o.clone())
                        .collect();
                    (published.revision, initial)
                }
                (_, None) => (published.revision, Vec::new()),
            }
        };
        Ok(WatchStream::new(LogWatch::new(
            self.shared.clone(),
            self.revisions.clone(),
            cursor,
            filter,
            initial,
        )))
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Closing the queue stops the executor after its current batch, which stops the persister
        // once everything sealed is committed; joining both releases the database before the
        // store handle is gone, so the directory can be reopened at once.
        self.requests.take();
        for (name, thread) in [
            ("executor", self.executor.take()),
            ("persister", self.persister.take()),
        ] {
            if let Some(thread) = thread
                && thread.join().is_err()
            {
                tracing::error!("the store's {name} thread panicked");
            }
        }
    }
}

/// Executes queued operations and appends them to the open batch.
fn run_executor(
    mut queue: mpsc::Receiver<Request>,
    mut head: Head,
    handoff: &Handoff,
    failure: &Failure,
    max_batch: usize,
) {
    let mut requests = Vec::with_capacity(max_batch);
    while queue.blocking_recv_many(&mut requests, max_batch) > 0 {
        if let Some(err) = failure.get() {
            for request in requests.drain(..) {
                let _ = request.reply.send(Err(err.clone()));
            }
            continue;
        }
        let now = meta::now_rfc3339();
        let mut txn = Txn::default();
        let mut replies = Vec::with_capacity(requests.len());
        for request in requests.drain(..) {
            let mark = txn.mark();
            let result = exec::execute(&mut head, &mut txn, &now, request.op);
            if result.is_err() {
                head.rollback(&mut txn, mark);
            }
            replies.push((request.reply, result));
        }
        handoff.append(txn.changes, head.revision(), replies);
    }
}

/// Commits open batches in order, publishes them and answers their callers; runs upkeep.
struct Persister<'a, P> {
    handoff: &'a Handoff,
    persistence: P,
    shared: &'a Shared,
    revisions: &'a revision_channel::Sender<u64>,
    failure: &'a Failure,
}

impl<P: Persistence> Persister<'_, P> {
    fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            self.commit(batch);
            if self.failure.get().is_none()
                && let Err(err) = self.persistence.maintain(Moment::Busy)
            {
                self.failure.set(err);
            }
        }
        // Closed: finish upkeep so the next open starts from a tidy store.
        while self.failure.get().is_none() {
            match self.persistence.maintain(Moment::Idle) {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => self.failure.set(err),
            }
        }
    }

    /// Waits for work and takes the whole open batch, running idle upkeep while waiting.
    /// `None` once the executor has stopped and everything is committed.
    fn next_batch(&mut self) -> Option<OpenBatch> {
        let mut batch = self.handoff.lock();
        loop {
            if !batch.replies.is_empty() {
                let taken = std::mem::take(&mut *batch);
                batch.closed = taken.closed;
                drop(batch);
                self.handoff.taken.notify_one();
                return Some(taken);
            }
            if batch.closed {
                return None;
            }
            if self.failure.get().is_none() && self.persistence.has_idle_work() {
                let (guard, wait) = self
                    .handoff
                    .filled
                    .wait_timeout(batch, IDLE_AFTER)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                batch = guard;
                if wait.timed_out() && batch.replies.is_empty() && !batch.closed {
                    drop(batch);
                    self.idle_upkeep();
                    batch = self.handoff.lock();
                }
            } else {
                batch = self
                    .handoff
                    .filled
                    .wait(batch)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
    }

    /// Runs idle upkeep until it is done or work arrives.
    fn idle_upkeep(&mut self) {
        loop {
            match self.persistence.maintain(Moment::Idle) {
                Ok(true) => {}
                Ok(false) => return,
                Err(err) => {
                    self.failure.set(err);
                    return;
                }
            }
            let waiting = self.handoff.lock();
            if !waiting.replies.is_empty() || waiting.closed {
                return;
            }
        }
    }

    fn commit(&mut self, batch: OpenBatch) {
        if let Some(err) = self.failure.get() {
            // Executed on top of work that failed to commit: nothing of it may stand.
            for (reply, result) in batch.replies {
                let _ = reply.send(result.and(Err(err.clone())));
            }
            return;
        }
        if !batch.changes.is_empty() {
            let started = std::time::Instant::now();
            if let Err(err) = self.persistence.commit(&batch.changes, batch.revision) {
                for (reply, result) in batch.replies {
                    let _ = reply.send(result.and(Err(err.clone())));
                }
                self.failure.set(err);
                return;
            }
            let changes = batch.changes.len();
            self.shared.publish(batch.changes);
            self.revisions.send_replace(batch.revision);
            tracing::trace!(
                operations = batch.replies.len(),
                changes,
                revision = batch.revision,
                committed = ?started.elapsed(),
                "batch committed"
            );
        }
        for (reply, result) in batch.replies {
            let _ = reply.send(result);
        }
    }
}

/// Implements [`crate::ObjectStore`] for a type with an `pipeline: Pipeline` field.
macro_rules! delegate_object_store {
    ($store:ty) => {
        impl $crate::object_store::ObjectStore for $store {
            fn get(
                &self,
                resource: $crate::ResourceType,
                namespace: &str,
                name: &str,
            ) -> $crate::object_store::StoreFuture<'_, serde_json::Value> {
                Box::pin(std::future::ready(
                    self.pipeline.get(&resource, namespace, name),
                ))
            }

            fn list(
                &self,
                resource: $crate::ResourceType,
                options: $crate::object_store::ListOptions,
            ) -> $crate::object_store::StoreFuture<'_, $crate::object_store::ObjectList> {
                Box::pin(std::future::ready(self.pipeline.list(&resource, &options)))
            }

            fn create(
                &self,
                resource: $crate::ResourceType,
                object: serde_json::Value,
            ) -> $crate::object_store::StoreFuture<'_, serde_json::Value> {
                Box::pin(
                    self.pipeline
                        .write_object($crate::pipeline::exec::Op::Create { resource, object }),
                )
            }

            fn update(
                &self,
                resource: $crate::ResourceType,
                object: serde_json::Value,
            ) -> $crate::object_store::StoreFuture<'_, serde_json::Value> {
                let part = $crate::pipeline::exec::Part::Main;
                Box::pin(
                    self.pipeline
                        .write_object($crate::pipeline::exec::Op::Update {
                            resource,
                            object,
                            part,
                        }),
                )
            }

            fn update_status(
                &self,
                resource: $crate::ResourceType,
                object: serde_json::Value,
            ) -> $crate::object_store::StoreFuture<'_, serde_json::Value> {
                let part = $crate::pipeline::exec::Part::Status;
                Box::pin(
                    self.pipeline
                        .write_object($crate::pipeline::exec::Op::Update {
                            resource,
                            object,
                            part,
                        }),
                )
            }

            fn patch(
                &self,
                resource: $crate::ResourceType,
                namespace: &str,
                name: &str,
                patch: serde_json::Value,
            ) -> $crate::object_store::StoreFuture<'_, serde_json::Value> {
                let (namespace, name) = (namespace.to_owned(), name.to_owned());
                let part = $crate::pipeline::exec::Part::Main;
                Box::pin(
                    self.pipeline
                        .write_object($crate::pipeline::exec::Op::Patch {
                            resource,
                            namespace,
                            name,
                            patch,
                            part,
                        }),
                )
            }

            fn patch_status(
                &self,
                resource: $crate::ResourceType,
                namespace: &str,
                name: &str,
                patch: serde_json::Value,
            ) -> $crate::object_store::StoreFuture<'_, serde_json::Value> {
                let (namespace, name) = (namespace.to_owned(), name.to_owned());
                let part = $crate::pipeline::exec::Part::Status;
                Box::pin(
                    self.pipeline
                        .write_object($crate::pipeline::exec::Op::Patch {
                            resource,
                            namespace,
                            name,
                            patch,
                            part,
                        }),
                )
            }

            fn delete(
                &self,
                resource: $crate::ResourceType,
                namespace: &str,
                name: &str,
                options: $crate::object_store::DeleteOptions,
            ) -> $crate::object_store::StoreFuture<'_, $crate::object_store::Deleted> {
                let (namespace, name) = (namespace.to_owned(), name.to_owned());
                Box::pin(self.pipeline.delete($crate::pipeline::exec::Op::Delete {
                    resource,
                    namespace,
                    name,
                    options,
                }))
            }

            fn watch(
                &self,
                resource: $crate::ResourceType,
                options: $crate::object_store::WatchOptions,
            ) -> $crate::object_store::StoreFuture<'_, $crate::object_store::WatchStream> {
                Box::pin(std::future::ready(self.pipeline.watch(&resource, options)))
            }
        }
    };
}

pub(crate) use delegate_object_store;
