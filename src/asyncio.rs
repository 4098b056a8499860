//! asyncio's everyday helpers: [`run`] (`asyncio.run`), [`gather`] and [`join_all`]
//! (`asyncio.gather`), for any kernel.
//!
//! With the loop's own methods, these are the parts of asyncio a program uses most:
//!
//! | asyncio | loopwatch |
//! |---|---|
//! | `asyncio.run(main())` | [`loopwatch::run`](crate::run), or [`run`] with a kernel |
//! | `await asyncio.sleep(s)` | [`event_loop.sleep(s).await?`](crate::EventLoop::sleep) |
//! | `await asyncio.wait_for(aw, t)` | [`event_loop.wait_for(aw, t).await`](crate::EventLoop::wait_for) |
//! | `await asyncio.gather(*aws)` | [`gather(aws).await?`](gather) |
//! | `await asyncio.gather(*aws, return_exceptions=True)` | [`join_all(aws).await`](join_all) |
//! | `loop.create_future()` | [`event_loop.create_future()`](crate::EventLoop::create_future) |
//! | `loop.create_task(coro)` | [`event_loop.create_task(fut)?`](crate::EventLoop::create_task) |
//! | `loop.run_until_complete(aw)` | [`event_loop.try_run_until_complete(fut)?`](crate::EventLoop::try_run_until_complete) |
//!
//! A Python coroutine that raises is, here, a future whose output is
//! [`Result`]; the helpers that take such futures give their error
//! back as Python would raise it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, try_get_running_loop};
use crate::kernel::Kernel;
use crate::policy;

/// Runs `future` on a new loop of `kernel`'s policy and returns its result
/// (asyncio's `run`): the loop is made the current one, runs the future to the end,
/// cancels the tasks still pending then, and is unset (`set_event_loop(None)`) and
/// closed, whatever the outcome. [`loopwatch::run`](crate::run) is this for the real
/// OS.
///
/// As in CPython, leaving the current loop unset afterwards means the main thread no
/// longer gets a loop automatically from `get_event_loop`. Python's asynchronous
/// generators have no Rust counterpart, so there is nothing to shut down for them.
///
/// ```
/// use loopwatch::kernel::Kernel;
///
/// fn main_of<K: Kernel>(kernel: &K) -> loopwatch::Result<u32> {
///     let kernel_in = kernel.clone();
///     loopwatch::asyncio::run(kernel, async move {
///         let event_loop = loopwatch::policy::get_running_loop(&kernel_in)?;
///         event_loop.sleep(0.0).await?;
///         Ok(7)
///     })
/// }
///
/// assert_eq!(main_of(&loopwatch::OsKernel)?, 7);
/// # Ok::<(), loopwatch::Error>(())
/// ```
///
/// # Errors
///
/// `RuntimeError('asyncio.run() cannot be called from a running event loop')` when a
/// loop runs in this thread already; the policy's error if it cannot make or set the
/// loop; otherwise the future's error, or, if the future succeeded, the first error of
/// the teardown.
///
/// # Panics
///
/// A panic in the future propagates, after the loop has been unset and closed.
pub fn run<K, F, T>(kernel: &K, future: F) -> Result<T>
where
    K: Kernel,
    F: Future<Output = Result<T>>,
{
    if try_get_running_loop(kernel).is_some() {
        return Err(Error::runtime(
            "asyncio.run() cannot be called from a running event loop",
        ));
    }
    let event_loop = policy::new_event_loop(kernel)?;
    let mut teardown = Teardown {
        kernel,
        event_loop: Some(event_loop.clone()),
    };
    let outcome = policy::set_event_loop(kernel, Some(event_loop.clone()))
        .and_then(|()| event_loop.try_run_until_complete(future));
    let cancelled = event_loop.cancel_all_tasks();
    let finished = teardown.finish();
    let value = outcome?;
    cancelled?;
    finished?;
    Ok(value)
}

/// Unsets and closes [`run`]'s loop, on the way out or while a panic unwinds.
struct Teardown<'a, K: Kernel> {
    kernel: &'a K,
    event_loop: Option<EventLoop<K>>,
}

impl<K: Kernel> Teardown<'_, K> {
    fn finish(&mut self) -> Result<()> {
        let Some(event_loop) = self.event_loop.take() else {
            return Ok(());
        };
        let unset = policy::set_event_loop(self.kernel, None);
        let closed = event_loop.close();
        unset.and(closed)
    }
}

impl<K: Kernel> Drop for Teardown<'_, K> {
    fn drop(&mut self) {
        // Only after a panic: `run` finishes the teardown itself otherwise.
        let _ = self.finish();
    }
}

/// A future run to its end alongside others, keeping its output until all are done.
enum MaybeDone<F: Future> {
    Pending(Pin<Box<F>>),
    Done(F::Output),
    Taken,
}

// The output is never pinned, only the future, which is boxed.
impl<F: Future> Unpin for MaybeDone<F> {}

impl<F: Future> MaybeDone<F> {
    fn new(future: F) -> MaybeDone<F> {
        MaybeDone::Pending(Box::pin(future))
    }

    /// Polls a pending future; `true` once it is done.
    fn poll_done(&mut self, cx: &mut Context<'_>) -> bool {
        if let MaybeDone::Pending(future) = self {
            match future.as_mut().poll(cx) {
                Poll::Ready(output) => *self = MaybeDone::Done(output),
                Poll::Pending => return false,
            }
        }
        true
    }

    fn take(&mut self) -> Option<F::Output> {
        match std::mem::replace(self, MaybeDone::Taken) {
            MaybeDone::Done(output) => Some(output),
            other => {
                *self = other;
                None
            }
        }
    }
}

impl<F: Future<Output = Result<T>>, T> MaybeDone<F> {
    /// The error of a future that is done and failed.
    fn take_error(&mut self) -> Option<Error> {
        if !matches!(self, MaybeDone::Done(Err(_))) {
            return None;
        }
        self.take().and_then(Result::err)
    }
}

/// Runs `futures` together and gives all their outputs, in the order given, once
/// every one has finished: asyncio's `gather(*aws, return_exceptions=True)` for
/// futures that give a `Result`, and a plain join for any others.
///
/// Each wake polls every future not yet done, so it suits tens of futures rather
/// than thousands; run many as [tasks](crate::EventLoop::create_task) and join those.
///
/// ```
/// let event_loop = loopwatch::EventLoop::new()?;
/// let lp = event_loop.clone();
/// let outputs = event_loop.run_until_complete(async move {
///     let sleeps = [0.03, 0.01, 0.02].map(|s| {
///         let lp = lp.clone();
///         async move {
///             lp.sleep(s).await?;
///             Ok::<_, loopwatch::Error>(s)
///         }
///     });
///     loopwatch::join_all(sleeps).await
/// })?;
/// let outputs: Vec<f64> = outputs.into_iter().collect::<Result<_, _>>()?;
/// assert_eq!(outputs, [0.03, 0.01, 0.02]);
/// event_loop.close()?;
/// # Ok::<(), loopwatch::Error>(())
/// ```
///
/// # Panics
///
/// When polled again after it has finished, as futures may.
pub fn join_all<I>(futures: I) -> JoinAll<I::Item>
where
    I: IntoIterator,
    I::Item: Future,
{
    JoinAll {
        futures: futures.into_iter().map(MaybeDone::new).collect(),
    }
}

/// The future of [`join_all`]: every output, in the order given.
///
/// ```
/// let event_loop = loopwatch::EventLoop::new()?;
/// let joined = loopwatch::join_all((1..=3).map(|n| async move { n * n }));
/// assert_eq!(event_loop.run_until_complete(joined)?, [1, 4, 9]);
/// # Ok::<(), loopwatch::Error>(())
/// ```
pub struct JoinAll<F: Future> {
    futures: Vec<MaybeDone<F>>,
}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<F::Output>> {
        let this = self.get_mut();
        let mut all_done = true;
        for future in &mut this.futures {
            all_done &= future.poll_done(cx);
        }
        if !all_done {
            return Poll::Pending;
        }
        let outputs: Option<Vec<F::Output>> =
            this.futures.iter_mut().map(MaybeDone::take).collect();
        Poll::Ready(outputs.expect("join_all polled after it finished"))
    }
}

impl<F: Future> fmt::Debug for JoinAll<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending = self
            .futures
            .iter()
            .filter(|f| matches!(f, MaybeDone::Pending(_)))
            .count();
        write!(f, "<JoinAll {pending} of {} pending>", self.futures.len())
    }
}

/// Runs `futures` together and gives their values, in the order given, once every
/// one has succeeded, or the first error as soon as one fails (asyncio's `gather`).
///
/// On an error the other futures are dropped, which cancels them; CPython leaves the
/// other awaitables running, which here means passing [tasks](crate::Task): dropping a
/// task does not stop it.
///
/// ```
/// let event_loop = loopwatch::EventLoop::new()?;
/// let tasks = (1..=3)
///     .map(|n| event_loop.create_task(async move { n * 10 }))
///     .collect::<loopwatch::Result<Vec<_>>>()?;
/// let values = event_loop.try_run_until_complete(loopwatch::gather(tasks))?;
/// assert_eq!(values, [10, 20, 30]);
///
/// let failing = [Ok(1), Err(loopwatch::Error::value("two"))].map(std::future::ready);
/// let error = event_loop.try_run_until_complete(loopwatch::gather(failing)).unwrap_err();
/// assert_eq!(error.message(), "two");
/// event_loop.close()?;
/// # Ok::<(), loopwatch::Error>(())
/// ```
pub fn gather<I, T>(futures: I) -> Gather<I::Item>
where
    I: IntoIterator,
    I::Item: Future<Output = Result<T>>,
{
    Gather {
        futures: Some(futures.into_iter().map(MaybeDone::new).collect()),
    }
}

/// The future of [`gather`]: every value in the order given, or the first error.
///
/// ```
/// let event_loop = loopwatch::EventLoop::new()?;
/// let gathered = loopwatch::gather((1..=3).map(|n| async move { Ok(n * n) }));
/// assert_eq!(event_loop.try_run_until_complete(gathered)?, [1, 4, 9]);
/// # Ok::<(), loopwatch::Error>(())
/// ```
pub struct Gather<F: Future> {
    /// `None` once it has finished.
    futures: Option<Vec<MaybeDone<F>>>,
}

impl<F, T> Future for Gather<F>
where
    F: Future<Output = Result<T>>,
{
    type Output = Result<Vec<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Vec<T>>> {
        let this = self.get_mut();
        let Some(futures) = this.futures.as_mut() else {
            return Poll::Ready(Err(Error::runtime("gather polled after it finished")));
        };
        let mut all_done = true;
        for future in futures.iter_mut() {
            all_done &= future.poll_done(cx);
            if let Some(error) = future.take_error() {
                // Dropping the rest cancels them.
                this.futures = None;
                return Poll::Ready(Err(error));
            }
        }
        if !all_done {
            return Poll::Pending;
        }
        let futures = this.futures.take().unwrap_or_default();
        Poll::Ready(
            futures
                .into_iter()
                .map(|mut future| {
                    future
                        .take()
                        .unwrap_or_else(|| Err(Error::runtime("gather polled after it finished")))
                })
                .collect(),
        )
    }
}

impl<F: Future> fmt::Debug for Gather<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.futures {
            Some(futures) => {
                let pending = futures
                    .iter()
                    .filter(|f| matches!(f, MaybeDone::Pending(_)))
                    .count();
                write!(f, "<Gather {pending} of {} pending>", futures.len())
            }
            None => write!(f, "<Gather done>"),
        }
    }
}

/// Three futures of different types run together (what `Process::communicate` needs:
/// the write to stdin and the reads of stdout and stderr).
pub(crate) struct Join3<A: Future, B: Future, C: Future> {
    a: MaybeDone<A>,
    b: MaybeDone<B>,
    c: MaybeDone<C>,
}

impl<A: Future, B: Future, C: Future> Join3<A, B, C> {
    pub(crate) fn new(a: A, b: B, c: C) -> Self {
        Join3 {
            a: MaybeDone::new(a),
            b: MaybeDone::new(b),
            c: MaybeDone::new(c),
        }
    }
}

impl<A: Future, B: Future, C: Future> Future for Join3<A, B, C> {
    type Output = (A::Output, B::Output, C::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Each polled in turn, whether or not the others are done.
        let done = [
            this.a.poll_done(cx),
            this.b.poll_done(cx),
            this.c.poll_done(cx),
        ];
        if done != [true; 3] {
            return Poll::Pending;
        }
        match (this.a.take(), this.b.take(), this.c.take()) {
            (Some(a), Some(b), Some(c)) => Poll::Ready((a, b, c)),
            _ => panic!("Join3 polled after it finished"),
        }
    }
}
