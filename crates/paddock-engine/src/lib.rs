//! The embedded engine of `paddock serve`: the four kinds in the local store, their controllers
//! (the planners of `paddock-plan` driven over the store), and sandboxes on the local runtime.
//!
//! # Layout
//! - [`Engine`]: opens the store and runtime, re-attaches surviving sandboxes, runs the
//!   controllers; [`Engine::backend`] is what the gateway serves.
//! - [`informer`]: the in-memory cache the controllers read, fed by store watches.
//! - [`queue`], [`controller`]: work queues and workers.
//! - [`sandbox`], [`template`], [`pool`], [`claim`]: the four controllers.
//! - [`workloads`]: local pods (runtime workloads), volumes and their states.
//! - [`backend`]: the gateway's backend over all of this.

pub mod backend;
pub mod claim;
pub mod controller;
pub mod informer;
pub mod pool;
pub mod queue;
pub mod resources;
pub mod sandbox;
mod store_errors;
pub mod template;
pub mod workloads;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use paddock_api::kinds::Kind;
use paddock_api::names;
use paddock_plan::claim::ClaimConfig;
use paddock_plan::pool::PoolConfig;
use paddock_runtime::{LocalRuntime, RuntimeConfig};
use paddock_store::{MemoryStore, ObjectStore, RedbStore, WatchEventType};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backend::EngineBackend;
use crate::informer::{Change, Informer, Key, key_of};
use crate::queue::WorkQueue;
use crate::workloads::Workloads;

/// What the engine needs to start.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `$PADDOCK_HOME`: store, runtime state, volumes.
    pub home: PathBuf,
    /// The static `paddock-agent` binary mounted into every sandbox.
    pub agent_binary: PathBuf,
    /// Keep objects in memory only (tests); otherwise a redb database under `home/store`.
    pub in_memory: bool,
    /// Domain in `status.serviceFQDN`.
    pub cluster_domain: String,
    /// Configuration of the local runtime (its root and agent are set from the fields above).
    pub runtime: Option<RuntimeConfig>,
    /// Workers per controller.
    pub workers: usize,
    /// How often to look for sandboxes that ended on their own.
    pub exit_check_interval: Duration,
}

impl EngineConfig {
    /// Defaults for a home directory and agent binary.
    pub fn new(home: impl Into<PathBuf>, agent_binary: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            agent_binary: agent_binary.into(),
            in_memory: false,
            cluster_domain: "cluster.local".to_owned(),
            runtime: None,
            workers: 4,
            exit_check_interval: Duration::from_secs(2),
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store did not open.
    #[error("opening the store in {path}: {source}")]
    Store {
        /// Where.
        path: String,
        /// Why.
        source: paddock_store::StoreError,
    },
    /// The runtime did not open.
    #[error("opening the local runtime: {0}")]
    Runtime(#[from] paddock_runtime::RuntimeError),
    /// A start-up task panicked or was cancelled.
    #[error("start-up task failed: {0}")]
    Task(String),
}

/// A running engine.
#[derive(Debug)]
pub struct Engine {
    backend: Arc<EngineBackend>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Engine {
    /// Opens the store and the runtime, re-attaches to sandboxes that survived a restart, and
    /// starts the controllers.
    ///
    /// # Errors
    /// The store or the runtime cannot be opened.
    pub async fn start(config: EngineConfig) -> Result<Self, EngineError> {
        let store: Arc<dyn ObjectStore> = if config.in_memory {
            Arc::new(MemoryStore::new().map_err(|source| EngineError::Store {
                path: "memory".into(),
                source,
            })?)
        } else {
            let path = config.home.join("store");
            let store = tokio::task::spawn_blocking(move || {
                RedbStore::open(&path).map_err(|source| EngineError::Store {
                    path: path.display().to_string(),
                    source,
                })
            })
            .await
            .map_err(|e| EngineError::Task(e.to_string()))??;
            Arc::new(store)
        };
        let mut runtime_config = config.runtime.clone().unwrap_or_else(|| {
            RuntimeConfig::new(config.home.join("runtime"), &config.agent_binary)
        });
        runtime_config.root = config.home.join("runtime");
        runtime_config.agent_binary.clone_from(&config.agent_binary);
        let runtime = tokio::task::spawn_blocking(move || LocalRuntime::open(runtime_config))
            .await
            .map_err(|e| EngineError::Task(e.to_string()))??;
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let informer = Informer::new();
        let mut changes = informer.subscribe();
        let sandbox_queue: Arc<WorkQueue<Key>> = Arc::new(WorkQueue::new());
        let template_queue: Arc<WorkQueue<Key>> = Arc::new(WorkQueue::new());
        let pool_queue: Arc<WorkQueue<Key>> = Arc::new(WorkQueue::new());
        let claim_queue: Arc<WorkQueue<Key>> = Arc::new(WorkQueue::new());
        let workloads = Workloads::new(runtime, sandbox_queue.clone(), config.home.join("volumes"));
        for kind in Kind::ALL {
            tasks.spawn(informer.clone().run(store.clone(), kind, shutdown.clone()));
        }
        // Re-attach before the Sandbox controller runs, so surviving sandboxes are not started again.
        let existing = store
            .list(resources::resource(Kind::Sandbox), Default::default())
            .await
            .map_err(|source| EngineError::Store {
                path: "list".into(),
                source,
            })?;
        let by_uid: HashMap<String, (Key, k8s_openapi::api::core::v1::Pod)> = existing
            .items
            .iter()
            .filter_map(|s| {
                let uid = s.pointer("/metadata/uid")?.as_str()?.to_owned();
                let pod = k8s_openapi::api::core::v1::Pod {
                    metadata: serde_json::from_value(
                        s.pointer("/spec/podTemplate/metadata")
                            .cloned()
                            .unwrap_or(Value::Null),
                    )
                    .unwrap_or_default(),
                    ..Default::default()
                };
                Some((uid, (key_of(s), pod)))
            })
            .collect();
        workloads.reattach(&by_uid).await;
        tasks.spawn(
            workloads
                .clone()
                .watch_exits(shutdown.clone(), config.exit_check_interval),
        );

        let sandbox = sandbox::SandboxController::new(
            store.clone(),
            informer.clone(),
            workloads.clone(),
            config.cluster_domain.clone(),
        );
        let template = template::TemplateController::new(store.clone(), informer.clone());
        let pool =
            pool::PoolController::new(store.clone(), informer.clone(), PoolConfig::default());
        let claim =
            claim::ClaimController::new(store.clone(), informer.clone(), ClaimConfig::default());
        controller::spawn(
            sandbox,
            sandbox_queue.clone(),
            config.workers,
            shutdown.clone(),
            &mut tasks,
        );
        controller::spawn(
            template,
            template_queue.clone(),
            1,
            shutdown.clone(),
            &mut tasks,
        );
        controller::spawn(pool, pool_queue.clone(), 1, shutdown.clone(), &mut tasks);
        controller::spawn(
            claim,
            claim_queue.clone(),
            config.workers,
            shutdown.clone(),
            &mut tasks,
        );
        {
            let informer = informer.clone();
            let shutdown = shutdown.clone();
            let queues = Queues {
                sandbox: sandbox_queue,
                template: template_queue,
                pool: pool_queue,
                claim: claim_queue,
            };
            tasks.spawn(async move {
                loop {
                    let change = tokio::select! {
                        () = shutdown.cancelled() => break,
                        c = changes.recv() => match c { Some(c) => c, None => break },
                    };
                    queues.route(&informer, &change);
                }
                queues.close();
            });
        }
        let info = serde_json::json!({
            "home": config.home.display().to_string(),
            "store": if config.in_memory { "memory" } else { "redb" },
            "runtimes": ["gvisor", "bwrap"],
        });
        let backend = Arc::new(EngineBackend {
            store,
            informer,
            workloads,
            info,
        });
        Ok(Self {
            backend,
            shutdown,
            tasks,
        })
    }

    /// What the gateway serves.
    pub fn backend(&self) -> Arc<EngineBackend> {
        self.backend.clone()
    }

    /// The store.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.backend.store.clone()
    }

    /// The local workloads.
    pub fn workloads(&self) -> Arc<Workloads> {
        self.backend.workloads.clone()
    }

    /// Stops the controllers. Sandboxes keep running: the next start re-attaches to them.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.backend
            .workloads
            .wait_for_in_flight(Duration::from_secs(20))
            .await;
        self.backend.workloads.runtime().close_pool();
    }
}

/// The controllers' queues, and which changes wake which keys.
struct Queues {
    sandbox: Arc<WorkQueue<Key>>,
    template: Arc<WorkQueue<Key>>,
    pool: Arc<WorkQueue<Key>>,
    claim: Arc<WorkQueue<Key>>,
}

fn owner<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find_map(|r| {
            (r.get("kind").and_then(Value::as_str) == Some(kind)
                && r.get("controller").and_then(Value::as_bool) == Some(true))
            .then(|| r.get("name").and_then(Value::as_str))
            .flatten()
        })
}

fn label<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.pointer("/metadata/labels")?.get(key)?.as_str()
}

impl Queues {
    fn close(&self) {
        for q in [&self.sandbox, &self.template, &self.pool, &self.claim] {
            q.close();
        }
    }

    fn route(&self, informer: &Informer, change: &Change) {
        let (ns, name) = change.key();
        let objects: Vec<&Value> = std::iter::once(change.object.as_ref())
            .chain(change.old.as_deref())
            .collect();
        match change.kind {
            Kind::Sandbox => {
                self.sandbox.add((ns.clone(), name));
                for object in &objects {
                    if let Some(claim) = owner(object, "SandboxClaim") {
                        self.claim.add((ns.clone(), claim.to_owned()));
                    }
                    if let Some(pool) = owner(object, "SandboxWarmPool") {
                        self.pool.add((ns.clone(), pool.to_owned()));
                    }
                    if let Some(hash) = label(object, names::WARM_POOL_SANDBOX) {
                        // A member appeared, changed or left its pool: the pool, and the claims
                        // still waiting on that pool, may act.
                        for pool in informer.list(Kind::SandboxWarmPool, &ns) {
                            let pool_name = pool
                                .pointer("/metadata/name")
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            if names::name_hash(pool_name) == hash {
                                self.pool.add((ns.clone(), pool_name.to_owned()));
                                self.wake_waiting_claims(informer, &ns, pool_name);
                            }
                        }
                    }
                }
            }
            Kind::SandboxTemplate => {
                self.template.add((ns.clone(), name.clone()));
                for pool in informer.list(Kind::SandboxWarmPool, &ns) {
                    if pool
                        .pointer("/spec/sandboxTemplateRef/name")
                        .and_then(Value::as_str)
                        == Some(name.as_str())
                    {
                        let pool_name = pool
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        self.pool.add((ns.clone(), pool_name.clone()));
                        self.wake_waiting_claims(informer, &ns, &pool_name);
                    }
                }
                if change.event == WatchEventType::Added {
                    self.wake_waiting_claims(
                        informer,
                        &ns,
                        &format!("{}{name}", names::SHADOW_POOL_PREFIX),
                    );
                }
            }
            Kind::SandboxWarmPool => {
                self.pool.add((ns.clone(), name.clone()));
                self.wake_waiting_claims(informer, &ns, &name);
            }
            Kind::SandboxClaim => self.claim.add((ns, name)),
        }
    }

    /// Claims of a pool that are not bound to a Sandbox yet.
    fn wake_waiting_claims(&self, informer: &Informer, ns: &str, pool: &str) {
        for claim in informer.list(Kind::SandboxClaim, ns) {
            let refs_pool = claim
                .pointer("/spec/warmPoolRef/name")
                .and_then(Value::as_str)
                == Some(pool);
            let bound = claim
                .pointer("/status/sandbox/name")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            let ready = claim
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == Some("Ready")
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                });
            if refs_pool && !(bound && ready) {
                let name = claim
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.claim.add((ns.to_owned(), name.to_owned()));
            }
        }
    }
}
