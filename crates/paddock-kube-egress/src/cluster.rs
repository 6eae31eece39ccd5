//! The cluster's view the in-cluster proxy needs, kept by watches: sandbox Pods (an address
//! tells which Sandbox a connection comes from), Sandboxes, templates, claims and
//! SandboxPolicies (which rules govern it). [`ClusterEgress::refresh`] turns them into one
//! [`SandboxEgress`] per Sandbox with a policy, keyed by its Pod's address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use paddock_api::policy::{POLICY_GROUP, POLICY_KIND, POLICY_PLURAL, POLICY_VERSION};
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate};
use paddock_egress::{EgressProxy, Placeholders, SandboxCa, SandboxEgress};
use paddock_policy::{EgressRules, governing_policies, governing_rules};
use serde_json::Value;
use tokio::task::JoinHandle;

/// Which namespaces the proxy watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace.
    All,
    /// One namespace.
    Namespace(String),
}

fn api<K>(client: &Client, scope: &Scope) -> kube::Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Scope::All => kube::Api::all(client.clone()),
        Scope::Namespace(ns) => kube::Api::namespaced(client.clone(), ns),
    }
}

/// The ApiResource of SandboxPolicy (no Rust resource type: it is read as JSON).
pub fn policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(POLICY_GROUP, POLICY_VERSION, POLICY_KIND),
        POLICY_PLURAL,
    )
}

fn spawn_watch<K>(api: kube::Api<K>, dyntype: K::DynamicType) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
{
    let writer = reflector::store::Writer::new(dyntype);
    let store = writer.as_reader();
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::debug!(error = %e, "egress watch failed; relisting");
            }
        }
    });
    (store, task)
}

/// Everything the proxy watches, and the sandboxes it serves.
#[derive(Debug)]
pub struct ClusterEgress {
    proxy: EgressProxy,
    ca_key_pem: String,
    pods: Store<Pod>,
    sandboxes: Store<Sandbox>,
    templates: Store<SandboxTemplate>,
    claims: Store<SandboxClaim>,
    policies: Store<DynamicObject>,
    /// By Sandbox uid: its egress state (rules updated in place, record kept).
    served: Mutex<HashMap<String, Arc<SandboxEgress>>>,
    by_address: RwLock<HashMap<IpAddr, Arc<SandboxEgress>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ClusterEgress {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl ClusterEgress {
    /// Starts the watches.
    pub fn start(client: &Client, scope: &Scope, proxy: EgressProxy, ca_key_pem: String) -> Self {
        let (pods, t1) = spawn_watch(api::<Pod>(client, scope), ());
        let (sandboxes, t2) = spawn_watch(api::<Sandbox>(client, scope), ());
        let (templates, t3) = spawn_watch(api::<SandboxTemplate>(client, scope), ());
        let (claims, t4) = spawn_watch(api::<SandboxClaim>(client, scope), ());
        let resource = policy_resource();
        let policy_api: kube::Api<DynamicObject> = match scope {
            Scope::All => kube::Api::all_with(client.clone(), &resource),
            Scope::Namespace(ns) => kube::Api::namespaced_with(client.clone(), ns, &resource),
        };
        let (policies, t5) = spawn_watch(policy_api, resource);
        Self {
            proxy,
            ca_key_pem,
            pods,
            sandboxes,
            templates,
            claims,
            policies,
            served: Mutex::new(HashMap::new()),
            by_address: RwLock::new(HashMap::new()),
            tasks: vec![t1, t2, t3, t4, t5],
        }
    }

    /// Waits until every watch has listed once.
    pub async fn ready(&self) {
        let _ = self.pods.wait_until_ready().await;
        let _ = self.sandboxes.wait_until_ready().await;
        let _ = self.templates.wait_until_ready().await;
        let _ = self.claims.wait_until_ready().await;
        let _ = self.policies.wait_until_ready().await;
    }

    /// The sandbox a connection from `address` comes from.
    pub fn identify(&self, address: IpAddr) -> Option<Arc<SandboxEgress>> {
        self.by_address
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&address)
            .cloned()
    }

    /// The namespaces that have Sandboxes governed by a policy: each needs the CA ConfigMap
    /// before their Pods can start (the Pods mount it), so Pods are not waited for.
    pub fn namespaces(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .sandboxes
            .state()
            .iter()
            .filter(|s| self.governed(s))
            .filter_map(|s| s.metadata.namespace.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The Sandbox as JSON with its template and claim (when cached), and its namespace.
    fn around(&self, sandbox: &Sandbox) -> Option<(String, Value, Option<Value>, Option<Value>)> {
        let ns = sandbox.metadata.namespace.clone().unwrap_or_default();
        let value = serde_json::to_value(sandbox).ok()?;
        let template = paddock_policy::governs::template_of(&value)
            .and_then(|t| self.templates.get(&ObjectRef::new(t).within(&ns)))
            .and_then(|t| serde_json::to_value(&*t).ok());
        let claim = paddock_policy::governs::claim_of(&value)
            .and_then(|c| self.claims.get(&ObjectRef::new(c).within(&ns)))
            .and_then(|c| serde_json::to_value(&*c).ok());
        Some((ns, value, template, claim))
    }

    /// Whether any policy governs the Sandbox (without looking the policies up).
    fn governed(&self, sandbox: &Sandbox) -> bool {
        self.around(sandbox)
            .is_some_and(|(_, value, template, claim)| {
                !governing_policies(&value, template.as_ref(), claim.as_ref()).is_empty()
            })
    }

    fn rules_of(&self, sandbox: &Sandbox) -> Option<EgressRules> {
        let (ns, value, template, claim) = self.around(sandbox)?;
        let refs = governing_policies(&value, template.as_ref(), claim.as_ref());
        if refs.is_empty() {
            return None;
        }
        let resource = policy_resource();
        let found: Vec<_> = refs
            .into_iter()
            .map(|r| {
                let policy = self
                    .policies
                    .get(&ObjectRef::new_with(&r.name, resource.clone()).within(&ns))
                    .and_then(|p| serde_json::to_value(&*p).ok());
                (r, policy)
            })
            .collect();
        match governing_rules(&ns, &found) {
            Ok(rules) => rules,
            Err(e) => {
                // Fail closed: a sandbox whose policy is missing or broken reaches nothing.
                tracing::warn!(sandbox = %format!("{ns}/{}", sandbox.metadata.name.as_deref().unwrap_or("")), error = %e, "egress policy unavailable; denying all egress");
                Some(EgressRules::deny_all())
            }
        }
    }

    /// Recomputes which addresses belong to which sandbox and under which rules.
    pub fn refresh(&self) {
        let mut by_address = HashMap::new();
        let mut live = Vec::new();
        for pod in self.pods.state() {
            let Some(ip) = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let Some(owner) = pod.metadata.owner_references.as_ref().and_then(|o| {
                o.iter()
                    .find(|r| r.kind == "Sandbox" && r.controller == Some(true))
            }) else {
                continue;
            };
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let Some(sandbox) = self.sandboxes.get(&ObjectRef::new(&owner.name).within(&ns)) else {
                continue;
            };
            let Some(uid) = sandbox.metadata.uid.clone().filter(|u| *u == owner.uid) else {
                continue;
            };
            let Some(rules) = self.rules_of(&sandbox) else {
                continue;
            };
            let key = format!("{ns}/{}", owner.name);
            let egress = {
                let mut served = self
                    .served
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match served.get(&uid) {
                    Some(existing) => {
                        existing.set_rules(rules);
                        Arc::clone(existing)
                    }
                    None => {
                        let ca = SandboxCa::from_key_pem("cluster", &self.ca_key_pem).ok();
                        let placeholders = Placeholders::derived(&uid, rules.injections());
                        let created =
                            SandboxEgress::with_state(key.clone(), rules, ca, placeholders);
                        self.proxy.adopt(&key, Arc::clone(&created));
                        served.insert(uid.clone(), Arc::clone(&created));
                        created
                    }
                }
            };
            live.push(uid);
            by_address.insert(ip, egress);
        }
        {
            let mut served = self
                .served
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let gone: Vec<String> = served
                .keys()
                .filter(|u| !live.contains(u))
                .cloned()
                .collect();
            for uid in gone {
                if let Some(e) = served.remove(&uid) {
                    self.proxy.detach(e.name());
                }
            }
        }
        *self
            .by_address
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = by_address;
    }
}
