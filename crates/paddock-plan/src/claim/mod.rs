//! The SandboxClaim planner (contract §2.5): expiry, `additionalPodMetadata` validation,
//! find-or-adopt (bound Sandbox, adoption in progress, Sandbox named like the claim, warm
//! member, cold Sandbox), the claim status with the Sandbox's `Ready` forwarded, and when to
//! look again.
//!
//! Adoption is safe under concurrency by construction of [`ClaimAction::Adopt`]: the driver
//! first writes the claim's `sandbox-name` annotation conditional on the claim's
//! resourceVersion, then patches the member conditional on the member's resourceVersion. Of two
//! claims racing for one member, at most one member patch succeeds; the loser's next plan sees
//! the member controlled by another claim, drops its stale annotation and picks again. A member
//! is never handed to two claims, and a claim never switches candidate within one pass.

mod adopt;
mod cold;
mod expiry;
mod failure;
mod find;
mod metadata;
mod plan;
mod planner;
mod status;

use paddock_api::names::SHADOW_POOL_PREFIX;
use paddock_api::v1beta1::{SandboxClaim, SandboxWarmPool};

pub use adopt::is_adoptable_member;
pub use cold::{inject_env, merge_volume_claim_templates};
pub use expiry::{CLAIM_EXPIRED_MESSAGE, claim_expiry};
pub use failure::{FailureOutcome, claim_status_after_failure};
pub use metadata::{
    DEFAULT_ALLOWED_LABEL_DOMAIN, RESTRICTED_ANNOTATION_DOMAINS, claim_pod_metadata,
    merge_pod_metadata, validate_additional_pod_metadata,
};
pub use plan::{Adoption, ClaimAction, ClaimConfig, ClaimInput, ClaimPlan, FirstReady};
pub use planner::plan_claim;
pub use status::SANDBOX_EXPIRED_MESSAGE;

/// Errors with a claim-level reason.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ClaimError {
    TemplateNotFound(String),
    WarmPoolNotFound,
    InvalidMetadata(String),
    EnvVarsInjectionRejected(String),
    VolumeClaimTemplates(String),
    NotOwned(String),
    Other(String),
}

/// The template a claim's Sandbox is made from: the pool's `sandboxTemplateRef`; for a missing
/// `shadow-pool-<template>` pool (v1alpha1 `warmpool: none|default` converted), `<template>`,
/// because upstream's migration pre-creates such pools with `replicas: 0` and the claim must
/// still get a cold Sandbox. `None`: the pool is missing (`WarmPoolNotFound`).
pub fn template_name_for(claim: &SandboxClaim, pool: Option<&SandboxWarmPool>) -> Option<String> {
    match pool {
        Some(p) => Some(p.spec.sandbox_template_ref.name.clone()),
        None => claim
            .spec
            .warm_pool_ref
            .name
            .strip_prefix(SHADOW_POOL_PREFIX)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
    }
}

fn annotation<'a>(claim: &'a SandboxClaim, key: &str) -> Option<&'a str> {
    claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn claim_label<'a>(claim: &'a SandboxClaim, key: &str) -> Option<&'a str> {
    claim
        .metadata
        .labels
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn error_text(e: &ClaimError, claim: &SandboxClaim) -> String {
    match e {
        ClaimError::WarmPoolNotFound => format!(
            "SandboxWarmPool {:?} not found",
            claim.spec.warm_pool_ref.name
        ),
        ClaimError::TemplateNotFound(m)
        | ClaimError::InvalidMetadata(m)
        | ClaimError::EnvVarsInjectionRejected(m)
        | ClaimError::VolumeClaimTemplates(m)
        | ClaimError::NotOwned(m)
        | ClaimError::Other(m) => m.clone(),
    }
}
