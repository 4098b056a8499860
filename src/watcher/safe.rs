//! `SafeChildWatcher` (spec S-1 … S-9): on each SIGCHLD, poll every registered pid
//! with `waitpid(pid, WNOHANG)`. O(n) per signal, and it never touches a child it was
//! not given.

use std::fmt;
use std::sync::Arc;

use super::sigchld::{Core, Reaper};
use super::{ChildCallback, ChildWatcher, check_pid, poll_returncode};
use crate::OsKernel;
use crate::error::Result;
use crate::event_loop::EventLoop;
use crate::kernel::{Kernel, Pid};

/// Polls each registered child on SIGCHLD (CPython 3.7's default watcher).
///
/// - Needs a loop attached from the main thread ([`ChildWatcher::attach_loop`] installs
///   the loop's SIGCHLD handler) before children can be registered (3.7's
///   `RuntimeError`, S-3).
/// - [`ChildWatcher::add_child_handler`] polls the pid at once: a child that already
///   exited is reported synchronously, before it returns.
/// - A child reaped by someone else is reported as 255 with a warning.
/// - Callbacks run in the loop's thread, inside the SIGCHLD handler (or inside `add`
///   / `attach_loop`); a panicking callback is reported through the loop's exception
///   handler when it runs in the handler, and propagates from `add`/`attach_loop`.
pub struct SafeChildWatcher<K: Kernel = OsKernel> {
    core: Arc<Core<K, Safe>>,
}

/// The reaping strategy of [`SafeChildWatcher`].
#[derive(Debug)]
pub(crate) struct Safe;

impl SafeChildWatcher<OsKernel> {
    /// A new watcher on the real OS, attached to nothing.
    pub fn new() -> Self {
        SafeChildWatcher::with_kernel(OsKernel)
    }
}

impl Default for SafeChildWatcher<OsKernel> {
    fn default() -> Self {
        SafeChildWatcher::new()
    }
}

impl<K: Kernel> SafeChildWatcher<K> {
    /// A new watcher over `kernel`, attached to nothing.
    pub fn with_kernel(kernel: K) -> Self {
        SafeChildWatcher {
            core: Core::new(kernel, "SafeChildWatcher"),
        }
    }

    /// The pids with a registered callback (CPython's `_callbacks` keys).
    pub fn registered_pids(&self) -> Vec<Pid> {
        self.core.lock().callbacks.keys().copied().collect()
    }

    /// What the SIGCHLD handler runs (CPython's `_sig_chld`): one pass over the
    /// registered pids. Custom loops, and tests that play the signal, call it directly.
    pub fn handle_sigchld(&self) {
        self.core.sig_chld();
    }
}

/// `_do_waitpid`: one non-blocking poll of `pid` (S-4).
///
/// The poll and the removal of the callback happen under the watcher's lock, so that
/// an `add_child_handler` from another thread and the SIGCHLD handler never both
/// report one pid (the loser of the race would see ECHILD and report 255).
fn poll_pid<K: Kernel>(core: &Core<K, Safe>, pid: Pid) -> Result<()> {
    let (callback, code) = {
        let mut state = core.lock();
        if !state.callbacks.contains_key(&pid) {
            return Ok(());
        }
        let Some(code) = poll_returncode(&core.kernel, pid)? else {
            return Ok(());
        };
        (state.callbacks.remove(&pid).expect("checked above"), code)
    };
    core.run_callback(pid, code, callback);
    Ok(())
}

impl<K: Kernel> Reaper<K> for Safe {
    type Extra = ();

    fn reap_all(core: &Core<K, Self>) -> Result<()> {
        // A snapshot: callbacks may register or remove pids while it runs (S-5).
        let pids: Vec<Pid> = core.lock().callbacks.keys().copied().collect();
        for pid in pids {
            poll_pid(core, pid)?;
        }
        Ok(())
    }
}

impl<K: Kernel> ChildWatcher<K> for SafeChildWatcher<K> {
    /// # Errors
    ///
    /// `ValueError` for a pid ≤ 0; `RuntimeError` ("Cannot add child handler, the child
    /// watcher does not have a loop attached") with no loop attached (3.7, S-3); a
    /// kernel error other than ECHILD from the immediate poll.
    fn add_child_handler(&self, pid: Pid, callback: ChildCallback) -> Result<()> {
        check_pid(pid)?;
        self.core.require_loop()?;
        self.core.lock().callbacks.insert(pid, callback);
        poll_pid(&self.core, pid)
    }

    fn remove_child_handler(&self, pid: Pid) -> bool {
        self.core.remove(pid)
    }

    /// # Errors
    ///
    /// `RuntimeError` from the loop when called outside the main thread (the loop's
    /// `add_signal_handler`); errors of the immediate reaping pass.
    fn attach_loop(&self, event_loop: Option<EventLoop<K>>) -> Result<()> {
        self.core.attach_loop(event_loop)
    }

    /// # Errors
    ///
    /// As [`ChildWatcher::attach_loop`] with `None`.
    fn close(&self) -> Result<()> {
        self.core.close()
    }

    fn is_active(&self) -> bool {
        self.core.is_active()
    }

    fn attached_loop(&self) -> Option<EventLoop<K>> {
        self.core.lock().event_loop.clone()
    }
}

impl<K: Kernel> fmt::Debug for SafeChildWatcher<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.core, f)
    }
}
