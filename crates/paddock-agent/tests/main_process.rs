//! The sandbox's main process (`paddock-agent ... -- CMD ARGS`), with the built binary as its own
//! process: output to the log as produced, `GET /v1/main`, the status file, the agent's exit
//! code, SIGTERM forwarding and programs that cannot start.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Reply, alive, eventually, unix_request};
use http::{Method, StatusCode};
use serde_json::Value;

struct Agent {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Agent {
    fn spawn(extra: &[&str], main: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("run")).expect("create run dir");
        Self::spawn_in(dir, extra, main, env)
    }

    /// Starts the agent in `dir`, which must hold a `run` directory.
    fn spawn_in(
        dir: tempfile::TempDir,
        extra: &[&str],
        main: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let socket = dir.path().join("run/agent.sock");
        let mut command = Command::new(env!("CARGO_BIN_EXE_paddock-agent"));
        command
            .arg("--unix")
            .arg(&socket)
            .arg("--root-dir")
            .arg(dir.path().join("workspace"))
            .arg("--base-dir")
            .arg(dir.path().join("app"))
            .arg("--shutdown-timeout")
            .arg("2")
            .arg("--main-log")
            .arg(dir.path().join("run/main.log"))
            .arg("--main-status")
            .arg(dir.path().join("run/main.status"))
            .args(extra)
            .arg("--")
            .args(main)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("spawn the agent binary");
        Self { child, dir, socket }
    }

    async fn ready(self) -> Self {
        for _ in 0..500 {
            if self.request(Method::GET, "/").await.is_some() {
                return self;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("agent binary did not start");
    }

    async fn request(&self, method: Method, path: &str) -> Option<Reply> {
        unix_request(&self.socket, method, path, &[], "").await
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("run/main.log")).unwrap_or_default()
    }

    fn status_file(&self) -> Value {
        let text = std::fs::read_to_string(self.path("run/main.status")).expect("status file");
        serde_json::from_str(&text).expect("status file is JSON")
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    fn sigterm(&self) {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.pid()).expect("agent pid"),
            rustix::process::Signal::TERM,
        )
        .expect("signal the agent");
    }

    async fn exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "agent did not exit within {within:?}; log: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit(')').next()?.split_whitespace();
    fields.nth(2)?.parse().ok()
}

fn status_time_is_rfc3339(status: &Value) {
    let finished = status["finished_at"].as_str().expect("finished_at");
    assert!(
        finished.parse::<jiff::Timestamp>().is_ok(),
        "finished_at {finished:?}"
    );
}

#[tokio::test]
async fn main_output_goes_to_the_log_and_the_agent_exits_with_its_code() {
    let mut agent = Agent::spawn(
        &[],
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
        &[],
    );
    let status = agent.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(3), "{status:?}");
    let log = agent.log();
    assert!(log.contains("to-stdout\n"), "{log}");
    assert!(log.contains("to-stderr\n"), "{log}");
    let file = agent.status_file();
    assert_eq!(file["exit_code"], 3);
    assert_eq!(file["signal"], Value::Null);
    status_time_is_rfc3339(&file);
    let mode = std::fs::metadata(agent.path("run/main.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    assert!(
        std::fs::read_dir(agent.path("run"))
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains(".tmp-")),
        "temp status file left behind"
    );
}

#[tokio::test]
async fn main_output_reaches_the_log_while_it_runs() {
    let mut agent = Agent::spawn(&[], &["sh", "-c", "echo first; sleep 30; echo never"], &[]);
    assert!(
        eventually(Duration::from_secs(5), || agent.log().contains("first\n")).await,
        "output did not reach the log while the main process runs: {:?}",
        agent.log()
    );
    agent.sigterm();
    assert_eq!(agent.exit(Duration::from_secs(10)).await.code(), Some(143));
    assert!(!agent.log().contains("never"));
}

#[tokio::test]
async fn an_existing_log_is_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("run")).unwrap();
    std::fs::write(dir.path().join("run/main.log"), "earlier\n").unwrap();
    let mut agent = Agent::spawn_in(dir, &[], &["echo", "later"], &[]);
    assert_eq!(agent.exit(Duration::from_secs(10)).await.code(), Some(0));
    assert_eq!(agent.log(), "earlier\nlater\n");
}

#[tokio::test]
async fn get_main_reports_the_running_process_in_its_own_group() {
    let agent = Agent::spawn(&[], &["sleep", "30"], &[]).ready().await;
    let reply = agent.request(Method::GET, "/v1/main").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let info = reply.json();
    assert_eq!(info["state"], "running");
    assert_eq!(info["argv"], serde_json::json!(["sleep", "30"]));
    assert_eq!(info["exit_code"], Value::Null);
    assert_eq!(info["finished_at"], Value::Null);
    assert!(
        info["started_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    let pid = common::pid(&info["pid"]);
    assert!(alive(pid));
    assert_eq!(
        process_group(pid),
        Some(pid),
        "main leads its own process group"
    );
}

#[tokio::test]
async fn sigterm_is_forwarded_to_the_main_process_group() {
    let mut agent = Agent::spawn(
        &[],
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 0' TERM; sleep 30 & wait",
        ],
        &[],
    )
    .ready()
    .await;
    let info = agent.request(Method::GET, "/v1/main").await.unwrap().json();
    let pid = common::pid(&info["pid"]);
    agent.sigterm();
    let status = agent.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status:?}; log: {}", agent.log());
    assert!(agent.log().contains("got-term"), "{}", agent.log());
    assert_eq!(agent.status_file()["exit_code"], 0);
    assert!(!alive(pid));
}

#[tokio::test]
async fn a_main_process_killed_by_a_signal_exits_128_plus_the_signal() {
    let mut agent = Agent::spawn(&[], &["sh", "-c", "kill -KILL $$"], &[]);
    let status = agent.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(137), "{status:?}");
    let file = agent.status_file();
    assert_eq!(file["exit_code"], 137);
    assert_eq!(file["signal"], 9);
}

#[tokio::test]
async fn sigterm_to_a_main_that_ignores_it_ends_in_sigkill_after_the_grace() {
    let mut agent = Agent::spawn(
        &[],
        &["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"],
        &[],
    )
    .ready()
    .await;
    let started = Instant::now();
    agent.sigterm();
    let status = agent.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(137), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "grace was not honoured"
    );
    assert_eq!(agent.status_file()["signal"], 9);
}

#[tokio::test]
async fn a_missing_main_program_exits_127_with_a_clear_log_line() {
    let mut agent = Agent::spawn(&[], &["/nonexistent/program", "arg"], &[]);
    let status = agent.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(127), "{status:?}");
    let log = agent.log();
    assert!(
        log.contains("cannot start the main process") && log.contains("/nonexistent/program"),
        "{log}"
    );
    assert!(log.contains("not found"), "{log}");
    assert_eq!(agent.status_file()["exit_code"], 127);
}

#[tokio::test]
async fn a_main_program_without_execute_permission_exits_126() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut agent = Agent::spawn(&[], &[script.to_str().unwrap()], &[]);
    let status = agent.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(126), "{status:?}");
    assert!(agent.log().contains("permission denied"), "{}", agent.log());
    assert_eq!(agent.status_file()["exit_code"], 126);
}

#[tokio::test]
async fn main_runs_in_the_root_without_the_agents_configuration() {
    let mut agent = Agent::spawn(
        &[],
        &["sh", "-c", "pwd; env"],
        &[
            ("PADDOCK_AGENT_TOKEN", "secret-token"),
            ("SANDBOX_ID", "x1"),
        ],
    );
    assert_eq!(agent.exit(Duration::from_secs(10)).await.code(), Some(0));
    let log = agent.log();
    let root = std::fs::canonicalize(agent.path("workspace")).unwrap();
    assert_eq!(log.lines().next(), Some(root.to_str().unwrap()), "{log}");
    assert!(log.contains("SANDBOX_ID=x1"), "{log}");
    assert!(
        !log.contains("PADDOCK_AGENT_"),
        "agent configuration leaked: {log}"
    );
    assert!(!log.contains("secret-token"), "token leaked: {log}");
}

#[tokio::test]
async fn main_cwd_sets_the_working_directory_and_a_missing_one_is_127() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    let mut agent = Agent::spawn(&["--main-cwd", cwd.to_str().unwrap()], &["pwd"], &[]);
    assert_eq!(agent.exit(Duration::from_secs(10)).await.code(), Some(0));
    assert_eq!(agent.log().trim(), cwd.to_str().unwrap());

    let mut agent = Agent::spawn(&["--main-cwd", "/nonexistent-dir"], &["pwd"], &[]);
    assert_eq!(agent.exit(Duration::from_secs(10)).await.code(), Some(127));
    assert!(agent.log().contains("/nonexistent-dir"), "{}", agent.log());
}

#[test]
fn main_flags_without_a_command_and_a_log_in_a_missing_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_paddock-agent"))
        .arg("--unix")
        .arg(dir.path().join("a.sock"))
        .arg("--root-dir")
        .arg(dir.path().join("w"))
        .arg("--main-log")
        .arg(dir.path().join("main.log"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--main-log needs a main process"),
        "{stderr}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_paddock-agent"))
        .arg("--unix")
        .arg(dir.path().join("b.sock"))
        .arg("--root-dir")
        .arg(dir.path().join("w"))
        .arg("--main-log")
        .arg(dir.path().join("missing/main.log"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("main.log") && stderr.contains("directory must exist"),
        "{stderr}"
    );
}

#[tokio::test]
async fn without_a_main_process_get_main_is_404() {
    let agent = common::TestAgent::start().await;
    let reply = agent.get("/v1/main").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["code"], "NOT_FOUND");
}

#[tokio::test]
async fn serve_returns_the_main_exit_code_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = paddock_agent::AgentConfig::new(dir.path().join("workspace"));
    config.legacy_root = dir.path().join("app");
    config.main = Some(paddock_agent::MainSpec {
        argv: vec!["sh".into(), "-c".into(), "exit 7".into()],
        cwd: None,
        log: Some(dir.path().join("main.log")),
        status: None,
        status_writer: None,
    });
    let listener = paddock_agent::Listener::unix(dir.path().join("agent.sock")).unwrap();
    let code = tokio::time::timeout(
        Duration::from_secs(10),
        paddock_agent::serve(
            vec![listener],
            config,
            tokio_util::sync::CancellationToken::new(),
        ),
    )
    .await
    .expect("serve ends when the main process exits")
    .unwrap();
    assert_eq!(code, 7);
    assert!(Path::new(&dir.path().join("main.log")).exists());
}
