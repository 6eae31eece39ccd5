//! The process table: buffered execs, and started processes whose output goes to a bounded
//! replay ring that any number of clients can follow, attach to, or resume from an offset.
//!
//! Every process runs in its own process group; timeouts and kills hit the whole group. A
//! foreground process (its starter follows it) is killed when the starter goes away and its
//! output is back-pressured to that starter; a background one keeps running, its oldest output
//! is evicted past the ring's capacity, and it stays listed after exit until forgotten.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustix::process::Signal;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::sleep_until;

use crate::config::Limits;
use crate::output::{Capture, Chunk, OutputRing, StreamKind, Utf8Carry};
use crate::pty::{PtyMaster, TermSize};
use crate::reaper::{ChildExit, ExitStatus, signal_group};
use crate::spawn::{OutputSource, SpawnError, SpawnSpec, Spawned, Spawner, StdinSink};

/// Size of one read from a child's pipe or PTY.
const READ_CHUNK: usize = 32 * 1024;
/// Most output a follower takes from the ring per wake-up.
const FOLLOW_BATCH: usize = 256 * 1024;

/// Why a process operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("too many processes: {limit} are already running; wait for some to exit")]
    TooMany { limit: usize },
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("process {id} not found")]
    NotFound { id: u32 },
    #[error("process {id} has no open stdin (it was closed or the process exited)")]
    StdinClosed { id: u32 },
    #[error("process {id} has no terminal: start it with a pty to resize it")]
    NotPty { id: u32 },
    #[error("process {id}: {source}")]
    Io {
        id: u32,
        #[source]
        source: io::Error,
    },
}

/// How a process ended.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ExitInfo {
    /// Exit code when it exited normally.
    pub exit_code: Option<i32>,
    /// Terminating signal when it was killed.
    pub signal: Option<i32>,
    /// Killed because its timeout expired.
    pub timed_out: bool,
    /// Wall time from start to exit, in milliseconds.
    pub duration_ms: f64,
}

impl ExitInfo {
    fn new(status: ExitStatus, timed_out: bool, elapsed: Duration) -> Self {
        Self {
            exit_code: status.code(),
            signal: status.signal(),
            timed_out,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
        }
    }

    /// The shell convention: the code, or `128 + signal`.
    pub fn shell_code(&self) -> i32 {
        self.exit_code
            .unwrap_or_else(|| 128 + self.signal.unwrap_or(0))
    }
}

/// What followers watch: how far output got and whether the process has finished.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessState {
    pub output_end: u64,
    /// Set once the process exited and its output was drained.
    pub exit: Option<ExitInfo>,
}

/// A process started through the table.
#[derive(Debug)]
pub struct ManagedProcess {
    pub id: u32,
    pub pid: i32,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub background: bool,
    pub started_at: jiff::Timestamp,
    started: Instant,
    pty: Option<Arc<PtyMaster>>,
    stdin: Arc<tokio::sync::Mutex<Option<StdinSink>>>,
    ring: Mutex<OutputRing>,
    ring_capacity: usize,
    state: watch::Sender<ProcessState>,
    /// Offset a foreground follower has consumed; `None` when nobody applies back-pressure.
    consumed: watch::Sender<Option<u64>>,
    /// The leader has been reaped: its pid may be reused, so no more signals.
    reaped: AtomicBool,
}

pub use paddock_wire::ProcessInfo;

impl ManagedProcess {
    /// Current state (output end and exit).
    pub fn state(&self) -> ProcessState {
        *self.state.borrow()
    }

    pub fn is_pty(&self) -> bool {
        self.pty.is_some()
    }

    pub fn info(&self) -> ProcessInfo {
        let state = self.state();
        let output_start = self
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .start();
        ProcessInfo {
            id: u64::from(self.id),
            pid: self.pid,
            argv: self.argv.clone(),
            cwd: self.cwd.display().to_string(),
            pty: self.pty.is_some(),
            background: self.background,
            state: if state.exit.is_some() {
                paddock_wire::ProcessState::Exited
            } else {
                paddock_wire::ProcessState::Running
            },
            started_at: self.started_at.to_string(),
            exit_code: state.exit.and_then(|e| e.exit_code),
            signal: state.exit.and_then(|e| e.signal),
            timed_out: state.exit.is_some_and(|e| e.timed_out),
            duration_ms: state.exit.map(|e| e.duration_ms),
            output_start,
            output_end: state.output_end,
        }
    }

    /// Sends `signal` to the process group while the leader has not been reaped.
    pub fn signal(&self, signal: Signal) {
        if !self.reaped.load(Ordering::Acquire) {
            signal_group(self.pid, signal);
        }
    }

    /// Writes to stdin.
    pub async fn write_stdin(&self, data: &[u8]) -> Result<(), ProcessError> {
        let mut stdin = self.stdin.lock().await;
        let sink = stdin
            .as_mut()
            .ok_or(ProcessError::StdinClosed { id: self.id })?;
        sink.write_all(data).await.map_err(|source| {
            if source.kind() == io::ErrorKind::BrokenPipe {
                ProcessError::StdinClosed { id: self.id }
            } else {
                ProcessError::Io {
                    id: self.id,
                    source,
                }
            }
        })
    }

    /// Closes stdin (EOF). With a PTY, sends the terminal's EOF character instead.
    pub async fn close_stdin(&self) -> Result<(), ProcessError> {
        let mut stdin = self.stdin.lock().await;
        match stdin.as_mut() {
            Some(StdinSink::Pty(master)) => {
                master
                    .write_all(&[0x04])
                    .await
                    .map_err(|source| ProcessError::Io {
                        id: self.id,
                        source,
                    })
            }
            Some(StdinSink::Pipe(_)) => {
                *stdin = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Whether stdin is still open.
    pub async fn has_stdin(&self) -> bool {
        self.stdin.lock().await.is_some()
    }

    /// Resizes the terminal.
    pub fn resize(&self, size: TermSize) -> Result<(), ProcessError> {
        let pty = self
            .pty
            .as_ref()
            .ok_or(ProcessError::NotPty { id: self.id })?;
        pty.resize(size).map_err(|source| ProcessError::Io {
            id: self.id,
            source,
        })
    }

    /// Waits until the process has exited (and its output drained), or `timeout` passes.
    pub async fn wait(&self, timeout: Duration) -> Option<ExitInfo> {
        let mut rx = self.state.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|s| s.exit.is_some())).await;
        match waited {
            Ok(Ok(state)) => state.exit,
            _ => self.state().exit,
        }
    }

    /// Follows the output from `offset` (clamped to what is retained), then the exit.
    pub fn follow(self: &Arc<Self>, offset: u64) -> Follower {
        Follower {
            process: self.clone(),
            cursor: offset,
            state: self.state.subscribe(),
            pending: VecDeque::new(),
            done: false,
            backpressure: false,
        }
    }

    /// Makes `follower`'s consumption gate the output pump (lossless foreground streaming).
    fn attach_backpressure(&self, follower: &mut Follower) {
        follower.backpressure = true;
        self.consumed.send_replace(Some(follower.cursor));
    }
}

/// One item of a followed process.
#[derive(Debug)]
pub enum FollowItem {
    Output(Chunk),
    /// Output between these offsets was evicted before the follower read it.
    Dropped {
        from: u64,
        to: u64,
    },
    Exit(ExitInfo),
}

/// A reader of a process's output ring; see [`ManagedProcess::follow`].
#[derive(Debug)]
pub struct Follower {
    process: Arc<ManagedProcess>,
    cursor: u64,
    state: watch::Receiver<ProcessState>,
    pending: VecDeque<FollowItem>,
    done: bool,
    backpressure: bool,
}

impl Follower {
    pub fn process(&self) -> &Arc<ManagedProcess> {
        &self.process
    }

    /// The next output chunk, gap or exit; `None` after the exit was returned.
    pub async fn next(&mut self) -> Option<FollowItem> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            let read = {
                let ring = self
                    .process
                    .ring
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                ring.read_from(self.cursor, FOLLOW_BATCH)
            };
            if let Some((from, to)) = read.dropped {
                self.pending.push_back(FollowItem::Dropped { from, to });
            }
            self.cursor = read.next;
            self.pending
                .extend(read.chunks.into_iter().map(FollowItem::Output));
            if self.backpressure {
                self.process.consumed.send_replace(Some(self.cursor));
            }
            if !self.pending.is_empty() {
                continue;
            }
            let state = *self.state.borrow_and_update();
            if state.output_end > self.cursor {
                continue;
            }
            if let Some(exit) = state.exit {
                self.done = true;
                return Some(FollowItem::Exit(exit));
            }
            if self.state.changed().await.is_err() {
                // The supervisor is gone without publishing an exit: report what we know.
                self.done = true;
                return self.process.state().exit.map(FollowItem::Exit);
            }
        }
    }
}

/// Kills a foreground process and forgets it when its starter goes away.
#[derive(Debug)]
pub struct ForegroundGuard {
    process: Arc<ManagedProcess>,
    table: Weak<ProcessTable>,
}

impl Drop for ForegroundGuard {
    fn drop(&mut self) {
        if self.process.state().exit.is_none() {
            self.process.signal(Signal::KILL);
        }
        self.process.consumed.send_replace(None);
        if let Some(table) = self.table.upgrade() {
            table.forget(self.process.id);
        }
    }
}

/// What to start with [`ProcessTable::start`].
#[derive(Debug)]
pub struct StartSpec {
    pub spawn: SpawnSpec,
    pub timeout: Option<Duration>,
    /// Written to stdin right after the start.
    pub stdin: Option<Vec<u8>>,
    /// Keep stdin open after the initial data (always open with a PTY).
    pub keep_stdin_open: bool,
    pub background: bool,
}

/// The result of a buffered exec.
#[derive(Debug)]
pub struct ExecOutcome {
    pub exit: ExitInfo,
    pub stdout: Capture,
    pub stderr: Capture,
}

/// All processes of one agent.
#[derive(Debug)]
pub struct ProcessTable {
    spawner: Spawner,
    limits: Limits,
    permits: Arc<Semaphore>,
    next_id: AtomicU32,
    inner: Mutex<TableInner>,
}

#[derive(Debug, Default)]
struct TableInner {
    processes: BTreeMap<u32, Arc<ManagedProcess>>,
    finished: VecDeque<u32>,
}

impl ProcessTable {
    pub fn new(spawner: Spawner, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            spawner,
            permits: Arc::new(Semaphore::new(limits.max_processes)),
            limits,
            next_id: AtomicU32::new(1),
            inner: Mutex::new(TableInner::default()),
        })
    }

    fn permit(&self) -> Result<OwnedSemaphorePermit, ProcessError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ProcessError::TooMany {
                limit: self.limits.max_processes,
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TableInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks a process up by id.
    pub fn get(&self, id: u32) -> Result<Arc<ManagedProcess>, ProcessError> {
        self.lock()
            .processes
            .get(&id)
            .cloned()
            .ok_or(ProcessError::NotFound { id })
    }

    /// Every known process, by id.
    pub fn list(&self) -> Vec<Arc<ManagedProcess>> {
        self.lock().processes.values().cloned().collect()
    }

    /// Removes a process from the table (it keeps running if it still is).
    pub fn forget(&self, id: u32) -> Option<Arc<ManagedProcess>> {
        let mut inner = self.lock();
        inner.finished.retain(|f| *f != id);
        inner.processes.remove(&id)
    }

    /// Sends `signal` to every running process group (shutdown).
    pub fn signal_all(&self, signal: Signal) {
        for process in self.list() {
            if process.state().exit.is_none() {
                process.signal(signal);
            }
        }
    }

    /// Processes still running.
    pub fn running(&self) -> usize {
        self.limits.max_processes - self.permits.available_permits()
    }

    /// Runs a command to completion, capturing at most `max_output` bytes per stream.
    pub async fn exec(
        &self,
        spec: &SpawnSpec,
        stdin: Option<Vec<u8>>,
        timeout: Option<Duration>,
        max_output: usize,
    ) -> Result<ExecOutcome, ProcessError> {
        let _permit = self.permit()?;
        let started = Instant::now();
        let spawned = self.spawner.spawn(spec)?;
        let Spawned {
            pid,
            exit,
            stdin: mut stdin_sink,
            output,
            ..
        } = spawned;
        let OutputSource::Pipes {
            mut stdout,
            mut stderr,
        } = output
        else {
            return Err(ProcessError::Io {
                id: 0,
                source: io::Error::other("buffered exec needs pipes"),
            });
        };
        let mut out = Capture::new(max_output);
        let mut err = Capture::new(max_output);
        let mut exit = exit;
        let mut status = None;
        let mut timed_out = false;
        {
            let feed_stdin = async move {
                if let Some(data) = stdin {
                    let _ = stdin_sink.write_all(&data).await;
                }
                // Dropping the sink closes stdin.
            };
            let read_out = read_all(&mut stdout, &mut out);
            let read_err = read_all(&mut stderr, &mut err);
            let mut io = std::pin::pin!(async { tokio::join!(feed_stdin, read_out, read_err) });
            let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
            let deadline = timeout.map_or(far, |t| tokio::time::Instant::now() + t);
            let mut drain_deadline = far;
            let mut io_done = false;
            loop {
                if status.is_some() && io_done {
                    break;
                }
                tokio::select! {
                    result = exit.wait(), if status.is_none() => {
                        status = Some(result);
                        drain_deadline = tokio::time::Instant::now() + self.limits.output_drain_timeout;
                    }
                    _ = &mut io, if !io_done => io_done = true,
                    () = sleep_until(deadline), if status.is_none() && !timed_out => {
                        timed_out = true;
                        signal_group(pid, Signal::KILL);
                    }
                    () = sleep_until(drain_deadline), if status.is_some() => break,
                }
            }
        }
        let status = status.unwrap_or(ExitStatus::Code(-1));
        Ok(ExecOutcome {
            exit: ExitInfo::new(status, timed_out, started.elapsed()),
            stdout: out,
            stderr: err,
        })
    }

    /// Starts a process whose output goes to its replay ring. For a foreground process the
    /// returned guard must live as long as its starter follows it.
    pub fn start(
        self: &Arc<Self>,
        spec: StartSpec,
    ) -> Result<(Arc<ManagedProcess>, Option<ForegroundGuard>), ProcessError> {
        let permit = self.permit()?;
        let spawned = self.spawner.spawn(&spec.spawn)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let Spawned {
            pid,
            exit,
            stdin,
            output,
            pty,
        } = spawned;
        let is_pty = pty.is_some();
        let ring_capacity = self.limits.output_buffer_bytes.max(2 * READ_CHUNK);
        let process = Arc::new(ManagedProcess {
            id,
            pid,
            argv: spec.spawn.argv.clone(),
            cwd: spec.spawn.cwd.clone(),
            background: spec.background,
            started_at: jiff::Timestamp::now(),
            started: Instant::now(),
            pty,
            stdin: Arc::new(tokio::sync::Mutex::new(Some(stdin))),
            ring: Mutex::new(OutputRing::new(ring_capacity)),
            ring_capacity,
            state: watch::Sender::new(ProcessState::default()),
            consumed: watch::Sender::new(None),
            reaped: AtomicBool::new(false),
        });
        {
            let mut inner = self.lock();
            inner.processes.insert(id, process.clone());
        }
        let keep_open = spec.keep_stdin_open || is_pty;
        // Hold stdin while the initial data is written so later writes queue behind it; the
        // writer runs beside the output pump so a child that answers before reading all its
        // input cannot deadlock us.
        if let Ok(mut slot) = process.stdin.clone().try_lock_owned() {
            let initial = spec.stdin;
            tokio::spawn(async move {
                if let (Some(data), Some(sink)) = (initial, slot.as_mut()) {
                    let _ = sink.write_all(&data).await;
                }
                if !keep_open {
                    *slot = None;
                }
            });
        }
        let guard = (!spec.background).then(|| ForegroundGuard {
            process: process.clone(),
            table: Arc::downgrade(self),
        });
        let table = Arc::downgrade(self);
        let supervised = process.clone();
        let drain = self.limits.output_drain_timeout;
        let timeout = spec.timeout;
        tokio::spawn(async move {
            supervise(supervised.clone(), output, exit, timeout, drain).await;
            drop(permit);
            if let Some(table) = table.upgrade() {
                table.finished(&supervised);
            }
        });
        Ok((process, guard))
    }

    /// Records that a background process finished, forgetting the oldest beyond the cap.
    fn finished(&self, process: &ManagedProcess) {
        if !process.background {
            return;
        }
        let mut inner = self.lock();
        if !inner.processes.contains_key(&process.id) {
            return;
        }
        inner.finished.push_back(process.id);
        while inner.finished.len() > self.limits.max_finished_processes {
            if let Some(old) = inner.finished.pop_front() {
                inner.processes.remove(&old);
            }
        }
    }

    /// Makes `follower` the back-pressuring reader of its (foreground) process.
    pub fn attach_backpressure(&self, follower: &mut Follower) {
        let process = follower.process.clone();
        process.attach_backpressure(follower);
    }
}

/// Reads a pipe to EOF into a capped capture.
async fn read_all(pipe: &mut pipe::Receiver, capture: &mut Capture) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => capture.push(&buf[..n]),
        }
    }
}

/// Either output source, read the same way.
enum Reader {
    Pipe(pipe::Receiver),
    Pty(Arc<PtyMaster>),
}

impl Reader {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Pipe(pipe) => pipe.read(buf).await,
            Self::Pty(master) => master.read(buf).await,
        }
    }
}

/// Pumps output into the ring, enforces the timeout and publishes the exit after the output.
async fn supervise(
    process: Arc<ManagedProcess>,
    output: OutputSource,
    mut exit: ChildExit,
    timeout: Option<Duration>,
    drain: Duration,
) {
    let (mut out_reader, mut err_reader) = match output {
        OutputSource::Pipes { stdout, stderr } => {
            (Some(Reader::Pipe(stdout)), Some(Reader::Pipe(stderr)))
        }
        OutputSource::Pty(master) => (Some(Reader::Pty(master)), None),
    };
    let mut out_carry = Utf8Carry::default();
    let mut err_carry = Utf8Carry::default();
    let mut out_buf = vec![0u8; READ_CHUNK];
    let mut err_buf = vec![0u8; READ_CHUNK];
    let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    let deadline = timeout.map_or(far, |t| tokio::time::Instant::now() + t);
    let mut drain_deadline = far;
    let mut status: Option<ExitStatus> = None;
    let mut timed_out = false;
    let mut consumed = process.consumed.subscribe();
    loop {
        if status.is_some() && out_reader.is_none() && err_reader.is_none() {
            break;
        }
        // Foreground back-pressure: stop reading while the follower is a full ring behind.
        let blocked = {
            let end = process.state().output_end;
            matches!(*consumed.borrow_and_update(), Some(done) if end.saturating_sub(done) >= process.ring_capacity as u64)
        };
        tokio::select! {
            read = async { match out_reader.as_mut() { Some(r) => r.read(&mut out_buf).await, None => std::future::pending().await } }, if out_reader.is_some() && !blocked => {
                match read {
                    Ok(n) if n > 0 => publish(&process, StreamKind::Stdout, out_carry.split(&out_buf[..n])),
                    _ => {
                        publish(&process, StreamKind::Stdout, out_carry.finish());
                        out_reader = None;
                    }
                }
            }
            read = async { match err_reader.as_mut() { Some(r) => r.read(&mut err_buf).await, None => std::future::pending().await } }, if err_reader.is_some() && !blocked => {
                match read {
                    Ok(n) if n > 0 => publish(&process, StreamKind::Stderr, err_carry.split(&err_buf[..n])),
                    _ => {
                        publish(&process, StreamKind::Stderr, err_carry.finish());
                        err_reader = None;
                    }
                }
            }
            _ = consumed.changed(), if blocked => {}
            result = exit.wait(), if status.is_none() => {
                status = Some(result);
                process.reaped.store(true, Ordering::Release);
                drain_deadline = tokio::time::Instant::now() + drain;
            }
            () = sleep_until(deadline), if status.is_none() && !timed_out => {
                timed_out = true;
                signal_group(process.pid, Signal::KILL);
            }
            () = sleep_until(drain_deadline), if status.is_some() => break,
        }
    }
    *process.stdin.lock().await = None;
    let status = status.unwrap_or(ExitStatus::Code(-1));
    let info = ExitInfo::new(status, timed_out, process.started.elapsed());
    process.state.send_modify(|state| state.exit = Some(info));
}

fn publish(process: &ManagedProcess, stream: StreamKind, data: Bytes) {
    if data.is_empty() {
        return;
    }
    let end = {
        let mut ring = process.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.push(stream, data);
        ring.end()
    };
    process.state.send_modify(|state| state.output_end = end);
}
