//! Starting child processes: argv, environment, working directory, pipes or a PTY, each child
//! the leader of its own process group (PTY children of their own session) so that signals and
//! timeouts reach everything it starts. Programs are looked up in the child's `PATH`.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::pipe::{PipeFlags, pipe_with};

use tokio::net::unix::pipe;

use crate::pty::{PtyMaster, TermSize, open_pty};
use crate::reaper::{ChildExit, Reaper};
use crate::sys_spawn::{self, ChildStdio, SpawnRequest};

/// What to start.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// Program and arguments; the program is looked up in `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// Variables set on top of the agent's base environment (the request wins).
    pub env: Vec<(String, String)>,
    /// Working directory, already confined.
    pub cwd: PathBuf,
    /// Run on a pseudo-terminal of this size instead of pipes.
    pub pty: Option<TermSize>,
}

/// Where the child's stdin goes.
#[derive(Debug)]
pub enum StdinSink {
    Pipe(pipe::Sender),
    Pty(Arc<PtyMaster>),
}

impl StdinSink {
    /// Writes all of `data` to the child's stdin.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::Pipe(sender) => tokio::io::AsyncWriteExt::write_all(sender, data).await,
            Self::Pty(master) => master.write_all(data).await,
        }
    }
}

/// Where the child's output comes from.
#[derive(Debug)]
pub enum OutputSource {
    /// Separate stdout and stderr pipes.
    Pipes {
        stdout: pipe::Receiver,
        stderr: pipe::Receiver,
    },
    /// The PTY master: stdout and stderr merged.
    Pty(Arc<PtyMaster>),
}

/// A started child.
#[derive(Debug)]
pub struct Spawned {
    /// OS pid, also the process group id.
    pub pid: i32,
    /// Resolves when the child has exited and was reaped.
    pub exit: ChildExit,
    /// The child's stdin (a pipe, or the PTY master).
    pub stdin: StdinSink,
    /// The child's output.
    pub output: OutputSource,
    /// The PTY master, for resizing.
    pub pty: Option<Arc<PtyMaster>>,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("command is empty: give at least the program to run")]
    EmptyCommand,
    #[error("{program}: command not found")]
    NotFound { program: String },
    #[error("{program}: permission denied")]
    PermissionDenied { program: String },
    #[error("cannot start {program}: {source}")]
    Io {
        program: String,
        #[source]
        source: io::Error,
    },
}

/// Used when the child's environment has no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Spawns children with a fixed base environment.
#[derive(Debug)]
pub struct Spawner {
    reaper: Arc<Reaper>,
    base_env: Vec<(OsString, OsString)>,
}

impl Spawner {
    pub fn new(reaper: Arc<Reaper>, base_env: Vec<(OsString, OsString)>) -> Self {
        Self { reaper, base_env }
    }

    /// The child's environment: the base, overridden by the request (and TERM for a PTY).
    fn environment(&self, spec: &SpawnSpec) -> Result<(Vec<CString>, Option<OsString>), io::Error> {
        let overridden = |name: &[u8]| spec.env.iter().any(|(k, _)| k.as_bytes() == name);
        let mut envp = Vec::with_capacity(self.base_env.len() + spec.env.len() + 1);
        let mut path = None;
        let entry = |name: &[u8], value: &[u8]| {
            let mut bytes = Vec::with_capacity(name.len() + value.len() + 1);
            bytes.extend_from_slice(name);
            bytes.push(b'=');
            bytes.extend_from_slice(value);
            CString::new(bytes).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "environment contains NUL")
            })
        };
        for (name, value) in &self.base_env {
            let name = name.as_bytes();
            if overridden(name) || (spec.pty.is_some() && name == b"TERM") {
                continue;
            }
            if name == b"PATH" {
                path = Some(value.clone());
            }
            envp.push(entry(name, value.as_bytes())?);
        }
        for (name, value) in &spec.env {
            if name == "PATH" {
                path = Some(OsString::from(value));
            }
            envp.push(entry(name.as_bytes(), value.as_bytes())?);
        }
        if spec.pty.is_some() && !overridden(b"TERM") {
            envp.push(entry(b"TERM", b"xterm-256color")?);
        }
        Ok((envp, path))
    }

    /// Checks `spec` and turns it into what `posix_spawn` takes.
    fn prepare(&self, spec: &SpawnSpec) -> Result<Prepared, SpawnError> {
        let program = spec.argv.first().ok_or(SpawnError::EmptyCommand)?;
        let invalid = |what: &str| {
            io_error(
                program,
                io::Error::new(io::ErrorKind::InvalidInput, format!("{what} contains NUL")),
            )
        };
        let argv = spec
            .argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| invalid("argv"))?;
        let (envp, path) = self
            .environment(spec)
            .map_err(|source| io_error(program, source))?;
        let executable = resolve_program(program, path.as_deref(), &spec.cwd).ok_or_else(|| {
            SpawnError::NotFound {
                program: program.clone(),
            }
        })?;
        let cwd = CString::new(spec.cwd.as_os_str().as_bytes()).map_err(|_| invalid("cwd"))?;
        Ok(Prepared {
            argv,
            envp,
            executable,
            cwd,
        })
    }

    /// Starts `spec` with stdin at end-of-file and stdout and stderr on the given descriptors,
    /// which the child writes directly (nothing passes through the agent). The child leads a
    /// new process group.
    pub fn spawn_to(
        &self,
        spec: &SpawnSpec,
        stdout: BorrowedFd<'_>,
        stderr: BorrowedFd<'_>,
    ) -> Result<ChildExit, SpawnError> {
        let prepared = self.prepare(spec)?;
        let program = &spec.argv[0];
        let (stdin_child, stdin_parent) =
            pipe_with(PipeFlags::CLOEXEC).map_err(|e| io_error(program, e.into()))?;
        let request = SpawnRequest {
            program: &prepared.executable,
            argv: &prepared.argv,
            envp: &prepared.envp,
            cwd: &prepared.cwd,
            stdio: ChildStdio::Fds {
                stdin: stdin_child.as_fd(),
                stdout,
                stderr,
            },
        };
        let exit = self
            .reaper
            .spawn_with(|| sys_spawn::spawn(&request))
            .map_err(|source| spawn_error(program, source))?;
        // Closing the write end leaves the child's stdin at end-of-file.
        drop((stdin_child, stdin_parent));
        Ok(exit)
    }

    /// Starts `spec`. The child gets a fresh process group (or session, with a PTY).
    pub fn spawn(&self, spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
        let Prepared {
            argv,
            envp,
            executable,
            cwd,
        } = self.prepare(spec)?;
        let program = &spec.argv[0];
        let map_spawn_error = |source: io::Error| spawn_error(program, source);
        match spec.pty {
            None => {
                let wrap = |source: io::Error| io_error(program, source);
                let (stdin_child, stdin_parent) =
                    pipe_with(PipeFlags::CLOEXEC).map_err(|e| wrap(e.into()))?;
                let (stdout_parent, stdout_child) =
                    pipe_with(PipeFlags::CLOEXEC).map_err(|e| wrap(e.into()))?;
                let (stderr_parent, stderr_child) =
                    pipe_with(PipeFlags::CLOEXEC).map_err(|e| wrap(e.into()))?;
                let request = SpawnRequest {
                    program: &executable,
                    argv: &argv,
                    envp: &envp,
                    cwd: &cwd,
                    stdio: ChildStdio::Fds {
                        stdin: stdin_child.as_fd(),
                        stdout: stdout_child.as_fd(),
                        stderr: stderr_child.as_fd(),
                    },
                };
                let exit = self
                    .reaper
                    .spawn_with(|| sys_spawn::spawn(&request))
                    .map_err(map_spawn_error)?;
                let pid = exit.pid();
                drop((stdin_child, stdout_child, stderr_child));
                let stdin =
                    pipe::Sender::from_owned_fd_unchecked(nonblocking(stdin_parent).map_err(wrap)?)
                        .map_err(wrap)?;
                let stdout = pipe::Receiver::from_owned_fd_unchecked(
                    nonblocking(stdout_parent).map_err(wrap)?,
                )
                .map_err(wrap)?;
                let stderr = pipe::Receiver::from_owned_fd_unchecked(
                    nonblocking(stderr_parent).map_err(wrap)?,
                )
                .map_err(wrap)?;
                Ok(Spawned {
                    pid,
                    exit,
                    stdin: StdinSink::Pipe(stdin),
                    output: OutputSource::Pipes { stdout, stderr },
                    pty: None,
                })
            }
            Some(size) => {
                let (master, slave, slave_path) =
                    open_pty(size).map_err(|source| io_error(program, source))?;
                let request = SpawnRequest {
                    program: &executable,
                    argv: &argv,
                    envp: &envp,
                    cwd: &cwd,
                    stdio: ChildStdio::Terminal { path: &slave_path },
                };
                let exit = self
                    .reaper
                    .spawn_with(|| sys_spawn::spawn(&request))
                    .map_err(map_spawn_error)?;
                let pid = exit.pid();
                // Held until the child has the terminal open, so the master never sees a hangup
                // before the child starts.
                drop(slave);
                let master =
                    Arc::new(PtyMaster::new(master).map_err(|source| io_error(program, source))?);
                Ok(Spawned {
                    pid,
                    exit,
                    stdin: StdinSink::Pty(master.clone()),
                    output: OutputSource::Pty(master.clone()),
                    pty: Some(master),
                })
            }
        }
    }
}

/// A checked spawn request: C strings for `posix_spawn`.
struct Prepared {
    argv: Vec<CString>,
    envp: Vec<CString>,
    executable: CString,
    cwd: CString,
}

/// Maps an error of `posix_spawn` (which reports the child's exec failure) for `program`.
fn spawn_error(program: &str, source: io::Error) -> SpawnError {
    match source.kind() {
        io::ErrorKind::NotFound => SpawnError::NotFound {
            program: program.to_owned(),
        },
        io::ErrorKind::PermissionDenied => SpawnError::PermissionDenied {
            program: program.to_owned(),
        },
        _ => io_error(program, source),
    }
}

/// Finds the executable for `program`: a path with `/` is used as is (relative to the child's
/// cwd), a bare name is searched in the child's `PATH`.
fn resolve_program(program: &str, path: Option<&std::ffi::OsStr>, cwd: &Path) -> Option<CString> {
    if program.contains('/') {
        return CString::new(program.as_bytes()).ok();
    }
    let search = path.map_or_else(
        || OsString::from(DEFAULT_PATH),
        std::ffi::OsStr::to_os_string,
    );
    for dir in std::env::split_paths(&search) {
        let dir = if dir.as_os_str().is_empty() {
            cwd.to_path_buf()
        } else if dir.is_relative() {
            cwd.join(dir)
        } else {
            dir
        };
        let candidate = dir.join(program);
        let executable = std::fs::metadata(&candidate)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0);
        if executable {
            return CString::new(candidate.into_os_string().into_vec()).ok();
        }
    }
    None
}

/// Switches a pipe end to non-blocking mode, as tokio's unchecked constructors expect.
fn nonblocking(fd: OwnedFd) -> io::Result<OwnedFd> {
    rustix::io::ioctl_fionbio(&fd, true)?;
    Ok(fd)
}

fn io_error(program: &str, source: io::Error) -> SpawnError {
    SpawnError::Io {
        program: program.to_owned(),
        source,
    }
}
