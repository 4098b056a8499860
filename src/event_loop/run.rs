//! Running and stopping: the iteration asyncio's `_run_once` does, and the two run
//! methods built on it.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll as TaskPoll, Wake, Waker};
use std::time::Duration;

use super::running::{self, try_get_running_loop};
use super::{
    EventLoop, ExceptionContext, Inner, Job, NOT_RUNNING, Ready, closed_error, panic_message,
};
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::{Errno, Event, Fd, Kernel, Poller};
use crate::loom::sync::atomic::{AtomicBool, Ordering};

impl<K: Kernel> EventLoop<K> {
    // ----- running and stopping -----------------------------------------------------

    /// Runs until [`EventLoop::stop`] is called.
    ///
    /// # Errors
    ///
    /// `RuntimeError` if the loop is closed (`Event loop is closed`), already running
    /// (`This event loop is already running`), or another loop runs in this thread
    /// (`Cannot run the event loop while another loop is running`).
    pub fn run_forever(&self) -> Result<()> {
        self.run(|| false, || false)
    }

    /// Runs until `future` completes and returns its output.
    ///
    /// The future is polled in this thread, so it need not be `Send`. A panic in it
    /// propagates out of this call after the loop has stopped running.
    ///
    /// # Errors
    ///
    /// As [`EventLoop::run_forever`], and `RuntimeError`
    /// (`Event loop stopped before Future completed.`) if the loop is stopped first.
    pub fn run_until_complete<F: Future>(&self, future: F) -> Result<F::Output> {
        let mut future = pin!(future);
        let wake = Arc::new(MainWake {
            woken: AtomicBool::new(true),
            inner: Arc::downgrade(&self.inner),
        });
        let waker = Waker::from(wake.clone());
        let mut output = None;
        let woken = wake.clone();
        let pending = move || woken.woken.load(Ordering::Acquire);
        // As asyncio's task step, the future is first polled in the first iteration,
        // after the callbacks that were already scheduled.
        self.run(pending, || {
            if !wake.woken.swap(false, Ordering::AcqRel) {
                return false;
            }
            let mut cx = Context::from_waker(&waker);
            match future.as_mut().poll(&mut cx) {
                TaskPoll::Ready(value) => {
                    output = Some(value);
                    true
                }
                TaskPoll::Pending => false,
            }
        })?;
        output.ok_or_else(|| Error::runtime("Event loop stopped before Future completed."))
    }

    /// Runs until `future` completes and returns its result, for a future whose output
    /// is a `Result`: [`run_until_complete`](EventLoop::run_until_complete) with its
    /// two layers of errors (the loop's and the future's) flattened into one, so that a
    /// call site needs one `?` and the async block needs no type annotation for its
    /// error.
    ///
    /// ```
    /// let event_loop = loopwatch::EventLoop::new()?;
    /// let task = event_loop.create_task(async { 6 * 7 })?;
    /// assert_eq!(event_loop.try_run_until_complete(task)?, 42);
    /// let lp = event_loop.clone();
    /// let answer = event_loop.try_run_until_complete(async move {
    ///     lp.sleep(0.0).await?;
    ///     Ok(6 * 7)
    /// })?;
    /// assert_eq!(answer, 42);
    /// event_loop.close()?;
    /// # Ok::<(), loopwatch::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`EventLoop::run_until_complete`], and the future's own error.
    pub fn try_run_until_complete<F, T>(&self, future: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        self.run_until_complete(future)?
    }

    /// Cancels every task of the loop that has not finished and runs the loop until
    /// they have (`asyncio.run`'s `_cancel_all_tasks`). A cancelled task ends at its
    /// next step without being polled, so one iteration is enough; a task cannot
    /// refuse cancellation as a Python coroutine can, so none ends with an exception
    /// that would need reporting.
    pub(crate) fn cancel_all_tasks(&self) -> Result<()> {
        let tasks = self.inner.live_tasks();
        if tasks.is_empty() {
            return Ok(());
        }
        for task in &tasks {
            task.cancel();
        }
        self.run_until_complete(std::future::poll_fn(|cx| {
            if tasks.iter().all(|task| task.finished()) {
                TaskPoll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                TaskPoll::Pending
            }
        }))
    }

    /// The body of both run methods: iterate until stopped or `done` says so. `done`
    /// runs after each iteration; while `pending` says there is work for it, polls do
    /// not block.
    fn run(&self, pending: impl Fn() -> bool, mut done: impl FnMut() -> bool) -> Result<()> {
        let kernel = &self.inner.kernel;
        let thread = kernel.current_thread();
        {
            let mut state = self.inner.state.lock();
            if state.closed {
                return Err(closed_error());
            }
            if state.running_thread.is_some() {
                return Err(Error::runtime("This event loop is already running"));
            }
            if try_get_running_loop(kernel).is_some() {
                return Err(Error::runtime(
                    "Cannot run the event loop while another loop is running",
                ));
            }
            state.running_thread = Some(thread);
            self.inner.running_on.store(thread.0, Ordering::Relaxed);
        }
        running::set_running_loop(kernel, Some(self.clone()));
        // Undo the running state however the loop ends, a panic included.
        struct Running<'a, K: Kernel>(&'a EventLoop<K>);
        impl<K: Kernel> Drop for Running<'_, K> {
            fn drop(&mut self) {
                let kernel = &self.0.inner.kernel;
                {
                    let mut state = self.0.inner.state.lock();
                    state.stopping = false;
                    state.running_thread = None;
                    self.0
                        .inner
                        .running_on
                        .store(NOT_RUNNING, Ordering::Relaxed);
                }
                running::set_running_loop(kernel, None);
            }
        }
        let _running = Running(self);
        let mut events = Vec::new();
        loop {
            self.run_once(&mut events, &pending)?;
            if done() {
                return Ok(());
            }
            if self.inner.state.lock().stopping {
                return Ok(());
            }
        }
    }

    /// One iteration: poll, collect ready fds and due timers, run what is ready.
    fn run_once(&self, events: &mut Vec<Event>, pending: &dyn Fn() -> bool) -> Result<()> {
        let inner = &*self.inner;
        inner.wake_pending.store(false, Ordering::SeqCst);
        let poller = inner.poller.lock().clone().ok_or_else(closed_error)?;
        let timeout = {
            let mut state = inner.state.lock();
            self.prune_timers(&mut state);
            if !state.ready.is_empty() || state.stopping || pending() {
                Some(Duration::ZERO)
            } else if let Some(first) = state.timers.peek() {
                let delay = first.when - self.time();
                Some(if delay > 0.0 {
                    Duration::try_from_secs_f64(delay).unwrap_or(Duration::MAX)
                } else {
                    Duration::ZERO
                })
            } else {
                None
            }
        };
        match poller.poll(events, timeout) {
            Ok(()) => {}
            // A signal arrived: its byte is in the signal pipe for the next poll.
            Err(Errno::EINTR) => events.clear(),
            Err(errno) => return Err(Error::from(errno)),
        }
        drop(poller);
        self.process_events(events);

        // Timers due by now join the ready queue.
        let end_time = self.time() + self.clock_resolution();
        {
            let mut state = inner.state.lock();
            while state.timers.peek().is_some_and(|t| t.when <= end_time) {
                let timer = state.timers.pop().expect("peeked");
                if timer.handle.cancelled() {
                    inner.cancelled_timers.fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
                state.ready.push_back(Ready {
                    handle: timer.handle,
                    job: Job::Once(timer.callback),
                });
            }
        }

        // Run only what was ready at this point; later arrivals wait an iteration.
        let count = inner.state.lock().ready.len();
        for _ in 0..count {
            let Some(ready) = inner.state.lock().ready.pop_front() else {
                break;
            };
            if ready.handle.cancelled() {
                continue;
            }
            self.run_job(ready);
        }
        Ok(())
    }

    fn run_job(&self, ready: Ready<K>) {
        let Ready { handle, job } = ready;
        let started = self.get_debug().then(|| self.time());
        let outcome = match job {
            Job::Once(callback) => catch_unwind(AssertUnwindSafe(callback)),
            Job::Repeat(callback) => catch_unwind(AssertUnwindSafe(|| callback.run())),
            Job::Task(cell) => {
                // Tasks report their own panics with the task's name.
                cell.step();
                Ok(())
            }
        };
        if let Some(started) = started {
            let took = self.time() - started;
            if took >= self.slow_callback_duration() {
                tracing::warn!(target: "asyncio", "Executing {handle:?} took {took:.3} seconds");
            }
        }
        if let Err(payload) = outcome {
            self.call_exception_handler(&ExceptionContext {
                message: format!("Exception in callback {}", handle.callback_name()),
                exception: Some(Error::new(ErrorKind::Panic, panic_message(&*payload))),
                handle: Some(handle),
            });
        }
    }

    fn process_events(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let mut signal_fd = None;
        {
            let mut state = self.inner.state.lock();
            let signal_read = state.signals.read_fd();
            for event in events {
                let fd = Fd(event.token.0 as i32);
                if Some(fd) == signal_read {
                    signal_fd = Some(fd);
                    continue;
                }
                if event.readable {
                    if let Some(reader) = state.readers.get(&fd) {
                        let ready = Ready {
                            handle: reader.handle.clone(),
                            job: Job::Repeat(reader.callback.clone()),
                        };
                        state.ready.push_back(ready);
                    }
                }
                if event.writable {
                    if let Some(writer) = state.writers.get(&fd) {
                        let ready = Ready {
                            handle: writer.handle.clone(),
                            job: Job::Repeat(writer.callback.clone()),
                        };
                        state.ready.push_back(ready);
                    }
                }
            }
        }
        if let Some(fd) = signal_fd {
            self.read_signals(fd);
        }
    }

    /// Stops the loop after the current iteration; before the loop runs, makes the next
    /// run do one iteration. Safe from any thread.
    pub fn stop(&self) {
        self.inner.state.lock().stopping = true;
        self.inner.wake();
    }

    /// Whether the loop is running.
    pub fn is_running(&self) -> bool {
        self.inner.state.lock().running_thread.is_some()
    }

    /// Whether [`EventLoop::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.state.lock().closed
    }

    /// Closes the loop: drops pending callbacks, readers, writers and timers, removes its
    /// signal handlers (each signal goes to another loop that handles it, or back to
    /// what the OS had before loopwatch; see [`EventLoop::remove_signal_handler`]) and
    /// releases its fds. Closing twice does nothing.
    ///
    /// # Errors
    ///
    /// `RuntimeError` (`Cannot close a running event loop`) while it runs.
    pub fn close(&self) -> Result<()> {
        if self.inner.state.lock().running_thread.is_some() {
            return Err(Error::runtime("Cannot close a running event loop"));
        }
        self.inner.release();
        Ok(())
    }
}

/// The waker of the future given to `run_until_complete`: it marks the future for a
/// poll after the current iteration and wakes the poller.
struct MainWake<K: Kernel> {
    woken: AtomicBool,
    inner: std::sync::Weak<Inner<K>>,
}

impl<K: Kernel> Wake for MainWake<K> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(inner) = self.inner.upgrade() {
            inner.wake();
        }
    }
}
