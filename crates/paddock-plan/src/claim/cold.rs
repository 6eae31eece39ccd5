//! The cold path of a claim (contract §2.5 step 6): the Sandbox named after the claim, built
//! from the template with the claim's volume claim templates and environment merged in under the
//! template's policies.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, EnvVar};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use paddock_api::names::{
    LAUNCH_TYPE, LAUNCH_TYPE_COLD, SANDBOX_TEMPLATE_REF, SANDBOX_TEMPLATE_REF_HASH, TRACE_CONTEXT,
    name_hash,
};
use paddock_api::v1beta1::{
    ClaimEnvVar, EnvVarsInjectionPolicy, PersistentVolumeClaimTemplate, Sandbox, SandboxClaim,
    SandboxSpec, SandboxTemplate, VolumeClaimTemplatesPolicy,
};

use super::ClaimError;
use super::metadata::{claim_pod_metadata, set_claim_identity};
use crate::ownership::controller_ref;
use crate::template::apply_secure_defaults;

const VCT_DISALLOWED: &str = "volume claim templates are disallowed by the template";
const VCT_OVERRIDE_FORBIDDEN: &str =
    "overriding volume claim templates is forbidden by the template";
const VCT_INVALID: &str = "invalid volume claim templates";
const ENV_REJECTED: &str = "environment variable injection rejected";

fn validate_vcts(vcts: &[PersistentVolumeClaimTemplate]) -> Result<(), String> {
    let mut names = BTreeSet::new();
    for (i, vct) in vcts.iter().enumerate() {
        let name = vct.name();
        if name.is_empty() {
            return Err(format!("{VCT_INVALID}: name at index {i} is empty"));
        }
        if !names.insert(name) {
            return Err(format!("{VCT_INVALID}: duplicate name {name:?}"));
        }
    }
    Ok(())
}

/// The template's volume claim templates with the claim's merged in under `policy`:
/// `Disallowed` (default) rejects any, `Allowed` appends new names only, `Overrides` replaces
/// same-named entries and appends new ones. Names must be non-empty and unique.
///
/// # Errors
/// The `VolumeClaimTemplatesError` message.
pub fn merge_volume_claim_templates(
    template: &[PersistentVolumeClaimTemplate],
    claim: &[PersistentVolumeClaimTemplate],
    policy: Option<VolumeClaimTemplatesPolicy>,
) -> Result<Vec<PersistentVolumeClaimTemplate>, String> {
    validate_vcts(template).map_err(|e| format!("template: {e}"))?;
    if claim.is_empty() {
        return Ok(template.to_vec());
    }
    validate_vcts(claim).map_err(|e| format!("claim: {e}"))?;
    match policy.unwrap_or(VolumeClaimTemplatesPolicy::Disallowed) {
        VolumeClaimTemplatesPolicy::Disallowed => Err(VCT_DISALLOWED.to_owned()),
        VolumeClaimTemplatesPolicy::Allowed => {
            let names: BTreeSet<&str> = template
                .iter()
                .map(PersistentVolumeClaimTemplate::name)
                .collect();
            if let Some(v) = claim.iter().find(|v| names.contains(v.name())) {
                return Err(format!(
                    "{VCT_OVERRIDE_FORBIDDEN}: cannot override template volume {:?}",
                    v.name()
                ));
            }
            Ok(template.iter().chain(claim).cloned().collect())
        }
        VolumeClaimTemplatesPolicy::Overrides => {
            let by_name: BTreeMap<&str, &PersistentVolumeClaimTemplate> =
                claim.iter().map(|v| (v.name(), v)).collect();
            let template_names: BTreeSet<&str> = template
                .iter()
                .map(PersistentVolumeClaimTemplate::name)
                .collect();
            let mut merged: Vec<PersistentVolumeClaimTemplate> = template
                .iter()
                .map(|v| (*by_name.get(v.name()).unwrap_or(&v)).clone())
                .collect();
            merged.extend(
                claim
                    .iter()
                    .filter(|v| !template_names.contains(v.name()))
                    .cloned(),
            );
            Ok(merged)
        }
    }
}

fn inject_into(
    container: &mut Container,
    envs: &[&ClaimEnvVar],
    policy: EnvVarsInjectionPolicy,
) -> Result<(), String> {
    if policy == EnvVarsInjectionPolicy::Allowed
        && container.env_from.as_ref().is_some_and(|e| !e.is_empty())
    {
        return Err(format!(
            "{ENV_REJECTED}: container {:?} uses EnvFrom sources; Allowed policy cannot safely prevent overriding EnvFrom-provided variables",
            container.name
        ));
    }
    let env = container.env.get_or_insert_with(Vec::new);
    for e in envs {
        let new = EnvVar {
            name: e.name.clone(),
            value: Some(e.value.clone()),
            value_from: None,
        };
        match env.iter_mut().find(|x| x.name == e.name) {
            Some(_) if policy != EnvVarsInjectionPolicy::Overrides => {
                return Err(format!(
                    "{ENV_REJECTED}: environment variable override is not allowed by the template policy for variable {:?}",
                    e.name
                ));
            }
            Some(existing) => *existing = new,
            None => env.push(new),
        }
    }
    Ok(())
}

/// Injects the claim's `env` into the Sandbox's containers: entries without `containerName` go
/// to the first container, others to the named container or init container. Requires the
/// template policy `Allowed` (adds only; no containers with `envFrom`) or `Overrides`.
///
/// # Errors
/// The `EnvVarsInjectionRejected` message.
pub fn inject_env(
    spec: &mut k8s_openapi::api::core::v1::PodSpec,
    envs: &[ClaimEnvVar],
    policy: Option<EnvVarsInjectionPolicy>,
) -> Result<(), String> {
    if envs.is_empty() {
        return Ok(());
    }
    let policy = match policy {
        Some(p @ (EnvVarsInjectionPolicy::Allowed | EnvVarsInjectionPolicy::Overrides)) => p,
        _ => {
            return Err(format!(
                "{ENV_REJECTED}: environment variable injection is not allowed by the template policy"
            ));
        }
    };
    let mut by_container: BTreeMap<&str, Vec<&ClaimEnvVar>> = BTreeMap::new();
    let mut defaults: Vec<&ClaimEnvVar> = Vec::new();
    for e in envs {
        match e.container_name.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => by_container.entry(c).or_default().push(e),
            None => defaults.push(e),
        }
    }
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    for e in envs {
        if let Some(c) = e.container_name.as_deref().filter(|c| !c.is_empty())
            && !inits.iter().chain(&spec.containers).any(|x| x.name == c)
        {
            return Err(format!(
                "{ENV_REJECTED}: target container {c:?} not found in template for environment variable {:?}",
                e.name
            ));
        }
    }
    for c in spec.init_containers.iter_mut().flatten() {
        if let Some(envs) = by_container.get(c.name.as_str()) {
            inject_into(c, envs, policy)?;
        }
    }
    for (i, c) in spec.containers.iter_mut().enumerate() {
        let mut these: Vec<&ClaimEnvVar> = by_container
            .get(c.name.as_str())
            .cloned()
            .unwrap_or_default();
        if i == 0 {
            these.extend(defaults.iter().copied());
        }
        if !these.is_empty() {
            inject_into(c, &these, policy)?;
        }
    }
    Ok(())
}

/// The Sandbox a claim creates when no warm member is taken: named like the claim, the
/// template's blueprint (claim `shutdownTime` is not copied), claim identity, `launch-type:
/// cold` and template-ref-hash labels, the `sandbox-template-ref` (and trace-context)
/// annotations, merged volume claim templates and env, secure defaults, controller reference to
/// the claim.
pub(crate) fn build_cold_sandbox(
    claim: &SandboxClaim,
    template: &SandboxTemplate,
) -> Result<Sandbox, ClaimError> {
    let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
    let template_name = template.metadata.name.as_deref().unwrap_or_default();
    let mut blueprint = template.spec.blueprint.clone();
    let template_vcts = blueprint
        .volume_claim_templates
        .as_deref()
        .unwrap_or_default();
    let claim_vcts = claim
        .spec
        .volume_claim_templates
        .as_deref()
        .unwrap_or_default();
    if claim_vcts.is_empty() {
        validate_vcts(template_vcts).map_err(|e| {
            ClaimError::VolumeClaimTemplates(format!(
                "invalid volume claim templates in template: {e}"
            ))
        })?;
    } else {
        let merged = merge_volume_claim_templates(
            template_vcts,
            claim_vcts,
            template.spec.volume_claim_templates_policy,
        )
        .map_err(|e| {
            ClaimError::VolumeClaimTemplates(format!("failed to merge volume claim templates: {e}"))
        })?;
        blueprint.volume_claim_templates = if merged.is_empty() {
            None
        } else {
            Some(merged)
        };
    }

    let mut labels = BTreeMap::new();
    set_claim_identity(&mut labels, claim);
    labels.insert(LAUNCH_TYPE.to_owned(), LAUNCH_TYPE_COLD.to_owned());
    labels.insert(
        SANDBOX_TEMPLATE_REF_HASH.to_owned(),
        name_hash(template_name),
    );

    blueprint.pod_template.metadata =
        Some(claim_pod_metadata(template, claim).map_err(ClaimError::Other)?);
    inject_env(
        &mut blueprint.pod_template.spec,
        claim.spec.env.as_deref().unwrap_or_default(),
        template.spec.env_vars_injection_policy,
    )
    .map_err(ClaimError::EnvVarsInjectionRejected)?;
    apply_secure_defaults(&mut blueprint.pod_template.spec, template);

    let mut annotations = BTreeMap::new();
    if let Some(tc) = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRACE_CONTEXT))
    {
        annotations.insert(TRACE_CONTEXT.to_owned(), tc.clone());
    }
    annotations.insert(SANDBOX_TEMPLATE_REF.to_owned(), template_name.to_owned());
    // The pod is named like the Sandbox; saying so at create spares the Sandbox loop a patch.
    annotations.insert(
        paddock_api::names::POD_NAME.to_owned(),
        claim_name.to_owned(),
    );

    Ok(Sandbox {
        metadata: ObjectMeta {
            name: Some(claim_name.to_owned()),
            namespace: claim.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(
                SandboxClaim::API_VERSION,
                SandboxClaim::KIND,
                claim_name,
                claim.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..ObjectMeta::default()
        },
        spec: SandboxSpec {
            blueprint,
            ..SandboxSpec::default()
        },
        status: None,
    })
}
