//! paddock's own SandboxPolicy objects (`/apis/paddock.dev/v1alpha1/.../sandboxpolicies`) and a
//! sandbox's egress record (`/v1/sandboxes/{name}/egress`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use paddock_wire::EgressLog;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Code};
use crate::objects::{decode_one, encode};
use crate::server::AppState;

/// Checks a SandboxPolicy, answering every problem with its field path.
///
/// # Errors
/// The policy is invalid.
pub fn validate(value: &Value) -> Result<(), ApiError> {
    paddock_api::validate::validate_policy(value)
        .map(|_| ())
        .map_err(|problems| {
            let mut err = ApiError::new(
                Code::InvalidObject,
                format!(
                    "SandboxPolicy {} is invalid: {}",
                    value
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("(unnamed)"),
                    problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            );
            err.details = Some(Value::Array(
                problems
                    .iter()
                    .map(|p| json!({"field": p.path, "message": p.message}))
                    .collect(),
            ));
            err
        })
}

/// `GET .../namespaces/{ns}/sandboxpolicies`.
pub async fn list(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let items = state.backend.list_policies(Some(&namespace)).await?;
    Ok(encode(&headers, StatusCode::OK, &list_value(items)))
}

/// `GET /apis/paddock.dev/v1alpha1/sandboxpolicies`.
pub async fn list_all(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let items = state.backend.list_policies(None).await?;
    Ok(encode(&headers, StatusCode::OK, &list_value(items)))
}

fn list_value(items: Vec<Value>) -> Value {
    json!({
        "apiVersion": paddock_api::policy::POLICY_API_VERSION,
        "kind": "SandboxPolicyList",
        "metadata": {},
        "items": items,
    })
}

/// `POST .../namespaces/{ns}/sandboxpolicies` (create or replace).
pub async fn create(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let mut value = decode_one(&headers, &body)?;
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".into(), Value::String(namespace.clone()));
    }
    validate(&value)?;
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let outcome = state.backend.apply_policy(value).await?;
    let stored = state.backend.get_policy(&namespace, &name).await?;
    let status = if outcome == "created" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(encode(&headers, status, &stored))
}

/// `GET .../namespaces/{ns}/sandboxpolicies/{name}`.
pub async fn get(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let policy = state.backend.get_policy(&namespace, &name).await?;
    Ok(encode(&headers, StatusCode::OK, &policy))
}

/// `DELETE .../namespaces/{ns}/sandboxpolicies/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let policy = state.backend.get_policy(&namespace, &name).await?;
    state.backend.delete_policy(&namespace, &name).await?;
    Ok(encode(&headers, StatusCode::OK, &policy))
}

/// `GET /v1/sandboxes/{name}/egress[?follow=true]`: the records as `{"items": [...]}`, or with
/// `follow` one JSON record per line (the kept ones, then each new one as it ends).
pub async fn egress(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<crate::sandboxes::FollowQuery>,
) -> ApiResult {
    let namespace = q.ns();
    let sandbox = crate::sandboxes::find_sandbox(&state, namespace, &name).await?;
    let sandbox_name = sandbox.metadata.name.as_deref().unwrap_or(&name);
    let feed = state
        .backend
        .egress(namespace, sandbox_name, q.follow())
        .await?;
    let Some(follow) = feed.follow else {
        return Ok(axum::Json(EgressLog {
            items: feed.records,
        })
        .into_response());
    };
    let line = |r: &paddock_wire::EgressRecord| {
        let mut bytes = serde_json::to_vec(r).unwrap_or_default();
        bytes.push(b'\n');
        Ok::<_, std::io::Error>(Bytes::from(bytes))
    };
    let kept: Vec<_> = feed.records.iter().map(line).collect();
    let stream = futures_util::stream::iter(kept).chain(follow.map(move |r| line(&r)));
    Ok(Response::builder()
        .header(http::header::CONTENT_TYPE, "application/x-ndjson")
        .header(http::header::CACHE_CONTROL, "no-cache")
        .body(axum::body::Body::from_stream(stream))
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?)
}
