//! A new user's first hour, as they did it: the quickstart as root without sudo, `serve` with a
//! relative `--agent`, a sandbox whose main process cannot start, the README's sandbox flow
//! (`create --name`, `cp` into the workspace, `exec`, `ls -o wide`), `ls -la` inside gVisor,
//! and `--watch`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paddock_testkit::agent_binary;
use paddock_testkit::cli::{assert_ok, err, out, wait_pool_full};
use paddock_testkit::registry::free_port;
use paddock_testkit::serve::ServeProcess;

/// `paddock serve` on a free port with `extra` flags.
async fn serve(home: &Path, extra: &[&str]) -> ServeProcess {
    ServeProcess::start(paddock_bin(), home, free_port(), extra).await
}

fn paddock_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_paddock"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Stops every `paddock serve` whose home is `home` (the quickstart starts it detached).
fn stop_serve_of(home: &Path) {
    let pattern = format!("serve --home {}", home.display());
    let _ = Command::new("pkill")
        .args(["-TERM", "-f", &pattern])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Command::new("pgrep")
        .args(["-f", &pattern])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(Instant::now() < deadline, "serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn quickstart_runs_as_root_without_sudo_and_shows_only_loopback() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: the quickstart starts gVisor sandboxes, which needs root");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    // A `sudo` that fails loudly, first on PATH: root must never need it.
    let shims = tempfile::tempdir().unwrap();
    let sudo = shims.path().join("sudo");
    std::fs::write(&sudo, "#!/bin/sh\necho 'sudo was called' >&2\nexit 97\n").unwrap();
    std::fs::set_permissions(&sudo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        shims.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let url = format!("http://127.0.0.1:{}", free_port());
    let o = Command::new(repo().join("scripts/quickstart"))
        .env("PATH", path)
        .env("PADDOCK_BIN", paddock_bin())
        .env("PADDOCK_AGENT_BIN", agent_binary())
        .env("PADDOCK_URL", &url)
        .env("PADDOCK_HOME", home.path())
        .env("PADDOCK_TUNE_HOST", "0")
        // The quickstart's serve outlives the test's handle: no spares to leave behind.
        .env("PADDOCK_DEFAULT_POOL", "0")
        .env_remove("PADDOCK_TOKEN")
        .output()
        .unwrap();
    stop_serve_of(home.path());
    assert_ok(&o, "scripts/quickstart");
    assert!(!err(&o).contains("sudo was called"), "{}", err(&o));
    let stdout = out(&o);
    assert!(
        stdout.contains("hello from a gVisor sandbox: kernel 4.4.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("network interfaces: lo\n"),
        "the sandbox has loopback only: {stdout}"
    );
    let script = std::fs::read_to_string(repo().join("scripts/quickstart")).unwrap();
    assert!(
        !script.contains("1.1.1.1") && !script.contains("8.8.8.8"),
        "nothing we ship dials a public address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_resolves_a_relative_agent_path_against_the_callers_directory() {
    let agent = agent_binary();
    let dir = agent.parent().unwrap();
    let name = agent.file_name().unwrap().to_str().unwrap();

    // A path that does not exist is named, with the directory it was looked for from.
    let o = Command::new(paddock_bin())
        .current_dir(dir)
        .args(["serve", "--agent", "./no-such-agent", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--home")
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains("./no-such-agent"), "{}", err(&o));
    assert!(err(&o).contains(&dir.display().to_string()), "{}", err(&o));

    // A relative path that exists works, for both runtimes.
    let home = tempfile::tempdir().unwrap();
    let port = free_port();
    let relative = format!("./{name}");
    let mut serve = Command::new(paddock_bin())
        .current_dir(dir)
        .args([
            "serve",
            "--default-pool=0",
            "--agent",
            &relative,
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--home")
        .arg(home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        if let Ok(token) = std::fs::read_to_string(home.path().join("token")) {
            let c = paddock_client::Client::new(&url, Some(token.trim().to_owned())).unwrap();
            if c.health().await.is_ok() {
                break c;
            }
        }
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let token = std::fs::read_to_string(home.path().join("token")).unwrap();
    for runtime in ["gvisor", "bwrap"] {
        let o = Command::new(paddock_bin())
            .args(["run", "--runtime", runtime, "--", "echo", "agent found"])
            .env("PADDOCK_URL", &url)
            .env("PADDOCK_TOKEN", token.trim())
            .output()
            .unwrap();
        assert_ok(&o, runtime);
        assert_eq!(out(&o), "agent found\n");
    }
    drop(client);
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_main_process_that_cannot_run_fails_the_create_with_its_code_and_output() {
    let home = tempfile::tempdir().unwrap();
    let s = serve(home.path(), &[]).await;
    for runtime in ["gvisor", "bwrap"] {
        let started = Instant::now();
        let name = format!("missing-{runtime}");
        let o = s
            .run(&[
                "sandbox",
                "create",
                &name,
                "--runtime",
                runtime,
                "--",
                "/nonexistent",
            ])
            .await;
        assert_ne!(o.status.code(), Some(0), "{runtime}: {}", out(&o));
        let e = err(&o);
        assert!(e.contains("could not be started (exit code 127"), "{e}");
        assert!(e.contains("/nonexistent"), "the output's tail: {e}");

        let name = format!("exits-{runtime}");
        let o = s
            .run(&[
                "sandbox",
                "create",
                &name,
                "--runtime",
                runtime,
                "--",
                "sh",
                "-c",
                "echo starting; echo broken config >&2; exit 3",
            ])
            .await;
        assert_ne!(o.status.code(), Some(0), "{runtime}: {}", out(&o));
        let e = err(&o);
        assert!(e.contains("exited with code 3"), "{e}");
        assert!(e.contains("broken config"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{runtime}: the creates returned as soon as they could not become Ready"
        );
    }
    // A sandbox that cannot start at all (an image nobody serves) fails at once too.
    let started = Instant::now();
    let unreachable = format!("127.0.0.1:{}/nothing:latest", free_port());
    let o = s
        .run(&["sandbox", "create", "no-image", "--image", &unreachable])
        .await;
    assert_ne!(o.status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(err(&o).contains("127.0.0.1"), "{}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_sandbox_flow_works_as_written() {
    let home = tempfile::tempdir().unwrap();
    let s = serve(home.path(), &[]).await;
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("data.csv"), "a,b\n1,2\n").unwrap();
    let run_in = |args: &[&str]| {
        let mut c = s.cli(args);
        c.current_dir(local.path());
        c.output().unwrap()
    };
    assert_ok(&run_in(&["sandbox", "create", "--name", "dev"]), "create");
    assert_ok(
        &run_in(&["cp", "./data.csv", "dev:/workspace/"]),
        "cp into the workspace",
    );
    let o = run_in(&[
        "exec",
        "dev",
        "--",
        "sh",
        "-c",
        "pwd; cat data.csv; echo out > result.txt",
    ]);
    assert_ok(&o, "exec");
    assert_eq!(out(&o), "/workspace\na,b\n1,2\n");
    assert_ok(&run_in(&["cp", "dev:/workspace/result.txt", "."]), "cp out");
    assert_eq!(
        std::fs::read_to_string(local.path().join("result.txt")).unwrap(),
        "out\n"
    );
    // Copying into a read-only place says where writes go.
    let o = run_in(&["cp", "./data.csv", "dev:/usr/"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("/workspace"), "{}", err(&o));

    let o = run_in(&["sandbox", "ls", "-o", "wide"]);
    assert_ok(&o, "ls -o wide");
    let lines: Vec<String> = out(&o).lines().map(str::to_owned).collect();
    assert!(
        lines[0].contains("IMAGE") && lines[0].contains("MESSAGE"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("dev ") && l.contains("host")),
        "{lines:?}"
    );
    assert_eq!(
        out(&run_in(&["sandbox", "ls", "-o", "name"])),
        "sandbox/dev\n"
    );
    let o = run_in(&["sandbox", "ls", "-o", "jsonpath={.items[*].name}"]);
    assert_eq!(out(&o), "dev\n");
    let o = run_in(&["sandbox", "get", "dev", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "dev");
    let o = run_in(&["get", "sandboxes", "-o", "wide"]);
    assert!(out(&o).contains("MESSAGE"), "{}", out(&o));
    let o = run_in(&["get", "sandboxes", "-o", "name"]);
    assert_eq!(out(&o), "sandbox.agents.x-k8s.io/dev\n");
    let o = run_in(&["get", "sandbox", "dev", "-o", "jsonpath={.metadata.name}"]);
    assert_eq!(out(&o), "dev\n");
    let o = run_in(&["sandbox", "ls", "-o", "xml"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        err(&o).contains("wide, json, yaml, name or jsonpath"),
        "{}",
        err(&o)
    );
    assert_ok(&run_in(&["sandbox", "rm", "dev"]), "rm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_stat_find_and_df_work_inside_gvisor_and_bwrap() {
    let home = tempfile::tempdir().unwrap();
    let s = serve(home.path(), &[]).await;
    // bwrap sandboxes have no /sys.
    for (runtime, dirs) in [
        ("gvisor", "/ /proc /dev /sys /tmp /workspace"),
        ("bwrap", "/ /proc /dev /tmp /workspace"),
    ] {
        let script = format!(
            "ls -la {dirs} >/dev/null && stat / /workspace >/dev/null && find / -xdev >/dev/null \
             && df >/dev/null && cp -a /etc/hostname /workspace/ \
             && ls -l /workspace/hostname >/dev/null && echo all-good"
        );
        let o = s
            .run(&["run", "--runtime", runtime, "--", "sh", "-c", &script])
            .await;
        assert_ok(&o, runtime);
        assert_eq!(out(&o), "all-good\n", "{runtime}: {}", err(&o));
        assert!(
            !err(&o).contains("Invalid argument"),
            "{runtime}: {}",
            err(&o)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_ls_watch_prints_a_row_when_a_sandbox_changes() {
    let home = tempfile::tempdir().unwrap();
    let s = serve(home.path(), &[]).await;
    let mut watch = s
        .cli(&["sandbox", "ls", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Give the watch a moment to start before the change it must see.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ok(
        &s.run(&["sandbox", "create", "watched", "--runtime", "bwrap"])
            .await,
        "create",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let ready = line.starts_with("watched ") && line.contains("True");
                seen.push(line);
                if ready {
                    break;
                }
            }
            Err(_) => panic!("no Ready row for the new sandbox: {seen:?}"),
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_creates_take_a_fresh_sandbox_from_the_default_pool() {
    let home = tempfile::tempdir().unwrap();
    let s = serve(home.path(), &["--default-pool=2"]).await;
    // The host image on gVisor is pooled from the start.
    wait_pool_full(&s.client, "paddock-gvisor-host").await;
    let o = s.run(&["sandbox", "ls"]).await;
    assert!(
        err(&o).contains("No sandboxes"),
        "the pool's spares are not the user's sandboxes: {}",
        out(&o)
    );
    let o = s.run(&["get", "sandboxes", "-o", "name"]).await;
    assert_eq!(out(&o).lines().count(), 2, "{}", out(&o));

    // A bare create claims one: warm, already Ready, listed as the user's.
    let o = s.run(&["sandbox", "create"]).await;
    assert_ok(&o, "create");
    let name = out(&o).trim().to_owned();
    assert!(name.starts_with("paddock-gvisor-host-"), "{name}");
    let o = s
        .run(&["sandbox", "get", &name, "-o", "jsonpath={.launchType}"])
        .await;
    assert_eq!(out(&o), "warm\n");
    let o = s.run(&["sandbox", "ls", "-o", "name"]).await;
    assert_eq!(out(&o), format!("sandbox/{name}\n"));
    let o = s
        .run(&["exec", &name, "--", "sh", "-c", "ls /workspace | wc -l"])
        .await;
    assert_eq!(out(&o), "0\n", "never used before: {}", err(&o));
    assert_ok(&s.run(&["sandbox", "rm", &name]).await, "rm");

    // `paddock run` takes one too, and it is gone afterwards (used once).
    let o = s
        .run(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo used > /workspace/mark; echo ok",
        ])
        .await;
    assert_ok(&o, "run");
    assert_eq!(out(&o), "ok\n");
    wait_pool_full(&s.client, "paddock-gvisor-host").await;
    let o = s
        .run(&[
            "run",
            "--",
            "sh",
            "-c",
            "test -e /workspace/mark && echo reused || echo fresh",
        ])
        .await;
    assert_eq!(out(&o), "fresh\n", "{}", err(&o));

    // A named create, or one with a command, is made as asked (no pool).
    let o = s.run(&["sandbox", "create", "--name", "mine"]).await;
    assert_eq!(out(&o).trim(), "mine");
    assert_ok(&s.run(&["sandbox", "rm", "mine"]).await, "rm mine");

    // bwrap gets its own pool on first use.
    assert_ok(
        &s.run(&["run", "--runtime", "bwrap", "--", "true"]).await,
        "bwrap run",
    );
    wait_pool_full(&s.client, "paddock-bwrap-host").await;

    // doctor shows the pools and what they cost.
    let o = s.run(&["doctor"]).await;
    let report = out(&o);
    let pools: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("default-pools"))
        .collect();
    assert!(
        pools
            .iter()
            .any(|l| l.contains("default/paddock-gvisor-host: 2 of 2 ready") && l.contains("MiB")),
        "{pools:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_pool_zero_turns_default_pools_off() {
    let home = tempfile::tempdir().unwrap();
    let s = serve(home.path(), &["--default-pool=0"]).await;
    let o = s.run(&["sandbox", "create", "--runtime", "bwrap"]).await;
    assert_ok(&o, "create");
    assert!(out(&o).starts_with("sbx-"), "{}", out(&o));
    let o = s.run(&["get", "sandboxwarmpools", "-o", "name"]).await;
    assert_eq!(out(&o), "", "{}", err(&o));
}
