//! Benchmarks the Kubernetes controller (the control core on the API-server ports of
//! paddock-controller) in process, against the in-memory API server:
//! 1. Reconcile throughput with 10,000 Sandboxes in the cache: a cold pass (each reconcile
//!    creates the pod, annotates the Sandbox and writes its status: three API calls) and a
//!    steady pass (nothing to change: planner + cache lookups only), 100 at a time like the
//!    default `--sandbox-concurrent-workers`.
//! 2. The controller's memory with 5,000 Sandboxes and their 5,000 running Pods cached: the
//!    real reflectors (pods trimmed to what the Sandbox loop reads) and the Sandbox controller,
//!    fed over HTTP by the fake API server in a child process, so its memory is not counted.
//!    Target ≤ 80 MiB RSS (issue 18; upstream advises a 2 GiB limit for its controller).
//!
//! Usage: `controller` (the child mode `controller --serve-fake N` is internal).

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_api::kinds::Kind;
use paddock_api::names::name_hash;
use paddock_api::v1beta1::Sandbox;
use paddock_bench::Percentiles;
use paddock_control::metrics::ResultLabels;
use paddock_control::{
    Controller, CoreConfig, Key, LogEvents, ManualClock, SystemClock, WatchEvent,
};
use paddock_controller::run::kube_core;
use paddock_controller::workloads::{ChildScope, KubeWorkloads};
use paddock_testkit::kube::FakeApiServer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const THROUGHPUT_SANDBOXES: usize = 10_000;
const RSS_SANDBOXES: usize = 5_000;
const WORKERS: usize = 100;
const RSS_TARGET_MIB: f64 = 80.0;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A Sandbox as users write them (about 1 KB of JSON).
fn sandbox_json(i: usize) -> Value {
    json!({
        "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
        "metadata": {"name": format!("sandbox-{i:05}"), "namespace": format!("team-{}", i % 20),
                     "labels": {"app": "agent", "agents.x-k8s.io/created-by": "python-client"}},
        "spec": {"podTemplate": {
            "metadata": {"labels": {"app": "agent", "tier": "sandbox"}, "annotations": {"example.com/owner": "bench"}},
            "spec": {
                "runtimeClassName": "gvisor",
                "automountServiceAccountToken": false,
                "containers": [{
                    "name": "runtime", "image": "registry.example.com/agent-runtime:1.4.2",
                    "command": ["/usr/local/bin/agent"], "args": ["--port", "8888"],
                    "ports": [{"containerPort": 8888}],
                    "env": [{"name": "SANDBOX_ID", "value": format!("sandbox-{i:05}")},
                            {"name": "LOG_LEVEL", "value": "info"}],
                    "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8888}, "periodSeconds": 2},
                    "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 1000}
                }]
            }}}
    })
}

/// A running pod as the kubelet reports it (about 3 KB of JSON, most of it trimmed on receipt).
fn pod_json(sb: &Value, i: usize) -> Value {
    let name = sb["metadata"]["name"].as_str().unwrap_or_default();
    let mut spec = sb["spec"]["podTemplate"]["spec"].clone();
    spec["nodeName"] = json!(format!("node-{}", i % 50));
    spec["serviceAccountName"] = json!("default");
    spec["tolerations"] = json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": sb["metadata"]["namespace"],
            "labels": {"agents.x-k8s.io/sandbox-name-hash": name_hash(name), "app": "agent", "tier": "sandbox"},
            "annotations": {"agents.x-k8s.io/propagated-labels": "app,tier", "example.com/owner": "bench",
                            "agents.x-k8s.io/propagated-annotations": "example.com/owner"},
            "ownerReferences": [{"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox", "name": name,
                                 "uid": sb["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
            "finalizers": ["example.com/cleanup"],
            "managedFields": [{"manager": "sandbox-controller", "operation": "Update", "apiVersion": "v1",
                               "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]
        },
        "spec": spec,
        "status": {
            "phase": "Running", "hostIP": "192.168.0.10", "podIP": format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            "podIPs": [{"ip": format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)}],
            "startTime": "2026-09-01T11:00:00Z", "qosClass": "Burstable",
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-09-01T11:00:01Z"},
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-09-01T11:00:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-09-01T11:00:03Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-09-01T11:00:03Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-09-01T11:00:00Z"}
            ],
            "containerStatuses": [{"name": "runtime", "ready": true, "started": true, "restartCount": 0,
                                   "image": "registry.example.com/agent-runtime:1.4.2",
                                   "imageID": "registry.example.com/agent-runtime@sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
                                   "containerID": format!("containerd://{:064x}", i),
                                   "state": {"running": {"startedAt": "2026-09-01T11:00:02Z"}}}]
        }
    })
}

fn rss_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// Only the Sandbox controller, as the default `--extensions=false`.
fn sandbox_only() -> CoreConfig {
    CoreConfig {
        extensions: false,
        ..CoreConfig::default()
    }
}

/// Part 1: reconcile throughput.
async fn throughput() -> Result<(), BoxError> {
    let api = FakeApiServer::new().recording();
    let now = Time("2026-09-01T12:00:00Z".parse()?);
    let (core, mut children) = kube_core(
        &api.client(),
        sandbox_only(),
        None,
        Arc::new(ManualClock::new(now)),
        Arc::new(LogEvents),
    );
    children.mark_ready();
    let mut sandboxes: Vec<Sandbox> = Vec::with_capacity(THROUGHPUT_SANDBOXES);
    for i in 0..THROUGHPUT_SANDBOXES {
        let stored = api.insert("agents.x-k8s.io/sandboxes", sandbox_json(i));
        sandboxes.push(serde_json::from_value(stored)?);
    }
    core.observe(
        Kind::Sandbox,
        WatchEvent::Listed(sandboxes.iter().cloned().map(Into::into).collect()),
    );
    let keys: Vec<Key> = sandboxes.iter().map(Key::of).collect();

    let pass = |keys: Vec<Key>| {
        let core = core.clone();
        async move {
            let start = Instant::now();
            let mut latencies: Vec<f64> = futures::stream::iter(keys)
                .map(|key| {
                    let core = core.clone();
                    async move {
                        let t = Instant::now();
                        let r = core.reconcile(Controller::Sandbox, &key).await;
                        (
                            t.elapsed().as_secs_f64() * 1e6,
                            !matches!(r, paddock_control::Outcome::Retry(_)),
                        )
                    }
                })
                .buffer_unordered(WORKERS)
                .filter_map(|(us, ok)| async move { ok.then_some(us) })
                .collect()
                .await;
            (
                start.elapsed(),
                Percentiles::of(&mut latencies),
                latencies.len(),
            )
        }
    };

    let (elapsed, pct, ok) = pass(keys.clone()).await;
    let pods = api.list("/pods").len();
    println!(
        "controller: cold reconcile of {THROUGHPUT_SANDBOXES} Sandboxes (create pod + annotate + status, 3 API calls each): {:.0} reconciles/s, {:.2} s total; {ok} succeeded, {pods} pods created",
        ok as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    if let Some(p) = pct {
        println!(
            "controller:   per reconcile p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            p.p50, p.p99, p.max
        );
    }

    // Feed what the watches would: the pods (Pending, as the kubelet reports them before they
    // run). The Sandboxes' writes are in the core's cache already.
    for mut pod in api.list("/pods") {
        pod["status"] = json!({"phase": "Pending"});
        children.put_pod(serde_json::from_value::<Pod>(pod)?);
    }
    let before = api.requests().len();
    let (elapsed, pct, ok) = pass(keys).await;
    println!(
        "controller: steady reconcile of {THROUGHPUT_SANDBOXES} Sandboxes with their pods cached (no change): {:.0} reconciles/s; {ok} succeeded, {} writes",
        ok as f64 / elapsed.as_secs_f64(),
        api.requests().len() - before
    );
    if let Some(p) = pct {
        println!(
            "controller:   per reconcile p50 {:.1} µs, p99 {:.1} µs",
            p.p50, p.p99
        );
    }
    Ok(())
}

/// Child mode: serve a fake API with `n` Sandboxes and their running pods on loopback.
async fn serve_fake(n: usize) -> Result<(), BoxError> {
    let api = FakeApiServer::new().recording();
    for i in 0..n {
        let mut sb = sandbox_json(i);
        let name = sb["metadata"]["name"].clone();
        sb["metadata"]["annotations"] = json!({"agents.x-k8s.io/pod-name": name});
        let stored = api.insert("agents.x-k8s.io/sandboxes", sb);
        api.insert("/pods", pod_json(&stored, i));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    // Each line on stdin asks how many writes (POST, PATCH, PUT, DELETE) the server has had,
    // and how many Sandboxes have a Ready condition that is True.
    let counted = api.clone();
    std::thread::spawn(move || {
        for _ in std::io::stdin().lines().map_while(Result::ok) {
            let writes = counted
                .requests()
                .iter()
                .filter(|r| !r.starts_with("GET "))
                .count();
            let ready = counted
                .list("agents.x-k8s.io/sandboxes")
                .iter()
                .filter(|sb| {
                    sb["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count();
            println!("{writes} {ready}");
        }
    });
    api.serve(listener, CancellationToken::new()).await;
    Ok(())
}

/// Part 2: the controller's memory with `RSS_SANDBOXES` Sandboxes and pods cached.
async fn memory() -> Result<(), BoxError> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--serve-fake", &RSS_SANDBOXES.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    let mut from_child = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
    from_child.read_line(&mut line)?;
    let port: u16 = line.trim().parse()?;
    let mut to_child = child.stdin.take().ok_or("no stdin")?;
    // (API writes so far, Sandboxes Ready in the API server).
    let mut api_counts = move || -> Result<(usize, usize), BoxError> {
        use std::io::Write;
        writeln!(to_child)?;
        let mut line = String::new();
        from_child.read_line(&mut line)?;
        let mut it = line.split_whitespace().map(str::parse::<usize>);
        match (it.next(), it.next()) {
            (Some(Ok(w)), Some(Ok(r))) => Ok((w, r)),
            _ => Err(format!("the fake API server answered {line:?}").into()),
        }
    };
    let result = async {
        let baseline = rss_kib("VmRSS:");
        let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse()?);
        let client = kube::Client::try_from(config)?;
        let (core, children) = kube_core(
            &client,
            CoreConfig {
                workers: paddock_control::Workers {
                    sandbox: 100,
                    ..paddock_control::Workers::default()
                },
                ..sandbox_only()
            },
            None,
            Arc::new(SystemClock),
            Arc::new(LogEvents),
        );
        let shutdown = CancellationToken::new();
        let start = Instant::now();
        let watches =
            KubeWorkloads::spawn_watches(&client, children, core.waker(), ChildScope::All, false);
        let mut tasks = core.start(shutdown.clone());
        core.cache().wait_synced(&[Kind::Sandbox]).await;
        let synced = start.elapsed();
        let rss_synced = rss_kib("VmRSS:");
        let metrics = core.metrics().clone();
        let reconciled = |result: &str| {
            metrics
                .reconcile_total
                .get_or_create(&ResultLabels { controller: Controller::Sandbox.name().to_owned(), result: result.to_owned() })
                .get()
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while reconciled("success") + reconciled("requeue_after") < RSS_SANDBOXES as u64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let all_done = start.elapsed();
        while api_counts()?.1 < RSS_SANDBOXES && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let converged = start.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = rss_kib("VmRSS:");
        let peak = rss_kib("VmHWM:");
        println!(
            "controller: cache of {} Sandboxes (and their Pods) synced in {:.2} s (RSS then {:.1} MiB); first reconcile of all done after {:.2} s",
            core.cache().count(Kind::Sandbox),
            synced.as_secs_f64(),
            mib(rss_synced),
            all_done.as_secs_f64()
        );
        let (writes, _) = api_counts()?;
        println!(
            "controller: all {RSS_SANDBOXES} Sandboxes Ready in the API server after {:.2} s, with {writes} API writes ({:.2} per Sandbox)",
            converged.as_secs_f64(),
            writes as f64 / RSS_SANDBOXES as f64
        );
        println!(
            "controller: RSS {:.1} MiB with {RSS_SANDBOXES} Sandboxes and their Pods cached (peak {:.1} MiB; before the caches {:.1} MiB; target ≤ {RSS_TARGET_MIB} MiB) — {}",
            mib(rss),
            mib(peak),
            mib(baseline),
            if mib(rss) <= RSS_TARGET_MIB { "met" } else { "MISSED" }
        );
        for w in watches {
            w.abort();
        }
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        Ok::<_, BoxError>(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let [_, flag, n] = args.as_slice()
        && flag == "--serve-fake"
    {
        return runtime.block_on(serve_fake(n.parse()?));
    }
    runtime.block_on(async {
        memory().await?;
        throughput().await
    })
}
