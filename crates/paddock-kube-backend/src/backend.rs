//! [`KubeBackend`]: the gateway's [`Backend`] on a cluster. The four kinds are read and written
//! through the API server in their storage version (v1beta1), decoded where they arrive and
//! encoded where they leave; Kubernetes errors become the gateway's codes; and a sandbox's agent
//! is found at its pod IP (from the Sandbox's status, else its Pod, else its headless Service).

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, Pod, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::core::params::{DeleteParams, GetParams, ListParams, PostParams, WatchParams};
use kube::core::response::Status;
use kube::core::subresource::LogParams;
use kube::core::{Request, WatchEvent};
use paddock_api::kinds::{Kind, Version};
use paddock_api::names;
use paddock_api::stored::Object;
use paddock_api::v1beta1::{OperatingMode, Sandbox, SandboxStatus};
use paddock_backend::targets::{DEFAULT_PORT, pod_ip_allowed};
use paddock_backend::{
    ApiError, Backend, BoxFuture, ByteStream, Code, EgressFeed, Endpoint, ObjectEvent, ObjectList,
    ObjectWatch, Part, Propagation, Target, WatchEventType,
};
use serde_json::{Value, json};

use crate::cache::{SandboxCache, SandboxCacheScope};

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
    /// Which Sandboxes to keep in memory for routing.
    pub sandbox_cache: SandboxCacheScope,
    /// The in-cluster egress proxy's API (`http://host:port`), for sandboxes' egress records.
    pub egress_api: Option<String>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".to_owned(),
            agent_port: DEFAULT_PORT,
            agent_image: None,
            allow_loopback_pod_ip: false,
            sandbox_cache: SandboxCacheScope::default(),
            egress_api: None,
        }
    }
}

/// The Kubernetes backend of the gateway.
#[derive(Clone)]
pub struct KubeBackend {
    client: Client,
    config: BackendConfig,
    cluster_version: Option<String>,
    sandboxes: Option<Arc<SandboxCache>>,
    permissions: crate::permissions::PermissionsCache,
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

/// Decodes an object the API server sent.
fn decode(kind: Kind, value: Value) -> Result<Object, ApiError> {
    Object::from_value(kind, value).map_err(|e| {
        ApiError::internal(format!(
            "the Kubernetes API server sent a {kind} paddock cannot read: {e}"
        ))
    })
}

/// The parsable IPs among `ips`.
fn ips<'a>(ips: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    ips.into_iter().filter_map(|s| s.parse().ok()).collect()
}

fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// What one line of a watch means for the gateway's stream.
enum Step {
    Event(Box<ObjectEvent>),
    Skip,
    End(ApiError),
}

type KubeEvents = Pin<Box<dyn Stream<Item = Result<WatchEvent<Value>, kube::Error>> + Send>>;

/// A watch that resumes from the last resourceVersion it saw when the API server ends a watch
/// (every few minutes), so gateway clients see one unbroken stream.
struct Resuming {
    kind: Kind,
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
            Ok(WatchEvent::Added(o)) => (WatchEventType::Added, o),
            Ok(WatchEvent::Modified(o)) => (WatchEventType::Modified, o),
            Ok(WatchEvent::Deleted(o)) => (WatchEventType::Deleted, o),
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
        match decode(self.kind, object) {
            Ok(object) => Step::Event(Box::new(ObjectEvent { event_type, object })),
            Err(e) => Step::End(e),
        }
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
                        Step::Event(e) => return Some(Ok(*e)),
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
            sandboxes: None,
            permissions: crate::permissions::PermissionsCache::default(),
        }
    }

    /// Starts the watch that keeps the Sandboxes of `config.sandbox_cache` in memory, so
    /// routing a request needs no API call (must run inside a Tokio runtime).
    #[must_use]
    pub fn with_sandbox_cache(mut self) -> Self {
        self.sandboxes = SandboxCache::spawn(self.client.clone(), &self.config.sandbox_cache);
        self
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

    async fn get_object(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Object, ApiError> {
        check_namespace(namespace)?;
        check_name(name)?;
        let req = collection(kind, Some(namespace))
            .get(name, &GetParams::default())
            .map_err(build_error)?;
        let value = self.client.request::<Value>(req).await.map_err(api_error)?;
        decode(kind, value)
    }

    /// The Sandbox `namespace`/`name`, with a message naming it when it is missing.
    async fn get_sandbox(&self, namespace: &str, name: &str) -> Result<Sandbox, ApiError> {
        match self.get_object(Kind::Sandbox, namespace, name).await {
            Err(e) if e.code == Code::NotFound => Err(ApiError::not_found(format!(
                "sandbox {name:?} not found in namespace {namespace:?}"
            ))),
            Err(e) => Err(e),
            Ok(o) => o
                .into_typed()
                .ok_or_else(|| ApiError::internal("the API server answered with another kind")),
        }
    }

    async fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, ApiError> {
        check_name(name)?;
        let req = Request::new(format!("/api/v1/namespaces/{namespace}/pods"))
            .get(name, &GetParams::default())
            .map_err(build_error)?;
        self.client.request::<Pod>(req).await.map_err(api_error)
    }

    /// The log of a Sandbox's pod (its first container, the one paddock's agent runs in).
    async fn pod_log(
        &self,
        namespace: &str,
        name: &str,
        follow: bool,
    ) -> Result<ByteStream, ApiError> {
        let sandbox = self.get_sandbox(namespace, name).await?;
        let pod = pod_name(&sandbox, name);
        check_name(pod)?;
        let params = LogParams {
            container: sandbox
                .spec
                .blueprint
                .pod_template
                .spec
                .containers
                .first()
                .map(|c| c.name.clone()),
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
        // A cached Sandbox that is Ready answers at once; one the cache lacks or holds as not
        // Ready (its watch event may be a moment behind) is read fresh.
        let sandbox = match self.sandboxes.as_ref().and_then(|c| c.get(namespace, name)) {
            Some(sb) if sb.status.as_ref().is_some_and(SandboxStatus::is_ready) => sb,
            _ => Arc::new(self.get_sandbox(namespace, name).await?),
        };
        let not_ready = |why: String| {
            ApiError::new(
                Code::SandboxNotReady,
                format!("sandbox {name:?} cannot take requests: {why}"),
            )
        };
        if sandbox.spec.operating_mode == Some(OperatingMode::Suspended) {
            return Err(not_ready("it is suspended; resume it first".to_owned()));
        }
        let ready = sandbox
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_deref())
            .and_then(|c| paddock_api::conditions::find(c, paddock_api::conditions::types::READY));
        if ready.is_none_or(|c| c.status != paddock_api::conditions::status::TRUE) {
            return Err(not_ready(match ready {
                Some(c) if !c.message.is_empty() => {
                    format!("it is not Ready ({}: {})", c.reason, c.message)
                }
                Some(c) => format!("it is not Ready ({})", c.reason),
                None => "it has no Ready condition yet; is paddock controller (or agent-sandbox's) running?".to_owned(),
            }));
        }
        let mut candidates = ips(sandbox
            .status
            .iter()
            .flat_map(|s| s.pod_ips.iter().flatten())
            .map(String::as_str));
        if candidates.is_empty() {
            match self.get_pod(namespace, pod_name(&sandbox, name)).await {
                Ok(pod) => {
                    let status = pod.status.unwrap_or_default();
                    candidates = ips(status.pod_ips.iter().flatten().map(|p| p.ip.as_str()));
                    if candidates.is_empty() {
                        candidates = ips(status.pod_ip.as_deref());
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
        if sandbox.spec.blueprint.service == Some(true) {
            let fqdn = sandbox
                .status
                .as_ref()
                .and_then(|s| s.service_fqdn.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| {
                    format!("{name}.{namespace}.svc.{}", self.config.cluster_domain)
                });
            return Ok(format!("{fqdn}:{port}"));
        }
        Err(not_ready(
            "it is Ready but neither its status nor its Pod has an IP, and it has no headless Service (spec.service: true)".to_owned(),
        ))
    }

    fn image_sandbox(&self, mut sandbox: Sandbox) -> Result<Sandbox, ApiError> {
        let Some(agent_image) = &self.config.agent_image else {
            return Err(ApiError::invalid(format!(
                "this gateway cannot create sandboxes from a bare image: their pods need paddock's agent on port {}. Start paddock gateway with --agent-image IMAGE (an image holding the static agent at {AGENT_IN_IMAGE}), or create the sandbox from a template or warm pool whose image serves the agent API on port {}",
                self.config.agent_port, self.config.agent_port
            )));
        };
        let spec = &mut sandbox.spec.blueprint.pod_template.spec;
        if spec.volumes.iter().flatten().any(|v| v.host_path.is_some()) {
            return Err(ApiError::invalid(
                "volumes (host directories) are not available on a cluster: they would be directories of whatever node runs the pod. Use a SandboxTemplate with volumeClaimTemplates instead",
            ));
        }
        let port = self.config.agent_port;
        let Some(main) = spec.containers.first_mut() else {
            return Err(ApiError::internal("the image sandbox has no container"));
        };
        if main.image.as_deref() == Some("host") {
            return Err(ApiError::invalid(
                "image \"host\" (this machine's root filesystem) exists only with paddock serve; give a container image",
            ));
        }
        let mut argv = vec![
            AGENT_PATH.to_owned(),
            "--listen".to_owned(),
            format!("0.0.0.0:{port}"),
        ];
        if let Some(dir) = &main.working_dir {
            argv.extend([
                "--root-dir".to_owned(),
                dir.clone(),
                "--base-dir".to_owned(),
                dir.clone(),
            ]);
        }
        // Without a command the sandbox idles: the agent alone, waiting for exec.
        if let Some(command) = main.command.take() {
            argv.push("--".to_owned());
            argv.extend(command);
            argv.extend(main.args.take().unwrap_or_default());
        }
        main.command = Some(argv);
        main.volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: AGENT_VOLUME.to_owned(),
                mount_path: AGENT_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        main.ports.get_or_insert_with(Vec::new).push(ContainerPort {
            name: Some("agent".to_owned()),
            container_port: i32::from(port),
            ..ContainerPort::default()
        });
        main.readiness_probe = Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/v1/health".to_owned()),
                port: IntOrString::Int(i32::from(port)),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(1),
            ..Probe::default()
        });
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: AGENT_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
        spec.init_containers
            .get_or_insert_with(Vec::new)
            .push(Container {
                name: "paddock-agent-install".to_owned(),
                image: Some(agent_image.clone()),
                command: Some(vec![
                    "cp".to_owned(),
                    AGENT_IN_IMAGE.to_owned(),
                    AGENT_PATH.to_owned(),
                ]),
                volume_mounts: Some(vec![VolumeMount {
                    name: AGENT_VOLUME.to_owned(),
                    mount_path: AGENT_DIR.to_owned(),
                    ..VolumeMount::default()
                }]),
                ..Container::default()
            });
        Ok(sandbox)
    }
}

/// The Pod a Sandbox runs in: its `pod-name` annotation, else its own name.
fn pod_name<'a>(sandbox: &'a Sandbox, name: &'a str) -> &'a str {
    sandbox
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::POD_NAME))
        .map_or(name, String::as_str)
}

fn object_key(object: &Object) -> Result<(String, String), ApiError> {
    let namespace = match object.namespace() {
        "" => "default",
        ns => ns,
    };
    let name = object.name();
    if name.is_empty() {
        return Err(ApiError::invalid("the object has no metadata.name"));
    }
    check_namespace(namespace)?;
    check_name(name)?;
    Ok((namespace.to_owned(), name.to_owned()))
}

fn body(object: &Object) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(&object.to_value())
        .map_err(|e| ApiError::internal(format!("cannot encode the object: {e}")))
}

impl Backend for KubeBackend {
    /// On a cluster the controller enforces a Sandbox's policy through the egress proxy, or
    /// refuses to start its Pod when it has none (`--egress-proxy`).
    fn policy_enforcement_missing(&self) -> Option<String> {
        None
    }

    fn permissions(
        &self,
        namespace: &str,
        sandbox: &str,
    ) -> BoxFuture<'_, Result<paddock_policy::PermissionRules, ApiError>> {
        let (namespace, sandbox) = (namespace.to_owned(), sandbox.to_owned());
        Box::pin(async move {
            check_namespace(&namespace)?;
            let cached = self
                .sandboxes
                .as_ref()
                .and_then(|c| c.get(&namespace, &sandbox))
                .and_then(|sb| serde_json::to_value(&*sb).ok());
            self.permissions
                .get(&self.client, &namespace, &sandbox, cached)
                .await
        })
    }

    fn egress(
        &self,
        namespace: &str,
        sandbox: &str,
        follow: bool,
    ) -> BoxFuture<'_, Result<EgressFeed, ApiError>> {
        let url = self.config.egress_api.as_ref().map(|base| {
            format!(
                "{base}/v1/sandboxes/{namespace}/{sandbox}/egress{}",
                if follow { "?follow=true" } else { "" }
            )
        });
        Box::pin(async move {
            let Some(url) = url else {
                return Err(ApiError::new(
                    Code::NotImplemented,
                    "this gateway does not know the egress proxy: start it with --egress-api",
                ));
            };
            crate::egress::read(&url, follow).await
        })
    }

    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Object, ApiError>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Box::pin(async move { self.get_object(kind, &namespace, &name).await })
    }

    fn metrics_text(&self) -> String {
        self.sandboxes
            .as_ref()
            .map(|c| c.metrics_text())
            .unwrap_or_default()
    }

    fn sandbox_uid(&self, namespace: &str, name: &str) -> BoxFuture<'_, Result<String, ApiError>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Box::pin(async move {
            let cached = self
                .sandboxes
                .as_ref()
                .and_then(|c| c.get(&namespace, &name));
            let sandbox = match cached {
                Some(sb) => sb,
                None => Arc::new(self.get_sandbox(&namespace, &name).await?),
            };
            Ok(sandbox.metadata.uid.clone().unwrap_or_default())
        })
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
                items: items
                    .into_iter()
                    .map(|v| decode(kind, v))
                    .collect::<Result<_, _>>()?,
                resource_version,
            })
        })
    }

    fn create(&self, object: Object) -> BoxFuture<'_, Result<Object, ApiError>> {
        Box::pin(async move {
            let kind = object.kind();
            let namespace = match object.namespace() {
                "" => "default".to_owned(),
                ns => ns.to_owned(),
            };
            check_namespace(&namespace)?;
            let req = collection(kind, Some(&namespace))
                .create(&PostParams::default(), body(&object)?)
                .map_err(build_error)?;
            let created = self.client.request::<Value>(req).await.map_err(api_error)?;
            decode(kind, created)
        })
    }

    fn update(&self, object: Object, part: Part) -> BoxFuture<'_, Result<Object, ApiError>> {
        Box::pin(async move {
            let kind = object.kind();
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
            let updated = self.client.request::<Value>(req).await.map_err(api_error)?;
            decode(kind, updated)
        })
    }

    fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> BoxFuture<'_, Result<Object, ApiError>> {
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
                return decode(
                    kind,
                    json!({
                        "apiVersion": kind.api_version(VERSION),
                        "kind": kind.as_str(),
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": minimal_spec(kind),
                    }),
                );
            }
            decode(kind, last)
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
                kind,
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

    fn prepare_image_sandbox(&self, sandbox: Sandbox) -> Result<Sandbox, ApiError> {
        self.image_sandbox(sandbox)
    }
}

/// The smallest spec of `kind` that decodes (for a deleted object only known by name).
fn minimal_spec(kind: Kind) -> Value {
    match kind {
        Kind::SandboxClaim => json!({"warmPoolRef": {"name": ""}}),
        Kind::SandboxWarmPool => json!({"sandboxTemplateRef": {"name": ""}}),
        Kind::Sandbox | Kind::SandboxTemplate => {
            json!({"podTemplate": {"spec": {"containers": []}}})
        }
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
    fn pod_ips_that_do_not_parse_are_skipped() {
        assert_eq!(
            ips(["10.0.0.1", "not-an-ip", "fd00::1"]),
            vec![
                "10.0.0.1".parse::<IpAddr>().expect("ip"),
                "fd00::1".parse().expect("ip")
            ]
        );
        assert_eq!(
            host_port("fd00::1".parse().expect("ip"), 8888),
            "[fd00::1]:8888"
        );
    }
}
