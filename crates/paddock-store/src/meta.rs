//! Reading and writing the Kubernetes `metadata` of objects held as JSON, plus the values the
//! store generates: uids, timestamps and `generateName` suffixes.
//!
//! Accessors are lenient (a missing or mistyped field reads as absent); the store validates the
//! shape of incoming metadata before anything is stored, so stored objects are well-formed.

use serde_json::{Map, Value};

use crate::error::{Result, StoreError};

/// Finalizer the garbage collector uses for `Foreground` deletion: the owner stays until its
/// blocking dependents are gone.
pub const FOREGROUND_DELETION_FINALIZER: &str = "foregroundDeletion";
/// Finalizer the garbage collector uses for `Orphan` deletion: dependents lose their owner
/// reference instead of being deleted.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// Kubernetes' alphabet for generated name suffixes (no vowels, no confusable characters).
const NAME_ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of the random suffix appended to `generateName`.
pub(crate) const GENERATED_SUFFIX_LEN: usize = 5;
/// `generateName` prefixes are cut to this length, as Kubernetes does (63 - 5).
pub(crate) const MAX_GENERATE_NAME_PREFIX: usize = 58;

/// The object's `metadata` map, if present.
pub fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata")?.as_object()
}

/// A string field of `metadata`, or `""` when absent.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    metadata(object)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.name`, or `""`.
pub fn name(object: &Value) -> &str {
    meta_str(object, "name")
}

/// `metadata.namespace`, or `""`.
pub fn namespace(object: &Value) -> &str {
    meta_str(object, "namespace")
}

/// `metadata.uid`, or `""`.
pub fn uid(object: &Value) -> &str {
    meta_str(object, "uid")
}

/// `metadata.resourceVersion`, or `""`.
pub fn resource_version(object: &Value) -> &str {
    meta_str(object, "resourceVersion")
}

/// `metadata.generation`, or 0.
pub fn generation(object: &Value) -> i64 {
    metadata(object)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Whether `metadata.deletionTimestamp` is set: the object is terminating.
pub fn is_terminating(object: &Value) -> bool {
    metadata(object)
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|v| !v.is_null())
}

/// `metadata.finalizers`.
pub fn finalizers(object: &Value) -> Vec<&str> {
    metadata(object)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether `metadata.finalizers` contains `finalizer`.
pub fn has_finalizer(object: &Value, finalizer: &str) -> bool {
    finalizers(object).contains(&finalizer)
}

/// The value of label `key`, if set.
pub fn label<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    metadata(object)?
        .get("labels")?
        .as_object()?
        .get(key)?
        .as_str()
}

/// The parts of an owner reference the garbage collector needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerRef<'a> {
    pub uid: &'a str,
    pub block_owner_deletion: bool,
    pub controller: bool,
}

/// `metadata.ownerReferences`.
pub fn owner_references(object: &Value) -> Vec<OwnerRef<'_>> {
    metadata(object)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| {
                    Some(OwnerRef {
                        uid: r.get("uid")?.as_str()?,
                        block_owner_deletion: r
                            .get("blockOwnerDeletion")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        controller: r
                            .get("controller")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `metadata` map of `object`, created if missing. `object` must be a JSON object.
pub(crate) fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let Value::Object(top) = object else {
        unreachable!("made an object above")
    };
    let meta = top
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Value::Object(meta) = meta else {
        unreachable!("made an object above")
    };
    meta
}

/// Replaces `metadata.finalizers`; an empty list removes the field, as the API server does.
pub(crate) fn set_finalizers(object: &mut Value, finalizers: &[String]) {
    let meta = metadata_mut(object);
    if finalizers.is_empty() {
        meta.remove("finalizers");
    } else {
        meta.insert("finalizers".into(), Value::from(finalizers.to_vec()));
    }
}

/// Now, as Kubernetes writes `metav1.Time`: RFC 3339 in UTC with whole seconds.
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Unavailable {
        reason: format!("the operating system's random number generator failed: {e}"),
    })?;
    Ok(bytes)
}

/// A fresh random UUID (version 4), formatted as Kubernetes uids are.
pub(crate) fn new_uid() -> Result<String> {
    let mut b: [u8; 16] = random_bytes()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// `prefix` (cut to 58 characters) followed by five random characters of Kubernetes' alphabet.
pub(crate) fn generate_name(prefix: &str) -> Result<String> {
    let mut name: String = prefix.chars().take(MAX_GENERATE_NAME_PREFIX).collect();
    let mut produced = 0;
    while produced < GENERATED_SUFFIX_LEN {
        // Rejection sampling keeps the distribution uniform: 243 = 9 * 27.
        for byte in random_bytes::<16>()? {
            if byte < 243 && produced < GENERATED_SUFFIX_LEN {
                name.push(char::from(NAME_ALPHABET[usize::from(byte % 27)]));
                produced += 1;
            }
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uid_is_a_version_4_uuid() {
        let uid = new_uid().unwrap();
        assert_eq!(uid.len(), 36);
        let parts: Vec<&str> = uid.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{uid}");
        assert!(
            matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "{uid}"
        );
        assert_ne!(uid, new_uid().unwrap());
    }

    #[test]
    fn generated_names_use_the_kubernetes_alphabet_and_cut_long_prefixes() {
        let name = generate_name("pool-").unwrap();
        assert_eq!(name.len(), 10);
        assert!(
            name[5..].bytes().all(|c| NAME_ALPHABET.contains(&c)),
            "{name}"
        );
        let long = generate_name(&"x".repeat(100)).unwrap();
        assert_eq!(long.len(), MAX_GENERATE_NAME_PREFIX + GENERATED_SUFFIX_LEN);
    }

    #[test]
    fn timestamps_have_whole_seconds_in_utc() {
        let ts = now_rfc3339();
        assert_eq!(ts.len(), "2026-01-02T03:04:05Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
        assert!(ts.parse::<jiff::Timestamp>().is_ok());
    }

    #[test]
    fn accessors_read_metadata_leniently() {
        let obj = json!({"metadata": {"name": "a", "finalizers": ["x", 3, "y"], "labels": {"k": "v"},
            "ownerReferences": [{"uid": "u1", "blockOwnerDeletion": true}, {"name": "no-uid"}]}});
        assert_eq!(name(&obj), "a");
        assert_eq!(namespace(&obj), "");
        assert_eq!(finalizers(&obj), ["x", "y"]);
        assert_eq!(label(&obj, "k"), Some("v"));
        assert_eq!(
            owner_references(&obj),
            [OwnerRef {
                uid: "u1",
                block_owner_deletion: true,
                controller: false
            }]
        );
        assert!(!is_terminating(&obj));
        let mut obj = obj;
        set_finalizers(&mut obj, &[]);
        assert!(metadata(&obj).unwrap().get("finalizers").is_none());
    }
}
