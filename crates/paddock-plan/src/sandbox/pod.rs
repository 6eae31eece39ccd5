//! The pod a Sandbox runs and the metadata it carries (contract §2.2 step 4, Pod and PVCs):
//! the object to create, and the label/annotation sync of an existing pod with its
//! `propagated-labels` / `propagated-annotations` bookkeeping.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use paddock_api::names::{
    CREATED_BY, PROPAGATED_ANNOTATIONS, PROPAGATED_LABELS, SANDBOX_NAME_HASH,
    SANDBOX_TEMPLATE_REF_HASH, TRACE_CONTEXT, WARM_POOL_SANDBOX, is_reserved_key,
    normalize_created_by,
};
use paddock_api::v1beta1::{PersistentVolumeClaimTemplate, Sandbox, SandboxWarmPool};

use super::observe::PodObservation;
use crate::ownership::{controller_of_meta, controller_ref, group_of};
use crate::patch::MetadataPatch;
use paddock_api::names::EXTENSIONS_GROUP;

/// Extension labels a Sandbox passes on to its pod, in the order upstream reconciles them.
pub const EXTENSION_POD_LABELS: [&str; 2] = [WARM_POOL_SANDBOX, SANDBOX_TEMPLATE_REF_HASH];

/// The controller reference to `sandbox` its children carry.
pub fn sandbox_owner_ref(sandbox: &Sandbox) -> OwnerReference {
    controller_ref(
        Sandbox::API_VERSION,
        Sandbox::KIND,
        sandbox.metadata.name.as_deref().unwrap_or_default(),
        sandbox.metadata.uid.as_deref().unwrap_or_default(),
    )
}

/// `<vct>-<sandbox>`.
pub fn pvc_name(vct: &PersistentVolumeClaimTemplate, sandbox_name: &str) -> String {
    paddock_api::names::pvc_name(vct.name(), sandbox_name)
}

/// Whether an annotation key may not come from a user pod template.
fn is_reserved_annotation(key: &str) -> bool {
    is_reserved_key(key) || key == TRACE_CONTEXT
}

fn template_labels(sandbox: &Sandbox) -> BTreeMap<String, String> {
    sandbox
        .spec
        .blueprint
        .pod_template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn template_annotations(sandbox: &Sandbox) -> BTreeMap<String, String> {
    sandbox
        .spec
        .blueprint
        .pod_template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

fn sandbox_label<'a>(sandbox: &'a Sandbox, key: &str) -> Option<&'a str> {
    sandbox
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Labels passed from the Sandbox to its pod while an extensions controller owns the Sandbox:
/// `warm-pool-sandbox` while a SandboxWarmPool controls it, `sandbox-template-ref-hash` while
/// any `extensions.agents.x-k8s.io` kind does. (`claim-uid` is deliberately not passed on.)
pub fn extension_labels(sandbox: &Sandbox) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(owner) = controller_of_meta(&sandbox.metadata) else {
        return out;
    };
    if group_of(&owner.api_version) != EXTENSIONS_GROUP {
        return out;
    }
    if owner.kind == SandboxWarmPool::KIND
        && let Some(v) = sandbox_label(sandbox, WARM_POOL_SANDBOX)
    {
        out.insert(WARM_POOL_SANDBOX.to_owned(), v.to_owned());
    }
    if let Some(v) = sandbox_label(sandbox, SANDBOX_TEMPLATE_REF_HASH) {
        out.insert(SANDBOX_TEMPLATE_REF_HASH.to_owned(), v.to_owned());
    }
    out
}

fn created_by(sandbox: &Sandbox) -> Option<&'static str> {
    sandbox_label(sandbox, CREATED_BY).map(normalize_created_by)
}

fn join_sorted(keys: &BTreeSet<String>) -> String {
    keys.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// The PVC to create for one volume claim template.
pub fn desired_pvc(
    sandbox: &Sandbox,
    vct: &PersistentVolumeClaimTemplate,
    hash: &str,
) -> PersistentVolumeClaim {
    let name = sandbox.metadata.name.as_deref().unwrap_or_default();
    let meta = vct.metadata.as_ref();
    let mut labels = meta.and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(SANDBOX_NAME_HASH.to_owned(), hash.to_owned());
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(pvc_name(vct, name)),
            namespace: sandbox.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.and_then(|m| m.annotations.clone()),
            owner_references: Some(vec![sandbox_owner_ref(sandbox)]),
            ..ObjectMeta::default()
        },
        spec: Some(vct.spec.clone()),
        status: None,
    }
}

/// `existing` volumes with one PVC-backed volume per claim template, replacing any volume of the
/// same name (StatefulSet semantics).
pub fn merge_claim_volumes(
    existing: Option<Vec<Volume>>,
    vcts: &[PersistentVolumeClaimTemplate],
    sandbox_name: &str,
) -> Option<Vec<Volume>> {
    if vcts.is_empty() {
        return existing;
    }
    let names: BTreeSet<&str> = vcts
        .iter()
        .map(PersistentVolumeClaimTemplate::name)
        .collect();
    let mut volumes: Vec<Volume> = existing
        .unwrap_or_default()
        .into_iter()
        .filter(|v| !names.contains(v.name.as_str()))
        .collect();
    volumes.extend(vcts.iter().map(|vct| Volume {
        name: vct.name().to_owned(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: pvc_name(vct, sandbox_name),
            read_only: None,
        }),
        ..Volume::default()
    }));
    Some(volumes)
}

/// The pod to create for a Sandbox: named like it, labels from the template minus reserved keys
/// plus the name hash, extension labels and normalised `created-by`; template annotations minus
/// reserved keys plus the propagation bookkeeping; the template spec with claim-template volumes.
pub fn desired_pod(sandbox: &Sandbox, hash: &str) -> Pod {
    let name = sandbox.metadata.name.as_deref().unwrap_or_default();
    let mut labels = BTreeMap::new();
    let mut label_keys = BTreeSet::new();
    for (k, v) in template_labels(sandbox) {
        if is_reserved_key(&k) {
            continue;
        }
        label_keys.insert(k.clone());
        labels.insert(k, v);
    }
    labels.insert(SANDBOX_NAME_HASH.to_owned(), hash.to_owned());
    labels.extend(extension_labels(sandbox));
    if let Some(v) = created_by(sandbox) {
        labels.insert(CREATED_BY.to_owned(), v.to_owned());
    }
    let mut annotations = BTreeMap::new();
    let mut annotation_keys = BTreeSet::new();
    for (k, v) in template_annotations(sandbox) {
        if is_reserved_annotation(&k) {
            continue;
        }
        annotation_keys.insert(k.clone());
        annotations.insert(k, v);
    }
    if !label_keys.is_empty() {
        annotations.insert(PROPAGATED_LABELS.to_owned(), join_sorted(&label_keys));
    }
    if !annotation_keys.is_empty() {
        annotations.insert(
            PROPAGATED_ANNOTATIONS.to_owned(),
            join_sorted(&annotation_keys),
        );
    }
    let mut spec = sandbox.spec.blueprint.pod_template.spec.clone();
    let vcts = sandbox
        .spec
        .blueprint
        .volume_claim_templates
        .as_deref()
        .unwrap_or_default();
    spec.volumes = merge_claim_volumes(spec.volumes.take(), vcts, name);
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: sandbox.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: if annotations.is_empty() {
                None
            } else {
                Some(annotations)
            },
            owner_references: Some(vec![sandbox_owner_ref(sandbox)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The label and annotation edits that bring an existing pod in line with its Sandbox (pod spec
/// is never touched): name hash; template labels and annotations minus reserved keys; removal of
/// keys propagated earlier but gone from the template (and of reserved keys an old controller
/// propagated); extension labels; `created-by`; updated bookkeeping.
pub fn pod_metadata_edits(pod: &PodObservation, sandbox: &Sandbox, hash: &str) -> MetadataPatch {
    let mut labels = pod.labels.clone();
    labels.insert(SANDBOX_NAME_HASH.to_owned(), hash.to_owned());
    let tmpl_labels = template_labels(sandbox);
    let mut label_keys = BTreeSet::new();
    for (k, v) in &tmpl_labels {
        if is_reserved_key(k) {
            continue;
        }
        labels.insert(k.clone(), v.clone());
        label_keys.insert(k.clone());
    }
    let propagated_labels = pod
        .annotations
        .get(PROPAGATED_LABELS)
        .cloned()
        .unwrap_or_default();
    for k in propagated_labels.split(',').filter(|k| !k.is_empty()) {
        if is_reserved_key(k) {
            if k != SANDBOX_NAME_HASH {
                labels.remove(k);
            }
            continue;
        }
        if !tmpl_labels.contains_key(k) {
            labels.remove(k);
        }
    }
    let ext = extension_labels(sandbox);
    for key in EXTENSION_POD_LABELS {
        match ext.get(key) {
            Some(v) => {
                labels.insert(key.to_owned(), v.clone());
            }
            None => {
                labels.remove(key);
            }
        }
    }
    match created_by(sandbox) {
        Some(v) => {
            labels.insert(CREATED_BY.to_owned(), v.to_owned());
        }
        None => {
            labels.remove(CREATED_BY);
        }
    }

    let mut annotations = pod.annotations.clone();
    let tmpl_annotations = template_annotations(sandbox);
    let mut annotation_keys = BTreeSet::new();
    for (k, v) in &tmpl_annotations {
        if is_reserved_annotation(k) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        annotation_keys.insert(k.clone());
    }
    let propagated_annotations = pod
        .annotations
        .get(PROPAGATED_ANNOTATIONS)
        .cloned()
        .unwrap_or_default();
    for k in propagated_annotations.split(',').filter(|k| !k.is_empty()) {
        if is_reserved_annotation(k) {
            if k != PROPAGATED_LABELS && k != PROPAGATED_ANNOTATIONS {
                annotations.remove(k);
            }
            continue;
        }
        if !tmpl_annotations.contains_key(k) {
            annotations.remove(k);
        }
    }
    for (key, keys) in [
        (PROPAGATED_LABELS, &label_keys),
        (PROPAGATED_ANNOTATIONS, &annotation_keys),
    ] {
        let joined = join_sorted(keys);
        if annotations.get(key).map_or("", String::as_str) != joined {
            annotations.insert(key.to_owned(), joined);
        }
    }

    let mut patch = MetadataPatch::default();
    patch
        .labels_diff(&pod.labels, &labels)
        .annotations_diff(&pod.annotations, &annotations);
    patch
}
