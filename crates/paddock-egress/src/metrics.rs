//! Prometheus counters of the egress proxy, per sandbox: connections and requests by kind and
//! verdict, bytes each way, and how many sandboxes it serves.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a connection, request or DNS question.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The sandbox's namespace.
    pub namespace: String,
    /// The sandbox.
    pub sandbox: String,
    /// `connect`, `http` or `dns`.
    pub kind: String,
    /// `allowed`, `denied` or `audited` (allowed in audit mode, denied in enforce).
    pub verdict: String,
}

/// Labels of a byte count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByteLabels {
    /// The sandbox's namespace.
    pub namespace: String,
    /// The sandbox.
    pub sandbox: String,
    /// `sent` (from the sandbox) or `received`.
    pub direction: String,
}

/// The proxy's metrics.
#[derive(Debug)]
pub struct EgressMetrics {
    registry: Mutex<Registry>,
    pub(crate) decisions: Family<DecisionLabels, Counter>,
    pub(crate) bytes: Family<ByteLabels, Counter>,
    pub(crate) sandboxes: Gauge,
}

impl Default for EgressMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        let bytes = Family::<ByteLabels, Counter>::default();
        let sandboxes = Gauge::default();
        registry.register(
            "paddock_egress_decisions",
            "Connections, requests and DNS questions by sandbox, kind and verdict",
            decisions.clone(),
        );
        registry.register(
            "paddock_egress_bytes",
            "Bytes through the egress proxy by sandbox and direction",
            bytes.clone(),
        );
        registry.register(
            "paddock_egress_sandboxes",
            "Sandboxes the egress proxy serves",
            sandboxes.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            decisions,
            bytes,
            sandboxes,
        }
    }
}

impl EgressMetrics {
    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }

    /// Forgets a sandbox's series (it is gone).
    pub(crate) fn forget(&self, sandbox_key: &str) {
        let (namespace, sandbox) = split_key(sandbox_key);
        for kind in ["connect", "http", "dns"] {
            for verdict in ["allowed", "denied", "audited"] {
                self.decisions.remove(&DecisionLabels {
                    namespace: namespace.clone(),
                    sandbox: sandbox.clone(),
                    kind: kind.to_owned(),
                    verdict: verdict.to_owned(),
                });
            }
        }
        for direction in ["sent", "received"] {
            self.bytes.remove(&ByteLabels {
                namespace: namespace.clone(),
                sandbox: sandbox.clone(),
                direction: direction.to_owned(),
            });
        }
    }
}

/// `namespace/name` as its two parts.
pub(crate) fn split_key(key: &str) -> (String, String) {
    match key.split_once('/') {
        Some((ns, name)) => (ns.to_owned(), name.to_owned()),
        None => (String::new(), key.to_owned()),
    }
}
