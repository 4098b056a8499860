//! `MultiLoopChildWatcher` (spec M-1 … M-8): one process-wide SIGCHLD handler;
//! each exit is delivered to the loop that was running when its pid was registered.
//!
//! CPython installs a Python-level handler that runs only when the main thread runs
//! bytecode, so a loop idle in another thread is never woken (bpo-38323, M-8). Here the
//! handler writes to the watcher's own pipe ([`Disposition::Notify`]); a reaper thread
//! reads it, polls the registered pids, and hands each exit to its loop with
//! `call_soon_threadsafe`, which wakes that loop however idle it is. That deviation is
//! on purpose: it is the bug, not the behaviour.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Weak};

use super::{ChildCallback, ChildWatcher, check_pid, poll_returncode};
use crate::OsKernel;
use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::event_loop::signals::{self, CHILDREN_UNHEARD, OwnerId, Route};
use crate::kernel::{Errno, Fd, Kernel, Pid, Signal};
use crate::sync::BlockingMutex;

/// Delivers each child's exit to the loop running where it was registered.
///
/// - [`ChildWatcher::attach_loop`] ignores its argument and installs the process-wide
///   SIGCHLD handler once (main thread only, as CPython's `signal.signal`, M-2);
///   `is_active` is whether it is installed (M-3).
/// - `add_child_handler` needs a running loop in the calling thread
///   (`RuntimeError('no running event loop')`, M-4); callbacks never run synchronously.
/// - Only registered pids are waited for (O(n) `waitpid(pid, WNOHANG)` per SIGCHLD,
///   M-6): it never reaps another's child. A child reaped elsewhere reports 255.
/// - `close` gives SIGCHLD back, unless someone changed it since (then it warns and
///   leaves it, M-7), and joins its reaper thread. The handler is held in the same
///   per-process table as the loops' (see `event_loop::signals`): a watcher or loop
///   still open gets SIGCHLD back, and with none left it returns to what the OS had
///   before loopwatch, never to another watcher's closed fd.
pub struct MultiLoopChildWatcher<K: Kernel = OsKernel> {
    inner: Arc<Inner<K>>,
}

struct Inner<K: Kernel> {
    kernel: K,
    state: BlockingMutex<K, State<K>>,
}

struct Installed<K: Kernel> {
    owner: OwnerId,
    read: Fd,
    write: Fd,
    reaper: K::JoinHandle,
}

struct State<K: Kernel> {
    callbacks: BTreeMap<Pid, (EventLoop<K>, ChildCallback)>,
    installed: Option<Installed<K>>,
}

impl MultiLoopChildWatcher<OsKernel> {
    /// A new watcher on the real OS; nothing installed yet.
    pub fn new() -> Self {
        MultiLoopChildWatcher::with_kernel(OsKernel)
    }
}

impl Default for MultiLoopChildWatcher<OsKernel> {
    fn default() -> Self {
        MultiLoopChildWatcher::new()
    }
}

impl<K: Kernel> MultiLoopChildWatcher<K> {
    /// A new watcher over `kernel`; nothing installed yet.
    pub fn with_kernel(kernel: K) -> Self {
        MultiLoopChildWatcher {
            inner: Arc::new(Inner {
                state: BlockingMutex::new(
                    &kernel,
                    State {
                        callbacks: BTreeMap::new(),
                        installed: None,
                    },
                ),
                kernel,
            }),
        }
    }

    fn install(&self) -> Result<()> {
        let kernel = &self.inner.kernel;
        let mut state = self.inner.state.lock();
        if state.installed.is_some() {
            return Ok(());
        }
        if !kernel.is_main_thread() {
            return Err(Error::value("signal only works in main thread"));
        }
        let registry = signals::registry(kernel);
        let owner = registry.new_owner(kernel);
        let (read, write) = kernel.pipe()?;
        let setup = kernel
            .set_nonblocking(write, true)
            .and_then(|()| registry.hold(kernel, owner, Signal::SIGCHLD, Route::Notify(write)));
        if let Err(errno) = setup {
            let _ = kernel.close(read);
            let _ = kernel.close(write);
            return Err(errno.into());
        }
        let weak = Arc::downgrade(&self.inner);
        let reaper = kernel.spawn_thread(
            "loopwatch-sigchld",
            Box::new(move || reaper_thread(weak, read)),
        );
        match reaper {
            Ok(reaper) => {
                state.installed = Some(Installed {
                    owner,
                    read,
                    write,
                    reaper,
                });
                Ok(())
            }
            Err(errno) => {
                let _ = registry.release(kernel, owner, Signal::SIGCHLD);
                let _ = kernel.close(read);
                let _ = kernel.close(write);
                Err(errno.into())
            }
        }
    }
}

/// The reaper thread: one pass over the registered pids per byte read; ends when
/// the write end is closed.
fn reaper_thread<K: Kernel>(inner: Weak<Inner<K>>, read: Fd) {
    let mut buf = [0u8; 64];
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let kernel = strong.kernel.clone();
        drop(strong);
        match kernel.read(read, &mut buf) {
            Ok(0) => return,
            Ok(_) => {
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                if let Err(error) = strong.reap_all() {
                    // M-6: the handler logs, it does not raise.
                    tracing::warn!(
                        target: "asyncio",
                        exception = %error,
                        "Unknown exception in SIGCHLD handler"
                    );
                }
            }
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

impl<K: Kernel> Inner<K> {
    fn reap_all(&self) -> Result<()> {
        let pids: Vec<Pid> = self.state.lock().callbacks.keys().copied().collect();
        for pid in pids {
            self.reap(pid)?;
        }
        Ok(())
    }

    /// M-5: one poll of `pid`; an exit is handed to its loop.
    ///
    /// The poll and the removal of the callback happen under the lock: the reaper
    /// thread and `add_child_handler`'s immediate poll may look at the same pid at
    /// once, and only the one whose `waitpid` reaped it may report it (the other would
    /// see ECHILD and report 255).
    fn reap(&self, pid: Pid) -> Result<()> {
        let (event_loop, callback, code) = {
            let mut state = self.state.lock();
            if !state.callbacks.contains_key(&pid) {
                return Ok(());
            }
            let Some(code) = poll_returncode(&self.kernel, pid)? else {
                return Ok(());
            };
            let (event_loop, callback) = state.callbacks.remove(&pid).expect("checked above");
            (event_loop, callback, code)
        };
        if event_loop.is_closed() {
            tracing::warn!(
                target: "asyncio",
                "Loop {event_loop:?} that handles pid {} is closed",
                pid.0
            );
            return Ok(());
        }
        if event_loop
            .call_soon_threadsafe(move || callback(pid, code))
            .is_err()
        {
            // Closed between the check and the call.
            tracing::warn!(
                target: "asyncio",
                "Loop {event_loop:?} that handles pid {} is closed",
                pid.0
            );
        }
        Ok(())
    }
}

impl<K: Kernel> ChildWatcher<K> for MultiLoopChildWatcher<K> {
    /// # Errors
    ///
    /// `ValueError` for a pid ≤ 0; `RuntimeError('no running event loop')` without a
    /// running loop in the calling thread; a kernel error other than ECHILD from the
    /// immediate poll.
    fn add_child_handler(&self, pid: Pid, callback: ChildCallback) -> Result<()> {
        check_pid(pid)?;
        let event_loop = crate::policy::get_running_loop(&self.inner.kernel)?;
        // Reliability finding 16: warn now if other code replaced the handler, rather
        // than let this child's exit go unreported without a word.
        signals::check_handler(&self.inner.kernel, Signal::SIGCHLD, CHILDREN_UNHEARD);
        self.inner
            .state
            .lock()
            .callbacks
            .insert(pid, (event_loop, callback));
        self.inner.reap(pid)
    }

    fn remove_child_handler(&self, pid: Pid) -> bool {
        let removed = self.inner.state.lock().callbacks.remove(&pid);
        removed.is_some()
    }

    /// # Errors
    ///
    /// `ValueError` ("signal only works in main thread") outside the main thread the
    /// first time; the kernel's errors installing the handler or starting the reaper.
    fn attach_loop(&self, _event_loop: Option<EventLoop<K>>) -> Result<()> {
        self.install()
    }

    /// # Errors
    ///
    /// None in practice; kernel errors while restoring are reported as warnings.
    fn close(&self) -> Result<()> {
        let kernel = &self.inner.kernel;
        let (callbacks, installed) = {
            let mut state = self.inner.state.lock();
            (std::mem::take(&mut state.callbacks), state.installed.take())
        };
        drop(callbacks);
        let Some(installed) = installed else {
            return Ok(());
        };
        // Before the pipe closes: the kernel's handler must never write to it after.
        // A handler changed by outside code is left in place, with a warning (M-7).
        let _ = signals::registry(kernel).release(kernel, installed.owner, Signal::SIGCHLD);
        // End of file tells the reaper to stop.
        let _ = kernel.close(installed.write);
        if kernel.join_thread(installed.reaper).is_err() {
            tracing::error!(target: "asyncio", "the SIGCHLD reaper thread panicked");
        }
        let _ = kernel.close(installed.read);
        Ok(())
    }

    fn is_active(&self) -> bool {
        self.inner.state.lock().installed.is_some()
    }
}

impl<K: Kernel> Drop for MultiLoopChildWatcher<K> {
    fn drop(&mut self) {
        // The reaper holds only a weak handle: without this it would be left reading,
        // with the pipe and the disposition still in place.
        let _ = self.close();
    }
}

impl<K: Kernel> fmt::Debug for MultiLoopChildWatcher<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.state.lock();
        f.debug_struct("MultiLoopChildWatcher")
            .field("pids", &state.callbacks.keys().collect::<Vec<_>>())
            .field("installed", &state.installed.is_some())
            .finish()
    }
}
