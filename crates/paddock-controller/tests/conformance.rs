//! The control core's conformance suite on the Kubernetes tier: the controller's ports over the
//! in-memory API server, with a stand-in kubelet that runs every pod at once. The embedded tier
//! runs the same scenarios (crates/paddock-engine/tests/conformance.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use paddock_api::kinds::Kind;
use paddock_api::stored::Object;
use paddock_control::ports::BoxFuture;
use paddock_control::testing::{TestClock, Tier};
use paddock_control::{Core, CoreConfig, LogEvents};
use paddock_controller::run::kube_core;
use paddock_controller::workloads::{ChildScope, KubeWorkloads};
use paddock_testkit::kube::FakeApiServer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct KubeTier {
    api: FakeApiServer,
    core: Arc<Core>,
    clock: Arc<TestClock>,
    stop: CancellationToken,
}

fn resource(kind: Kind) -> String {
    format!("{}/{}", kind.group(), kind.plural())
}

/// Plays the kubelet: every pod runs, is Ready and gets an address as soon as it exists.
async fn kubelet(api: FakeApiServer, stop: CancellationToken) {
    let mut next_ip = 2u32;
    loop {
        for pod in api.list("/pods") {
            if pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running") {
                continue;
            }
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let ip = format!("10.0.{}.{}", next_ip / 250, next_ip % 250 + 1);
            next_ip += 1;
            let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}});
            api.merge("/pods", ns, name, &status, true);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

async fn kube_tier() -> KubeTier {
    let api = FakeApiServer::new();
    let client = api.client();
    let clock = Arc::new(TestClock::default());
    let (core, children) = kube_core(
        &client,
        CoreConfig {
            replenish_delay: Duration::from_secs(1),
            // As `paddock controller` runs: the scenarios hold with its write savings.
            new_pod_status_settle: CoreConfig::API_SERVER_WRITE_SAVING.0,
            pool_status_coalesce: CoreConfig::API_SERVER_WRITE_SAVING.1,
            ..CoreConfig::default()
        },
        None,
        clock.clone(),
        Arc::new(LogEvents),
    );
    let stop = CancellationToken::new();
    let watches =
        KubeWorkloads::spawn_watches(&client, children, core.waker(), ChildScope::All, true);
    let mut tasks = core.start(stop.clone());
    tokio::spawn(kubelet(api.clone(), stop.clone()));
    let ended = stop.clone();
    tokio::spawn(async move {
        ended.cancelled().await;
        for w in watches {
            w.abort();
        }
        while tasks.join_next().await.is_some() {}
    });
    KubeTier {
        api,
        core,
        clock,
        stop,
    }
}

impl Drop for KubeTier {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Tier for KubeTier {
    fn core(&self) -> &Arc<Core> {
        &self.core
    }

    fn clock(&self) -> &TestClock {
        &self.clock
    }

    fn create(&self, object: Object) -> BoxFuture<'_, Object> {
        Box::pin(async move {
            let kind = object.kind();
            let stored = self.api.insert(&resource(kind), object.to_value());
            Object::from_value(kind, stored).unwrap()
        })
    }

    fn get(&self, kind: Kind, namespace: &str, name: &str) -> BoxFuture<'_, Option<Object>> {
        let found = self.api.get(&resource(kind), namespace, name);
        Box::pin(async move { found.map(|v| Object::from_value(kind, v).unwrap()) })
    }

    fn list(&self, kind: Kind, namespace: &str) -> BoxFuture<'_, Vec<Object>> {
        let all: Vec<Object> = self
            .api
            .list(&resource(kind))
            .into_iter()
            .filter(|v| v.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace))
            .map(|v| Object::from_value(kind, v).unwrap())
            .collect();
        Box::pin(async move { all })
    }

    fn patch(&self, kind: Kind, namespace: &str, name: &str, patch: Value) -> BoxFuture<'_, ()> {
        let code = self
            .api
            .merge(&resource(kind), namespace, name, &patch, false);
        assert!(code.is_success(), "patch {name}: {code}");
        Box::pin(async {})
    }
}

paddock_control::conformance_suite!(kube_tier());
