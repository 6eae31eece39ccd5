//! The workload description the backends run: what a Sandbox's pod template becomes on this
//! host. Plain data with no IO; `podspec` builds it, `gvisor` and `bwrap` consume it.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::image::ImageRef;

/// The isolation backend a workload runs under, chosen by the pod's `runtimeClassName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeClass {
    /// gVisor (`runsc`), the default: a user-space kernel between the workload and the host.
    Gvisor,
    /// bubblewrap: namespaces, no capabilities, a seccomp filter; the fast tier.
    Bwrap,
}

/// The runtime class names this host understands, for error messages.
pub const KNOWN_RUNTIME_CLASSES: &str = "gvisor (alias runsc, the default), bwrap";

impl RuntimeClass {
    /// Maps a pod's `runtimeClassName`: unset, `gvisor` or `runsc` → gVisor; `bwrap` → bubblewrap.
    ///
    /// # Errors
    /// Any other name, naming the classes this host offers.
    pub fn from_class_name(name: Option<&str>) -> Result<Self, UnknownRuntimeClass> {
        match name {
            None | Some("gvisor" | "runsc") => Ok(Self::Gvisor),
            Some("bwrap" | "bubblewrap") => Ok(Self::Bwrap),
            Some(other) => Err(UnknownRuntimeClass {
                name: other.to_owned(),
            }),
        }
    }

    /// The canonical name, as used in `runtimeClassName` and on the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gvisor => "gvisor",
            Self::Bwrap => "bwrap",
        }
    }
}

impl fmt::Display for RuntimeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `runtimeClassName` that this host does not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "runtimeClassName {name:?} is not available on this host; use one of: {KNOWN_RUNTIME_CLASSES}"
)]
pub struct UnknownRuntimeClass {
    /// The class that was asked for.
    pub name: String,
}

/// Everything the backends need to start one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Which isolation to use.
    pub runtime_class: RuntimeClass,
    /// The root filesystem: a registry image, a local OCI layout, or the built-in `host` image.
    pub image: ImageRef,
    /// The container's `command` (replaces the image's Entrypoint when set).
    pub command: Option<Vec<String>>,
    /// The container's `args` (replaces the image's Cmd when set).
    pub args: Option<Vec<String>>,
    /// Environment for the agent and everything it starts; wins over the image's `Env`.
    pub env: Vec<EnvVar>,
    /// Working directory; the image's `WorkingDir`, then `/`, when unset.
    pub working_dir: Option<String>,
    /// Ports the workload listens on inside the sandbox (informational: local sandboxes have no
    /// network, the gateway reaches ports through the agent).
    pub ports: Vec<PortSpec>,
    /// Resource limits; `None` fields fall back to the runtime's defaults.
    pub limits: ResourceLimits,
    /// Volumes mounted into the sandbox.
    pub mounts: Vec<VolumeMount>,
    /// `securityContext.runAsUser`; the image's `User`, then 0, when unset.
    pub run_as_user: Option<u32>,
    /// `securityContext.runAsGroup`; the image's `User` group, then 0, when unset.
    pub run_as_group: Option<u32>,
    /// `securityContext.readOnlyRootFilesystem`: no writable layer over the image.
    pub read_only_rootfs: bool,
    /// Hostname inside the sandbox (the Sandbox's name).
    pub hostname: String,
    /// Run no main process, whatever the image's entrypoint: the sandbox idles, waiting for
    /// exec (sandboxes created for `paddock run` and the SDKs).
    #[serde(default)]
    pub idle: bool,
    /// A network to join instead of none: the namespace the egress proxy serves (see
    /// `paddock-egress`). `None`: the sandbox has no network at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkAttachment>,
}

/// The network namespace a sandbox joins, and its resolver configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// A pinned network namespace (an nsfs bind mount) that the sandbox joins.
    pub netns: PathBuf,
    /// A host file bound read-only at `/etc/resolv.conf` inside the sandbox.
    pub resolv_conf: PathBuf,
    /// A host file bound read-only at [`CA_BUNDLE_PATH`]: the distro's roots plus the
    /// sandbox's own egress CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<PathBuf>,
}

/// Where a networked sandbox finds its trust store (Debian's path; the environment points
/// OpenSSL, Python, Node and git at it too).
pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";

impl WorkloadSpec {
    /// A spec with nothing but an image and a class: no command, env, limits or volumes.
    pub fn new(runtime_class: RuntimeClass, image: ImageRef) -> Self {
        Self {
            runtime_class,
            image,
            command: None,
            args: None,
            env: Vec::new(),
            working_dir: None,
            ports: Vec::new(),
            limits: ResourceLimits::default(),
            mounts: Vec::new(),
            run_as_user: None,
            run_as_group: None,
            read_only_rootfs: false,
            hostname: "paddock".to_owned(),
            idle: false,
            network: None,
        }
    }

    /// Paths inside the sandbox the workload may write to: what a Landlock ruleset should allow.
    /// An image rootfs has a writable layer, so `/` is writable there; the `host` image is
    /// read-only except `/tmp`, the agent's run directory and the volumes.
    pub fn writable_paths(&self) -> Vec<String> {
        let mut paths = Vec::new();
        if matches!(self.image, ImageRef::Host) || self.read_only_rootfs {
            paths.push("/tmp".to_owned());
            paths.push(crate::agent::RUN_DIR.to_owned());
            for mount in &self.mounts {
                if !mount.read_only {
                    paths.push(mount.container_path.clone());
                }
            }
        } else {
            paths.push("/".to_owned());
        }
        paths
    }
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// A container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub name: Option<String>,
    pub container_port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// Limits enforced by the host (cgroups) on the whole sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU limit in millicores (1000 = one core).
    pub cpu_millis: Option<u64>,
    /// Maximum number of host tasks (processes and threads).
    pub pids: Option<u64>,
}

impl ResourceLimits {
    /// Fills unset fields from `defaults`.
    pub fn or(self, defaults: ResourceLimits) -> ResourceLimits {
        ResourceLimits {
            memory_bytes: self.memory_bytes.or(defaults.memory_bytes),
            cpu_millis: self.cpu_millis.or(defaults.cpu_millis),
            pids: self.pids.or(defaults.pids),
        }
    }
}

/// A volume mounted at `container_path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// The pod volume's name.
    pub name: String,
    /// Absolute path inside the sandbox.
    pub container_path: String,
    pub read_only: bool,
    /// A relative path inside the volume to mount instead of its root (`subPath`).
    pub sub_path: Option<String>,
    pub source: VolumeSource,
}

/// Where a volume's data lives on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// A directory that lives and dies with the workload (`emptyDir`).
    EmptyDir,
    /// A tmpfs inside the sandbox (`emptyDir.medium: Memory`); bytes, when limited.
    Memory { size_limit: Option<u64> },
    /// A host directory that outlives the workload: a PersistentVolumeClaim's data, kept across
    /// suspend/resume and restarts, or a directory the user asked for (`paddock run -v`).
    /// Created (0755) when missing.
    HostDir { path: PathBuf },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_class_defaults_to_gvisor_and_accepts_aliases() {
        assert_eq!(
            RuntimeClass::from_class_name(None),
            Ok(RuntimeClass::Gvisor)
        );
        assert_eq!(
            RuntimeClass::from_class_name(Some("runsc")),
            Ok(RuntimeClass::Gvisor)
        );
        assert_eq!(
            RuntimeClass::from_class_name(Some("gvisor")),
            Ok(RuntimeClass::Gvisor)
        );
        assert_eq!(
            RuntimeClass::from_class_name(Some("bwrap")),
            Ok(RuntimeClass::Bwrap)
        );
    }

    #[test]
    fn unknown_runtime_class_names_the_class_and_the_alternatives() {
        let err = RuntimeClass::from_class_name(Some("kata-fc")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"kata-fc\""), "{msg}");
        assert!(msg.contains("gvisor") && msg.contains("bwrap"), "{msg}");
    }

    #[test]
    fn writable_paths_of_host_image_are_tmp_run_and_rw_volumes() {
        let mut spec = WorkloadSpec::new(RuntimeClass::Bwrap, ImageRef::Host);
        spec.mounts.push(VolumeMount {
            name: "data".into(),
            container_path: "/data".into(),
            read_only: false,
            sub_path: None,
            source: VolumeSource::EmptyDir,
        });
        spec.mounts.push(VolumeMount {
            name: "cfg".into(),
            container_path: "/cfg".into(),
            read_only: true,
            sub_path: None,
            source: VolumeSource::EmptyDir,
        });
        assert_eq!(
            spec.writable_paths(),
            vec!["/tmp", "/.paddock/run", "/data"]
        );
    }

    #[test]
    fn limits_fall_back_to_defaults_field_by_field() {
        let own = ResourceLimits {
            memory_bytes: Some(1),
            cpu_millis: None,
            pids: None,
        };
        let defaults = ResourceLimits {
            memory_bytes: Some(2),
            cpu_millis: Some(3),
            pids: Some(4),
        };
        assert_eq!(
            own.or(defaults),
            ResourceLimits {
                memory_bytes: Some(1),
                cpu_millis: Some(3),
                pids: Some(4)
            }
        );
    }
}
