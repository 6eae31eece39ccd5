//! The gVisor backend: an OCI bundle built from the workload spec, run detached by `runsc`
//! under a private `--root`, with no network, the agent as the container's init and its unix
//! socket reachable from the host through `--host-uds=create`.
//!
//! Limits: runsc applies `linux.resources` through cgroups, which works on this hybrid host
//! (v1 controllers) — memory, CPU quota and pids land in `<controller>/paddock-<tag>/<id>`.
//! A memory or fork bomb inside gVisor ends that sandbox (the sentry hits its cgroup's memory
//! or pids limit and dies) and touches nothing else.
//! Capabilities are Docker's default set minus the network and device ones; they act on gVisor's
//! own kernel, never the host's. `noNewPrivileges` is always set.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::hostview::HostView;
use crate::isolation::{Found, Isolation, Launch};
use crate::runtime::{BoxFuture, RuntimeError, WorkloadId, WorkloadState};
use crate::spec::{ResourceLimits, RuntimeClass, WorkloadSpec};
use crate::workdir::{ResolvedMount, WorkloadDir, WorkloadMeta};

/// Capabilities granted (inside gVisor) to a workload running as uid 0.
const ROOT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
];

/// Everything `config.json` is made from.
#[derive(Debug)]
pub struct BundleInput<'a> {
    /// The spec, already completed from the image ([`crate::agent::resolve_with_image`]).
    pub spec: &'a WorkloadSpec,
    pub rootfs: &'a Path,
    pub read_only_root: bool,
    /// Set for the `host` image: its binds and masks.
    pub host_view: Option<&'a HostView>,
    pub mask_file: &'a Path,
    pub mask_dir: &'a Path,
    pub agent_binary: &'a Path,
    /// The stat shim on this host, preloaded into the sandbox's processes ([`STAT_SHIM`]).
    pub stat_shim: Option<&'a Path>,
    pub run_dir: &'a Path,
    pub volumes: &'a [ResolvedMount],
    pub limits: ResourceLimits,
    /// `None` when the host has no cgroups (then the runtime refuses before getting here).
    pub cgroups_path: Option<String>,
}

/// The stat shim (`shim/noautomount.c`, built by `build.rs`; empty when it could not be built):
/// this gVisor rejects `AT_NO_AUTOMOUNT`, which GNU `ls -l` and `stat` always pass.
pub(crate) const STAT_SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/noautomount.so"));

/// Where the stat shim is mounted inside a gVisor sandbox (and preloaded from).
pub const STAT_SHIM_PATH: &str = "/.paddock/lib/noautomount.so";

fn bind(source: &Path, destination: &str, read_only: bool) -> Value {
    let mut options = vec!["rbind", "nosuid", "nodev"];
    options.push(if read_only { "ro" } else { "rw" });
    json!({"destination": destination, "type": "bind", "source": source, "options": options})
}

/// The OCI runtime config for a workload. Pure.
pub fn oci_config(input: &BundleInput<'_>) -> Value {
    let spec = input.spec;
    let uid = spec.run_as_user.unwrap_or(0);
    let gid = spec.run_as_group.unwrap_or(0);
    let caps: Vec<&str> = if uid == 0 {
        ROOT_CAPABILITIES.to_vec()
    } else {
        Vec::new()
    };
    let mut env: Vec<String> = spec
        .env
        .iter()
        .filter(|e| input.stat_shim.is_none() || e.name != "LD_PRELOAD")
        .map(|e| format!("{}={}", e.name, e.value))
        .collect();
    if input.stat_shim.is_some() {
        // The spec's own preloads keep working, after the shim.
        let own = spec.env.iter().find(|e| e.name == "LD_PRELOAD");
        env.push(match own {
            Some(e) if !e.value.is_empty() => format!("LD_PRELOAD={STAT_SHIM_PATH}:{}", e.value),
            _ => format!("LD_PRELOAD={STAT_SHIM_PATH}"),
        });
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    ];
    if let Some(view) = input.host_view {
        for target in view.bind_targets() {
            mounts.push(bind(target, &target.to_string_lossy(), true));
        }
        for file in &view.masked_files {
            mounts.push(bind(input.mask_file, &file.to_string_lossy(), true));
        }
        for dir in &view.masked_dirs {
            mounts.push(bind(input.mask_dir, &dir.to_string_lossy(), true));
        }
        mounts.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}));
    }
    if let Some(network) = &spec.network {
        mounts.push(bind(&network.resolv_conf, "/etc/resolv.conf", true));
        if let Some(bundle) = &network.ca_bundle {
            mounts.push(bind(bundle, crate::spec::CA_BUNDLE_PATH, true));
        }
    }
    mounts.push(bind(input.agent_binary, crate::agent::AGENT_PATH, true));
    if let Some(shim) = input.stat_shim {
        mounts.push(bind(shim, STAT_SHIM_PATH, true));
    }
    mounts.push(bind(input.run_dir, crate::agent::RUN_DIR, false));
    for volume in input.volumes {
        mounts.push(match volume {
            ResolvedMount::Bind { source, target, read_only } => bind(source, target, *read_only),
            ResolvedMount::Tmpfs { target, size_bytes } => {
                let mut options = vec!["nosuid".to_owned(), "nodev".to_owned(), "mode=1777".to_owned()];
                if let Some(size) = size_bytes {
                    options.push(format!("size={size}"));
                }
                json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
            }
        });
    }
    let mut resources = serde_json::Map::new();
    if let Some(m) = input.limits.memory_bytes {
        resources.insert("memory".into(), json!({"limit": m}));
    }
    if let Some(c) = input.limits.cpu_millis {
        resources.insert("cpu".into(), json!({"quota": c * 100, "period": 100_000}));
    }
    if let Some(p) = input.limits.pids {
        resources.insert("pids".into(), json!({"limit": p}));
    }
    // With a network, the sandbox joins the egress proxy's namespace and runsc passes its
    // sockets through to it (`--network=host`); without, gVisor's own stack has no interface.
    let network = match &spec.network {
        Some(n) => json!({"type": "network", "path": n.netns}),
        None => json!({"type": "network"}),
    };
    let mut linux = json!({
        "namespaces": [{"type": "pid"}, network, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
        "resources": resources,
        "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
        "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    });
    if let Some(path) = &input.cgroups_path {
        linux["cgroupsPath"] = json!(path);
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": crate::agent::agent_argv(spec),
            "env": env,
            "cwd": spec.working_dir.clone().unwrap_or_else(|| "/".to_owned()),
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 65536, "soft": 65536}],
            "noNewPrivileges": true,
        },
        "root": {"path": input.rootfs, "readonly": input.read_only_root},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": linux,
    })
}

/// Drives `runsc` for one runtime root.
#[derive(Debug, Clone)]
pub struct Gvisor {
    pub runsc: PathBuf,
    /// runsc's private `--root` state directory.
    pub state_root: PathBuf,
    /// Prefix of runsc container ids: runsc names its control sockets after the container id
    /// alone (abstract sockets, host-wide), so two runtime roots must never share an id.
    pub id_prefix: String,
}

#[derive(serde::Deserialize)]
struct ContainerState {
    id: String,
    status: String,
}

impl Gvisor {
    /// The runsc container id of a workload.
    pub fn container_id(&self, id: &WorkloadId) -> String {
        format!("{}-{}", self.id_prefix, id)
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.runsc);
        cmd.arg("--root").arg(&self.state_root).stdin(Stdio::null());
        cmd
    }

    /// Writes the bundle and starts the sandbox detached. Returns when runsc has started it.
    pub async fn start(
        &self,
        id: &WorkloadId,
        dir: &WorkloadDir,
        config: &Value,
        networked: bool,
    ) -> Result<(), RuntimeError> {
        let bundle = dir.bundle();
        std::fs::create_dir(&bundle).map_err(RuntimeError::io("create", &bundle))?;
        let config_path = bundle.join("config.json");
        let bytes = serde_json::to_vec_pretty(config)
            .map_err(|e| RuntimeError::io("encode", &config_path)(std::io::Error::other(e)))?;
        std::fs::write(&config_path, bytes).map_err(RuntimeError::io("write", &config_path))?;
        let log = dir.path.join("runsc.log");
        // Detached runsc keeps inherited pipes open for the sandbox's lifetime: null stdio only.
        let status = self
            .command()
            .arg(if networked {
                "--network=host"
            } else {
                "--network=none"
            })
            .args(["--platform=ptrace", "--host-uds=create"])
            .arg("--log")
            .arg(&log)
            .args(["run", "--detach", "--bundle"])
            .arg(&bundle)
            .arg(self.container_id(id))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .map_err(|e| RuntimeError::Start {
                backend: RuntimeClass::Gvisor,
                id: id.clone(),
                message: format!("cannot run {}: {e}", self.runsc.display()),
            })?;
        if !status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = tail
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(" | ");
            return Err(RuntimeError::Start {
                backend: RuntimeClass::Gvisor,
                id: id.clone(),
                message: format!("runsc run exited with {status}: {tail}"),
            });
        }
        Ok(())
    }

    /// The container's state according to runsc.
    pub async fn state(&self, id: &WorkloadId) -> WorkloadState {
        let output = self
            .command()
            .args(["state", &self.container_id(id)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .await;
        match output {
            Ok(out) if out.status.success() => {
                match serde_json::from_slice::<ContainerState>(&out.stdout) {
                    Ok(s) => status_to_state(&s.status),
                    Err(_) => WorkloadState::Missing,
                }
            }
            _ => WorkloadState::Missing,
        }
    }

    /// States of every container under this root, in one runsc call.
    pub async fn states(&self) -> Vec<(String, WorkloadState)> {
        let output = self
            .command()
            .args(["list", "--format=json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .await;
        let Ok(out) = output else { return Vec::new() };
        let list: Vec<ContainerState> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let prefix = format!("{}-", self.id_prefix);
        list.into_iter()
            .filter_map(|c| {
                Some((
                    c.id.strip_prefix(&prefix)?.to_owned(),
                    status_to_state(&c.status),
                ))
            })
            .collect()
    }

    /// runsc's state and lock files of a container (`<cid>_sandbox:<cid>.state|.lock`).
    fn state_files(&self, id: &WorkloadId) -> [PathBuf; 2] {
        let cid = self.container_id(id);
        let base = format!("{cid}_sandbox:{cid}");
        [
            self.state_root.join(format!("{base}.state")),
            self.state_root.join(format!("{base}.lock")),
        ]
    }

    /// Whether runsc may still hold anything of this workload: its state file, or a process
    /// naming it. Cheap (no runsc call), so teardowns of other workloads can ask first.
    pub fn holds(&self, id: &WorkloadId) -> bool {
        self.state_files(id)[0].exists() || !self.processes(id).is_empty()
    }

    /// Kills and deletes the container, then waits until none of its processes is left.
    pub async fn destroy(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        let cid = self.container_id(id);
        let _ = self
            .command()
            .args(["kill", &cid, "KILL"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        let status = self
            .command()
            .args(["delete", "--force", &cid])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| RuntimeError::Command {
                command: "runsc delete".into(),
                message: e.to_string(),
            })?;
        if !status.status.success() {
            let message = String::from_utf8_lossy(&status.stderr);
            if !message.contains("does not exist") && !message.contains("not found") {
                tracing::warn!(id = %id, error = %message.trim(), "runsc delete failed");
            }
        }
        // Belt and braces: any runsc process still naming this container under our root.
        for _ in 0..300 {
            let left = self.processes(id);
            if left.is_empty() {
                // runsc leaves its lock file behind; one per deleted sandbox would pile up.
                let [state, lock] = self.state_files(id);
                if !state.exists() {
                    let _ = std::fs::remove_file(lock);
                }
                return Ok(());
            }
            for pid in &left {
                if let Some(pid) = rustix::process::Pid::from_raw(*pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(RuntimeError::Command {
            command: "runsc delete".into(),
            message: format!("processes of {id} survive SIGKILL"),
        })
    }

    /// Workloads (by id) whose runsc sandbox process is alive, from one pass over `/proc`: the
    /// cheap liveness check for periodic polling, where a `runsc list` costs ~50 ms of CPU.
    pub fn live_ids(&self) -> std::collections::HashSet<String> {
        let root = self.state_root.to_string_lossy().into_owned();
        let root_flag = format!("--root={root}");
        let prefix = format!("{}-", self.id_prefix);
        let mut out = std::collections::HashSet::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return out;
        };
        for entry in dir.flatten() {
            if !entry
                .file_name()
                .to_str()
                .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
            {
                continue;
            }
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if !args
                .iter()
                .any(|a| *a == root_flag.as_bytes() || *a == root.as_bytes())
            {
                continue;
            }
            out.extend(args.iter().filter_map(|a| {
                std::str::from_utf8(a)
                    .ok()?
                    .strip_prefix(&prefix)
                    .map(str::to_owned)
            }));
        }
        out
    }

    /// Host pids of runsc processes (sandbox, gofer, runsc itself) for this container.
    pub fn processes(&self, id: &WorkloadId) -> Vec<i32> {
        let root = self.state_root.to_string_lossy().into_owned();
        let cid = self.container_id(id);
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return out;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let names_root = args
                .iter()
                .any(|a| *a == root.as_bytes() || a.ends_with(format!("={root}").as_bytes()));
            let names_id = args.contains(&cid.as_bytes());
            if names_root && names_id {
                out.push(pid);
            }
        }
        out
    }
}

impl Gvisor {
    /// Builds the bundle for a prepared workload, starts it and waits for its agent.
    async fn launch_workload(&self, launch: Launch<'_>) -> Result<(), RuntimeError> {
        let Launch {
            id,
            dir,
            spec,
            image,
            volumes,
            limits,
            host,
            ..
        } = launch;
        let (rootfs, read_only_root, host_view) = match image {
            None => (
                dir.host_skeleton(&host.host_view)?,
                true,
                Some(&host.host_view),
            ),
            Some(image) => (
                dir.mount_overlay(&image.rootfs)?,
                spec.read_only_rootfs,
                None,
            ),
        };
        let run_dir = dir.run_dir();
        let config = oci_config(&BundleInput {
            spec,
            rootfs: &rootfs,
            read_only_root,
            host_view,
            mask_file: &host.mask_file,
            mask_dir: &host.mask_dir,
            agent_binary: &host.agent_binary,
            stat_shim: host.stat_shim.as_deref(),
            run_dir: &run_dir,
            volumes,
            limits,
            cgroups_path: Some(format!("/{}/{}", host.cgroup_parent, id)),
        });
        self.start(id, dir, &config, spec.network.is_some()).await?;
        let g = self.clone();
        let watched = id.clone();
        crate::agent::wait_ready(&dir.socket(), host.ready_timeout, move || {
            !g.processes(&watched).is_empty()
        })
        .await
        .map_err(|e| RuntimeError::NotReady {
            id: id.clone(),
            message: e.to_string(),
        })
    }
}

impl Isolation for Gvisor {
    fn class(&self) -> RuntimeClass {
        RuntimeClass::Gvisor
    }

    fn dir_owner(&self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        Some((uid, gid))
    }

    fn launch<'a>(&'a self, launch: Launch<'a>) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.launch_workload(launch))
    }

    fn states<'a>(&'a self, found: &'a [&'a Found]) -> BoxFuture<'a, Vec<WorkloadState>> {
        Box::pin(async move {
            let forgotten = |s: WorkloadState| match s {
                WorkloadState::Missing => WorkloadState::Exited { code: None },
                other => other,
            };
            // One workload: `runsc state`; several: one `runsc list` for all.
            if let [one] = found {
                return vec![forgotten(self.state(&one.id).await)];
            }
            let all: std::collections::HashMap<String, WorkloadState> =
                self.states().await.into_iter().collect();
            found
                .iter()
                .map(|f| {
                    all.get(f.id.as_str())
                        .copied()
                        .unwrap_or(WorkloadState::Exited { code: None })
                })
                .collect()
        })
    }

    fn alive(&self, found: &[&Found]) -> Vec<bool> {
        let live = self.live_ids();
        found.iter().map(|f| live.contains(f.id.as_str())).collect()
    }

    fn destroy<'a>(
        &'a self,
        id: &'a WorkloadId,
        _meta: Option<&'a WorkloadMeta>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(Gvisor::destroy(self, id))
    }

    fn holds(&self, id: &WorkloadId) -> bool {
        Gvisor::holds(self, id)
    }

    fn host_processes(&self, id: &WorkloadId) -> Vec<i32> {
        self.processes(id)
    }
}

fn status_to_state(status: &str) -> WorkloadState {
    match status {
        "running" | "created" | "paused" => WorkloadState::Running,
        "stopped" => WorkloadState::Exited { code: None },
        _ => WorkloadState::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageRef;
    use crate::spec::EnvVar;

    fn input<'a>(
        spec: &'a WorkloadSpec,
        view: Option<&'a HostView>,
        volumes: &'a [ResolvedMount],
    ) -> BundleInput<'a> {
        BundleInput {
            spec,
            rootfs: Path::new("/r/w/rootfs"),
            read_only_root: view.is_some(),
            host_view: view,
            mask_file: Path::new("/r/empty-file"),
            mask_dir: Path::new("/r/empty-dir"),
            agent_binary: Path::new("/opt/paddock-agent"),
            stat_shim: None,
            run_dir: Path::new("/r/w/run"),
            volumes,
            limits: ResourceLimits {
                memory_bytes: Some(256 << 20),
                cpu_millis: Some(500),
                pids: Some(128),
            },
            cgroups_path: Some("/paddock-t/w".into()),
        }
    }

    #[test]
    fn bundle_runs_the_agent_as_init_with_limits_user_and_no_network() {
        let mut spec = WorkloadSpec::new(RuntimeClass::Gvisor, ImageRef::parse("busybox").unwrap());
        spec.env = vec![EnvVar {
            name: "A".into(),
            value: "b".into(),
        }];
        spec.run_as_user = Some(1000);
        spec.run_as_group = Some(1000);
        spec.working_dir = Some("/app".into());
        let config = oci_config(&input(&spec, None, &[]));
        assert_eq!(config["process"]["args"][0], "/.paddock/bin/agent");
        assert_eq!(config["process"]["env"][0], "A=b");
        assert_eq!(config["process"]["cwd"], "/app");
        assert_eq!(config["process"]["user"]["uid"], 1000);
        assert_eq!(
            config["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .len(),
            0,
            "non-root gets no capabilities"
        );
        assert_eq!(config["process"]["noNewPrivileges"], true);
        assert_eq!(
            config["linux"]["resources"]["memory"]["limit"],
            256u64 << 20
        );
        assert_eq!(config["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(config["linux"]["resources"]["pids"]["limit"], 128);
        assert_eq!(config["linux"]["cgroupsPath"], "/paddock-t/w");
        let namespaces: Vec<&str> = config["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(namespaces.contains(&"network"));
        let mounts = config["mounts"].as_array().unwrap();
        let agent = mounts
            .iter()
            .find(|m| m["destination"] == "/.paddock/bin/agent")
            .unwrap();
        assert!(agent["options"].as_array().unwrap().contains(&json!("ro")));
        let run = mounts
            .iter()
            .find(|m| m["destination"] == "/.paddock/run")
            .unwrap();
        assert_eq!(run["source"], "/r/w/run");
    }

    #[test]
    fn host_image_bundle_binds_host_dirs_read_only_and_masks_secrets() {
        let view = HostView {
            entries: vec![
                crate::hostview::HostEntry::Bind("/usr".into()),
                crate::hostview::HostEntry::Bind("/etc".into()),
            ],
            masked_files: vec!["/etc/shadow".into()],
            masked_dirs: vec!["/etc/ssl/private".into()],
        };
        let spec = WorkloadSpec::new(RuntimeClass::Gvisor, ImageRef::Host);
        let vols = [ResolvedMount::Bind {
            source: "/v/data".into(),
            target: "/data".into(),
            read_only: false,
        }];
        let config = oci_config(&input(&spec, Some(&view), &vols));
        let mounts = config["mounts"].as_array().unwrap();
        let find = |d: &str| {
            mounts
                .iter()
                .position(|m| m["destination"] == d)
                .unwrap_or_else(|| panic!("{d}"))
        };
        assert!(
            mounts[find("/usr")]["options"]
                .as_array()
                .unwrap()
                .contains(&json!("ro"))
        );
        assert_eq!(mounts[find("/etc/shadow")]["source"], "/r/empty-file");
        assert_eq!(mounts[find("/etc/ssl/private")]["source"], "/r/empty-dir");
        assert!(
            find("/etc/shadow") > find("/etc"),
            "masks come after the bind they cover"
        );
        assert!(
            mounts[find("/data")]["options"]
                .as_array()
                .unwrap()
                .contains(&json!("rw"))
        );
        assert_eq!(config["root"]["readonly"], true);
        assert!(
            !mounts
                .iter()
                .any(|m| m["destination"] == "/root" || m["destination"] == "/home")
        );
        assert_eq!(
            config["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .len(),
            ROOT_CAPABILITIES.len()
        );
    }
}
