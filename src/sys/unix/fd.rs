//! Pipes and descriptor flags.

use super::{OsKernel, check, last_errno};
use crate::kernel::{Errno, Fd, Fds};

impl Fds for OsKernel {
    fn pipe(&self) -> Result<(Fd, Fd), Errno> {
        let mut fds = [-1 as libc::c_int; 2];
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        {
            // SAFETY: `fds` has room for the two descriptors pipe2 writes.
            check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        }
        #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
        {
            // SAFETY: `fds` has room for the two descriptors pipe writes.
            check(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
            for fd in fds {
                if let Err(errno) = self.set_cloexec(Fd(fd), true) {
                    let _ = self.close(Fd(fds[0]));
                    let _ = self.close(Fd(fds[1]));
                    return Err(errno);
                }
            }
        }
        Ok((Fd(fds[0]), Fd(fds[1])))
    }

    fn read(&self, fd: Fd, buf: &mut [u8]) -> Result<usize, Errno> {
        // SAFETY: the pointer and length describe `buf`, which is writable for its length.
        let n = unsafe { libc::read(fd.0, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(last_errno())
        } else {
            Ok(n as usize)
        }
    }

    fn write(&self, fd: Fd, buf: &[u8]) -> Result<usize, Errno> {
        // SAFETY: the pointer and length describe `buf`, which is readable for its length.
        let n = unsafe { libc::write(fd.0, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(last_errno())
        } else {
            Ok(n as usize)
        }
    }

    fn close(&self, fd: Fd) -> Result<(), Errno> {
        // SAFETY: closing a number is memory-safe; ownership is the caller's business.
        match check(unsafe { libc::close(fd.0) }) {
            // On Linux the fd is released even when close reports EINTR; retrying could
            // close a descriptor another thread has just been given.
            Err(Errno::EINTR) | Ok(_) => Ok(()),
            Err(errno) => Err(errno),
        }
    }

    fn set_nonblocking(&self, fd: Fd, nonblocking: bool) -> Result<(), Errno> {
        // SAFETY: F_GETFL takes no pointer argument.
        let flags = check(unsafe { libc::fcntl(fd.0, libc::F_GETFL) })?;
        let wanted = if nonblocking {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if wanted != flags {
            // SAFETY: F_SETFL takes an int argument.
            check(unsafe { libc::fcntl(fd.0, libc::F_SETFL, wanted) })?;
        }
        Ok(())
    }

    fn set_cloexec(&self, fd: Fd, cloexec: bool) -> Result<(), Errno> {
        // SAFETY: F_GETFD takes no pointer argument.
        let flags = check(unsafe { libc::fcntl(fd.0, libc::F_GETFD) })?;
        let wanted = if cloexec {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        if wanted != flags {
            // SAFETY: F_SETFD takes an int argument.
            check(unsafe { libc::fcntl(fd.0, libc::F_SETFD, wanted) })?;
        }
        Ok(())
    }
}
