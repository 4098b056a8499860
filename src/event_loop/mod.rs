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
//!
//! The files follow that outline: `run` (the iteration and the run methods), `timers`
//! (the clock and scheduling), `fds` (readers and writers), `signals` (signal handlers
//! and the process's signal table), `exceptions` (the exception handler and debug mode),
//! `running` (which loop runs in which thread) and `task`. This file holds the loop's
//! state and what every part shares.

mod exceptions;
mod fds;
mod future;
mod handle;
mod run;
mod running;
pub(crate) mod signals;
mod sleep;
mod task;
#[cfg(test)]
mod tests;
mod timers;

use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
use std::sync::Arc;

pub(crate) use exceptions::panic_message;
pub use exceptions::{ExceptionContext, ExceptionHandler};
use fds::FdCallback;
pub use future::{FutureSetter, LoopFuture};
pub use handle::Handle;
pub use running::{get_running_loop, try_get_running_loop};
pub use sleep::{Sleep, WaitFor};
pub use task::Task;

use crate::error::{Error, ErrorKind, Result};
use crate::kernel::{Fd, Kernel, PollWaker, Poller, Signal};
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::BlockingMutex;
use crate::sys::unix::OsKernel;
use crate::zoo::Mutant;
use signals::LoopSignals;
use task::{LiveTasks, TaskCell};
use timers::Timer;

/// The number past the largest signal, as Python's `signal.NSIG`.
const NSIG: i32 = Signal::MAX + 1;

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

/// What the loop's lock guards: its queues, fd and signal tables, and run state.
struct LoopState<K: Kernel> {
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
    /// The id of the thread the loop runs in ([`NOT_RUNNING`] when it does not run): a
    /// wake from that thread needs no write, since the thread is not polling, and it
    /// looks at the ready queue, `stop` and the future before it polls again.
    running_on: AtomicU64,
    /// A kernel lock: the loop holds it across kernel calls (registering an fd,
    /// installing a signal disposition), which may switch threads under a simulator.
    state: BlockingMutex<K, LoopState<K>>,
    debug: AtomicBool,
    cancelled_timers: Arc<AtomicUsize>,
    /// The tasks that have not finished, for `asyncio.run`'s final cancellation.
    tasks: Mutex<LiveTasks<K>>,
}

/// Numbers loops for their `Debug` output; not state any test models.
/// [`Inner::running_on`] of a loop that does not run: no thread has this id.
const NOT_RUNNING: u64 = u64::MAX;

static NEXT_LOOP_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A selector event loop over kernel `K`.
///
/// `EventLoop` is a handle: clones refer to the same loop, and equality is identity.
/// It is `Send + Sync`; the methods asyncio documents as thread-safe
/// ([`call_soon_threadsafe`](EventLoop::call_soon_threadsafe), and here also
/// [`stop`](EventLoop::stop)) work from any thread, and the others fail with
/// `RuntimeError` when called from another thread while the loop runs, as asyncio's
/// debug mode does.
///
/// # Example
///
/// ```
/// use loopwatch::EventLoop;
///
/// let event_loop = EventLoop::new()?;
/// // Callbacks, timers, and a task run to completion.
/// event_loop.call_soon(|| println!("first iteration"))?;
/// let stopper = event_loop.clone();
/// event_loop.call_later(0.01, move || stopper.stop())?;
/// event_loop.run_forever()?;
/// let answer = event_loop.run_until_complete(async { 6 * 7 })?;
/// assert_eq!(answer, 42);
/// event_loop.close()?;
/// assert!(event_loop.is_closed());
/// # Ok::<(), loopwatch::Error>(())
/// ```
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
    fn kernel_thread_check(&self, state: &LoopState<K>) -> Result<()> {
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
        if crate::zoo::active(&self.kernel, Mutant::ThreadsafeNoWake) {
            // zoo: lost wake-up, queued without waking a loop asleep in its poll
            return Ok(handle);
        }
        self.wake();
        Ok(handle)
    }

    fn wake(&self) {
        if self.running_on.load(Ordering::Relaxed) == self.kernel.current_thread().0 {
            // The loop's own thread, between two polls: it checks what woke it before
            // it decides how long the next poll may block.
            return;
        }
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
            LoopState {
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
                running_on: AtomicU64::new(NOT_RUNNING),
                state,
                debug: AtomicBool::new(false),
                cancelled_timers: Arc::new(AtomicUsize::new(0)),
                tasks: Mutex::new(LiveTasks::new()),
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
}

impl<K: Kernel> Drop for Inner<K> {
    fn drop(&mut self) {
        // A loop dropped without `close` still gives back its signal dispositions and
        // fds: the last handle is gone, so nothing can run it any more.
        self.release();
    }
}
