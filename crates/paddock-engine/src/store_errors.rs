//! Mapping store errors to what the planners and the gateway understand.

use paddock_backend::{ApiError, Code};
use paddock_plan::outcome::FailureKind;
use paddock_store::StoreError;

/// The planner's failure kind of a store error.
pub fn failure_kind(e: &StoreError) -> FailureKind {
    match e {
        StoreError::NotFound { .. } => FailureKind::NotFound,
        StoreError::AlreadyExists { .. } => FailureKind::AlreadyExists,
        StoreError::Conflict { .. } => FailureKind::Conflict,
        StoreError::Invalid { .. } => FailureKind::Invalid,
        _ => FailureKind::Other,
    }
}

/// The gateway's error for a store error.
pub fn api_error(e: StoreError) -> ApiError {
    let code = match &e {
        StoreError::NotFound { .. } => Code::NotFound,
        StoreError::AlreadyExists { .. } => Code::AlreadyExists,
        StoreError::Conflict { .. } => Code::Conflict,
        StoreError::Invalid { .. } => Code::InvalidArgument,
        StoreError::Gone { .. } => Code::Conflict,
        _ => Code::Internal,
    };
    ApiError::new(code, e.to_string())
}
