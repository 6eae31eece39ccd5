//! Controller references: who controls an object, and the references the planners write.
//!
//! Kubernetes garbage collection (and the embedded store's equivalent) follows these references,
//! so every object a planner creates carries exactly one controller reference with
//! `blockOwnerDeletion`, as upstream's `SetControllerReference` writes it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use paddock_api::names::EXTENSIONS_GROUP;

/// How an object relates to a would-be owner.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ownership<'a> {
    /// Its controller reference points at the owner's UID.
    Owned,
    /// It has no controller reference.
    Unowned,
    /// Its controller reference points at something else.
    OwnedByOther(&'a OwnerReference),
}

/// The controller reference among `refs`, if any.
pub fn controller_of(refs: &[OwnerReference]) -> Option<&OwnerReference> {
    refs.iter().find(|r| r.controller == Some(true))
}

/// The controller reference of an object, if any.
pub fn controller_of_meta(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .and_then(|refs| controller_of(refs))
}

/// How the object with these references relates to the owner with `owner_uid`.
pub fn ownership<'a>(refs: &'a [OwnerReference], owner_uid: &str) -> Ownership<'a> {
    match controller_of(refs) {
        None => Ownership::Unowned,
        Some(r) if !owner_uid.is_empty() && r.uid == owner_uid => Ownership::Owned,
        Some(r) => Ownership::OwnedByOther(r),
    }
}

/// Whether the object is controlled by the owner with `owner_uid`.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    let refs = meta.owner_references.as_deref().unwrap_or_default();
    matches!(ownership(refs, owner_uid), Ownership::Owned)
}

/// The API group of an `apiVersion` (`""` for the core group).
pub fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(group, _)| group)
}

/// Whether the reference points at an `extensions.agents.x-k8s.io` object of `kind` (any
/// version).
pub fn is_extensions_kind(r: &OwnerReference, kind: &str) -> bool {
    group_of(&r.api_version) == EXTENSIONS_GROUP && r.kind == kind
}

/// A controller reference (`controller` and `blockOwnerDeletion` true).
pub fn controller_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// `refs` with `new` as the controller: any existing controller reference is replaced, other
/// references are kept (what `SetControllerReference` does on an unowned object).
pub fn with_controller(refs: &[OwnerReference], new: OwnerReference) -> Vec<OwnerReference> {
    let mut out: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| r.controller != Some(true) && r.uid != new.uid)
        .cloned()
        .collect();
    out.push(new);
    out
}

/// `Kind/Name (UID: uid)`, how upstream names a foreign owner in its errors.
pub fn describe_owner(r: &OwnerReference) -> String {
    format!("{}/{} (UID: {})", r.kind, r.name, r.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_distinguishes_owned_unowned_and_foreign() {
        let mine = controller_ref("agents.x-k8s.io/v1beta1", "Sandbox", "s", "u1");
        let other = controller_ref("apps/v1", "ReplicaSet", "r", "u2");
        let plain = OwnerReference {
            controller: None,
            ..other.clone()
        };
        assert_eq!(
            ownership(std::slice::from_ref(&mine), "u1"),
            Ownership::Owned
        );
        assert_eq!(
            ownership(std::slice::from_ref(&plain), "u1"),
            Ownership::Unowned
        );
        assert_eq!(
            ownership(std::slice::from_ref(&other), "u1"),
            Ownership::OwnedByOther(&other)
        );
        assert_eq!(
            ownership(&[mine], ""),
            Ownership::OwnedByOther(&controller_ref(
                "agents.x-k8s.io/v1beta1",
                "Sandbox",
                "s",
                "u1"
            ))
        );
    }

    #[test]
    fn with_controller_replaces_the_controller_and_keeps_plain_refs() {
        let plain = OwnerReference {
            controller: None,
            ..controller_ref("v1", "ConfigMap", "c", "u0")
        };
        let old = controller_ref("x/v1", "Old", "o", "u1");
        let new = controller_ref("y/v1", "New", "n", "u2");
        let refs = with_controller(&[plain.clone(), old], new.clone());
        assert_eq!(refs, vec![plain, new]);
    }

    #[test]
    fn groups_are_read_from_api_versions() {
        assert_eq!(group_of("v1"), "");
        assert_eq!(
            group_of("extensions.agents.x-k8s.io/v1alpha1"),
            "extensions.agents.x-k8s.io"
        );
    }
}
