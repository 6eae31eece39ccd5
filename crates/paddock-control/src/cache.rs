//! The core's cache of the four kinds: typed objects kept by watching [`Objects`](crate::ports::Objects),
//! with the secondary indexes the loops look objects up by. The loops read only the cache (no
//! round trip per reconcile) and write with optimistic locks, so a stale read costs a retry,
//! never a wrong write. Their own writes enter the cache at once ([`Cache::observe_write`]),
//! so the next reconcile sees them even before the watch delivers them.
//!
//! The per-kind code is written once ([`KindCache`]); a kind only says which index keys its
//! objects have ([`Indexed`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use paddock_api::kinds::Kind;
use paddock_api::names::{SANDBOX_NAME, WARM_POOL_SANDBOX, name_hash};
use paddock_api::stored::{Object, StoredKind};
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate, SandboxWarmPool};
use paddock_plan::ownership::controller_of_meta;

use crate::ports::WatchEvent;

/// Namespace and name of an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl Key {
    /// The key of `namespace`/`name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object.
    pub fn of<K: StoredKind>(object: &K) -> Self {
        let meta = object.meta();
        Self::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The index keys the loops look objects up by.
pub mod index {
    use paddock_api::names::name_hash;

    /// Sandboxes that are members of pool `pool` (labelled `warm-pool-sandbox=<hash>`).
    pub fn pool_members(namespace: &str, pool: &str) -> String {
        format!("member:{namespace}/{}", name_hash(pool))
    }

    /// Sandboxes with a controller reference to the object with this uid.
    pub fn controlled_by(uid: &str) -> String {
        format!("owner:{uid}")
    }

    /// Claims of pool `pool` (`spec.warmPoolRef`).
    pub fn claims_of_pool(namespace: &str, pool: &str) -> String {
        format!("pool:{namespace}/{pool}")
    }

    /// Claims that name `sandbox` in their `sandbox-name` annotation (or older label).
    pub fn claims_holding(namespace: &str, sandbox: &str) -> String {
        format!("holds:{namespace}/{sandbox}")
    }

    /// Pools of template `template`.
    pub fn pools_of_template(namespace: &str, template: &str) -> String {
        format!("template:{namespace}/{template}")
    }
}

/// A kind the cache holds, and the index keys of its objects.
pub trait Indexed: StoredKind {
    /// The index keys of this object.
    fn index_keys(&self) -> Vec<String>;

    /// This kind's part of the cache.
    fn part(cache: &Cache) -> &KindCache<Self>;
}

fn namespace_of<K: StoredKind>(object: &K) -> &str {
    object.meta().namespace.as_deref().unwrap_or_default()
}

impl Indexed for Sandbox {
    fn index_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if let Some(hash) = self
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(WARM_POOL_SANDBOX))
        {
            keys.push(format!("member:{}/{hash}", namespace_of(self)));
        }
        if let Some(owner) = controller_of_meta(&self.metadata) {
            keys.push(index::controlled_by(&owner.uid));
        }
        keys
    }

    fn part(cache: &Cache) -> &KindCache<Self> {
        &cache.sandboxes
    }
}

impl Indexed for SandboxClaim {
    fn index_keys(&self) -> Vec<String> {
        let ns = namespace_of(self);
        let mut keys = vec![index::claims_of_pool(ns, &self.spec.warm_pool_ref.name)];
        let annotated = self
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SANDBOX_NAME));
        let labelled = self
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SANDBOX_NAME));
        for sandbox in annotated.into_iter().chain(labelled) {
            keys.push(index::claims_holding(ns, sandbox));
        }
        keys
    }

    fn part(cache: &Cache) -> &KindCache<Self> {
        &cache.claims
    }
}

impl Indexed for SandboxWarmPool {
    fn index_keys(&self) -> Vec<String> {
        vec![index::pools_of_template(
            namespace_of(self),
            &self.spec.sandbox_template_ref.name,
        )]
    }

    fn part(cache: &Cache) -> &KindCache<Self> {
        &cache.pools
    }
}

impl Indexed for SandboxTemplate {
    fn index_keys(&self) -> Vec<String> {
        Vec::new()
    }

    fn part(cache: &Cache) -> &KindCache<Self> {
        &cache.templates
    }
}

/// One change the cache took in: the object before and after (`None` when absent).
#[derive(Debug)]
pub struct Change<K> {
    /// Before the change.
    pub old: Option<Arc<K>>,
    /// After the change; `None` when the object was deleted.
    pub new: Option<Arc<K>>,
}

impl<K> Change<K> {
    /// The object as it is now, or as it was last seen when deleted.
    pub fn latest(&self) -> Option<&Arc<K>> {
        self.new.as_ref().or(self.old.as_ref())
    }

    /// Whether the object appeared with this change.
    pub fn added(&self) -> bool {
        self.old.is_none() && self.new.is_some()
    }
}

/// A change of any kind.
#[derive(Debug)]
#[allow(missing_docs)]
pub enum Changed {
    Sandbox(Change<Sandbox>),
    SandboxTemplate(Change<SandboxTemplate>),
    SandboxClaim(Change<SandboxClaim>),
    SandboxWarmPool(Change<SandboxWarmPool>),
}

/// A typed part of the cache: the objects of one kind and their index.
pub struct KindCache<K> {
    state: RwLock<KindState<K>>,
}

struct KindState<K> {
    objects: BTreeMap<Key, Arc<K>>,
    by_index: HashMap<String, BTreeSet<Key>>,
    synced: bool,
}

impl<K> fmt::Debug for KindCache<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindCache").finish_non_exhaustive()
    }
}

impl<K> Default for KindCache<K> {
    fn default() -> Self {
        Self {
            state: RwLock::new(KindState {
                objects: BTreeMap::new(),
                by_index: HashMap::new(),
                synced: false,
            }),
        }
    }
}

/// A resourceVersion as a number, when it is one (every store paddock talks to uses decimal
/// revisions; an opaque one is always taken as newer).
fn revision(rv: Option<&str>) -> Option<u64> {
    rv.and_then(|s| s.parse().ok())
}

fn newer(incoming: Option<&str>, cached: Option<&str>) -> bool {
    match (revision(incoming), revision(cached)) {
        (Some(i), Some(c)) => i > c,
        _ => true,
    }
}

impl<K: Indexed> KindCache<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, KindState<K>> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KindState<K>> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &Key) -> Option<Arc<K>> {
        self.read().objects.get(key).cloned()
    }

    fn list(&self, namespace: Option<&str>) -> Vec<Arc<K>> {
        let state = self.read();
        match namespace {
            None => state.objects.values().cloned().collect(),
            Some(ns) => state
                .objects
                .range(Key::new(ns, "")..)
                .take_while(|(k, _)| k.namespace == ns)
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }

    fn by_index(&self, index_key: &str) -> Vec<Arc<K>> {
        let state = self.read();
        state
            .by_index
            .get(index_key)
            .into_iter()
            .flatten()
            .filter_map(|k| state.objects.get(k).cloned())
            .collect()
    }

    fn names_by_index(&self, index_key: &str) -> Vec<Key> {
        self.read()
            .by_index
            .get(index_key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn unindex(state: &mut KindState<K>, key: &Key, object: &K) {
        for ik in object.index_keys() {
            if let Some(set) = state.by_index.get_mut(&ik) {
                set.remove(key);
                if set.is_empty() {
                    state.by_index.remove(&ik);
                }
            }
        }
    }

    fn put(state: &mut KindState<K>, key: Key, object: Arc<K>) -> Option<Arc<K>> {
        let old = state.objects.insert(key.clone(), object.clone());
        if let Some(old) = &old {
            Self::unindex(state, &key, old);
        }
        for ik in object.index_keys() {
            state.by_index.entry(ik).or_default().insert(key.clone());
        }
        old
    }

    /// An added or changed object; no change when the cache already holds this or a newer
    /// version (the watch event of a write the cache took in already, or an older event
    /// racing a write-through).
    fn apply(&self, object: K) -> Option<Change<K>> {
        let key = Key::of(&object);
        let mut state = self.write();
        if let Some(cached) = state.objects.get(&key)
            && !newer(
                object.meta().resource_version.as_deref(),
                cached.meta().resource_version.as_deref(),
            )
        {
            return None;
        }
        let new = Arc::new(object);
        let old = Self::put(&mut state, key, new.clone());
        Some(Change {
            old,
            new: Some(new),
        })
    }

    /// A deleted object; ignored when the cache holds a newer object of that name (it was
    /// created again and the write-through got there first).
    fn delete(&self, object: &K) -> Option<Change<K>> {
        let key = Key::of(object);
        let mut state = self.write();
        let cached = state.objects.get(&key)?;
        let cached_rv = cached.meta().resource_version.clone();
        if revision(cached_rv.as_deref())
            .zip(revision(object.meta().resource_version.as_deref()))
            .is_some_and(|(c, d)| c > d)
            && cached.meta().uid != object.meta().uid
        {
            return None;
        }
        let old = state.objects.remove(&key)?;
        Self::unindex(&mut state, &key, &old);
        Some(Change {
            old: Some(old),
            new: None,
        })
    }

    /// Replaces the content after a (re)list: objects missing are reported deleted, changed or
    /// new ones applied.
    fn relist(&self, objects: Vec<K>) -> Vec<Change<K>> {
        let fresh: BTreeMap<Key, K> = objects.into_iter().map(|o| (Key::of(&o), o)).collect();
        let gone: Vec<Arc<K>> = self
            .read()
            .objects
            .iter()
            .filter(|(k, _)| !fresh.contains_key(*k))
            .map(|(_, v)| v.clone())
            .collect();
        let mut changes: Vec<Change<K>> = gone.iter().filter_map(|o| self.delete(o)).collect();
        for (_, object) in fresh {
            changes.extend(self.apply(object));
        }
        self.write().synced = true;
        changes
    }

    fn is_synced(&self) -> bool {
        self.read().synced
    }

    fn len(&self) -> usize {
        self.read().objects.len()
    }
}

/// The cache of the four kinds.
#[derive(Debug, Default)]
pub struct Cache {
    sandboxes: KindCache<Sandbox>,
    templates: KindCache<SandboxTemplate>,
    claims: KindCache<SandboxClaim>,
    pools: KindCache<SandboxWarmPool>,
    synced: tokio::sync::Notify,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// One object.
    pub fn get<K: Indexed>(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        K::part(self).get(&Key::new(namespace, name))
    }

    /// Every object of a kind in `namespace` (or everywhere), ordered by namespace and name.
    pub fn list<K: Indexed>(&self, namespace: Option<&str>) -> Vec<Arc<K>> {
        K::part(self).list(namespace)
    }

    /// The objects under an [`index`] key.
    pub fn by_index<K: Indexed>(&self, index_key: &str) -> Vec<Arc<K>> {
        K::part(self).by_index(index_key)
    }

    /// The keys of the objects under an [`index`] key.
    pub fn keys_by_index<K: Indexed>(&self, index_key: &str) -> Vec<Key> {
        K::part(self).names_by_index(index_key)
    }

    /// How many objects of a kind are cached.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Sandbox => self.sandboxes.len(),
            Kind::SandboxTemplate => self.templates.len(),
            Kind::SandboxClaim => self.claims.len(),
            Kind::SandboxWarmPool => self.pools.len(),
        }
    }

    /// Members of a pool (by the `warm-pool-sandbox` label, as upstream selects them).
    pub fn pool_members(&self, namespace: &str, pool: &str) -> Vec<Arc<Sandbox>> {
        self.by_index(&format!("member:{namespace}/{}", name_hash(pool)))
    }

    /// Takes in one event of the watch of `kind`; returns what changed. A list marks the kind
    /// synced.
    pub fn apply(&self, kind: Kind, event: WatchEvent) -> Vec<Changed> {
        match event {
            WatchEvent::Listed(objects) => self.relist_kind(kind, objects),
            WatchEvent::Applied(object) => self.apply_object(object).into_iter().collect(),
            WatchEvent::Deleted(object) => self.delete_object(&object).into_iter().collect(),
        }
    }

    /// Takes in an object the core just wrote (when it is newer than the cached one).
    pub fn observe_write(&self, object: Object) -> Option<Changed> {
        self.apply_object(object)
    }

    fn apply_object(&self, object: Object) -> Option<Changed> {
        match object {
            Object::Sandbox(o) => self.sandboxes.apply(o).map(Changed::Sandbox),
            Object::SandboxTemplate(o) => self.templates.apply(o).map(Changed::SandboxTemplate),
            Object::SandboxClaim(o) => self.claims.apply(o).map(Changed::SandboxClaim),
            Object::SandboxWarmPool(o) => self.pools.apply(o).map(Changed::SandboxWarmPool),
        }
    }

    fn delete_object(&self, object: &Object) -> Option<Changed> {
        match object {
            Object::Sandbox(o) => self.sandboxes.delete(o).map(Changed::Sandbox),
            Object::SandboxTemplate(o) => self.templates.delete(o).map(Changed::SandboxTemplate),
            Object::SandboxClaim(o) => self.claims.delete(o).map(Changed::SandboxClaim),
            Object::SandboxWarmPool(o) => self.pools.delete(o).map(Changed::SandboxWarmPool),
        }
    }

    /// Replaces the content of `kind` with `objects` (a list), reporting what changed, and
    /// marks the kind synced.
    pub fn relist_kind(&self, kind: Kind, objects: Vec<Object>) -> Vec<Changed> {
        fn typed<K: StoredKind>(objects: Vec<Object>) -> Vec<K> {
            objects.into_iter().filter_map(K::from_object).collect()
        }
        let out: Vec<Changed> = match kind {
            Kind::Sandbox => self
                .sandboxes
                .relist(typed(objects))
                .into_iter()
                .map(Changed::Sandbox)
                .collect(),
            Kind::SandboxTemplate => self
                .templates
                .relist(typed(objects))
                .into_iter()
                .map(Changed::SandboxTemplate)
                .collect(),
            Kind::SandboxClaim => self
                .claims
                .relist(typed(objects))
                .into_iter()
                .map(Changed::SandboxClaim)
                .collect(),
            Kind::SandboxWarmPool => self
                .pools
                .relist(typed(objects))
                .into_iter()
                .map(Changed::SandboxWarmPool)
                .collect(),
        };
        self.synced.notify_waiters();
        out
    }

    /// Whether `kind` has completed its first list.
    pub fn is_synced(&self, kind: Kind) -> bool {
        match kind {
            Kind::Sandbox => self.sandboxes.is_synced(),
            Kind::SandboxTemplate => self.templates.is_synced(),
            Kind::SandboxClaim => self.claims.is_synced(),
            Kind::SandboxWarmPool => self.pools.is_synced(),
        }
    }

    /// Waits until every kind in `kinds` has completed its first list, so no loop plans from a
    /// half-filled cache (it would, say, create a Sandbox that exists).
    pub async fn wait_synced(&self, kinds: &[Kind]) {
        loop {
            let notified = self.synced.notified();
            if kinds.iter().all(|k| self.is_synced(*k)) {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;

    fn sandbox(name: &str, rv: &str, pool_hash: Option<&str>) -> Sandbox {
        let mut sb = Sandbox::new(name, Default::default());
        sb.metadata.namespace = Some("ns".into());
        sb.metadata.resource_version = Some(rv.into());
        sb.metadata.uid = Some(format!("uid-{name}"));
        if let Some(h) = pool_hash {
            sb.metadata.labels = Some(Map::from([(WARM_POOL_SANDBOX.to_owned(), h.to_owned())]));
        }
        sb
    }

    #[test]
    fn indexes_follow_label_changes_and_deletes() {
        let cache = Cache::new();
        let hash = name_hash("pool");
        cache.apply(
            Kind::Sandbox,
            WatchEvent::Applied(sandbox("a", "1", Some(&hash)).into()),
        );
        cache.apply(
            Kind::Sandbox,
            WatchEvent::Applied(sandbox("b", "2", Some(&hash)).into()),
        );
        assert_eq!(cache.pool_members("ns", "pool").len(), 2);
        cache.apply(
            Kind::Sandbox,
            WatchEvent::Applied(sandbox("a", "3", None).into()),
        );
        let members = cache.pool_members("ns", "pool");
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].metadata.name.as_deref(), Some("b"));
        cache.apply(
            Kind::Sandbox,
            WatchEvent::Deleted(sandbox("b", "4", Some(&hash)).into()),
        );
        assert!(cache.pool_members("ns", "pool").is_empty());
    }

    #[test]
    fn a_write_through_is_not_undone_by_the_older_watch_event() {
        let cache = Cache::new();
        cache.apply(
            Kind::Sandbox,
            WatchEvent::Applied(sandbox("a", "5", None).into()),
        );
        let change = cache.observe_write(sandbox("a", "7", Some("h")).into());
        assert!(change.is_some(), "a newer write is taken in");
        assert!(
            cache
                .apply(
                    Kind::Sandbox,
                    WatchEvent::Applied(sandbox("a", "6", None).into())
                )
                .is_empty(),
            "an older watch event is ignored"
        );
        assert!(
            cache
                .apply(
                    Kind::Sandbox,
                    WatchEvent::Applied(sandbox("a", "7", Some("h")).into())
                )
                .is_empty(),
            "the watch event of the write itself changes nothing"
        );
        assert_eq!(
            cache
                .get::<Sandbox>("ns", "a")
                .and_then(|s| s.metadata.resource_version.clone()),
            Some("7".into())
        );
    }

    #[test]
    fn a_relist_reports_vanished_objects_as_deleted_and_marks_the_kind_synced() {
        let cache = Cache::new();
        assert!(!cache.is_synced(Kind::Sandbox));
        cache.apply(
            Kind::Sandbox,
            WatchEvent::Applied(sandbox("gone", "1", None).into()),
        );
        let changes = cache.relist_kind(Kind::Sandbox, vec![sandbox("new", "2", None).into()]);
        assert_eq!(changes.len(), 2);
        assert!(cache.get::<Sandbox>("ns", "gone").is_none());
        assert!(cache.get::<Sandbox>("ns", "new").is_some());
        assert!(cache.is_synced(Kind::Sandbox));
    }
}
