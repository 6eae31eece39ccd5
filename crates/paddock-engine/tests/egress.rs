//! Egress from real sandboxes (bubblewrap and gVisor) on the embedded engine: a SandboxPolicy
//! applied through the gateway, curl run inside the sandbox, test hosts in a namespace the test
//! makes. Never the internet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use paddock_client::{CreateSandbox, ProcessRequest};
use paddock_egress::Resolver;
use paddock_engine::egress::EgressSettings;
use paddock_testkit::TestServer;
use paddock_testkit::net::TestHosts;

fn policy_yaml(hosts: &TestHosts, name: &str, extra_domain: Option<&str>) -> String {
    let extra = extra_domain
        .map(|d| {
            format!(
                "    - name: extra\n      domains: [{d}]\n      cidrs: [{}]\n",
                hosts.cidr(d)
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: paddock.dev/v1alpha1\nkind: SandboxPolicy\nmetadata:\n  name: {name}\nspec:\n  egress:\n    rules:\n    - name: test-hosts\n      domains: [allowed.test, '*.wild.test']\n      cidrs: [{}, {}]\n      ports: [80, 443]\n{extra}",
        hosts.cidr("allowed.test"),
        hosts.cidr("a.wild.test"),
    )
}

async fn start(hosts: &TestHosts) -> TestServer {
    let dns = hosts.dns();
    let ca = hosts.ca_pem.clone();
    TestServer::start_with(None, true, move |c| {
        c.egress = Some(EgressSettings {
            resolver: Resolver::Server(dns),
            upstream_roots: vec![ca],
        });
    })
    .await
}

/// The host pids of a sandbox's processes: those whose environment holds its placeholder, or
/// whose command line names the server's home (gVisor's sandbox and gofer).
fn sandbox_pids(placeholder: &str, home: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let read = |f: &str| std::fs::read(entry.path().join(f)).unwrap_or_default();
        let has =
            |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
        if has(&read("environ"), placeholder) || has(&read("cmdline"), home) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether `needle` is anywhere in the readable memory of `pid` (regions up to 256 MiB).
fn memory_contains(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return false;
    };
    let Ok(mut mem) = std::fs::File::open(format!("/proc/{pid}/mem")) else {
        return false;
    };
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        if end - start > 256 << 20 || mem.seek(SeekFrom::Start(start)).is_err() {
            continue;
        }
        let mut buf = vec![0u8; usize::try_from(end - start).unwrap()];
        let mut read = 0;
        while read < buf.len() {
            match mem.read(&mut buf[read..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
        if buf[..read].windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

async fn metrics(server: &TestServer) -> String {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let req = http::Request::get(format!("{}/metrics", server.url))
        .header("Authorization", format!("Bearer {}", server.token))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

async fn curl(sb: &paddock_client::Sandbox, args: &str) -> (Option<i32>, String, String) {
    let r = sb
        .exec(&ProcessRequest::shell(format!(
            "curl -sS --max-time 10 --cacert /tmp/ca.pem {args}"
        )))
        .await
        .unwrap();
    (r.exit_code, r.stdout, r.stderr)
}

async fn networked_sandbox_reaches_only_what_its_policy_allows(runtime: &str) {
    if !TestHosts::available() {
        eprintln!("skipped: needs root and ip(8)");
        return;
    }
    let hosts = TestHosts::start();
    let server = start(&hosts).await;
    let applied = server
        .client
        .apply(&policy_yaml(&hosts, "test-hosts", None), None)
        .await
        .unwrap();
    assert_eq!(applied[0].action, "created");
    let mut req = CreateSandbox::image("host");
    req.runtime = Some(runtime.into());
    req.name = Some(format!("net-{runtime}"));
    req.policy = Some("test-hosts".into());
    server.client.create_sandbox(&req).await.unwrap();
    let sb = server.client.sandbox(&format!("net-{runtime}"), "default");
    sb.write_file("/tmp/ca.pem", hosts.ca_pem.clone(), None)
        .await
        .unwrap();

    let env = sb
        .exec(&ProcessRequest::shell(
            "echo $HTTPS_PROXY; cat /etc/resolv.conf",
        ))
        .await
        .unwrap();
    assert!(
        env.stdout
            .starts_with("http://127.0.0.1:3128\nnameserver 127.0.0.1"),
        "{}",
        env.stdout
    );

    let (code, out, err) = curl(&sb, "https://allowed.test/pkg").await;
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "hello from allowed.test: GET /pkg"),
        "{err}"
    );
    let (code, out, err) = curl(&sb, "http://a.wild.test/plain").await;
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "hello from a.wild.test: GET /plain"),
        "{err}"
    );

    let (code, _, err) = curl(&sb, "https://denied.test/").await;
    assert_ne!(code, Some(0));
    assert!(err.contains("403"), "{err}");
    // A program that ignores the proxy finds no route.
    let allowed = hosts.addr_of("allowed.test");
    let (code, _, err) = curl(&sb, &format!("--noproxy '*' http://{allowed}/")).await;
    assert_eq!(code, Some(7), "{err}");

    // The record, through the gateway.
    let mut records = Vec::new();
    for _ in 0..100 {
        records = sb.egress().await.unwrap();
        if records.iter().filter(|r| r.host == "allowed.test").count() >= 1
            && records.iter().any(|r| r.host == "denied.test")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok = records
        .iter()
        .find(|r| r.host == "allowed.test")
        .expect("allowed record");
    assert!(ok.allowed && ok.bytes_received > 0, "{ok:?}");
    let denied = records
        .iter()
        .find(|r| r.host == "denied.test")
        .expect("denied record");
    assert!(!denied.allowed);

    // Prometheus counters, on the server's /metrics.
    let metrics = metrics(&server).await;
    let sandbox = format!("net-{runtime}");
    for series in [
        format!(
            "paddock_egress_decisions_total{{namespace=\"default\",sandbox=\"{sandbox}\",kind=\"connect\",verdict=\"allowed\"}}"
        ),
        format!(
            "paddock_egress_decisions_total{{namespace=\"default\",sandbox=\"{sandbox}\",kind=\"connect\",verdict=\"denied\"}}"
        ),
        format!(
            "paddock_egress_bytes_total{{namespace=\"default\",sandbox=\"{sandbox}\",direction=\"received\"}}"
        ),
    ] {
        assert!(
            metrics.contains(&series),
            "{series} missing from:\n{metrics}"
        );
    }

    // A live change: the next connection is allowed, without restarting the sandbox.
    let applied = server
        .client
        .apply(
            &policy_yaml(&hosts, "test-hosts", Some("denied.test")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(applied[0].action, "configured");
    let mut allowed_now = false;
    for _ in 0..20 {
        let (code, out, _) = curl(&sb, "https://denied.test/").await;
        if code == Some(0) && out == "hello from denied.test: GET /" {
            allowed_now = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(allowed_now, "the changed policy applies within a second");

    sb.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bwrap_sandbox_with_a_policy_reaches_only_what_it_allows() {
    networked_sandbox_reaches_only_what_its_policy_allows("bwrap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gvisor_sandbox_with_a_policy_reaches_only_what_it_allows() {
    networked_sandbox_reaches_only_what_its_policy_allows("gvisor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_naming_a_missing_policy_fails_with_the_remedy() {
    if !TestHosts::available() {
        return;
    }
    let hosts = TestHosts::start();
    let server = start(&hosts).await;
    let mut req = CreateSandbox::image("host");
    req.runtime = Some("bwrap".into());
    req.name = Some("no-policy".into());
    req.policy = Some("nowhere".into());
    let err = server
        .client
        .create_sandbox(&req)
        .await
        .expect_err("the sandbox cannot start");
    assert!(
        err.to_string().contains("SandboxPolicy \"nowhere\" (named by the Sandbox's paddock.dev/policy annotation) does not exist in namespace default"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_policy_is_refused_with_field_paths_and_nothing_is_applied() {
    let server = TestServer::start().await;
    let manifest = "apiVersion: paddock.dev/v1alpha1\nkind: SandboxPolicy\nmetadata:\n  name: bad\nspec:\n  egress:\n    rules:\n    - domains: ['https://pypi.org']\n      ports: [0]\n";
    let err = server
        .client
        .apply(manifest, None)
        .await
        .expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("nothing was applied"), "{text}");
    let details = format!("{:?}", err);
    assert!(
        details.contains("spec.egress.rules[0].domains[0]"),
        "{details}"
    );
    assert!(
        details.contains("spec.egress.rules[0].ports[0]"),
        "{details}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_credentials_reach_their_destination_and_never_the_sandbox() {
    if !TestHosts::available() {
        return;
    }
    let hosts = TestHosts::start();
    let server = start(&hosts).await;
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("token");
    let secret = "s3cr3t-value-never-in-the-sandbox";
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let manifest = format!(
        "apiVersion: paddock.dev/v1alpha1\nkind: SandboxPolicy\nmetadata:\n  name: creds\nspec:\n  egress:\n    rules:\n    - name: api\n      domains: [allowed.test]\n      cidrs: [{}]\n      ports: [443]\n      http:\n        methods: [GET]\n        paths: [/v1/]\n      inject:\n      - header: Authorization\n        format: 'Bearer {{secret}}'\n        env: API_TOKEN\n        valueFrom:\n          file: {}\n    - name: other\n      domains: [a.wild.test]\n      cidrs: [{}]\n      ports: [443]\n",
        hosts.cidr("allowed.test"),
        secret_file.display(),
        hosts.cidr("a.wild.test"),
    );
    server.client.apply(&manifest, None).await.unwrap();
    for runtime in ["bwrap", "gvisor"] {
        let name = format!("creds-{runtime}");
        let mut req = CreateSandbox::image("host");
        req.runtime = Some(runtime.into());
        req.name = Some(name.clone());
        req.policy = Some("creds".into());
        server.client.create_sandbox(&req).await.unwrap();
        let sb = server.client.sandbox(&name, "default");

        // The sandbox holds a placeholder; the destination receives the secret, over TLS the
        // sandbox trusts through its own CA (no --cacert: the distro bundle and env do it).
        let placeholder = sb
            .exec(&ProcessRequest::shell("printf %s \"$API_TOKEN\""))
            .await
            .unwrap()
            .stdout;
        assert!(
            placeholder.starts_with("paddock-placeholder-"),
            "{runtime}: {placeholder}"
        );
        let seen = sb
            .exec(&ProcessRequest::shell(
                "curl -sS --max-time 10 -D - -o /dev/null -H \"Authorization: Bearer $API_TOKEN\" https://allowed.test/v1/user | tr -d '\\r' | grep -i '^x-seen-authorization'",
            ))
            .await
            .unwrap();
        // The test server echoes what it received in x-seen-authorization, and its logbook
        // (outside the sandbox) says it received the secret; the echo the sandbox reads has
        // the secret scrubbed back to the placeholder.
        assert_eq!(
            seen.stdout.trim(),
            format!("x-seen-authorization: Bearer {placeholder}"),
            "{runtime}: {}",
            seen.stderr
        );
        assert!(
            hosts
                .seen_authorization()
                .contains(&format!("Bearer {secret}")),
            "{runtime}: the destination received the secret"
        );

        // Sent to another host, the placeholder stays a placeholder. (a.wild.test is not
        // intercepted: its certificate is the test CA's, which the sandbox is given here.)
        sb.write_file("/tmp/ca.pem", hosts.ca_pem.clone(), None)
            .await
            .unwrap();
        let elsewhere = sb
            .exec(&ProcessRequest::shell(
                "curl -sS --max-time 10 --cacert /tmp/ca.pem -D - -o /dev/null -H \"Authorization: Bearer $API_TOKEN\" https://a.wild.test/ | tr -d '\\r' | grep -i '^x-seen-authorization'",
            ))
            .await
            .unwrap();
        assert_eq!(
            elsewhere.stdout.trim(),
            format!("x-seen-authorization: Bearer {placeholder}"),
            "{runtime}: {}",
            elsewhere.stderr
        );

        // Intercepted, the request itself is checked: a POST is not allowed.
        let post = sb
            .exec(&ProcessRequest::shell("curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X POST https://allowed.test/v1/user"))
            .await
            .unwrap();
        assert_eq!(post.stdout, "403", "{runtime}: {}", post.stderr);

        // Nowhere in the sandbox: not in any process's environment, nor in its files.
        // (The secret is passed in halves, so that the search itself never puts it there.)
        let (front, back) = secret.split_at(8);
        let search = sb
            .exec(&ProcessRequest::shell(format!(
                "S={front}; S=$S{back}; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c \"$S\"; grep -rls \"$S\" /tmp /etc /.paddock 2>/dev/null | wc -l"
            )))
            .await
            .unwrap();
        assert_eq!(
            search.stdout, "0\n0\n",
            "{runtime}: the secret leaked into the sandbox"
        );

        // Nor in the memory of any of the sandbox's processes, read from the host (for gVisor,
        // the sandbox kernel and gofer; for bwrap, the agent and what it runs).
        let pids = sandbox_pids(&placeholder, &server.home.to_string_lossy());
        assert!(!pids.is_empty(), "{runtime}: found the sandbox's processes");
        for pid in pids {
            assert!(
                !memory_contains(pid, secret.as_bytes()),
                "{runtime}: the secret is in the memory of pid {pid} ({})",
                String::from_utf8_lossy(
                    &std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
                )
            );
        }
        assert!(
            memory_contains(std::process::id(), secret.as_bytes()),
            "the dump works: the proxy (this process) did hold the secret"
        );

        let records = sb.egress().await.unwrap();
        let used = records
            .iter()
            .find(|r| r.path.as_deref() == Some("/v1/user") && r.method.as_deref() == Some("GET"))
            .expect("the request is recorded");
        assert_eq!(used.credentials, vec!["api/Authorization".to_owned()]);
        assert!(
            !serde_json::to_string(&records).unwrap().contains(secret),
            "records never hold the secret"
        );
        sb.delete().await.unwrap();
    }
    // Nor on the host side of the sandbox: its runtime directory never saw the value.
    let found = std::process::Command::new("grep")
        .args(["-rls", secret])
        .arg(&server.home)
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "the secret is in {}",
        String::from_utf8_lossy(&found.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_serves_a_surviving_sandboxs_egress_and_credentials_again() {
    if !TestHosts::available() {
        return;
    }
    let hosts = TestHosts::start();
    let home = tempfile::tempdir().unwrap();
    let secret_file = home.path().join("secret");
    std::fs::write(&secret_file, "restart-secret").unwrap();
    let settings = |hosts: &TestHosts| EgressSettings {
        resolver: Resolver::Server(hosts.dns()),
        upstream_roots: vec![hosts.ca_pem.clone()],
    };
    let first_settings = settings(&hosts);
    let server = TestServer::start_with(Some(home.path().to_owned()), false, move |c| {
        c.egress = Some(first_settings);
    })
    .await;
    let manifest = format!(
        "apiVersion: paddock.dev/v1alpha1\nkind: SandboxPolicy\nmetadata:\n  name: creds\nspec:\n  egress:\n    rules:\n    - name: api\n      domains: [allowed.test]\n      cidrs: [{}]\n      inject:\n      - header: Authorization\n        env: API_TOKEN\n        valueFrom:\n          file: {}\n",
        hosts.cidr("allowed.test"),
        secret_file.display(),
    );
    server.client.apply(&manifest, None).await.unwrap();
    let mut req = CreateSandbox::image("host");
    req.runtime = Some("bwrap".into());
    req.name = Some("survivor".into());
    req.policy = Some("creds".into());
    server.client.create_sandbox(&req).await.unwrap();
    let home_path = server.stop_keeping_sandboxes().await;

    let second_settings = settings(&hosts);
    let server = TestServer::start_with(Some(home_path), false, move |c| {
        c.egress = Some(second_settings);
    })
    .await;
    let sb = server.client.sandbox("survivor", "default");
    let seen = sb
        .exec(&ProcessRequest::shell(
            "curl -sS --max-time 10 -D - -o /dev/null -H \"Authorization: $API_TOKEN\" https://allowed.test/ | tr -d '\\r' | grep -i '^x-seen-authorization'",
        ))
        .await
        .unwrap();
    assert!(
        seen.stdout
            .trim()
            .starts_with("x-seen-authorization: paddock-placeholder-"),
        "{}",
        seen.stderr
    );
    assert!(
        hosts
            .seen_authorization()
            .contains(&"restart-secret".to_owned()),
        "the destination received the secret after the restart: {:?}",
        hosts.seen_authorization()
    );
    sb.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_inside_an_intercepted_tunnel_count_against_the_request_limit() {
    if !TestHosts::available() {
        return;
    }
    let hosts = TestHosts::start();
    let server = start(&hosts).await;
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), "s").unwrap();
    let manifest = format!(
        "apiVersion: paddock.dev/v1alpha1\nkind: SandboxPolicy\nmetadata:\n  name: few\nspec:\n  egress:\n    rules:\n    - name: api\n      domains: [allowed.test]\n      cidrs: [{}]\n      inject:\n      - header: Authorization\n        valueFrom: {{file: {}}}\n    limits: {{requests: 3}}\n",
        hosts.cidr("allowed.test"),
        secret_file.path().display(),
    );
    server.client.apply(&manifest, None).await.unwrap();
    let mut req = CreateSandbox::image("host");
    req.runtime = Some("bwrap".into());
    req.name = Some("few".into());
    req.policy = Some("few".into());
    server.client.create_sandbox(&req).await.unwrap();
    let sb = server.client.sandbox("few", "default");
    // One tunnel (1), then three requests in it: the third passes the limit of 3.
    let out = sb
        .exec(&ProcessRequest::shell(
            "curl -sS --max-time 10 -w ' %{http_code}\\n' https://allowed.test/1 https://allowed.test/2 https://allowed.test/3",
        ))
        .await
        .unwrap();
    assert!(
        out.stdout.contains("GET /1 200\n") && out.stdout.contains("GET /2 200\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("requests limit (3) is spent\n 403"),
        "{}",
        out.stdout
    );
    sb.delete().await.unwrap();
}
