//! Errors mirroring the gateway's codes (docs/gateway-api.md).

use paddock_wire::Code;
use serde_json::Value;

/// The gateway's error codes, plus the client's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidObject,
    PayloadTooLarge,
    TooManyProcesses,
    SandboxNotReady,
    DeadlineExceeded,
    Unavailable,
    Internal,
    NotImplemented,
    /// The gateway could not be reached.
    ConnectionFailed,
    /// The gateway answered something this client does not understand.
    Protocol,
}

impl From<Code> for ErrorCode {
    fn from(code: Code) -> Self {
        match code {
            Code::InvalidArgument => Self::InvalidArgument,
            Code::Unauthenticated => Self::Unauthenticated,
            Code::PermissionDenied => Self::PermissionDenied,
            Code::NotFound => Self::NotFound,
            Code::AlreadyExists => Self::AlreadyExists,
            Code::Conflict => Self::Conflict,
            Code::FailedPrecondition => Self::FailedPrecondition,
            Code::InvalidObject => Self::InvalidObject,
            Code::PayloadTooLarge => Self::PayloadTooLarge,
            Code::TooManyProcesses => Self::TooManyProcesses,
            Code::SandboxNotReady => Self::SandboxNotReady,
            Code::DeadlineExceeded => Self::DeadlineExceeded,
            Code::Unavailable => Self::Unavailable,
            Code::Internal => Self::Internal,
            Code::NotImplemented => Self::NotImplemented,
        }
    }
}

impl ErrorCode {
    /// The code of an error body, or (an answer without one) the code its HTTP status means.
    fn parse(code: &str, status: u16) -> Self {
        if let Some(code) = Code::parse(code) {
            return code.into();
        }
        match status {
            400 => Self::InvalidArgument,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::NotFound,
            409 => Self::Conflict,
            413 => Self::PayloadTooLarge,
            422 => Self::InvalidObject,
            429 => Self::TooManyProcesses,
            501 => Self::NotImplemented,
            503 => Self::Unavailable,
            504 => Self::DeadlineExceeded,
            _ => Self::Internal,
        }
    }
}

/// An error from the gateway or on the way to it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// What kind of error.
    pub code: ErrorCode,
    /// What is wrong and what to do.
    pub message: String,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// Structured details (validation problems).
    pub details: Option<Value>,
}

impl Error {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: None,
            details: None,
        }
    }

    pub(crate) fn from_response(status: u16, body: &[u8]) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let code = parsed
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("message").or_else(|| v.get("detail")))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                )
            });
        Self {
            code: ErrorCode::parse(code, status),
            message,
            status: Some(status),
            details: parsed.and_then(|v| v.get("details").cloned()),
        }
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
