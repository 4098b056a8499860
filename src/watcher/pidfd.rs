//! `PidfdChildWatcher` in its stateless 3.12+ form (spec K-2 … K-4): a pidfd per
//! registered child, polled by the loop that was running where the child was
//! registered. No signals, no threads, no pid-reuse race; Linux ≥ 5.3.

use std::fmt;

use super::{
    ChildCallback, ChildWatcher, ReapFence, check_pid, returncode, warn_if_sigchld_ignored,
};
use crate::OsKernel;
use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, ExceptionContext, get_running_loop, try_get_running_loop};
use crate::kernel::{Errno, Fd, Kernel, Pid, WaitMode, WaitStatus};

/// Waits for each child through a pidfd in the running loop (CPython 3.12+'s default
/// watcher where `pidfd_open` works).
///
/// - [`ChildWatcher::add_child_handler`] must be called while a loop runs in the
///   calling thread (`RuntimeError('no running event loop')` otherwise). It opens a
///   pidfd for the child and adds it as a reader to that loop (K-2).
/// - `pidfd_open` failures reach the caller and nothing is registered (K-3): a pid
///   that no longer exists (already reaped) gives `ProcessLookupError`; `ENOSYS`
///   (kernel before 5.3) and `EPERM` (seccomp) give `OSError` with that errno, the
///   cue to fall back to another watcher.
/// - When the pidfd turns readable the child has exited: in the loop's thread the
///   reader is removed, the child reaped with `waitpid(pid, WNOHANG)`, the pidfd
///   closed, and `callback(pid, returncode)` called synchronously. A child reaped
///   by someone else is reported as 255 with the warning "child process pid … exit
///   status already read:  will report returncode 255" (R-2). A callback that panics
///   is reported by the loop as `Exception in callback …`.
/// - Each exit costs one `waitpid`, whatever the number of children registered, and
///   only registered pids are ever waited for (K-4).
/// - `attach_loop` and `close` do nothing and `is_active` is always true;
///   `remove_child_handler` removes nothing, answers `true`, and the callback still
///   fires (K-2).
/// - Registering a pid twice gives two pidfds and two readers, and both callbacks
///   fire: one with the real code, the other with 255 and the warning (K-2).
/// - With [`ChildWatcher::add_child_handler_fenced`], the child's reap fence is held
///   across the `waitpid` that reaps it and marked before the callback runs.
/// - With SIGCHLD set to `SIG_IGN`, the kernel reaps every child itself: the pidfd
///   turns readable, `waitpid` finds nothing, and the child is reported as 255 with
///   the warning above, as in CPython. `add_child_handler` checks the disposition and
///   warns on target [`DIAGNOSTICS`](super::DIAGNOSTICS) that the pid will be
///   reported as 255 and why (see the
///   [module documentation](super#sigchld-set-to-sig_ign)).
/// - Nothing holds the loop but the loop's own reader: a loop dropped without `close`
///   is freed as one closed is, its pidfds closed with it. As after `close`, the
///   children it was watching are then left for someone else to reap: one zombie per
///   such child once it exits, never more (CPython leaves the same).
///
/// # Deviations from CPython
///
/// - **The pidfd is never leaked.** It is owned by the reader: if the reader is never
///   called (the loop is closed, or dropped, before the child exits; `add_reader`
///   fails), dropping it closes the pidfd. CPython leaks the fd in those cases. As in
///   CPython, the callback of such a registration never runs, and the child is left
///   for someone else to reap.
/// - **`waitpid` does not block the loop.** CPython calls `waitpid(pid, 0)`, trusting
///   that a readable pidfd means the child is a zombie. Here it is
///   `waitpid(pid, WNOHANG)`; if it says the pid is still running, that pid is no
///   longer the process the pidfd names (someone reaped it and the pid was reused), so
///   the status is lost as with `ECHILD`: 255 and the warning, never a blocked loop.
#[derive(Clone)]
pub struct PidfdChildWatcher<K: Kernel = OsKernel> {
    kernel: K,
}

impl PidfdChildWatcher<OsKernel> {
    /// A new watcher on the real OS.
    pub fn new() -> Self {
        PidfdChildWatcher::with_kernel(OsKernel)
    }
}

impl Default for PidfdChildWatcher<OsKernel> {
    fn default() -> Self {
        PidfdChildWatcher::new()
    }
}

impl<K: Kernel> PidfdChildWatcher<K> {
    /// A new watcher over `kernel`.
    pub fn with_kernel(kernel: K) -> Self {
        PidfdChildWatcher { kernel }
    }
}

/// An open pidfd, closed on drop unless closed explicitly.
struct OwnedPidfd<K: Kernel> {
    kernel: K,
    fd: Option<Fd>,
}

impl<K: Kernel> OwnedPidfd<K> {
    fn close(&mut self) {
        if let Some(fd) = self.fd.take() {
            // A pidfd that is open closes; an error here would mean someone else closed
            // our fd, and there is nothing left to release.
            let _ = self.kernel.close(fd);
        }
    }
}

impl<K: Kernel> Drop for OwnedPidfd<K> {
    fn drop(&mut self) {
        self.close();
    }
}

/// The warning of R-2 in Pidfd's words (double space and all, as CPython's).
fn warn_status_already_read(pid: Pid) {
    tracing::warn!(
        target: "asyncio",
        "child process pid {} exit status already read:  will report returncode 255",
        pid.0
    );
}

/// The reader's body (CPython's `_do_wait`), run once, in the loop's thread.
fn do_wait<K: Kernel>(
    mut pidfd: OwnedPidfd<K>,
    pid: Pid,
    fence: Option<ReapFence<K>>,
    callback: ChildCallback,
) {
    let kernel = pidfd.kernel.clone();
    let fd = pidfd.fd.expect("an open pidfd");
    let event_loop = try_get_running_loop(&kernel);
    if let Some(event_loop) = &event_loop {
        // Only fails from another thread; the reader runs in the loop's own.
        let _ = event_loop.remove_reader(fd);
    }
    let mut guard = fence.as_ref().map(ReapFence::lock);
    let outcome = loop {
        match kernel.wait_pid(pid, WaitMode::NoHang) {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::Terminated(_, status)) => break Ok(Some(returncode(status))),
            // ECHILD: reaped by somebody else. Still running: the pidfd's process
            // is gone, so this pid is a newcomer and the status was read elsewhere.
            Err(Errno::ECHILD) | Ok(WaitStatus::StillAlive) => break Ok(None),
            Err(errno) => break Err(errno),
        }
    };
    if outcome.is_ok() {
        if let Some(guard) = guard.as_mut() {
            guard.mark_reaped();
        }
    }
    drop(guard);
    let outcome = outcome.map(|code| {
        code.unwrap_or_else(|| {
            warn_status_already_read(pid);
            255
        })
    });
    pidfd.close();
    match outcome {
        Ok(code) => callback(pid, code),
        Err(errno) => {
            // CPython's `_do_wait` raises out of the reader, which the loop reports;
            // the callback never runs.
            drop(callback);
            let context = ExceptionContext {
                message: format!("Exception in callback PidfdChildWatcher._do_wait({pid})"),
                exception: Some(Error::from(errno)),
                handle: None,
            };
            match event_loop {
                Some(event_loop) => event_loop.call_exception_handler(&context),
                None => tracing::error!(
                    target: "asyncio",
                    exception = %Error::from(errno),
                    "{}",
                    context.message
                ),
            }
        }
    }
}

impl<K: Kernel> PidfdChildWatcher<K> {
    /// `add_child_handler`, with the child's reap fence if it has one.
    fn add(&self, pid: Pid, fence: Option<ReapFence<K>>, callback: ChildCallback) -> Result<()> {
        check_pid(pid)?;
        let event_loop = get_running_loop(&self.kernel)?;
        let fd = self.kernel.pidfd_open(pid).map_err(Error::from)?;
        warn_if_sigchld_ignored(&self.kernel, pid);
        let mut pending = Some((
            OwnedPidfd {
                kernel: self.kernel.clone(),
                fd: Some(fd),
            },
            fence,
            callback,
        ));
        // If `add_reader` fails, the closure is dropped with the pidfd it owns, which
        // closes it.
        event_loop.add_reader(fd, move || {
            // Runs once: it removes itself, and a second readiness report for the same
            // registration cannot be queued after that.
            if let Some((pidfd, fence, callback)) = pending.take() {
                do_wait(pidfd, pid, fence, callback);
            }
        })?;
        Ok(())
    }
}

impl<K: Kernel> ChildWatcher<K> for PidfdChildWatcher<K> {
    /// Opens a pidfd for `pid` and adds it as a reader to the loop running in the
    /// calling thread; `callback(pid, returncode)` runs there once the child exits.
    ///
    /// # Errors
    ///
    /// `ValueError` for a pid ≤ 0; `RuntimeError('no running event loop')` when no loop
    /// runs in the calling thread; `pidfd_open`'s error (K-3): `ProcessLookupError` for
    /// a pid that no longer exists, `OSError` with `ENOSYS`, `EPERM`, `EMFILE` …; the
    /// loop's `add_reader` error. On every error nothing stays registered and no fd
    /// stays open.
    fn add_child_handler(&self, pid: Pid, callback: ChildCallback) -> Result<()> {
        self.add(pid, None, callback)
    }

    /// # Errors
    ///
    /// As [`ChildWatcher::add_child_handler`].
    fn add_child_handler_fenced(
        &self,
        pid: Pid,
        fence: ReapFence<K>,
        callback: ChildCallback,
    ) -> Result<()> {
        self.add(pid, Some(fence), callback)
    }

    /// Does nothing and answers `true`: the reader stays and the callback still fires
    /// (K-2).
    fn remove_child_handler(&self, _pid: Pid) -> bool {
        true
    }

    /// Does nothing: callbacks go to the loop running where each child was registered
    /// (K-2).
    fn attach_loop(&self, _event_loop: Option<EventLoop<K>>) -> Result<()> {
        Ok(())
    }

    /// Does nothing (K-2): each registration belongs to its loop.
    ///
    /// # Errors
    ///
    /// None.
    fn close(&self) -> Result<()> {
        Ok(())
    }

    /// Always `true` (K-2).
    fn is_active(&self) -> bool {
        true
    }
}

impl<K: Kernel> fmt::Debug for PidfdChildWatcher<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PidfdChildWatcher").finish_non_exhaustive()
    }
}
