//! Pipes and descriptor flags.

use std::os::fd::IntoRawFd;

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};

use super::{OsKernel, from_nix, with_fd};
use crate::kernel::{Errno, Fd, Fds};

impl Fds for OsKernel {
    fn pipe(&self) -> Result<(Fd, Fd), Errno> {
        // Close-on-exec from the start: no child spawned by another thread meanwhile
        // inherits the ends.
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(from_nix)?;
        Ok((Fd(read.into_raw_fd()), Fd(write.into_raw_fd())))
    }

    fn read(&self, fd: Fd, buf: &mut [u8]) -> Result<usize, Errno> {
        with_fd(fd, |fd| nix::unistd::read(fd, buf))
    }

    fn write(&self, fd: Fd, buf: &[u8]) -> Result<usize, Errno> {
        with_fd(fd, |fd| nix::unistd::write(fd, buf))
    }

    fn close(&self, fd: Fd) -> Result<(), Errno> {
        match nix::unistd::close(fd.0).map_err(from_nix) {
            // On Linux the fd is released even when close reports EINTR; retrying could
            // close a descriptor another thread has just been given.
            Err(Errno::EINTR) | Ok(()) => Ok(()),
            Err(errno) => Err(errno),
        }
    }

    fn set_nonblocking(&self, fd: Fd, nonblocking: bool) -> Result<(), Errno> {
        with_fd(fd, |fd| {
            // Every bit the OS reports is kept, also those nix has no name for.
            let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
            let mut wanted = flags;
            wanted.set(OFlag::O_NONBLOCK, nonblocking);
            if wanted != flags {
                fcntl(fd, FcntlArg::F_SETFL(wanted))?;
            }
            Ok(())
        })
    }

    fn set_cloexec(&self, fd: Fd, cloexec: bool) -> Result<(), Errno> {
        with_fd(fd, |fd| {
            let flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
            let mut wanted = flags;
            wanted.set(FdFlag::FD_CLOEXEC, cloexec);
            if wanted != flags {
                fcntl(fd, FcntlArg::F_SETFD(wanted))?;
            }
            Ok(())
        })
    }
}
