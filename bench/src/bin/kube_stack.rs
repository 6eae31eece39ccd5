//! A stand-in cluster for clients in other processes (the upstream Python SDK's benchmark in
//! `bench/run.sh sdk-upstream`): the in-process API server charging a real one's costs, served
//! over HTTP on loopback, with paddock's controller and a stand-in kubelet, and a warm pool
//! `python-pool` of N members in namespace `sdk`. Prints the API server's port once the pool is
//! full, then runs until its standard input closes.
//!
//! Usage: `kube_stack [POOL_SIZE]` (default 5).

use std::io::Read as _;
use std::time::Duration;

use paddock_controller::args::Settings;
use paddock_testkit::kube::cluster::{self, POOLS, TEMPLATES, spawn_kubelet, wait_pool_full};
use paddock_testkit::kube::{ApiCosts, FakeApiServer};
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let size: u32 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 5,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let api = FakeApiServer::new().with_costs(ApiCosts::TYPICAL);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let stop = CancellationToken::new();
        tokio::spawn(api.clone().serve(listener, stop.clone()));
        let settings = Settings::embedded()?;
        let controller = tokio::spawn(paddock_controller::run::run_with(
            api.client(),
            settings,
            stop.clone(),
        ));
        let kubelet = spawn_kubelet(&api);
        api.insert(TEMPLATES, cluster::template("sdk", "python"));
        api.insert(POOLS, cluster::pool("sdk", "python-pool", "python", size));
        wait_pool_full(&api, "sdk", "python-pool", i64::from(size)).await;
        println!("{port}");
        // Until the driver closes our standard input.
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await?;
        kubelet.abort();
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
        Ok(())
    })
}
