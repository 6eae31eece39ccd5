//! The four kinds as on a cluster: Kubernetes-shaped paths (`/apis/{group}/{version}/...`),
//! both versions served and converted losslessly, every write validated with the same
//! validator as `paddock validate`, JSON or YAML in and out; and `POST /v1/apply` for whole
//! manifests.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode, header};
use paddock_api::any::AnyObject;
use paddock_api::kinds::{Kind, Version};
use paddock_api::stored::Object;
use paddock_api::validate::{self, Valid};
use paddock_backend::{Part, Propagation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Code};
use crate::server::AppState;

/// A stored object as JSON in `version` (where it leaves the gateway).
pub fn to_version(object: &Object, version: Version) -> Value {
    if version == Version::STORAGE {
        object.to_value()
    } else {
        object.to_version(version).to_value()
    }
}

/// Validates an object (any version), checks it is of `kind`, and returns it in v1beta1 with
/// defaults applied, as the backend stores it.
pub fn to_storage(kind: Option<Kind>, value: &Value) -> Result<(Valid, Object), ApiError> {
    let what = describe(value);
    let valid = validate::validate_value(value)
        .map_err(|problems| ApiError::invalid_object(&what, &problems))?;
    if let Some(kind) = kind
        && valid.object.kind() != kind
    {
        return Err(ApiError::invalid(format!(
            "the body is a {}, but the path is for {kind}",
            valid.object.kind()
        )));
    }
    let stored = Object::from(valid.object.clone());
    Ok((valid, stored))
}

fn describe(value: &Value) -> String {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object");
    match value.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) => format!("{kind} {name:?}"),
        None => kind.to_owned(),
    }
}

fn wants_yaml(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("yaml"))
}

/// Encodes a value as JSON or, when the client accepts it, YAML.
pub fn encode(headers: &HeaderMap, status: StatusCode, value: &Value) -> Response {
    if wants_yaml(headers) {
        (
            status,
            [(header::CONTENT_TYPE, "application/yaml")],
            paddock_api::yaml::to_string(value),
        )
            .into_response()
    } else {
        (status, axum::Json(value.clone())).into_response()
    }
}

/// Decodes a request body: JSON, or YAML when the content type says so (or it does not parse
/// as JSON). Errors name the line and column.
pub fn decode_documents(headers: &HeaderMap, body: &Bytes) -> Result<Vec<Value>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid("the request body is not UTF-8 text"))?;
    let is_yaml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("yaml"));
    if !is_yaml && let Ok(v) = serde_json::from_str::<Value>(text) {
        return Ok(vec![v]);
    }
    let docs = paddock_api::yaml::parse_documents(text).map_err(|e| {
        ApiError::invalid(format!("the request body is not valid YAML or JSON: {e}"))
    })?;
    Ok(docs.into_iter().map(|d| d.value).collect())
}

pub(crate) fn decode_one(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let mut docs = decode_documents(headers, body)?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        0 => Err(ApiError::invalid("the request body holds no object")),
        n => Err(ApiError::invalid(format!(
            "the request body holds {n} objects; send one, or use POST /v1/apply"
        ))),
    }
}

/// Resolves `{group}/{version}/{plural}` from a path.
pub fn resolve(group: &str, version: &str, plural: &str) -> Result<(Kind, Version), ApiError> {
    let kind = Kind::from_resource_name(plural)
        .filter(|k| k.plural() == plural && k.group() == group)
        .ok_or_else(|| {
            ApiError::not_found(format!("the server does not serve {plural}.{group}"))
        })?;
    let version = Version::parse(version).ok_or_else(|| {
        ApiError::not_found(format!(
            "{plural}.{group} is served in v1beta1 and v1alpha1, not {version}"
        ))
    })?;
    Ok((kind, version))
}

/// Query parameters of list and watch.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(default)]
    label_selector: String,
    #[serde(default)]
    watch: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
}

/// Query parameters of delete.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteQuery {
    #[serde(default)]
    propagation_policy: Option<String>,
}

/// Parses a `propagationPolicy`.
pub fn propagation(policy: Option<&str>) -> Result<Propagation, ApiError> {
    match policy {
        None | Some("" | "Background") => Ok(Propagation::Background),
        Some("Foreground") => Ok(Propagation::Foreground),
        Some("Orphan") => Ok(Propagation::Orphan),
        Some(other) => Err(ApiError::invalid(format!(
            "propagationPolicy must be Background, Foreground or Orphan, not {other:?}"
        ))),
    }
}

fn truthy(s: Option<&str>) -> bool {
    matches!(s, Some("true" | "1"))
}

/// `GET /apis/{group}/{version}/namespaces/{ns}/{plural}` — list or watch.
pub async fn list_namespaced(
    State(state): State<AppState>,
    Path((group, version, namespace, plural)): Path<(String, String, String, String)>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> ApiResult {
    list_or_watch(
        state,
        &group,
        &version,
        Some(namespace),
        &plural,
        q,
        &headers,
    )
    .await
}

/// `GET /apis/{group}/{version}/{plural}` — list or watch across namespaces.
pub async fn list_all(
    State(state): State<AppState>,
    Path((group, version, plural)): Path<(String, String, String)>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> ApiResult {
    list_or_watch(state, &group, &version, None, &plural, q, &headers).await
}

async fn list_or_watch(
    state: AppState,
    group: &str,
    version: &str,
    namespace: Option<String>,
    plural: &str,
    q: ListQuery,
    headers: &HeaderMap,
) -> ApiResult {
    let (kind, version) = resolve(group, version, plural)?;
    if truthy(q.watch.as_deref()) {
        let watch = state
            .backend
            .watch(
                kind,
                namespace.as_deref(),
                &q.label_selector,
                q.resource_version.filter(|rv| !rv.is_empty() && rv != "0"),
            )
            .await?;
        let lines = watch.map(move |event| {
            let line = match event {
                Ok(e) => {
                    json!({"type": e.event_type.as_str(), "object": to_version(&e.object, version)})
                }
                Err(err) => json!({"type": "ERROR", "object": err.body()}),
            };
            Ok::<_, std::io::Error>(Bytes::from(format!("{line}\n")))
        });
        return Ok((
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            Body::from_stream(lines),
        )
            .into_response());
    }
    let list = state
        .backend
        .list(kind, namespace.as_deref(), &q.label_selector)
        .await?;
    let items: Vec<Value> = list.items.iter().map(|o| to_version(o, version)).collect();
    let body = json!({
        "apiVersion": kind.api_version(version),
        "kind": format!("{}List", kind.as_str()),
        "metadata": {"resourceVersion": list.resource_version},
        "items": items,
    });
    Ok(encode(headers, StatusCode::OK, &body))
}

/// `POST /apis/{group}/{version}/namespaces/{ns}/{plural}` — create.
pub async fn create(
    State(state): State<AppState>,
    Path((group, version, namespace, plural)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let (kind, version) = resolve(&group, &version, &plural)?;
    let mut value = decode_one(&headers, &body)?;
    set_namespace(&mut value, &namespace)?;
    let (_, stored) = to_storage(Some(kind), &value)?;
    let created = state.backend.create(stored).await?;
    Ok(encode(
        &headers,
        StatusCode::CREATED,
        &to_version(&created, version),
    ))
}

/// Fills in the path's namespace, refusing a body that names another.
fn set_namespace(value: &mut Value, namespace: &str) -> Result<(), ApiError> {
    let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    match meta.get("namespace").and_then(Value::as_str) {
        Some(ns) if ns != namespace => Err(ApiError::invalid(format!(
            "the body's metadata.namespace {ns:?} does not match the namespace {namespace:?} of the request path"
        ))),
        _ => {
            meta.insert("namespace".into(), Value::String(namespace.to_owned()));
            Ok(())
        }
    }
}

/// Path of one object (optionally its status).
type ObjectPath = (String, String, String, String, String);

/// `GET .../{plural}/{name}`.
pub async fn get(
    State(state): State<AppState>,
    Path((group, version, namespace, plural, name)): Path<ObjectPath>,
    headers: HeaderMap,
) -> ApiResult {
    let (kind, version) = resolve(&group, &version, &plural)?;
    let object = state.backend.get(kind, &namespace, &name).await?;
    Ok(encode(
        &headers,
        StatusCode::OK,
        &to_version(&object, version),
    ))
}

/// `PUT .../{plural}/{name}` and `.../status`.
pub async fn replace(
    state: AppState,
    path: ObjectPath,
    part: Part,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let (group, version, namespace, plural, name) = path;
    let (kind, version) = resolve(&group, &version, &plural)?;
    let mut value = decode_one(&headers, &body)?;
    set_namespace(&mut value, &namespace)?;
    if value.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str()) {
        return Err(ApiError::invalid(format!(
            "the body's metadata.name must be {name:?}, the name in the request path"
        ))
        .into());
    }
    let current = state.backend.get(kind, &namespace, &name).await?;
    let (valid, stored) = to_storage(Some(kind), &value)?;
    validate::validate_update(&AnyObject::from(current), &valid.object)
        .map_err(|p| ApiError::invalid_object(&describe(&value), &p))?;
    let updated = state.backend.update(stored, part).await?;
    Ok(encode(
        &headers,
        StatusCode::OK,
        &to_version(&updated, version),
    ))
}

/// `PATCH .../{plural}/{name}` and `.../status`: a JSON merge patch against the object as seen
/// in the request's version.
pub async fn patch(
    state: AppState,
    path: ObjectPath,
    part: Part,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let (group, version_str, namespace, plural, name) = path;
    let (kind, version) = resolve(&group, &version_str, &plural)?;
    let patch = decode_one(&headers, &body)?;
    if !patch.is_object() {
        return Err(ApiError::invalid("a merge patch must be a JSON object").into());
    }
    let current = state.backend.get(kind, &namespace, &name).await?;
    let mut target = to_version(&current, version);
    merge_patch(&mut target, &patch);
    let (valid, mut stored) = to_storage(Some(kind), &target)?;
    validate::validate_update(&AnyObject::from(current.clone()), &valid.object)
        .map_err(|p| ApiError::invalid_object(&describe(&target), &p))?;
    // Optimistic lock on what the patch was computed against, unless the client set its own.
    if patch.pointer("/metadata/resourceVersion").is_none() {
        stored
            .metadata_mut()
            .resource_version
            .clone_from(&current.metadata().resource_version);
    }
    let updated = state.backend.update(stored, part).await?;
    Ok(encode(
        &headers,
        StatusCode::OK,
        &to_version(&updated, version),
    ))
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.shift_remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// `DELETE .../{plural}/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Path((group, version, namespace, plural, name)): Path<ObjectPath>,
    Query(q): Query<DeleteQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let (kind, version) = resolve(&group, &version, &plural)?;
    let policy = propagation(q.propagation_policy.as_deref())?;
    let last = state
        .backend
        .delete(kind, &namespace, &name, policy)
        .await?;
    Ok(encode(
        &headers,
        StatusCode::OK,
        &to_version(&last, version),
    ))
}

/// What `POST /v1/apply` did with one object.
fn applied(object: &Value, action: &str) -> Value {
    json!({
        "kind": object.get("kind"),
        "apiVersion": object.get("apiVersion"),
        "namespace": object.pointer("/metadata/namespace"),
        "name": object.pointer("/metadata/name"),
        "action": action,
    })
}

/// Query of `POST /v1/apply`.
#[derive(Debug, Default, Deserialize)]
pub struct ApplyQuery {
    /// Namespace for objects that name none (default `default`).
    #[serde(default)]
    namespace: Option<String>,
}

/// `POST /v1/apply`: creates or updates every document of a YAML/JSON stream. All documents are
/// validated first; nothing is written unless all are valid.
pub async fn apply(
    State(state): State<AppState>,
    Query(q): Query<ApplyQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let default_ns = q.namespace.unwrap_or_else(|| "default".to_owned());
    let docs = decode_documents(&headers, &body)?;
    if docs.is_empty() {
        return Err(ApiError::invalid("the manifest holds no objects").into());
    }
    let mut prepared = Vec::new();
    let mut policies = Vec::new();
    let mut problems = Vec::new();
    for (i, mut doc) in docs.into_iter().enumerate() {
        if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
            && !meta.contains_key("namespace")
        {
            meta.insert("namespace".into(), Value::String(default_ns.clone()));
        }
        if doc.get("kind").and_then(Value::as_str) == Some(paddock_api::policy::POLICY_KIND) {
            match crate::policies::validate(&doc) {
                Ok(()) => policies.push(doc),
                Err(e) => problems.push(json!({"document": i + 1, "object": describe(&doc), "message": e.message, "details": e.details})),
            }
            continue;
        }
        match to_storage(None, &doc) {
            Ok((valid, stored)) => prepared.push((valid.object.kind(), doc, stored)),
            Err(e) => problems.push(json!({"document": i + 1, "object": describe(&doc), "message": e.message, "details": e.details})),
        }
    }
    if !problems.is_empty() {
        let mut err = ApiError::new(
            Code::InvalidObject,
            format!(
                "{} of the documents are invalid; nothing was applied",
                problems.len()
            ),
        );
        err.details = Some(Value::Array(problems));
        return Err(err.into());
    }
    let mut results = Vec::new();
    // Policies first: a Sandbox in the same manifest finds its policy when it starts.
    for policy in policies {
        let action = state.backend.apply_policy(policy.clone()).await?;
        results.push(applied(&policy, action));
    }
    for (kind, original, stored) in prepared {
        let namespace = match stored.namespace() {
            "" => "default".to_owned(),
            ns => ns.to_owned(),
        };
        let name = Some(stored.name().to_owned()).filter(|n| !n.is_empty());
        let existing = match &name {
            Some(name) => match state.backend.get(kind, &namespace, name).await {
                Ok(v) => Some(v),
                Err(e) if e.code == Code::NotFound => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        match existing {
            None => {
                state.backend.create(stored).await?;
                results.push(applied(&original, "created"));
            }
            Some(current) => {
                let merged = apply_onto(&current, &stored);
                if merged == current {
                    results.push(applied(&original, "unchanged"));
                } else {
                    state.backend.update(merged, Part::Main).await?;
                    results.push(applied(&original, "configured"));
                }
            }
        }
    }
    Ok(encode(
        &headers,
        StatusCode::OK,
        &json!({"results": results}),
    ))
}

/// The object `apply` writes over `current`: the manifest's spec, labels and annotations
/// replace the stored ones; identity, status and the controllers' bookkeeping stay.
fn apply_onto(current: &Object, manifest: &Object) -> Object {
    let mut merged = current.clone();
    match (&mut merged, manifest) {
        (Object::Sandbox(m), Object::Sandbox(n)) => m.spec = n.spec.clone(),
        (Object::SandboxTemplate(m), Object::SandboxTemplate(n)) => m.spec = n.spec.clone(),
        (Object::SandboxClaim(m), Object::SandboxClaim(n)) => m.spec = n.spec.clone(),
        (Object::SandboxWarmPool(m), Object::SandboxWarmPool(n)) => m.spec = n.spec.clone(),
        // `apply` only merges objects of one kind (it looked the current one up by kind).
        _ => return merged,
    }
    let given = manifest.metadata();
    let meta = merged.metadata_mut();
    for (mine, theirs) in [
        (&mut meta.labels, &given.labels),
        (&mut meta.annotations, &given.annotations),
    ] {
        if let Some(theirs) = theirs {
            let map = mine.get_or_insert_with(BTreeMap::new);
            for (k, v) in theirs {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn resources_resolve_only_with_their_group() {
        assert_eq!(
            resolve("agents.x-k8s.io", "v1alpha1", "sandboxes").unwrap(),
            (Kind::Sandbox, Version::V1alpha1)
        );
        assert_eq!(
            resolve("extensions.agents.x-k8s.io", "v1alpha1", "sandboxes")
                .unwrap_err()
                .code,
            Code::NotFound
        );
        assert_eq!(
            resolve("agents.x-k8s.io", "v2", "sandboxes")
                .unwrap_err()
                .code,
            Code::NotFound
        );
    }

    #[test]
    fn apply_keeps_status_and_bookkeeping() {
        let pool = |v: Value| Object::from_value(Kind::SandboxWarmPool, v).unwrap();
        let current = pool(
            json!({"metadata": {"name": "x", "uid": "u", "annotations": {"agents.x-k8s.io/pod-name": "x"}},
            "spec": {"replicas": 1, "sandboxTemplateRef": {"name": "t"}}, "status": {"replicas": 1}}),
        );
        let manifest = pool(
            json!({"metadata": {"name": "x", "annotations": {"team": "a"}},
            "spec": {"replicas": 2, "sandboxTemplateRef": {"name": "t"}}}),
        );
        let merged = apply_onto(&current, &manifest).to_value();
        assert_eq!(merged["spec"]["replicas"], 2);
        assert_eq!(merged["status"], json!({"replicas": 1}));
        assert_eq!(merged["metadata"]["uid"], "u");
        assert_eq!(
            merged["metadata"]["annotations"],
            json!({"agents.x-k8s.io/pod-name": "x", "team": "a"})
        );
    }

    #[test]
    fn namespace_mismatch_is_refused() {
        let mut v = json!({"metadata": {"name": "x", "namespace": "a"}});
        assert!(set_namespace(&mut v, "b").is_err());
        let mut v = json!({"metadata": {"name": "x"}});
        set_namespace(&mut v, "b").unwrap();
        assert_eq!(v["metadata"]["namespace"], "b");
    }
}
