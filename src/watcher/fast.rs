//! `FastChildWatcher` (spec F-1 … F-7): on each SIGCHLD, reap every exited child with
//! `waitpid(-1, WNOHANG)` until none is left. O(1) per child, but it reaps children
//! that other code is waiting for, and cannot report one that somebody else reaped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::sigchld::{Core, Reaper};
use super::{ChildCallback, ChildWatcher, check_pid, returncode};
use crate::OsKernel;
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::EventLoop;
use crate::kernel::{Errno, Kernel, Pid, WaitMode, WaitStatus};

/// Reaps every exited child on SIGCHLD.
///
/// - Children must be registered inside a fork window ([`super::fork_window`]):
///   outside one, `add_child_handler` fails with `AssertionError`
///   ("Must use the context manager", F-3).
/// - A child that exits between the fork and its registration is kept as a "zombie"
///   entry while a window is open and reported synchronously by `add_child_handler`
///   (F-4); exits of unknown pids outside any window are logged and dropped (F-5),
///   and zombies left when the last window closes are logged (F-2).
/// - **Steals**: it reaps children other code spawned (their `waitpid` gets ECHILD).
/// - A child reaped by someone else is never reported (F-7): its callback never runs.
pub struct FastChildWatcher<K: Kernel = OsKernel> {
    core: Arc<Core<K, Fast>>,
}

/// The reaping strategy of [`FastChildWatcher`] and its state.
#[derive(Debug, Default)]
pub(crate) struct Fast {
    /// Exits caught while a window was open, before their pid was registered.
    zombies: BTreeMap<Pid, i32>,
    /// Open fork windows.
    forks: u32,
}

impl FastChildWatcher<OsKernel> {
    /// A new watcher on the real OS, attached to nothing.
    pub fn new() -> Self {
        FastChildWatcher::with_kernel(OsKernel)
    }
}

impl Default for FastChildWatcher<OsKernel> {
    fn default() -> Self {
        FastChildWatcher::new()
    }
}

impl<K: Kernel> FastChildWatcher<K> {
    /// A new watcher over `kernel`, attached to nothing.
    pub fn with_kernel(kernel: K) -> Self {
        FastChildWatcher {
            core: Core::new(kernel, "FastChildWatcher"),
        }
    }

    /// The pids with a registered callback (CPython's `_callbacks` keys).
    pub fn registered_pids(&self) -> Vec<Pid> {
        self.core.lock().callbacks.keys().copied().collect()
    }

    /// What the SIGCHLD handler runs (CPython's `_sig_chld`): reap every exited child.
    pub fn handle_sigchld(&self) {
        self.core.sig_chld();
    }

    /// Exits recorded for pids not (yet) registered, as `{pid: returncode}`.
    pub fn zombies(&self) -> BTreeMap<Pid, i32> {
        self.core.lock().extra.zombies.clone()
    }
}

/// A dict's repr, as CPython's warning prints `str(self._zombies)`.
fn dict_repr(zombies: &BTreeMap<Pid, i32>) -> String {
    let items: Vec<String> = zombies
        .iter()
        .map(|(pid, code)| format!("{}: {code}", pid.0))
        .collect();
    format!("{{{}}}", items.join(", "))
}

impl<K: Kernel> Reaper<K> for Fast {
    type Extra = Fast;

    fn reap_all(core: &Core<K, Self>) -> Result<()> {
        loop {
            let (pid, code) = match core.kernel.wait_any(WaitMode::NoHang) {
                // No children left, or none exited: SIGCHLDs coalesce, so the loop
                // runs until one of these.
                Err(Errno::ECHILD) | Ok(WaitStatus::StillAlive) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno.into()),
                Ok(WaitStatus::Terminated(pid, status)) => (pid, returncode(status)),
            };
            let registered = {
                let mut state = core.lock();
                if state.callbacks.contains_key(&pid) {
                    true
                } else {
                    if state.extra.forks > 0 {
                        state.extra.zombies.insert(pid, code);
                    } else {
                        tracing::warn!(
                            target: "asyncio",
                            "Caught subprocess termination from unknown pid: {} -> {code}",
                            pid.0
                        );
                    }
                    false
                }
            };
            if registered {
                core.deliver(pid, code);
            }
        }
    }
}

impl<K: Kernel> ChildWatcher<K> for FastChildWatcher<K> {
    /// # Errors
    ///
    /// `ValueError` for a pid ≤ 0; `AssertionError` ("Must use the context manager")
    /// outside a fork window; `RuntimeError` with no loop attached (3.7, F-3).
    fn add_child_handler(&self, pid: Pid, callback: ChildCallback) -> Result<()> {
        check_pid(pid)?;
        if self.core.lock().extra.forks == 0 {
            return Err(Error::new(
                ErrorKind::AssertionError,
                "Must use the context manager",
            ));
        }
        self.core.require_loop()?;
        let early = {
            let mut state = self.core.lock();
            match state.extra.zombies.remove(&pid) {
                Some(code) => Some((callback, code)),
                None => {
                    state.callbacks.insert(pid, callback);
                    None
                }
            }
        };
        if let Some((callback, code)) = early {
            // It exited before it was registered: report it now (F-4).
            callback(pid, code);
        }
        Ok(())
    }

    fn remove_child_handler(&self, pid: Pid) -> bool {
        self.core.remove(pid)
    }

    /// # Errors
    ///
    /// As [`SafeChildWatcher`](super::SafeChildWatcher)'s.
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

    fn enter(&self) {
        self.core.lock().extra.forks += 1;
    }

    fn exit(&self) {
        let left = {
            let mut state = self.core.lock();
            state.extra.forks = state.extra.forks.saturating_sub(1);
            if state.extra.forks > 0 || state.extra.zombies.is_empty() {
                return;
            }
            std::mem::take(&mut state.extra.zombies)
        };
        tracing::warn!(
            target: "asyncio",
            "Caught subprocesses termination from unknown pids: {}",
            dict_repr(&left)
        );
    }
}

impl<K: Kernel> fmt::Debug for FastChildWatcher<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.core, f)
    }
}
