//! Warm adoption (contract §2.5 step 5e): which pool member a claim takes, and the one patch
//! that makes the member the claim's Sandbox.

use std::collections::BTreeMap;

use paddock_api::names::{
    LAUNCH_TYPE, LAUNCH_TYPE_WARM, POD_NAME, SAFE_TO_EVICT, SANDBOX_POD_TEMPLATE_HASH,
    SANDBOX_TEMPLATE_HASH, SANDBOX_TEMPLATE_REF_HASH, TRACE_CONTEXT, WARM_POOL_SANDBOX, name_hash,
};
use paddock_api::v1beta1::{Sandbox, SandboxClaim, SandboxTemplate, SandboxWarmPool};

use super::metadata::{
    claim_created_by, claim_pod_metadata, merge_pod_metadata, set_claim_identity,
};
use crate::ownership::{controller_of_meta, controller_ref, is_extensions_kind};
use crate::patch::{MetadataPatch, SandboxPatch};
use crate::pool::{TemplateFingerprint, is_ready};

fn has_label(sb: &Sandbox, key: &str) -> bool {
    sb.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(key))
}

/// Whether `sb` is a warm member a claim of pool `pool_name` in `namespace` may adopt: not
/// terminating, labelled `warm-pool-sandbox` and `sandbox-template-ref-hash`, controlled by the
/// SandboxWarmPool of that name (any API version).
pub fn is_adoptable_member(sb: &Sandbox, namespace: Option<&str>, pool_name: &str) -> bool {
    sb.metadata.namespace.as_deref() == namespace
        && sb.metadata.deletion_timestamp.is_none()
        && has_label(sb, WARM_POOL_SANDBOX)
        && has_label(sb, SANDBOX_TEMPLATE_REF_HASH)
        && controller_of_meta(&sb.metadata)
            .is_some_and(|r| is_extensions_kind(r, SandboxWarmPool::KIND) && r.name == pool_name)
}

fn has_pod_ips(sb: &Sandbox) -> bool {
    sb.status
        .as_ref()
        .and_then(|s| s.pod_ips.as_ref())
        .is_some_and(|ips| !ips.is_empty())
}

fn node_of(sb: &Sandbox) -> Option<&str> {
    sb.status
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Index of the next candidate by node spread: among candidates whose node is known, one on the
/// node with the most remaining candidates (ties: the oldest); with no node known, the oldest.
/// `remaining` is sorted oldest first.
fn next_pick(remaining: &[&Sandbox]) -> usize {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for sb in remaining {
        if let Some(n) = node_of(sb) {
            *counts.entry(n).or_default() += 1;
        }
    }
    let Some(max) = counts.values().copied().max() else {
        return 0;
    };
    remaining
        .iter()
        .position(|sb| node_of(sb).is_some_and(|n| counts.get(n) == Some(&max)))
        .unwrap_or(0)
}

/// The outcome of looking through a pool's members.
#[derive(Debug)]
pub(crate) enum Choice<'a> {
    /// Adopt this member.
    Take(&'a Sandbox),
    /// None usable now, but some are still waiting for an address.
    Pending,
    /// Nothing to adopt.
    Empty,
}

/// Picks a member: in node-spread order, a Ready one wins at once; otherwise the first
/// not-Ready one with an address; members without pod IPs only count as pending; stale members
/// are skipped when `skip_stale` is given (a `Recreate` pool).
pub(crate) fn choose<'a>(
    mut candidates: Vec<&'a Sandbox>,
    skip_stale: Option<&TemplateFingerprint>,
) -> Choice<'a> {
    candidates.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let mut fallback = None;
    let mut pending = false;
    while !candidates.is_empty() {
        let sb = candidates.remove(next_pick(&candidates));
        if skip_stale.is_some_and(|fp| fp.is_stale(sb)) {
            continue;
        }
        if !has_pod_ips(sb) {
            pending = true;
            continue;
        }
        if is_ready(sb) {
            return Choice::Take(sb);
        }
        if fallback.is_none() {
            fallback = Some(sb);
        }
    }
    match fallback {
        Some(sb) => Choice::Take(sb),
        None if pending => Choice::Pending,
        None => Choice::Empty,
    }
}

/// The adoption patch (contract §2.5 step 5e ii), conditional on the member's resourceVersion:
/// drop `warm-pool-sandbox` and both template-hash labels; set `launch-type: warm`, `claim-uid`,
/// `created-by`, keep or set `sandbox-template-ref-hash`; set `pod-name` to the member's name;
/// copy the claim's trace context; replace the owner references with one controller reference
/// to the claim; pod-template metadata := template metadata + claim identity + the claim's
/// additions (which also drops the pool's labels and `safe-to-evict`).
///
/// # Errors
/// A metadata override conflict between the template and the claim's additions.
pub(crate) fn adoption_patch(
    claim: &SandboxClaim,
    member: &Sandbox,
    template: Option<&SandboxTemplate>,
) -> Result<SandboxPatch, String> {
    let name = member.metadata.name.clone().unwrap_or_default();
    let mut meta = MetadataPatch::locked(member.metadata.resource_version.as_deref());
    meta.remove_label(WARM_POOL_SANDBOX)
        .remove_label(SANDBOX_POD_TEMPLATE_HASH)
        .remove_label(SANDBOX_TEMPLATE_HASH)
        .set_label(LAUNCH_TYPE, LAUNCH_TYPE_WARM);
    let mut identity = BTreeMap::new();
    set_claim_identity(&mut identity, claim);
    for (k, v) in identity {
        meta.set_label(&k, &v);
    }
    if claim_created_by(claim).is_none() {
        meta.remove_label(paddock_api::names::CREATED_BY);
    }
    let ref_hash = member
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SANDBOX_TEMPLATE_REF_HASH))
        .filter(|v| !v.is_empty())
        .cloned()
        .or_else(|| template.map(|t| name_hash(t.metadata.name.as_deref().unwrap_or_default())));
    if let Some(h) = &ref_hash {
        meta.set_label(SANDBOX_TEMPLATE_REF_HASH, h);
    }
    meta.set_annotation(POD_NAME, &name);
    if let Some(tc) = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRACE_CONTEXT))
    {
        meta.set_annotation(TRACE_CONTEXT, tc);
    }
    meta.owner_references = Some(vec![controller_ref(
        SandboxClaim::API_VERSION,
        SandboxClaim::KIND,
        claim.metadata.name.as_deref().unwrap_or_default(),
        claim.metadata.uid.as_deref().unwrap_or_default(),
    )]);

    let pod_meta = match template {
        Some(t) => claim_pod_metadata(t, claim)?,
        None => {
            let mut m = member
                .spec
                .blueprint
                .pod_template
                .metadata
                .clone()
                .unwrap_or_default();
            if let Some(a) = m.annotations.as_mut()
                && a.get(SAFE_TO_EVICT).map(String::as_str) == Some("true")
            {
                a.remove(SAFE_TO_EVICT);
            }
            let labels = m.labels.get_or_insert_with(BTreeMap::new);
            set_claim_identity(labels, claim);
            if let Some(h) = &ref_hash {
                labels.insert(SANDBOX_TEMPLATE_REF_HASH.to_owned(), h.clone());
            }
            merge_pod_metadata(&mut m, claim.spec.additional_pod_metadata.as_ref())?;
            m
        }
    };
    Ok(SandboxPatch {
        name,
        metadata: meta,
        pod_template_metadata: Some(pod_meta),
    })
}
