//! `kill -9` of `paddock serve` in the middle of creates and deletes: after a restart every
//! object is consistent (each Sandbox comes back Ready and runs commands, each deleted one is
//! gone) and no sandbox leaks (after deleting everything, no workload, runsc process or mount
//! is left).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use paddock_client::{CreateSandbox, ProcessRequest};
use paddock_testkit::registry::free_port;
use paddock_testkit::serve::ServeProcess;

/// Starts serve on a fresh port each time: other tests may take a port the moment it is freed.
async fn start(home: &Path) -> ServeProcess {
    ServeProcess::start(
        Path::new(env!("CARGO_BIN_EXE_paddock")),
        home,
        free_port(),
        &[],
    )
    .await
}

fn create_request(name: &str) -> CreateSandbox {
    let mut c = CreateSandbox::image("host");
    c.runtime = Some("bwrap".into());
    c.name = Some(name.into());
    c.wait = Some(false);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_creates_and_deletes_loses_nothing_and_leaks_nothing() {
    let home = tempfile::Builder::new()
        .prefix("paddock-crash-")
        .tempdir()
        .unwrap();
    let mut serve = start(home.path()).await;
    let mut created: Vec<String> = Vec::new();
    let mut deleted: Vec<String> = Vec::new();
    for round in 0..4u64 {
        // Some creates and deletes in flight, then the server dies without warning.
        let client = serve.client.clone();
        let names: Vec<String> = (0..4).map(|i| format!("r{round}-{i}")).collect();
        let to_delete: Vec<String> = created.iter().rev().take(2).cloned().collect();
        let work = tokio::spawn({
            let names = names.clone();
            let to_delete = to_delete.clone();
            async move {
                let mut acked = Vec::new();
                let mut gone = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    if client.create_sandbox(&create_request(name)).await.is_ok() {
                        acked.push(name.clone());
                    }
                    if let Some(victim) = to_delete.get(i)
                        && client.sandbox(victim, "default").delete().await.is_ok()
                    {
                        gone.push(victim.clone());
                    }
                }
                (acked, gone)
            }
        });
        tokio::time::sleep(Duration::from_millis(40 + 70 * round)).await;
        serve.kill();
        let (acked, gone) = work.await.unwrap();
        created.extend(acked);
        created.retain(|n| !gone.contains(n));
        deleted.extend(gone);
        serve = start(home.path()).await;
        // Every acknowledged create exists and becomes Ready; every acknowledged delete is gone.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let all = serve.client.sandboxes(Some("default")).await.unwrap();
            let ready: Vec<&str> = all
                .iter()
                .filter(|s| s.ready)
                .map(|s| s.name.as_str())
                .collect();
            let missing: Vec<&String> = created
                .iter()
                .filter(|n| !ready.contains(&n.as_str()))
                .collect();
            let zombies: Vec<&String> = deleted
                .iter()
                .filter(|n| all.iter().any(|s| &s.name == *n))
                .collect();
            if missing.is_empty() && zombies.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: not Ready {missing:?}, not deleted {zombies:?}; state: {all:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for name in &created {
            let out = serve
                .client
                .sandbox(name, "default")
                .exec(&ProcessRequest::argv(["true"]))
                .await
                .unwrap();
            assert_eq!(
                out.exit_code,
                Some(0),
                "{name} runs commands after the crash"
            );
        }
    }
    // Delete everything, stop cleanly: nothing may be left behind.
    for s in serve.client.sandboxes(None).await.unwrap() {
        serve
            .client
            .sandbox(&s.name, &s.namespace)
            .delete()
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !serve.client.sandboxes(None).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "sandboxes were not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = serve.terminate();
    assert!(status.success(), "serve stops cleanly on SIGTERM");
    let workloads = home.path().join("runtime/workloads");
    let left: Vec<_> = std::fs::read_dir(&workloads)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "workload directories left: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(home.path().to_str().unwrap()),
        "mounts left under {}",
        home.path().display()
    );
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.lines()
            .any(|l| l.contains(home.path().to_str().unwrap())),
        "processes left:\n{ps}"
    );
}
