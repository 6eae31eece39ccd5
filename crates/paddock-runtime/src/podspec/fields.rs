//! The pod and container fields the local runtime honours or not (and why), and the walk that
//! reports every set-but-unhonoured key as an [`UnhonouredField`].

use serde_json::Value;

use super::UnhonouredField;

/// Pod-spec keys and why they are not honoured; `None` = honoured (handled elsewhere).
pub(super) const POD_FIELDS: &[(&str, Option<&str>)] = &[
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

pub(super) const CONTAINER_FIELDS: &[(&str, Option<&str>)] = &[
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

pub(super) fn json_object<T: serde::Serialize>(value: &T) -> serde_json::Map<String, Value> {
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

pub(super) fn report_unknown_keys(
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
