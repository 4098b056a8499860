//! Tasks: Rust futures driven by the loop, in the manner of `asyncio.Task`.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};

use super::{Inner, Job, panic_message};
use crate::error::{Error, ErrorKind};
use crate::kernel::Kernel;
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicBool, Ordering};

/// The type-erased part of a task that the loop polls.
pub(crate) trait TaskBody: Send {
    /// Polls the future; `Ready` once it has stored its output.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// Ends the task without output (cancelled, or the future panicked).
    fn fail(&mut self, error: Error);
}

struct Body<F: Future> {
    future: Option<Pin<Box<F>>>,
    slot: Arc<Mutex<Slot<F::Output>>>,
}

struct Slot<T> {
    result: Option<Result<T, Error>>,
    finished: bool,
    waiter: Option<Waker>,
}

impl<T> Slot<T> {
    fn finish(&mut self, result: Result<T, Error>) -> Option<Waker> {
        self.result = Some(result);
        self.finished = true;
        self.waiter.take()
    }
}

impl<F> TaskBody for Body<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(future) = self.future.as_mut() else {
            return Poll::Ready(());
        };
        match future.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(output) => {
                self.future = None;
                let waiter = self.slot.lock().finish(Ok(output));
                if let Some(waiter) = waiter {
                    waiter.wake();
                }
                Poll::Ready(())
            }
        }
    }

    fn fail(&mut self, error: Error) {
        // Dropping the future is Rust's way of throwing CancelledError into it.
        self.future = None;
        let waiter = self.slot.lock().finish(Err(error));
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }
}

/// What the loop holds of a task.
pub(crate) struct TaskCell<K: Kernel> {
    body: Mutex<Option<Box<dyn TaskBody>>>,
    /// Set while a poll of the task sits in the ready queue, so wakes coalesce.
    scheduled: AtomicBool,
    cancel_requested: AtomicBool,
    /// Set once the task has ended, however it ended.
    finished: AtomicBool,
    event_loop: Weak<Inner<K>>,
    /// The task's key in its loop's [`LiveTasks`].
    id: u64,
    name: &'static str,
}

/// The tasks of a loop that have not finished (asyncio's `all_tasks(loop)`), held
/// weakly: a task nothing can wake any more is not kept alive by this list.
pub(crate) struct LiveTasks<K: Kernel> {
    next_id: u64,
    tasks: BTreeMap<u64, Weak<TaskCell<K>>>,
}

impl<K: Kernel> LiveTasks<K> {
    pub(crate) fn new() -> LiveTasks<K> {
        LiveTasks {
            next_id: 0,
            tasks: BTreeMap::new(),
        }
    }
}

impl<K: Kernel> Inner<K> {
    /// The loop's unfinished tasks that are still alive, in creation order.
    pub(crate) fn live_tasks(&self) -> Vec<Arc<TaskCell<K>>> {
        // Collected under the lock and dropped after it: dropping the last handle of
        // a task takes this lock again (see `TaskCell`'s `Drop`).
        let live = self.tasks.lock();
        live.tasks.values().filter_map(Weak::upgrade).collect()
    }

    fn forget_task(&self, id: u64) {
        let removed = self.tasks.lock().tasks.remove(&id);
        drop(removed);
    }
}

impl<K: Kernel> TaskCell<K> {
    /// Whether the task has ended (with output, cancelled, or by panic).
    pub(crate) fn finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Asks the task to stop at its next step, which is scheduled now.
    pub(crate) fn cancel(self: &Arc<Self>) {
        self.cancel_requested.store(true, Ordering::Release);
        self.schedule();
    }

    /// Marks the task ended and takes it off its loop's list of live tasks.
    fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        if let Some(inner) = self.event_loop.upgrade() {
            inner.forget_task(self.id);
        }
    }

    /// Runs one step of the task: the loop's ready queue calls this.
    pub(crate) fn step(self: &Arc<Self>) {
        self.scheduled.store(false, Ordering::Release);
        // The body is taken out of its slot for the step: polling it (and dropping it
        // when it is done) runs user code that makes kernel calls, and a short lock is
        // never held across one. Only the loop's thread steps a task, one step at a
        // time; a wake during the poll queues the next step behind this one, which
        // finds the body back in place.
        let Some(mut task) = self.body.lock().take() else {
            return;
        };
        if self.cancel_requested.load(Ordering::Acquire) {
            task.fail(Error::cancelled());
            self.finish();
            return;
        }
        let waker = Waker::from(Arc::new(TaskWaker(self.clone())));
        let mut cx = Context::from_waker(&waker);
        match catch_unwind(AssertUnwindSafe(|| task.poll(&mut cx))) {
            Ok(Poll::Pending) => *self.body.lock() = Some(task),
            Ok(Poll::Ready(())) => {
                drop(task);
                self.finish();
            }
            Err(payload) => {
                let message = panic_message(&*payload);
                task.fail(Error::new(ErrorKind::Panic, message.clone()));
                drop(task);
                self.finish();
                if let Some(inner) = self.event_loop.upgrade() {
                    inner.report_panic(
                        &format!("Task exception was never retrieved: {}", self.name),
                        message,
                    );
                }
            }
        }
    }

    /// Puts a step of the task in the loop's ready queue, once.
    fn schedule(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        match self.event_loop.upgrade() {
            Some(inner) => {
                if inner
                    .push_threadsafe(Job::Task(self.clone()), self.name)
                    .is_err()
                {
                    // The loop is closed: the task can never run again.
                    self.scheduled.store(false, Ordering::Release);
                }
            }
            None => self.scheduled.store(false, Ordering::Release),
        }
    }
}

impl<K: Kernel> Drop for TaskCell<K> {
    fn drop(&mut self) {
        // A task dropped unfinished (its loop closed, or nothing could wake it) leaves
        // the list too.
        if !self.finished() {
            self.finish();
        }
    }
}

struct TaskWaker<K: Kernel>(Arc<TaskCell<K>>);

impl<K: Kernel> Wake for TaskWaker<K> {
    fn wake(self: Arc<Self>) {
        self.0.schedule();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.schedule();
    }
}

/// A future running on a loop (asyncio's `Task`), created by
/// [`EventLoop::create_task`](super::EventLoop::create_task).
///
/// Awaiting it gives the future's output, `Err` of kind
/// [`CancelledError`](ErrorKind::CancelledError) if it was cancelled, or of kind
/// [`Panic`](ErrorKind::Panic) if it panicked. Dropping the `Task` does not stop it.
pub struct Task<T, K: Kernel = crate::OsKernel> {
    cell: Arc<TaskCell<K>>,
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T: Send + 'static, K: Kernel> Task<T, K> {
    pub(crate) fn spawn<F>(inner: &Arc<Inner<K>>, future: F) -> Result<Task<T, K>, Error>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let name = std::any::type_name::<F>();
        let slot = Arc::new(Mutex::new(Slot {
            result: None,
            finished: false,
            waiter: None,
        }));
        let id = {
            let mut live = inner.tasks.lock();
            live.next_id += 1;
            live.next_id
        };
        let cell = Arc::new(TaskCell {
            body: Mutex::new(Some(Box::new(Body {
                future: Some(Box::pin(future)),
                slot: slot.clone(),
            }) as Box<dyn TaskBody>)),
            scheduled: AtomicBool::new(true),
            cancel_requested: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            event_loop: Arc::downgrade(inner),
            id,
            name,
        });
        let listed = inner.tasks.lock().tasks.insert(id, Arc::downgrade(&cell));
        drop(listed);
        // If the loop refuses it, dropping the cell takes it off the list again.
        inner.push(Job::Task(cell.clone()), name)?;
        Ok(Task { cell, slot })
    }

    /// Asks the task to stop: at its next step its future is dropped and awaiting the
    /// task gives `CancelledError`. Returns `false` if it had already finished.
    pub fn cancel(&self) -> bool {
        if self.done() {
            return false;
        }
        self.cell.cancel();
        true
    }

    /// Whether the task has finished (with output, cancelled, or by panic).
    pub fn done(&self) -> bool {
        self.slot.lock().finished
    }

    /// Whether the task finished by cancellation.
    pub fn cancelled(&self) -> bool {
        let slot = self.slot.lock();
        matches!(&slot.result, Some(Err(e)) if e.kind() == ErrorKind::CancelledError)
    }
}

impl<T, K: Kernel> Future for Task<T, K> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.slot.lock();
        if slot.finished {
            return Poll::Ready(
                slot.result
                    .take()
                    .unwrap_or_else(|| Err(Error::runtime("Task result was already taken"))),
            );
        }
        slot.waiter = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T, K: Kernel> fmt::Debug for Task<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.slot.lock().finished {
            "finished"
        } else {
            "pending"
        };
        write!(f, "<Task {state} {}>", self.cell.name)
    }
}
