//! The `paddock-controller` binary during a burst of 50 warm claims, against the in-memory API
//! server over HTTP charging a real one's costs, with a stand-in kubelet: killed with SIGKILL
//! mid-burst and restarted, and two controllers reconciling at once (a leader change whose old
//! leader is still writing). Either way no claim is lost, no member goes to two claims, and no
//! claim keeps two Sandboxes.
#![cfg(feature = "kubernetes")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use paddock_testkit::kube::cluster::{
    self, POOLS, ReadyClaims, TEMPLATES, check_claims, spawn_kubelet, wait_pool_full,
    write_kubeconfig,
};
use paddock_testkit::kube::{ApiCosts, FakeApiServer};
use tokio_util::sync::CancellationToken;

const NS: &str = "burst";
const CLAIMS: usize = 50;

struct Fixture {
    api: FakeApiServer,
    kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
    stop_api: CancellationToken,
    kubelet: tokio::task::JoinHandle<()>,
    ready: ReadyClaims,
}

impl Fixture {
    async fn start() -> Self {
        let api = FakeApiServer::new().with_costs(ApiCosts::TYPICAL);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop_api = CancellationToken::new();
        tokio::spawn(api.clone().serve(listener, stop_api.clone()));
        let dir = tempfile::tempdir().expect("tmp");
        let kubeconfig = write_kubeconfig(dir.path(), addr, None);
        let kubelet = spawn_kubelet(&api);
        let ready = ReadyClaims::watch(&api);
        Self {
            api,
            kubeconfig,
            _dir: dir,
            stop_api,
            kubelet,
            ready,
        }
    }

    fn controller(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_paddock-controller"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "--extensions=true",
                "--leader-elect=false",
                "--enable-webhook=false",
                "--metrics-bind-address=0",
                "--health-probe-bind-address=0",
            ])
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start paddock-controller")
    }

    async fn full_pool(&self) {
        self.api.insert(TEMPLATES, cluster::template(NS, "python"));
        self.api.insert(
            POOLS,
            cluster::pool(
                NS,
                "python-pool",
                "python",
                u32::try_from(CLAIMS).expect("u32"),
            ),
        );
        self.pool_refilled().await;
    }

    async fn pool_refilled(&self) {
        let size = i64::try_from(CLAIMS).expect("i64");
        wait_pool_full(&self.api, NS, "python-pool", size).await;
    }

    async fn burst(&self) -> Vec<String> {
        let names: Vec<String> = (0..CLAIMS).map(|i| format!("claim-{i}")).collect();
        for name in &names {
            let api = self.api.clone();
            let name = name.clone();
            tokio::spawn(
                async move { cluster::create_claim(&api, NS, &name, "python-pool").await },
            );
        }
        names
    }

    /// Every claim Ready and bound once; the pool back to full.
    async fn settled(&self, names: &[String]) {
        for name in names {
            self.ready.ready_at(NS, name, Duration::from_secs(30)).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match check_claims(&self.api, NS, names) {
                Ok(_) => break,
                // A claim that briefly controls a second Sandbox (two controllers each adopted
                // one for it) gets the extra deleted; anything else is final.
                Err(e) if e.contains("controls") && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        self.pool_refilled().await;
    }

    fn stop(self) {
        self.kubelet.abort();
        self.stop_api.cancel();
    }
}

fn kill_9(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_burst_loses_no_claim_and_hands_no_member_twice() {
    let f = Fixture::start().await;
    let mut first = f.controller();
    f.full_pool().await;
    let names = f.burst().await;
    // Mid-burst: some claims adopted, some adopting, some not seen yet.
    cluster::wait_for("the first adoptions", Duration::from_secs(10), || {
        let adopted = f
            .api
            .list(cluster::SANDBOXES)
            .iter()
            .filter(|s| {
                s.pointer("/metadata/ownerReferences/0/kind") == Some(&"SandboxClaim".into())
            })
            .count();
        (adopted >= 5).then_some(())
    })
    .await;
    kill_9(&mut first);
    let bound_at_kill = f
        .api
        .list(cluster::CLAIMS)
        .iter()
        .filter(|c| c.pointer("/status/sandbox/name").is_some())
        .count();
    assert!(
        bound_at_kill < CLAIMS,
        "the kill came after the burst ({bound_at_kill} bound)"
    );
    let mut second = f.controller();
    f.settled(&names).await;
    let warm = check_claims(&f.api, NS, &names).expect("bound once");
    assert!(
        warm >= CLAIMS / 2,
        "most claims adopted warm members ({warm})"
    );
    kill_9(&mut second);
    f.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_at_once_hand_no_member_twice() {
    let f = Fixture::start().await;
    let mut a = f.controller();
    f.full_pool().await;
    let mut b = f.controller();
    // Both have listed everything before the burst.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let names = f.burst().await;
    f.settled(&names).await;
    kill_9(&mut a);
    kill_9(&mut b);
    f.stop();
}
