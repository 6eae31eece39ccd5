//! Warm claims on the Kubernetes controller, against the in-process API server with the cost
//! of a real one (`ApiCosts::TYPICAL` unless told otherwise: 2 ms serialized commits, 0.5 ms
//! watch delivery) and a stand-in kubelet that runs every pod at once. The whole controller
//! (`run_with`, rate limits at their defaults) runs in process.
//!
//! 1. Sequential: a pool of 10, 10 claims one after another (each after the pool refilled):
//!    claim create → `Ready=True` seen by a watcher, and every API request the controller made
//!    for it, by verb and resource, split into the adoption (the claim, its Sandbox and Pod,
//!    the Event) and the replacement (the new member, its Pod, the pool's status).
//! 2. Burst: a pool of 50 and 50 claims at once: time until all are Ready, writes per claim,
//!    conflicts (409), and that no member went to two claims.
//! 3. What the write cost implies: claims/s at saturation = commits/s ÷ writes per claim.
//!
//! Usage: `claims [--commit-ms F] [--batch N] [--watch-ms F] [--sequential N] [--burst N]`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use paddock_bench::Percentiles;
use paddock_controller::args::Settings;
use paddock_testkit::kube::cluster::{
    self, CLAIMS, POOLS, ReadyClaims, SANDBOXES, TEMPLATES, spawn_kubelet, wait_pool_full,
    wait_quiet,
};
use paddock_testkit::kube::{ApiCosts, FakeApiServer, RequestRecord};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    costs: ApiCosts,
    sequential: u32,
    burst: u32,
}

fn options() -> Result<Options, BoxError> {
    let mut o = Options {
        costs: ApiCosts::TYPICAL,
        sequential: 10,
        burst: 50,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--commit-ms" => o.costs.commit = Duration::from_secs_f64(value.parse::<f64>()? / 1e3),
            "--batch" => o.costs.batch = value.parse()?,
            "--watch-ms" => {
                o.costs.watch_delay = Duration::from_secs_f64(value.parse::<f64>()? / 1e3);
            }
            "--sequential" => o.sequential = value.parse()?,
            "--burst" => o.burst = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(o)
}

/// `verb resource[/status]` of a request, as an audit summary shows it.
fn verb_resource(r: &RequestRecord) -> String {
    let parts: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let (plural, status) = match parts.iter().position(|p| *p == "namespaces") {
        Some(i) => (
            parts.get(i + 2).copied().unwrap_or("?"),
            parts.get(i + 4) == Some(&"status"),
        ),
        None => (parts.last().copied().unwrap_or("?"), false),
    };
    let verb = match (r.method.as_str(), parts.len()) {
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        _ => "get",
    };
    let sub = if status { "/status" } else { "" };
    format!("{verb} {plural}{sub}")
}

/// The object a request names (`None` for creates).
fn object_name(r: &RequestRecord) -> Option<&str> {
    let parts: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let i = parts.iter().position(|p| *p == "namespaces")?;
    parts.get(i + 3).copied()
}

#[derive(Default)]
struct Tally {
    adoption: BTreeMap<String, u32>,
    replacement: BTreeMap<String, u32>,
    conflicts: u32,
    reads: u32,
}

impl Tally {
    /// Splits `log` into the adoption of `member` by `claim` and everything else.
    fn add(&mut self, log: &[RequestRecord], claim: &str, member: &str) {
        for r in log {
            if r.code == 409 {
                self.conflicts += 1;
            }
            if !r.is_write() {
                if !r.watch {
                    self.reads += 1;
                }
                continue;
            }
            let vr = verb_resource(r);
            let adoption = vr.starts_with("create events")
                || matches!(object_name(r), Some(n) if n == claim || n == member);
            let side = if adoption {
                &mut self.adoption
            } else {
                &mut self.replacement
            };
            *side.entry(vr).or_default() += 1;
        }
    }
}

fn total(m: &BTreeMap<String, u32>) -> u32 {
    m.values().sum()
}

fn print_side(title: &str, m: &BTreeMap<String, u32>, claims: u32) {
    println!(
        "  {title}: {:.1} writes per claim",
        f64::from(total(m)) / f64::from(claims)
    );
    for (k, v) in m {
        println!("    {:<34} {:.1}", k, f64::from(*v) / f64::from(claims));
    }
}

fn bound_sandbox(api: &FakeApiServer, ns: &str, claim: &str) -> Option<String> {
    api.get(CLAIMS, ns, claim).and_then(|c| {
        c.pointer("/status/sandbox/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

async fn sequential(
    api: &FakeApiServer,
    o: &Options,
    ready: &ReadyClaims,
) -> Result<f64, BoxError> {
    let ns = "seq";
    api.insert(TEMPLATES, cluster::template(ns, "python"));
    api.insert(POOLS, cluster::pool(ns, "python-pool", "python", 10));
    wait_pool_full(api, ns, "python-pool", 10).await;
    wait_quiet(api, Duration::from_millis(200)).await;

    let mut tally = Tally::default();
    let mut latencies = Vec::new();
    for i in 0..o.sequential {
        let name = format!("claim-{i}");
        api.clear_request_log();
        let t0 = Instant::now();
        cluster::create_claim(api, ns, &name, "python-pool").await;
        let at = ready.ready_at(ns, &name, Duration::from_secs(10)).await;
        latencies.push(at.duration_since(t0).as_secs_f64() * 1e3);
        wait_pool_full(api, ns, "python-pool", 10).await;
        wait_quiet(api, Duration::from_millis(200)).await;
        let member = bound_sandbox(api, ns, &name).ok_or("a Ready claim names its Sandbox")?;
        tally.add(&api.request_log(), &name, &member);
    }
    let p = Percentiles::of(&mut latencies).ok_or("no samples")?;
    println!(
        "sequential warm claims (pool of 10, {} claims): claim create → Ready seen by a watcher p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        o.sequential, p.p50, p.p90, p.max
    );
    print_side("adoption", &tally.adoption, o.sequential);
    print_side(
        "replacement and pool status",
        &tally.replacement,
        o.sequential,
    );
    let writes = total(&tally.adoption) + total(&tally.replacement);
    println!(
        "  in all: {:.1} writes, {:.1} reads (not watches), {} conflicts (409) per claim",
        f64::from(writes) / f64::from(o.sequential),
        f64::from(tally.reads) / f64::from(o.sequential),
        tally.conflicts
    );
    Ok(f64::from(writes) / f64::from(o.sequential))
}

async fn burst(api: &FakeApiServer, o: &Options, ready: &ReadyClaims) -> Result<(), BoxError> {
    let ns = "burst";
    let n = o.burst;
    api.insert(TEMPLATES, cluster::template(ns, "python"));
    api.insert(POOLS, cluster::pool(ns, "python-pool", "python", n));
    wait_pool_full(api, ns, "python-pool", i64::from(n)).await;
    wait_quiet(api, Duration::from_millis(300)).await;

    api.clear_request_log();
    let t0 = Instant::now();
    let creates = (0..n).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            cluster::create_claim(&api, ns, &format!("burst-{i}"), "python-pool").await;
        })
    });
    futures::future::join_all(creates).await;
    let mut last = t0;
    let mut each = Vec::new();
    for i in 0..n {
        let at = ready
            .ready_at(ns, &format!("burst-{i}"), Duration::from_secs(30))
            .await;
        each.push(at.duration_since(t0).as_secs_f64() * 1e3);
        last = last.max(at);
    }
    let all = last.duration_since(t0).as_secs_f64() * 1e3;
    wait_pool_full(api, ns, "python-pool", i64::from(n)).await;
    wait_quiet(api, Duration::from_millis(300)).await;

    let log = api.request_log();
    let writes = log.iter().filter(|r| r.is_write()).count();
    let conflicts = log.iter().filter(|r| r.code == 409).count();
    let mut bound = BTreeSet::new();
    let mut warm = 0;
    for i in 0..n {
        let claim = format!("burst-{i}");
        let sb = bound_sandbox(api, ns, &claim).ok_or("a Ready claim names its Sandbox")?;
        let obj = api
            .get(SANDBOXES, ns, &sb)
            .ok_or("the bound Sandbox exists")?;
        if obj.pointer("/metadata/ownerReferences/0/name") != Some(&Value::from(claim.as_str())) {
            return Err(format!("{sb} is bound to {claim} but not controlled by it").into());
        }
        if sb != claim {
            warm += 1;
        }
        if !bound.insert(sb.clone()) {
            return Err(format!("{sb} was handed to two claims").into());
        }
    }
    let mut by_kind: BTreeMap<String, u32> = BTreeMap::new();
    for r in log.iter().filter(|r| r.is_write()) {
        let k = if r.code == 409 {
            format!("{} (409)", verb_resource(r))
        } else {
            verb_resource(r)
        };
        *by_kind.entry(k).or_default() += 1;
    }
    let p = Percentiles::of(&mut each).ok_or("no samples")?;
    #[allow(clippy::cast_precision_loss)]
    let per_claim = writes as f64 / f64::from(n);
    println!(
        "burst of {n} claims on a pool of {n}: all Ready in {all:.0} ms (each: p50 {:.0} ms, max {:.0} ms); {warm} warm, no member twice; {per_claim:.1} writes per claim with the refill; {conflicts} conflicts (409)",
        p.p50, p.max
    );
    for (k, v) in &by_kind {
        println!("    {:<34} {:.1}", k, f64::from(*v) / f64::from(n));
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let o = options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!(
            "modelled API server: {:.1} ms per commit of up to {} writes (serialized), {:.1} ms watch delivery",
            o.costs.commit.as_secs_f64() * 1e3,
            o.costs.batch.max(1),
            o.costs.watch_delay.as_secs_f64() * 1e3
        );
        let api = FakeApiServer::new().recording().with_costs(o.costs);
        let shutdown = CancellationToken::new();
        let controller = tokio::spawn(paddock_controller::run::run_with(
            api.client(),
            Settings::embedded()?,
            shutdown.clone(),
        ));
        let kubelet = spawn_kubelet(&api);
        let ready = ReadyClaims::watch(&api);
        let writes = sequential(&api, &o, &ready).await?;
        burst(&api, &o, &ready).await?;
        if !o.costs.commit.is_zero() {
            #[allow(clippy::cast_precision_loss)]
            let rate = o.costs.batch.max(1) as f64 / o.costs.commit.as_secs_f64();
            println!(
                "at saturation: {rate:.0} writes/s ÷ {writes:.1} writes per claim = {:.0} claims/s (upstream's ~18 writes: {:.0} claims/s)",
                rate / writes,
                rate / 18.0
            );
        }
        kubelet.abort();
        shutdown.cancel();
        controller.await??;
        Ok(())
    })
}
