//! An in-memory Kubernetes API server as a tower service, for the scenario tests and the
//! benchmarks: create (with `generateName`), get, list (label selectors), watch (from a
//! resourceVersion, or the current state as synthetic `ADDED` events when none is given; label
//! selectors and `metadata.name`/`metadata.namespace` field selectors), JSON
//! merge patch (main resource and `/status`, with the `resourceVersion` precondition), replace
//! (optimistic lock; the main resource keeps the stored status and `/status` replaces only the
//! status, as with a status subresource) and delete (UID/resourceVersion preconditions).
//! Objects keep uid, resourceVersion, generation and creationTimestamp as the apiserver sets
//! them. TokenReviews answer for the tokens a test registers ([`FakeApiServer::accept_token`]);
//! [`FakeApiServer::forbid`] makes a verb on a resource fail as RBAC would. No admission, no
//! validation, no garbage collection, no kubelet: pods stay as written.
//!
//! By default every request is free. [`FakeApiServer::with_costs`] makes it cost what a real
//! API server does ([`ApiCosts`]): each write waits for a storage commit; commits happen one at
//! a time, as in etcd's log, each taking the writes that queued while the previous one ran (up
//! to a batch limit), and a write's preconditions are checked when its commit lands (so a write
//! queued behind another write to the same object conflicts, as on a real server); a patch that
//! changes nothing commits nothing; watchers see an event only after it is committed, plus a
//! delivery delay; a list costs per object returned.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use kube::Client;
use paddock_plan::patch::apply_merge_patch;
use serde_json::{Value, json};
use tokio::sync::broadcast;

type ResBody = BoxBody<Bytes, Infallible>;

/// Where an object lives: resource (`<group>/<plural>`), namespace ("" if cluster-scoped), name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// `<group>/<plural>`, e.g. `agents.x-k8s.io/sandboxes`, `/pods` for core.
    pub resource: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// What each request costs on the modelled API server (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiCosts {
    /// One storage commit; commits are serialized.
    pub commit: std::time::Duration,
    /// Most writes one commit takes (0 or 1: one write per commit). With `commit` this bounds
    /// the write rate: `batch / commit` writes per second.
    pub batch: usize,
    /// From a commit until a watcher receives the event.
    pub watch_delay: std::time::Duration,
    /// Per object a list returns.
    pub list_per_object: std::time::Duration,
    /// One GET of one object (a round trip through the API server's handlers).
    pub get: std::time::Duration,
}

impl ApiCosts {
    /// A single-member etcd on a local SSD behind one API server: 2 ms per commit of up to 8
    /// writes (at most 4,000 writes/s), 0.5 ms watch delivery, 2 µs per listed object, 0.5 ms
    /// per GET.
    pub const TYPICAL: Self = Self {
        get: std::time::Duration::from_micros(500),
        commit: std::time::Duration::from_millis(2),
        batch: 8,
        watch_delay: std::time::Duration::from_micros(500),
        list_per_object: std::time::Duration::from_micros(2),
    };
}

/// One request as the audit log would show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// The request path.
    pub path: String,
    /// A watch (`GET …?watch=true`).
    pub watch: bool,
    /// The response status code.
    pub code: u16,
}

impl RequestRecord {
    /// Whether the request asked for a change (create, update, patch, delete).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

#[derive(Clone, Debug)]
struct WatchEvent {
    /// When the event was committed (watchers see it `watch_delay` later).
    at: std::time::Instant,
    rv: u64,
    resource: String,
    namespace: String,
    type_: &'static str,
    object: Arc<Value>,
}

/// Who a registered token authenticates as, for TokenReviews.
#[derive(Clone, Debug)]
struct TokenIdentity {
    username: String,
    audiences: Vec<String>,
}

/// The API server's own audience: what a token is valid for when it names none.
const APISERVER_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    tokens: BTreeMap<String, TokenIdentity>,
    forbidden: Vec<(String, String)>,
    /// Cancelled to end every open watch, as the apiserver does when a watch times out.
    watch_close: tokio_util::sync::CancellationToken,
    resource_version: u64,
    uid: u64,
    requests: Vec<RequestRecord>,
    /// Pod logs by (namespace, pod), served at `pods/{name}/log`.
    pod_logs: BTreeMap<(String, String), String>,
    /// Recent events, replayed to a watch that starts from an older resourceVersion.
    history: std::collections::VecDeque<WatchEvent>,
}

/// Events kept for watches that start late.
const HISTORY: usize = 4096;

/// Converts an object to an `apiVersion` (a CRD conversion webhook's job); `Err` is its message.
pub type Converter = Arc<dyn Fn(&Value, &str) -> Result<Value, String> + Send + Sync>;

/// Which groups are converted, and how.
#[derive(Clone)]
struct Conversion {
    /// Group → stored `group/version`.
    storage: BTreeMap<String, String>,
    convert: Converter,
}

impl std::fmt::Debug for Conversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversion")
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

/// The API server's answer when a conversion webhook fails.
fn conversion_failed(message: String) -> Response<ResBody> {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        format!("Internal error occurred: conversion webhook failed: {message}"),
    )
}

/// The fake API server. Clone it freely: clones share state.
#[derive(Clone, Debug)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<WatchEvent>,
    record_requests: bool,
    costs: ApiCosts,
    /// Conversion between the served versions of some groups, as CRD conversion webhooks do.
    conversion: Option<Conversion>,
    /// The committer's queue (started on the first write that must commit).
    committer: Arc<
        std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<tokio::sync::oneshot::Sender<()>>>,
    >,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
struct Route {
    resource: String,
    /// `group/version` of the request path (`v1` for the core group).
    api_version: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
    log: bool,
}

impl Route {
    fn key(&self, namespace: &str, name: &str) -> Key {
        Key {
            resource: self.resource.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

fn parse_path(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some((*name).to_owned()), None),
        [plural, name, sub @ ("status" | "log")] => (*plural, Some((*name).to_owned()), Some(*sub)),
        _ => return None,
    };
    Some(Route {
        resource: format!("{group}/{plural}"),
        api_version: if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        },
        namespace,
        name,
        status: sub == Some("status"),
        log: sub == Some("log"),
    })
}

fn status_body(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    })
}

fn json_response(code: StatusCode, v: &Value) -> Response<ResBody> {
    response(code, "application/json", v.to_string())
}

fn response(code: StatusCode, content_type: &'static str, body: String) -> Response<ResBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn error(code: StatusCode, reason: &str, message: String) -> Response<ResBody> {
    json_response(code, &status_body(code, reason, &message))
}

/// The apiserver's 404 for an object that does not exist.
fn not_found(resource: &str, name: &str) -> Response<ResBody> {
    error(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{resource} {name:?} not found"),
    )
}

fn query(req_uri: &http::Uri) -> BTreeMap<String, String> {
    req_uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `obj` satisfies a field selector of `metadata.name` / `metadata.namespace` terms
/// (`=`, `==`, `!=`), the fields every resource supports.
fn fields_match(selector: &str, obj: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (field, want, equal) = if let Some((f, v)) = term.split_once("!=") {
            (f, v, false)
        } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            (f, v, true)
        } else {
            return false;
        };
        let got = match field {
            "metadata.name" => obj.pointer("/metadata/name"),
            "metadata.namespace" => obj.pointer("/metadata/namespace"),
            _ => return false,
        }
        .and_then(Value::as_str)
        .unwrap_or_default();
        (got == want) == equal
    })
}

/// Whether `obj`'s labels satisfy a selector of `k=v`, `k!=v`, `k` and `!k` terms.
fn selector_matches(selector: &str, obj: &Value) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            get(k) != Some(v)
        } else if let Some((k, v)) = term.split_once('=') {
            get(k.trim_end_matches('=')) == Some(v)
        } else if let Some(k) = term.strip_prefix('!') {
            get(k).is_none()
        } else {
            get(term).is_some()
        }
    })
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl FakeApiServer {
    /// An empty server.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(65536);
        Self {
            state: Arc::new(Mutex::new(State::default())),
            events,
            record_requests: false,
            costs: ApiCosts::default(),
            conversion: None,
            committer: Arc::default(),
        }
    }

    /// Stores the objects of each `(group, version)` in `storage` in that version and serves
    /// the group's other versions through `convert` (called with an object and the
    /// `apiVersion` wanted), as the API server does with a CRD's conversion webhook. Writes in
    /// another version are converted before they are stored; reads, lists and watches are
    /// converted to the version of the request's path. Patches apply to the stored version.
    pub fn with_conversion(mut self, storage: &[(&str, &str)], convert: Converter) -> Self {
        self.conversion = Some(Conversion {
            storage: storage
                .iter()
                .map(|(g, v)| ((*g).to_owned(), format!("{g}/{v}")))
                .collect(),
            convert,
        });
        self
    }

    /// The stored version of `route`'s group, when it differs from the request's.
    fn converting(&self, route: &Route) -> Option<(&Conversion, &str)> {
        let conversion = self.conversion.as_ref()?;
        let group = route.api_version.rsplit_once('/')?.0;
        let stored = conversion.storage.get(group)?;
        (*stored != route.api_version).then_some((conversion, stored.as_str()))
    }

    /// An object as the request's version shows it.
    fn present(&self, route: &Route, object: Value) -> Result<Value, String> {
        match self.converting(route) {
            Some((c, _)) if object.get("apiVersion").is_some() => {
                (c.convert)(&object, &route.api_version)
            }
            _ => Ok(object),
        }
    }

    /// A written object as it is stored.
    fn accept(&self, route: &Route, object: Value) -> Result<Value, String> {
        match self.converting(route) {
            Some((c, stored)) => (c.convert)(&object, stored),
            None => Ok(object),
        }
    }

    /// Also keep a log of every request (see [`FakeApiServer::requests`] and
    /// [`FakeApiServer::request_log`]).
    pub fn recording(mut self) -> Self {
        self.record_requests = true;
        self
    }

    /// The same server, through a handle whose requests are not recorded (for a test's own
    /// clients, so the log shows only the component under test).
    pub fn unrecorded(&self) -> Self {
        let mut this = self.clone();
        this.record_requests = false;
        this
    }

    /// Makes requests cost what they cost on a real API server (see [`ApiCosts`]).
    pub fn with_costs(mut self, costs: ApiCosts) -> Self {
        self.costs = costs;
        self
    }

    /// A kube client talking to this server.
    pub fn client(&self) -> Client {
        Client::new(self.clone(), "default")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The `METHOD path` of every request so far (when recording), with `?watch` appended to
    /// watches.
    pub fn requests(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .map(|r| {
                let suffix = if r.watch { "?watch" } else { "" };
                format!("{} {}{suffix}", r.method, r.path)
            })
            .collect()
    }

    /// Every request so far (when recording), with its response code.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// How many requests were recorded so far.
    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    /// Forgets the requests recorded so far.
    pub fn clear_request_log(&self) {
        self.lock().requests.clear();
    }

    /// Makes TokenReviews of `token` authenticate `username`, for `audiences` (none: the API
    /// server's own audience).
    pub fn accept_token(&self, token: &str, username: &str, audiences: &[&str]) {
        self.lock().tokens.insert(
            token.to_owned(),
            TokenIdentity {
                username: username.to_owned(),
                audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            },
        );
    }

    /// Makes `verb` (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`) on
    /// `resource` (`<group>/<plural>`, `/pods` for core) fail with 403 Forbidden, worded as the
    /// apiserver's RBAC denial.
    pub fn forbid(&self, verb: &str, resource: &str) {
        self.lock()
            .forbidden
            .push((verb.to_owned(), resource.to_owned()));
    }

    /// Sets the log `pods/{pod}/log` serves (the pod itself must be inserted separately).
    pub fn set_pod_log(&self, namespace: &str, pod: &str, text: &str) {
        self.lock()
            .pod_logs
            .insert((namespace.to_owned(), pod.to_owned()), text.to_owned());
    }

    /// Ends every open watch (clients must resume from their last resourceVersion), as the
    /// apiserver does when a watch's `timeoutSeconds` runs out.
    pub fn end_watches(&self) {
        let mut st = self.lock();
        st.watch_close.cancel();
        st.watch_close = tokio_util::sync::CancellationToken::new();
    }

    /// The stored object, if any.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&Key {
                resource: resource.to_owned(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
            .cloned()
    }

    /// Every stored object of a resource.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|(k, _)| k.resource == resource)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Stores `obj` as if created (uid, resourceVersion, … assigned), without a request.
    pub fn insert(&self, resource: &str, obj: Value) -> Value {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let (_, v) = self
            .create(resource, &ns, obj)
            .unwrap_or_else(|(_, v)| (StatusCode::CONFLICT, v));
        v
    }

    fn next_rv(state: &mut State) -> String {
        state.resource_version += 1;
        state.resource_version.to_string()
    }

    /// Sends an event to the watches; called with the state locked so events keep their
    /// resourceVersion order.
    fn publish(
        &self,
        st: &mut State,
        resource: &str,
        namespace: &str,
        type_: &'static str,
        object: &Value,
    ) {
        let ev = WatchEvent {
            at: std::time::Instant::now(),
            rv: st.resource_version,
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            type_,
            object: Arc::new(object.clone()),
        };
        if st.history.len() >= HISTORY {
            st.history.pop_front();
        }
        st.history.push_back(ev.clone());
        let _ = self.events.send(ev);
    }

    fn create(
        &self,
        resource: &str,
        ns: &str,
        mut obj: Value,
    ) -> Result<(StatusCode, Value), (StatusCode, Value)> {
        let mut st = self.lock();
        let meta = obj
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
            .filter(|m| m.is_object())
            .ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    status_body(StatusCode::BAD_REQUEST, "BadRequest", "not an object"),
                )
            })?;
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            let prefix = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if prefix.is_empty() {
                let b = status_body(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "name or generateName is required",
                );
                return Err((StatusCode::UNPROCESSABLE_ENTITY, b));
            }
            loop {
                let suffix: String = (0..5)
                    .map(|_| char::from(NAME_CHARS[rand::random_range(0..NAME_CHARS.len())]))
                    .collect();
                name = format!("{prefix}{suffix}");
                let k = Key {
                    resource: resource.to_owned(),
                    namespace: ns.to_owned(),
                    name: name.clone(),
                };
                if !st.objects.contains_key(&k) {
                    break;
                }
            }
        }
        let key = Key {
            resource: resource.to_owned(),
            namespace: ns.to_owned(),
            name: name.clone(),
        };
        if st.objects.contains_key(&key) {
            let msg = format!("{resource} {name:?} already exists");
            return Err((
                StatusCode::CONFLICT,
                status_body(StatusCode::CONFLICT, "AlreadyExists", &msg),
            ));
        }
        st.uid += 1;
        let uid = format!("00000000-0000-0000-0000-{:012}", st.uid);
        let rv = Self::next_rv(&mut st);
        meta["name"] = json!(name);
        if !ns.is_empty() {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = json!(uid);
        meta["resourceVersion"] = json!(rv);
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!(
            jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        );
        if let Some(m) = meta.as_object_mut() {
            m.remove("generateName");
        }
        st.objects.insert(key, obj.clone());
        self.publish(&mut st, resource, ns, "ADDED", &obj);
        Ok((StatusCode::CREATED, obj))
    }

    /// Answers one request; also returns how many objects it listed.
    fn handle(&self, method: &Method, uri: &http::Uri, body: &[u8]) -> (Response<ResBody>, usize) {
        let Some(route) = parse_path(uri.path()) else {
            return (self.handle_object(method, uri, body), 0);
        };
        if *method == Method::GET && route.name.is_none() && !route.log {
            return self.list_response(&route, &query(uri));
        }
        (self.handle_object(method, uri, body), 0)
    }

    fn handle_object(&self, method: &Method, uri: &http::Uri, body: &[u8]) -> Response<ResBody> {
        let Some(route) = parse_path(uri.path()) else {
            return error(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no route for {}", uri.path()),
            );
        };
        let ns = route.namespace.clone().unwrap_or_default();
        let q = query(uri);
        let parsed: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap_or(Value::Null)
        };
        if route.resource == "authentication.k8s.io/tokenreviews" && *method == Method::POST {
            return self.token_review(&parsed);
        }
        if route.log && *method == Method::GET {
            return self.pod_log(&ns, route.name.as_deref().unwrap_or_default());
        }
        let parsed = match (method.clone(), &parsed) {
            (Method::POST | Method::PUT, Value::Object(_)) => match self.accept(&route, parsed) {
                Ok(v) => v,
                Err(e) => return conversion_failed(e),
            },
            _ => parsed,
        };
        let shown = |code: StatusCode, v: Value| match self.present(&route, v) {
            Ok(v) => json_response(code, &v),
            Err(e) => conversion_failed(e),
        };
        match (method.clone(), route.name.clone()) {
            (Method::GET, None) => self.list_response(&route, &q).0,
            (Method::GET, Some(name)) => match self.get(&route.resource, &ns, &name) {
                Some(v) => shown(StatusCode::OK, v),
                None => not_found(&route.resource, &name),
            },
            (Method::POST, None) => match self.create(&route.resource, &ns, parsed) {
                Ok((c, v)) => shown(c, v),
                Err((c, v)) => json_response(c, &v),
            },
            (Method::PATCH, Some(name)) => self.patch(&route, &ns, &name, &parsed),
            (Method::PUT, Some(name)) => self.replace(&route, &ns, &name, parsed),
            (Method::DELETE, Some(name)) => self.delete(&route, &ns, &name, &parsed),
            _ => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{method} {}", uri.path()),
            ),
        }
    }

    /// A pod's log as the apiserver serves it: plain text, 404 when the pod does not exist.
    fn pod_log(&self, ns: &str, pod: &str) -> Response<ResBody> {
        if self.get("/pods", ns, pod).is_none() {
            return not_found("pods", pod);
        }
        let text = self
            .lock()
            .pod_logs
            .get(&(ns.to_owned(), pod.to_owned()))
            .cloned()
            .unwrap_or_default();
        response(StatusCode::OK, "text/plain", text)
    }

    /// Answers a TokenReview for the registered tokens, with the apiserver's audience rules.
    fn token_review(&self, review: &Value) -> Response<ResBody> {
        let token = review
            .pointer("/spec/token")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let wanted: Vec<String> = review
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let identity = self.lock().tokens.get(token).cloned();
        let status = match identity {
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
            Some(id) => {
                let has = if id.audiences.is_empty() {
                    vec![APISERVER_AUDIENCE.to_owned()]
                } else {
                    id.audiences.clone()
                };
                let wanted = if wanted.is_empty() {
                    vec![APISERVER_AUDIENCE.to_owned()]
                } else {
                    wanted
                };
                let granted: Vec<&String> = wanted.iter().filter(|a| has.contains(a)).collect();
                if granted.is_empty() {
                    json!({"authenticated": false, "error": "token audiences are invalid for the target audiences"})
                } else {
                    json!({"authenticated": true, "audiences": granted,
                           "user": {"username": id.username, "groups": ["system:authenticated"]}})
                }
            }
        };
        let mut answer = review.clone();
        answer["status"] = status;
        if let Some(spec) = answer.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("token");
        }
        json_response(StatusCode::CREATED, &answer)
    }

    /// The RBAC denial for `verb` on the request's resource, if the test forbade it.
    fn denial(&self, verb: &str, route: &Route) -> Option<Response<ResBody>> {
        let forbidden = self
            .lock()
            .forbidden
            .iter()
            .any(|(v, r)| v == verb && *r == route.resource);
        if !forbidden {
            return None;
        }
        let (group, plural) = route.resource.split_once('/').unwrap_or(("", ""));
        let qualified = if group.is_empty() {
            plural.to_owned()
        } else {
            format!("{plural}.{group}")
        };
        let object = route
            .name
            .as_deref()
            .map_or_else(String::new, |n| format!(" {n:?}"));
        let scope = route.namespace.as_deref().map_or_else(
            || " at the cluster scope".to_owned(),
            |ns| format!(" in the namespace {ns:?}"),
        );
        Some(error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{qualified}{object} is forbidden: User \"system:serviceaccount:agent-sandbox-system:sandbox-router\" cannot {verb} resource {plural:?} in API group {group:?}{scope}"
            ),
        ))
    }

    /// A list, and how many objects it returned.
    fn list_response(
        &self,
        route: &Route,
        q: &BTreeMap<String, String>,
    ) -> (Response<ResBody>, usize) {
        let selector = q.get("labelSelector").cloned().unwrap_or_default();
        let fields = q.get("fieldSelector").cloned().unwrap_or_default();
        let limit: usize = q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX);
        // The continue token is the index of the next matching object (stable enough for tests).
        let skip: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
        let st = self.lock();
        let mut matching = st
            .objects
            .iter()
            .filter(|(k, _)| k.resource == route.resource)
            .filter(|(k, _)| route.namespace.as_ref().is_none_or(|ns| *ns == k.namespace))
            .filter(|(_, v)| selector_matches(&selector, v) && fields_match(&fields, v))
            .skip(skip);
        let items: Vec<Value> = matching
            .by_ref()
            .take(limit)
            .map(|(_, v)| v.clone())
            .collect();
        let more = matching.next().is_some();
        let rv = st.resource_version.to_string();
        drop(st);
        let mut meta = json!({"resourceVersion": rv});
        if more {
            meta["continue"] = json!((skip + items.len()).to_string());
        }
        let n = items.len();
        let items = match items
            .into_iter()
            .map(|v| self.present(route, v))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(items) => items,
            Err(e) => return (conversion_failed(e), 0),
        };
        let body = json!({"apiVersion": "v1", "kind": "List", "metadata": meta, "items": items});
        (json_response(StatusCode::OK, &body), n)
    }

    fn watch(&self, route: Route, q: &BTreeMap<String, String>) -> Response<ResBody> {
        let selector = q.get("labelSelector").cloned().unwrap_or_default();
        let fields = q.get("fieldSelector").cloned().unwrap_or_default();
        let from = q.get("resourceVersion").filter(|v| !v.is_empty());
        let (backlog, rx, last, closed) = {
            let st = self.lock();
            let closed = st.watch_close.clone();
            let rx = self.events.subscribe();
            match from {
                // No resourceVersion: the current state as synthetic ADDED events, then changes.
                None => {
                    let now = st.resource_version;
                    let backlog: Vec<WatchEvent> = st
                        .objects
                        .iter()
                        .filter(|(k, _)| k.resource == route.resource)
                        .map(|(k, v)| WatchEvent {
                            at: std::time::Instant::now(),
                            rv: now,
                            resource: k.resource.clone(),
                            namespace: k.namespace.clone(),
                            type_: "ADDED",
                            object: Arc::new(v.clone()),
                        })
                        .collect();
                    (backlog, rx, now, closed)
                }
                Some(v) => {
                    let since: u64 = v.parse().unwrap_or(0);
                    let backlog: Vec<WatchEvent> = st
                        .history
                        .iter()
                        .filter(|e| e.rv > since)
                        .cloned()
                        .collect();
                    let last = backlog.last().map_or(since, |e| e.rv);
                    (backlog, rx, last, closed)
                }
            }
        };
        let delay = self.costs.watch_delay;
        let this = self.clone();
        let live = tokio_stream_from(rx)
            .filter(move |e| std::future::ready(e.rv > last))
            .then(move |e| async move {
                if !delay.is_zero() {
                    precise_sleep(
                        (e.at + delay).saturating_duration_since(std::time::Instant::now()),
                    )
                    .await;
                }
                e
            });
        let stream = futures::stream::iter(backlog)
            .chain(live)
            .take_until(closed.cancelled_owned())
            .filter_map(move |ev| {
                let keep = ev.resource == route.resource
                    && route
                        .namespace
                        .as_ref()
                        .is_none_or(|ns| *ns == ev.namespace)
                    && selector_matches(&selector, &ev.object)
                    && fields_match(&fields, &ev.object);
                let line = keep.then(|| {
                    let object = this
                        .present(&route, (*ev.object).clone())
                        .unwrap_or_else(|_| (*ev.object).clone());
                    let mut s = json!({"type": ev.type_, "object": object}).to_string();
                    s.push('\n');
                    Ok::<_, Infallible>(Frame::data(Bytes::from(s)))
                });
                async move { line }
            });
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }

    /// The object after `patch`, checked against the stored one: `Ok(None)` when the patch
    /// changes nothing (the apiserver then writes nothing), an error response for a missing
    /// object or a stale `resourceVersion` precondition.
    fn patched(
        st: &State,
        route: &Route,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Option<Value>, Box<Response<ResBody>>> {
        let Some(current) = st.objects.get(&route.key(ns, name)) else {
            return Err(Box::new(not_found(&route.resource, name)));
        };
        if let Some(want) = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && Some(want)
                != current
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(Box::new(error(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "the object has been modified; please apply your changes to the latest version and try again ({name})"
                ),
            )));
        }
        let mut updated = current.clone();
        if route.status {
            if let Some(s) = patch.get("status") {
                let mut status = updated.get("status").cloned().unwrap_or(Value::Null);
                apply_merge_patch(&mut status, s);
                updated["status"] = status;
            }
        } else {
            let mut p = patch.clone();
            if let Some(o) = p.as_object_mut() {
                o.remove("status");
            }
            apply_merge_patch(&mut updated, &p);
            if updated.get("spec") != current.get("spec") {
                let g = current
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                updated["metadata"]["generation"] = json!(g + 1);
            }
        }
        for keep in [
            "uid",
            "name",
            "namespace",
            "creationTimestamp",
            "resourceVersion",
        ] {
            if let Some(v) = current["metadata"].get(keep) {
                updated["metadata"][keep] = v.clone();
            }
        }
        Ok((updated != *current).then_some(updated))
    }

    fn patch(&self, route: &Route, ns: &str, name: &str, patch: &Value) -> Response<ResBody> {
        let mut st = self.lock();
        let mut updated = match Self::patched(&st, route, ns, name, patch) {
            Ok(Some(updated)) => updated,
            Ok(None) => {
                let current = st.objects.get(&route.key(ns, name)).cloned();
                return json_response(StatusCode::OK, &current.unwrap_or(Value::Null));
            }
            Err(response) => return *response,
        };
        updated["metadata"]["resourceVersion"] = json!(Self::next_rv(&mut st));
        st.objects.insert(route.key(ns, name), updated.clone());
        self.publish(&mut st, &route.resource, ns, "MODIFIED", &updated);
        json_response(StatusCode::OK, &updated)
    }

    /// Whether a request would commit to storage: a write that is not a patch changing nothing.
    fn commits(&self, method: &Method, route: &Route, body: &[u8]) -> bool {
        if route.resource == "authentication.k8s.io/tokenreviews" {
            return false;
        }
        match *method {
            Method::POST | Method::PUT | Method::DELETE => true,
            Method::PATCH => {
                let patch: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let ns = route.namespace.clone().unwrap_or_default();
                let name = route.name.clone().unwrap_or_default();
                !matches!(
                    Self::patched(&self.lock(), route, &ns, &name, &patch),
                    Ok(None)
                )
            }
            _ => false,
        }
    }

    fn replace(&self, route: &Route, ns: &str, name: &str, mut obj: Value) -> Response<ResBody> {
        let key = route.key(ns, name);
        let mut st = self.lock();
        let Some(current) = st.objects.get(&key).cloned() else {
            return not_found(&route.resource, name);
        };
        let want = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !want.is_empty()
            && Some(want)
                != current
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return error(
                StatusCode::CONFLICT,
                "Conflict",
                format!("the object has been modified ({name})"),
            );
        }
        if route.status {
            // `/status` replaces the status and nothing else.
            let status = obj.get("status").cloned().unwrap_or(Value::Null);
            obj = current.clone();
            match status {
                Value::Null => {
                    if let Some(o) = obj.as_object_mut() {
                        o.remove("status");
                    }
                }
                s => obj["status"] = s,
            }
        } else {
            // The main resource keeps the stored status; a new spec is a new generation.
            match current.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(o) = obj.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            let g = current
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let changed = obj.get("spec") != current.get("spec");
            obj["metadata"]["generation"] = json!(if changed { g + 1 } else { g });
        }
        for keep in ["uid", "creationTimestamp", "name", "namespace"] {
            if let Some(v) = current["metadata"].get(keep) {
                obj["metadata"][keep] = v.clone();
            }
        }
        obj["metadata"]["resourceVersion"] = json!(Self::next_rv(&mut st));
        st.objects.insert(key, obj.clone());
        self.publish(&mut st, &route.resource, ns, "MODIFIED", &obj);
        json_response(StatusCode::OK, &obj)
    }

    fn delete(&self, route: &Route, ns: &str, name: &str, opts: &Value) -> Response<ResBody> {
        let key = route.key(ns, name);
        let mut st = self.lock();
        let Some(current) = st.objects.get(&key).cloned() else {
            return not_found(&route.resource, name);
        };
        for (field, meta) in [("uid", "uid"), ("resourceVersion", "resourceVersion")] {
            if let Some(want) = opts
                .pointer(&format!("/preconditions/{field}"))
                .and_then(Value::as_str)
                && Some(want) != current["metadata"].get(meta).and_then(Value::as_str)
            {
                return error(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("Precondition failed: {field} in precondition: {want}"),
                );
            }
        }
        st.objects.remove(&key);
        st.resource_version += 1;
        self.publish(&mut st, &route.resource, ns, "DELETED", &current);
        json_response(StatusCode::OK, &current)
    }
}

type Wakeup = (std::time::Instant, tokio::sync::oneshot::Sender<()>);

/// Sleeps for `d` to within about 0.1 ms (tokio's timer rounds up to whole milliseconds,
/// which would double a modelled 0.5 ms watch delay): one thread wakes sleepers at their
/// deadlines.
async fn precise_sleep(d: std::time::Duration) {
    static TIMER: std::sync::OnceLock<Mutex<std::sync::mpsc::Sender<Wakeup>>> =
        std::sync::OnceLock::new();
    if d.is_zero() {
        return;
    }
    let deadline = std::time::Instant::now() + d;
    let timer = TIMER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Wakeup>();
        std::thread::spawn(move || {
            let mut waiting: Vec<Wakeup> = Vec::new();
            loop {
                let now = std::time::Instant::now();
                let (due, later): (Vec<Wakeup>, Vec<Wakeup>) =
                    waiting.drain(..).partition(|(at, _)| *at <= now);
                waiting = later;
                for (_, w) in due {
                    let _ = w.send(());
                }
                let next = waiting.iter().map(|(at, _)| *at).min();
                let got = match next {
                    Some(at) => rx.recv_timeout(at.saturating_duration_since(now)),
                    None => rx
                        .recv()
                        .map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected),
                };
                match got {
                    Ok(w) => waiting.push(w),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        Mutex::new(tx)
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = timer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send((deadline, tx));
    if sent.is_ok() {
        let _ = rx.await;
    } else {
        tokio::time::sleep(d).await;
    }
}

/// A stream of broadcast values (lagging receivers skip what they missed).
fn tokio_stream_from(
    rx: broadcast::Receiver<WatchEvent>,
) -> impl futures::Stream<Item = WatchEvent> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => return Some((ev, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

impl tower::Service<Request<kube::client::Body>> for FakeApiServer {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok(this.respond(&parts.method, &parts.uri, &bytes).await)
        })
    }
}

impl FakeApiServer {
    /// Waits until the next commit that takes this write has landed.
    async fn wait_for_commit(&self) {
        let costs = self.costs;
        let queue = self.committer.get_or_init(|| {
            let (tx, mut rx) =
                tokio::sync::mpsc::unbounded_channel::<tokio::sync::oneshot::Sender<()>>();
            tokio::spawn(async move {
                while let Some(first) = rx.recv().await {
                    let mut batch = vec![first];
                    while batch.len() < costs.batch.max(1) {
                        match rx.try_recv() {
                            Ok(w) => batch.push(w),
                            Err(_) => break,
                        }
                    }
                    precise_sleep(costs.commit).await;
                    for w in batch {
                        let _ = w.send(());
                    }
                }
            });
            tx
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        if queue.send(tx).is_ok() {
            let _ = rx.await;
        }
    }

    /// Answers one request, paying its modelled cost, and records it when recording.
    async fn respond(&self, method: &Method, uri: &http::Uri, body: &[u8]) -> Response<ResBody> {
        let q = query(uri);
        let watch =
            *method == Method::GET && q.get("watch").is_some_and(|w| w == "true" || w == "1");
        let record = |code: StatusCode| {
            if self.record_requests {
                self.lock().requests.push(RequestRecord {
                    method: method.to_string(),
                    path: uri.path().to_owned(),
                    watch,
                    code: code.as_u16(),
                });
            }
        };
        let route = parse_path(uri.path());
        if let Some(route) = &route {
            let verb = match (method.as_str(), route.name.is_some(), watch) {
                ("GET", _, true) => "watch",
                ("GET", true, _) => "get",
                ("GET", false, _) => "list",
                ("POST", ..) => "create",
                ("PUT", ..) => "update",
                ("PATCH", ..) => "patch",
                ("DELETE", ..) => "delete",
                _ => "",
            };
            if let Some(denied) = self.denial(verb, route) {
                record(denied.status());
                return denied;
            }
        }
        if let (true, Some(route)) = (watch, route.as_ref()) {
            let r = self.watch(route.clone(), &q);
            record(r.status());
            return r;
        }
        let commit = !self.costs.commit.is_zero()
            && route
                .as_ref()
                .is_some_and(|r| self.commits(method, r, body));
        if commit {
            self.wait_for_commit().await;
        }
        let is_get = *method == Method::GET && route.as_ref().is_some_and(|r| r.name.is_some());
        if is_get {
            precise_sleep(self.costs.get).await;
        }
        let (r, listed) = self.handle(method, uri, body);
        if listed > 0 && !self.costs.list_per_object.is_zero() {
            let n = u32::try_from(listed).unwrap_or(u32::MAX);
            precise_sleep(self.costs.list_per_object * n).await;
        }
        record(r.status());
        r
    }

    /// Merge-patches a stored object (or its status) as a client would, e.g. to play the
    /// kubelet in a test. Returns the HTTP status.
    pub fn merge(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        patch: &Value,
        status: bool,
    ) -> StatusCode {
        let route = Route {
            resource: resource.to_owned(),
            // A test's own patch: to the stored version, never converted.
            api_version: String::new(),
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            status,
            log: false,
        };
        self.patch(&route, namespace, name, patch).status()
    }

    /// Serves the API over plain HTTP on `listener` (for a client in another process) until
    /// `shutdown`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let (tcp, _) = tokio::select! {
                () = shutdown.cancelled() => return,
                r = listener.accept() => match r { Ok(a) => a, Err(_) => continue },
            };
            // As Go's net package (and so kube-apiserver) does: without it, a watch event written
            // after another waits for the client's delayed ACK (about 40 ms).
            let _ = tcp.set_nodelay(true);
            let this = self.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let this = this.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let bytes = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    Ok::<_, Infallible>(this.respond(&parts.method, &parts.uri, &bytes).await)
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn paths_route_to_resources() {
        let r = parse_path("/apis/agents.x-k8s.io/v1beta1/namespaces/ns/sandboxes/a/status")
            .expect("route");
        assert_eq!(r.resource, "agents.x-k8s.io/sandboxes");
        assert_eq!(r.namespace.as_deref(), Some("ns"));
        assert_eq!(r.name.as_deref(), Some("a"));
        assert!(r.status);
        let r = parse_path("/api/v1/pods").expect("route");
        assert_eq!(r.resource, "/pods");
        assert!(r.namespace.is_none());
    }

    #[test]
    fn field_selectors_match_name_and_namespace() {
        let o = json!({"metadata": {"name": "a", "namespace": "ns"}});
        assert!(fields_match("metadata.name=a", &o));
        assert!(fields_match("metadata.name==a,metadata.namespace=ns", &o));
        assert!(!fields_match("metadata.name=b", &o));
        assert!(fields_match("metadata.name!=b", &o));
        assert!(
            !fields_match("spec.nodeName=x", &o),
            "unsupported fields match nothing"
        );
        assert!(fields_match("", &o));
    }

    #[test]
    fn selectors_match_like_the_apiserver() {
        let o = json!({"metadata": {"labels": {"a": "1"}}});
        assert!(selector_matches("a=1", &o));
        assert!(selector_matches("a", &o));
        assert!(!selector_matches("a=2", &o));
        assert!(selector_matches("!b", &o));
        assert!(selector_matches("", &o));
    }

    const PATH: &str = "/api/v1/namespaces/ns/configmaps/cm";

    fn uri(path: &str) -> http::Uri {
        path.parse().expect("uri")
    }

    fn rv(api: &FakeApiServer) -> String {
        api.get("/configmaps", "ns", "cm").expect("stored")["metadata"]["resourceVersion"]
            .as_str()
            .expect("rv")
            .to_owned()
    }

    fn seeded(costs: ApiCosts) -> FakeApiServer {
        let api = FakeApiServer::new().recording().with_costs(costs);
        api.insert(
            "/configmaps",
            json!({"metadata": {"name": "cm", "namespace": "ns"}, "data": {"a": "1"}}),
        );
        api
    }

    #[tokio::test]
    async fn a_patch_that_changes_nothing_writes_nothing() {
        let api = seeded(ApiCosts::default());
        let before = rv(&api);
        let mut events = api.events.subscribe();
        let body = br#"{"data": {"a": "1"}}"#;
        let r = api.respond(&Method::PATCH, &uri(PATH), body).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(rv(&api), before, "no new resourceVersion");
        assert!(events.try_recv().is_err(), "no watch event");
        let r = api
            .respond(&Method::PATCH, &uri(PATH), br#"{"data": {"a": "2"}}"#)
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_ne!(rv(&api), before);
        assert_eq!(events.try_recv().expect("an event").type_, "MODIFIED");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_are_serialized_and_checked_at_commit_time() {
        let commit = Duration::from_millis(10);
        let api = seeded(ApiCosts {
            commit,
            batch: 1,
            ..ApiCosts::default()
        });
        let locked = format!(
            r#"{{"metadata": {{"resourceVersion": "{}"}}, "data": {{"b": "x"}}}}"#,
            rv(&api)
        );
        let t0 = std::time::Instant::now();
        let writes = (0..5).map(|i| {
            let api = api.clone();
            let body = if i == 0 {
                locked.clone()
            } else {
                format!(r#"{{"data": {{"w{i}": "1"}}}}"#)
            };
            tokio::spawn(async move {
                api.respond(&Method::PATCH, &uri(PATH), body.as_bytes())
                    .await
                    .status()
            })
        });
        let codes: Vec<StatusCode> = futures::future::join_all(writes)
            .await
            .into_iter()
            .map(|r| r.expect("task"))
            .collect();
        assert!(t0.elapsed() >= commit * 5, "five commits, one at a time");
        assert!(
            codes
                .iter()
                .all(|c| *c == StatusCode::OK || *c == StatusCode::CONFLICT)
        );
        let log = api.request_log();
        assert_eq!(log.len(), 5);
        assert!(log.iter().all(RequestRecord::is_write));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_commit_takes_the_writes_that_queued_for_it() {
        let commit = Duration::from_millis(20);
        let api = seeded(ApiCosts {
            commit,
            batch: 8,
            ..ApiCosts::default()
        });
        let t0 = std::time::Instant::now();
        let writes = (0..8).map(|i| {
            let api = api.clone();
            let body = format!(r#"{{"data": {{"w{i}": "1"}}}}"#);
            tokio::spawn(async move {
                api.respond(&Method::PATCH, &uri(PATH), body.as_bytes())
                    .await
                    .status()
            })
        });
        for code in futures::future::join_all(writes).await {
            assert_eq!(code.expect("task"), StatusCode::OK);
        }
        let took = t0.elapsed();
        assert!(took >= commit, "every write waited for a commit");
        assert!(
            took < commit * 4,
            "eight writes shared one or two commits, took {took:?}"
        );
    }

    #[tokio::test]
    async fn a_stale_precondition_conflicts_after_waiting_for_its_commit() {
        let api = seeded(ApiCosts {
            commit: Duration::from_millis(5),
            ..ApiCosts::default()
        });
        let stale = format!(
            r#"{{"metadata": {{"resourceVersion": "{}"}}, "data": {{"b": "x"}}}}"#,
            rv(&api)
        );
        let first = api
            .respond(&Method::PATCH, &uri(PATH), stale.as_bytes())
            .await;
        assert_eq!(first.status(), StatusCode::OK);
        let second = api
            .respond(
                &Method::PATCH,
                &uri(PATH),
                stale.replace('x', "y").as_bytes(),
            )
            .await;
        assert_eq!(second.status(), StatusCode::CONFLICT);
        let codes: Vec<u16> = api.request_log().iter().map(|r| r.code).collect();
        assert_eq!(codes, [200, 409]);
    }
}
