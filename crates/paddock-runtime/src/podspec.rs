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

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, PodSecurityContext, PodSpec, SecurityContext, Volume};
use serde_json::Value;

use crate::image::{ImageRef, InvalidImageRef};
use crate::spec::{
    EnvVar, PortSpec, ResourceLimits, RuntimeClass, UnknownRuntimeClass, VolumeMount, VolumeSource,
    WorkloadSpec,
};

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

/// Pod-spec keys and why they are not honoured; `None` = honoured (handled elsewhere).
const POD_FIELDS: &[(&str, Option<&str>)] = &[
    ("containers", None),
    ("volumes", None),
    ("securityContext", None),
    ("runtimeClassName", None),
    ("hostname", None),
    (
        "initContainers",
        Some("init containers are not run by the local runtime"),
    ),
    (
        "ephemeralContainers",
        Some("ephemeral containers are not supported locally"),
    ),
    (
        "hostNetwork",
        Some("local sandboxes never share the host's network namespace"),
    ),
    (
        "hostPID",
        Some("local sandboxes never share the host's process namespace"),
    ),
    (
        "hostIPC",
        Some("local sandboxes never share the host's IPC namespace"),
    ),
    (
        "hostUsers",
        Some("local sandboxes always run in their own user namespace"),
    ),
    (
        "shareProcessNamespace",
        Some("there is only one container locally"),
    ),
    ("nodeName", Some("scheduling does not apply on one machine")),
    (
        "nodeSelector",
        Some("scheduling does not apply on one machine"),
    ),
    ("affinity", Some("scheduling does not apply on one machine")),
    (
        "tolerations",
        Some("scheduling does not apply on one machine"),
    ),
    (
        "topologySpreadConstraints",
        Some("scheduling does not apply on one machine"),
    ),
    (
        "schedulerName",
        Some("scheduling does not apply on one machine"),
    ),
    (
        "schedulingGates",
        Some("scheduling does not apply on one machine"),
    ),
    ("priority", Some("scheduling does not apply on one machine")),
    (
        "priorityClassName",
        Some("scheduling does not apply on one machine"),
    ),
    (
        "preemptionPolicy",
        Some("scheduling does not apply on one machine"),
    ),
    ("overhead", Some("scheduling does not apply on one machine")),
    (
        "readinessGates",
        Some("readiness comes from the in-sandbox agent locally"),
    ),
    (
        "dnsPolicy",
        Some("local sandboxes have no network, so no DNS"),
    ),
    (
        "dnsConfig",
        Some("local sandboxes have no network, so no DNS"),
    ),
    ("hostAliases", Some("local sandboxes have no network")),
    ("subdomain", Some("local sandboxes have no network")),
    ("setHostnameAsFQDN", Some("local sandboxes have no network")),
    (
        "enableServiceLinks",
        Some("local sandboxes have no Services"),
    ),
    (
        "serviceAccount",
        Some("no Kubernetes API credentials are mounted locally"),
    ),
    (
        "serviceAccountName",
        Some("no Kubernetes API credentials are mounted locally"),
    ),
    (
        "automountServiceAccountToken",
        Some("no Kubernetes API credentials are mounted locally"),
    ),
    (
        "imagePullSecrets",
        Some("registry credentials come from the local runtime's configuration"),
    ),
    (
        "terminationGracePeriodSeconds",
        Some("a local sandbox is killed at once when stopped"),
    ),
    (
        "activeDeadlineSeconds",
        Some("use the Sandbox's shutdownTime instead"),
    ),
    (
        "restartPolicy",
        Some("the local runtime does not restart a sandbox's main process"),
    ),
    (
        "os",
        Some("local sandboxes always run Linux on this host's architecture"),
    ),
    (
        "resourceClaims",
        Some("dynamic resource claims are not supported locally"),
    ),
    (
        "resources",
        Some("pod-level resources are not enforced locally; set containers[0].resources.limits"),
    ),
];

const CONTAINER_FIELDS: &[(&str, Option<&str>)] = &[
    ("name", None),
    ("image", None),
    ("command", None),
    ("args", None),
    ("env", None),
    ("workingDir", None),
    ("ports", None),
    ("resources", None),
    ("volumeMounts", None),
    ("securityContext", None),
    ("imagePullPolicy", None),
    (
        "envFrom",
        Some("envFrom (ConfigMaps, Secrets) is not available locally; set env values"),
    ),
    ("lifecycle", Some("lifecycle hooks are not run locally")),
    (
        "livenessProbe",
        Some("probes are not run locally; readiness comes from the in-sandbox agent"),
    ),
    (
        "readinessProbe",
        Some("probes are not run locally; readiness comes from the in-sandbox agent"),
    ),
    (
        "startupProbe",
        Some("probes are not run locally; readiness comes from the in-sandbox agent"),
    ),
    ("stdin", Some("attach to the sandbox with exec instead")),
    ("stdinOnce", Some("attach to the sandbox with exec instead")),
    ("tty", Some("use exec with a PTY instead")),
    (
        "terminationMessagePath",
        Some("termination messages are not collected locally"),
    ),
    (
        "terminationMessagePolicy",
        Some("termination messages are not collected locally"),
    ),
    (
        "restartPolicy",
        Some("sidecar containers are not supported locally"),
    ),
    (
        "resizePolicy",
        Some("in-place resize is not supported locally"),
    ),
    (
        "volumeDevices",
        Some("block devices are never passed into local sandboxes"),
    ),
];

fn json_object<T: serde::Serialize>(value: &T) -> serde_json::Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// Whether a JSON value carries no setting (absent, false, empty).
fn is_noop(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn report_unknown_keys(
    object: &serde_json::Map<String, Value>,
    prefix: &str,
    table: &[(&str, Option<&str>)],
    out: &mut Vec<UnhonouredField>,
) {
    for (key, value) in object {
        if is_noop(value) {
            continue;
        }
        let reason = match table.iter().find(|(name, _)| name == key) {
            Some((_, None)) => continue,
            Some((_, Some(reason))) => (*reason).to_owned(),
            None => "not supported by the local runtime".to_owned(),
        };
        out.push(UnhonouredField {
            path: format!("{prefix}{key}"),
            reason,
        });
    }
}

fn map_env(container: &Container, unhonoured: &mut Vec<UnhonouredField>) -> Vec<EnvVar> {
    let mut env = Vec::new();
    for (i, var) in container.env.iter().flatten().enumerate() {
        if var.value_from.is_some() {
            unhonoured.push(UnhonouredField {
                path: format!("containers[0].env[{i}].valueFrom"),
                reason: format!(
                    "{} is not set: valueFrom is not available locally; set a value",
                    var.name
                ),
            });
            continue;
        }
        env.push(EnvVar {
            name: var.name.clone(),
            value: var.value.clone().unwrap_or_default(),
        });
    }
    env
}

fn map_ports(
    container: &Container,
    unhonoured: &mut Vec<UnhonouredField>,
) -> Result<Vec<PortSpec>, PodMappingError> {
    let mut ports = Vec::new();
    for (i, port) in container.ports.iter().flatten().enumerate() {
        let path = format!("containers[0].ports[{i}]");
        let number = u16::try_from(port.container_port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| PodMappingError::InvalidField {
                path: format!("{path}.containerPort"),
                reason: format!("{} is not a port number (1-65535)", port.container_port),
            })?;
        if port.host_port.is_some() || port.host_ip.is_some() {
            unhonoured.push(UnhonouredField {
                path: format!("{path}.hostPort"),
                reason: "local sandboxes publish no host ports; reach the port through the gateway"
                    .to_owned(),
            });
        }
        ports.push(PortSpec {
            name: port.name.clone(),
            container_port: number,
            protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
        });
    }
    Ok(ports)
}

fn map_limits(
    container: &Container,
    unhonoured: &mut Vec<UnhonouredField>,
) -> Result<ResourceLimits, PodMappingError> {
    let mut limits = ResourceLimits::default();
    let Some(resources) = &container.resources else {
        return Ok(limits);
    };
    for (name, quantity) in resources.limits.iter().flatten() {
        let path = format!("containers[0].resources.limits.{name}");
        match name.as_str() {
            "memory" => {
                let bytes = parse_quantity(&quantity.0, &path)?;
                limits.memory_bytes = Some(round_up(bytes, &path, &quantity.0)?);
            }
            "cpu" => {
                let cores = parse_quantity(&quantity.0, &path)?;
                limits.cpu_millis = Some(round_up(cores * 1000.0, &path, &quantity.0)?.max(1));
            }
            other => unhonoured.push(UnhonouredField {
                path,
                reason: format!(
                    "the local runtime enforces cpu and memory limits only, not {other}"
                ),
            }),
        }
    }
    if resources.requests.as_ref().is_some_and(|r| !r.is_empty()) {
        unhonoured.push(UnhonouredField {
            path: "containers[0].resources.requests".to_owned(),
            reason: "requests only guide scheduling; locally, limits are what is enforced"
                .to_owned(),
        });
    }
    if resources.claims.as_ref().is_some_and(|c| !c.is_empty()) {
        unhonoured.push(UnhonouredField {
            path: "containers[0].resources.claims".to_owned(),
            reason: "dynamic resource claims are not supported locally".to_owned(),
        });
    }
    Ok(limits)
}

fn round_up(value: f64, path: &str, raw: &str) -> Result<u64, PodMappingError> {
    let rounded = value.ceil();
    if !(0.0..=1.8e19).contains(&rounded) {
        return Err(PodMappingError::InvalidQuantity {
            path: path.to_owned(),
            value: raw.to_owned(),
            reason: "out of range",
        });
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range checked above
    Ok(rounded as u64)
}

/// Parses a Kubernetes quantity (`128Mi`, `1.5G`, `500m`, `1e9`) into its value.
///
/// # Errors
/// Anything that is not a non-negative number with a known suffix.
pub fn parse_quantity(raw: &str, path: &str) -> Result<f64, PodMappingError> {
    let bad = |reason| PodMappingError::InvalidQuantity {
        path: path.to_owned(),
        value: raw.to_owned(),
        reason,
    };
    let s = raw.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number.starts_with('.') && number.len() == 1 {
        return Err(bad("expected a number such as 512Mi, 2Gi, 500m or 1"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| bad("expected a number such as 512Mi, 2Gi, 500m or 1"))?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let power: i32 = exp[1..].parse().map_err(|_| bad("bad exponent"))?;
            if !(-18..=18).contains(&power) {
                return Err(bad("exponent out of range"));
            }
            10f64.powi(power)
        }
        _ => {
            return Err(bad(
                "unknown suffix; use one of Ki Mi Gi Ti, k M G T, m, or none",
            ));
        }
    };
    let result = value * multiplier;
    if !result.is_finite() {
        return Err(bad("out of range"));
    }
    Ok(result)
}

fn map_security(
    pod: Option<&PodSecurityContext>,
    container: Option<&SecurityContext>,
    spec: &mut WorkloadSpec,
    unhonoured: &mut Vec<UnhonouredField>,
) -> Result<(), PodMappingError> {
    const SHARED: &[(&str, Option<&str>)] = &[
        ("runAsUser", None),
        ("runAsGroup", None),
        ("runAsNonRoot", None),
        ("readOnlyRootFilesystem", None),
        (
            "seLinuxOptions",
            Some("SELinux is not used by the local runtime"),
        ),
        (
            "appArmorProfile",
            Some("AppArmor is not used by the local runtime"),
        ),
        ("windowsOptions", Some("local sandboxes run Linux")),
        (
            "procMount",
            Some("local sandboxes always get a masked /proc"),
        ),
        ("fsGroup", Some("volumes are not re-owned locally")),
        (
            "fsGroupChangePolicy",
            Some("volumes are not re-owned locally"),
        ),
        (
            "supplementalGroups",
            Some("supplemental groups are not set locally"),
        ),
        (
            "supplementalGroupsPolicy",
            Some("supplemental groups are not set locally"),
        ),
        ("sysctls", Some("sysctls cannot be set in local sandboxes")),
        (
            "seLinuxChangePolicy",
            Some("SELinux is not used by the local runtime"),
        ),
    ];
    let id = |value: Option<i64>, path: &str| -> Result<Option<u32>, PodMappingError> {
        value
            .map(|v| {
                u32::try_from(v).map_err(|_| PodMappingError::InvalidField {
                    path: path.to_owned(),
                    reason: format!("{v} is not a valid user or group id"),
                })
            })
            .transpose()
    };
    let mut non_root = false;
    if let Some(pod) = pod {
        let mut object = json_object(pod);
        // The pod-level seccomp profile is judged like the container-level one below.
        let seccomp = object.remove("seccompProfile");
        report_unknown_keys(&object, "securityContext.", SHARED, unhonoured);
        report_seccomp(
            seccomp.as_ref(),
            "securityContext.seccompProfile",
            unhonoured,
        );
        spec.run_as_user = id(pod.run_as_user, "securityContext.runAsUser")?;
        spec.run_as_group = id(pod.run_as_group, "securityContext.runAsGroup")?;
        non_root = pod.run_as_non_root.unwrap_or(false);
    }
    if let Some(sc) = container {
        let mut object = json_object(sc);
        let seccomp = object.remove("seccompProfile");
        for (key, reason) in [
            ("privileged", "local sandboxes are never privileged"),
            (
                "allowPrivilegeEscalation",
                "privilege escalation is always disabled (no_new_privs)",
            ),
        ] {
            if object.remove(key) == Some(Value::Bool(true)) {
                unhonoured.push(UnhonouredField {
                    path: format!("containers[0].securityContext.{key}"),
                    reason: reason.to_owned(),
                });
            }
        }
        object.remove("allowPrivilegeEscalation");
        object.remove("privileged");
        if let Some(caps) = &sc.capabilities {
            object.remove("capabilities");
            if caps.add.as_ref().is_some_and(|a| !a.is_empty()) {
                unhonoured.push(UnhonouredField {
                    path: "containers[0].securityContext.capabilities.add".to_owned(),
                    reason: "local sandboxes get no capabilities".to_owned(),
                });
            }
        }
        report_unknown_keys(
            &object,
            "containers[0].securityContext.",
            SHARED,
            unhonoured,
        );
        report_seccomp(
            seccomp.as_ref(),
            "containers[0].securityContext.seccompProfile",
            unhonoured,
        );
        if let Some(uid) = id(sc.run_as_user, "containers[0].securityContext.runAsUser")? {
            spec.run_as_user = Some(uid);
        }
        if let Some(gid) = id(sc.run_as_group, "containers[0].securityContext.runAsGroup")? {
            spec.run_as_group = Some(gid);
        }
        non_root = sc.run_as_non_root.unwrap_or(non_root);
        spec.read_only_rootfs = sc.read_only_root_filesystem.unwrap_or(false);
    }
    if non_root {
        match spec.run_as_user {
            Some(0) => {
                return Err(PodMappingError::InvalidField {
                    path: "securityContext.runAsNonRoot".to_owned(),
                    reason: "runAsNonRoot is set but runAsUser is 0; set a non-zero runAsUser"
                        .to_owned(),
                });
            }
            Some(_) => {}
            None => unhonoured.push(UnhonouredField {
                path: "securityContext.runAsNonRoot".to_owned(),
                reason: "checked only against runAsUser locally; set runAsUser to a non-zero uid"
                    .to_owned(),
            }),
        }
    }
    Ok(())
}

fn report_seccomp(profile: Option<&Value>, path: &str, unhonoured: &mut Vec<UnhonouredField>) {
    let Some(profile) = profile else { return };
    let kind = profile
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != "RuntimeDefault" {
        unhonoured.push(UnhonouredField {
            path: path.to_owned(),
            reason: format!("{kind} seccomp profiles are not applied locally; the runtime's own filter always is"),
        });
    }
}

fn check_absolute(path: &str, field: &str) -> Result<(), PodMappingError> {
    let p = Path::new(path);
    if !p.is_absolute()
        || p.components().any(|c| matches!(c, Component::ParentDir))
        || path.contains('\0')
    {
        return Err(PodMappingError::InvalidField {
            path: field.to_owned(),
            reason: format!("{path:?} must be an absolute path without .."),
        });
    }
    Ok(())
}

/// A single safe path component (a claim name becomes a directory name).
fn check_component(name: &str, field: &str) -> Result<(), PodMappingError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(PodMappingError::InvalidField {
            path: field.to_owned(),
            reason: format!("{name:?} cannot be used as a directory name"),
        });
    }
    Ok(())
}

fn map_volumes(
    input: &SandboxPod<'_>,
    container: &Container,
    unhonoured: &mut Vec<UnhonouredField>,
) -> Result<Vec<VolumeMount>, PodMappingError> {
    check_component(input.namespace, "metadata.namespace")?;
    let claim_dir = |claim: &str, field: &str| -> Result<PathBuf, PodMappingError> {
        check_component(claim, field)?;
        Ok(input
            .persistent_volume_root
            .join(input.namespace)
            .join(claim))
    };
    // name → (source, forced read-only); `None` source = a type that is not available locally.
    let mut volumes: BTreeMap<&str, (Option<VolumeSource>, bool)> = BTreeMap::new();
    for (i, volume) in input.pod.volumes.iter().flatten().enumerate() {
        if input.volume_claim_templates.contains(&volume.name) {
            continue; // replaced by the claim template of the same name
        }
        let mapped = map_volume(volume, i, &claim_dir, unhonoured)?;
        volumes.insert(volume.name.as_str(), mapped);
    }
    for (i, name) in input.volume_claim_templates.iter().enumerate() {
        let claim = format!("{name}-{}", input.sandbox_name);
        let dir = claim_dir(&claim, &format!("volumeClaimTemplates[{i}].metadata.name"))?;
        volumes.insert(
            name.as_str(),
            (Some(VolumeSource::HostDir { path: dir }), false),
        );
    }
    let mut mounts = Vec::new();
    for (i, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let path = format!("containers[0].volumeMounts[{i}]");
        check_absolute(&mount.mount_path, &format!("{path}.mountPath"))?;
        let Some((source, forced_ro)) = volumes.get(mount.name.as_str()) else {
            return Err(PodMappingError::InvalidField {
                path: format!("{path}.name"),
                reason: format!(
                    "no volume named {:?} in the pod template or volumeClaimTemplates",
                    mount.name
                ),
            });
        };
        let Some(source) = source else {
            unhonoured.push(UnhonouredField {
                path,
                reason: format!(
                    "volume {:?} has a type not available locally; nothing is mounted at {}",
                    mount.name, mount.mount_path
                ),
            });
            continue;
        };
        let sub_path = mount.sub_path.clone().filter(|s| !s.is_empty());
        if let Some(sub) = &sub_path {
            let p = Path::new(sub);
            if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Err(PodMappingError::InvalidField {
                    path: format!("{path}.subPath"),
                    reason: format!("{sub:?} must be a relative path without .."),
                });
            }
        }
        for (key, set, reason) in [
            (
                "mountPropagation",
                mount.mount_propagation.is_some(),
                "mount propagation is always private locally",
            ),
            (
                "subPathExpr",
                mount.sub_path_expr.is_some(),
                "subPathExpr is not expanded locally; use subPath",
            ),
            (
                "recursiveReadOnly",
                mount.recursive_read_only.is_some(),
                "read-only mounts are always recursive locally",
            ),
        ] {
            if set {
                unhonoured.push(UnhonouredField {
                    path: format!("{path}.{key}"),
                    reason: reason.to_owned(),
                });
            }
        }
        mounts.push(VolumeMount {
            name: mount.name.clone(),
            container_path: mount.mount_path.clone(),
            read_only: mount.read_only.unwrap_or(false) || *forced_ro,
            sub_path,
            source: source.clone(),
        });
    }
    Ok(mounts)
}

type ClaimDir<'a> = dyn Fn(&str, &str) -> Result<PathBuf, PodMappingError> + 'a;

fn map_volume(
    volume: &Volume,
    index: usize,
    claim_dir: &ClaimDir<'_>,
    unhonoured: &mut Vec<UnhonouredField>,
) -> Result<(Option<VolumeSource>, bool), PodMappingError> {
    let path = format!("volumes[{index}]");
    if let Some(empty) = &volume.empty_dir {
        let size = empty
            .size_limit
            .as_ref()
            .map(|q| {
                parse_quantity(&q.0, &format!("{path}.emptyDir.sizeLimit"))
                    .and_then(|v| round_up(v, &path, &q.0))
            })
            .transpose()?;
        if empty.medium.as_deref() == Some("Memory") {
            return Ok((Some(VolumeSource::Memory { size_limit: size }), false));
        }
        if size.is_some() {
            unhonoured.push(UnhonouredField {
                path: format!("{path}.emptyDir.sizeLimit"),
                reason: "disk-backed emptyDir size is not limited locally; use medium: Memory for a bounded tmpfs".to_owned(),
            });
        }
        return Ok((Some(VolumeSource::EmptyDir), false));
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        let dir = claim_dir(
            &claim.claim_name,
            &format!("{path}.persistentVolumeClaim.claimName"),
        )?;
        return Ok((
            Some(VolumeSource::HostDir { path: dir }),
            claim.read_only.unwrap_or(false),
        ));
    }
    if let Some(host) = &volume.host_path {
        // A host directory the user asked for (`paddock run -v HOST:SANDBOX`). It must exist
        // unless its type asks for it to be created; files and sockets are not mounted.
        let dir = PathBuf::from(&host.path);
        if !dir.is_absolute() {
            return Err(PodMappingError::InvalidField {
                path: format!("{path}.hostPath.path"),
                reason: format!("{:?} is not an absolute path", host.path),
            });
        }
        let may_create = host.type_.as_deref() == Some("DirectoryOrCreate");
        if !may_create && !dir.is_dir() {
            return Err(PodMappingError::InvalidField {
                path: format!("{path}.hostPath.path"),
                reason: format!(
                    "{} is not an existing directory on this host (set type: DirectoryOrCreate to create it)",
                    host.path
                ),
            });
        }
        return Ok((Some(VolumeSource::HostDir { path: dir }), false));
    }
    let kind = json_object(volume)
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| k != "name")
        .unwrap_or_default();
    unhonoured.push(UnhonouredField {
        path: format!("{path}.{kind}"),
        reason: format!(
            "{kind} volumes are not available locally; use emptyDir or a volumeClaimTemplate"
        ),
    });
    Ok((None, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Capabilities, ConfigMapVolumeSource, ContainerPort, EmptyDirVolumeSource, EnvVarSource,
        PersistentVolumeClaimVolumeSource, Probe, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn container() -> Container {
        Container {
            name: "main".into(),
            image: Some("python:3.12".into()),
            ..Default::default()
        }
    }

    fn map(pod: &PodSpec, vcts: &[String]) -> Result<MappedWorkload, PodMappingError> {
        workload_from_pod(&SandboxPod {
            pod,
            volume_claim_templates: vcts,
            namespace: "default",
            sandbox_name: "sb1",
            persistent_volume_root: Path::new("/var/lib/paddock/volumes"),
        })
    }

    #[test]
    fn first_container_command_env_workdir_ports_and_limits_are_mapped() {
        let mut c = container();
        c.command = Some(vec!["python3".into()]);
        c.args = Some(vec!["-m".into(), "http.server".into()]);
        c.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "A".into(),
            value: Some("1".into()),
            value_from: None,
        }]);
        c.working_dir = Some("/app".into());
        c.ports = Some(vec![ContainerPort {
            container_port: 8888,
            ..Default::default()
        }]);
        c.resources = Some(ResourceRequirements {
            limits: Some(
                [
                    ("memory".to_owned(), Quantity("512Mi".into())),
                    ("cpu".to_owned(), Quantity("500m".into())),
                ]
                .into(),
            ),
            ..Default::default()
        });
        let pod = PodSpec {
            containers: vec![c],
            runtime_class_name: Some("bwrap".into()),
            ..Default::default()
        };
        let mapped = map(&pod, &[]).unwrap();
        let s = &mapped.spec;
        assert_eq!(s.runtime_class, RuntimeClass::Bwrap);
        assert_eq!(s.command.as_deref(), Some(&["python3".to_owned()][..]));
        assert_eq!(s.args.as_ref().unwrap().len(), 2);
        assert_eq!(
            s.env,
            vec![EnvVar {
                name: "A".into(),
                value: "1".into()
            }]
        );
        assert_eq!(s.working_dir.as_deref(), Some("/app"));
        assert_eq!(s.ports[0].container_port, 8888);
        assert_eq!(s.ports[0].protocol, "TCP");
        assert_eq!(s.limits.memory_bytes, Some(512 * 1024 * 1024));
        assert_eq!(s.limits.cpu_millis, Some(500));
        assert_eq!(s.hostname, "sb1");
        assert!(mapped.unhonoured.is_empty(), "{:?}", mapped.unhonoured);
    }

    #[test]
    fn volume_claim_templates_and_empty_dirs_become_host_directories() {
        let mut c = container();
        c.volume_mounts = Some(vec![
            k8s_openapi::api::core::v1::VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
                ..Default::default()
            },
            k8s_openapi::api::core::v1::VolumeMount {
                name: "scratch".into(),
                mount_path: "/scratch".into(),
                sub_path: Some("a/b".into()),
                ..Default::default()
            },
            k8s_openapi::api::core::v1::VolumeMount {
                name: "shm".into(),
                mount_path: "/dev/shm".into(),
                ..Default::default()
            },
            k8s_openapi::api::core::v1::VolumeMount {
                name: "old".into(),
                mount_path: "/old".into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]);
        let pod = PodSpec {
            containers: vec![c],
            volumes: Some(vec![
                Volume {
                    name: "data".into(),
                    config_map: Some(ConfigMapVolumeSource::default()),
                    ..Default::default()
                },
                Volume {
                    name: "scratch".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                },
                Volume {
                    name: "shm".into(),
                    empty_dir: Some(EmptyDirVolumeSource {
                        medium: Some("Memory".into()),
                        size_limit: Some(Quantity("64Mi".into())),
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "old".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: "legacy".into(),
                        read_only: None,
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let mapped = map(&pod, &["data".to_owned()]).unwrap();
        let m = &mapped.spec.mounts;
        // The claim template replaces the same-named configMap volume (upstream's rule).
        assert_eq!(
            m[0].source,
            VolumeSource::HostDir {
                path: "/var/lib/paddock/volumes/default/data-sb1".into()
            }
        );
        assert_eq!(m[1].source, VolumeSource::EmptyDir);
        assert_eq!(m[1].sub_path.as_deref(), Some("a/b"));
        assert_eq!(
            m[2].source,
            VolumeSource::Memory {
                size_limit: Some(64 << 20)
            }
        );
        assert_eq!(
            m[3].source,
            VolumeSource::HostDir {
                path: "/var/lib/paddock/volumes/default/legacy".into()
            }
        );
        assert!(m[3].read_only);
        assert!(mapped.unhonoured.is_empty(), "{:?}", mapped.unhonoured);
    }

    #[test]
    fn unsupported_volume_types_are_reported_with_the_mount_they_skip() {
        let mut c = container();
        c.volume_mounts = Some(vec![k8s_openapi::api::core::v1::VolumeMount {
            name: "cfg".into(),
            mount_path: "/cfg".into(),
            ..Default::default()
        }]);
        let pod = PodSpec {
            containers: vec![c],
            volumes: Some(vec![Volume {
                name: "cfg".into(),
                config_map: Some(ConfigMapVolumeSource::default()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let mapped = map(&pod, &[]).unwrap();
        assert!(mapped.spec.mounts.is_empty());
        let paths: Vec<_> = mapped.unhonoured.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["volumes[0].configMap", "containers[0].volumeMounts[0]"]
        );
        assert!(mapped.unhonoured[1].reason.contains("/cfg"));
    }

    #[test]
    fn fields_that_cannot_be_honoured_are_listed_with_paths_and_reasons() {
        let mut c = container();
        c.liveness_probe = Some(Probe {
            period_seconds: Some(5),
            ..Default::default()
        });
        c.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "POD".into(),
            value: None,
            value_from: Some(EnvVarSource::default()),
        }]);
        c.security_context = Some(SecurityContext {
            privileged: Some(true),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..Default::default()
        });
        c.resources = Some(ResourceRequirements {
            limits: Some([("nvidia.com/gpu".to_owned(), Quantity("1".into()))].into()),
            requests: Some([("cpu".to_owned(), Quantity("1".into()))].into()),
            ..Default::default()
        });
        let pod = PodSpec {
            containers: vec![
                c,
                Container {
                    name: "sidecar".into(),
                    ..Default::default()
                },
            ],
            host_network: Some(true),
            host_pid: Some(false),
            node_selector: Some([("a".to_owned(), "b".to_owned())].into()),
            ..Default::default()
        };
        let mapped = map(&pod, &[]).unwrap();
        let paths: Vec<_> = mapped.unhonoured.iter().map(|u| u.path.as_str()).collect();
        for expected in [
            "hostNetwork",
            "nodeSelector",
            "containers[1]",
            "containers[0].livenessProbe",
            "containers[0].env[0].valueFrom",
            "containers[0].resources.limits.nvidia.com/gpu",
            "containers[0].resources.requests",
            "containers[0].securityContext.privileged",
            "containers[0].securityContext.capabilities.add",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
        }
        assert!(
            !paths.contains(&"hostPID"),
            "a false flag is a no-op: {paths:?}"
        );
        assert!(mapped.unhonoured.iter().all(|u| !u.reason.is_empty()));
        assert!(mapped.spec.env.is_empty());
    }

    #[test]
    fn run_as_user_container_level_overrides_pod_level() {
        let mut c = container();
        c.security_context = Some(SecurityContext {
            run_as_user: Some(1000),
            ..Default::default()
        });
        let pod = PodSpec {
            containers: vec![c],
            security_context: Some(PodSecurityContext {
                run_as_user: Some(5),
                run_as_group: Some(6),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = map(&pod, &[]).unwrap().spec;
        assert_eq!((s.run_as_user, s.run_as_group), (Some(1000), Some(6)));
    }

    #[test]
    fn run_as_non_root_with_uid_zero_is_rejected() {
        let mut c = container();
        c.security_context = Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(true),
            ..Default::default()
        });
        let pod = PodSpec {
            containers: vec![c],
            ..Default::default()
        };
        assert!(matches!(
            map(&pod, &[]),
            Err(PodMappingError::InvalidField { .. })
        ));
    }

    #[test]
    fn templates_that_cannot_run_are_errors_naming_the_field() {
        let none = PodSpec::default();
        assert_eq!(map(&none, &[]), Err(PodMappingError::NoContainers));
        let no_image = PodSpec {
            containers: vec![Container::default()],
            ..Default::default()
        };
        assert_eq!(map(&no_image, &[]), Err(PodMappingError::MissingImage));
        let kata = PodSpec {
            containers: vec![container()],
            runtime_class_name: Some("kata".into()),
            ..Default::default()
        };
        assert!(map(&kata, &[]).unwrap_err().to_string().contains("kata"));
        let mut c = container();
        c.volume_mounts = Some(vec![k8s_openapi::api::core::v1::VolumeMount {
            name: "ghost".into(),
            mount_path: "/g".into(),
            ..Default::default()
        }]);
        let err = map(
            &PodSpec {
                containers: vec![c],
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("containers[0].volumeMounts[0].name"),
            "{err}"
        );
        let mut c = container();
        c.volume_mounts = Some(vec![k8s_openapi::api::core::v1::VolumeMount {
            name: "v".into(),
            mount_path: "/v".into(),
            sub_path: Some("../../etc".into()),
            ..Default::default()
        }]);
        let pod = PodSpec {
            containers: vec![c],
            volumes: Some(vec![Volume {
                name: "v".into(),
                empty_dir: Some(Default::default()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(map(&pod, &[]).unwrap_err().to_string().contains("subPath"));
    }

    #[test]
    fn claim_names_cannot_escape_the_volume_root() {
        let pod = PodSpec {
            containers: vec![container()],
            volumes: Some(vec![Volume {
                name: "v".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: "../x".into(),
                    read_only: None,
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(matches!(
            map(&pod, &[]),
            Err(PodMappingError::InvalidField { .. })
        ));
    }

    #[test]
    fn quantities_parse_binary_decimal_milli_and_exponent_forms() {
        let q = |s| parse_quantity(s, "x").unwrap();
        assert_eq!(q("128Mi"), 134_217_728.0);
        assert_eq!(q("1G"), 1e9);
        assert_eq!(q("500m"), 0.5);
        assert_eq!(q("2"), 2.0);
        assert_eq!(q("1.5Gi"), 1.5 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(q("1e3"), 1000.0);
        for bad in ["", "-1", "1Xi", "abc", "1e99", "."] {
            assert!(parse_quantity(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn host_path_volumes_mount_existing_directories_only() {
        use k8s_openapi::api::core::v1::{HostPathVolumeSource, VolumeMount as K8sMount};
        let dir = std::env::temp_dir();
        let mut pod = PodSpec {
            containers: vec![Container {
                volume_mounts: Some(vec![K8sMount {
                    name: "data".into(),
                    mount_path: "/data".into(),
                    read_only: Some(true),
                    ..K8sMount::default()
                }]),
                ..container()
            }],
            volumes: Some(vec![Volume {
                name: "data".into(),
                host_path: Some(HostPathVolumeSource {
                    path: dir.display().to_string(),
                    type_: None,
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        };
        let root = Path::new("/var/lib/paddock/volumes");
        let input = |pod: &PodSpec| {
            workload_from_pod(&SandboxPod {
                pod,
                volume_claim_templates: &[],
                namespace: "default",
                sandbox_name: "s",
                persistent_volume_root: root,
            })
            .map(|m| (m.spec, m.unhonoured))
        };
        let (spec, unhonoured) = input(&pod).unwrap();
        assert!(unhonoured.is_empty(), "{unhonoured:?}");
        assert_eq!(
            spec.mounts[0].source,
            VolumeSource::HostDir { path: dir.clone() }
        );
        assert!(spec.mounts[0].read_only);
        pod.volumes.as_mut().unwrap()[0]
            .host_path
            .as_mut()
            .unwrap()
            .path = "/no/such/dir".into();
        let err = input(&pod).unwrap_err().to_string();
        assert!(
            err.contains("/no/such/dir is not an existing directory"),
            "{err}"
        );
    }
}
