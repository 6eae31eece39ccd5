//! A claim's `additionalPodMetadata`: validation against the label-domain allowlist and the
//! annotation blocklist (→ `InvalidMetadata`), and the pod-template metadata a claim's Sandbox
//! gets (template metadata + claim identity labels + the claim's additions).

use paddock_api::names::{
    CLAIM_UID, CREATED_BY, SAFE_TO_EVICT, SANDBOX_TEMPLATE_REF_HASH, name_hash,
};
use paddock_api::syntax::{label_value, qualified_name};
use paddock_api::v1beta1::{PodMetadata, SandboxClaim, SandboxTemplate};

/// The label domain allowed when no allowlist is configured.
pub const DEFAULT_ALLOWED_LABEL_DOMAIN: &str = "sandbox.users.io";

/// Annotation domains (and their subdomains) a claim may not set.
pub const RESTRICTED_ANNOTATION_DOMAINS: [&str; 3] = ["kubernetes.io", "k8s.io", "agents.x-k8s.io"];

fn in_domain(domain: &str, allowed: &str) -> bool {
    domain == allowed || domain.ends_with(&format!(".{allowed}"))
}

fn validate_entry(
    key: &str,
    value: &str,
    is_label: bool,
    allowed: &[String],
) -> Result<(), String> {
    let kind = if is_label { "label" } else { "annotation" };
    let errs = qualified_name(key);
    if !errs.is_empty() {
        return Err(format!("invalid {kind} key: {key:?}: {}", errs.join("; ")));
    }
    if is_label && key.eq_ignore_ascii_case("app") && value.eq_ignore_ascii_case("sandbox-router") {
        return Err(format!(
            "restricted system label value: {key:?}={value:?} is not allowed in AdditionalPodMetadata"
        ));
    }
    let domain = match key.split_once('/') {
        Some((prefix, _)) => prefix.to_lowercase(),
        None if is_label => {
            return Err(format!(
                "label {key:?} must have a domain prefix (e.g. 'sandbox.users.io/my-label') to prevent opting into unintended policy domains"
            ));
        }
        None => String::new(),
    };
    if is_label {
        if !allowed.iter().any(|d| in_domain(&domain, d)) {
            return Err(format!("label domain {domain:?} is not in the allowlist"));
        }
        let errs = label_value(value);
        if !errs.is_empty() {
            return Err(format!(
                "invalid label value: {value:?} does not match allowed pattern: {}",
                errs.join("; ")
            ));
        }
    } else if RESTRICTED_ANNOTATION_DOMAINS
        .iter()
        .any(|d| in_domain(&domain, d))
        && key != SAFE_TO_EVICT
    {
        return Err(format!(
            "restricted system domain: {key:?} is not allowed in AdditionalPodMetadata"
        ));
    }
    Ok(())
}

/// Checks `additionalPodMetadata`: label keys need a domain prefix in `allowed_domains`
/// (subdomains allowed; empty list = `sandbox.users.io`), `app=sandbox-router` is forbidden,
/// label values must be valid; annotation keys must be qualified names outside
/// `kubernetes.io`, `k8s.io`, `agents.x-k8s.io` (except `safe-to-evict`).
///
/// # Errors
/// The first problem, worded as upstream words it (`failed to validate label "k": ...`).
pub fn validate_additional_pod_metadata(
    meta: Option<&PodMetadata>,
    allowed_domains: &[String],
) -> Result<(), String> {
    let Some(meta) = meta else { return Ok(()) };
    let default = [DEFAULT_ALLOWED_LABEL_DOMAIN.to_owned()];
    let allowed = if allowed_domains.is_empty() {
        &default[..]
    } else {
        allowed_domains
    };
    for (k, v) in meta.labels.iter().flatten() {
        validate_entry(k, v, true, allowed)
            .map_err(|e| format!("failed to validate label {k:?}: {e}"))?;
    }
    for (k, v) in meta.annotations.iter().flatten() {
        validate_entry(k, v, false, allowed)
            .map_err(|e| format!("failed to validate annotation {k:?}: {e}"))?;
    }
    Ok(())
}

/// Merges the claim's additions into `base`, refusing to change a key the template sets.
///
/// # Errors
/// `metadata override conflict: ...` naming the key and both values.
pub fn merge_pod_metadata(base: &mut PodMetadata, add: Option<&PodMetadata>) -> Result<(), String> {
    let Some(add) = add else { return Ok(()) };
    for (kind, theirs, ours) in [
        ("label", &base.labels, &add.labels),
        ("annotation", &base.annotations, &add.annotations),
    ] {
        for (k, v) in ours.iter().flatten() {
            if let Some(tv) = theirs.as_ref().and_then(|m| m.get(k))
                && tv != v
            {
                return Err(format!(
                    "metadata override conflict: {kind} {k:?} is defined in template with value {tv:?}, but claim requests {v:?}"
                ));
            }
        }
    }
    if let Some(labels) = add.labels.as_ref().filter(|m| !m.is_empty()) {
        base.labels
            .get_or_insert_with(Default::default)
            .extend(labels.clone());
    }
    if let Some(annotations) = add.annotations.as_ref().filter(|m| !m.is_empty()) {
        base.annotations
            .get_or_insert_with(Default::default)
            .extend(annotations.clone());
    }
    Ok(())
}

/// Sets the claim identity labels on pod-template or Sandbox labels: `claim-uid`, and
/// `created-by` copied from the claim (removed when the claim has none).
pub fn set_claim_identity(
    labels: &mut std::collections::BTreeMap<String, String>,
    claim: &SandboxClaim,
) {
    labels.insert(
        CLAIM_UID.to_owned(),
        claim.metadata.uid.clone().unwrap_or_default(),
    );
    match claim_created_by(claim) {
        Some(v) => {
            labels.insert(CREATED_BY.to_owned(), v.to_owned());
        }
        None => {
            labels.remove(CREATED_BY);
        }
    }
}

/// The claim's non-empty `created-by` label.
pub fn claim_created_by(claim: &SandboxClaim) -> Option<&str> {
    claim
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CREATED_BY))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The pod-template metadata of a claim's Sandbox: the template's, plus `claim-uid`,
/// `sandbox-template-ref-hash` and `created-by`, merged with `additionalPodMetadata`.
///
/// # Errors
/// A metadata override conflict (see [`merge_pod_metadata`]).
pub fn claim_pod_metadata(
    template: &SandboxTemplate,
    claim: &SandboxClaim,
) -> Result<PodMetadata, String> {
    let mut meta = template
        .spec
        .blueprint
        .pod_template
        .metadata
        .clone()
        .unwrap_or_default();
    let labels = meta.labels.get_or_insert_with(Default::default);
    set_claim_identity(labels, claim);
    labels.insert(
        SANDBOX_TEMPLATE_REF_HASH.to_owned(),
        name_hash(template.metadata.name.as_deref().unwrap_or_default()),
    );
    merge_pod_metadata(&mut meta, claim.spec.additional_pod_metadata.as_ref())?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> PodMetadata {
        PodMetadata {
            labels: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            ),
            annotations: None,
        }
    }

    fn annotations(pairs: &[(&str, &str)]) -> PodMetadata {
        PodMetadata {
            labels: None,
            annotations: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            ),
        }
    }

    #[test]
    fn label_rules() {
        let none: Vec<String> = vec![];
        let ok = |m: PodMetadata| validate_additional_pod_metadata(Some(&m), &none);
        assert!(ok(labels(&[("sandbox.users.io/team", "a")])).is_ok());
        assert!(ok(labels(&[("x.sandbox.users.io/team", "a")])).is_ok());
        assert_eq!(
            ok(labels(&[("team", "a")])).unwrap_err(),
            "failed to validate label \"team\": label \"team\" must have a domain prefix (e.g. 'sandbox.users.io/my-label') to prevent opting into unintended policy domains"
        );
        assert_eq!(
            ok(labels(&[("example.com/team", "a")])).unwrap_err(),
            "failed to validate label \"example.com/team\": label domain \"example.com\" is not in the allowlist"
        );
        assert!(
            ok(labels(&[("app", "sandbox-router")]))
                .unwrap_err()
                .contains("restricted system label value")
        );
        assert!(
            ok(labels(&[("sandbox.users.io/x", "-bad")]))
                .unwrap_err()
                .contains("invalid label value")
        );
        assert!(
            ok(labels(&[("bad key!", "a")]))
                .unwrap_err()
                .contains("invalid label key")
        );
        let custom = vec!["example.com".to_owned()];
        assert!(
            validate_additional_pod_metadata(Some(&labels(&[("example.com/team", "a")])), &custom)
                .is_ok()
        );
    }

    #[test]
    fn annotation_rules() {
        let none: Vec<String> = vec![];
        let ok = |m: PodMetadata| validate_additional_pod_metadata(Some(&m), &none);
        assert!(ok(annotations(&[("note", "free text")])).is_ok());
        assert!(ok(annotations(&[(SAFE_TO_EVICT, "false")])).is_ok());
        for key in [
            "foo.kubernetes.io/x",
            "k8s.io/x",
            "agents.x-k8s.io/pod-name",
        ] {
            assert_eq!(
                ok(annotations(&[(key, "v")])).unwrap_err(),
                format!(
                    "failed to validate annotation {key:?}: restricted system domain: {key:?} is not allowed in AdditionalPodMetadata"
                )
            );
        }
    }

    #[test]
    fn merge_refuses_to_override_template_values() {
        let mut base = labels(&[("sandbox.users.io/a", "1")]);
        let add = labels(&[("sandbox.users.io/a", "2")]);
        assert_eq!(
            merge_pod_metadata(&mut base, Some(&add)).unwrap_err(),
            "metadata override conflict: label \"sandbox.users.io/a\" is defined in template with value \"1\", but claim requests \"2\""
        );
        let same = labels(&[("sandbox.users.io/a", "1"), ("sandbox.users.io/b", "3")]);
        merge_pod_metadata(&mut base, Some(&same)).unwrap();
        assert_eq!(base.labels.unwrap().len(), 2);
    }
}
