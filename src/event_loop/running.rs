//! Which loop runs in which thread: asyncio's `_running_loop`, one table per process.
//!
//! CPython keeps a thread-local `(loop, pid)` pair. Here the table lives in the
//! kernel's [`ProcessLocals`](crate::kernel::ProcessLocals), keyed by the kernel's
//! [`ThreadId`], so that each simulated process has its own and coroutines sharing one
//! OS thread do not share an entry.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::EventLoop;
use crate::error::{Error, Result};
use crate::kernel::{Kernel, Pid, ThreadId};
use crate::loom::sync::Mutex;

/// The running loop of each thread, with the pid it was set in (spec P-5).
struct RunningLoops<K: Kernel> {
    loops: Mutex<BTreeMap<ThreadId, (EventLoop<K>, Pid)>>,
}

fn table<K: Kernel>(kernel: &K) -> Arc<RunningLoops<K>> {
    kernel.process_locals().get_or_init(|| RunningLoops {
        loops: Mutex::new(BTreeMap::new()),
    })
}

/// The loop running in this thread, or `RuntimeError('no running event loop')` (P-4).
pub fn get_running_loop<K: Kernel>(kernel: &K) -> Result<EventLoop<K>> {
    try_get_running_loop(kernel).ok_or_else(|| Error::runtime("no running event loop"))
}

/// The loop running in this thread, or `None` (CPython's `_get_running_loop`). A
/// forked child never sees its parent's running loop (P-5).
pub fn try_get_running_loop<K: Kernel>(kernel: &K) -> Option<EventLoop<K>> {
    let thread = kernel.current_thread();
    let table = table(kernel);
    let loops = table.loops.lock();
    let (event_loop, pid) = loops.get(&thread)?;
    (*pid == kernel.getpid()).then(|| event_loop.clone())
}

/// Sets or clears the calling thread's running loop.
pub(super) fn set_running_loop<K: Kernel>(kernel: &K, event_loop: Option<EventLoop<K>>) {
    let thread = kernel.current_thread();
    let table = table(kernel);
    let removed = {
        let mut loops = table.loops.lock();
        match event_loop {
            Some(event_loop) => loops.insert(thread, (event_loop, kernel.getpid())),
            None => loops.remove(&thread),
        }
    };
    // Dropped outside the lock: it may be the last handle of a loop.
    drop(removed);
}
