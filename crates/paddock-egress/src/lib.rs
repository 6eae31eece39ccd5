//! The egress proxy: how a sandbox with a `SandboxPolicy` reaches the network, and the only way.
//!
//! Each such sandbox gets its own network namespace ([`netns`]) holding nothing but a loopback
//! on which this proxy listens: an HTTP proxy on `127.0.0.1:3128` (CONNECT tunnels and plain
//! HTTP, [`proxy`]) and a DNS responder on `127.0.0.1:53` that answers only names the policy
//! allows ([`dns`]). The sandbox gets `HTTP_PROXY`/`HTTPS_PROXY` ([`SandboxEgress::sandbox_env`]), so pip, npm,
//! git, curl and requests work; anything that ignores them finds no route. Every decision comes
//! from `paddock-policy`, every connection lands in the sandbox's [`log`], and the rules can be
//! swapped while the sandbox runs ([`SandboxEgress::set_rules`]).
//!
//! Connections to a name go to the addresses the proxy resolved for it ([`resolve`]), never to
//! an address the sandbox chose, and a TLS server name that the rules do not allow ends the
//! tunnel ([`sni`]).

pub mod dns;
pub mod intercept;
pub mod log;
pub mod metrics;
pub mod netns;
pub mod proxy;
pub mod resolve;
pub mod secrets;
pub mod sni;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use paddock_policy::{DenyReason, EgressRules};
use paddock_wire::EgressRecord;
use tokio::task::JoinHandle;

pub use intercept::{Placeholders, SandboxCa};
pub use log::EgressLogBook;
pub use netns::{Netns, NetnsError};
pub use resolve::{ResolveError, Resolver};

/// The proxy's port inside a sandbox's namespace.
pub const PROXY_PORT: u16 = 3128;

/// Where the proxy listens inside a sandbox's namespace.
pub fn proxy_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], PROXY_PORT))
}

/// Where the DNS responder listens inside a sandbox's namespace.
pub fn dns_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 53))
}

/// The `/etc/resolv.conf` of a sandbox behind the proxy.
pub const RESOLV_CONF: &str = "nameserver 127.0.0.1\noptions ndots:0 attempts:1 timeout:2\n";

/// One sandbox's egress: its rules, its usage against the limits, its record.
#[derive(Debug)]
pub struct SandboxEgress {
    name: String,
    rules: RwLock<Arc<EgressRules>>,
    bytes: AtomicU64,
    requests: AtomicU64,
    log: EgressLogBook,
    ca: Option<SandboxCa>,
    placeholders: Placeholders,
    metrics: std::sync::OnceLock<Arc<metrics::EgressMetrics>>,
    sink: std::sync::OnceLock<Sink>,
}

/// Where each record also goes as it is made (the engine's audit log).
pub type RecordSink = Arc<dyn Fn(&EgressRecord) + Send + Sync>;

struct Sink(RecordSink);

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

impl SandboxEgress {
    /// A sandbox's egress state under these rules; `name` is how logs name it. It gets its own
    /// CA (for destinations that receive injected credentials) and a random placeholder for
    /// each credential.
    pub fn new(name: impl Into<String>, rules: EgressRules) -> Arc<Self> {
        let name = name.into();
        let ca = match SandboxCa::new(&name) {
            Ok(ca) => Some(ca),
            Err(e) => {
                tracing::warn!(sandbox = %name, error = %e, "cannot make the sandbox's egress CA; credentials will not be injected");
                None
            }
        };
        let placeholders = Placeholders::new(rules.injections());
        Self::with_state(name, rules, ca, placeholders)
    }

    /// A sandbox's egress state with a CA and placeholders it had before (after a restart).
    pub fn with_state(
        name: String,
        rules: EgressRules,
        ca: Option<SandboxCa>,
        placeholders: Placeholders,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            rules: RwLock::new(Arc::new(rules)),
            bytes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            log: EgressLogBook::default(),
            ca,
            placeholders,
            metrics: std::sync::OnceLock::new(),
            sink: std::sync::OnceLock::new(),
        })
    }

    /// Sends every record to `sink` as well (set once).
    pub fn set_sink(&self, sink: RecordSink) {
        let _ = self.sink.set(Sink(sink));
    }

    /// The sandbox's name, `namespace/name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sandbox's namespace (the part of its name before `/`).
    pub fn namespace(&self) -> String {
        metrics::split_key(&self.name).0
    }

    /// The sandbox's CA (its certificate goes into the sandbox's trust store).
    pub fn ca(&self) -> Option<&SandboxCa> {
        self.ca.as_ref()
    }

    /// The placeholders the sandbox holds instead of secrets.
    pub fn placeholders(&self) -> &Placeholders {
        &self.placeholders
    }

    /// The environment the sandbox needs: the proxy settings, the trust store variables
    /// (pointing at `ca_bundle`, a path inside the sandbox) and each credential's placeholder.
    pub fn sandbox_env(&self, ca_bundle: &str) -> Vec<(String, String)> {
        let mut env =
            paddock_policy::sandbox_env::governed_env(&proxy_addr().to_string(), &[], ca_bundle);
        env.extend(self.placeholders.env(self.rules().injections()));
        env
    }

    /// The rules now in force.
    pub fn rules(&self) -> Arc<EgressRules> {
        Arc::clone(
            &self
                .rules
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Replaces the rules; new connections and DNS questions use them at once.
    pub fn set_rules(&self, rules: EgressRules) {
        *self
            .rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(rules);
    }

    /// The sandbox's record.
    pub fn log(&self) -> &EgressLogBook {
        &self.log
    }

    /// Bytes and connections used so far.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
        )
    }

    /// Counts one more connection, unless a limit is already spent.
    pub(crate) fn start_request(&self, rules: &EgressRules) -> Result<(), DenyReason> {
        let limits = rules.limits();
        if let Some(max) = limits.bytes
            && self.bytes.load(Ordering::Relaxed) >= max
        {
            return Err(DenyReason::LimitSpent {
                limit: "bytes",
                value: max,
            });
        }
        let used = self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(max) = limits.requests
            && used >= max
        {
            self.requests.fetch_sub(1, Ordering::Relaxed);
            return Err(DenyReason::LimitSpent {
                limit: "requests",
                value: max,
            });
        }
        Ok(())
    }

    /// Counts `n` bytes; false once the byte limit is passed (the connection must end).
    fn spend_bytes(&self, n: u64) -> bool {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        match self.rules().limits().bytes {
            Some(max) => total <= max,
            None => true,
        }
    }

    fn record(&self, record: EgressRecord) {
        if let Some(Sink(sink)) = self.sink.get() {
            sink(&record);
        }
        if let Some(m) = self.metrics.get() {
            let (namespace, sandbox) = metrics::split_key(&self.name);
            let verdict = match (record.allowed, record.audited) {
                (true, false) => "allowed",
                (true, true) => "audited",
                (false, _) => "denied",
            };
            let kind = match record.kind {
                paddock_wire::EgressKind::Connect => "connect",
                paddock_wire::EgressKind::Http => "http",
                paddock_wire::EgressKind::Dns => "dns",
            };
            m.decisions
                .get_or_create(&metrics::DecisionLabels {
                    namespace: namespace.clone(),
                    sandbox: sandbox.clone(),
                    kind: kind.to_owned(),
                    verdict: verdict.to_owned(),
                })
                .inc();
            for (direction, n) in [
                ("sent", record.bytes_sent),
                ("received", record.bytes_received),
            ] {
                if n > 0 {
                    m.bytes
                        .get_or_create(&metrics::ByteLabels {
                            namespace: namespace.clone(),
                            sandbox: sandbox.clone(),
                            direction: direction.to_owned(),
                        })
                        .inc_by(n);
                }
            }
        }
        tracing::debug!(
            sandbox = %self.name, host = %record.host, port = record.port,
            allowed = record.allowed, reason = record.reason.as_deref().unwrap_or(""),
            "egress"
        );
        self.log.push(record);
    }
}

/// The proxy: what every sandbox shares (the resolver) and the sandboxes it serves.
#[derive(Debug, Clone)]
pub struct EgressProxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    metrics: Arc<metrics::EgressMetrics>,
    context: proxy::Context,
    sandboxes: Mutex<HashMap<String, Attached>>,
}

#[derive(Debug)]
struct Attached {
    egress: Arc<SandboxEgress>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Attaching a sandbox failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The namespace could not be used.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// A socket could not be handed to the runtime.
    #[error("cannot serve egress for {sandbox}: {source}")]
    Io {
        /// The sandbox.
        sandbox: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl EgressProxy {
    /// A proxy that resolves names with `resolver` and trusts the host's root certificates
    /// (for the TLS it makes itself, to destinations that receive credentials).
    pub fn new(resolver: Resolver) -> Self {
        Self::with_roots(resolver, &[])
    }

    /// As [`EgressProxy::new`], also trusting these CA certificates (PEM) upstream.
    pub fn with_roots(resolver: Resolver, extra_roots_pem: &[String]) -> Self {
        Self::with_secrets(resolver, extra_roots_pem, Arc::new(secrets::FileSecrets))
    }

    /// As [`EgressProxy::with_roots`], reading injected secrets from `secrets`.
    pub fn with_secrets(
        resolver: Resolver,
        extra_roots_pem: &[String],
        secrets: Arc<dyn secrets::SecretStore>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                metrics: Arc::default(),
                context: proxy::Context::new(resolver, extra_roots_pem, secrets),
                sandboxes: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn sandboxes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Attached>> {
        self.inner
            .sandboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves a sandbox in its namespace: binds the proxy and DNS there and starts answering.
    /// Must be called within a tokio runtime. Attaching again replaces the earlier attachment.
    ///
    /// # Errors
    /// The namespace is gone or its ports are taken.
    pub fn attach(
        &self,
        key: &str,
        netns: &Netns,
        egress: Arc<SandboxEgress>,
    ) -> Result<Arc<SandboxEgress>, AttachError> {
        let sockets = netns.bind(&[proxy_addr()], &[dns_addr()])?;
        let io = |source| AttachError::Io {
            sandbox: key.to_owned(),
            source,
        };
        let mut tasks = Vec::new();
        for listener in sockets.tcp {
            let listener = tokio::net::TcpListener::from_std(listener).map_err(io)?;
            tasks.push(self.serve_proxy(listener, Arc::clone(&egress)));
        }
        for socket in sockets.udp {
            let socket = tokio::net::UdpSocket::from_std(socket).map_err(io)?;
            tasks.push(tokio::spawn(dns::serve(
                socket,
                Arc::clone(&egress),
                self.inner.context.resolver.clone(),
            )));
        }
        self.register(key, Arc::clone(&egress), tasks);
        Ok(egress)
    }

    /// Serves the HTTP proxy for one sandbox on a listener (the namespace's, or any other: the
    /// Kubernetes tier and tests use plain listeners).
    pub fn serve_proxy(
        &self,
        listener: tokio::net::TcpListener,
        egress: Arc<SandboxEgress>,
    ) -> JoinHandle<()> {
        tokio::spawn(proxy::serve(listener, egress, self.inner.context.clone()))
    }

    /// Registers a sandbox served on a shared listener ([`EgressProxy::serve_identified`]):
    /// its records and metrics are the proxy's like an attached one's.
    pub fn adopt(&self, key: &str, egress: Arc<SandboxEgress>) {
        self.register(key, egress, Vec::new());
    }

    fn register(&self, key: &str, egress: Arc<SandboxEgress>, tasks: Vec<JoinHandle<()>>) {
        let _ = egress.metrics.set(Arc::clone(&self.inner.metrics));
        let mut sandboxes = self.sandboxes();
        sandboxes.insert(key.to_owned(), Attached { egress, tasks });
        self.count_sandboxes(sandboxes.len());
    }

    fn count_sandboxes(&self, n: usize) {
        self.inner
            .metrics
            .sandboxes
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Serves many sandboxes on one listener, each connection judged by the sandbox its peer
    /// address belongs to (the in-cluster proxy, where sandbox Pods reach it over the
    /// cluster network).
    pub fn serve_identified(
        &self,
        listener: tokio::net::TcpListener,
        identify: proxy::Identify,
    ) -> JoinHandle<()> {
        tokio::spawn(proxy::serve_identified(
            listener,
            identify,
            self.inner.context.clone(),
        ))
    }

    /// The egress state of an attached sandbox.
    pub fn get(&self, key: &str) -> Option<Arc<SandboxEgress>> {
        self.sandboxes().get(key).map(|a| Arc::clone(&a.egress))
    }

    /// Stops serving a sandbox: its listeners close, so no new connection is made; tunnels
    /// already open run until they end.
    pub fn detach(&self, key: &str) -> Option<Arc<SandboxEgress>> {
        let mut sandboxes = self.sandboxes();
        let gone = sandboxes.remove(key).map(|a| Arc::clone(&a.egress));
        self.count_sandboxes(sandboxes.len());
        drop(sandboxes);
        self.inner.metrics.forget(key);
        gone
    }

    /// The proxy's Prometheus metrics, as exposition text.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }
}

/// A peer's address, IPv4-mapped IPv6 as IPv4.
fn address_of(peer: SocketAddr) -> std::net::IpAddr {
    paddock_policy::address::canonical(peer.ip())
}

/// Now, as records spell it.
fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string())
}
