//! The JSON Schemas of the wire types, by the names the OpenAPI document gives them.

use serde_json::{Map, Value};

fn schema_of<T: schemars::JsonSchema>() -> Value {
    let mut schema = schemars::generate::SchemaSettings::openapi3()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    if let Some(o) = schema.as_object_mut() {
        o.remove("$schema");
    }
    schema
}

/// Every wire type's schema, keyed by its name in `#/components/schemas`. Nested types appear
/// under their own names as well (`$defs` are hoisted).
pub fn schemas() -> Map<String, Value> {
    let mut out = Map::new();
    let mut add = |name: &str, mut schema: Value| {
        // With OpenAPI settings the nested definitions sit at `components.schemas` of the
        // root schema; they move up to the document's own.
        let nested = schema
            .as_object_mut()
            .and_then(|o| o.remove("components"))
            .and_then(|mut c| c.get_mut("schemas").map(Value::take));
        if let Some(Value::Object(defs)) = nested {
            for (k, v) in defs {
                out.entry(k).or_insert(v);
            }
        }
        out.insert(name.to_owned(), schema);
    };
    add("Error", schema_of::<crate::ErrorBody>());
    add("CreateSandbox", schema_of::<crate::CreateSandbox>());
    add("SandboxInfo", schema_of::<crate::SandboxInfo>());
    add("SandboxList", schema_of::<crate::SandboxList>());
    add("ApplyResult", schema_of::<crate::ApplyResult>());
    add("Process", schema_of::<crate::ProcessRequest>());
    add("ExecResult", schema_of::<crate::ExecResult>());
    add("ExitStatus", schema_of::<crate::ExitStatus>());
    add("ProcessInfo", schema_of::<crate::ProcessInfo>());
    add("DirectoryListing", schema_of::<crate::DirectoryListing>());
    add("FileStat", schema_of::<crate::FileStat>());
    add("FileEvent", schema_of::<crate::FileEvent>());
    add("EgressRecord", schema_of::<crate::EgressRecord>());
    add("EgressLog", schema_of::<crate::EgressLog>());
    add("MintToken", schema_of::<crate::MintToken>());
    add("MintedToken", schema_of::<crate::MintedToken>());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_name_every_field_of_the_wire_types() {
        let s = schemas();
        let props = |name: &str| -> Vec<String> {
            s[name]["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert!(props("CreateSandbox").contains(&"warmPool".to_owned()));
        assert!(props("SandboxInfo").contains(&"launchType".to_owned()));
        assert!(props("ProcessInfo").contains(&"output_end".to_owned()));
        assert!(s.contains_key("Code"), "nested types are hoisted");
        assert!(s.contains_key("Phase"));
        let text = serde_json::to_string(&s).unwrap_or_default();
        assert!(
            !text.contains("#/$defs/"),
            "references point into components: {text}"
        );
    }
}
