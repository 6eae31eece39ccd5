//! Shared scaffolding of the scripted loop tests: the control core on the controller's ports,
//! with an API server the test answers request by request, caches filled by hand, and a fixed
//! clock.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_api::stored::StoredKind;
use paddock_control::{Core, CoreConfig, LogEvents, ManualClock, WatchEvent};
use paddock_controller::run::kube_core;
use paddock_controller::workloads::ChildWriters;
pub use paddock_testkit::kube::scripted::{
    ApiHandle, Received, expect, expect_no_more, scripted_client, stored, typed,
};

/// The fixed "now" of every scenario.
pub fn now() -> Time {
    Time("2026-09-01T12:00:00Z".parse().expect("timestamp"))
}

/// A core over empty caches and a scripted API server.
pub fn context() -> (Arc<Core>, ChildWriters, ApiHandle) {
    context_with(CoreConfig::default())
}

/// As [`context`] with custom knobs.
pub fn context_with(config: CoreConfig) -> (Arc<Core>, ChildWriters, ApiHandle) {
    let (client, handle) = scripted_client();
    let (core, mut children) = kube_core(
        &client,
        config,
        None,
        Arc::new(ManualClock::new(now())),
        Arc::new(LogEvents),
    );
    children.mark_ready();
    (core, children, handle)
}

/// Puts an object in the core's cache, as its watch would.
pub fn put<K: StoredKind>(core: &Core, object: K) {
    core.observe(K::KIND, WatchEvent::Applied(object.into_object()));
}
