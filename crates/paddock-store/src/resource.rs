//! Resource types: which kind of object an operation is about, independent of API version,
//! and the storage key an object lives under.

use std::fmt;

/// Identifies a kind of object the way the API server does: by group and plural, with the kind
/// name and scope needed to validate incoming objects.
///
/// The store is version-agnostic: objects of any version of the group are accepted and stored as
/// given (converting between versions is the caller's job). Values are plain constants:
///
/// ```
/// use paddock_store::ResourceType;
/// const SANDBOX: ResourceType = ResourceType::namespaced("agents.x-k8s.io", "sandboxes", "Sandbox");
/// assert_eq!(SANDBOX.id(), "sandboxes.agents.x-k8s.io");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// Lower-case plural, as in REST paths (`sandboxes`).
    pub plural: &'static str,
    /// The `kind` every stored object of this type must carry (`Sandbox`).
    pub kind: &'static str,
    /// Whether objects live in a namespace (all four Agent Sandbox kinds do).
    pub namespaced: bool,
}

impl ResourceType {
    /// A namespaced resource.
    pub const fn namespaced(group: &'static str, plural: &'static str, kind: &'static str) -> Self {
        Self {
            group,
            plural,
            kind,
            namespaced: true,
        }
    }

    /// A cluster-scoped resource.
    pub const fn cluster_scoped(
        group: &'static str,
        plural: &'static str,
        kind: &'static str,
    ) -> Self {
        Self {
            group,
            plural,
            kind,
            namespaced: false,
        }
    }

    /// `plural.group` (the CRD name), or `plural` for the core group: the name used in messages
    /// and storage keys.
    pub fn id(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether `api_version` (`group/version`, or `version` for the core group) belongs to this
    /// resource's group.
    pub fn accepts_api_version(&self, api_version: &str) -> bool {
        match api_version.split_once('/') {
            Some((group, version)) => {
                group == self.group && !self.group.is_empty() && !version.is_empty()
            }
            None => self.group.is_empty() && !api_version.is_empty(),
        }
    }

    /// The key prefix of this resource's objects, optionally in one namespace.
    pub(crate) fn key_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) => format!("{}/{ns}/", self.id()),
            None => format!("{}/", self.id()),
        }
    }

    pub(crate) fn key(&self, namespace: &str, name: &str) -> String {
        format!("{}/{namespace}/{name}", self.id())
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

/// Splits a storage key `resource-id/namespace/name` into its parts.
pub(crate) fn split_key(key: &str) -> Option<(&str, &str, &str)> {
    let (resource, rest) = key.split_once('/')?;
    let (namespace, name) = rest.split_once('/')?;
    (!resource.is_empty() && !name.is_empty() && !name.contains('/'))
        .then_some((resource, namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SANDBOX: ResourceType =
        ResourceType::namespaced("agents.x-k8s.io", "sandboxes", "Sandbox");
    const NODE: ResourceType = ResourceType::cluster_scoped("", "nodes", "Node");

    #[test]
    fn api_version_must_belong_to_the_group_but_any_version_is_accepted() {
        assert!(SANDBOX.accepts_api_version("agents.x-k8s.io/v1alpha1"));
        assert!(SANDBOX.accepts_api_version("agents.x-k8s.io/v1beta1"));
        assert!(!SANDBOX.accepts_api_version("extensions.agents.x-k8s.io/v1beta1"));
        assert!(!SANDBOX.accepts_api_version("v1"));
        assert!(!SANDBOX.accepts_api_version("agents.x-k8s.io/"));
        assert!(NODE.accepts_api_version("v1"));
        assert!(!NODE.accepts_api_version("apps/v1"));
    }

    #[test]
    fn keys_round_trip_including_cluster_scope() {
        let key = SANDBOX.key("default", "sb-1");
        assert_eq!(key, "sandboxes.agents.x-k8s.io/default/sb-1");
        assert_eq!(
            split_key(&key),
            Some(("sandboxes.agents.x-k8s.io", "default", "sb-1"))
        );
        assert_eq!(split_key(&NODE.key("", "n1")), Some(("nodes", "", "n1")));
        assert_eq!(split_key("nodes/n1"), None);
    }
}
