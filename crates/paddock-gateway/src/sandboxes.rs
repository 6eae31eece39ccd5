//! The sandbox API for SDKs and the CLI (`/v1/sandboxes`): create from a warm pool, a template
//! or an image and wait until Ready; describe, list, delete, pause, resume; and everything
//! inside a sandbox (exec, processes, files, ports) forwarded to its agent.
//!
//! It is written purely in terms of the four kinds through the [`Backend`](crate::backend::Backend),
//! so it behaves the same on one machine and on a cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use paddock_api::conditions;
use paddock_api::kinds::Kind;
use paddock_api::names;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::backend::{Part, Propagation};
use crate::error::{ApiError, Code};
use crate::objects::{encode, to_storage};
use crate::proxy::{ForwardError, forward};
use crate::server::AppState;

/// Pod-template annotation asking the local engine to run no main process: the sandbox idles,
/// waiting for exec (the gateway sets it when `image` is given without `command`).
pub const IDLE_ANNOTATION: &str = "paddock.dev/idle";

/// Body of `POST /v1/sandboxes`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSandbox {
    name: Option<String>,
    namespace: Option<String>,
    warm_pool: Option<String>,
    template: Option<String>,
    image: Option<String>,
    runtime: Option<String>,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    working_dir: Option<String>,
    resources: Option<Resources>,
    #[serde(default)]
    volumes: Vec<HostVolume>,
    timeout_seconds: Option<u64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    wait: Option<bool>,
    wait_timeout_seconds: Option<f64>,
}

/// Resource limits of an image sandbox.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    memory: Option<String>,
    cpu: Option<String>,
}

/// A host directory mounted into an image sandbox.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostVolume {
    host_path: String,
    mount_path: String,
    #[serde(default)]
    read_only: bool,
}

/// Query naming a namespace.
#[derive(Debug, Default, Deserialize)]
pub struct NamespaceQuery {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(rename = "labelSelector", default)]
    label_selector: Option<String>,
    #[serde(default)]
    wait: Option<bool>,
}

impl NamespaceQuery {
    fn ns(&self) -> &str {
        self.namespace
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
    }
}

fn generated_name() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    let suffix: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("sbx-{suffix}")
}

fn shutdown_time(timeout: Option<u64>) -> Result<Option<String>, ApiError> {
    let Some(secs) = timeout else { return Ok(None) };
    let secs = i64::try_from(secs).map_err(|_| ApiError::invalid("timeoutSeconds is too large"))?;
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .map_err(|_| ApiError::invalid("timeoutSeconds is too large"))?;
    Ok(Some(
        at.round(jiff::Unit::Second)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .to_string(),
    ))
}

/// The Ready condition of an object, if any.
fn ready_condition(object: &Value) -> Option<&Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(conditions::types::READY))
        })
}

fn condition_str<'a>(c: Option<&'a Value>, field: &str) -> Option<&'a str> {
    c.and_then(|c| c.get(field)).and_then(Value::as_str)
}

fn controller_of<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| {
                    r.get("controller").and_then(Value::as_bool) == Some(true)
                        && r.get("kind").and_then(Value::as_str) == Some(kind)
                })
                .and_then(|r| r.get("name").and_then(Value::as_str))
        })
}

/// The description of a Sandbox that the SDKs read (docs/gateway-api.md).
pub fn describe(sandbox: &Value, default_runtime: Option<&str>) -> Value {
    let ready = ready_condition(sandbox);
    let reason = condition_str(ready, "reason");
    let suspended = sandbox
        .pointer("/spec/operatingMode")
        .and_then(Value::as_str)
        == Some("Suspended");
    let is_ready = !suspended && condition_str(ready, "status") == Some(conditions::status::TRUE);
    let finished = sandbox
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter().find(|c| {
                c.get("type").and_then(Value::as_str) == Some(conditions::types::FINISHED)
            })
        });
    let phase = if suspended {
        "Suspended"
    } else if is_ready {
        "Running"
    } else if reason == Some(conditions::sandbox::SANDBOX_EXPIRED) {
        "Expired"
    } else if let Some(f) =
        finished.filter(|f| f.get("status").and_then(Value::as_str) == Some("True"))
    {
        if f.get("reason").and_then(Value::as_str) == Some(conditions::sandbox::POD_SUCCEEDED) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else {
        "Pending"
    };
    let pod_spec = sandbox.pointer("/spec/podTemplate/spec");
    json!({
        "name": sandbox.pointer("/metadata/name"),
        "namespace": sandbox.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default"),
        "claim": controller_of(sandbox, "SandboxClaim"),
        "ready": is_ready,
        "reason": reason,
        "message": condition_str(ready, "message"),
        "phase": phase,
        "launchType": sandbox.pointer(&format!("/metadata/labels/{}", names::LAUNCH_TYPE.replace('/', "~1"))).and_then(Value::as_str).unwrap_or("direct"),
        "runtime": pod_spec.and_then(|s| s.get("runtimeClassName")).and_then(Value::as_str).or(default_runtime),
        "image": pod_spec.and_then(|s| s.pointer("/containers/0/image")),
        "createdAt": sandbox.pointer("/metadata/creationTimestamp"),
        "expiresAt": sandbox.pointer("/spec/shutdownTime"),
        "labels": sandbox.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
    })
}

impl CreateSandbox {
    fn check_sources(&self) -> Result<(), ApiError> {
        let given = [
            self.warm_pool.is_some(),
            self.template.is_some(),
            self.image.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given > 1 {
            return Err(ApiError::invalid(
                "give at most one of warmPool, template and image",
            ));
        }
        let from_template = self.warm_pool.is_some() || self.template.is_some();
        if from_template {
            let image_fields = [
                ("runtime", self.runtime.is_some()),
                ("command", self.command.is_some()),
                ("workingDir", self.working_dir.is_some()),
                ("resources", self.resources.is_some()),
                ("volumes", !self.volumes.is_empty()),
            ];
            if let Some((field, _)) = image_fields.iter().find(|(_, set)| *set) {
                return Err(ApiError::invalid(format!(
                    "{field} describes the sandbox itself, which comes from the template when warmPool or template is given; set it in the SandboxTemplate, or create from an image"
                )));
            }
        }
        Ok(())
    }

    /// The Sandbox for an image sandbox.
    fn image_sandbox(&self, name: &str, namespace: &str) -> Result<Value, ApiError> {
        let image = self.image.clone().unwrap_or_else(|| "host".to_owned());
        let mut container = json!({"name": "main", "image": image});
        if let Some(command) = &self.command {
            if command.is_empty() {
                return Err(ApiError::invalid(
                    "command is empty: give the program to run, or leave command out for an idle sandbox",
                ));
            }
            container["command"] = json!(command);
        }
        if !self.env.is_empty() {
            container["env"] = Value::Array(
                self.env
                    .iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect(),
            );
        }
        if let Some(dir) = &self.working_dir {
            container["workingDir"] = json!(dir);
        }
        if let Some(r) = &self.resources {
            let mut limits = serde_json::Map::new();
            if let Some(m) = &r.memory {
                limits.insert("memory".into(), json!(m));
            }
            if let Some(c) = &r.cpu {
                limits.insert("cpu".into(), json!(c));
            }
            container["resources"] = json!({"limits": limits});
        }
        let mut volumes = Vec::new();
        let mut mounts = Vec::new();
        for (i, v) in self.volumes.iter().enumerate() {
            if !v.host_path.starts_with('/') || !v.mount_path.starts_with('/') {
                return Err(ApiError::invalid(format!(
                    "volumes[{i}]: hostPath and mountPath must be absolute paths"
                )));
            }
            let vol = format!("host-{i}");
            volumes.push(json!({"name": vol, "hostPath": {"path": v.host_path}}));
            mounts.push(json!({"name": vol, "mountPath": v.mount_path, "readOnly": v.read_only}));
        }
        if !mounts.is_empty() {
            container["volumeMounts"] = Value::Array(mounts);
        }
        let mut pod_spec = json!({"containers": [container]});
        if let Some(runtime) = &self.runtime {
            pod_spec["runtimeClassName"] = json!(runtime);
        }
        if !volumes.is_empty() {
            pod_spec["volumes"] = Value::Array(volumes);
        }
        let mut pod_template = json!({"spec": pod_spec});
        if self.command.is_none() {
            pod_template["metadata"] = json!({"annotations": {IDLE_ANNOTATION: "true"}});
        }
        let mut sandbox = json!({
            "apiVersion": "agents.x-k8s.io/v1beta1",
            "kind": "Sandbox",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podTemplate": pod_template, "operatingMode": "Running"},
        });
        if !self.labels.is_empty() {
            sandbox["metadata"]["labels"] = json!(self.labels);
        }
        if let Some(at) = shutdown_time(self.timeout_seconds)? {
            sandbox["spec"]["shutdownTime"] = json!(at);
            sandbox["spec"]["shutdownPolicy"] = json!("Delete");
        }
        Ok(sandbox)
    }

    /// The SandboxClaim for a pool or template sandbox.
    fn claim(&self, name: &str, namespace: &str, pool: &str) -> Result<Value, ApiError> {
        let mut claim = json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
            "kind": "SandboxClaim",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {names::CREATED_BY: "paddock"},
                "annotations": {names::CLIENT_FIRST_REQUESTED_AT: jiff::Timestamp::now().to_string()},
            },
            "spec": {"warmPoolRef": {"name": pool}},
        });
        for (k, v) in &self.labels {
            claim["metadata"]["labels"][k] = json!(v);
        }
        if !self.env.is_empty() {
            claim["spec"]["env"] = Value::Array(
                self.env
                    .iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect(),
            );
        }
        if let Some(at) = shutdown_time(self.timeout_seconds)? {
            claim["spec"]["lifecycle"] = json!({"shutdownTime": at, "shutdownPolicy": "Delete"});
        }
        Ok(claim)
    }
}

/// Picks the pool to claim from for a template: a pool of the template with the most ready
/// members, or `shadow-pool-<template>` (cold start) when there is none.
async fn pool_for_template(
    state: &AppState,
    namespace: &str,
    template: &str,
) -> Result<String, ApiError> {
    match state
        .backend
        .get(Kind::SandboxTemplate, namespace, template)
        .await
    {
        Ok(_) => {}
        Err(e) if e.code == Code::NotFound => {
            return Err(ApiError::not_found(format!(
                "SandboxTemplate {template:?} not found in namespace {namespace:?}"
            )));
        }
        Err(e) => return Err(e),
    }
    let pools = state
        .backend
        .list(Kind::SandboxWarmPool, Some(namespace), "")
        .await?;
    let best = pools
        .items
        .iter()
        .filter(|p| {
            p.pointer("/spec/sandboxTemplateRef/name")
                .and_then(Value::as_str)
                == Some(template)
        })
        .max_by_key(|p| {
            p.pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        });
    Ok(
        match best
            .and_then(|p| p.pointer("/metadata/name"))
            .and_then(Value::as_str)
        {
            Some(pool) => pool.to_owned(),
            None => format!("{}{template}", names::SHADOW_POOL_PREFIX),
        },
    )
}

/// `POST /v1/sandboxes`.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: CreateSandbox = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?;
    req.check_sources()?;
    let namespace = req
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let name = req.name.clone().unwrap_or_else(generated_name);
    let wait = req.wait.unwrap_or(true);
    let timeout =
        Duration::from_secs_f64(req.wait_timeout_seconds.unwrap_or(60.0).clamp(0.0, 3600.0));
    let pool = match (&req.warm_pool, &req.template) {
        (Some(pool), _) => Some(pool.clone()),
        (None, Some(template)) => Some(pool_for_template(&state, &namespace, template).await?),
        (None, None) => None,
    };
    let (kind, object) = match &pool {
        Some(pool) => (Kind::SandboxClaim, req.claim(&name, &namespace, pool)?),
        None => (
            Kind::Sandbox,
            state
                .backend
                .prepare_image_sandbox(req.image_sandbox(&name, &namespace)?)?,
        ),
    };
    let (_, stored) = to_storage(Some(kind), &object)?;
    let created = state.backend.create(kind, stored).await?;
    let sandbox = if wait {
        wait_ready(&state, kind, &namespace, &name, created, timeout).await?
    } else if kind == Kind::Sandbox {
        created
    } else {
        json!({"metadata": {"name": name, "namespace": namespace}})
    };
    let mut description = describe(&sandbox, state.backend.default_runtime());
    if kind == Kind::SandboxClaim {
        description["claim"] = json!(name);
    }
    Ok(encode(&headers, StatusCode::CREATED, &description))
}

/// Waits until the Sandbox (directly, or through its claim) is Ready; returns the Sandbox.
/// Terminal claim reasons fail at once with the claim's message.
async fn wait_ready(
    state: &AppState,
    kind: Kind,
    namespace: &str,
    name: &str,
    created: Value,
    timeout: Duration,
) -> Result<Value, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let rv = created
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let selector = "";
    let mut watch = state
        .backend
        .watch(kind, Some(namespace), selector, rv)
        .await?;
    let mut latest = created;
    loop {
        if let Some(done) = ready_outcome(kind, &latest)? {
            return match kind {
                Kind::Sandbox => Ok(latest),
                _ => state.backend.get(Kind::Sandbox, namespace, &done).await,
            };
        }
        let next = tokio::time::timeout_at(deadline, watch.next()).await;
        match next {
            Err(_) => {
                let ready = ready_condition(&latest);
                let why = match (
                    condition_str(ready, "reason"),
                    condition_str(ready, "message"),
                ) {
                    (Some(r), Some(m)) if !m.is_empty() => format!("{r}: {m}"),
                    (Some(r), _) => r.to_owned(),
                    _ => "no status yet".to_owned(),
                };
                return Err(ApiError::new(
                    Code::DeadlineExceeded,
                    format!(
                        "{kind} {name:?} was not Ready within {:.0}s (last: {why}); it keeps starting in the background",
                        timeout.as_secs_f64()
                    ),
                ));
            }
            Ok(None) => return Err(ApiError::unavailable("the backend closed the watch")),
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(event))) => {
                if event
                    .object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    != Some(name)
                {
                    continue;
                }
                if event.event_type == "DELETED" {
                    return Err(ApiError::not_found(format!(
                        "{kind} {name:?} was deleted while starting"
                    )));
                }
                latest = event.object;
            }
        }
    }
}

/// `Some(sandbox name)` once ready; an error for terminal failures; `None` to keep waiting.
fn ready_outcome(kind: Kind, object: &Value) -> Result<Option<String>, ApiError> {
    let ready = ready_condition(object);
    let status = condition_str(ready, "status");
    let reason = condition_str(ready, "reason").unwrap_or("");
    let message = condition_str(ready, "message").unwrap_or("");
    let name = match kind {
        Kind::Sandbox => object.pointer("/metadata/name").and_then(Value::as_str),
        _ => object
            .pointer("/status/sandbox/name")
            .and_then(Value::as_str),
    };
    if status == Some(conditions::status::TRUE)
        && let Some(name) = name
    {
        return Ok(Some(name.to_owned()));
    }
    let terminal = conditions::claim::TERMINAL.contains(&reason);
    match reason {
        conditions::claim::TEMPLATE_NOT_FOUND | conditions::claim::WARM_POOL_NOT_FOUND => {
            Err(ApiError::not_found(format!("{reason}: {message}")))
        }
        _ if terminal => Err(ApiError::new(
            Code::InvalidObject,
            format!("{reason}: {message}"),
        )),
        _ => Ok(None),
    }
}

/// `GET /v1/sandboxes`.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<NamespaceQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let selector = q.label_selector.clone().unwrap_or_default();
    let sandboxes = state
        .backend
        .list(Kind::Sandbox, q.namespace.as_deref(), &selector)
        .await?;
    let runtime = state.backend.default_runtime();
    let items: Vec<Value> = sandboxes
        .items
        .iter()
        .map(|s| describe(s, runtime))
        .collect();
    Ok(encode(&headers, StatusCode::OK, &json!({"items": items})))
}

/// Finds the Sandbox for `name`: a Sandbox of that name, or the one a claim of that name holds.
async fn find_sandbox(state: &AppState, namespace: &str, name: &str) -> Result<Value, ApiError> {
    match state.backend.get(Kind::Sandbox, namespace, name).await {
        Ok(s) => return Ok(s),
        Err(e) if e.code != Code::NotFound => return Err(e),
        Err(_) => {}
    }
    let claim = match state.backend.get(Kind::SandboxClaim, namespace, name).await {
        Ok(c) => c,
        Err(e) if e.code == Code::NotFound => {
            return Err(ApiError::not_found(format!(
                "sandbox {name:?} not found in namespace {namespace:?}"
            )));
        }
        Err(e) => return Err(e),
    };
    match claim
        .pointer("/status/sandbox/name")
        .and_then(Value::as_str)
    {
        Some(sandbox) => state.backend.get(Kind::Sandbox, namespace, sandbox).await,
        None => Err(ApiError::new(
            Code::SandboxNotReady,
            format!("claim {name:?} has no sandbox yet"),
        )),
    }
}

/// `GET /v1/sandboxes/{name}`.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sandbox = find_sandbox(&state, q.ns(), &name).await?;
    Ok(encode(
        &headers,
        StatusCode::OK,
        &describe(&sandbox, state.backend.default_runtime()),
    ))
}

/// `DELETE /v1/sandboxes/{name}`: the claim when there is one (its Sandbox goes with it),
/// else the Sandbox.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
) -> Result<Response, ApiError> {
    let ns = q.ns();
    match state
        .backend
        .delete(Kind::SandboxClaim, ns, &name, Propagation::Background)
        .await
    {
        Ok(_) => return Ok(StatusCode::ACCEPTED.into_response()),
        Err(e) if e.code != Code::NotFound => return Err(e),
        Err(_) => {}
    }
    let sandbox = state.backend.get(Kind::Sandbox, ns, &name).await?;
    match controller_of(&sandbox, "SandboxClaim") {
        Some(claim) => {
            state
                .backend
                .delete(Kind::SandboxClaim, ns, claim, Propagation::Background)
                .await?
        }
        None => {
            state
                .backend
                .delete(Kind::Sandbox, ns, &name, Propagation::Background)
                .await?
        }
    };
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn set_mode(state: &AppState, ns: &str, name: &str, mode: &str) -> Result<Value, ApiError> {
    for _ in 0..5 {
        let mut sandbox = find_sandbox(state, ns, name).await?;
        sandbox["spec"]["operatingMode"] = json!(mode);
        match state
            .backend
            .update(Kind::Sandbox, sandbox, Part::Main)
            .await
        {
            Ok(updated) => return Ok(updated),
            Err(e) if e.code == Code::Conflict => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::new(
        Code::Conflict,
        format!("sandbox {name:?} kept changing; try again"),
    ))
}

/// `POST /v1/sandboxes/{name}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sandbox = set_mode(&state, q.ns(), &name, "Suspended").await?;
    Ok(encode(
        &headers,
        StatusCode::OK,
        &describe(&sandbox, state.backend.default_runtime()),
    ))
}

/// `POST /v1/sandboxes/{name}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ns = q.ns().to_owned();
    let sandbox = set_mode(&state, &ns, &name, "Running").await?;
    let sandbox = if q.wait.unwrap_or(true) {
        let sandbox_name = sandbox
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(&name)
            .to_owned();
        wait_ready(
            &state,
            Kind::Sandbox,
            &ns,
            &sandbox_name,
            sandbox,
            Duration::from_secs(60),
        )
        .await?
    } else {
        sandbox
    };
    Ok(encode(
        &headers,
        StatusCode::OK,
        &describe(&sandbox, state.backend.default_runtime()),
    ))
}

/// Query of `GET /v1/sandboxes/{name}/logs`.
#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    follow: Option<bool>,
}

/// `GET /v1/sandboxes/{name}/logs[?follow=true]`: the main process's output, as plain bytes.
pub async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let namespace = q
        .namespace
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let sandbox = find_sandbox(&state, namespace, &name).await?;
    let sandbox_name = sandbox
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(&name);
    let stream = state
        .backend
        .logs(namespace, sandbox_name, q.follow.unwrap_or(false))
        .await?;
    Ok((
        [
            (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (http::header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// Everything under `/v1/sandboxes/{name}/...` that the sandbox's agent serves.
pub async fn inside(
    State(state): State<AppState>,
    Path((name, rest)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let mut namespace = "default".to_owned();
    let mut query = Vec::new();
    if let Some(q) = req.uri().query() {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            match pair.strip_prefix("namespace=") {
                Some(ns) => namespace = ns.to_owned(),
                None => query.push(pair),
            }
        }
    }
    let allowed = ["exec", "processes", "files", "ports"];
    let first = rest.split('/').next().unwrap_or("");
    if !allowed.contains(&first) {
        return Err(ApiError::not_found(format!(
            "no such sandbox endpoint /{rest}: use exec, processes, files or ports"
        )));
    }
    // Keep the client's percent-encoding of the path (file names with `%2F` and friends).
    let raw_path = req.uri().path();
    let marker = format!("/{name}/");
    let raw_rest = raw_path
        .find(&marker)
        .map_or(rest.as_str(), |i| &raw_path[i + marker.len()..]);
    let mut path = format!("/v1/{raw_rest}");
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    let sandbox = find_sandbox(&state, &namespace, &name).await?;
    let sandbox_name = sandbox
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(&name)
        .to_owned();
    let target = state
        .backend
        .target(&namespace, &sandbox_name, None)
        .await?;
    let timeout = state.options.proxy_timeout;
    forward(&state.client, &target, req, &path, timeout).await.map_err(|e| match e {
        ForwardError::Connect(why) => ApiError::new(Code::SandboxNotReady, format!("the agent of sandbox {sandbox_name:?} does not answer ({why}); is the sandbox running?")),
        ForwardError::Timeout(d) => ApiError::new(Code::DeadlineExceeded, format!("sandbox {sandbox_name:?} did not answer within {d:?}")),
        ForwardError::BadRequest(why) => ApiError::invalid(why),
    })
}
