//! The in-sandbox agent: a small server that runs commands and moves files for its clients.
//!
//! One HTTP server (HTTP/1.1 and h2c) serves, on every listener: upstream's legacy python
//! runtime endpoints, sandboxd's REST file API and gRPC `process.v1.ProcessService`, and
//! paddock's own process API (see `docs/agent-api.md`). It can also start and supervise the
//! sandbox's main process and confine itself with Landlock. [`AgentArgs::prepare`] then
//! [`PreparedAgent::run`] (or [`run`], both at once) is the `paddock agent` command; [`serve`] runs
//! the server on listeners the caller bound (tests and benchmarks).

pub mod archive;
pub mod config;
pub mod confine;
pub mod error;
pub mod files;
pub mod fs_ops;
pub mod grpc;
pub mod main_process;
pub mod output;
pub mod ports;
pub mod process;
pub mod process_api;
pub mod pty;
pub mod reaper;
pub mod restrict;
pub mod server;
pub mod spawn;
pub mod state;
mod sys_spawn;
pub mod upstream_runtime;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

pub use config::{AgentConfig, Limits};
pub use error::{AgentError, ApiError};
pub use main_process::MainSpec;
pub use restrict::{LandlockMode, LandlockOutcome};
pub use server::{Listener, router, serve};

/// Command-line flags of `paddock agent` / `paddock-agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Serve HTTP (and h2c gRPC) on this TCP address; repeatable. Defaults to 0.0.0.0:8888
    /// (upstream's runtime port) unless --unix is given.
    #[arg(
        long = "listen",
        value_name = "ADDR",
        env = "PADDOCK_AGENT_LISTEN",
        value_delimiter = ','
    )]
    pub listen: Vec<SocketAddr>,

    /// Serve the same endpoints on this unix socket path; repeatable. A stale socket file is replaced.
    #[arg(
        long = "unix",
        value_name = "PATH",
        env = "PADDOCK_AGENT_UNIX",
        value_delimiter = ','
    )]
    pub unix: Vec<PathBuf>,

    /// Serve gRPC process.v1.ProcessService (and everything else) on this TCP address too.
    /// Defaults to port 9090 (sandboxd's gRPC port) on the first --listen address's IP
    /// (0.0.0.0 by default), unless --unix is given.
    #[arg(
        long = "grpc-listen",
        value_name = "ADDR",
        env = "PADDOCK_AGENT_GRPC_LISTEN"
    )]
    pub grpc_listen: Option<SocketAddr>,

    /// Root of /v1/files and of process working directories (created if missing; `/` is allowed).
    #[arg(
        long = "root-dir",
        value_name = "DIR",
        env = "PADDOCK_AGENT_ROOT_DIR",
        default_value = "/workspace"
    )]
    pub root_dir: PathBuf,

    /// Working directory of processes that name none (and of the main process, unless
    /// --main-cwd): a directory under --root-dir. Default: --root-dir.
    #[arg(long = "workdir", value_name = "DIR", env = "PADDOCK_AGENT_WORKDIR")]
    pub workdir: Option<PathBuf>,

    /// Root of the legacy endpoints (/upload, /download, /list, /exists) and working directory of
    /// POST /execute.
    #[arg(
        long = "base-dir",
        value_name = "DIR",
        env = "SANDBOX_BASE_DIR",
        default_value = "/app"
    )]
    pub base_dir: PathBuf,

    /// Timeout of POST /execute when the request gives none, in seconds (invalid or non-positive
    /// values fall back to 300).
    #[arg(
        long = "exec-timeout",
        value_name = "SECONDS",
        env = "SANDBOX_EXEC_TIMEOUT_SECONDS",
        default_value = "300"
    )]
    pub exec_timeout: String,

    /// File holding a bearer token that every endpoint but `GET /` and `GET /v1/health` then
    /// requires. The token may instead be given in PADDOCK_AGENT_TOKEN. Unset: no auth.
    #[arg(
        long = "token-file",
        value_name = "PATH",
        env = "PADDOCK_AGENT_TOKEN_FILE"
    )]
    pub token_file: Option<PathBuf>,

    /// Environment variables with this prefix are served on GET /v1/metadata (credential-like
    /// names excluded).
    #[arg(
        long = "metadata-env-prefix",
        value_name = "PREFIX",
        env = "PADDOCK_AGENT_METADATA_ENV_PREFIX",
        default_value = "SANDBOX_"
    )]
    pub metadata_env_prefix: String,

    /// Seconds between SIGTERM and SIGKILL of child process groups at shutdown.
    #[arg(
        long = "shutdown-timeout",
        value_name = "SECONDS",
        env = "PADDOCK_AGENT_SHUTDOWN_TIMEOUT",
        default_value_t = 10.0
    )]
    pub shutdown_timeout: f64,

    /// Seconds a connection may sit idle (no traffic, no request in flight) before it is closed.
    #[arg(
        long = "idle-timeout",
        value_name = "SECONDS",
        env = "PADDOCK_AGENT_IDLE_TIMEOUT",
        default_value_t = 60.0
    )]
    pub idle_timeout: f64,

    /// Largest JSON request body, in bytes.
    #[arg(long = "max-request-body", value_name = "BYTES", env = "PADDOCK_AGENT_MAX_REQUEST_BODY", default_value_t = 8 << 20)]
    pub max_request_body: usize,

    /// Largest uploaded file, in bytes.
    #[arg(long = "max-upload", value_name = "BYTES", env = "PADDOCK_AGENT_MAX_UPLOAD", default_value_t = 16 << 30)]
    pub max_upload: u64,

    /// Output captured per stream of a buffered exec, in bytes; beyond it output is dropped and
    /// the response says `*_truncated: true`.
    #[arg(long = "max-output", value_name = "BYTES", env = "PADDOCK_AGENT_MAX_OUTPUT", default_value_t = 16 << 20)]
    pub max_output: usize,

    /// Output kept per started process for replay and re-attach, in bytes.
    #[arg(long = "output-buffer", value_name = "BYTES", env = "PADDOCK_AGENT_OUTPUT_BUFFER", default_value_t = 1 << 20)]
    pub output_buffer: usize,

    /// Processes allowed to run at once; beyond it requests get 429 TOO_MANY_PROCESSES.
    #[arg(
        long = "max-processes",
        value_name = "N",
        env = "PADDOCK_AGENT_MAX_PROCESSES",
        default_value_t = 256
    )]
    pub max_processes: usize,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `paddock_agent=debug`.
    #[arg(
        long = "log",
        value_name = "FILTER",
        env = "PADDOCK_AGENT_LOG",
        default_value = "info"
    )]
    pub log: String,

    /// Working directory of the main process (default: --root-dir).
    #[arg(long = "main-cwd", value_name = "DIR", env = "PADDOCK_AGENT_MAIN_CWD")]
    pub main_cwd: Option<PathBuf>,

    /// Append the main process's stdout and stderr to this file as they are produced (created
    /// 0644; its directory must exist). Default: the agent's own stdout and stderr.
    #[arg(long = "main-log", value_name = "PATH", env = "PADDOCK_AGENT_MAIN_LOG")]
    pub main_log: Option<PathBuf>,

    /// When the main process exits, write `{"exit_code", "signal", "finished_at"}` to this file
    /// (atomically) before the agent shuts down.
    #[arg(
        long = "main-status",
        value_name = "PATH",
        env = "PADDOCK_AGENT_MAIN_STATUS"
    )]
    pub main_status: Option<PathBuf>,

    /// Confine the agent and every process it starts with Landlock: read and execute anywhere,
    /// write only beneath --writable paths (and /dev entries, the agent's own sockets and main
    /// log). `required` refuses to start when the kernel cannot; `best-effort` warns.
    #[arg(
        long = "landlock",
        value_name = "MODE",
        env = "PADDOCK_AGENT_LANDLOCK",
        value_enum,
        default_value_t = LandlockMode::Off
    )]
    pub landlock: LandlockMode,

    /// A directory (or file) that stays writable under --landlock; repeatable. It must exist.
    #[arg(
        long = "writable",
        value_name = "PATH",
        env = "PADDOCK_AGENT_WRITABLE",
        value_delimiter = ','
    )]
    pub writable: Vec<PathBuf>,

    /// The main process as a JSON array of strings, for launchers that can only pass
    /// environment variables (bubblewrap's pre-started sandboxes); `--` wins when both are given.
    #[arg(
        long = "main-argv-json",
        value_name = "JSON",
        env = "PADDOCK_AGENT_MAIN_ARGV",
        hide = true
    )]
    pub main_argv_json: Option<String>,

    /// The sandbox's main process (after `--`): started with the agent, its exit ends the agent
    /// with its exit code (128 + signal when killed; 127 not found, 126 not executable).
    #[arg(last = true, value_name = "CMD")]
    pub main_command: Vec<String>,
}

fn seconds(value: f64, fallback: Duration) -> Duration {
    if value.is_finite() && value >= 0.0 {
        Duration::from_secs_f64(value.min(1e9))
    } else {
        fallback
    }
}

impl AgentArgs {
    /// Resolves the flags (and token sources) into a configuration.
    pub fn config(&self) -> Result<AgentConfig, AgentError> {
        let token = match &self.token_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| AgentError::TokenFile {
                        path: path.clone(),
                        source,
                    })?;
                let token = text.trim().to_owned();
                if token.is_empty() {
                    return Err(AgentError::EmptyToken { path: path.clone() });
                }
                Some(token)
            }
            None => std::env::var(format!("{}TOKEN", config::OWN_ENV_PREFIX))
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
        };
        let legacy_exec_timeout = match self.exec_timeout.trim().parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs.min(1e9)),
            _ => {
                tracing::warn!(value = %self.exec_timeout, "invalid SANDBOX_EXEC_TIMEOUT_SECONDS, using 300");
                Duration::from_secs(300)
            }
        };
        let base_dir = if self.base_dir.as_os_str().is_empty() {
            PathBuf::from("/app")
        } else {
            self.base_dir.clone()
        };
        let mut config = AgentConfig::new(self.root_dir.clone());
        config.legacy_root = base_dir;
        config.workdir.clone_from(&self.workdir);
        config.legacy_exec_timeout = legacy_exec_timeout;
        config.token = token;
        config.metadata_env_prefix = self.metadata_env_prefix.clone();
        config.shutdown_grace = seconds(self.shutdown_timeout, Duration::from_secs(10));
        config.reap_orphans = true;
        config.limits = Limits {
            max_request_body: self.max_request_body,
            max_upload_bytes: self.max_upload,
            max_output_bytes: self.max_output,
            output_buffer_bytes: self.output_buffer,
            max_processes: self.max_processes.max(1),
            idle_timeout: seconds(self.idle_timeout, Duration::from_secs(60)),
            ..Limits::default()
        };
        config.main = self.main_spec()?;
        Ok(config)
    }

    /// The main process, when a command follows `--`.
    fn main_spec(&self) -> Result<Option<MainSpec>, AgentError> {
        let argv = match (&self.main_argv_json, self.main_command.is_empty()) {
            (Some(json), true) => {
                serde_json::from_str::<Vec<String>>(json).map_err(|e| AgentError::MainArgv {
                    reason: e.to_string(),
                })?
            }
            _ => self.main_command.clone(),
        };
        if argv.is_empty() {
            let given = [
                ("--main-cwd", self.main_cwd.is_some()),
                ("--main-log", self.main_log.is_some()),
                ("--main-status", self.main_status.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
                return Err(AgentError::MainFlagWithoutCommand { flag });
            }
            return Ok(None);
        }
        if let Some(status) = &self.main_status {
            let dir = status.parent().filter(|d| !d.as_os_str().is_empty());
            if dir.is_some_and(|d| !d.is_dir()) {
                return Err(AgentError::MainStatusDir {
                    path: status.clone(),
                });
            }
        }
        Ok(Some(MainSpec {
            argv,
            cwd: self.main_cwd.clone(),
            log: self.main_log.clone(),
            status: self.main_status.clone(),
            status_writer: None,
        }))
    }

    /// Everything that must happen before the async runtime starts threads: logging, the
    /// configuration, unix sockets bound, the main log created, and the Landlock restriction
    /// (which binds only the threads created after it).
    pub fn prepare(&self) -> Result<PreparedAgent, AgentError> {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.log)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .try_init();
        let mut config = self.config()?;
        if rustix::process::getpid().as_raw_nonzero().get() != 1
            && let Err(err) = rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        {
            tracing::warn!(error = %err, "cannot become child subreaper; orphans will not be reaped");
        }
        let mut unix = Vec::new();
        for path in &self.unix {
            unix.push(server::bind_unix(path)?);
        }
        if let Some(log) = config.main.as_ref().and_then(|m| m.log.as_ref()) {
            main_process::open_log(log).map_err(|source| AgentError::MainLog {
                path: log.clone(),
                source,
            })?;
        }
        let plan = restrict::LandlockPlan {
            mode: self.landlock,
            writable: self.writable.clone(),
            agent_files: self
                .unix
                .iter()
                .chain(config.main.as_ref().and_then(|m| m.log.as_ref()))
                .cloned()
                .collect(),
        };
        // Started before the restriction, this thread stays outside it: the status file's
        // directory needs no Landlock right that the sandbox's processes would inherit.
        let mut own_threads = 0;
        if let Some(main) = config.main.as_mut().filter(|m| m.status.is_some()) {
            main.status_writer = Some(
                main_process::StatusWriter::spawn()
                    .map_err(|source| AgentError::MainStatusWriter { source })?,
            );
            own_threads += 1;
        }
        match restrict::apply(&plan, own_threads)? {
            LandlockOutcome::Off => {}
            LandlockOutcome::Enforced { full: true, abi } => {
                tracing::info!(abi, writable = ?self.writable, "Landlock enforced");
            }
            LandlockOutcome::Enforced { full: false, abi } => {
                tracing::warn!(abi, writable = ?self.writable, "Landlock enforced partially: this kernel's ABI lacks some rights, which stay unrestricted");
            }
            LandlockOutcome::Skipped { reason } => {
                tracing::warn!(%reason, "Landlock not applied (--landlock best-effort)");
            }
        }
        Ok(PreparedAgent {
            tcp: self.tcp_addrs(),
            unix_paths: self.unix.clone(),
            unix,
            config,
        })
    }

    /// TCP addresses to serve: the given ones, or the defaults when no unix socket is given.
    fn tcp_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs = self.listen.clone();
        let defaults = self.unix.is_empty();
        if addrs.is_empty() && defaults {
            addrs.push(SocketAddr::from(([0, 0, 0, 0], 8888)));
        }
        // gRPC's default port listens where HTTP does: `--listen 127.0.0.1:8888` keeps 9090 on
        // loopback too.
        let http_ip = addrs.first().map(SocketAddr::ip);
        match (self.grpc_listen, http_ip) {
            (Some(addr), _) => addrs.push(addr),
            (None, Some(ip)) if defaults => addrs.push(SocketAddr::new(ip, 9090)),
            _ => {}
        }
        addrs.dedup();
        addrs
    }
}

/// An agent whose unix sockets are bound and whose Landlock restriction (if any) is in place;
/// [`PreparedAgent::run`] serves it inside an async runtime.
#[derive(Debug)]
pub struct PreparedAgent {
    config: AgentConfig,
    tcp: Vec<SocketAddr>,
    unix_paths: Vec<PathBuf>,
    unix: Vec<std::os::unix::net::UnixListener>,
}

impl PreparedAgent {
    /// Binds the TCP listeners and serves until SIGTERM or SIGINT, or until the main process
    /// exits. Returns the code to exit with: the main process's, or 0.
    pub async fn run(self) -> Result<i32, AgentError> {
        let mut listeners = Vec::new();
        for addr in &self.tcp {
            listeners.push(Listener::tcp(*addr).await?);
        }
        for (path, socket) in self.unix_paths.iter().zip(self.unix) {
            listeners.push(Listener::from_std_unix(path, socket)?);
        }
        let shutdown = CancellationToken::new();
        let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
        let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = sigint.recv() => {}
            }
            trigger.cancel();
        });
        tracing::info!(
            tcp = ?self.tcp,
            unix = ?self.unix_paths,
            root = %self.config.root_dir.display(),
            auth = self.config.token.is_some(),
            main = ?self.config.main.as_ref().map(|m| &m.argv),
            "paddock agent listening"
        );
        serve(listeners, self.config, shutdown).await
    }
}

/// Runs the agent until SIGTERM or SIGINT (or the main process's exit): [`AgentArgs::prepare`]
/// then [`PreparedAgent::run`]. Returns the code to exit with. Called inside a multi-threaded
/// runtime, `--landlock required` fails (the restriction would miss the runtime's threads):
/// prepare before building the runtime, as the `paddock-agent` binary does.
pub async fn run(args: AgentArgs) -> Result<i32, AgentError> {
    args.prepare()?.run().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn addrs(args: &[&str]) -> Vec<String> {
        let cli =
            Cli::try_parse_from(std::iter::once("agent").chain(args.iter().copied())).unwrap();
        cli.agent
            .tcp_addrs()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn grpc_listens_where_http_listens_unless_told_otherwise() {
        assert_eq!(addrs(&[]), ["0.0.0.0:8888", "0.0.0.0:9090"]);
        assert_eq!(
            addrs(&["--listen", "127.0.0.1:8888"]),
            ["127.0.0.1:8888", "127.0.0.1:9090"]
        );
        assert_eq!(
            addrs(&[
                "--listen",
                "127.0.0.1:8888",
                "--grpc-listen",
                "0.0.0.0:9999"
            ]),
            ["127.0.0.1:8888", "0.0.0.0:9999"]
        );
        assert!(addrs(&["--unix", "/run/a.sock"]).is_empty());
    }
}
