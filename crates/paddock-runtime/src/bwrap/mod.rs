//! The bubblewrap backend, the fast tier: every namespace unshared (so no network), a user
//! namespace with no capabilities, nested user namespaces disabled, a new session, the
//! runtime's seccomp filters, the agent as PID 1, and a cgroup (memory, pids, CPU) joined before
//! bwrap even starts.
//!
//! Speed: joining a cgroup v1 costs one RCU grace period (~10 ms here), so the runtime keeps a
//! small pool of bwrap processes started ahead, already in fresh cgroups and blocked reading
//! their options (`--args FD`); a create renames the cgroup after the workload, writes its
//! limits and hands the options over. bwrap takes the command from its own argv only, so the
//! command is the bare agent and the agent's settings travel as `--setenv` (`agent::agent_env`).
//!
//! Why no `--die-with-parent`: sandboxes must outlive a restart of `paddock serve` so they can
//! be re-attached. Instead bwrap runs in its own process group, its monitor process writes the
//! sandbox's exit code to a status file (`--json-status-fd`) that survives us, and teardown kills
//! the whole cgroup.

mod backend;

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use crate::hostview::{HostEntry, HostView};
use crate::spec::WorkloadSpec;
use crate::workdir::ResolvedMount;

pub(crate) use backend::BwrapIsolation;

/// File descriptor numbers bwrap reads from.
#[derive(Debug, Clone, Copy)]
pub struct BwrapFds {
    pub seccomp: [i32; 2],
    pub status: i32,
}

/// Everything the bwrap command line is made from.
#[derive(Debug)]
pub struct BwrapInput<'a> {
    /// Completed from the image ([`crate::agent::resolve_with_image`]).
    pub spec: &'a WorkloadSpec,
    /// The image's writable root (an overlay), or `None` for the `host` image.
    pub rootfs: Option<&'a Path>,
    pub read_only_root: bool,
    pub host_view: Option<&'a HostView>,
    pub mask_file: &'a Path,
    pub mask_dir: &'a Path,
    pub agent_binary: &'a Path,
    pub run_dir: &'a Path,
    pub volumes: &'a [ResolvedMount],
    pub fds: BwrapFds,
}

fn push(args: &mut Vec<OsString>, items: &[&dyn AsRef<std::ffi::OsStr>]) {
    args.extend(items.iter().map(|i| i.as_ref().to_owned()));
}

/// The bwrap options for a workload, handed over through `--args` (the command, the bare agent,
/// is on bwrap's own argv). Pure.
pub fn bwrap_args(input: &BwrapInput<'_>) -> Vec<OsString> {
    let spec = input.spec;
    let uid = spec.run_as_user.unwrap_or(0).to_string();
    let gid = spec.run_as_group.unwrap_or(0).to_string();
    let mut a: Vec<OsString> = Vec::with_capacity(64);
    // With a network, bwrap stays in the namespace it was started in (the egress proxy's,
    // joined before exec); otherwise `--unshare-all` gives it an empty one.
    let unshare: &[&dyn AsRef<std::ffi::OsStr>] = if spec.network.is_some() {
        &[
            &"--unshare-ipc",
            &"--unshare-pid",
            &"--unshare-uts",
            &"--unshare-cgroup-try",
        ]
    } else {
        &[&"--unshare-all"]
    };
    push(&mut a, unshare);
    push(
        &mut a,
        &[
            &"--unshare-user",
            &"--disable-userns",
            &"--uid",
            &uid,
            &"--gid",
            &gid,
        ],
    );
    push(
        &mut a,
        &[
            &"--cap-drop",
            &"ALL",
            &"--new-session",
            &"--hostname",
            &spec.hostname,
        ],
    );
    match input.rootfs {
        Some(root) => push(
            &mut a,
            &[
                &if input.read_only_root {
                    "--ro-bind"
                } else {
                    "--bind"
                },
                &root,
                &"/",
            ],
        ),
        None => {
            if let Some(view) = input.host_view {
                for entry in &view.entries {
                    match entry {
                        HostEntry::Bind(p) => push(&mut a, &[&"--ro-bind", p, p]),
                        HostEntry::Symlink { path, target } => {
                            push(&mut a, &[&"--symlink", target, path])
                        }
                    }
                }
                for file in &view.masked_files {
                    push(&mut a, &[&"--ro-bind", &input.mask_file, file]);
                }
                for dir in &view.masked_dirs {
                    push(&mut a, &[&"--ro-bind", &input.mask_dir, dir]);
                }
            }
            push(&mut a, &[&"--tmpfs", &"/tmp"]);
        }
    }
    push(&mut a, &[&"--proc", &"/proc", &"--dev", &"/dev"]);
    if let Some(network) = &spec.network {
        push(
            &mut a,
            &[&"--ro-bind", &network.resolv_conf, &"/etc/resolv.conf"],
        );
        if let Some(bundle) = &network.ca_bundle {
            push(
                &mut a,
                &[&"--ro-bind", bundle, &crate::spec::CA_BUNDLE_PATH],
            );
        }
    }
    push(
        &mut a,
        &[&"--ro-bind", &input.agent_binary, &crate::agent::AGENT_PATH],
    );
    push(&mut a, &[&"--bind", &input.run_dir, &crate::agent::RUN_DIR]);
    for volume in input.volumes {
        match volume {
            ResolvedMount::Bind {
                source,
                target,
                read_only,
            } => {
                push(
                    &mut a,
                    &[
                        &if *read_only { "--ro-bind" } else { "--bind" },
                        source,
                        target,
                    ],
                );
            }
            ResolvedMount::Tmpfs { target, size_bytes } => {
                if let Some(size) = size_bytes {
                    push(&mut a, &[&"--size", &size.to_string()]);
                }
                push(&mut a, &[&"--perms", &"1777", &"--tmpfs", target]);
            }
        }
    }
    if input.rootfs.is_none() || input.read_only_root {
        push(&mut a, &[&"--remount-ro", &"/"]);
    }
    let cwd = spec.working_dir.clone().unwrap_or_else(|| "/".to_owned());
    push(&mut a, &[&"--chdir", &cwd, &"--clearenv"]);
    for var in &spec.env {
        push(&mut a, &[&"--setenv", &var.name, &var.value]);
    }
    for (name, value) in crate::agent::agent_env(spec) {
        push(&mut a, &[&"--setenv", &name, &value]);
    }
    for fd in input.fds.seccomp {
        push(&mut a, &[&"--add-seccomp-fd", &fd.to_string()]);
    }
    let status = input.fds.status.to_string();
    push(&mut a, &[&"--json-status-fd", &status, &"--as-pid-1"]);
    a
}

/// What bwrap's monitor reported in the status file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BwrapStatus {
    pub child_pid: Option<i32>,
    pub exit_code: Option<i32>,
}

/// Reads the concatenated JSON documents bwrap writes to `--json-status-fd`.
pub fn read_status(path: &Path) -> BwrapStatus {
    let mut status = BwrapStatus::default();
    let Ok(text) = std::fs::read_to_string(path) else {
        return status;
    };
    for doc in serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .flatten()
    {
        if let Some(pid) = doc.get("child-pid").and_then(serde_json::Value::as_i64) {
            status.child_pid = i32::try_from(pid).ok();
        }
        if let Some(code) = doc.get("exit-code").and_then(serde_json::Value::as_i64) {
            status.exit_code = i32::try_from(code).ok();
        }
    }
    status
}

/// A process's start time (clock ticks since boot), to tell it from a later one with its pid.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22; the command name (field 2) may hold spaces, so count after its ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

/// Drives `bwrap`.
#[derive(Debug, Clone)]
pub struct Bwrap {
    pub bwrap: PathBuf,
    /// The two seccomp programs in kernel format.
    pub seccomp: Arc<[Vec<u8>; 2]>,
}

/// A bwrap process started ahead of its workload: already joined to its cgroup (on cgroup v1
/// that costs ~10 ms of RCU synchronisation, paid here rather than on the create path), holding
/// its seccomp and status descriptors, and blocked reading its arguments (`--args FD`).
#[derive(Debug)]
pub struct PreparedBwrap {
    pub pid: i32,
    pub fds: BwrapFds,
    /// Where `--json-status-fd` writes; renamed into the workload's directory when used.
    pub status_path: PathBuf,
    args: OwnedFd,
}

impl Bwrap {
    /// Starts bwrap detached (its own process group; a thread reaps it) in the cgroup whose
    /// `cgroup.procs` files are given, waiting for its arguments.
    ///
    /// # Errors
    /// Pipes, the status file or the spawn fail, as text.
    pub fn prepare(
        &self,
        status_path: &Path,
        cgroup_procs: Vec<OwnedFd>,
        netns: Option<OwnedFd>,
    ) -> Result<PreparedBwrap, String> {
        let mut inherited: Vec<OwnedFd> = Vec::with_capacity(4);
        for program in self.seccomp.iter() {
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| format!("pipe: {e}"))?;
            // The programs are a few KiB, far below a pipe's buffer: this never blocks.
            rustix::io::write(&write, program)
                .map_err(|e| format!("writing the seccomp filter: {e}"))?;
            drop(write);
            inherited.push(read);
        }
        let status_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(status_path)
            .map_err(|e| format!("{}: {e}", status_path.display()))?;
        inherited.push(OwnedFd::from(status_file));
        let (args_read, args_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| format!("pipe: {e}"))?;
        inherited.push(args_read);
        let fds = BwrapFds {
            seccomp: [inherited[0].as_raw_fd(), inherited[1].as_raw_fd()],
            status: inherited[2].as_raw_fd(),
        };
        let mut cmd = std::process::Command::new(&self.bwrap);
        // Options arrive on the pipe; the command cannot (bwrap takes it from argv only), so it
        // is the bare agent, configured through `--setenv` (see `agent::agent_env`).
        cmd.arg("--args")
            .arg(inherited[3].as_raw_fd().to_string())
            .arg("--")
            .arg(crate::agent::AGENT_PATH)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // A debugging aid: the sandbox's stderr (bwrap's own errors, the agent's log) on ours.
        if std::env::var_os("PADDOCK_RUNTIME_DEBUG_STDERR").is_some() {
            cmd.stderr(Stdio::inherit());
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let keep = Arc::new((inherited, cgroup_procs, netns));
        let in_child = Arc::clone(&keep);
        set_pre_exec(&mut cmd, move || {
            for fd in &in_child.0 {
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            for procs in &in_child.1 {
                rustix::io::write(procs, b"0")?;
            }
            if let Some(netns) = &in_child.2 {
                rustix::thread::move_into_link_name_space(
                    netns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
            }
            Ok(())
        });
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bwrap.display()))?;
        drop(keep);
        let pid = i32::try_from(child.id()).map_err(|_| "pid out of range".to_owned())?;
        std::thread::Builder::new()
            .name(format!("bwrap-reaper-{pid}"))
            .stack_size(32 * 1024)
            .spawn(move || {
                let mut child = child;
                let _ = child.wait();
            })
            .map_err(|e| format!("cannot start the reaper thread: {e}"))?;
        Ok(PreparedBwrap {
            pid,
            fds,
            status_path: status_path.to_owned(),
            args: args_write,
        })
    }

    /// Hands a prepared bwrap its arguments: it sets the sandbox up and execs the agent.
    ///
    /// # Errors
    /// The argument pipe is broken (bwrap died), as text.
    pub fn launch(prepared: PreparedBwrap, args: &[OsString]) -> Result<i32, String> {
        use std::os::unix::ffi::OsStrExt;
        let mut buf = Vec::with_capacity(args.iter().map(|a| a.len() + 1).sum());
        for arg in args {
            buf.extend_from_slice(arg.as_bytes());
            buf.push(0);
        }
        let mut pipe = std::fs::File::from(prepared.args);
        std::io::Write::write_all(&mut pipe, &buf)
            .map_err(|e| format!("passing bwrap its arguments: {e}"))?;
        Ok(prepared.pid)
    }

    /// Kills a prepared bwrap that will not be used.
    pub fn discard(prepared: PreparedBwrap) {
        if let Some(pid) = rustix::process::Pid::from_raw(prepared.pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        let _ = std::fs::remove_file(&prepared.status_path);
    }
}

/// Installs the hook run in the forked child before `exec`: it clears close-on-exec on the
/// descriptors bwrap must read and joins the workload's cgroup.
#[allow(unsafe_code)]
fn set_pre_exec<F>(cmd: &mut std::process::Command, hook: F)
where
    F: Fn() -> std::io::Result<()> + Send + Sync + 'static,
{
    // SAFETY: the hook only makes async-signal-safe system calls (fcntl, write, setns) on descriptors
    // it owns through an `Arc` kept alive by the closure; it allocates nothing and takes no locks.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, hook);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageRef;
    use crate::spec::RuntimeClass;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn window(args: &[String], seq: &[&str]) -> bool {
        args.windows(seq.len())
            .any(|w| w.iter().zip(seq).all(|(a, b)| a == b))
    }

    #[test]
    fn host_image_sandbox_is_unprivileged_unnetworked_and_masked() {
        let view = HostView {
            entries: vec![
                HostEntry::Bind("/usr".into()),
                HostEntry::Symlink {
                    path: "/bin".into(),
                    target: "usr/bin".into(),
                },
                HostEntry::Bind("/etc".into()),
            ],
            masked_files: vec!["/etc/shadow".into()],
            masked_dirs: vec![],
        };
        let mut spec = WorkloadSpec::new(RuntimeClass::Bwrap, ImageRef::Host);
        spec.run_as_user = Some(1000);
        spec.env.push(crate::spec::EnvVar {
            name: "HOME".into(),
            value: "/tmp".into(),
        });
        spec.env.push(crate::spec::EnvVar {
            name: "HOME".into(),
            value: "/tmp".into(),
        });
        let vols = [ResolvedMount::Bind {
            source: "/v/d".into(),
            target: "/data".into(),
            read_only: false,
        }];
        let input = BwrapInput {
            spec: &spec,
            rootfs: None,
            read_only_root: true,
            host_view: Some(&view),
            mask_file: Path::new("/r/empty"),
            mask_dir: Path::new("/r/emptyd"),
            agent_binary: Path::new("/opt/agent"),
            run_dir: Path::new("/r/w/run"),
            volumes: &vols,
            fds: BwrapFds {
                seccomp: [7, 8],
                status: 9,
            },
        };
        let args = strings(&bwrap_args(&input));
        for seq in [
            &["--unshare-all", "--unshare-user", "--disable-userns"][..],
            &["--uid", "1000"],
            &["--cap-drop", "ALL"],
            &["--ro-bind", "/usr", "/usr"],
            &["--symlink", "usr/bin", "/bin"],
            &["--ro-bind", "/r/empty", "/etc/shadow"],
            &["--ro-bind", "/opt/agent", "/.paddock/bin/agent"],
            &["--bind", "/r/w/run", "/.paddock/run"],
            &["--bind", "/v/d", "/data"],
            &["--add-seccomp-fd", "7", "--add-seccomp-fd", "8"],
            &["--json-status-fd", "9", "--as-pid-1"],
            &["--setenv", "PADDOCK_AGENT_UNIX", "/.paddock/run/agent.sock"],
            &["--clearenv", "--setenv", "HOME", "/tmp"],
        ] {
            assert!(window(&args, seq), "missing {seq:?} in {args:?}");
        }
        assert!(
            !args
                .iter()
                .any(|a| a == "--share-net" || a == "--die-with-parent")
        );
        assert!(
            args.iter().position(|a| a == "/etc/shadow") > args.iter().position(|a| a == "/etc")
        );
    }

    #[test]
    fn status_file_yields_child_pid_and_exit_code() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.json");
        std::fs::write(
            &p,
            "{ \"child-pid\": 42, \"pid-namespace\": 1 }\n{ \"exit-code\": 3 }\n",
        )
        .unwrap();
        assert_eq!(
            read_status(&p),
            BwrapStatus {
                child_pid: Some(42),
                exit_code: Some(3)
            }
        );
        assert_eq!(read_status(&t.path().join("none")), BwrapStatus::default());
    }

    #[test]
    fn start_time_of_this_process_is_readable() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(process_start_time(me).is_some());
    }
}
