//! `OsKernel`: the [`Kernel`] seam on the real operating system, over libc and mio.
//!
//! Linux only: the seam's signal and errno numbers are Linux's and are passed to the
//! OS unchanged, and a build for a target that numbers them otherwise fails with a
//! message saying so (`numbers`).

mod fd;
mod numbers;
mod poll;
mod process;
mod signal;
mod thread;

#[cfg(test)]
mod tests;

use std::sync::OnceLock;
use std::time::Duration;

use crate::kernel::{Clock, Errno, Kernel, ProcessLocals};

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
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) cannot fail");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    fn sleep(&self, duration: Duration) {
        #[allow(clippy::disallowed_methods, reason = "OsKernel is the seam")]
        std::thread::sleep(duration);
    }
}

/// The calling thread's `errno`.
fn last_errno() -> Errno {
    Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
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
