//! Child watchers: how a loop learns that a child process has exited.
//!
//! # Choosing a watcher
//!
//! | | Works from | `add_child_handler` needs | Cost of exits | Other code's children | Needs |
//! |---|---|---|---|---|---|
//! | [`AutoChildWatcher`] | any thread | a running loop in the calling thread | no signal work: one `waitid(P_PIDFD)` per exit through the process's pidfd or one of its own, O(1); a waiter thread where pidfds are refused | untouched | nothing (pidfds where Linux has them) |
//! | [`SafeChildWatcher`] | the main thread's loop only | the loop attached (from the main thread) | per SIGCHLD, one `waitpid` per registered child: O(n) | untouched | |
//! | [`WaitidChildWatcher`] | the main thread's loop only | the loop attached (from the main thread) | per exit, a `waitid(WNOWAIT)` peek and one `waitpid`: O(1); O(n) passes while another's exited child is not yet reaped by its owner | untouched | `waitid(P_ALL, WNOWAIT)` (else it polls as Safe) |
//! | [`FastChildWatcher`] | the main thread's loop only | the loop attached, and an open [`fork_window`] | one peek and one `waitpid` per exited child: O(1) | **reaped** (their own `waitpid` gets ECHILD) | spawning and registering inside a fork window |
//! | [`MultiLoopChildWatcher`] | any thread, once attached from the main thread | a running loop in the calling thread | per SIGCHLD, one `waitpid` per registered child, in its reaper thread: O(n) | untouched | one reaper thread |
//! | [`ThreadedChildWatcher`] | any thread | a running loop in the calling thread | no signal work: one thread per running child, blocked in `waitpid`; idle threads are reused | untouched | a thread per running child |
//! | [`PidfdChildWatcher`] | any thread | a running loop in the calling thread | no signal work: one `waitpid` per exit, O(1) | untouched | Linux ≥ 5.3, `pidfd_open` not refused by seccomp |
//!
//! - **Prefer Auto.** It serves a loop in any thread, waits only for the children it
//!   is given, installs no signal handler, and takes for each child the best rung the
//!   process has: a pidfd (immune to pid reuse, see below), else a waiter thread, as
//!   Pidfd and then Threaded would; it reaps the children of loops that went away.
//!   Pidfd alone says so with an error where `pidfd_open` fails (`ENOSYS` before
//!   Linux 5.3, `EPERM` under seccomp); Threaded alone costs a thread per running
//!   child everywhere. Give the policy your choice with
//!   [`set_child_watcher`](crate::set_child_watcher), or build the default policy with
//!   [`DefaultEventLoopPolicy::with_watcher_factory`](crate::DefaultEventLoopPolicy::with_watcher_factory)
//!   ([`DefaultEventLoopPolicy::with_auto_watcher`](crate::DefaultEventLoopPolicy::with_auto_watcher)
//!   for Auto).
//! - **Safe** is the default policy's watcher, as in CPython 3.7; it needs the main
//!   thread's loop, and its cost grows with the number of children it waits for.
//! - **Waitid** keeps Safe's contract at O(1) per exit: it peeks at the next exited
//!   child and reaps only its own. A child of other code that lingers unreaped, or a
//!   SIGCHLD whose child is already gone, costs it one of Safe's passes.
//! - **Fast** is for a process whose children are all its own: it reaps every child of
//!   the process, also those another library waits for.
//! - **MultiLoop** serves loops in any thread with one SIGCHLD handler, which must be
//!   installed (`attach_loop`, with any argument) from the main thread.
//! - Only Threaded keeps CPython's quirks of firing both callbacks of a pid registered
//!   twice and of a `remove_child_handler` that removes nothing; the others replace and
//!   remove.
//!
//! ## Code that works with any watcher
//!
//! 1. Set up in the main thread: make the loop current there with
//!    [`set_event_loop`](crate::set_event_loop), which attaches the policy's watcher to
//!    it (Safe and Fast attach, MultiLoop installs its handler, the others ignore it);
//!    or call [`ChildWatcher::attach_loop`] there yourself.
//! 2. Register from inside the running loop, in its thread (a task or callback of that
//!    loop): Threaded, Pidfd and MultiLoop report to the loop running where the child
//!    was registered, Safe and Fast to the attached loop, which must be running.
//! 3. Spawn and register inside one fork window ([`fork_window`]): Fast needs it (a
//!    child may exit before it is registered), and it costs the others nothing.
//! 4. Or let [`EventLoop::subprocess_exec`] do 2 and 3: it opens the window, refuses to
//!    spawn under an inactive watcher, and registers the child with its reap fence, so
//!    that [`Process::send_signal`](crate::Process::send_signal) never hits a reused
//!    pid.
//! 5. In tests: cargo runs each `#[test]` on a worker thread, where Safe, Fast and
//!    MultiLoop cannot attach (their error says so). Use Auto, Threaded or Pidfd there, or put
//!    the tests in a `harness = false` binary built on `loopwatch_sim::testing::Harness`,
//!    which runs each test on the main thread.
//!
//! ```
//! use std::sync::Arc;
//!
//! use loopwatch::kernel::SpawnRequest;
//! use loopwatch::{
//!     AutoChildWatcher, FastChildWatcher, MultiLoopChildWatcher, PidfdChildWatcher,
//!     SafeChildWatcher, ThreadedChildWatcher, WaitidChildWatcher, WatcherRef,
//! };
//!
//! /// Runs `sh -c 'exit 4'` under `watcher`; called from the main thread.
//! fn exit_code_under(watcher: WatcherRef) -> loopwatch::Result<i32> {
//!     let event_loop = loopwatch::new_event_loop()?;
//!     loopwatch::set_child_watcher(Some(watcher))?;
//!     // 1. Made current in the main thread: the watcher is attached to it.
//!     loopwatch::set_event_loop(Some(event_loop.clone()))?;
//!     let lp = event_loop.clone();
//!     // 2-4. subprocess_exec registers in the running loop, inside a fork window.
//!     let code = event_loop.run_until_complete(async move {
//!         let process = lp.subprocess_exec(&SpawnRequest::new("/bin/sh", ["-c", "exit 4"]))?;
//!         Ok::<_, loopwatch::Error>(process.wait().await)
//!     })??;
//!     loopwatch::set_event_loop(None)?;
//!     loopwatch::set_child_watcher(None)?; // closes the watcher
//!     event_loop.close()?;
//!     Ok(code)
//! }
//!
//! for watcher in [
//!     Arc::new(SafeChildWatcher::new()) as WatcherRef,
//!     Arc::new(FastChildWatcher::new()),
//!     Arc::new(MultiLoopChildWatcher::new()),
//!     Arc::new(ThreadedChildWatcher::new()),
//!     Arc::new(PidfdChildWatcher::new()),
//!     Arc::new(WaitidChildWatcher::new()),
//!     Arc::new(AutoChildWatcher::new()),
//! ] {
//!     assert_eq!(exit_code_under(watcher)?, 4);
//! }
//! # Ok::<(), loopwatch::Error>(())
//! ```
//!
//! # Why this is hard
//!
//! A Unix process learns of a child's death through SIGCHLD and collects its exit status
//! with `waitpid`. Three facts make every design a compromise:
//!
//! - **SIGCHLD coalesces.** Standard signals are a pending *set*, not a queue: ten
//!   children exiting before the handler runs give one SIGCHLD. A watcher must
//!   therefore look at every candidate on each signal, either by polling each pid it
//!   knows (`waitpid(pid, WNOHANG)`, O(n): [`SafeChildWatcher`]) or by reaping whatever
//!   has exited (`waitpid(-1)`, O(1) per child: [`FastChildWatcher`]).
//! - **Children are process-wide.** `waitpid(-1)` reaps children that other code (a
//!   library running its own subprocesses) is waiting for: that code then gets ECHILD.
//!   Fast steals; Safe, Threaded and Pidfd only ever wait for pids they were given.
//!   Conversely, someone else may reap *our* child first: Safe, Threaded and Pidfd see
//!   ECHILD and report returncode 255 with a warning (spec R-2); Fast never sees the
//!   pid again and never reports it (F-7).
//! - **Pids are reused.** Once a child is reaped its pid may belong to a new process at
//!   once. Anything that signals or waits for a pid after it was reaped may hit a
//!   stranger. A pidfd names one process for its whole life, which is why
//!   [`PidfdChildWatcher`] is the only watcher without a reuse race.
//!
//! Signal handlers only run safely in the main thread's loop (the wakeup fd), which is
//! why Safe and Fast need a loop attached from the main thread, while Threaded (one
//! blocking `waitpid` thread per child) and Pidfd (a pidfd in the running loop) work
//! from any thread's loop.
//!
//! # Where a SIGCHLD goes
//!
//! A child exits; the kernel makes its SIGCHLD pending for the process. From there:
//!
//! 1. **The OS handler** (`src/sys/unix/signal.rs`). loopwatch installs one
//!    `sigaction` handler for every signal it handles. It writes the signal number as
//!    one byte to an fd and does nothing else: the signal's own fd if the disposition is
//!    [`Disposition::Notify`], else the process's wakeup fd ([`Disposition::Wakeup`]).
//! 2. **The signal table and the wakeup fd** (`src/event_loop/signals.rs`). Which
//!    disposition SIGCHLD has, and which loop's pipe is the wakeup fd, is decided by
//!    the per-process signal table: the most recent owner of a signal has it, and the
//!    most recent loop with a handler owns the wakeup fd. A loop's write end becomes
//!    the wakeup fd; its read end is polled with the loop's other fds.
//! 3. **The loop** (`src/event_loop/run.rs`, `signals.rs`). A poll that finds the
//!    signal pipe readable drains it and queues the handler of each signal number read;
//!    the handler runs in the loop's thread as an ordinary callback, outside signal
//!    context. Ten exits may arrive as one byte: SIGCHLD coalesces.
//! 4. **Each watcher's path:**
//!    - **Safe and Fast** (`sigchld.rs`) hold SIGCHLD through their attached loop's
//!      `add_signal_handler` (hence the main thread). The loop runs their reaping
//!      pass: Safe polls each registered pid, Fast reaps with `waitpid(-1)`; the
//!      callbacks run there and then, in the loop's thread.
//!    - **MultiLoop** (`multi_loop.rs`) holds SIGCHLD with a `Notify` disposition on a
//!      pipe of its own, sharing the signal table with the loops. Its reaper thread
//!      blocks reading that pipe, polls the registered pids on each byte and hands
//!      each exit to the loop that was running at registration with
//!      `call_soon_threadsafe`.
//!    - **Threaded** (`threaded.rs`) ignores the signal: a waiter thread per child
//!      blocks in `waitpid` (a `WNOWAIT` peek, then the reap under the child's fence)
//!      and hands the returncode to its loop with `call_soon_threadsafe`. SIGCHLD only
//!      interrupts it (`EINTR`, retried).
//!    - **Pidfd** (`pidfd.rs`) ignores the signal too: the child's pidfd becomes
//!      readable when it exits, the running loop's poll reports it like any reader, and
//!      the reader reaps the child with `waitpid(pid, WNOHANG)`.
//! 5. **The simulator** (`sim/`, see its crate docs) models the same path under the
//!    seam: a child's SIGCHLD is offered first to the thread that spawned it, as Linux
//!    does, and handlers run on the taking thread's way back from its kernel call; the
//!    handler itself is the model's, writing the byte as the OS handler does. Where the
//!    signal lands, and when, is one of the seed's choices.
//!
//! # The trait
//!
//! [`ChildWatcher`] is asyncio's `AbstractChildWatcher`: `add_child_handler(pid,
//! callback)` (replacing an earlier handler for that pid, except with Threaded, which
//! fires both as CPython's does), `remove_child_handler`,
//! `attach_loop` (`None` detaches), `close`, `is_active`, and the fork window
//! ([`fork_window`], Python's `with watcher:`) inside which processes are started and
//! registered. The callback gets `(pid, returncode)`; extra arguments are captured by
//! the closure. The returncode follows spec R-1 ([`ExitStatus::returncode`]).
//!
//! Warnings CPython logs or warns are `tracing` events on target `asyncio` with
//! CPython's text, so tests can assert on them. Diagnostics of loopwatch's own, which
//! CPython does not give, are on target [`DIAGNOSTICS`] (`loopwatch`).
//!
//! # Signalling a child by pid: the reap fence
//!
//! Without a pidfd, [`Process::send_signal`](crate::Process::send_signal) can only
//! `kill()` a pid, and that is safe only while the pid is still its child's: until the
//! child is reaped. A flag "reaped" set when the watcher reports the exit comes too
//! late for the watchers that reap in a thread of their own (Threaded, MultiLoop): the
//! report reaches the loop after a `call_soon_threadsafe` hop, and in between the pid
//! may already name a stranger. So each process has a [`ReapFence`], shared with the
//! watcher through [`ChildWatcher::add_child_handler_fenced`]: the watcher holds the
//! fence across the `waitpid` that reaps the child and the marking, and `send_signal`
//! holds it across its check and its `kill()`. Either the signal goes first, to a child
//! that is at worst a zombie (whose pid nobody else can have), or the child is marked
//! reaped first and `send_signal` gives `ProcessLookupError`. No watcher ever blocks
//! while it holds a fence: Threaded waits with a `WNOWAIT` peek (the child stays a
//! zombie), then takes the fence and reaps with `WNOHANG`.
//!
//! A child that *other* code reaps (a foreign `waitpid(-1)`) is outside any fence: its
//! pid may be reused before the watcher learns of it. Only a pidfd closes that case,
//! which is why a process signals through one whenever the kernel has them. The fence
//! leads to that pidfd ([`ReapFence::pidfd`], a [`SharedPidfd`]) while the process
//! holds it, so that a watcher that polls pidfds (Pidfd) uses the process's own
//! instead of opening a second one. Other watchers keep the fence but not the pidfd:
//! a dropped process's pidfd is closed at once, whichever watcher waits for the child.
//!
//! # Loops dropped without `close`
//!
//! What loopwatch itself leaves in a loop's queue or reader table on a child's behalf
//! (the exit hop of a [`Process`](crate::Process), Threaded's and MultiLoop's pending
//! exits) holds the loop weakly, so a loop dropped without `close` is freed, with its
//! fds, as a closed one. A callback of the user's that captures a handle of its own
//! loop still keeps that loop alive while it is queued or registered: close loops
//! rather than drop them.
//!
//! # SIGCHLD set to `SIG_IGN`
//!
//! With SIGCHLD ignored the kernel reaps every child itself the moment it exits, so no
//! `waitpid` can read an exit status. The watchers that install their own SIGCHLD
//! handler (Safe and Fast through their loop, MultiLoop process-wide) replace
//! `SIG_IGN` for as long as they are attached, and do not see it. Threaded and Pidfd
//! never touch the disposition: with SIGCHLD ignored they report every child as 255, as
//! CPython's do. They say why, once per registration, with a `warn` event on target
//! [`DIAGNOSTICS`] naming the pid, rather than refusing to register: refusing would
//! make a program that inherited `SIG_IGN` (it survives `exec`) unable to start any
//! child, where CPython starts it and reports 255; the exit is still reported, so
//! nothing waits forever. The check costs one `sigaction` query per registration.
//!
//! Other code may also set `SIG_IGN` later, while children are registered. Every
//! watcher that reports a child as 255 because its status was already read (R-2) then
//! asks whether SIGCHLD is ignored; if it is, an `error` event on target
//! [`DIAGNOSTICS`] names the pid and says that `SIG_IGN` lost its status, so that the
//! 255s are never silent. (Safe, Fast and MultiLoop are replaced by `SIG_IGN` as by any
//! other handler: the next registration warns that exits will not be reported, see
//! "Where a SIGCHLD goes".)
//!
//! # Another library's SIGCHLD handler
//!
//! When loopwatch installs its SIGCHLD handler (Safe and Fast through their loop,
//! MultiLoop process-wide) over a handler that other code had installed, it does not
//! clobber it: loopwatch's handler writes its byte, then runs the other handler with
//! the arguments the kernel gave ([`Signals::chain_foreign`](crate::kernel::Signals::chain_foreign)).
//! Both hear every exit, and the other handler is put back when loopwatch's last
//! SIGCHLD owner leaves. CPython's `add_signal_handler` replaces it, and the other
//! library's children are then never reaped. A handler that reaps every child
//! (`waitpid(-1)`) still steals loopwatch's children, which are reported as 255 (R-2):
//! only the pidfd watchers are immune. Other signals are taken over, as in CPython.

mod auto;
mod fast;
mod multi_loop;
mod orphans;
mod pidfd;
mod safe;
mod sigchld;
#[cfg(test)]
mod tests_os;
mod threaded;
mod waitid;

use std::fmt;

pub use auto::{AutoChildWatcher, Rung};
pub use fast::FastChildWatcher;
pub use multi_loop::MultiLoopChildWatcher;
pub use pidfd::PidfdChildWatcher;
pub use safe::SafeChildWatcher;
pub use threaded::ThreadedChildWatcher;
pub use waitid::WaitidChildWatcher;

use std::sync::Arc;

use crate::OsKernel;
use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::kernel::{
    Disposition, Errno, ExitStatus, Fd, Kernel, Pid, Signal, WaitMode, WaitStatus,
};
use crate::sync::{BlockingMutex, BlockingMutexGuard};

/// What a watcher calls when a child exits: `(pid, returncode)`.
pub type ChildCallback = Box<dyn FnOnce(Pid, i32) + Send + 'static>;

/// The `tracing` target of loopwatch's own diagnostics (those CPython does not give):
/// stable, so that an application can filter on it.
pub const DIAGNOSTICS: &str = "loopwatch";

/// Whether one child has been reaped, under a lock that whoever reaps it holds across
/// the reaping `waitpid` and the marking, and whoever signals it by pid holds across the
/// check and the `kill()` (see the [module documentation](self#signalling-a-child-by-pid-the-reap-fence)).
///
/// Clones share the fence. It is a kernel lock ([`BlockingMutex`]), as `kill` and
/// `waitpid` are kernel calls; nobody blocks while holding it.
///
/// It also leads to the child's pidfd, while its spawner holds one.
pub struct ReapFence<K: Kernel = OsKernel> {
    reaped: Arc<BlockingMutex<K, bool>>,
    /// Weak: a watcher that keeps the fence for as long as the child runs (Threaded's
    /// waiter, a SIGCHLD watcher's table) must not keep its pidfd open after the
    /// process let go of it.
    pidfd: Option<std::sync::Weak<PidfdOwner<K>>>,
}

impl<K: Kernel> Clone for ReapFence<K> {
    fn clone(&self) -> Self {
        ReapFence {
            reaped: self.reaped.clone(),
            pidfd: self.pidfd.clone(),
        }
    }
}

impl<K: Kernel> ReapFence<K> {
    /// A fence for a child not reaped yet.
    pub fn new(kernel: &K) -> ReapFence<K> {
        ReapFence::with_pidfd(kernel, None)
    }

    /// A fence for a child not reaped yet, leading to its pidfd (opened before anyone
    /// could reap the child, so that it names this child and no other) for as long as
    /// the caller keeps `pidfd`.
    pub fn with_pidfd(kernel: &K, pidfd: Option<&SharedPidfd<K>>) -> ReapFence<K> {
        ReapFence {
            reaped: Arc::new(BlockingMutex::new(kernel, false)),
            pidfd: pidfd.map(|p| Arc::downgrade(&p.0)),
        }
    }

    /// The child's pidfd, if its spawner opened one and still holds it. The clone
    /// keeps it open.
    pub fn pidfd(&self) -> Option<SharedPidfd<K>> {
        self.pidfd.as_ref()?.upgrade().map(SharedPidfd)
    }

    /// Takes the fence: until the guard is dropped, nobody else reaps the child (through
    /// a fence-aware watcher) or signals it by pid.
    pub fn lock(&self) -> ReapGuard<'_, K> {
        ReapGuard {
            reaped: self.reaped.lock(),
        }
    }

    /// Whether the child has been marked reaped.
    pub fn is_reaped(&self) -> bool {
        *self.reaped.lock()
    }
}

impl<K: Kernel> fmt::Debug for ReapFence<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReapFence(reaped={})", self.is_reaped())
    }
}

/// A pidfd shared by everyone who needs it for one child (its [`Process`](crate::Process)
/// to signal it, a watcher to poll it), closed when the last clone is dropped.
pub struct SharedPidfd<K: Kernel = OsKernel>(Arc<PidfdOwner<K>>);

struct PidfdOwner<K: Kernel> {
    kernel: K,
    fd: Fd,
}

impl<K: Kernel> Drop for PidfdOwner<K> {
    fn drop(&mut self) {
        // An error would mean someone else closed our fd: nothing is left to release.
        let _ = self.kernel.close(self.fd);
    }
}

impl<K: Kernel> SharedPidfd<K> {
    /// Takes ownership of `fd`, a pidfd of `kernel`'s: it is closed once this value and
    /// all its clones are dropped.
    pub fn new(kernel: &K, fd: Fd) -> SharedPidfd<K> {
        SharedPidfd(Arc::new(PidfdOwner {
            kernel: kernel.clone(),
            fd,
        }))
    }

    /// The fd, open for as long as this value lives.
    pub fn fd(&self) -> Fd {
        self.0.fd
    }
}

impl<K: Kernel> Clone for SharedPidfd<K> {
    fn clone(&self) -> Self {
        SharedPidfd(self.0.clone())
    }
}

impl<K: Kernel> fmt::Debug for SharedPidfd<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedPidfd({})", self.0.fd.0)
    }
}

/// A held [`ReapFence`].
pub struct ReapGuard<'a, K: Kernel = OsKernel> {
    reaped: BlockingMutexGuard<'a, K, bool>,
}

impl<K: Kernel> ReapGuard<'_, K> {
    /// Whether the child has been marked reaped.
    pub fn is_reaped(&self) -> bool {
        *self.reaped
    }

    /// Marks the child reaped: from now on its pid may name another process.
    pub fn mark_reaped(&mut self) {
        *self.reaped = true;
    }
}

impl<K: Kernel> fmt::Debug for ReapGuard<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReapGuard(reaped={})", self.is_reaped())
    }
}

/// The child watcher interface (asyncio's `AbstractChildWatcher`, spec W-2).
///
/// asyncio's methods (`add_child_handler`, `remove_child_handler`, `attach_loop`,
/// `close`, `is_active`) are required: Rust has no instances of an abstract class, so
/// W-1's `NotImplementedError` cannot arise.
///
/// # Wrappers delegate by construction
///
/// The fork window ([`ChildWatcher::enter`], [`ChildWatcher::exit`]) and
/// [`ChildWatcher::attached_loop`] have provided bodies, since most watchers have no
/// use for them. A watcher that wraps another must still pass them on: a wrapper of
/// [`FastChildWatcher`] that kept the provided no-op `enter` would compile, and Fast
/// would then refuse every registration ("Must use the context manager"). So
/// [`ChildWatcher::inner`] is required: every implementation says whether it wraps a
/// watcher. A wrapper answers `Some(&self.inner)`, and the provided `enter`, `exit` and
/// `attached_loop` forward to it; there is nothing left to forget. A watcher that does
/// its own work answers `None`, and overrides what it needs (Fast its fork window, Safe
/// and Fast `attached_loop`).
///
/// What a wrapper writes are the required methods, where it adds its own behaviour, and
/// forwards them otherwise. [`ChildWatcher::type_name`] is the wrapper's own name.
/// [`ChildWatcher::add_child_handler_fenced`]'s provided body goes through the
/// wrapper's `add_child_handler`, so the wrapper's behaviour applies to
/// `subprocess_exec`'s children too, and marks the fence when the callback runs: a
/// wrapper of a watcher that reports from a thread of its own (Threaded, MultiLoop)
/// should forward `add_child_handler_fenced` as well, wrapping the callback as its
/// `add_child_handler` does.
///
/// # Example
///
/// A wrapper that counts the children it is given; all else is Fast's, fork window
/// included (doc tests run on their process's main thread, which Fast needs):
///
/// ```
/// use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// use loopwatch::kernel::{Pid, Processes, SpawnRequest};
/// use loopwatch::watcher::{ChildCallback, fork_window};
/// use loopwatch::{ChildWatcher, EventLoop, FastChildWatcher, Result};
///
/// #[derive(Debug)]
/// struct Counting {
///     inner: FastChildWatcher,
///     given: AtomicUsize,
/// }
///
/// impl ChildWatcher for Counting {
///     fn inner(&self) -> Option<&dyn ChildWatcher> {
///         Some(&self.inner)
///     }
///     fn add_child_handler(&self, pid: Pid, callback: ChildCallback) -> Result<()> {
///         self.given.fetch_add(1, Ordering::SeqCst);
///         self.inner.add_child_handler(pid, callback)
///     }
///     fn remove_child_handler(&self, pid: Pid) -> bool {
///         self.inner.remove_child_handler(pid)
///     }
///     fn attach_loop(&self, event_loop: Option<EventLoop>) -> Result<()> {
///         self.inner.attach_loop(event_loop)
///     }
///     fn close(&self) -> Result<()> {
///         self.inner.close()
///     }
///     fn is_active(&self) -> bool {
///         self.inner.is_active()
///     }
/// }
///
/// let watcher = Counting { inner: FastChildWatcher::new(), given: AtomicUsize::new(0) };
/// let event_loop = EventLoop::new()?;
/// watcher.attach_loop(Some(event_loop.clone()))?;
/// assert!(watcher.attached_loop() == Some(event_loop.clone())); // Fast's, forwarded
/// assert_eq!(watcher.type_name(), "Counting");
/// let code = Arc::new(AtomicI32::new(0));
/// {
///     // Fast's window, opened through the wrapper.
///     let _window = fork_window(&watcher);
///     let child = loopwatch::OsKernel.spawn(&SpawnRequest::new("/bin/sh", ["-c", "exit 5"]))?;
///     let (seen, stopper) = (code.clone(), event_loop.clone());
///     watcher.add_child_handler(
///         child.pid,
///         Box::new(move |_pid, returncode| {
///             seen.store(returncode, Ordering::SeqCst);
///             stopper.stop();
///         }),
///     )?;
/// }
/// event_loop.run_forever()?;
/// assert_eq!(code.load(Ordering::SeqCst), 5);
/// assert_eq!(watcher.given.load(Ordering::SeqCst), 1);
/// watcher.close()?;
/// event_loop.close()?;
/// # Ok::<(), loopwatch::Error>(())
/// ```
pub trait ChildWatcher<K: Kernel = OsKernel>: Send + Sync + fmt::Debug + 'static {
    /// The watcher this one wraps, if it is a wrapper: the provided
    /// [`ChildWatcher::enter`], [`ChildWatcher::exit`] and
    /// [`ChildWatcher::attached_loop`] forward to it. `None` for a watcher that does
    /// its own work (every watcher of this crate). Required, so that no wrapper can
    /// leave the fork window behind by omission (see the trait's documentation).
    fn inner(&self) -> Option<&dyn ChildWatcher<K>>;

    /// Arranges for `callback(pid, returncode)` once `pid` exits. Registering `pid`
    /// again replaces the earlier callback (every watcher of this crate but
    /// [`ThreadedChildWatcher`], which fires both as CPython's does).
    ///
    /// # Errors
    ///
    /// `ValueError` for a pid ≤ 0; otherwise as each watcher documents.
    fn add_child_handler(&self, pid: Pid, callback: ChildCallback) -> Result<()>;

    /// As [`ChildWatcher::add_child_handler`], and marks `fence` reaped in the same
    /// critical section as the `waitpid` that reaps `pid` (or finds it reaped by
    /// someone else), before anything else can run: what
    /// [`EventLoop::subprocess_exec`](crate::EventLoop::subprocess_exec) registers
    /// with, so that its [`Process`](crate::Process) never signals a reused pid.
    ///
    /// Every watcher of this crate implements it. The provided body, for a watcher of
    /// your own, registers through `add_child_handler` and marks the fence when the
    /// callback is called: sound for a watcher that calls back in the thread that
    /// reaped, as soon as it reaped; one that reports from another thread should
    /// override this method and take the fence around its own `waitpid`.
    ///
    /// # Errors
    ///
    /// As [`ChildWatcher::add_child_handler`].
    fn add_child_handler_fenced(
        &self,
        pid: Pid,
        fence: ReapFence<K>,
        callback: ChildCallback,
    ) -> Result<()> {
        self.add_child_handler(
            pid,
            Box::new(move |pid, code| {
                fence.lock().mark_reaped();
                callback(pid, code);
            }),
        )
    }

    /// Forgets the callback for `pid`; returns whether there was one.
    fn remove_child_handler(&self, pid: Pid) -> bool;

    /// Attaches the watcher to `event_loop`, detaching it from any previous loop first;
    /// `None` only detaches.
    ///
    /// # Errors
    ///
    /// As each watcher documents (signal-based watchers need the main thread).
    fn attach_loop(&self, event_loop: Option<EventLoop<K>>) -> Result<()>;

    /// Releases what the watcher holds (signal handlers, fds, threads).
    ///
    /// # Errors
    ///
    /// As each watcher documents.
    fn close(&self) -> Result<()>;

    /// Whether the watcher can deliver exits now (spec matrix 1.N).
    fn is_active(&self) -> bool;

    /// The loop the watcher is attached to (CPython's `_loop`), for the watchers that
    /// attach to one (Safe, Fast); `None` for the others. Provided: the
    /// [inner](ChildWatcher::inner) watcher's, else `None`.
    fn attached_loop(&self) -> Option<EventLoop<K>> {
        self.inner().and_then(|inner| inner.attached_loop())
    }

    /// The name of the watcher's type, also through a `dyn ChildWatcher` (Python's
    /// `type(watcher).__name__`): `"SafeChildWatcher"`, without module path or generic
    /// arguments. A wrapper has its own.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use loopwatch::{ChildWatcher, SafeChildWatcher, WatcherRef};
    ///
    /// let watcher: WatcherRef = Arc::new(SafeChildWatcher::new());
    /// assert_eq!(watcher.type_name(), "SafeChildWatcher");
    /// ```
    fn type_name(&self) -> &'static str {
        short_type_name::<Self>()
    }

    /// Opens a fork window (Python's `__enter__`). Windows nest. Provided: the
    /// [inner](ChildWatcher::inner) watcher's, else nothing.
    fn enter(&self) {
        if let Some(inner) = self.inner() {
            inner.enter();
        }
    }

    /// Closes a fork window (Python's `__exit__`). Provided: the
    /// [inner](ChildWatcher::inner) watcher's, else nothing.
    fn exit(&self) {
        if let Some(inner) = self.inner() {
            inner.exit();
        }
    }
}

/// A type's name as Python's `__name__` gives a class's: the last segment of its path,
/// without generic arguments (`SafeChildWatcher` for
/// `loopwatch::watcher::safe::SafeChildWatcher<loopwatch::sys::unix::OsKernel>`), so
/// that no private module path shows.
fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let path = full.split('<').next().unwrap_or(full);
    path.rsplit("::").next().unwrap_or(path)
}

/// An open fork window: processes started and registered while it lives are the
/// watcher's, even if they exit before they are registered. Dropping it closes it.
pub struct ForkWindow<'a, K: Kernel, W: ChildWatcher<K> + ?Sized> {
    watcher: &'a W,
    _kernel: std::marker::PhantomData<K>,
}

impl<K: Kernel, W: ChildWatcher<K> + ?Sized> Drop for ForkWindow<'_, K, W> {
    fn drop(&mut self) {
        self.watcher.exit();
    }
}

impl<K: Kernel, W: ChildWatcher<K> + ?Sized> fmt::Debug for ForkWindow<'_, K, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ForkWindow({:?})", self.watcher)
    }
}

/// Opens a fork window on `watcher` (Python's `with watcher:`).
pub fn fork_window<K: Kernel, W: ChildWatcher<K> + ?Sized>(watcher: &W) -> ForkWindow<'_, K, W> {
    watcher.enter();
    ForkWindow {
        watcher,
        _kernel: std::marker::PhantomData,
    }
}

/// The end of CPython's "… only works in main thread" errors, which the loop raises when
/// a signal handler is set or removed from another thread.
const MAIN_THREAD_ONLY: &str = "only works in main thread";

/// `error` with what to do appended, if it is the loop's refusal to handle signals
/// outside the main thread and `watcher` is the signal-based watcher that ran into it
/// (the users' first hurdle: cargo runs `#[test]`s on worker threads). CPython's
/// message comes first and the class is kept: conformance compares classes.
pub(crate) fn main_thread_hint(error: Error, watcher: &str) -> Error {
    if !error.message().ends_with(MAIN_THREAD_ONLY) {
        return error;
    }
    let hint = match watcher {
        "MultiLoopChildWatcher" => {
            "MultiLoopChildWatcher must be attached once from the main thread (attach_loop \
             installs its process-wide SIGCHLD handler), then serves loops in any thread; \
             without the main thread use AutoChildWatcher, ThreadedChildWatcher or PidfdChildWatcher"
                .to_string()
        }
        _ => format!(
            "{watcher} needs the main thread's loop; in other threads use \
             AutoChildWatcher, ThreadedChildWatcher or PidfdChildWatcher"
        ),
    };
    Error::new(error.kind(), format!("{}: {hint}", error.message()))
}

/// What to do about a watcher that is not active, for the "not activated" error of
/// [`EventLoop::subprocess_exec`](crate::EventLoop::subprocess_exec) (spec L-1),
/// named by its [`ChildWatcher::type_name`].
pub(crate) fn inactive_hint(watcher: &str) -> String {
    match watcher {
        "SafeChildWatcher" | "FastChildWatcher" | "WaitidChildWatcher" => format!(
            "{watcher} reports to the loop it is attached to, while that loop runs: attach \
             it to this loop from the main thread (set_event_loop or attach_loop there); \
             in other threads use AutoChildWatcher, ThreadedChildWatcher or PidfdChildWatcher"
        ),
        "MultiLoopChildWatcher" => "MultiLoopChildWatcher must be attached once from the \
             main thread (attach_loop) to install its SIGCHLD handler; without the main \
             thread use AutoChildWatcher, ThreadedChildWatcher or PidfdChildWatcher"
            .to_string(),
        other => format!("{other}.is_active() is false"),
    }
}

/// Refuses pids that `waitpid` would read as "any child" or a process group.
pub(crate) fn check_pid(pid: Pid) -> Result<()> {
    if pid.0 <= 0 {
        return Err(Error::value(format!(
            "pid must be a positive process id, not {}",
            pid.0
        )));
    }
    Ok(())
}

/// The returncode of a status (spec R-1).
pub(crate) fn returncode(status: ExitStatus) -> i32 {
    status.returncode()
}

/// One `waitpid(pid, WNOHANG)` as the polling watchers do it (`_do_waitpid`):
/// `None` while the child runs; its returncode once reaped; 255 with spec R-2's
/// warning when somebody else reaped it. `EINTR` is retried; other errors returned.
///
/// With a `fence`, the fence is held across the wait and marked reaped whenever the
/// pid turns out to be no longer the child's (reaped here or elsewhere).
pub(crate) fn poll_returncode<K: Kernel>(
    kernel: &K,
    pid: Pid,
    fence: Option<&ReapFence<K>>,
) -> Result<Option<i32>> {
    let mut guard = fence.map(ReapFence::lock);
    let (code, elsewhere) = loop {
        match kernel.wait_pid(pid, WaitMode::NoHang) {
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(WaitStatus::Terminated(_, status)) => break (returncode(status), false),
            Err(Errno::ECHILD) => break (255, true),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    };
    if let Some(guard) = guard.as_mut() {
        guard.mark_reaped();
    }
    drop(guard);
    if elsewhere {
        warn_unknown_child(pid);
    }
    Ok(Some(code))
}

/// Whether SIGCHLD is ignored, so that the kernel reaps children itself; warns then on
/// target [`DIAGNOSTICS`] that `pid` will be reported as 255 (see the module
/// documentation). A disposition that cannot be read counts as not ignored.
pub(crate) fn warn_if_sigchld_ignored<K: Kernel>(kernel: &K, pid: Pid) -> bool {
    let ignored = kernel.disposition(Signal::SIGCHLD) == Ok(Disposition::Ignore);
    if ignored {
        tracing::warn!(
            target: DIAGNOSTICS,
            pid = pid.0,
            "SIGCHLD is ignored (SIG_IGN): the kernel reaps children itself, so no exit \
             status can be read and pid {} will be reported with returncode 255",
            pid.0
        );
    }
    ignored
}

/// For a child whose status was already read (R-2's 255): if SIGCHLD is ignored now,
/// the kernel reaped it, and the 255 is no foreign `waitpid`'s doing but the
/// disposition's, which will lose every later child's status too. Says so with an
/// `error` event on target [`DIAGNOSTICS`] naming the pid and what to do. Costs one
/// `sigaction` query, on this path only, made once the report is on its way (the
/// watchers that never install a SIGCHLD handler call it: Threaded, Pidfd, Auto).
pub(crate) fn explain_if_sigchld_ignored<K: Kernel>(kernel: &K, pid: Pid) {
    if kernel.disposition(Signal::SIGCHLD) == Ok(Disposition::Ignore) {
        tracing::error!(
            target: DIAGNOSTICS,
            pid = pid.0,
            "SIGCHLD is set to SIG_IGN: the kernel reaped pid {} itself and its exit \
             status is lost (returncode 255), as every child's will be while it stays \
             ignored; restore SIGCHLD's disposition (SIG_DFL) where it was set to SIG_IGN",
            pid.0
        );
    }
}

/// Spec R-2's warning for a child somebody else reaped.
pub(crate) fn warn_unknown_child(pid: Pid) {
    tracing::warn!(
        target: "asyncio",
        "Unknown child process pid {}, will report returncode 255",
        pid.0
    );
}
