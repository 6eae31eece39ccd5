//! `paddock serve`'s default pools: for each runtime and image that bare sandboxes are created
//! from (`paddock run`, `Sandbox.create()` without a template), a SandboxTemplate and
//! SandboxWarmPool named `paddock-<runtime>-<image>` keep a few sandboxes booted, so a create
//! claims a fresh, never-used one instead of waiting for gVisor to boot. A claimed sandbox is
//! discarded with its claim; isolation is never traded for speed.
//!
//! Sizing follows demand: a pool starts at `size` replicas (the host image on gVisor, in the
//! `default` namespace, from the start; others on their first use), grows by one each time a
//! claim finds it empty (up to `max`), and shrinks back to `size` after `idle_after` unused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use paddock_api::kinds::Kind;
use paddock_api::names;
use paddock_api::stored::Object;
use paddock_api::v1beta1::{Sandbox, SandboxWarmPool};
use paddock_backend::ApiError;
use serde_json::{Value, json};

/// How big default pools are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultPoolSettings {
    /// Ready sandboxes kept per runtime and image; `0` turns default pools off.
    pub size: i32,
    /// The most a pool grows to under demand.
    pub max: i32,
    /// A pool unused this long shrinks back to `size`.
    pub idle_after: Duration,
}

impl Default for DefaultPoolSettings {
    fn default() -> Self {
        Self {
            size: 2,
            max: 8,
            idle_after: Duration::from_secs(600),
        }
    }
}

impl DefaultPoolSettings {
    /// Default pools off.
    pub fn off() -> Self {
        Self {
            size: 0,
            ..Self::default()
        }
    }
}

/// The runtime and image a bare sandbox runs with, when a default pool can serve it.
pub(crate) fn pool_key(sandbox: &Sandbox) -> Option<(&'static str, String)> {
    let spec = &sandbox.spec.blueprint.pod_template.spec;
    let [container] = spec.containers.as_slice() else {
        return None;
    };
    let image = container.image.clone().filter(|i| !i.is_empty())?;
    let runtime = match spec.runtime_class_name.as_deref() {
        None | Some("gvisor" | "runsc") => "gvisor",
        Some("bwrap") => "bwrap",
        Some(_) => return None,
    };
    Some((runtime, image))
}

/// The template of a default pool: the bare sandbox's pod template, its runtime spelled out.
pub(crate) fn template_for(sandbox: &Sandbox, namespace: &str, name: &str, runtime: &str) -> Value {
    let mut pod_template =
        serde_json::to_value(&sandbox.spec.blueprint.pod_template).unwrap_or_default();
    pod_template["spec"]["runtimeClassName"] = json!(runtime);
    // Members carry the pool's name in their pod template, so listings can tell them apart.
    pod_template["metadata"]["labels"][names::DEFAULT_POOL] = json!(name);
    json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
        "kind": "SandboxTemplate",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {names::DEFAULT_POOL: "true"},
        },
        "spec": {
            "podTemplate": pod_template,
            "networkPolicyManagement": "Unmanaged",
        },
    })
}

/// The warm pool of a default pool.
pub(crate) fn pool_for(namespace: &str, name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
        "kind": "SandboxWarmPool",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {names::DEFAULT_POOL: "true"},
        },
        "spec": {"replicas": replicas, "sandboxTemplateRef": {"name": name}},
    })
}

/// The pod template of a bare host-image sandbox, as the gateway builds it (no command: idle).
pub(crate) fn bare_host_sandbox(namespace: &str) -> Option<Sandbox> {
    serde_json::from_value(json!({
        "apiVersion": "agents.x-k8s.io/v1beta1",
        "kind": "Sandbox",
        "metadata": {"name": "default-pool-seed", "namespace": namespace},
        "spec": {"podTemplate": {
            "metadata": {"annotations": {paddock_backend::annotations::IDLE: "true"}},
            "spec": {"containers": [{"name": "main", "image": "host"}]},
        }},
    }))
    .ok()
}

/// What the pools were asked for: when each was last claimed from.
#[derive(Debug, Default)]
pub(crate) struct Demand {
    last_claim: Mutex<HashMap<(String, String), Instant>>,
}

impl Demand {
    pub(crate) fn claimed(&self, namespace: &str, pool: &str) {
        if let Ok(mut last) = self.last_claim.lock() {
            last.insert((namespace.to_owned(), pool.to_owned()), Instant::now());
        }
    }

    /// The pools not claimed from for `idle_after`.
    pub(crate) fn idle(&self, idle_after: Duration) -> Vec<(String, String)> {
        let Ok(last) = self.last_claim.lock() else {
            return Vec::new();
        };
        last.iter()
            .filter(|(_, at)| at.elapsed() >= idle_after)
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// The replicas a pool should have after a claim found it with `ready` members: one more when
/// it was empty, up to `max`.
pub(crate) fn grown(settings: &DefaultPoolSettings, pool: &SandboxWarmPool, ready: i32) -> i32 {
    let replicas = pool.spec.effective_replicas();
    if ready == 0 && replicas < settings.max {
        replicas + 1
    } else {
        replicas
    }
}

/// Decodes an object this module built.
pub(crate) fn object(kind: Kind, value: Value) -> Result<Object, ApiError> {
    Object::from_value(kind, value)
        .map_err(|e| ApiError::internal(format!("a default pool's {kind} does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn bare(runtime: Option<&str>, image: &str) -> Sandbox {
        let mut s = bare_host_sandbox("default").unwrap();
        let spec = &mut s.spec.blueprint.pod_template.spec;
        spec.containers[0].image = Some(image.to_owned());
        spec.runtime_class_name = runtime.map(str::to_owned);
        s
    }

    #[test]
    fn bare_sandboxes_map_to_one_pool_per_runtime_and_image() {
        assert_eq!(
            pool_key(&bare(None, "host")),
            Some(("gvisor", "host".to_owned()))
        );
        assert_eq!(
            pool_key(&bare(Some("runsc"), "host")),
            Some(("gvisor", "host".to_owned()))
        );
        assert_eq!(
            pool_key(&bare(Some("bwrap"), "127.0.0.1:5000/busybox:latest")),
            Some(("bwrap", "127.0.0.1:5000/busybox:latest".to_owned()))
        );
        assert_eq!(pool_key(&bare(Some("kata"), "host")), None);
        assert_eq!(
            names::default_pool_name("gvisor", "host"),
            "paddock-gvisor-host"
        );
        let other = names::default_pool_name("bwrap", "127.0.0.1:5000/busybox:latest");
        assert!(
            other.starts_with("paddock-bwrap-") && other.len() <= 63,
            "{other}"
        );
    }

    #[test]
    fn the_template_is_the_bare_sandbox_with_its_runtime_spelled_out() {
        let t = template_for(
            &bare(None, "host"),
            "default",
            "paddock-gvisor-host",
            "gvisor",
        );
        let spec = &t["spec"]["podTemplate"]["spec"];
        assert_eq!(spec["runtimeClassName"], "gvisor");
        assert_eq!(spec["containers"][0]["image"], "host");
        assert_eq!(
            t["spec"]["podTemplate"]["metadata"]["annotations"][paddock_backend::annotations::IDLE],
            "true"
        );
        assert_eq!(
            t["spec"]["podTemplate"]["metadata"]["labels"][names::DEFAULT_POOL],
            "paddock-gvisor-host"
        );
        object(Kind::SandboxTemplate, t).unwrap();
        object(
            Kind::SandboxWarmPool,
            pool_for("default", "paddock-gvisor-host", 2),
        )
        .unwrap();
    }

    #[test]
    fn an_empty_pool_grows_by_one_up_to_the_max() {
        let settings = DefaultPoolSettings {
            size: 2,
            max: 3,
            ..DefaultPoolSettings::default()
        };
        let pool: SandboxWarmPool = serde_json::from_value(pool_for("default", "p", 2)).unwrap();
        assert_eq!(grown(&settings, &pool, 0), 3);
        assert_eq!(grown(&settings, &pool, 1), 2);
        let full: SandboxWarmPool = serde_json::from_value(pool_for("default", "p", 3)).unwrap();
        assert_eq!(grown(&settings, &full, 0), 3);
    }
}
