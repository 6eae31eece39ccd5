//! The error every API answer carries: a stable code, a human message, structured details
//! (docs/gateway-api.md). The gateway turns it into an HTTP response; backends build it.

use serde_json::{Value, json};

/// Stable error codes; clients (the SDKs) map them to typed exceptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Code {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    Conflict,
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
    /// Every code, for documentation and client checks.
    pub const ALL: [Code; 14] = [
        Code::InvalidArgument,
        Code::Unauthenticated,
        Code::PermissionDenied,
        Code::NotFound,
        Code::AlreadyExists,
        Code::Conflict,
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

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::InvalidArgument => 400,
            Code::Unauthenticated => 401,
            Code::PermissionDenied => 403,
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Conflict => 409,
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

/// An error answer: `{"code", "message", "details"?}`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    /// The stable code.
    pub code: Code,
    /// What is wrong and what to do.
    pub message: String,
    /// Structured details (validation problems).
    pub details: Option<Value>,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    /// 503 for a backend or agent that cannot be reached.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, message)
    }

    /// 422 with every validation problem.
    pub fn invalid_object(what: &str, problems: &[paddock_api::validate::Problem]) -> Self {
        let summary: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let details = problems
            .iter()
            .map(|p| json!({"path": p.path, "message": p.message, "line": p.line}))
            .collect();
        Self {
            code: Code::InvalidObject,
            message: format!("{what} is invalid: {}", summary.join("; ")),
            details: Some(Value::Array(details)),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = json!({"code": self.code.as_str(), "message": self.message});
        if let Some(d) = &self.details {
            body["details"] = d.clone();
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_distinct_spellings_and_error_statuses() {
        let spellings: std::collections::BTreeSet<_> =
            Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(spellings.len(), Code::ALL.len());
        assert!(Code::ALL.iter().all(|c| c.http_status() >= 400));
    }
}
