//! The four controllers as drivers of `paddock-plan`: each reconcile reads its cache, calls
//! the planner, applies the plan's actions through [`Driver`](crate::driver::Driver) in order,
//! writes the status the plan (or the planner's `*_after_failure`) says, and tells the work
//! queue when to look again. The decisions stay in the planners; this module only observes and
//! applies (docs/planners.md).
//!
//! - [`sandbox`]: Sandbox → Pod, Service, PVCs (always on).
//! - [`template`]: SandboxTemplate → NetworkPolicy (`--extensions`).
//! - [`pool`]: SandboxWarmPool → members, with expectations kept here (`--extensions`).
//! - [`claim`]: SandboxClaim → adoption or cold Sandbox (`--extensions`).

pub mod claim;
pub mod pool;
pub mod sandbox;
pub mod template;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use paddock_plan::outcome::{Event, EventType};
use tokio::sync::mpsc;
use tokio_stream_shim::ReceiverStream;

use crate::cache::Caches;
use crate::driver::Driver;
use crate::error::ReconcileError;
use crate::metrics::{ControllerLabels, Metrics};

/// The current time, injectable so tests and benchmarks can fix it.
pub type Clock = Arc<dyn Fn() -> Time + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| Time(jiff::Timestamp::now()))
}

/// Reporter names of upstream's event recorders.
pub mod reporters {
    /// Sandbox controller.
    pub const SANDBOX: &str = "sandbox-controller";
    /// SandboxClaim controller.
    pub const CLAIM: &str = "sandboxclaim-controller";
    /// SandboxTemplate controller.
    pub const TEMPLATE: &str = "sandboxtemplate-controller";
    /// SandboxWarmPool controller.
    pub const POOL: &str = "sandboxwarmpool-controller";
}

/// Controller names in the controller-runtime metrics.
pub mod names {
    /// Sandbox controller.
    pub const SANDBOX: &str = "sandbox";
    /// SandboxClaim controller.
    pub const CLAIM: &str = "sandboxclaim";
    /// SandboxTemplate controller.
    pub const TEMPLATE: &str = "sandboxtemplate";
    /// SandboxWarmPool controller.
    pub const POOL: &str = "sandboxwarmpool";
}

/// Event recorders, one per controller (claim events can be turned off).
#[derive(Clone)]
pub struct Recorders {
    sandbox: Recorder,
    claim: Option<Recorder>,
    template: Recorder,
    pool: Recorder,
}

impl Debug for Recorders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorders").finish_non_exhaustive()
    }
}

impl Recorders {
    /// Recorders with upstream's reporter names; `instance` is this replica (its pod name).
    pub fn new(client: &Client, instance: &str, claim_events: bool) -> Self {
        let make = |controller: &str| {
            Recorder::new(
                client.clone(),
                Reporter {
                    controller: controller.to_owned(),
                    instance: Some(instance.to_owned()),
                },
            )
        };
        Self {
            sandbox: make(reporters::SANDBOX),
            claim: claim_events.then(|| make(reporters::CLAIM)),
            template: make(reporters::TEMPLATE),
            pool: make(reporters::POOL),
        }
    }
}

/// Which recorder an event goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reporting {
    /// `sandbox-controller`.
    Sandbox,
    /// `sandboxclaim-controller`.
    Claim,
    /// `sandboxtemplate-controller`.
    Template,
    /// `sandboxwarmpool-controller`.
    Pool,
}

/// Runtime knobs the reconcilers read (from validated flags).
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Cluster DNS domain for `status.serviceFQDN`.
    pub cluster_domain: String,
    /// Warm-pool planner tunables.
    pub pool: paddock_plan::pool::PoolConfig,
    /// Claim planner tunables.
    pub claim: paddock_plan::claim::ClaimConfig,
    /// Hold refills this long after a pool's member count drops.
    pub replenish_delay: Duration,
    /// Per-pool refill rate (creates per second); `None` = unlimited.
    pub refill_rate: Option<f64>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".to_owned(),
            pool: paddock_plan::pool::PoolConfig::default(),
            claim: paddock_plan::claim::ClaimConfig::default(),
            replenish_delay: Duration::ZERO,
            refill_rate: None,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// API writes.
    pub driver: Driver,
    /// Cached reads.
    pub caches: Caches,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Knobs.
    pub config: ControllerConfig,
    /// The clock.
    pub clock: Clock,
    recorders: Option<Recorders>,
    /// Per-pool expectations and pacing, keyed `<ns>/<pool>`.
    pub pools: Mutex<HashMap<String, pool::PoolState>>,
    /// Members being adopted right now, by `<ns>/<sandbox>` → claim name.
    pub adopting: Mutex<HashMap<String, String>>,
    failures: Mutex<HashMap<(&'static str, String), u32>>,
}

impl Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context. `recorders: None` records no Events (tests, benchmarks).
    pub fn new(
        client: Client,
        caches: Caches,
        metrics: Arc<Metrics>,
        config: ControllerConfig,
        clock: Clock,
        recorders: Option<Recorders>,
    ) -> Self {
        Self {
            driver: Driver::new(client),
            caches,
            metrics,
            config,
            clock,
            recorders,
            pools: Mutex::new(HashMap::new()),
            adopting: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets a deleted pool's expectations and pacing.
    pub fn forget_pool(&self, ns: &str, name: &str) {
        lock(&self.pools).remove(&format!("{ns}/{name}"));
    }

    /// Records a planner Event on `regarding`. Events are best effort: a failure is logged.
    pub async fn record(&self, reporting: Reporting, regarding: ObjectReference, event: &Event) {
        let Some(recorders) = &self.recorders else {
            return;
        };
        let recorder = match reporting {
            Reporting::Sandbox => Some(&recorders.sandbox),
            Reporting::Claim => recorders.claim.as_ref(),
            Reporting::Template => Some(&recorders.template),
            Reporting::Pool => Some(&recorders.pool),
        };
        let Some(recorder) = recorder else {
            return;
        };
        let ev = KubeEvent {
            type_: match event.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: event.reason.clone(),
            note: Some(event.note.clone()),
            action: event.action.clone(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &regarding).await {
            tracing::warn!(reason = %event.reason, error = %e, "cannot record event");
        }
    }

    fn backoff(&self, controller: &'static str, key: String) -> Duration {
        let mut failures = lock(&self.failures);
        let n = failures.entry((controller, key)).or_insert(0);
        *n = n.saturating_add(1);
        backoff_delay(*n)
    }

    fn succeeded(&self, controller: &'static str, key: String) {
        lock(&self.failures).remove(&(controller, key));
    }
}

/// Locks a mutex, recovering from poisoning (the data are plain maps that stay consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// controller-runtime's per-item exponential backoff: 5 ms · 2^(n-1), at most 1000 s.
pub fn backoff_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let ms = 5u64.saturating_mul(1u64 << exp);
    Duration::from_millis(ms).min(Duration::from_secs(1000))
}

/// The result of one reconcile, as a work-queue action.
pub(crate) fn action_for(requeue_after: Option<Duration>) -> Action {
    requeue_after.map_or_else(Action::await_change, Action::requeue)
}

fn result_label(res: &Result<Action, ReconcileError>) -> &'static str {
    match res {
        Err(_) => "error",
        Ok(a) if *a == Action::await_change() => "success",
        Ok(a) if *a == Action::requeue(Duration::ZERO) => "requeue",
        Ok(_) => "requeue_after",
    }
}

fn object_key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// A reconcile function of one kind.
pub type ReconcileFn<K> =
    fn(Arc<K>, Arc<Context>) -> futures::future::BoxFuture<'static, Result<Action, ReconcileError>>;

/// Runs one controller until its queue closes: once `synced` resolves (the caches it reads
/// have listed), a work queue fed by `queue` (deduplicated per object, never two reconciles of
/// one object at once), `workers` concurrent reconciles, per-object exponential backoff on
/// errors, and the controller-runtime metrics.
pub async fn run_controller<K>(
    name: &'static str,
    reconcile: ReconcileFn<K>,
    ctx: Arc<Context>,
    store: Store<K>,
    queue: mpsc::Receiver<ObjectRef<K>>,
    workers: u16,
    synced: futures::future::BoxFuture<'static, ()>,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    ObjectRef<K>: Hash + Eq,
{
    // Keep what arrives while the caches list; stop if the queue closes first (shutdown).
    let mut queue = queue;
    let mut early = Vec::new();
    let mut synced = synced;
    loop {
        tokio::select! {
            () = &mut synced => break,
            item = queue.recv() => match item {
                Some(r) => early.push(r),
                None => {
                    tracing::info!(controller = name, "stopped before its caches synced");
                    return;
                }
            },
        }
    }
    tracing::info!(controller = name, workers, "caches synced; reconciling");
    let labels = ControllerLabels {
        controller: name.to_owned(),
    };
    ctx.metrics
        .max_concurrent
        .get_or_create(&labels)
        .set(i64::from(workers));
    let active = ctx.metrics.active_workers.get_or_create(&labels).clone();
    let metrics = ctx.metrics.clone();
    let reconciler = move |obj: Arc<K>, ctx: Arc<Context>| {
        let active = active.clone();
        let metrics = metrics.clone();
        Box::pin(async move {
            active.inc();
            let started = Instant::now();
            let key = object_key(obj.as_ref());
            let res = reconcile(obj, ctx.clone()).await;
            metrics.record_reconcile(name, started.elapsed(), result_label(&res));
            active.dec();
            match &res {
                Ok(_) => ctx.succeeded(name, key),
                Err(e) => {
                    tracing::warn!(controller = name, object = %key, kind = e.metric_label(), error = %e, "reconcile failed")
                }
            }
            res
        })
    };
    let error_policy = move |obj: Arc<K>, _err: &ReconcileError, ctx: Arc<Context>| {
        Action::requeue(ctx.backoff(name, object_key(obj.as_ref())))
    };
    let queue = futures::stream::iter(early)
        .chain(ReceiverStream::new(queue))
        .map(Ok::<_, std::convert::Infallible>);
    let stream = controller::applier(
        reconciler,
        error_policy,
        ctx,
        store,
        queue,
        controller::Config::default().concurrency(workers),
    );
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            match e {
                controller::Error::ObjectNotFound(_) | controller::Error::ReconcilerFailed(..) => {}
                other => tracing::debug!(controller = name, error = %other, "work queue"),
            }
        }
    }
    tracing::info!(controller = name, "controller stopped");
}

/// Names of Sandboxes being adopted by other claims than `claim` in `ns`.
pub(crate) fn adopting_by_others(ctx: &Context, ns: &str, claim: &str) -> BTreeSet<String> {
    let prefix = format!("{ns}/");
    lock(&ctx.adopting)
        .iter()
        .filter(|(k, c)| k.starts_with(&prefix) && c.as_str() != claim)
        .map(|(k, _)| k[prefix.len()..].to_owned())
        .collect()
}

/// A minimal `Stream` over an mpsc receiver (what tokio-stream's `ReceiverStream` does).
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::sync::mpsc::Receiver;

    /// Adapts a receiver to a stream that ends when every sender is gone.
    #[derive(Debug)]
    pub struct ReceiverStream<T>(Receiver<T>);

    impl<T> ReceiverStream<T> {
        /// Wraps a receiver.
        pub fn new(rx: Receiver<T>) -> Self {
            Self(rx)
        }
    }

    impl<T> futures::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_5ms_and_caps_at_1000s() {
        assert_eq!(backoff_delay(1), Duration::from_millis(5));
        assert_eq!(backoff_delay(2), Duration::from_millis(10));
        assert_eq!(backoff_delay(5), Duration::from_millis(80));
        assert_eq!(backoff_delay(40), Duration::from_secs(1000));
    }
}
