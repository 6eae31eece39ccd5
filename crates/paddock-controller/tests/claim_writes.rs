//! What warm claims cost the API server, with the whole controller (`run_with`) in process
//! against the in-memory API server charging a real one's costs, and a stand-in kubelet: the
//! writes one claim and its replacement make (by verb and resource), and a burst that must
//! adopt in parallel without conflicts. `bench/run.sh claims` measures the same flows.

use std::collections::BTreeMap;
use std::time::Duration;

use paddock_controller::args::Settings;
use paddock_testkit::kube::cluster::{
    self, POOLS, ReadyClaims, TEMPLATES, check_claims, spawn_kubelet, wait_pool_full, wait_quiet,
};
use paddock_testkit::kube::{ApiCosts, FakeApiServer, RequestRecord};
use tokio_util::sync::CancellationToken;

const NS: &str = "writes";

/// `METHOD plural[/status] [name]` of a write.
fn describe(r: &RequestRecord) -> String {
    let parts: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let i = parts
        .iter()
        .position(|p| *p == "namespaces")
        .unwrap_or_default();
    let plural = parts.get(i + 2).copied().unwrap_or("?");
    let status = if parts.get(i + 4) == Some(&"status") {
        "/status"
    } else {
        ""
    };
    format!("{} {plural}{status}", r.method)
}

struct Cluster {
    api: FakeApiServer,
    ready: ReadyClaims,
    stop: CancellationToken,
    controller: tokio::task::JoinHandle<Result<(), paddock_controller::ControllerError>>,
    kubelet: tokio::task::JoinHandle<()>,
}

impl Cluster {
    async fn start(pool_size: u32) -> Self {
        let api = FakeApiServer::new()
            .recording()
            .with_costs(ApiCosts::TYPICAL);
        let stop = CancellationToken::new();
        let controller = tokio::spawn(paddock_controller::run::run_with(
            api.client(),
            Settings::embedded().expect("valid flags"),
            stop.clone(),
        ));
        let kubelet = spawn_kubelet(&api);
        let ready = ReadyClaims::watch(&api);
        api.insert(TEMPLATES, cluster::template(NS, "python"));
        api.insert(POOLS, cluster::pool(NS, "python-pool", "python", pool_size));
        wait_pool_full(&api, NS, "python-pool", i64::from(pool_size)).await;
        wait_quiet(&api, Duration::from_millis(300)).await;
        api.clear_request_log();
        Self {
            api,
            ready,
            stop,
            controller,
            kubelet,
        }
    }

    async fn stop(self) {
        self.kubelet.abort();
        self.stop.cancel();
        self.controller
            .await
            .expect("join")
            .expect("the controller stops cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_claim_and_its_replacement_cost_eleven_writes_and_no_conflict() {
    let c = Cluster::start(3).await;
    cluster::create_claim(&c.api, NS, "one", "python-pool").await;
    c.ready.ready_at(NS, "one", Duration::from_secs(10)).await;
    wait_pool_full(&c.api, NS, "python-pool", 3).await;
    wait_quiet(&c.api, Duration::from_millis(700)).await;

    let log = c.api.request_log();
    let writes: Vec<String> = log.iter().filter(|r| r.is_write()).map(describe).collect();
    let mut by_kind: BTreeMap<&str, u32> = BTreeMap::new();
    for w in &writes {
        *by_kind.entry(w.as_str()).or_default() += 1;
    }
    let expected: BTreeMap<&str, u32> = [
        // The adoption: the member in one patch, its pod's labels, the member's status
        // (its generation moved), the claim's status, the Event, the claim's annotations.
        ("PATCH sandboxes", 1),
        ("PATCH pods", 1),
        ("PATCH sandboxes/status", 2),
        ("PATCH sandboxclaims/status", 1),
        // The claim's Event, and the replacement's `SandboxPodCreated` and `SandboxReady`
        // (upstream 1.0.4's Sandbox Events; `--disable-sandbox-events` saves those two).
        ("POST events", 3),
        ("PATCH sandboxclaims", 1),
        // The replacement: the member (named, with its pod-name, at create), its pod, and one
        // status once Ready. The pool's status settles where it was: no write.
        ("POST sandboxes", 1),
        ("POST pods", 1),
    ]
    .into();
    assert_eq!(by_kind, expected, "writes in order: {writes:#?}");
    assert!(
        log.iter().all(|r| r.code != 409),
        "no conflicts: {writes:#?}"
    );
    assert!(
        log.iter().all(|r| r.is_write() || r.watch),
        "every read is served from the cache"
    );
    // The claim's metadata is written once, after the status that made it Ready.
    let claim_writes: Vec<&String> = writes
        .iter()
        .filter(|w| w.contains("sandboxclaims"))
        .collect();
    assert_eq!(
        claim_writes,
        ["PATCH sandboxclaims/status", "PATCH sandboxclaims"]
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_claims_is_handed_different_members_without_racing() {
    let n = 20;
    let c = Cluster::start(n).await;
    let names: Vec<String> = (0..n).map(|i| format!("burst-{i}")).collect();
    let creates = names.iter().map(|name| {
        let api = c.api.clone();
        let name = name.clone();
        tokio::spawn(async move { cluster::create_claim(&api, NS, &name, "python-pool").await })
    });
    for r in futures::future::join_all(creates).await {
        r.expect("create");
    }
    for name in &names {
        c.ready.ready_at(NS, name, Duration::from_secs(10)).await;
    }
    let warm = check_claims(&c.api, NS, &names).expect("every claim bound once");
    assert_eq!(warm, names.len(), "every claim adopted a warm member");
    let conflicts: Vec<String> = c
        .api
        .request_log()
        .iter()
        .filter(|r| r.code == 409)
        .map(describe)
        .collect();
    // Claims never race each other (each has its own member). A member's own status write can
    // still land between a claim's read and its adoption patch: that one 409 is retried at once.
    // The storm this guards against was ~11 per claim on members and ~25 on claims.
    assert!(
        conflicts.iter().all(|c| c == "PATCH sandboxes") && conflicts.len() <= 2,
        "conflicts: {conflicts:?}"
    );
    c.stop().await;
}
