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
    TestServer::start_with(None, true, move |c| {
        c.egress = Some(EgressSettings {
            resolver: Resolver::Server(dns),
        });
    })
    .await
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
