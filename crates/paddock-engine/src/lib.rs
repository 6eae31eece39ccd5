//! The embedded tier of `paddock serve`: the control core's ports on this machine — the four
//! kinds in the local store, Sandboxes on the local runtime — and the gateway's backend over
//! them. The reconcile loops themselves are `paddock-control`'s; nothing here decides.
//!
//! # Layout
//! - [`Engine`]: opens the store and runtime, re-attaches surviving sandboxes, starts the core;
//!   [`Engine::backend`] is what the gateway serves.
//! - [`objects`]: the `Objects` port on the embedded store.
//! - [`workloads`]: the `Workloads` port — local pods (runtime workloads), volumes, records.
//! - [`backend`]: the gateway's backend over all of this.
//! - [`default_pools`]: warm pools of fresh sandboxes for bare image creates.

pub mod audit;
pub mod backend;
pub mod default_pools;
pub mod egress;
pub mod objects;
pub mod resources;
mod store_errors;
pub mod workloads;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use paddock_api::kinds::Kind;
use paddock_control::{Clock, Core, CoreConfig, Key, LogEvents, Ports, Queues, SystemClock, Waker};
use paddock_runtime::{LocalRuntime, Runtime, RuntimeConfig};
use paddock_store::{MemoryStore, ObjectStore, RedbStore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backend::EngineBackend;
pub use crate::default_pools::DefaultPoolSettings;
use crate::objects::StoreObjects;
use crate::workloads::LocalWorkloads;

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
    /// The time the control loops see (the wall clock; tests move it).
    pub clock: Arc<dyn Clock>,
    /// How long a warm pool waits after a member leaves before it starts a replacement.
    pub replenish_delay: Duration,
    /// Pools of ready sandboxes for bare image creates (off unless set; `paddock serve` keeps
    /// two per runtime and image).
    pub default_pools: DefaultPoolSettings,
    /// Egress for Sandboxes whose SandboxPolicy allows it (`None`: no sandbox gets a network).
    pub egress: Option<egress::EgressSettings>,
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
            clock: Arc::new(SystemClock),
            replenish_delay: REFILL_HOLD,
            default_pools: DefaultPoolSettings::off(),
            egress: Some(egress::EgressSettings::default()),
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
        let mut runtime_config = config.runtime.clone().unwrap_or_else(|| {
            RuntimeConfig::new(config.home.join("runtime"), &config.agent_binary)
        });
        runtime_config.root = config.home.join("runtime");
        runtime_config.agent_binary.clone_from(&config.agent_binary);
        let runtime = tokio::task::spawn_blocking(move || LocalRuntime::open(runtime_config))
            .await
            .map_err(|e| EngineError::Task(e.to_string()))??;
        Self::start_with_runtime(config, Arc::new(runtime)).await
    }

    /// As [`Engine::start`], with sandboxes on `runtime` instead of this host's (tests use a
    /// recording runtime, which needs no root).
    ///
    /// # Errors
    /// The store cannot be opened.
    pub async fn start_with_runtime(
        config: EngineConfig,
        runtime: Arc<dyn Runtime>,
    ) -> Result<Self, EngineError> {
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
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let queues = Queues::new();
        let workloads = LocalWorkloads::new(
            runtime,
            Waker::new(queues.clone()),
            config.home.join("volumes"),
        );
        let audit_logs = Arc::new(audit::AuditLogs::new(config.home.join("audit")));
        if let Some(settings) = &config.egress {
            let egress = egress::LocalEgress::new(
                store.clone(),
                config.home.join("egress"),
                settings,
                audit_logs.clone(),
            );
            workloads.set_egress(egress.clone());
            tasks.spawn(egress.keep_current(shutdown.clone()));
        }
        // Re-attach before the Sandbox loop runs, so surviving sandboxes are not started again.
        let existing = store
            .list(resources::resource(Kind::Sandbox), Default::default())
            .await
            .map_err(|source| EngineError::Store {
                path: "list".into(),
                source,
            })?;
        let by_uid: HashMap<String, (Key, k8s_openapi::api::core::v1::Pod)> = existing
            .items
            .into_iter()
            .filter_map(|s| {
                let sandbox: paddock_api::v1beta1::Sandbox = serde_json::from_value(s).ok()?;
                let uid = sandbox.metadata.uid.clone()?;
                let template = sandbox.spec.blueprint.pod_template.metadata.clone();
                let pod = k8s_openapi::api::core::v1::Pod {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        labels: template.as_ref().and_then(|m| m.labels.clone()),
                        annotations: template.and_then(|m| m.annotations),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                Some((uid, (Key::of(&sandbox), pod)))
            })
            .collect();
        workloads.reattach(&by_uid).await;
        tasks.spawn(
            workloads
                .clone()
                .watch_exits(shutdown.clone(), config.exit_check_interval),
        );
        let workers = u16::try_from(config.workers).unwrap_or(u16::MAX);
        let core_config = CoreConfig {
            cluster_domain: config.cluster_domain.clone(),
            replenish_delay: config.replenish_delay,
            workers: paddock_control::Workers {
                sandbox: workers,
                template: 1,
                pool: 1,
                claim: workers,
            },
            backoff: paddock_control::Backoff {
                first: Duration::from_millis(5),
                max: Duration::from_secs(30),
            },
            ..CoreConfig::default()
        };
        let ports = Ports {
            objects: Arc::new(StoreObjects::new(store.clone())),
            workloads: workloads.clone(),
            clock: config.clock.clone(),
            events: Arc::new(LogEvents),
        };
        let core = Core::new(ports, core_config, queues);
        let mut core_tasks = core.start(shutdown.clone());
        tasks.spawn(async move { while core_tasks.join_next().await.is_some() {} });
        let info = serde_json::json!({
            "home": config.home.display().to_string(),
            "store": if config.in_memory { "memory" } else { "redb" },
            "runtimes": ["gvisor", "bwrap"],
        });
        let backend = Arc::new(EngineBackend {
            store,
            core,
            workloads,
            info,
            default_pools: config.default_pools,
            demand: Default::default(),
            audit: audit_logs,
        });
        if config.default_pools.size > 0 {
            // The most common bare sandbox, ready before anyone asks.
            let seeding = backend.clone();
            tasks.spawn(async move {
                if let Some(seed) = default_pools::bare_host_sandbox("default")
                    && let Err(e) = seeding
                        .ensure_default_pool(&seed, "default", "gvisor", "host")
                        .await
                {
                    tracing::warn!(error = %e.message, "cannot make the default gVisor pool");
                }
            });
            tasks.spawn(backend.clone().shrink_idle_default_pools(shutdown.clone()));
        }
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
    pub fn workloads(&self) -> Arc<LocalWorkloads> {
        self.backend.workloads.clone()
    }

    /// The control core.
    pub fn core(&self) -> Arc<Core> {
        self.backend.core.clone()
    }

    /// Stops the controllers. Sandboxes keep running: the next start re-attaches to them.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.backend
            .workloads
            .wait_for_in_flight(Duration::from_secs(20))
            .await;
        self.backend.workloads.runtime().close();
    }
}

/// How long a pool waits after a member leaves before it refills. A claim finishes (and its
/// first command runs) in a few milliseconds; starting the replacement at once would compete
/// with it for the store and, for gVisor, ~150 ms of CPU. Bursts of claims refill once, after
/// the last one.
const REFILL_HOLD: Duration = Duration::from_millis(100);
