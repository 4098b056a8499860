//! Errors and debug mode: the exception handler that reports what the loop cannot
//! raise to anyone, and the slow-callback warning.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::{EventLoop, Handle};
use crate::OsKernel;
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::Kernel;
use crate::loom::sync::atomic::Ordering;

/// A loop's custom exception handler: `(loop, context)`, as asyncio's.
pub type ExceptionHandler<K = OsKernel> =
    Arc<dyn Fn(&EventLoop<K>, &ExceptionContext) + Send + Sync + 'static>;

/// What [`EventLoop::call_exception_handler`] reports: asyncio's context dict.
#[derive(Clone, Debug, Default)]
pub struct ExceptionContext {
    /// The `message` key.
    pub message: String,
    /// The `exception` key.
    pub exception: Option<Error>,
    /// The `handle` key: the callback that failed, if any.
    pub handle: Option<Handle>,
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

impl<K: Kernel> EventLoop<K> {
    /// Sets (or with `None` resets to the default) the handler that
    /// [`EventLoop::call_exception_handler`] calls.
    pub fn set_exception_handler(&self, handler: Option<ExceptionHandler<K>>) {
        self.inner.state.lock().exception_handler = handler;
    }

    /// The custom exception handler, if one is set.
    pub fn get_exception_handler(&self) -> Option<ExceptionHandler<K>> {
        self.inner.state.lock().exception_handler.clone()
    }

    /// The default handler: an `error` event on the `asyncio` tracing target.
    pub fn default_exception_handler(&self, context: &ExceptionContext) {
        let exception = context
            .exception
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let handle = context
            .handle
            .as_ref()
            .map(|h| format!("{h:?}"))
            .unwrap_or_default();
        tracing::error!(
            target: "asyncio",
            exception = %exception,
            handle = %handle,
            "{}",
            context.message
        );
    }

    /// Reports an error the loop cannot raise to anyone: to the custom handler if one
    /// is set, else to [`EventLoop::default_exception_handler`]. A custom handler that
    /// panics is itself reported through the default handler
    /// (`Unhandled error in exception handler`).
    pub fn call_exception_handler(&self, context: &ExceptionContext) {
        let handler = self.get_exception_handler();
        let Some(handler) = handler else {
            self.default_exception_handler(context);
            return;
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| handler(self, context))) {
            self.default_exception_handler(&ExceptionContext {
                message: "Unhandled error in exception handler".to_string(),
                exception: Some(Error::new(ErrorKind::Panic, panic_message(&*payload))),
                handle: context.handle.clone(),
            });
        }
    }

    /// Whether debug mode is on.
    pub fn get_debug(&self) -> bool {
        self.inner.debug.load(Ordering::Relaxed)
    }

    /// Turns debug mode on or off. In debug mode each callback is timed, and one that
    /// runs for [`EventLoop::slow_callback_duration`] or longer is reported as a
    /// `warn` event on the `asyncio` target (`Executing <Handle …> took 0.123 seconds`).
    pub fn set_debug(&self, enabled: bool) {
        self.inner.debug.store(enabled, Ordering::Relaxed);
    }

    /// The debug-mode threshold for slow callbacks, in seconds (default 0.1).
    pub fn slow_callback_duration(&self) -> f64 {
        self.inner.state.lock().slow_callback_duration
    }

    /// Sets the debug-mode threshold for slow callbacks, in seconds.
    ///
    /// # Errors
    ///
    /// `ValueError` for a negative or NaN duration.
    pub fn set_slow_callback_duration(&self, seconds: f64) -> Result<()> {
        if seconds.is_nan() || seconds < 0.0 {
            return Err(Error::value(format!(
                "slow_callback_duration must be a non-negative number, not {seconds}"
            )));
        }
        self.inner.state.lock().slow_callback_duration = seconds;
        Ok(())
    }
}
