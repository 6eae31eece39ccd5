//! CustomResourceDefinitions of the four kinds, generated from the Rust types: both versions
//! served, v1beta1 stored, v1alpha1 deprecated with upstream's warning, printer columns, short
//! names, subresources and the conversion webhook stanza of upstream v0.5 (contract §1.1).
//! `paddock crds` prints them; the copies under `deploy/crds/` are checked against this code by
//! a test.

use serde_json::{Map, Value, json};

use crate::kinds::{Kind, Version};
use crate::schema::object_schema;

/// Where the API server sends ConversionReviews.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversionWebhook {
    /// Service name.
    pub service: String,
    /// Service namespace.
    pub namespace: String,
    /// URL path on the service.
    pub path: String,
    /// Service port.
    pub port: u16,
    /// The CA that signed the webhook's certificate, as the CRD field holds it: the PEM bundle
    /// base64-encoded. The controller injects it at start-up, so generated manifests leave it
    /// empty.
    pub ca_bundle: Option<String>,
}

impl Default for ConversionWebhook {
    /// Upstream's: `agent-sandbox-webhook-service` in `agent-sandbox-system`, `/convert`, port 443.
    fn default() -> Self {
        Self {
            service: "agent-sandbox-webhook-service".to_owned(),
            namespace: "agent-sandbox-system".to_owned(),
            path: "/convert".to_owned(),
            port: 443,
            ca_bundle: None,
        }
    }
}

/// The CRD of one kind. Without a webhook the CRD carries no conversion stanza (the API server
/// then converts by rewriting `apiVersion` only, which is lossy: use it for clusters that speak
/// v1beta1 alone).
pub fn crd(kind: Kind, webhook: Option<&ConversionWebhook>) -> Value {
    let versions: Vec<Value> = [Version::V1beta1, Version::V1alpha1]
        .into_iter()
        .map(|v| version_entry(kind, v))
        .collect();
    let mut spec = json!({
        "group": kind.group(),
        "names": {
            "kind": kind.as_str(),
            "listKind": format!("{}List", kind.as_str()),
            "plural": kind.plural(),
            "shortNames": kind.short_names(),
            "singular": kind.singular(),
        },
        "scope": "Namespaced",
        "versions": versions,
    });
    if let Some(w) = webhook {
        let mut client_config = json!({
            "service": {"name": w.service, "namespace": w.namespace, "path": w.path, "port": w.port}
        });
        if let Some(ca) = &w.ca_bundle {
            client_config["caBundle"] = json!(ca);
        }
        spec["conversion"] = json!({
            "strategy": "Webhook",
            "webhook": {"clientConfig": client_config, "conversionReviewVersions": ["v1", "v1beta1"]},
        });
    }
    let mut crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name(),
            "annotations": {"paddock.dev/generated-by": "paddock crds"},
            "labels": {"app.kubernetes.io/part-of": "agent-sandbox"},
        },
        "spec": spec,
    });
    sort_keys(&mut crd);
    crd
}

/// All four CRDs, in [`Kind::ALL`] order.
pub fn crds(webhook: Option<&ConversionWebhook>) -> Vec<Value> {
    Kind::ALL.into_iter().map(|k| crd(k, webhook)).collect()
}

/// The file name upstream uses for a kind's CRD (`agents.x-k8s.io_sandboxes.yaml`).
pub fn file_name(kind: Kind) -> String {
    format!("{}_{}.yaml", kind.group(), kind.plural())
}

/// The CRD as YAML, with the `---` header kubectl-friendly manifests carry.
pub fn crd_yaml(kind: Kind, webhook: Option<&ConversionWebhook>) -> String {
    format!("---\n{}", crate::yaml::to_string(&crd(kind, webhook)))
}

fn version_entry(kind: Kind, version: Version) -> Value {
    let mut entry = json!({
        "name": version.as_str(),
        "served": true,
        "storage": version == Version::STORAGE,
        "schema": {"openAPIV3Schema": object_schema(kind, version)},
    });
    if version == Version::V1alpha1 {
        entry["deprecated"] = json!(true);
        entry["deprecationWarning"] = json!(kind.deprecation_warning());
    }
    let columns = printer_columns(kind, version);
    if !columns.is_empty() {
        entry["additionalPrinterColumns"] = Value::Array(columns);
    }
    let mut subresources = Map::new();
    if kind.has_status() {
        subresources.insert("status".into(), json!({}));
    }
    if kind.has_scale(version) {
        subresources.insert(
            "scale".into(),
            json!({
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            }),
        );
    }
    if !subresources.is_empty() {
        entry["subresources"] = Value::Object(subresources);
    }
    entry
}

/// A printer column as the CRD declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: &'static str,
    /// `string`, `integer` or `date`.
    pub type_: &'static str,
    /// JSONPath into the object.
    pub json_path: &'static str,
}

const READY_STATUS: &str = ".status.conditions[?(@.type=='Ready')].status";
const READY_REASON: &str = ".status.conditions[?(@.type=='Ready')].reason";
const AGE: PrinterColumn = PrinterColumn {
    name: "Age",
    type_: "date",
    json_path: ".metadata.creationTimestamp",
};

/// The printer columns of a kind in a version (kubectl's `get` output; `paddock get` shows the
/// same).
pub fn columns(kind: Kind, version: Version) -> &'static [PrinterColumn] {
    const SANDBOX: &[PrinterColumn] = &[
        PrinterColumn {
            name: "Ready",
            type_: "string",
            json_path: READY_STATUS,
        },
        PrinterColumn {
            name: "Reason",
            type_: "string",
            json_path: READY_REASON,
        },
        AGE,
    ];
    const CLAIM: &[PrinterColumn] = &[
        PrinterColumn {
            name: "Ready",
            type_: "string",
            json_path: READY_STATUS,
        },
        PrinterColumn {
            name: "Sandbox",
            type_: "string",
            json_path: ".status.sandbox.name",
        },
        PrinterColumn {
            name: "Reason",
            type_: "string",
            json_path: READY_REASON,
        },
        AGE,
    ];
    const POOL: &[PrinterColumn] = &[
        PrinterColumn {
            name: "Ready",
            type_: "integer",
            json_path: ".status.readyReplicas",
        },
        PrinterColumn {
            name: "Desired",
            type_: "integer",
            json_path: ".spec.replicas",
        },
        AGE,
    ];
    match (kind, version) {
        (Kind::Sandbox, Version::V1beta1) => SANDBOX,
        (Kind::SandboxClaim, Version::V1beta1) => CLAIM,
        (Kind::SandboxWarmPool, _) => POOL,
        _ => &[],
    }
}

fn printer_columns(kind: Kind, version: Version) -> Vec<Value> {
    columns(kind, version)
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "jsonPath": c.json_path}))
        .collect()
}

/// Sorts object keys recursively so the output is stable and reads like controller-gen's.
pub(crate) fn sort_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, mut v) in entries {
                sort_keys(&mut v);
                map.insert(k, v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keywords a CRD schema may use (apiextensions/v1 JSONSchemaProps, minus what structural
    /// schemas forbid: `$ref`, `definitions`, `patternProperties`, `dependencies`, ...).
    const ALLOWED: &[&str] = &[
        "description",
        "type",
        "format",
        "title",
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "multipleOf",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
        "items",
        "allOf",
        "oneOf",
        "anyOf",
        "not",
        "properties",
        "additionalProperties",
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
    ];

    /// Checks the rules a Kubernetes API server applies to CRD schemas (structural schemas,
    /// list and map types, defaults of list-map keys), collecting violations with their path.
    fn check_structural(schema: &Value, path: &str, errors: &mut Vec<String>) {
        let Value::Object(obj) = schema else {
            errors.push(format!("{path}: schema is not an object"));
            return;
        };
        for key in obj.keys() {
            if !ALLOWED.contains(&key.as_str()) {
                errors.push(format!("{path}: keyword {key} is not allowed"));
            }
        }
        let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&json!(true));
        let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
        let ty = obj.get("type").and_then(Value::as_str);
        if ty.is_none() && !int_or_string && !preserve {
            errors.push(format!("{path}: type is missing"));
        }
        if int_or_string {
            if ty.is_some() {
                errors.push(format!("{path}: int-or-string must not set type"));
            }
            if let Some(any) = obj.get("anyOf")
                && any != &json!([{"type": "integer"}, {"type": "string"}])
            {
                errors.push(format!(
                    "{path}: int-or-string anyOf must be [integer, string]"
                ));
            }
        } else {
            for junction in ["allOf", "anyOf", "oneOf", "not"] {
                if obj.contains_key(junction) {
                    errors.push(format!("{path}: {junction} outside int-or-string"));
                }
            }
        }
        if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
            errors.push(format!(
                "{path}: properties and additionalProperties are exclusive"
            ));
        }
        if obj.get("additionalProperties") == Some(&json!(false)) {
            errors.push(format!(
                "{path}: additionalProperties: false is not allowed"
            ));
        }
        if path.ends_with(".metadata")
            && obj.get("properties").is_some()
            && path.matches('.').count() == 1
        {
            errors.push(format!(
                "{path}: the root metadata may not declare properties"
            ));
        }
        if let Some(f) = obj.get("format").and_then(Value::as_str)
            && ![
                "int32",
                "int64",
                "float",
                "double",
                "byte",
                "date",
                "date-time",
                "password",
                "binary",
                "uri",
                "uuid",
                "int-or-string",
                "duration",
            ]
            .contains(&f)
        {
            errors.push(format!("{path}: unknown format {f}"));
        }
        match obj.get("x-kubernetes-list-type").and_then(Value::as_str) {
            None => {}
            Some(lt) if ty != Some("array") => {
                errors.push(format!("{path}: list-type {lt} on a {ty:?}"))
            }
            Some("map") => {
                let keys = obj
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array);
                let items = obj.get("items");
                match (keys, items) {
                    (Some(keys), Some(items)) if !keys.is_empty() => {
                        let required: Vec<&str> = items
                            .get("required")
                            .and_then(Value::as_array)
                            .map(|r| r.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        for key in keys.iter().filter_map(Value::as_str) {
                            let prop = items.pointer(&format!("/properties/{key}"));
                            match prop {
                                None => errors
                                    .push(format!("{path}: list-map key {key} is not a property")),
                                Some(p) => {
                                    if !required.contains(&key) && p.get("default").is_none() {
                                        errors.push(format!("{path}: list-map key {key} must be required or defaulted"));
                                    }
                                    if !matches!(
                                        p.get("type").and_then(Value::as_str),
                                        Some("string" | "integer" | "boolean" | "number")
                                    ) {
                                        errors.push(format!(
                                            "{path}: list-map key {key} must be a scalar"
                                        ));
                                    }
                                }
                            }
                        }
                    }
                    _ => errors.push(format!("{path}: list-type map needs keys and object items")),
                }
            }
            Some("atomic" | "set") => {}
            Some(other) => errors.push(format!("{path}: unknown list-type {other}")),
        }
        if obj.contains_key("x-kubernetes-list-map-keys")
            && obj.get("x-kubernetes-list-type") != Some(&json!("map"))
        {
            errors.push(format!("{path}: list-map-keys without list-type map"));
        }
        if let Some(mt) = obj.get("x-kubernetes-map-type")
            && (ty != Some("object") || !matches!(mt.as_str(), Some("atomic" | "granular")))
        {
            errors.push(format!("{path}: map-type {mt} on {ty:?}"));
        }
        if let Some(Value::Array(values)) = obj.get("enum") {
            for v in values {
                let ok = match ty {
                    Some("string") => v.is_string(),
                    Some("integer") => v.is_i64(),
                    _ => true,
                };
                if !ok {
                    errors.push(format!("{path}: enum value {v} does not match type {ty:?}"));
                }
            }
        }
        if let Some(Value::Object(props)) = obj.get("properties") {
            for (name, prop) in props {
                check_structural(prop, &format!("{path}.{name}"), errors);
            }
        }
        if let Some(items) = obj.get("items") {
            check_structural(items, &format!("{path}[]"), errors);
        }
        if let Some(additional @ Value::Object(_)) = obj.get("additionalProperties") {
            check_structural(additional, &format!("{path}{{}}"), errors);
        }
    }

    #[test]
    fn every_schema_is_structural_for_the_api_server() {
        for kind in Kind::ALL {
            for version in Version::ALL {
                let mut errors = Vec::new();
                check_structural(&object_schema(kind, version), kind.as_str(), &mut errors);
                assert!(
                    errors.is_empty(),
                    "{kind} {version}:\n{}",
                    errors.join("\n")
                );
            }
        }
    }

    #[test]
    fn crds_deserialize_as_apiextensions_v1() {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        for value in crds(Some(&ConversionWebhook::default())) {
            let crd: CustomResourceDefinition =
                serde_json::from_value(value).expect("CRD deserialises");
            let versions = &crd.spec.versions;
            assert_eq!(versions.len(), 2);
            assert!(versions.iter().all(|v| v.served));
            assert_eq!(
                versions
                    .iter()
                    .filter(|v| v.storage)
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>(),
                ["v1beta1"]
            );
            let alpha = versions
                .iter()
                .find(|v| v.name == "v1alpha1")
                .expect("v1alpha1");
            assert_eq!(alpha.deprecated, Some(true));
            let conversion = crd.spec.conversion.as_ref().expect("conversion");
            assert_eq!(conversion.strategy, "Webhook");
            let service = conversion
                .webhook
                .as_ref()
                .and_then(|w| w.client_config.as_ref())
                .and_then(|c| c.service.as_ref())
                .expect("service");
            assert_eq!(service.name, "agent-sandbox-webhook-service");
            assert_eq!(service.namespace, "agent-sandbox-system");
            assert_eq!(service.path.as_deref(), Some("/convert"));
        }
    }

    #[test]
    fn crds_without_webhook_have_no_conversion_stanza() {
        assert!(
            crds(None)
                .iter()
                .all(|c| c.pointer("/spec/conversion").is_none())
        );
    }

    #[test]
    fn names_subresources_and_columns_follow_the_contract() {
        let sandbox = crd(Kind::Sandbox, None);
        assert_eq!(sandbox["metadata"]["name"], "sandboxes.agents.x-k8s.io");
        assert_eq!(sandbox["spec"]["names"]["shortNames"], json!(["sandbox"]));
        let versions = sandbox["spec"]["versions"].as_array().unwrap();
        let beta = versions.iter().find(|v| v["name"] == "v1beta1").unwrap();
        let alpha = versions.iter().find(|v| v["name"] == "v1alpha1").unwrap();
        assert_eq!(beta["subresources"], json!({"status": {}}));
        assert_eq!(
            alpha["subresources"]["scale"]["specReplicasPath"],
            ".spec.replicas"
        );
        assert_eq!(
            beta["additionalPrinterColumns"][1]["jsonPath"],
            ".status.conditions[?(@.type=='Ready')].reason"
        );
        assert!(alpha.get("additionalPrinterColumns").is_none());
        assert_eq!(
            alpha["deprecationWarning"],
            "agents.x-k8s.io/v1alpha1 Sandbox is deprecated; use agents.x-k8s.io/v1beta1 Sandbox instead"
        );
        let rule =
            &beta["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"][0];
        assert_eq!(rule["message"], "volumeClaimTemplates is immutable");
        // Bounded, so the rule's estimated cost fits older API servers' budget.
        assert_eq!(
            beta["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["volumeClaimTemplates"]
                ["maxItems"],
            16
        );
        assert!(
            alpha["schema"]["openAPIV3Schema"]["properties"]["spec"]
                .get("x-kubernetes-validations")
                .is_none()
        );

        let pool = crd(Kind::SandboxWarmPool, None);
        assert_eq!(pool["spec"]["names"]["shortNames"], json!(["swp"]));
        for v in pool["spec"]["versions"].as_array().unwrap() {
            assert!(v["subresources"].get("scale").is_some());
            let names: Vec<&str> = v["additionalPrinterColumns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["Ready", "Desired", "Age"]);
        }
        let template = crd(Kind::SandboxTemplate, None);
        assert!(
            template["spec"]["versions"][0]
                .get("subresources")
                .is_none()
        );
    }

    #[test]
    fn core_types_carry_kubernetes_list_and_map_types() {
        let schema = object_schema(Kind::Sandbox, Version::V1beta1);
        let pod = &schema["properties"]["spec"]["properties"]["podTemplate"]["properties"]["spec"];
        assert_eq!(
            pod["properties"]["containers"]["x-kubernetes-list-type"],
            "map"
        );
        assert_eq!(
            pod["properties"]["containers"]["x-kubernetes-list-map-keys"],
            json!(["name"])
        );
        let container = &pod["properties"]["containers"]["items"];
        assert_eq!(
            container["properties"]["ports"]["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        assert_eq!(
            container["properties"]["ports"]["items"]["properties"]["protocol"]["default"],
            "TCP"
        );
        assert_eq!(
            container["properties"]["command"]["x-kubernetes-list-type"],
            "atomic"
        );
        assert_eq!(
            pod["properties"]["nodeSelector"]["x-kubernetes-map-type"],
            "atomic"
        );
        let limits =
            &container["properties"]["resources"]["properties"]["limits"]["additionalProperties"];
        assert_eq!(limits["x-kubernetes-int-or-string"], true);
        assert!(limits["pattern"].is_string());
        let conditions = &schema["properties"]["status"]["properties"]["conditions"]["items"];
        assert_eq!(
            conditions["properties"]["status"]["enum"],
            json!(["True", "False", "Unknown"])
        );
    }

    #[test]
    fn spec_has_no_unknown_field_preservation() {
        for kind in Kind::ALL {
            for version in Version::ALL {
                let text = object_schema(kind, version).to_string();
                assert!(
                    !text.contains("x-kubernetes-preserve-unknown-fields"),
                    "{kind} {version}"
                );
            }
        }
    }
}
