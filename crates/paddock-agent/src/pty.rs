//! Pseudo-terminals: opening a master/slave pair and async I/O on the master side.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A terminal size in character cells (the wire type).
pub use paddock_wire::TermSize;

/// Opens a new pseudo-terminal sized `size`; returns the master, the slave and the slave's path.
pub fn open_pty(size: TermSize) -> io::Result<(OwnedFd, OwnedFd, std::ffi::CString)> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    set_size(&master, size)?;
    Ok((master, slave, name))
}

fn set_size(fd: impl AsFd, size: TermSize) -> io::Result<()> {
    let winsize = Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(fd, winsize)?;
    Ok(())
}

/// Registers an owned descriptor with the reactor for `interest`.
#[allow(unsafe_code)]
pub(crate) fn register_fd(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns the `OwnedFd`, which keeps the descriptor open and unchanged
    // until the `AsyncFd` drops it; `as_raw_fd` of an `OwnedFd` always returns that descriptor.
    let registered = unsafe { AsyncFd::register_with_interest(fd, interest) };
    Ok(registered?)
}

/// The master side of a pseudo-terminal, readable and writable concurrently.
#[derive(Debug)]
pub struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
}

impl PtyMaster {
    /// Wraps `master` for async I/O (switches it to non-blocking mode).
    pub fn new(master: OwnedFd) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&master, true)?;
        Ok(Self {
            fd: register_fd(master, Interest::READABLE | Interest::WRITABLE)?,
        })
    }

    /// Reads output; `Ok(0)` once every slave side is closed (the kernel reports `EIO`).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard
                .try_io(|fd| rustix::io::read(fd.get_ref(), &mut *buf).map_err(io::Error::from))
            {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(err))
                    if err.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) =>
                {
                    return Ok(0);
                }
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => {}
            }
        }
    }

    /// Writes all of `data` to the terminal's input.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Resizes the terminal; the foreground process group gets SIGWINCH.
    pub fn resize(&self, size: TermSize) -> io::Result<()> {
        set_size(self.fd.get_ref(), size)
    }

    /// The raw master descriptor (for diagnostics).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}
