//! `doctor`: which isolation this host offers, checked for real (a gVisor and a bwrap sandbox
//! are started), and for whatever is missing, why and the exact remedy.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

use crate::cgroup::CgroupMode;
use crate::local::{find_bwrap, find_runsc};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    /// Works, with a caveat in `detail`.
    Warning,
    Missing,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: CheckStatus,
    /// What was found, or why it is missing.
    pub detail: String,
    /// The command or setting that fixes it, when something is missing.
    pub remedy: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// Whether the named check passed (`Ok` or `Warning`).
    pub fn passed(&self, name: &str) -> bool {
        self.checks
            .iter()
            .any(|c| c.name == name && c.status != CheckStatus::Missing)
    }
}

fn check(name: &'static str, result: Result<String, (String, String)>) -> Check {
    match result {
        Ok(detail) => Check {
            name,
            status: CheckStatus::Ok,
            detail,
            remedy: None,
        },
        Err((detail, remedy)) => Check {
            name,
            status: CheckStatus::Missing,
            detail,
            remedy: Some(remedy),
        },
    }
}

/// Runs every check. `agent_binary` is checked when given. Takes a few hundred milliseconds
/// (it starts one gVisor and one bwrap sandbox).
pub async fn doctor(agent_binary: Option<&Path>) -> DoctorReport {
    let mut checks = Vec::new();
    checks.push(check("gvisor", probe_runsc().await));
    checks.push(check("bwrap", probe_bwrap().await));
    checks.push(check("user-namespaces", user_namespaces()));
    checks.push(landlock());
    checks.push(check("seccomp", seccomp()));
    let mode = CgroupMode::detect();
    checks.push(match mode {
        CgroupMode::None => Check {
            name: "cgroups",
            status: CheckStatus::Missing,
            detail: "no cgroup filesystem: memory, CPU and pids limits cannot be enforced, so no sandbox will start".into(),
            remedy: Some("mount -t cgroup2 none /sys/fs/cgroup".into()),
        },
        _ if !rustix::process::geteuid().is_root() => Check {
            name: "cgroups",
            status: CheckStatus::Warning,
            detail: format!("{} but not running as root: limits need a delegated cgroup", mode.describe()),
            remedy: Some("run paddock as root".into()),
        },
        _ => Check { name: "cgroups", status: CheckStatus::Ok, detail: mode.describe().into(), remedy: None },
    });
    checks.push(check("overlayfs", overlayfs()));
    checks.extend(rcu_expedited(RCU_EXPEDITED));
    if let Some(agent) = agent_binary {
        checks.push(check("agent", agent_check(agent)));
    }
    DoctorReport { checks }
}

/// The kernel setting that makes RCU grace periods short.
const RCU_EXPEDITED: &str = "/sys/kernel/rcu_expedited";

/// Whether RCU grace periods are expedited: each runsc process start (three per gVisor boot)
/// and each first join of a v1 cgroup waits for one, 60–100 ms per sandbox boot in all here.
/// A host-wide setting with no effect on isolation. `None` when the kernel has no such file.
fn rcu_expedited(path: &str) -> Option<Check> {
    let value = std::fs::read_to_string(path).ok()?;
    Some(if value.trim() == "1" {
        Check {
            name: "rcu-expedited",
            status: CheckStatus::Ok,
            detail: "on (gVisor sandboxes boot without waiting for RCU grace periods)".into(),
            remedy: None,
        }
    } else {
        Check {
            name: "rcu-expedited",
            status: CheckStatus::Warning,
            detail: "off: every gVisor boot waits 60–100 ms for RCU grace periods".into(),
            remedy: Some(format!(
                "echo 1 > {path} (or boot with rcupdate.rcu_expedited=1); no effect on isolation"
            )),
        }
    })
}

async fn run_probe(program: &Path, args: &[&OsStr]) -> Result<(), String> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(20), child).await {
        Err(_) => Err("timed out after 20 s".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or_default()
        )),
    }
}

async fn probe_runsc() -> Result<String, (String, String)> {
    let runsc = find_runsc(None).map_err(|u| (u.reason, u.remedy))?;
    let state = tempfile_dir("paddock-doctor-runsc")
        .map_err(|e| (e, "check that /tmp is writable".to_owned()))?;
    let args: Vec<&OsStr> = vec![
        "--root".as_ref(),
        state.as_os_str(),
        "--network=none".as_ref(),
        "--platform=ptrace".as_ref(),
        "do".as_ref(),
        "/bin/true".as_ref(),
    ];
    let result = run_probe(&runsc, &args).await;
    let _ = std::fs::remove_dir_all(&state);
    match result {
        Ok(()) => Ok(format!(
            "{} runs sandboxes (platform ptrace, no network)",
            runsc.display()
        )),
        Err(e) => Err((
            format!(
                "{} is installed but cannot start a sandbox: {e}",
                runsc.display()
            ),
            "run as root; check `runsc --network=none do /bin/true`".into(),
        )),
    }
}

async fn probe_bwrap() -> Result<String, (String, String)> {
    let bwrap = find_bwrap(None).map_err(|u| (u.reason, u.remedy))?;
    let mut args: Vec<&OsStr> = vec![
        "--unshare-all".as_ref(),
        "--unshare-user".as_ref(),
        "--cap-drop".as_ref(),
        "ALL".as_ref(),
    ];
    for dir in ["/usr", "/lib", "/lib64", "/bin"] {
        if Path::new(dir).exists() {
            args.extend([OsStr::new("--ro-bind"), OsStr::new(dir), OsStr::new(dir)]);
        }
    }
    args.extend([OsStr::new("--"), OsStr::new("true")]);
    match run_probe(&bwrap, &args).await {
        Ok(()) => Ok(format!("{} runs sandboxes with a user namespace and no capabilities", bwrap.display())),
        Err(e) => Err((format!("{} is installed but cannot start a sandbox: {e}", bwrap.display()), "enable user namespaces: sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000".into())),
    }
}

fn user_namespaces() -> Result<String, (String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let max = read("/proc/sys/user/max_user_namespaces");
    if max.as_deref() == Some("0") {
        return Err((
            "user.max_user_namespaces is 0".into(),
            "sysctl -w user.max_user_namespaces=15000".into(),
        ));
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0")
        && !rustix::process::geteuid().is_root()
    {
        return Err((
            "unprivileged user namespaces are disabled".into(),
            "sysctl -w kernel.unprivileged_userns_clone=1".into(),
        ));
    }
    Ok(format!(
        "enabled (max {})",
        max.unwrap_or_else(|| "unknown".into())
    ))
}

fn landlock() -> Check {
    match landlock_abi() {
        Some(abi) if abi > 0 => Check { name: "landlock", status: CheckStatus::Ok, detail: format!("ABI v{abi}"), remedy: None },
        _ => Check {
            name: "landlock",
            status: CheckStatus::Warning,
            detail: "not available: bwrap sandboxes still get namespaces and seccomp, without path rules".into(),
            remedy: Some("boot a kernel ≥ 5.13 with lsm=landlock,…".into()),
        },
    }
}

/// The Landlock ABI version the kernel offers, `None` when it has none.
#[allow(unsafe_code)]
pub fn landlock_abi() -> Option<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the syscall only returns
    // a number; it reads and writes no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (abi > 0).then_some(abi)
}

fn seccomp() -> Result<String, (String, String)> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Seccomp:")) {
        return Err((
            "the kernel has no seccomp filter support".into(),
            "use a kernel built with CONFIG_SECCOMP_FILTER".into(),
        ));
    }
    crate::seccomp::deny_filter()
        .map_err(|e| (e.to_string(), "report this as a paddock bug".to_owned()))?;
    Ok(format!(
        "filter mode available; bwrap sandboxes deny {} syscalls and new namespaces",
        crate::seccomp::denied_syscalls().count()
    ))
}

fn overlayfs() -> Result<String, (String, String)> {
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        Ok("available (writable layer over shared image roots)".into())
    } else {
        Err((
            "overlayfs is not loaded: images other than `host` cannot get a writable layer".into(),
            "modprobe overlay".into(),
        ))
    }
}

fn agent_check(agent: &Path) -> Result<String, (String, String)> {
    let remedy = "build it with scripts/build-agent.sh".to_owned();
    let bytes =
        std::fs::read(agent).map_err(|e| (format!("{}: {e}", agent.display()), remedy.clone()))?;
    if !bytes.starts_with(b"\x7fELF") {
        return Err((format!("{} is not an ELF binary", agent.display()), remedy));
    }
    if elf_has_interpreter(&bytes) {
        return Ok(format!(
            "{} (dynamically linked: works with the host image only, not in arbitrary images)",
            agent.display()
        ));
    }
    Ok(format!("{} (static)", agent.display()))
}

/// Whether a 64-bit little-endian ELF file has a `PT_INTERP` program header (is dynamic).
fn elf_has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let at = phoff + i * usize::from(phentsize);
        elf.get(at..at + 4).is_some_and(|t| t == 3u32.to_le_bytes())
    })
}

fn tempfile_dir(prefix: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rcu_expedited_off_is_a_warning_with_the_setting_that_fixes_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rcu_expedited");
        std::fs::write(&file, "0\n").unwrap();
        let c = rcu_expedited(file.to_str().unwrap()).unwrap();
        assert_eq!(c.status, CheckStatus::Warning);
        assert!(c.remedy.unwrap().starts_with("echo 1 >"));
        std::fs::write(&file, "1\n").unwrap();
        assert_eq!(
            rcu_expedited(file.to_str().unwrap()).unwrap().status,
            CheckStatus::Ok
        );
        assert!(rcu_expedited("/nonexistent/rcu_expedited").is_none());
    }

    #[test]
    fn dynamic_binaries_have_an_interpreter() {
        let ls = std::fs::read("/bin/ls").unwrap();
        assert!(elf_has_interpreter(&ls));
        if let Ok(busybox) = std::fs::read("/bin/busybox") {
            assert!(!elf_has_interpreter(&busybox), "Debian's busybox is static");
        }
    }

    #[tokio::test]
    async fn doctor_reports_every_isolation_feature() {
        let report = doctor(None).await;
        // `rcu-expedited` is reported where the kernel has the setting.
        let names: Vec<_> = report
            .checks
            .iter()
            .map(|c| c.name)
            .filter(|n| *n != "rcu-expedited")
            .collect();
        assert_eq!(
            names,
            [
                "gvisor",
                "bwrap",
                "user-namespaces",
                "landlock",
                "seccomp",
                "cgroups",
                "overlayfs"
            ]
        );
        for c in &report.checks {
            assert!(!c.detail.is_empty());
            if c.status == CheckStatus::Missing {
                assert!(c.remedy.is_some(), "{c:?}");
            }
        }
        // This project's machines (and CI) have both runtimes installed.
        assert!(report.passed("gvisor"), "{report:?}");
        assert!(report.passed("bwrap"), "{report:?}");
    }
}
