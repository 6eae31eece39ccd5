//! Egress on this host: which Sandboxes get a network, under which rules, kept current.
//!
//! A Sandbox gets a network only when a `SandboxPolicy` with an `egress` part governs it: named
//! by the Sandbox's own `paddock.dev/policy` annotation, its template's (the SandboxTemplate
//! named by `agents.x-k8s.io/sandbox-template-ref`) or its owning claim's. Every such policy
//! applies at once (their meet), so a claim can only narrow its template's policy. The
//! workload joins a namespace served by the egress proxy; the rules are recomputed whenever a
//! policy, Sandbox, claim or template changes, and apply to the next connection.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paddock_api::kinds::Kind;
use paddock_api::policy::{POLICY_GROUP, POLICY_KIND, POLICY_PLURAL};
use paddock_control::Key;
use paddock_egress::{EgressProxy, Netns, Resolver, SandboxEgress};
use paddock_policy::{EgressRules, governing_policies, governing_rules};
use paddock_runtime::{NetworkAttachment, WorkloadId};
use paddock_store::{ObjectStore, ResourceType, StoreError};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::resources::resource;

/// The store resource of SandboxPolicies.
pub const POLICIES: ResourceType =
    ResourceType::namespaced(POLICY_GROUP, POLICY_PLURAL, POLICY_KIND);

async fn get(
    store: &dyn ObjectStore,
    resource: ResourceType,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, PolicyLookupError> {
    match store.get(resource, namespace, name).await {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(PolicyLookupError::Store(e.to_string())),
    }
}

/// The policies that govern a Sandbox, each with the object found under its name (`None`:
/// missing); `None` when the Sandbox itself is gone.
///
/// # Errors
/// The store failed.
pub async fn governing(
    store: &dyn ObjectStore,
    key: &Key,
) -> Result<Option<Vec<(paddock_policy::PolicyRef, Option<Value>)>>, PolicyLookupError> {
    let ns = key.namespace.as_str();
    let Some(sandbox) = get(store, resource(Kind::Sandbox), ns, &key.name).await? else {
        return Ok(None);
    };
    let template = match paddock_policy::governs::template_of(&sandbox) {
        Some(t) => get(store, resource(Kind::SandboxTemplate), ns, t).await?,
        None => None,
    };
    let claim = match paddock_policy::governs::claim_of(&sandbox) {
        Some(c) => get(store, resource(Kind::SandboxClaim), ns, c).await?,
        None => None,
    };
    let mut found = Vec::new();
    for policy_ref in governing_policies(&sandbox, template.as_ref(), claim.as_ref()) {
        let value = get(store, POLICIES, ns, &policy_ref.name).await?;
        found.push((policy_ref, value));
    }
    Ok(Some(found))
}

/// How egress is set up on this host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressSettings {
    /// Where the proxy resolves names (the host's resolver by default).
    pub resolver: Resolver,
    /// CA certificates (PEM) the proxy trusts upstream besides the host's, for destinations
    /// it makes TLS to itself (those that receive credentials).
    pub upstream_roots: Vec<String>,
}

/// The policies of a Sandbox could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyLookupError {
    /// A governing policy is missing or invalid.
    #[error(transparent)]
    Governing(#[from] paddock_policy::GoverningError),
    /// The store failed.
    #[error("reading policies: {0}")]
    Store(String),
}

#[derive(Debug)]
struct Attachment {
    workload: WorkloadId,
    netns: PathBuf,
}

/// Egress for the engine's Sandboxes.
#[derive(Debug)]
pub struct LocalEgress {
    proxy: EgressProxy,
    store: Arc<dyn ObjectStore>,
    dir: PathBuf,
    attached: Mutex<HashMap<Key, Attachment>>,
    changed: tokio::sync::Notify,
    audit: Arc<crate::audit::AuditLogs>,
}

impl LocalEgress {
    /// Egress state under `dir` (namespaces' pins and the sandboxes' `resolv.conf`).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        dir: PathBuf,
        settings: &EgressSettings,
        audit: Arc<crate::audit::AuditLogs>,
    ) -> Arc<Self> {
        Arc::new(Self {
            proxy: EgressProxy::with_roots(settings.resolver.clone(), &settings.upstream_roots),
            store,
            dir,
            attached: Mutex::new(HashMap::new()),
            changed: tokio::sync::Notify::new(),
            audit,
        })
    }

    /// Every egress decision of the sandbox goes to its audit log too.
    fn audited(&self, egress: &SandboxEgress) {
        let audit = Arc::clone(&self.audit);
        let sandbox = egress.name().to_owned();
        egress.set_sink(Arc::new(move |r: &paddock_backend::EgressRecord| {
            audit.record(&crate::audit::egress_event(&sandbox, r));
        }));
    }

    fn attached(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Attachment>> {
        self.attached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The proxy (records and usage of attached sandboxes).
    pub fn proxy(&self) -> &EgressProxy {
        &self.proxy
    }

    /// The egress state of a Sandbox that has a network.
    pub fn sandbox(&self, key: &Key) -> Option<Arc<SandboxEgress>> {
        self.proxy.get(&key.to_string())
    }

    /// The rules that govern a Sandbox now: `None` when no policy with an egress part does.
    ///
    /// # Errors
    /// A named policy is missing or invalid, or the store failed.
    pub async fn rules_for(&self, key: &Key) -> Result<Option<EgressRules>, PolicyLookupError> {
        let Some(found) = governing(self.store.as_ref(), key).await? else {
            return Ok(None);
        };
        governing_rules(&key.namespace, &found).map_err(PolicyLookupError::Governing)
    }

    /// Gives a Sandbox's workload its network, when a policy asks for one: a namespace served
    /// by the proxy. Returns what the workload joins and the environment it needs.
    ///
    /// # Errors
    /// A named policy is missing or invalid, or the namespace could not be made.
    pub async fn attach(
        &self,
        key: &Key,
        workload: &WorkloadId,
    ) -> Result<Option<(NetworkAttachment, Vec<(String, String)>)>, String> {
        let Some(rules) = self.rules_for(key).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let netns_dir = self.dir.join("netns");
        std::fs::create_dir_all(&netns_dir).map_err(|e| format!("{}: {e}", netns_dir.display()))?;
        let resolv_conf = self.dir.join("resolv.conf");
        if !resolv_conf.exists() {
            std::fs::write(&resolv_conf, paddock_egress::RESOLV_CONF)
                .map_err(|e| format!("{}: {e}", resolv_conf.display()))?;
        }
        let pin = netns_dir.join(workload.as_str());
        let _ = paddock_egress::netns::remove_pin(&pin);
        let netns = tokio::task::spawn_blocking({
            let pin = pin.clone();
            move || Netns::create(&pin)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let name = key.to_string();
        let egress = SandboxEgress::new(name.clone(), rules);
        self.audited(&egress);
        let ca_bundle = match egress.ca() {
            Some(ca) => {
                let path = netns_dir.join(format!("{}.ca.crt", workload.as_str()));
                let mut bundle = std::fs::read_to_string(paddock_runtime::spec::CA_BUNDLE_PATH)
                    .unwrap_or_default();
                if !bundle.is_empty() && !bundle.ends_with('\n') {
                    bundle.push('\n');
                }
                bundle.push_str(ca.pem());
                std::fs::write(&path, bundle).map_err(|e| format!("{}: {e}", path.display()))?;
                Some(path)
            }
            None => None,
        };
        self.save_state(workload, &egress)?;
        let env = egress.sandbox_env(paddock_runtime::spec::CA_BUNDLE_PATH);
        self.proxy
            .attach(&name, &netns, egress)
            .map_err(|e| e.to_string())?;
        self.attached().insert(
            key.clone(),
            Attachment {
                workload: workload.clone(),
                netns: pin.clone(),
            },
        );
        Ok(Some((
            NetworkAttachment {
                netns: pin,
                resolv_conf,
                ca_bundle,
            },
            env,
        )))
    }

    fn state_path(&self, workload: &WorkloadId) -> PathBuf {
        self.dir
            .join("netns")
            .join(format!("{}.state.json", workload.as_str()))
    }

    /// Keeps what a restart needs to serve the sandbox as before: its CA's key (the sandbox
    /// trusts its certificate) and its placeholders (they are in its environment). Root-only.
    fn save_state(&self, workload: &WorkloadId, egress: &SandboxEgress) -> Result<(), String> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let state = serde_json::json!({
            "caKey": egress.ca().map(paddock_egress::SandboxCa::key_pem),
            "placeholders": egress.placeholders(),
        });
        let path = self.state_path(workload);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(state.to_string().as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn load_state(
        &self,
        key: &Key,
        workload: &WorkloadId,
        rules: EgressRules,
    ) -> Arc<SandboxEgress> {
        let name = key.to_string();
        let saved: Option<Value> = std::fs::read(self.state_path(workload))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let ca = saved
            .as_ref()
            .and_then(|s| s.get("caKey"))
            .and_then(Value::as_str)
            .and_then(|pem| paddock_egress::SandboxCa::from_key_pem(&name, pem).ok());
        let placeholders = saved
            .and_then(|s| s.get("placeholders").cloned())
            .and_then(|p| serde_json::from_value(p).ok())
            .unwrap_or_default();
        SandboxEgress::with_state(name, rules, ca, placeholders)
    }

    /// Serves a workload that survived a restart again, if it has a network.
    pub async fn reattach(&self, key: &Key, workload: &WorkloadId) {
        let pin = self.dir.join("netns").join(workload.as_str());
        if !pin.exists() {
            return;
        }
        let rules = match self.rules_for(key).await {
            Ok(Some(rules)) => rules,
            Ok(None) => EgressRules::deny_all(),
            Err(e) => {
                tracing::warn!(sandbox = %key, error = %e, "egress policy unavailable; denying all egress");
                EgressRules::deny_all()
            }
        };
        let egress = self.load_state(key, workload, rules);
        self.audited(&egress);
        match self
            .proxy
            .attach(&key.to_string(), &Netns::open(&pin), egress)
        {
            Ok(_) => {
                self.attached().insert(
                    key.clone(),
                    Attachment {
                        workload: workload.clone(),
                        netns: pin,
                    },
                );
            }
            Err(e) => {
                tracing::warn!(sandbox = %key, error = %e, "cannot serve a re-attached sandbox's egress")
            }
        }
    }

    /// Takes a Sandbox's network away (its workload is gone or going). The record stays
    /// readable until the Sandbox is attached again.
    pub fn detach(&self, key: &Key) {
        let Some(attachment) = self.attached().remove(key) else {
            return;
        };
        self.proxy.detach(&key.to_string());
        let _ = std::fs::remove_file(
            self.dir
                .join("netns")
                .join(format!("{}.ca.crt", attachment.workload.as_str())),
        );
        let _ = std::fs::remove_file(self.state_path(&attachment.workload));
        if let Err(e) = paddock_egress::netns::remove_pin(&attachment.netns) {
            tracing::warn!(sandbox = %key, workload = %attachment.workload, error = %e, "removing a sandbox's network namespace");
        }
    }

    /// Says that policies or the objects naming them may have changed.
    pub fn poke(&self) {
        self.changed.notify_one();
    }

    /// Recomputes every attached Sandbox's rules now.
    pub async fn refresh(&self) {
        let keys: Vec<Key> = self.attached().keys().cloned().collect();
        for key in keys {
            let Some(egress) = self.sandbox(&key) else {
                continue;
            };
            match self.rules_for(&key).await {
                Ok(Some(rules)) => egress.set_rules(rules),
                Ok(None) => egress.set_rules(EgressRules::deny_all()),
                Err(e) => {
                    // Fail closed: a policy that went missing allows nothing.
                    tracing::warn!(sandbox = %key, error = %e, "egress policy unavailable; denying all egress");
                    egress.set_rules(EgressRules::deny_all());
                }
            }
        }
    }

    /// Keeps the rules current until `shutdown`: on every change of a policy, Sandbox, claim or
    /// template, and once a second.
    pub async fn keep_current(self: Arc<Self>, shutdown: CancellationToken) {
        for kind in [
            Some(Kind::Sandbox),
            Some(Kind::SandboxClaim),
            Some(Kind::SandboxTemplate),
            None,
        ] {
            let this = Arc::clone(&self);
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let r = kind.map_or(POLICIES, resource);
                loop {
                    let Ok(mut watch) = this.store.watch(r, Default::default()).await else {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    };
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            event = watch.next() => match event {
                                Some(Ok(_)) => this.poke(),
                                _ => break,
                            },
                        }
                    }
                }
            });
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.changed.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            // Coalesce a burst of changes into one pass.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.refresh().await;
        }
    }

    /// Removes namespace pins no live workload uses (left by a crash).
    pub fn sweep(&self, live: &[WorkloadId]) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("netns")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_suffix(".ca.crt")
                .or_else(|| name.strip_suffix(".state.json"))
            {
                if !live.iter().any(|w| w.as_str() == id) {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            if !live.iter().any(|w| w.as_str() == name) {
                let _ = paddock_egress::netns::remove_pin(&entry.path());
            }
        }
    }
}
