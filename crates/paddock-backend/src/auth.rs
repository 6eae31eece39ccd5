//! Bearer tokens checked somewhere other than the gateway (Kubernetes TokenReview).

use crate::backend::BoxFuture;
use crate::error::ApiError;

/// What a [`TokenVerifier`] decided about a presented token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the token is accepted.
    pub authenticated: bool,
    /// Who the token belongs to, when known (for logs; never the token itself).
    pub user: Option<String>,
}

impl Verdict {
    /// An accepted token of `user`.
    pub fn accepted(user: impl Into<String>) -> Self {
        Self {
            authenticated: true,
            user: Some(user.into()),
        }
    }

    /// A refused token.
    pub fn refused() -> Self {
        Self {
            authenticated: false,
            user: None,
        }
    }
}

/// Checks bearer tokens elsewhere. An `Err` means no verdict could be reached (the verifier is
/// unreachable); the gateway then refuses the request (fail closed) with that error.
pub trait TokenVerifier: std::fmt::Debug + Send + Sync + 'static {
    /// Decides about `token`. Implementations must never log the token.
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Verdict, ApiError>>;
}
