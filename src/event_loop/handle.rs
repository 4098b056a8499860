//! Handles of scheduled callbacks and what the ready queue holds.

use std::fmt;
use std::sync::Arc;

use crate::loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A scheduled callback (asyncio's `Handle` and `TimerHandle` in one): it can be
/// cancelled until it runs. Timer handles also know when they are due.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    cancelled: AtomicBool,
    when: Option<f64>,
    name: &'static str,
    /// The loop's count of cancelled timers, so it knows when pruning pays.
    cancelled_timers: Option<Arc<AtomicUsize>>,
}

impl Handle {
    pub(crate) fn new(name: &'static str) -> Handle {
        Handle {
            inner: Arc::new(HandleInner {
                cancelled: AtomicBool::new(false),
                when: None,
                name,
                cancelled_timers: None,
            }),
        }
    }

    pub(crate) fn timer(
        name: &'static str,
        when: f64,
        cancelled_timers: Arc<AtomicUsize>,
    ) -> Handle {
        Handle {
            inner: Arc::new(HandleInner {
                cancelled: AtomicBool::new(false),
                when: Some(when),
                name,
                cancelled_timers: Some(cancelled_timers),
            }),
        }
    }

    /// Cancels the callback: it will not run (again). Cancelling twice does nothing.
    pub fn cancel(&self) {
        if !self.inner.cancelled.swap(true, Ordering::AcqRel) {
            if let Some(count) = &self.inner.cancelled_timers {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether [`Handle::cancel`] was called.
    pub fn cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// For a timer handle (`call_later`, `call_at`), the loop time it is due.
    pub fn when(&self) -> Option<f64> {
        self.inner.when
    }

    /// The callback's type name, used in "Exception in callback …" reports.
    pub fn callback_name(&self) -> &'static str {
        self.inner.name
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.inner.when.is_some() {
            "TimerHandle"
        } else {
            "Handle"
        };
        write!(f, "<{kind} {}", self.inner.name)?;
        if let Some(when) = self.inner.when {
            write!(f, " when={when}")?;
        }
        if self.cancelled() {
            write!(f, " cancelled")?;
        }
        write!(f, ">")
    }
}
