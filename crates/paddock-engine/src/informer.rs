//! An in-memory cache of the four kinds, kept by watching the store, and a fan-out of changes
//! to the controllers. Controllers read the cache (no store round trip per reconcile) and write
//! to the store with optimistic locks, so a stale read only costs a retry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use paddock_api::kinds::Kind;
use paddock_store::{ObjectStore, StoreError, WatchEventType, WatchOptions, WatchStart};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::resources::resource;

/// Namespace and name.
pub type Key = (String, String);

/// One change, as delivered to subscribers.
#[derive(Clone, Debug)]
pub struct Change {
    /// The kind of object.
    pub kind: Kind,
    /// What happened.
    pub event: WatchEventType,
    /// The object after the change (its last state for a delete).
    pub object: Arc<Value>,
    /// The object before the change, when it was cached.
    pub old: Option<Arc<Value>>,
}

impl Change {
    /// Namespace and name of the changed object.
    pub fn key(&self) -> Key {
        key_of(&self.object)
    }
}

/// Namespace and name of an object.
pub fn key_of(object: &Value) -> Key {
    let s = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

/// The cache and its subscribers.
#[derive(Debug, Default)]
pub struct Informer {
    objects: RwLock<HashMap<Kind, BTreeMap<Key, Arc<Value>>>>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Change>>>,
}

impl Informer {
    /// An empty cache.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Receives every later change of every kind.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Change> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(tx);
        rx
    }

    /// One cached object.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let objects = self
            .objects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        objects
            .get(&kind)?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every cached object of a kind in a namespace.
    pub fn list(&self, kind: Kind, namespace: &str) -> Vec<Arc<Value>> {
        let objects = self
            .objects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(map) = objects.get(&kind) else {
            return Vec::new();
        };
        map.range((namespace.to_owned(), String::new())..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every cached object of a kind.
    pub fn list_all(&self, kind: Kind) -> Vec<Arc<Value>> {
        let objects = self
            .objects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        objects
            .get(&kind)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Puts a freshly written object in the cache at once (when it is newer), so the writer's next
    /// read sees it even before the watch delivers it. Subscribers hear of it now, with the
    /// version it replaced: by the time the watch event arrives the cache already holds this
    /// version, so that event's `old` could no longer tell, say, which pool a just-adopted
    /// Sandbox left.
    pub fn observe_write(&self, kind: Kind, object: &Value) {
        let rv = |v: &Value| {
            v.pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let key = key_of(object);
        let object = Arc::new(object.clone());
        let Some(old) = self.with_map(kind, |map| {
            if map.get(&key).is_some_and(|old| rv(old) >= rv(&object)) {
                return None;
            }
            Some(map.insert(key, object.clone()))
        }) else {
            return;
        };
        let event = if old.is_some() {
            WatchEventType::Modified
        } else {
            WatchEventType::Added
        };
        self.publish(Change {
            kind,
            event,
            object,
            old,
        });
    }

    fn apply(&self, kind: Kind, event: WatchEventType, object: Value) {
        let key = key_of(&object);
        let object = Arc::new(object);
        let old = self.with_map(kind, |map| match event {
            WatchEventType::Deleted => map.remove(&key),
            _ => map.insert(key, object.clone()),
        });
        self.publish(Change {
            kind,
            event,
            object,
            old,
        });
    }

    /// Runs `f` on the cached objects of `kind`, under the write lock.
    fn with_map<R>(&self, kind: Kind, f: impl FnOnce(&mut BTreeMap<Key, Arc<Value>>) -> R) -> R {
        let mut objects = self
            .objects
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(objects.entry(kind).or_default())
    }

    fn publish(&self, change: Change) {
        let mut subs = self
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        subs.retain(|s| s.send(change.clone()).is_ok());
    }

    /// Lists then watches `kind` until `shutdown`, relisting after a `Gone`. Objects that vanish
    /// across a relist are reported deleted.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn ObjectStore>,
        kind: Kind,
        shutdown: CancellationToken,
    ) {
        let res = resource(kind);
        loop {
            let list = match store.list(res, Default::default()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(kind = %kind, error = %e, "listing for the cache failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(std::time::Duration::from_millis(500)) => continue,
                    }
                }
            };
            let fresh: BTreeMap<Key, Value> =
                list.items.into_iter().map(|o| (key_of(&o), o)).collect();
            let stale: Vec<Arc<Value>> = {
                let objects = self
                    .objects
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                objects
                    .get(&kind)
                    .map(|m| {
                        m.iter()
                            .filter(|(k, _)| !fresh.contains_key(*k))
                            .map(|(_, v)| v.clone())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for gone in stale {
                self.apply(kind, WatchEventType::Deleted, (*gone).clone());
            }
            for (_, object) in fresh {
                self.apply(kind, WatchEventType::Added, object);
            }
            let options = WatchOptions {
                start: WatchStart::After(list.resource_version),
                ..WatchOptions::default()
            };
            let mut watch = match store.watch(res, options).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(kind = %kind, error = %e, "watch failed; relisting");
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = watch.next() => next,
                };
                match next {
                    None => return,
                    Some(Ok(event)) => self.apply(kind, event.event_type, event.object),
                    Some(Err(StoreError::Gone { .. })) => break,
                    Some(Err(e)) => {
                        tracing::warn!(kind = %kind, error = %e, "watch ended; relisting");
                        break;
                    }
                }
            }
        }
    }
}
