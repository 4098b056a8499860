//! [`BlockingMutex`]: data guarded by a kernel [`Monitor`], so that a lock held across a
//! kernel call, or a wait for a condition, parks a simulated thread in the simulator
//! rather than blocking the host thread.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::kernel::{Monitor, Threads};

/// A mutex with one condition, built on the kernel's [`Monitor`].
///
/// Unlike `std::sync::Mutex` it has no poisoning: a panic while the lock is held
/// releases it (the guard's `Drop` runs) and the data stays as the panicking code left it.
pub struct BlockingMutex<K: Threads, T> {
    monitor: K::Monitor,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is serialised by `monitor`: a `BlockingMutexGuard` exists only
// between `enter` and `exit`, so at most one thread reaches the data at a time; sending
// the mutex or sharing it is then as sound as for `std::sync::Mutex<T>` with `T: Send`.
unsafe impl<K: Threads, T: Send> Send for BlockingMutex<K, T> {}
// SAFETY: as above; shared references only hand out the data under the lock.
unsafe impl<K: Threads, T: Send> Sync for BlockingMutex<K, T> {}

impl<K: Threads, T> BlockingMutex<K, T> {
    /// A new unlocked mutex holding `value`, using `kernel`'s monitor.
    pub fn new(kernel: &K, value: T) -> Self {
        BlockingMutex {
            monitor: kernel.new_monitor(),
            data: UnsafeCell::new(value),
        }
    }

    /// Blocks until the lock is free, then takes it.
    pub fn lock(&self) -> BlockingMutexGuard<'_, K, T> {
        self.monitor.enter();
        BlockingMutexGuard {
            mutex: self,
            _not_send_or_sync: PhantomData,
        }
    }

    /// Wakes every thread waiting in [`BlockingMutexGuard::wait`].
    pub fn notify_all(&self) {
        self.monitor.notify_all();
    }
}

impl<K: Threads, T: fmt::Debug> fmt::Debug for BlockingMutex<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let guard = self.lock();
        f.debug_struct("BlockingMutex")
            .field("data", &*guard)
            .finish()
    }
}

/// Proof that the lock of a [`BlockingMutex`] is held; releases it on drop.
///
/// Like `std`'s guard it is `Sync` only when `T` is, since a shared guard hands out
/// `&T` to every thread it is shared with, and it is not `Send`: the lock is released
/// by the thread that took it.
///
/// ```
/// fn assert_sync<T: Sync>() {}
/// assert_sync::<loopwatch::sync::BlockingMutexGuard<'static, loopwatch::OsKernel, u64>>();
/// ```
///
/// A guard over a `Cell` (which is `Send` but not `Sync`) cannot be shared
/// (reliability finding 4: it could, and two threads incrementing through `&guard` lost
/// increments):
///
/// ```compile_fail
/// fn assert_sync<T: Sync>() {}
/// assert_sync::<
///     loopwatch::sync::BlockingMutexGuard<'static, loopwatch::OsKernel, std::cell::Cell<u64>>,
/// >();
/// ```
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<loopwatch::sync::BlockingMutexGuard<'static, loopwatch::OsKernel, u64>>();
/// ```
pub struct BlockingMutexGuard<'a, K: Threads, T> {
    mutex: &'a BlockingMutex<K, T>,
    /// Neither `Send` nor `Sync` by itself; `Sync` is granted below for `T: Sync`.
    _not_send_or_sync: PhantomData<*const ()>,
}

// SAFETY: a shared guard gives out only `&T` (through `Deref`) and `wait`, which needs
// `&mut self`; sharing `&T` between threads is sound exactly when `T: Sync`, as for
// `std::sync::MutexGuard`.
unsafe impl<K: Threads, T: Sync> Sync for BlockingMutexGuard<'_, K, T> {}

impl<K: Threads, T> BlockingMutexGuard<'_, K, T> {
    /// Releases the lock, waits for [`BlockingMutex::notify_all`] or the timeout, and
    /// takes the lock again. Returns `false` if the timeout passed. Callers re-check
    /// their condition: spurious returns are allowed.
    pub fn wait(&mut self, timeout: Option<Duration>) -> bool {
        self.mutex.monitor.wait(timeout)
    }
}

impl<K: Threads, T> Deref for BlockingMutexGuard<'_, K, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the monitor is entered by this thread.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<K: Threads, T> DerefMut for BlockingMutexGuard<'_, K, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while the monitor is entered by this thread,
        // and `&mut self` rules out another reference through this guard.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<K: Threads, T> Drop for BlockingMutexGuard<'_, K, T> {
    fn drop(&mut self) {
        self.mutex.monitor.exit();
    }
}

impl<K: Threads, T: fmt::Debug> fmt::Debug for BlockingMutexGuard<'_, K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
