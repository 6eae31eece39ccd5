//! A SandboxPolicy's permissions, enforced by the gateway on a real bwrap sandbox: the API
//! operation, the program an exec runs, the path a file call reads or writes; upstream's
//! router route to the agent is refused for such a sandbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paddock_client::{CreateSandbox, ErrorCode, ProcessRequest};
use paddock_testkit::TestServer;

const POLICY: &str = "apiVersion: paddock.dev/v1alpha1
kind: SandboxPolicy
metadata:
  name: reviewer
spec:
  permissions:
    exec:
      allow: [python3, /usr/bin/git, curl]
      deny: [curl]
    files:
      read:
        paths: ['/tmp/**', '/etc/**']
      write:
        level: ask
        paths: ['/tmp/out/**']
    api:
      delete: never
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_enforces_a_sandboxs_permissions() {
    let server = TestServer::start().await;
    server.client.apply(POLICY, None).await.unwrap();
    let mut req = CreateSandbox::image("host");
    req.runtime = Some("bwrap".into());
    req.name = Some("rev".into());
    req.policy = Some("reviewer".into());
    server.client.create_sandbox(&req).await.unwrap();
    let sb = server.client.sandbox("rev", "default");

    let ok = sb
        .exec(&ProcessRequest::argv(["python3", "-c", "print(6*7)"]))
        .await
        .unwrap();
    assert_eq!(ok.stdout, "42\n");

    let denied = |e: paddock_client::Error| {
        assert_eq!(e.code, ErrorCode::PermissionDenied, "{e}");
        e.to_string()
    };
    let shell = denied(
        sb.exec(&ProcessRequest::shell("echo hi"))
            .await
            .expect_err("sh"),
    );
    assert!(shell.contains("does not allow running sh"), "{shell}");
    let curl = denied(
        sb.exec(&ProcessRequest::argv(["curl", "-V"]))
            .await
            .expect_err("curl"),
    );
    assert!(
        curl.contains("does not allow running curl"),
        "deny wins: {curl}"
    );

    assert!(!sb.read_file("/etc/hostname").await.unwrap().is_empty());
    let secret = denied(
        sb.read_file("/root/.profile")
            .await
            .expect_err("outside the globs"),
    );
    assert!(
        secret.contains("does not allow reading /root/.profile"),
        "{secret}"
    );
    let held = denied(
        sb.write_file("/tmp/out/a.txt", "x", None)
            .await
            .expect_err("ask"),
    );
    assert!(
        held.contains("holds writing /tmp/out/a.txt for a person's approval"),
        "{held}"
    );
    let never = denied(
        sb.write_file("/tmp/b.txt", "x", None)
            .await
            .expect_err("never"),
    );
    assert!(
        never.contains("does not allow writing /tmp/b.txt"),
        "{never}"
    );
    let escape = denied(
        sb.read_file("/tmp/../root/.profile")
            .await
            .expect_err("dot dot"),
    );
    assert!(escape.contains("does not allow reading"), "{escape}");

    // The file operations are checked the same way, on every path they name.
    assert_eq!(sb.stat("/etc/hostname").await.unwrap().type_, "file");
    let stat = denied(sb.stat("/root/.profile").await.expect_err("outside"));
    assert!(
        stat.contains("does not allow reading /root/.profile"),
        "{stat}"
    );
    let copy = denied(
        sb.copy_path("/etc/hostname", "/tmp/c.txt", false)
            .await
            .expect_err("write never"),
    );
    assert!(copy.contains("does not allow writing /tmp/c.txt"), "{copy}");
    let mkdir = denied(sb.mkdir("/tmp/newdir").await.expect_err("write never"));
    assert!(
        mkdir.contains("does not allow writing /tmp/newdir"),
        "{mkdir}"
    );
    let moved = denied(
        sb.move_path("/tmp/../etc/hostname", "/tmp/h", false)
            .await
            .expect_err("write never"),
    );
    assert!(moved.contains("does not allow writing"), "{moved}");

    let delete = denied(sb.delete().await.expect_err("api delete never"));
    assert!(
        delete.contains("does not allow the delete operation"),
        "{delete}"
    );

    // Upstream's router route to the agent cannot be checked call by call: refused.
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "X-Sandbox-ID: rev",
            "-H",
        ])
        .arg(format!("Authorization: Bearer {}", server.token))
        .arg(format!("{}/execute", server.url))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");

    // A path that names the sandbox again further on is checked as what it is (the sandbox's
    // ports, closed here), not as what follows the second name.
    let sneaky = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {}", server.token))
        .arg(format!(
            "{}/v1/sandboxes/%72ev/ports/1/rev/files/root/.profile",
            server.url
        ))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&sneaky.stdout), "403");

    // Every decision is in the sandbox's hash-chained audit log.
    let log = server.home.join("audit/default/rev.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let head = std::fs::read_to_string(log.with_extension("head")).unwrap();
    let lines = paddock_policy::audit::verify_with_head(&text, &head).expect("the chain holds");
    assert!(lines >= 8, "{text}");
    assert!(
        text.contains(r#""decision":"deny","kind":"exec","subject":"sh""#),
        "{text}"
    );
    assert!(
        text.contains(r#""decision":"hold","kind":"files-write","subject":"/tmp/out/a.txt""#),
        "{text}"
    );
    assert!(
        text.contains(r#""decision":"allow","kind":"exec","subject":"python3""#),
        "{text}"
    );

    // A policy change applies to the next call: delete is allowed again.
    server
        .client
        .apply(&POLICY.replace("delete: never", "delete: always"), None)
        .await
        .unwrap();
    sb.delete().await.unwrap();
}
