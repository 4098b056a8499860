//! The process-wide state above the seam: asyncio's module globals.
//!
//! CPython keeps the policy in `events._event_loop_policy` and the running loop in a
//! thread-local `(loop, pid)` pair. Here both live in one [`ProcessGlobals`] owned by
//! the kernel (the real OS has one; each simulated process its own), and per-thread
//! entries are keyed by the kernel's [`ThreadId`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::event_loop::EventLoop;
use crate::kernel::{Kernel, Pid, ThreadId};
use crate::loom::sync::Mutex;
use crate::policy::AbstractEventLoopPolicy;
use crate::sync::BlockingMutex;

/// A shared policy object, as the process-wide slot holds it.
pub type PolicyRef<K> = Arc<dyn AbstractEventLoopPolicy<K>>;

/// The policy slot and the running loop of each thread, for one process.
pub struct ProcessGlobals<K: Kernel> {
    /// `events._event_loop_policy` under `events._lock`.
    policy: BlockingMutex<K, Option<PolicyRef<K>>>,
    /// The running loop of each thread, with the pid it was set in (spec P-5).
    running: Mutex<BTreeMap<ThreadId, (EventLoop<K>, Pid)>>,
}

impl<K: Kernel> ProcessGlobals<K> {
    /// Empty globals: no policy yet, no running loop.
    pub fn new(kernel: &K) -> ProcessGlobals<K> {
        ProcessGlobals {
            policy: BlockingMutex::new(kernel, None),
            running: Mutex::new(BTreeMap::new()),
        }
    }

    /// The loop running in the calling thread, if it was set in this process: a forked
    /// child never sees its parent's running loop (P-5).
    pub(crate) fn running_loop(&self, kernel: &K) -> Option<EventLoop<K>> {
        let thread = kernel.current_thread();
        let running = self.running.lock();
        let (event_loop, pid) = running.get(&thread)?;
        (*pid == kernel.getpid()).then(|| event_loop.clone())
    }

    /// Sets or clears the calling thread's running loop.
    pub(crate) fn set_running_loop(&self, kernel: &K, event_loop: Option<EventLoop<K>>) {
        let thread = kernel.current_thread();
        let removed = {
            let mut running = self.running.lock();
            match event_loop {
                Some(event_loop) => running.insert(thread, (event_loop, kernel.getpid())),
                None => running.remove(&thread),
            }
        };
        // Dropped outside the lock: it may be the last handle of a loop.
        drop(removed);
    }

    /// The policy, created as a default policy on first use (P-1).
    pub(crate) fn policy(&self, kernel: &K) -> PolicyRef<K> {
        let mut slot = self.policy.lock();
        slot.get_or_insert_with(|| {
            Arc::new(crate::policy::DefaultEventLoopPolicy::with_kernel(
                kernel.clone(),
            ))
        })
        .clone()
    }

    /// Replaces the policy; `None` makes the next [`ProcessGlobals::policy`] build a
    /// fresh default (P-3).
    pub(crate) fn set_policy(&self, policy: Option<PolicyRef<K>>) {
        let old = std::mem::replace(&mut *self.policy.lock(), policy);
        drop(old);
    }
}

impl<K: Kernel> fmt::Debug for ProcessGlobals<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessGlobals")
            .field("policy_set", &self.policy.lock().is_some())
            .field("running_loops", &self.running.lock().len())
            .finish()
    }
}
