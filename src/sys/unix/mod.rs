//! `OsKernel`: the [`Kernel`] seam on the real operating system, over nix, libc and mio.
//!
//! Linux only: the seam's signal and errno numbers are Linux's and are passed to the
//! OS unchanged, and a build for a target that numbers them otherwise fails with a
//! message saying so (`numbers`).
//!
//! Calls go through nix's safe wrappers where nix has one that takes what the seam
//! passes. libc remains, each use saying why, for what nix lacks: the pidfd syscalls,
//! `pthread_atfork`, the raw `waitpid` status that spec R-1 passes through, calls that
//! take a signal number (nix's `Signal` names only the classic signals, not the
//! realtime ones the seam accepts), and the signal handler's own `write`.

mod fd;
mod numbers;
mod poll;
mod process;
mod signal;
mod spawn;
mod thread;

#[cfg(test)]
mod tests;

use std::os::fd::BorrowedFd;
use std::sync::OnceLock;
use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

use crate::kernel::{Clock, Errno, Fd, Kernel, ProcessLocals};

pub use poll::{OsPoller, OsWaker};
pub use thread::{OsJoinHandle, OsMonitor};

/// The real operating system behind the [`Kernel`] seam.
///
/// A zero-sized handle: every `OsKernel` value is the same process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OsKernel;

impl OsKernel {
    /// The kernel of this process.
    pub fn new() -> OsKernel {
        OsKernel
    }
}

/// This process's store; a forked child inherits a copy, as it inherits all memory.
static LOCALS: OnceLock<ProcessLocals> = OnceLock::new();

impl Kernel for OsKernel {
    fn process_locals(&self) -> &ProcessLocals {
        LOCALS.get_or_init(ProcessLocals::new)
    }
}

impl Clock for OsKernel {
    fn now(&self) -> Duration {
        let ts = clock_gettime(ClockId::CLOCK_MONOTONIC)
            .expect("clock_gettime(CLOCK_MONOTONIC) cannot fail");
        Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32)
    }

    fn sleep(&self, duration: Duration) {
        #[allow(clippy::disallowed_methods, reason = "OsKernel is the seam")]
        std::thread::sleep(duration);
    }
}

/// The calling thread's `errno`.
fn last_errno() -> Errno {
    Errno(nix::errno::Errno::last_raw())
}

/// A nix error as the seam's: nix's `Errno` has a variant for every Linux errno, with
/// the errno as its discriminant, so the number is kept exactly.
fn from_nix(error: nix::errno::Errno) -> Errno {
    Errno(error as i32)
}

/// Runs a nix call that takes a `BorrowedFd` on a descriptor number from the seam.
fn with_fd<T>(fd: Fd, call: impl FnOnce(BorrowedFd<'_>) -> nix::Result<T>) -> Result<T, Errno> {
    // A `BorrowedFd` cannot be -1. The OS answers EBADF for every negative number, so
    // refusing them all here gives the caller the same errno.
    if fd.0 < 0 {
        return Err(Errno::EBADF);
    }
    // SAFETY: `fd.0` is not -1, the one number a `BorrowedFd` cannot hold. Its other
    // demand, that the descriptor stay open while borrowed, is the seam's own contract
    // for fd numbers: the borrow lasts for this one call, and a number another thread
    // closes meanwhile reaches the OS just as the raw number would. No memory is at stake.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd.0) };
    call(borrowed).map_err(from_nix)
}

/// `-1` (or another negative result) becomes the `errno` it set.
fn check(rc: libc::c_int) -> Result<libc::c_int, Errno> {
    if rc < 0 { Err(last_errno()) } else { Ok(rc) }
}

/// An `io::Error` from std or mio as an exact errno; errors std makes up without one
/// (an argument with a NUL byte, say) are `EINVAL`.
fn errno_of(error: &std::io::Error) -> Errno {
    Errno(error.raw_os_error().unwrap_or(libc::EINVAL))
}
