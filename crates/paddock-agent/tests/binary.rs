//! The built `paddock-agent` binary as its own process: flags, token from the environment,
//! reaping of orphaned descendants (subreaper) and graceful shutdown on SIGTERM.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Reply, alive, eventually, unix_request};
use http::{Method, StatusCode};
use serde_json::json;

struct AgentProcess {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl AgentProcess {
    async fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let mut command = Command::new(env!("CARGO_BIN_EXE_paddock-agent"));
        command
            .arg("--unix")
            .arg(&socket)
            .arg("--root-dir")
            .arg(dir.path().join("workspace"))
            .arg("--base-dir")
            .arg(dir.path().join("app"))
            .arg("--shutdown-timeout")
            .arg("1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("spawn the agent binary");
        let agent = Self {
            child,
            socket,
            _dir: dir,
        };
        for _ in 0..500 {
            if agent.request(Method::GET, "/", &[], "").await.is_some() {
                return agent;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("agent binary did not start");
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<Reply> {
        unix_request(&self.socket, method, path, headers, body).await
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parent pid and state of a process, from /proc.
fn ppid_and_state(pid: i32) -> Option<(i32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit(')').next()?.split_whitespace();
    let state = fields.next()?.to_owned();
    Some((fields.next()?.parse().ok()?, state))
}

/// Zombie children of `parent`.
fn zombies_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| matches!(ppid_and_state(*pid), Some((ppid, state)) if ppid == parent && state == "Z"))
        .collect()
}

#[test]
fn help_documents_every_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_paddock-agent"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "--unix",
        "--grpc-listen",
        "--root-dir",
        "--base-dir",
        "--token-file",
        "--max-processes",
        "--max-output",
        "--idle-timeout",
        "--main-cwd",
        "--main-log",
        "--main-status",
        "--landlock",
        "--writable",
        "[CMD]...",
        "SANDBOX_BASE_DIR",
        "PADDOCK_AGENT_TOKEN",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[tokio::test]
async fn binary_reaps_orphaned_grandchildren() {
    let agent = AgentProcess::start(&[]).await;
    let reply = agent
        .request(
            Method::POST,
            "/v1/exec",
            &[],
            &json!({"command": "sleep 0.5 >/dev/null 2>&1 & echo $!"}).to_string(),
        )
        .await
        .unwrap();
    let orphan: i32 = reply.json()["stdout"]
        .as_str()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (ppid, _) = ppid_and_state(orphan).expect("orphan still running");
    assert_eq!(
        ppid,
        agent.pid(),
        "the agent (subreaper) adopted the orphan"
    );
    assert!(
        eventually(Duration::from_secs(5), || ppid_and_state(orphan).is_none()).await,
        "orphan {orphan} was not reaped: {:?}",
        ppid_and_state(orphan)
    );
    assert!(zombies_of(agent.pid()).is_empty());
}

#[tokio::test]
async fn binary_requires_the_token_from_its_environment() {
    let agent = AgentProcess::start(&[("PADDOCK_AGENT_TOKEN", "env-token")]).await;
    let open = agent
        .request(Method::GET, "/v1/health", &[], "")
        .await
        .unwrap();
    assert_eq!(open.status, StatusCode::OK);
    let denied = agent
        .request(Method::GET, "/v1/processes", &[], "")
        .await
        .unwrap();
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(denied.json()["code"], "UNAUTHENTICATED");
    let allowed = agent
        .request(
            Method::POST,
            "/v1/exec",
            &[("authorization", "Bearer env-token")],
            &json!({"argv": ["env"]}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(allowed.status, StatusCode::OK);
    assert!(
        !allowed.text().contains("env-token"),
        "token leaked to a child"
    );
}

#[tokio::test]
async fn binary_reads_the_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "file-token\n").unwrap();
    let agent = AgentProcess::start(&[("PADDOCK_AGENT_TOKEN_FILE", file.to_str().unwrap())]).await;
    let allowed = agent
        .request(
            Method::GET,
            "/v1/processes",
            &[("authorization", "Bearer file-token")],
            "",
        )
        .await
        .unwrap();
    assert_eq!(allowed.status, StatusCode::OK);
}

#[tokio::test]
async fn binary_sigterm_stops_children_then_exits() {
    let mut agent = AgentProcess::start(&[]).await;
    let reply = agent
        .request(
            Method::POST,
            "/v1/processes",
            &[],
            &json!({"command": "trap '' TERM; sleep 30", "background": true}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::CREATED);
    let child = common::pid(&reply.json()["pid"]);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(agent.pid()).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "agent did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(
        !alive(child),
        "child that ignores SIGTERM was not SIGKILLed"
    );
    assert!(
        !Path::new(&agent.socket).exists()
            || agent.request(Method::GET, "/", &[], "").await.is_none()
    );
}
