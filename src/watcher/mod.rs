//! Child watchers: how a loop learns that a child process has exited.
//!
//! # Why this is hard
//!
//! A Unix process learns of a child's death through SIGCHLD and collects its exit status
//! with `waitpid`. Three facts make every design a compromise:
//!
//! - **SIGCHLD coalesces.** Standard signals are a pending *set*, not a queue: ten
//!   children exiting before the handler runs give one SIGCHLD. A watcher must
//!   therefore look at every candidate on each signal, either by polling each pid it
//!   knows (`waitpid(pid, WNOHANG)`, O(n): [`SafeChildWatcher`]) or by reaping whatever
//!   has exited (`waitpid(-1)`, O(1) per child: [`FastChildWatcher`]).
//! - **Children are process-wide.** `waitpid(-1)` reaps children that other code (a
//!   library running its own subprocesses) is waiting for: that code then gets ECHILD.
//!   Fast steals; Safe, Threaded and Pidfd only ever wait for pids they were given.
//!   Conversely, someone else may reap *our* child first: Safe, Threaded and Pidfd see
//!   ECHILD and report returncode 255 with a warning (spec R-2); Fast never sees the
//!   pid again and never reports it (F-7).
//! - **Pids are reused.** Once a child is reaped its pid may belong to a new process at
//!   once. Anything that signals or waits for a pid after it was reaped may hit a
//!   stranger. A pidfd names one process for its whole life, which is why
//!   [`PidfdChildWatcher`] is the only watcher without a reuse race.
//!
//! Signal handlers only run safely in the main thread's loop (the wakeup fd), which is
//! why Safe and Fast need a loop attached from the main thread, while Threaded (one
//! blocking `waitpid` thread per child) and Pidfd (a pidfd in the running loop) work
//! from any thread's loop.
//!
//! # The trait
//!
//! [`ChildWatcher`] is asyncio's `AbstractChildWatcher`: `add_child_handler(pid,
//! callback)` (replacing an earlier handler for that pid, except where CPython's
//! watcher does not: Threaded and Pidfd-3.12 fire both), `remove_child_handler`,
//! `attach_loop` (`None` detaches), `close`, `is_active`, and the fork window
//! ([`fork_window`], Python's `with watcher:`) inside which processes are started and
//! registered. The callback gets `(pid, returncode)`; extra arguments are captured by
//! the closure. The returncode follows spec R-1 ([`ExitStatus::returncode`]).
//!
//! Warnings CPython logs or warns are `tracing` events on target `asyncio` with
//! CPython's text, so tests can assert on them.

mod fast;
mod multi_loop;
mod pidfd;
mod safe;
mod sigchld;
#[cfg(test)]
mod tests_os;
mod threaded;

use std::fmt;

pub use fast::FastChildWatcher;
pub use multi_loop::MultiLoopChildWatcher;
pub use pidfd::PidfdChildWatcher;
pub use safe::SafeChildWatcher;
pub use threaded::ThreadedChildWatcher;

use crate::OsKernel;
use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::kernel::{Errno, ExitStatus, Kernel, Pid, WaitMode, WaitStatus};

/// What a watcher calls when a child exits: `(pid, returncode)`.
pub type ChildCallback = Box<dyn FnOnce(Pid, i32) + Send + 'static>;

/// The child watcher interface (asyncio's `AbstractChildWatcher`, spec W-2).
///
/// Every method is required: Rust has no instances of an abstract class, so W-1's
/// `NotImplementedError` cannot arise.
pub trait ChildWatcher<K: Kernel = OsKernel>: Send + Sync + fmt::Debug + 'static {
    /// Arranges for `callback(pid, returncode)` once `pid` exits. Registering `pid`
    /// again replaces the earlier callback (for the watchers whose CPython counterpart
    /// does).
    ///
    /// # Errors
    ///
    /// `ValueError` for a pid ≤ 0; otherwise as each watcher documents.
    fn add_child_handler(&self, pid: Pid, callback: ChildCallback) -> Result<()>;

    /// Forgets the callback for `pid`; returns whether there was one.
    fn remove_child_handler(&self, pid: Pid) -> bool;

    /// Attaches the watcher to `event_loop`, detaching it from any previous loop first;
    /// `None` only detaches.
    ///
    /// # Errors
    ///
    /// As each watcher documents (signal-based watchers need the main thread).
    fn attach_loop(&self, event_loop: Option<EventLoop<K>>) -> Result<()>;

    /// Releases what the watcher holds (signal handlers, fds, threads).
    ///
    /// # Errors
    ///
    /// As each watcher documents.
    fn close(&self) -> Result<()>;

    /// Whether the watcher can deliver exits now (spec matrix 1.N).
    fn is_active(&self) -> bool;

    /// The loop the watcher is attached to (CPython's `_loop`), for the watchers that
    /// attach to one (Safe, Fast); `None` for the others.
    fn attached_loop(&self) -> Option<EventLoop<K>> {
        None
    }

    /// The watcher's type, also through a `dyn ChildWatcher` (Python's
    /// `type(watcher)`).
    fn type_name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    /// Opens a fork window (Python's `__enter__`). Windows nest.
    fn enter(&self) {}

    /// Closes a fork window (Python's `__exit__`).
    fn exit(&self) {}
}

/// An open fork window: processes started and registered while it lives are the
/// watcher's, even if they exit before they are registered. Dropping it closes it.
pub struct ForkWindow<'a, K: Kernel, W: ChildWatcher<K> + ?Sized> {
    watcher: &'a W,
    _kernel: std::marker::PhantomData<K>,
}

impl<K: Kernel, W: ChildWatcher<K> + ?Sized> Drop for ForkWindow<'_, K, W> {
    fn drop(&mut self) {
        self.watcher.exit();
    }
}

impl<K: Kernel, W: ChildWatcher<K> + ?Sized> fmt::Debug for ForkWindow<'_, K, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ForkWindow({:?})", self.watcher)
    }
}

/// Opens a fork window on `watcher` (Python's `with watcher:`).
pub fn fork_window<K: Kernel, W: ChildWatcher<K> + ?Sized>(watcher: &W) -> ForkWindow<'_, K, W> {
    watcher.enter();
    ForkWindow {
        watcher,
        _kernel: std::marker::PhantomData,
    }
}

/// Refuses pids that `waitpid` would read as "any child" or a process group.
pub(crate) fn check_pid(pid: Pid) -> Result<()> {
    if pid.0 <= 0 {
        return Err(Error::value(format!(
            "pid must be a positive process id, not {}",
            pid.0
        )));
    }
    Ok(())
}

/// The returncode of a status (spec R-1).
pub(crate) fn returncode(status: ExitStatus) -> i32 {
    status.returncode()
}

/// One `waitpid(pid, WNOHANG)` as the polling watchers do it (`_do_waitpid`):
/// `None` while the child runs; its returncode once reaped; 255 with spec R-2's
/// warning when somebody else reaped it. `EINTR` is retried; other errors returned.
pub(crate) fn poll_returncode<K: Kernel>(kernel: &K, pid: Pid) -> Result<Option<i32>> {
    loop {
        match kernel.wait_pid(pid, WaitMode::NoHang) {
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(WaitStatus::Terminated(_, status)) => return Ok(Some(returncode(status))),
            Err(Errno::ECHILD) => {
                warn_unknown_child(pid);
                return Ok(Some(255));
            }
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Spec R-2's warning for a child somebody else reaped.
pub(crate) fn warn_unknown_child(pid: Pid) {
    tracing::warn!(
        target: "asyncio",
        "Unknown child process pid {}, will report returncode 255",
        pid.0
    );
}
