//! `std` behind the shim's names.

pub(crate) mod sync {
    use std::cell::Cell;
    use std::ops::{Deref, DerefMut};

    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    }

    thread_local! {
        /// How many short locks the calling OS thread holds. Per OS thread on purpose:
        /// simulated threads share one OS thread but switch only inside kernel calls,
        /// and a kernel checks at each such call that this is zero, so no count can
        /// carry over from one simulated thread to another without being reported.
        static HELD: Cell<usize> = const { Cell::new(0) };
    }

    /// How many short locks the calling OS thread holds now.
    pub(crate) fn short_locks_held() -> usize {
        HELD.with(Cell::get)
    }

    /// `std::sync::Mutex` without poisoning: a panicking callback must not take the
    /// loop's bookkeeping down with it, and every section guarded here leaves the data
    /// consistent at each point where user code can run.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(
        #[allow(clippy::disallowed_types, reason = "this is the shim that wraps it")]
        std::sync::Mutex<T>,
    );

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            #[allow(clippy::disallowed_types, reason = "this is the shim that wraps it")]
            Mutex(std::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            let guard = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            HELD.with(|held| held.set(held.get() + 1));
            MutexGuard(guard)
        }
    }

    /// A held short lock, counted for [`short_locks_held`].
    #[derive(Debug)]
    pub(crate) struct MutexGuard<'a, T>(std::sync::MutexGuard<'a, T>);

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            &mut self.0
        }
    }

    impl<T> Drop for MutexGuard<'_, T> {
        fn drop(&mut self) {
            HELD.with(|held| held.set(held.get() - 1));
        }
    }
}
