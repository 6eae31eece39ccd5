//! `posix_spawn(3)` for the hot path. glibc implements it with `clone(CLONE_VM|CLONE_VFORK)`,
//! which costs a fraction of the `fork` that std falls back to in a static binary: no page
//! tables copied, no copy-on-write faults and TLB shootdowns in the agent's other threads.
//! This module is the only place with FFI; it exposes one safe function, [`spawn`].

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The child's standard streams.
#[derive(Debug)]
pub enum ChildStdio<'a> {
    /// Duplicate these descriptors onto 0, 1 and 2.
    Fds {
        stdin: BorrowedFd<'a>,
        stdout: BorrowedFd<'a>,
        stderr: BorrowedFd<'a>,
    },
    /// Start a new session and open this terminal as 0 (making it the controlling terminal),
    /// duplicated onto 1 and 2.
    Terminal { path: &'a CStr },
}

/// What to start; every string is already NUL-free.
#[derive(Debug)]
pub struct SpawnRequest<'a> {
    /// Path of the program (absolute, or relative to `cwd`).
    pub program: &'a CStr,
    pub argv: &'a [CString],
    /// `NAME=value` entries.
    pub envp: &'a [CString],
    pub cwd: &'a CStr,
    pub stdio: ChildStdio<'a>,
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(ret))
    }
}

/// Initialised `posix_spawn_file_actions_t`, destroyed on drop.
struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    #[allow(unsafe_code)]
    fn new() -> io::Result<Self> {
        let mut raw = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        // SAFETY: `raw` is valid writable storage; init fully initialises it on success, and
        // it is only read (assume_init) after init returned 0.
        unsafe {
            check(libc::posix_spawn_file_actions_init(raw.as_mut_ptr()))?;
            Ok(Self(raw.assume_init()))
        }
    }

    #[allow(unsafe_code)]
    fn dup2(&mut self, fd: libc::c_int, target: libc::c_int) -> io::Result<()> {
        // SAFETY: `self.0` was initialised by `posix_spawn_file_actions_init`.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, fd, target) })
    }

    #[allow(unsafe_code)]
    fn open(&mut self, target: libc::c_int, path: &CStr, flags: libc::c_int) -> io::Result<()> {
        // SAFETY: `self.0` is initialised; glibc copies `path` into the actions.
        check(unsafe {
            libc::posix_spawn_file_actions_addopen(&mut self.0, target, path.as_ptr(), flags, 0)
        })
    }

    #[allow(unsafe_code)]
    fn chdir(&mut self, path: &CStr) -> io::Result<()> {
        // SAFETY: `self.0` is initialised; glibc (>= 2.29) copies `path` into the actions.
        check(unsafe { libc::posix_spawn_file_actions_addchdir_np(&mut self.0, path.as_ptr()) })
    }
}

impl Drop for FileActions {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and destroyed exactly once here.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut self.0);
        }
    }
}

/// Initialised `posix_spawnattr_t`, destroyed on drop.
struct Attributes(libc::posix_spawnattr_t);

impl Attributes {
    /// Attributes that reset every signal to its default disposition, unblock all signals, and
    /// put the child in a new process group — or a new session when `new_session`.
    #[allow(unsafe_code)]
    fn new(new_session: bool) -> io::Result<Self> {
        let mut raw = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        // SAFETY: as for `FileActions::new`.
        let mut attributes = unsafe {
            check(libc::posix_spawnattr_init(raw.as_mut_ptr()))?;
            Self(raw.assume_init())
        };
        let mut all = MaybeUninit::<libc::sigset_t>::uninit();
        let mut none = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigfillset/sigemptyset initialise the sets they are given; the attribute
        // setters copy the sets; `attributes.0` is initialised.
        unsafe {
            libc::sigfillset(all.as_mut_ptr());
            libc::sigemptyset(none.as_mut_ptr());
            check(libc::posix_spawnattr_setsigdefault(
                &mut attributes.0,
                all.as_ptr(),
            ))?;
            check(libc::posix_spawnattr_setsigmask(
                &mut attributes.0,
                none.as_ptr(),
            ))?;
            let group = if new_session {
                libc::c_int::from(libc::POSIX_SPAWN_SETSID)
            } else {
                check(libc::posix_spawnattr_setpgroup(&mut attributes.0, 0))?;
                libc::POSIX_SPAWN_SETPGROUP
            };
            let flags = group | libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK;
            let flags = libc::c_short::try_from(flags)
                .map_err(|_| io::Error::other("spawn flags overflow"))?;
            check(libc::posix_spawnattr_setflags(&mut attributes.0, flags))?;
        }
        Ok(attributes)
    }
}

impl Drop for Attributes {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and destroyed exactly once here.
        unsafe {
            libc::posix_spawnattr_destroy(&mut self.0);
        }
    }
}

/// NULL-terminated array of pointers into `strings` (which must outlive its use).
fn pointers(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// Starts the child; returns its pid. Errors of `exec` itself (ENOENT, EACCES, ENOEXEC...) are
/// reported here: glibc waits until the child has executed or failed.
pub fn spawn(request: &SpawnRequest<'_>) -> io::Result<i32> {
    let mut actions = FileActions::new()?;
    let new_session = match &request.stdio {
        ChildStdio::Fds {
            stdin,
            stdout,
            stderr,
        } => {
            actions.dup2(stdin.as_raw_fd(), 0)?;
            actions.dup2(stdout.as_raw_fd(), 1)?;
            actions.dup2(stderr.as_raw_fd(), 2)?;
            false
        }
        ChildStdio::Terminal { path } => {
            // Opened after setsid and without O_NOCTTY: it becomes the controlling terminal.
            actions.open(0, path, libc::O_RDWR)?;
            actions.dup2(0, 1)?;
            actions.dup2(0, 2)?;
            true
        }
    };
    actions.chdir(request.cwd)?;
    let attributes = Attributes::new(new_session)?;
    let argv = pointers(request.argv);
    let envp = pointers(request.envp);
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: `program`, `argv` and `envp` point into
    // CStrings borrowed from `request` for its whole duration and the arrays are
    // NULL-terminated; `actions` and `attributes` are initialised; `pid` is writable.
    #[allow(unsafe_code)]
    let ret = unsafe {
        libc::posix_spawn(
            &mut pid,
            request.program.as_ptr(),
            &actions.0,
            &attributes.0,
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    check(ret)?;
    Ok(pid)
}
