//! The sandbox's main process — the pod's container command. The agent starts it once, when it
//! begins serving, as the leader of a new process group with stdin at end-of-file and stdout and
//! stderr appended straight to a log file (nothing passes through the agent, so output lands as
//! it is produced). `GET /v1/main` reports it; when it exits the agent records the exit in a
//! status file and ends with its code, so the sandbox ends as a pod's container would.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use rustix::process::Signal;
use serde::Serialize;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::reaper::{ChildExit, ExitStatus, signal_group};
use crate::spawn::{SpawnError, SpawnSpec, Spawner};
use crate::state::SharedState;

/// Exit code of a main process that could not be started because its program (or working
/// directory) does not exist, as a shell reports it.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code of a main process whose program exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;

/// What to run as the main process.
#[derive(Debug, Clone)]
pub struct MainSpec {
    /// Program and arguments; the program is looked up in the agent's `PATH`.
    pub argv: Vec<String>,
    /// Working directory; `None` means the agent's root directory.
    pub cwd: Option<PathBuf>,
    /// File that stdout and stderr are appended to (created 0644; its directory must exist).
    /// `None`: the agent's own stdout and stderr.
    pub log: Option<PathBuf>,
    /// File the exit is written to, replaced atomically, when the main process has exited.
    pub status: Option<PathBuf>,
    /// Writes the status file from a thread outside the Landlock restriction; `None` writes it
    /// from the agent's own (possibly restricted) threads.
    pub status_writer: Option<StatusWriter>,
}

/// A request to the status writer thread: where, what, and where to answer.
type StatusRequest = (PathBuf, MainExit, mpsc::SyncSender<io::Result<()>>);

/// Writes status files from a thread started before the agent restricts itself with Landlock. A
/// restriction binds only the thread that applies it and threads started later, so this thread
/// can replace the status file while the sandbox's processes get no right at all on its
/// directory (an atomic replace needs create and remove rights there).
#[derive(Clone)]
pub struct StatusWriter {
    tx: mpsc::Sender<StatusRequest>,
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusWriter")
    }
}

impl StatusWriter {
    /// Starts the writer thread; it waits for requests for as long as any handle lives.
    pub fn spawn() -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<StatusRequest>();
        std::thread::Builder::new()
            .name("main-status".to_owned())
            .spawn(move || {
                for (path, exit, reply) in rx {
                    let _ = reply.send(write_status(&path, &exit));
                }
            })?;
        Ok(Self { tx })
    }

    /// Writes `exit` to `path` on the writer thread and waits for the result (blocking).
    pub fn write(&self, path: &Path, exit: &MainExit) -> io::Result<()> {
        let (reply, result) = mpsc::sync_channel(1);
        self.tx
            .send((path.to_path_buf(), *exit, reply))
            .map_err(|_| io::Error::other("the status writer thread is gone"))?;
        result
            .recv()
            .map_err(|_| io::Error::other("the status writer thread is gone"))?
    }
}

/// How the main process ended; also the content of the status file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MainExit {
    /// The container's exit code as Kubernetes reports it: the process's code, `128 + signal`
    /// when a signal killed it, 127 or 126 when it could not be started.
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    pub finished_at: Timestamp,
}

impl MainExit {
    fn from_status(status: ExitStatus) -> Self {
        Self {
            exit_code: status.shell_code(),
            signal: status.signal(),
            finished_at: Timestamp::now(),
        }
    }
}

/// The JSON of `GET /v1/main`.
#[derive(Debug, Serialize)]
pub struct MainInfo {
    /// `running` or `exited`.
    pub state: &'static str,
    /// OS pid (and process group id); `None` when it could not be started.
    pub pid: Option<i32>,
    pub argv: Vec<String>,
    pub started_at: Timestamp,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub finished_at: Option<Timestamp>,
}

/// The running (or finished) main process.
#[derive(Debug)]
pub struct MainProcess {
    argv: Vec<String>,
    pid: Option<i32>,
    started_at: Timestamp,
    exit: watch::Sender<Option<MainExit>>,
}

impl MainProcess {
    /// Starts `spec` in `default_cwd` unless it names its own. A program that cannot be started
    /// is not an error here: it yields an already exited process (127 or 126) whose failure is
    /// written to the log and the status file. Only an unusable log file is an error.
    pub fn start(spawner: &Spawner, spec: &MainSpec, default_cwd: &Path) -> io::Result<Arc<Self>> {
        let log = spec.log.as_deref().map(open_log).transpose()?;
        let cwd = spec
            .cwd
            .clone()
            .unwrap_or_else(|| default_cwd.to_path_buf());
        let started_at = Timestamp::now();
        let spawned = if cwd.is_dir() {
            let spawn_spec = SpawnSpec {
                argv: spec.argv.clone(),
                env: Vec::new(),
                cwd,
                pty: None,
            };
            match &log {
                Some(file) => spawner.spawn_to(&spawn_spec, file.as_fd(), file.as_fd()),
                None => spawner.spawn_to(&spawn_spec, io::stdout().as_fd(), io::stderr().as_fd()),
            }
            .map_err(|err| (failure_code(&err), err.to_string()))
        } else {
            Err((
                EXIT_NOT_FOUND,
                format!("working directory {} does not exist", cwd.display()),
            ))
        };
        match spawned {
            Ok(child) => {
                let process = Arc::new(Self {
                    argv: spec.argv.clone(),
                    pid: Some(child.pid()),
                    started_at,
                    exit: watch::Sender::new(None),
                });
                tracing::info!(pid = child.pid(), argv = ?spec.argv, "main process started");
                tokio::spawn(supervise(
                    process.clone(),
                    child,
                    spec.status.clone(),
                    spec.status_writer.clone(),
                ));
                Ok(process)
            }
            Err((code, reason)) => {
                let line = format!(
                    "paddock-agent: cannot start the main process {:?}: {reason} (exit code {code})\n",
                    spec.argv
                );
                let written = match log {
                    Some(mut file) => file.write_all(line.as_bytes()),
                    None => io::stderr().write_all(line.as_bytes()),
                };
                if let Err(err) = written {
                    tracing::warn!(error = %err, "cannot write to the main process log");
                }
                tracing::error!(argv = ?spec.argv, code, %reason, "cannot start the main process");
                let exit = MainExit {
                    exit_code: code,
                    signal: None,
                    finished_at: Timestamp::now(),
                };
                if let Some(path) = &spec.status {
                    record_status(spec.status_writer.as_ref(), path, &exit);
                }
                Ok(Arc::new(Self {
                    argv: spec.argv.clone(),
                    pid: None,
                    started_at,
                    exit: watch::Sender::new(Some(exit)),
                }))
            }
        }
    }

    /// How it ended, once it has (and its status file was written).
    pub fn exit(&self) -> Option<MainExit> {
        *self.exit.borrow()
    }

    /// Waits until it has exited and its status file was written.
    pub async fn wait(&self) -> MainExit {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`, so this cannot happen; wait forever rather than lie.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Sends `signal` to its process group (what is left of it after the leader exited, too).
    pub fn signal_group(&self, signal: Signal) {
        if let Some(pid) = self.pid {
            signal_group(pid, signal);
        }
    }

    pub fn info(&self) -> MainInfo {
        let exit = self.exit();
        MainInfo {
            state: if exit.is_some() { "exited" } else { "running" },
            pid: self.pid,
            argv: self.argv.clone(),
            started_at: self.started_at,
            exit_code: exit.map(|e| e.exit_code),
            signal: exit.and_then(|e| e.signal),
            finished_at: exit.map(|e| e.finished_at),
        }
    }
}

/// The shell's convention for programs that cannot be run.
fn failure_code(err: &SpawnError) -> i32 {
    match err {
        SpawnError::EmptyCommand | SpawnError::NotFound { .. } => EXIT_NOT_FOUND,
        SpawnError::PermissionDenied { .. } | SpawnError::Io { .. } => EXIT_CANNOT_EXECUTE,
    }
}

async fn supervise(
    process: Arc<MainProcess>,
    mut child: ChildExit,
    status: Option<PathBuf>,
    writer: Option<StatusWriter>,
) {
    let exit = MainExit::from_status(child.wait().await);
    tracing::info!(
        exit_code = exit.exit_code,
        signal = exit.signal,
        "main process exited"
    );
    if let Some(path) = status {
        let _ =
            tokio::task::spawn_blocking(move || record_status(writer.as_ref(), &path, &exit)).await;
    }
    process.exit.send_replace(Some(exit));
}

/// Writes the status file (through `writer` when there is one), logging (not failing) when it
/// cannot.
fn record_status(writer: Option<&StatusWriter>, path: &Path, exit: &MainExit) {
    let written = match writer {
        Some(writer) => writer.write(path, exit),
        None => write_status(path, exit),
    };
    if let Err(err) = written {
        tracing::error!(path = %path.display(), error = %err, "cannot write the main process status file");
    }
}

/// Replaces `path` atomically with the JSON of `exit`: written and synced to a temp file in the
/// same directory, then renamed over it, so a reader sees the old file or the whole new one.
pub fn write_status(path: &Path, exit: &MainExit) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("status path has no file name"))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut body = serde_json::to_vec(exit).map_err(io::Error::other)?;
    body.push(b'\n');
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Opens the main process's log for appending, creating it with mode 0644 (whatever the umask)
/// when missing. Its directory must exist.
pub fn open_log(path: &Path) -> io::Result<File> {
    match OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
    {
        Ok(file) => {
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            Ok(file)
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().append(true).open(path)
        }
        Err(err) => Err(err),
    }
}

pub fn routes() -> Router<SharedState> {
    Router::new().route("/v1/main", get(main_info))
}

async fn main_info(State(state): State<SharedState>) -> Response {
    match &state.main {
        Some(main) => Json(main.info()).into_response(),
        None => {
            ApiError::not_found("no main process: the agent was started without `-- CMD ARGS...`")
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_file_is_replaced_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.status");
        std::fs::write(&path, "old").unwrap();
        let exit = MainExit {
            exit_code: 137,
            signal: Some(9),
            finished_at: "2026-01-02T03:04:05Z".parse().unwrap(),
        };
        write_status(&path, &exit).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"exit_code": 137, "signal": 9, "finished_at": "2026-01-02T03:04:05Z"})
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("main.status")]);
    }

    #[test]
    fn the_status_writer_thread_writes_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let writer = StatusWriter::spawn().unwrap();
        let exit = MainExit {
            exit_code: 3,
            signal: None,
            finished_at: Timestamp::now(),
        };
        writer.write(&dir.path().join("s.json"), &exit).unwrap();
        assert!(
            std::fs::read_to_string(dir.path().join("s.json"))
                .unwrap()
                .contains("\"exit_code\":3")
        );
        assert!(
            writer
                .write(&dir.path().join("missing/s.json"), &exit)
                .is_err()
        );
    }

    #[test]
    fn status_file_in_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let exit = MainExit {
            exit_code: 0,
            signal: None,
            finished_at: Timestamp::now(),
        };
        assert!(write_status(&dir.path().join("missing/main.status"), &exit).is_err());
    }

    #[test]
    fn log_is_created_0644_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.log");
        open_log(&path).unwrap().write_all(b"one\n").unwrap();
        open_log(&path).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(open_log(&dir.path().join("missing/main.log")).is_err());
    }

    #[test]
    fn start_failures_map_to_shell_codes() {
        let program = "x".to_owned();
        assert_eq!(
            failure_code(&SpawnError::NotFound {
                program: program.clone()
            }),
            127
        );
        assert_eq!(failure_code(&SpawnError::PermissionDenied { program }), 126);
    }
}
