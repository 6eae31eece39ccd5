//! The API calls the controllers make, in one place: create, JSON merge patch (a
//! `resourceVersion` in the patch makes it conditional), status merge patch, replace, and
//! delete with UID/resourceVersion preconditions. Failures are classified into the planners'
//! [`FailureKind`]s. `deploy/rbac` grants exactly these verbs (a test cross-checks it).

use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::{Api, Client, Resource};
use paddock_plan::outcome::{FailureKind, ObjectRef, Propagation};
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
        &["list", "watch", "create", "patch", "update", "delete"],
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
    ("agents.x-k8s.io", "sandboxes/finalizers", &["update"]),
    (
        "extensions.agents.x-k8s.io",
        "sandboxtemplates",
        &["list", "watch", "patch"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxtemplates/finalizers",
        &["update"],
    ),
    (
        "extensions.agents.x-k8s.io",
        "sandboxclaims",
        &["list", "watch", "patch", "delete"],
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

/// An API call that failed, classified for the planners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiFailure {
    /// 409, 404, AlreadyExists, 422 or other.
    pub kind: FailureKind,
    /// The apiserver's message (or the transport error).
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Classifies a client error.
pub fn classify(err: &kube::Error) -> ApiFailure {
    match err {
        kube::Error::Api(status) => {
            let kind = match status.code {
                409 if status.reason == "AlreadyExists" => FailureKind::AlreadyExists,
                409 => FailureKind::Conflict,
                404 => FailureKind::NotFound,
                422 => FailureKind::Invalid,
                _ => FailureKind::Other,
            };
            let message = if status.message.is_empty() {
                format!("{} ({})", status.reason, status.code)
            } else {
                status.message.clone()
            };
            ApiFailure { kind, message }
        }
        other => ApiFailure {
            kind: FailureKind::Other,
            message: other.to_string(),
        },
    }
}

/// Namespaced writes through one client.
#[derive(Clone)]
pub struct Driver {
    client: Client,
}

impl Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver writing through `client`.
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
    pub async fn create<K>(&self, ns: &str, obj: &K) -> Result<K, ApiFailure>
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
            .map_err(|e| classify(&e))
    }

    /// Sends a JSON merge patch.
    ///
    /// # Errors
    /// The classified API failure (409 when a `resourceVersion` in the patch is stale).
    pub async fn merge_patch<K>(&self, ns: &str, name: &str, patch: &Value) -> Result<K, ApiFailure>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.api::<K>(ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| classify(&e))
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
    ) -> Result<K, ApiFailure>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.api::<K>(ns)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| classify(&e))
    }

    /// Replaces `obj` (conditional on its `metadata.resourceVersion`).
    ///
    /// # Errors
    /// The classified API failure.
    pub async fn replace<K>(&self, ns: &str, name: &str, obj: &K) -> Result<K, ApiFailure>
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
            .map_err(|e| classify(&e))
    }

    /// Deletes `target` with its UID and resourceVersion as preconditions. An object already
    /// gone counts as deleted.
    ///
    /// # Errors
    /// The classified API failure (409 when a precondition does not hold).
    pub async fn delete<K>(
        &self,
        ns: &str,
        target: &ObjectRef,
        propagation: Option<Propagation>,
    ) -> Result<(), ApiFailure>
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
            Err(e) => {
                let f = classify(&e);
                if f.kind == FailureKind::NotFound {
                    Ok(())
                } else {
                    Err(f)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.to_owned(),
            message: format!("{reason} message"),
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn failures_are_classified_like_the_planners_expect() {
        assert_eq!(
            classify(&api_error(409, "AlreadyExists")).kind,
            FailureKind::AlreadyExists
        );
        assert_eq!(
            classify(&api_error(409, "Conflict")).kind,
            FailureKind::Conflict
        );
        assert_eq!(
            classify(&api_error(404, "NotFound")).kind,
            FailureKind::NotFound
        );
        assert_eq!(
            classify(&api_error(422, "Invalid")).kind,
            FailureKind::Invalid
        );
        assert_eq!(
            classify(&api_error(500, "InternalError")).kind,
            FailureKind::Other
        );
        assert_eq!(
            classify(&api_error(422, "Invalid")).message,
            "Invalid message"
        );
    }
}
