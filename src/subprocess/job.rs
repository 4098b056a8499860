//! Job control: a child's stops and continues, reported on request (spec X-8).
//!
//! No watcher hears of them: SIGCHLD watchers call `waitpid` without `WUNTRACED`, and
//! a pidfd polls readable only once its process has exited. Linux tells a parent of a
//! stop or a continue through SIGCHLD, which loopwatch does not take for this (the
//! watchers that do not use it leave signal dispositions alone), and through
//! `waitid(WSTOPPED | WCONTINUED)`. So an observer thread blocks in a `waitid` that
//! peeks (`WNOWAIT`) at the child's next change, exits included. A stop or continue it
//! takes (each is reported once) and hands to the [`JobEvents`] stream; the exit it
//! leaves to the watcher, and ends.
//!
//! The observer waits through the process's pidfd where it has one (`P_PIDFD`, Linux
//! 5.4), which names this child and no other. By pid it takes a report only under the
//! child's reap fence, after checking that no watcher has reaped the child, so it
//! never takes a report of a process that reused the pid after a watcher reaped the
//! child (a reaper outside loopwatch is outside the fence, as for
//! [`Process::send_signal`](crate::Process::send_signal)).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::OsKernel;
use crate::kernel::{Errno, JobStatus, Kernel, Pid, Signal, WaitMode, WaitTarget};
use crate::loom::sync::Mutex;
use crate::watcher::{ReapFence, SharedPidfd};

/// A stop or a continue of a child process, as [`JobEvents`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobEvent {
    /// The child was stopped by this signal (`SIGSTOP`, `SIGTSTP`, `SIGTTIN`,
    /// `SIGTTOU`), or by a tracer.
    Stopped(Signal),
    /// The stopped child was continued by `SIGCONT`.
    Continued,
}

/// What the observer thread and the stream share.
#[derive(Default)]
struct Reports {
    queue: VecDeque<JobEvent>,
    /// The observer is done: the child exited, or was reaped.
    ended: bool,
    waker: Option<Waker>,
}

/// The stops and continues of one child, from
/// [`Process::job_events`](crate::Process::job_events): await
/// [`JobEvents::next_event`] for each, in order, until it gives `None` once the child has
/// exited.
///
/// A report is taken from the kernel (no later `waitpid(WUNTRACED)` in the process
/// sees it) as soon as the observer sees it, and queued here until asked for. As the
/// kernel keeps only the latest change of a child that nobody has waited for, a stop
/// followed by a continue before the observer looks is reported as the continue alone,
/// and a change followed by the exit as the end of the stream alone.
///
/// The observer is a thread blocked in `waitid` on the child: it ends when the child
/// exits, whether or not this stream is still held. Dropping the stream after its end
/// joins the thread.
pub struct JobEvents<K: Kernel = OsKernel> {
    kernel: K,
    pid: Pid,
    reports: Arc<Mutex<Reports>>,
    thread: Option<K::JoinHandle>,
}

impl<K: Kernel> fmt::Debug for JobEvents<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reports = self.reports.lock();
        write!(
            f,
            "<JobEvents {} queued={} ended={}>",
            self.pid.0,
            reports.queue.len(),
            reports.ended
        )
    }
}

impl<K: Kernel> JobEvents<K> {
    /// Starts observing child `pid`: through `pidfd` when given, by pid under `fence`
    /// otherwise. A child already reaped gives a stream that has ended.
    pub(super) fn start(
        kernel: &K,
        pid: Pid,
        pidfd: Option<SharedPidfd<K>>,
        fence: ReapFence<K>,
    ) -> Result<JobEvents<K>, Errno> {
        let reports = Arc::new(Mutex::new(Reports::default()));
        let mut events = JobEvents {
            kernel: kernel.clone(),
            pid,
            reports: reports.clone(),
            thread: None,
        };
        if fence.is_reaped() {
            reports.lock().ended = true;
            return Ok(events);
        }
        let observer = Observer {
            kernel: kernel.clone(),
            pid,
            pidfd,
            fence,
            reports,
        };
        let body = Box::new(move || observer.run());
        events.thread = Some(kernel.spawn_thread(&format!("loopwatch-jobs-{}", pid.0), body)?);
        Ok(events)
    }

    /// The child's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The next stop or continue, in the order they happened; `None` once the child
    /// has exited (or been reaped) and every report before has been given.
    pub fn next_event(&mut self) -> NextJobEvent<'_> {
        NextJobEvent {
            reports: &self.reports,
        }
    }
}

impl<K: Kernel> Drop for JobEvents<K> {
    fn drop(&mut self) {
        let ended = self.reports.lock().ended;
        if let Some(thread) = self.thread.take() {
            if ended {
                // The observer has nothing left to do but return.
                let _ = self.kernel.join_thread(thread);
            }
            // Otherwise it is detached: it ends when the child exits.
        }
    }
}

/// The future of [`JobEvents::next_event`].
#[derive(Debug)]
pub struct NextJobEvent<'a> {
    reports: &'a Mutex<Reports>,
}

impl fmt::Debug for Reports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reports({:?}, ended={})", self.queue, self.ended)
    }
}

impl Future for NextJobEvent<'_> {
    type Output = Option<JobEvent>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<JobEvent>> {
        let mut reports = self.reports.lock();
        if let Some(event) = reports.queue.pop_front() {
            return Poll::Ready(Some(event));
        }
        if reports.ended {
            return Poll::Ready(None);
        }
        reports.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The observer thread's state.
struct Observer<K: Kernel> {
    kernel: K,
    pid: Pid,
    /// Held for as long as the observer waits on it.
    pidfd: Option<SharedPidfd<K>>,
    fence: ReapFence<K>,
    reports: Arc<Mutex<Reports>>,
}

impl<K: Kernel> Observer<K> {
    fn run(self) {
        let mut target = match &self.pidfd {
            Some(pidfd) => WaitTarget::Pidfd(pidfd.fd()),
            None => WaitTarget::Pid(self.pid),
        };
        loop {
            match self.kernel.wait_job_peek(target, WaitMode::Block) {
                Err(Errno::EINTR) => {}
                // A kernel without P_PIDFD (5.3): by pid, under the fence.
                Err(Errno::EINVAL) if matches!(target, WaitTarget::Pidfd(_)) => {
                    target = WaitTarget::Pid(self.pid);
                }
                Ok(JobStatus::Stopped(..) | JobStatus::Continued(_)) => {
                    let guard = self.fence.lock();
                    if guard.is_reaped() {
                        // By pid, the change seen may be a newcomer's: not ours.
                        break;
                    }
                    let taken = self.kernel.take_job(target);
                    drop(guard);
                    let event = match taken {
                        Ok(JobStatus::Stopped(_, signal)) => JobEvent::Stopped(signal),
                        Ok(JobStatus::Continued(_)) => JobEvent::Continued,
                        // Taken by other code in between, or interrupted: look again.
                        Ok(JobStatus::StillAlive | JobStatus::Terminated(..))
                        | Err(Errno::EINTR) => continue,
                        Err(_) => break,
                    };
                    self.report(Some(event));
                }
                // Exited (the watcher reaps it), reaped already (ECHILD), or an error
                // nothing here can mend: the observation is over.
                Ok(JobStatus::Terminated(..) | JobStatus::StillAlive) | Err(_) => break,
            }
        }
        self.report(None);
    }

    /// Queues `event`, or with `None` ends the stream, and wakes the reader.
    fn report(&self, event: Option<JobEvent>) {
        let waker = {
            let mut reports = self.reports.lock();
            match event {
                Some(event) => reports.queue.push_back(event),
                None => reports.ended = true,
            }
            reports.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}
