//! The rules beyond the structural schema: metadata naming (names, namespace, labels and
//! annotations) and what a schema cannot state (containers, volume claim templates, claim env).

use std::collections::HashSet;

use serde_json::Value;

use super::checker::{Checker, metadata_schema};
use crate::kinds::Kind;
use crate::syntax;

pub(super) fn check_metadata(c: &mut Checker<'_>, metadata: Option<&Value>) {
    c.enter_field("metadata");
    match metadata {
        None | Some(Value::Null) => {
            c.report("required field is missing: every object needs metadata.name");
            c.leave();
            return;
        }
        Some(m) => c.check(metadata_schema(), m),
    }
    let Some(Value::Object(meta)) = metadata else {
        c.leave();
        return;
    };
    let name = meta.get("name").and_then(Value::as_str);
    let generate_name = meta.get("generateName").and_then(Value::as_str);
    match (name, generate_name) {
        (None, None) => c.at_field("name", |c| {
            c.report("required field is missing (or set metadata.generateName)")
        }),
        (Some(name), _) => c.at_field("name", |c| check_object_name(c, name)),
        (None, Some(prefix)) => c.at_field("generateName", |c| {
            // The generated name is the prefix plus 5 characters.
            check_object_name(c, &format!("{prefix}abcde"));
        }),
    }
    if let Some(ns) = meta.get("namespace").and_then(Value::as_str) {
        c.at_field("namespace", |c| {
            for e in syntax::dns1123_label(ns) {
                c.report(format!("{ns:?} {e}"));
            }
        });
    }
    for (field, is_label) in [("labels", true), ("annotations", false)] {
        let Some(Value::Object(entries)) = meta.get(field) else {
            continue;
        };
        c.enter_field(field);
        let mut total = 0usize;
        for (key, value) in entries {
            c.enter_key(key);
            for e in syntax::qualified_name(key) {
                c.report(format!("key {key:?} {e}"));
            }
            if let (true, Some(v)) = (is_label, value.as_str()) {
                for e in syntax::label_value(v) {
                    c.report(format!("value {v:?} {e}"));
                }
            }
            total += key.len() + value.as_str().map_or(0, str::len);
            c.leave();
        }
        if !is_label && total > 256 * 1024 {
            c.report("annotations must total at most 256 KiB");
        }
        c.leave();
    }
    c.leave();
}

/// Object names: a DNS subdomain for every kind, and tighter where the name becomes other
/// names (a Sandbox's pod and Service, a claim's cold Sandbox, a pool's `<pool>-xxxxx` members).
fn check_object_name(c: &mut Checker<'_>, name: &str) {
    let label_limit = match c.kind {
        Some(Kind::Sandbox) => Some((
            63,
            "a Sandbox's pod and Service take its name, which must be a DNS label",
        )),
        Some(Kind::SandboxClaim) => Some((
            63,
            "a claim's cold-start Sandbox (and its pod and Service) takes the claim's name",
        )),
        Some(Kind::SandboxWarmPool) => Some((
            57,
            "members are named <pool>-<5 characters> and must fit in a 63-character DNS label",
        )),
        _ => None,
    };
    match label_limit {
        Some((limit, why)) => {
            if name.len() > limit {
                c.report(format!(
                    "{name:?} is {} characters; it must be at most {limit}: {why}",
                    name.len()
                ));
            }
            let shape: Vec<String> = syntax::dns1123_label(&name[..name.len().min(63)])
                .into_iter()
                .filter(|e| !e.starts_with("must be no more"))
                .collect();
            for e in shape {
                c.report(format!("{name:?} {e}"));
            }
        }
        None => {
            for e in syntax::dns1123_subdomain(name) {
                c.report(format!("{name:?} {e}"));
            }
        }
    }
}

/// Rules a schema cannot express.
pub(super) fn check_semantics(c: &mut Checker<'_>, kind: Kind, value: &Value) {
    let Some(spec) = value.get("spec").filter(|s| s.is_object()) else {
        return;
    };
    c.enter_field("spec");
    if matches!(kind, Kind::Sandbox | Kind::SandboxTemplate)
        && let Some(pod_spec) = spec.pointer("/podTemplate/spec").filter(|p| p.is_object())
    {
        c.enter_field("podTemplate");
        c.enter_field("spec");
        check_pod_spec(c, pod_spec);
        c.leave();
        c.leave();
    }
    if let Some(Value::Array(vcts)) = spec.get("volumeClaimTemplates") {
        c.enter_field("volumeClaimTemplates");
        check_volume_claim_templates(c, vcts);
        c.leave();
    }
    if kind == Kind::SandboxClaim
        && let Some(Value::Array(env)) = spec.get("env")
    {
        c.enter_field("env");
        let mut seen = HashSet::new();
        for (i, var) in env.iter().enumerate() {
            let Some(name) = var.get("name").and_then(Value::as_str) else {
                continue;
            };
            c.enter_index(i);
            c.enter_field("name");
            for e in syntax::env_var_name(name) {
                c.report(format!("{name:?} {e}"));
            }
            let container = var
                .get("containerName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !seen.insert((container.to_owned(), name.to_owned())) {
                c.report(format!("{name:?} is set twice for the same container"));
            }
            c.leave();
            c.leave();
        }
        c.leave();
    }
    c.leave();
}

fn check_pod_spec(c: &mut Checker<'_>, pod_spec: &Value) {
    match pod_spec.get("containers") {
        Some(Value::Array(containers)) if !containers.is_empty() => {
            c.enter_field("containers");
            for (i, container) in containers.iter().enumerate() {
                c.enter_index(i);
                if let Some(name) = container.get("name").and_then(Value::as_str) {
                    c.at_field("name", |c| {
                        for e in syntax::dns1123_label(name) {
                            c.report(format!("{name:?} {e}"));
                        }
                    });
                }
                if container
                    .get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    c.at_field("image", |c| {
                        c.report("required field is missing: the container image to run (e.g. python:3.12-slim)");
                    });
                }
                c.leave();
            }
            c.leave();
        }
        Some(Value::Array(_)) => c.at_field("containers", |c| {
            c.report("must have at least one container")
        }),
        _ => {}
    }
}

fn check_volume_claim_templates(c: &mut Checker<'_>, vcts: &[Value]) {
    let mut seen = HashSet::new();
    for (i, vct) in vcts.iter().enumerate() {
        c.enter_index(i);
        match vct.pointer("/metadata/name").and_then(Value::as_str) {
            None | Some("") => c.report(
                "metadata.name is required: it names the volume and the PVC (<name>-<sandbox>)",
            ),
            Some(name) => {
                c.enter_field("metadata");
                c.enter_field("name");
                for e in syntax::dns1123_label(name) {
                    c.report(format!("{name:?} {e}"));
                }
                if !seen.insert(name.to_owned()) {
                    c.report(format!("duplicate volume claim template name {name:?}"));
                }
                c.leave();
                c.leave();
            }
        }
        c.leave();
    }
}
