//! The egress proxy's costs, against test hosts in a namespace this benchmark makes (never the
//! internet). Needs root.
//!
//! - a small HTTPS GET (new connection, DNS, TLS) from a sandbox's namespace through the proxy
//!   (CONNECT tunnel; TLS interception with an injected header) versus the same GET from a
//!   bare namespace;
//! - a 256 MiB download through the proxy versus direct;
//! - network set-up: namespace + proxy per sandbox, and bwrap sandbox create with and without
//!   a policy through the engine;
//! - 200 sandboxes with policies: the proxy's memory per idle sandbox.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use paddock_api::policy::{
    CredentialInjection, EgressMode, EgressPolicy, EgressRule, SecretSource,
};
use paddock_bench::Percentiles;
use paddock_egress::{EgressProxy, Netns, Resolver, SandboxEgress};
use paddock_policy::EgressRules;
use paddock_testkit::net::TestHosts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GETS: usize = 300;

fn rules(hosts: &TestHosts, secret_file: Option<&Path>) -> EgressRules {
    let mut rule = EgressRule {
        name: Some("bench".into()),
        domains: vec!["allowed.test".into()],
        cidrs: vec![hosts.cidr("allowed.test")],
        ..EgressRule::default()
    };
    if let Some(file) = secret_file {
        rule.inject = vec![CredentialInjection {
            header: "Authorization".into(),
            format: Some("Bearer {secret}".into()),
            env: None,
            value_from: SecretSource {
                file: Some(file.display().to_string()),
                secret_key_ref: None,
            },
        }];
    }
    EgressRules::compile(&EgressPolicy {
        mode: Some(EgressMode::Enforce),
        rules: vec![rule],
        limits: None,
    })
    .unwrap()
}

fn tls_config(roots_pem: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in roots_pem {
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// How a client reaches `allowed.test`.
#[derive(Clone)]
enum Path2 {
    /// Resolve it (as the proxy would) and connect.
    Direct(Resolver),
    /// CONNECT through the proxy on the namespace's loopback.
    Proxy,
}

async fn open(path: &Path2, port: u16) -> TcpStream {
    match path {
        Path2::Direct(resolver) => {
            let ip = resolver.resolve("allowed.test").await.unwrap()[0];
            TcpStream::connect(SocketAddr::new(ip, port)).await.unwrap()
        }
        Path2::Proxy => {
            let mut s = TcpStream::connect(paddock_egress::proxy_addr())
                .await
                .unwrap();
            s.write_all(
                format!(
                    "CONNECT allowed.test:{port} HTTP/1.1\r\nHost: allowed.test:{port}\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            assert!(
                head.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            s
        }
    }
}

/// One HTTPS GET on a new connection; the milliseconds it took.
async fn https_get(path: &Path2, tls: &Arc<rustls::ClientConfig>) -> f64 {
    let start = Instant::now();
    let tcp = open(path, 443).await;
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("allowed.test").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::clone(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    s.write_all(b"GET /small HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body).await;
    assert!(
        body.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    start.elapsed().as_secs_f64() * 1000.0
}

/// A 256 MiB plain-HTTP download; MB/s.
async fn download(path: &Path2, bytes: usize) -> f64 {
    let start = Instant::now();
    let mut s = open(path, 80).await;
    s.write_all(
        format!("GET /bytes/{bytes} HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(total >= bytes, "got {total} of {bytes}");
    bytes as f64 / 1e6 / start.elapsed().as_secs_f64()
}

/// Runs `f` on a thread inside the namespace at `netns` (or ours, for `None`), on a runtime
/// of its own, so its sockets live there.
fn in_netns<T: Send + 'static>(
    netns: Option<PathBuf>,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = T>>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        if let Some(path) = netns {
            let fd: OwnedFd = std::fs::File::open(path).unwrap().into();
            rustix::thread::move_into_link_name_space(fd.as_fd(), None).unwrap();
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    })
    .join()
    .unwrap()
}

fn gets(netns: Option<PathBuf>, path: Path2, tls: Arc<rustls::ClientConfig>) -> Percentiles {
    let mut samples = in_netns(netns, move || {
        Box::pin(async move {
            for _ in 0..20 {
                https_get(&path, &tls).await;
            }
            let mut v = Vec::with_capacity(GETS);
            for _ in 0..GETS {
                v.push(https_get(&path, &tls).await);
            }
            v
        })
    });
    Percentiles::of(&mut samples).unwrap()
}

/// Creates bwrap sandboxes through a real engine and gateway, alternating without and with a
/// policy; the create → ready times of each.
async fn engine_creates(hosts: &TestHosts) -> (Percentiles, Percentiles) {
    let dns = hosts.dns();
    let server = paddock_testkit::TestServer::start_with(None, true, move |c| {
        c.egress = Some(paddock_engine::egress::EgressSettings {
            resolver: Resolver::Server(dns),
            upstream_roots: Vec::new(),
        });
    })
    .await;
    let policy = format!(
        "apiVersion: paddock.dev/v1alpha1\nkind: SandboxPolicy\nmetadata:\n  name: bench\nspec:\n  egress:\n    rules:\n    - domains: [allowed.test]\n      cidrs: [{}]\n",
        hosts.cidr("allowed.test")
    );
    server.client.apply(&policy, None).await.unwrap();
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for i in 0..22 {
        for policy in [None, Some("bench")] {
            let mut req = paddock_client::CreateSandbox::image("host");
            req.runtime = Some("bwrap".into());
            req.name = Some(format!("b{i}-{}", policy.is_some()));
            req.policy = policy.map(str::to_owned);
            let start = Instant::now();
            server.client.create_sandbox(&req).await.unwrap();
            let took = start.elapsed().as_secs_f64() * 1000.0;
            // The first two of each warm up.
            if i >= 2 {
                if policy.is_some() {
                    with.push(took)
                } else {
                    without.push(took)
                }
            }
            server
                .client
                .sandbox(req.name.as_deref().unwrap(), "default")
                .delete()
                .await
                .unwrap();
        }
    }
    (
        Percentiles::of(&mut without).unwrap(),
        Percentiles::of(&mut with).unwrap(),
    )
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn ms(p: &Percentiles) -> String {
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        p.p50, p.p90, p.p99
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    assert!(TestHosts::available(), "run as root (network namespaces)");
    let hosts = TestHosts::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "bench-secret").unwrap();
    let resolver = Resolver::Server(hosts.dns());
    let proxy = EgressProxy::with_roots(resolver.clone(), std::slice::from_ref(&hosts.ca_pem));

    let tunnel_ns = Netns::create(&dir.path().join("tunnel")).unwrap();
    proxy
        .attach(
            "bench/tunnel",
            &tunnel_ns,
            SandboxEgress::new("bench/tunnel", rules(&hosts, None)),
        )
        .unwrap();
    let intercept_ns = Netns::create(&dir.path().join("intercept")).unwrap();
    let intercepted = proxy
        .attach(
            "bench/intercept",
            &intercept_ns,
            SandboxEgress::new("bench/intercept", rules(&hosts, Some(&secret))),
        )
        .unwrap();
    let test_tls = tls_config(&[&hosts.ca_pem]);
    let sandbox_tls = tls_config(&[intercepted.ca().unwrap().pem()]);

    println!("egress: a small HTTPS GET on a new connection (DNS, TCP, TLS), {GETS} sequential");
    let direct = gets(None, Path2::Direct(resolver.clone()), Arc::clone(&test_tls));
    println!("  direct from a bare namespace:      {}", ms(&direct));
    let tunnel = gets(
        Some(tunnel_ns.path().to_owned()),
        Path2::Proxy,
        Arc::clone(&test_tls),
    );
    println!(
        "  through the proxy (CONNECT):       {}  (+{:.2} ms p50)",
        ms(&tunnel),
        tunnel.p50 - direct.p50
    );
    let icpt = gets(
        Some(intercept_ns.path().to_owned()),
        Path2::Proxy,
        sandbox_tls,
    );
    println!(
        "  with TLS interception + secret:    {}  (+{:.2} ms p50)",
        ms(&icpt),
        icpt.p50 - direct.p50
    );

    println!("egress: a 256 MiB plain-HTTP download, best of 3");
    let size = 256 << 20;
    let best = |netns: Option<PathBuf>, path: Path2| {
        in_netns(netns, move || {
            Box::pin(async move {
                let mut best: f64 = 0.0;
                for _ in 0..3 {
                    best = best.max(download(&path, size).await);
                }
                best
            })
        })
    };
    let direct_mbs = best(None, Path2::Direct(resolver.clone()));
    let proxy_mbs = best(Some(tunnel_ns.path().to_owned()), Path2::Proxy);
    println!("  direct:            {direct_mbs:.0} MB/s");
    println!(
        "  through the proxy: {proxy_mbs:.0} MB/s ({:.0} % of direct)",
        proxy_mbs / direct_mbs * 100.0
    );

    println!(
        "egress: network set-up per sandbox (namespace, CA, proxy and DNS bound in it), 50 times"
    );
    // A sandbox's network: its namespace, and the proxy serving it there.
    let attach = |name: &str| {
        let ns = Netns::create(&dir.path().join(name)).unwrap();
        let key = format!("bench/{name}");
        proxy
            .attach(
                &key,
                &ns,
                SandboxEgress::new(key.clone(), rules(&hosts, None)),
            )
            .unwrap();
        (ns, key)
    };
    let mut setup = Vec::new();
    let mut teardown = Vec::new();
    for i in 0..50 {
        let start = Instant::now();
        let (ns, key) = attach(&format!("s{i}"));
        setup.push(start.elapsed().as_secs_f64() * 1000.0);
        let start = Instant::now();
        proxy.detach(&key);
        ns.remove().unwrap();
        teardown.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    println!("  set-up:   {}", ms(&Percentiles::of(&mut setup).unwrap()));
    println!(
        "  teardown: {}",
        ms(&Percentiles::of(&mut teardown).unwrap())
    );

    println!(
        "egress: bwrap sandbox create -> ready through the engine, with and without a policy, 20 each"
    );
    let (without, with) = engine_creates(&hosts).await;
    println!("  without a policy: {}", ms(&without));
    println!(
        "  with a policy:    {}  (+{:.2} ms p50)",
        ms(&with),
        with.p50 - without.p50
    );

    println!("egress: 200 idle sandboxes with policies on one proxy");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let before = rss_kib();
    let mut namespaces = Vec::new();
    let start = Instant::now();
    for i in 0..200 {
        namespaces.push(attach(&format!("m{i}")).0);
    }
    let took = start.elapsed();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let after = rss_kib();
    println!(
        "  200 attached in {:.0} ms; proxy memory {:.0} KiB per idle sandbox (RSS {} -> {} KiB)",
        took.as_secs_f64() * 1000.0,
        after.saturating_sub(before) as f64 / 200.0,
        before,
        after
    );
    // One of the 200 still answers.
    let last = namespaces.last().unwrap().path().to_owned();
    let p = gets(Some(last), Path2::Proxy, test_tls);
    println!("  a GET from the 200th: {}", ms(&p));
    for (i, ns) in namespaces.into_iter().enumerate() {
        proxy.detach(&format!("bench/m{i}"));
        ns.remove().unwrap();
    }
    for ns in [tunnel_ns, intercept_ns] {
        ns.remove().unwrap();
    }
}
