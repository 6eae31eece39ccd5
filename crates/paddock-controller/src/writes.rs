//! The API writes the controller makes, in one place: create, JSON merge patch (a
//! `resourceVersion` in the patch makes it conditional), status merge patch, replace, and
//! delete with UID/resourceVersion preconditions. Failures are classified into the planners'
//! failure kinds. `deploy/rbac` grants exactly these verbs (a test cross-checks it).

use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::{Api, Client, Resource};
use paddock_control::WriteError;
use paddock_kube::classify;
use paddock_plan::outcome::{ObjectRef, Propagation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Every (API group, resource, verbs) the controller uses: the reflectors' list/watch, the
/// controllers' writes, certificates, the CA injection and leader election. `deploy/rbac`
/// grants exactly these (the end-to-end test checks both directions). The `…/finalizers`
/// updates are never called: the apiserver's OwnerReferencesPermissionEnforcement requires
/// them to set `blockOwnerDeletion` on a child of that owner.
pub const API_CALLS: &[(&str, &str, &[&str])] = &[
    ("", "pods", &["list", "watch", "create", "patch", "delete"]),
    (
        "",
        "services",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
    ),
    (
        "",
        "persistentvolumeclaims",
        &["list", "watch", "create", "patch"],
    ),
    ("", "secrets", &["get", "create", "update"]),
    (
        "agents.x-k8s.io",
        "sandboxes",
        &["list", "watch", "create", "patch", "delete"],
    ),
    ("agents.x-k8s.io", "sandboxes/status", &["patch"]),
    ("paddock.dev", "sandboxpolicies", &["get"]),
    ("agents.x-k8s.io", "sandboxes/finalizers", &["update"]),
    (
        "extensions.agents.x-k8s.io",
        "sandboxtemplates",
        &["get", "list", "watch", "patch"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxtemplates/finalizers",
        &["update"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxclaims",
        &["get", "list", "watch", "patch", "delete"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxclaims/status",
        &["patch"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxclaims/finalizers",
        &["update"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxwarmpools",
        &["list", "watch"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxwarmpools/status",
        &["patch"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxwarmpools/finalizers",
        &["update"],
    ),
    (
        "networking.k8s.io",
        "networkpolicies",
        &["list", "watch", "create", "update", "delete"],
    ),
    ("events.k8s.io", "events", &["create", "patch"]),
    (
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
    ),
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &["patch"],
    ),
];

/// Field manager of every write (upstream's for Sandbox children).
pub const FIELD_MANAGER: &str = "sandbox-controller";

fn failure(e: &kube::Error) -> WriteError {
    let (kind, message) = classify(e);
    WriteError::new(kind, message)
}

/// Namespaced writes through one client.
#[derive(Clone)]
pub struct Writer {
    client: Client,
}

impl Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer through `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates `obj` in `ns` with the controller's field manager.
    ///
    /// # Errors
    /// The classified API failure.
    pub async fn create<K>(&self, ns: &str, obj: &K) -> Result<K, WriteError>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
    {
        let pp = PostParams {
            dry_run: false,
            field_manager: Some(FIELD_MANAGER.to_owned()),
        };
        self.api::<K>(ns)
            .create(&pp, obj)
            .await
            .map_err(|e| failure(&e))
    }

    /// Sends a JSON merge patch.
    ///
    /// # Errors
    /// The classified API failure (409 when a `resourceVersion` in the patch is stale).
    pub async fn merge_patch<K>(&self, ns: &str, name: &str, patch: &Value) -> Result<K, WriteError>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.api::<K>(ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| failure(&e))
    }

    /// Sends a JSON merge patch to the status subresource.
    ///
    /// # Errors
    /// The classified API failure.
    pub async fn patch_status<K>(
        &self,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<K, WriteError>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.api::<K>(ns)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| failure(&e))
    }

    /// Replaces `obj` (conditional on its `metadata.resourceVersion`).
    ///
    /// # Errors
    /// The classified API failure.
    pub async fn replace<K>(&self, ns: &str, name: &str, obj: &K) -> Result<K, WriteError>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
    {
        let pp = PostParams {
            dry_run: false,
            field_manager: Some(FIELD_MANAGER.to_owned()),
        };
        self.api::<K>(ns)
            .replace(name, &pp, obj)
            .await
            .map_err(|e| failure(&e))
    }

    /// Deletes `target` with its UID and resourceVersion as preconditions.
    ///
    /// # Errors
    /// The classified API failure (409 when a precondition does not hold, 404 when it is gone).
    pub async fn delete<K>(
        &self,
        ns: &str,
        target: &ObjectRef,
        propagation: Option<Propagation>,
    ) -> Result<(), WriteError>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let dp = DeleteParams {
            preconditions: (target.uid.is_some() || target.resource_version.is_some()).then(|| {
                Preconditions {
                    uid: target.uid.clone(),
                    resource_version: target.resource_version.clone(),
                }
            }),
            propagation_policy: propagation.map(|p| match p {
                Propagation::Background => PropagationPolicy::Background,
                Propagation::Foreground => PropagationPolicy::Foreground,
            }),
            ..DeleteParams::default()
        };
        match self.api::<K>(ns).delete(&target.name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) => Err(failure(&e)),
        }
    }
}
