//! sandboxd's gRPC `process.v1.ProcessService` on top of the process table, with upstream's
//! messages, error codes and semantics (a cancelled `Start` stream kills the process group).

use std::collections::BTreeMap;
use std::pin::Pin;

use rustix::process::Signal;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::Stream;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::confine::{ConfineError, PathStyle};
use crate::output::StreamKind;
use crate::process::{FollowItem, ProcessError, StartSpec};
use crate::spawn::{SpawnError, SpawnSpec};
use crate::state::SharedState;

/// The generated `process.v1` messages, client and server.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    unused_qualifications,
    missing_debug_implementations
)]
pub mod pb {
    tonic::include_proto!("process.v1");
}

use pb::process_service_server::{ProcessService, ProcessServiceServer};
use pb::start_response::Event;

/// Largest chunk per `StartResponse` output event, as upstream's default stream chunk size.
const STREAM_CHUNK: usize = 4096;

/// The ProcessService implementation.
#[derive(Debug, Clone)]
pub struct Processes {
    state: SharedState,
}

/// The tonic service, ready to be routed.
pub fn service(state: SharedState) -> ProcessServiceServer<Processes> {
    ProcessServiceServer::new(Processes { state })
}

fn spawn_status(err: ProcessError) -> Status {
    match err {
        ProcessError::TooMany { .. } => Status::resource_exhausted(err.to_string()),
        ProcessError::Spawn(SpawnError::EmptyCommand) => {
            Status::invalid_argument("command is required")
        }
        ProcessError::Spawn(spawn @ SpawnError::NotFound { .. }) => {
            Status::not_found(spawn.to_string())
        }
        ProcessError::Spawn(spawn @ SpawnError::PermissionDenied { .. }) => {
            Status::permission_denied(spawn.to_string())
        }
        ProcessError::NotFound { .. } => Status::not_found(err.to_string()),
        ProcessError::StdinClosed { .. } | ProcessError::NotPty { .. } => {
            Status::failed_precondition(err.to_string())
        }
        ProcessError::Spawn(SpawnError::Io { .. }) | ProcessError::Io { .. } => {
            Status::internal(err.to_string())
        }
    }
}

impl Processes {
    fn spawn_spec(
        &self,
        config: Option<pb::ProcessConfig>,
        pty: Option<pb::Pty>,
    ) -> Result<SpawnSpec, Status> {
        let config = config.unwrap_or_default();
        if config.command.is_empty() || config.command[0].is_empty() {
            return Err(Status::invalid_argument("command is required"));
        }
        if config.command.iter().any(|a| a.contains('\0')) {
            return Err(Status::invalid_argument("command contains a NUL character"));
        }
        let env: BTreeMap<String, String> = config.env_vars.into_iter().collect();
        if env
            .iter()
            .any(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
        {
            return Err(Status::invalid_argument(
                "env_vars: names must be non-empty without `=` or NUL",
            ));
        }
        let cwd = match config.cwd.as_deref().filter(|c| !c.is_empty()) {
            Some(cwd) => {
                self.state
                    .root
                    .resolve(cwd, PathStyle::Rooted)
                    .map_err(|err| match err {
                        ConfineError::Escapes { .. } | ConfineError::InvalidCharacter { .. } => {
                            Status::permission_denied(format!("cwd: {err}"))
                        }
                        ConfineError::Io { .. } => Status::internal(format!("cwd: {err}")),
                    })?
            }
            None => self.state.workdir.clone(),
        };
        if !cwd.is_dir() {
            return Err(Status::not_found(format!(
                "cwd {:?} is not an existing directory",
                config.cwd.unwrap_or_default()
            )));
        }
        let pty = pty.map(|p| crate::pty::TermSize {
            cols: u16::try_from(p.cols).ok().filter(|c| *c > 0).unwrap_or(80),
            rows: u16::try_from(p.rows).ok().filter(|r| *r > 0).unwrap_or(24),
        });
        Ok(SpawnSpec {
            argv: config.command,
            env: env.into_iter().collect(),
            cwd,
            pty,
        })
    }

    fn lookup(&self, id: i32) -> Result<std::sync::Arc<crate::process::ManagedProcess>, Status> {
        u32::try_from(id)
            .ok()
            .and_then(|id| self.state.processes.get(id).ok())
            .ok_or_else(|| Status::not_found(format!("process {id} not found")))
    }
}

type StartStream = Pin<Box<dyn Stream<Item = Result<pb::StartResponse, Status>> + Send>>;

fn event(event: Event) -> Result<pb::StartResponse, Status> {
    Ok(pb::StartResponse { event: Some(event) })
}

#[tonic::async_trait]
impl ProcessService for Processes {
    type StartStream = StartStream;

    async fn start(
        &self,
        request: Request<pb::StartRequest>,
    ) -> Result<Response<Self::StartStream>, Status> {
        let request = request.into_inner();
        let spawn = self.spawn_spec(request.config, request.pty)?;
        let spec = StartSpec {
            spawn,
            timeout: None,
            stdin: None,
            keep_stdin_open: true,
            background: false,
        };
        let (process, guard) = self.state.processes.start(spec).map_err(spawn_status)?;
        let mut follower = process.follow(0);
        self.state.processes.attach_backpressure(&mut follower);
        let (tx, rx) = mpsc::channel(16);
        let id = i32::try_from(process.id).unwrap_or(i32::MAX);
        tokio::spawn(async move {
            let _guard = guard;
            if tx
                .send(event(Event::Init(pb::InitEvent { process_id: id })))
                .await
                .is_err()
            {
                return;
            }
            loop {
                let item = tokio::select! {
                    item = follower.next() => item,
                    () = tx.closed() => return,
                };
                let Some(item) = item else { return };
                match item {
                    FollowItem::Output(chunk) => {
                        for piece in chunk.data.chunks(STREAM_CHUNK) {
                            let data = piece.to_vec();
                            let out = match chunk.stream {
                                StreamKind::Stdout => Event::Stdout(data),
                                StreamKind::Stderr => Event::Stderr(data),
                            };
                            if tx.send(event(out)).await.is_err() {
                                return;
                            }
                        }
                    }
                    FollowItem::Dropped { .. } => {}
                    FollowItem::Exit(exit) => {
                        let exit_code = exit.exit_code.unwrap_or(-1);
                        let _ = tx
                            .send(event(Event::Exit(pb::ExitEvent { exit_code })))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn execute(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<Response<pb::ExecuteResponse>, Status> {
        let spec = self.spawn_spec(request.into_inner().config, None)?;
        let cap = self.state.config.limits.max_output_bytes;
        let outcome = self
            .state
            .processes
            .exec(&spec, None, None, cap)
            .await
            .map_err(spawn_status)?;
        Ok(Response::new(pb::ExecuteResponse {
            exit_code: outcome.exit.exit_code.unwrap_or(-1),
            stdout: outcome.stdout.data,
            stderr: outcome.stderr.data,
        }))
    }

    async fn write_stdin(
        &self,
        request: Request<pb::WriteStdinRequest>,
    ) -> Result<Response<pb::WriteStdinResponse>, Status> {
        let request = request.into_inner();
        let process = self.lookup(request.process_id)?;
        match request.payload {
            Some(pb::write_stdin_request::Payload::Eof(())) => {
                process.close_stdin().await.map_err(spawn_status)?;
            }
            Some(pb::write_stdin_request::Payload::Input(input)) => {
                if !process.has_stdin().await {
                    return Err(Status::failed_precondition(format!(
                        "process {} has no stdin",
                        request.process_id
                    )));
                }
                if !input.is_empty() {
                    process.write_stdin(&input).await.map_err(spawn_status)?;
                }
            }
            None => {
                if !process.has_stdin().await {
                    return Err(Status::failed_precondition(format!(
                        "process {} has no stdin",
                        request.process_id
                    )));
                }
            }
        }
        Ok(Response::new(pb::WriteStdinResponse {}))
    }

    async fn send_signal(
        &self,
        request: Request<pb::SendSignalRequest>,
    ) -> Result<Response<pb::SendSignalResponse>, Status> {
        let request = request.into_inner();
        let process = self.lookup(request.process_id)?;
        let signal = match pb::Signal::try_from(request.signal) {
            Ok(pb::Signal::Sigint) => Signal::INT,
            Ok(pb::Signal::Sigterm) => Signal::TERM,
            Ok(pb::Signal::Sigkill) => Signal::KILL,
            Ok(pb::Signal::Unspecified) | Err(_) => {
                return Err(Status::new(
                    Code::InvalidArgument,
                    format!("unsupported or unspecified signal: {}", request.signal),
                ));
            }
        };
        process.signal(signal);
        Ok(Response::new(pb::SendSignalResponse {}))
    }

    async fn resize_tty(
        &self,
        request: Request<pb::ResizeTtyRequest>,
    ) -> Result<Response<pb::ResizeTtyResponse>, Status> {
        let request = request.into_inner();
        let process = self.lookup(request.process_id)?;
        let size = crate::pty::TermSize {
            cols: u16::try_from(request.cols).unwrap_or(u16::MAX),
            rows: u16::try_from(request.rows).unwrap_or(u16::MAX),
        };
        process
            .resize(size)
            .map_err(|err| Status::failed_precondition(format!("failed to resize TTY: {err}")))?;
        Ok(Response::new(pb::ResizeTtyResponse {}))
    }
}
