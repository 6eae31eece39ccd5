//! Benchmarks the in-sandbox agent: the release static binary started as its own process,
//! driven over TCP and a unix socket. Measures exec latency (one client), exec throughput
//! (16 clients), 100 MiB upload/download throughput with the agent's peak RSS, idle RSS and
//! binary size.
//!
//! Usage: `agent [PATH_TO_AGENT_BINARY]` (default: `$PADDOCK_AGENT_BIN`). `bench/run.sh agent`
//! builds the binary with `scripts/build-agent.sh` and passes it.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use paddock_bench::Percentiles;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const LATENCY_SAMPLES: usize = 2000;
const CONCURRENT_CLIENTS: usize = 16;
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(4);
const TRANSFER_BYTES: usize = 100 << 20;

/// Where the agent listens.
#[derive(Clone)]
enum Target {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

/// One keep-alive HTTP/1.1 connection.
struct Client<B> {
    sender: http1::SendRequest<B>,
}

impl<B> Client<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    async fn connect(target: &Target) -> Result<Self, BoxError> {
        let sender = match target {
            Target::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                sender
            }
            Target::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await?;
                let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                sender
            }
        };
        Ok(Self { sender })
    }

    async fn send(
        &mut self,
        request: http::Request<B>,
    ) -> Result<http::Response<hyper::body::Incoming>, BoxError> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }
}

/// A body of `remaining` bytes made of one repeated chunk (no copies).
struct RepeatBody {
    chunk: Bytes,
    remaining: usize,
}

impl http_body::Body for RepeatBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len());
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining as u64)
    }
}

fn exec_request(body: &'static str) -> http::Request<Full<Bytes>> {
    http::Request::post("/v1/exec")
        .header("host", "agent")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap_or_default()
}

/// Runs `true` once; returns the agent-side duration of the process (ms).
async fn exec_once(client: &mut Client<Full<Bytes>>) -> Result<f64, BoxError> {
    let response = client.send(exec_request(r#"{"argv":["true"]}"#)).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let reply: serde_json::Value = serde_json::from_slice(&body)?;
    if !status.is_success() || reply["exit_code"] != 0 {
        return Err(format!("exec failed: {status} {}", String::from_utf8_lossy(&body)).into());
    }
    reply["duration_ms"]
        .as_f64()
        .ok_or_else(|| "no duration_ms in the reply".into())
}

/// Round-trip latency and the agent-side process duration, both in ms.
async fn latency(target: &Target) -> Result<(Percentiles, Percentiles), BoxError> {
    let mut client = Client::connect(target).await?;
    for _ in 0..100 {
        exec_once(&mut client).await?;
    }
    let mut round_trips = Vec::with_capacity(LATENCY_SAMPLES);
    let mut process = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let start = Instant::now();
        process.push(exec_once(&mut client).await?);
        round_trips.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let round_trips = Percentiles::of(&mut round_trips).ok_or("no samples")?;
    let process = Percentiles::of(&mut process).ok_or("no samples")?;
    Ok((round_trips, process))
}

async fn throughput(target: &Target) -> Result<f64, BoxError> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENT_CLIENTS {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(&target).await?;
            let mut done = 0u64;
            while start.elapsed() < THROUGHPUT_WINDOW {
                exec_once(&mut client).await?;
                done += 1;
            }
            Ok::<u64, BoxError>(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// `VmRSS` or `VmHWM` of a process, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the agent's RSS every millisecond until `stop` is set; returns the maximum (KiB).
fn sample_rss(
    pid: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(proc_status_kib(pid, "VmRSS:").unwrap_or(0));
            std::thread::sleep(Duration::from_millis(1));
        }
        peak
    })
}

async fn upload(target: &Target, pid: u32) -> Result<(f64, u64), BoxError> {
    let mut client = Client::<RepeatBody>::connect(target).await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_rss(pid, stop.clone());
    let chunk = Bytes::from(vec![0x5a_u8; 1 << 20]);
    let start = Instant::now();
    let request = http::Request::put("/v1/files/bench/upload.bin")
        .header("host", "agent")
        .header("content-type", "application/octet-stream")
        .header("content-length", TRANSFER_BYTES)
        .body(RepeatBody {
            chunk,
            remaining: TRANSFER_BYTES,
        })?;
    let response = client.send(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    if status != http::StatusCode::NO_CONTENT {
        return Err(format!("upload failed: {status}").into());
    }
    Ok((TRANSFER_BYTES as f64 / (1 << 20) as f64 / secs, peak))
}

async fn download(target: &Target, pid: u32) -> Result<(f64, u64), BoxError> {
    let mut client = Client::<Full<Bytes>>::connect(target).await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_rss(pid, stop.clone());
    let start = Instant::now();
    let request = http::Request::get("/v1/files/bench/upload.bin")
        .header("host", "agent")
        .body(Full::default())?;
    let response = client.send(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            received += data.len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    if status != http::StatusCode::OK || received != TRANSFER_BYTES {
        return Err(format!("download failed: {status}, {received} bytes").into());
    }
    Ok((received as f64 / (1 << 20) as f64 / secs, peak))
}

struct Agent {
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(target: &Target) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut client) = Client::<Full<Bytes>>::connect(target).await {
            let request = http::Request::get("/v1/health")
                .header("host", "agent")
                .body(Full::default())?;
            if let Ok(response) = client.send(request).await
                && response.status().is_success()
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err("agent did not become ready within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Spawn and wait of `true` straight from this process: the floor an agent cannot beat, and a
/// gauge of how loaded the machine is while the benchmark runs.
fn baseline() -> Result<Percentiles, BoxError> {
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let start = Instant::now();
        Command::new("true").stdin(Stdio::null()).status()?;
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Percentiles::of(&mut samples).ok_or_else(|| "no samples".into())
}

fn free_port() -> Result<std::net::SocketAddr, BoxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

fn print_latency(label: &str, p: &Percentiles) {
    println!(
        "{label:<44} p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        p.p50, p.p90, p.p99, p.max
    );
}

async fn bench(binary: &Path) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("agent.sock");
    let addr = free_port()?;
    let child = Command::new(binary)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--unix")
        .arg(&socket)
        .arg("--root-dir")
        .arg(dir.path().join("workspace"))
        .arg("--base-dir")
        .arg(dir.path().join("app"))
        .arg("--log")
        .arg("warn")
        .stdin(Stdio::null())
        .spawn()?;
    let agent = Agent { child };
    let pid = agent.child.id();
    let tcp = Target::Tcp(addr);
    let unix = Target::Unix(socket);
    wait_ready(&tcp).await?;
    wait_ready(&unix).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_rss = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let size = std::fs::metadata(binary)?.len();

    println!("paddock agent benchmark ({} , pid {pid})", binary.display());
    println!(
        "{:<44} {:.2} MiB",
        "binary size (static, stripped)",
        size as f64 / (1 << 20) as f64
    );
    println!(
        "{:<44} {:.2} MiB",
        "idle RSS after start",
        idle_rss as f64 / 1024.0
    );
    // The first run also warms the page cache and the scheduler's view of the agent.
    latency(&unix).await?;
    print_latency("baseline: spawn+wait `true` in the bench", &baseline()?);
    let (round_trip, process) = latency(&tcp).await?;
    print_latency("exec `true`, 1 client, TCP", &round_trip);
    print_latency("  of which spawn to exit (agent-side)", &process);
    let (round_trip, process) = latency(&unix).await?;
    print_latency("exec `true`, 1 client, unix socket", &round_trip);
    print_latency("  of which spawn to exit (agent-side)", &process);
    let rate = throughput(&tcp).await?;
    println!(
        "{:<44} {rate:.0} execs/s",
        format!("exec `true`, {CONCURRENT_CLIENTS} clients, TCP")
    );
    let rate = throughput(&unix).await?;
    println!(
        "{:<44} {rate:.0} execs/s",
        format!("exec `true`, {CONCURRENT_CLIENTS} clients, unix socket")
    );
    let (up, up_peak) = upload(&unix, pid).await?;
    println!(
        "{:<44} {up:.0} MiB/s  (agent peak RSS {:.1} MiB)",
        "upload 100 MiB, unix socket",
        up_peak as f64 / 1024.0
    );
    let (down, down_peak) = download(&unix, pid).await?;
    println!(
        "{:<44} {down:.0} MiB/s  (agent peak RSS {:.1} MiB)",
        "download 100 MiB, unix socket",
        down_peak as f64 / 1024.0
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    println!(
        "{:<44} {:.2} MiB",
        "RSS after the benchmark",
        after as f64 / 1024.0
    );
    drop(agent);
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let binary = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PADDOCK_AGENT_BIN").ok())
        .ok_or(
            "give the agent binary as argument or in PADDOCK_AGENT_BIN (bench/run.sh agent does)",
        )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench(Path::new(&binary)))
}
