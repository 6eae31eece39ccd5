//! Landlock self-restriction: before serving, the agent confines itself — and so every process it
//! starts, which inherits the restriction — to reading and executing anywhere under `/` but
//! writing, creating and removing only beneath chosen paths (plus the `/dev` entries programs
//! expect and the few files the agent itself writes).
//!
//! A Landlock ruleset binds the calling thread and the threads and processes it creates later, so
//! it must be applied while the agent still has a single thread: before the async runtime starts.
//! Enforcement also sets `no_new_privs` (setuid programs no longer gain privileges).

use std::io;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, LandlockStatus, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, make_bitflags,
};

/// The newest ABI whose filesystem rights the agent handles (ABI 5 added device ioctls; later
/// ABIs add rights, such as connecting to unix sockets, that the agent leaves alone).
const HANDLED_ABI: ABI = ABI::V5;

/// Whether and how strictly to apply Landlock (`--landlock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LandlockMode {
    /// No restriction.
    #[default]
    Off,
    /// Restrict when the kernel supports Landlock; otherwise log a warning and go on.
    BestEffort,
    /// Restrict, or refuse to start when the kernel cannot.
    Required,
}

/// What to allow once restricted.
#[derive(Debug, Clone, Default)]
pub struct LandlockPlan {
    pub mode: LandlockMode,
    /// Full write access beneath these directories (or to these files); each must exist.
    pub writable: Vec<PathBuf>,
    /// Files the agent itself writes (its unix sockets, the main log): write access to the file
    /// only. Missing ones are skipped.
    pub agent_files: Vec<PathBuf>,
}

/// How the restriction went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LandlockOutcome {
    /// `--landlock off`.
    Off,
    /// Restricted. `full` is false when the kernel's ABI lacks some handled rights (they stay
    /// unrestricted); `abi` names the kernel's ABI.
    Enforced { full: bool, abi: String },
    /// `best-effort` on a system that cannot restrict; the reason says why.
    Skipped { reason: String },
}

/// Why the agent could not restrict itself as asked.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("Landlock is required (--landlock required) but {reason}")]
    Unavailable { reason: String },
    #[error("--writable {path}: {source}; create it first or drop the flag")]
    WritablePath {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot build the Landlock ruleset for {path}: {message}")]
    Rule { path: PathBuf, message: String },
    #[error("cannot apply Landlock: {0}")]
    Ruleset(String),
}

/// Rights everywhere under `/`.
fn read_rights() -> BitFlags<AccessFs> {
    AccessFs::from_read(HANDLED_ABI)
}

/// Rights beneath a writable directory: everything but creating devices and device ioctls.
fn write_rights() -> BitFlags<AccessFs> {
    AccessFs::from_all(HANDLED_ABI) & !make_bitflags!(AccessFs::{MakeChar | MakeBlock | IoctlDev})
}

/// Rights on a device or other file that programs write to (e.g. `/dev/null`, opened with
/// `O_TRUNC` by shell redirections).
fn device_file_rights() -> BitFlags<AccessFs> {
    make_bitflags!(AccessFs::{ReadFile | WriteFile | Truncate | IoctlDev})
}

/// Device files everyone may read and write.
const DEVICE_FILES: [&str; 7] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
];

/// The rules of `plan`, as (path, rights, required) — a required path must exist.
fn rules(plan: &LandlockPlan) -> Vec<(PathBuf, BitFlags<AccessFs>, bool)> {
    let mut rules = vec![
        (PathBuf::from("/"), read_rights(), true),
        // Terminal and other device ioctls, on devices only.
        (
            PathBuf::from("/dev"),
            read_rights() | AccessFs::IoctlDev,
            false,
        ),
        (
            PathBuf::from("/dev/pts"),
            read_rights() | device_file_rights(),
            false,
        ),
        (PathBuf::from("/dev/shm"), write_rights(), false),
    ];
    rules.extend(
        DEVICE_FILES
            .iter()
            .map(|path| (PathBuf::from(path), device_file_rights(), false)),
    );
    rules.extend(
        plan.writable
            .iter()
            .map(|path| (path.clone(), read_rights() | write_rights(), true)),
    );
    rules.extend(plan.agent_files.iter().map(|path| {
        (
            path.clone(),
            make_bitflags!(AccessFs::{ReadFile | WriteFile | Truncate}),
            false,
        )
    }));
    rules
}

/// Rights that make sense on `path`: Landlock refuses directory rights on a file.
fn fit_to_file_type(path: &Path, rights: BitFlags<AccessFs>) -> io::Result<BitFlags<AccessFs>> {
    let meta = std::fs::metadata(path)?;
    Ok(if meta.is_dir() {
        rights
    } else {
        rights & AccessFs::from_file(HANDLED_ABI)
    })
}

/// Threads of this process, from `/proc/self/status` (`None` when unreadable).
fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Restricts the calling process as `plan` says. Call it before other threads start, except
/// `own_threads` that the caller started deliberately to stay outside the restriction.
pub fn apply(plan: &LandlockPlan, own_threads: usize) -> Result<LandlockOutcome, LandlockError> {
    if plan.mode == LandlockMode::Off {
        return Ok(LandlockOutcome::Off);
    }
    if let Some(threads) = thread_count().filter(|n| *n > 1 + own_threads) {
        let reason = format!(
            "it must be applied before the agent starts threads and {threads} are running \
             (run the paddock-agent binary, which restricts itself before starting its runtime)"
        );
        return decide_unavailable(plan.mode, reason);
    }
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(HANDLED_ABI))
        .and_then(Ruleset::create)
        .map_err(|err| LandlockError::Ruleset(err.to_string()))?;
    for (path, rights, required) in rules(plan) {
        let rights = match fit_to_file_type(&path, rights) {
            Ok(rights) => rights,
            Err(source) if required && path != Path::new("/") => {
                return Err(LandlockError::WritablePath { path, source });
            }
            Err(_) => continue,
        };
        let fd = match PathFd::new(&path) {
            Ok(fd) => fd,
            Err(err) => {
                return Err(LandlockError::Rule {
                    path,
                    message: err.to_string(),
                });
            }
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .map_err(|err| LandlockError::Rule {
                path: path.clone(),
                message: err.to_string(),
            })?;
    }
    let status = ruleset
        .restrict_self()
        .map_err(|err| LandlockError::Ruleset(err.to_string()))?;
    decide(plan.mode, &status.ruleset, status.landlock)
}

/// Turns the kernel's answer into an outcome: `required` fails closed when nothing is enforced.
fn decide(
    mode: LandlockMode,
    ruleset: &RulesetStatus,
    landlock: LandlockStatus,
) -> Result<LandlockOutcome, LandlockError> {
    let abi = match landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => kernel_abi.map_or_else(|| effective_abi.to_string(), |v| v.to_string()),
        LandlockStatus::NotEnabled | LandlockStatus::NotImplemented => "none".to_owned(),
    };
    match ruleset {
        RulesetStatus::FullyEnforced => Ok(LandlockOutcome::Enforced { full: true, abi }),
        RulesetStatus::PartiallyEnforced => Ok(LandlockOutcome::Enforced { full: false, abi }),
        RulesetStatus::NotEnforced => decide_unavailable(mode, unavailable_reason(landlock)),
    }
}

fn decide_unavailable(
    mode: LandlockMode,
    reason: String,
) -> Result<LandlockOutcome, LandlockError> {
    match mode {
        LandlockMode::Required => Err(LandlockError::Unavailable { reason }),
        LandlockMode::BestEffort | LandlockMode::Off => Ok(LandlockOutcome::Skipped { reason }),
    }
}

/// Why the kernel enforced nothing, naming the ABI it lacks.
fn unavailable_reason(landlock: LandlockStatus) -> String {
    match landlock {
        LandlockStatus::NotImplemented => "the kernel does not implement Landlock (it has no Landlock ABI; \
             ABI 1 or later is needed: Linux 5.13+ built with CONFIG_SECURITY_LANDLOCK — gVisor has none)"
            .to_owned(),
        LandlockStatus::NotEnabled => "the kernel has Landlock built in but not enabled (no Landlock ABI is \
             active; ABI 1 or later is needed: add `landlock` to the kernel's `lsm=` boot parameter)"
            .to_owned(),
        LandlockStatus::Available { effective_abi, .. } => format!(
            "the kernel (Landlock ABI {effective_abi}) enforced none of the requested rights"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_fails_closed_naming_the_missing_abi() {
        let err = decide(
            LandlockMode::Required,
            &RulesetStatus::NotEnforced,
            LandlockStatus::NotImplemented,
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("--landlock required"), "{message}");
        assert!(message.contains("no Landlock ABI"), "{message}");
        assert!(message.contains("ABI 1 or later"), "{message}");
        let err = decide(
            LandlockMode::Required,
            &RulesetStatus::NotEnforced,
            LandlockStatus::NotEnabled,
        )
        .unwrap_err();
        assert!(err.to_string().contains("lsm="), "{err}");
    }

    #[test]
    fn best_effort_skips_with_a_reason() {
        let outcome = decide(
            LandlockMode::BestEffort,
            &RulesetStatus::NotEnforced,
            LandlockStatus::NotImplemented,
        )
        .unwrap();
        assert!(
            matches!(outcome, LandlockOutcome::Skipped { reason } if reason.contains("does not implement"))
        );
    }

    #[test]
    fn partial_enforcement_is_reported_with_the_kernel_abi() {
        let outcome = decide(
            LandlockMode::Required,
            &RulesetStatus::PartiallyEnforced,
            LandlockStatus::Available {
                effective_abi: ABI::V2,
                kernel_abi: None,
            },
        )
        .unwrap();
        assert_eq!(
            outcome,
            LandlockOutcome::Enforced {
                full: false,
                abi: "2".to_owned()
            }
        );
    }

    #[test]
    fn writable_rights_never_include_device_creation() {
        let rights = write_rights();
        assert!(!rights.contains(AccessFs::MakeChar));
        assert!(!rights.contains(AccessFs::MakeBlock));
        assert!(rights.contains(AccessFs::MakeReg | AccessFs::RemoveFile | AccessFs::Truncate));
    }

    #[test]
    fn file_rules_get_only_file_rights() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let rights = fit_to_file_type(&file, read_rights() | write_rights()).unwrap();
        assert!(!rights.contains(AccessFs::MakeReg));
        assert!(rights.contains(AccessFs::WriteFile));
        assert_eq!(
            fit_to_file_type(dir.path(), write_rights()).unwrap(),
            write_rights()
        );
    }
}
