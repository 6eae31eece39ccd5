//! Prometheus metrics with upstream's names, labels and buckets (contract §2.7), plus the
//! controller-runtime reconcile metrics dashboards expect, as OpenMetrics text. Recorded by the
//! core, so both tiers count the same things; each tier serves [`Metrics::encode`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::Cache;
use std::time::Duration;

use paddock_api::names::{
    CREATED_BY, LAUNCH_TYPE, LAUNCH_TYPE_WARM, SANDBOX_TEMPLATE_REF, normalize_created_by,
};
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxWarmPool};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Buckets of the claim start-up histograms, in milliseconds (100 ms … 4 min).
pub const CLAIM_LATENCY_BUCKETS_MS: [f64; 15] = [
    100.0, 250.0, 500.0, 750.0, 1000.0, 1250.0, 1500.0, 2000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 120000.0, 240000.0,
];

/// Buckets of `agent_sandbox_creation_latency_ms` (50 ms … 10 min).
pub const CREATION_LATENCY_BUCKETS_MS: [f64; 14] = [
    50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0, 120000.0,
    240000.0, 300000.0, 600000.0,
];

/// controller-runtime's `controller_runtime_reconcile_time_seconds` buckets.
pub const RECONCILE_TIME_BUCKETS_S: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];

/// Template label value of claim metrics when the Sandbox names no template.
pub const UNKNOWN_CLAIM_TEMPLATE: &str = "__unknown__";

/// Labels of the claim start-up histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClaimLatencyLabels {
    /// `warm`, `cold` or `unknown`.
    pub launch_type: String,
    /// Template name.
    pub sandbox_template: String,
}

/// Labels of the suspend and resume latency histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LifecycleLabels {
    /// Sandbox namespace.
    pub namespace: String,
    /// Template name, or `unknown`.
    pub sandbox_template: String,
    /// `SandboxClaim`, `SandboxWarmPool` or `None`.
    pub owned_by: String,
}

impl LifecycleLabels {
    /// The labels of `sb`.
    pub fn of(sb: &Sandbox) -> Self {
        Self {
            namespace: sb.metadata.namespace.clone().unwrap_or_default(),
            sandbox_template: sandbox_template(sb).unwrap_or("unknown").to_owned(),
            owned_by: owned_by(sb).to_owned(),
        }
    }
}

/// Labels of the suspend and resume counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LifecycleResultLabels {
    /// Sandbox namespace.
    pub namespace: String,
    /// Template name, or `unknown`.
    pub sandbox_template: String,
    /// `SandboxClaim`, `SandboxWarmPool` or `None`.
    pub owned_by: String,
    /// Suspend: `requested`, `pod_terminated`, `error`; resume: `requested`, `ready`, `error`.
    pub result: String,
}

/// Labels of `agent_sandbox_finished_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishedLabels {
    /// Sandbox namespace.
    pub namespace: String,
    /// Template name, or `unknown`.
    pub sandbox_template: String,
    /// `SandboxClaim`, `SandboxWarmPool` or `None`.
    pub owned_by: String,
    /// `PodSucceeded` or `PodFailed`.
    pub reason: String,
}

/// Labels of `agent_sandbox_expired_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpiredLabels {
    /// Sandbox namespace.
    pub namespace: String,
    /// Template name, or `unknown`.
    pub sandbox_template: String,
    /// `SandboxClaim`, `SandboxWarmPool` or `None`.
    pub owned_by: String,
    /// `Delete` or `Retain`.
    pub shutdown_policy: String,
}

/// Labels of `agent_sandbox_warmpool_size`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WarmPoolSizeLabels {
    /// Pool namespace.
    pub namespace: String,
    /// Pool name.
    pub warmpool_name: String,
    /// The member's template (its `sandbox-template-ref` annotation), else the pool's.
    pub sandbox_template: String,
    /// `ready`, `pending`, `succeeded` or `failed`.
    pub sandbox_status: String,
}

/// Labels of `agent_sandbox_creation_latency_ms`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CreationLatencyLabels {
    /// Sandbox namespace.
    pub namespace: String,
    /// `warm` or `cold`.
    pub launch_type: String,
    /// Template name.
    pub sandbox_template: String,
}

/// Labels of `agent_sandbox_claim_creation_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClaimCreationLabels {
    /// Claim namespace.
    pub namespace: String,
    /// Template name.
    pub sandbox_template: String,
    /// `warm` or `cold`.
    pub launch_type: String,
    /// The pool adopted from, or the pool the claim references.
    pub warmpool_name: String,
    /// `ready` or `not_ready`.
    pub pod_condition: String,
    /// Normalised `created-by` of the claim.
    pub created_by: String,
}

/// Labels of `agent_sandboxes`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SandboxCountLabels {
    /// Namespace.
    pub namespace: String,
    /// `true` or `false`.
    pub ready_condition: String,
    /// `true` or `false`.
    pub expired: String,
    /// `warm` or `cold`.
    pub launch_type: String,
    /// Template name or `unknown`.
    pub sandbox_template: String,
    /// `SandboxClaim`, `SandboxWarmPool` or `None`.
    pub owned_by: String,
    /// Normalised `created-by` or `unknown`.
    pub created_by: String,
}

/// Labels of `agent_sandbox_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    git_version: String,
    git_commit: String,
    build_date: String,
    go_version: String,
    compiler: String,
    platform: String,
}

/// Labels of the controller-runtime metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `sandbox`, `sandboxclaim`, `sandboxwarmpool`, `sandboxtemplate`.
    pub controller: String,
}

/// Labels of `controller_runtime_reconcile_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Controller name.
    pub controller: String,
    /// `success`, `error`, `requeue` or `requeue_after`.
    pub result: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn claim_histogram() -> Histogram {
    Histogram::new(CLAIM_LATENCY_BUCKETS_MS)
}

fn creation_histogram() -> Histogram {
    Histogram::new(CREATION_LATENCY_BUCKETS_MS)
}

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_TIME_BUCKETS_S)
}

/// Every metric the controller records, and the registry that serves them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `agent_sandbox_claim_startup_latency_ms`.
    pub claim_startup_latency: HistogramFamily<ClaimLatencyLabels>,
    /// `agent_sandbox_claim_controller_startup_latency_ms`.
    pub claim_controller_startup_latency: HistogramFamily<ClaimLatencyLabels>,
    /// `agent_sandbox_client_claim_startup_latency_ms`.
    pub client_claim_startup_latency: HistogramFamily<ClaimLatencyLabels>,
    /// `agent_sandbox_creation_latency_ms`.
    pub creation_latency: HistogramFamily<CreationLatencyLabels>,
    /// `agent_sandbox_claim_creation_total`.
    pub claim_creation: Family<ClaimCreationLabels, Counter>,
    /// `agent_sandbox_suspend_total`.
    pub suspend_total: Family<LifecycleResultLabels, Counter>,
    /// `agent_sandbox_suspend_latency_ms`.
    pub suspend_latency: HistogramFamily<LifecycleLabels>,
    /// `agent_sandbox_resume_total`.
    pub resume_total: Family<LifecycleResultLabels, Counter>,
    /// `agent_sandbox_resume_latency_ms`.
    pub resume_latency: HistogramFamily<LifecycleLabels>,
    /// `agent_sandbox_finished_total`.
    pub finished_total: Family<FinishedLabels, Counter>,
    /// `agent_sandbox_expired_total`.
    pub expired_total: Family<ExpiredLabels, Counter>,
    /// `controller_runtime_reconcile_total`.
    pub reconcile_total: Family<ResultLabels, Counter>,
    /// `controller_runtime_reconcile_errors_total`.
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    /// `controller_runtime_reconcile_time_seconds`.
    pub reconcile_time: HistogramFamily<ControllerLabels>,
    /// `controller_runtime_max_concurrent_reconciles`.
    pub max_concurrent: Family<ControllerLabels, Gauge>,
    /// `controller_runtime_active_workers`.
    pub active_workers: Family<ControllerLabels, Gauge>,
}

impl Metrics {
    /// The metrics, with `agent_sandboxes` computed from the cache's Sandboxes at every scrape.
    pub fn new(cache: Arc<Cache>) -> Self {
        let mut registry = Registry::default();
        let claim_startup_latency: HistogramFamily<_> =
            Family::new_with_constructor(claim_histogram);
        registry.register(
            "agent_sandbox_claim_startup_latency_ms",
            "Latency from a mutating admission webhook first observing the SandboxClaim (agents.x-k8s.io/webhook-first-observed-at) to the claim becoming Ready, in milliseconds",
            claim_startup_latency.clone(),
        );
        let claim_controller_startup_latency: HistogramFamily<_> =
            Family::new_with_constructor(claim_histogram);
        registry.register(
            "agent_sandbox_claim_controller_startup_latency_ms",
            "Latency from the controller first observing the SandboxClaim to the claim becoming Ready, in milliseconds",
            claim_controller_startup_latency.clone(),
        );
        let client_claim_startup_latency: HistogramFamily<_> =
            Family::new_with_constructor(claim_histogram);
        registry.register(
            "agent_sandbox_client_claim_startup_latency_ms",
            "Latency from the client-recorded request time (agents.x-k8s.io/client-first-requested-at) to the claim becoming Ready, in milliseconds",
            client_claim_startup_latency.clone(),
        );
        let creation_latency: HistogramFamily<_> = Family::new_with_constructor(creation_histogram);
        registry.register(
            "agent_sandbox_creation_latency_ms",
            "Latency from Sandbox creation to its Ready condition, in milliseconds",
            creation_latency.clone(),
        );
        let claim_creation = Family::<ClaimCreationLabels, Counter>::default();
        registry.register(
            "agent_sandbox_claim_creation",
            "Sandboxes created or adopted for a SandboxClaim",
            claim_creation.clone(),
        );
        let suspend_total = Family::<LifecycleResultLabels, Counter>::default();
        registry.register(
            "agent_sandbox_suspend",
            "Sandbox suspensions by progress: requested, pod_terminated or error",
            suspend_total.clone(),
        );
        let suspend_latency: HistogramFamily<_> = Family::new_with_constructor(creation_histogram);
        registry.register(
            "agent_sandbox_suspend_latency_ms",
            "Latency from a Sandbox first seen with operatingMode=Suspended to its pod being terminated, in milliseconds",
            suspend_latency.clone(),
        );
        let resume_total = Family::<LifecycleResultLabels, Counter>::default();
        registry.register(
            "agent_sandbox_resume",
            "Sandbox resumptions by progress: requested, ready or error",
            resume_total.clone(),
        );
        let resume_latency: HistogramFamily<_> = Family::new_with_constructor(creation_histogram);
        registry.register(
            "agent_sandbox_resume_latency_ms",
            "Latency from a fully suspended Sandbox first seen back in Running to it being Ready, in milliseconds",
            resume_latency.clone(),
        );
        let finished_total = Family::<FinishedLabels, Counter>::default();
        registry.register(
            "agent_sandbox_finished",
            "Sandboxes whose pod finished (Finished became True), by reason",
            finished_total.clone(),
        );
        let expired_total = Family::<ExpiredLabels, Counter>::default();
        registry.register(
            "agent_sandbox_expired",
            "Sandboxes whose shutdownTime was reached, by shutdown policy",
            expired_total.clone(),
        );
        registry.register_collector(Box::new(WarmPoolCollector {
            cache: cache.clone(),
        }));
        registry.register_collector(Box::new(SandboxCollector { cache }));
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                git_version: concat!("v", env!("CARGO_PKG_VERSION")).to_owned(),
                git_commit: option_env!("PADDOCK_GIT_COMMIT")
                    .unwrap_or("unknown")
                    .to_owned(),
                build_date: option_env!("PADDOCK_BUILD_DATE")
                    .unwrap_or("unknown")
                    .to_owned(),
                go_version: "none".to_owned(),
                compiler: "rustc".to_owned(),
                platform: format!("{}/{}", std::env::consts::OS, go_arch()),
            })
            .set(1);
        registry.register(
            "agent_sandbox_build_info",
            "Controller build metadata as labels, with a constant value of 1",
            build,
        );
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconcile_total.clone(),
        );
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        let reconcile_time: HistogramFamily<_> = Family::new_with_constructor(reconcile_histogram);
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time.clone(),
        );
        let max_concurrent = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            max_concurrent.clone(),
        );
        let active_workers = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            active_workers.clone(),
        );
        Self {
            registry,
            claim_startup_latency,
            claim_controller_startup_latency,
            client_claim_startup_latency,
            creation_latency,
            claim_creation,
            suspend_total,
            suspend_latency,
            resume_total,
            resume_latency,
            finished_total,
            expired_total,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            max_concurrent,
            active_workers,
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records one finished reconcile of `controller`.
    pub fn record_reconcile(&self, controller: &str, elapsed: Duration, result: &str) {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.reconcile_time
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if result == "error" {
            self.reconcile_errors.get_or_create(&labels).inc();
        }
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: controller.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }
}

/// Go's name for this architecture (`amd64`, `arm64`), as upstream's `platform` label has it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `launch_type` of a Sandbox: `warm` when labelled so, else `cold`.
pub fn launch_type(sb: &Sandbox) -> &'static str {
    if label(sb, LAUNCH_TYPE) == Some(LAUNCH_TYPE_WARM) {
        "warm"
    } else {
        "cold"
    }
}

fn label<'a>(sb: &'a Sandbox, key: &str) -> Option<&'a str> {
    sb.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// The template a Sandbox was made from (its `sandbox-template-ref` annotation), if any.
pub fn sandbox_template(sb: &Sandbox) -> Option<&str> {
    sb.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SANDBOX_TEMPLATE_REF))
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

/// `owned_by`: the kind of the Sandbox's extensions controller, or `None`.
pub fn owned_by(sb: &Sandbox) -> &'static str {
    match paddock_plan::ownership::controller_of_meta(&sb.metadata) {
        Some(r)
            if paddock_plan::ownership::group_of(&r.api_version)
                == paddock_api::names::EXTENSIONS_GROUP =>
        {
            if r.kind == SandboxClaim::KIND {
                "SandboxClaim"
            } else if r.kind == SandboxWarmPool::KIND {
                "SandboxWarmPool"
            } else {
                "None"
            }
        }
        _ => "None",
    }
}

/// Computes `agent_sandboxes` from the Sandbox cache at scrape time.
#[derive(Debug)]
struct SandboxCollector {
    cache: Arc<Cache>,
}

/// The `agent_sandboxes` label set of one Sandbox.
pub fn sandbox_count_labels(sb: &Sandbox) -> SandboxCountLabels {
    let ready = sb
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| paddock_api::conditions::find(c, paddock_api::conditions::types::READY));
    SandboxCountLabels {
        namespace: sb.metadata.namespace.clone().unwrap_or_default(),
        ready_condition: ready.is_some_and(|c| c.status == "True").to_string(),
        expired: ready
            .is_some_and(|c| c.reason == paddock_api::conditions::sandbox::SANDBOX_EXPIRED)
            .to_string(),
        launch_type: launch_type(sb).to_owned(),
        sandbox_template: sandbox_template(sb).unwrap_or("unknown").to_owned(),
        owned_by: owned_by(sb).to_owned(),
        created_by: label(sb, CREATED_BY)
            .map_or("unknown", normalize_created_by)
            .to_owned(),
    }
}

impl prometheus_client::collector::Collector for SandboxCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut counts: HashMap<SandboxCountLabels, i64> = HashMap::new();
        for sb in self.cache.list::<Sandbox>(None) {
            *counts.entry(sandbox_count_labels(&sb)).or_default() += 1;
        }
        let family = Family::<SandboxCountLabels, Gauge>::default();
        for (labels, n) in counts {
            family.get_or_create(&labels).set(n);
        }
        let metric_encoder = encoder.encode_descriptor(
            "agent_sandboxes",
            "Point-in-time number of Sandboxes in the cluster",
            None,
            MetricType::Gauge,
        )?;
        family.encode(metric_encoder)
    }
}

/// Computes `agent_sandbox_warmpool_size` from the cache at scrape time: every pool × status,
/// zeros included.
#[derive(Debug)]
struct WarmPoolCollector {
    cache: Arc<Cache>,
}

/// `sandbox_status` of a pool member: its `Finished` reason, else `ready` or `pending`.
pub fn member_status(sb: &Sandbox) -> &'static str {
    use paddock_api::conditions::{find, sandbox as reason, types};
    let conditions = sb
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    match find(conditions, types::FINISHED).filter(|c| c.status == "True") {
        Some(c) if c.reason == reason::POD_SUCCEEDED => "succeeded",
        Some(c) if c.reason == reason::POD_FAILED => "failed",
        _ if find(conditions, types::READY).is_some_and(|c| c.status == "True") => "ready",
        _ => "pending",
    }
}

impl prometheus_client::collector::Collector for WarmPoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let family = Family::<WarmPoolSizeLabels, Gauge>::default();
        let pools = self.cache.list::<SandboxWarmPool>(None);
        for pool in &pools {
            let namespace = pool.metadata.namespace.clone().unwrap_or_default();
            let name = pool.metadata.name.clone().unwrap_or_default();
            let template = pool.spec.sandbox_template_ref.name.clone();
            for status in ["ready", "pending", "succeeded", "failed"] {
                family
                    .get_or_create(&WarmPoolSizeLabels {
                        namespace: namespace.clone(),
                        warmpool_name: name.clone(),
                        sandbox_template: template.clone(),
                        sandbox_status: status.to_owned(),
                    })
                    .set(0);
            }
            let uid = pool.metadata.uid.as_deref();
            for sb in self.cache.list::<Sandbox>(Some(&namespace)) {
                let Some(owner) = paddock_plan::ownership::controller_of_meta(&sb.metadata) else {
                    continue;
                };
                if owner.kind != SandboxWarmPool::KIND
                    || owner.name != name
                    || uid.is_some_and(|u| u != owner.uid)
                {
                    continue;
                }
                family
                    .get_or_create(&WarmPoolSizeLabels {
                        namespace: namespace.clone(),
                        warmpool_name: name.clone(),
                        sandbox_template: sandbox_template(&sb).unwrap_or(&template).to_owned(),
                        sandbox_status: member_status(&sb).to_owned(),
                    })
                    .inc();
            }
        }
        let metric_encoder = encoder.encode_descriptor(
            "agent_sandbox_warmpool_size",
            "Number of Sandboxes controlled by each warm pool, by status",
            None,
            MetricType::Gauge,
        )?;
        family.encode(metric_encoder)
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::WatchEvent;
    use paddock_api::kinds::Kind;

    #[test]
    fn exposition_uses_upstream_names() {
        let cache = Arc::new(Cache::new());
        let mut sb = Sandbox::new("a", Default::default());
        sb.metadata.namespace = Some("ns".into());
        cache.apply(Kind::Sandbox, WatchEvent::Applied(sb.into()));
        let m = Metrics::new(cache);
        m.claim_creation
            .get_or_create(&ClaimCreationLabels {
                namespace: "ns".into(),
                sandbox_template: "t".into(),
                launch_type: "warm".into(),
                warmpool_name: "p".into(),
                pod_condition: "ready".into(),
                created_by: "unknown".into(),
            })
            .inc();
        m.claim_controller_startup_latency
            .get_or_create(&ClaimLatencyLabels {
                launch_type: "warm".into(),
                sandbox_template: "t".into(),
            })
            .observe(120.0);
        m.record_reconcile("sandbox", Duration::from_millis(3), "success");
        m.creation_latency
            .get_or_create(&CreationLatencyLabels {
                namespace: "ns".into(),
                launch_type: "cold".into(),
                sandbox_template: "t".into(),
            })
            .observe(700.0);
        let text = m.encode();
        for needle in [
            "agent_sandbox_claim_creation_total{namespace=\"ns\",sandbox_template=\"t\",launch_type=\"warm\",warmpool_name=\"p\",pod_condition=\"ready\",created_by=\"unknown\"} 1",
            "agent_sandbox_claim_controller_startup_latency_ms_bucket{le=\"250.0\",launch_type=\"warm\",sandbox_template=\"t\"} 1",
            "agent_sandbox_claim_controller_startup_latency_ms_bucket{le=\"240000.0\",",
            "agent_sandboxes{namespace=\"ns\",ready_condition=\"false\",expired=\"false\",launch_type=\"cold\",sandbox_template=\"unknown\",owned_by=\"None\",created_by=\"unknown\"} 1",
            "agent_sandbox_build_info{git_version=",
            "controller_runtime_reconcile_total{controller=\"sandbox\",result=\"success\"} 1",
            "controller_runtime_reconcile_time_seconds_bucket{le=\"0.005\",controller=\"sandbox\"} 1",
            "agent_sandbox_creation_latency_ms_bucket{le=\"600000.0\",namespace=\"ns\",launch_type=\"cold\",sandbox_template=\"t\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn warm_pool_size_counts_each_pools_members_by_status_zeros_included() {
        let cache = Arc::new(Cache::new());
        let pool: SandboxWarmPool = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "pool-uid"},
            "spec": {"replicas": 2, "sandboxTemplateRef": {"name": "tpl"}}
        }))
        .expect("pool");
        cache.apply(Kind::SandboxWarmPool, WatchEvent::Applied(pool.into()));
        for (name, ready) in [("p-a", "True"), ("p-b", "False")] {
            let sb: Sandbox = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "ns", "ownerReferences": [{
                    "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxWarmPool",
                    "name": "p", "uid": "pool-uid", "controller": true}]},
                "spec": {"podTemplate": {"spec": {"containers": []}}},
                "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "x",
                    "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
            }))
            .expect("member");
            cache.apply(Kind::Sandbox, WatchEvent::Applied(sb.into()));
        }
        let text = Metrics::new(cache).encode();
        let line = |status: &str, n: u32| {
            format!(
                "agent_sandbox_warmpool_size{{namespace=\"ns\",warmpool_name=\"p\",sandbox_template=\"tpl\",sandbox_status=\"{status}\"}} {n}"
            )
        };
        for needle in [
            line("ready", 1),
            line("pending", 1),
            line("succeeded", 0),
            line("failed", 0),
        ] {
            assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
        }
    }
}
