//! Egress through the CLI against a real `paddock serve`: a policy applied from a file, `paddock
//! run --policy` with curl inside, `paddock sandbox egress` and `paddock policy suggest` on the
//! record. Test hosts live in a namespace the test makes; never the internet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use paddock_testkit::cli::{assert_ok, err, out};
use paddock_testkit::net::TestHosts;
use paddock_testkit::registry::free_port;
use paddock_testkit::serve::ServeProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_policy_reaches_allowed_hosts_and_the_record_suggests_a_policy() {
    if !TestHosts::available() {
        eprintln!("skipped: needs root and ip(8)");
        return;
    }
    let hosts = TestHosts::start();
    let home = tempfile::tempdir().unwrap();
    let dns = hosts.dns().to_string();
    let s = ServeProcess::start(
        Path::new(env!("CARGO_BIN_EXE_paddock")),
        home.path(),
        free_port(),
        &["--egress-dns", &dns],
    )
    .await;
    // Audit mode: everything goes through and is recorded, to learn a policy from.
    let policy = home.path().join("learn.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: paddock.dev/v1alpha1\nkind: SandboxPolicy\nmetadata:\n  name: learn\nspec:\n  egress:\n    mode: audit\n    rules:\n    - name: test-hosts\n      cidrs: [10.213.{}.0/24]\n",
            hosts.subnet
        ),
    )
    .unwrap();
    let o = s.run(&["apply", "-f", policy.to_str().unwrap()]).await;
    assert_ok(&o, "apply");
    assert!(
        out(&o).contains("sandboxpolicy/learn created"),
        "{}",
        out(&o)
    );

    let o = s
        .run(&[
            "run",
            "--runtime",
            "bwrap",
            "--policy",
            "learn",
            "--keep",
            "--name",
            "probe",
            "--",
            "sh",
            "-c",
            "curl -sS http://allowed.test/a && curl -sS http://a.wild.test:80/b",
        ])
        .await;
    assert_ok(&o, "run");
    assert_eq!(
        out(&o),
        "hello from allowed.test: GET /ahello from a.wild.test: GET /b"
    );

    let o = s.run(&["sandbox", "egress", "probe"]).await;
    assert_ok(&o, "sandbox egress");
    let table = out(&o);
    assert!(table.starts_with("TIME"), "{table}");
    assert!(
        table.contains("allowed.test:80/a") && table.contains("audit-denied"),
        "{table}"
    );

    let o = s
        .run(&["policy", "suggest", "probe", "--name", "learned"])
        .await;
    assert_ok(&o, "policy suggest");
    let suggested = out(&o);
    assert!(
        suggested.contains("- allowed.test") && suggested.contains("- a.wild.test"),
        "{suggested}"
    );
    let file = home.path().join("learned.yaml");
    std::fs::write(&file, &suggested).unwrap();
    let o = s.run(&["validate", "-f", file.to_str().unwrap()]).await;
    assert_ok(&o, "the suggestion validates");

    let o = s.run(&["policy", "ls"]).await;
    assert_ok(&o, "policy ls");
    assert!(
        out(&o).contains("learn") && out(&o).contains("audit"),
        "{}",
        out(&o)
    );

    // The egress decisions are in the sandbox's audit log, whose chain verifies; a changed
    // line is found.
    let log = home.path().join("audit/default/probe.jsonl");
    let o = s.run(&["audit", "verify", log.to_str().unwrap()]).await;
    assert_ok(&o, "audit verify");
    assert!(
        out(&o).contains("chain intact, head matches"),
        "{}",
        out(&o)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("egress-http") && text.contains("allow-audited"),
        "{text}"
    );
    std::fs::write(&log, text.replacen("allowed.test", "another.test", 1)).unwrap();
    let o = s.run(&["audit", "verify", log.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("line 1: was changed after it was written"),
        "{}",
        out(&o)
    );

    let o = s.run(&["sandbox", "rm", "probe"]).await;
    assert_ok(&o, "rm");
    let o = s.run(&["policy", "rm", "learn"]).await;
    assert_ok(&o, "policy rm");
    let o = s.run(&["policy", "get", "learn"]).await;
    assert!(!o.status.success());
    assert!(err(&o).contains("not found"), "{}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_nothing_would_enforce_is_refused_not_ignored() {
    let home = tempfile::tempdir().unwrap();
    let s = ServeProcess::start(
        Path::new(env!("CARGO_BIN_EXE_paddock")),
        home.path(),
        free_port(),
        &["--no-egress"],
    )
    .await;
    let o = s
        .run(&[
            "run",
            "--runtime",
            "bwrap",
            "--policy",
            "anything",
            "--",
            "true",
        ])
        .await;
    assert!(!o.status.success());
    assert!(
        err(&o)
            .contains("policy: this server gives sandboxes no network (paddock serve --no-egress)"),
        "{}",
        err(&o)
    );
}
