//! Volumes and volumeMounts: emptyDir, PersistentVolumeClaims and claim templates, hostPath
//! directories, and the path checks that keep them inside their roots.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Volume};

use super::fields::json_object;
use super::resources::{parse_quantity, round_up};
use super::{PodMappingError, SandboxPod, UnhonouredField};
use crate::spec::{VolumeMount, VolumeSource};

pub(super) fn check_absolute(path: &str, field: &str) -> Result<(), PodMappingError> {
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

pub(super) fn map_volumes(
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
        let claim = paddock_api::names::pvc_name(name, input.sandbox_name);
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
