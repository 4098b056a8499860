//! Time and scheduling: the loop's clock, the timer heap and the calls that fill the
//! ready queue.

use std::cmp::Ordering as CmpOrdering;
use std::future::Future;

use super::{Callback, EventLoop, Handle, Job, LoopState, Task, closed_error};
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::loom::sync::atomic::Ordering;

/// Cancelled timers are pruned from the heap once there are this many and they are
/// more than half of it (asyncio's `_MIN_SCHEDULED_TIMER_HANDLES` rule).
const PRUNE_TIMERS_MIN: usize = 100;

/// A callback due at loop time `when`; `sequence` breaks ties in scheduling order.
pub(super) struct Timer<K: Kernel> {
    pub(super) when: f64,
    pub(super) sequence: u64,
    pub(super) handle: Handle,
    pub(super) callback: Callback,
    pub(super) _kernel: std::marker::PhantomData<K>,
}

impl<K: Kernel> PartialEq for Timer<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl<K: Kernel> Eq for Timer<K> {}
impl<K: Kernel> PartialOrd for Timer<K> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl<K: Kernel> Ord for Timer<K> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest timer; equal times
    /// run in the order they were scheduled.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other
            .when
            .total_cmp(&self.when)
            .then_with(|| other.sequence.cmp(&self.sequence))
    }
}

impl<K: Kernel> EventLoop<K> {
    /// The loop's clock in seconds (the kernel's monotonic clock).
    pub fn time(&self) -> f64 {
        self.inner.kernel.now().as_secs_f64()
    }

    pub(super) fn clock_resolution(&self) -> f64 {
        1e-9
    }

    /// Schedules `callback` for the next iteration. Callbacks run in the order they
    /// were scheduled.
    ///
    /// # Errors
    ///
    /// `RuntimeError` if the loop is closed, or if it runs in another thread (use
    /// [`EventLoop::call_soon_threadsafe`]).
    pub fn call_soon<F>(&self, callback: F) -> Result<Handle>
    where
        F: FnOnce() + Send + 'static,
    {
        self.inner
            .push(Job::Once(Box::new(callback)), std::any::type_name::<F>())
    }

    /// As [`EventLoop::call_soon`], from any thread: wakes the loop if it is blocked
    /// polling.
    ///
    /// # Errors
    ///
    /// `RuntimeError` if the loop is closed.
    pub fn call_soon_threadsafe<F>(&self, callback: F) -> Result<Handle>
    where
        F: FnOnce() + Send + 'static,
    {
        self.inner
            .push_threadsafe(Job::Once(Box::new(callback)), std::any::type_name::<F>())
    }

    /// Schedules `callback` to run `delay` seconds from now (zero or negative: as soon
    /// as possible, after callbacks already due).
    ///
    /// # Errors
    ///
    /// `ValueError` for a NaN delay; otherwise as [`EventLoop::call_at`].
    pub fn call_later<F>(&self, delay: f64, callback: F) -> Result<Handle>
    where
        F: FnOnce() + Send + 'static,
    {
        if delay.is_nan() {
            return Err(Error::value("delay must not be NaN"));
        }
        self.call_at(self.time() + delay, callback)
    }

    /// Schedules `callback` for loop time `when` (see [`EventLoop::time`]).
    ///
    /// # Errors
    ///
    /// `ValueError` for NaN; `RuntimeError` if the loop is closed or runs in another thread.
    pub fn call_at<F>(&self, when: f64, callback: F) -> Result<Handle>
    where
        F: FnOnce() + Send + 'static,
    {
        if when.is_nan() {
            return Err(Error::value("when must not be NaN"));
        }
        let name = std::any::type_name::<F>();
        let handle = Handle::timer(name, when, self.inner.cancelled_timers.clone());
        let mut state = self.inner.state.lock();
        if state.closed {
            return Err(closed_error());
        }
        self.inner.kernel_thread_check(&state)?;
        state.timer_sequence += 1;
        let sequence = state.timer_sequence;
        state.timers.push(Timer {
            when,
            sequence,
            handle: handle.clone(),
            callback: Box::new(callback),
            _kernel: std::marker::PhantomData,
        });
        Ok(handle)
    }

    /// Wraps `future` in a [`Task`] scheduled on this loop.
    ///
    /// # Errors
    ///
    /// `RuntimeError` if the loop is closed or runs in another thread.
    pub fn create_task<F>(&self, future: F) -> Result<Task<F::Output, K>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Task::spawn(&self.inner, future)
    }

    pub(super) fn prune_timers(&self, state: &mut LoopState<K>) {
        let cancelled = self.inner.cancelled_timers.load(Ordering::Relaxed);
        if state.timers.len() >= PRUNE_TIMERS_MIN && cancelled * 2 > state.timers.len() {
            state.timers.retain(|timer| !timer.handle.cancelled());
            let left = state
                .timers
                .iter()
                .filter(|timer| timer.handle.cancelled())
                .count();
            self.inner.cancelled_timers.store(left, Ordering::Relaxed);
        }
    }
}
