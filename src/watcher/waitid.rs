//! `WaitidChildWatcher` (spec I-1 … I-4): Safe's contract, with an O(1) pass. On
//! each SIGCHLD it peeks at the next exited child with `waitid(P_ALL, WEXITED |
//! WNOWAIT | WNOHANG)` and reaps it only if it is one of its own; it never reaps a
//! child it was not given.

use std::fmt;
use std::sync::Arc;

use super::safe::{poll_each, poll_pid};
use super::sigchld::{ReapPass, SigchldWatcher};
use super::{ChildCallback, ChildWatcher, DIAGNOSTICS, ReapFence, check_pid};
use crate::OsKernel;
use crate::error::Result;
use crate::event_loop::EventLoop;
use crate::kernel::{Errno, Kernel, Pid, WaitMode, WaitStatus, WaitTarget};
use crate::zoo::Mutant;

/// Peeks at exited children on SIGCHLD and reaps only its own: O(1) per exit, and it
/// never steals.
///
/// Its contract is [`SafeChildWatcher`](super::SafeChildWatcher)'s (spec S-1 … S-9):
///
/// - Needs a loop attached from the main thread ([`ChildWatcher::attach_loop`] installs
///   the loop's SIGCHLD handler) before children can be registered (`RuntimeError`).
/// - [`ChildWatcher::add_child_handler`] polls the pid at once: a child that already
///   exited is reported synchronously, before it returns. Registering a pid again
///   replaces its callback; `remove_child_handler` removes it.
/// - Attaching reaps at once what exited while it was detached.
/// - A child reaped by someone else is reported as 255 with a warning (R-2), by the
///   first pass that finds no exited child of its own (see the costs below).
/// - Callbacks run in the loop's thread, inside the SIGCHLD handler (or inside `add` /
///   `attach_loop`); a callback that panics during a pass is reported on its own
///   through the loop's exception handler and the pass goes on.
/// - With [`ChildWatcher::add_child_handler_fenced`], the child's reap fence is held
///   across the `waitpid` that reaps it and marked before anything else runs.
///
/// # The pass
///
/// On each SIGCHLD (spec I-2):
///
/// 1. `waitid(P_ALL, WEXITED | WNOWAIT | WNOHANG)` names the first exited child of the
///    process without reaping it.
/// 2. If it is registered here, `waitpid(pid, WNOHANG)` reaps it under its fence, its
///    callback runs, and the pass peeks again (1).
/// 3. If it is not (a child of other code, which its owner has not reaped yet), every
///    peek would name it again, so the pass polls each registered pid with
///    `waitpid(pid, WNOHANG)`, as Safe does, and ends. That child is left for its
///    owner.
/// 4. No exited child left (`WNOHANG` finds none, or `ECHILD`): the pass ends. If its
///    first peek found none, the SIGCHLD was for a child already gone: one that a
///    registration's poll reaped, which the watcher counts, or one an earlier pass
///    took, or one that somebody else reaped. A counted one costs nothing more;
///    otherwise the pass polls each registered pid, so that a child of its own reaped
///    by other code is reported as 255 (R-2).
///
/// If the kernel refuses the peek (`EINVAL`, `ENOSYS`: a system without
/// `waitid(WNOWAIT)` on `P_ALL`), the watcher remembers it until it is closed and polls
/// each registered pid on every SIGCHLD from then on, as Safe does (I-4).
///
/// # Costs
///
/// - One exit of its own, at K idle registered children: a peek that finds it, the
///   `waitpid` that reaps it, a peek that finds nothing. Nothing per K.
/// - A child that exited before it was registered: the registration's `waitpid`, and
///   one peek in the pass its SIGCHLD wakes.
/// - **O(K) passes**: while a foreign zombie lingers at the head of the queue (each
///   SIGCHLD then polls every registered pid until its owner reaps it); for a SIGCHLD
///   whose child is gone and was not counted (a foreign child its owner reaped at once,
///   one of its own that other code reaped, an exit that an earlier pass took because
///   it came while that pass ran); on every SIGCHLD where the peek is not supported.
///   Where none of these happen, as when children are only the watcher's and exit one
///   at a time, no pass polls.
/// - A child of its own that a foreign `waitpid(-1)` reaped is reported (255) only by
///   a pass that finds no exit and has none counted: when its SIGCHLD merged with that
///   of another exit of its own, or was taken for a counted one, the report waits for
///   a later SIGCHLD of that kind (I-3).
///
/// # What the bug hunt checks
///
/// Safe's rules (see `conformance/src/invariants.rs`): a registered child is reported
/// once, with its true returncode (R-1), or 255 when other code reaped it; no child it
/// was not given is reaped (the peek reads a child without reaping it, and the
/// `steal` rule judges reaps, so a peek is no breach); a removed handler never fires;
/// a report is owed only with a loop attached when the run ends and the watcher not
/// closed. One exception (I-3): a child that other code reaped is not owed a report,
/// since the SIGCHLD that would lead to it may have merged with that of another exit.
///
/// # Example
///
/// In the main thread (a doc test runs there):
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicI32, Ordering};
///
/// use loopwatch::kernel::{Processes, SpawnRequest};
/// use loopwatch::{ChildWatcher, EventLoop, WaitidChildWatcher};
///
/// let event_loop = EventLoop::new()?;
/// let watcher = WaitidChildWatcher::new();
/// // Installs the loop's SIGCHLD handler: the main thread's job.
/// watcher.attach_loop(Some(event_loop.clone()))?;
/// let child = loopwatch::OsKernel.spawn(&SpawnRequest::new("/bin/sh", ["-c", "exit 3"]))?;
/// let code = Arc::new(AtomicI32::new(0));
/// let (seen, stopper) = (code.clone(), event_loop.clone());
/// watcher.add_child_handler(
///     child.pid,
///     Box::new(move |_pid, returncode| {
///         seen.store(returncode, Ordering::SeqCst);
///         stopper.stop();
///     }),
/// )?;
/// event_loop.run_forever()?;
/// assert_eq!(code.load(Ordering::SeqCst), 3);
/// watcher.close()?;
/// event_loop.close()?;
/// # Ok::<(), loopwatch::Error>(())
/// ```
pub struct WaitidChildWatcher<K: Kernel = OsKernel> {
    core: Arc<SigchldWatcher<K, Waitid>>,
}

/// The reaping strategy of [`WaitidChildWatcher`] and its state.
#[derive(Debug, Default)]
pub(crate) struct Waitid {
    /// The errno with which the kernel refused the peek, once it did: the passes poll
    /// each pid from then on (until `close`).
    unsupported: Option<Errno>,
    /// SIGCHLDs still to come for exits a registration's poll reaped: a pass that
    /// finds no exit takes one instead of polling every pid.
    early: u64,
}

impl WaitidChildWatcher<OsKernel> {
    /// A new watcher on the real OS, attached to nothing.
    pub fn new() -> Self {
        WaitidChildWatcher::with_kernel(OsKernel)
    }
}

impl Default for WaitidChildWatcher<OsKernel> {
    fn default() -> Self {
        WaitidChildWatcher::new()
    }
}

impl<K: Kernel> WaitidChildWatcher<K> {
    /// A new watcher over `kernel`, attached to nothing.
    pub fn with_kernel(kernel: K) -> Self {
        WaitidChildWatcher {
            core: SigchldWatcher::new(kernel, "WaitidChildWatcher"),
        }
    }

    /// The pids with a registered callback.
    pub fn registered_pids(&self) -> Vec<Pid> {
        self.core.lock().callbacks.keys().copied().collect()
    }

    /// What the SIGCHLD handler runs: one pass (see the type's documentation). Custom
    /// loops, and tests that play the signal, call it directly.
    pub fn handle_sigchld(&self) {
        self.core.sig_chld();
    }

    /// The errno with which the kernel refused the `waitid(P_ALL, WNOWAIT)` peek, if
    /// it did: the watcher then polls each registered pid on every SIGCHLD.
    pub fn peek_unsupported(&self) -> Option<Errno> {
        self.core.lock().pass_state.unsupported
    }
}

/// What one peek found.
enum Peeked {
    /// An exited child registered here.
    Ours(Pid),
    /// An exited child not registered here.
    Foreign(Pid),
    /// No exited child (`WNOHANG` found none, or `ECHILD`).
    Nothing,
    /// The kernel refused the peek with this errno.
    Unsupported(Errno),
}

/// `waitid(P_ALL, WEXITED | WNOWAIT | WNOHANG)`, `EINTR` retried.
fn peek<K: Kernel>(core: &SigchldWatcher<K, Waitid>) -> Result<Peeked> {
    loop {
        let pid = match core.kernel.wait_peek(WaitTarget::Any, WaitMode::NoHang) {
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) | Ok(WaitStatus::StillAlive) => return Ok(Peeked::Nothing),
            Err(errno @ (Errno::EINVAL | Errno::ENOSYS)) => {
                return Ok(Peeked::Unsupported(errno));
            }
            Err(errno) => return Err(errno.into()),
            Ok(WaitStatus::Terminated(pid, _)) => pid,
        };
        let ours = core.lock().callbacks.contains_key(&pid);
        return Ok(if ours {
            Peeked::Ours(pid)
        } else {
            Peeked::Foreign(pid)
        });
    }
}

impl<K: Kernel> ReapPass<K> for Waitid {
    type PassState = Waitid;

    fn reap_all(core: &SigchldWatcher<K, Self>) -> Result<()> {
        if core.lock().pass_state.unsupported.is_some() {
            return poll_each(core);
        }
        let mut reaped = false;
        loop {
            let pid = match peek(core)? {
                Peeked::Ours(pid) => pid,
                // zoo: the pass reaps whatever the peek names, as Fast does: a child
                // other code waits for is reaped here, and its owner gets ECHILD.
                Peeked::Foreign(pid)
                    if crate::zoo::active(&core.kernel, Mutant::WaitidReapsForeign) =>
                {
                    pid
                }
                // Stuck at a zombie that is not ours: every peek would name it again.
                Peeked::Foreign(_) => return poll_each(core),
                // The first peek found nothing: this SIGCHLD's child is gone. Either
                // an exit reaped early (counted), or perhaps one of ours that other
                // code reaped (R-2): then poll every pid.
                Peeked::Nothing if !reaped => {
                    let counted = {
                        let mut state = core.lock();
                        let counted = state.pass_state.early > 0;
                        state.pass_state.early = state.pass_state.early.saturating_sub(1);
                        counted
                    };
                    return if counted { Ok(()) } else { poll_each(core) };
                }
                Peeked::Nothing => return Ok(()),
                Peeked::Unsupported(errno) => {
                    core.lock().pass_state.unsupported = Some(errno);
                    tracing::debug!(
                        target: DIAGNOSTICS,
                        ?errno,
                        "waitid(P_ALL, WNOWAIT) is not supported: WaitidChildWatcher polls \
                         each registered pid on SIGCHLD"
                    );
                    return poll_each(core);
                }
            };
            reaped = true;
            if crate::zoo::active(&core.kernel, Mutant::WaitidReapsForeign)
                && !core.lock().callbacks.contains_key(&pid)
            {
                // zoo: the stolen child's status is dropped, as an unknown pid's.
                let _ = super::poll_returncode(&core.kernel, pid, None)?;
                continue;
            }
            // Reaped under its fence, and its callback taken out, under the lock: a
            // registration from another thread never sees it half done.
            if let Some((callback, code)) = poll_pid(core, pid)? {
                core.run_in_pass(pid, code, callback);
            }
        }
    }
}

impl<K: Kernel> WaitidChildWatcher<K> {
    /// `add_child_handler`, with the child's reap fence if it has one.
    fn add(&self, pid: Pid, fence: Option<ReapFence<K>>, callback: ChildCallback) -> Result<()> {
        check_pid(pid)?;
        self.core.require_loop()?;
        self.core.lock().insert(pid, callback, fence);
        // The child may have exited (and its SIGCHLD been handled) before it was
        // registered: poll it now.
        if let Some((callback, code)) = poll_pid(&self.core, pid)? {
            // Its SIGCHLD may still be on its way.
            let mut state = self.core.lock();
            state.pass_state.early = state.pass_state.early.saturating_add(1);
            drop(state);
            // Reported synchronously, and a panic propagates, as Safe's does.
            self.core.run_callback(pid, code, callback);
        }
        Ok(())
    }
}

impl<K: Kernel> ChildWatcher<K> for WaitidChildWatcher<K> {
    /// `None`: it does its own work.
    fn inner(&self) -> Option<&dyn ChildWatcher<K>> {
        None
    }

    /// # Errors
    ///
    /// `ValueError` for a pid ≤ 0; `RuntimeError` ("Cannot add child handler, the child
    /// watcher does not have a loop attached") with no loop attached; a kernel error
    /// other than ECHILD from the immediate poll.
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

    fn remove_child_handler(&self, pid: Pid) -> bool {
        self.core.remove(pid)
    }

    /// # Errors
    ///
    /// As [`SafeChildWatcher`](super::SafeChildWatcher)'s: outside the main thread, the
    /// loop's error from moving the SIGCHLD handler, followed by what to do; errors of
    /// the immediate reaping pass.
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

impl<K: Kernel> fmt::Debug for WaitidChildWatcher<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.core, f)
    }
}
