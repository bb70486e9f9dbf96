//! Pseudo-terminals and the console socket: with `terminal: true`, init opens a pty, makes the slave its
//! controlling terminal and stdio, and sends the master over the `--console-socket` unix socket (runc's protocol:
//! one SCM_RIGHTS message), where the monitor or a shim takes it.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use crate::error::{SetupError, io, sys};

/// A new pty: (master, slave path).
pub fn open_pty() -> Result<(OwnedFd, PathBuf), SetupError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(sys("open /dev/ptmx"))?;
    grantpt(&master).map_err(sys("grantpt"))?;
    unlockpt(&master).map_err(sys("unlockpt"))?;
    let name = ptsname_r(&master).map_err(sys("ptsname"))?;
    // SAFETY: into_raw_fd hands over ownership of the master fd.
    let fd = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    Ok((fd, PathBuf::from(name)))
}

/// Open the slave and make it our controlling terminal and stdio (caller already called setsid).
pub fn become_console(slave: &Path) -> Result<(), SetupError> {
    let fd = nix::fcntl::open(slave, OFlag::O_RDWR, nix::sys::stat::Mode::empty())
        .map_err(sys("open pty slave"))?;
    let raw = fd.as_raw_fd();
    // SAFETY: ioctl TIOCSCTTY on a tty fd we own; dup2 onto stdio.
    unsafe {
        if libc::ioctl(raw, libc::TIOCSCTTY, 0) != 0 {
            return Err(SetupError::Io {
                op: "TIOCSCTTY".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        for target in 0..3 {
            if libc::dup2(raw, target) < 0 {
                return Err(SetupError::Io {
                    op: "dup2 pty".into(),
                    source: std::io::Error::last_os_error(),
                });
            }
        }
    }
    Ok(())
}

/// Connect to the console socket at `path` (before joining a mount namespace where the path does not exist).
pub fn connect(path: &Path) -> Result<UnixStream, SetupError> {
    UnixStream::connect(path).map_err(io(format!("connect console socket {}", path.display())))
}

/// Send `fd` over the console socket at `path`.
pub fn send_fd(path: &Path, fd: RawFd) -> Result<(), SetupError> {
    send_fd_on(&connect(path)?, fd)
}

/// Send `fd` over an already connected console socket.
pub fn send_fd_on(s: &UnixStream, fd: RawFd) -> Result<(), SetupError> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"/dev/ptmx")];
    sendmsg::<()>(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(sys("send pty master"))?;
    Ok(())
}

/// Receive one fd sent with SCM_RIGHTS on a connected socket.
pub fn recv_fd(sock: RawFd) -> Result<OwnedFd, SetupError> {
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(sys("recv pty master"))?;
    for c in msg.cmsgs().map_err(sys("read control message"))? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(fd) = fds.first()
        {
            // SAFETY: the kernel installed this fd for us.
            return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    Err(SetupError::Invalid(
        "console socket message carried no fd".into(),
    ))
}

/// Set a pty's window size.
pub fn resize(fd: RawFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize on an fd we hold.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
