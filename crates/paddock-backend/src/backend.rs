//! What the gateway needs from where objects live and sandboxes run: the embedded engine of
//! `paddock serve` or a Kubernetes cluster. Objects cross this boundary typed, in the storage
//! version ([`Object`]); conversion, validation and defaulting happen in the gateway, so both
//! backends behave the same.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use futures_util::Stream;
use paddock_api::kinds::Kind;
use paddock_api::stored::Object;
use serde_json::Value;

use crate::error::{ApiError, Code};

/// A boxed future, so the trait can be used as `Arc<dyn Backend>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A list of objects and the revision it reflects (watch from there for no gap).
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectList {
    /// The objects.
    pub items: Vec<Object>,
    /// The revision of the list.
    pub resource_version: String,
}

/// What a watch event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    /// The object appeared (or is reported as the watch's initial state).
    Added,
    /// The object changed.
    Modified,
    /// The object is gone; the event carries its last state.
    Deleted,
}

impl WatchEventType {
    /// `ADDED`, `MODIFIED` or `DELETED`, as on the Kubernetes wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ADDED" => Some(Self::Added),
            "MODIFIED" => Some(Self::Modified),
            "DELETED" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectEvent {
    /// What happened.
    pub event_type: WatchEventType,
    /// The object after the change (its last state for `Deleted`).
    pub object: Object,
}

/// A stream of changes; ends when the backend closes.
pub type ObjectWatch = Pin<Box<dyn Stream<Item = Result<ObjectEvent, ApiError>> + Send>>;

/// Which part of an object a write replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Everything but `status`.
    Main,
    /// Only `status`.
    Status,
}

/// How dependents go when an object is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Owner now, dependents later (default).
    Background,
    /// Dependents first; the owner stays visible until they are gone.
    Foreground,
    /// Dependents stay.
    Orphan,
}

/// Where a sandbox's agent (or a port inside the sandbox) answers HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket on this host (the embedded engine).
    Unix(PathBuf),
    /// A TCP address, `host:port` (a pod).
    Tcp(String),
}

/// Where to send a request for a sandbox: the endpoint and a path prefix to put before the
/// request's own path (the agent's port forwarding uses `/v1/ports/<port>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Where to connect.
    pub endpoint: Endpoint,
    /// Prepended to the forwarded path; empty for the agent itself.
    pub path_prefix: String,
}

/// How a sandbox's main process ended, for an error that says why a sandbox never became Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Termination {
    /// Its exit code (`128 + signal` when a signal killed it; 127 or 126 when it could not be
    /// started); `None` when the sandbox itself could not start.
    pub exit_code: Option<i32>,
    /// The last lines of its output.
    pub output_tail: String,
    /// Why the sandbox could not start (an image that cannot be pulled, a runtime error).
    pub start_error: Option<String>,
}

/// A stream of JSON events.
pub type EventStream = Pin<Box<dyn Stream<Item = Value> + Send>>;

/// A stream of bytes (a log), ending with an error when reading it fails midway.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>>;

/// A stream of a sandbox's egress records as they happen.
pub type EgressStream = Pin<Box<dyn Stream<Item = paddock_wire::EgressRecord> + Send>>;

/// A sandbox's egress record: what is kept, and (when asked to follow) what comes next.
pub struct EgressFeed {
    /// The records kept, oldest first.
    pub records: Vec<paddock_wire::EgressRecord>,
    /// The records that follow, when asked for.
    pub follow: Option<EgressStream>,
}

impl std::fmt::Debug for EgressFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressFeed")
            .field("records", &self.records.len())
            .field("follow", &self.follow.is_some())
            .finish()
    }
}

fn no_policies<T>() -> Result<T, ApiError> {
    Err(ApiError::new(
        Code::NotImplemented,
        "this backend does not keep SandboxPolicies (on Kubernetes, kubectl apply them)",
    ))
}

/// The backend contract.
pub trait Backend: Send + Sync + 'static {
    /// `embedded` or `kubernetes`.
    fn name(&self) -> &'static str;

    /// Reads one object.
    fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Object, ApiError>>;

    /// Lists objects; `namespace: None` lists every namespace; `label_selector` uses the
    /// Kubernetes syntax (empty selects all).
    fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> BoxFuture<'_, Result<ObjectList, ApiError>>;

    /// Creates an object (already validated, defaulted and in the storage version).
    fn create(&self, object: Object) -> BoxFuture<'_, Result<Object, ApiError>>;

    /// Replaces an object or its status; a set `metadata.resourceVersion` is a precondition.
    fn update(&self, object: Object, part: Part) -> BoxFuture<'_, Result<Object, ApiError>>;

    /// Deletes an object; returns its last state.
    fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> BoxFuture<'_, Result<Object, ApiError>>;

    /// Watches changes after `resource_version` (or from the current state, as synthetic
    /// `ADDED` events, when `None`).
    fn watch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: &str,
        resource_version: Option<String>,
    ) -> BoxFuture<'_, Result<ObjectWatch, ApiError>>;

    /// The UID of the Sandbox `namespace`/`name` as routing sees it now, to bind v2 scoped
    /// tokens to (a backend with a watch-fed cache answers from it, with no API call).
    fn sandbox_uid(&self, namespace: &str, name: &str) -> BoxFuture<'_, Result<String, ApiError>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Box::pin(async move {
            let sandbox = self.get(Kind::Sandbox, &namespace, &name).await?;
            Ok(sandbox.metadata().uid.clone().unwrap_or_default())
        })
    }

    /// Where a sandbox's agent answers (`port: None`), or where a port inside the sandbox is
    /// reached (upstream's `X-Sandbox-Port`).
    fn target(
        &self,
        namespace: &str,
        sandbox: &str,
        port: Option<u16>,
    ) -> BoxFuture<'_, Result<Target, ApiError>>;

    /// The runtime a sandbox without `runtimeClassName` gets, when the backend decides it (the
    /// embedded engine: gVisor); `None` on a cluster, where the node's default applies.
    fn default_runtime(&self) -> Option<&'static str> {
        None
    }

    /// Facts about the backend for `GET /v1/info` (runtimes offered, versions...).
    fn info(&self) -> Value;

    /// Adapts the Sandbox that `POST /v1/sandboxes` builds from a bare `image` to this backend,
    /// or refuses image sandboxes with the remedy. A cluster puts the agent into the pod here;
    /// the embedded engine mounts it itself and keeps the default, which changes nothing.
    ///
    /// # Errors
    /// The backend cannot run this sandbox from an image.
    fn prepare_image_sandbox(
        &self,
        sandbox: paddock_api::v1beta1::Sandbox,
    ) -> Result<paddock_api::v1beta1::Sandbox, ApiError> {
        Ok(sandbox)
    }

    /// The output of a Sandbox's main process (its pod's log on a cluster): what it wrote so far
    /// and, with `follow`, what it writes until it ends or the client goes away.
    fn logs(
        &self,
        namespace: &str,
        sandbox: &str,
        follow: bool,
    ) -> BoxFuture<'_, Result<ByteStream, ApiError>> {
        let _ = (namespace, sandbox, follow);
        Box::pin(async {
            Err(ApiError::new(
                Code::NotImplemented,
                "this backend cannot read a sandbox's log",
            ))
        })
    }

    /// How a Sandbox's main process ended (exit code and the tail of its output); `None` when
    /// it has not ended, or the backend cannot tell.
    fn termination(
        &self,
        namespace: &str,
        sandbox: &str,
    ) -> BoxFuture<'_, Result<Option<Termination>, ApiError>> {
        let _ = (namespace, sandbox);
        Box::pin(async { Ok(None) })
    }

    /// The warm pool of ready sandboxes like `sandbox` that the gateway claims from instead of
    /// starting one, when the backend keeps one (`paddock serve`'s default pools); `None` to
    /// create `sandbox` itself. Only asked for image sandboxes with nothing of their own (no
    /// name, command, env, volumes, limits or labels).
    fn default_pool(
        &self,
        sandbox: &paddock_api::v1beta1::Sandbox,
    ) -> BoxFuture<'_, Result<Option<String>, ApiError>> {
        let _ = sandbox;
        Box::pin(async { Ok(None) })
    }

    /// Why SandboxPolicies would not be enforced here (`None` when they are): the gateway then
    /// refuses sandboxes that ask for one instead of pretending.
    fn policy_enforcement_missing(&self) -> Option<String> {
        Some("this backend does not enforce SandboxPolicies yet (paddock serve does)".into())
    }

    /// The permissions a Sandbox runs under: the meet of the `permissions` of every policy that
    /// governs it (unrestricted when none does). The gateway checks API operations, exec and
    /// files against them.
    ///
    /// A governing policy that is missing is an error (fail closed).
    fn permissions(
        &self,
        namespace: &str,
        sandbox: &str,
    ) -> BoxFuture<'_, Result<paddock_policy::PermissionRules, ApiError>>;

    /// Appends a decision about a governed sandbox to its audit log (where the backend keeps
    /// one; `paddock serve` does, under `$PADDOCK_HOME/audit`).
    fn audit(&self, event: paddock_policy::audit::AuditEvent) {
        let _ = event;
    }

    /// Stores a SandboxPolicy (already validated, namespace set): `created`, `configured` or
    /// `unchanged`.
    fn apply_policy(&self, policy: Value) -> BoxFuture<'_, Result<&'static str, ApiError>> {
        let _ = policy;
        Box::pin(async { no_policies() })
    }

    /// A SandboxPolicy.
    fn get_policy(&self, namespace: &str, name: &str) -> BoxFuture<'_, Result<Value, ApiError>> {
        let _ = (namespace, name);
        Box::pin(async { no_policies() })
    }

    /// The SandboxPolicies of a namespace (all namespaces for `None`).
    fn list_policies(
        &self,
        namespace: Option<&str>,
    ) -> BoxFuture<'_, Result<Vec<Value>, ApiError>> {
        let _ = namespace;
        Box::pin(async { no_policies() })
    }

    /// Deletes a SandboxPolicy.
    fn delete_policy(&self, namespace: &str, name: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let _ = (namespace, name);
        Box::pin(async { no_policies() })
    }

    /// A Sandbox's egress record (empty when it has no network).
    fn egress(
        &self,
        namespace: &str,
        sandbox: &str,
        follow: bool,
    ) -> BoxFuture<'_, Result<EgressFeed, ApiError>> {
        let _ = (namespace, sandbox, follow);
        Box::pin(async {
            Err(ApiError::new(
                Code::NotImplemented,
                "this backend keeps no egress record; read the egress proxy's",
            ))
        })
    }

    /// The backend's own Prometheus metrics (exposition text, appended to the gateway's).
    fn metrics_text(&self) -> String {
        String::new()
    }

    /// Pulls an image into the local cache, reporting progress as JSON events
    /// (`{"type":"progress","digest","done","total"}`, then `{"type":"done",...}` or
    /// `{"type":"error","code","message"}`). Only backends that run images themselves can.
    fn pull_image(&self, image: &str) -> BoxFuture<'_, Result<EventStream, ApiError>> {
        let _ = image;
        Box::pin(async {
            Err(ApiError::new(
                Code::NotImplemented,
                "this backend does not pull images itself; the cluster's nodes do",
            ))
        })
    }
}
