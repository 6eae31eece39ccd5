//! The control core's conformance suite on the embedded tier: the real store (in memory), the
//! engine's ports, and a recording runtime (so it needs no root). The Kubernetes tier runs the
//! same scenarios (crates/paddock-controller/tests/conformance.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use paddock_api::kinds::Kind;
use paddock_api::stored::Object;
use paddock_control::Core;
use paddock_control::ports::BoxFuture;
use paddock_control::testing::{TestClock, Tier};
use paddock_engine::resources::resource;
use paddock_engine::{Engine, EngineConfig};
use paddock_runtime::recording::RecordingRuntime;
use paddock_store::{ListOptions, ObjectStore};
use serde_json::Value;

struct EngineTier {
    engine: Engine,
    core: Arc<Core>,
    store: Arc<dyn ObjectStore>,
    clock: Arc<TestClock>,
    _dir: tempfile::TempDir,
}

async fn engine_tier() -> EngineTier {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock::default());
    let mut config = EngineConfig::new(dir.path(), dir.path().join("no-agent"));
    config.in_memory = true;
    config.clock = clock.clone();
    config.exit_check_interval = std::time::Duration::from_millis(50);
    config.replenish_delay = std::time::Duration::from_secs(1);
    let runtime = Arc::new(RecordingRuntime::new(dir.path().join("workloads")));
    let engine = Engine::start_with_runtime(config, runtime).await.unwrap();
    EngineTier {
        core: engine.core(),
        store: engine.store(),
        engine,
        clock,
        _dir: dir,
    }
}

impl Tier for EngineTier {
    fn core(&self) -> &Arc<Core> {
        &self.core
    }

    fn clock(&self) -> &TestClock {
        &self.clock
    }

    fn create(&self, object: Object) -> BoxFuture<'_, Object> {
        Box::pin(async move {
            let kind = object.kind();
            let created = self
                .store
                .create(resource(kind), object.to_value())
                .await
                .unwrap();
            Object::from_value(kind, created).unwrap()
        })
    }

    fn get(&self, kind: Kind, namespace: &str, name: &str) -> BoxFuture<'_, Option<Object>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Box::pin(async move {
            let value = self
                .store
                .get(resource(kind), &namespace, &name)
                .await
                .ok()?;
            Some(Object::from_value(kind, value).unwrap())
        })
    }

    fn list(&self, kind: Kind, namespace: &str) -> BoxFuture<'_, Vec<Object>> {
        let namespace = namespace.to_owned();
        Box::pin(async move {
            self.store
                .list(resource(kind), ListOptions::namespace(namespace))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|v| Object::from_value(kind, v).unwrap())
                .collect()
        })
    }

    fn patch(&self, kind: Kind, namespace: &str, name: &str, patch: Value) -> BoxFuture<'_, ()> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Box::pin(async move {
            self.store
                .patch(resource(kind), &namespace, &name, patch)
                .await
                .unwrap();
        })
    }
}

impl Drop for EngineTier {
    fn drop(&mut self) {
        // Nothing runs for real; the engine's tasks end with the test's runtime.
        let _ = &self.engine;
    }
}

paddock_control::conformance_suite!(engine_tier());
