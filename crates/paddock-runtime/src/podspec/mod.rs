//! Maps a Sandbox's pod template to a [`WorkloadSpec`], and lists every field that cannot be
//! honoured on this host (with its path and why) so the engine reports it in a condition
//! instead of dropping it silently. Pure: plain values in, plain values out.
//!
//! Honoured: the first container's image, command, args, env values, workingDir, ports,
//! `resources.limits` cpu and memory, volumeMounts of `emptyDir` and of PersistentVolumeClaims
//! (from `volumeClaimTemplates` or named claims; both become host directories), `subPath`,
//! `securityContext` runAsUser / runAsGroup / runAsNonRoot / readOnlyRootFilesystem (pod and
//! container level), `runtimeClassName` and `hostname`. Fields set to a no-op value (`false`,
//! empty) are not reported.
//!
//! Layout: the types and [`workload_from_pod`] here; `fields` — which pod and container keys
//! are honoured and the report of the rest; `container` — env and ports; `resources` — limits
//! and quantities; `security` — securityContext; `volumes` — volumes, mounts and path checks.

mod container;
mod fields;
mod resources;
mod security;
mod volumes;

use std::path::Path;

use k8s_openapi::api::core::v1::PodSpec;

pub use resources::parse_quantity;

use container::{map_env, map_ports};
use fields::{CONTAINER_FIELDS, POD_FIELDS, json_object, report_unknown_keys};
use resources::map_limits;
use security::map_security;
use volumes::{check_absolute, map_volumes};

use crate::image::{ImageRef, InvalidImageRef};
use crate::spec::{RuntimeClass, UnknownRuntimeClass, WorkloadSpec};

/// What the mapping needs to know about the Sandbox besides its pod template.
#[derive(Debug, Clone, Copy)]
pub struct SandboxPod<'a> {
    /// `spec.podTemplate.spec`.
    pub pod: &'a PodSpec,
    /// `spec.volumeClaimTemplates[*].metadata.name`: each becomes a volume of the same name backed
    /// by the claim `<name>-<sandbox>` (upstream's StatefulSet-like rule).
    pub volume_claim_templates: &'a [String],
    pub namespace: &'a str,
    pub sandbox_name: &'a str,
    /// Host directory holding claim data: a claim lives at `<root>/<namespace>/<claim>`.
    pub persistent_volume_root: &'a Path,
}

/// The result of a successful mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedWorkload {
    pub spec: WorkloadSpec,
    /// Fields that were set but are not honoured locally; report them, don't drop them.
    pub unhonoured: Vec<UnhonouredField>,
}

/// A pod-template field the local runtime ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnhonouredField {
    /// JSON-style path from the pod spec, e.g. `containers[0].livenessProbe`.
    pub path: String,
    /// Why, in a sentence a user can act on.
    pub reason: String,
}

/// A pod template the local runtime cannot run at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PodMappingError {
    #[error("the pod template has no containers; add one under spec.podTemplate.spec.containers")]
    NoContainers,
    #[error("containers[0].image is not set; name an image (or `host` for the host's tools)")]
    MissingImage,
    #[error("containers[0].image: {0}")]
    InvalidImage(#[from] InvalidImageRef),
    #[error("runtimeClassName: {0}")]
    RuntimeClass(#[from] UnknownRuntimeClass),
    #[error("{path}: invalid quantity {value:?}: {reason}")]
    InvalidQuantity {
        path: String,
        value: String,
        reason: &'static str,
    },
    #[error("{path}: {reason}")]
    InvalidField { path: String, reason: String },
}

/// Maps the pod template; see the module docs for what is honoured.
///
/// # Errors
/// A template that cannot run locally at all: no container, no or bad image, unknown runtime
/// class, a mount of an undefined volume, bad paths or quantities, runAsNonRoot with uid 0.
pub fn workload_from_pod(input: &SandboxPod<'_>) -> Result<MappedWorkload, PodMappingError> {
    let pod = input.pod;
    let mut unhonoured = Vec::new();
    let container = pod
        .containers
        .first()
        .ok_or(PodMappingError::NoContainers)?;
    let image_name = container
        .image
        .as_deref()
        .filter(|i| !i.is_empty())
        .ok_or(PodMappingError::MissingImage)?;
    let image = ImageRef::parse(image_name)?;
    let runtime_class = RuntimeClass::from_class_name(pod.runtime_class_name.as_deref())?;

    report_unknown_keys(&json_object(pod), "", POD_FIELDS, &mut unhonoured);
    for (i, extra) in pod.containers.iter().enumerate().skip(1) {
        unhonoured.push(UnhonouredField {
            path: format!("containers[{i}]"),
            reason: format!(
                "only the first container runs locally; container {:?} is not started",
                extra.name
            ),
        });
    }
    report_unknown_keys(
        &json_object(container),
        "containers[0].",
        CONTAINER_FIELDS,
        &mut unhonoured,
    );

    let mut spec = WorkloadSpec::new(runtime_class, image);
    spec.hostname = pod
        .hostname
        .clone()
        .unwrap_or_else(|| input.sandbox_name.to_owned());
    spec.command = container.command.clone();
    spec.args = container.args.clone();
    spec.env = map_env(container, &mut unhonoured);
    if let Some(dir) = &container.working_dir {
        check_absolute(dir, "containers[0].workingDir")?;
        spec.working_dir = Some(dir.clone());
    }
    spec.ports = map_ports(container, &mut unhonoured)?;
    spec.limits = map_limits(container, &mut unhonoured)?;
    map_security(
        pod.security_context.as_ref(),
        container.security_context.as_ref(),
        &mut spec,
        &mut unhonoured,
    )?;
    spec.mounts = map_volumes(input, container, &mut unhonoured)?;
    Ok(MappedWorkload { spec, unhonoured })
}

#[cfg(test)]
mod tests;
