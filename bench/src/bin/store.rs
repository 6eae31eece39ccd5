//! Benchmarks the durable object store (redb; every acknowledged write fsynced): create, update
//! and get latency and throughput with 1 and 50 concurrent writers, the warm-pool claim path
//! (three dependent writes per claim, 50 claims at once), reads under write load, and watch
//! delivery latency; for reference, the same engine in memory (no disk).
//!
//! Usage: `store [DIR]` (default: a fresh temporary directory; use a directory on the disk
//! `paddock serve` would use, since fsync cost is the disk's).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paddock_bench::Percentiles;
use paddock_store::{ObjectStore, RedbStore, ResourceType, WatchOptions, WatchStart};
use serde_json::{Value, json};

const SANDBOX: ResourceType = ResourceType::namespaced("agents.x-k8s.io", "sandboxes", "Sandbox");
const CLAIM: ResourceType = ResourceType::namespaced(
    "extensions.agents.x-k8s.io",
    "sandboxclaims",
    "SandboxClaim",
);

const SINGLE_WRITER_OPS: usize = 2000;
const WRITERS: usize = 50;
const OPS_PER_WRITER: usize = 100;
const CLAIMS_PER_BURST: usize = 50;
const CLAIM_BURSTS: usize = 20;
const WATCH_SAMPLES: usize = 2000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A Sandbox shaped like a warm-pool member (about 1.3 KB of JSON).
fn sandbox(name: &str) -> Value {
    json!({
        "apiVersion": "agents.x-k8s.io/v1beta1",
        "kind": "Sandbox",
        "metadata": {
            "namespace": "default",
            "name": name,
            "labels": {
                "agents.x-k8s.io/warm-pool-sandbox": "1a2b3c4d",
                "agents.x-k8s.io/sandbox-template-ref-hash": "5e6f7a8b",
                "agents.x-k8s.io/sandbox-template-hash": "9c0d1e2f",
                "agents.x-k8s.io/created-by": "controller",
            },
            "annotations": {"agents.x-k8s.io/sandbox-template-ref": "python"},
        },
        "spec": {
            "operatingMode": "Running",
            "podTemplate": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "runtimeClassName": "gvisor",
                    "containers": [{
                        "name": "runtime",
                        "image": "registry.example.com/python-runtime-sandbox:v1.0.0",
                        "command": ["/usr/local/bin/agent"],
                        "args": ["--listen", "0.0.0.0:8888"],
                        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "HOME", "value": "/home/user"}],
                        "ports": [{"containerPort": 8888, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "250m", "memory": "512Mi"}},
                        "workingDir": "/home/user",
                    }],
                },
            },
        },
    })
}

fn claim(name: &str) -> Value {
    json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
        "kind": "SandboxClaim",
        "metadata": {"namespace": "default", "name": name, "labels": {"agents.x-k8s.io/created-by": "python-client"}},
        "spec": {"warmPoolRef": {"name": "python"}},
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_latency(label: &str, samples: &mut [f64]) {
    if let Some(p) = Percentiles::of(samples) {
        println!(
            "{label:<52} p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            p.p50, p.p90, p.p99, p.max
        );
    }
}

fn print_rate(label: &str, ops: usize, elapsed: Duration) {
    println!(
        "{label:<52} {:.0} ops/s",
        ops as f64 / elapsed.as_secs_f64()
    );
}

async fn single_writer(store: &dyn ObjectStore) -> Result<(), BoxError> {
    let mut created = Vec::with_capacity(SINGLE_WRITER_OPS);
    let mut samples = Vec::with_capacity(SINGLE_WRITER_OPS);
    let started = Instant::now();
    for i in 0..SINGLE_WRITER_OPS {
        let t = Instant::now();
        created.push(
            store
                .create(SANDBOX, sandbox(&format!("single-{i}")))
                .await?,
        );
        samples.push(ms(t.elapsed()));
    }
    let elapsed = started.elapsed();
    print_latency("create, 1 writer", &mut samples);
    print_rate("create throughput, 1 writer", SINGLE_WRITER_OPS, elapsed);

    samples.clear();
    let started = Instant::now();
    for object in &mut created {
        object["spec"]["operatingMode"] = json!("Suspended");
        let t = Instant::now();
        *object = store.update(SANDBOX, object.clone()).await?;
        samples.push(ms(t.elapsed()));
    }
    let elapsed = started.elapsed();
    print_latency("update, 1 writer", &mut samples);
    print_rate("update throughput, 1 writer", SINGLE_WRITER_OPS, elapsed);

    samples.clear();
    let started = Instant::now();
    for i in 0..SINGLE_WRITER_OPS {
        let t = Instant::now();
        store
            .get(SANDBOX, "default", &format!("single-{i}"))
            .await?;
        samples.push(ms(t.elapsed()));
    }
    let elapsed = started.elapsed();
    print_latency("get, idle store", &mut samples);
    print_rate("get throughput, 1 reader", SINGLE_WRITER_OPS, elapsed);
    Ok(())
}

/// The engine's own cost, without a disk: sequential updates on the in-memory store.
async fn engine_round_trip(store: &dyn ObjectStore) -> Result<(), BoxError> {
    let mut object = store.create(SANDBOX, sandbox("engine")).await?;
    let mut samples = Vec::with_capacity(SINGLE_WRITER_OPS);
    for i in 0..SINGLE_WRITER_OPS {
        object["spec"]["seq"] = json!(i);
        let t = Instant::now();
        object = store.update(SANDBOX, object).await?;
        samples.push(ms(t.elapsed()));
    }
    print_latency("update, 1 writer, in-memory (no disk)", &mut samples);
    Ok(())
}

async fn concurrent_writers(store: Arc<dyn ObjectStore>) -> Result<(), BoxError> {
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    let mut gets = Vec::new();
    let stop_reader = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let store = store.clone();
        let stop = stop_reader.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let _ = store
                    .get(
                        SANDBOX,
                        "default",
                        &format!("single-{}", i % SINGLE_WRITER_OPS),
                    )
                    .await;
                samples.push(ms(t.elapsed()));
                i += 1;
                tokio::task::yield_now().await;
            }
            samples
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (mut c, mut u) = (Vec::new(), Vec::new());
            let mut objects = Vec::new();
            for i in 0..OPS_PER_WRITER {
                let t = Instant::now();
                objects.push(store.create(SANDBOX, sandbox(&format!("w{w}-{i}"))).await?);
                c.push(ms(t.elapsed()));
            }
            for object in &mut objects {
                object["spec"]["operatingMode"] = json!("Suspended");
                let t = Instant::now();
                *object = store.update(SANDBOX, object.clone()).await?;
                u.push(ms(t.elapsed()));
            }
            Ok::<_, paddock_store::StoreError>((c, u))
        }));
    }
    for task in tasks {
        let (c, u) = task.await??;
        creates.extend(c);
        updates.extend(u);
    }
    let elapsed = started.elapsed();
    stop_reader.store(true, std::sync::atomic::Ordering::Relaxed);
    gets.extend(reader.await?);
    print_latency(&format!("create, {WRITERS} writers"), &mut creates);
    print_latency(&format!("update, {WRITERS} writers"), &mut updates);
    print_rate(
        &format!("create+update throughput, {WRITERS} writers"),
        2 * WRITERS * OPS_PER_WRITER,
        elapsed,
    );
    print_latency(&format!("get while {WRITERS} writers write"), &mut gets);
    Ok(())
}

/// One warm claim as the claim controller performs it: mark the claim (optimistic lock), adopt
/// the member (one update of its metadata), then write the claim's status.
async fn claim_once(
    store: &dyn ObjectStore,
    claim_obj: Value,
    member: Value,
) -> Result<(), BoxError> {
    let mut claim_obj = claim_obj;
    claim_obj["metadata"]["annotations"] =
        json!({"agents.x-k8s.io/sandbox-name": member["metadata"]["name"]});
    let claim_obj = store.update(CLAIM, claim_obj).await?;
    let mut adopted = member;
    let labels = adopted["metadata"]["labels"]
        .as_object_mut()
        .ok_or("member without labels")?;
    labels.remove("agents.x-k8s.io/warm-pool-sandbox");
    labels.insert("agents.x-k8s.io/launch-type".into(), json!("warm"));
    labels.insert(
        "agents.x-k8s.io/claim-uid".into(),
        claim_obj["metadata"]["uid"].clone(),
    );
    adopted["metadata"]["ownerReferences"] = json!([{
        "apiVersion": claim_obj["apiVersion"], "kind": "SandboxClaim", "name": claim_obj["metadata"]["name"],
        "uid": claim_obj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    }]);
    let adopted = store.update(SANDBOX, adopted).await?;
    let mut ready = claim_obj;
    ready["status"] = json!({
        "sandbox": {"name": adopted["metadata"]["name"], "podIPs": ["10.0.0.7"]},
        "conditions": [{"type": "Ready", "status": "True", "reason": "DependenciesReady", "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}],
    });
    store.update_status(CLAIM, ready).await?;
    Ok(())
}

async fn claim_path(store: Arc<dyn ObjectStore>, label: &str) -> Result<(), BoxError> {
    let mut samples = Vec::new();
    for burst in 0..CLAIM_BURSTS {
        let mut prepared = Vec::new();
        for i in 0..CLAIMS_PER_BURST {
            let member = store
                .create(SANDBOX, sandbox(&format!("{label}-pool-{burst}-{i}")))
                .await?;
            let claim_obj = store
                .create(CLAIM, claim(&format!("{label}-claim-{burst}-{i}")))
                .await?;
            prepared.push((claim_obj, member));
        }
        let mut tasks = Vec::new();
        for (claim_obj, member) in prepared {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                claim_once(&*store, claim_obj, member)
                    .await
                    .map(|()| ms(t.elapsed()))
                    .map_err(|e| e.to_string())
            }));
        }
        for task in tasks {
            samples.push(task.await??);
        }
    }
    print_latency(
        &format!("claim path (3 writes), {CLAIMS_PER_BURST} concurrent, {label}"),
        &mut samples,
    );
    Ok(())
}

/// Time from starting a write to a watcher receiving its event.
async fn watch_delivery(store: Arc<dyn ObjectStore>, writers: usize) -> Result<(), BoxError> {
    let starts: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; WATCH_SAMPLES]));
    let options = WatchOptions {
        start: WatchStart::Now,
        ..WatchOptions::default()
    };
    let mut watch = store.watch(CLAIM, options).await?;
    let watcher = {
        let starts = starts.clone();
        tokio::spawn(async move {
            let mut samples = Vec::with_capacity(WATCH_SAMPLES);
            while samples.len() < WATCH_SAMPLES {
                let Some(Ok(event)) = watch.next().await else {
                    break;
                };
                let received = Instant::now();
                let Some(seq) = event.object["spec"]["seq"].as_u64() else {
                    continue;
                };
                let Ok(seq) = usize::try_from(seq) else {
                    continue;
                };
                let start = starts
                    .lock()
                    .ok()
                    .and_then(|s| s.get(seq).copied().flatten());
                if let Some(start) = start {
                    samples.push(ms(received.duration_since(start)));
                }
            }
            samples
        })
    };
    let per_writer = WATCH_SAMPLES / writers;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let starts = starts.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let seq = w * per_writer + i;
                let mut object = claim(&format!("watch-{writers}-{seq}"));
                object["spec"]["seq"] = json!(seq);
                if let Ok(mut s) = starts.lock() {
                    s[seq] = Some(Instant::now());
                }
                store.create(CLAIM, object).await?;
            }
            Ok::<_, paddock_store::StoreError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let mut samples = tokio::time::timeout(Duration::from_secs(30), watcher).await??;
    print_latency(
        &format!("watch delivery (write start → event), {writers} writer(s)"),
        &mut samples,
    );
    Ok(())
}

/// The disk's own cost: 4 KiB written and `fdatasync`ed in the store's directory, 200 times.
/// Store latencies are only meaningful next to this (shared disks vary a lot).
fn disk_fsync(dir: &std::path::Path, label: &str) -> Result<(), BoxError> {
    use std::io::{Seek, SeekFrom, Write};
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    file.write_all(&vec![0u8; 1 << 20])?;
    file.sync_all()?;
    let page = [0x5au8; 4096];
    let mut samples = Vec::with_capacity(200);
    for i in 0..200u64 {
        file.seek(SeekFrom::Start((i % 256) * 4096))?;
        let t = Instant::now();
        file.write_all(&page)?;
        file.sync_data()?;
        samples.push(ms(t.elapsed()));
    }
    drop(file);
    std::fs::remove_file(&path)?;
    print_latency(
        &format!("disk: 4 KiB write + fdatasync ({label})"),
        &mut samples,
    );
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let temp;
    let dir = match std::env::args_os().nth(1) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("store")
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(RedbStore::open(&dir)?);
        println!(
            "paddock store benchmark (redb at {}, fsync per commit)",
            dir.display()
        );
        disk_fsync(&dir, "before")?;
        single_writer(&*store).await?;
        concurrent_writers(store.clone()).await?;
        claim_path(store.clone(), "durable").await?;
        watch_delivery(store.clone(), 1).await?;
        watch_delivery(store.clone(), WRITERS).await?;
        let memory: Arc<dyn ObjectStore> = Arc::new(paddock_store::MemoryStore::new()?);
        engine_round_trip(&*memory).await?;
        claim_path(memory, "in-memory").await?;
        disk_fsync(&dir, "after")?;
        Ok::<_, BoxError>(())
    })
}
