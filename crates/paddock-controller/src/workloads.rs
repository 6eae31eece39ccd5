//! The control core's [`Workloads`] port on the API server: a Sandbox's Pods, headless Service
//! and PVCs, and its template's NetworkPolicy, as real objects. The kubelet runs the Pod; this
//! port only creates, patches and deletes the objects and watches them, trimmed as upstream's
//! caches are (Pods keep metadata without finalizers, `spec.nodeName` and `status`; PVCs only
//! metadata). A change to a child wakes the Sandbox (or template) it belongs to.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, Pod, PodCondition, PodSpec, PodStatus, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer as StoreWriter};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use paddock_api::names::{CORE_GROUP, EXTENSIONS_GROUP, POD_NAME, SANDBOX_NAME_HASH, name_hash};
use paddock_api::v1beta1::{Sandbox, SandboxTemplate};
use paddock_control::Waker;
use paddock_control::ports::{BoxFuture, Children, PolicyWrite, Workloads, WriteError};
use paddock_plan::outcome::FailureKind;
use paddock_plan::ownership::{controller_of_meta, group_of};
use paddock_plan::sandbox::{
    PodObservation, PvcObservation, SandboxAction, ServiceObservation, pvc_name,
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::writes::Writer;

/// What the Sandbox loop reads of a pod (`PodObservation`), nothing more: metadata without
/// finalizers or managedFields, `spec.nodeName`, and of the status the phase, the pod IPs and
/// the `Ready` and `PodScheduled` conditions. Upstream keeps the whole status; container
/// statuses (image IDs, container IDs, states) are most of a running pod's size.
pub fn trim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.finalizers = None;
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    pod.spec = node_name.map(|n| PodSpec {
        node_name: Some(n),
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|s| PodStatus {
        phase: s.phase,
        pod_ips: s.pod_ips,
        conditions: s.conditions.map(|cs| {
            cs.into_iter()
                .filter(|c| c.type_ == "Ready" || c.type_ == "PodScheduled")
                .map(|c| PodCondition {
                    last_probe_time: None,
                    last_transition_time: None,
                    ..c
                })
                .collect()
        }),
        ..PodStatus::default()
    });
}

/// Which Pods and Services the caches hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildScope {
    /// Every Pod and Service (upstream's default; needed to adopt unlabelled objects).
    All,
    /// Only those labelled `agents.x-k8s.io/sandbox-name-hash` (`--cache-label-selectors`).
    Labelled,
}

/// Pod names by `<namespace>/<sandbox-name-hash label>`, kept with the pod cache.
#[derive(Debug, Default)]
struct PodIndex {
    by_hash: HashMap<String, BTreeSet<String>>,
    hash_of: HashMap<(String, String), String>,
    building: Option<Box<PodIndex>>,
}

impl PodIndex {
    fn insert(&mut self, pod: &Pod) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.remove(&ns, &name);
        if let Some(hash) = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SANDBOX_NAME_HASH))
        {
            let key = format!("{ns}/{hash}");
            self.by_hash
                .entry(key.clone())
                .or_default()
                .insert(name.clone());
            self.hash_of.insert((ns, name), key);
        }
    }

    fn remove(&mut self, ns: &str, name: &str) {
        if let Some(key) = self.hash_of.remove(&(ns.to_owned(), name.to_owned()))
            && let Some(set) = self.by_hash.get_mut(&key)
        {
            set.remove(name);
            if set.is_empty() {
                self.by_hash.remove(&key);
            }
        }
    }

    fn apply(&mut self, event: &Event<Pod>) {
        match event {
            Event::Apply(p) => self.insert(p),
            Event::Delete(p) => self.remove(
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default(),
            ),
            Event::Init => self.building = Some(Box::default()),
            Event::InitApply(p) => {
                if let Some(b) = self.building.as_mut() {
                    b.insert(p);
                }
            }
            Event::InitDone => {
                if let Some(b) = self.building.take() {
                    self.by_hash = b.by_hash;
                    self.hash_of = b.hash_of;
                }
            }
        }
    }
}

/// The child caches a Sandbox reconcile reads.
#[derive(Clone, Debug)]
struct ChildCaches {
    pods: Store<Pod>,
    pod_index: Arc<RwLock<PodIndex>>,
    services: Store<Service>,
    pvcs: Store<PartialObjectMeta<PersistentVolumeClaim>>,
    network_policies: Store<NetworkPolicy>,
    synced: [watch::Sender<bool>; 4],
}

/// Which child cache.
#[derive(Clone, Copy, Debug)]
enum Child {
    Pods = 0,
    Services = 1,
    Pvcs = 2,
    NetworkPolicies = 3,
}

/// What fills the child caches: the watches, or a test.
#[derive(Debug)]
pub struct ChildWriters {
    pods: StoreWriter<Pod>,
    pod_index: Arc<RwLock<PodIndex>>,
    services: StoreWriter<Service>,
    pvcs: StoreWriter<PartialObjectMeta<PersistentVolumeClaim>>,
    network_policies: StoreWriter<NetworkPolicy>,
    synced: [watch::Sender<bool>; 4],
}

impl ChildWriters {
    /// Marks every child cache listed and empty. Call it before putting objects: a list
    /// replaces a cache's content.
    pub fn mark_ready(&mut self) {
        self.pods.apply_watcher_event(&Event::InitDone);
        self.services.apply_watcher_event(&Event::InitDone);
        self.pvcs.apply_watcher_event(&Event::InitDone);
        self.network_policies.apply_watcher_event(&Event::InitDone);
        for s in &self.synced {
            s.send_replace(true);
        }
    }

    /// Stores a Pod (trimmed, as the watch does).
    pub fn put_pod(&mut self, mut pod: Pod) {
        trim_pod(&mut pod);
        let event = Event::Apply(pod);
        self.pods.apply_watcher_event(&event);
        write_index(&self.pod_index).apply(&event);
    }

    /// Stores a Service.
    pub fn put_service(&mut self, service: Service) {
        self.services.apply_watcher_event(&Event::Apply(service));
    }

    /// Stores PVC metadata.
    pub fn put_pvc(&mut self, pvc: PartialObjectMeta<PersistentVolumeClaim>) {
        self.pvcs.apply_watcher_event(&Event::Apply(pvc));
    }

    /// Stores a NetworkPolicy.
    pub fn put_network_policy(&mut self, policy: NetworkPolicy) {
        self.network_policies
            .apply_watcher_event(&Event::Apply(policy));
    }
}

fn write_index(index: &RwLock<PodIndex>) -> std::sync::RwLockWriteGuard<'_, PodIndex> {
    index
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn get<K>(store: &Store<K>, ns: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(ns))
}

/// Sandboxes' children on the API server.
#[derive(Clone)]
pub struct KubeWorkloads {
    writer: Writer,
    caches: ChildCaches,
    extensions: bool,
    /// Where Pods of Sandboxes governed by a SandboxPolicy send their traffic (`--egress-proxy`).
    egress_proxy: Option<Arc<crate::egress::EgressProxyAddress>>,
    client: Client,
    /// NetworkPolicies this controller created that its watch has not delivered yet: the
    /// template loop reads them, so a second reconcile does not create the same one again.
    created_policies: Arc<std::sync::Mutex<HashMap<(String, String), NetworkPolicy>>>,
}

impl Debug for KubeWorkloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeWorkloads")
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}

impl KubeWorkloads {
    /// The port writing through `client`, with empty caches and their writers. With
    /// `extensions`, NetworkPolicies are cached too (the template and claim loops read them).
    pub fn new(
        client: Client,
        extensions: bool,
        egress_proxy: Option<Arc<crate::egress::EgressProxyAddress>>,
    ) -> (Arc<Self>, ChildWriters) {
        let (pods, pods_w) = reflector::store();
        let (services, services_w) = reflector::store();
        let (pvcs, pvcs_w) = reflector::store();
        let (network_policies, np_w) = reflector::store();
        let pod_index = Arc::new(RwLock::new(PodIndex::default()));
        let synced: [watch::Sender<bool>; 4] = std::array::from_fn(|_| watch::Sender::new(false));
        if !extensions {
            synced[Child::NetworkPolicies as usize].send_replace(true);
        }
        let caches = ChildCaches {
            pods,
            pod_index: pod_index.clone(),
            services,
            pvcs,
            network_policies,
            synced: synced.clone(),
        };
        (
            Arc::new(Self {
                writer: Writer::new(client.clone()),
                caches,
                extensions,
                egress_proxy,
                client,
                created_policies: Arc::default(),
            }),
            ChildWriters {
                pods: pods_w,
                pod_index,
                services: services_w,
                pvcs: pvcs_w,
                network_policies: np_w,
                synced,
            },
        )
    }

    /// Watches the children until the tasks are aborted, filling the caches and waking the
    /// Sandbox (or template) a changed child belongs to.
    pub fn spawn_watches(
        client: &Client,
        writers: ChildWriters,
        waker: Waker,
        scope: ChildScope,
        extensions: bool,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let ChildWriters {
            pods,
            pod_index,
            services,
            pvcs,
            network_policies,
            synced,
        } = writers;
        let mut tasks = Vec::new();
        let config = |scope: ChildScope| {
            let c = watcher::Config::default().any_semantic();
            match scope {
                ChildScope::All => c,
                ChildScope::Labelled => c.labels(SANDBOX_NAME_HASH),
            }
        };
        {
            let waker = waker.clone();
            let stream = reflect(
                Api::<Pod>::all(client.clone()),
                config(scope),
                pods,
                trim_pod,
            );
            let done = synced[Child::Pods as usize].clone();
            tasks.push(tokio::spawn(drive(stream, "pods", done, move |ev| {
                write_index(&pod_index).apply(&ev);
                if let Event::Apply(p) | Event::Delete(p) = &ev {
                    wake_owner(&waker, &p.metadata);
                }
            })));
        }
        {
            let waker = waker.clone();
            let stream = reflect(
                Api::<Service>::all(client.clone()),
                config(scope),
                services,
                |s: &mut Service| s.metadata.managed_fields = None,
            );
            let done = synced[Child::Services as usize].clone();
            tasks.push(tokio::spawn(drive(stream, "services", done, move |ev| {
                if let Event::Apply(s) | Event::Delete(s) = &ev {
                    wake_owner(&waker, &s.metadata);
                }
            })));
        }
        {
            let stream = reflect(
                Api::<PartialObjectMeta<PersistentVolumeClaim>>::all(client.clone()),
                watcher::Config::default().any_semantic(),
                pvcs,
                |m: &mut PartialObjectMeta<PersistentVolumeClaim>| {
                    m.metadata.managed_fields = None;
                },
            );
            let done = synced[Child::Pvcs as usize].clone();
            tasks.push(tokio::spawn(drive(
                stream,
                "persistentvolumeclaims",
                done,
                |_| {},
            )));
        }
        if extensions {
            let stream = reflect(
                Api::<NetworkPolicy>::all(client.clone()),
                watcher::Config::default().any_semantic(),
                network_policies,
                |n: &mut NetworkPolicy| n.metadata.managed_fields = None,
            );
            let done = synced[Child::NetworkPolicies as usize].clone();
            tasks.push(tokio::spawn(drive(
                stream,
                "networkpolicies",
                done,
                move |ev| {
                    if let Event::Apply(n) | Event::Delete(n) = &ev
                        && let Some(r) = controller_of_meta(&n.metadata).filter(|r| {
                            r.kind == SandboxTemplate::KIND
                                && group_of(&r.api_version) == EXTENSIONS_GROUP
                        })
                    {
                        waker
                            .template(n.metadata.namespace.as_deref().unwrap_or_default(), &r.name);
                    }
                },
            )));
        }
        tasks
    }
}

/// A Pod or Service changed: reconcile the Sandbox that controls it, or (unowned) the Sandbox
/// with its name, which may adopt it.
fn wake_owner(waker: &Waker, meta: &ObjectMeta) {
    let ns = meta.namespace.as_deref().unwrap_or_default();
    match controller_of_meta(meta) {
        Some(r) if r.kind == Sandbox::KIND && group_of(&r.api_version) == CORE_GROUP => {
            waker.sandbox(ns, &r.name);
        }
        Some(_) => {}
        None => {
            if let Some(name) = &meta.name {
                waker.sandbox(ns, name);
            }
        }
    }
}

/// A reflector stream for `K`: watch all namespaces, apply `modify`, fill `writer`, back off
/// on errors.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: StoreWriter<K>,
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

/// Polls one reflector stream forever, handing each event to `on_event`; marks the cache
/// synced at its first complete list. Watch errors are logged (the stream backs off and
/// relists by itself).
async fn drive<K, S>(
    stream: S,
    resource: &'static str,
    synced: watch::Sender<bool>,
    mut on_event: impl FnMut(Event<K>),
) where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(ev) => {
                if matches!(ev, Event::InitDone) {
                    synced.send_replace(true);
                    tracing::debug!(resource, "cache listed");
                }
                on_event(ev);
            }
            Err(e) => tracing::warn!(resource, error = %e, "watch failed; retrying with backoff"),
        }
    }
}

impl KubeWorkloads {
    /// The Pod as the egress proxy needs it, when a SandboxPolicy governs its Sandbox and the
    /// controller knows the proxy; `None` to create it as planned.
    async fn governed(&self, sb: &Sandbox, pod: &Pod) -> Result<Option<Pod>, WriteError> {
        let Some(proxy) = &self.egress_proxy else {
            // Without a proxy, a Sandbox that asks for a policy itself would reach the network
            // unrestricted: refuse it rather than pretend. (A template's policy is enforced by
            // its NetworkPolicy, which then admits only the proxy.)
            if let Some(name) = sb
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(paddock_api::policy::POLICY_ANNOTATION))
            {
                return Err(WriteError::new(
                    FailureKind::Invalid,
                    format!(
                        "the Sandbox names SandboxPolicy {name:?}, but the controller runs without --egress-proxy, so nothing would enforce it: deploy the egress proxy (deploy/egress) or remove the paddock.dev/policy annotation"
                    ),
                ));
            }
            return Ok(None);
        };
        let egress_failed =
            |message: String| WriteError::new(FailureKind::Other, format!("egress: {message}"));
        let Some(placeholders) = crate::egress::governed_env(&self.client, sb)
            .await
            .map_err(|e| egress_failed(e.to_string()))?
        else {
            return Ok(None);
        };
        let address = proxy.address(&self.client).await.map_err(egress_failed)?;
        let mut governed = pod.clone();
        crate::egress::govern_pod(&mut governed, &address, &placeholders);
        Ok(Some(governed))
    }
}

fn missing(what: &str, name: &str) -> WriteError {
    WriteError::new(
        FailureKind::NotFound,
        format!("{what} {name:?} is no longer in the cache"),
    )
}

impl Workloads for KubeWorkloads {
    fn observe(&self, sb: &Sandbox) -> Children {
        let ns = sb.metadata.namespace.as_deref().unwrap_or_default();
        let name = sb.metadata.name.as_deref().unwrap_or_default();
        let caches = &self.caches;
        let mut names: BTreeSet<String> = caches
            .pod_index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_hash
            .get(&format!("{ns}/{}", name_hash(name)))
            .cloned()
            .unwrap_or_default();
        let tracked = sb
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(POD_NAME))
            .filter(|v| !v.is_empty())
            .map_or(name, String::as_str);
        names.insert(tracked.to_owned());
        let pods: Vec<PodObservation> = names
            .iter()
            .filter_map(|n| get(&caches.pods, ns, n))
            .map(|p| PodObservation::from_pod(&p))
            .collect();
        let service = get(&caches.services, ns, name).map(|s| ServiceObservation::from_service(&s));
        let pvcs = sb
            .spec
            .blueprint
            .volume_claim_templates
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|vct| get(&caches.pvcs, ns, &pvc_name(vct, name)))
            .map(|m| PvcObservation {
                name: m.metadata.name.clone().unwrap_or_default(),
                owner_references: m.metadata.owner_references.clone().unwrap_or_default(),
                labels: m.metadata.labels.clone().unwrap_or_default(),
            })
            .collect();
        Children {
            pods: Ok(pods),
            service: Ok(service),
            pvcs: Ok(pvcs),
        }
    }

    fn apply<'a>(
        &'a self,
        sb: &'a Sandbox,
        action: &'a SandboxAction,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            let ns = sb.metadata.namespace.as_deref().unwrap_or_default();
            let w = &self.writer;
            match action {
                SandboxAction::CreatePvc { pvc } => w.create(ns, pvc.as_ref()).await.map(drop),
                SandboxAction::AdoptPvc { name, patch } => w
                    .merge_patch::<PersistentVolumeClaim>(ns, name, &patch.to_merge_patch())
                    .await
                    .map(drop),
                SandboxAction::CreatePod { pod } => match self.governed(sb, pod).await? {
                    Some(governed) => w.create(ns, &governed).await.map(drop),
                    None => w.create(ns, pod.as_ref()).await.map(drop),
                },
                SandboxAction::PatchPod { name, patch } => w
                    .merge_patch::<Pod>(ns, name, &patch.to_merge_patch())
                    .await
                    .map(drop),
                SandboxAction::DeletePod { target } => {
                    ignore_gone(w.delete::<Pod>(ns, target, None).await)
                }
                SandboxAction::CreateService { service } => {
                    w.create(ns, service.as_ref()).await.map(drop)
                }
                SandboxAction::AdoptService { name, edit } => {
                    let current = get(&self.caches.services, ns, name)
                        .ok_or_else(|| missing("service", name))?;
                    let mut updated = (*current).clone();
                    edit.apply(&mut updated);
                    updated
                        .metadata
                        .resource_version
                        .clone_from(&edit.resource_version);
                    w.replace::<Service>(ns, name, &updated).await.map(drop)
                }
                SandboxAction::PatchService { name, edit } => {
                    let old_selector = get(&self.caches.services, ns, name)
                        .and_then(|s| s.spec.as_ref().and_then(|sp| sp.selector.clone()))
                        .unwrap_or_default();
                    w.merge_patch::<Service>(ns, name, &edit.to_merge_patch(&old_selector))
                        .await
                        .map(drop)
                }
                SandboxAction::DeleteService { target } => {
                    ignore_gone(w.delete::<Service>(ns, target, None).await)
                }
                other => Err(WriteError::new(
                    FailureKind::Other,
                    format!("{other:?} is not a child action"),
                )),
            }
        })
    }

    fn network_policy(&self, namespace: &str, name: &str) -> Option<NetworkPolicy> {
        let mut created = self
            .created_policies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (namespace.to_owned(), name.to_owned());
        match get(&self.caches.network_policies, namespace, name) {
            Some(p) => {
                created.remove(&key);
                Some((*p).clone())
            }
            None => created.get(&key).cloned(),
        }
    }

    fn write_network_policy<'a>(
        &'a self,
        namespace: &'a str,
        write: PolicyWrite<'a>,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            let w = &self.writer;
            match write {
                PolicyWrite::Create(np) => match w.create(namespace, np).await {
                    Ok(created) => {
                        let name = created.metadata.name.clone().unwrap_or_default();
                        self.created_policies
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert((namespace.to_owned(), name), created);
                        Ok(())
                    }
                    // Made by an earlier reconcile (or replica) whose create the watch has not
                    // delivered yet: the watch brings it and wakes the template again.
                    Err(e) if e.kind == FailureKind::AlreadyExists => Ok(()),
                    Err(e) => Err(e),
                },
                PolicyWrite::Update {
                    name,
                    resource_version,
                    spec,
                } => {
                    let current = get(&self.caches.network_policies, namespace, name)
                        .ok_or_else(|| missing("network policy", name))?;
                    let mut updated = (*current).clone();
                    updated.spec = Some(spec.clone());
                    updated.metadata.resource_version = resource_version.map(str::to_owned);
                    w.replace::<NetworkPolicy>(namespace, name, &updated)
                        .await
                        .map(drop)
                }
                PolicyWrite::Delete(target) => {
                    self.created_policies
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&(namespace.to_owned(), target.name.clone()));
                    ignore_gone(w.delete::<NetworkPolicy>(namespace, target, None).await)
                }
            }
        })
    }

    fn synced(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for flag in &self.caches.synced {
                let mut rx = flag.subscribe();
                // The sender lives as long as `self`: this only returns once the flag is set.
                let _ = rx.wait_for(|listed| *listed).await;
            }
        })
    }
}

/// A delete of a child already gone counts as done.
fn ignore_gone(result: Result<(), WriteError>) -> Result<(), WriteError> {
    match result {
        Err(e) if e.kind == FailureKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerStatus, PodIP};
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
        let before = PodObservation::from_pod(&running(p.clone()));
        p = running(p);
        trim_pod(&mut p);
        let spec = p.spec.clone().expect("spec kept for nodeName");
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert!(spec.containers.is_empty());
        assert_eq!(p.metadata.finalizers, None);
        assert_eq!(
            PodObservation::from_pod(&p),
            before,
            "the Sandbox loop sees the same pod"
        );
        let status = p.status.expect("status");
        assert!(status.container_statuses.is_none() && status.host_ip.is_none());
        assert_eq!(status.conditions.map(|c| c.len()), Some(2));
    }

    /// A pod as the kubelet reports it once running.
    fn running(mut p: Pod) -> Pod {
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            host_ip: Some("192.0.2.10".into()),
            pod_ips: Some(vec![PodIP {
                ip: "10.0.0.9".into(),
            }]),
            conditions: Some(
                [
                    ("Ready", "True"),
                    ("PodScheduled", "True"),
                    ("Initialized", "True"),
                ]
                .into_iter()
                .map(|(t, s)| PodCondition {
                    type_: t.into(),
                    status: s.into(),
                    reason: Some("Because".into()),
                    ..PodCondition::default()
                })
                .collect(),
            ),
            container_statuses: Some(vec![ContainerStatus {
                name: "c".into(),
                image: "img".into(),
                image_id: "sha256:0f".into(),
                ready: true,
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        });
        p
    }

    #[test]
    fn the_pod_index_follows_label_changes_and_relists() {
        let mut idx = PodIndex::default();
        let names = |idx: &PodIndex, key: &str| -> Vec<String> {
            idx.by_hash
                .get(key)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        idx.apply(&Event::Apply(pod("a", "h1")));
        idx.apply(&Event::Apply(pod("b", "h1")));
        assert_eq!(names(&idx, "ns/h1"), ["a", "b"]);
        idx.apply(&Event::Apply(pod("a", "h2")));
        assert_eq!(names(&idx, "ns/h1"), ["b"]);
        idx.apply(&Event::Delete(pod("b", "h1")));
        assert!(names(&idx, "ns/h1").is_empty());
        idx.apply(&Event::Init);
        idx.apply(&Event::InitApply(pod("c", "h3")));
        assert_eq!(
            names(&idx, "ns/h2"),
            ["a"],
            "old state served until InitDone"
        );
        idx.apply(&Event::InitDone);
        assert!(names(&idx, "ns/h2").is_empty());
        assert_eq!(names(&idx, "ns/h3"), ["c"]);
    }
}
