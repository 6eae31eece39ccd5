//! The body of every error answer, and its stable codes (docs/gateway-api.md).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Stable error codes; clients map them to typed exceptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum Code {
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
}

impl Code {
    /// Every code.
    pub const ALL: [Code; 15] = [
        Code::InvalidArgument,
        Code::Unauthenticated,
        Code::PermissionDenied,
        Code::NotFound,
        Code::AlreadyExists,
        Code::Conflict,
        Code::FailedPrecondition,
        Code::InvalidObject,
        Code::PayloadTooLarge,
        Code::TooManyProcesses,
        Code::SandboxNotReady,
        Code::DeadlineExceeded,
        Code::Unavailable,
        Code::Internal,
        Code::NotImplemented,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::Conflict => "CONFLICT",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::InvalidObject => "INVALID_OBJECT",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::TooManyProcesses => "TOO_MANY_PROCESSES",
            Code::SandboxNotReady => "SANDBOX_NOT_READY",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL",
            Code::NotImplemented => "NOT_IMPLEMENTED",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::InvalidArgument => 400,
            Code::Unauthenticated => 401,
            Code::PermissionDenied => 403,
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Conflict | Code::FailedPrecondition => 409,
            Code::InvalidObject => 422,
            Code::PayloadTooLarge => 413,
            Code::TooManyProcesses => 429,
            Code::SandboxNotReady | Code::Unavailable => 503,
            Code::DeadlineExceeded => 504,
            Code::Internal => 500,
            Code::NotImplemented => 501,
        }
    }
}

/// `{"code", "message", "details"?}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    /// The stable code.
    pub code: Code,
    /// What is wrong and what to do.
    pub message: String,
    /// Structured details (validation problems: `path`, `message`, `line`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_wire_spelling_and_map_to_error_statuses() {
        for code in Code::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap_or_default(),
                Value::String(code.as_str().to_owned())
            );
            assert_eq!(Code::parse(code.as_str()), Some(code));
            assert!(code.http_status() >= 400);
        }
    }
}
