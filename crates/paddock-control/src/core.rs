//! [`Core`]: the cache, the work queues, the workers and the four loops over one set of
//! [`Ports`]. A tier builds its ports, starts the core with [`Core::start`], and serves reads
//! from [`Core::cache`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use paddock_api::kinds::Kind;
use paddock_api::stored::Object;
use paddock_plan::claim::ClaimConfig;
use paddock_plan::outcome::{Event, FailureKind, ObjectRef, Propagation};
use paddock_plan::pool::PoolConfig;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, Key};
use crate::dispatch::{Dispatcher, Queues, Waker, kinds_read_by};
use crate::metrics::{ControllerLabels, Metrics};
use crate::ports::{Clock, Controller, Events, Objects, Part, Workloads, WriteError};
use crate::{claim, pool, sandbox, template};

/// The ports a tier provides.
#[derive(Clone)]
pub struct Ports {
    /// Where the four kinds live.
    pub objects: Arc<dyn Objects>,
    /// What Sandboxes are made of and run on.
    pub workloads: Arc<dyn Workloads>,
    /// The time the planners see.
    pub clock: Arc<dyn Clock>,
    /// Where Events go.
    pub events: Arc<dyn Events>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// Workers per controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workers {
    /// Sandbox controller.
    pub sandbox: u16,
    /// SandboxTemplate controller.
    pub template: u16,
    /// SandboxWarmPool controller.
    pub pool: u16,
    /// SandboxClaim controller.
    pub claim: u16,
}

impl Default for Workers {
    fn default() -> Self {
        Self {
            sandbox: 4,
            template: 1,
            pool: 1,
            claim: 4,
        }
    }
}

impl Workers {
    fn of(self, controller: Controller) -> u16 {
        match controller {
            Controller::Sandbox => self.sandbox,
            Controller::Template => self.template,
            Controller::Pool => self.pool,
            Controller::Claim => self.claim,
        }
    }
}

/// Per-key retry backoff after errors: `first · 2^(n-1)`, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's delay.
    pub first: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// controller-runtime's: 5 ms doubling up to 1000 s.
    fn default() -> Self {
        Self {
            first: Duration::from_millis(5),
            max: Duration::from_secs(1000),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 for the first).
    pub fn delay(self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        self.first.saturating_mul(1u32 << exp).min(self.max)
    }
}

/// What the loops are tuned with.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Cluster DNS domain for `status.serviceFQDN`.
    pub cluster_domain: String,
    /// Warm-pool planner tunables.
    pub pool: PoolConfig,
    /// Claim planner tunables.
    pub claim: ClaimConfig,
    /// Hold refills this long after a pool's member count drops, so a replacement's start does
    /// not compete with the claim that took the member.
    pub replenish_delay: Duration,
    /// Per-pool refill rate (creates per second); `None` = unlimited.
    pub refill_rate: Option<f64>,
    /// Workers per controller.
    pub workers: Workers,
    /// Run the template, pool and claim controllers (upstream's `--extensions`).
    pub extensions: bool,
    /// Record the claim controller's Events (upstream's `--disable-claim-events` turns it off).
    pub claim_events: bool,
    /// Record the Sandbox controller's lifecycle Events (upstream's `--disable-sandbox-events`
    /// turns it off).
    pub sandbox_events: bool,
    /// OpenTelemetry tracing is on (upstream's `--enable-tracing`): reconciles stamp the
    /// `opentelemetry.io/trace-context` annotation on claims and Sandboxes that lack it.
    pub otel_tracing: bool,
    /// Retry backoff.
    pub backoff: Backoff,
    /// A Sandbox whose pod was just created and is not Ready yet writes its status only after
    /// this long (the pod's first event usually brings a newer one sooner): a fast pod costs
    /// one status write, not two. Zero (the default) writes at once; the Kubernetes tier,
    /// where a write is a storage commit, uses [`CoreConfig::API_SERVER_WRITE_SAVING`]'s.
    pub new_pod_status_settle: Duration,
    /// While a pool is changing (refilling, members not Ready yet, at the same generation), its
    /// status is written when it settles or after this long, whichever comes first: one write
    /// per adoption and refill instead of one per step. Zero (the default) writes every change.
    pub pool_status_coalesce: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".to_owned(),
            pool: PoolConfig::default(),
            claim: ClaimConfig::default(),
            replenish_delay: Duration::ZERO,
            refill_rate: None,
            workers: Workers::default(),
            extensions: true,
            claim_events: true,
            sandbox_events: true,
            otel_tracing: false,
            backoff: Backoff::default(),
            new_pod_status_settle: Duration::ZERO,
            pool_status_coalesce: Duration::ZERO,
        }
    }
}

impl CoreConfig {
    /// `(new_pod_status_settle, pool_status_coalesce)` where every write is an API server
    /// commit: 100 ms and 500 ms.
    pub const API_SERVER_WRITE_SAVING: (Duration, Duration) =
        (Duration::from_millis(100), Duration::from_millis(500));
}

/// What one reconcile asks for next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing until the next change.
    Done,
    /// Reconcile again after this long (`ZERO`: at once).
    RequeueAfter(Duration),
    /// A transient failure: retry with backoff.
    Retry(String),
}

impl Outcome {
    /// `Done`, or `RequeueAfter` when `requeue` is set.
    pub fn after(requeue: Option<Duration>) -> Self {
        requeue.map_or(Self::Done, Self::RequeueAfter)
    }

    fn result_label(&self) -> &'static str {
        match self {
            Self::Done => "success",
            Self::RequeueAfter(d) if d.is_zero() => "requeue",
            Self::RequeueAfter(_) => "requeue_after",
            Self::Retry(_) => "error",
        }
    }
}

/// The control core of one tier.
pub struct Core {
    pub(crate) ports: Ports,
    pub(crate) config: CoreConfig,
    cache: Arc<Cache>,
    queues: Arc<Queues>,
    dispatcher: Dispatcher,
    metrics: Arc<Metrics>,
    /// Per-pool expectations and pacing.
    pub(crate) pools: Mutex<HashMap<Key, pool::PoolState>>,
    /// Members being adopted right now → the claim adopting each.
    pub(crate) adopting: Mutex<HashMap<Key, String>>,
    /// When each claim not yet Ready was first reconciled (its `controller-first-observed-at`).
    pub(crate) first_observed:
        Mutex<HashMap<Key, k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>>,
    /// Sandboxes whose new pod is settling → until when their not-Ready status is held back.
    pub(crate) settling: Mutex<HashMap<Key, tokio::time::Instant>>,
    /// Sandboxes whose suspension or resumption is under way → since when, for the suspend
    /// and resume latency histograms.
    pub(crate) lifecycle_marks: Mutex<HashMap<Key, sandbox::LifecycleMark>>,
    failures: Mutex<HashMap<(Controller, Key), u32>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, recovering from poisoning (the data are plain maps that stay consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Core {
    /// A core over `ports`. `queues` are shared with the tier's [`Waker`] (build them first
    /// with [`Queues::new`] when the tier's workloads need to wake Sandboxes).
    pub fn new(ports: Ports, config: CoreConfig, queues: Arc<Queues>) -> Arc<Self> {
        let cache = Arc::new(Cache::new());
        let metrics = Arc::new(Metrics::new(cache.clone()));
        Arc::new(Self {
            ports,
            dispatcher: Dispatcher::new(queues.clone(), config.extensions),
            config,
            cache,
            queues,
            metrics,
            pools: Mutex::default(),
            adopting: Mutex::default(),
            first_observed: Mutex::default(),
            settling: Mutex::default(),
            lifecycle_marks: Mutex::default(),
            failures: Mutex::default(),
        })
    }

    /// The cache the loops read; tiers serve reads from it too.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The metrics the loops record.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The configuration.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// What the pool loop remembers of a pool (its expectations and pacing), if anything.
    pub fn pool_state(&self, pool: &Key) -> Option<pool::PoolState> {
        lock(&self.pools).get(pool).cloned()
    }

    /// A waker for the tier's workloads.
    pub fn waker(&self) -> Waker {
        Waker::new(self.queues.clone())
    }

    fn controllers(&self) -> &'static [Controller] {
        if self.config.extensions {
            &Controller::ALL
        } else {
            &[Controller::Sandbox]
        }
    }

    fn kinds(&self) -> &'static [Kind] {
        if self.config.extensions {
            &Kind::ALL
        } else {
            &[Kind::Sandbox]
        }
    }

    /// Takes in one watch event of `kind` (what the watches started by [`Core::start`] do;
    /// tests feed the cache with it directly) and wakes what it concerns.
    pub fn observe(&self, kind: Kind, event: crate::ports::WatchEvent) {
        for changed in self.cache.apply(kind, event) {
            self.dispatcher.route(&self.cache, &changed);
        }
    }

    /// Takes in an object just written (by the core, or by the tier on a user's behalf), so the
    /// next read sees it before the watch does.
    pub fn took_in(&self, object: Object) {
        if let Some(changed) = self.cache.observe_write(object) {
            self.dispatcher.route(&self.cache, &changed);
        }
    }

    /// Starts the watches that fill the cache and, once the kinds each controller reads have
    /// listed (and the tier's children too), its workers. Everything stops at `shutdown`;
    /// in-flight reconciles finish first. Await the returned tasks to wait for that.
    pub fn start(self: &Arc<Self>, shutdown: CancellationToken) -> JoinSet<()> {
        // Reservations of a previous term whose reconciles were cut off would hide their
        // members from every claim of this one.
        lock(&self.adopting).clear();
        let mut tasks = JoinSet::new();
        for &kind in self.kinds() {
            let core = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let mut events = core.ports.objects.watch(kind);
                loop {
                    let next = tokio::select! {
                        () = shutdown.cancelled() => return,
                        next = events.next() => next,
                    };
                    match next {
                        None => return,
                        Some(Ok(event)) => core.observe(kind, event),
                        Some(Err(e)) => {
                            tracing::warn!(kind = %kind, error = %e, "watch failed; the store relists");
                        }
                    }
                }
            });
        }
        for &controller in self.controllers() {
            let workers = self.config.workers.of(controller).max(1);
            let labels = ControllerLabels {
                controller: controller.name().to_owned(),
            };
            self.metrics
                .max_concurrent
                .get_or_create(&labels)
                .set(i64::from(workers));
            for _ in 0..workers {
                let core = self.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move { core.work(controller, shutdown).await });
            }
        }
        let queues = self.queues.clone();
        tasks.spawn(async move {
            shutdown.cancelled().await;
            queues.close();
        });
        tasks
    }

    /// One worker of `controller`: waits until its caches have listed, then reconciles keys
    /// from its queue until the queue closes.
    async fn work(&self, controller: Controller, shutdown: CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = async {
                self.cache.wait_synced(kinds_read_by(controller)).await;
                self.ports.workloads.synced().await;
            } => {}
        }
        let queue = self.queues.of(controller);
        let labels = ControllerLabels {
            controller: controller.name().to_owned(),
        };
        let active = self.metrics.active_workers.get_or_create(&labels).clone();
        while let Some(key) = queue.next().await {
            active.inc();
            let started = Instant::now();
            let outcome = self.reconcile(controller, &key).await;
            let took = started.elapsed();
            tracing::trace!(controller = %controller, object = %key, ?took, outcome = outcome.result_label(), "reconciled");
            self.metrics
                .record_reconcile(controller.name(), took, outcome.result_label());
            active.dec();
            let delay = match &outcome {
                Outcome::Retry(why) => {
                    let n = {
                        let mut f = lock(&self.failures);
                        let n = f.entry((controller, key.clone())).or_insert(0);
                        *n = n.saturating_add(1);
                        *n
                    };
                    let delay = self.config.backoff.delay(n);
                    tracing::debug!(controller = %controller, object = %key, error = %why, ?delay, "retrying");
                    Some(delay)
                }
                Outcome::RequeueAfter(d) => {
                    lock(&self.failures).remove(&(controller, key.clone()));
                    Some(*d)
                }
                Outcome::Done => {
                    lock(&self.failures).remove(&(controller, key.clone()));
                    None
                }
            };
            queue.done(&key);
            if let Some(d) = delay {
                queue.add_after(key, d);
            }
        }
    }

    /// One reconcile of `key` by `controller`, without the queue (what a worker does with a
    /// key; tests call it to step a loop).
    pub async fn reconcile(&self, controller: Controller, key: &Key) -> Outcome {
        match controller {
            Controller::Sandbox => sandbox::reconcile(self, key).await,
            Controller::Template => template::reconcile(self, key).await,
            Controller::Pool => pool::reconcile(self, key).await,
            Controller::Claim => claim::reconcile(self, key).await,
        }
    }

    /// Creates an object and takes the result in.
    pub(crate) async fn create(&self, object: Object) -> Result<Object, WriteError> {
        let created = self.ports.objects.create(object).await?;
        self.took_in(created.clone());
        Ok(created)
    }

    /// Merge-patches an object and takes the result in.
    pub(crate) async fn patch(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        part: Part,
        patch: &Value,
    ) -> Result<Object, WriteError> {
        let updated = self
            .ports
            .objects
            .patch(kind, namespace, name, part, patch)
            .await?;
        tracing::trace!(kind = %kind, namespace, name, ?part, %patch, "patched");
        self.took_in(updated.clone());
        Ok(updated)
    }

    /// Deletes an object; one already gone counts as deleted.
    pub(crate) async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        target: &ObjectRef,
        propagation: Option<Propagation>,
    ) -> Result<(), WriteError> {
        match self
            .ports
            .objects
            .delete(kind, namespace, target, propagation)
            .await
        {
            Err(e) if e.kind == FailureKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Records an Event (unless that controller's Events are turned off).
    pub(crate) async fn record(
        &self,
        controller: Controller,
        regarding: &ObjectReference,
        event: &Event,
    ) {
        let on = match controller {
            Controller::Claim => self.config.claim_events,
            Controller::Sandbox => self.config.sandbox_events,
            Controller::Template | Controller::Pool => true,
        };
        if !on {
            return;
        }
        self.ports.events.record(controller, regarding, event).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_its_first_delay_up_to_its_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_millis(5));
        assert_eq!(b.delay(2), Duration::from_millis(10));
        assert_eq!(b.delay(5), Duration::from_millis(80));
        assert_eq!(b.delay(40), Duration::from_secs(1000));
    }
}
