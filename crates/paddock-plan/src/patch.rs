//! Metadata edits as data, and JSON merge patches (RFC 7386) built from them.
//!
//! A [`MetadataPatch`] says which labels and annotations to set or remove and, optionally, the
//! owner references to write and the `resourceVersion` the write is conditional on. The
//! Kubernetes driver sends [`MetadataPatch::to_merge_patch`] (a `resourceVersion` inside a merge
//! patch makes the apiserver reject it with 409 when the object changed); the embedded driver
//! calls [`MetadataPatch::apply`] inside its compare-and-swap.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use paddock_api::v1beta1::{PodMetadata, Sandbox};

/// Label and annotation edits on one object, with optional owner references and lock.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataPatch {
    /// When set, the write must fail with a conflict unless the object still has this
    /// `resourceVersion` (optimistic lock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Labels to set (`Some`) or remove (`None`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Option<String>>,
    /// Annotations to set (`Some`) or remove (`None`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, Option<String>>,
    /// When set, the complete new list of owner references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_references: Option<Vec<OwnerReference>>,
}

impl MetadataPatch {
    /// A patch locked to `resource_version` (nothing to change yet).
    pub fn locked(resource_version: Option<&str>) -> Self {
        Self {
            resource_version: resource_version.map(str::to_owned),
            ..Self::default()
        }
    }

    /// Whether the patch changes nothing (the lock alone is not a change).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty() && self.owner_references.is_none()
    }

    /// Sets a label.
    pub fn set_label(&mut self, key: &str, value: &str) -> &mut Self {
        self.labels.insert(key.to_owned(), Some(value.to_owned()));
        self
    }

    /// Removes a label.
    pub fn remove_label(&mut self, key: &str) -> &mut Self {
        self.labels.insert(key.to_owned(), None);
        self
    }

    /// Sets an annotation.
    pub fn set_annotation(&mut self, key: &str, value: &str) -> &mut Self {
        self.annotations
            .insert(key.to_owned(), Some(value.to_owned()));
        self
    }

    /// Removes an annotation.
    pub fn remove_annotation(&mut self, key: &str) -> &mut Self {
        self.annotations.insert(key.to_owned(), None);
        self
    }

    /// The edits that turn `current` labels into `desired` ones.
    pub fn labels_diff(
        &mut self,
        current: &BTreeMap<String, String>,
        desired: &BTreeMap<String, String>,
    ) -> &mut Self {
        diff_into(&mut self.labels, current, desired);
        self
    }

    /// The edits that turn `current` annotations into `desired` ones.
    pub fn annotations_diff(
        &mut self,
        current: &BTreeMap<String, String>,
        desired: &BTreeMap<String, String>,
    ) -> &mut Self {
        diff_into(&mut self.annotations, current, desired);
        self
    }

    /// Applies the edits to `meta` (the lock is the caller's to check). Empty maps become
    /// `None`, as the apiserver returns them.
    pub fn apply(&self, meta: &mut ObjectMeta) {
        apply_map(&mut meta.labels, &self.labels);
        apply_map(&mut meta.annotations, &self.annotations);
        if let Some(refs) = &self.owner_references {
            meta.owner_references = if refs.is_empty() {
                None
            } else {
                Some(refs.clone())
            };
        }
    }

    /// The `metadata` member of a JSON merge patch: removals are `null`, a lock is
    /// `resourceVersion`.
    pub fn to_metadata_value(&self) -> Value {
        let mut meta = Map::new();
        if let Some(rv) = &self.resource_version {
            meta.insert("resourceVersion".to_owned(), Value::String(rv.clone()));
        }
        if !self.labels.is_empty() {
            meta.insert("labels".to_owned(), edits_value(&self.labels));
        }
        if !self.annotations.is_empty() {
            meta.insert("annotations".to_owned(), edits_value(&self.annotations));
        }
        if let Some(refs) = &self.owner_references {
            meta.insert(
                "ownerReferences".to_owned(),
                serde_json::to_value(refs).unwrap_or(Value::Null),
            );
        }
        Value::Object(meta)
    }

    /// The whole JSON merge patch: `{"metadata": {...}}`.
    pub fn to_merge_patch(&self) -> Value {
        let mut root = Map::new();
        root.insert("metadata".to_owned(), self.to_metadata_value());
        Value::Object(root)
    }
}

fn diff_into(
    edits: &mut BTreeMap<String, Option<String>>,
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) {
    for (k, v) in desired {
        if current.get(k) != Some(v) {
            edits.insert(k.clone(), Some(v.clone()));
        }
    }
    for k in current.keys() {
        if !desired.contains_key(k) {
            edits.insert(k.clone(), None);
        }
    }
}

fn apply_map(
    target: &mut Option<BTreeMap<String, String>>,
    edits: &BTreeMap<String, Option<String>>,
) {
    if edits.is_empty() {
        return;
    }
    let mut map = target.take().unwrap_or_default();
    for (k, v) in edits {
        match v {
            Some(v) => {
                map.insert(k.clone(), v.clone());
            }
            None => {
                map.remove(k);
            }
        }
    }
    *target = if map.is_empty() { None } else { Some(map) };
}

fn edits_value(edits: &BTreeMap<String, Option<String>>) -> Value {
    Value::Object(
        edits
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_ref().map_or(Value::Null, |s| Value::String(s.clone())),
                )
            })
            .collect(),
    )
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`: changed members are given,
/// removed members are `null`, arrays are replaced whole. `Value::Null` input on either side
/// is treated as an absent document.
pub fn merge_patch_between(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) if ov == nv => {}
                    Some(ov @ Value::Object(_)) if nv.is_object() => {
                        patch.insert(k.clone(), merge_patch_between(ov, nv));
                    }
                    _ => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(patch)
        }
        (_, n) => n.clone(),
    }
}

/// Applies a JSON merge patch (RFC 7386) to `target`.
pub fn apply_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.shift_remove(k);
            } else {
                let entry = t.entry(k.clone()).or_insert(Value::Null);
                apply_merge_patch(entry, v);
            }
        }
    }
}

/// Edits to a Sandbox: its metadata (with optional lock) and, optionally, the complete new
/// pod-template metadata (what claims write when they adopt or refresh their Sandbox).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxPatch {
    /// Sandbox name.
    pub name: String,
    /// Labels, annotations, owner references, lock.
    pub metadata: MetadataPatch,
    /// When set, replaces `spec.podTemplate.metadata` whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_metadata: Option<PodMetadata>,
}

impl SandboxPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.metadata.is_empty() && self.pod_template_metadata.is_none()
    }

    /// Applies the edits to a Sandbox (for a driver that writes whole objects).
    pub fn apply(&self, sandbox: &mut Sandbox) {
        self.metadata.apply(&mut sandbox.metadata);
        if let Some(m) = &self.pod_template_metadata {
            sandbox.spec.blueprint.pod_template.metadata = Some(m.clone());
        }
    }

    /// The edits as one JSON merge patch against `current` (keys of the current pod-template
    /// metadata that the new one drops are sent as `null`).
    pub fn to_merge_patch(&self, current: &Sandbox) -> Value {
        let mut root = Map::new();
        root.insert("metadata".to_owned(), self.metadata.to_metadata_value());
        if let Some(m) = &self.pod_template_metadata {
            let old = serde_json::to_value(&current.spec.blueprint.pod_template.metadata)
                .unwrap_or(Value::Null);
            let new = serde_json::to_value(m).unwrap_or(Value::Null);
            let mut pod_template = Map::new();
            pod_template.insert("metadata".to_owned(), merge_patch_between(&old, &new));
            let mut spec = Map::new();
            spec.insert("podTemplate".to_owned(), Value::Object(pod_template));
            root.insert("spec".to_owned(), Value::Object(spec));
        }
        Value::Object(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_applies_sets_removals_and_owner_references() {
        let mut meta = ObjectMeta {
            labels: Some(BTreeMap::from([
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
            ])),
            ..ObjectMeta::default()
        };
        let mut p = MetadataPatch::default();
        p.set_label("a", "9")
            .remove_label("b")
            .set_annotation("x", "y");
        p.apply(&mut meta);
        assert_eq!(
            meta.labels,
            Some(BTreeMap::from([("a".into(), "9".into())]))
        );
        assert_eq!(
            meta.annotations,
            Some(BTreeMap::from([("x".into(), "y".into())]))
        );
        let mut q = MetadataPatch::default();
        q.remove_label("a").remove_annotation("x");
        q.apply(&mut meta);
        assert_eq!(meta.labels, None);
        assert_eq!(meta.annotations, None);
    }

    #[test]
    fn merge_patch_carries_nulls_and_the_lock() {
        let mut p = MetadataPatch::locked(Some("42"));
        p.set_label("a", "1").remove_annotation("gone");
        assert_eq!(
            p.to_merge_patch(),
            json!({"metadata": {"resourceVersion": "42", "labels": {"a": "1"}, "annotations": {"gone": null}}})
        );
        assert!(MetadataPatch::locked(Some("1")).is_empty());
    }

    #[test]
    fn merge_patch_between_round_trips_through_apply() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "f": "x"});
        let new = json!({"a": 1, "b": {"c": 5}, "e": [2], "g": true});
        let patch = merge_patch_between(&old, &new);
        assert_eq!(
            patch,
            json!({"b": {"c": 5, "d": null}, "e": [2], "g": true, "f": null})
        );
        let mut target = old.clone();
        apply_merge_patch(&mut target, &patch);
        assert_eq!(target, new);
    }

    #[test]
    fn diffs_produce_minimal_edits() {
        let cur = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]);
        let want = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("c".to_owned(), "3".to_owned()),
        ]);
        let mut p = MetadataPatch::default();
        p.labels_diff(&cur, &want);
        assert_eq!(
            p.labels,
            BTreeMap::from([
                ("b".to_owned(), None),
                ("c".to_owned(), Some("3".to_owned()))
            ])
        );
    }
}
