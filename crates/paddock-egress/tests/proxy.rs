//! The egress proxy for real: a sandbox namespace made by the proxy, `curl` run inside it (as a
//! sandboxed program would), and test hosts in a namespace the test makes. Never the internet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use paddock_api::policy::{EgressLimits, EgressMode, EgressPolicy, EgressRule};
use paddock_egress::{EgressProxy, Netns, Resolver, SandboxEgress};
use paddock_policy::EgressRules;
use paddock_testkit::net::TestHosts;
use paddock_wire::{EgressKind, EgressRecord};

struct Sandbox {
    _dir: tempfile::TempDir,
    netns: PathBuf,
    ca: PathBuf,
    egress: Arc<SandboxEgress>,
    _proxy: EgressProxy,
    hosts: TestHosts,
}

fn rule(name: &str, domains: &[&str], cidrs: &[String]) -> EgressRule {
    EgressRule {
        name: Some(name.into()),
        domains: domains.iter().map(|s| s.to_string()).collect(),
        cidrs: cidrs.to_vec(),
        ..EgressRule::default()
    }
}

/// The default test policy: `allowed.test` and `*.wild.test` (whose private test addresses a
/// CIDR rule names), on ports 80 and 443, and `rebind.test` (which resolves to 127.0.0.1).
fn policy(hosts: &TestHosts, mode: EgressMode) -> EgressPolicy {
    let mut named = rule(
        "test-hosts",
        &["allowed.test", "*.wild.test", "rebind.test"],
        &[hosts.cidr("allowed.test"), hosts.cidr("a.wild.test")],
    );
    named.ports = vec![80, 443];
    EgressPolicy {
        mode: Some(mode),
        rules: vec![named],
        limits: None,
    }
}

fn sandbox(make_policy: impl FnOnce(&TestHosts) -> EgressPolicy) -> Option<Sandbox> {
    if !TestHosts::available() {
        eprintln!("skipped: needs root and ip(8)");
        return None;
    }
    let hosts = TestHosts::start();
    let dir = tempfile::tempdir().unwrap();
    let netns = Netns::create(&dir.path().join("netns")).unwrap();
    let proxy = EgressProxy::new(Resolver::Server(hosts.dns()));
    let rules = EgressRules::compile(&make_policy(&hosts)).unwrap();
    let egress = proxy
        .attach(
            "default/sb",
            &netns,
            SandboxEgress::new("default/sb", rules),
        )
        .unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &hosts.ca_pem).unwrap();
    Some(Sandbox {
        netns: netns.path().to_owned(),
        _dir: dir,
        ca,
        egress,
        _proxy: proxy,
        hosts,
    })
}

struct Curl {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Sandbox {
    /// curl inside the sandbox's namespace; `proxy: false` ignores the proxy.
    async fn curl(&self, url: &str, extra: &[&str], proxy: bool) -> Curl {
        let mut cmd = tokio::process::Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()))
            .args(["curl", "-sS", "--max-time", "10", "--cacert"])
            .arg(&self.ca)
            .args(extra)
            .arg(url)
            .env_clear();
        if proxy {
            cmd.args(["--proxy", "http://127.0.0.1:3128"]);
        } else {
            cmd.args(["--noproxy", "*"]);
        }
        let out = cmd.output().await.expect("nsenter and curl");
        Curl {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The newest record of `host` (waiting for tunnels to close and be recorded).
    async fn record(&self, host: &str) -> EgressRecord {
        self.record_where(host, |_| true).await
    }

    /// The newest record of `host` that `pred` accepts, waiting for it (a connection is
    /// recorded when it closes, which may be after the client is done).
    async fn record_where(&self, host: &str, pred: impl Fn(&EgressRecord) -> bool) -> EgressRecord {
        for _ in 0..200 {
            if let Some(r) = self
                .egress
                .log()
                .snapshot()
                .into_iter()
                .rev()
                .find(|r| r.host == host && pred(r))
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "no such record of {host}: {:#?}",
            self.egress.log().snapshot()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_domain_over_https_and_http_goes_through_and_is_recorded() {
    let Some(sb) = sandbox(|h| policy(h, EgressMode::Enforce)) else {
        return;
    };
    let out = sb.curl("https://allowed.test/pkg", &[], true).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "hello from allowed.test: GET /pkg");
    let r = sb.record("allowed.test").await;
    assert!(r.allowed && r.kind == EgressKind::Connect, "{r:?}");
    assert_eq!(r.rule.as_deref(), Some("test-hosts"));
    assert_eq!(r.port, 443);
    assert_eq!(
        r.address.as_deref(),
        Some(sb.hosts.addr_of("allowed.test").to_string().as_str())
    );
    assert!(
        r.bytes_sent > 100 && r.bytes_received > 100,
        "TLS both ways: {r:?}"
    );

    let out = sb
        .curl("http://allowed.test/plain", &["-X", "POST"], true)
        .await;
    assert_eq!(
        out.stdout, "hello from allowed.test: POST /plain",
        "{}",
        out.stderr
    );
    let r = sb
        .record_where("allowed.test", |r| r.kind == EgressKind::Http)
        .await;
    assert_eq!(
        (r.kind, r.method.as_deref(), r.path.as_deref()),
        (EgressKind::Http, Some("POST"), Some("/plain"))
    );

    // The sandbox's own Host header cannot name another site on the allowed address.
    let out = sb
        .curl(
            "http://allowed.test/h",
            &[
                "-s",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-H",
                "Host: denied.test",
            ],
            true,
        )
        .await;
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains("x-seen-host: allowed.test"),
        "{}",
        out.stdout
    );

    let out = sb.curl("https://a.wild.test/", &[], true).await;
    assert_eq!(
        out.stdout, "hello from a.wild.test: GET /",
        "wildcard: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_domains_ip_literals_and_private_resolutions_are_refused_with_a_reason() {
    let Some(sb) = sandbox(|h| policy(h, EgressMode::Enforce)) else {
        return;
    };
    let out = sb.curl("https://denied.test/", &[], true).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("403"), "{}", out.stderr);
    let r = sb.record("denied.test").await;
    assert!(!r.allowed);
    assert_eq!(
        r.reason.as_deref(),
        Some("no egress rule allows denied.test port 443 (add it to the sandbox's SandboxPolicy)")
    );

    let literal = sb.hosts.addr_of("denied.test").to_string();
    let out = sb.curl(&format!("http://{literal}/"), &["-i"], true).await;
    assert!(out.stdout.starts_with("HTTP/1.1 403"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("x-paddock-egress-denied: no egress rule allows"),
        "{}",
        out.stdout
    );

    let out = sb.curl("https://rebind.test/", &[], true).await;
    assert_ne!(out.code, 0);
    let r = sb.record("rebind.test").await;
    assert_eq!(
        r.reason.as_deref(),
        Some(
            "rebind.test resolves to 127.0.0.1, which is not a public address: allow it with a cidrs rule"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_name_other_than_the_tunnels_host_ends_the_tunnel() {
    let Some(sb) = sandbox(|h| policy(h, EgressMode::Enforce)) else {
        return;
    };
    // CONNECT allowed.test:443, then a ClientHello for denied.test.
    let out = sb
        .curl(
            "https://denied.test/",
            &["--connect-to", "denied.test:443:allowed.test:443"],
            true,
        )
        .await;
    assert_ne!(out.code, 0, "{}", out.stdout);
    let r = sb.record("allowed.test").await;
    assert!(!r.allowed, "{r:?}");
    assert_eq!(
        r.reason.as_deref(),
        Some("the TLS server name denied.test does not match the tunnel's host allowed.test")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_ignoring_the_proxy_finds_no_route() {
    let Some(sb) = sandbox(|h| policy(h, EgressMode::Enforce)) else {
        return;
    };
    let allowed = sb.hosts.addr_of("allowed.test");
    let out = sb.curl(&format!("http://{allowed}/"), &[], false).await;
    assert_eq!(out.code, 7, "connection failed: {}", out.stderr);
    assert!(
        out.stderr.contains("Couldn't connect") || out.stderr.contains("unreachable"),
        "{}",
        out.stderr
    );
}

/// Asks the sandbox's DNS responder, from inside its namespace.
fn dns_in(netns: &Path, name: &str) -> (hickory_proto::op::ResponseCode, usize) {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    let netns = netns.to_owned();
    let name = name.to_owned();
    std::thread::spawn(move || {
        let fd: OwnedFd = std::fs::File::open(&netns).unwrap().into();
        rustix::thread::move_into_link_name_space(fd.as_fd(), None).unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut q = Message::new();
        q.set_id(7).set_recursion_desired(true);
        q.add_query(Query::query(
            Name::from_ascii(format!("{name}.")).unwrap(),
            RecordType::A,
        ));
        socket
            .send_to(&q.to_vec().unwrap(), SocketAddr::from(([127, 0, 0, 1], 53)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let n = socket.recv(&mut buf).unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        (reply.response_code(), reply.answers().len())
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_allowed_names_only() {
    use hickory_proto::op::ResponseCode;
    let Some(sb) = sandbox(|h| policy(h, EgressMode::Enforce)) else {
        return;
    };
    let netns = sb.netns.clone();
    let allowed = tokio::task::spawn_blocking({
        let netns = netns.clone();
        move || dns_in(&netns, "allowed.test")
    });
    assert_eq!(allowed.await.unwrap(), (ResponseCode::NoError, 1));
    let denied = tokio::task::spawn_blocking(move || dns_in(&netns, "denied.test"));
    assert_eq!(denied.await.unwrap(), (ResponseCode::NXDomain, 0));
    let r = sb.record("denied.test").await;
    assert_eq!(r.kind, EgressKind::Dns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_applies_to_the_next_connection() {
    let Some(sb) = sandbox(|h| policy(h, EgressMode::Enforce)) else {
        return;
    };
    assert_ne!(sb.curl("https://denied.test/", &[], true).await.code, 0);
    let mut wider = policy(&sb.hosts, EgressMode::Enforce);
    wider.rules.push(rule(
        "now-allowed",
        &["denied.test"],
        &[sb.hosts.cidr("denied.test")],
    ));
    sb.egress.set_rules(EgressRules::compile(&wider).unwrap());
    let out = sb.curl("https://denied.test/", &[], true).await;
    assert_eq!(
        out.stdout, "hello from denied.test: GET /",
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_lets_denials_through_and_records_them() {
    let Some(sb) = sandbox(|h| {
        let mut p = policy(h, EgressMode::Audit);
        p.rules.push(rule("private", &[], &[h.cidr("denied.test")]));
        p
    }) else {
        return;
    };
    let out = sb.curl("https://denied.test/", &[], true).await;
    assert_eq!(
        out.stdout, "hello from denied.test: GET /",
        "{}",
        out.stderr
    );
    let r = sb.record("denied.test").await;
    assert!(r.allowed && r.audited, "{r:?}");
    assert!(
        r.reason
            .as_deref()
            .unwrap_or("")
            .starts_with("no egress rule allows denied.test"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_byte_limit_cuts_the_transfer_and_refuses_new_connections() {
    let Some(sb) = sandbox(|h| {
        let mut p = policy(h, EgressMode::Enforce);
        p.limits = Some(EgressLimits {
            bytes: Some(20_000),
            requests: None,
        });
        p
    }) else {
        return;
    };
    let out = sb.curl("http://allowed.test/bytes/100000", &[], true).await;
    assert_ne!(out.code, 0, "the transfer is cut");
    assert!(out.stdout.len() < 100_000);
    let out = sb.curl("http://allowed.test/", &["-i"], true).await;
    assert!(out.stdout.starts_with("HTTP/1.1 403"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("the sandbox's egress bytes limit (20000) is spent"),
        "{}",
        out.stdout
    );
    let (bytes, _) = sb.egress.usage();
    assert!(bytes >= 20_000);
}
