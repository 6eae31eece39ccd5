//! What the gateway adds to a request when it plays upstream's sandbox-router: a small HTTP
//! GET to a sandbox's port, sent directly and through the gateway (headers `X-Sandbox-ID`,
//! `X-Sandbox-Namespace`, `X-Sandbox-Port`, a bearer token), with the Sandbox resolved from the
//! watch-fed cache (the default) and with `--cache-enabled=false` (a GET per request, as
//! upstream's router does by default). The API server is the in-process one charging a real
//! one's costs (0.5 ms per GET); the "sandbox" is an HTTP server on loopback. Keep-alive
//! connections, one request at a time.
//!
//! Usage: `router [--requests N]`.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use paddock_bench::Percentiles;
use paddock_router::GatewayArgs;
use paddock_testkit::kube::{ApiCosts, FakeApiServer};
use serde_json::json;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const TOKEN: &str = "router-bench-token";
const NS: &str = "bench";

/// The sandbox's HTTP server: answers every request with a short body.
async fn serve_sandbox(listener: tokio::net::TcpListener, stop: CancellationToken) {
    loop {
        let (tcp, _) = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r { Ok(a) => a, Err(_) => continue },
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Latencies (ms) of `n` sequential GETs built by `request`.
async fn measure(
    client: &Client<HttpConnector, Empty<Bytes>>,
    n: usize,
    request: impl Fn() -> Request<Empty<Bytes>>,
) -> Result<Vec<f64>, BoxError> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let t0 = Instant::now();
        let res = client.request(request()).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        if !status.is_success() || body.as_ref() != b"ok\n" {
            return Err(format!("unexpected answer {status}: {body:?}").into());
        }
        // The first 100 warm the connections (and the cache).
        if i >= 100 {
            out.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(out)
}

async fn gateway(
    api: &FakeApiServer,
    sandbox_port: u16,
    cache: bool,
) -> Result<(String, CancellationToken), BoxError> {
    let settings = GatewayArgs {
        allow_loopback_pod_ip: true,
        agent_port: sandbox_port,
        cache_enabled: cache,
        ..GatewayArgs::default()
    }
    .validate_with_env(Some(TOKEN.to_owned()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let client = api.client();
    let s = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = paddock_router::run::run_with(client, &settings, listener, s).await {
            eprintln!("gateway: {e}");
        }
    });
    for _ in 0..200 {
        if answers_ok(&format!("{url}/healthz")).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((url, stop))
}

/// Whether a plain GET answers 200.
async fn answers_ok(url: &str) -> bool {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return false;
    };
    client.get(uri).await.is_ok_and(|r| r.status().is_success())
}

fn print(what: &str, samples: &mut [f64]) -> Result<f64, BoxError> {
    let p = Percentiles::of(samples).ok_or("no samples")?;
    println!(
        "  {what:<46} p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
        p.p50, p.p90, p.p99
    );
    Ok(p.p50)
}

fn main() -> Result<(), BoxError> {
    let mut n = 2000;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, value] = args.as_slice()
        && flag == "--requests"
    {
        n = value.parse()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let api = FakeApiServer::new().recording().with_costs(ApiCosts::TYPICAL);
        api.insert(
            "agents.x-k8s.io/sandboxes",
            json!({
                "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
                "metadata": {"name": "sb", "namespace": NS},
                "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "python:3.12"}]}}},
                "status": {"podIPs": ["127.0.0.1"], "conditions": [{"type": "Ready", "status": "True",
                    "reason": "DependenciesReady", "message": "Pod is Ready", "lastTransitionTime": "2026-09-01T12:00:00Z"}]}
            }),
        );
        let sandbox = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sandbox_port = sandbox.local_addr()?.port();
        let stop_sandbox = CancellationToken::new();
        tokio::spawn(serve_sandbox(sandbox, stop_sandbox.clone()));
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();

        println!("{n} sequential GETs of a 3-byte answer, keep-alive:");
        let direct_url = format!("http://127.0.0.1:{sandbox_port}/hello");
        let mut direct = measure(&client, n, || {
            Request::get(direct_url.as_str())
                .body(Empty::new())
                .unwrap_or_default()
        })
        .await?;
        let base = print("direct to the sandbox", &mut direct)?;
        for cache in [true, false] {
            let (url, stop) = gateway(&api, sandbox_port, cache).await?;
            let via = format!("{url}/hello");
            api.clear_request_log();
            let mut through = measure(&client, n, || {
                Request::get(via.as_str())
                    .header("x-sandbox-id", "sb")
                    .header("x-sandbox-namespace", NS)
                    .header("x-sandbox-port", sandbox_port.to_string())
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(Empty::new())
                    .unwrap_or_default()
            })
            .await?;
            let gets = api
                .request_log()
                .iter()
                .filter(|r| r.method == "GET" && !r.watch && r.path.ends_with("/sandboxes/sb"))
                .count();
            let what = if cache {
                "through the gateway (watch-fed cache)"
            } else {
                "through the gateway (--cache-enabled=false)"
            };
            let p50 = print(what, &mut through)?;
            #[allow(clippy::cast_precision_loss)]
            let per_request = gets as f64 / (n + 100) as f64;
            println!(
                "    adds {:.3} ms at p50; {per_request:.2} Sandbox GETs per request",
                p50 - base
            );
            stop.cancel();
        }
        stop_sandbox.cancel();
        Ok(())
    })
}
