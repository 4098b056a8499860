//! The selector event loop, in the shape of asyncio's `BaseEventLoop` +
//! `BaseSelectorEventLoop` + `_UnixSelectorEventLoop`.
//!
//! One iteration ([`EventLoop::run_forever`] repeats it) does what asyncio's `_run_once`
//! does: poll with a timeout that is zero when callbacks are ready and otherwise runs to
//! the earliest timer; turn ready fds and due timers into ready callbacks; run exactly
//! the callbacks that were ready when the iteration started. Callbacks scheduled while
//! it runs wait for the next iteration.
//!
//! Signals reach the loop through the kernel's wakeup fd: the handler writes the signal
//! number to a pipe the loop polls, and the loop runs the Rust callback in its own
//! thread, outside signal context. Only the main thread may install handlers, as in
//! CPython. The `signals` module keeps the process's table of which loop holds which
//! signal, so that loops (and MultiLoop watchers) coming and going in any order leave
//! the kernel with what the OS had before them.
//!
//! A callback that panics is reported through [`EventLoop::call_exception_handler`] with
//! the message `Exception in callback …`; the loop keeps running.

mod handle;
mod running;
pub(crate) mod signals;
mod task;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll as TaskPoll, Wake, Waker};
use std::time::Duration;

pub use handle::Handle;
pub use running::{get_running_loop, try_get_running_loop};
pub use task::Task;

use crate::error::{Error, ErrorKind, Result};
use crate::kernel::{Errno, Event, Fd, Interest, Kernel, PollWaker, Poller, Signal, Token};
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::sync::BlockingMutex;
use crate::sys::unix::OsKernel;
use signals::LoopSignals;
use task::TaskCell;

/// The number past the largest signal, as Python's `signal.NSIG`.
const NSIG: i32 = Signal::MAX + 1;

/// Cancelled timers are pruned from the heap once there are this many and they are
/// more than half of it (asyncio's `_MIN_SCHEDULED_TIMER_HANDLES` rule).
const PRUNE_TIMERS_MIN: usize = 100;

type Callback = Box<dyn FnOnce() + Send + 'static>;
type RepeatingCallback = Arc<Repeating>;

/// A callback that runs each time its fd is ready or its signal arrives.
///
/// It runs with its slot emptied and the lock released: the callback makes kernel
/// calls, and a short lock is never held across one. Only the loop's thread runs
/// callbacks, one at a time, so the slot is always refilled before the next run.
pub(crate) struct Repeating(Mutex<Option<Box<dyn FnMut() + Send + 'static>>>);

impl Repeating {
    pub(super) fn new(callback: Box<dyn FnMut() + Send + 'static>) -> RepeatingCallback {
        Arc::new(Repeating(Mutex::new(Some(callback))))
    }

    fn run(&self) {
        let Some(callback) = self.0.lock().take() else {
            return;
        };
        // Put back however the callback ends: one that panicked stays registered, as
        // asyncio keeps a handler whose callback raised.
        struct Refill<'a>(&'a Repeating, Option<Box<dyn FnMut() + Send + 'static>>);
        impl Drop for Refill<'_> {
            fn drop(&mut self) {
                *self.0.0.lock() = self.1.take();
            }
        }
        let mut refill = Refill(self, Some(callback));
        if let Some(callback) = refill.1.as_mut() {
            callback();
        }
    }
}

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

/// What sits in the ready queue.
pub(crate) enum Job<K: Kernel> {
    Once(Callback),
    Repeat(RepeatingCallback),
    Task(Arc<TaskCell<K>>),
}

struct Ready<K: Kernel> {
    handle: Handle,
    job: Job<K>,
}

struct Timer<K: Kernel> {
    when: f64,
    sequence: u64,
    handle: Handle,
    callback: Callback,
    _kernel: std::marker::PhantomData<K>,
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

struct FdCallback {
    handle: Handle,
    callback: RepeatingCallback,
}

struct State<K: Kernel> {
    ready: VecDeque<Ready<K>>,
    timers: BinaryHeap<Timer<K>>,
    timer_sequence: u64,
    readers: BTreeMap<Fd, FdCallback>,
    writers: BTreeMap<Fd, FdCallback>,
    signals: LoopSignals,
    running_thread: Option<crate::kernel::ThreadId>,
    stopping: bool,
    closed: bool,
    exception_handler: Option<ExceptionHandler<K>>,
    /// In debug mode, callbacks that take at least this long (seconds) are reported.
    slow_callback_duration: f64,
}

pub(crate) struct Inner<K: Kernel> {
    kernel: K,
    id: u64,
    /// Taken out at `close`, which releases the poller's fds.
    poller: Mutex<Option<Arc<K::Poller>>>,
    waker: Mutex<Option<<K::Poller as Poller>::Waker>>,
    /// Set when a wake is on its way, so that many `call_soon_threadsafe` calls between
    /// two polls cost one write to the waker.
    wake_pending: AtomicBool,
    /// A kernel lock: the loop holds it across kernel calls (registering an fd,
    /// installing a signal disposition), which may switch threads under a simulator.
    state: BlockingMutex<K, State<K>>,
    debug: AtomicBool,
    cancelled_timers: Arc<AtomicUsize>,
}

/// Numbers loops for their `Debug` output; not state any test models.
static NEXT_LOOP_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A selector event loop over kernel `K`.
///
/// `EventLoop` is a handle: clones refer to the same loop, and equality is identity.
/// It is `Send + Sync`; the methods asyncio documents as thread-safe
/// ([`call_soon_threadsafe`](EventLoop::call_soon_threadsafe), and here also
/// [`stop`](EventLoop::stop)) work from any thread, and the others fail with
/// `RuntimeError` when called from another thread while the loop runs, as asyncio's
/// debug mode does.
pub struct EventLoop<K: Kernel = OsKernel> {
    inner: Arc<Inner<K>>,
}

impl<K: Kernel> Clone for EventLoop<K> {
    fn clone(&self) -> Self {
        EventLoop {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Kernel> PartialEq for EventLoop<K> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
impl<K: Kernel> Eq for EventLoop<K> {}

impl<K: Kernel> fmt::Debug for EventLoop<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<EventLoop #{} running={} closed={} debug={}>",
            self.inner.id,
            self.is_running(),
            self.is_closed(),
            self.get_debug()
        )
    }
}

/// A handle to a loop that does not keep it alive (crate-internal). What a registration
/// that outlives its caller holds (a child watcher's pending exit, a one-shot reader),
/// so that a loop dropped without `close` is freed rather than kept by its own queue.
pub(crate) struct WeakLoop<K: Kernel> {
    inner: std::sync::Weak<Inner<K>>,
    id: u64,
}

impl<K: Kernel> Clone for WeakLoop<K> {
    fn clone(&self) -> Self {
        WeakLoop {
            inner: self.inner.clone(),
            id: self.id,
        }
    }
}

impl<K: Kernel> WeakLoop<K> {
    /// The loop, if a handle to it still exists somewhere.
    pub(crate) fn upgrade(&self) -> Option<EventLoop<K>> {
        self.inner.upgrade().map(|inner| EventLoop { inner })
    }
}

impl<K: Kernel> fmt::Debug for WeakLoop<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.upgrade() {
            Some(event_loop) => fmt::Debug::fmt(&event_loop, f),
            None => write!(f, "<EventLoop #{} dropped>", self.id),
        }
    }
}

impl EventLoop<OsKernel> {
    /// A new loop on the real OS.
    pub fn new() -> Result<EventLoop<OsKernel>> {
        EventLoop::with_kernel(OsKernel)
    }
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

fn check_signal(signal: Signal) -> Result<()> {
    if !signal.is_valid() {
        return Err(Error::value(format!(
            "sig {} out of range(1, {NSIG})",
            signal.0
        )));
    }
    Ok(())
}

fn closed_error() -> Error {
    Error::runtime("Event loop is closed")
}

impl<K: Kernel> Inner<K> {
    fn kernel_thread_check(&self, state: &State<K>) -> Result<()> {
        match state.running_thread {
            Some(thread) if thread != self.kernel.current_thread() => Err(Error::runtime(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            )),
            _ => Ok(()),
        }
    }

    /// Appends to the ready queue from the loop's own thread (or while it is not running).
    pub(crate) fn push(&self, job: Job<K>, name: &'static str) -> Result<Handle> {
        let handle = Handle::new(name);
        let mut state = self.state.lock();
        if state.closed {
            return Err(closed_error());
        }
        self.kernel_thread_check(&state)?;
        state.ready.push_back(Ready {
            handle: handle.clone(),
            job,
        });
        Ok(handle)
    }

    /// Appends to the ready queue from any thread and wakes the poller.
    pub(crate) fn push_threadsafe(&self, job: Job<K>, name: &'static str) -> Result<Handle> {
        let handle = Handle::new(name);
        {
            let mut state = self.state.lock();
            if state.closed {
                return Err(closed_error());
            }
            state.ready.push_back(Ready {
                handle: handle.clone(),
                job,
            });
        }
        self.wake();
        Ok(handle)
    }

    fn wake(&self) {
        if self.wake_pending.swap(true, Ordering::SeqCst) {
            return;
        }
        // Cloned out first: waking is a kernel call, and the shim lock must not be
        // held across one.
        let waker = self.waker.lock().clone();
        if let Some(waker) = waker {
            // A failed wake (an eventfd at its limit) still leaves one pending.
            let _ = waker.wake();
        }
    }

    pub(crate) fn report_panic(self: &Arc<Self>, message: &str, panic: String) {
        let event_loop = EventLoop {
            inner: self.clone(),
        };
        event_loop.call_exception_handler(&ExceptionContext {
            message: message.to_string(),
            exception: Some(Error::new(ErrorKind::Panic, panic)),
            handle: None,
        });
    }

    /// Marks the loop closed and gives back everything it holds of the kernel: signal
    /// dispositions, the wakeup fd, the signal pipe, the poller. Returns `false` if it
    /// was closed already.
    fn release(&self) -> bool {
        let kernel = &self.kernel;
        let (signals, readers, writers, ready, timers) = {
            let mut state = self.state.lock();
            if state.closed {
                return false;
            }
            state.closed = true;
            self.cancelled_timers.store(0, Ordering::Relaxed);
            (
                state.signals.take(),
                std::mem::take(&mut state.readers),
                std::mem::take(&mut state.writers),
                std::mem::take(&mut state.ready),
                std::mem::take(&mut state.timers),
            )
        };
        // Dropped outside the lock: a callback's captures may hold this loop.
        drop((readers, writers, ready, timers));
        signals.release(kernel);
        // Dropping the poller and the waker closes their fds.
        self.poller.lock().take();
        self.waker.lock().take();
        true
    }
}

impl<K: Kernel> EventLoop<K> {
    /// A new loop over `kernel`: asyncio's `new_event_loop()` for that kernel. Not made
    /// current anywhere.
    pub fn with_kernel(kernel: K) -> Result<EventLoop<K>> {
        let poller = kernel.new_poller().map_err(Error::from)?;
        let waker = poller.waker();
        let state = BlockingMutex::new(
            &kernel,
            State {
                ready: VecDeque::new(),
                timers: BinaryHeap::new(),
                timer_sequence: 0,
                readers: BTreeMap::new(),
                writers: BTreeMap::new(),
                signals: LoopSignals::new(),
                running_thread: None,
                stopping: false,
                closed: false,
                exception_handler: None,
                slow_callback_duration: 0.1,
            },
        );
        Ok(EventLoop {
            inner: Arc::new(Inner {
                kernel,
                id: NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed),
                poller: Mutex::new(Some(Arc::new(poller))),
                waker: Mutex::new(Some(waker)),
                wake_pending: AtomicBool::new(false),
                state,
                debug: AtomicBool::new(false),
                cancelled_timers: Arc::new(AtomicUsize::new(0)),
            }),
        })
    }

    /// The kernel this loop runs on.
    pub fn kernel(&self) -> &K {
        &self.inner.kernel
    }

    /// A handle that does not keep the loop alive.
    pub(crate) fn downgrade(&self) -> WeakLoop<K> {
        WeakLoop {
            inner: Arc::downgrade(&self.inner),
            id: self.inner.id,
        }
    }

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

    fn prune_timers(&self, state: &mut State<K>) {
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

    // ----- time and scheduling -----------------------------------------------------

    /// The loop's clock in seconds (the kernel's monotonic clock).
    pub fn time(&self) -> f64 {
        self.inner.kernel.now().as_secs_f64()
    }

    fn clock_resolution(&self) -> f64 {
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

    // ----- fds ---------------------------------------------------------------------

    /// Calls `callback` whenever `fd` is readable (level-triggered), replacing any
    /// reader already set for it.
    ///
    /// # Errors
    ///
    /// `ValueError` for a negative fd; `RuntimeError` if the loop is closed or runs in
    /// another thread; the kernel's `OSError` (e.g. `EBADF`, `EPERM`) if the fd cannot
    /// be polled.
    pub fn add_reader<F>(&self, fd: Fd, callback: F) -> Result<Handle>
    where
        F: FnMut() + Send + 'static,
    {
        self.add_fd_callback(fd, true, Box::new(callback), std::any::type_name::<F>())
    }

    /// Calls `callback` whenever `fd` is writable; as [`EventLoop::add_reader`].
    ///
    /// # Errors
    ///
    /// As [`EventLoop::add_reader`].
    pub fn add_writer<F>(&self, fd: Fd, callback: F) -> Result<Handle>
    where
        F: FnMut() + Send + 'static,
    {
        self.add_fd_callback(fd, false, Box::new(callback), std::any::type_name::<F>())
    }

    /// Stops watching `fd` for reading. Returns whether a reader was set.
    ///
    /// # Errors
    ///
    /// `RuntimeError` if the loop runs in another thread. A closed loop answers `false`.
    pub fn remove_reader(&self, fd: Fd) -> Result<bool> {
        self.remove_fd_callback(fd, true)
    }

    /// Stops watching `fd` for writing. Returns whether a writer was set.
    ///
    /// # Errors
    ///
    /// As [`EventLoop::remove_reader`].
    pub fn remove_writer(&self, fd: Fd) -> Result<bool> {
        self.remove_fd_callback(fd, false)
    }

    fn interest_of(state: &State<K>, fd: Fd) -> Option<Interest> {
        let readable = state.readers.contains_key(&fd);
        let writable = state.writers.contains_key(&fd);
        (readable || writable).then_some(Interest { readable, writable })
    }

    fn add_fd_callback(
        &self,
        fd: Fd,
        reader: bool,
        callback: Box<dyn FnMut() + Send + 'static>,
        name: &'static str,
    ) -> Result<Handle> {
        if fd.0 < 0 {
            return Err(Error::value(format!("Invalid file descriptor: {}", fd.0)));
        }
        let poller = self.inner.poller.lock().clone().ok_or_else(closed_error)?;
        let handle = Handle::new(name);
        let mut state = self.inner.state.lock();
        if state.closed {
            return Err(closed_error());
        }
        self.inner.kernel_thread_check(&state)?;
        if state.signals.read_fd() == Some(fd) {
            return Err(Error::value(format!(
                "File descriptor {} is used by the loop itself",
                fd.0
            )));
        }
        let before = Self::interest_of(&state, fd);
        let after = Interest {
            readable: reader || before.is_some_and(|i| i.readable),
            writable: !reader || before.is_some_and(|i| i.writable),
        };
        let token = Token(fd.0 as usize);
        if before.is_none() {
            poller.register(fd, token, after).map_err(Error::from)?;
        } else if before != Some(after) {
            poller.reregister(fd, token, after).map_err(Error::from)?;
        }
        let entry = FdCallback {
            handle: handle.clone(),
            callback: Repeating::new(callback),
        };
        let table = if reader {
            &mut state.readers
        } else {
            &mut state.writers
        };
        if let Some(old) = table.insert(fd, entry) {
            old.handle.cancel();
        }
        Ok(handle)
    }

    fn remove_fd_callback(&self, fd: Fd, reader: bool) -> Result<bool> {
        let Some(poller) = self.inner.poller.lock().clone() else {
            return Ok(false);
        };
        let removed = {
            let mut state = self.inner.state.lock();
            self.inner.kernel_thread_check(&state)?;
            let table = if reader {
                &mut state.readers
            } else {
                &mut state.writers
            };
            let Some(removed) = table.remove(&fd) else {
                return Ok(false);
            };
            removed.handle.cancel();
            let token = Token(fd.0 as usize);
            // The fd may have been closed already, in which case the kernel forgot it;
            // the loop's own bookkeeping is what matters.
            let _ = match Self::interest_of(&state, fd) {
                None => poller.deregister(fd),
                Some(rest) => poller.reregister(fd, token, rest),
            };
            removed
        };
        drop(removed);
        Ok(true)
    }

    // ----- errors and debug --------------------------------------------------------

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

impl<K: Kernel> Drop for Inner<K> {
    fn drop(&mut self) {
        // A loop dropped without `close` still gives back its signal dispositions and
        // fds: the last handle is gone, so nothing can run it any more.
        self.release();
    }
}
