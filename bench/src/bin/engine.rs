//! Benchmarks `paddock serve` end to end: the embedded engine and its gateway (in-process,
//! exactly as `paddock serve` runs them, on a durable store), the real runtime and agent.
//!
//! Measures: sandbox create → Ready through the API (gVisor, bwrap); `paddock run -- true`
//! end to end with the release CLI, with and without a default pool; exec round trip through the gateway versus straight to the
//! agent; a claim against a warm pool → Ready and → first exec output; a burst of 50
//! concurrent claims against a pool of 50 (all warm, no double adoption); pool refill rate;
//! and a restart with 50 running sandboxes re-attached.
//!
//! Usage: `engine [--quick] [--only=create,run,exec,pooled,claims,burst,restart]`; needs `PADDOCK_AGENT_BIN` and the release `paddock` binary next
//! to this one (`bench/run.sh engine` provides both). Run as root.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use paddock_bench::Percentiles;
use paddock_client::{Client, CreateSandbox, ProcessRequest};
use paddock_testkit::TestServer;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, samples: &mut [f64]) {
    match Percentiles::of(samples) {
        Some(p) => println!(
            "{name:<52} p50 {:>8.2} ms   p90 {:>8.2} ms   p99 {:>8.2} ms   (n={})",
            p.p50,
            p.p90,
            p.p99,
            samples.len()
        ),
        None => println!("{name:<52} no samples"),
    }
}

fn image(runtime: &str) -> CreateSandbox {
    let mut c = CreateSandbox::image("host");
    c.runtime = Some(runtime.to_owned());
    c
}

async fn create_ready(client: &Client, runtime: &str, n: usize) -> Vec<f64> {
    let mut samples = Vec::new();
    for i in 0..n {
        let mut req = image(runtime);
        req.name = Some(format!("create-{runtime}-{i}"));
        let start = Instant::now();
        let info = client.create_sandbox(&req).await.expect("create");
        samples.push(ms(start.elapsed()));
        client
            .sandbox(&info.name, "default")
            .delete()
            .await
            .expect("delete");
    }
    samples
}

fn paddock_run(server: &TestServer, runtime: &str, n: usize) -> Vec<f64> {
    paddock_run_paced(server, runtime, n, Duration::ZERO)
}

/// `paddock run -- true`, `n` times, starting one every `every` (back to back when zero).
fn paddock_run_paced(server: &TestServer, runtime: &str, n: usize, every: Duration) -> Vec<f64> {
    let exe = std::env::current_exe().expect("exe");
    let paddock = exe.parent().expect("dir").join("paddock");
    assert!(
        paddock.exists(),
        "build the release CLI first: cargo build --release -p paddock"
    );
    let mut samples = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        let status = Command::new(&paddock)
            .args(["run", "--runtime", runtime, "--", "true"])
            .env("PADDOCK_URL", &server.url)
            .env("PADDOCK_TOKEN", &server.token)
            .status()
            .expect("paddock run");
        samples.push(ms(start.elapsed()));
        assert!(status.success(), "paddock run failed");
        std::thread::sleep(every.saturating_sub(start.elapsed()));
    }
    samples
}

/// Makes the default pool of a runtime (a first bare create does) and waits until it is full.
async fn fill_default_pool(server: &TestServer, runtime: &str) {
    let info = server
        .client
        .create_sandbox(&image(runtime))
        .await
        .expect("create");
    server
        .client
        .sandbox(&info.name, "default")
        .delete()
        .await
        .expect("delete");
    let pool = paddock_api::names::default_pool_name(runtime, "host");
    paddock_testkit::cli::wait_pool_full(&server.client, &pool).await;
}

async fn exec_round_trips(server: &TestServer, n: usize) {
    let info = server
        .client
        .create_sandbox(&image("bwrap"))
        .await
        .expect("create");
    let sandbox = server.client.sandbox(&info.name, "default");
    let req = ProcessRequest::argv(["true"]);
    for _ in 0..50 {
        sandbox.exec(&req).await.expect("warm up");
    }
    let mut through = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        sandbox.exec(&req).await.expect("exec");
        through.push(ms(start.elapsed()));
    }
    // Straight to the agent's unix socket over one kept-alive connection, the same request:
    // the difference is the gateway's overhead.
    let socket = server
        .engine()
        .workloads()
        .socket(&paddock_control::Key::new("default", info.name.clone()))
        .expect("socket");
    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("connect to the agent");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let body = bytes::Bytes::from(serde_json::to_vec(&req).expect("json"));
    let mut straight = Vec::new();
    for _ in 0..n {
        let request = http::Request::post("/v1/exec")
            .header(http::header::HOST, "agent")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(body.clone()))
            .expect("request");
        let start = Instant::now();
        sender.ready().await.expect("agent connection ready");
        let response = sender.send_request(request).await.expect("direct exec");
        let status = response.status();
        let _ = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body");
        straight.push(ms(start.elapsed()));
        assert!(status.is_success(), "direct exec answered {status}");
    }
    let p_through = Percentiles::of(&mut through.clone()).expect("samples");
    let p_direct = Percentiles::of(&mut straight.clone()).expect("samples");
    report("exec `true` through the gateway (bwrap)", &mut through);
    report("exec `true` straight to the agent socket", &mut straight);
    println!(
        "{:<52} p50 {:>8.2} ms",
        "  gateway overhead",
        p_through.p50 - p_direct.p50
    );
    sandbox.delete().await.expect("delete");
}

async fn apply_pool(client: &Client, name: &str, runtime: &str, replicas: u32) {
    let manifest = format!(
        "apiVersion: extensions.agents.x-k8s.io/v1beta1\nkind: SandboxTemplate\nmetadata: {{name: {name}-tpl}}\nspec:\n  podTemplate:\n    spec:\n      runtimeClassName: {runtime}\n      containers: [{{name: main, image: host, command: [sleep, infinity]}}]\n---\napiVersion: extensions.agents.x-k8s.io/v1beta1\nkind: SandboxWarmPool\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  sandboxTemplateRef: {{name: {name}-tpl}}\n"
    );
    client
        .apply(&manifest, Some("default"))
        .await
        .expect("apply pool");
}

/// Waits until `replicas` members of the pool are Ready and unclaimed, counted from the
/// sandboxes themselves: the pool's `status.readyReplicas` lags adoptions by a reconcile.
async fn wait_pool_ready(
    client: &Client,
    name: &str,
    replicas: usize,
    timeout: Duration,
) -> Duration {
    let start = Instant::now();
    let prefix = format!("{name}-");
    loop {
        let sandboxes = client.sandboxes(Some("default")).await.expect("list");
        let ready = sandboxes
            .iter()
            .filter(|s| s.name.starts_with(&prefix) && s.claim.is_none() && s.ready)
            .count();
        if ready == replicas {
            return start.elapsed();
        }
        if start.elapsed() >= timeout {
            let path = format!(
                "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxwarmpools/{name}"
            );
            let pool = client.object_call(http::Method::GET, &path, None).await;
            eprintln!("pool {name}: {pool:#?}");
        }
        assert!(
            start.elapsed() < timeout,
            "pool {name}: {ready} of {replicas} members ready after {timeout:?}: {:#?}",
            sandboxes
                .iter()
                .map(|s| (&s.name, s.ready, &s.claim, &s.phase, &s.reason, &s.message))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn warm_claims(server: &TestServer, runtime: &str, n: usize) {
    let client = &server.client;
    let pool = format!("bench-pool-{runtime}");
    apply_pool(client, &pool, runtime, 3).await;
    wait_pool_ready(client, &pool, 3, Duration::from_secs(30)).await;
    let mut to_ready = Vec::new();
    let mut to_output = Vec::new();
    for i in 0..n {
        wait_pool_ready(client, &pool, 3, Duration::from_secs(30)).await;
        let mut req = CreateSandbox::warm_pool(&pool);
        req.name = Some(format!("claim-{runtime}-{i}"));
        let start = Instant::now();
        let info = client.create_sandbox(&req).await.expect("claim");
        to_ready.push(ms(start.elapsed()));
        if info.launch_type.as_deref() != Some("warm") {
            let members = client
                .object_call(
                    http::Method::GET,
                    "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes",
                    None,
                )
                .await
                .expect("list");
            for m in members["items"].as_array().into_iter().flatten() {
                eprintln!(
                    "{} labels={} owners={} deleting={} ready={} ips={}",
                    m["metadata"]["name"],
                    m["metadata"]["labels"],
                    m["metadata"]["ownerReferences"],
                    m["metadata"]["deletionTimestamp"],
                    m["status"]["conditions"],
                    m["status"]["podIPs"]
                );
            }
            panic!("claim {i} was not served from the pool: {info:?}");
        }
        let out = client
            .sandbox(&info.name, "default")
            .exec(&ProcessRequest::argv(["echo", "hi"]))
            .await
            .expect("exec");
        to_output.push(ms(start.elapsed()));
        assert_eq!(out.stdout_text(), "hi\n");
        client
            .sandbox(&format!("claim-{runtime}-{i}"), "default")
            .delete()
            .await
            .expect("delete");
    }
    report(
        &format!("claim → Ready, warm member ({runtime})"),
        &mut to_ready,
    );
    report(
        &format!("claim → first exec output, warm member ({runtime})"),
        &mut to_output,
    );
}

async fn burst(server: &TestServer, runtime: &str, size: u32) {
    let client = &server.client;
    let pool = format!("burst-{runtime}");
    let start = Instant::now();
    apply_pool(client, &pool, runtime, size).await;
    let fill = wait_pool_ready(client, &pool, size as usize, Duration::from_secs(600)).await;
    let _ = start;
    println!(
        "{:<52} {size} members in {:.2} s = {:.1} members/s",
        format!("pool refill from empty ({runtime})"),
        fill.as_secs_f64(),
        f64::from(size) / fill.as_secs_f64()
    );
    let started = Instant::now();
    let claims = (0..size).map(|i| {
        let client = client.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut req = CreateSandbox::warm_pool(pool);
            req.name = Some(format!("burst-claim-{i}"));
            let t = Instant::now();
            let info = client.create_sandbox(&req).await.expect("claim");
            (info, ms(t.elapsed()))
        })
    });
    let mut names = HashSet::new();
    let mut latencies = Vec::new();
    let mut warm = 0;
    for c in futures_util::future::join_all(claims).await {
        let (info, latency) = c.expect("task");
        latencies.push(latency);
        if info.launch_type.as_deref() == Some("warm") {
            warm += 1;
        }
        assert!(
            names.insert(info.name.clone()),
            "sandbox {} handed to two claims",
            info.name
        );
    }
    report(
        &format!("burst of {size} concurrent claims, each → Ready ({runtime})"),
        &mut latencies,
    );
    println!(
        "{:<52} {warm}/{size} warm, {} distinct sandboxes, all in {:.0} ms",
        "  burst outcome",
        names.len(),
        ms(started.elapsed())
    );
    assert_eq!(names.len(), size as usize);
}

async fn restart(runtime: &str, count: usize) {
    let home = tempfile::Builder::new()
        .prefix("paddock-bench-restart-")
        .tempdir()
        .expect("tmp")
        .keep();
    let server = TestServer::start_in(Some(home.clone()), false).await;
    let creates = (0..count).map(|i| {
        let client = server.client.clone();
        let runtime = runtime.to_owned();
        tokio::spawn(async move {
            let mut req = image(&runtime);
            req.name = Some(format!("stay-{i}"));
            client.create_sandbox(&req).await.expect("create")
        })
    });
    futures_util::future::join_all(creates).await;
    let home: PathBuf = server.stop_keeping_sandboxes().await;
    let start = Instant::now();
    let server = TestServer::start_in(Some(home.clone()), false).await;
    loop {
        let all = server
            .client
            .sandboxes(Some("default"))
            .await
            .expect("list");
        if all.len() == count && all.iter().all(|s| s.ready) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not re-attached after a minute"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready = start.elapsed();
    let out = server
        .client
        .sandbox("stay-0", "default")
        .exec(&ProcessRequest::argv(["true"]))
        .await
        .expect("exec after restart");
    assert_eq!(out.exit_code, Some(0));
    println!(
        "{:<52} {count} sandboxes Ready again in {:.0} ms",
        format!("restart with running sandboxes ({runtime})"),
        ms(ready)
    );
    drop(server);
    let _ = std::fs::remove_dir_all(home);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only create,run,exec,claims,burst,restart` runs a subset.
    let only: Option<Vec<String>> = args
        .iter()
        .find_map(|a| a.strip_prefix("--only="))
        .map(|list| list.split(',').map(str::to_owned).collect());
    let runs = |part: &str| only.as_ref().is_none_or(|o| o.iter().any(|p| p == part));
    let n = if quick { 5 } else { 20 };
    println!("paddock serve (embedded engine + gateway, durable store), host image");
    let server = TestServer::start_in(None, false).await;
    if runs("create") {
        for runtime in ["gvisor", "bwrap"] {
            let mut s = create_ready(&server.client, runtime, n).await;
            report(&format!("create → Ready via the API ({runtime})"), &mut s);
        }
    }
    if runs("run") {
        for (runtime, runs) in [("gvisor", n), ("bwrap", n * 2)] {
            let mut s = paddock_run(&server, runtime, runs);
            report(
                &format!("`paddock run -- true` end to end ({runtime})"),
                &mut s,
            );
        }
    }
    if runs("exec") {
        exec_round_trips(&server, if quick { 200 } else { 2000 }).await;
    }
    if runs("pooled") {
        // As `paddock serve` runs by default: bare creates claim a fresh sandbox from a
        // default pool of 2 (grown by demand), one run after another.
        let pooled = TestServer::start_with(None, false, |c| {
            c.default_pools = paddock_engine::DefaultPoolSettings::default();
        })
        .await;
        for runtime in ["gvisor", "bwrap"] {
            fill_default_pool(&pooled, runtime).await;
            // One run every 500 ms (an agent's pace: the pool refills between runs) ...
            let mut s = paddock_run_paced(&pooled, runtime, n, Duration::from_millis(500));
            report(
                &format!("`paddock run -- true`, default pool, 2/s ({runtime})"),
                &mut s,
            );
            // ... and back to back, faster than a pool of gVisor sandboxes refills.
            fill_default_pool(&pooled, runtime).await;
            let mut s = paddock_run(&pooled, runtime, n);
            report(
                &format!("`paddock run -- true`, default pool, back to back ({runtime})"),
                &mut s,
            );
        }
        drop(pooled);
    }
    if runs("claims") {
        for runtime in ["gvisor", "bwrap"] {
            warm_claims(&server, runtime, if quick { 10 } else { 50 }).await;
        }
    }
    drop(server);
    if runs("burst") {
        let server = TestServer::start_in(None, false).await;
        burst(&server, "gvisor", if quick { 10 } else { 50 }).await;
        drop(server);
    }
    if runs("restart") {
        restart("gvisor", if quick { 10 } else { 50 }).await;
    }
}
