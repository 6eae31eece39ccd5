//! The gateway's error: a stable code, a human message, an HTTP status (docs/gateway-api.md).

use axum::response::{IntoResponse, Response};
use http::StatusCode;
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
    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Conflict => StatusCode::CONFLICT,
            Code::InvalidObject => StatusCode::UNPROCESSABLE_ENTITY,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::TooManyProcesses => StatusCode::TOO_MANY_REQUESTS,
            Code::SandboxNotReady | Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::NotImplemented => StatusCode::NOT_IMPLEMENTED,
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code.status(), axum::Json(self.body())).into_response()
    }
}
