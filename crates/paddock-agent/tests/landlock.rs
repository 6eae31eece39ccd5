//! `--landlock` with the built binary as its own process (a Landlock restriction cannot be
//! undone, so it never runs inside the test process): children and the agent's own threads may
//! write only beneath `--writable` paths, `/dev` entries and the agent's own files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Reply, unix_request};
use http::{Method, StatusCode};
use serde_json::{Value, json};

struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    async fn start(dir: &Path, args: &[&str]) -> Self {
        let socket = dir.join("run/agent.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_paddock-agent"))
            .arg("--unix")
            .arg(&socket)
            .arg("--base-dir")
            .arg(dir.join("rw/app"))
            .arg("--shutdown-timeout")
            .arg("1")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the agent binary");
        let mut agent = Self { child, socket };
        for _ in 0..500 {
            if agent.request(Method::GET, "/", "").await.is_some() {
                return agent;
            }
            if let Some(status) = agent.child.try_wait().expect("try_wait") {
                panic!("agent exited at start: {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("agent binary did not start");
    }

    async fn request(&self, method: Method, path: &str, body: &str) -> Option<Reply> {
        unix_request(&self.socket, method, path, &[], body).await
    }

    async fn exec(&self, command: &str) -> Value {
        let reply = self
            .request(
                Method::POST,
                "/v1/exec",
                &json!({ "command": command }).to_string(),
            )
            .await
            .expect("exec");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp dir with `rw/` (writable), `outside/` (holding `existing`) and `run/`.
fn layout() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
    for sub in ["rw", "outside", "run", "logs", "status"] {
        std::fs::create_dir(base.join(sub)).expect("create layout dir");
    }
    std::fs::write(base.join("outside/existing"), "readable\n").expect("write fixture");
    (dir, base)
}

fn path_arg(base: &Path, rel: &str) -> String {
    base.join(rel).to_str().expect("UTF-8 path").to_owned()
}

#[tokio::test]
async fn children_write_only_beneath_writable_paths() {
    let (_dir, base) = layout();
    let rw = path_arg(&base, "rw");
    let outside = path_arg(&base, "outside");
    let agent = Agent::start(
        &base,
        &[
            "--root-dir",
            &rw,
            "--landlock",
            "required",
            "--writable",
            &rw,
        ],
    )
    .await;

    let denied = agent.exec(&format!("echo x > {outside}/new")).await;
    assert_ne!(denied["exit_code"], 0, "{denied}");
    assert!(
        denied["stderr"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{denied}"
    );
    assert!(!base.join("outside/new").exists());
    for command in [
        format!("mkdir {outside}/dir"),
        format!("rm {outside}/existing"),
        format!("echo more >> {outside}/existing"),
        format!("ln -s /etc {outside}/link"),
    ] {
        let result = agent.exec(&command).await;
        assert_ne!(result["exit_code"], 0, "{command} was allowed: {result}");
    }
    assert_eq!(
        std::fs::read_to_string(base.join("outside/existing")).unwrap(),
        "readable\n"
    );

    let allowed = agent
        .exec(&format!(
            "echo x > {rw}/new && mkdir -p {rw}/d/e && mv {rw}/new {rw}/d/e/moved && rm -r {rw}/d \
             && echo y > {rw}/kept && cat {outside}/existing && echo hi > /dev/null && echo ok"
        ))
        .await;
    assert_eq!(allowed["exit_code"], 0, "{allowed}");
    assert_eq!(allowed["stdout"], "readable\nok\n");
    assert_eq!(
        std::fs::read_to_string(base.join("rw/kept")).unwrap(),
        "y\n"
    );
}

#[tokio::test]
async fn terminals_work_under_landlock() {
    let (_dir, base) = layout();
    let rw = path_arg(&base, "rw");
    let agent = Agent::start(
        &base,
        &[
            "--root-dir",
            &rw,
            "--landlock",
            "required",
            "--writable",
            &rw,
        ],
    )
    .await;
    let reply = agent
        .request(
            Method::POST,
            "/v1/processes",
            &json!({"argv": ["sh", "-c", "stty size; tty >/dev/null && echo is-a-tty"],
                    "pty": {"cols": 100, "rows": 30}})
            .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let output: String = reply
        .lines()
        .iter()
        .filter(|e| e["type"] == "stdout")
        .map(|e| e["data"].as_str().unwrap().to_owned())
        .collect();
    assert!(output.contains("30 100"), "{output:?}");
    assert!(output.contains("is-a-tty"), "{output:?}");
}

#[tokio::test]
async fn the_agents_threads_are_restricted_and_only_the_agent_writes_its_status() {
    let (_dir, base) = layout();
    let ro = path_arg(&base, "outside");
    let rw = path_arg(&base, "rw");
    let log = path_arg(&base, "logs/main.log");
    let status = path_arg(&base, "status/main.status");
    let logs = path_arg(&base, "logs");
    let status_dir = path_arg(&base, "status");
    let mut agent = Agent::start(
        &base,
        &[
            "--root-dir",
            &ro,
            "--landlock",
            "required",
            "--writable",
            &rw,
            "--main-log",
            &log,
            "--main-status",
            &status,
            "--",
            "sh",
            "-c",
            &format!(
                "echo from-main; echo x > {status_dir}/forged || echo status-dir-denied; \
                 echo x > {logs}/other || echo sibling-denied; sleep 30"
            ),
        ],
    )
    .await;

    // The file API runs on the agent's worker threads: outside the writable paths it is refused.
    let put = agent
        .request(Method::PUT, "/v1/files/uploaded.txt", "data")
        .await
        .unwrap();
    assert_eq!(put.status, StatusCode::FORBIDDEN, "{}", put.text());
    assert_eq!(put.json()["code"], "PERMISSION_DENIED");
    assert!(!base.join("outside/uploaded.txt").exists());

    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("sibling-denied")
    {
        assert!(
            Instant::now() < deadline,
            "main log: {:?}",
            std::fs::read_to_string(&log)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let main_log = std::fs::read_to_string(&log).unwrap();
    assert!(main_log.contains("from-main\n"), "{main_log}");
    assert!(main_log.contains("status-dir-denied"), "{main_log}");
    assert!(!base.join("logs/other").exists());
    assert!(!base.join("status/forged").exists());

    rustix::process::kill_process(
        rustix::process::Pid::from_raw(i32::try_from(agent.child.id()).unwrap()).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = agent.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "agent did not exit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(exit.code(), Some(143));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&status).unwrap()).unwrap();
    assert_eq!(written["exit_code"], 143);
    assert_eq!(written["signal"], 15);
}

#[test]
fn a_missing_writable_path_is_refused_naming_it() {
    let (_dir, base) = layout();
    let missing = path_arg(&base, "missing");
    let output = Command::new(env!("CARGO_BIN_EXE_paddock-agent"))
        .arg("--unix")
        .arg(base.join("run/agent.sock"))
        .args(["--root-dir", &path_arg(&base, "rw")])
        .args(["--landlock", "best-effort", "--writable", &missing])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--writable") && stderr.contains(&missing),
        "{stderr}"
    );
}

#[test]
fn help_documents_the_landlock_modes() {
    let output = Command::new(env!("CARGO_BIN_EXE_paddock-agent"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for word in ["--landlock", "best-effort", "required", "--writable"] {
        assert!(help.contains(word), "--help lacks {word}");
    }
}

#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(flatten)]
    agent: paddock_agent::AgentArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_landlock_is_refused_once_threads_run() {
    use clap::Parser;
    let (_dir, base) = layout();
    let cli = Cli::parse_from([
        "paddock-agent",
        "--unix",
        &path_arg(&base, "run/agent.sock"),
        "--root-dir",
        &path_arg(&base, "rw"),
        "--landlock",
        "required",
        "--writable",
        &path_arg(&base, "rw"),
    ]);
    let err = cli
        .agent
        .prepare()
        .expect_err("a multi-threaded process cannot be fully restricted");
    let message = err.to_string();
    assert!(
        message.contains("--landlock required") && message.contains("threads"),
        "{message}"
    );
    // Nothing was restricted: this (test) process still writes outside the writable path.
    std::fs::write(base.join("outside/still-writable"), "x").unwrap();
}
