//! Template hashes and semantic equality, the two tests a warm pool uses to tell stale members.
//!
//! The hashes are `name_hash` (FNV-1a 32) over the JSON of the template's blueprint or pod
//! template. paddock's JSON has k8s-openapi's field order, not Go's, so a member created by
//! upstream's controller carries a different hash; staleness then falls back to the semantic
//! comparison, which is what decides anyway (a hash match is only a fast path).

use paddock_api::names::name_hash;
use paddock_api::v1beta1::{PodTemplate, SandboxBlueprint};
use serde::Serialize;
use serde_json::Value;

/// `NameHash(json(template.spec SandboxBlueprint))`: the `sandbox-template-hash` label.
pub fn blueprint_hash(blueprint: &SandboxBlueprint) -> String {
    name_hash(&serde_json::to_string(blueprint).unwrap_or_default())
}

/// `NameHash(json(template.spec.podTemplate))`: the deprecated `sandbox-pod-template-hash`.
pub fn pod_template_hash(pod_template: &PodTemplate) -> String {
    name_hash(&serde_json::to_string(pod_template).unwrap_or_default())
}

/// Equality as `equality.Semantic.DeepEqual` sees it for API objects: an absent field, `null`,
/// an empty list and an empty map are all the same.
pub fn semantically_equal<T: Serialize>(a: &T, b: &T) -> bool {
    let a = serde_json::to_value(a).map(normalize);
    let b = serde_json::to_value(b).map(normalize);
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn normalize(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, normalize(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplate {
        PodTemplate {
            spec: PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            },
            metadata: None,
        }
    }

    #[test]
    fn hashes_follow_content() {
        let a = SandboxBlueprint {
            pod_template: template("a"),
            ..SandboxBlueprint::default()
        };
        let b = SandboxBlueprint {
            pod_template: template("b"),
            ..SandboxBlueprint::default()
        };
        assert_eq!(blueprint_hash(&a), blueprint_hash(&a.clone()));
        assert_ne!(blueprint_hash(&a), blueprint_hash(&b));
        assert_ne!(
            pod_template_hash(&a.pod_template),
            pod_template_hash(&b.pod_template)
        );
        assert_eq!(blueprint_hash(&a).len(), 8);
    }

    #[test]
    fn empty_and_absent_are_semantically_equal() {
        let mut a = template("a").spec;
        let mut b = a.clone();
        a.volumes = Some(vec![]);
        b.volumes = None;
        assert!(semantically_equal(&a, &b));
        b.hostname = Some("h".into());
        assert!(!semantically_equal(&a, &b));
    }
}
