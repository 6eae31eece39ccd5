//! Pod- and container-level `securityContext`: user and group ids, runAsNonRoot, a read-only
//! root filesystem, and what is reported instead of applied (privileges, capabilities, seccomp).

use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};
use serde_json::Value;

use super::fields::{json_object, report_unknown_keys};
use super::{PodMappingError, UnhonouredField};
use crate::spec::WorkloadSpec;

pub(super) fn map_security(
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
