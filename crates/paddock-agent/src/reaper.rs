//! Child reaping: one SIGCHLD-driven task collects exit statuses and hands them to whoever
//! spawned the child, and — when the agent is PID 1 or a child subreaper — also reaps orphans
//! re-parented to it, so no zombies accumulate.
//!
//! tokio::process is not used: its per-child waiting would race with `waitpid(-1)`. Spawning
//! holds the read side of a gate and reaping the write side, so a child can never be reaped
//! between its spawn and the registration of its waiter.
//!
//! The fast path does not wait for SIGCHLD: each child also gets a pidfd, which becomes readable
//! in the agent's epoll the moment the child exits, and its waiter reaps it directly. (SIGCHLD
//! often lands on a thread that is not polling, costing an extra wake-up under load.)

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use std::os::fd::OwnedFd;

use rustix::process::{Pid, PidfdFlags, WaitOptions, WaitStatus};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited normally with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    fn from_wait(status: WaitStatus) -> Self {
        match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => Self::Code(code),
            (None, Some(sig)) => Self::Signal(sig),
            (None, None) => Self::Code(-1),
        }
    }

    /// The exit code, if the child exited normally.
    pub fn code(self) -> Option<i32> {
        match self {
            Self::Code(code) => Some(code),
            Self::Signal(_) => None,
        }
    }

    /// The terminating signal, if the child was killed.
    pub fn signal(self) -> Option<i32> {
        match self {
            Self::Signal(sig) => Some(sig),
            Self::Code(_) => None,
        }
    }

    /// The shell convention: the code, or `128 + signal`.
    pub fn shell_code(self) -> i32 {
        match self {
            Self::Code(code) => code,
            Self::Signal(sig) => 128 + sig,
        }
    }
}

/// Collects exit statuses of the agent's children (and, optionally, of orphans).
#[derive(Debug)]
pub struct Reaper {
    gate: RwLock<()>,
    waiters: Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>,
    reap_orphans: bool,
}

impl Reaper {
    /// Starts the SIGCHLD task. With `reap_orphans` every child of this process is reaped
    /// (`waitpid(-1)`), which is right for PID 1 or a subreaper but steals the children of
    /// anything else running in the same process; without it only spawned pids are waited for.
    pub fn start(reap_orphans: bool) -> io::Result<Arc<Self>> {
        let reaper = Arc::new(Self {
            gate: RwLock::new(()),
            waiters: Mutex::new(HashMap::new()),
            reap_orphans,
        });
        let mut sigchld = signal(SignalKind::child())?;
        let weak = Arc::downgrade(&reaper);
        tokio::spawn(async move {
            loop {
                match weak.upgrade() {
                    Some(reaper) => reaper.reap(),
                    None => return,
                }
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(reaper)
    }

    /// Runs `spawn` (which starts a child and returns its pid) so that the child cannot be
    /// reaped before its waiter is registered.
    pub fn spawn_with(
        self: &Arc<Self>,
        spawn: impl FnOnce() -> io::Result<i32>,
    ) -> io::Result<ChildExit> {
        let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        let pid = spawn()?;
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pid, tx);
        // Without pidfd support (old kernels, some gVisor versions) SIGCHLD alone is used.
        let pidfd = Pid::from_raw(pid)
            .and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::NONBLOCK).ok())
            .and_then(|fd| register_readable(fd).ok());
        Ok(ChildExit {
            pid,
            rx,
            pidfd,
            reaper: self.clone(),
            status: None,
        })
    }

    /// Reaps `pid` if it has exited and nobody else has; its status may also already be in `rx`.
    fn try_reap(&self, pid: i32, rx: &mut oneshot::Receiver<ExitStatus>) -> Option<ExitStatus> {
        // Under the gate the reaper is not between reaping and delivering, so a status not yet in
        // `rx` means the child is unreaped and `pid` still names it (no reuse possible).
        let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        if let Ok(status) = rx.try_recv() {
            return Some(status);
        }
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        if !waiters.contains_key(&pid) {
            return None;
        }
        let status = match rustix::process::waitpid(Pid::from_raw(pid), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => ExitStatus::from_wait(status),
            Ok(None) => return None,
            Err(_) => ExitStatus::Code(-1),
        };
        waiters.remove(&pid);
        Some(status)
    }

    /// Reaps every child that has exited and delivers the statuses.
    fn reap(&self) {
        let mut reaped: Vec<(i32, ExitStatus)> = Vec::new();
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        {
            if self.reap_orphans {
                while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
                    reaped.push((pid.as_raw_nonzero().get(), ExitStatus::from_wait(status)));
                }
            } else {
                let pids: Vec<i32> = self
                    .waiters
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .keys()
                    .copied()
                    .collect();
                for raw in pids {
                    let Some(pid) = Pid::from_raw(raw) else {
                        continue;
                    };
                    match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
                        Ok(Some((_, status))) => reaped.push((raw, ExitStatus::from_wait(status))),
                        Ok(None) => {}
                        Err(_) => reaped.push((raw, ExitStatus::Code(-1))),
                    }
                }
            }
        }
        if reaped.is_empty() {
            return;
        }
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        for (pid, status) in reaped {
            if let Some(tx) = waiters.remove(&pid) {
                let _ = tx.send(status);
            } else {
                tracing::debug!(pid, ?status, "reaped orphan");
            }
        }
    }
}

fn register_readable(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    crate::pty::register_fd(fd, Interest::READABLE)
}

/// The exit of one spawned child: resolved by its pidfd becoming readable (fast path) or by
/// the SIGCHLD reaper, whichever sees it first.
#[derive(Debug)]
pub struct ChildExit {
    pid: i32,
    rx: oneshot::Receiver<ExitStatus>,
    pidfd: Option<AsyncFd<OwnedFd>>,
    reaper: Arc<Reaper>,
    status: Option<ExitStatus>,
}

impl ChildExit {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the exit status. Cancel-safe: it can be polled again after being dropped.
    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        loop {
            let readable = async {
                match &self.pidfd {
                    Some(fd) => fd
                        .readable()
                        .await
                        .map(|mut guard| guard.clear_ready())
                        .is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = &mut self.rx => {
                    let status = received.unwrap_or(ExitStatus::Code(-1));
                    self.status = Some(status);
                    return status;
                }
                usable = readable => {
                    if !usable {
                        self.pidfd = None;
                    }
                    if let Some(status) = self.reaper.try_reap(self.pid, &mut self.rx) {
                        self.status = Some(status);
                        return status;
                    }
                }
            }
        }
    }
}

/// Sends `signal` to the process group led by `pgid`; a group that is already gone is fine.
pub fn signal_group(pgid: i32, signal: rustix::process::Signal) {
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}
