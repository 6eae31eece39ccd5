//! The Sandboxes the gateway routes to, kept current by one watch (upstream router's
//! `--cache-enabled` / `--cache-namespace`), so a proxied request finds its sandbox's address
//! in memory instead of waiting for a GET. A sandbox the cache does not hold yet (created a
//! moment ago, or outside the cached namespace) is still looked up with a GET.

use std::sync::Arc;

use futures::StreamExt;
use kube::Client;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use paddock_api::v1beta1::Sandbox;
use tokio::task::JoinHandle;

/// Which Sandboxes the gateway keeps in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SandboxCacheScope {
    /// None: every request GETs its Sandbox (upstream's default).
    Off,
    /// Every namespace the gateway may list.
    #[default]
    AllNamespaces,
    /// One namespace.
    Namespace(String),
}

impl SandboxCacheScope {
    /// The scope upstream's router flags ask for: `--cache-enabled` and `--cache-namespace`
    /// ("" = every namespace); `None` when the namespace is not a namespace name.
    pub fn from_flags(enabled: bool, namespace: &str) -> Option<Self> {
        if !enabled {
            return Some(Self::Off);
        }
        if namespace.is_empty() {
            return Some(Self::AllNamespaces);
        }
        paddock_api::syntax::dns1123_label(namespace)
            .is_empty()
            .then(|| Self::Namespace(namespace.to_owned()))
    }
}

/// A watch-fed store of Sandboxes.
#[derive(Debug)]
pub struct SandboxCache {
    store: Store<Sandbox>,
    task: JoinHandle<()>,
    /// Cached entries replaced or removed by the watch, by namespace
    /// (`sandbox_router_cache_invalidations_total`).
    invalidations: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl Drop for SandboxCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SandboxCache {
    /// Starts the watch; `None` for [`SandboxCacheScope::Off`]. The watch relists with backoff
    /// on its own when the API server ends it or the connection breaks.
    pub fn spawn(client: Client, scope: &SandboxCacheScope) -> Option<Arc<Self>> {
        let api: kube::Api<Sandbox> = match scope {
            SandboxCacheScope::Off => return None,
            SandboxCacheScope::AllNamespaces => kube::Api::all(client),
            SandboxCacheScope::Namespace(ns) => kube::Api::namespaced(client, ns),
        };
        let (store, writer) = reflector::store();
        let cached = store.clone();
        let stream = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(|sb: &mut Sandbox| sb.metadata.managed_fields = None)
            .map(move |event| {
                // Before the reflector applies it: does it replace or remove an entry?
                let invalidated = match &event {
                    Ok(watcher::Event::Apply(sb) | watcher::Event::Delete(sb)) => {
                        sb.metadata.namespace.clone().filter(|ns| {
                            let name = sb.metadata.name.as_deref().unwrap_or_default();
                            cached.get(&ObjectRef::new(name).within(ns)).is_some()
                        })
                    }
                    _ => None,
                };
                (event, invalidated)
            });
        let invalidations: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>> =
            Arc::default();
        let counts = invalidations.clone();
        let task = tokio::spawn(async move {
            let mut writer = writer;
            let mut stream = std::pin::pin!(stream);
            while let Some((event, invalidated)) = stream.next().await {
                match event {
                    Ok(event) => writer.apply_watcher_event(&event),
                    Err(e) => {
                        tracing::debug!(error = %e, "sandbox cache watch failed; relisting");
                        continue;
                    }
                }
                if let Some(ns) = invalidated
                    && let Ok(mut c) = counts.lock()
                {
                    *c.entry(ns).or_default() += 1;
                }
            }
        });
        Some(Arc::new(Self {
            store,
            task,
            invalidations,
        }))
    }

    /// `sandbox_router_cache_invalidations_total` as exposition text.
    pub fn metrics_text(&self) -> String {
        let mut out = String::from(
            "# HELP sandbox_router_cache_invalidations Cached Sandboxes replaced or removed by the watch.\n# TYPE sandbox_router_cache_invalidations counter\n",
        );
        if let Ok(c) = self.invalidations.lock() {
            for (ns, n) in c.iter() {
                out.push_str(&format!(
                    "sandbox_router_cache_invalidations_total{{sandbox_namespace=\"{ns}\"}} {n}\n"
                ));
            }
        }
        out.push_str("# EOF\n");
        out
    }

    /// The cached Sandbox, if the cache holds it.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Sandbox>> {
        self.store.get(&ObjectRef::new(name).within(namespace))
    }
}
