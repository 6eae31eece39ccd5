//! Local runtime benchmark: gVisor and bwrap sandboxes with the real static agent.
//!
//! Reports create → agent ready (p50/p99) for both backends, exec of `true` through the agent's
//! unix socket, the runtime's share of `paddock run -- true` (create, exec, stop), and 100 idle
//! gVisor sandboxes at once with their total RSS (runsc sandbox + gofer processes).
//! Needs root, runsc and bwrap. The agent comes from `PADDOCK_AGENT_BIN` (bench/run.sh builds it).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use paddock_bench::Percentiles;
use paddock_runtime::agent::agent_request;
use paddock_runtime::{
    ImageRef, LocalRuntime, Runtime, RuntimeClass, RuntimeConfig, Workload, WorkloadId,
    WorkloadSpec,
};

type BoxError = Box<dyn Error + Send + Sync>;

const CREATE_SAMPLES: usize = 30;
const EXEC_SAMPLES: usize = 300;
const RUN_SAMPLES: usize = 30;
const IDLE_SANDBOXES: usize = 100;

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn print_latency(label: &str, p: &Percentiles) {
    println!(
        "{label:<44} p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        p.p50, p.p90, p.p99, p.max
    );
}

fn id(name: String) -> Result<WorkloadId, BoxError> {
    Ok(WorkloadId::new(name)?)
}

async fn exec_true(socket: &Path) -> Result<(), BoxError> {
    let response = agent_request(
        socket,
        "POST",
        "/v1/exec",
        Some(r#"{"argv":["true"]}"#.into()),
    )
    .await?;
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
    if response.status != 200 || body["exit_code"] != 0 {
        return Err(format!(
            "exec failed: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )
        .into());
    }
    Ok(())
}

/// Create → ready, each sandbox torn down (unmeasured) before the next.
async fn create_ready(rt: &LocalRuntime, class: RuntimeClass) -> Result<Percentiles, BoxError> {
    let spec = WorkloadSpec::new(class, ImageRef::Host);
    let mut samples = Vec::with_capacity(CREATE_SAMPLES);
    for i in 0..CREATE_SAMPLES + 2 {
        let wid = id(format!("create-{class}-{i}"))?;
        let started = Instant::now();
        rt.create(&wid, &spec).await?;
        let elapsed = ms(started);
        if i >= 2 {
            samples.push(elapsed); // the first two warm caches
        }
        rt.teardown(&wid).await?;
    }
    Percentiles::of(&mut samples).ok_or_else(|| "no samples".into())
}

async fn exec_latency(w: &Workload) -> Result<Percentiles, BoxError> {
    for _ in 0..20 {
        exec_true(&w.agent_socket).await?;
    }
    let mut samples = Vec::with_capacity(EXEC_SAMPLES);
    for _ in 0..EXEC_SAMPLES {
        let started = Instant::now();
        exec_true(&w.agent_socket).await?;
        samples.push(ms(started));
    }
    Percentiles::of(&mut samples).ok_or_else(|| "no samples".into())
}

/// What `paddock run -- true` costs in the runtime: create, exec, stop (teardown continues in
/// the background, as the CLI does not wait for it).
async fn run_true(rt: &LocalRuntime, class: RuntimeClass) -> Result<Percentiles, BoxError> {
    let spec = WorkloadSpec::new(class, ImageRef::Host);
    let mut samples = Vec::with_capacity(RUN_SAMPLES);
    for i in 0..RUN_SAMPLES {
        let wid = id(format!("run-{class}-{i}"))?;
        let started = Instant::now();
        let w = rt.create(&wid, &spec).await?;
        exec_true(&w.agent_socket).await?;
        rt.stop(&wid).await?;
        samples.push(ms(started));
        // Let the background teardown finish outside the measurement.
        rt.teardown(&wid).await?;
    }
    Percentiles::of(&mut samples).ok_or_else(|| "no samples".into())
}

/// (RSS, PSS) of a process in KiB; PSS splits shared pages (the runsc binary, mapped by every
/// sandbox, gofer and stub) between the processes sharing them, so its sum is the real total.
fn memory_kib(pid: i32) -> (u64, u64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        rollup
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

async fn idle_fleet(rt: &LocalRuntime) -> Result<(), BoxError> {
    let spec = WorkloadSpec::new(RuntimeClass::Gvisor, ImageRef::Host);
    let started = Instant::now();
    let mut fleet = Vec::with_capacity(IDLE_SANDBOXES);
    for i in 0..IDLE_SANDBOXES {
        fleet.push(rt.create(&id(format!("idle-{i}"))?, &spec).await?);
    }
    let create_total = started.elapsed();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (mut rss_kib, mut pss_kib) = (0, 0);
    let mut processes = 0;
    for w in &fleet {
        exec_true(&w.agent_socket).await?;
        for pid in rt.host_processes(&w.id) {
            let (rss, pss) = memory_kib(pid);
            rss_kib += rss;
            pss_kib += pss;
            processes += 1;
        }
    }
    let listed = Instant::now();
    let all = rt.list().await?;
    let list_ms = ms(listed);
    println!(
        "{:<44} {:.1} s to create, all {} answering",
        format!("{IDLE_SANDBOXES} idle gVisor sandboxes"),
        create_total.as_secs_f64(),
        fleet.len()
    );
    let n = IDLE_SANDBOXES as f64;
    println!(
        "{:<44} {:.0} MiB total, {:.1} MiB per sandbox ({processes} host processes)",
        "  PSS (runsc sandbox, gofer, ptrace stubs)",
        pss_kib as f64 / 1024.0,
        pss_kib as f64 / 1024.0 / n
    );
    println!(
        "{:<44} {:.0} MiB total, {:.1} MiB per sandbox (shared pages counted each time)",
        "  RSS summed",
        rss_kib as f64 / 1024.0,
        rss_kib as f64 / 1024.0 / n
    );
    println!(
        "{:<44} {list_ms:.1} ms for {} workloads",
        "  list() (re-attach scan)",
        all.len()
    );
    let torn = Instant::now();
    let mut handles = Vec::new();
    for chunk in fleet.chunks(IDLE_SANDBOXES.div_ceil(8)) {
        let rt = rt.clone();
        let ids: Vec<WorkloadId> = chunk.iter().map(|w| w.id.clone()).collect();
        handles.push(tokio::spawn(async move {
            for wid in ids {
                rt.teardown(&wid).await?;
            }
            Ok::<(), paddock_runtime::RuntimeError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    println!(
        "{:<44} {:.1} s (8 at a time)",
        "  teardown of all",
        torn.elapsed().as_secs_f64()
    );
    Ok(())
}

fn agent_binary() -> Result<PathBuf, BoxError> {
    std::env::var_os("PADDOCK_AGENT_BIN")
        .map(PathBuf::from)
        .ok_or_else(|| {
            "set PADDOCK_AGENT_BIN to the static agent (scripts/build-agent.sh prints it)".into()
        })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = tempfile::Builder::new()
        .prefix("paddock-bench-rt-")
        .tempdir()?;
    let rt = LocalRuntime::open(RuntimeConfig::new(
        dir.path().join("runtime"),
        agent_binary()?,
    ))?;
    println!(
        "paddock local runtime benchmark (host image, no network; {} CPUs)",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    for class in [RuntimeClass::Gvisor, RuntimeClass::Bwrap] {
        print_latency(
            &format!("{class}: create → agent ready"),
            &create_ready(&rt, class).await?,
        );
        let w = rt
            .create(
                &id(format!("exec-{class}"))?,
                &WorkloadSpec::new(class, ImageRef::Host),
            )
            .await?;
        print_latency(
            &format!("{class}: exec `true` through the agent"),
            &exec_latency(&w).await?,
        );
        rt.teardown(&w.id).await?;
        print_latency(
            &format!("{class}: create + exec `true` + stop"),
            &run_true(&rt, class).await?,
        );
    }
    idle_fleet(&rt).await?;
    Ok(())
}
