//! Validation of names and metadata with the API server's rules: DNS-1123 names, qualified names
//! for label, annotation and finalizer keys, label values, owner references and the envelope
//! (`apiVersion`, `kind`, `metadata`) of incoming objects.
//!
//! Every error names the offending field and value and says what is allowed.

use serde_json::{Map, Value};

use crate::error::{Result, StoreError};
use crate::meta::{FOREGROUND_DELETION_FINALIZER, ORPHAN_FINALIZER};
use crate::resource::ResourceType;

/// Longest DNS-1123 subdomain (object names).
pub const MAX_NAME_LEN: usize = 253;
/// Longest DNS-1123 label (namespaces, label values, the name part of qualified names).
pub const MAX_LABEL_LEN: usize = 63;
/// Largest total size of an object's annotations, as in Kubernetes.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')";
const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters \
or '-', and must start and end with an alphanumeric character (e.g. 'my-name')";
const QUALIFIED_RULE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must \
start and end with an alphanumeric character (e.g. 'MyName', 'my.name' or '123-abc'), with an optional \
DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";

fn is_label_chunk(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn quote(value: &str) -> String {
    let shown: String = value.chars().take(80).collect();
    if shown.len() < value.len() {
        format!("{shown:?}...")
    } else {
        format!("{shown:?}")
    }
}

/// Checks an object name: a DNS-1123 subdomain of at most 253 characters.
pub fn validate_subdomain(field: &str, value: &str) -> Result<()> {
    if value.len() > MAX_NAME_LEN {
        return Err(StoreError::invalid(
            field,
            format!(
                "{} must be no more than {MAX_NAME_LEN} characters",
                quote(value)
            ),
        ));
    }
    if !value.split('.').all(is_label_chunk) {
        return Err(StoreError::invalid(
            field,
            format!("{}: {SUBDOMAIN_RULE}", quote(value)),
        ));
    }
    Ok(())
}

/// Checks a namespace name: a DNS-1123 label of at most 63 characters.
pub fn validate_dns_label(field: &str, value: &str) -> Result<()> {
    if value.len() > MAX_LABEL_LEN {
        return Err(StoreError::invalid(
            field,
            format!(
                "{} must be no more than {MAX_LABEL_LEN} characters",
                quote(value)
            ),
        ));
    }
    if !is_label_chunk(value) {
        return Err(StoreError::invalid(
            field,
            format!("{}: {LABEL_RULE}", quote(value)),
        ));
    }
    Ok(())
}

fn is_qualified_name_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

fn is_qualified_name(value: &str) -> bool {
    match value.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= MAX_NAME_LEN
                && prefix.split('.').all(is_label_chunk)
                && is_qualified_name_part(name)
        }
        None => is_qualified_name_part(value),
    }
}

fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_qualified_name_part(value)
}

/// Checks a label, annotation or finalizer key: `[prefix/]name` with a DNS subdomain prefix.
pub fn validate_qualified_name(field: &str, value: &str) -> Result<()> {
    let (prefix, name) = match value.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty()
            || prefix.len() > MAX_NAME_LEN
            || !prefix.split('.').all(is_label_chunk))
    {
        return Err(StoreError::invalid(
            field,
            format!("{}: prefix part {SUBDOMAIN_RULE}", quote(value)),
        ));
    }
    if !is_qualified_name_part(name) {
        return Err(StoreError::invalid(
            field,
            format!(
                "{}: {QUALIFIED_RULE}; the name part must be 1-{MAX_LABEL_LEN} characters",
                quote(value)
            ),
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 alphanumeric/`-_.` characters starting and ending
/// with an alphanumeric.
pub fn validate_label_value(field: &str, value: &str) -> Result<()> {
    if !is_label_value(value) {
        return Err(StoreError::invalid(
            field,
            format!(
                "{}: a valid label value must be an empty string or consist of at most {MAX_LABEL_LEN} \
                 alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                quote(value)
            ),
        ));
    }
    Ok(())
}

fn string_map<'a>(
    meta: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>> {
    match meta.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => {
            for (key, value) in map {
                if !value.is_string() {
                    return Err(StoreError::invalid(
                        format!("metadata.{field}[{key:?}]"),
                        "must be a string",
                    ));
                }
            }
            Ok(Some(map))
        }
        Some(_) => Err(StoreError::invalid(
            format!("metadata.{field}"),
            "must be an object of strings",
        )),
    }
}

/// Checks the envelope and metadata of an object about to be created or updated as `resource`:
/// `apiVersion` in the resource's group, matching `kind`, and well-formed labels, annotations,
/// finalizers and owner references. Name and namespace are checked by the caller.
pub(crate) fn validate_object(resource: &ResourceType, object: &Value) -> Result<()> {
    let Some(top) = object.as_object() else {
        return Err(StoreError::invalid("object", "must be a JSON object"));
    };
    let api_version = top.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if !resource.accepts_api_version(api_version) {
        let expected = if resource.group.is_empty() {
            "v1".to_owned()
        } else {
            format!("{}/<version>", resource.group)
        };
        return Err(StoreError::invalid(
            "apiVersion",
            format!(
                "{} is not in the group of {resource}; expected {expected}",
                quote(api_version)
            ),
        ));
    }
    let kind = top.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != resource.kind {
        return Err(StoreError::invalid(
            "kind",
            format!(
                "{} does not match {resource}; expected {:?}",
                quote(kind),
                resource.kind
            ),
        ));
    }
    let meta = match top.get("metadata") {
        Some(Value::Object(meta)) => meta,
        _ => {
            return Err(StoreError::invalid(
                "metadata",
                "must be an object with at least a name",
            ));
        }
    };
    for field in [
        "name",
        "namespace",
        "generateName",
        "resourceVersion",
        "uid",
    ] {
        if meta
            .get(field)
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return Err(StoreError::invalid(
                format!("metadata.{field}"),
                "must be a string",
            ));
        }
    }
    if let Some(labels) = string_map(meta, "labels")? {
        for (key, value) in labels {
            let value = value.as_str().unwrap_or_default();
            if !is_qualified_name(key) || !is_label_value(value) {
                let field = format!("metadata.labels[{key:?}]");
                validate_qualified_name(&field, key)?;
                validate_label_value(&field, value)?;
            }
        }
    }
    if let Some(annotations) = string_map(meta, "annotations")? {
        let mut total = 0usize;
        for (key, value) in annotations {
            if !is_qualified_name(&key.to_ascii_lowercase()) {
                validate_qualified_name(
                    &format!("metadata.annotations[{key:?}]"),
                    &key.to_ascii_lowercase(),
                )?;
            }
            total += key.len() + value.as_str().map_or(0, str::len);
        }
        if total > MAX_ANNOTATIONS_BYTES {
            return Err(StoreError::invalid(
                "metadata.annotations",
                format!(
                    "total size {total} bytes exceeds the limit of {MAX_ANNOTATIONS_BYTES} bytes"
                ),
            ));
        }
    }
    validate_finalizers(meta)?;
    validate_owner_references(meta)?;
    Ok(())
}

fn validate_finalizers(meta: &Map<String, Value>) -> Result<()> {
    let items = match meta.get("finalizers") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(StoreError::invalid(
                "metadata.finalizers",
                "must be a list of strings",
            ));
        }
    };
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(name) if is_qualified_name(name) => {}
            Some(name) => validate_qualified_name(&format!("metadata.finalizers[{i}]"), name)?,
            None => {
                return Err(StoreError::invalid(
                    format!("metadata.finalizers[{i}]"),
                    "must be a string",
                ));
            }
        }
    }
    let has = |f: &str| items.iter().any(|v| v.as_str() == Some(f));
    if has(ORPHAN_FINALIZER) && has(FOREGROUND_DELETION_FINALIZER) {
        return Err(StoreError::invalid(
            "metadata.finalizers",
            format!(
                "finalizers {ORPHAN_FINALIZER:?} and {FOREGROUND_DELETION_FINALIZER:?} cannot both be set"
            ),
        ));
    }
    Ok(())
}

fn validate_owner_references(meta: &Map<String, Value>) -> Result<()> {
    let refs = match meta.get("ownerReferences") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(refs)) => refs,
        Some(_) => {
            return Err(StoreError::invalid(
                "metadata.ownerReferences",
                "must be a list",
            ));
        }
    };
    let mut controllers = 0;
    for (i, r) in refs.iter().enumerate() {
        let Some(r) = r.as_object() else {
            return Err(StoreError::invalid(
                format!("metadata.ownerReferences[{i}]"),
                "must be an object",
            ));
        };
        for field in ["apiVersion", "kind", "name", "uid"] {
            if r.get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(StoreError::invalid(
                    format!("metadata.ownerReferences[{i}].{field}"),
                    "must be a non-empty string",
                ));
            }
        }
        for field in ["controller", "blockOwnerDeletion"] {
            if r.get(field)
                .is_some_and(|v| !v.is_boolean() && !v.is_null())
            {
                return Err(StoreError::invalid(
                    format!("metadata.ownerReferences[{i}].{field}"),
                    "must be a boolean",
                ));
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        return Err(StoreError::invalid(
            "metadata.ownerReferences",
            "only one reference can have controller set to true",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SANDBOX: ResourceType =
        ResourceType::namespaced("agents.x-k8s.io", "sandboxes", "Sandbox");

    fn invalid_field(r: Result<()>) -> String {
        match r {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn subdomain_names_follow_rfc_1123() {
        for ok in ["a", "sb-1", "a.b-c.d", &"a".repeat(253)] {
            validate_subdomain("metadata.name", ok).unwrap();
        }
        for bad in [
            "",
            "A",
            "-a",
            "a-",
            "a..b",
            "a_b",
            "a/b",
            ".a",
            &"a".repeat(254),
        ] {
            assert_eq!(
                invalid_field(validate_subdomain("metadata.name", bad)),
                "metadata.name",
                "{bad}"
            );
        }
    }

    #[test]
    fn namespaces_are_dns_labels() {
        validate_dns_label("metadata.namespace", "default").unwrap();
        assert!(validate_dns_label("metadata.namespace", "a.b").is_err());
        assert!(validate_dns_label("metadata.namespace", &"a".repeat(64)).is_err());
    }

    #[test]
    fn qualified_names_allow_a_subdomain_prefix() {
        for ok in [
            "app",
            "agents.x-k8s.io/sandbox-name-hash",
            "My_Name.1",
            "a/B",
        ] {
            validate_qualified_name("k", ok).unwrap();
        }
        for bad in ["", "/a", "a/", "Ex.com/a", "a/b/c", "-a", &"a".repeat(64)] {
            assert!(validate_qualified_name("k", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_values_may_be_empty_but_not_malformed() {
        validate_label_value("v", "").unwrap();
        validate_label_value("v", "Warm_1.x").unwrap();
        assert!(validate_label_value("v", "a b").is_err());
        assert!(validate_label_value("v", "_a").is_err());
    }

    #[test]
    fn envelope_must_match_the_resource() {
        let ok = json!({"apiVersion": "agents.x-k8s.io/v1alpha1", "kind": "Sandbox", "metadata": {"name": "a"}});
        validate_object(&SANDBOX, &ok).unwrap();
        let wrong_kind =
            json!({"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Pod", "metadata": {}});
        assert_eq!(
            invalid_field(validate_object(&SANDBOX, &wrong_kind)),
            "kind"
        );
        let wrong_group = json!({"apiVersion": "apps/v1", "kind": "Sandbox", "metadata": {}});
        assert_eq!(
            invalid_field(validate_object(&SANDBOX, &wrong_group)),
            "apiVersion"
        );
    }

    #[test]
    fn metadata_errors_name_the_offending_entry() {
        let base = |meta: Value| json!({"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox", "metadata": meta});
        assert_eq!(
            invalid_field(validate_object(
                &SANDBOX,
                &base(json!({"labels": {"a b": "x"}}))
            )),
            "metadata.labels[\"a b\"]"
        );
        assert_eq!(
            invalid_field(validate_object(
                &SANDBOX,
                &base(json!({"labels": {"a": 1}}))
            )),
            "metadata.labels[\"a\"]"
        );
        assert_eq!(
            invalid_field(validate_object(
                &SANDBOX,
                &base(json!({"finalizers": ["ok/x", "bad name"]}))
            )),
            "metadata.finalizers[1]"
        );
        assert_eq!(
            invalid_field(validate_object(
                &SANDBOX,
                &base(json!({"finalizers": ["orphan", "foregroundDeletion"]}))
            )),
            "metadata.finalizers"
        );
        let owner = |uid: &str, controller: bool| json!({"apiVersion": "v1", "kind": "K", "name": "n", "uid": uid, "controller": controller});
        assert_eq!(
            invalid_field(validate_object(
                &SANDBOX,
                &base(json!({"ownerReferences": [owner("a", true), owner("b", true)]}))
            )),
            "metadata.ownerReferences"
        );
        assert_eq!(
            invalid_field(validate_object(
                &SANDBOX,
                &base(json!({"ownerReferences": [owner("", false)]}))
            )),
            "metadata.ownerReferences[0].uid"
        );
    }
}
