//! asyncio's `Future` (`loop.create_future()`), split in two as Rust likes it: the
//! [`LoopFuture`] that is awaited and the [`FutureSetter`] that settles it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::EventLoop;
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::Kernel;
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};

/// Where a future stands (asyncio's `_state`, with "already awaited" added).
enum State<T> {
    Pending,
    Finished(Result<T>),
    Cancelled(Error),
    /// Awaited to the end: the output was handed out.
    Taken {
        cancelled: bool,
    },
}

struct Slot<T> {
    state: State<T>,
    waiter: Option<Waker>,
}

struct Shared<T> {
    slot: Mutex<Slot<T>>,
    /// Live [`FutureSetter`]s: when the last one goes with the future still pending,
    /// nothing can settle it any more, and it is cancelled rather than left hanging.
    setters: AtomicUsize,
}

impl<T> Shared<T> {
    /// Settles a pending future; `InvalidStateError('invalid state')` otherwise, as
    /// CPython's `set_result`, `set_exception` and a second `cancel` say.
    fn settle(&self, state: State<T>) -> Result<()> {
        let waiter = {
            let mut slot = self.slot.lock();
            if !matches!(slot.state, State::Pending) {
                return Err(Error::new(ErrorKind::InvalidStateError, "invalid state"));
            }
            slot.state = state;
            slot.waiter.take()
        };
        // Woken outside the lock: waking schedules the awaiting task on its loop.
        if let Some(waiter) = waiter {
            waiter.wake();
        }
        Ok(())
    }

    fn cancel(&self) -> bool {
        self.settle(State::Cancelled(Error::cancelled())).is_ok()
    }

    fn done(&self) -> bool {
        !matches!(self.slot.lock().state, State::Pending)
    }

    fn cancelled(&self) -> bool {
        matches!(
            self.slot.lock().state,
            State::Cancelled(_) | State::Taken { cancelled: true }
        )
    }

    fn describe(&self) -> &'static str {
        match self.slot.lock().state {
            State::Pending => "pending",
            State::Finished(_) | State::Taken { cancelled: false } => "finished",
            State::Cancelled(_) | State::Taken { cancelled: true } => "cancelled",
        }
    }
}

/// The awaited half of a future made by [`EventLoop::create_future`].
///
/// Awaiting it gives `Ok(value)` once [`FutureSetter::set_result`] ran, the error given
/// to [`FutureSetter::set_exception`], or `CancelledError` once either half was
/// cancelled, or once every setter was dropped with the future still pending (nothing
/// could settle it any more).
///
/// ```
/// let event_loop = loopwatch::EventLoop::new()?;
/// let (future, setter) = event_loop.create_future::<&str>();
/// assert!(!future.done() && !future.cancelled());
/// setter.set_result("ready")?;
/// assert!(future.done() && !future.cancelled());
/// assert_eq!(event_loop.try_run_until_complete(future)?, "ready");
///
/// let (future, setter) = event_loop.create_future::<&str>();
/// drop(setter);
/// assert!(future.cancelled(), "nothing can set it any more");
/// # Ok::<(), loopwatch::Error>(())
/// ```
pub struct LoopFuture<T> {
    shared: Arc<Shared<T>>,
}

/// The settling half of a future made by [`EventLoop::create_future`]. Clones settle
/// the same future; it may be settled from any thread (waking the awaiting task goes
/// through its loop's thread-safe queue).
///
/// ```
/// let event_loop = loopwatch::EventLoop::new()?;
/// let (future, setter) = event_loop.create_future::<u8>();
/// let other = setter.clone();
/// assert!(other.cancel());
/// assert!(setter.done() && setter.cancelled());
/// let error = event_loop.try_run_until_complete(future).unwrap_err();
/// assert_eq!(error.kind(), loopwatch::ErrorKind::CancelledError);
/// # Ok::<(), loopwatch::Error>(())
/// ```
pub struct FutureSetter<T> {
    shared: Arc<Shared<T>>,
}

impl<K: Kernel> EventLoop<K> {
    /// A new pending future (asyncio's `loop.create_future()`): the half to await and
    /// the half that sets its result.
    ///
    /// ```
    /// use loopwatch::ErrorKind;
    ///
    /// let event_loop = loopwatch::EventLoop::new()?;
    /// let (future, setter) = event_loop.create_future::<u32>();
    /// event_loop.call_soon(move || {
    ///     setter.set_result(7).unwrap();
    ///     // A future is settled once.
    ///     let again = setter.set_result(8).unwrap_err();
    ///     assert_eq!(again.kind(), ErrorKind::InvalidStateError);
    /// })?;
    /// assert_eq!(event_loop.try_run_until_complete(future)?, 7);
    /// event_loop.close()?;
    /// # Ok::<(), loopwatch::Error>(())
    /// ```
    pub fn create_future<T>(&self) -> (LoopFuture<T>, FutureSetter<T>) {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                state: State::Pending,
                waiter: None,
            }),
            setters: AtomicUsize::new(1),
        });
        (
            LoopFuture {
                shared: shared.clone(),
            },
            FutureSetter { shared },
        )
    }
}

impl<T> LoopFuture<T> {
    /// Whether the future is settled (a result, an error, or cancelled).
    pub fn done(&self) -> bool {
        self.shared.done()
    }

    /// Whether the future was cancelled.
    pub fn cancelled(&self) -> bool {
        self.shared.cancelled()
    }

    /// Cancels the future: awaiting it gives `CancelledError`, and setting it fails.
    /// Returns `false` if it was already settled.
    ///
    /// ```
    /// let event_loop = loopwatch::EventLoop::new()?;
    /// let (future, setter) = event_loop.create_future::<()>();
    /// assert!(future.cancel());
    /// assert!(!future.cancel());
    /// assert!(setter.cancelled() && setter.set_result(()).is_err());
    /// let error = event_loop.try_run_until_complete(future).unwrap_err();
    /// assert_eq!(error.kind(), loopwatch::ErrorKind::CancelledError);
    /// # Ok::<(), loopwatch::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        self.shared.cancel()
    }
}

impl<T> FutureSetter<T> {
    /// Settles the future with `value`.
    ///
    /// ```
    /// let event_loop = loopwatch::EventLoop::new()?;
    /// let (future, setter) = event_loop.create_future::<Vec<u8>>();
    /// setter.set_result(b"out".to_vec())?;
    /// let again = setter.set_result(Vec::new()).unwrap_err();
    /// assert_eq!(again.to_string(), "InvalidStateError: invalid state");
    /// assert_eq!(event_loop.try_run_until_complete(future)?, b"out");
    /// # Ok::<(), loopwatch::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidStateError('invalid state')` if it is already settled or cancelled.
    pub fn set_result(&self, value: T) -> Result<()> {
        self.shared.settle(State::Finished(Ok(value)))
    }

    /// Settles the future with `error`, which awaiting it gives (asyncio's
    /// `set_exception`). The future is done, not cancelled, whatever the error's kind.
    ///
    /// ```
    /// use loopwatch::{Error, ErrorKind};
    ///
    /// let event_loop = loopwatch::EventLoop::new()?;
    /// let (future, setter) = event_loop.create_future::<u8>();
    /// setter.set_exception(Error::value("bad"))?;
    /// assert!(future.done() && !future.cancelled());
    /// let error = event_loop.try_run_until_complete(future).unwrap_err();
    /// assert_eq!((error.kind(), error.message()), (ErrorKind::ValueError, "bad"));
    /// # Ok::<(), loopwatch::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidStateError('invalid state')` if it is already settled or cancelled.
    pub fn set_exception(&self, error: Error) -> Result<()> {
        self.shared.settle(State::Finished(Err(error)))
    }

    /// Cancels the future, as [`LoopFuture::cancel`] does.
    pub fn cancel(&self) -> bool {
        self.shared.cancel()
    }

    /// Whether the future is settled.
    pub fn done(&self) -> bool {
        self.shared.done()
    }

    /// Whether the future was cancelled.
    pub fn cancelled(&self) -> bool {
        self.shared.cancelled()
    }
}

impl<T> Clone for FutureSetter<T> {
    fn clone(&self) -> Self {
        self.shared.setters.fetch_add(1, Ordering::Relaxed);
        FutureSetter {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for FutureSetter<T> {
    fn drop(&mut self) {
        if self.shared.setters.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last setter: a pending future would wait forever.
            let _ = self.shared.settle(State::Cancelled(Error::new(
                ErrorKind::CancelledError,
                "the future's setters were all dropped before it was set",
            )));
        }
    }
}

impl<T> Future for LoopFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut slot = self.shared.slot.lock();
        match std::mem::replace(&mut slot.state, State::Taken { cancelled: false }) {
            State::Pending => {
                slot.state = State::Pending;
                slot.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
            State::Finished(result) => Poll::Ready(result),
            State::Cancelled(error) => {
                slot.state = State::Taken { cancelled: true };
                Poll::Ready(Err(error))
            }
            State::Taken { cancelled } => {
                slot.state = State::Taken { cancelled };
                Poll::Ready(Err(Error::runtime("Future result was already taken")))
            }
        }
    }
}

impl<T> fmt::Debug for LoopFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Future {}>", self.shared.describe())
    }
}

impl<T> fmt::Debug for FutureSetter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<FutureSetter of Future {}>", self.shared.describe())
    }
}
