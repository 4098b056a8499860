//! The kernel seam: every source of nondeterminism the loop, policies and watchers use.
//!
//! The trait family is split by concern ([`Clock`], [`Fds`], [`Poll`], [`Processes`],
//! [`Signals`], [`Threads`]) and gathered in [`Kernel`]. Code above the seam is generic
//! over `K: Kernel`; [`OsKernel`](crate::OsKernel) implements it on the real OS, and the
//! simulator crate implements it over a model, so the same watcher code can be run from
//! a seed.
//!
//! Rules every implementation keeps:
//!
//! - Errors are exact `errno` values ([`Errno`]); nothing is retried or hidden at this
//!   layer. `EINTR` reaches the caller, who retries; `ENOSYS` from `pidfd_open` reaches
//!   the caller, who falls back.
//! - Descriptors are plain numbers ([`Fd`]); whoever receives one from `pipe`, `spawn`
//!   or `pidfd_open` closes it.
//! - The poller is **level-triggered**: an fd that is still ready is reported again by
//!   the next poll, as `selectors` does for asyncio. A wake-up from the waker ends a
//!   blocking poll early and is not itself reported as an event.
//! - A signal handler installed by the seam ([`Disposition::Wakeup`]) only writes the
//!   signal number as one byte to the wakeup fd, then runs the foreign handler chained
//!   to it, if any ([`Signals::chain_foreign`]).
//! - Every method is a point where a simulator may let another thread run first,
//!   except the pure queries [`Clock::now`], [`Threads::current_thread`],
//!   [`Threads::current_thread_name`], [`Threads::is_main_thread`] and
//!   [`Processes::getpid`]. Code above the seam therefore never holds a short lock
//!   (`std`'s, or the loom shim's) across any other kernel call: a lock that must be
//!   held across one is a [`BlockingMutex`](crate::sync::BlockingMutex).
//! - Thread identity, names and "is this the main thread" come from the kernel, so a
//!   simulator can decide them; per-thread state above the seam is keyed by
//!   [`ThreadId`], never by `thread_local!`.

mod locals;
mod types;

use std::any::Any;
use std::fmt::Debug;
use std::time::Duration;

pub use types::{
    Disposition, Errno, Event, ExitStatus, Fd, Interest, JobStatus, Pid, Signal, SpawnRequest,
    Spawned, Stdio, ThreadId, Token, WaitMode, WaitStatus, WaitTarget,
};

pub use locals::ProcessLocals;

/// A monotonic clock.
pub trait Clock {
    /// Time since an arbitrary fixed point, never going backwards (`CLOCK_MONOTONIC`).
    fn now(&self) -> Duration;

    /// Blocks the calling thread for `duration`.
    fn sleep(&self, duration: Duration);
}

/// Pipes and descriptor operations.
pub trait Fds {
    /// A new pipe as `(read end, write end)`, both close-on-exec and blocking.
    fn pipe(&self) -> Result<(Fd, Fd), Errno>;

    /// Reads up to `buf.len()` bytes; `Ok(0)` is end of file. `EAGAIN` on an empty
    /// non-blocking pipe.
    fn read(&self, fd: Fd, buf: &mut [u8]) -> Result<usize, Errno>;

    /// Writes up to `buf.len()` bytes. `EAGAIN` on a full non-blocking pipe, `EPIPE`
    /// when no reader is left.
    fn write(&self, fd: Fd, buf: &[u8]) -> Result<usize, Errno>;

    /// Closes the descriptor; `EBADF` if it was not open.
    fn close(&self, fd: Fd) -> Result<(), Errno>;

    /// Sets or clears `O_NONBLOCK`.
    fn set_nonblocking(&self, fd: Fd, nonblocking: bool) -> Result<(), Errno>;

    /// Sets or clears `FD_CLOEXEC`.
    fn set_cloexec(&self, fd: Fd, cloexec: bool) -> Result<(), Errno>;
}

/// Creates pollers.
pub trait Poll {
    /// The poller type.
    type Poller: Poller;

    /// A new poller with its waker.
    fn new_poller(&self) -> Result<Self::Poller, Errno>;
}

/// A level-triggered readiness poller in mio's vocabulary.
///
/// Registration methods may be called from any thread, also while another thread is
/// blocked in [`Poller::poll`]; `poll` itself is called by one thread at a time.
pub trait Poller: Send + Sync + Debug + 'static {
    /// The handle that ends a blocking poll from another thread.
    type Waker: PollWaker;

    /// Starts watching `fd`. `EEXIST` if it is already registered, `EBADF` if it is not
    /// open, `EPERM` if it cannot be polled (a regular file).
    fn register(&self, fd: Fd, token: Token, interest: Interest) -> Result<(), Errno>;

    /// Changes the token or interest of a registered fd; `ENOENT` if it is not registered.
    fn reregister(&self, fd: Fd, token: Token, interest: Interest) -> Result<(), Errno>;

    /// Stops watching `fd`; `ENOENT` if it is not registered.
    fn deregister(&self, fd: Fd) -> Result<(), Errno>;

    /// Clears `events`, then waits until at least one registered fd is ready, the waker
    /// is woken, or `timeout` passes (`None`: no limit; zero: do not block). Fills in
    /// one [`Event`] per ready fd. `EINTR` when a signal handler ran.
    fn poll(&self, events: &mut Vec<Event>, timeout: Option<Duration>) -> Result<(), Errno>;

    /// The waker of this poller.
    fn waker(&self) -> Self::Waker;
}

/// Ends a poller's current or next blocking poll. Cheap to clone, usable from any thread.
pub trait PollWaker: Clone + Send + Sync + Debug + 'static {
    /// Wakes the poller. Wakes that arrive before the poller looks are merged into one.
    fn wake(&self) -> Result<(), Errno>;
}

/// Child processes.
pub trait Processes {
    /// Starts a child. A program that cannot be executed gives its `errno` (`ENOENT`,
    /// `EACCES` …) and leaves no zombie and no open fd behind.
    ///
    /// With [`SpawnRequest::pidfd`] the child's pidfd is made in the same step as the
    /// child ([`Spawned::pidfd`], close-on-exec, closed by the receiver), so that no
    /// reaper elsewhere in the process can free the pid before it exists. A kernel
    /// that cannot do that answers before any child is created, with nothing to reap
    /// and no fd open: `ENOSYS` on systems without `CLONE_PIDFD`, `EPERM` when a
    /// seccomp filter refuses the clone, `EINVAL` where the kernel rejects the flag.
    /// The caller then spawns without it (and may call [`Processes::pidfd_open`]).
    /// Linux before 5.2 ignores the flag: the child is started and
    /// [`Spawned::pidfd`] is `None`.
    fn spawn(&self, request: &SpawnRequest) -> Result<Spawned, Errno>;

    /// `waitpid(pid, WNOHANG or 0)`: reaps that child. `ECHILD` if it is not a child of
    /// this process or was reaped already; `EINVAL` for a pid ≤ 0.
    fn wait_pid(&self, pid: Pid, mode: WaitMode) -> Result<WaitStatus, Errno>;

    /// `waitpid(-1, …)`: reaps **any** child, also ones other code is waiting for.
    /// Separate from [`Processes::wait_pid`] so that stealing shows in a signature.
    fn wait_any(&self, mode: WaitMode) -> Result<WaitStatus, Errno>;

    /// `waitid(…, WEXITED | WNOWAIT)`: reports a terminated child without reaping it.
    fn wait_peek(&self, target: WaitTarget, mode: WaitMode) -> Result<WaitStatus, Errno>;

    /// `waitid(P_PIDFD, pidfd, WEXITED | WNOHANG or 0)` (Linux 5.4): reaps exactly the
    /// process the pidfd refers to, in one call. `ECHILD` once that process was reaped
    /// by anyone, even if its pid names another child by then; `EBADF` for an fd that
    /// is not a pidfd; `EINVAL` on a kernel without `P_PIDFD` (5.3).
    fn wait_pidfd(&self, pidfd: Fd, mode: WaitMode) -> Result<WaitStatus, Errno>;

    /// `waitid(target, WEXITED | WSTOPPED | WCONTINUED | WNOWAIT [| WNOHANG])`: the
    /// target's next change (a stop, a continue or its exit) without consuming it.
    /// [`WaitTarget::Any`] is not allowed (`EINVAL`): job control is asked of one
    /// child, as are pids below one. `ECHILD` once the child was reaped; for
    /// [`WaitTarget::Pidfd`], `EBADF` for an fd that is not a pidfd and `EINVAL` on a
    /// kernel without `P_PIDFD`.
    fn wait_job_peek(&self, target: WaitTarget, mode: WaitMode) -> Result<JobStatus, Errno>;

    /// `waitid(target, WSTOPPED | WCONTINUED | WNOHANG)`: takes the target's pending
    /// stop or continue report, which is then reported to no later wait
    /// ([`JobStatus::StillAlive`] when there is nothing to take). A continue replaces a
    /// stop that was not taken. Never an exit: a zombie gives `ECHILD`, as a child
    /// that was reaped does. Other errors as [`Processes::wait_job_peek`].
    fn take_job(&self, target: WaitTarget) -> Result<JobStatus, Errno>;

    /// `kill(pid, sig)`; `None` only checks that the pid exists. `ESRCH` when no such
    /// process (or zombie) exists.
    fn kill(&self, pid: Pid, signal: Option<Signal>) -> Result<(), Errno>;

    /// `pidfd_open(pid, 0)`: a close-on-exec fd that polls readable once the process
    /// has terminated. `ESRCH` for a reaped pid, `ENOSYS` where the kernel lacks it.
    fn pidfd_open(&self, pid: Pid) -> Result<Fd, Errno>;

    /// `pidfd_send_signal(pidfd, sig, NULL, 0)`: signals exactly the process the pidfd
    /// refers to, never a later process that reused its pid (`ESRCH` once reaped).
    fn pidfd_send_signal(&self, pidfd: Fd, signal: Signal) -> Result<(), Errno>;

    /// This process's pid.
    fn getpid(&self) -> Pid;
}

/// Signal dispositions and the wakeup fd.
pub trait Signals {
    /// Installs `disposition` for `signal` and returns the previous one. `EINVAL` for
    /// an invalid signal and for SIGKILL/SIGSTOP.
    fn set_disposition(
        &self,
        signal: Signal,
        disposition: Disposition,
    ) -> Result<Disposition, Errno>;

    /// The current disposition of `signal`.
    fn disposition(&self, signal: Signal) -> Result<Disposition, Errno>;

    /// Makes loopwatch's handler for `signal` ([`Disposition::Wakeup`] or
    /// [`Disposition::Notify`]) also run the handler of the [`Disposition::Foreign`]
    /// token `foreign`, right after it has written its byte; `None` stops that.
    /// Returns the token chained before. It matters only while loopwatch's handler is
    /// installed. `EINVAL` for a signal that cannot be caught or a token this kernel
    /// never gave.
    fn chain_foreign(&self, signal: Signal, foreign: Option<u64>) -> Result<Option<u64>, Errno>;

    /// Sets the fd the [`Disposition::Wakeup`] handler writes to (`None`: none) and
    /// returns the previous one. The fd should be non-blocking: a full pipe drops the
    /// byte rather than blocking the handler.
    fn set_wakeup_fd(&self, fd: Option<Fd>) -> Result<Option<Fd>, Errno>;

    /// Sends `signal` to this process.
    fn raise(&self, signal: Signal) -> Result<(), Errno>;

    /// Blocks `signal` in the calling thread; returns whether it was blocked already,
    /// so that the caller can put the mask back as it found it.
    fn block_signal(&self, signal: Signal) -> Result<bool, Errno>;

    /// Unblocks `signal` in the calling thread; returns whether it was blocked.
    fn unblock_signal(&self, signal: Signal) -> Result<bool, Errno>;
}

/// Threads, their identity, and the blocking primitive code may hold across a kernel call.
pub trait Threads {
    /// What [`Threads::join_thread`] needs.
    type JoinHandle: Send + Debug + 'static;
    /// A lock with a condition: see [`Monitor`].
    type Monitor: Monitor;

    /// Starts a named thread running `body`.
    fn spawn_thread(
        &self,
        name: &str,
        body: Box<dyn FnOnce() + Send + 'static>,
    ) -> Result<Self::JoinHandle, Errno>;

    /// Waits for a thread to finish; `Err` carries the payload if it panicked.
    fn join_thread(&self, handle: Self::JoinHandle) -> Result<(), Box<dyn Any + Send>>;

    /// The calling thread's id.
    fn current_thread(&self) -> ThreadId;

    /// The calling thread's name; the main thread is `MainThread`, as in CPython.
    fn current_thread_name(&self) -> String;

    /// Whether the calling thread is the process's main thread.
    fn is_main_thread(&self) -> bool;

    /// A new unlocked monitor.
    fn new_monitor(&self) -> Self::Monitor;
}

/// A mutual-exclusion lock with one condition, which may be held across kernel calls.
///
/// Use it through [`BlockingMutex`](crate::sync::BlockingMutex), which pairs it with
/// the data it guards. Under a simulator, waiting parks the simulated thread instead of
/// the host thread.
pub trait Monitor: Send + Sync + Debug + 'static {
    /// Blocks until the lock is free, then takes it.
    fn enter(&self);

    /// Releases the lock. The caller must hold it.
    fn exit(&self);

    /// Releases the lock, waits for a notification or the timeout, and takes the lock
    /// again. Returns `false` if the timeout passed. Spurious returns are allowed.
    fn wait(&self, timeout: Option<Duration>) -> bool;

    /// Wakes every waiter.
    fn notify_all(&self);
}

/// The whole seam. Implementations are cheap handles (`Clone`); all clones of one
/// kernel value see the same process.
pub trait Kernel:
    Clock + Fds + Poll + Processes + Signals + Threads + Clone + Send + Sync + Debug + 'static
{
    /// The per-process store for state kept above the seam (the policy slot, the
    /// running loops, the loops' signal wiring) of the process this kernel serves. The
    /// real OS has one; each simulated process its own, cleared when it ends.
    fn process_locals(&self) -> &ProcessLocals;
}
