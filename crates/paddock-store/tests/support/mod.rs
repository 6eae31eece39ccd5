//! Shared by the scenario tests: the four kinds as resource types, object builders, and a
//! fixture that opens either implementation.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use paddock_store::{
    MemoryStore, ObjectStore, RedbStore, ResourceType, StoreOptions, WatchEvent, WatchEventType,
    WatchStream,
};
use serde_json::{Value, json};

pub const SANDBOX: ResourceType =
    ResourceType::namespaced("agents.x-k8s.io", "sandboxes", "Sandbox");
pub const TEMPLATE: ResourceType = ResourceType::namespaced(
    "extensions.agents.x-k8s.io",
    "sandboxtemplates",
    "SandboxTemplate",
);
pub const CLAIM: ResourceType = ResourceType::namespaced(
    "extensions.agents.x-k8s.io",
    "sandboxclaims",
    "SandboxClaim",
);
pub const POOL: ResourceType = ResourceType::namespaced(
    "extensions.agents.x-k8s.io",
    "sandboxwarmpools",
    "SandboxWarmPool",
);

/// Which implementation a behaviour test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redb,
}

/// An open store; keeps the redb directory alive as long as the store.
pub struct Fixture {
    pub store: Arc<dyn ObjectStore>,
    pub dir: Option<tempfile::TempDir>,
}

impl Backend {
    pub fn open(self) -> Fixture {
        self.open_with(&StoreOptions::default())
    }

    pub fn open_with(self, options: &StoreOptions) -> Fixture {
        match self {
            Backend::Memory => Fixture {
                store: Arc::new(MemoryStore::with_options(options).unwrap()),
                dir: None,
            },
            Backend::Redb => {
                let dir = tempfile::tempdir().unwrap();
                let store = RedbStore::open_with(dir.path().join("store"), options).unwrap();
                Fixture {
                    store: Arc::new(store),
                    dir: Some(dir),
                }
            }
        }
    }
}

/// The `apiVersion` of the current version of `resource`'s group.
pub fn api_version(resource: ResourceType) -> String {
    format!("{}/v1beta1", resource.group)
}

/// A minimal object of `resource`.
pub fn object(resource: ResourceType, namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": api_version(resource),
        "kind": resource.kind,
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"replicas": 1},
    })
}

/// A Sandbox in `default`.
pub fn sandbox(name: &str) -> Value {
    object(SANDBOX, "default", name)
}

/// `object` with an owner reference to `owner`.
pub fn owned_by(mut object: Value, owner: &Value, block_owner_deletion: bool) -> Value {
    let reference = json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": false,
        "blockOwnerDeletion": block_owner_deletion,
    });
    let meta = object["metadata"].as_object_mut().unwrap();
    match meta.get_mut("ownerReferences") {
        Some(Value::Array(refs)) => refs.push(reference),
        _ => {
            meta.insert("ownerReferences".into(), json!([reference]));
        }
    }
    object
}

pub fn with_finalizers(mut object: Value, finalizers: &[&str]) -> Value {
    object["metadata"]["finalizers"] = json!(finalizers);
    object
}

pub fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap()
}

/// The next event, failing the test after 5 s.
pub async fn next_event(watch: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(other) => panic!("expected an event, got {other:?}"),
        Err(_) => panic!("no watch event within 5 s"),
    }
}

/// The next `n` events as (type, name, resourceVersion).
pub async fn next_events(watch: &mut WatchStream, n: usize) -> Vec<(WatchEventType, String, u64)> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        let event = next_event(watch).await;
        events.push((
            event.event_type,
            name(&event.object).to_owned(),
            rv(&event.object),
        ));
    }
    events
}

/// Asserts that nothing arrives within `ms` milliseconds.
pub async fn assert_quiet(watch: &mut WatchStream, ms: u64) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(ms), watch.next()).await {
        panic!("expected no event, got {item:?}");
    }
}
