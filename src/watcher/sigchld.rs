//! What Safe and Fast share (CPython's `BaseChildWatcher`): a loop whose SIGCHLD
//! handler runs the watcher's reaping pass, the callbacks by pid, and `attach_loop`
//! (spec S-2), `close` (S-8, F-6), `is_active` (S-9) and the handler's error
//! reporting.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Weak};

use super::{ChildCallback, ReapFence, main_thread_hint};
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::signals::{self, CHILDREN_UNHEARD};
use crate::event_loop::{EventLoop, ExceptionContext, panic_message};
use crate::kernel::{Kernel, Pid, Signal};
use crate::sync::{BlockingMutex, BlockingMutexGuard};
use crate::zoo::Mutant;

/// The reaping pass a watcher runs on each SIGCHLD (Safe's or Fast's), and the state it
/// keeps between passes.
pub(crate) trait ReapPass<K: Kernel>: Send + Sync + Sized + 'static {
    /// Watcher-specific state kept under the same lock as the callbacks.
    type PassState: Send + Default + fmt::Debug;

    /// One pass over what may have exited (`_do_waitpid_all`).
    fn reap_all(core: &SigchldWatcher<K, Self>) -> Result<()>;
}

/// The state under a SIGCHLD watcher's lock: its loop, the callbacks by pid and the
/// pass's own state.
pub(crate) struct SigchldState<K: Kernel, X> {
    pub(crate) event_loop: Option<EventLoop<K>>,
    pub(crate) callbacks: BTreeMap<Pid, ChildCallback>,
    /// The reap fences of the registered pids that have one (see
    /// [`ReapFence`]); always a subset of `callbacks`' keys.
    pub(crate) fences: BTreeMap<Pid, ReapFence<K>>,
    pub(crate) pass_state: X,
}

impl<K: Kernel, X> SigchldState<K, X> {
    /// Registers `callback` (and `fence`) for `pid`, replacing what was there.
    pub(crate) fn insert(
        &mut self,
        pid: Pid,
        callback: ChildCallback,
        fence: Option<ReapFence<K>>,
    ) {
        self.callbacks.insert(pid, callback);
        match fence {
            Some(fence) => self.fences.insert(pid, fence),
            None => self.fences.remove(&pid),
        };
    }

    /// Takes `pid`'s callback out of the table, with its fence.
    pub(crate) fn take(&mut self, pid: Pid) -> Option<ChildCallback> {
        self.fences.remove(&pid);
        self.callbacks.remove(&pid)
    }
}

/// The shared part of a SIGCHLD-driven watcher.
pub(crate) struct SigchldWatcher<K: Kernel, R: ReapPass<K>> {
    pub(crate) kernel: K,
    state: BlockingMutex<K, SigchldState<K, R::PassState>>,
    /// Itself, for the signal handler to reach it without keeping it alive.
    this: Weak<SigchldWatcher<K, R>>,
    name: &'static str,
}

impl<K: Kernel, R: ReapPass<K>> SigchldWatcher<K, R> {
    pub(crate) fn new(kernel: K, name: &'static str) -> Arc<Self> {
        Arc::new_cyclic(|this| SigchldWatcher {
            state: BlockingMutex::new(
                &kernel,
                SigchldState {
                    event_loop: None,
                    callbacks: BTreeMap::new(),
                    fences: BTreeMap::new(),
                    pass_state: R::PassState::default(),
                },
            ),
            kernel,
            this: this.clone(),
            name,
        })
    }

    pub(crate) fn lock(&self) -> BlockingMutexGuard<'_, K, SigchldState<K, R::PassState>> {
        self.state.lock()
    }

    /// CPython 3.7's check before registering (spec S-3, F-3).
    pub(crate) fn require_loop(&self) -> Result<()> {
        if self.lock().event_loop.is_none() {
            return Err(Error::runtime(
                "Cannot add child handler, the child watcher does not have a loop attached",
            ));
        }
        // Reliability finding 16: the first point after attach where a child's exit
        // is counted on, and one `sigaction` query cheap: warn now if other code
        // replaced the loop's SIGCHLD handler, rather than never report the child.
        signals::check_handler(&self.kernel, Signal::SIGCHLD, CHILDREN_UNHEARD);
        Ok(())
    }

    pub(crate) fn debug(&self) -> bool {
        self.lock()
            .event_loop
            .as_ref()
            .is_some_and(EventLoop::get_debug)
    }

    /// Spec S-2: warn on detaching with handlers pending, move the SIGCHLD handler
    /// from the old loop to the new one, then reap at once what exited meanwhile.
    pub(crate) fn attach_loop(&self, event_loop: Option<EventLoop<K>>) -> Result<()> {
        let (old, pending) = {
            let state = self.lock();
            (state.event_loop.clone(), !state.callbacks.is_empty())
        };
        if old.is_some() && event_loop.is_none() && pending {
            tracing::warn!(
                target: "asyncio",
                category = "RuntimeWarning",
                "A loop is being detached from a child watcher with pending handlers"
            );
        }
        if let Some(old) = old {
            old.remove_signal_handler(Signal::SIGCHLD)
                .map_err(|error| main_thread_hint(error, self.name))?;
        }
        self.lock().event_loop = event_loop.clone();
        if let Some(event_loop) = event_loop {
            let this = self.this.clone();
            let added = event_loop.add_signal_handler(Signal::SIGCHLD, move || {
                if let Some(core) = this.upgrade() {
                    core.sig_chld();
                }
            });
            if let Err(error) = added {
                self.lock().event_loop = None;
                return Err(main_thread_hint(error, self.name));
            }
            // Children that exited while detached; callbacks run here, synchronously.
            R::reap_all(self)?;
        }
        Ok(())
    }

    /// The SIGCHLD handler (`_sig_chld`): one reaping pass; anything that goes wrong
    /// goes to the loop's exception handler. A callback's panic is reported on
    /// its own by the pass, which goes on with the other exits (see
    /// [`SigchldWatcher::run_in_pass`]).
    pub(crate) fn sig_chld(&self) {
        let outcome = catch_unwind(AssertUnwindSafe(|| R::reap_all(self)));
        let exception = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error,
            Err(payload) => Error::new(ErrorKind::Panic, panic_message(&*payload)),
        };
        self.report(exception);
    }

    /// Reports `exception` as the SIGCHLD handler's: to the attached loop's
    /// exception handler, or, detached, as an `error` event.
    fn report(&self, exception: Error) {
        let event_loop = self.lock().event_loop.clone();
        let context = ExceptionContext {
            message: "Unknown exception in SIGCHLD handler".to_string(),
            exception: Some(exception),
            handle: None,
        };
        match event_loop {
            Some(event_loop) => event_loop.call_exception_handler(&context),
            None => tracing::error!(
                target: "asyncio",
                exception = %context.exception.as_ref().map(ToString::to_string).unwrap_or_default(),
                "{}",
                context.message
            ),
        }
    }

    /// `close`: forget every handler (so detaching does not warn), then detach.
    pub(crate) fn close(&self) -> Result<()> {
        let dropped = {
            let mut state = self.lock();
            state.pass_state = R::PassState::default();
            state.fences.clear();
            std::mem::take(&mut state.callbacks)
        };
        drop(dropped);
        self.attach_loop(None)
    }

    /// Attached to a loop that is running (S-9).
    pub(crate) fn is_active(&self) -> bool {
        self.lock()
            .event_loop
            .as_ref()
            .is_some_and(EventLoop::is_running)
    }

    pub(crate) fn remove(&self, pid: Pid) -> bool {
        let removed = self.lock().take(pid);
        removed.is_some()
    }

    /// Runs a callback taken out of the table, outside the lock.
    pub(crate) fn run_callback(&self, pid: Pid, returncode: i32, callback: ChildCallback) {
        if self.debug() {
            tracing::debug!(
                target: "asyncio",
                "process {} exited with returncode {returncode}",
                pid.0
            );
        }
        callback(pid, returncode);
    }

    /// Runs a callback during a reaping pass (a SIGCHLD, or the one `attach_loop`
    /// makes): its panic is caught and reported on its own, as the SIGCHLD handler's
    /// error, and the pass goes on, so one bad callback cannot leave the other exits of
    /// a coalesced SIGCHLD unreported (and their children zombies).
    pub(crate) fn run_in_pass(&self, pid: Pid, returncode: i32, callback: ChildCallback) {
        if crate::zoo::active(&self.kernel, Mutant::PanicEndsPass) {
            // zoo: finding 9: the panic leaves the pass, and the exits after it in the
            // same SIGCHLD are neither reaped nor reported.
            return self.run_callback(pid, returncode, callback);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.run_callback(pid, returncode, callback);
        }));
        if let Err(payload) = outcome {
            self.report(Error::new(ErrorKind::Panic, panic_message(&*payload)));
        }
    }

    /// Runs the callback registered for `pid`, if any, outside the lock, as a pass
    /// does ([`SigchldWatcher::run_in_pass`]).
    pub(crate) fn deliver(&self, pid: Pid, returncode: i32) {
        let callback = self.lock().take(pid);
        match callback {
            Some(callback) => self.run_in_pass(pid, returncode, callback),
            None => {
                if self.debug() {
                    tracing::warn!(
                        target: "asyncio",
                        "Child watcher got an unexpected pid: {}",
                        pid.0
                    );
                }
            }
        }
    }
}

impl<K: Kernel, R: ReapPass<K>> fmt::Debug for SigchldWatcher<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct(self.name)
            .field("loop", &state.event_loop)
            .field("pids", &state.callbacks.keys().collect::<Vec<_>>())
            .field("pass_state", &state.pass_state)
            .finish()
    }
}
