//! The list, map and struct markers of Kubernetes core types that CRDs embed (PodSpec,
//! PersistentVolumeClaimSpec, NetworkPolicy rules, metav1 types), as controller-gen renders
//! them. Kept as data so the schema generator stays generic.

use crate::schema::CoreAnnotation;
use crate::schema::CoreAnnotation::{AtomicList, AtomicMap, AtomicStruct, Default, MapList, Optional, SetList};

/// Markers of one schema definition (k8s-openapi's definition name).
pub(crate) fn markers(def: &str) -> &'static [CoreAnnotation] {
    let _ = (AtomicList(""), SetList(""), AtomicMap(""), AtomicStruct, Default("", ""), Optional(""), MapList("", &[]));
    match def {
        _ => &[],
    }
}
