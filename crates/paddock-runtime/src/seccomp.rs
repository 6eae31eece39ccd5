//! The seccomp filters bubblewrap loads into every bwrap sandbox (`--seccomp FD`): a deny list
//! of kernel interfaces a sandboxed workload has no business using (namespaces and mounts,
//! tracing, kernel modules and keys, BPF and perf, raw handles, reboot and swap, clock and
//! terminal injection). Denied calls fail with `EPERM`; `clone3` fails with `ENOSYS` so libc
//! falls back to `clone`, whose flags the filter can inspect.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Why the filter could not be built (a bug, or an unsupported architecture).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the seccomp filter: {0}")]
pub struct SeccompError(String);

/// Syscalls denied outright.
const DENIED: &[(i64, &str)] = &[
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
    (libc::SYS_kcmp, "kcmp"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_umount2, "umount2"),
    (libc::SYS_pivot_root, "pivot_root"),
    (libc::SYS_chroot, "chroot"),
    (libc::SYS_fsopen, "fsopen"),
    (libc::SYS_fsconfig, "fsconfig"),
    (libc::SYS_fsmount, "fsmount"),
    (libc::SYS_fspick, "fspick"),
    (libc::SYS_move_mount, "move_mount"),
    (libc::SYS_open_tree, "open_tree"),
    (libc::SYS_mount_setattr, "mount_setattr"),
    (libc::SYS_setns, "setns"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_finit_module, "finit_module"),
    (libc::SYS_delete_module, "delete_module"),
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at"),
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_swapon, "swapon"),
    (libc::SYS_swapoff, "swapoff"),
    (libc::SYS_acct, "acct"),
    (libc::SYS_quotactl, "quotactl"),
    (libc::SYS_syslog, "syslog"),
    (libc::SYS_settimeofday, "settimeofday"),
    (libc::SYS_clock_settime, "clock_settime"),
    (libc::SYS_clock_adjtime, "clock_adjtime"),
    (libc::SYS_adjtimex, "adjtimex"),
    (libc::SYS_iopl, "iopl"),
    (libc::SYS_ioperm, "ioperm"),
    (libc::SYS_lookup_dcookie, "lookup_dcookie"),
    (libc::SYS_uselib, "uselib"),
    (libc::SYS_vhangup, "vhangup"),
    (libc::SYS_nfsservctl, "nfsservctl"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    (libc::SYS_personality, "personality"),
];

/// The namespace flags a workload may not create: a new user namespace (the classic way to
/// regain capabilities) and, with it, mount and time namespaces.
const NAMESPACE_FLAGS: u64 =
    (libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWCGROUP) as u64 | 0x80; // 0x80 = CLONE_NEWTIME

fn rule(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompRule, SeccompError> {
    let condition = SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| SeccompError(e.to_string()))?;
    SeccompRule::new(vec![condition]).map_err(|e| SeccompError(e.to_string()))
}

fn arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SeccompError(format!("{}: {e}", std::env::consts::ARCH)))
}

/// The main filter: deny list → `EPERM`.
///
/// # Errors
/// On an architecture seccompiler does not know.
pub fn deny_filter() -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|(nr, _)| (*nr, Vec::new())).collect();
    // New namespaces through unshare(2) or clone(2) flags (arg 0 for both on x86_64).
    rules.insert(libc::SYS_unshare, any_bit(NAMESPACE_FLAGS)?);
    rules.insert(libc::SYS_clone, any_bit(NAMESPACE_FLAGS)?);
    // Terminal injection: ioctl(fd, TIOCSTI / TIOCLINUX).
    rules.insert(
        libc::SYS_ioctl,
        vec![
            rule(1, SeccompCmpOp::MaskedEq(0xffff_ffff), libc::TIOCSTI)?,
            rule(1, SeccompCmpOp::MaskedEq(0xffff_ffff), libc::TIOCLINUX)?,
        ],
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno(libc::EPERM)),
        arch()?,
    )
    .map_err(|e| SeccompError(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| SeccompError(e.to_string()))
}

/// One rule per namespace bit: matches when that bit is set in argument 0.
fn any_bit(flags: u64) -> Result<Vec<SeccompRule>, SeccompError> {
    (0..64)
        .map(|bit| 1u64 << bit)
        .filter(|b| flags & b != 0)
        .map(|b| rule(0, SeccompCmpOp::MaskedEq(b), b))
        .collect()
}

/// The second filter: `clone3` → `ENOSYS` (its flags live in memory seccomp cannot read).
///
/// # Errors
/// On an architecture seccompiler does not know.
pub fn clone3_filter() -> Result<BpfProgram, SeccompError> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno(libc::ENOSYS)),
        arch()?,
    )
    .map_err(|e| SeccompError(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| SeccompError(e.to_string()))
}

fn errno(e: i32) -> u32 {
    u32::try_from(e).unwrap_or(1)
}

/// The program as the kernel's `struct sock_filter` array, the format bwrap reads.
pub fn to_bytes(program: &BpfProgram) -> Vec<u8> {
    let mut out = Vec::with_capacity(program.len() * 8);
    for insn in program {
        out.extend_from_slice(&insn.code.to_ne_bytes());
        out.push(insn.jt);
        out.push(insn.jf);
        out.extend_from_slice(&insn.k.to_ne_bytes());
    }
    out
}

/// Names of the syscalls denied outright, for `doctor` and docs.
pub fn denied_syscalls() -> impl Iterator<Item = &'static str> {
    DENIED.iter().map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_to_whole_sock_filter_arrays() {
        let deny = to_bytes(&deny_filter().unwrap());
        assert!(deny.len() > 8 * DENIED.len());
        assert_eq!(deny.len() % 8, 0);
        assert_eq!(to_bytes(&clone3_filter().unwrap()).len() % 8, 0);
    }

    #[test]
    fn the_deny_list_covers_the_dangerous_interfaces() {
        let names: Vec<_> = denied_syscalls().collect();
        for needed in [
            "ptrace",
            "mount",
            "kexec_load",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "open_by_handle_at",
            "init_module",
            "finit_module",
            "reboot",
            "swapon",
            "setns",
        ] {
            assert!(names.contains(&needed), "{needed}");
        }
    }
}
