//! [`KubeBackend`]: the gateway's [`Backend`] on a cluster. The four kinds are read and written
//! through the API server in their storage version (v1beta1) as raw JSON, so nothing the
//! apiserver returns is lost or reformatted; Kubernetes errors become the gateway's codes; and a
//! sandbox's agent is found at its pod IP (from the Sandbox's status, else its Pod, else its
//! headless Service).

use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::Client;
use kube::core::params::{DeleteParams, GetParams, ListParams, PostParams, WatchParams};
use kube::core::response::Status;
use kube::core::subresource::LogParams;
use kube::core::{Request, WatchEvent};
use paddock_api::kinds::{Kind, Version};
use paddock_api::names;
use paddock_gateway::backend::{
    Backend, BoxFuture, ByteStream, Endpoint, ObjectEvent, ObjectList, ObjectWatch, Part,
    Propagation, Target,
};
use paddock_gateway::router_contract::pod_ip_allowed;
use paddock_gateway::{ApiError, Code};
use serde_json::{Value, json};

/// Where the static agent is put inside an image sandbox's pod (an emptyDir).
pub const AGENT_DIR: &str = "/.paddock/bin";
/// The agent binary inside [`AGENT_DIR`].
pub const AGENT_PATH: &str = "/.paddock/bin/paddock-agent";
/// Where the `--agent-image` holds the static agent.
pub const AGENT_IN_IMAGE: &str = "/paddock-agent";
/// Name of the emptyDir volume and of the init container that fills it.
const AGENT_VOLUME: &str = "paddock-agent";

/// Settings of the backend (from `paddock gateway`'s flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// Cluster DNS domain, for the headless Service fallback (`<name>.<ns>.svc.<domain>`).
    pub cluster_domain: String,
    /// Port the in-sandbox agent listens on.
    pub agent_port: u16,
    /// Image holding the static agent at `/paddock-agent` (and a `cp`), put into the pods of
    /// image sandboxes; `None` refuses image sandboxes.
    pub agent_image: Option<String>,
    /// Accept loopback pod IPs (tests, single-node setups).
    pub allow_loopback_pod_ip: bool,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".to_owned(),
            agent_port: paddock_gateway::router_contract::DEFAULT_PORT,
            agent_image: None,
            allow_loopback_pod_ip: false,
        }
    }
}

/// The Kubernetes backend of the gateway.
#[derive(Clone)]
pub struct KubeBackend {
    client: Client,
    config: BackendConfig,
    cluster_version: Option<String>,
}

impl std::fmt::Debug for KubeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeBackend")
            .field("config", &self.config)
            .field("cluster_version", &self.cluster_version)
            .finish_non_exhaustive()
    }
}

/// The version every object crosses the backend in.
const VERSION: Version = Version::STORAGE;

/// A shown or refused name: DNS-1123 label for namespaces, and no path tricks in names, since
/// both become segments of the API server URL the gateway calls with its own credentials.
fn check_namespace(namespace: &str) -> Result<(), ApiError> {
    let ok = !namespace.is_empty()
        && namespace.len() <= 63
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !namespace.starts_with('-')
        && !namespace.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "namespace {namespace:?} is not a valid Kubernetes namespace (lowercase letters, digits and '-', at most 63 characters)"
        )))
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "name {name:?} is not a valid Kubernetes object name (lowercase letters, digits, '-' and '.', at most 253 characters)"
        )))
    }
}

/// The URL path of a kind's collection, in one namespace or all.
fn collection(kind: Kind, namespace: Option<&str>) -> Request {
    Request::new(match namespace {
        Some(ns) => format!(
            "/apis/{}/{}/namespaces/{ns}/{}",
            kind.group(),
            VERSION.as_str(),
            kind.plural()
        ),
        None => format!(
            "/apis/{}/{}/{}",
            kind.group(),
            VERSION.as_str(),
            kind.plural()
        ),
    })
}

fn build_error(e: kube::core::request::Error) -> ApiError {
    ApiError::invalid(format!("cannot build the Kubernetes request: {e}"))
}

/// The gateway's error for a Kubernetes API `Status`, keeping the apiserver's message.
pub fn status_error(status: &Status) -> ApiError {
    let message = if status.message.is_empty() {
        status.reason.clone()
    } else {
        status.message.clone()
    };
    let reason = status.reason.as_str();
    match status.code {
        404 if status.details.is_none()
            && message.contains("the server could not find the requested resource") =>
        {
            ApiError::not_found(format!(
                "{message}: the API server does not serve this resource; are the agent-sandbox CRDs installed (kubectl apply -k deploy/)?"
            ))
        }
        404 => ApiError::not_found(message),
        409 if reason == "AlreadyExists" => ApiError::new(Code::AlreadyExists, message),
        409 => ApiError::new(Code::Conflict, message),
        410 => ApiError::new(
            Code::Conflict,
            format!(
                "{message} (410 Gone): the resourceVersion is too old; list again and watch from the list's resourceVersion"
            ),
        ),
        422 => {
            let causes: Vec<Value> = status
                .details
                .iter()
                .flat_map(|d| &d.causes)
                .map(|c| json!({"path": c.field, "message": c.message, "reason": c.reason}))
                .collect();
            let mut err = ApiError::new(Code::InvalidObject, message);
            if !causes.is_empty() {
                err.details = Some(Value::Array(causes));
            }
            err
        }
        400 => ApiError::invalid(message),
        403 => ApiError::new(
            Code::PermissionDenied,
            format!(
                "{message}; the gateway's service account lacks this permission (deploy/router/rbac.yaml grants what paddock gateway calls)"
            ),
        ),
        401 => ApiError::unavailable(format!(
            "the Kubernetes API server rejected the gateway's own credentials: {message}"
        )),
        429 => ApiError::unavailable(format!(
            "the Kubernetes API server is throttling requests: {message}; try again"
        )),
        500..=599 => ApiError::unavailable(format!("the Kubernetes API server failed: {message}")),
        _ => ApiError::internal(format!(
            "unexpected answer {} {reason} from the Kubernetes API server: {message}",
            status.code
        )),
    }
}

/// The gateway's error for a failed Kubernetes call.
pub fn api_error(e: kube::Error) -> ApiError {
    match e {
        kube::Error::Api(status) => status_error(&status),
        kube::Error::SerdeError(e) => ApiError::internal(format!(
            "the Kubernetes API server answered with something that is not the expected JSON: {e}"
        )),
        other => ApiError::unavailable(format!("cannot reach the Kubernetes API server: {other}")),
    }
}

fn ready_condition(object: &Value) -> Option<&Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
}

/// IPs of a status `podIPs` list: strings (a Sandbox) or `{ip}` objects (a Pod).
fn ips(list: Option<&Value>) -> Vec<IpAddr> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().or_else(|| v.get("ip").and_then(Value::as_str)))
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// What one line of a watch means for the gateway's stream.
enum Step {
    Event(ObjectEvent),
    Skip,
    End(ApiError),
}

type KubeEvents = Pin<Box<dyn Stream<Item = Result<WatchEvent<Value>, kube::Error>> + Send>>;

/// A watch that resumes from the last resourceVersion it saw when the API server ends a watch
/// (every few minutes), so gateway clients see one unbroken stream.
struct Resuming {
    client: Client,
    request: Request,
    params: WatchParams,
    last_rv: Option<String>,
    current: Option<KubeEvents>,
    opened_at: tokio::time::Instant,
    seen_since_open: bool,
}

impl Resuming {
    async fn open(&mut self) -> Result<(), ApiError> {
        let req = self
            .request
            .watch(&self.params, self.last_rv.as_deref().unwrap_or(""))
            .map_err(build_error)?;
        let events = self
            .client
            .request_events::<Value>(req)
            .await
            .map_err(api_error)?;
        self.current = Some(Box::pin(events));
        self.opened_at = tokio::time::Instant::now();
        self.seen_since_open = false;
        Ok(())
    }

    fn step(&mut self, item: Result<WatchEvent<Value>, kube::Error>) -> Step {
        let (event_type, object) = match item {
            Ok(WatchEvent::Added(o)) => ("ADDED", o),
            Ok(WatchEvent::Modified(o)) => ("MODIFIED", o),
            Ok(WatchEvent::Deleted(o)) => ("DELETED", o),
            Ok(WatchEvent::Bookmark(b)) => {
                self.last_rv = Some(b.metadata.resource_version);
                return Step::Skip;
            }
            Ok(WatchEvent::Error(status)) => return Step::End(status_error(&status)),
            Err(kube::Error::Api(status)) => return Step::End(status_error(&status)),
            // A broken connection: resume from the last resourceVersion.
            Err(e) => {
                tracing::debug!(error = %e, "watch stream broke; resuming");
                self.current = None;
                return Step::Skip;
            }
        };
        if let Some(rv) = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            self.last_rv = Some(rv.to_owned());
        }
        Step::Event(ObjectEvent { event_type, object })
    }

    async fn next(&mut self) -> Option<Result<ObjectEvent, ApiError>> {
        loop {
            let Some(current) = self.current.as_mut() else {
                // A watch that ended within a second without an event: wait before re-opening,
                // rather than spin on an API server that keeps closing it.
                if !self.seen_since_open && self.opened_at.elapsed() < Duration::from_secs(1) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                if let Err(e) = self.open().await {
                    return Some(Err(e));
                }
                continue;
            };
            match current.next().await {
                None => self.current = None,
                Some(item) => {
                    self.seen_since_open = true;
                    match self.step(item) {
                        Step::Event(e) => return Some(Ok(e)),
                        Step::Skip => {}
                        Step::End(e) => {
                            self.current = None;
                            return Some(Err(e));
                        }
                    }
                }
            }
        }
    }
}

impl KubeBackend {
    /// A backend over `client`.
    pub fn new(client: Client, config: BackendConfig) -> Self {
        Self {
            client,
            config,
            cluster_version: None,
        }
    }

    /// Asks the API server for its version once, for `GET /v1/info` (left out when it does
    /// not answer).
    pub async fn discover_cluster_version(&mut self) {
        match self.client.apiserver_version().await {
            Ok(info) => self.cluster_version = Some(info.git_version),
            Err(e) => tracing::debug!(error = %e, "cannot read the cluster version"),
        }
    }

    /// The settings.
    pub fn config(&self) -> &BackendConfig {
        &self.config
    }

    async fn get_object(&self, kind: Kind, namespace: &str, name: &str) -> Result<Value, ApiError> {
        check_namespace(namespace)?;
        check_name(name)?;
        let req = collection(kind, Some(namespace))
            .get(name, &GetParams::default())
            .map_err(build_error)?;
        self.client.request::<Value>(req).await.map_err(api_error)
    }

    async fn get_pod(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        check_name(name)?;
        let req = Request::new(format!("/api/v1/namespaces/{namespace}/pods"))
            .get(name, &GetParams::default())
            .map_err(build_error)?;
        self.client.request::<Value>(req).await.map_err(api_error)
    }

    /// The log of a Sandbox's pod (its first container, the one paddock's agent runs in).
    async fn pod_log(
        &self,
        namespace: &str,
        name: &str,
        follow: bool,
    ) -> Result<ByteStream, ApiError> {
        let sandbox = match self.get_object(Kind::Sandbox, namespace, name).await {
            Err(e) if e.code == Code::NotFound => {
                return Err(ApiError::not_found(format!(
                    "sandbox {name:?} not found in namespace {namespace:?}"
                )));
            }
            other => other?,
        };
        let pod = sandbox
            .pointer(&format!(
                "/metadata/annotations/{}",
                names::POD_NAME.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .unwrap_or(name);
        check_name(pod)?;
        let params = LogParams {
            container: sandbox
                .pointer("/spec/podTemplate/spec/containers/0/name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            follow,
            ..LogParams::default()
        };
        let req = Request::new(format!("/api/v1/namespaces/{namespace}/pods"))
            .logs(pod, &params)
            .map_err(build_error)?;
        let reader = match self.client.request_stream(req).await {
            Ok(reader) => reader,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(ApiError::new(
                    Code::SandboxNotReady,
                    format!(
                        "sandbox {name:?} has no pod {pod:?} (suspended, or not scheduled yet), so no log"
                    ),
                ));
            }
            Err(e) => return Err(api_error(e)),
        };
        let reader = Box::pin(reader);
        Ok(Box::pin(futures::stream::unfold(
            reader,
            |mut reader| async move {
                use futures::AsyncReadExt as _;
                let mut buf = vec![0u8; 64 * 1024];
                match reader.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(bytes::Bytes::from(buf)), reader))
                    }
                    Err(e) => Some((Err(e), reader)),
                }
            },
        )))
    }

    /// Where the agent of a Ready sandbox answers: its pod IP, else its Pod's, else its
    /// headless Service's DNS name.
    async fn locate(&self, namespace: &str, name: &str, port: u16) -> Result<String, ApiError> {
        let sandbox = match self.get_object(Kind::Sandbox, namespace, name).await {
            Err(e) if e.code == Code::NotFound => {
                return Err(ApiError::not_found(format!(
                    "sandbox {name:?} not found in namespace {namespace:?}"
                )));
            }
            other => other?,
        };
        let not_ready = |why: String| {
            ApiError::new(
                Code::SandboxNotReady,
                format!("sandbox {name:?} cannot take requests: {why}"),
            )
        };
        if sandbox
            .pointer("/spec/operatingMode")
            .and_then(Value::as_str)
            == Some("Suspended")
        {
            return Err(not_ready("it is suspended; resume it first".to_owned()));
        }
        let ready = ready_condition(&sandbox);
        let field = |f: &str| ready.and_then(|c| c.get(f)).and_then(Value::as_str);
        if field("status") != Some("True") {
            return Err(not_ready(match (field("reason"), field("message")) {
                (Some(r), Some(m)) if !m.is_empty() => format!("it is not Ready ({r}: {m})"),
                (Some(r), _) => format!("it is not Ready ({r})"),
                _ => "it has no Ready condition yet; is paddock controller (or agent-sandbox's) running?".to_owned(),
            }));
        }
        let mut candidates = ips(sandbox.pointer("/status/podIPs"));
        if candidates.is_empty() {
            let pod_name = sandbox
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    names::POD_NAME.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .unwrap_or(name);
            match self.get_pod(namespace, pod_name).await {
                Ok(pod) => {
                    candidates = ips(pod.pointer("/status/podIPs"));
                    if candidates.is_empty()
                        && let Some(ip) = pod
                            .pointer("/status/podIP")
                            .and_then(Value::as_str)
                            .and_then(|s| s.parse().ok())
                    {
                        candidates.push(ip);
                    }
                }
                Err(e) if e.code == Code::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(ip) = candidates.first() {
            if !pod_ip_allowed(*ip, self.config.allow_loopback_pod_ip) {
                return Err(ApiError::new(
                    Code::PermissionDenied,
                    format!(
                        "sandbox {name:?} reports the pod IP {ip}, which the gateway does not proxy to (loopback, link-local, multicast or unspecified; --allow-loopback-pod-ip admits loopback)"
                    ),
                ));
            }
            return Ok(host_port(*ip, port));
        }
        if sandbox.pointer("/spec/service").and_then(Value::as_bool) == Some(true) {
            let fqdn = sandbox
                .pointer("/status/serviceFQDN")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(
                    || format!("{name}.{namespace}.svc.{}", self.config.cluster_domain),
                    str::to_owned,
                );
            return Ok(format!("{fqdn}:{port}"));
        }
        Err(not_ready(
            "it is Ready but neither its status nor its Pod has an IP, and it has no headless Service (spec.service: true)".to_owned(),
        ))
    }

    fn image_sandbox(&self, mut sandbox: Value) -> Result<Value, ApiError> {
        let Some(agent_image) = &self.config.agent_image else {
            return Err(ApiError::invalid(format!(
                "this gateway cannot create sandboxes from a bare image: their pods need paddock's agent on port {}. Start paddock gateway with --agent-image IMAGE (an image holding the static agent at {AGENT_IN_IMAGE}), or create the sandbox from a template or warm pool whose image serves the agent API on port {}",
                self.config.agent_port, self.config.agent_port
            )));
        };
        let Some(spec) = sandbox
            .pointer_mut("/spec/podTemplate/spec")
            .and_then(Value::as_object_mut)
        else {
            return Err(ApiError::internal("the image sandbox has no pod spec"));
        };
        if spec
            .get("volumes")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|v| v.get("hostPath").is_some()))
        {
            return Err(ApiError::invalid(
                "volumes (host directories) are not available on a cluster: they would be directories of whatever node runs the pod. Use a SandboxTemplate with volumeClaimTemplates instead",
            ));
        }
        let port = self.config.agent_port;
        let Some(main) = spec
            .get_mut("containers")
            .and_then(Value::as_array_mut)
            .and_then(|c| c.first_mut())
            .and_then(Value::as_object_mut)
        else {
            return Err(ApiError::internal("the image sandbox has no container"));
        };
        if main.get("image").and_then(Value::as_str) == Some("host") {
            return Err(ApiError::invalid(
                "image \"host\" (this machine's root filesystem) exists only with paddock serve; give a container image",
            ));
        }
        let mut argv = vec![
            json!(AGENT_PATH),
            json!("--listen"),
            json!(format!("0.0.0.0:{port}")),
        ];
        if let Some(dir) = main.get("workingDir").and_then(Value::as_str) {
            argv.extend([
                json!("--root-dir"),
                json!(dir),
                json!("--base-dir"),
                json!(dir),
            ]);
        }
        // Without a command the sandbox idles: the agent alone, waiting for exec.
        if let Some(command) = main.remove("command").and_then(|c| c.as_array().cloned()) {
            argv.push(json!("--"));
            argv.extend(command);
            if let Some(args) = main.remove("args").and_then(|a| a.as_array().cloned()) {
                argv.extend(args);
            }
        }
        main.insert("command".into(), Value::Array(argv));
        push(
            main,
            "volumeMounts",
            json!({"name": AGENT_VOLUME, "mountPath": AGENT_DIR, "readOnly": true}),
        );
        push(
            main,
            "ports",
            json!({"name": "agent", "containerPort": port}),
        );
        main.insert(
            "readinessProbe".into(),
            json!({"httpGet": {"path": "/v1/health", "port": port}, "periodSeconds": 1}),
        );
        push(
            spec,
            "volumes",
            json!({"name": AGENT_VOLUME, "emptyDir": {}}),
        );
        push(
            spec,
            "initContainers",
            json!({
                "name": "paddock-agent-install",
                "image": agent_image,
                "command": ["cp", AGENT_IN_IMAGE, AGENT_PATH],
                "volumeMounts": [{"name": AGENT_VOLUME, "mountPath": AGENT_DIR}],
            }),
        );
        Ok(sandbox)
    }
}

fn push(object: &mut serde_json::Map<String, Value>, field: &str, item: Value) {
    match object.get_mut(field).and_then(Value::as_array_mut) {
        Some(list) => list.push(item),
        None => {
            object.insert(field.to_owned(), Value::Array(vec![item]));
        }
    }
}

fn object_key(object: &Value) -> Result<(String, String), ApiError> {
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("the object has no metadata.name"))?
        .to_owned();
    check_namespace(&namespace)?;
    check_name(&name)?;
    Ok((namespace, name))
}

fn body(object: &Value) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(object)
        .map_err(|e| ApiError::internal(format!("cannot encode the object: {e}")))
}

impl Backend for KubeBackend {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Value, ApiError>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Box::pin(async move { self.get_object(kind, &namespace, &name).await })
    }

    fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> BoxFuture<'_, Result<ObjectList, ApiError>> {
        let namespace = namespace.map(str::to_owned);
        let selector = label_selector.to_owned();
        Box::pin(async move {
            if let Some(ns) = &namespace {
                check_namespace(ns)?;
            }
            let mut params = ListParams::default();
            if !selector.is_empty() {
                params = params.labels(&selector);
            }
            let req = collection(kind, namespace.as_deref())
                .list(&params)
                .map_err(build_error)?;
            let mut list: Value = self.client.request(req).await.map_err(api_error)?;
            let resource_version = list
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let items = match list.get_mut("items").map(Value::take) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            Ok(ObjectList {
                items,
                resource_version,
            })
        })
    }

    fn create(&self, kind: Kind, object: Value) -> BoxFuture<'_, Result<Value, ApiError>> {
        Box::pin(async move {
            let namespace = object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            check_namespace(&namespace)?;
            let req = collection(kind, Some(&namespace))
                .create(&PostParams::default(), body(&object)?)
                .map_err(build_error)?;
            self.client.request::<Value>(req).await.map_err(api_error)
        })
    }

    fn update(
        &self,
        kind: Kind,
        object: Value,
        part: Part,
    ) -> BoxFuture<'_, Result<Value, ApiError>> {
        Box::pin(async move {
            let (namespace, name) = object_key(&object)?;
            let collection = collection(kind, Some(&namespace));
            let pp = PostParams::default();
            let req = match part {
                Part::Main => collection.replace(&name, &pp, body(&object)?),
                Part::Status if !kind.has_status() => {
                    return Err(ApiError::invalid(format!("{kind} has no status")));
                }
                Part::Status => {
                    collection.replace_subresource("status", &name, &pp, body(&object)?)
                }
            }
            .map_err(build_error)?;
            self.client.request::<Value>(req).await.map_err(api_error)
        })
    }

    fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> BoxFuture<'_, Result<Value, ApiError>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Box::pin(async move {
            check_namespace(&namespace)?;
            check_name(&name)?;
            let params = match propagation {
                Propagation::Background => DeleteParams::background(),
                Propagation::Foreground => DeleteParams::foreground(),
                Propagation::Orphan => DeleteParams::orphan(),
            };
            let req = collection(kind, Some(&namespace))
                .delete(&name, &params)
                .map_err(build_error)?;
            let last: Value = self.client.request(req).await.map_err(api_error)?;
            // Some API servers answer a finished delete with a Status, not the object.
            if last.get("kind").and_then(Value::as_str) == Some("Status") {
                return Ok(json!({
                    "apiVersion": kind.api_version(VERSION),
                    "kind": kind.as_str(),
                    "metadata": {"name": name, "namespace": namespace},
                }));
            }
            Ok(last)
        })
    }

    fn watch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: &str,
        resource_version: Option<String>,
    ) -> BoxFuture<'_, Result<ObjectWatch, ApiError>> {
        let namespace = namespace.map(str::to_owned);
        let selector = label_selector.to_owned();
        Box::pin(async move {
            if let Some(ns) = &namespace {
                check_namespace(ns)?;
            }
            let mut params = WatchParams::default().timeout(290);
            if !selector.is_empty() {
                params = params.labels(&selector);
            }
            let mut watch = Resuming {
                client: self.client.clone(),
                request: collection(kind, namespace.as_deref()),
                params,
                last_rv: resource_version,
                current: None,
                opened_at: tokio::time::Instant::now(),
                seen_since_open: true,
            };
            // Open now, so a bad request fails the call rather than the stream.
            watch.open().await?;
            // An error is the stream's last item.
            let stream = futures::stream::unfold((watch, false), |(mut w, ended)| async move {
                if ended {
                    return None;
                }
                let item = w.next().await?;
                let ended = item.is_err();
                Some((item, (w, ended)))
            });
            Ok(Box::pin(stream) as ObjectWatch)
        })
    }

    fn target(
        &self,
        namespace: &str,
        sandbox: &str,
        port: Option<u16>,
    ) -> BoxFuture<'_, Result<Target, ApiError>> {
        let (namespace, sandbox) = (namespace.to_owned(), sandbox.to_owned());
        Box::pin(async move {
            check_namespace(&namespace)?;
            let address = self
                .locate(&namespace, &sandbox, port.unwrap_or(self.config.agent_port))
                .await?;
            Ok(Target {
                endpoint: Endpoint::Tcp(address),
                path_prefix: String::new(),
            })
        })
    }

    fn logs(
        &self,
        namespace: &str,
        sandbox: &str,
        follow: bool,
    ) -> BoxFuture<'_, Result<ByteStream, ApiError>> {
        let (namespace, sandbox) = (namespace.to_owned(), sandbox.to_owned());
        Box::pin(async move {
            check_namespace(&namespace)?;
            self.pod_log(&namespace, &sandbox, follow).await
        })
    }

    fn info(&self) -> Value {
        let mut info = json!({
            "runtimes": ["cluster"],
            "clusterDomain": self.config.cluster_domain,
            "agentPort": self.config.agent_port,
            "imageSandboxes": self.config.agent_image.is_some(),
        });
        if let Some(v) = &self.cluster_version {
            info["clusterVersion"] = json!(v);
        }
        info
    }

    fn prepare_image_sandbox(&self, sandbox: Value) -> Result<Value, ApiError> {
        self.image_sandbox(sandbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> Status {
        Status {
            code,
            reason: reason.to_owned(),
            message: message.to_owned(),
            ..Status::default()
        }
    }

    #[test]
    fn kubernetes_errors_map_to_gateway_codes_with_the_apiserver_message() {
        let cases = [
            (404, "NotFound", Code::NotFound),
            (409, "AlreadyExists", Code::AlreadyExists),
            (409, "Conflict", Code::Conflict),
            (410, "Expired", Code::Conflict),
            (422, "Invalid", Code::InvalidObject),
            (400, "BadRequest", Code::InvalidArgument),
            (403, "Forbidden", Code::PermissionDenied),
            (429, "TooManyRequests", Code::Unavailable),
            (503, "ServiceUnavailable", Code::Unavailable),
        ];
        for (code, reason, want) in cases {
            let err = status_error(&status(code, reason, "apiserver says so"));
            assert_eq!(err.code, want, "{code} {reason}");
            assert!(err.message.contains("apiserver says so"), "{}", err.message);
        }
    }

    #[test]
    fn forbidden_says_the_service_account_lacks_the_permission() {
        let err = status_error(&status(
            403,
            "Forbidden",
            r#"sandboxes.agents.x-k8s.io "a" is forbidden: User "system:serviceaccount:agent-sandbox-system:sandbox-router" cannot get resource "sandboxes""#,
        ));
        assert!(err.message.contains("cannot get resource \"sandboxes\""));
        assert!(err.message.contains("deploy/router/rbac.yaml"));
    }

    #[test]
    fn invalid_keeps_the_field_causes() {
        // As the apiserver sends it.
        let s: Status = serde_json::from_value(json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "reason": "Invalid",
            "message": "Sandbox.agents.x-k8s.io \"a\" is invalid: spec.podTemplate: Required value",
            "details": {"name": "a", "group": "agents.x-k8s.io", "kind": "Sandbox",
                        "causes": [{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.podTemplate"}]}
        }))
        .expect("status");
        let err = status_error(&s);
        assert_eq!(err.code, Code::InvalidObject);
        assert!(err.message.contains("spec.podTemplate: Required value"));
        assert_eq!(err.details.expect("causes")[0]["path"], "spec.podTemplate");
    }

    #[test]
    fn missing_crds_get_a_hint() {
        let err = status_error(&status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
        assert!(err.message.contains("CRDs installed"), "{}", err.message);
    }

    #[test]
    fn names_that_would_change_the_url_are_refused() {
        for bad in ["", "a/b", "..", "A", "a b", "a%2f"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "a/../b", "-a", "a.b", &"a".repeat(64)] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
        check_name("sbx-1.x").expect("valid");
        check_namespace("team-a").expect("valid");
    }

    #[test]
    fn pod_ips_are_read_from_sandbox_and_pod_shapes() {
        assert_eq!(
            ips(Some(&json!(["10.0.0.1", "fd00::1"]))),
            vec![
                "10.0.0.1".parse::<IpAddr>().expect("ip"),
                "fd00::1".parse().expect("ip")
            ]
        );
        assert_eq!(
            ips(Some(&json!([{"ip": "10.0.0.2"}]))),
            vec!["10.0.0.2".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(
            host_port("fd00::1".parse().expect("ip"), 8888),
            "[fd00::1]:8888"
        );
    }
}
