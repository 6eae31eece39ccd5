//! Shared helpers for the scenario tests: the real agent binary, a runtime in a temporary
//! root, and exec through the agent's unix socket.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use paddock_runtime::agent::agent_request;
use paddock_runtime::{LocalRuntime, RuntimeConfig};

/// The static agent: `PADDOCK_AGENT_BIN`, or built once with `scripts/build-agent.sh` into a
/// target directory of its own (so it never waits on this test's cargo lock).
pub fn agent_binary() -> PathBuf {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("PADDOCK_AGENT_BIN") {
                return PathBuf::from(path);
            }
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../agent-build");
            eprintln!(
                "building the agent with scripts/build-agent.sh into {} (once)",
                target.display()
            );
            let out = Command::new("bash")
                .arg(workspace.join("scripts/build-agent.sh"))
                .env("CARGO_TARGET_DIR", &target)
                .output()
                .expect("run scripts/build-agent.sh");
            assert!(
                out.status.success(),
                "building the agent failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        })
        .clone()
}

/// A runtime rooted in a fresh temporary directory; the guard tears down whatever workloads are
/// left (even when the test panicked) and then removes the directory.
pub fn runtime() -> (LocalRuntime, Guard) {
    runtime_with(|_| {})
}

/// Like [`runtime`], with the configuration adjusted first.
pub fn runtime_with(adjust: impl FnOnce(&mut RuntimeConfig)) -> (LocalRuntime, Guard) {
    let dir = tempfile::Builder::new()
        .prefix("paddock-rt-")
        .tempdir()
        .unwrap();
    let mut config = RuntimeConfig::new(dir.path().join("runtime"), agent_binary());
    adjust(&mut config);
    let rt = LocalRuntime::open(config).unwrap();
    (rt.clone(), Guard { rt, dir: Some(dir) })
}

/// Tears down every workload of a test runtime when dropped.
pub struct Guard {
    rt: LocalRuntime,
    dir: Option<tempfile::TempDir>,
}

impl Guard {
    pub fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let rt = self.rt.clone();
        // Drop may run inside the test's runtime: tear down from a thread with its own.
        let _ = std::thread::spawn(move || {
            let tokio = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tokio.block_on(async {
                use paddock_runtime::Runtime as _;
                for info in rt.list().await.unwrap_or_default() {
                    let _ = rt.teardown(&info.workload.id).await;
                }
            });
        })
        .join();
    }
}

/// The result of one exec through the agent.
#[derive(Debug)]
pub struct Exec {
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs argv in the sandbox through the agent's `POST /v1/exec`.
pub async fn exec(socket: &Path, argv: &[&str]) -> Exec {
    exec_json(
        socket,
        serde_json::json!({"argv": argv, "timeout_ms": 60_000}),
    )
    .await
}

/// Runs a shell command line (`/bin/sh -c`) in the sandbox.
pub async fn sh(socket: &Path, command: &str) -> Exec {
    exec_json(
        socket,
        serde_json::json!({"command": command, "timeout_ms": 60_000}),
    )
    .await
}

async fn exec_json(socket: &Path, body: serde_json::Value) -> Exec {
    let response = agent_request(socket, "POST", "/v1/exec", Some(body.to_string().into()))
        .await
        .expect("agent reachable");
    let v: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_else(|_| {
        panic!(
            "agent answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )
    });
    assert_eq!(response.status, 200, "{v}");
    Exec {
        exit_code: v["exit_code"].as_i64(),
        stdout: v["stdout"].as_str().unwrap_or_default().to_owned(),
        stderr: v["stderr"].as_str().unwrap_or_default().to_owned(),
    }
}
