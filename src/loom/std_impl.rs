//! `std` behind the shim's names.

pub(crate) mod sync {
    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

        pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}
