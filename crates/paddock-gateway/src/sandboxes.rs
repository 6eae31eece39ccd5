//! The sandbox API for SDKs and the CLI (`/v1/sandboxes`): create from a warm pool, a template
//! or an image and wait until Ready; describe, list, delete, pause, resume; and everything
//! inside a sandbox (exec, processes, files, ports) forwarded to its agent.
//!
//! It is written purely in terms of the four kinds through the [`Backend`](paddock_backend::Backend),
//! so it behaves the same on one machine and on a cluster.

use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::response::IntoResponse;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use paddock_api::conditions;
use paddock_api::kinds::Kind;
use paddock_api::names;
use paddock_api::stored::Object;
use paddock_api::v1beta1::{OperatingMode, Sandbox, SandboxClaim, SandboxWarmPool};
use paddock_backend::annotations::IDLE as IDLE_ANNOTATION;
use paddock_backend::{Part, Propagation, WatchEventType};
use paddock_wire::{CreateSandbox, Phase, SandboxInfo};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Code};
use crate::objects::{encode, to_storage};
use crate::proxy::{ForwardError, forward};
use crate::server::AppState;

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
    /// The namespace asked for (`default` when none).
    pub(crate) fn ns(&self) -> &str {
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

/// The condition of `type_` among `conditions`.
fn condition<'a>(conditions: Option<&'a [Condition]>, type_: &str) -> Option<&'a Condition> {
    conditions.and_then(|c| conditions::find(c, type_))
}

fn sandbox_ready(sandbox: &Sandbox) -> Option<&Condition> {
    condition(
        sandbox
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_deref()),
        conditions::types::READY,
    )
}

/// The name of the object of `kind` that controls `sandbox`.
fn controller_of<'a>(sandbox: &'a Sandbox, kind: &str) -> Option<&'a str> {
    sandbox
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true) && r.kind == kind)
        .map(|r| r.name.as_str())
}

/// The description of a Sandbox that the SDKs read (docs/gateway-api.md).
pub fn describe(sandbox: &Sandbox, default_runtime: Option<&str>) -> SandboxInfo {
    let ready = sandbox_ready(sandbox);
    let reason = ready.map(|c| c.reason.clone());
    let suspended = sandbox.spec.operating_mode == Some(OperatingMode::Suspended);
    let is_ready = !suspended && ready.is_some_and(|c| c.status == conditions::status::TRUE);
    let finished = condition(
        sandbox
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_deref()),
        conditions::types::FINISHED,
    );
    let phase = if suspended {
        Phase::Suspended
    } else if is_ready {
        Phase::Running
    } else if reason.as_deref() == Some(conditions::sandbox::SANDBOX_EXPIRED) {
        Phase::Expired
    } else if let Some(f) = finished.filter(|f| f.status == conditions::status::TRUE) {
        if f.reason == conditions::sandbox::POD_SUCCEEDED {
            Phase::Succeeded
        } else {
            Phase::Failed
        }
    } else {
        Phase::Pending
    };
    let pod_spec = &sandbox.spec.blueprint.pod_template.spec;
    let meta = &sandbox.metadata;
    SandboxInfo {
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        claim: controller_of(sandbox, SandboxClaim::KIND).map(str::to_owned),
        ready: is_ready,
        reason,
        message: ready.map(|c| c.message.clone()),
        phase,
        launch_type: Some(
            meta.labels
                .as_ref()
                .and_then(|l| l.get(names::LAUNCH_TYPE))
                .map_or("direct", String::as_str)
                .to_owned(),
        ),
        runtime: pod_spec
            .runtime_class_name
            .clone()
            .or_else(|| default_runtime.map(str::to_owned)),
        image: pod_spec.containers.first().and_then(|c| c.image.clone()),
        created_at: meta.creation_timestamp.as_ref().map(time_text),
        expires_at: sandbox.spec.lifecycle.shutdown_time.as_ref().map(time_text),
        labels: meta.labels.clone().unwrap_or_default(),
    }
}

/// A time as Kubernetes writes it in objects.
fn time_text(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn json_of(info: &SandboxInfo) -> Value {
    serde_json::to_value(info).unwrap_or(Value::Null)
}

/// What the gateway makes of a create request: the checks, and the Sandbox or claim to write.
trait CreateRequest {
    /// At most one source; no image-only fields for template and pool sandboxes.
    fn check_sources(&self) -> Result<(), ApiError>;
    /// The Sandbox of an image sandbox.
    fn image_sandbox(&self, name: &str, namespace: &str) -> Result<Value, ApiError>;
    /// The SandboxClaim of a pool or template sandbox.
    fn claim(&self, name: &str, namespace: &str, pool: &str) -> Result<Value, ApiError>;
    /// An image sandbox with nothing of its own (no name, command, env, working directory,
    /// limits, volumes or labels), which any fresh sandbox of its image and runtime can serve.
    fn plain(&self) -> bool;
}

impl CreateRequest for CreateSandbox {
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
        if let Some(policy) = &self.policy {
            sandbox["metadata"]["annotations"] =
                json!({paddock_api::policy::POLICY_ANNOTATION: policy});
        }
        if let Some(at) = shutdown_time(self.timeout_seconds)? {
            sandbox["spec"]["shutdownTime"] = json!(at);
            sandbox["spec"]["shutdownPolicy"] = json!("Delete");
        }
        Ok(sandbox)
    }

    fn plain(&self) -> bool {
        self.warm_pool.is_none()
            && self.template.is_none()
            && self.name.is_none()
            && self.command.is_none()
            && self.env.is_empty()
            && self.working_dir.is_none()
            && self.resources.is_none()
            && self.volumes.is_empty()
            && self.labels.is_empty()
            && self.policy.is_none()
    }

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
        if let Some(policy) = &self.policy {
            claim["metadata"]["annotations"][paddock_api::policy::POLICY_ANNOTATION] =
                json!(policy);
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
        .into_iter()
        .filter_map(Object::into_typed::<SandboxWarmPool>)
        .filter(|p| p.spec.sandbox_template_ref.name == template)
        .max_by_key(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        });
    Ok(match best.and_then(|p| p.metadata.name) {
        Some(pool) => pool,
        None => names::shadow_pool_name(template),
    })
}

/// `POST /v1/sandboxes`.
pub async fn create(
    State(state): State<AppState>,
    trace: Option<axum::Extension<crate::traces::RequestTrace>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let req: CreateSandbox = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?;
    req.check_sources()?;
    if req.policy.is_some()
        && let Some(why) = state.backend.policy_enforcement_missing()
    {
        // A policy that nothing enforces would let the caller believe egress is controlled.
        return Err(ApiError::new(Code::NotImplemented, format!("policy: {why}")).into());
    }
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
    let (mut kind, mut object) = match &pool {
        Some(pool) => (Kind::SandboxClaim, req.claim(&name, &namespace, pool)?),
        None => (Kind::Sandbox, req.image_sandbox(&name, &namespace)?),
    };
    // The claim continues this request's trace in the controller.
    if let Some(value) = trace.and_then(|t| crate::traces::annotation(&t.0.0)) {
        object["metadata"]["annotations"][names::TRACE_CONTEXT] = json!(value);
    }
    let (_, mut stored) = to_storage(Some(kind), &object)?;
    if let Object::Sandbox(sandbox) = stored {
        let sandbox = state.backend.prepare_image_sandbox(sandbox)?;
        // A sandbox with nothing of its own comes, fresh and never used, from the backend's
        // default pool when it keeps one: no boot on the caller's path.
        let pooled = if wait && req.plain() {
            state.backend.default_pool(&sandbox).await?
        } else {
            None
        };
        stored = match pooled {
            Some(pool) => {
                kind = Kind::SandboxClaim;
                to_storage(Some(kind), &req.claim(&name, &namespace, &pool)?)?.1
            }
            None => Object::Sandbox(sandbox),
        };
    }
    let created = state.backend.create(stored).await?;
    let sandbox = if wait {
        wait_ready(&state, &namespace, &name, created, timeout).await?
    } else {
        created.into_typed::<Sandbox>().unwrap_or_else(|| {
            // A claim that was not waited for: only its name is known yet.
            let mut placeholder = Sandbox::new(&name, Default::default());
            placeholder.metadata.namespace = Some(namespace.clone());
            placeholder
        })
    };
    let mut description = describe(&sandbox, state.backend.default_runtime());
    if kind == Kind::SandboxClaim {
        description.claim = Some(name);
    }
    Ok(encode(
        &headers,
        StatusCode::CREATED,
        &json_of(&description),
    ))
}

/// Waits until the Sandbox (directly, or through its claim) is Ready; returns the Sandbox.
/// Terminal claim reasons fail at once with the claim's message.
async fn wait_ready(
    state: &AppState,
    namespace: &str,
    name: &str,
    created: Object,
    timeout: Duration,
) -> Result<Sandbox, ApiError> {
    let kind = created.kind();
    let deadline = tokio::time::Instant::now() + timeout;
    let rv = Some(created.resource_version().to_owned()).filter(|rv| !rv.is_empty());
    let mut watch = state.backend.watch(kind, Some(namespace), "", rv).await?;
    let mut latest = created;
    loop {
        match ready_outcome(&latest)? {
            Outcome::Ready(done) => {
                return match latest {
                    Object::Sandbox(sandbox) => Ok(sandbox),
                    _ => get_sandbox(state, namespace, &done).await,
                };
            }
            Outcome::Ended { sandbox, reason } => {
                return Err(ended_error(state, namespace, kind, name, sandbox, &reason).await);
            }
            Outcome::Waiting => {}
        }
        let next = tokio::time::timeout_at(deadline, watch.next()).await;
        match next {
            Err(_) => {
                let ready = ready_of(&latest);
                let why = match ready {
                    Some(c) if !c.message.is_empty() => format!("{}: {}", c.reason, c.message),
                    Some(c) => c.reason.clone(),
                    None => "no status yet".to_owned(),
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
                if event.object.name() != name {
                    continue;
                }
                if event.event_type == WatchEventType::Deleted {
                    return Err(ApiError::not_found(format!(
                        "{kind} {name:?} was deleted while starting"
                    )));
                }
                latest = event.object;
            }
        }
    }
}

/// The Ready condition of a Sandbox or claim.
fn ready_of(object: &Object) -> Option<&Condition> {
    let conditions = match object {
        Object::Sandbox(s) => s.status.as_ref().and_then(|s| s.conditions.as_deref()),
        Object::SandboxClaim(c) => c.status.as_ref().and_then(|s| s.conditions.as_deref()),
        _ => None,
    };
    condition(conditions, conditions::types::READY)
}

/// `Some(sandbox name)` once ready; an error for terminal failures; `None` to keep waiting.
/// Where a create that waits for Ready stands.
enum Outcome {
    /// Ready: the Sandbox's name.
    Ready(String),
    /// It can no longer become Ready (its main process ended, it expired, its spec cannot
    /// run): the Sandbox, when known, and the Ready condition's reason and message.
    Ended {
        sandbox: Option<String>,
        reason: String,
    },
    /// Not yet.
    Waiting,
}

/// Ready reasons of a Sandbox after which waiting cannot help.
const SANDBOX_ENDED: [&str; 4] = [
    conditions::sandbox::POD_FAILED,
    conditions::sandbox::POD_SUCCEEDED,
    conditions::sandbox::INVALID_CONFIGURATION,
    conditions::sandbox::SANDBOX_EXPIRED,
];

fn ready_outcome(object: &Object) -> Result<Outcome, ApiError> {
    // A condition written for an older generation says nothing about this one (a resume just
    // patched the spec; the Ready left from before the suspension is not an answer).
    let generation = object.metadata().generation;
    let ready = ready_of(object).filter(|c| {
        c.observed_generation
            .zip(generation)
            .is_none_or(|(seen, now)| seen >= now)
    });
    let reason = ready.map_or("", |c| c.reason.as_str());
    let message = ready.map_or("", |c| c.message.as_str());
    let name = match object {
        Object::SandboxClaim(c) => c
            .status
            .as_ref()
            .and_then(|s| s.sandbox.as_ref())
            .and_then(|s| s.name.clone()),
        other => Some(other.name().to_owned()),
    }
    .filter(|n| !n.is_empty());
    if ready.is_some_and(|c| c.status == conditions::status::TRUE)
        && let Some(name) = name
    {
        return Ok(Outcome::Ready(name));
    }
    match reason {
        conditions::claim::TEMPLATE_NOT_FOUND | conditions::claim::WARM_POOL_NOT_FOUND => {
            Err(ApiError::not_found(format!("{reason}: {message}")))
        }
        _ if SANDBOX_ENDED.contains(&reason) => Ok(Outcome::Ended {
            sandbox: name,
            reason: if message.is_empty() {
                reason.to_owned()
            } else {
                format!("{reason}: {message}")
            },
        }),
        _ if conditions::claim::TERMINAL.contains(&reason) => Err(ApiError::new(
            Code::InvalidObject,
            format!("{reason}: {message}"),
        )),
        _ => Ok(Outcome::Waiting),
    }
}

/// The error of a create whose sandbox can no longer become Ready: the reason and, when its
/// main process ended, its exit code and the last lines of its output.
async fn ended_error(
    state: &AppState,
    namespace: &str,
    kind: Kind,
    name: &str,
    sandbox: Option<String>,
    reason: &str,
) -> ApiError {
    let mut message = format!("{kind} {name:?} cannot become Ready ({reason})");
    let termination = match &sandbox {
        Some(sandbox) => state
            .backend
            .termination(namespace, sandbox)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    if let Some(t) = &termination {
        message = match (&t.start_error, t.exit_code) {
            (Some(e), _) => format!("{kind} {name:?} could not start: {e}"),
            (None, Some(127)) => format!(
                "{kind} {name:?}: its main process could not be started (exit code 127: not found)"
            ),
            (None, Some(126)) => format!(
                "{kind} {name:?}: its main process could not be started (exit code 126: not executable)"
            ),
            (None, Some(code)) => format!(
                "{kind} {name:?}: its main process exited with code {code} before the sandbox was Ready"
            ),
            (None, None) => message,
        };
        if !t.output_tail.is_empty() {
            message.push_str(&format!(
                "; its output ends with:\n  {}",
                t.output_tail.replace('\n', "\n  ")
            ));
        }
    }
    match (&sandbox, termination.as_ref().and_then(|t| t.exit_code)) {
        (Some(sandbox), Some(_)) => message.push_str(&format!(
            "\n(the sandbox stays for `paddock sandbox logs {sandbox}`; remove it with `paddock sandbox rm {sandbox}`)"
        )),
        (Some(sandbox), None) => message.push_str(&format!(
            "\n(the sandbox stays; remove it with `paddock sandbox rm {sandbox}`)"
        )),
        (None, _) => {}
    }
    let mut error = ApiError::new(Code::FailedPrecondition, message);
    error.details = Some(json!({
        "reason": reason,
        "sandbox": sandbox,
        "exit_code": termination.as_ref().and_then(|t| t.exit_code),
        "output_tail": termination.map(|t| t.output_tail),
    }));
    error
}

fn as_sandbox(object: Object) -> Result<Sandbox, ApiError> {
    object
        .into_typed()
        .ok_or_else(|| ApiError::internal("the backend answered a Sandbox read with another kind"))
}

pub(crate) async fn get_sandbox(
    state: &AppState,
    namespace: &str,
    name: &str,
) -> Result<Sandbox, ApiError> {
    as_sandbox(state.backend.get(Kind::Sandbox, namespace, name).await?)
}

/// `GET /v1/sandboxes`.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<NamespaceQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let selector = q.label_selector.clone().unwrap_or_default();
    let sandboxes = state
        .backend
        .list(Kind::Sandbox, q.namespace.as_deref(), &selector)
        .await?;
    let runtime = state.backend.default_runtime();
    let list = paddock_wire::SandboxList {
        items: sandboxes
            .items
            .into_iter()
            .filter_map(Object::into_typed::<Sandbox>)
            .filter(|s| !idle_default_pool_member(s))
            .map(|s| describe(&s, runtime))
            .collect(),
    };
    Ok(encode(
        &headers,
        StatusCode::OK,
        &serde_json::to_value(&list).unwrap_or(Value::Null),
    ))
}

/// A member of a backend's default pool that no claim holds yet: the backend's spare, not one
/// of the user's sandboxes (`paddock get sandboxes` still shows it).
fn idle_default_pool_member(sandbox: &Sandbox) -> bool {
    let from_default_pool = sandbox
        .spec
        .blueprint
        .pod_template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .is_some_and(|l| l.contains_key(names::DEFAULT_POOL));
    let held_by_pool = sandbox
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "SandboxWarmPool");
    from_default_pool && held_by_pool
}

/// Finds the Sandbox for `name`: a Sandbox of that name, or the one a claim of that name holds.
pub(crate) async fn find_sandbox(
    state: &AppState,
    namespace: &str,
    name: &str,
) -> Result<Sandbox, ApiError> {
    match get_sandbox(state, namespace, name).await {
        Ok(s) => return Ok(s),
        Err(e) if e.code != Code::NotFound => return Err(e),
        Err(_) => {}
    }
    let claim = match state.backend.get(Kind::SandboxClaim, namespace, name).await {
        Ok(c) => c.into_typed::<SandboxClaim>().unwrap_or_default(),
        Err(e) if e.code == Code::NotFound => {
            return Err(ApiError::not_found(format!(
                "sandbox {name:?} not found in namespace {namespace:?}"
            )));
        }
        Err(e) => return Err(e),
    };
    match claim
        .status
        .and_then(|s| s.sandbox)
        .and_then(|s| s.name)
        .filter(|n| !n.is_empty())
    {
        Some(sandbox) => get_sandbox(state, namespace, &sandbox).await,
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
) -> ApiResult {
    let sandbox = find_sandbox(&state, q.ns(), &name).await?;
    Ok(encode(
        &headers,
        StatusCode::OK,
        &json_of(&describe(&sandbox, state.backend.default_runtime())),
    ))
}

/// `DELETE /v1/sandboxes/{name}`: the claim when there is one (its Sandbox goes with it),
/// else the Sandbox.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
) -> ApiResult {
    let ns = q.ns();
    // Every sandbox this call may delete must allow it: the one the claim `name` holds, and
    // the Sandbox named `name`.
    let mut doomed = Vec::new();
    match state.backend.get(Kind::SandboxClaim, ns, &name).await {
        Ok(c) => doomed.extend(
            c.into_typed::<SandboxClaim>()
                .unwrap_or_default()
                .status
                .and_then(|s| s.sandbox)
                .and_then(|s| s.name)
                .filter(|n| !n.is_empty()),
        ),
        Err(e) if e.code == Code::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    doomed.push(name.clone());
    for sandbox in &doomed {
        match state.backend.permissions(ns, sandbox).await {
            Ok(rules) => crate::permits::decide(
                state.backend.as_ref(),
                (ns, sandbox),
                &rules,
                &[paddock_policy::Capability::Api(
                    paddock_policy::ApiOp::Delete,
                )],
            )?,
            Err(e) if e.code == Code::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    match state
        .backend
        .delete(Kind::SandboxClaim, ns, &name, Propagation::Background)
        .await
    {
        Ok(_) => return Ok(StatusCode::ACCEPTED.into_response()),
        Err(e) if e.code != Code::NotFound => return Err(e.into()),
        Err(_) => {}
    }
    let sandbox = get_sandbox(&state, ns, &name).await?;
    let (kind, target) = match controller_of(&sandbox, SandboxClaim::KIND) {
        Some(claim) => (Kind::SandboxClaim, claim),
        None => (Kind::Sandbox, name.as_str()),
    };
    state
        .backend
        .delete(kind, ns, target, Propagation::Background)
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn set_mode(
    state: &AppState,
    ns: &str,
    name: &str,
    mode: OperatingMode,
) -> Result<Sandbox, ApiError> {
    for _ in 0..5 {
        let mut sandbox = find_sandbox(state, ns, name).await?;
        sandbox.spec.operating_mode = Some(mode);
        match state
            .backend
            .update(Object::Sandbox(sandbox), Part::Main)
            .await
        {
            Ok(updated) => return as_sandbox(updated),
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
) -> ApiResult {
    let sandbox = set_mode(&state, q.ns(), &name, OperatingMode::Suspended).await?;
    Ok(encode(
        &headers,
        StatusCode::OK,
        &json_of(&describe(&sandbox, state.backend.default_runtime())),
    ))
}

/// `POST /v1/sandboxes/{name}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<NamespaceQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let ns = q.ns().to_owned();
    let sandbox = set_mode(&state, &ns, &name, OperatingMode::Running).await?;
    let sandbox = if q.wait.unwrap_or(true) {
        let sandbox_name = sandbox
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| name.clone());
        wait_ready(
            &state,
            &ns,
            &sandbox_name,
            Object::Sandbox(sandbox),
            Duration::from_secs(60),
        )
        .await?
    } else {
        sandbox
    };
    Ok(encode(
        &headers,
        StatusCode::OK,
        &json_of(&describe(&sandbox, state.backend.default_runtime())),
    ))
}

/// Query of `GET /v1/sandboxes/{name}/logs` and `/egress`.
#[derive(Debug, Default, Deserialize)]
pub struct FollowQuery {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    follow: Option<bool>,
}

impl FollowQuery {
    /// The namespace asked for (`default` when none).
    pub(crate) fn ns(&self) -> &str {
        self.namespace
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
    }

    /// Whether to keep streaming.
    pub(crate) fn follow(&self) -> bool {
        self.follow.unwrap_or(false)
    }
}

/// `GET /v1/sandboxes/{name}/logs[?follow=true]`: the main process's output, as plain bytes.
pub async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<FollowQuery>,
) -> ApiResult {
    let namespace = q.ns();
    let sandbox = find_sandbox(&state, namespace, &name).await?;
    let sandbox_name = sandbox.metadata.name.as_deref().unwrap_or(&name);
    let stream = state
        .backend
        .logs(namespace, sandbox_name, q.follow())
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

/// `%XX` sequences decoded (what the agent will see as the path).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks what a call for the sandbox's agent would do against the sandbox's permissions
/// (`docs/safety.md`): the API operation, an exec's program, a file call's path. Returns the
/// request to forward (its body re-assembled when it was read to see the program).
async fn permitted(
    state: &AppState,
    namespace: &str,
    sandbox: &str,
    rest: &str,
    req: Request,
) -> Result<Request, ApiError> {
    use paddock_policy::{ApiOp, Capability};
    let rules = state.backend.permissions(namespace, sandbox).await?;
    let method = req.method().clone();
    let first = rest.split('/').next().unwrap_or("");
    match first {
        "files" => {
            let path = format!("/{}", rest["files".len()..].trim_start_matches('/'));
            let reads = method == http::Method::GET || method == http::Method::HEAD;
            let cap = if reads {
                Capability::Read(&path)
            } else {
                Capability::Write(&path)
            };
            crate::permits::decide(
                state.backend.as_ref(),
                (namespace, sandbox),
                &rules,
                &[Capability::Api(ApiOp::Files), cap],
            )?;
            Ok(req)
        }
        "fs" => {
            let caps = fs_capabilities(rest, req.uri())?;
            let mut all = vec![Capability::Api(ApiOp::Files)];
            all.extend(caps.iter().map(|(write, path)| {
                if *write {
                    Capability::Write(path)
                } else {
                    Capability::Read(path)
                }
            }));
            crate::permits::decide(state.backend.as_ref(), (namespace, sandbox), &rules, &all)?;
            Ok(req)
        }
        "exec" | "processes" => {
            crate::permits::decide(
                state.backend.as_ref(),
                (namespace, sandbox),
                &rules,
                &[Capability::Api(ApiOp::Exec)],
            )?;
            let starts = method == http::Method::POST && (rest == "exec" || rest == "processes");
            if starts && rules.limits_programs() {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .map_err(|e| ApiError::invalid(format!("reading the process request: {e}")))?;
                let program = crate::permits::program_of(&bytes)?;
                crate::permits::decide(
                    state.backend.as_ref(),
                    (namespace, sandbox),
                    &rules,
                    &[Capability::Exec {
                        program: &program,
                        resolved: None,
                    }],
                )?;
                return Ok(Request::from_parts(parts, axum::body::Body::from(bytes)));
            }
            if rest == "processes/ws" && rules.limits_programs() {
                return Err(ApiError::new(
                    Code::PermissionDenied,
                    "the sandbox's SandboxPolicy limits which programs run, and a WebSocket start does not show its program: start the process with POST .../processes, then attach to it",
                ));
            }
            Ok(req)
        }
        // A sandbox port is reached through the agent, which could be asked to call itself:
        // closed for a sandbox whose policy limits exec or files.
        "ports" if rules.limits_agent() => Err(ApiError::new(
            Code::PermissionDenied,
            "the sandbox's SandboxPolicy limits exec and files, and its ports are reached through its agent, which cannot be checked call by call: use /exec and /files",
        )),
        _ => Ok(req),
    }
}

/// What an `/fs/...` call touches: `(writes, path)` for each path it names, decoded exactly as
/// the agent decodes its query (a name given twice is refused, as the agent refuses it).
fn fs_capabilities(rest: &str, uri: &http::Uri) -> Result<Vec<(bool, String)>, ApiError> {
    let pairs: Vec<(String, String)> = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::invalid(format!("bad query: {e}")))?;
    let get = |name: &str| -> Result<String, ApiError> {
        let mut values = pairs.iter().filter(|(k, _)| k == name);
        let first = values.next().ok_or_else(|| {
            ApiError::invalid(format!("/{rest} needs the query parameter {name}"))
        })?;
        if values.next().is_some() {
            return Err(ApiError::invalid(format!("{name} is given twice")));
        }
        Ok(format!("/{}", first.1.trim_start_matches('/')))
    };
    Ok(match rest.strip_prefix("fs/").unwrap_or_default() {
        "stat" | "watch" => vec![(false, get("path")?)],
        "mkdir" => vec![(true, get("path")?)],
        "move" => vec![(true, get("from")?), (true, get("to")?)],
        "copy" => vec![(false, get("from")?), (true, get("to")?)],
        other => {
            return Err(ApiError::not_found(format!(
                "no such file operation {other:?}: use stat, mkdir, move, copy or watch"
            )));
        }
    })
}

/// Everything under `/v1/sandboxes/{name}/...` that the sandbox's agent serves.
pub async fn inside(
    State(state): State<AppState>,
    Path((name, rest)): Path<(String, String)>,
    req: Request,
) -> ApiResult {
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
    let allowed = ["exec", "processes", "files", "fs", "ports"];
    let first = rest.split('/').next().unwrap_or("");
    if !allowed.contains(&first) {
        return Err(ApiError::not_found(format!(
            "no such sandbox endpoint /{rest}: use exec, processes, files, fs or ports"
        ))
        .into());
    }
    // Keep the client's percent-encoding of the path (file names with `%2F` and friends): the
    // part after `/v1/sandboxes/{name}/`, taken by position, is what is forwarded, and its
    // decoded form is what the permissions are checked against.
    let raw_path = req.uri().path().to_owned();
    let raw_rest = raw_path
        .strip_prefix("/v1/sandboxes/")
        .and_then(|after| after.split_once('/'))
        .map_or(rest.clone(), |(_, r)| r.to_owned());
    let checked_rest = percent_decode(&raw_rest);
    let mut path = format!("/v1/{raw_rest}");
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    // Most requests name the sandbox itself: the backend locates it (from its cache on a
    // cluster) without reading the object; a claim's name is resolved to its sandbox.
    let (sandbox_name, target) = match state.backend.target(&namespace, &name, None).await {
        Ok(target) => (name.clone(), target),
        Err(e) if e.code == Code::NotFound => {
            let sandbox = find_sandbox(&state, &namespace, &name).await?;
            let sandbox_name = sandbox
                .metadata
                .name
                .clone()
                .unwrap_or_else(|| name.clone());
            let target = state
                .backend
                .target(&namespace, &sandbox_name, None)
                .await?;
            (sandbox_name, target)
        }
        Err(e) => return Err(e.into()),
    };
    let req = permitted(&state, &namespace, &sandbox_name, &checked_rest, req).await?;
    let timeout = state.options.proxy_timeout;
    forward(&state.client, &target, req, &path, timeout).await.map_err(|e| match e {
        ForwardError::Connect(why) => ApiError::new(Code::SandboxNotReady, format!("the agent of sandbox {sandbox_name:?} does not answer ({why}); is the sandbox running?")),
        ForwardError::Timeout(d) => ApiError::new(Code::DeadlineExceeded, format!("sandbox {sandbox_name:?} did not answer within {d:?}")),
        ForwardError::BadRequest(why) => ApiError::invalid(why),
    }.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sandbox(generation: i64, observed: i64) -> Object {
        Object::from_value(
            Kind::Sandbox,
            json!({
                "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
                "metadata": {"name": "sb", "namespace": "default", "generation": generation},
                "spec": {"podTemplate": {"spec": {"containers": [{"name": "main", "image": "x"}]}}},
                "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "DependenciesReady",
                    "message": "", "lastTransitionTime": "2026-09-01T12:00:00Z", "observedGeneration": observed}]}
            }),
        )
        .expect("a sandbox")
    }

    #[test]
    fn a_ready_condition_from_an_older_generation_is_no_answer() {
        assert!(matches!(
            ready_outcome(&sandbox(3, 2)),
            Ok(Outcome::Waiting)
        ));
        assert!(matches!(
            ready_outcome(&sandbox(3, 3)),
            Ok(Outcome::Ready(name)) if name == "sb"
        ));
    }
}
