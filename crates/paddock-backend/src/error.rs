//! The error every API answer carries: a stable code, a human message, structured details
//! (docs/gateway-api.md). The gateway turns it into an HTTP response; backends build it.

use serde_json::{Value, json};

pub use paddock_wire::Code;

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
