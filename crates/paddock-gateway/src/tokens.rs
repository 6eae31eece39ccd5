//! `POST /v1/sandboxes/{name}/tokens`: mints a v2 scoped token (upstream's router format,
//! contract §11.1) for one port, method and path of one sandbox. Upstream has no issuer; the
//! gateway is one when given a signing key (`--scoped-token-signing-key-file`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use paddock_wire::{MintToken, MintedToken};

use crate::error::ApiResult;
use crate::objects::encode;
use crate::router_contract::DEFAULT_PORT;
use crate::sandboxes::{NamespaceQuery, get_sandbox};
use crate::scoped_v2::TargetClaims;
use crate::server::AppState;
use crate::{ApiError, Code};

/// Longest validity a minted token may have.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// `POST /v1/sandboxes/{name}/tokens`.
pub async fn mint(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let Some(issuer) = state.options.token_issuer.clone() else {
        return Err(ApiError::new(
            Code::FailedPrecondition,
            "this gateway mints no scoped tokens: start it with --scoped-token-signing-key-file (make one with `paddock token keygen`)",
        )
        .into());
    };
    let req: MintToken = if body.is_empty() {
        MintToken::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::invalid(format!(
                "invalid request body: {e}; send {{\"port\": 8888, \"method\": \"POST\", \"path\": \"/execute\", \"ttlSeconds\": 3600}}"
            ))
        })?
    };
    let ttl = req.ttl_seconds.map_or(DEFAULT_TTL, Duration::from_secs);
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(ApiError::invalid(format!(
            "ttlSeconds must be between 1 and {} (7 days)",
            MAX_TTL.as_secs()
        ))
        .into());
    }
    if req.port == Some(0) {
        return Err(ApiError::invalid("port must be between 1 and 65535").into());
    }
    let sandbox = get_sandbox(&state, q.ns(), &name).await?;
    let uid = sandbox.metadata.uid.clone().unwrap_or_default();
    let exp = SystemTime::now()
        .checked_add(ttl)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or_else(|| ApiError::internal("the clock is out of range"))?;
    let claims = TargetClaims {
        ns: q.ns().to_owned(),
        name: sandbox.metadata.name.clone().unwrap_or(name),
        uid: uid.clone(),
        port: req.port.unwrap_or(DEFAULT_PORT),
        method: req.method.unwrap_or_else(|| "GET".to_owned()),
        path: req.path.unwrap_or_else(|| "/".to_owned()),
        exp,
    };
    let token = issuer
        .mint(&claims)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let expires_at = jiff::Timestamp::from_second(exp)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let minted = MintedToken {
        token,
        sandbox: claims.name,
        namespace: claims.ns,
        uid,
        expires_at,
    };
    Ok(encode(
        &headers,
        StatusCode::CREATED,
        &serde_json::to_value(&minted).unwrap_or_default(),
    ))
}
