//! asyncio's event-loop policies, selector event loop, child watchers and subprocesses, in
//! Rust, behind a kernel seam that a simulator can replace.
//!
//! # Map
//!
//! - [`kernel`]: the seam, the [`Kernel`] trait family and its value types. Everything
//!   nondeterministic (clock, fds, poller, processes, signals, threads) goes through it.
//! - [`OsKernel`]: the seam on the real OS (`src/sys/unix`, the only home of `unsafe`).
//! - [`event_loop`]: [`EventLoop`], a selector loop with asyncio's semantics: callbacks,
//!   timers, readers and writers, signal handlers, tasks, the exception handler.
//! - [`policy`]: [`AbstractEventLoopPolicy`], [`DefaultEventLoopPolicy`] and the
//!   per-kernel module functions; the crate root repeats them for the real OS.
//! - [`watcher`]: [`ChildWatcher`], CPython's watchers (Safe, Fast, MultiLoop,
//!   Threaded, Pidfd) and loopwatch's own (Waitid, and Auto, the one to pick when
//!   CPython's exact behaviour is not needed): which to use, and how to write code that works with any of them,
//!   is [Choosing a watcher](watcher#choosing-a-watcher); then an essay on SIGCHLD
//!   coalescing, foreign children and pid reuse.
//! - [`subprocess`]: [`EventLoop::subprocess_exec`], [`create_subprocess_exec`] and
//!   [`Process`]; what to run is a [`SpawnRequest`](kernel::SpawnRequest), built like
//!   `std::process::Command`. On request, [`Process::job_events`] reports the child's
//!   stops and continues, which no watcher does.
//! - [`asyncio`]: [`run`] (`asyncio.run`), [`gather`] and [`join_all`], with a table
//!   from asyncio's everyday names to loopwatch's ([`EventLoop::sleep`],
//!   [`EventLoop::wait_for`], [`EventLoop::create_future`] …).
//! - [`error`]: [`Error`] and [`ErrorKind`], mirroring the Python exception CPython raises.
//! - [`sync`]: [`BlockingMutex`](sync::BlockingMutex), a lock that may be held across
//!   kernel calls.
//!
//! Names follow CPython letter for letter (`get_event_loop_policy`, `run_until_complete`
//! …). Behaviour follows the Python 3.7.2 "asyncio Policies" page and, where it is
//! silent, CPython 3.7; the spec clause of each behaviour (P-1, C-2 …) is cited where
//! it is implemented and in the tests that check it.
//!
//! # Example
//!
//! [`run`] makes a loop, runs a future on it and closes it, as `asyncio.run` does. A
//! future that can fail gives a [`Result`], and the helpers that take one flatten its
//! error with the loop's, so each call needs one `?`:
//!
//! ```
//! use loopwatch::kernel::{SpawnRequest, Stdio};
//!
//! let (code, out) = loopwatch::run(async {
//!     let event_loop = loopwatch::get_running_loop()?;
//!     let request = SpawnRequest::new("/bin/sh", ["-c", "echo hello; exit 3"]).stdout(Stdio::Pipe);
//!     let mut process = event_loop.subprocess_exec(&request)?;
//!     let (out, _) = process.communicate(None).await?;
//!     let code = event_loop.wait_for(process.wait(), 60.0).await?;
//!     Ok((code, out))
//! })?;
//! assert_eq!((code, out.as_slice()), (3, &b"hello\n"[..]));
//! # loopwatch::set_child_watcher(None)?;
//! # Ok::<(), loopwatch::Error>(())
//! ```
//!
//! On a loop of one's own, [`EventLoop::try_run_until_complete`] does the same for one
//! future; [`EventLoop::run_until_complete`] takes any future and so keeps the loop's
//! error apart from the future's (`run_until_complete(task)??`).
//!
//! ```
//! let event_loop = loopwatch::new_event_loop()?;
//! let task = event_loop.create_task(async { 6 * 7 })?;
//! assert_eq!(event_loop.try_run_until_complete(task)?, 42);
//! event_loop.close()?;
//! # Ok::<(), loopwatch::Error>(())
//! ```
//!
//! # Running the tests
//!
//! `cargo test --workspace` runs everything: on the real OS, and on the simulator
//! (`loopwatch-sim`) over several seeds. The core's unit tests run in cargo's worker
//! threads and serialise on a lock where they change process-wide state (signal
//! dispositions, the policy slot); what needs the process's main thread (signal
//! handlers, Safe and Fast, the main thread's automatic loop) runs in harness-less
//! test binaries (`src/tests/main_thread.rs`, and those under `sim/tests` built on
//! `loopwatch_sim::testing::Harness`), one test at a time on the main thread.
//!
//! # Reproducing a failure
//!
//! Tests on the real OS print the operation and errno that failed; rerun one with
//! `cargo test -p loopwatch <name> -- --nocapture` (or `--test main_thread <name>`).
//! A simulator test that fails prints its seed and the command that replays it, of the
//! form `LOOPWATCH_SEED=<seed> cargo test -p <crate> --test <binary> <name> -- --exact`.
//!
//! # Limitations
//!
//! - Linux only: `OsKernel` refuses to build where signal or errno numbers differ
//!   from Linux's (the seam's numbers). The Windows proactor policy is not
//!   provided.
//! - The default policy keeps a thread's loop until the policy is dropped or the
//!   thread calls `set_event_loop(None)`; CPython's `threading.local` forgets it when
//!   the thread ends.
//! - Safe, Fast and MultiLoop need the process's main thread (to attach, or install
//!   their handler), as in CPython; Pidfd needs Linux 5.3 or later. See
//!   [Choosing a watcher](watcher#choosing-a-watcher).
//! - What the simulator does not model is listed in `loopwatch-sim`'s crate
//!   documentation.

pub mod asyncio;
pub mod error;
pub mod event_loop;
pub mod kernel;
mod loom;
pub mod policy;
pub mod subprocess;
mod sys;
#[cfg(test)]
mod test_support;
pub mod watcher;
#[cfg(feature = "zoo")]
pub mod zoo;
#[cfg(not(feature = "zoo"))]
mod zoo;

/// Synchronisation that is safe to hold across kernel calls, and the check that no
/// other lock is.
pub mod sync {
    pub use crate::sys::sync::{BlockingMutex, BlockingMutexGuard};

    /// How many of loopwatch's short locks (the ones that must never be held across a
    /// kernel call) the calling OS thread holds now. A kernel implementation asserts
    /// that this is zero at each call that can block or switch threads: the simulator
    /// does so at every scheduling point, which is how a short lock held across a
    /// kernel call is caught the first time a test runs that path.
    pub fn short_locks_held() -> usize {
        crate::loom::sync::short_locks_held()
    }
}

pub use asyncio::{gather, join_all};
pub use error::{Error, ErrorKind, Result};
pub use event_loop::{
    EventLoop, ExceptionContext, ExceptionHandler, FutureSetter, Handle, LoopFuture, Sleep, Task,
    WaitFor,
};
pub use kernel::Kernel;
pub use policy::{
    AbstractEventLoopPolicy, DefaultEventLoopPolicy, PolicyRef, PolicyState, WatcherFactory,
    WatcherRef,
};
pub use subprocess::{JobEvent, JobEvents, Process, create_subprocess_exec};
pub use sys::unix::{OsJoinHandle, OsKernel, OsMonitor, OsPoller, OsWaker};
pub use watcher::{
    AutoChildWatcher, ChildWatcher, FastChildWatcher, MultiLoopChildWatcher, PidfdChildWatcher,
    SafeChildWatcher, ThreadedChildWatcher, WaitidChildWatcher,
};

/// The process-wide policy, created on first use (P-1).
pub fn get_event_loop_policy() -> PolicyRef<OsKernel> {
    policy::get_event_loop_policy(&OsKernel)
}

/// Sets the process-wide policy; `None` restores a fresh default (P-2, P-3).
pub fn set_event_loop_policy(policy: Option<PolicyRef<OsKernel>>) {
    policy::set_event_loop_policy(&OsKernel, policy);
}

/// The running loop, else the policy's current loop (P-6).
pub fn get_event_loop() -> Result<EventLoop> {
    policy::get_event_loop(&OsKernel)
}

/// Sets the current loop through the policy (P-7).
pub fn set_event_loop(event_loop: Option<EventLoop>) -> Result<()> {
    policy::set_event_loop(&OsKernel, event_loop)
}

/// A new loop from the policy (P-7).
pub fn new_event_loop() -> Result<EventLoop> {
    policy::new_event_loop(&OsKernel)
}

/// The current policy's child watcher (P-7, D-3).
pub fn get_child_watcher() -> Result<WatcherRef> {
    policy::get_child_watcher(&OsKernel)
}

/// Sets the current policy's child watcher, closing the old one (P-7, D-4).
pub fn set_child_watcher(watcher: Option<WatcherRef>) -> Result<()> {
    policy::set_child_watcher(&OsKernel, watcher)
}

/// The loop running in this thread, or `RuntimeError('no running event loop')` (P-4).
pub fn get_running_loop() -> Result<EventLoop> {
    policy::get_running_loop(&OsKernel)
}

/// The loop running in this thread, or `None` (CPython's `_get_running_loop`, P-5).
pub fn try_get_running_loop() -> Option<EventLoop> {
    policy::try_get_running_loop(&OsKernel)
}

/// Runs `future` on a new loop from the policy and returns its result (asyncio's
/// `run`): see [`asyncio::run`], which does this for any kernel.
///
/// ```
/// fn main() -> loopwatch::Result<()> {
///     let answer = loopwatch::run(async {
///         let event_loop = loopwatch::get_running_loop()?;
///         event_loop.sleep(0.01).await?;
///         Ok(6 * 7)
///     })?;
///     assert_eq!(answer, 42);
///     Ok(())
/// }
/// # main().unwrap();
/// ```
///
/// # Errors
///
/// As [`asyncio::run`]: `RuntimeError` inside a running loop, else the policy's or
/// the future's error.
pub fn run<F, T>(future: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    asyncio::run(&OsKernel, future)
}
