//! Errors as HTTP responses: [`ApiError`] (from the backend port) carries a stable code, a human
//! message and details; [`ErrorResponse`] turns it into `{"code","message","details"?}` with the
//! code's status (docs/gateway-api.md).

use axum::response::{IntoResponse, Response};
use http::StatusCode;

pub use paddock_backend::{ApiError, Code};

/// An [`ApiError`] on its way out as an HTTP response. Handlers return
/// `Result<_, ErrorResponse>`; `?` converts any `ApiError`.
#[derive(Debug)]
pub struct ErrorResponse(pub ApiError);

impl From<ApiError> for ErrorResponse {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

/// The HTTP status of a code.
pub fn status_of(code: Code) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        (status_of(self.0.code), axum::Json(self.0.body())).into_response()
    }
}

/// What handlers return.
pub type ApiResult<T = Response> = Result<T, ErrorResponse>;
