//! A sandbox's network namespace: empty but for its loopback, on which the egress proxy listens.
//!
//! No veth, no route, no address plan: a program in the sandbox can reach `127.0.0.1:3128` (the
//! proxy) and `127.0.0.1:53` (its DNS), and nothing else — every other connection fails with
//! "network unreachable", so a program that ignores the proxy settings fails closed. The
//! proxy's sockets are made inside the namespace by a short-lived thread and keep it for life;
//! the proxy itself talks to the world from the namespace paddock runs in.
//!
//! The namespace is pinned by a bind mount on a file (as `ip netns` does), so the runtime can
//! join it by path (`setns` before exec) and a restarted paddock can bind again.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What went wrong setting a namespace up or using it.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A system call failed.
    #[error(
        "{what} for network namespace {path}: {source} (network namespaces need root, or CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    )]
    Sys {
        /// The step.
        what: &'static str,
        /// The namespace's file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The helper thread could not run.
    #[error("cannot start a thread for network namespace {path}: {reason}")]
    Thread {
        /// The namespace's file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A pinned network namespace.
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
}

/// Sockets made inside a namespace.
#[derive(Debug)]
pub struct NetnsSockets {
    /// TCP listeners, in the order asked for.
    pub tcp: Vec<TcpListener>,
    /// UDP sockets, in the order asked for.
    pub udp: Vec<UdpSocket>,
}

impl Netns {
    /// Creates a namespace with its loopback up, pinned at `path` (a file is created there;
    /// its directory must exist).
    ///
    /// # Errors
    /// Not root, or the kernel refused.
    pub fn create(path: &Path) -> Result<Self, NetnsError> {
        let owned = path.to_owned();
        in_thread(path, move || {
            let sys = |what: &'static str| {
                let path = owned.clone();
                move |e: rustix::io::Errno| NetnsError::Sys {
                    what,
                    path,
                    source: e.into(),
                }
            };
            unshare_net().map_err(sys("unshare"))?;
            loopback_up().map_err(|source| NetnsError::Sys {
                what: "bringing up lo",
                path: owned.clone(),
                source,
            })?;
            std::fs::File::create(&owned).map_err(|source| NetnsError::Sys {
                what: "creating the pin file",
                path: owned.clone(),
                source,
            })?;
            rustix::mount::mount_bind("/proc/thread-self/ns/net", &owned)
                .map_err(sys("bind-mounting"))?;
            Ok(())
        })?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// A namespace pinned earlier at `path` (after a restart).
    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    /// The pin file: what the runtime joins.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Binds TCP listeners and UDP sockets at these addresses inside the namespace.
    ///
    /// # Errors
    /// The namespace is gone, or an address is taken.
    pub fn bind(&self, tcp: &[SocketAddr], udp: &[SocketAddr]) -> Result<NetnsSockets, NetnsError> {
        let path = self.path.clone();
        let (tcp, udp) = (tcp.to_vec(), udp.to_vec());
        in_thread(&self.path, move || {
            let fd: OwnedFd = std::fs::File::open(&path)
                .map_err(|source| NetnsError::Sys {
                    what: "opening",
                    path: path.clone(),
                    source,
                })?
                .into();
            rustix::thread::move_into_link_name_space(
                fd.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| NetnsError::Sys {
                what: "joining",
                path: path.clone(),
                source: e.into(),
            })?;
            let io = |what: &'static str| {
                let path = path.clone();
                move |source| NetnsError::Sys { what, path, source }
            };
            let tcp = tcp
                .iter()
                .map(|a| {
                    let l = TcpListener::bind(a).map_err(io("binding a TCP listener"))?;
                    l.set_nonblocking(true)
                        .map_err(io("configuring a listener"))?;
                    Ok(l)
                })
                .collect::<Result<Vec<_>, NetnsError>>()?;
            let udp = udp
                .iter()
                .map(|a| {
                    let s = UdpSocket::bind(a).map_err(io("binding a UDP socket"))?;
                    s.set_nonblocking(true)
                        .map_err(io("configuring a socket"))?;
                    Ok(s)
                })
                .collect::<Result<Vec<_>, NetnsError>>()?;
            Ok(NetnsSockets { tcp, udp })
        })
    }

    /// Unpins and deletes the namespace (the kernel frees it once its last socket and process
    /// are gone). A namespace already gone is not an error.
    ///
    /// # Errors
    /// The unmount failed for another reason.
    pub fn remove(self) -> Result<(), NetnsError> {
        remove_pin(&self.path)
    }
}

/// Unpins a namespace by its file, as [`Netns::remove`] does: for pins left by an earlier run.
///
/// # Errors
/// The unmount failed for a reason other than "not mounted".
pub fn remove_pin(path: &Path) -> Result<(), NetnsError> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
        Err(e) => {
            return Err(NetnsError::Sys {
                what: "unmounting",
                path: path.to_owned(),
                source: e.into(),
            });
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::Sys {
            what: "removing the pin file",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Runs `f` on a fresh thread (namespace changes stay on that thread, which then ends).
fn in_thread<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, NetnsError> + Send + 'static,
) -> Result<T, NetnsError> {
    let thread_err = |reason: String| NetnsError::Thread {
        path: path.to_owned(),
        reason,
    };
    std::thread::Builder::new()
        .name("paddock-netns".into())
        .stack_size(64 * 1024)
        .spawn(f)
        .map_err(|e| thread_err(e.to_string()))?
        .join()
        .map_err(|_| thread_err("it panicked".into()))?
}

#[allow(unsafe_code)]
fn unshare_net() -> rustix::io::Result<()> {
    // SAFETY: only the network namespace is unshared, on a thread of our own that touches no
    // file descriptors of other threads; CLONE_FILES (the unsafe case) is not used.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
}

/// Sets `lo` up in the calling thread's network namespace (SIOCSIFFLAGS on a UDP socket).
#[allow(unsafe_code)]
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: `ifreq` is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the socket is open for the duration of the calls; `req` is a valid `ifreq` with
    // a NUL-terminated name; the ioctls read and write only `req`.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // IFF_UP | IFF_RUNNING = 0x41 fits the 16-bit flags field.
        req.ifr_ifru.ifru_flags |=
            libc::c_short::try_from(libc::IFF_UP | libc::IFF_RUNNING).unwrap_or(0x41);
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn namespace_reaches_its_own_loopback_and_nothing_else() {
        if !is_root() {
            eprintln!("skipped: network namespaces need root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ns = Netns::create(&dir.path().join("ns")).expect("create");
        let addr: SocketAddr = "127.0.0.1:3128".parse().expect("addr");
        let sockets = ns.bind(&[addr], &[]).expect("bind inside");
        // The same port is free in our own namespace: the listener is elsewhere.
        let ours = TcpListener::bind(addr).expect("port 3128 free here");
        drop(ours);
        let path = ns.path().to_owned();
        let outcome = in_thread(&path.clone(), move || {
            let fd: OwnedFd = std::fs::File::open(&path).expect("open").into();
            rustix::thread::move_into_link_name_space(fd.as_fd(), None).expect("join");
            let inside = std::net::TcpStream::connect(addr).map(|_| ());
            let outside = std::net::TcpStream::connect("192.0.2.1:80").map(|_| ());
            Ok((inside, outside))
        })
        .expect("thread");
        assert!(
            outcome.0.is_ok(),
            "the proxy's port answers: {:?}",
            outcome.0
        );
        let err = outcome.1.expect_err("nothing else is reachable");
        assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
        drop(sockets);
        ns.remove().expect("remove");
        assert!(!dir.path().join("ns").exists());
    }
}
