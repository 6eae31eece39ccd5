//! The `paddock controller` command line: upstream's flags (contract §2.1) with upstream's
//! defaults, and their start-up validation into a [`Settings`] the rest of the crate reads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ArgAction;

use paddock_kube::flags::parse_duration;
use paddock_kube::{ClusterArgs, LogArgs};
use paddock_webhook::WebhookSettings;

use crate::error::ControllerError;

/// Flags of `paddock controller`, named and defaulted as upstream's `agent-sandbox-controller`
/// so its manifests and Helm values carry over.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Controller")]
pub struct ControllerArgs {
    /// Serve Prometheus metrics on this address (`:8080` = every interface, `0` = off).
    #[arg(long, value_name = "ADDR", default_value = ":8080")]
    pub metrics_bind_address: String,

    /// Serve `/healthz` and `/readyz` on this address (`0` = off).
    #[arg(long, value_name = "ADDR", default_value = ":8081")]
    pub health_probe_bind_address: String,

    /// Run the controllers only while holding the Lease `a3317529.agent-sandbox.x-k8s.io`, so
    /// that several replicas can run and one reconciles. The Lease is released on shutdown.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub leader_elect: bool,

    /// Namespace of the leader-election Lease; empty = the controller's own namespace (from
    /// the service-account mount; required when running outside a cluster with --leader-elect).
    #[arg(long, value_name = "NS", default_value = "")]
    pub leader_election_namespace: String,

    /// Also run the SandboxTemplate, SandboxWarmPool and SandboxClaim controllers.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub extensions: bool,

    /// Cluster DNS domain used in `status.serviceFQDN` and the webhook certificate's SANs.
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Client-side limit on API requests per second; a negative value means no limit.
    #[arg(long, value_name = "QPS", default_value_t = -1.0, allow_negative_numbers = true)]
    pub kube_api_qps: f64,

    /// Requests that may be sent at once above --kube-api-qps (must be > 0).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    pub kube_api_burst: i64,

    /// Sandboxes reconciled concurrently.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        allow_negative_numbers = true
    )]
    pub sandbox_concurrent_workers: i64,

    /// SandboxClaims reconciled concurrently.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 50,
        allow_negative_numbers = true
    )]
    pub sandbox_claim_concurrent_workers: i64,

    /// SandboxWarmPools reconciled concurrently.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub sandbox_warm_pool_concurrent_workers: i64,

    /// SandboxTemplates reconciled concurrently.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub sandbox_template_concurrent_workers: i64,

    /// Warm-pool members created or deleted per pool reconcile.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 300,
        allow_negative_numbers = true
    )]
    pub sandbox_warm_pool_max_batch_size: i64,

    /// Hold refills for this long after a pool's member count drops (re-armed on each drop;
    /// `0` = refill at once). Go duration syntax: `500ms`, `30s`, `5m`.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub sandbox_warm_pool_replenish_delay: Duration,

    /// Per-pool refill rate limit in creates per second (token bucket of capacity
    /// max(1, rate)); `0` = unlimited.
    #[arg(
        long,
        value_name = "RATE",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub sandbox_warm_pool_max_refill_rate: f64,

    /// A warm member not Ready this long after creation is replaced (unless unschedulable).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub sandbox_warm_pool_readiness_grace_period: Duration,

    /// How often a pool holding unschedulable members looks again.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub sandbox_warm_pool_unschedulable_recheck_interval: Duration,

    /// Stamp `cluster-autoscaler.kubernetes.io/safe-to-evict: "true"` on warm members' pods.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_warm_pool_eviction: bool,

    /// Cache only Pods and Services labelled `agents.x-k8s.io/sandbox-name-hash` (less memory
    /// on busy clusters; unlabelled objects named like a Sandbox are then not adopted).
    #[arg(long, value_name = "BOOL", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub cache_label_selectors: bool,

    /// The in-cluster egress proxy (`paddock egress`) as IP:PORT or SERVICE.NAMESPACE:PORT
    /// (deploy/egress: `paddock-egress.agent-sandbox-system:3128`). Pods of Sandboxes that a
    /// SandboxPolicy governs get it in HTTP_PROXY/HTTPS_PROXY, its CA in their trust store and
    /// the placeholders of their credentials. Unset: Pods are left as planned.
    #[arg(long, value_name = "ADDR")]
    pub egress_proxy: Option<String>,

    /// Record no Events for SandboxClaims.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub disable_claim_events: bool,

    /// Send OpenTelemetry spans of the reconcile loops over OTLP/gRPC, configured by the
    /// standard `OTEL_EXPORTER_OTLP_*` environment (upstream's flag).
    #[arg(long, value_name = "BOOL", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_tracing: bool,

    /// Record no lifecycle Events for Sandboxes (`SandboxPodCreated`, `SandboxReady`, ...).
    #[arg(long, value_name = "BOOL", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub disable_sandbox_events: bool,

    /// Do not stamp `controller-first-observed-at` / `claim-first-ready-at` on claims.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub disable_claim_observability_annotations: bool,

    /// Serve the conversion webhook (`/convert`, HTTPS) so both API versions work.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_webhook: bool,

    /// Port of the conversion webhook (every interface; the API server connects to it).
    #[arg(long, value_name = "PORT", default_value_t = 9443)]
    pub webhook_port: u16,

    /// Keep a self-signed CA and serving certificate in Secret `agent-sandbox-webhook-certs`
    /// and inject the CA into the four CRDs. With `false`, the certificate is read from
    /// --webhook-cert-dir (e.g. mounted by cert-manager) and the CRDs are left alone.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub manage_webhook_certs: bool,

    /// Directory holding the serving certificate when --manage-webhook-certs=false.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/tmp/k8s-webhook-server/serving-certs"
    )]
    pub webhook_cert_dir: PathBuf,

    /// File name of the serving certificate (PEM) in --webhook-cert-dir.
    #[arg(long, value_name = "FILE", default_value = "tls.crt")]
    pub webhook_cert_name: String,

    /// File name of the serving key (PEM) in --webhook-cert-dir.
    #[arg(long, value_name = "FILE", default_value = "tls.key")]
    pub webhook_key_name: String,

    /// Service the API server calls for conversion (a SAN of the certificate).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "agent-sandbox-webhook-service"
    )]
    pub webhook_service_name: String,

    /// Namespace of the webhook Service and of the certificate Secret.
    #[arg(long, value_name = "NS", default_value = "agent-sandbox-system")]
    pub webhook_namespace: String,

    /// Directory of the optional `agent-sandbox-config` ConfigMap mount; its
    /// `allowed-label-domains` file (comma or newline separated) lists the label domains claims
    /// may use in `additionalPodMetadata` (default `sandbox.users.io`).
    #[arg(long, value_name = "DIR", default_value = "/etc/sandbox-config")]
    pub sandbox_config_dir: PathBuf,

    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Logging.
    #[command(flatten)]
    pub logging: LogArgs,
}

impl Default for ControllerArgs {
    /// The defaults of every flag (what `paddock controller` with no flags runs with).
    fn default() -> Self {
        use clap::{Args, Command, FromArgMatches};
        let cmd = Self::augment_args(Command::new("controller"));
        // The defaults above always parse: this is tested.
        cmd.try_get_matches_from(["controller"])
            .ok()
            .and_then(|m| Self::from_arg_matches(&m).ok())
            .unwrap_or_else(|| unreachable!("the flag defaults parse"))
    }
}

/// Validated settings, derived from [`ControllerArgs`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Metrics listener (None = off).
    pub metrics_addr: Option<SocketAddr>,
    /// Health listener (None = off).
    pub health_addr: Option<SocketAddr>,
    /// Whether to elect a leader.
    pub leader_elect: bool,
    /// Lease namespace override.
    pub leader_election_namespace: Option<String>,
    /// Whether the extension controllers run.
    pub extensions: bool,
    /// Cluster DNS domain.
    pub cluster_domain: String,
    /// Requests per second (None = unlimited).
    pub qps: Option<f64>,
    /// Burst above the rate.
    pub burst: u32,
    /// Workers per controller.
    pub workers: Workers,
    /// Warm-pool tunables for the planner.
    pub pool: paddock_plan::pool::PoolConfig,
    /// Hold refills after a drop.
    pub replenish_delay: Duration,
    /// Refill token-bucket rate (None = unlimited).
    pub refill_rate: Option<f64>,
    /// Restrict Pod/Service caches to labelled objects.
    pub cache_label_selectors: bool,
    /// No claim Events.
    pub disable_claim_events: bool,
    /// No Sandbox lifecycle Events.
    pub disable_sandbox_events: bool,
    /// OpenTelemetry tracing.
    pub enable_tracing: bool,
    /// Where governed Pods send their traffic (`--egress-proxy`).
    pub egress_proxy: Option<std::sync::Arc<crate::egress::EgressProxyAddress>>,
    /// Claim planner tunables.
    pub claim: paddock_plan::claim::ClaimConfig,
    /// Webhook settings (None = webhook off).
    pub webhook: Option<WebhookSettings>,
}

/// Worker counts per controller (each ≥ 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workers {
    /// Sandbox controller.
    pub sandbox: u16,
    /// SandboxClaim controller.
    pub claim: u16,
    /// SandboxWarmPool controller.
    pub pool: u16,
    /// SandboxTemplate controller.
    pub template: u16,
}

/// Total workers above which upstream warns.
const MANY_WORKERS: i64 = 1000;

impl Settings {
    /// A controller embedded in a test, a benchmark or a stand-in cluster: all four
    /// controllers, no leader election, no conversion webhook, no metrics or probe servers;
    /// every other flag at its default.
    ///
    /// # Errors
    /// None in practice (the defaults are valid); as [`ControllerArgs::validate`].
    pub fn embedded() -> Result<Self, ControllerError> {
        ControllerArgs {
            extensions: true,
            leader_elect: false,
            enable_webhook: false,
            metrics_bind_address: "0".into(),
            health_probe_bind_address: "0".into(),
            ..ControllerArgs::default()
        }
        .validate()
    }
}

impl ControllerArgs {
    /// Checks every flag as upstream does at start-up and derives the settings.
    ///
    /// # Errors
    /// [`ControllerError::Flag`] naming the flag, the value and what is allowed.
    pub fn validate(&self) -> Result<Settings, ControllerError> {
        let workers = Workers {
            sandbox: worker_count(
                "--sandbox-concurrent-workers",
                self.sandbox_concurrent_workers,
            )?,
            claim: worker_count(
                "--sandbox-claim-concurrent-workers",
                self.sandbox_claim_concurrent_workers,
            )?,
            pool: worker_count(
                "--sandbox-warm-pool-concurrent-workers",
                self.sandbox_warm_pool_concurrent_workers,
            )?,
            template: worker_count(
                "--sandbox-template-concurrent-workers",
                self.sandbox_template_concurrent_workers,
            )?,
        };
        let total = self.sandbox_concurrent_workers
            + self.sandbox_claim_concurrent_workers
            + self.sandbox_warm_pool_concurrent_workers
            + self.sandbox_template_concurrent_workers;
        if total > MANY_WORKERS {
            tracing::warn!(
                total,
                "more than {MANY_WORKERS} concurrent workers in total; the API server may throttle the controller"
            );
        }
        if self.sandbox_warm_pool_max_batch_size <= 0 {
            return Err(flag(
                "--sandbox-warm-pool-max-batch-size",
                self.sandbox_warm_pool_max_batch_size,
                "must be greater than 0",
            ));
        }
        let max_batch_size =
            u32::try_from(self.sandbox_warm_pool_max_batch_size).map_err(|_| {
                flag(
                    "--sandbox-warm-pool-max-batch-size",
                    self.sandbox_warm_pool_max_batch_size,
                    "must be at most 4294967295",
                )
            })?;
        if self.kube_api_burst <= 0 {
            return Err(flag(
                "--kube-api-burst",
                self.kube_api_burst,
                "must be greater than 0",
            ));
        }
        let burst = u32::try_from(self.kube_api_burst).map_err(|_| {
            flag(
                "--kube-api-burst",
                self.kube_api_burst,
                "must be at most 4294967295",
            )
        })?;
        if !self.kube_api_qps.is_finite() {
            return Err(flag(
                "--kube-api-qps",
                self.kube_api_qps,
                "must be a finite number (negative = no limit)",
            ));
        }
        let rate = self.sandbox_warm_pool_max_refill_rate;
        if !rate.is_finite() || rate < 0.0 {
            return Err(flag(
                "--sandbox-warm-pool-max-refill-rate",
                rate,
                "must be a finite number ≥ 0 (0 = unlimited)",
            ));
        }
        if self.sandbox_warm_pool_readiness_grace_period.is_zero() {
            return Err(flag(
                "--sandbox-warm-pool-readiness-grace-period",
                "0",
                "must be greater than 0",
            ));
        }
        if self
            .sandbox_warm_pool_unschedulable_recheck_interval
            .is_zero()
        {
            return Err(flag(
                "--sandbox-warm-pool-unschedulable-recheck-interval",
                "0",
                "must be greater than 0",
            ));
        }
        if self.cluster_domain.is_empty() {
            return Err(flag("--cluster-domain", "", "must not be empty"));
        }
        let metrics_addr = bind_address("--metrics-bind-address", &self.metrics_bind_address)?;
        let health_addr = bind_address(
            "--health-probe-bind-address",
            &self.health_probe_bind_address,
        )?;
        let webhook = if self.enable_webhook {
            if self.webhook_port == 0 {
                return Err(flag("--webhook-port", 0, "must be a port number 1-65535"));
            }
            if self.webhook_service_name.is_empty() || self.webhook_namespace.is_empty() {
                return Err(flag(
                    "--webhook-service-name/--webhook-namespace",
                    "",
                    "must not be empty while the webhook is enabled",
                ));
            }
            Some(WebhookSettings {
                addr: SocketAddr::from(([0, 0, 0, 0], self.webhook_port)),
                manage_certs: self.manage_webhook_certs,
                cert_dir: self.webhook_cert_dir.clone(),
                cert_name: self.webhook_cert_name.clone(),
                key_name: self.webhook_key_name.clone(),
                service_name: self.webhook_service_name.clone(),
                namespace: self.webhook_namespace.clone(),
                cluster_domain: self.cluster_domain.clone(),
            })
        } else {
            None
        };
        let claim = paddock_plan::claim::ClaimConfig {
            allowed_label_domains: read_allowed_label_domains(&self.sandbox_config_dir),
            observability_annotations: !self.disable_claim_observability_annotations,
            ..paddock_plan::claim::ClaimConfig::default()
        };
        let egress_proxy = match &self.egress_proxy {
            Some(given) => Some(std::sync::Arc::new(
                crate::egress::EgressProxyAddress::parse(given).map_err(|_| ControllerError::Flag {
                    flag: "--egress-proxy",
                    value: given.clone(),
                    rule: "IP:PORT or SERVICE.NAMESPACE:PORT (e.g. paddock-egress.agent-sandbox-system:3128)",
                })?,
            )),
            None => None,
        };
        Ok(Settings {
            metrics_addr,
            health_addr,
            leader_elect: self.leader_elect,
            leader_election_namespace: Some(self.leader_election_namespace.clone())
                .filter(|s| !s.is_empty()),
            extensions: self.extensions,
            cluster_domain: self.cluster_domain.clone(),
            qps: (self.kube_api_qps > 0.0).then_some(self.kube_api_qps),
            burst,
            workers,
            pool: paddock_plan::pool::PoolConfig {
                max_batch_size,
                readiness_grace_period: self.sandbox_warm_pool_readiness_grace_period,
                unschedulable_recheck_interval: self
                    .sandbox_warm_pool_unschedulable_recheck_interval,
                enable_eviction_annotation: self.enable_warm_pool_eviction,
                ..paddock_plan::pool::PoolConfig::default()
            },
            replenish_delay: self.sandbox_warm_pool_replenish_delay,
            refill_rate: (rate > 0.0).then_some(rate),
            cache_label_selectors: self.cache_label_selectors,
            disable_claim_events: self.disable_claim_events,
            disable_sandbox_events: self.disable_sandbox_events,
            enable_tracing: self.enable_tracing,
            egress_proxy,
            claim,
            webhook,
        })
    }
}

fn flag(name: &'static str, value: impl std::fmt::Display, rule: &'static str) -> ControllerError {
    ControllerError::Flag {
        flag: name,
        value: value.to_string(),
        rule,
    }
}

fn worker_count(name: &'static str, n: i64) -> Result<u16, ControllerError> {
    if n <= 0 {
        return Err(flag(name, n, "must be greater than 0"));
    }
    u16::try_from(n).map_err(|_| flag(name, n, "must be at most 65535"))
}

/// Parses a Go-style bind address: `:8080` (every interface), `host:port`, or `0` (off).
fn bind_address(name: &'static str, value: &str) -> Result<Option<SocketAddr>, ControllerError> {
    if value == "0" || value.is_empty() {
        return Ok(None);
    }
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else if let Some(port) = value.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else {
        value.to_owned()
    };
    full.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| flag(name, value, "must be `:PORT`, `IP:PORT` or `0` to disable"))
}

/// The allowed label domains from the ConfigMap mount (`allowed-label-domains`, comma or
/// newline separated); empty when the file is absent (the planner then uses its default).
pub fn read_allowed_label_domains(dir: &std::path::Path) -> Vec<String> {
    let path = dir.join("allowed-label-domains");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_label_domains(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read allowed label domains; using the default");
            Vec::new()
        }
    }
}

fn parse_label_domains(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    fn parse(extra: &[&str]) -> ControllerArgs {
        let mut argv = vec!["controller"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("flags parse").args
    }

    #[test]
    fn defaults_match_upstream() {
        let a = ControllerArgs::default();
        assert_eq!(a.metrics_bind_address, ":8080");
        assert_eq!(a.health_probe_bind_address, ":8081");
        assert!(a.leader_elect);
        assert!(!a.extensions);
        assert_eq!(a.cluster_domain, "cluster.local");
        assert_eq!(a.kube_api_qps, -1.0);
        assert_eq!(a.kube_api_burst, 10);
        assert_eq!(a.sandbox_concurrent_workers, 100);
        assert_eq!(a.sandbox_claim_concurrent_workers, 50);
        assert_eq!(a.sandbox_warm_pool_concurrent_workers, 1);
        assert_eq!(a.sandbox_template_concurrent_workers, 1);
        assert_eq!(a.sandbox_warm_pool_max_batch_size, 300);
        assert_eq!(
            a.sandbox_warm_pool_readiness_grace_period,
            Duration::from_secs(300)
        );
        assert_eq!(
            a.sandbox_warm_pool_unschedulable_recheck_interval,
            Duration::from_secs(60)
        );
        assert_eq!(a.webhook_port, 9443);
        assert_eq!(a.webhook_service_name, "agent-sandbox-webhook-service");
        assert_eq!(a.webhook_namespace, "agent-sandbox-system");
        let s = a.validate().expect("defaults are valid");
        assert_eq!(s.metrics_addr, Some("0.0.0.0:8080".parse().expect("addr")));
        assert_eq!(s.qps, None);
        assert_eq!(s.pool.max_batch_size, 300);
    }

    #[test]
    fn bool_flags_take_go_style_values() {
        let a = parse(&["--leader-elect=false", "--extensions"]);
        assert!(!a.leader_elect);
        assert!(a.extensions);
        let a = parse(&["--extensions=true", "--enable-webhook=false"]);
        assert!(a.extensions);
        assert!(!a.enable_webhook);
    }

    #[test]
    fn validation_rejects_zero_workers_and_burst() {
        let err = parse(&["--sandbox-concurrent-workers=0"])
            .validate()
            .unwrap_err();
        assert!(
            err.to_string().contains("--sandbox-concurrent-workers"),
            "{err}"
        );
        let err = parse(&["--kube-api-burst=0"]).validate().unwrap_err();
        assert!(err.to_string().contains("--kube-api-burst"), "{err}");
        let err = parse(&["--sandbox-warm-pool-max-batch-size=-1"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("batch-size"), "{err}");
        let err = parse(&["--sandbox-warm-pool-readiness-grace-period=0"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("grace-period"), "{err}");
        let err = parse(&["--sandbox-warm-pool-max-refill-rate=-2"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("refill-rate"), "{err}");
        let err = parse(&["--metrics-bind-address=nonsense"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("--metrics-bind-address"), "{err}");
    }

    #[test]
    fn bind_address_accepts_go_forms() {
        assert_eq!(bind_address("x", "0").expect("off"), None);
        assert_eq!(
            bind_address("x", "127.0.0.1:9000").expect("ip"),
            Some("127.0.0.1:9000".parse().expect("addr"))
        );
        assert_eq!(
            bind_address("x", "localhost:9").expect("localhost"),
            Some("127.0.0.1:9".parse().expect("addr"))
        );
    }

    #[test]
    fn label_domains_split_on_commas_and_newlines() {
        assert_eq!(
            parse_label_domains("a.io, b.io\nc.io\n\n"),
            vec!["a.io", "b.io", "c.io"]
        );
    }
}
