//! The controller's caches: one reflector per kind (Sandboxes, Pods trimmed as upstream's,
//! Services, PVC metadata, and with `--extensions` SandboxTemplates, SandboxClaims,
//! SandboxWarmPools, NetworkPolicies), secondary indexes the reconcilers look objects up by,
//! and the fan-out of watch events to the controllers' work queues.
//!
//! Every cached object loses `managedFields`; Pods keep only metadata (minus finalizers),
//! `spec.nodeName` and `status`, which is all the Sandbox planner reads.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodSpec, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use paddock_api::names::{SANDBOX_NAME, SANDBOX_NAME_HASH, WARM_POOL_SANDBOX};
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate, SandboxWarmPool};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

/// Removes what no reconciler reads from every cached object.
pub fn strip_managed_fields(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
}

/// Upstream's pod transform: metadata without finalizers or managedFields, `spec.nodeName`
/// only, full status. Cuts a cached pod to a fraction of its size.
pub fn trim_pod(pod: &mut Pod) {
    strip_managed_fields(&mut pod.metadata);
    pod.metadata.finalizers = None;
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    pod.spec = node_name.map(|n| PodSpec {
        node_name: Some(n),
        ..PodSpec::default()
    });
}

/// Names of objects in one namespace, looked up by an index key.
///
/// Keys are computed from each object by the index function; the index is rebuilt on every
/// relist (Init … InitDone), like the reflector store itself.
pub struct Index<K> {
    key_of: fn(&K) -> Vec<String>,
    inner: RwLock<IndexState>,
}

type IndexMaps = (
    HashMap<String, BTreeSet<String>>,
    HashMap<String, Vec<String>>,
);

#[derive(Default)]
struct IndexState {
    by_key: HashMap<String, BTreeSet<String>>,
    keys_of: HashMap<String, Vec<String>>,
    building: Option<IndexMaps>,
}

impl<K> Debug for Index<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

fn object_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// The index key for `value` in namespace `ns`.
pub fn index_key(ns: &str, value: &str) -> String {
    format!("{ns}/{value}")
}

impl<K: Resource> Index<K> {
    /// An index computing each object's keys with `key_of`.
    pub fn new(key_of: fn(&K) -> Vec<String>) -> Self {
        Self {
            key_of,
            inner: RwLock::new(IndexState::default()),
        }
    }

    /// Names of the objects under `key`.
    pub fn get(&self, key: &str) -> Vec<String> {
        let state = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .by_key
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Applies one watch event.
    pub fn apply(&self, event: &Event<K>) {
        let mut state = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Apply(obj) => {
                let (ns, name) = ns_name(obj);
                let keys = (self.key_of)(obj);
                let s = &mut *state;
                insert(&mut s.by_key, &mut s.keys_of, &ns, &name, keys);
            }
            Event::Delete(obj) => {
                let (ns, name) = ns_name(obj);
                let s = &mut *state;
                remove(&mut s.by_key, &mut s.keys_of, &ns, &name);
            }
            Event::Init => state.building = Some((HashMap::new(), HashMap::new())),
            Event::InitApply(obj) => {
                let (ns, name) = ns_name(obj);
                let keys = (self.key_of)(obj);
                if let Some((by_key, keys_of)) = state.building.as_mut() {
                    insert(by_key, keys_of, &ns, &name, keys);
                }
            }
            Event::InitDone => {
                if let Some((by_key, keys_of)) = state.building.take() {
                    state.by_key = by_key;
                    state.keys_of = keys_of;
                }
            }
        }
    }
}

fn ns_name<K: Resource>(obj: &K) -> (String, String) {
    (
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default(),
    )
}

fn insert(
    by_key: &mut HashMap<String, BTreeSet<String>>,
    keys_of: &mut HashMap<String, Vec<String>>,
    ns: &str,
    name: &str,
    keys: Vec<String>,
) {
    remove(by_key, keys_of, ns, name);
    if keys.is_empty() {
        return;
    }
    for k in &keys {
        by_key.entry(k.clone()).or_default().insert(name.to_owned());
    }
    keys_of.insert(object_key(ns, name), keys);
}

fn remove(
    by_key: &mut HashMap<String, BTreeSet<String>>,
    keys_of: &mut HashMap<String, Vec<String>>,
    ns: &str,
    name: &str,
) {
    if let Some(old) = keys_of.remove(&object_key(ns, name)) {
        for k in old {
            if let Some(set) = by_key.get_mut(&k) {
                set.remove(name);
                if set.is_empty() {
                    by_key.remove(&k);
                }
            }
        }
    }
}

fn ns_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

fn label_key(meta: &ObjectMeta, label: &str) -> Vec<String> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(label))
        .map(|v| vec![index_key(ns_of(meta), v)])
        .unwrap_or_default()
}

/// The controller owner reference of an object, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Pods by `<ns>/<sandbox-name-hash>`.
fn pod_keys(pod: &Pod) -> Vec<String> {
    label_key(&pod.metadata, SANDBOX_NAME_HASH)
}

/// Sandboxes by `<ns>/<warm-pool-sandbox>` and by `uid:<controller uid>`.
fn sandbox_keys(sb: &Sandbox) -> Vec<String> {
    let mut keys = label_key(&sb.metadata, WARM_POOL_SANDBOX);
    if let Some(owner) = controller_ref(&sb.metadata) {
        keys.push(owner_key(&owner.uid));
    }
    keys
}

/// The index key of objects controlled by the owner with this UID.
pub fn owner_key(uid: &str) -> String {
    format!("uid:{uid}")
}

/// Claims by `pool:<ns>/<warmPoolRef>` and `sandbox:<ns>/<sandbox-name annotation or label>`.
fn claim_keys(claim: &SandboxClaim) -> Vec<String> {
    let ns = ns_of(&claim.metadata);
    let mut keys = vec![format!(
        "pool:{}",
        index_key(ns, &claim.spec.warm_pool_ref.name)
    )];
    let named = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SANDBOX_NAME))
        .into_iter()
        .chain(
            claim
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SANDBOX_NAME)),
        );
    for n in named {
        keys.push(format!("sandbox:{}", index_key(ns, n)));
    }
    keys
}

/// Pools by `<ns>/<template name>`.
fn pool_keys(pool: &SandboxWarmPool) -> Vec<String> {
    vec![index_key(
        ns_of(&pool.metadata),
        &pool.spec.sandbox_template_ref.name,
    )]
}

/// The controllers' read side: one store per kind and the secondary indexes.
#[derive(Clone, Debug)]
pub struct Caches {
    /// Sandboxes (v1beta1).
    pub sandboxes: Store<Sandbox>,
    /// Pods, trimmed.
    pub pods: Store<Pod>,
    /// Services.
    pub services: Store<Service>,
    /// PVC metadata.
    pub pvcs: Store<PartialObjectMeta<PersistentVolumeClaim>>,
    /// SandboxTemplates (empty without `--extensions`).
    pub templates: Store<SandboxTemplate>,
    /// SandboxClaims (empty without `--extensions`).
    pub claims: Store<SandboxClaim>,
    /// SandboxWarmPools (empty without `--extensions`).
    pub pools: Store<SandboxWarmPool>,
    /// NetworkPolicies (empty without `--extensions`).
    pub network_policies: Store<NetworkPolicy>,
    /// Secondary indexes.
    pub indexes: Arc<Indexes>,
    /// Which caches have listed.
    pub synced: Arc<Synced>,
}

/// Secondary indexes over the caches.
#[derive(Debug)]
pub struct Indexes {
    /// Pods by `<ns>/<sandbox-name-hash>`.
    pub pods: Index<Pod>,
    /// Sandboxes by `<ns>/<warm-pool-sandbox>` and `uid:<controller uid>`.
    pub sandboxes: Index<Sandbox>,
    /// Claims by `pool:<ns>/<pool>` and `sandbox:<ns>/<sandbox>`.
    pub claims: Index<SandboxClaim>,
    /// Pools by `<ns>/<template>`.
    pub pools: Index<SandboxWarmPool>,
}

impl Default for Indexes {
    fn default() -> Self {
        Self {
            pods: Index::new(pod_keys),
            sandboxes: Index::new(sandbox_keys),
            claims: Index::new(claim_keys),
            pools: Index::new(pool_keys),
        }
    }
}

/// The write side of [`Caches`]: what the reflectors (or a test, or a benchmark) feed.
#[derive(Debug)]
pub struct CacheWriters {
    /// Sandboxes.
    pub sandboxes: Writer<Sandbox>,
    /// Pods.
    pub pods: Writer<Pod>,
    /// Services.
    pub services: Writer<Service>,
    /// PVC metadata.
    pub pvcs: Writer<PartialObjectMeta<PersistentVolumeClaim>>,
    /// SandboxTemplates.
    pub templates: Writer<SandboxTemplate>,
    /// SandboxClaims.
    pub claims: Writer<SandboxClaim>,
    /// SandboxWarmPools.
    pub pools: Writer<SandboxWarmPool>,
    /// NetworkPolicies.
    pub network_policies: Writer<NetworkPolicy>,
    /// Which caches have listed (shared with [`Caches`]).
    pub synced: Arc<Synced>,
}

/// One of the caches, for [`Caches::wait_synced`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheKind {
    /// Sandboxes.
    Sandboxes,
    /// Pods.
    Pods,
    /// Services.
    Services,
    /// PVCs.
    Pvcs,
    /// SandboxTemplates.
    Templates,
    /// SandboxClaims.
    Claims,
    /// SandboxWarmPools.
    Pools,
    /// NetworkPolicies.
    NetworkPolicies,
}

/// Which caches have completed their initial list. (kube's `Store::wait_until_ready` wakes
/// only one of several concurrent waiters, so readiness is tracked here.)
#[derive(Debug)]
pub struct Synced {
    flags: [tokio::sync::watch::Sender<bool>; 8],
}

impl Default for Synced {
    fn default() -> Self {
        Self {
            flags: std::array::from_fn(|_| tokio::sync::watch::Sender::new(false)),
        }
    }
}

impl Synced {
    fn flag(&self, kind: CacheKind) -> &tokio::sync::watch::Sender<bool> {
        &self.flags[kind as usize]
    }

    /// Records that `kind` completed a list.
    pub fn mark(&self, kind: CacheKind) {
        self.flag(kind).send_replace(true);
    }
}

impl CacheKind {
    /// Every cache.
    pub const ALL: [CacheKind; 8] = [
        CacheKind::Sandboxes,
        CacheKind::Pods,
        CacheKind::Services,
        CacheKind::Pvcs,
        CacheKind::Templates,
        CacheKind::Claims,
        CacheKind::Pools,
        CacheKind::NetworkPolicies,
    ];
}

impl Caches {
    /// Waits until every cache in `kinds` has completed its initial list, so a controller never
    /// plans from a half-filled cache (it would, say, create a pod that exists).
    pub async fn wait_synced(&self, kinds: &[CacheKind]) {
        for kind in kinds {
            let mut rx = self.synced.flag(*kind).subscribe();
            // The sender lives as long as `self`: this only returns once the flag is set.
            let _ = rx.wait_for(|listed| *listed).await;
        }
    }

    /// Whether `kind` has completed its initial list.
    pub fn is_synced(&self, kind: CacheKind) -> bool {
        *self.synced.flag(kind).borrow()
    }

    /// Empty caches and their writers.
    pub fn new() -> (Self, CacheWriters) {
        let (sandboxes, sw) = reflector::store();
        let (pods, pw) = reflector::store();
        let (services, svw) = reflector::store();
        let (pvcs, pvw) = reflector::store();
        let (templates, tw) = reflector::store();
        let (claims, cw) = reflector::store();
        let (pools, plw) = reflector::store();
        let (network_policies, nw) = reflector::store();
        let synced = Arc::new(Synced::default());
        (
            Self {
                sandboxes,
                pods,
                services,
                pvcs,
                templates,
                claims,
                pools,
                network_policies,
                indexes: Arc::new(Indexes::default()),
                synced: synced.clone(),
            },
            CacheWriters {
                sandboxes: sw,
                pods: pw,
                services: svw,
                pvcs: pvw,
                templates: tw,
                claims: cw,
                pools: plw,
                network_policies: nw,
                synced,
            },
        )
    }

    /// The object `name` in `ns` from `store`.
    pub fn get<K>(store: &Store<K>, ns: &str, name: &str) -> Option<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        store.get(&ObjectRef::new(name).within(ns))
    }
}

impl CacheWriters {
    /// Applies one watch event to the Sandbox store and index (what the reflector does).
    pub fn apply_sandbox(&mut self, caches: &Caches, ev: &Event<Sandbox>) {
        self.sandboxes.apply_watcher_event(ev);
        caches.indexes.sandboxes.apply(ev);
    }

    /// Stores a Sandbox.
    pub fn put_sandbox(&mut self, caches: &Caches, obj: Sandbox) {
        self.apply_sandbox(caches, &Event::Apply(obj));
    }

    /// Stores a Pod (trimmed, as the reflector does).
    pub fn put_pod(&mut self, caches: &Caches, mut obj: Pod) {
        trim_pod(&mut obj);
        let ev = Event::Apply(obj);
        self.pods.apply_watcher_event(&ev);
        caches.indexes.pods.apply(&ev);
    }

    /// Stores a Service.
    pub fn put_service(&mut self, obj: Service) {
        self.services.apply_watcher_event(&Event::Apply(obj));
    }

    /// Stores PVC metadata.
    pub fn put_pvc(&mut self, obj: PartialObjectMeta<PersistentVolumeClaim>) {
        self.pvcs.apply_watcher_event(&Event::Apply(obj));
    }

    /// Stores a SandboxTemplate.
    pub fn put_template(&mut self, obj: SandboxTemplate) {
        self.templates.apply_watcher_event(&Event::Apply(obj));
    }

    /// Stores a SandboxClaim.
    pub fn put_claim(&mut self, caches: &Caches, obj: SandboxClaim) {
        let ev = Event::Apply(obj);
        self.claims.apply_watcher_event(&ev);
        caches.indexes.claims.apply(&ev);
    }

    /// Stores a SandboxWarmPool.
    pub fn put_pool(&mut self, caches: &Caches, obj: SandboxWarmPool) {
        let ev = Event::Apply(obj);
        self.pools.apply_watcher_event(&ev);
        caches.indexes.pools.apply(&ev);
    }

    /// Stores a NetworkPolicy.
    pub fn put_network_policy(&mut self, obj: NetworkPolicy) {
        self.network_policies
            .apply_watcher_event(&Event::Apply(obj));
    }

    /// Marks every store as listed and empty (what `wait_until_ready` waits for). Call it
    /// before putting objects: an initial list replaces the store's contents.
    pub fn mark_ready(&mut self) {
        self.sandboxes.apply_watcher_event(&Event::InitDone);
        self.pods.apply_watcher_event(&Event::InitDone);
        self.services.apply_watcher_event(&Event::InitDone);
        self.pvcs.apply_watcher_event(&Event::InitDone);
        self.templates.apply_watcher_event(&Event::InitDone);
        self.claims.apply_watcher_event(&Event::InitDone);
        self.pools.apply_watcher_event(&Event::InitDone);
        self.network_policies.apply_watcher_event(&Event::InitDone);
        for kind in CacheKind::ALL {
            self.synced.mark(kind);
        }
    }
}

/// Work-queue senders of the controllers that run (a reconcile request per object key).
#[derive(Clone, Debug, Default)]
pub struct Triggers {
    /// Sandbox controller.
    pub sandbox: Option<mpsc::Sender<ObjectRef<Sandbox>>>,
    /// SandboxTemplate controller.
    pub template: Option<mpsc::Sender<ObjectRef<SandboxTemplate>>>,
    /// SandboxWarmPool controller.
    pub pool: Option<mpsc::Sender<ObjectRef<SandboxWarmPool>>>,
    /// SandboxClaim controller.
    pub claim: Option<mpsc::Sender<ObjectRef<SandboxClaim>>>,
}

async fn send<K: Resource>(tx: &Option<mpsc::Sender<ObjectRef<K>>>, r: ObjectRef<K>)
where
    K::DynamicType: Clone,
{
    if let Some(tx) = tx {
        // A closed queue means the controller is shutting down: nothing to do.
        let _ = tx.send(r).await;
    }
}

fn is_kind(r: &OwnerReference, group: &str, kind: &str) -> bool {
    r.kind == kind && paddock_plan::ownership::group_of(&r.api_version) == group
}

/// Called when a pool is deleted, with its namespace and name.
pub type PoolDeleted = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Maps watch events to reconcile requests (upstream's watches, §2.2–§2.5) and keeps the
/// little memory that needs: the pool each Sandbox last belonged to (so a member that left
/// its pool still wakes it) and each pool's last generation.
pub struct Dispatcher {
    caches: Caches,
    triggers: Triggers,
    sandbox_pool: Mutex<HashMap<String, String>>,
    pool_generation: Mutex<HashMap<String, Option<i64>>>,
    seen_templates: Mutex<BTreeSet<String>>,
    /// Called when a pool is deleted (the pool controller forgets its expectations).
    on_pool_deleted: Option<PoolDeleted>,
}

impl Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("triggers", &self.triggers)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher feeding `triggers` and reading `caches`.
    pub fn new(caches: Caches, triggers: Triggers, on_pool_deleted: Option<PoolDeleted>) -> Self {
        Self {
            caches,
            triggers,
            sandbox_pool: Mutex::new(HashMap::new()),
            pool_generation: Mutex::new(HashMap::new()),
            seen_templates: Mutex::new(BTreeSet::new()),
            on_pool_deleted,
        }
    }

    /// A Sandbox event: reconcile it, its pool (now or before), its claim.
    pub async fn sandbox(&self, event: &Event<Sandbox>) {
        let (obj, deleted) = match event {
            Event::Apply(o) | Event::InitApply(o) => (o, false),
            Event::Delete(o) => (o, true),
            Event::Init | Event::InitDone => return,
        };
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        send(&self.triggers.sandbox, ObjectRef::new(&name).within(&ns)).await;
        let owner = controller_ref(&obj.metadata);
        let pool_now = owner
            .filter(|r| {
                is_kind(
                    r,
                    paddock_api::names::EXTENSIONS_GROUP,
                    SandboxWarmPool::KIND,
                )
            })
            .map(|r| r.name.clone());
        let key = object_key(&ns, &name);
        let pool_before = {
            let mut map = self
                .sandbox_pool
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match (&pool_now, deleted) {
                (Some(p), false) => map.insert(key, p.clone()),
                _ => map.remove(&key),
            }
        };
        if self.triggers.pool.is_some() {
            for p in pool_now
                .iter()
                .chain(pool_before.iter().filter(|b| Some(*b) != pool_now.as_ref()))
            {
                send(&self.triggers.pool, ObjectRef::new(p).within(&ns)).await;
            }
        }
        if let Some(r) =
            owner.filter(|r| is_kind(r, paddock_api::names::EXTENSIONS_GROUP, SandboxClaim::KIND))
        {
            send(&self.triggers.claim, ObjectRef::new(&r.name).within(&ns)).await;
        }
    }

    /// A Pod or Service event: reconcile the Sandbox that controls it (or, for an unowned
    /// object, the Sandbox with its name, which may adopt it).
    pub async fn child(&self, meta: &ObjectMeta) {
        let ns = ns_of(meta);
        let target = match controller_ref(meta) {
            Some(r) if is_kind(r, paddock_api::names::CORE_GROUP, Sandbox::KIND) => {
                Some(r.name.clone())
            }
            Some(_) => None,
            None => meta
                .name
                .clone()
                .filter(|n| Caches::get(&self.caches.sandboxes, ns, n).is_some()),
        };
        if let Some(name) = target {
            send(&self.triggers.sandbox, ObjectRef::new(&name).within(ns)).await;
        }
    }

    /// A SandboxTemplate event: reconcile it, the pools that use it, and (on first sight) the
    /// claims of those pools.
    pub async fn template(&self, event: &Event<SandboxTemplate>) {
        let obj = match event {
            Event::Apply(o) | Event::InitApply(o) | Event::Delete(o) => o,
            Event::Init | Event::InitDone => return,
        };
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        send(&self.triggers.template, ObjectRef::new(&name).within(&ns)).await;
        let first_seen = {
            let mut seen = self
                .seen_templates
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match event {
                Event::Delete(_) => {
                    seen.remove(&object_key(&ns, &name));
                    false
                }
                _ => seen.insert(object_key(&ns, &name)),
            }
        };
        let pools = self.caches.indexes.pools.get(&index_key(&ns, &name));
        for p in &pools {
            send(&self.triggers.pool, ObjectRef::new(p).within(&ns)).await;
            if first_seen && matches!(event, Event::Apply(_)) {
                for c in self
                    .caches
                    .indexes
                    .claims
                    .get(&format!("pool:{}", index_key(&ns, p)))
                {
                    send(&self.triggers.claim, ObjectRef::new(&c).within(&ns)).await;
                }
            }
        }
        if first_seen && matches!(event, Event::Apply(_)) {
            // Claims of a missing `shadow-pool-<template>` go cold from the template itself.
            let shadow = format!("{}{name}", paddock_api::names::SHADOW_POOL_PREFIX);
            for c in self
                .caches
                .indexes
                .claims
                .get(&format!("pool:{}", index_key(&ns, &shadow)))
            {
                send(&self.triggers.claim, ObjectRef::new(&c).within(&ns)).await;
            }
        }
    }

    /// A NetworkPolicy event: reconcile the template that controls it.
    pub async fn network_policy(&self, meta: &ObjectMeta) {
        if let Some(r) = controller_ref(meta).filter(|r| {
            is_kind(
                r,
                paddock_api::names::EXTENSIONS_GROUP,
                SandboxTemplate::KIND,
            )
        }) {
            send(
                &self.triggers.template,
                ObjectRef::new(&r.name).within(ns_of(meta)),
            )
            .await;
        }
    }

    /// A SandboxWarmPool event: reconcile it; on a generation change wake its unbound claims.
    pub async fn pool(&self, event: &Event<SandboxWarmPool>) {
        let (obj, deleted) = match event {
            Event::Apply(o) | Event::InitApply(o) => (o, false),
            Event::Delete(o) => (o, true),
            Event::Init | Event::InitDone => return,
        };
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let key = object_key(&ns, &name);
        if deleted {
            self.pool_generation
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&key);
            if let Some(cb) = &self.on_pool_deleted {
                cb(&ns, &name);
            }
            return;
        }
        send(&self.triggers.pool, ObjectRef::new(&name).within(&ns)).await;
        let changed = {
            let mut gens = self
                .pool_generation
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            gens.insert(key, obj.metadata.generation) != Some(obj.metadata.generation)
        };
        if changed && matches!(event, Event::Apply(_)) {
            for c in self
                .caches
                .indexes
                .claims
                .get(&format!("pool:{}", index_key(&ns, &name)))
            {
                let unbound = Caches::get(&self.caches.claims, &ns, &c).is_some_and(|claim| {
                    claim
                        .status
                        .as_ref()
                        .and_then(|s| s.sandbox.as_ref())
                        .and_then(|s| s.name.as_deref())
                        .is_none_or(str::is_empty)
                });
                if unbound {
                    send(&self.triggers.claim, ObjectRef::new(&c).within(&ns)).await;
                }
            }
        }
    }

    /// A SandboxClaim event: reconcile it.
    pub async fn claim(&self, event: &Event<SandboxClaim>) {
        if let Event::Apply(o) | Event::InitApply(o) = event {
            send(
                &self.triggers.claim,
                ObjectRef::new(&o.name_any()).within(&o.namespace().unwrap_or_default()),
            )
            .await;
        }
    }
}

/// Which objects the Pod and Service caches hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildScope {
    /// Every Pod and Service (upstream's default; needed to adopt unlabelled objects).
    All,
    /// Only those labelled `agents.x-k8s.io/sandbox-name-hash` (`--cache-label-selectors`).
    Labelled,
}

fn watcher_config(scope: ChildScope) -> watcher::Config {
    let config = watcher::Config::default().any_semantic();
    match scope {
        ChildScope::All => config,
        ChildScope::Labelled => config.labels(SANDBOX_NAME_HASH),
    }
}

/// A reflector stream for `K`: watch all namespaces, strip managedFields (and apply `modify`),
/// fill `writer`, back off on errors.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    modify: fn(&mut K),
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    reflector::reflector(
        writer,
        watcher::watcher(api, config)
            .modify(modify)
            .default_backoff(),
    )
}

fn strip<K: Resource>(obj: &mut K) {
    strip_managed_fields(obj.meta_mut());
}

/// Runs every reflector until the process stops: each task feeds its store, its index and the
/// dispatcher. Returns the task handles (abort them to stop).
pub fn spawn_reflectors(
    client: &Client,
    writers: CacheWriters,
    dispatcher: Arc<Dispatcher>,
    extensions: bool,
    scope: ChildScope,
) -> Vec<tokio::task::JoinHandle<()>> {
    let caches = dispatcher.caches.clone();
    let mut tasks = Vec::new();
    {
        let d = dispatcher.clone();
        let idx = caches.indexes.clone();
        let s = reflect(
            Api::<Sandbox>::all(client.clone()),
            watcher::Config::default().any_semantic(),
            writers.sandboxes,
            strip::<Sandbox>,
        );
        tasks.push(tokio::spawn(drive(
            s,
            "sandboxes",
            (caches.synced.clone(), CacheKind::Sandboxes),
            move |ev| {
                let d = d.clone();
                let idx = idx.clone();
                async move {
                    idx.sandboxes.apply(&ev);
                    d.sandbox(&ev).await;
                }
            },
        )));
    }
    {
        let d = dispatcher.clone();
        let idx = caches.indexes.clone();
        let s = reflect(
            Api::<Pod>::all(client.clone()),
            watcher_config(scope),
            writers.pods,
            trim_pod,
        );
        tasks.push(tokio::spawn(drive(
            s,
            "pods",
            (caches.synced.clone(), CacheKind::Pods),
            move |ev| {
                let d = d.clone();
                let idx = idx.clone();
                async move {
                    idx.pods.apply(&ev);
                    if let Event::Apply(o) | Event::Delete(o) = &ev {
                        d.child(&o.metadata).await;
                    }
                }
            },
        )));
    }
    {
        let d = dispatcher.clone();
        let s = reflect(
            Api::<Service>::all(client.clone()),
            watcher_config(scope),
            writers.services,
            strip::<Service>,
        );
        tasks.push(tokio::spawn(drive(
            s,
            "services",
            (caches.synced.clone(), CacheKind::Services),
            move |ev| {
                let d = d.clone();
                async move {
                    if let Event::Apply(o) | Event::Delete(o) = &ev {
                        d.child(&o.metadata).await;
                    }
                }
            },
        )));
    }
    {
        let s = reflector::reflector(
            writers.pvcs,
            watcher::watcher(
                Api::<PartialObjectMeta<PersistentVolumeClaim>>::all(client.clone()),
                watcher::Config::default().any_semantic(),
            )
            .modify(|m: &mut PartialObjectMeta<PersistentVolumeClaim>| {
                strip_managed_fields(&mut m.metadata)
            })
            .default_backoff(),
        );
        tasks.push(tokio::spawn(drive(
            s,
            "persistentvolumeclaims",
            (caches.synced.clone(), CacheKind::Pvcs),
            |_| async {},
        )));
    }
    if !extensions {
        return tasks;
    }
    {
        let d = dispatcher.clone();
        let s = reflect(
            Api::<SandboxTemplate>::all(client.clone()),
            watcher::Config::default().any_semantic(),
            writers.templates,
            strip::<SandboxTemplate>,
        );
        tasks.push(tokio::spawn(drive(
            s,
            "sandboxtemplates",
            (caches.synced.clone(), CacheKind::Templates),
            move |ev| {
                let d = d.clone();
                async move { d.template(&ev).await }
            },
        )));
    }
    {
        let d = dispatcher.clone();
        let idx = caches.indexes.clone();
        let s = reflect(
            Api::<SandboxWarmPool>::all(client.clone()),
            watcher::Config::default().any_semantic(),
            writers.pools,
            strip::<SandboxWarmPool>,
        );
        tasks.push(tokio::spawn(drive(
            s,
            "sandboxwarmpools",
            (caches.synced.clone(), CacheKind::Pools),
            move |ev| {
                let d = d.clone();
                let idx = idx.clone();
                async move {
                    idx.pools.apply(&ev);
                    d.pool(&ev).await;
                }
            },
        )));
    }
    {
        let d = dispatcher.clone();
        let idx = caches.indexes.clone();
        let s = reflect(
            Api::<SandboxClaim>::all(client.clone()),
            watcher::Config::default().any_semantic(),
            writers.claims,
            strip::<SandboxClaim>,
        );
        tasks.push(tokio::spawn(drive(
            s,
            "sandboxclaims",
            (caches.synced.clone(), CacheKind::Claims),
            move |ev| {
                let d = d.clone();
                let idx = idx.clone();
                async move {
                    idx.claims.apply(&ev);
                    d.claim(&ev).await;
                }
            },
        )));
    }
    {
        let d = dispatcher;
        let s = reflect(
            Api::<NetworkPolicy>::all(client.clone()),
            watcher::Config::default().any_semantic(),
            writers.network_policies,
            strip::<NetworkPolicy>,
        );
        tasks.push(tokio::spawn(drive(
            s,
            "networkpolicies",
            (caches.synced.clone(), CacheKind::NetworkPolicies),
            move |ev| {
                let d = d.clone();
                async move {
                    if let Event::Apply(o) | Event::Delete(o) = &ev {
                        d.network_policy(&o.metadata).await;
                    }
                }
            },
        )));
    }
    tasks
}

/// Polls one reflector stream forever, handing each event to `on_event`; watch errors are
/// logged (the stream backs off and relists by itself).
async fn drive<K, S, F, Fut>(
    stream: S,
    resource: &'static str,
    (synced, kind): (Arc<Synced>, CacheKind),
    mut on_event: F,
) where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
    F: FnMut(Event<K>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(ev) => {
                if matches!(ev, Event::InitDone) {
                    synced.mark(kind);
                    tracing::debug!(resource, "cache listed");
                }
                on_event(ev).await;
            }
            Err(e) => tracing::warn!(resource, error = %e, "watch failed; retrying with backoff"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodStatus};
    use std::collections::BTreeMap;

    fn pod(name: &str, hash: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([(
                    SANDBOX_NAME_HASH.to_owned(),
                    hash.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn trim_pod_keeps_node_name_and_status_only() {
        let mut p = pod("a", "h");
        p.metadata.finalizers = Some(vec!["x".into()]);
        p.spec = Some(PodSpec {
            node_name: Some("node-1".into()),
            containers: vec![Container {
                name: "c".into(),
                image: Some("img".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        });
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            ..PodStatus::default()
        });
        trim_pod(&mut p);
        let spec = p.spec.expect("spec kept for nodeName");
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert!(spec.containers.is_empty());
        assert_eq!(p.metadata.finalizers, None);
        assert_eq!(p.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    }

    #[test]
    fn index_follows_label_changes_and_relists() {
        let idx: Index<Pod> = Index::new(pod_keys);
        idx.apply(&Event::Apply(pod("a", "h1")));
        idx.apply(&Event::Apply(pod("b", "h1")));
        assert_eq!(idx.get("ns/h1"), vec!["a", "b"]);
        idx.apply(&Event::Apply(pod("a", "h2")));
        assert_eq!(idx.get("ns/h1"), vec!["b"]);
        assert_eq!(idx.get("ns/h2"), vec!["a"]);
        idx.apply(&Event::Delete(pod("b", "h1")));
        assert!(idx.get("ns/h1").is_empty());
        idx.apply(&Event::Init);
        idx.apply(&Event::InitApply(pod("c", "h3")));
        assert_eq!(
            idx.get("ns/h2"),
            vec!["a"],
            "old state served until InitDone"
        );
        idx.apply(&Event::InitDone);
        assert!(idx.get("ns/h2").is_empty());
        assert_eq!(idx.get("ns/h3"), vec!["c"]);
    }
}
