//! Error types: [`AgentError`] for starting the agent, [`ApiError`] for HTTP responses of the
//! sandboxd and paddock APIs (`{"code": "...", "message": "..."}` with stable codes).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use paddock_wire::Code;
use serde::Serialize;

use crate::confine::ConfineError;
use crate::process::ProcessError;
use crate::spawn::SpawnError;

/// Why the agent could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot listen on {addr}: {source}")]
    BindTcp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on unix socket {path}: {source}")]
    BindUnix {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("root directory {path} is unusable: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("token file {path} is empty: put the bearer token in it, or drop --token-file")]
    EmptyToken { path: PathBuf },
    #[error("no listener configured: give --listen, --grpc-listen or --unix")]
    NoListener,
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] io::Error),
    #[error("cannot open the main process log {path}: {source} (its directory must exist)")]
    MainLog {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the main status writer thread: {source}")]
    MainStatusWriter {
        #[source]
        source: io::Error,
    },
    #[error("--main-status {path}: its directory does not exist; create it first")]
    MainStatusDir { path: PathBuf },
    #[error("{flag} needs a main process: give the command after `--` (e.g. `-- sleep infinity`)")]
    MainFlagWithoutCommand { flag: &'static str },
    #[error(
        "PADDOCK_AGENT_MAIN_ARGV must be a JSON array of strings (the main command and its arguments): {reason}"
    )]
    MainArgv { reason: String },
    #[error(transparent)]
    Landlock(#[from] crate::restrict::LandlockError),
}

/// An error response of the sandboxd and paddock HTTP APIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Code,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: Code,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, Code::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, Code::Internal, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::PayloadTooLarge,
            message,
        )
    }

    /// Maps a filesystem error, naming the path.
    pub fn from_io(err: &io::Error, what: &str) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound => {
                Self::not_found(format!("{what}: path does not exist within the sandbox"))
            }
            io::ErrorKind::PermissionDenied => Self::new(
                StatusCode::FORBIDDEN,
                Code::PermissionDenied,
                format!("{what}: permission denied"),
            ),
            io::ErrorKind::ReadOnlyFilesystem => Self::new(
                StatusCode::FORBIDDEN,
                Code::PermissionDenied,
                format!(
                    "{what}: read-only file system; write under /workspace (every sandbox's workspace), /tmp or a writable volume"
                ),
            ),
            _ => Self::internal(format!("{what}: {err}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<ConfineError> for ApiError {
    fn from(err: ConfineError) -> Self {
        match err {
            ConfineError::Escapes { .. } | ConfineError::InvalidCharacter { .. } => Self::new(
                StatusCode::FORBIDDEN,
                Code::PermissionDenied,
                err.to_string(),
            ),
            ConfineError::Io { .. } => Self::invalid(err.to_string()),
        }
    }
}

impl From<SpawnError> for ApiError {
    fn from(err: SpawnError) -> Self {
        match err {
            SpawnError::EmptyCommand => Self::invalid(err.to_string()),
            SpawnError::NotFound { .. } => Self::not_found(err.to_string()),
            SpawnError::PermissionDenied { .. } => Self::new(
                StatusCode::FORBIDDEN,
                Code::PermissionDenied,
                err.to_string(),
            ),
            SpawnError::Io { .. } => Self::internal(err.to_string()),
        }
    }
}

impl From<ProcessError> for ApiError {
    fn from(err: ProcessError) -> Self {
        match err {
            ProcessError::TooMany { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                Code::TooManyProcesses,
                err.to_string(),
            ),
            ProcessError::Spawn(spawn) => spawn.into(),
            ProcessError::NotFound { .. } => Self::not_found(err.to_string()),
            ProcessError::StdinClosed { .. } | ProcessError::NotPty { .. } => Self::new(
                StatusCode::CONFLICT,
                Code::FailedPrecondition,
                err.to_string(),
            ),
            ProcessError::Io { .. } => Self::internal(err.to_string()),
        }
    }
}
