//! Waiting on the loop's timers: `asyncio.sleep` and `asyncio.wait_for`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

use super::{EventLoop, Handle, WeakLoop, closed_error};
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::Kernel;
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicBool, Ordering};

/// The waker a pending sleep's timer wakes. The timer callback owns it and the sleep
/// holds it weakly: the sleep sits inside the task that the waker wakes, and a strong
/// reference both ways would keep a task sleeping on a closed loop alive for ever.
struct Alarm {
    waker: Mutex<Option<Waker>>,
}

enum SleepState {
    /// Not polled yet: the timer is set at the first poll, as asyncio's coroutine
    /// starts when awaited.
    Start,
    /// A zero or negative delay yielded once (asyncio's `sleep(0)`).
    Yielded,
    Armed {
        handle: Handle,
        fired: Arc<AtomicBool>,
        alarm: Weak<Alarm>,
    },
    Done,
}

/// The future of [`EventLoop::sleep`]: `Ok(())` once the time has passed.
///
/// ```
/// let event_loop = loopwatch::EventLoop::new()?;
/// let sleep = event_loop.sleep(0.0);
/// assert_eq!(format!("{sleep:?}"), "<Sleep 0s not started>");
/// event_loop.try_run_until_complete(sleep)?;
/// # Ok::<(), loopwatch::Error>(())
/// ```
pub struct Sleep<K: Kernel> {
    event_loop: WeakLoop<K>,
    delay: f64,
    state: SleepState,
}

impl<K: Kernel> EventLoop<K> {
    /// Waits `seconds` on this loop's clock (asyncio's `sleep`). Zero or a negative
    /// delay yields to the loop once: the rest of the iteration's callbacks run first.
    ///
    /// The timer is set when the future is first polled and cancelled if it is
    /// dropped before it fires. On the simulator the time is virtual and passes at
    /// once when nothing else is ready.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    ///
    /// let event_loop = loopwatch::EventLoop::new()?;
    /// let order = Arc::new(Mutex::new(Vec::new()));
    /// let (lp, log) = (event_loop.clone(), order.clone());
    /// event_loop.call_soon(move || log.lock().unwrap().push("callback"))?;
    /// let log = order.clone();
    /// event_loop.try_run_until_complete(async move {
    ///     lp.sleep(0.01).await?;
    ///     log.lock().unwrap().push("after the sleep");
    ///     Ok(())
    /// })?;
    /// assert_eq!(*order.lock().unwrap(), ["callback", "after the sleep"]);
    /// event_loop.close()?;
    /// # Ok::<(), loopwatch::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The future gives `ValueError` for a NaN delay, `RuntimeError` if the loop is
    /// closed (or dropped) before the timer fires, or if it runs in another thread
    /// than the one polling.
    pub fn sleep(&self, seconds: f64) -> Sleep<K> {
        Sleep {
            event_loop: self.downgrade(),
            delay: seconds,
            state: SleepState::Start,
        }
    }

    /// Waits for `future` for at most `timeout` seconds (asyncio's `wait_for`):
    /// `Ok(output)` if it finishes first, `Err` of kind
    /// [`TimeoutError`](ErrorKind::TimeoutError) otherwise, after dropping it. Dropping
    /// a plain future is how Rust cancels it; a [`Task`](super::Task) keeps running
    /// when dropped, so pass `&mut task` and call [`Task::cancel`](super::Task::cancel)
    /// on a timeout to stop it. `f64::INFINITY` waits as long as it takes; zero or a
    /// negative timeout polls `future` once and gives its output if it is ready then
    /// (CPython gives the result of a future already done, and never starts a
    /// coroutine: polling once is how Rust asks whether a future is done).
    ///
    /// The output of a future that gives a `Result` is nested: the outer error is the
    /// timeout, the inner one the future's own.
    ///
    /// ```
    /// use loopwatch::ErrorKind;
    ///
    /// let event_loop = loopwatch::EventLoop::new()?;
    /// let lp = event_loop.clone();
    /// let (slow, fast) = event_loop.try_run_until_complete(async move {
    ///     let slow = lp.wait_for(lp.sleep(60.0), 0.01).await;
    ///     let fast = lp.wait_for(async { 42 }, 60.0).await;
    ///     Ok((slow, fast))
    /// })?;
    /// assert_eq!(slow.unwrap_err().kind(), ErrorKind::TimeoutError);
    /// assert_eq!(fast?, 42);
    /// event_loop.close()?;
    /// # Ok::<(), loopwatch::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The future gives `TimeoutError` when the time is up, `ValueError` for a NaN
    /// timeout, and otherwise as [`EventLoop::sleep`].
    pub fn wait_for<F: Future>(&self, future: F, timeout: f64) -> WaitFor<F, K> {
        WaitFor {
            future: Some(Box::pin(future)),
            event_loop: self.downgrade(),
            timeout,
            timer: None,
            started: false,
        }
    }
}

impl<K: Kernel> Sleep<K> {
    fn arm(&mut self, cx: &mut Context<'_>) -> Result<()> {
        if self.delay.is_nan() {
            return Err(Error::value("delay must not be NaN"));
        }
        let event_loop = self.event_loop.upgrade().ok_or_else(closed_error)?;
        let fired = Arc::new(AtomicBool::new(false));
        let alarm = Arc::new(Alarm {
            waker: Mutex::new(Some(cx.waker().clone())),
        });
        let (ring, flag) = (alarm.clone(), fired.clone());
        let handle = event_loop.call_later(self.delay, move || {
            flag.store(true, Ordering::SeqCst);
            let waker = ring.waker.lock().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        })?;
        self.state = SleepState::Armed {
            handle,
            fired,
            alarm: Arc::downgrade(&alarm),
        };
        Ok(())
    }
}

impl<K: Kernel> Future for Sleep<K> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        match &this.state {
            SleepState::Start if this.delay <= 0.0 => {
                this.state = SleepState::Yielded;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            SleepState::Start => match this.arm(cx) {
                Ok(()) => Poll::Pending,
                Err(error) => {
                    this.state = SleepState::Done;
                    Poll::Ready(Err(error))
                }
            },
            SleepState::Yielded | SleepState::Done => {
                this.state = SleepState::Done;
                Poll::Ready(Ok(()))
            }
            SleepState::Armed { fired, alarm, .. } => {
                if fired.load(Ordering::SeqCst) {
                    this.state = SleepState::Done;
                    return Poll::Ready(Ok(()));
                }
                let Some(alarm) = alarm.upgrade() else {
                    // The timer was dropped unfired: its loop closed.
                    this.state = SleepState::Done;
                    return Poll::Ready(Err(closed_error()));
                };
                *alarm.waker.lock() = Some(cx.waker().clone());
                // Checked again: a timer firing in another thread between the first
                // check and the store found no waker to wake.
                if fired.load(Ordering::SeqCst) {
                    this.state = SleepState::Done;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
        }
    }
}

impl<K: Kernel> Drop for Sleep<K> {
    fn drop(&mut self) {
        if let SleepState::Armed { handle, .. } = &self.state {
            handle.cancel();
        }
    }
}

impl<K: Kernel> fmt::Debug for Sleep<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            SleepState::Start => "not started",
            SleepState::Yielded | SleepState::Armed { .. } => "pending",
            SleepState::Done => "done",
        };
        write!(f, "<Sleep {}s {state}>", self.delay)
    }
}

/// The future of [`EventLoop::wait_for`].
///
/// ```
/// let event_loop = loopwatch::EventLoop::new()?;
/// let (future, setter) = event_loop.create_future::<u8>();
/// setter.set_result(3)?;
/// let waiting = event_loop.wait_for(future, 0.0);
/// // Done already, so even a zero timeout gives the result. The outer error would be
/// // the timeout, the inner one the future's.
/// assert_eq!(event_loop.try_run_until_complete(waiting)??, 3);
/// # Ok::<(), loopwatch::Error>(())
/// ```
pub struct WaitFor<F: Future, K: Kernel> {
    /// `None` once it has finished, with output or by timeout.
    future: Option<Pin<Box<F>>>,
    event_loop: WeakLoop<K>,
    timeout: f64,
    timer: Option<Sleep<K>>,
    started: bool,
}

impl<F: Future, K: Kernel> Future for WaitFor<F, K> {
    type Output = Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<F::Output>> {
        let this = self.get_mut();
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(Err(Error::runtime("wait_for polled after it finished")));
        };
        let first = !std::mem::replace(&mut this.started, true);
        if first && this.timeout.is_nan() {
            this.future = None;
            return Poll::Ready(Err(Error::value("timeout must not be NaN")));
        }
        // The future first: one that is done when the time is up still counts, as in
        // asyncio.
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            this.future = None;
            this.timer = None;
            return Poll::Ready(Ok(output));
        }
        if this.timeout <= 0.0 {
            this.future = None;
            return Poll::Ready(Err(Error::new(ErrorKind::TimeoutError, "")));
        }
        if first && this.timeout.is_finite() {
            this.timer = Some(Sleep {
                event_loop: this.event_loop.clone(),
                delay: this.timeout,
                state: SleepState::Start,
            });
        }
        let Some(timer) = this.timer.as_mut() else {
            return Poll::Pending;
        };
        match Pin::new(timer).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(fired) => {
                // Dropping the future cancels it.
                this.future = None;
                this.timer = None;
                Poll::Ready(Err(match fired {
                    Ok(()) => Error::new(ErrorKind::TimeoutError, ""),
                    Err(error) => error,
                }))
            }
        }
    }
}

impl<F: Future, K: Kernel> fmt::Debug for WaitFor<F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.future.is_some() {
            "pending"
        } else {
            "done"
        };
        write!(f, "<WaitFor timeout={} {state}>", self.timeout)
    }
}
