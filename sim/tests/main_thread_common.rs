//! What the `main_thread_*` test binaries share: their `main`, what each kernel shows
//! beyond the seam, the policy's set-up of a watcher, loops in worker threads, and
//! (in [`fork`]) the few real-OS operations the seam does not offer.
//!
//! Each binary uses a part of it.

#![allow(
    dead_code,
    reason = "each main_thread_* binary uses a part of this module"
)]

use std::any::Any;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use loopwatch::kernel::{Kernel, Signal, SpawnRequest, Stdio};
use loopwatch::policy;
use loopwatch::{
    EventLoop, FastChildWatcher, MultiLoopChildWatcher, OsKernel, PidfdChildWatcher, Result,
    SafeChildWatcher, ThreadedChildWatcher, WatcherRef,
};
use loopwatch_sim::SimKernel;
use loopwatch_sim::testing::{self, Log, Resources, Test};

/// How long (seconds; virtual ones on the simulator) a test waits for what should
/// happen at once before it fails instead of hanging. Generous: a loaded machine must
/// not fail a test.
pub(crate) const PATIENCE: f64 = 120.0;

/// The binary's `main`: puts back the signals the tests rely on, opens what the
/// process keeps open anyway, then runs `tests` on the main thread, one at a time,
/// each on the real OS from a fresh default policy (the harness sets it).
pub(crate) fn main(tests: impl IntoIterator<Item = Test>) -> ExitCode {
    reset_inherited_ignores();
    warm_up();
    testing::main(tests)
}

/// Reliability finding 7: the signals whose default actions these tests rely on
/// (SIGCHLD reaches the watchers; a child spawned without `restore_signals` is killed
/// by SIGTERM; SIGUSR1 and SIGUSR2 are SIG_DFL before a handler is added and after it
/// is removed) are put back to SIG_DFL if this binary inherited them ignored, as
/// under `nohup` or as a background job. A handler cannot be inherited, so SIG_IGN
/// is all there is to undo.
fn reset_inherited_ignores() {
    testing::undo_inherited_ignores(&[
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTERM,
    ]);
}

/// Opens once what the process keeps open afterwards (the first loop's process-wide
/// state, the first spawn's), so that the first test's leak account starts from it.
fn warm_up() {
    let event_loop = EventLoop::new().expect("a loop");
    event_loop.close().expect("close the loop");
    let pid = testing::spawn_sh(&OsKernel, "exit 0");
    assert_eq!(testing::reap(&OsKernel, pid), 0);
}

// ----- what each kernel shows beyond the seam ----------------------------------------

/// `Some` on the real OS.
pub(crate) fn os<K: Kernel>(k: &K) -> Option<&OsKernel> {
    (k as &dyn Any).downcast_ref::<OsKernel>()
}

/// The simulator's kernel, when the body runs there.
pub(crate) fn sim<K: Kernel>(k: &K) -> Option<&SimKernel> {
    (k as &dyn Any).downcast_ref::<SimKernel>()
}

/// Children of the process, running or zombie.
pub(crate) fn child_count<K: Kernel>(k: &K) -> usize {
    match sim(k) {
        Some(s) => {
            let (running, zombies) = s.children_left();
            running + zombies
        }
        None => Resources::of_this_process().expect("read /proc").children,
    }
}

/// Open fds of the process (on the simulator: other than 0, 1 and 2).
pub(crate) fn fd_count<K: Kernel>(k: &K) -> usize {
    match sim(k) {
        Some(s) => s.open_fds(),
        None => Resources::of_this_process().expect("read /proc").fds,
    }
}

/// Threads of the process, on the real OS (`None` on the simulator, whose threads
/// the run's report counts: see [`Test::check_leaks`]).
pub(crate) fn thread_count<K: Kernel>(k: &K) -> Option<usize> {
    os(k)?;
    Some(Resources::of_this_process().expect("read /proc").threads)
}

/// Calls `probe` every 10 ms (of the kernel's clock) until it is true, for at most
/// [`PATIENCE`]; says whether it became true.
pub(crate) fn poll_until<K: Kernel>(k: &K, mut probe: impl FnMut() -> bool) -> bool {
    let step = Duration::from_millis(10);
    for _ in 0..(PATIENCE * 100.0) as usize {
        if probe() {
            return true;
        }
        k.sleep(step);
    }
    probe()
}

// ----- requests, watchers, loops and the policy ---------------------------------------

/// `program` without arguments.
pub(crate) fn bare(program: &str) -> SpawnRequest {
    SpawnRequest::new(program, Vec::<String>::new())
}

/// Which watcher a body installs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Safe,
    Fast,
    MultiLoop,
    Threaded,
    Pidfd,
}

impl Kind {
    /// A new watcher of this kind over `k`.
    pub(crate) fn make<K: Kernel>(self, k: &K) -> WatcherRef<K> {
        let k = k.clone();
        match self {
            Kind::Safe => Arc::new(SafeChildWatcher::with_kernel(k)),
            Kind::Fast => Arc::new(FastChildWatcher::with_kernel(k)),
            Kind::MultiLoop => Arc::new(MultiLoopChildWatcher::with_kernel(k)),
            Kind::Threaded => Arc::new(ThreadedChildWatcher::with_kernel(k)),
            Kind::Pidfd => Arc::new(PidfdChildWatcher::with_kernel(k)),
        }
    }
}

/// `request` with pipes for the chosen standard streams.
pub(crate) fn with_pipes(
    mut request: SpawnRequest,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> SpawnRequest {
    if stdin {
        request.stdin = Stdio::Pipe;
    }
    if stdout {
        request.stdout = Stdio::Pipe;
    }
    if stderr {
        request.stderr = Stdio::Pipe;
    }
    request
}

/// The main thread's loop with `watcher` installed as the policy's and attached, as
/// CPython's SubprocessWatcherMixin sets up.
pub(crate) fn install<K: Kernel>(k: &K, watcher: WatcherRef<K>) -> Result<EventLoop<K>> {
    let event_loop = policy::new_event_loop(k)?;
    policy::set_event_loop(k, Some(event_loop.clone()))?;
    policy::set_child_watcher(k, Some(watcher.clone()))?;
    watcher.attach_loop(Some(event_loop.clone()))?;
    Ok(event_loop)
}

/// Undoes [`install`]: no watcher, no current loop, the loop closed.
pub(crate) fn uninstall<K: Kernel>(k: &K, event_loop: EventLoop<K>) -> Result<()> {
    policy::set_child_watcher(k, None)?;
    policy::set_event_loop(k, None)?;
    event_loop.close()
}

/// Runs `body` with a fresh loop in a new thread named `Worker-S` (not the main
/// thread), closes the loop, and returns what `body` returned; re-raises its panic.
pub(crate) fn in_worker<K: Kernel, T: Send + 'static>(
    k: &K,
    body: impl FnOnce(&EventLoop<K>) -> Result<T> + Send + 'static,
) -> Result<T> {
    let out = Log::new();
    let (slot, k2) = (out.clone(), k.clone());
    let handle = k
        .spawn_thread(
            "Worker-S",
            Box::new(move || {
                assert!(!k2.is_main_thread(), "a worker is not the main thread");
                let result = EventLoop::with_kernel(k2).and_then(|event_loop| {
                    let result = body(&event_loop);
                    event_loop.close()?;
                    result
                });
                slot.push(result);
            }),
        )
        .expect("start the worker");
    if let Err(payload) = k.join_thread(handle) {
        std::panic::resume_unwind(payload);
    }
    out.take().pop().expect("the worker's result")
}

/// Sleeps on the loop, as `asyncio.sleep(seconds)`: the task is woken by a timer, so
/// the loop blocks in its poll meanwhile (and the simulator's clock moves on).
pub(crate) async fn sleep<K: Kernel>(event_loop: &EventLoop<K>, seconds: f64) {
    let done = Arc::new(AtomicBool::new(false));
    let mut timer = None;
    std::future::poll_fn(|cx| {
        if done.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        if timer.is_none() {
            let (flag, waker) = (done.clone(), cx.waker().clone());
            timer = Some(
                event_loop
                    .call_later(seconds, move || {
                        flag.store(true, Ordering::SeqCst);
                        waker.wake();
                    })
                    .expect("call_later"),
            );
        }
        Poll::Pending
    })
    .await;
}

// ----- what the seam does not offer: fork, libc's sigaction --------------------------

/// The real-OS operations a few tests need and the `Kernel` seam does not offer:
/// `fork` without exec, closing this process's own stdio, and installing a SIGCHLD
/// handler with libc as another library would. The simulator models one process
/// whose children run no code, so the tests that fork run on the real OS alone.
pub(crate) mod fork {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use loopwatch::kernel::Pid;

    /// Forks; the child runs `child`, whose result is its exit code (101 if it
    /// panicked), and ends there without returning into this copy of the test
    /// runner. Returns the child's pid.
    ///
    /// Only sound while the process has one thread: the harness runs each test on the
    /// main thread, and the tests join every thread they start before they fork.
    pub(crate) fn fork_running(child: impl FnOnce() -> i32) -> Pid {
        // SAFETY: the process is single-threaded here (see above), so the child may
        // run Rust code: no lock is held by a thread that does not exist in it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = catch_unwind(AssertUnwindSafe(child)).unwrap_or(101);
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) };
        }
        Pid(pid)
    }

    /// Forks a child that does not exec and sleeps for ten minutes: it holds copies
    /// of every fd. Sound whatever other threads run, as the child calls only
    /// async-signal-safe functions.
    pub(crate) fn fork_sleeper() -> Pid {
        // SAFETY: the child only calls async-signal-safe functions (sleep, _exit), so
        // it is sound whatever the parent's other threads held at the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                libc::sleep(600);
                libc::_exit(0);
            }
        }
        Pid(pid)
    }

    /// Closes this process's fds 0, 1 and 2: for a forked child playing a daemon.
    pub(crate) fn close_stdio() {
        for fd in 0..3 {
            // SAFETY: closes one of this process's own standard fds; nothing in it
            // holds them as Rust-owned handles.
            unsafe { libc::close(fd) };
        }
    }

    static FOREIGN_SIGCHLD: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn foreign_sigchld(_signum: libc::c_int) {
        FOREIGN_SIGCHLD.fetch_add(1, Ordering::SeqCst);
    }

    /// Another library's SIGCHLD handler, installed with libc behind loopwatch's back.
    #[derive(Debug)]
    pub(crate) struct ForeignSigchld(libc::sighandler_t);

    impl ForeignSigchld {
        /// Installs the handler, which counts the signals it receives.
        pub(crate) fn install() -> ForeignSigchld {
            FOREIGN_SIGCHLD.store(0, Ordering::SeqCst);
            // SAFETY: sigaction is plain data; all-zero is an empty mask with no flags.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction =
                foreign_sigchld as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            // SAFETY: `action` is valid and its handler only bumps an atomic.
            let rc = unsafe { libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()) };
            assert_eq!(rc, 0, "sigaction(SIGCHLD)");
            ForeignSigchld(action.sa_sigaction)
        }

        /// Whether it is SIGCHLD's handler now, straight from libc.
        pub(crate) fn is_installed(&self) -> bool {
            // SAFETY: sigaction is plain data; all-zero is valid to be overwritten.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: a NULL new action only queries; `action` is writable.
            let rc = unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut action) };
            assert_eq!(rc, 0, "sigaction(SIGCHLD)");
            action.sa_sigaction == self.0
        }

        /// How many signals it has received.
        pub(crate) fn deliveries(&self) -> usize {
            FOREIGN_SIGCHLD.load(Ordering::SeqCst)
        }
    }
}
