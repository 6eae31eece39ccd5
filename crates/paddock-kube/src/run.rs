//! `paddock controller`: wires flags, client, servers, leader election, caches and
//! controllers together, and shuts them down in order on SIGTERM/SIGINT: stop taking work,
//! finish in-flight reconciles, release the Lease, close the servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate, SandboxWarmPool};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::args::{ControllerArgs, Settings};
use crate::cache::{CacheKind, Caches, ChildScope, Dispatcher, Triggers, spawn_reflectors};
use crate::controllers::{
    self, Context, ControllerConfig, Recorders, run_controller, system_clock,
};
use crate::error::ControllerError;
use crate::http::{Endpoints, Readiness, serve_plain, serve_webhook};
use crate::leader::{LeaderElector, Timings, default_identity, own_namespace};
use crate::metrics::Metrics;
use crate::webhook::certs;

/// Work-queue channel capacity per controller (senders wait when a controller falls behind).
const QUEUE_CAPACITY: usize = 4096;
/// How long in-flight reconciles get to finish on shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ControllerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ControllerError::Bind { what, addr, source })
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
pub(crate) fn on_signals(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::terminate(),
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the process");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        shutdown.cancel();
    });
}

/// Runs the controller until SIGTERM/SIGINT (or a lost Lease).
///
/// # Errors
/// Bad flags, no cluster, a port in use, unusable webhook certificates, or losing the Lease.
pub async fn run(args: ControllerArgs) -> Result<(), ControllerError> {
    args.logging.init();
    let settings = args.validate()?;
    let client = crate::client::connect(settings.qps, settings.burst).await?;
    let shutdown = CancellationToken::new();
    on_signals(shutdown.clone());
    run_with(client, settings, shutdown).await
}

/// Runs the controller with an existing client until `shutdown` (for embedding and tests).
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    client: Client,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<(), ControllerError> {
    let (caches, writers) = Caches::new();
    let metrics = Arc::new(Metrics::new(caches.sandboxes.clone()));
    let readiness = Readiness::default();
    let servers = CancellationToken::new();
    let mut server_tasks: Vec<JoinHandle<()>> = Vec::new();
    if let Some(addr) = settings.metrics_addr {
        let l = bind("metrics", addr).await?;
        tracing::info!(%addr, "serving metrics");
        server_tasks.push(tokio::spawn(serve_plain(
            l,
            Endpoints::Metrics(metrics.clone()),
            servers.clone(),
        )));
    }
    if let Some(addr) = settings.health_addr {
        let l = bind("health probes", addr).await?;
        tracing::info!(%addr, "serving health probes");
        server_tasks.push(tokio::spawn(serve_plain(
            l,
            Endpoints::Health(readiness.clone()),
            servers.clone(),
        )));
    }
    if let Some(webhook) = &settings.webhook {
        let bundle = if webhook.manage_certs {
            let bundle = certs::load_or_create(&client, webhook).await?;
            certs::inject_ca_bundle(&client, webhook, &bundle.ca_pem).await?;
            bundle
        } else {
            certs::load_from_dir(webhook)?
        };
        let tls = certs::server_config(&bundle).map_err(ControllerError::Certificates)?;
        let l = bind("conversion webhook", webhook.addr).await?;
        tracing::info!(addr = %webhook.addr, "serving the conversion webhook");
        server_tasks.push(tokio::spawn(serve_webhook(l, tls, servers.clone())));
    }
    readiness.set_ready();

    let elector = if settings.leader_elect {
        let ns = settings
            .leader_election_namespace
            .clone()
            .or_else(own_namespace)
            .ok_or(ControllerError::LeaderElectionNamespace)?;
        Some(LeaderElector::new(
            client.clone(),
            &ns,
            default_identity(),
            Timings::default(),
        ))
    } else {
        None
    };
    let mut result = Ok(());
    let leading = match &elector {
        Some(e) => e.acquire(&shutdown).await?,
        None => true,
    };
    if leading {
        let running = start_controllers(&client, &settings, caches, writers, metrics);
        result = match &elector {
            Some(e) => {
                let held = e.hold(&shutdown).await;
                if let Err(err) = &held {
                    tracing::error!(error = %err, "stopping: leadership lost");
                }
                held
            }
            None => {
                shutdown.cancelled().await;
                Ok(())
            }
        };
        running.stop().await;
        if let Some(e) = &elector {
            e.release().await;
        }
    }
    servers.cancel();
    for t in server_tasks {
        let _ = t.await;
    }
    tracing::info!("controller stopped");
    result
}

/// The reflectors and controllers of one leadership term.
struct Running {
    reflectors: Vec<JoinHandle<()>>,
    controllers: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops the watches (which closes the work queues), then waits for in-flight reconciles.
    async fn stop(self) {
        for r in &self.reflectors {
            r.abort();
        }
        for r in self.reflectors {
            let _ = r.await;
        }
        let all = futures::future::join_all(self.controllers);
        if tokio::time::timeout(DRAIN_TIMEOUT, all).await.is_err() {
            tracing::warn!("reconciles still running after {DRAIN_TIMEOUT:?}; exiting anyway");
        }
    }
}

/// A future that resolves once the given caches have listed.
fn wait(caches: &Caches, kinds: &'static [CacheKind]) -> futures::future::BoxFuture<'static, ()> {
    let caches = caches.clone();
    Box::pin(async move { caches.wait_synced(kinds).await })
}

fn start_controllers(
    client: &Client,
    settings: &Settings,
    caches: Caches,
    writers: crate::cache::CacheWriters,
    metrics: Arc<Metrics>,
) -> Running {
    let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| "paddock-controller".to_owned());
    let config = ControllerConfig {
        cluster_domain: settings.cluster_domain.clone(),
        pool: settings.pool.clone(),
        claim: settings.claim.clone(),
        replenish_delay: settings.replenish_delay,
        refill_rate: settings.refill_rate,
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        caches.clone(),
        metrics,
        config,
        system_clock(),
        Some(Recorders::new(
            client,
            &instance,
            !settings.disable_claim_events,
        )),
    ));
    let mut tasks = Vec::new();
    let (sandbox_tx, sandbox_rx) =
        mpsc::channel::<kube::runtime::reflector::ObjectRef<Sandbox>>(QUEUE_CAPACITY);
    let synced = caches.clone();
    tasks.push(tokio::spawn(run_controller(
        controllers::names::SANDBOX,
        controllers::sandbox::reconcile,
        ctx.clone(),
        caches.sandboxes.clone(),
        sandbox_rx,
        settings.workers.sandbox,
        wait(
            &synced,
            &[
                CacheKind::Sandboxes,
                CacheKind::Pods,
                CacheKind::Services,
                CacheKind::Pvcs,
            ],
        ),
    )));
    let mut triggers = Triggers {
        sandbox: Some(sandbox_tx),
        ..Triggers::default()
    };
    if settings.extensions {
        let (tx, rx) =
            mpsc::channel::<kube::runtime::reflector::ObjectRef<SandboxTemplate>>(QUEUE_CAPACITY);
        triggers.template = Some(tx);
        tasks.push(tokio::spawn(run_controller(
            controllers::names::TEMPLATE,
            controllers::template::reconcile,
            ctx.clone(),
            caches.templates.clone(),
            rx,
            settings.workers.template,
            wait(&caches, &[CacheKind::Templates, CacheKind::NetworkPolicies]),
        )));
        let (tx, rx) =
            mpsc::channel::<kube::runtime::reflector::ObjectRef<SandboxWarmPool>>(QUEUE_CAPACITY);
        triggers.pool = Some(tx);
        tasks.push(tokio::spawn(run_controller(
            controllers::names::POOL,
            controllers::pool::reconcile,
            ctx.clone(),
            caches.pools.clone(),
            rx,
            settings.workers.pool,
            wait(
                &caches,
                &[CacheKind::Pools, CacheKind::Templates, CacheKind::Sandboxes],
            ),
        )));
        let (tx, rx) =
            mpsc::channel::<kube::runtime::reflector::ObjectRef<SandboxClaim>>(QUEUE_CAPACITY);
        triggers.claim = Some(tx);
        tasks.push(tokio::spawn(run_controller(
            controllers::names::CLAIM,
            controllers::claim::reconcile,
            ctx.clone(),
            caches.claims.clone(),
            rx,
            settings.workers.claim,
            wait(
                &caches,
                &[
                    CacheKind::Claims,
                    CacheKind::Pools,
                    CacheKind::Templates,
                    CacheKind::Sandboxes,
                    CacheKind::NetworkPolicies,
                ],
            ),
        )));
    }
    let forget_ctx = ctx;
    let on_pool_deleted: crate::cache::PoolDeleted =
        Arc::new(move |ns: &str, name: &str| forget_ctx.forget_pool(ns, name));
    let dispatcher = Arc::new(Dispatcher::new(caches, triggers, Some(on_pool_deleted)));
    let scope = if settings.cache_label_selectors {
        ChildScope::Labelled
    } else {
        ChildScope::All
    };
    let reflectors = spawn_reflectors(client, writers, dispatcher, settings.extensions, scope);
    tracing::info!(extensions = settings.extensions, "controllers started");
    Running {
        reflectors,
        controllers: tasks,
    }
}
