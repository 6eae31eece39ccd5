//! OpenAPI v3 schemas of the four kinds, in the structural form a Kubernetes API server
//! requires of a CRD, and the one schema everything validates against.
//!
//! The schemas are generated from the Rust types (schemars, with k8s-openapi's schemas for core
//! types), then made structural: references inlined, `Option`s made plain, enums turned into
//! `enum` lists, and the annotations Kubernetes' own types carry (list and map types, defaults of
//! list-map keys, quantities) added from [`core_annotations`], which the Go markers of core/v1
//! define and k8s-openapi's schemas lack.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::kinds::{Kind, Version};
use crate::{v1alpha1, v1beta1};

/// The `openAPIV3Schema` of a kind in a version: the root object with `apiVersion`, `kind`,
/// `metadata`, `spec` and (except SandboxTemplate) `status`.
pub fn object_schema(kind: Kind, version: Version) -> Value {
    let (spec, status) = match (kind, version) {
        (Kind::Sandbox, Version::V1alpha1) => (
            spec_schema::<v1alpha1::SandboxSpec>(),
            Some(spec_schema::<v1alpha1::SandboxStatus>()),
        ),
        (Kind::Sandbox, Version::V1beta1) => (
            spec_schema::<v1beta1::SandboxSpec>(),
            Some(spec_schema::<v1beta1::SandboxStatus>()),
        ),
        (Kind::SandboxTemplate, Version::V1alpha1) => {
            (spec_schema::<v1alpha1::SandboxTemplateSpec>(), None)
        }
        (Kind::SandboxTemplate, Version::V1beta1) => {
            (spec_schema::<v1beta1::SandboxTemplateSpec>(), None)
        }
        (Kind::SandboxClaim, Version::V1alpha1) => (
            spec_schema::<v1alpha1::SandboxClaimSpec>(),
            Some(spec_schema::<v1alpha1::SandboxClaimStatus>()),
        ),
        (Kind::SandboxClaim, Version::V1beta1) => (
            spec_schema::<v1beta1::SandboxClaimSpec>(),
            Some(spec_schema::<v1beta1::SandboxClaimStatus>()),
        ),
        (Kind::SandboxWarmPool, Version::V1alpha1) => (
            spec_schema::<v1alpha1::SandboxWarmPoolSpec>(),
            Some(spec_schema::<v1alpha1::SandboxWarmPoolStatus>()),
        ),
        (Kind::SandboxWarmPool, Version::V1beta1) => (
            spec_schema::<v1beta1::SandboxWarmPoolSpec>(),
            Some(spec_schema::<v1beta1::SandboxWarmPoolStatus>()),
        ),
    };
    let mut spec = spec;
    if (kind, version) == (Kind::Sandbox, Version::V1beta1) {
        spec["x-kubernetes-validations"] = json!([{
            "rule": VOLUME_CLAIM_TEMPLATES_IMMUTABLE_RULE,
            "message": VOLUME_CLAIM_TEMPLATES_IMMUTABLE_MESSAGE,
        }]);
        // The rule compares the whole list: an unbounded list makes the API server's CEL cost
        // estimate exceed its budget on older servers (v1.25 refuses the CRD).
        if let Some(vcts) = spec.pointer_mut("/properties/volumeClaimTemplates") {
            vcts["maxItems"] = json!(SANDBOX_VOLUME_CLAIM_TEMPLATES_MAX);
        }
    }
    if (kind, version) == (Kind::SandboxClaim, Version::V1beta1)
        && let Some(vcts) = spec.pointer_mut("/properties/volumeClaimTemplates")
    {
        vcts["maxItems"] = json!(128);
        vcts["x-kubernetes-validations"] = json!([{
            "rule": "self.all(a, !has(a.metadata) || !has(a.metadata.name) || self.exists_one(b, has(b.metadata) && has(b.metadata.name) && b.metadata.name == a.metadata.name))",
            "message": "volumeClaimTemplates names must be unique",
        }]);
        vcts["items"]["x-kubernetes-validations"] = json!([{
            "rule": "has(self.metadata) && has(self.metadata.name) && size(self.metadata.name) > 0",
            "message": "metadata.name must not be empty",
        }]);
        if let Some(name) = vcts.pointer_mut("/items/properties/metadata/properties/name") {
            name["maxLength"] = json!(253);
        }
    }
    let mut properties = Map::new();
    properties.insert(
        "apiVersion".into(),
        json!({
            "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
            "type": "string"
        }),
    );
    properties.insert(
        "kind".into(),
        json!({
            "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
            "type": "string"
        }),
    );
    properties.insert("metadata".into(), json!({"type": "object"}));
    properties.insert("spec".into(), spec);
    if let Some(status) = status {
        properties.insert("status".into(), status);
    }
    json!({
        "description": kind_description(kind),
        "type": "object",
        "properties": properties,
        "required": ["spec"],
    })
}

/// The structural schema of `metadata` (ObjectMeta), used to check metadata; the CRDs
/// themselves declare metadata as a plain object, as Kubernetes requires.
pub fn metadata_schema() -> Value {
    spec_schema::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>()
}

/// CEL rule on the v1beta1 Sandbox spec that keeps `volumeClaimTemplates` immutable.
pub const VOLUME_CLAIM_TEMPLATES_IMMUTABLE_RULE: &str = "has(self.volumeClaimTemplates) == has(oldSelf.volumeClaimTemplates) && (!has(self.volumeClaimTemplates) || self.volumeClaimTemplates == oldSelf.volumeClaimTemplates)";
/// Most `volumeClaimTemplates` a v1beta1 Sandbox may have (bounds the immutability rule's cost).
pub const SANDBOX_VOLUME_CLAIM_TEMPLATES_MAX: u64 = 16;
/// The message of [`VOLUME_CLAIM_TEMPLATES_IMMUTABLE_RULE`].
pub const VOLUME_CLAIM_TEMPLATES_IMMUTABLE_MESSAGE: &str = "volumeClaimTemplates is immutable";

fn kind_description(kind: Kind) -> &'static str {
    match kind {
        Kind::Sandbox => {
            "Sandbox is an isolated, stateful, singleton workload: one pod, with optional persistent volumes and a headless Service."
        }
        Kind::SandboxTemplate => {
            "SandboxTemplate is a reusable description of a sandbox, referenced by warm pools and claims."
        }
        Kind::SandboxClaim => {
            "SandboxClaim requests a sandbox, taken from a warm pool when one is ready or made cold from the template."
        }
        Kind::SandboxWarmPool => {
            "SandboxWarmPool keeps a number of ready sandboxes made from one template, handed out to claims."
        }
    }
}

/// Generates the structural schema of one Rust type.
pub(crate) fn spec_schema<T: JsonSchema>() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = false;
        s.meta_schema = None;
    });
    let root = settings.into_generator().into_root_schema_for::<T>();
    let mut root = root.to_value();
    let mut defs = match root.as_object_mut().and_then(|o| o.remove("$defs")) {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    };
    for (name, def) in defs.iter_mut() {
        annotate_core_type(name, def);
    }
    let mut value = inline_refs(root, &defs, 0);
    structuralize(&mut value);
    value
}

fn inline_refs(value: Value, defs: &Map<String, Value>, depth: usize) -> Value {
    assert!(
        depth < 64,
        "schema nesting too deep (a recursive type reached the CRD schema)"
    );
    match value {
        Value::Object(mut obj) => {
            if let Some(Value::String(reference)) = obj.remove("$ref") {
                let name = reference.trim_start_matches("#/$defs/");
                let mut target = defs
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| panic!("schema reference {reference} has no definition"));
                // Keep sibling keywords (a field's description wins over the type's).
                if let Value::Object(t) = &mut target {
                    for (k, v) in obj {
                        t.insert(k, v);
                    }
                }
                return inline_refs(target, defs, depth + 1);
            }
            Value::Object(
                obj.into_iter()
                    .map(|(k, v)| (k, inline_refs(v, defs, depth + 1)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| inline_refs(v, defs, depth + 1))
                .collect(),
        ),
        other => other,
    }
}

/// Rewrites a schemars schema into Kubernetes' structural form.
fn structuralize(value: &mut Value) {
    let Value::Object(obj) = value else { return };
    obj.remove("$schema");
    obj.remove("title");
    if obj.get("default").is_some_and(Value::is_null) {
        obj.remove("default");
    }
    // `Option<T>`: `type: [T, "null"]` → `type: T`.
    if let Some(Value::Array(types)) = obj.get("type") {
        let non_null: Vec<Value> = types
            .iter()
            .filter(|t| t.as_str() != Some("null"))
            .cloned()
            .collect();
        if non_null.len() == 1 {
            obj.insert("type".into(), non_null[0].clone());
        }
    }
    // `Option<Struct>`: `anyOf: [{...}, {type: null}]` → the struct.
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = obj.get(key) {
            let non_null: Vec<Value> = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .cloned()
                .collect();
            if non_null.len() == 1 && alts.len() == 2 {
                obj.remove(key);
                if let Value::Object(inner) = &non_null[0] {
                    for (k, v) in inner {
                        obj.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            } else if !non_null.is_empty()
                && non_null
                    .iter()
                    .all(|a| a.get("const").is_some() || a.get("enum").is_some())
            {
                // Unit-variant enums: `oneOf: [{const: A}, {const: B}]` → `enum: [A, B]`.
                let mut values = Vec::new();
                for alt in &non_null {
                    if let Some(c) = alt.get("const") {
                        values.push(c.clone());
                    } else if let Some(Value::Array(e)) = alt.get("enum") {
                        values.extend(e.iter().cloned());
                    }
                }
                obj.remove(key);
                obj.insert("type".into(), json!("string"));
                obj.insert("enum".into(), Value::Array(values));
            }
        }
    }
    if let Some(Value::Array(values)) = obj.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    if let Some(c) = obj.remove("const") {
        obj.insert("enum".into(), json!([c]));
    }
    // schemars marks unsigned integers with `minimum: 0` and `format: uint*`; Kubernetes
    // formats are int32/int64.
    if let Some(Value::String(f)) = obj.get("format")
        && f.starts_with("uint")
    {
        let bits = if f == "uint64" || f == "uint" {
            "int64"
        } else {
            "int32"
        };
        obj.insert("format".into(), json!(bits));
    }
    for child in obj.values_mut() {
        match child {
            Value::Object(_) => structuralize(child),
            Value::Array(items) => items.iter_mut().for_each(structuralize),
            _ => {}
        }
    }
    // `properties` children were walked above as a map of schemas; re-walk them as schemas.
}

/// A Kubernetes marker on a core type that k8s-openapi's schemas do not carry.
#[derive(Debug, Clone, Copy)]
pub enum CoreAnnotation {
    /// `+listType=atomic` on a field.
    AtomicList(&'static str),
    /// `+listType=map` with these `+listMapKey`s on a field.
    MapList(&'static str, &'static [&'static str]),
    /// `+mapType=atomic` on a map field.
    AtomicMap(&'static str),
    /// `+structType=atomic` on the type itself.
    AtomicStruct,
    /// A default value of a field (list-map keys must be required or defaulted).
    Default(&'static str, &'static str),
    /// A field that Go leaves optional but k8s-openapi's Rust type makes required.
    Optional(&'static str),
    /// A validation keyword on a field (field, keyword, JSON value), e.g. metav1.Condition's
    /// `reason` pattern.
    Constraint(&'static str, &'static str, &'static str),
}

/// The markers of Kubernetes' core types (as controller-gen renders them into CRDs), keyed by
/// the schema definition name k8s-openapi uses.
pub fn core_annotations(def: &str) -> &'static [CoreAnnotation] {
    crate::core_markers::markers(def)
}

fn annotate_core_type(def_name: &str, def: &mut Value) {
    if def_name == "io.k8s.apimachinery.pkg.api.resource.Quantity" {
        let description = def.get("description").cloned();
        *def = json!({
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": true,
        });
        if let Some(d) = description {
            def["description"] = d;
        }
        return;
    }
    if def_name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString" {
        let description = def.get("description").cloned();
        *def = json!({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": true});
        if let Some(d) = description {
            def["description"] = d;
        }
        return;
    }
    let Value::Object(obj) = def else { return };
    for annotation in core_annotations(def_name) {
        match *annotation {
            CoreAnnotation::AtomicStruct => {
                obj.insert("x-kubernetes-map-type".into(), json!("atomic"));
            }
            CoreAnnotation::AtomicList(field) => {
                set_field(obj, field, "x-kubernetes-list-type", json!("atomic"))
            }
            CoreAnnotation::MapList(field, keys) => {
                set_field(obj, field, "x-kubernetes-list-type", json!("map"));
                set_field(obj, field, "x-kubernetes-list-map-keys", json!(keys));
            }
            CoreAnnotation::AtomicMap(field) => {
                set_field(obj, field, "x-kubernetes-map-type", json!("atomic"))
            }
            CoreAnnotation::Default(field, value) => {
                let v: Value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
                set_field(obj, field, "default", v);
            }
            CoreAnnotation::Constraint(field, keyword, value) => {
                let v: Value = serde_json::from_str(value)
                    .unwrap_or_else(|e| panic!("bad constraint {value}: {e}"));
                set_field(obj, field, keyword, v);
            }
            CoreAnnotation::Optional(field) => {
                if let Some(Value::Array(required)) = obj.get_mut("required") {
                    required.retain(|r| r.as_str() != Some(field));
                    if required.is_empty() {
                        obj.remove("required");
                    }
                }
            }
        }
    }
}

fn set_field(obj: &mut Map<String, Value>, field: &str, key: &str, value: Value) {
    let Some(Value::Object(props)) = obj.get_mut("properties") else {
        panic!("core marker on a type without properties: {field}");
    };
    let Some(Value::Object(prop)) = props.get_mut(field) else {
        panic!("core marker on a missing field: {field}");
    };
    prop.insert(key.to_owned(), value);
}

/// The pattern Kubernetes puts on resource quantities.
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// Applies the schema's `default`s to `value`, as the API server does before storing: a
/// missing field with a default gets it, wherever its parent object exists.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (name, prop) in props {
                    if map.get(name).is_none_or(Value::is_null)
                        && let Some(default) = prop.get("default")
                    {
                        map.insert(name.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        apply_defaults(prop, child);
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for child in map.values_mut() {
                    apply_defaults(additional, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}
