//! A stand-in cluster around the in-memory API server, for claim scenarios and benchmarks: a
//! kubelet that runs every pod at once, the objects a warm claim needs, and a watcher that
//! notes when each claim turns Ready. Its own requests are not recorded, so a recording server
//! logs only what the controller under test asks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::FakeApiServer;

/// `<group>/<plural>` of the Sandbox kinds, as the fake server keys them.
pub const SANDBOXES: &str = "agents.x-k8s.io/sandboxes";
/// Pods.
pub const PODS: &str = "/pods";
/// SandboxClaims.
pub const CLAIMS: &str = "extensions.agents.x-k8s.io/sandboxclaims";
/// SandboxWarmPools.
pub const POOLS: &str = "extensions.agents.x-k8s.io/sandboxwarmpools";
/// SandboxTemplates.
pub const TEMPLATES: &str = "extensions.agents.x-k8s.io/sandboxtemplates";

/// A SandboxTemplate with one container.
pub fn template(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podTemplate": {"spec": {"containers": [
            {"name": "main", "image": "registry.example.com/python-runtime:1.0", "ports": [{"containerPort": 8888}]}
        ]}}}
    })
}

/// A SandboxWarmPool of `replicas` members of `template`.
pub fn pool(namespace: &str, name: &str, template: &str, replicas: u32) -> Value {
    json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxWarmPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "sandboxTemplateRef": {"name": template}}
    })
}

/// A SandboxClaim on `pool`, as the Python SDK writes it.
pub fn claim(namespace: &str, name: &str, pool: &str) -> Value {
    json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"agents.x-k8s.io/created-by": "python-client"}},
        "spec": {"warmPoolRef": {"name": pool}}
    })
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: format!("{group}/{version}"),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

/// The claims API on `api`'s unrecorded client.
pub fn claims_api(api: &FakeApiServer, namespace: &str) -> Api<DynamicObject> {
    let ar = resource(
        "extensions.agents.x-k8s.io",
        "v1beta1",
        "SandboxClaim",
        "sandboxclaims",
    );
    Api::namespaced_with(api.unrecorded().client(), namespace, &ar)
}

/// Creates a claim through the API (paying the write's modelled cost).
///
/// # Panics
/// When the API server refuses it.
pub async fn create_claim(api: &FakeApiServer, namespace: &str, name: &str, pool_name: &str) {
    let obj: DynamicObject =
        serde_json::from_value(claim(namespace, name, pool_name)).expect("a claim object");
    claims_api(api, namespace)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating claim {name}: {e}"));
}

fn is_ready(obj: &Value) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The pool's `status.readyReplicas` (0 when unset).
pub fn pool_ready_replicas(api: &FakeApiServer, namespace: &str, name: &str) -> i64 {
    api.get(POOLS, namespace, name)
        .and_then(|p| p.pointer("/status/readyReplicas").and_then(Value::as_i64))
        .unwrap_or(0)
}

/// Polls `f` every 2 ms until it gives a value.
///
/// # Panics
/// After `timeout`, naming `what`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the pool has `replicas` Ready members, both in its status and in fact.
pub async fn wait_pool_full(api: &FakeApiServer, namespace: &str, name: &str, replicas: i64) {
    wait_for(
        &format!("pool {name} to hold {replicas} Ready members"),
        Duration::from_secs(30),
        || {
            let members = api
                .list(SANDBOXES)
                .into_iter()
                .filter(|s| s["metadata"]["namespace"] == namespace)
                .filter(|s| {
                    s.pointer("/metadata/ownerReferences/0/kind") == Some(&json!("SandboxWarmPool"))
                        && s.pointer("/metadata/ownerReferences/0/name") == Some(&json!(name))
                })
                .filter(is_ready)
                .count();
            (pool_ready_replicas(api, namespace, name) == replicas
                && i64::try_from(members).ok() == Some(replicas))
            .then_some(())
        },
    )
    .await;
}

/// Waits until no request has reached the (recording) server for `quiet`.
pub async fn wait_quiet(api: &FakeApiServer, quiet: Duration) {
    let mut seen = api.request_count();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let n = api.request_count();
        if n != seen {
            seen = n;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

/// Plays the kubelet: every pod that is not running yet is marked Running and Ready with an
/// address at once (one status write each). Stops when the task is aborted.
pub fn spawn_kubelet(api: &FakeApiServer) -> JoinHandle<()> {
    let client = api.unrecorded().client();
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::all(client.clone());
        let mut next_ip: u32 = 1;
        let mut stream = watcher(pods, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let pods = match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => vec![p],
                _ => continue,
            };
            for pod in pods {
                let running = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .is_some_and(|p| p == "Running");
                if running || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
                    continue;
                };
                let ip = format!(
                    "10.{}.{}.{}",
                    next_ip >> 16,
                    (next_ip >> 8) & 255,
                    next_ip & 255
                );
                next_ip += 1;
                let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                    "conditions": [{"type": "PodScheduled", "status": "True"},
                                   {"type": "Ready", "status": "True"}]}});
                let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                let _ = api
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        }
    })
}

/// When each claim was first seen with `Ready=True` by a watcher.
#[derive(Clone, Debug)]
pub struct ReadyClaims {
    seen: Arc<Mutex<BTreeMap<String, Instant>>>,
    changed: Arc<Notify>,
    task: Arc<JoinHandle<()>>,
}

impl Drop for ReadyClaims {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl ReadyClaims {
    /// Starts watching the claims of every namespace.
    pub fn watch(api: &FakeApiServer) -> Self {
        let seen: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
        let changed = Arc::new(Notify::new());
        let ar = resource(
            "extensions.agents.x-k8s.io",
            "v1beta1",
            "SandboxClaim",
            "sandboxclaims",
        );
        let claims: Api<DynamicObject> = Api::all_with(api.unrecorded().client(), &ar);
        let (s, c) = (seen.clone(), changed.clone());
        let task = tokio::spawn(async move {
            let mut stream = watcher(claims, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event else {
                    continue;
                };
                let Ok(v) = serde_json::to_value(&o) else {
                    continue;
                };
                if is_ready(&v)
                    && let Some(name) = o.metadata.name.clone()
                {
                    let ns = o.metadata.namespace.clone().unwrap_or_default();
                    s.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .entry(format!("{ns}/{name}"))
                        .or_insert_with(Instant::now);
                    c.notify_waiters();
                }
            }
        });
        Self {
            seen,
            changed,
            task: Arc::new(task),
        }
    }

    fn get(&self, key: &str) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .copied()
    }

    /// When claim `namespace/name` was first seen Ready, waiting up to `timeout` for it.
    ///
    /// # Panics
    /// After `timeout`.
    pub async fn ready_at(&self, namespace: &str, name: &str, timeout: Duration) -> Instant {
        let key = format!("{namespace}/{name}");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(at) = self.get(&key) {
                return at;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("claim {key} not Ready within {timeout:?}");
            }
        }
    }
}

/// Checks what a burst of claims must leave behind: every claim Ready and bound (by its
/// status) to a Sandbox it controls, no Sandbox bound to two claims, and no claim controlling
/// a second live Sandbox. Returns how many were adopted warm (bound to a Sandbox not named like
/// the claim).
///
/// # Errors
/// The first broken rule, worded for a test failure.
pub fn check_claims(
    api: &FakeApiServer,
    namespace: &str,
    claims: &[String],
) -> Result<usize, String> {
    let sandboxes: Vec<Value> = api
        .list(SANDBOXES)
        .into_iter()
        .filter(|s| s["metadata"]["namespace"] == namespace)
        .filter(|s| s.pointer("/metadata/deletionTimestamp").is_none())
        .collect();
    let mut bound = BTreeMap::new();
    let mut warm = 0;
    for name in claims {
        let claim = api
            .get(CLAIMS, namespace, name)
            .ok_or_else(|| format!("claim {name} is gone"))?;
        if !is_ready(&claim) {
            return Err(format!("claim {name} is not Ready: {}", claim["status"]));
        }
        let uid = claim["metadata"]["uid"].clone();
        let sb = claim
            .pointer("/status/sandbox/name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("claim {name} names no Sandbox"))?;
        if let Some(other) = bound.insert(sb.to_owned(), name.clone()) {
            return Err(format!("Sandbox {sb} is bound to both {other} and {name}"));
        }
        let controlled: Vec<&str> = sandboxes
            .iter()
            .filter(|s| {
                s.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r["controller"] == true && r["uid"] == uid)
                    })
            })
            .filter_map(|s| s["metadata"]["name"].as_str())
            .collect();
        if controlled != [sb] {
            return Err(format!(
                "claim {name} is bound to {sb} but controls {controlled:?}"
            ));
        }
        if sb != name {
            warm += 1;
        }
    }
    Ok(warm)
}

/// A kubeconfig in `dir` for an API server served over plain HTTP at `addr` (see
/// [`FakeApiServer::serve`]), with `namespace` as its default when given.
///
/// # Panics
/// When the file cannot be written.
pub fn write_kubeconfig(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    namespace: Option<&str>,
) -> std::path::PathBuf {
    let namespace = namespace
        .map(|ns| format!("    namespace: {ns}\n"))
        .unwrap_or_default();
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: me\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: me\n{namespace}\
             current-context: fake\n"
        ),
    )
    .expect("kubeconfig");
    path
}
