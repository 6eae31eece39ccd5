//! `paddock controller`: wires flags, client, servers, leader election, the control core and
//! the Kubernetes ports together, and shuts them down in order on SIGTERM/SIGINT: stop taking
//! work, finish in-flight reconciles, release the Lease, close the servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use paddock_control::{
    Clock, Core, CoreConfig, Events, Ports, Queues, SystemClock, Waker, Workers,
};
use paddock_kube::KubeError;
use paddock_kube::signals::on_signals;
use paddock_webhook::certs;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::args::{ControllerArgs, Settings};
use crate::error::ControllerError;
use crate::events::RecorderEvents;
use crate::leader::{LeaderElector, Timings, default_identity, own_namespace};
use crate::objects::ApiObjects;
use crate::probes::{Endpoints, Readiness, serve_plain};
use crate::workloads::{ChildScope, ChildWriters, KubeWorkloads};

/// How long in-flight reconciles get to finish on shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ControllerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| KubeError::Bind { what, addr, source }.into())
}

/// Runs the controller until SIGTERM/SIGINT (or a lost Lease).
///
/// # Errors
/// Bad flags, no cluster, a port in use, unusable webhook certificates, or losing the Lease.
pub async fn run(args: ControllerArgs) -> Result<(), ControllerError> {
    args.logging.init();
    let settings = args.validate()?;
    let client = paddock_kube::connect(&args.cluster, settings.qps, settings.burst).await?;
    let shutdown = CancellationToken::new();
    on_signals(shutdown.clone());
    run_with(client, settings, shutdown).await
}

/// The core's settings from the controller's.
pub fn core_config(settings: &Settings) -> CoreConfig {
    CoreConfig {
        cluster_domain: settings.cluster_domain.clone(),
        pool: settings.pool.clone(),
        claim: settings.claim.clone(),
        replenish_delay: settings.replenish_delay,
        refill_rate: settings.refill_rate,
        workers: Workers {
            sandbox: settings.workers.sandbox,
            template: settings.workers.template,
            pool: settings.workers.pool,
            claim: settings.workers.claim,
        },
        extensions: settings.extensions,
        claim_events: !settings.disable_claim_events,
        sandbox_events: !settings.disable_sandbox_events,
        otel_tracing: settings.enable_tracing,
        new_pod_status_settle: CoreConfig::API_SERVER_WRITE_SAVING.0,
        pool_status_coalesce: CoreConfig::API_SERVER_WRITE_SAVING.1,
        ..CoreConfig::default()
    }
}

/// The control core on the API server behind `client`, with its children's caches still to be
/// filled (by [`KubeWorkloads::spawn_watches`], or a test).
pub fn kube_core(
    client: &Client,
    config: CoreConfig,
    egress_proxy: Option<Arc<crate::egress::EgressProxyAddress>>,
    clock: Arc<dyn Clock>,
    events: Arc<dyn Events>,
) -> (Arc<Core>, ChildWriters) {
    let queues = Queues::new();
    let (workloads, writers) = KubeWorkloads::new(client.clone(), config.extensions, egress_proxy);
    let ports = Ports {
        objects: Arc::new(ApiObjects::new(client.clone())),
        workloads,
        clock,
        events,
    };
    (Core::new(ports, config, queues), writers)
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
    let tracing_export = if settings.enable_tracing {
        Some(
            paddock_kube::otel::Tracing::install(paddock_control::traces::TRACER)
                .map_err(|e| ControllerError::Tracing(e.to_string()))?,
        )
    } else {
        None
    };
    let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| "paddock-controller".to_owned());
    let events = Arc::new(RecorderEvents::new(&client, &instance));
    let (core, child_writers) = kube_core(
        &client,
        core_config(&settings),
        settings.egress_proxy.clone(),
        Arc::new(SystemClock),
        events,
    );
    let readiness = Readiness::default();
    let servers = CancellationToken::new();
    let mut server_tasks: Vec<JoinHandle<()>> = Vec::new();
    if let Some(addr) = settings.metrics_addr {
        let l = bind("metrics", addr).await?;
        tracing::info!(%addr, "serving metrics");
        server_tasks.push(tokio::spawn(serve_plain(
            l,
            Endpoints::Metrics(core.metrics().clone()),
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
        // Without the webhook the controller still works: only v1beta1 is stored, and the
        // conversion is needed only where the CRDs ask the API server for it.
        match certs::tls_config(&client, webhook).await {
            Ok(tls) => {
                let l = bind("conversion webhook", webhook.addr).await?;
                tracing::info!(addr = %webhook.addr, "serving the conversion webhook");
                server_tasks.push(tokio::spawn(paddock_webhook::server::serve_webhook(
                    l,
                    tls,
                    servers.clone(),
                )));
            }
            Err(e) => tracing::warn!(
                "the conversion webhook cannot serve ({e}); running without it (v1alpha1 reads through CRDs that name the webhook will fail): fix the cause, or pass --enable-webhook=false"
            ),
        }
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
        let running = start(&client, &settings, &core, child_writers);
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
    if let Some(t) = tracing_export {
        // The exporter's shutdown blocks while it flushes.
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    tracing::info!("controller stopped");
    result
}

/// The watches and workers of one leadership term.
struct Running {
    stop: CancellationToken,
    children: Vec<JoinHandle<()>>,
    core: JoinSet<()>,
}

impl Running {
    /// Stops taking work, then waits for in-flight reconciles.
    async fn stop(mut self) {
        self.stop.cancel();
        for c in &self.children {
            c.abort();
        }
        let drained = async { while self.core.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
            tracing::warn!("reconciles still running after {DRAIN_TIMEOUT:?}; exiting anyway");
        }
    }
}

fn start(
    client: &Client,
    settings: &Settings,
    core: &Arc<Core>,
    child_writers: ChildWriters,
) -> Running {
    let scope = if settings.cache_label_selectors {
        ChildScope::Labelled
    } else {
        ChildScope::All
    };
    let waker: Waker = core.waker();
    let children =
        KubeWorkloads::spawn_watches(client, child_writers, waker, scope, settings.extensions);
    let stop = CancellationToken::new();
    let core_tasks = core.start(stop.clone());
    tracing::info!(extensions = settings.extensions, "controllers started");
    Running {
        stop,
        children,
        core: core_tasks,
    }
}
