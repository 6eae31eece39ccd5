//! The gateway's [`Backend`] on the embedded engine: objects in the local store, sandboxes'
//! agents on unix sockets of this host.

use std::sync::Arc;

use paddock_api::kinds::Kind;
use paddock_api::stored::Object;
use paddock_api::v1beta1::Sandbox;
use paddock_backend::{
    ApiError, Backend, BoxFuture, ByteStream, Code, EgressFeed, EgressStream, Endpoint,
    EventStream, ObjectEvent, ObjectList, ObjectWatch, Part, Propagation, Target, WatchEventType,
};
use paddock_control::{Core, Key};
use paddock_store::{
    DeleteOptions, LabelSelector, ListOptions, ObjectStore, PropagationPolicy, WatchOptions,
    WatchStart,
};
use serde_json::{Value, json};

use crate::default_pools::{self, DefaultPoolSettings, Demand};
use crate::egress::POLICIES;
use crate::resources::resource;
use crate::store_errors::api_error;
use crate::workloads::{LocalWorkloads, Phase};

/// The embedded backend.
#[derive(Debug)]
pub struct EngineBackend {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) core: Arc<Core>,
    pub(crate) workloads: Arc<LocalWorkloads>,
    pub(crate) info: Value,
    pub(crate) default_pools: DefaultPoolSettings,
    pub(crate) demand: Demand,
    pub(crate) audit: Arc<crate::audit::AuditLogs>,
}

/// Decodes what the store returned (it only holds what the gateway validated).
fn decode(kind: Kind, value: Value) -> Result<Object, ApiError> {
    Object::from_value(kind, value)
        .map_err(|e| ApiError::internal(format!("a stored {kind} does not decode: {e}")))
}

/// How often a followed log is checked for more output.
const LOG_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Reads a Sandbox's main log from the start; with `follow`, keeps reading while the workload
/// lives, and ends once it has ended and everything it wrote was sent.
fn main_log_stream(workloads: Arc<LocalWorkloads>, key: Key, follow: bool) -> ByteStream {
    use tokio::io::AsyncReadExt as _;
    struct Reader {
        workloads: Arc<LocalWorkloads>,
        key: Key,
        follow: bool,
        file: Option<tokio::fs::File>,
        done: bool,
    }
    let start = Reader {
        workloads,
        key,
        follow,
        file: None,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(start, |mut r| async move {
        loop {
            if r.done {
                return None;
            }
            // Whether it lived before the read: a workload that ended then wrote nothing since.
            let (path, live) = r.workloads.main_log(&r.key)?;
            let live = live && r.follow;
            if r.file.is_none() {
                match tokio::fs::File::open(&path).await {
                    Ok(f) => r.file = Some(f),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        r.done = true;
                        return Some((Err(e), r));
                    }
                }
            }
            if let Some(file) = r.file.as_mut() {
                let mut buf = vec![0u8; 64 * 1024];
                match file.read(&mut buf).await {
                    Ok(0) => {}
                    Ok(n) => {
                        buf.truncate(n);
                        return Some((Ok(bytes::Bytes::from(buf)), r));
                    }
                    Err(e) => {
                        r.done = true;
                        return Some((Err(e), r));
                    }
                }
            }
            if !live {
                return None;
            }
            tokio::time::sleep(LOG_POLL).await;
        }
    }))
}

fn selector(s: &str) -> Result<LabelSelector, ApiError> {
    LabelSelector::parse(s).map_err(|e| ApiError::invalid(format!("labelSelector: {e}")))
}

impl Backend for EngineBackend {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Object, ApiError>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Box::pin(async move {
            let value = self
                .store
                .get(resource(kind), &namespace, &name)
                .await
                .map_err(api_error)?;
            decode(kind, value)
        })
    }

    fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> BoxFuture<'_, Result<ObjectList, ApiError>> {
        let options = selector(label_selector).map(|s| ListOptions {
            namespace: namespace.map(str::to_owned),
            label_selector: s,
            ..ListOptions::default()
        });
        Box::pin(async move {
            let list = self
                .store
                .list(resource(kind), options?)
                .await
                .map_err(api_error)?;
            Ok(ObjectList {
                items: list
                    .items
                    .into_iter()
                    .map(|v| decode(kind, v))
                    .collect::<Result<_, _>>()?,
                resource_version: list.resource_version,
            })
        })
    }

    fn create(&self, object: Object) -> BoxFuture<'_, Result<Object, ApiError>> {
        Box::pin(async move {
            let kind = object.kind();
            let created = self
                .store
                .create(resource(kind), object.to_value())
                .await
                .map_err(api_error)?;
            let created = decode(kind, created)?;
            self.core.took_in(created.clone());
            Ok(created)
        })
    }

    fn update(&self, object: Object, part: Part) -> BoxFuture<'_, Result<Object, ApiError>> {
        Box::pin(async move {
            let kind = object.kind();
            let value = object.to_value();
            let updated = match part {
                Part::Main => self.store.update(resource(kind), value).await,
                Part::Status => self.store.update_status(resource(kind), value).await,
            }
            .map_err(api_error)?;
            let updated = decode(kind, updated)?;
            self.core.took_in(updated.clone());
            Ok(updated)
        })
    }

    fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> BoxFuture<'_, Result<Object, ApiError>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        let policy = match propagation {
            Propagation::Background => PropagationPolicy::Background,
            Propagation::Foreground => PropagationPolicy::Foreground,
            Propagation::Orphan => PropagationPolicy::Orphan,
        };
        Box::pin(async move {
            let deleted = self
                .store
                .delete(
                    resource(kind),
                    &namespace,
                    &name,
                    DeleteOptions::propagation(policy),
                )
                .await
                .map_err(api_error)?;
            decode(kind, deleted.into_object())
        })
    }

    fn watch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: &str,
        resource_version: Option<String>,
    ) -> BoxFuture<'_, Result<ObjectWatch, ApiError>> {
        let options = selector(label_selector).map(|s| WatchOptions {
            namespace: namespace.map(str::to_owned),
            label_selector: s,
            start: resource_version.map_or(WatchStart::InitialState, WatchStart::After),
            ..WatchOptions::default()
        });
        Box::pin(async move {
            let stream = self
                .store
                .watch(resource(kind), options?)
                .await
                .map_err(api_error)?;
            let events = futures_util::stream::unfold(stream, move |mut stream| async move {
                let next = stream.next().await?;
                let item = next.map_err(api_error).and_then(|e| {
                    Ok(ObjectEvent {
                        event_type: match e.event_type {
                            paddock_store::WatchEventType::Added => WatchEventType::Added,
                            paddock_store::WatchEventType::Modified => WatchEventType::Modified,
                            paddock_store::WatchEventType::Deleted => WatchEventType::Deleted,
                        },
                        object: decode(kind, e.object)?,
                    })
                });
                Some((item, stream))
            });
            Ok(Box::pin(events) as ObjectWatch)
        })
    }

    fn target(
        &self,
        namespace: &str,
        sandbox: &str,
        port: Option<u16>,
    ) -> BoxFuture<'_, Result<Target, ApiError>> {
        let key = Key::new(namespace, sandbox);
        Box::pin(async move {
            if self
                .core
                .cache()
                .get::<Sandbox>(&key.namespace, &key.name)
                .is_none()
            {
                self.store
                    .get(resource(Kind::Sandbox), &key.namespace, &key.name)
                    .await
                    .map_err(api_error)?;
            }
            match self.workloads.socket(&key) {
                Ok(socket) => Ok(Target {
                    endpoint: Endpoint::Unix(socket),
                    path_prefix: port.map(|p| format!("/v1/ports/{p}")).unwrap_or_default(),
                }),
                Err((phase, error)) => {
                    let why = match (phase, error) {
                        (_, Some(e)) => format!("its workload failed to start: {e}"),
                        (Phase::Pending, None) => {
                            "it is not running (starting or suspended)".to_owned()
                        }
                        (Phase::Succeeded | Phase::Failed, None) => {
                            "its workload has ended".to_owned()
                        }
                        (Phase::Running, None) => "it is stopping".to_owned(),
                    };
                    Err(ApiError::new(
                        Code::SandboxNotReady,
                        format!("sandbox {:?} cannot take requests: {why}", key.name),
                    ))
                }
            }
        })
    }

    fn logs(
        &self,
        namespace: &str,
        sandbox: &str,
        follow: bool,
    ) -> BoxFuture<'_, Result<ByteStream, ApiError>> {
        let key = Key::new(namespace, sandbox);
        Box::pin(async move {
            if self.workloads.main_log(&key).is_none() {
                return Err(ApiError::new(
                    Code::SandboxNotReady,
                    format!(
                        "sandbox {:?} has no workload on this host (suspended, or not started yet), so no log",
                        key.name
                    ),
                ));
            }
            Ok(main_log_stream(Arc::clone(&self.workloads), key, follow))
        })
    }

    fn termination(
        &self,
        namespace: &str,
        sandbox: &str,
    ) -> BoxFuture<'_, Result<Option<paddock_backend::Termination>, ApiError>> {
        let found = self.workloads.termination(&Key::new(namespace, sandbox));
        Box::pin(async move { Ok(found) })
    }

    fn default_pool(&self, sandbox: &Sandbox) -> BoxFuture<'_, Result<Option<String>, ApiError>> {
        let key = default_pools::pool_key(sandbox);
        let namespace = sandbox
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let sandbox = sandbox.clone();
        Box::pin(async move {
            let Some((runtime, image)) = key.filter(|_| self.default_pools.size > 0) else {
                return Ok(None);
            };
            let name = paddock_api::names::default_pool_name(runtime, &image);
            match self.get(Kind::SandboxWarmPool, &namespace, &name).await {
                Ok(Object::SandboxWarmPool(pool)) => {
                    if !is_default_pool(&pool.metadata) {
                        return Ok(None);
                    }
                    let ready = pool
                        .status
                        .as_ref()
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0);
                    let replicas = default_pools::grown(&self.default_pools, &pool, ready);
                    if replicas != pool.spec.effective_replicas() {
                        self.scale_default_pool(pool, replicas).await;
                    }
                    self.demand.claimed(&namespace, &name);
                    Ok(Some(name))
                }
                Ok(_) => Ok(None),
                Err(e) if e.code == Code::NotFound => {
                    // First use: this sandbox starts itself; the pool serves the next ones.
                    if let Err(e) = self
                        .ensure_default_pool(&sandbox, &namespace, runtime, &image)
                        .await
                    {
                        tracing::warn!(pool = %name, error = %e.message, "cannot make a default pool");
                    }
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        })
    }

    fn default_runtime(&self) -> Option<&'static str> {
        Some("gvisor")
    }

    fn info(&self) -> Value {
        let mut info = self.info.clone();
        // What the default pools hold now, and the memory their spare sandboxes take.
        let mut pools: std::collections::BTreeMap<(String, String), (u64, u64, u64)> =
            Default::default();
        for (namespace, pool, running, memory) in self.workloads.default_pool_members() {
            let entry = pools.entry((namespace, pool)).or_default();
            entry.0 += 1;
            entry.1 += u64::from(running);
            entry.2 += memory.unwrap_or(0);
        }
        info["defaultPools"] = json!({
            "size": self.default_pools.size,
            "max": self.default_pools.max,
            "pools": pools
                .into_iter()
                .map(|((namespace, name), (members, ready, memory))| json!({
                    "namespace": namespace,
                    "name": name,
                    "members": members,
                    "ready": ready,
                    "memoryBytes": memory,
                }))
                .collect::<Vec<_>>(),
        });
        info
    }

    fn permissions(
        &self,
        namespace: &str,
        sandbox: &str,
    ) -> BoxFuture<'_, Result<paddock_policy::PermissionRules, ApiError>> {
        let key = Key {
            namespace: namespace.to_owned(),
            name: sandbox.to_owned(),
        };
        Box::pin(async move {
            let found = crate::egress::governing(self.store.as_ref(), &key)
                .await
                .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?
                .ok_or_else(|| ApiError::not_found(format!("sandbox {key} not found")))?;
            paddock_policy::governing_permissions(&key.namespace, &found)
                .map_err(|e| ApiError::new(Code::FailedPrecondition, e.to_string()))
        })
    }

    fn audit(&self, event: paddock_policy::audit::AuditEvent) {
        self.audit.record(&event);
    }

    fn policy_enforcement_missing(&self) -> Option<String> {
        self.workloads.egress().is_none().then(|| {
            "this server gives sandboxes no network (paddock serve --no-egress)".to_owned()
        })
    }

    fn metrics_text(&self) -> String {
        self.workloads
            .egress()
            .map(|e| e.proxy().metrics_text())
            .unwrap_or_default()
    }

    fn apply_policy(&self, policy: Value) -> BoxFuture<'_, Result<&'static str, ApiError>> {
        Box::pin(async move {
            let namespace = policy
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            let name = policy
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let outcome = match self.store.get(POLICIES, &namespace, &name).await {
                Ok(current) => {
                    if current.get("spec") == policy.get("spec")
                        && current.pointer("/metadata/labels") == policy.pointer("/metadata/labels")
                        && current.pointer("/metadata/annotations")
                            == policy.pointer("/metadata/annotations")
                    {
                        "unchanged"
                    } else {
                        let mut next = current.clone();
                        next["spec"] = policy.get("spec").cloned().unwrap_or(Value::Null);
                        for field in ["labels", "annotations"] {
                            if let Some(v) = policy.pointer(&format!("/metadata/{field}")) {
                                next["metadata"][field] = v.clone();
                            }
                        }
                        self.store.update(POLICIES, next).await.map_err(api_error)?;
                        "configured"
                    }
                }
                Err(paddock_store::StoreError::NotFound { .. }) => {
                    self.store
                        .create(POLICIES, policy)
                        .await
                        .map_err(api_error)?;
                    "created"
                }
                Err(e) => return Err(api_error(e)),
            };
            if let Some(egress) = self.workloads.egress() {
                egress.poke();
            }
            Ok(outcome)
        })
    }

    fn get_policy(&self, namespace: &str, name: &str) -> BoxFuture<'_, Result<Value, ApiError>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Box::pin(async move {
            self.store
                .get(POLICIES, &namespace, &name)
                .await
                .map_err(api_error)
        })
    }

    fn list_policies(
        &self,
        namespace: Option<&str>,
    ) -> BoxFuture<'_, Result<Vec<Value>, ApiError>> {
        let options = ListOptions {
            namespace: namespace.map(str::to_owned),
            ..Default::default()
        };
        Box::pin(async move {
            Ok(self
                .store
                .list(POLICIES, options)
                .await
                .map_err(api_error)?
                .items)
        })
    }

    fn delete_policy(&self, namespace: &str, name: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Box::pin(async move {
            self.store
                .delete(POLICIES, &namespace, &name, Default::default())
                .await
                .map_err(api_error)?;
            if let Some(egress) = self.workloads.egress() {
                egress.poke();
            }
            Ok(())
        })
    }

    fn egress(
        &self,
        namespace: &str,
        sandbox: &str,
        follow: bool,
    ) -> BoxFuture<'_, Result<EgressFeed, ApiError>> {
        let key = Key {
            namespace: namespace.to_owned(),
            name: sandbox.to_owned(),
        };
        Box::pin(async move {
            let Some(egress) = self.workloads.egress().and_then(|e| e.sandbox(&key)) else {
                return Ok(EgressFeed {
                    records: Vec::new(),
                    follow: None,
                });
            };
            let (records, feed) = egress.log().follow();
            let follow = follow.then(|| Box::pin(feed) as EgressStream);
            Ok(EgressFeed { records, follow })
        })
    }

    fn pull_image(&self, image: &str) -> BoxFuture<'_, Result<EventStream, ApiError>> {
        let parsed = paddock_runtime::ImageRef::parse(image)
            .map_err(|e| ApiError::invalid(format!("image: {e}")));
        let runtime = self.workloads.runtime().clone();
        let image = image.to_owned();
        Box::pin(async move {
            let parsed = parsed?;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
            if matches!(parsed, paddock_runtime::ImageRef::Host) {
                let _ = tx.send(json!({"type": "done", "image": image, "cached": true}));
            } else {
                tokio::spawn(async move {
                    let progress_tx = tx.clone();
                    let progress = move |p: &paddock_runtime::image::PullProgress<'_>| {
                        let _ = progress_tx.send(json!({"type": "progress", "digest": p.digest, "done": p.done, "total": p.total}));
                    };
                    let result = runtime.pull(&parsed, &progress).await;
                    let _ = tx.send(match result {
                        Ok(pulled) => json!({"type": "done", "image": image, "id": pulled.id}),
                        Err(e) => json!({"type": "error", "code": "UNAVAILABLE", "message": format!("pulling {image}: {e}")}),
                    });
                });
            }
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|v| (v, rx))
            });
            Ok(Box::pin(stream) as EventStream)
        })
    }
}

/// Whether an object is one of `paddock serve`'s default pools (or their templates).
fn is_default_pool(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.labels.as_ref().is_some_and(|l| {
        l.get(paddock_api::names::DEFAULT_POOL)
            .is_some_and(|v| v == "true")
    })
}

impl EngineBackend {
    /// Makes the template and pool of a default pool (what exists already is kept).
    pub(crate) async fn ensure_default_pool(
        &self,
        sandbox: &Sandbox,
        namespace: &str,
        runtime: &str,
        image: &str,
    ) -> Result<(), ApiError> {
        let name = paddock_api::names::default_pool_name(runtime, image);
        let template = default_pools::template_for(sandbox, namespace, &name, runtime);
        let pool = default_pools::pool_for(namespace, &name, self.default_pools.size);
        for (kind, value) in [
            (Kind::SandboxTemplate, template),
            (Kind::SandboxWarmPool, pool),
        ] {
            match self.create(default_pools::object(kind, value)?).await {
                Ok(_) => {}
                Err(e) if e.code == Code::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        tracing::info!(pool = %name, namespace, replicas = self.default_pools.size, "default pool ready to fill");
        Ok(())
    }

    /// Sets a default pool's replicas; a conflicting write (another claim scaled it) is left.
    async fn scale_default_pool(
        &self,
        mut pool: paddock_api::v1beta1::SandboxWarmPool,
        replicas: i32,
    ) {
        let name = pool.metadata.name.clone().unwrap_or_default();
        pool.spec.replicas = Some(replicas);
        match self.update(Object::SandboxWarmPool(pool), Part::Main).await {
            Ok(_) => tracing::info!(pool = %name, replicas, "default pool resized to demand"),
            Err(e) => tracing::debug!(pool = %name, error = %e.message, "default pool not resized"),
        }
    }

    /// Shrinks default pools unused for a while back to their base size, until `shutdown`.
    pub(crate) async fn shrink_idle_default_pools(
        self: Arc<Self>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let every = (self.default_pools.idle_after / 4).max(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            for (namespace, name) in self.demand.idle(self.default_pools.idle_after) {
                if let Ok(Object::SandboxWarmPool(pool)) =
                    self.get(Kind::SandboxWarmPool, &namespace, &name).await
                    && is_default_pool(&pool.metadata)
                    && pool.spec.effective_replicas() > self.default_pools.size
                {
                    self.scale_default_pool(pool, self.default_pools.size).await;
                }
            }
        }
    }
}
