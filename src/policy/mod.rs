//! Event-loop policies: the process-wide policy and the per-context loops it manages.
//!
//! - [`AbstractEventLoopPolicy`] is the policy interface. Every method has a provided
//!   body that does the default policy's work through `&self`, on the state returned by
//!   [`AbstractEventLoopPolicy::state`]; with no state (the trait's own default) every
//!   method raises `NotImplementedError`, as CPython's abstract class does.
//! - [`DefaultEventLoopPolicy`] supplies that state: its context is the current thread.
//! - "Subclassing `DefaultEventLoopPolicy`" is implementing the trait for a type that
//!   owns a [`PolicyState`] and overriding some methods. The provided bodies call the
//!   others through `self`, so an override is seen by them (C-2:
//!   `get_event_loop` creates through `self.set_event_loop(self.new_event_loop())`).
//!   An override calls [`base`]'s functions where Python would call `super()`.
//!
//! The free functions here mirror `asyncio.events` for any kernel; the crate root has
//! the same for the real OS.

pub mod base;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::globals::PolicyRef;
use crate::kernel::{Kernel, ThreadId};
use crate::loom::sync::Mutex;
use crate::sys::unix::OsKernel;

/// The policy interface (asyncio's `AbstractEventLoopPolicy`), with the default
/// policy's behaviour as provided methods.
///
/// The child-watcher half of the interface (`get_child_watcher`/`set_child_watcher`)
/// joins this trait with the watchers.
pub trait AbstractEventLoopPolicy<K: Kernel = OsKernel>: Send + Sync + 'static {
    /// The per-context state the provided methods work on; `None` (the default) makes
    /// them raise `NotImplementedError`.
    fn state(&self) -> Option<&PolicyState<K>> {
        None
    }

    /// The loop of the current context (C-2, C-3): the one set for this thread, or, in
    /// the main thread before any `set_event_loop`, a new one made current through
    /// `self.set_event_loop(self.new_event_loop())`.
    ///
    /// # Errors
    ///
    /// `RuntimeError` "There is no current event loop in thread 'NAME'." when none is
    /// set and none may be created.
    fn get_event_loop(&self) -> Result<EventLoop<K>> {
        base::get_event_loop(self)
    }

    /// Makes `event_loop` the current context's loop; `None` also stops the main
    /// thread's auto-creation for good (C-4, C-5).
    fn set_event_loop(&self, event_loop: Option<EventLoop<K>>) -> Result<()> {
        base::set_event_loop(self, event_loop)
    }

    /// A new loop, not made current anywhere (C-8).
    fn new_event_loop(&self) -> Result<EventLoop<K>> {
        base::new_event_loop(self)
    }
}

/// Per-thread state of one context (CPython's `_Local`).
#[derive(Debug)]
pub(crate) struct Local<K: Kernel> {
    pub(crate) event_loop: Option<EventLoop<K>>,
    pub(crate) set_called: bool,
}

impl<K: Kernel> Default for Local<K> {
    fn default() -> Self {
        Local {
            event_loop: None,
            set_called: false,
        }
    }
}

/// What the default policy keeps: the kernel and, per thread, the current loop and
/// whether `set_event_loop` was ever called there (CPython's `self._local`).
pub struct PolicyState<K: Kernel = OsKernel> {
    kernel: K,
    locals: Mutex<BTreeMap<ThreadId, Local<K>>>,
}

impl<K: Kernel> PolicyState<K> {
    /// Fresh state: no thread has a loop.
    pub fn new(kernel: K) -> PolicyState<K> {
        PolicyState {
            kernel,
            locals: Mutex::new(BTreeMap::new()),
        }
    }

    /// The kernel the policy's loops run on.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// Runs `f` on the calling thread's entry.
    pub(crate) fn with_local<R>(&self, f: impl FnOnce(&mut Local<K>) -> R) -> R {
        let thread = self.kernel.current_thread();
        let mut locals = self.locals.lock();
        f(locals.entry(thread).or_default())
    }
}

impl<K: Kernel> fmt::Debug for PolicyState<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyState")
            .field("kernel", &self.kernel)
            .field("threads", &self.locals.lock().len())
            .finish()
    }
}

/// The default policy: one loop per thread, auto-created in the main thread only.
#[derive(Debug)]
pub struct DefaultEventLoopPolicy<K: Kernel = OsKernel> {
    state: PolicyState<K>,
}

impl DefaultEventLoopPolicy<OsKernel> {
    /// The default policy on the real OS.
    pub fn new() -> DefaultEventLoopPolicy<OsKernel> {
        DefaultEventLoopPolicy::with_kernel(OsKernel)
    }
}

impl Default for DefaultEventLoopPolicy<OsKernel> {
    fn default() -> Self {
        DefaultEventLoopPolicy::new()
    }
}

impl<K: Kernel> DefaultEventLoopPolicy<K> {
    /// The default policy over `kernel`.
    pub fn with_kernel(kernel: K) -> DefaultEventLoopPolicy<K> {
        DefaultEventLoopPolicy {
            state: PolicyState::new(kernel),
        }
    }
}

impl<K: Kernel> AbstractEventLoopPolicy<K> for DefaultEventLoopPolicy<K> {
    fn state(&self) -> Option<&PolicyState<K>> {
        Some(&self.state)
    }
}

/// The policy of `kernel`'s process, created as a [`DefaultEventLoopPolicy`] on first
/// use; the same object until it is replaced (P-1).
pub fn get_event_loop_policy<K: Kernel>(kernel: &K) -> PolicyRef<K> {
    kernel.globals().policy(kernel)
}

/// Replaces the process's policy; `None` restores the default by making the next
/// [`get_event_loop_policy`] build a fresh one (P-2, P-3). Passing a non-policy is
/// ruled out by the type (P-2's `TypeError`).
pub fn set_event_loop_policy<K: Kernel>(kernel: &K, policy: Option<PolicyRef<K>>) {
    kernel.globals().set_policy(policy);
}

/// The loop running in this thread, or `RuntimeError('no running event loop')` (P-4).
pub fn get_running_loop<K: Kernel>(kernel: &K) -> Result<EventLoop<K>> {
    try_get_running_loop(kernel).ok_or_else(|| Error::runtime("no running event loop"))
}

/// The loop running in this thread, or `None` (CPython's `_get_running_loop`, P-5).
pub fn try_get_running_loop<K: Kernel>(kernel: &K) -> Option<EventLoop<K>> {
    kernel.globals().running_loop(kernel)
}

/// The running loop if there is one, else the policy's `get_event_loop()` (P-6).
pub fn get_event_loop<K: Kernel>(kernel: &K) -> Result<EventLoop<K>> {
    match try_get_running_loop(kernel) {
        Some(event_loop) => Ok(event_loop),
        None => get_event_loop_policy(kernel).get_event_loop(),
    }
}

/// `get_event_loop_policy().set_event_loop(event_loop)` (P-7).
pub fn set_event_loop<K: Kernel>(kernel: &K, event_loop: Option<EventLoop<K>>) -> Result<()> {
    get_event_loop_policy(kernel).set_event_loop(event_loop)
}

/// `get_event_loop_policy().new_event_loop()` (P-7).
pub fn new_event_loop<K: Kernel>(kernel: &K) -> Result<EventLoop<K>> {
    get_event_loop_policy(kernel).new_event_loop()
}
