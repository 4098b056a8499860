//! Threads, their identity, and the monitor.

use std::any::Any;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{OsKernel, errno_of};
use crate::kernel::{Errno, Monitor, ThreadId, Threads};

/// A thread started by [`OsKernel`].
#[derive(Debug)]
pub struct OsJoinHandle(std::thread::JoinHandle<()>);

static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD_ID: Cell<u64> = const { Cell::new(0) };
}

impl Threads for OsKernel {
    type JoinHandle = OsJoinHandle;
    type Monitor = OsMonitor;

    fn spawn_thread(
        &self,
        name: &str,
        body: Box<dyn FnOnce() + Send + 'static>,
    ) -> Result<OsJoinHandle, Errno> {
        #[allow(clippy::disallowed_types, reason = "OsKernel is the seam")]
        let builder = std::thread::Builder::new().name(name.to_string());
        builder
            .spawn(body)
            .map(OsJoinHandle)
            .map_err(|error| errno_of(&error))
    }

    fn join_thread(&self, handle: OsJoinHandle) -> Result<(), Box<dyn Any + Send>> {
        handle.0.join()
    }

    fn current_thread(&self) -> ThreadId {
        THREAD_ID.with(|id| {
            if id.get() == 0 {
                id.set(NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed));
            }
            ThreadId(id.get())
        })
    }

    fn current_thread_name(&self) -> String {
        if self.is_main_thread() {
            return "MainThread".to_string();
        }
        #[allow(clippy::disallowed_methods, reason = "OsKernel is the seam")]
        let current = std::thread::current();
        match current.name() {
            Some(name) => name.to_string(),
            None => format!("Thread-{}", self.current_thread()),
        }
    }

    fn is_main_thread(&self) -> bool {
        is_main_thread()
    }

    fn new_monitor(&self) -> OsMonitor {
        OsMonitor::default()
    }
}

fn is_main_thread() -> bool {
    // The main thread's task id equals the process id, also in a forked child, where
    // the forking thread becomes the main thread.
    nix::unistd::gettid().as_raw() == super::process::cached_pid()
}

#[allow(clippy::disallowed_types, reason = "OsKernel is the seam")]
type StdMutex<T> = std::sync::Mutex<T>;
#[allow(clippy::disallowed_types, reason = "OsKernel is the seam")]
type StdCondvar = std::sync::Condvar;

#[derive(Debug, Default)]
struct MonitorState {
    held: bool,
    generation: u64,
    /// Threads waiting on `freed` to take the lock, and on `notified` for a
    /// notification. A condition variable's notify is a `futex` call even with nobody
    /// waiting, so `exit` and `notify_all` make it only when someone is.
    entering: usize,
    waiting: usize,
}

/// [`Monitor`] over a `std` mutex and two condition variables.
///
/// Uncontended, taking and releasing it makes no system call: the `std` mutex is a
/// user-space atomic until two threads meet, and the condition variables are
/// notified only when a thread waits on them.
#[derive(Debug, Default)]
pub struct OsMonitor {
    state: StdMutex<MonitorState>,
    freed: StdCondvar,
    notified: StdCondvar,
}

impl OsMonitor {
    fn state(&self) -> std::sync::MutexGuard<'_, MonitorState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits on `freed` until the lock is free, then takes it.
    fn take<'a>(
        &'a self,
        mut state: std::sync::MutexGuard<'a, MonitorState>,
    ) -> std::sync::MutexGuard<'a, MonitorState> {
        while state.held {
            state.entering += 1;
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state.entering -= 1;
        }
        state.held = true;
        state
    }

    /// Marks the lock free and wakes one thread waiting to take it, if any.
    fn release(&self, state: &mut MonitorState) {
        state.held = false;
        if state.entering > 0 {
            self.freed.notify_one();
        }
    }
}

impl Monitor for OsMonitor {
    fn enter(&self) {
        drop(self.take(self.state()));
    }

    fn exit(&self) {
        let mut state = self.state();
        debug_assert!(state.held, "Monitor::exit without enter");
        self.release(&mut state);
    }

    fn wait(&self, timeout: Option<Duration>) -> bool {
        let mut state = self.state();
        let generation = state.generation;
        self.release(&mut state);
        state.waiting += 1;
        let mut notified = true;
        match timeout {
            None => {
                while state.generation == generation {
                    state = self
                        .notified
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
            Some(timeout) => {
                let (next, result) = self
                    .notified
                    .wait_timeout_while(state, timeout, |s| s.generation == generation)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                state = next;
                notified = !result.timed_out();
            }
        }
        state.waiting -= 1;
        drop(self.take(state));
        notified
    }

    fn notify_all(&self) {
        let mut state = self.state();
        state.generation = state.generation.wrapping_add(1);
        if state.waiting > 0 {
            self.notified.notify_all();
        }
    }
}
