//! Request metrics in Prometheus text format: the API's counts by method and code and its
//! latency, and for traffic routed by upstream's router contract, upstream's
//! `sandbox_router_*` families (contract §11.3) so its dashboards work unchanged.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::Frame;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `sandbox_namespace` of a request whose route did not resolve.
pub const UNRESOLVED_NAMESPACE: &str = "-";

/// Buckets of `sandbox_router_request_duration_seconds`.
pub const ROUTER_DURATION_BUCKETS_S: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0,
];

/// Buckets of the router's request and response size histograms, in bytes.
pub const ROUTER_SIZE_BUCKETS: [f64; 8] = [
    100.0,
    1024.0,
    10240.0,
    102_400.0,
    1_048_576.0,
    10_485_760.0,
    104_857_600.0,
    1_073_741_824.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoutedLabels {
    method: String,
    code: String,
    sandbox_namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    sandbox_namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    sandbox_namespace: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    sandbox_namespace: String,
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    git_version: String,
    git_commit: String,
    build_date: String,
    go_version: String,
    compiler: String,
    platform: String,
}

/// Why a routed request failed before the sandbox answered (`reason` of
/// `sandbox_router_upstream_errors_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// Nothing accepted the connection.
    Dial,
    /// No answer in time.
    Timeout,
    /// Anything else.
    Other,
}

impl UpstreamError {
    fn label(self) -> &'static str {
        match self {
            Self::Dial => "dial",
            Self::Timeout => "timeout",
            Self::Other => "other",
        }
    }
}

/// Upstream's router families.
#[derive(Debug, Clone)]
struct RouterFamilies {
    requests: Family<RoutedLabels, Counter>,
    duration: Family<RoutedLabels, Histogram>,
    inflight: Gauge,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    upstream_retries: Family<NamespaceLabels, Counter>,
    authz: Family<DecisionLabels, Counter>,
    client_rx: Family<NamespaceLabels, Counter>,
    client_tx: Family<NamespaceLabels, Counter>,
    upstream_rx: Family<NamespaceLabels, Counter>,
    upstream_tx: Family<NamespaceLabels, Counter>,
    request_size: Family<NamespaceLabels, Histogram>,
    response_size: Family<NamespaceLabels, Histogram>,
    cert_reloads: Family<OutcomeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

fn size_histogram() -> Histogram {
    Histogram::new(ROUTER_SIZE_BUCKETS)
}

fn duration_histogram() -> Histogram {
    Histogram::new(ROUTER_DURATION_BUCKETS_S)
}

impl RouterFamilies {
    fn register(registry: &mut Registry) -> Self {
        let f = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            inflight: Gauge::default(),
            upstream_errors: Family::default(),
            upstream_retries: Family::default(),
            authz: Family::default(),
            client_rx: Family::default(),
            client_tx: Family::default(),
            upstream_rx: Family::default(),
            upstream_tx: Family::default(),
            request_size: Family::new_with_constructor(size_histogram),
            response_size: Family::new_with_constructor(size_histogram),
            cert_reloads: Family::default(),
        };
        registry.register(
            "sandbox_router_cert_reloads",
            "Reloads of the TLS certificate files, by outcome",
            f.cert_reloads.clone(),
        );
        registry.register(
            "sandbox_router_requests",
            "Requests routed to sandboxes, by method, status code and namespace",
            f.requests.clone(),
        );
        registry.register(
            "sandbox_router_request_duration_seconds",
            "Time to the response head of routed requests",
            f.duration.clone(),
        );
        registry.register(
            "sandbox_router_inflight_requests",
            "Routed requests being served now",
            f.inflight.clone(),
        );
        registry.register(
            "sandbox_router_upstream_errors",
            "Routed requests that failed before the sandbox answered, by reason",
            f.upstream_errors.clone(),
        );
        registry.register(
            "sandbox_router_upstream_retries",
            "Retried upstream requests (paddock never retries a request it forwarded)",
            f.upstream_retries.clone(),
        );
        registry.register(
            "sandbox_router_authz_decisions",
            "Authorization decisions on routed requests",
            f.authz.clone(),
        );
        registry.register(
            "sandbox_router_client_rx_bytes",
            "Request body bytes received from clients",
            f.client_rx.clone(),
        );
        registry.register(
            "sandbox_router_client_tx_bytes",
            "Response body bytes sent to clients",
            f.client_tx.clone(),
        );
        registry.register(
            "sandbox_router_upstream_rx_bytes",
            "Response body bytes received from sandboxes",
            f.upstream_rx.clone(),
        );
        registry.register(
            "sandbox_router_upstream_tx_bytes",
            "Request body bytes sent to sandboxes",
            f.upstream_tx.clone(),
        );
        registry.register(
            "sandbox_router_request_size_bytes",
            "Request body sizes of routed requests (bodyless requests record none)",
            f.request_size.clone(),
        );
        registry.register(
            "sandbox_router_response_size_bytes",
            "Response body sizes of routed requests",
            f.response_size.clone(),
        );
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
            "sandbox_router_build_info",
            "Router build metadata as labels, with a constant value of 1",
            build,
        );
        f
    }
}

/// Go's name for this architecture, as upstream's `platform` label has it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    code: String,
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    router: RouterFamilies,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "paddock_gateway_requests",
            "Requests by method and status code",
            requests.clone(),
        );
        registry.register(
            "paddock_gateway_request_duration_seconds",
            "Time to the response head",
            duration.clone(),
        );
        let router = RouterFamilies::register(&mut registry);
        Self {
            registry: Mutex::new(registry),
            requests,
            duration,
            router,
        }
    }

    /// Records one request.
    pub fn observe(&self, method: &str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                code: code.to_string(),
            })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a routed request in flight until the returned guard drops.
    pub fn routed_in_flight(&self) -> InFlight {
        self.router.inflight.inc();
        InFlight(self.router.inflight.clone())
    }

    /// Records a routed request's answer (`namespace` is [`UNRESOLVED_NAMESPACE`] when the
    /// route did not resolve).
    pub fn observe_routed(&self, method: &str, code: u16, namespace: &str, elapsed: Duration) {
        let labels = RoutedLabels {
            method: method.to_owned(),
            code: code.to_string(),
            sandbox_namespace: namespace.to_owned(),
        };
        self.router.requests.get_or_create(&labels).inc();
        self.router
            .duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records an authorization decision on a routed request.
    pub fn authz_decision(&self, namespace: &str, allowed: bool) {
        self.router
            .authz
            .get_or_create(&DecisionLabels {
                sandbox_namespace: namespace.to_owned(),
                decision: if allowed { "allow" } else { "deny" }.to_owned(),
            })
            .inc();
    }

    /// Records one reload of the TLS certificate.
    pub fn cert_reload(&self, ok: bool) {
        self.router
            .cert_reloads
            .get_or_create(&OutcomeLabels {
                outcome: if ok { "success" } else { "failure" }.to_owned(),
            })
            .inc();
    }

    /// Records a routed request that failed before the sandbox answered.
    pub fn upstream_error(&self, namespace: &str, why: UpstreamError) {
        self.router
            .upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                sandbox_namespace: namespace.to_owned(),
                reason: why.label().to_owned(),
            })
            .inc();
    }

    /// The request body, counted into the client-rx/upstream-tx bytes and the request size
    /// histogram as it streams to the sandbox.
    pub fn count_request(&self, namespace: &str, body: Body) -> Body {
        let r = &self.router;
        counted(
            namespace,
            body,
            [&r.client_rx, &r.upstream_tx],
            &r.request_size,
        )
    }

    /// The response body, counted into the upstream-rx/client-tx bytes and the response size
    /// histogram as it streams to the client.
    pub fn count_response(&self, namespace: &str, body: Body) -> Body {
        let r = &self.router;
        counted(
            namespace,
            body,
            [&r.upstream_rx, &r.client_tx],
            &r.response_size,
        )
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

/// `body`, counted into two byte counters and a size histogram of `namespace`.
fn counted(
    namespace: &str,
    body: Body,
    counters: [&Family<NamespaceLabels, Counter>; 2],
    size: &Family<NamespaceLabels, Histogram>,
) -> Body {
    let ns = NamespaceLabels {
        sandbox_namespace: namespace.to_owned(),
    };
    Body::new(Counted {
        inner: body,
        seen: 0,
        counters: counters.map(|c| c.get_or_create(&ns).clone()),
        size: size.get_or_create(&ns).clone(),
        done: false,
    })
}

/// Decrements the in-flight gauge when dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A body that counts its data bytes as they pass, and records its size once it ends (a body
/// that ends with no bytes at all records no size, as upstream's bodyless requests).
struct Counted {
    inner: Body,
    seen: u64,
    counters: [Counter; 2],
    size: Histogram,
    done: bool,
}

impl Counted {
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            if self.seen > 0 {
                #[allow(clippy::cast_precision_loss)]
                self.size.observe(self.seen as f64);
            }
        }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    self.seen += n;
                    for c in &self.counters {
                        c.inc_by(n);
                    }
                }
            }
            Poll::Ready(None) => self.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish();
    }
}
