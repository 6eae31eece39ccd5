//! The agent's resolved configuration: roots, limits, auth and the environment its children get.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::main_process::MainSpec;

/// Prefix of the agent's own configuration variables; they never reach child processes.
pub const OWN_ENV_PREFIX: &str = "PADDOCK_AGENT_";

/// Caps that keep one client from exhausting the sandbox's memory or process table.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest JSON request body.
    pub max_request_body: usize,
    /// Largest uploaded file.
    pub max_upload_bytes: u64,
    /// Captured output per stream of a buffered exec; the rest is dropped and flagged.
    pub max_output_bytes: usize,
    /// Output kept per started process for replay.
    pub output_buffer_bytes: usize,
    /// Processes running at once (exec and started); more get 429 `TOO_MANY_PROCESSES`.
    pub max_processes: usize,
    /// Exited background processes remembered for listing and replay (oldest forgotten first).
    pub max_finished_processes: usize,
    /// A connection with no request in flight and no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// After a process exits, how long to keep reading output that descendants still write.
    pub output_drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_body: 8 << 20,
            max_upload_bytes: 16 << 30,
            max_output_bytes: 16 << 20,
            output_buffer_bytes: 1 << 20,
            max_processes: 256,
            max_finished_processes: 128,
            idle_timeout: Duration::from_secs(60),
            output_drain_timeout: Duration::from_secs(2),
        }
    }
}

/// Everything [`crate::serve`] needs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Root of the legacy runtime endpoints (`SANDBOX_BASE_DIR`, default `/app`); also the
    /// working directory of `POST /execute`.
    pub legacy_root: PathBuf,
    /// Root of `/v1/files` and of process working directories (`--root-dir`).
    pub root_dir: PathBuf,
    /// Working directory of processes that name none (`--workdir`); `None`: the root.
    pub workdir: Option<PathBuf>,
    /// Timeout of `POST /execute` when the request gives none (`SANDBOX_EXEC_TIMEOUT_SECONDS`).
    pub legacy_exec_timeout: Duration,
    /// Bearer token required on every endpoint but `GET /` and `GET /v1/health`.
    pub token: Option<String>,
    /// Environment variables with this prefix are served on `/v1/metadata`.
    pub metadata_env_prefix: String,
    /// On shutdown, time between SIGTERM and SIGKILL of child process groups.
    pub shutdown_grace: Duration,
    /// Reap every child (PID 1 or subreaper); leave false when embedding the server in a
    /// process that waits for children of its own.
    pub reap_orphans: bool,
    /// The environment children start from (the agent's, minus its own configuration).
    pub child_env: Vec<(OsString, OsString)>,
    pub limits: Limits,
    /// The sandbox's main process, started when serving begins; its exit ends the agent.
    pub main: Option<MainSpec>,
}

impl AgentConfig {
    /// A configuration with default limits rooted at `root_dir` (legacy endpoints too).
    pub fn new(root_dir: impl Into<PathBuf>) -> Self {
        let root_dir = root_dir.into();
        Self {
            legacy_root: root_dir.clone(),
            root_dir,
            workdir: None,
            legacy_exec_timeout: Duration::from_secs(300),
            token: None,
            metadata_env_prefix: "SANDBOX_".to_owned(),
            shutdown_grace: Duration::from_secs(10),
            reap_orphans: false,
            child_env: inherited_child_env(),
            limits: Limits::default(),
            main: None,
        }
    }
}

/// The agent's environment without its own configuration variables.
pub fn inherited_child_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(name, _)| !name.to_string_lossy().starts_with(OWN_ENV_PREFIX))
        .collect()
}
