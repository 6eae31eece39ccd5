//! The CLI against a real `paddock serve`: `run`, `sandbox`, `exec`, `cp`, `pull`, `apply`, `get`
//! and `delete` as a user types them, with the output, exit codes and errors they see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use paddock_testkit::cli::{assert_ok, err, out};
use paddock_testkit::registry::{Registry, build_layout, free_port, push, tools_present};
use paddock_testkit::serve::ServeProcess;

async fn serve(home: &Path, extra: &[&str]) -> ServeProcess {
    ServeProcess::start(
        Path::new(env!("CARGO_BIN_EXE_paddock")),
        home,
        free_port(),
        extra,
    )
    .await
}

/// Waits until the server lists no sandbox (deletes finish in the background).
async fn wait_no_sandboxes(s: &ServeProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = s.client.sandboxes(None).await.unwrap();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "sandboxes left: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_streams_output_exits_with_the_code_and_deletes_the_sandbox() {
    let home = tempfile::tempdir().unwrap();
    let s = serve(home.path(), &[]).await;
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("input.txt"), "from the host\n").unwrap();
    let volume = format!("{}:/data:ro", shared.path().display());
    for runtime in ["gvisor", "bwrap"] {
        let o = s
            .run(&[
                "run",
                "--runtime",
                runtime,
                "-e",
                "WHO=paddock",
                "-w",
                "/tmp",
                "-v",
                &volume,
                "--",
                "sh",
                "-c",
                "echo hello $WHO; pwd; cat /data/input.txt; echo oops >&2; exit 3",
            ])
            .await;
        assert_eq!(o.status.code(), Some(3), "{runtime}: {}", err(&o));
        assert_eq!(out(&o), "hello paddock\n/tmp\nfrom the host\n", "{runtime}");
        assert!(err(&o).contains("oops"), "{runtime}: {}", err(&o));
        // The volume was read-only.
        let o = s
            .run(&[
                "run",
                "--runtime",
                runtime,
                "-v",
                &volume,
                "--",
                "sh",
                "-c",
                "echo x > /data/new",
            ])
            .await;
        assert_ne!(
            o.status.code(),
            Some(0),
            "{runtime} wrote a read-only volume"
        );
        assert!(!shared.path().join("new").exists());
    }
    wait_no_sandboxes(&s).await;

    // --keep leaves the sandbox, and says how to delete it.
    let o = s
        .run(&[
            "run",
            "--runtime",
            "bwrap",
            "--name",
            "kept",
            "--keep",
            "--",
            "true",
        ])
        .await;
    assert_ok(&o, "run --keep");
    assert!(err(&o).contains("paddock sandbox rm kept"), "{}", err(&o));
    let o = s.run(&["sandbox", "ls"]).await;
    assert!(out(&o).contains("kept"), "{}", out(&o));
    assert_ok(&s.run(&["sandbox", "rm", "kept"]).await, "rm kept");

    // Mistakes are named before anything is created.
    let o = s.run(&["run", "-e", "NOEQUALS", "--", "true"]).await;
    assert_eq!(o.status.code(), Some(2), "paddock's own errors exit 2");
    assert!(err(&o).contains("KEY=VALUE"), "{}", err(&o));
    let o = s
        .run(&["run", "-v", "/does/not/exist:/x", "--", "true"])
        .await;
    assert!(err(&o).contains("does not exist"), "{}", err(&o));
    wait_no_sandboxes(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_lifecycle_with_exec_and_cp_of_files_and_directories() {
    let home = tempfile::tempdir().unwrap();
    let s = serve(home.path(), &[]).await;
    let o = s
        .run(&["sandbox", "create", "box", "--runtime", "bwrap"])
        .await;
    assert_ok(&o, "create");
    assert_eq!(out(&o).trim(), "box");
    let o = s.run(&["sandbox", "ls"]).await;
    assert!(out(&o).lines().any(|l| l.starts_with("box")), "{}", out(&o));

    let o = s
        .run(&["exec", "box", "--", "sh", "-c", "echo in-box; exit 7"])
        .await;
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(out(&o), "in-box\n");

    // A file in, a directory in, both back out.
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("notes.txt"), "line one\n").unwrap();
    std::fs::create_dir_all(local.path().join("project/src")).unwrap();
    std::fs::write(local.path().join("project/src/main.py"), "print('hi')\n").unwrap();
    let file = local.path().join("notes.txt");
    assert_ok(
        &s.run(&["cp", file.to_str().unwrap(), "box:/tmp/notes.txt"])
            .await,
        "cp in",
    );
    let dir = local.path().join("project");
    assert_ok(
        &s.run(&["cp", dir.to_str().unwrap(), "box:/tmp/project"])
            .await,
        "cp dir in",
    );
    let o = s
        .run(&[
            "exec",
            "box",
            "--",
            "cat",
            "/tmp/notes.txt",
            "/tmp/project/src/main.py",
        ])
        .await;
    assert_eq!(out(&o), "line one\nprint('hi')\n");
    let back = local.path().join("back");
    assert_ok(
        &s.run(&["cp", "box:/tmp/project", back.to_str().unwrap()])
            .await,
        "cp dir out",
    );
    assert_eq!(
        std::fs::read_to_string(back.join("src/main.py")).unwrap(),
        "print('hi')\n"
    );
    let o = s
        .run(&["cp", "box:/tmp/missing", back.to_str().unwrap()])
        .await;
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("box:/tmp/missing"), "{}", err(&o));
    assert!(
        !back.join("missing").exists(),
        "a failed copy leaves nothing behind"
    );
    // An existing file is untouched by a failed copy over it.
    let keep = local.path().join("notes.txt");
    let o = s
        .run(&["cp", "box:/tmp/missing", keep.to_str().unwrap()])
        .await;
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "line one\n");

    // Pause stops it (as upstream's replicas: 0 deletes the pod, only volumes persist); resume
    // starts it again under the same name.
    let o = s.run(&["sandbox", "pause", "box"]).await;
    assert_ok(&o, "pause");
    assert_eq!(out(&o).trim(), "box paused");
    let o = s.run(&["sandbox", "resume", "box"]).await;
    assert_ok(&o, "resume");
    let o = s.run(&["exec", "box", "--", "echo", "back"]).await;
    assert_eq!(out(&o), "back\n", "{}", err(&o));
    // Upstream's word works too.
    assert_ok(&s.run(&["sandbox", "suspend", "box"]).await, "suspend");
    assert_ok(&s.run(&["sandbox", "resume", "box"]).await, "resume");

    assert_ok(&s.run(&["sandbox", "rm", "box"]).await, "rm");
    wait_no_sandboxes(&s).await;
    let o = s.run(&["exec", "box", "--", "true"]).await;
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("box"), "{}", err(&o));

    // A wrong token is refused with the hint where the right one lives.
    let o = s
        .cli(&["sandbox", "ls"])
        .env("PADDOCK_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("PADDOCK_TOKEN"), "{}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_show_the_main_process_output_and_follow_it_until_it_ends() {
    let home = tempfile::tempdir().unwrap();
    let s = serve(home.path(), &[]).await;
    let script = "echo first; until [ -p /tmp/go ]; do sleep 0.05; done; read _ < /tmp/go; \
                  echo second >&2; echo third";
    let o = s
        .run(&[
            "sandbox",
            "create",
            "srv",
            "--runtime",
            "bwrap",
            "--",
            "sh",
            "-c",
            script,
        ])
        .await;
    assert_ok(&o, "create with a main process");
    // The fifo lets the test decide when the main process goes on.
    assert_ok(
        &s.run(&["exec", "srv", "--", "mkfifo", "/tmp/go"]).await,
        "mkfifo",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = s.run(&["sandbox", "logs", "srv"]).await;
        assert_ok(&o, "logs");
        if out(&o) == "first\n" {
            break;
        }
        assert!(Instant::now() < deadline, "log so far: {:?}", out(&o));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut follow = s
        .cli(&["sandbox", "logs", "--follow", "srv"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The follower is attached once it has printed what the log holds so far.
    let mut stdout = follow.stdout.take().unwrap();
    let (attached_tx, attached_rx) = tokio::sync::oneshot::channel();
    let reader = std::thread::spawn(move || {
        use std::io::Read as _;
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        let mut attached = Some(attached_tx);
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.starts_with(b"first\n")
                && let Some(tx) = attached.take()
            {
                let _ = tx.send(());
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    tokio::time::timeout(Duration::from_secs(10), attached_rx)
        .await
        .expect("logs --follow prints the log so far")
        .expect("the reader thread runs");
    assert_ok(
        &s.run(&["exec", "srv", "--", "sh", "-c", "echo > /tmp/go"])
            .await,
        "release the main process",
    );
    let followed = tokio::task::spawn_blocking(move || follow.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_ok(&followed, "logs --follow ends when the main process ends");
    assert_eq!(reader.join().unwrap(), "first\nsecond\nthird\n");
    // The log outlives the process, until the sandbox is deleted.
    let o = s.run(&["sandbox", "logs", "srv"]).await;
    assert_eq!(out(&o), "first\nsecond\nthird\n");

    let o = s.run(&["sandbox", "logs", "nope"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("\"nope\" not found"), "{}", err(&o));
}

/// The status code of a router-contract request (`X-Sandbox-ID`) for the agent's health, sent
/// by hand so nothing but the given token travels.
async fn routed_status(url: &str, token: &str, sandbox: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /v1/health HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nX-Sandbox-ID: {sandbox}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens_reach_their_sandbox_and_nothing_else() {
    let home = tempfile::tempdir().unwrap();
    let secret = home.path().join("scoped-secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef-test\n").unwrap();
    let secret_arg = secret.to_str().unwrap();
    let s = serve(home.path(), &["--scoped-token-secret-file", secret_arg]).await;
    for name in ["mine", "other"] {
        assert_ok(
            &s.run(&["sandbox", "create", name, "--runtime", "bwrap"])
                .await,
            "create",
        );
    }
    let o = s
        .run(&["token", "mine", "--ttl", "10m", "--secret-file", secret_arg])
        .await;
    assert_ok(&o, "token");
    let scoped = out(&o).trim().to_owned();
    assert!(scoped.starts_with("v1."), "{scoped}");

    assert_eq!(routed_status(&s.url, &scoped, "mine").await, 200);
    assert_eq!(routed_status(&s.url, &scoped, "other").await, 403);
    assert_eq!(routed_status(&s.url, "v1.forged.token", "mine").await, 401);
    // The main token still reaches everything; the scoped one nothing but its sandbox.
    assert_eq!(routed_status(&s.url, &s.token, "other").await, 200);
    let o = s
        .cli(&["sandbox", "ls"])
        .env("PADDOCK_TOKEN", &scoped)
        .output()
        .unwrap();
    assert_ne!(
        o.status.code(),
        Some(0),
        "a scoped token cannot list sandboxes"
    );

    // Bad input names what is wrong.
    let o = s
        .run(&["token", "mine", "--ttl", "1w", "--secret-file", secret_arg])
        .await;
    assert!(err(&o).contains("unknown unit"), "{}", err(&o));
    let short = home.path().join("short");
    std::fs::write(&short, "too short").unwrap();
    let o = s
        .run(&["token", "mine", "--secret-file", short.to_str().unwrap()])
        .await;
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("32"), "{}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_and_delete_objects_as_on_a_cluster() {
    let home = tempfile::tempdir().unwrap();
    let s = serve(home.path(), &[]).await;
    let manifest = home.path().join("objects.yaml");
    std::fs::write(
        &manifest,
        r"apiVersion: extensions.agents.x-k8s.io/v1beta1
kind: SandboxTemplate
metadata:
  name: shell
spec:
  podTemplate:
    metadata:
      annotations:
        paddock.dev/runtime: bwrap
    spec:
      containers:
      - name: main
        image: host
        command: [sleep, '600']
---
apiVersion: extensions.agents.x-k8s.io/v1alpha1
kind: SandboxClaim
metadata:
  name: mine
spec:
  sandboxTemplateRef:
    name: shell
",
    )
    .unwrap();
    let o = s.run(&["apply", "-f", manifest.to_str().unwrap()]).await;
    assert_ok(&o, "apply");
    assert_eq!(
        out(&o),
        "sandboxtemplate/shell created\nsandboxclaim/mine created\n"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = s.run(&["get", "sandboxclaims", "mine"]).await;
        if out(&o).contains("True") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "claim never Ready: {}{}",
            out(&o),
            err(&o)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let o = s.run(&["exec", "mine", "--", "echo", "claimed"]).await;
    assert_eq!(out(&o), "claimed\n", "{}", err(&o));
    let o = s
        .run(&[
            "get",
            "sandboxclaim",
            "mine",
            "-o",
            "yaml",
            "--api-version",
            "v1alpha1",
        ])
        .await;
    assert_ok(&o, "get -o yaml");
    assert!(
        out(&o).contains("apiVersion: extensions.agents.x-k8s.io/v1alpha1"),
        "{}",
        out(&o)
    );

    // A malformed manifest changes nothing and says where it is wrong.
    let bad = home.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: agents.x-k8s.io/v1beta1\nkind: Sandbox\nmetadata:\n  name: Bad_Name\nspec: {}\n").unwrap();
    let o = s.run(&["apply", "-f", bad.to_str().unwrap()]).await;
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("Bad_Name"), "{}", err(&o));

    assert_ok(
        &s.run(&["delete", "-f", manifest.to_str().unwrap()]).await,
        "delete -f",
    );
    wait_no_sandboxes(&s).await;
    let o = s.run(&["get", "sandboxtemplates"]).await;
    assert!(!out(&o).contains("shell"), "{}", out(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_and_run_an_image_from_a_local_registry() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = build_layout(dir.path());
    let registry = Registry::start(dir.path(), &dir.path().join("storage"), "");
    push(&layout, &registry);
    let image = format!("{}/tools/box:v1", registry.host());

    // Without --insecure-registry paddock speaks HTTPS only, and says how to allow HTTP.
    let home = tempfile::tempdir().unwrap();
    let mut s = serve(home.path(), &[]).await;
    let o = s.run(&["pull", &image]).await;
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("--insecure-registry"), "{}", err(&o));
    s.terminate();

    let home = tempfile::tempdir().unwrap();
    let s = serve(home.path(), &["--insecure-registry", &registry.host()]).await;
    let o = s.run(&["pull", &image]).await;
    assert_ok(&o, "pull");
    assert!(err(&o).contains(&format!("pulled {image}")), "{}", err(&o));
    let o = s
        .run(&[
            "run",
            "--image",
            &image,
            "--",
            "sh",
            "-c",
            "echo $GREETING; pwd",
        ])
        .await;
    assert_ok(&o, "run --image");
    assert_eq!(out(&o), "from-image\n/home/app\n");

    // A tag that does not exist is named in the error; nothing is created.
    let missing = format!("{}/tools/box:nope", registry.host());
    let o = s.run(&["run", "--image", &missing, "--", "true"]).await;
    assert_ne!(o.status.code(), Some(0));
    assert!(
        err(&o).contains("box:nope") || err(&o).contains("nope"),
        "{}",
        err(&o)
    );
    wait_no_sandboxes(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_tokens_are_bound_to_one_sandbox_uid_method_and_path() {
    let home = tempfile::tempdir().unwrap();
    let signing = home.path().join("signing.json");
    let keys = home.path().join("keys.json");
    let (signing_arg, keys_arg) = (signing.to_str().unwrap(), keys.to_str().unwrap());
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(["token", "keygen", "--kid", "test-1"])
        .args([
            "--signing-key-file",
            signing_arg,
            "--verification-keys-file",
            keys_arg,
        ])
        .output()
        .unwrap();
    assert_ok(&o, "keygen");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&signing).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let s = serve(
        home.path(),
        &["--scoped-token-signing-key-file", signing_arg],
    )
    .await;
    for name in ["mine", "other"] {
        assert_ok(
            &s.run(&["sandbox", "create", name, "--runtime", "bwrap"])
                .await,
            "create",
        );
    }
    let mint = |path: &'static str| {
        let s = &s;
        async move {
            let o = s
                .run(&[
                    "token", "mine", "--server", "--method", "GET", "--path", path, "--ttl", "10m",
                ])
                .await;
            assert_ok(&o, "token --server");
            out(&o).trim().to_owned()
        }
    };
    let health = mint("/v1/health").await;
    assert!(health.starts_with("v2.test-1."), "{health}");
    assert_eq!(routed_status(&s.url, &health, "mine").await, 200);
    assert_eq!(routed_status(&s.url, &health, "other").await, 403);
    let metadata = mint("/v1/metadata").await;
    assert_eq!(
        routed_status(&s.url, &metadata, "mine").await,
        403,
        "another path"
    );
    let at = health.len() - 10;
    let flipped = if &health[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &health[..at], &health[at + 1..]);
    assert_eq!(routed_status(&s.url, &forged, "mine").await, 401);

    // Minted offline with the same key: only the right UID passes.
    let o = s.run(&["get", "sandbox", "mine", "-o", "json"]).await;
    assert_ok(&o, "get");
    let sandbox: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let uid = sandbox["metadata"]["uid"].as_str().unwrap().to_owned();
    let offline = |uid: String| {
        let s = &s;
        async move {
            let o = s
                .run(&[
                    "token",
                    "mine",
                    "--signing-key-file",
                    signing_arg,
                    "--uid",
                    &uid,
                    "--path",
                    "/v1/health",
                ])
                .await;
            assert_ok(&o, "token --signing-key-file");
            out(&o).trim().to_owned()
        }
    };
    assert_eq!(
        routed_status(&s.url, &offline(uid.clone()).await, "mine").await,
        200
    );
    assert_eq!(
        routed_status(&s.url, &offline("not-the-uid".into()).await, "mine").await,
        403
    );

    // The same name, recreated: another Sandbox, and the old token fails.
    assert_ok(&s.run(&["sandbox", "rm", "mine"]).await, "rm");
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.client.sandbox("mine", "default").info().await.is_ok() {
        assert!(Instant::now() < deadline, "mine is never gone");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ok(
        &s.run(&["sandbox", "create", "mine", "--runtime", "bwrap"])
            .await,
        "create again",
    );
    assert_eq!(routed_status(&s.url, &health, "mine").await, 403);
    assert_eq!(
        routed_status(&s.url, &mint("/v1/health").await, "mine").await,
        200
    );

    // Bad input names what is wrong.
    let o = s
        .run(&["token", "mine", "--signing-key-file", signing_arg])
        .await;
    assert!(err(&o).contains("--uid"), "{}", err(&o));
    let o = s.run(&["token", "mine"]).await;
    assert!(err(&o).contains("--server"), "{}", err(&o));
}
