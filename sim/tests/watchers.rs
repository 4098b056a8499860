//! `ThreadedChildWatcher` and `PidfdChildWatcher` (and the errors that point users of
//! the other watchers to them off the main thread), each behaviour written once and run
//! on both kernels: `name [os]` on the real OS (on the main thread of this binary, one
//! test at a time, so `/proc` shows only what the test holds), `name [sim]` on the
//! simulator over many seeds (every interleaving of waiter threads, child exits and
//! the loop's polls the seed picks). The loop always runs in a thread that is not the
//! main thread.
//!
//! Every test checks what it leaves behind ([`Test::check_leaks`]): no child, fd or
//! thread more than before. Where one kernel can tell more than the other (the OS's
//! pidfds and thread names in `/proc`, the simulator's trace), the body or the arm's
//! report check looks at it.
//!
//! What only the simulator can show (injected faults, pid reuse, a foreign reaper,
//! the cost of one exit, a replay from the seed) runs there alone, in the last
//! section; the OS test that needs the crate's test-only pidfd switch stays in
//! `src/watcher/tests_os.rs`.
//!
//! `cargo test -p loopwatch-sim --test watchers [NAME]`; `LOOPWATCH_SEEDS=N` and
//! `LOOPWATCH_SEED=S` choose the simulator's seeds.

use std::any::Any;
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use loopwatch::kernel::{
    Clock, Disposition, Errno, ExitStatus, Fds, Kernel, Pid, Processes, Signal, Signals,
    SpawnRequest, ThreadId, Threads, WaitMode, WaitStatus, WaitTarget,
};
use loopwatch::watcher::{AutoChildWatcher, ChildCallback, MultiLoopChildWatcher, Rung};
use loopwatch::{
    ChildWatcher, ErrorKind, EventLoop, ExceptionContext, FastChildWatcher, OsKernel,
    PidfdChildWatcher, SafeChildWatcher, ThreadedChildWatcher,
};
use loopwatch_sim::testing::{self, Body, Capture, Log, Resources, Sweep, Test};
use loopwatch_sim::{
    FaultPlan, PidReuse, Report, SimKernel, Simulation, actors, check_determinism,
};

/// How long (seconds; virtual ones on the simulator) a test waits for what should
/// happen at once before it fails instead of hanging. Generous: a loaded machine must
/// not fail a test.
const PATIENCE: f64 = 120.0;

/// How many children the large tests register.
const MANY: usize = 1000;

/// Threaded's large test starts at most this many children (and threads) at a time.
const THREAD_BATCH: usize = 100;

/// Seeds of each simulator arm (the large tests run fewer).
const SEEDS: u64 = 20;

// ----- what each kernel shows beyond the seam ----------------------------------------

/// `Some` on the real OS, whose process `/proc` describes.
fn os<K: Kernel>(k: &K) -> Option<&OsKernel> {
    (k as &dyn Any).downcast_ref::<OsKernel>()
}

/// The simulator's kernel, when the body runs there.
fn sim<K: Kernel>(k: &K) -> Option<&SimKernel> {
    (k as &dyn Any).downcast_ref::<SimKernel>()
}

/// Open fds of the process (on the simulator: other than 0, 1 and 2).
fn fd_count<K: Kernel>(k: &K) -> usize {
    match sim(k) {
        Some(s) => s.open_fds(),
        None => Resources::of_this_process().expect("read /proc").fds,
    }
}

/// Children of the process, running or zombie.
fn child_count<K: Kernel>(k: &K) -> usize {
    match sim(k) {
        Some(s) => {
            let (running, zombies) = s.children_left();
            running + zombies
        }
        None => Resources::of_this_process().expect("read /proc").children,
    }
}

/// Open pidfds, on the real OS (`None` on the simulator, whose fds have no names).
fn pidfds<K: Kernel>(k: &K) -> Option<BTreeSet<i32>> {
    os(k)?;
    let mut fds = BTreeSet::new();
    for entry in std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .flatten()
    {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.to_string_lossy() == "anon_inode:[pidfd]" {
            if let Some(n) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                fds.insert(n);
            }
        }
    }
    Some(fds)
}

/// Threads named `asyncio-waitpid…` (`comm` keeps 15 bytes of the name), on the real
/// OS (`None` on the simulator, whose thread names are in the trace: see
/// [`thread_names`]).
fn waiter_threads<K: Kernel>(k: &K) -> Option<usize> {
    os(k)?;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Some(0);
    };
    Some(
        tasks
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
            .filter(|comm| comm.trim_end().starts_with("asyncio-waitpid"))
            .count(),
    )
}

/// Names of the threads a simulated run started, from its trace.
fn thread_names(report: &Report) -> Vec<String> {
    report
        .trace
        .lines()
        .iter()
        .filter_map(|l| l.split_once("spawn_thread(\"").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_string()))
        .collect()
}

/// Calls `probe` every 10 ms (of the kernel's clock) until it answers, for at most
/// [`PATIENCE`].
fn poll_until<K: Kernel, T>(k: &K, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let step = Duration::from_millis(10);
    for _ in 0..(PATIENCE * 100.0) as usize {
        if let Some(answer) = probe() {
            return Some(answer);
        }
        k.sleep(step);
    }
    probe()
}

// ----- children ------------------------------------------------------------------------

/// A child that runs until killed: a minute at most on the real OS, longer than any
/// test in virtual time on the simulator.
fn sleeper<K: Kernel>(k: &K) -> Pid {
    let seconds = if os(k).is_some() { "60" } else { "100000" };
    k.spawn(&SpawnRequest::new("/bin/sleep", [seconds]))
        .expect("spawn a sleeper")
        .pid
}

/// `/bin/true`.
fn true_child<K: Kernel>(k: &K) -> Pid {
    k.spawn(&SpawnRequest::new("/bin/true", std::iter::empty::<&str>()))
        .expect("spawn /bin/true")
        .pid
}

/// The test's children on the real OS: whatever is still running when it is dropped
/// (a test that failed half-way) is killed and reaped, so that no sleeper outlives the
/// test. Only a pid `waitpid` still reports as our running child is signalled, so a
/// reaped (and possibly reused) pid is never hit. The simulator's run ends with the
/// test, children and all.
struct Children<K: Kernel> {
    kernel: K,
    pids: Log<Pid>,
}

impl<K: Kernel> Children<K> {
    fn new(k: &K) -> Children<K> {
        Children {
            kernel: k.clone(),
            pids: Log::new(),
        }
    }

    fn add(&self, pid: Pid) -> Pid {
        self.pids.push(pid);
        pid
    }
}

impl<K: Kernel> Drop for Children<K> {
    fn drop(&mut self) {
        let Some(k) = os(&self.kernel) else {
            return;
        };
        for pid in self.pids.take() {
            if k.wait_pid(pid, WaitMode::NoHang) == Ok(WaitStatus::StillAlive) {
                let _ = k.kill(pid, Some(Signal::SIGKILL));
                while k.wait_pid(pid, WaitMode::Block) == Err(Errno::EINTR) {}
            }
        }
    }
}

// ----- loops and callbacks -------------------------------------------------------------

/// Runs `body` in a new thread (not the main thread) with a new loop, which is closed
/// afterwards if `body` left it open; returns what `body` returned, or re-raises its
/// panic.
fn in_loop_thread<K: Kernel, T: Send + 'static>(
    k: &K,
    body: impl FnOnce(EventLoop<K>, ThreadId) -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let k2 = k.clone();
    let thread = k
        .spawn_thread(
            "loop-thread",
            Box::new(move || {
                assert!(!k2.is_main_thread());
                let event_loop = EventLoop::with_kernel(k2.clone()).expect("a loop");
                let out = body(event_loop.clone(), k2.current_thread());
                if !event_loop.is_closed() {
                    event_loop.close().expect("close the loop");
                }
                let _ = tx.send(out);
            }),
        )
        .expect("start the loop thread");
    match k.join_thread(thread) {
        Ok(()) => rx.recv().expect("the loop thread's result"),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// One callback invocation.
#[derive(Clone, Debug)]
struct Reported {
    tag: String,
    pid: Pid,
    code: i32,
    thread: ThreadId,
}

/// Collects callback invocations; stops the loop once `target` have arrived.
#[derive(Clone)]
struct Reports<K: Kernel> {
    seen: Log<Reported>,
    target: Arc<AtomicUsize>,
    event_loop: EventLoop<K>,
}

impl<K: Kernel> Reports<K> {
    fn new(event_loop: &EventLoop<K>) -> Reports<K> {
        Reports {
            seen: Log::new(),
            target: Arc::new(AtomicUsize::new(usize::MAX)),
            event_loop: event_loop.clone(),
        }
    }

    fn callback(&self, tag: &str) -> ChildCallback {
        let (reports, tag) = (self.clone(), tag.to_string());
        Box::new(move |pid, code| {
            let thread = reports.event_loop.kernel().current_thread();
            reports.seen.push(Reported {
                tag,
                pid,
                code,
                thread,
            });
            if reports.seen.len() >= reports.target.load(Ordering::SeqCst) {
                reports.event_loop.stop();
            }
        })
    }

    /// Runs the loop (from its thread, not running) until `count` callbacks in all
    /// have arrived, or fails after [`PATIENCE`]; returns them all, sorted by tag.
    fn wait_for(&self, count: usize) -> Vec<Reported> {
        self.target.store(count, Ordering::SeqCst);
        // Callbacks only run in this thread, so nothing arrives between check and run.
        if self.seen.len() < count {
            let stopper = self.event_loop.clone();
            let watchdog = self
                .event_loop
                .call_later(PATIENCE, move || stopper.stop())
                .expect("watchdog");
            self.event_loop.run_forever().expect("run_forever");
            watchdog.cancel();
        }
        let mut seen = self.seen.snapshot();
        assert_eq!(seen.len(), count, "callbacks so far: {seen:?}");
        seen.sort_by(|a, b| a.tag.cmp(&b.tag));
        seen
    }
}

/// Registers `(tag, pid)` with `watcher` from inside the running loop, then waits for
/// one callback each; returns them sorted by tag.
fn register_and_wait<K: Kernel>(
    event_loop: &EventLoop<K>,
    watcher: &dyn ChildWatcher<K>,
    children: &[(&str, Pid)],
) -> Vec<Reported> {
    let reports = Reports::new(event_loop);
    event_loop
        .run_until_complete(async {
            for &(tag, pid) in children {
                watcher
                    .add_child_handler(pid, reports.callback(tag))
                    .unwrap_or_else(|e| panic!("add_child_handler({pid}): {e}"));
            }
        })
        .expect("run_until_complete");
    reports.wait_for(children.len())
}

/// Sets a flag when dropped: tells a test that a callback was dropped unrun.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The asyncio warnings `capture` holds.
fn asyncio_warnings(capture: &Capture) -> Vec<String> {
    capture
        .events()
        .into_iter()
        .filter(|e| e.target == "asyncio" && e.level == tracing::Level::WARN)
        .map(|e| e.message)
        .collect()
}

// ----- the watchers ----------------------------------------------------------------------

/// Which watcher a body drives.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Threaded,
    Pidfd,
    /// `AutoChildWatcher` with every rung: where pidfds work (the OS here, the
    /// simulator without pidfd faults) it behaves as Pidfd.
    Auto,
    /// `AutoChildWatcher` without its pidfd rungs: every child goes to a waiter
    /// thread, as with Threaded.
    AutoWaiter,
}

impl Kind {
    fn make<K: Kernel>(self, k: &K) -> Arc<dyn ChildWatcher<K>> {
        match self {
            Kind::Threaded => Arc::new(ThreadedChildWatcher::with_kernel(k.clone())),
            Kind::Pidfd => Arc::new(PidfdChildWatcher::with_kernel(k.clone())),
            Kind::Auto => Arc::new(AutoChildWatcher::with_kernel(k.clone())),
            Kind::AutoWaiter => Arc::new(auto_waiter(k)),
        }
    }

    /// The built-in watcher whose behaviour this one shows in the tests: Auto's rung
    /// decides it.
    fn base(self) -> Kind {
        match self {
            Kind::Threaded | Kind::AutoWaiter => Kind::Threaded,
            Kind::Pidfd | Kind::Auto => Kind::Pidfd,
        }
    }

    /// The warning for a child whose status other code read first.
    fn reaped_elsewhere_warning(self, pid: Pid) -> String {
        match self.base() {
            Kind::Threaded => {
                format!("Unknown child process pid {pid}, will report returncode 255")
            }
            _ => format!(
                "child process pid {pid} exit status already read:  will report returncode 255"
            ),
        }
    }
}

/// `AutoChildWatcher` that only has its waiter rung.
fn auto_waiter<K: Kernel>(k: &K) -> AutoChildWatcher<K> {
    AutoChildWatcher::with_kernel(k.clone())
        .without(Rung::ProcessPidfd)
        .and_then(|w| w.without(Rung::PidfdOpen))
        .expect("the waiter rung is left")
}

// ----- both watchers -----------------------------------------------------------------

/// The children of the returncode tests: `(tag, script, returncode)`.
const CODES: [(&str, &str, i32); 7] = [
    ("a-exit-0", "exit 0", 0),
    ("b-exit-1", "exit 1", 1),
    ("c-exit-3", "exit 3", 3),
    ("d-exit-255", "exit 255", 255),
    ("e-sigterm", "kill -TERM $$", -15),
    ("f-sigkill", "kill -9 $$", -9),
    // No core file is wanted from this test.
    ("g-sigsegv", "ulimit -c 0; kill -SEGV $$", -11),
];

/// Goal (T-3, T-4, K-2, R-1, R-4): exit codes 0/1/3/255 and deaths by SIGTERM, SIGKILL
/// and SIGSEGV arrive as returncodes, and so does a kill while registered, in the
/// thread of the loop that ran at registration.
struct Returncodes(Kind);

impl Body for Returncodes {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let mut spawned: Vec<(String, Pid, i32)> = CODES
            .iter()
            .map(|&(tag, script, code)| {
                let pid = children.add(testing::spawn_sh(k, script));
                (tag.to_string(), pid, code)
            })
            .collect();
        let killed = children.add(sleeper(k));
        spawned.push(("h-killed".to_string(), killed, -9));
        let watcher = self.0.make(k);
        let (w, k2) = (watcher.clone(), k.clone());
        let capture = Capture::new();
        capture.during(|| {
            in_loop_thread(k, move |event_loop, loop_thread| {
                let reports = Reports::new(&event_loop);
                event_loop
                    .run_until_complete(async {
                        for (tag, pid, _) in &spawned {
                            w.add_child_handler(*pid, reports.callback(tag))
                                .unwrap_or_else(|e| panic!("add_child_handler({pid}): {e}"));
                        }
                        // Killed while registered and running: -SIGKILL.
                        k2.kill(killed, Some(Signal::SIGKILL))
                            .expect("kill the sleeper");
                    })
                    .expect("run_until_complete");
                let seen = reports.wait_for(spawned.len());
                for (report, (tag, pid, code)) in seen.iter().zip(&spawned) {
                    assert_eq!((&report.tag, report.pid, report.code), (tag, *pid, *code));
                    assert_eq!(
                        report.thread, loop_thread,
                        "{tag}: callback outside the loop thread"
                    );
                }
                w.close().expect("close");
            });
        });
        assert!(capture.warnings().is_empty(), "{:?}", capture.warnings());
    }
}

/// The simulator's report of [`Returncodes`]: Threaded starts at most one waiter per
/// child, each named `asyncio-waitpid-N` after the registration that started it
/// (`asyncio-waitpid-0` first; a child registered while a waiter idles goes to that
/// waiter, so some numbers may be missing); Pidfd starts no thread.
fn returncodes_threads(kind: Kind) -> impl Fn(&Report) -> Result<(), String> {
    move |report| {
        testing::completed(report)?;
        let names = thread_names(report);
        let fits = match kind.base() {
            Kind::Threaded => {
                let Some((first, waiters)) = names.split_first() else {
                    return Err("no thread started".to_string());
                };
                let numbers: Vec<Option<u64>> = waiters
                    .iter()
                    .map(|name| name.strip_prefix("asyncio-waitpid-")?.parse().ok())
                    .collect();
                first == "loop-thread"
                    && numbers.first() == Some(&Some(0))
                    && numbers.iter().all(|n| n.is_some_and(|n| n < 8))
                    && numbers.windows(2).all(|pair| pair[0] < pair[1])
            }
            _ => names == ["loop-thread"],
        };
        if fits {
            Ok(())
        } else {
            Err(format!("threads {names:?}"))
        }
    }
}

/// Goal (T-3, K-2): without a running loop in the calling thread add_child_handler
/// fails with RuntimeError('no running event loop'), also while a loop exists but does
/// not run, and starts no thread and opens no pidfd; pid 0 is refused.
struct NeedsARunningLoop(Kind);

impl Body for NeedsARunningLoop {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(testing::spawn_sh(k, "exit 0"));
        let watcher = self.0.make(k);
        let fds = fd_count(k);
        let error = watcher
            .add_child_handler(pid, Box::new(|_, _| panic!("never called")))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::RuntimeError);
        assert_eq!(error.message(), "no running event loop");
        assert_eq!(pidfds(k).unwrap_or_default(), BTreeSet::new());
        // A loop that exists in this thread but does not run does not count.
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let error = watcher
            .add_child_handler(pid, Box::new(|_, _| panic!("never called")))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::RuntimeError);
        event_loop.close().unwrap();
        let error = watcher
            .add_child_handler(Pid(0), Box::new(|_, _| {}))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueError);
        assert_eq!(fd_count(k), fds, "nothing stays open");
        assert_eq!(waiter_threads(k).unwrap_or(0), 0, "no waiter started");
        assert_eq!(testing::reap(k, pid), 0);
        watcher.close().unwrap();
    }
}

/// The simulator's report of [`NeedsARunningLoop`]: no thread started, no
/// `pidfd_open` called.
fn nothing_started(report: &Report) -> Result<(), String> {
    testing::completed(report)?;
    let names = thread_names(report);
    if !names.is_empty() {
        return Err(format!("threads started: {names:?}"));
    }
    match report
        .trace
        .lines()
        .iter()
        .find(|l| l.contains("pidfd_open("))
    {
        Some(line) => Err(format!("a pidfd was opened: {line}")),
        None => Ok(()),
    }
}

/// Goal (T-5): Threaded's two registrations of one pid (two threads) both fire, one
/// with the code and one with 255 and the warning naming the pid; no thread crashes.
/// (Pidfd replaces instead: [`PidfdSamePidTwiceReplaces`].)
struct ThreadedSamePidTwice;

impl Body for ThreadedSamePidTwice {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(testing::spawn_sh(k, "sleep 0.5; exit 3"));
        let watcher = Kind::Threaded.make(k);
        let capture = Capture::new();
        capture.during(|| {
            in_loop_thread(k, move |event_loop, _| {
                let seen =
                    register_and_wait(&event_loop, &*watcher, &[("first", pid), ("second", pid)]);
                let mut codes: Vec<i32> = seen.iter().map(|r| r.code).collect();
                codes.sort_unstable();
                assert_eq!(codes, [3, 255], "{seen:?}");
                watcher.close().unwrap();
            });
        });
        assert_eq!(
            asyncio_warnings(&capture),
            [Kind::Threaded.reaped_elsewhere_warning(pid)]
        );
        assert!(
            capture.messages(tracing::Level::ERROR).is_empty(),
            "{:?}",
            capture.events()
        );
    }
}

/// Goal (T-2, T-6): Threaded's is_active is always true, attach_loop does nothing,
/// remove_child_handler answers true and the callback still fires, also after close.
/// (Pidfd's remove removes: [`PidfdRemoveBeforeExit`].)
struct ThreadedRemoveAttachCloseAreNoops;

impl Body for ThreadedRemoveAttachCloseAreNoops {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(sleeper(k));
        let watcher = Kind::Threaded.make(k);
        assert!(watcher.is_active());
        watcher.attach_loop(None).unwrap();
        assert!(watcher.remove_child_handler(Pid(999_999)));
        let k2 = k.clone();
        in_loop_thread(k, move |event_loop, _| {
            watcher.attach_loop(Some(event_loop.clone())).unwrap();
            let reports = Reports::new(&event_loop);
            let before = fd_count(&k2);
            event_loop
                .run_until_complete(async {
                    watcher
                        .add_child_handler(pid, reports.callback("kept"))
                        .unwrap();
                    assert!(watcher.remove_child_handler(pid));
                    assert!(watcher.remove_child_handler(pid));
                    watcher.close().unwrap();
                    assert!(watcher.is_active());
                    k2.kill(pid, Some(Signal::SIGKILL)).unwrap();
                })
                .unwrap();
            let seen = reports.wait_for(1);
            assert_eq!((seen[0].pid, seen[0].code), (pid, -9));
            watcher.close().unwrap();
            assert_eq!(fd_count(&k2), before, "nothing left open");
        });
    }
}

/// Goal (R-6): a callback that panics is reported by the loop as "Exception in
/// callback …" and the loop goes on delivering the other child's callback (Pidfd
/// closes the panicking one's pidfd all the same).
struct CallbackPanicIsReported(Kind);

impl Body for CallbackPanicIsReported {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let bad = children.add(testing::spawn_sh(k, "exit 4"));
        let good = children.add(testing::spawn_sh(k, "sleep 0.1; exit 5"));
        let watcher = self.0.make(k);
        in_loop_thread(k, move |event_loop, _| {
            let handled: Log<(String, String)> = Log::new();
            let sink = handled.clone();
            event_loop.set_exception_handler(Some(Arc::new(
                move |_, context: &ExceptionContext| {
                    let exception = context
                        .exception
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    sink.push((context.message.clone(), exception));
                },
            )));
            let reports = Reports::new(&event_loop);
            event_loop
                .run_until_complete(async {
                    let record = reports.callback("bad");
                    watcher
                        .add_child_handler(
                            bad,
                            Box::new(move |pid, code| {
                                record(pid, code);
                                panic!("callback boom");
                            }),
                        )
                        .unwrap();
                    watcher
                        .add_child_handler(good, reports.callback("good"))
                        .unwrap();
                })
                .unwrap();
            let seen = reports.wait_for(2);
            assert_eq!((seen[0].pid, seen[0].code), (bad, 4));
            assert_eq!((seen[1].pid, seen[1].code), (good, 5));
            // The panicking callback may have been the last to run: give the loop one
            // more iteration so that its report is in.
            let stopper = event_loop.clone();
            event_loop.call_soon(move || stopper.stop()).unwrap();
            event_loop.run_forever().unwrap();
            let handled = handled.take();
            assert_eq!(handled.len(), 1, "{handled:?}");
            assert!(
                handled[0].0.starts_with("Exception in callback "),
                "{handled:?}"
            );
            assert!(handled[0].1.contains("callback boom"), "{handled:?}");
            watcher.close().unwrap();
        });
    }
}

/// How many pidfds the large Pidfd test may hold at once: all of them on the
/// simulator and where the OS's fd limit allows, else batches of 100.
fn pidfd_batch<K: Kernel>(k: &K) -> usize {
    if os(k).is_none() {
        return MANY;
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    if soft >= MANY + 256 { MANY } else { 100 }
}

/// Goal (T-3, T-4, K-2, K-4): 1,000 /bin/true children (Threaded 100 at a time, Pidfd
/// all at once where the fd limit allows) each report 0 once, in the loop's thread;
/// Pidfd holds one pidfd per registered child and closes each; close joins every
/// waiter.
struct ThousandChildren(Kind);

impl Body for ThousandChildren {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Arc::new(Children::new(k));
        let kind = self.0;
        let batch = match kind.base() {
            Kind::Threaded => THREAD_BATCH,
            _ => pidfd_batch(k),
        };
        let watcher = kind.make(k);
        let (c, k2) = (children.clone(), k.clone());
        let capture = Capture::new();
        capture.during(|| {
            in_loop_thread(k, move |event_loop, loop_thread| {
                let reports = Reports::new(&event_loop);
                let before = fd_count(&k2);
                for round in 0..MANY / batch {
                    event_loop
                        .run_until_complete(async {
                            for _ in 0..batch {
                                let pid = c.add(true_child(&k2));
                                watcher
                                    .add_child_handler(pid, reports.callback("true"))
                                    .unwrap();
                            }
                            if let Kind::Pidfd = kind.base() {
                                // No reader has run yet: every pidfd is open.
                                assert_eq!(fd_count(&k2), before + batch);
                            }
                        })
                        .unwrap();
                    reports.wait_for((round + 1) * batch);
                }
                let seen = reports.wait_for(MANY);
                assert!(seen.iter().all(|r| r.code == 0 && r.thread == loop_thread));
                let pids: BTreeSet<Pid> = seen.iter().map(|r| r.pid).collect();
                assert_eq!(pids.len(), MANY, "each child reported once");
                watcher.close().unwrap();
                assert_eq!(fd_count(&k2), before, "every pidfd is closed");
            });
        });
        assert!(capture.warnings().is_empty(), "{:?}", capture.warnings());
    }
}

/// Spawns `count` sleepers with `subprocess_exec` (through the policy's watcher) from a
/// loop in a new thread, then drops the processes and the loop without closing it;
/// returns the pids.
fn spawn_then_drop_loop<K: Kernel>(k: &K, count: usize) -> Vec<Pid> {
    let seconds = if os(k).is_some() { "60" } else { "100000" };
    let (tx, rx) = mpsc::channel();
    let k2 = k.clone();
    let thread = k
        .spawn_thread(
            "loop-thread",
            Box::new(move || {
                let event_loop = EventLoop::with_kernel(k2).expect("a loop");
                let lp = event_loop.clone();
                let processes = event_loop
                    .run_until_complete(async move {
                        (0..count)
                            .map(|_| {
                                lp.subprocess_exec(&SpawnRequest::new("/bin/sleep", [seconds]))
                                    .expect("spawn")
                            })
                            .collect::<Vec<_>>()
                    })
                    .expect("run_until_complete");
                let _ = tx.send(processes.iter().map(|p| p.pid()).collect::<Vec<_>>());
                drop(processes);
                drop(event_loop);
            }),
        )
        .expect("start the loop thread");
    if let Err(payload) = k.join_thread(thread) {
        std::panic::resume_unwind(payload);
    }
    rx.recv().expect("the pids")
}

/// Goal (reliability finding 12): a loop dropped without close while the watcher
/// watches its children is freed at once: its fds (and Pidfd's pidfds) are closed.
/// Threaded's waiters then reap the children, say of each that its loop is gone, as
/// for a closed loop, and end; Pidfd leaves them unreaped, as after close
/// (documented), for the caller to reap; Auto's orphan reaper keeps their pidfds and
/// reaps them once they have exited (here, when the watcher closes).
struct DroppedLoopIsFreed(Kind);

impl Body for DroppedLoopIsFreed {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let fds = fd_count(k);
        let watcher = self.0.make(k);
        loopwatch::policy::set_child_watcher(k, Some(watcher.clone())).unwrap();
        let capture = Capture::new();
        let pids = capture.during(|| spawn_then_drop_loop(k, 10));
        for &pid in &pids {
            children.add(pid);
        }
        // Auto hands the children to its orphan reaper, pidfds and all.
        let orphaned = matches!(self.0, Kind::Auto);
        if orphaned {
            assert_eq!(pidfds(k).map(|p| p.len()), os(k).map(|_| pids.len()));
            assert_eq!(
                fd_count(k),
                fds + pids.len(),
                "the dropped loop's fds are closed; the orphans' pidfds are kept"
            );
        } else {
            assert_eq!(pidfds(k).unwrap_or_default(), BTreeSet::new(), "pidfds");
            assert_eq!(fd_count(k), fds, "the dropped loop's fds are closed");
        }
        capture.during(|| {
            for &pid in &pids {
                k.kill(pid, Some(Signal::SIGKILL)).unwrap();
            }
            match self.0.base() {
                Kind::Threaded => {
                    let reaped = poll_until(k, || (child_count(k) == 0).then_some(()));
                    assert!(reaped.is_some(), "the waiters reaped the children");
                }
                // The orphan reaper reaps the exited ones when the watcher closes.
                _ if orphaned => {
                    for &pid in &pids {
                        while k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block)
                            == Err(Errno::EINTR)
                        {}
                    }
                    watcher.close().unwrap();
                    assert_eq!(child_count(k), 0, "the orphans were reaped");
                }
                // Nobody is left to reap them: as after close, they are the caller's.
                _ => {
                    for &pid in &pids {
                        assert_eq!(testing::reap(k, pid), -9);
                    }
                }
            }
            loopwatch::policy::set_child_watcher(k, None).unwrap();
            watcher.close().unwrap();
        });
        assert_eq!(fd_count(k), fds, "nothing stays open");
        if let Kind::Threaded = self.0.base() {
            // Each waiter found its loop gone, and said so as for a closed loop.
            let warnings = asyncio_warnings(&capture);
            assert_eq!(warnings.len(), 10, "{warnings:?}");
            assert!(
                warnings.iter().all(|w| w.starts_with("Loop <EventLoop #")
                    && w.contains(" dropped> that handles pid ")
                    && w.ends_with(" is closed")),
                "{warnings:?}"
            );
        }
    }
}

/// Goal (reliability finding 15): with SIGCHLD set to SIG_IGN before the watcher
/// exists, the watcher reports the child as 255 (the kernel reaped it, as CPython) and
/// warns on target loopwatch why, naming the pid; the disposition is put back.
struct SigchldIgnoredIsReported(Kind);

impl Body for SigchldIgnoredIsReported {
    fn run<K: Kernel>(&self, k: &K) {
        let (pid, code, capture) = report_with_sigchld_ignored(k, self.0, false);
        assert_eq!(code, 255);
        let warned: Vec<String> = capture
            .events()
            .into_iter()
            .filter(|e| e.target == "loopwatch" && e.level == tracing::Level::WARN)
            .map(|e| e.message)
            .collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
        let message = &warned[0];
        assert!(
            message.contains("SIGCHLD") && message.contains("SIG_IGN"),
            "{message}"
        );
        assert!(message.contains(&pid.0.to_string()), "{message}");
    }
}

/// Registers a sleeper with a new watcher of `kind` from a loop thread, with SIGCHLD
/// set to SIG_IGN before the registration, or (`later`) by other code after it, kills
/// it and waits for its report; puts SIGCHLD's disposition back (on the real OS however
/// the test ends) and closes the watcher. Gives the pid, the returncode reported for
/// it, and what was logged meanwhile.
fn report_with_sigchld_ignored<K: Kernel>(k: &K, kind: Kind, later: bool) -> (Pid, i32, Capture) {
    let children = Children::new(k);
    let before = if later {
        k.disposition(Signal::SIGCHLD)
            .expect("SIGCHLD's disposition")
    } else {
        k.set_disposition(Signal::SIGCHLD, Disposition::Ignore)
            .expect("ignore SIGCHLD")
    };
    // The simulated process ends with the test.
    struct Restore(Disposition);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = OsKernel.set_disposition(Signal::SIGCHLD, self.0);
        }
    }
    let _restore = os(k).map(|_| Restore(before));
    let pid = children.add(sleeper(k));
    let watcher = kind.make(k);
    let k2 = k.clone();
    let capture = Capture::new();
    let seen = capture.during(|| {
        let w = watcher.clone();
        in_loop_thread(k, move |event_loop, _| {
            let reports = Reports::new(&event_loop);
            event_loop
                .run_until_complete(async {
                    w.add_child_handler(pid, reports.callback("ignored"))
                        .unwrap();
                })
                .unwrap();
            if later {
                // Other code, after the registration.
                k2.set_disposition(Signal::SIGCHLD, Disposition::Ignore)
                    .expect("ignore SIGCHLD");
            }
            k2.kill(pid, Some(Signal::SIGKILL)).unwrap();
            reports.wait_for(1)
        })
    });
    k.set_disposition(Signal::SIGCHLD, before)
        .expect("restore SIGCHLD");
    watcher.close().unwrap();
    assert_eq!(seen[0].pid, pid);
    (pid, seen[0].code, capture)
}

/// Goal (X-7): other code sets SIGCHLD to SIG_IGN after the child was
/// registered, so the kernel reaps it itself. The child is still reported (255, with
/// R-2's warning), and an `error` event on target loopwatch says that SIG_IGN lost its
/// status, naming the pid: not a silent 255.
struct SigchldIgnoredLaterIsExplained(Kind);

impl Body for SigchldIgnoredLaterIsExplained {
    fn run<K: Kernel>(&self, k: &K) {
        let (pid, code, capture) = report_with_sigchld_ignored(k, self.0, true);
        assert_eq!(code, 255);
        let errors: Vec<String> = capture
            .events()
            .into_iter()
            .filter(|e| e.target == "loopwatch" && e.level == tracing::Level::ERROR)
            .map(|e| e.message)
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let message = &errors[0];
        assert!(
            message.contains("SIGCHLD is set to SIG_IGN")
                && message.contains(&format!("pid {pid} ")),
            "{message}"
        );
        assert_eq!(
            asyncio_warnings(&capture),
            [self.0.reaped_elsewhere_warning(pid)]
        );
    }
}

// ----- ThreadedChildWatcher ----------------------------------------------------------

/// Goal (T-3, T-2): each registration starts a thread named asyncio-waitpid-N that
/// blocks while its child runs; close leaves blocked ones and joins finished ones.
struct ThreadedNamesItsThreads;

impl Body for ThreadedNamesItsThreads {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let (first, second) = (children.add(sleeper(k)), children.add(sleeper(k)));
        let watcher = Arc::new(ThreadedChildWatcher::with_kernel(k.clone()));
        let k2 = k.clone();
        in_loop_thread(k, move |event_loop, _| {
            let reports = Reports::new(&event_loop);
            event_loop
                .run_until_complete(async {
                    watcher
                        .add_child_handler(first, reports.callback("first"))
                        .unwrap();
                    watcher
                        .add_child_handler(second, reports.callback("second"))
                        .unwrap();
                })
                .unwrap();
            if waiter_threads(&k2).is_some() {
                // Both waiters are blocked; `comm` shows the name's first 15 bytes.
                let started = poll_until(&k2, || (waiter_threads(&k2) == Some(2)).then_some(()));
                assert!(
                    started.is_some(),
                    "{:?} waiter threads",
                    waiter_threads(&k2)
                );
            }
            watcher.close().unwrap();
            assert_eq!(
                watcher.pending_threads(),
                2,
                "close does not wait for blocked waiters"
            );
            k2.kill(first, Some(Signal::SIGKILL)).unwrap();
            let seen = reports.wait_for(1);
            assert_eq!((seen[0].pid, seen[0].code), (first, -9));
            watcher.close().unwrap();
            assert_eq!(
                watcher.pending_threads(),
                1,
                "the finished waiter is joined"
            );
            k2.kill(second, Some(Signal::SIGKILL)).unwrap();
            reports.wait_for(2);
            watcher.close().unwrap();
            assert_eq!(watcher.pending_threads(), 0);
        });
    }
}

/// The simulator's report of [`ThreadedNamesItsThreads`]: the two waiters are named
/// `asyncio-waitpid-0` and `-1`.
fn two_waiters_named(report: &Report) -> Result<(), String> {
    testing::completed(report)?;
    let names = thread_names(report);
    if names == ["loop-thread", "asyncio-waitpid-0", "asyncio-waitpid-1"] {
        Ok(())
    } else {
        Err(format!("threads {names:?}"))
    }
}

/// Registers `pid` with `watcher` from inside `event_loop`, reporting to `reports`
/// under `tag`.
fn register_from_loop<K: Kernel>(
    event_loop: &EventLoop<K>,
    watcher: &dyn ChildWatcher<K>,
    reports: &Reports<K>,
    pid: Pid,
    tag: &str,
) {
    event_loop
        .run_until_complete(async {
            watcher
                .add_child_handler(pid, reports.callback(tag))
                .unwrap();
        })
        .unwrap();
}

/// Goal (T-3, deviation): a waiter that has reported its child idles for the
/// keep-alive and takes the next registration, so children registered one after
/// another share one thread; `close` ends an idle waiter and joins it.
struct ThreadedReusesIdleWaiters;

impl Body for ThreadedReusesIdleWaiters {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let first = children.add(testing::spawn_sh(k, "exit 1"));
        let second = children.add(sleeper(k));
        let watcher = Arc::new(ThreadedChildWatcher::with_kernel(k.clone()));
        let k2 = k.clone();
        in_loop_thread(k, move |event_loop, _| {
            let reports = Reports::new(&event_loop);
            let add = |pid, tag| register_from_loop(&event_loop, &*watcher, &reports, pid, tag);
            add(first, "first");
            reports.wait_for(1);
            // The report reaches the loop just before its waiter goes idle.
            let idle = poll_until(&k2, || (watcher.idle_threads() == 1).then_some(()));
            assert!(idle.is_some(), "the waiter does not idle");
            assert_eq!(watcher.pending_threads(), 1);
            add(second, "second");
            assert_eq!(watcher.pending_threads(), 1, "the idle waiter took it");
            if waiter_threads(&k2).is_some() {
                assert_eq!(waiter_threads(&k2), Some(1), "one thread for two children");
            }
            k2.kill(second, Some(Signal::SIGKILL)).unwrap();
            let seen = reports.wait_for(2);
            assert_eq!((seen[0].code, seen[1].code), (1, -9));
            watcher.close().unwrap();
            assert_eq!(watcher.pending_threads(), 0, "close ended the idle waiter");
            if waiter_threads(&k2).is_some() {
                let ended = poll_until(&k2, || (waiter_threads(&k2) == Some(0)).then_some(()));
                assert!(ended.is_some(), "{:?} waiter threads", waiter_threads(&k2));
            }
        });
    }
}

/// The simulator's report of [`ThreadedReusesIdleWaiters`]: one waiter,
/// `asyncio-waitpid-0`, for both children.
fn one_waiter_named(report: &Report) -> Result<(), String> {
    testing::completed(report)?;
    let names = thread_names(report);
    if names == ["loop-thread", "asyncio-waitpid-0"] {
        Ok(())
    } else {
        Err(format!("threads {names:?}"))
    }
}

/// Goal (T-3, deviation): a waiter idle for its keep-alive ends, and the next
/// add_child_handler joins it before it starts a thread, so a long-lived watcher holds
/// handles only of live waiters. With a keep-alive of zero every registration gets a
/// thread of its own, as in CPython.
struct ThreadedAddJoinsFinishedWaiters {
    keep_alive: Duration,
}

impl Body for ThreadedAddJoinsFinishedWaiters {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let first = children.add(testing::spawn_sh(k, "exit 1"));
        let second = children.add(sleeper(k));
        let watcher =
            Arc::new(ThreadedChildWatcher::with_kernel(k.clone()).with_keep_alive(self.keep_alive));
        let k2 = k.clone();
        in_loop_thread(k, move |event_loop, _| {
            let reports = Reports::new(&event_loop);
            let add = |pid, tag| register_from_loop(&event_loop, &*watcher, &reports, pid, tag);
            add(first, "first");
            reports.wait_for(1);
            match waiter_threads(&k2) {
                // Once the thread is gone from /proc, its body has returned.
                Some(_) => {
                    let ended = poll_until(&k2, || (waiter_threads(&k2) == Some(0)).then_some(()));
                    assert!(ended.is_some(), "the first waiter did not end");
                }
                // Virtual time passes only once every other thread waits: the first
                // waiter has ended by then.
                None => k2.sleep(Duration::from_secs(1)),
            }
            assert_eq!(watcher.pending_threads(), 1, "not joined yet");
            add(second, "second");
            assert_eq!(watcher.pending_threads(), 1, "the first waiter was joined");
            k2.kill(second, Some(Signal::SIGKILL)).unwrap();
            let seen = reports.wait_for(2);
            assert_eq!((seen[0].code, seen[1].code), (1, -9));
            watcher.close().unwrap();
            assert_eq!(watcher.pending_threads(), 0);
        });
    }
}

/// Goal (R-2, T-4): a child reaped before registration is reported as 255 with
/// "Unknown child process pid N, will report returncode 255".
struct ThreadedReapedElsewhere;

impl Body for ThreadedReapedElsewhere {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(testing::spawn_sh(k, "exit 3"));
        assert_eq!(testing::reap(k, pid), 3);
        let watcher = Arc::new(ThreadedChildWatcher::with_kernel(k.clone()));
        let capture = Capture::new();
        capture.during(|| {
            in_loop_thread(k, move |event_loop, _| {
                let seen = register_and_wait(&event_loop, &*watcher, &[("reaped", pid)]);
                assert_eq!((seen[0].pid, seen[0].code), (pid, 255));
                watcher.close().unwrap();
                assert_eq!(watcher.pending_threads(), 0);
            });
        });
        assert_eq!(
            asyncio_warnings(&capture),
            [Kind::Threaded.reaped_elsewhere_warning(pid)]
        );
    }
}

/// Goal (T-7): dropping the watcher while a waiter is blocked warns as CPython's
/// `__del__` (ResourceWarning); the detached waiter still delivers, then ends.
struct ThreadedDropWithBlockedWaiterWarns;

impl Body for ThreadedDropWithBlockedWaiterWarns {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(sleeper(k));
        let k2 = k.clone();
        let capture = Capture::new();
        capture.during(|| {
            in_loop_thread(k, move |event_loop, _| {
                let watcher = ThreadedChildWatcher::with_kernel(k2.clone());
                let reports = Reports::new(&event_loop);
                event_loop
                    .run_until_complete(async {
                        watcher
                            .add_child_handler(pid, reports.callback("detached"))
                            .unwrap();
                    })
                    .unwrap();
                drop(watcher);
                k2.kill(pid, Some(Signal::SIGKILL)).unwrap();
                let seen = reports.wait_for(1);
                assert_eq!((seen[0].pid, seen[0].code), (pid, -9));
            });
        });
        let warned: Vec<_> = capture
            .events()
            .into_iter()
            .filter(|e| e.target == "asyncio" && e.level == tracing::Level::WARN)
            .collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(
            warned[0].message,
            "<class 'asyncio.unix_events.ThreadedChildWatcher'> has registered but not finished child processes"
        );
        assert_eq!(
            warned[0].fields.get("category").map(String::as_str),
            Some("ResourceWarning"),
            "{warned:?}"
        );
    }
}

/// Goal (T-4): a child that exits after its loop was closed is reaped; the watcher
/// logs "Loop … that handles pid N is closed" and drops the callback unrun.
struct ThreadedClosedLoopDropsCallback;

impl Body for ThreadedClosedLoopDropsCallback {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(sleeper(k));
        let watcher = Arc::new(ThreadedChildWatcher::with_kernel(k.clone()));
        let dropped = Arc::new(AtomicBool::new(false));
        let (w, flag) = (watcher.clone(), DropFlag(dropped.clone()));
        let capture = Capture::new();
        capture.during(|| {
            // Kept alive here: the loop is closed, not dropped, when the child exits.
            let closed = in_loop_thread(k, move |event_loop, _| {
                event_loop
                    .run_until_complete(async {
                        w.add_child_handler(
                            pid,
                            Box::new(move |_, _| {
                                let _keep = &flag;
                                panic!("called on a closed loop");
                            }),
                        )
                        .unwrap();
                    })
                    .unwrap();
                event_loop.close().unwrap();
                event_loop
            });
            k.kill(pid, Some(Signal::SIGKILL)).unwrap();
            let gone = poll_until(k, || dropped.load(Ordering::SeqCst).then_some(()));
            assert!(gone.is_some(), "the callback was not dropped");
            watcher.close().unwrap();
            assert_eq!(watcher.pending_threads(), 0);
            drop(closed);
        });
        let warned = asyncio_warnings(&capture);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(
            warned[0].starts_with("Loop <EventLoop #")
                && warned[0].ends_with(&format!(
                    "closed=true debug=false> that handles pid {pid} is closed"
                )),
            "{warned:?}"
        );
    }
}

// ----- PidfdChildWatcher -------------------------------------------------------------

/// Goal (K-3): registering a pid that was already reaped fails with
/// ProcessLookupError; nothing is registered and no fd stays open.
struct PidfdReapedBeforeAdd;

impl Body for PidfdReapedBeforeAdd {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(testing::spawn_sh(k, "exit 3"));
        assert_eq!(testing::reap(k, pid), 3);
        let watcher = PidfdChildWatcher::with_kernel(k.clone());
        let k2 = k.clone();
        in_loop_thread(k, move |event_loop, _| {
            let before = fd_count(&k2);
            event_loop
                .run_until_complete(async {
                    let error = watcher
                        .add_child_handler(pid, Box::new(|_, _| panic!("never called")))
                        .unwrap_err();
                    assert_eq!(error.kind(), ErrorKind::ProcessLookupError);
                    assert_eq!(error.message(), "[Errno 3] No such process");
                    assert_eq!(fd_count(&k2), before, "no pidfd stays open");
                    assert_eq!(pidfds(&k2).unwrap_or_default(), BTreeSet::new());
                })
                .unwrap();
        });
    }
}

/// Goal (R-2): a registered child reaped by other code is reported as 255 with
/// "child process pid N exit status already read:  will report returncode 255".
struct PidfdReapedBehindItsBack;

impl Body for PidfdReapedBehindItsBack {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(sleeper(k));
        let watcher = PidfdChildWatcher::with_kernel(k.clone());
        let k2 = k.clone();
        let capture = Capture::new();
        capture.during(|| {
            in_loop_thread(k, move |event_loop, _| {
                let reports = Reports::new(&event_loop);
                event_loop
                    .run_until_complete(async {
                        watcher
                            .add_child_handler(pid, reports.callback("reaped"))
                            .unwrap();
                        k2.kill(pid, Some(Signal::SIGKILL)).unwrap();
                        // Other code reaps it before the loop sees the pidfd readable.
                        assert_eq!(testing::reap(&k2, pid), -9);
                    })
                    .unwrap();
                let seen = reports.wait_for(1);
                assert_eq!((seen[0].pid, seen[0].code), (pid, 255));
            });
        });
        assert_eq!(
            asyncio_warnings(&capture),
            [Kind::Pidfd.reaped_elsewhere_warning(pid)]
        );
    }
}

/// Goal: a process spawned under Pidfd costs one pidfd, which the process signals
/// through and the watcher polls; it is closed once both are done with it.
struct PidfdSharesTheProcessPidfd;

impl Body for PidfdSharesTheProcessPidfd {
    fn run<K: Kernel>(&self, k: &K) {
        let seconds = if os(k).is_some() { "60" } else { "100000" };
        let watcher = Kind::Pidfd.make(k);
        loopwatch::policy::set_child_watcher(k, Some(watcher)).unwrap();
        let before = fd_count(k);
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let with_loop = fd_count(k);
        let pidfds_before = pidfds(k).map(|p| p.len());
        let (lp, k2) = (event_loop.clone(), k.clone());
        let (opened, pidfds_opened, code) = event_loop
            .run_until_complete(async move {
                let process = lp.subprocess_exec(&SpawnRequest::new("/bin/sleep", [seconds]))?;
                let opened = fd_count(&k2) - with_loop;
                let pidfds_opened = pidfds(&k2).map(|p| p.len());
                process.kill()?;
                let code = process.wait().await;
                Ok::<_, loopwatch::Error>((opened, pidfds_opened, code))
            })
            .unwrap()
            .unwrap();
        assert_eq!(opened, 1, "the process and the watcher share one pidfd");
        if let (Some(before), Some(after)) = (pidfds_before, pidfds_opened) {
            assert_eq!(after, before + 1, "one more pidfd in /proc/self/fd");
        }
        assert_eq!(code, -9);
        event_loop.close().unwrap();
        loopwatch::policy::set_child_watcher(k, None).unwrap();
        assert_eq!(fd_count(k), before, "the pidfd is closed");
    }
}

/// Goal (K-2, deviation): closing the loop before the child exits drops the
/// registration: its pidfd is closed (CPython leaks it) and the callback never runs.
struct PidfdClosedLoopClosesPidfd;

impl Body for PidfdClosedLoopClosesPidfd {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(sleeper(k));
        let watcher = PidfdChildWatcher::with_kernel(k.clone());
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let fds = fd_count(k);
        let k2 = k.clone();
        let opened = in_loop_thread(k, move |event_loop, _| {
            let mut opened = BTreeSet::new();
            event_loop
                .run_until_complete(async {
                    watcher
                        .add_child_handler(
                            pid,
                            Box::new(move |_, _| {
                                let _keep = &flag;
                                panic!("called on a closed loop");
                            }),
                        )
                        .unwrap();
                    opened = pidfds(&k2).unwrap_or_default();
                })
                .unwrap();
            event_loop.close().unwrap();
            opened
        });
        let gone = poll_until(k, || dropped.load(Ordering::SeqCst).then_some(()));
        assert!(gone.is_some(), "the callback is dropped");
        assert_eq!(fd_count(k), fds, "the pidfd is closed");
        if os(k).is_some() {
            assert_eq!(opened.len(), 1);
        }
        let still: Vec<i32> = pidfds(k)
            .unwrap_or_default()
            .intersection(&opened)
            .copied()
            .collect();
        assert!(still.is_empty(), "pidfds {still:?} left open");
        // Nobody reaps it now: the test does.
        k.kill(pid, Some(Signal::SIGKILL)).unwrap();
        assert_eq!(testing::reap(k, pid), -9);
    }
}

/// Goal (K-2, loopwatch's departure from 3.12): remove_child_handler takes a pending
/// registration back, as CPython 3.9–3.11's Pidfd (and Safe, Fast, MultiLoop) do: it
/// answers true, the callback is dropped unrun and the pidfd closed before it returns;
/// removing again, or removing a pid never registered, answers false. The watcher never
/// waits for the child afterwards: its parent reaps it. attach_loop and close still do
/// nothing and is_active stays true.
struct PidfdRemoveBeforeExit;

impl Body for PidfdRemoveBeforeExit {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(sleeper(k));
        let unknown = children.add(sleeper(k));
        let watcher = PidfdChildWatcher::with_kernel(k.clone());
        assert!(!watcher.remove_child_handler(unknown), "never registered");
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let k2 = k.clone();
        let opened = in_loop_thread(k, move |event_loop, _| {
            let before = fd_count(&k2);
            let mut opened = BTreeSet::new();
            event_loop
                .run_until_complete(async {
                    watcher
                        .add_child_handler(
                            pid,
                            Box::new(move |_, _| {
                                let _keep = &flag;
                                panic!("a removed callback was called");
                            }),
                        )
                        .unwrap();
                    assert_eq!(fd_count(&k2), before + 1, "one pidfd");
                    opened = pidfds(&k2).unwrap_or_default();
                    assert!(watcher.remove_child_handler(pid), "it was registered");
                    assert!(dropped.load(Ordering::SeqCst), "the callback is dropped");
                    assert_eq!(fd_count(&k2), before, "the pidfd is closed");
                    assert!(!watcher.remove_child_handler(pid), "removed already");
                    watcher.attach_loop(None).unwrap();
                    watcher.close().unwrap();
                    assert!(watcher.is_active());
                    k2.kill(pid, Some(Signal::SIGKILL)).unwrap();
                })
                .unwrap();
            // A loop iteration after the exit: nothing is left to report it.
            let stopper = event_loop.clone();
            event_loop.call_soon(move || stopper.stop()).unwrap();
            event_loop.run_forever().unwrap();
            assert_eq!(fd_count(&k2), before);
            opened
        });
        let still: Vec<i32> = pidfds(k)
            .unwrap_or_default()
            .intersection(&opened)
            .copied()
            .collect();
        assert!(still.is_empty(), "pidfds {still:?} left open");
        // Nobody waited for either child: both are still the test's to reap.
        assert_eq!(testing::reap(k, pid), -9);
        k.kill(unknown, Some(Signal::SIGKILL)).unwrap();
        assert_eq!(testing::reap(k, unknown), -9);
    }
}

/// Goal (K-2, loopwatch): remove_child_handler from another thread while the loop runs
/// answers true and drops the callback at once; the loop's own thread then removes the
/// reader and closes the pidfd (a running loop's readers are its thread's to change),
/// before anything queued after the removal runs.
struct PidfdRemoveFromAnotherThread;

impl Body for PidfdRemoveFromAnotherThread {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(sleeper(k));
        let watcher = Arc::new(PidfdChildWatcher::with_kernel(k.clone()));
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let k2 = k.clone();
        in_loop_thread(k, move |event_loop, _| {
            let before = fd_count(&k2);
            let answers: Log<bool> = Log::new();
            let removers: Log<<K as Threads>::JoinHandle> = Log::new();
            let (lp, w, k3, log, threads) = (
                event_loop.clone(),
                watcher.clone(),
                k2.clone(),
                answers.clone(),
                removers.clone(),
            );
            event_loop
                .call_soon(move || {
                    w.add_child_handler(
                        pid,
                        Box::new(move |_, _| {
                            let _keep = &flag;
                            panic!("a removed callback was called");
                        }),
                    )
                    .unwrap();
                    assert_eq!(fd_count(&k3), before + 1, "one pidfd");
                    // Started while the loop runs, which it does until the remover
                    // stops it.
                    let remover = k3
                        .spawn_thread(
                            "remover",
                            Box::new(move || {
                                log.push(w.remove_child_handler(pid));
                                let stopper = lp.clone();
                                lp.call_soon_threadsafe(move || stopper.stop()).unwrap();
                            }),
                        )
                        .unwrap();
                    threads.push(remover);
                })
                .unwrap();
            let stopper = event_loop.clone();
            let watchdog = event_loop
                .call_later(PATIENCE, move || stopper.stop())
                .unwrap();
            event_loop.run_forever().unwrap();
            watchdog.cancel();
            for remover in removers.take() {
                k2.join_thread(remover).expect("the remover");
            }
            assert_eq!(answers.take(), [true]);
            assert!(dropped.load(Ordering::SeqCst), "the callback is dropped");
            assert_eq!(fd_count(&k2), before, "the pidfd is closed");
            assert!(!watcher.remove_child_handler(pid), "removed already");
        });
        k.kill(pid, Some(Signal::SIGKILL)).unwrap();
        assert_eq!(testing::reap(k, pid), -9);
    }
}

/// Goal (K-2, loopwatch's departure from 3.12; W-2): registering a pending pid again
/// replaces its handler, as Safe, Fast, MultiLoop and CPython 3.9–3.11's Pidfd do: the
/// first callback is dropped unrun, the second runs once with the child's own
/// returncode (no 255, no warning), and the first pidfd is closed as the second
/// registration opens its own: one stays open.
struct PidfdSamePidTwiceReplaces;

impl Body for PidfdSamePidTwiceReplaces {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(sleeper(k));
        let watcher = PidfdChildWatcher::with_kernel(k.clone());
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let k2 = k.clone();
        let capture = Capture::new();
        capture.during(|| {
            in_loop_thread(k, move |event_loop, loop_thread| {
                let before = fd_count(&k2);
                let reports = Reports::new(&event_loop);
                event_loop
                    .run_until_complete(async {
                        watcher
                            .add_child_handler(
                                pid,
                                Box::new(move |_, _| {
                                    let _keep = &flag;
                                    panic!("a replaced callback was called");
                                }),
                            )
                            .unwrap();
                        watcher
                            .add_child_handler(pid, reports.callback("second"))
                            .unwrap();
                        assert!(dropped.load(Ordering::SeqCst), "the first is dropped");
                        assert_eq!(fd_count(&k2), before + 1, "the first pidfd is closed");
                        k2.kill(pid, Some(Signal::SIGKILL)).unwrap();
                    })
                    .unwrap();
                let seen = reports.wait_for(1);
                assert_eq!(
                    (seen[0].tag.as_str(), seen[0].pid, seen[0].code),
                    ("second", pid, -9)
                );
                assert_eq!(seen[0].thread, loop_thread);
                // One more iteration: no second report arrives.
                let stopper = event_loop.clone();
                event_loop.call_soon(move || stopper.stop()).unwrap();
                event_loop.run_forever().unwrap();
                assert_eq!(reports.seen.len(), 1, "{:?}", reports.seen);
                assert_eq!(fd_count(&k2), before, "the pidfd is closed");
                assert!(!watcher.remove_child_handler(pid), "reported, so gone");
            });
        });
        assert!(capture.warnings().is_empty(), "{:?}", capture.warnings());
    }
}

/// Goal (K-2, loopwatch): registering a pending pid again from another thread's running
/// loop moves the registration there: the first loop's reader is removed and its pidfd
/// closed, the first callback dropped unrun, and the exit reported once, in the second
/// loop's thread.
struct PidfdReregisterInAnotherLoop;

impl Body for PidfdReregisterInAnotherLoop {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let pid = children.add(sleeper(k));
        let watcher = Arc::new(PidfdChildWatcher::with_kernel(k.clone()));
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let k2 = k.clone();
        in_loop_thread(k, move |first_loop, _| {
            let before = fd_count(&k2);
            first_loop
                .run_until_complete(async {
                    watcher
                        .add_child_handler(
                            pid,
                            Box::new(move |_, _| {
                                let _keep = &flag;
                                panic!("a replaced callback was called");
                            }),
                        )
                        .unwrap();
                })
                .unwrap();
            // The first loop stays open (and idle) while a second one takes the pid.
            let (w, k3) = (watcher.clone(), k2.clone());
            let seen = in_loop_thread(&k2, move |second_loop, second_thread| {
                let reports = Reports::new(&second_loop);
                second_loop
                    .run_until_complete(async {
                        w.add_child_handler(pid, reports.callback("moved")).unwrap();
                        k3.kill(pid, Some(Signal::SIGKILL)).unwrap();
                    })
                    .unwrap();
                let seen = reports.wait_for(1);
                assert_eq!(seen[0].thread, second_thread);
                seen
            });
            assert_eq!((seen[0].pid, seen[0].code), (pid, -9));
            assert!(
                dropped.load(Ordering::SeqCst),
                "the first callback is dropped"
            );
            // Both loops' fds aside (the second is closed), nothing is open.
            assert_eq!(fd_count(&k2), before, "the first pidfd is closed");
            assert!(!watcher.remove_child_handler(pid));
        });
    }
}

// ----- the signal-based watchers, off the main thread ------------------------------

/// What the errors below end with: the watchers that work off the main thread.
const USE_INSTEAD: &str = "use AutoChildWatcher, ThreadedChildWatcher or PidfdChildWatcher";

/// Goal (S-2, M-2, L-1; users): Safe, Fast and MultiLoop used from a thread that is not
/// the main thread (as cargo runs `#[test]`s) fail with CPython's class and message,
/// followed by what to do: the main thread, or Threaded or Pidfd. So does
/// subprocess_exec under a Safe watcher that a worker thread's loop cannot activate.
struct OffMainThreadErrorsSayWhatToDo;

impl Body for OffMainThreadErrorsSayWhatToDo {
    fn run<K: Kernel>(&self, k: &K) {
        let safe = Arc::new(SafeChildWatcher::with_kernel(k.clone()));
        let fast = Arc::new(FastChildWatcher::with_kernel(k.clone()));
        let multi = Arc::new(MultiLoopChildWatcher::with_kernel(k.clone()));
        // Attached here, in the main thread: a worker can then not detach it.
        let main_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let attached = Arc::new(SafeChildWatcher::with_kernel(k.clone()));
        attached.attach_loop(Some(main_loop.clone())).unwrap();
        loopwatch::policy::set_child_watcher(k, Some(safe.clone())).unwrap();
        let (a, m, k2) = (attached.clone(), multi.clone(), k.clone());
        in_loop_thread(k, move |event_loop, _| {
            for (watcher, name) in [
                (&*safe as &dyn ChildWatcher<K>, "SafeChildWatcher"),
                (&*fast, "FastChildWatcher"),
            ] {
                let error = watcher.attach_loop(Some(event_loop.clone())).unwrap_err();
                assert_eq!(error.kind(), ErrorKind::RuntimeError);
                assert_eq!(
                    error.message(),
                    format!(
                        "set_wakeup_fd only works in main thread: {name} needs the main \
                         thread's loop; in other threads {USE_INSTEAD}"
                    )
                );
                assert!(!watcher.is_active());
            }
            let error = a.attach_loop(None).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ValueError);
            assert_eq!(
                error.message(),
                format!(
                    "signal only works in main thread: SafeChildWatcher needs the main \
                     thread's loop; in other threads {USE_INSTEAD}"
                )
            );
            let error = m.attach_loop(None).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ValueError);
            let message = error.message();
            assert!(
                message.starts_with(
                    "signal only works in main thread: MultiLoopChildWatcher must be \
                     attached once from the main thread"
                ) && message.ends_with(USE_INSTEAD),
                "{message}"
            );
            // The policy's Safe watcher: a worker thread's loop never attaches it.
            let lp = event_loop.clone();
            let outcome = event_loop
                .run_until_complete(async move {
                    lp.subprocess_exec(&testing::sh("exit 0")).map(|p| p.pid())
                })
                .unwrap();
            let error = outcome.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::RuntimeError);
            let message = error.message();
            assert!(
                message.starts_with(
                    "asyncio.get_child_watcher() is not activated, subprocess support is \
                     not installed. SafeChildWatcher reports to the loop it is attached to"
                ) && message.ends_with(USE_INSTEAD),
                "{message}"
            );
            assert_eq!(child_count(&k2), 0, "nothing was spawned");
        });
        loopwatch::policy::set_child_watcher(k, None).unwrap();
        attached.close().unwrap();
        main_loop.close().unwrap();
        multi.close().unwrap();
    }
}

// ----- simulator only ------------------------------------------------------------------
//
// What the real OS cannot show on demand: injected faults (EINTR, pidfd_open refused),
// a chosen pid handed to the next child, a foreign reaper racing the watcher at every
// interleaving, a replay from the seed, and the cost of one exit read from the trace.

/// A sweep of `n` seeds (fewer or one as `LOOPWATCH_SEEDS` / `LOOPWATCH_SEED` say)
/// named as the trial `name`, for the simulator-only tests that sum over seeds.
fn sweep(name: &str, n: u64) -> Sweep {
    Sweep::new(n).name(name).check_leaks()
}

/// Goal (determinism): a seed replays the same trace for each watcher, EINTR faults
/// included, so any failure above can be reproduced from its seed.
fn both_watchers_replay_from_their_seed() -> Result<(), String> {
    for &seed in Sweep::new(5).seeds() {
        let plan = FaultPlan {
            eintr: 0.2,
            ..FaultPlan::default()
        };
        let simulation = Simulation::new(seed).faults(plan);
        for kind in [Kind::Threaded, Kind::Pidfd] {
            let scenario = move |k: SimKernel| Returncodes(kind).run(&k);
            let report = simulation.run(scenario);
            testing::completed(&report).map_err(|e| format!("{kind:?}, seed {seed}: {e}"))?;
            if let Some(divergence) = check_determinism(&simulation, scenario) {
                return Err(format!("{kind:?}, seed {seed}: {divergence:?}"));
            }
        }
    }
    Ok(())
}

/// Goal (T-4): Threaded's waitpid interrupted by EINTR is retried: every code still
/// arrives, and some seed did inject EINTR.
fn threaded_retries_eintr() -> Result<(), String> {
    let swept = sweep("threaded_retries_eintr", SEEDS)
        .simulation(|seed| {
            Simulation::new(seed).faults(FaultPlan {
                eintr: 0.3,
                ..FaultPlan::default()
            })
        })
        .try_run(|k| Returncodes(Kind::Threaded).run(k))
        .map_err(|e| e.to_string())?;
    match swept.marks.get("eintr_injected") {
        Some(&n) if n > 0 => Ok(()),
        _ => Err("no EINTR was injected".to_string()),
    }
}

/// `many` /bin/true children registered `batch` at a time with a `kind` watcher, each
/// reporting 0 once in the loop's thread.
fn many_children(k: &SimKernel, kind: Kind, many: usize, batch: usize) {
    let watcher = kind.make(k);
    let k2 = k.clone();
    in_loop_thread(k, move |event_loop, loop_thread| {
        let reports = Reports::new(&event_loop);
        for round in 0..many / batch {
            event_loop
                .run_until_complete(async {
                    for _ in 0..batch {
                        watcher
                            .add_child_handler(true_child(&k2), reports.callback("true"))
                            .unwrap();
                    }
                })
                .unwrap();
            reports.wait_for((round + 1) * batch);
        }
        let seen = reports.wait_for(many);
        assert!(seen.iter().all(|r| r.code == 0 && r.thread == loop_thread));
        let pids: BTreeSet<Pid> = seen.iter().map(|r| r.pid).collect();
        assert_eq!(pids.len(), many, "each child reported once");
        watcher.close().unwrap();
    });
}

/// A foreign `waitpid(-1)` reaper races the watcher: each registered child is reported
/// exactly once, with its code or (when stolen) 255 and the watcher's warning; a child
/// stolen before Pidfd could open its pidfd is a ProcessLookupError. Adds the number of
/// children reported as 255 to `stolen`.
fn foreign_reaper(k: &SimKernel, kind: Kind, stolen: &AtomicUsize) {
    let pids: Vec<Pid> = (0..5)
        .map(|i| testing::spawn_sh(k, &format!("sleep 0.{i}; exit 7")))
        .collect();
    let (reaper, lines) = actors::reap_any(k, 20, Duration::from_millis(30));
    let watcher = kind.make(k);
    let count = pids.len();
    let capture = Capture::new();
    let (reported, registered) = capture.during(|| {
        in_loop_thread(k, move |event_loop, _| {
            let reports = Reports::new(&event_loop);
            let mut registered = 0;
            event_loop
                .run_until_complete(async {
                    for pid in &pids {
                        match watcher.add_child_handler(*pid, reports.callback("child")) {
                            Ok(()) => registered += 1,
                            Err(e) => assert_eq!(e.kind(), ErrorKind::ProcessLookupError),
                        }
                    }
                })
                .unwrap();
            let seen = reports.wait_for(registered);
            watcher.close().unwrap();
            (seen, registered)
        })
    });
    k.join_thread(reaper).unwrap();
    let stole = lines.lock().unwrap().len();
    let lost: Vec<Pid> = reported
        .iter()
        .filter(|r| r.code == 255)
        .map(|r| r.pid)
        .collect();
    assert!(
        reported.iter().all(|r| r.code == 7 || r.code == 255),
        "{reported:?}"
    );
    // Each stolen child is either refused at registration or reported as 255.
    assert_eq!(lost.len() + (count - registered), stole, "{reported:?}");
    // One warning per 255, naming its pid.
    let mut expected: Vec<String> = lost
        .iter()
        .map(|&pid| kind.reaped_elsewhere_warning(pid))
        .collect();
    let mut warned = asyncio_warnings(&capture);
    expected.sort();
    warned.sort();
    assert_eq!(warned, expected);
    stolen.fetch_add(lost.len(), Ordering::SeqCst);
}

/// Goal (R-2, T-4, K-3, K-4): a foreign waitpid(-1) reaper steals some children; each
/// registered child is still reported once, with 7 or with 255 after a warning, or
/// (Pidfd) refused with ProcessLookupError; over the seeds some child is stolen.
fn with_foreign_reaper(name: &'static str, kind: Kind) -> Test {
    Test::new(name, move || {
        let stolen = Arc::new(AtomicUsize::new(0));
        let count = stolen.clone();
        sweep(name, SEEDS)
            .try_run(move |k| foreign_reaper(k, kind, &count))
            .map_err(|e| e.to_string())?;
        if stolen.load(Ordering::SeqCst) == 0 {
            return Err("no stolen child was reported as 255".to_string());
        }
        Ok(())
    })
}

/// Goal (K-4, X-4): with 1,000 idle registered children, one exit costs exactly one
/// wait call (O(1)), which reaps the pid that exited.
fn pidfd_one_exit_costs_one_waitpid(k: &SimKernel) {
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let watcher = Kind::Pidfd.make(k);
    let pids: Vec<Pid> = (0..=1000).map(|_| sleeper(k)).collect();
    let reports = Reports::new(&event_loop);
    event_loop
        .run_until_complete(async {
            for pid in &pids {
                watcher
                    .add_child_handler(*pid, reports.callback("idle"))
                    .unwrap();
            }
        })
        .unwrap();
    let last = *pids.last().unwrap();
    testing::note(k, &format!("one exit: {last}"));
    assert!(k.end_child(last, ExitStatus::from_exit_code(3)));
    let seen = reports.wait_for(1);
    testing::note(k, "reported");
    assert_eq!((seen[0].pid, seen[0].code), (last, 3));
    // Clean up through the watcher: every other child is killed and reported.
    for pid in &pids[..1000] {
        k.kill(*pid, Some(Signal::SIGKILL)).unwrap();
    }
    let seen = reports.wait_for(1001);
    assert!(seen.iter().filter(|r| r.pid != last).all(|r| r.code == -9));
    event_loop.close().unwrap();
}

/// The trace of [`pidfd_one_exit_costs_one_waitpid`]: between the two notes, one
/// wait, which reaps the pid that exited (with its code, 3).
fn one_waitpid_between_notes(report: &Report) -> Result<(), String> {
    testing::completed(report)?;
    let lines = report.trace.lines();
    let begin = lines.iter().position(|l| l.contains(" note one exit: "));
    let end = lines.iter().position(|l| l.ends_with(" note reported"));
    let (Some(begin), Some(end)) = (begin, end) else {
        return Err("the notes are not in the trace".to_string());
    };
    let pid = lines[begin].rsplit(' ').next().unwrap_or_default();
    let waits: Vec<&String> = lines[begin..end]
        .iter()
        .filter(|l| l.contains(" waitpid("))
        .collect();
    // By pidfd (`waitid(P_PIDFD)`, which reaps exactly the pidfd's process), or by pid
    // on a kernel without P_PIDFD.
    let reaps_it = |line: &str| {
        line.contains(&format!("waitpid({pid}, NoHang)"))
            || (line.contains("waitpid(pidfd ")
                && line.ends_with(&format!("Ok(Terminated(Pid({pid}), ExitStatus(768)))")))
    };
    if waits.len() == 1 && reaps_it(waits[0]) {
        Ok(())
    } else {
        Err(format!("waitpid calls for one exit of {pid}: {waits:?}"))
    }
}

/// Goal (K-3): when `pidfd_open` fails with `errno` (ENOSYS on a kernel before 5.3,
/// EPERM under a seccomp filter), add_child_handler gives Os(errno), the cue to fall
/// back to another watcher, and nothing stays open.
fn pidfd_unavailable_reaches_the_caller(errno: Errno) -> impl Fn(&SimKernel) {
    move |k| {
        let pid = testing::spawn_sh(k, "exit 0");
        let watcher = Kind::Pidfd.make(k);
        in_loop_thread(k, move |event_loop, _| {
            event_loop
                .run_until_complete(async {
                    let error = watcher
                        .add_child_handler(pid, Box::new(|_, _| panic!("never called")))
                        .unwrap_err();
                    assert_eq!(error.kind(), ErrorKind::Os(errno));
                    assert_eq!(error.errno(), Some(errno));
                })
                .unwrap();
        });
        assert_eq!(testing::reap(k, pid), 0);
    }
}

// ----- AutoChildWatcher --------------------------------------------------------------

/// Goal (X-1): a child of `subprocess_exec` is waited for through its process's
/// own pidfd ([`Rung::ProcessPidfd`], no `pidfd_open` of the watcher's), a pid
/// registered by hand through a pidfd of its own ([`Rung::PidfdOpen`]); both report
/// their codes in the loop's thread and leave nothing behind.
struct AutoUsesPidfds;

impl Body for AutoUsesPidfds {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let watcher = Arc::new(AutoChildWatcher::with_kernel(k.clone()));
        let policy_watcher: Arc<dyn ChildWatcher<K>> = watcher.clone();
        loopwatch::policy::set_child_watcher(k, Some(policy_watcher)).unwrap();
        let by_hand = children.add(testing::spawn_sh(k, "exit 4"));
        let (w, k2) = (watcher.clone(), k.clone());
        let (codes, rungs) = in_loop_thread(k, move |event_loop, _| {
            let reports = Reports::new(&event_loop);
            let lp = event_loop.clone();
            let (process, rungs) = event_loop
                .run_until_complete(async {
                    w.add_child_handler(by_hand, reports.callback("by-hand"))
                        .unwrap();
                    let process = lp
                        .subprocess_exec(&SpawnRequest::new("/bin/sh", ["-c", "exit 6"]))
                        .unwrap();
                    let rungs = (w.rung_of(by_hand), w.rung_of(process.pid()));
                    (process, rungs)
                })
                .unwrap();
            let seen = reports.wait_for(1);
            let lp = event_loop.clone();
            let code = event_loop
                .run_until_complete(async move { process.wait().await })
                .unwrap();
            let _ = lp;
            assert_eq!(k2.current_thread(), seen[0].thread);
            ((seen[0].code, code), rungs)
        });
        assert_eq!(codes, (4, 6));
        assert_eq!(rungs, (Some(Rung::PidfdOpen), Some(Rung::ProcessPidfd)));
        assert_eq!(watcher.pidfd_refused(), None);
        assert_eq!(watcher.rung_of(by_hand), None, "reported and forgotten");
        loopwatch::policy::set_child_watcher(k, None).unwrap();
        assert_eq!(pidfds(k).unwrap_or_default(), BTreeSet::new());
    }
}

/// The simulator's report of [`AutoUsesPidfds`]: one `pidfd_open` in all, for the pid
/// registered by hand (the subprocess's own is made with the child by its spawn), and
/// no thread but the loop's.
fn one_pidfd_open_no_thread(report: &Report) -> Result<(), String> {
    testing::completed(report)?;
    let names = thread_names(report);
    if names != ["loop-thread"] {
        return Err(format!("threads {names:?}"));
    }
    let opens = report
        .trace
        .lines()
        .iter()
        .filter(|l| l.contains("pidfd_open("))
        .count();
    // The watcher opens one for the pid by hand; none for the subprocess.
    if opens != 1 {
        return Err(format!("{opens} pidfd_open calls, not 1"));
    }
    Ok(())
}

/// Goal (X-2): where `pidfd_open` is refused for the process with `errno`
/// (ENOSYS, EPERM, EINVAL), every child goes to the waiter rung and reports its code;
/// the refusal is asked once per process, whatever the number of watchers and
/// children, and the watcher says which errno it saw. Without the waiter rung the
/// refusal reaches the caller.
fn auto_falls_back_to_waiters(errno: Errno) -> impl Fn(&SimKernel) {
    move |k| {
        let codes = [0u8, 3, 9];
        let pids: Vec<Pid> = codes
            .iter()
            .map(|code| testing::spawn_sh(k, &format!("exit {code}")))
            .collect();
        let first = Arc::new(AutoChildWatcher::with_kernel(k.clone()));
        let second = Arc::new(AutoChildWatcher::with_kernel(k.clone()));
        let no_waiter = Arc::new(
            AutoChildWatcher::with_kernel(k.clone())
                .without(Rung::Waiter)
                .unwrap(),
        );
        let (a, b, c) = (first.clone(), second.clone(), no_waiter.clone());
        let late = testing::spawn_sh(k, "exit 0");
        let seen = in_loop_thread(k, move |event_loop, _| {
            let reports = Reports::new(&event_loop);
            event_loop
                .run_until_complete(async {
                    for (i, pid) in pids.iter().enumerate() {
                        let watcher = if i == 0 { &a } else { &b };
                        watcher
                            .add_child_handler(*pid, reports.callback(&format!("{i}")))
                            .unwrap();
                        assert_eq!(watcher.rung_of(*pid), Some(Rung::Waiter));
                    }
                    let error = c
                        .add_child_handler(late, Box::new(|_, _| panic!("never called")))
                        .unwrap_err();
                    assert_eq!(error.errno(), Some(errno));
                })
                .unwrap();
            let seen = reports.wait_for(3);
            a.close().unwrap();
            b.close().unwrap();
            seen
        });
        let got: Vec<i32> = seen.iter().map(|r| r.code).collect();
        assert_eq!(got, codes.map(i32::from));
        assert_eq!(first.pidfd_refused(), Some(errno));
        assert_eq!(second.pidfd_refused(), Some(errno));
        assert_eq!(testing::reap(k, late), 0);
    }
}

/// The simulator's report of [`auto_falls_back_to_waiters`]: `pidfd_open` was asked
/// once in the whole process.
fn pidfd_open_asked_once(report: &Report) -> Result<(), String> {
    testing::completed(report)?;
    let opens = report
        .trace
        .lines()
        .iter()
        .filter(|l| l.contains("pidfd_open("))
        .count();
    if opens != 1 {
        return Err(format!("{opens} pidfd_open calls, not 1"));
    }
    Ok(())
}

/// A simulation whose `pidfd_open` answers `errno`.
fn pidfd_refused_with(errno: Errno) -> impl Fn(u64) -> Simulation {
    move |seed| {
        let mut faults = FaultPlan::default();
        match errno {
            Errno::ENOSYS => faults.pidfd_enosys = true,
            Errno::EPERM => faults.pidfd_eperm = true,
            Errno::EINVAL => faults.pidfd_einval = true,
            other => panic!("no fault gives {other:?}"),
        }
        Simulation::new(seed).faults(faults)
    }
}

/// Goal (X-3): a child registered while the process has no fd left (`EMFILE`)
/// goes to the waiter rung alone; the next child, once an fd is free, gets a pidfd
/// again. Both report their codes; no process-wide refusal is recorded.
fn auto_emfile_moves_one_child_down(k: &SimKernel) {
    let crowded = testing::spawn_sh(k, "exit 2");
    let roomy = testing::spawn_sh(k, "exit 5");
    let watcher = Arc::new(AutoChildWatcher::with_kernel(k.clone()));
    let (w, k2) = (watcher.clone(), k.clone());
    let seen = in_loop_thread(k, move |event_loop, _| {
        let reports = Reports::new(&event_loop);
        event_loop
            .run_until_complete(async {
                // Every fd the process may have, taken.
                let mut held = Vec::new();
                loop {
                    match k2.pipe() {
                        Ok((r, w)) => held.extend([r, w]),
                        Err(Errno::EMFILE) => break,
                        Err(other) => panic!("pipe: {other:?}"),
                    }
                }
                // One fd may be left after the last pair failed: take it too.
                while let Ok(fd) = k2.pidfd_open(roomy) {
                    held.push(fd);
                }
                w.add_child_handler(crowded, reports.callback("a-crowded"))
                    .unwrap();
                assert_eq!(w.rung_of(crowded), Some(Rung::Waiter));
                for fd in held {
                    k2.close(fd).unwrap();
                }
                w.add_child_handler(roomy, reports.callback("b-roomy"))
                    .unwrap();
                assert_eq!(w.rung_of(roomy), Some(Rung::PidfdOpen));
            })
            .unwrap();
        let seen = reports.wait_for(2);
        w.close().unwrap();
        seen
    });
    let got: Vec<(Pid, i32)> = seen.iter().map(|r| (r.pid, r.code)).collect();
    assert_eq!(got, [(crowded, 2), (roomy, 5)]);
    assert_eq!(watcher.pidfd_refused(), None);
}

/// Goal (X-1): registering a pending pid again replaces its callback on
/// either rung: one callback fires, once, with the child's true code, and nothing
/// warns; a removed registration never fires and `remove_child_handler` says whether
/// there was one. On the waiter rung the removed child is still reaped by its waiter;
/// on a pidfd rung it is left for the caller.
struct AutoReplacesAndRemoves(Kind);

impl Body for AutoReplacesAndRemoves {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let twice = children.add(testing::spawn_sh(k, "sleep 0.2; exit 8"));
        let removed = children.add(sleeper(k));
        let watcher = self.0.make(k);
        let fired = Arc::new(AtomicBool::new(false));
        let (w, k2, f) = (watcher.clone(), k.clone(), fired.clone());
        let capture = Capture::new();
        let seen = capture.during(|| {
            in_loop_thread(k, move |event_loop, _| {
                let reports = Reports::new(&event_loop);
                event_loop
                    .run_until_complete(async {
                        w.add_child_handler(
                            twice,
                            Box::new(move |_, _| f.store(true, Ordering::SeqCst)),
                        )
                        .unwrap();
                        w.add_child_handler(twice, reports.callback("twice"))
                            .unwrap();
                        w.add_child_handler(removed, Box::new(|_, _| panic!("removed")))
                            .unwrap();
                        assert!(w.remove_child_handler(removed));
                        assert!(!w.remove_child_handler(removed));
                        k2.kill(removed, Some(Signal::SIGKILL)).unwrap();
                    })
                    .unwrap();
                let seen = reports.wait_for(1);
                w.close().unwrap();
                seen
            })
        });
        assert_eq!((seen[0].pid, seen[0].code), (twice, 8));
        assert!(!fired.load(Ordering::SeqCst), "the replaced callback fired");
        assert!(capture.warnings().is_empty(), "{:?}", capture.warnings());
        match self.0.base() {
            Kind::Threaded => {
                let reaped = poll_until(k, || (child_count(k) == 0).then_some(()));
                assert!(reaped.is_some(), "the waiter reaped the removed child");
            }
            _ => assert_eq!(testing::reap(k, removed), -9),
        }
    }
}

/// Goal (X-8): `Process::job_events` reports a child's stops and continues once each,
/// in order: a stop of its own, perhaps before the stream was asked for, then stops
/// and a continue sent by the parent; the stream ends when the child exits, and the
/// exit still reaches `wait`. A second stream for the same child is refused, and a stream
/// asked for once the child was reaped has ended.
struct JobEventsReport(Kind);

impl Body for JobEventsReport {
    fn run<K: Kernel>(&self, k: &K) {
        use loopwatch::subprocess::JobEvent;
        let watcher = self.0.make(k);
        loopwatch::policy::set_child_watcher(k, Some(watcher)).unwrap();
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let lp = event_loop.clone();
        let seconds = if os(k).is_some() { "60" } else { "100000" };
        let outcome = event_loop
            .run_until_complete(async move {
                let stops_itself = SpawnRequest::new("/bin/sh", ["-c", "kill -STOP $$"]);
                let process = lp.subprocess_exec(&stops_itself)?;
                let mut jobs = process.job_events()?;
                let again = process.job_events().map(drop).map_err(|e| e.kind());
                let mut events = vec![jobs.next_event().await];
                // Not a SIGCONT: the shell would exit at once, and a continue followed
                // by the exit before the observer looks is reported as the exit alone.
                process.send_signal(Signal::SIGKILL)?;
                events.push(jobs.next_event().await);
                let first = process.wait().await;

                let process = lp.subprocess_exec(&SpawnRequest::new("/bin/sleep", [seconds]))?;
                let signals = [
                    Signal::SIGSTOP,
                    Signal::SIGCONT,
                    Signal::SIGSTOP,
                    Signal::SIGKILL,
                ];
                events.extend(testing::job_events_after(&process, &signals).await?);
                let second = process.wait().await;

                let process = lp
                    .subprocess_exec(&SpawnRequest::new("/bin/true", std::iter::empty::<&str>()))?;
                let third = process.wait().await;
                let late = process.job_events()?.next_event().await;
                Ok::<_, loopwatch::Error>((events, again, [first, second, third], late))
            })
            .unwrap()
            .unwrap();
        let (events, again, codes, late) = outcome;
        let stopped = Some(JobEvent::Stopped(Signal::SIGSTOP));
        let continued = Some(JobEvent::Continued);
        assert_eq!(
            events,
            [stopped, None, stopped, continued, stopped, None],
            "stops and continues, in order, then the end"
        );
        assert_eq!(again, Err(ErrorKind::RuntimeError), "one stream per child");
        assert_eq!(codes, [-9, -9, 0]);
        assert_eq!(late, None, "a reaped child's stream has ended");
        event_loop.close().unwrap();
        loopwatch::policy::set_child_watcher(k, None).unwrap();
    }
}

/// Goal (X-5): children whose loop is closed while they run are not left as
/// zombies under Auto. One that exited before its loop closed (its report never ran)
/// is reaped when the loop's readers go; one still running then is queued, and reaped
/// by the next registration after it exits; `orphans()` counts the queued ones.
struct AutoReapsOrphans;

impl Body for AutoReapsOrphans {
    fn run<K: Kernel>(&self, k: &K) {
        let children = Children::new(k);
        let exited = children.add(testing::spawn_sh(k, "exit 0"));
        let running = children.add(sleeper(k));
        let watcher = Arc::new(AutoChildWatcher::with_kernel(k.clone()));
        let (w, k2) = (watcher.clone(), k.clone());
        in_loop_thread(k, move |event_loop, _| {
            event_loop
                .run_until_complete(async {
                    for pid in [exited, running] {
                        w.add_child_handler(pid, Box::new(|_, _| panic!("loop closed")))
                            .unwrap();
                    }
                })
                .unwrap();
            // `exited` ends before the loop could run its reader.
            while k2.wait_peek(WaitTarget::Pid(exited), WaitMode::Block) == Err(Errno::EINTR) {}
            event_loop.close().unwrap();
        });
        assert_eq!(watcher.orphans(), 1, "the running child is queued");
        assert_eq!(child_count(k), 1, "the exited child was reaped");
        k.kill(running, Some(Signal::SIGKILL)).unwrap();
        while k.wait_peek(WaitTarget::Pid(running), WaitMode::Block) == Err(Errno::EINTR) {}
        // The next registration, in a new loop, reaps it.
        let next = children.add(testing::spawn_sh(k, "exit 2"));
        let w = watcher.clone();
        let seen = in_loop_thread(k, move |event_loop, _| {
            register_and_wait(&event_loop, &*w, &[("next", next)])
        });
        assert_eq!(seen[0].code, 2);
        assert_eq!(watcher.orphans(), 0);
        assert_eq!(child_count(k), 0, "no zombie is left");
        watcher.close().unwrap();
    }
}

/// Goal (Auto's input checks): a watcher with no rung left cannot be made.
fn auto_needs_a_rung() -> Result<(), String> {
    let mut watcher = AutoChildWatcher::new();
    for rung in &Rung::ALL[..Rung::ALL.len() - 1] {
        watcher = watcher.without(*rung).map_err(|e| e.to_string())?;
    }
    match watcher.without(Rung::Waiter) {
        Err(e) if e.kind() == ErrorKind::ValueError => Ok(()),
        Err(e) => Err(format!("wrong error: {e}")),
        Ok(_) => Err("a watcher without rungs was made".to_string()),
    }
}

/// `simulation`, where a freed pid goes to the next child at once.
fn reusing_pids(mut simulation: Simulation) -> Simulation {
    simulation.config_mut().pid_reuse = PidReuse::LastFreed;
    simulation
}

/// A simulation where `pidfd_open` fails with ENOSYS (a kernel before 5.3), so a
/// `Process` can only signal by pid, and where a freed pid goes to the next child at
/// once.
fn without_pidfd_reusing_pids(seed: u64) -> Simulation {
    let plan = FaultPlan {
        pidfd_enosys: true,
        ..FaultPlan::default()
    };
    reusing_pids(Simulation::new(seed).faults(plan))
}

/// Goal (X-1, found by `explore --watcher auto --faults all`): on the waiter rung, a
/// child that its waiter has reaped, whose report is still on its way to the loop, and
/// whose pid went to a newcomer registered meanwhile: the newcomer gets a waiter and
/// its own returncode, and the first child's report is not handed to the newcomer's
/// callback (which would report the wrong code and leave the newcomer a zombie).
fn auto_waiter_reused_pid_gets_its_own_waiter(k: &SimKernel) {
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let watcher = Arc::new(auto_waiter(k));
    let reports = Reports::new(&event_loop);
    let (w, k2, r) = (watcher.clone(), k.clone(), reports.clone());
    let (first, newcomer) = event_loop
        .run_until_complete(async move {
            let first = testing::spawn_sh(&k2, "exit 1");
            w.add_child_handler(first, r.callback("a-first")).unwrap();
            // The waiter reaps it; its report waits for this loop, which is busy here.
            while child_count(&k2) > 0 {
                k2.sleep(Duration::from_millis(10));
            }
            let newcomer = testing::spawn_sh(&k2, "sleep 1; exit 2");
            assert_eq!(newcomer, first, "the freed pid went to the newcomer");
            w.add_child_handler(newcomer, r.callback("b-newcomer"))
                .unwrap();
            (first, newcomer)
        })
        .unwrap();
    let seen = reports.wait_for(1);
    assert_eq!(
        (seen[0].tag.as_str(), seen[0].pid, seen[0].code),
        ("b-newcomer", newcomer, 2)
    );
    assert_eq!(first, newcomer);
    assert_eq!(child_count(k), 0, "the newcomer was reaped");
    watcher.close().unwrap();
    event_loop.close().unwrap();
}

/// Goal (K-2, loopwatch; `conformance/regressions/pidfd-reregistered-reused-pid.json`):
/// a child registered with Pidfd is reaped by other code and its pid goes to a new
/// child, which is registered while the first registration is still pending, from
/// the same loop. The new registration watches the newcomer through a new pidfd: the
/// first child's end is not reported for it (the old pidfd, readable since the first
/// child died, would give 255 and a warning and leave the newcomer a zombie), the
/// newcomer's callback gets its own returncode once, the newcomer is reaped, and no
/// pidfd is left open.
fn pidfd_reregistered_reused_pid_watches_the_newcomer(k: &SimKernel) {
    let watcher = Kind::Pidfd.make(k);
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let k2 = k.clone();
    let capture = Capture::new();
    capture.during(|| {
        in_loop_thread(k, move |event_loop, loop_thread| {
            let before = fd_count(&k2);
            let reports = Reports::new(&event_loop);
            let newcomer = event_loop
                .run_until_complete(async {
                    let first = sleeper(&k2);
                    watcher
                        .add_child_handler(
                            first,
                            Box::new(move |_, _| {
                                let _keep = &flag;
                                panic!("the first child's callback was called");
                            }),
                        )
                        .unwrap();
                    // Other code reaps the first child; its pid goes to the next child.
                    k2.kill(first, Some(Signal::SIGKILL)).unwrap();
                    assert_eq!(testing::reap(&k2, first), -9);
                    let newcomer = sleeper(&k2);
                    assert_eq!(newcomer, first, "the freed pid went to the newcomer");
                    watcher
                        .add_child_handler(newcomer, reports.callback("newcomer"))
                        .unwrap();
                    assert!(dropped.load(Ordering::SeqCst), "the first is dropped");
                    assert_eq!(fd_count(&k2), before + 1, "one pidfd, the newcomer's");
                    newcomer
                })
                .unwrap();
            // A loop iteration while the newcomer runs: nothing is reported for it.
            let stopper = event_loop.clone();
            event_loop.call_soon(move || stopper.stop()).unwrap();
            event_loop.run_forever().unwrap();
            assert!(reports.seen.is_empty(), "{:?}", reports.seen);
            assert!(k2.end_child(newcomer, ExitStatus::from_exit_code(3)));
            let seen = reports.wait_for(1);
            assert_eq!(
                (seen[0].pid, seen[0].code, seen[0].thread),
                (newcomer, 3, loop_thread)
            );
            assert_eq!(child_count(&k2), 0, "the newcomer is reaped, no zombie");
            assert_eq!(fd_count(&k2), before, "no pidfd is left open");
            assert!(!watcher.remove_child_handler(newcomer), "reported, so gone");
        });
    });
    assert!(capture.warnings().is_empty(), "{:?}", capture.warnings());
}

/// Goal (reliability finding 3): without pidfds, a child reaped by the watcher's own
/// thread (Threaded's waiter, MultiLoop's reaper) before the loop hears of it is
/// marked reaped at once: send_signal gives ProcessLookupError and the stranger that
/// got its pid survives.
fn reused_pid_not_signalled(k: &SimKernel, watcher: Arc<dyn ChildWatcher<SimKernel>>) {
    // MultiLoop installs its handler here (main thread); a no-op for Threaded.
    watcher.attach_loop(None).unwrap();
    loopwatch::policy::set_child_watcher(k, Some(watcher.clone())).unwrap();
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let lp = event_loop.clone();
    let process = event_loop
        .run_until_complete(async move {
            lp.subprocess_exec(&SpawnRequest::new("/bin/sh", ["-c", "exit 3"]))
        })
        .unwrap()
        .unwrap();
    let pid = process.pid();
    // The loop does not run: the watcher's thread reaps the child, and the hop that
    // tells the loop waits in the loop's queue.
    while child_count(k) != 0 {
        k.sleep(Duration::from_millis(1));
    }
    let stranger = sleeper(k);
    assert_eq!(stranger, pid, "the freed pid went to the stranger");
    let error = process
        .send_signal(Signal::SIGTERM)
        .expect_err("the child was reaped: nothing to signal");
    assert_eq!(error.kind(), ErrorKind::ProcessLookupError);
    assert_eq!(
        k.wait_pid(stranger, WaitMode::NoHang),
        Ok(WaitStatus::StillAlive),
        "the stranger survives"
    );
    let code = event_loop
        .run_until_complete(async { process.wait().await })
        .unwrap();
    assert_eq!(code, 3);
    k.kill(stranger, Some(Signal::SIGKILL)).unwrap();
    assert_eq!(testing::reap(k, stranger), -9);
    drop(process);
    loopwatch::policy::set_child_watcher(k, None).unwrap();
    event_loop.close().unwrap();
}

/// A simulation where blocking calls return EINTR, polls wake for nothing, signals go
/// to other threads, threads and children run late and freed pids are reused at once
/// (every fault that leaves a child's fate alone), and, with `no_pidfd`, pidfds are
/// refused, so the observer waits by pid. (When written, each of the 64 seeds of
/// `job_events_under_faults` had the observer's blocking wait return EINTR.)
fn job_event_faults(seed: u64, no_pidfd: bool) -> Simulation {
    let plan = FaultPlan {
        eintr: 0.3,
        spurious_wakeup: 0.3,
        signal_other_thread: 0.3,
        lag: Duration::from_millis(100),
        pidfd_enosys: no_pidfd,
        ..FaultPlan::default()
    };
    reusing_pids(Simulation::new(seed).faults(plan))
}

/// The report of `job_events_by_pid_without_pidfds` (and `…_under_faults`): pidfds
/// were refused, and the observer waited by pid.
fn job_events_by_pid(report: &Report) -> Result<(), String> {
    testing::completed(report)?;
    if report.mark("pidfd_enosys") == 0 {
        return Err("pidfd was used".to_string());
    }
    let by_pid = report.trace.lines().iter().any(|line| {
        line.contains("waitid(") && line.contains("WSTOPPED") && !line.contains("pidfd")
    });
    if !by_pid {
        return Err("no job-control wait by pid".to_string());
    }
    Ok(())
}

/// The report of [`reused_pid_not_signalled`]: pidfds were refused and a pid reused.
fn pid_reused_without_pidfd(report: &Report) -> Result<(), String> {
    testing::completed(report)?;
    if report.mark("pidfd_enosys") == 0 {
        return Err("pidfd was used".to_string());
    }
    if report.mark("pid_reused") == 0 {
        return Err("no pid was reused".to_string());
    }
    Ok(())
}

// ----- main ----------------------------------------------------------------------------

/// Opens once what the process keeps open afterwards (the first loop's process-wide
/// state, the first spawn's), so that the first test's leak account starts from it.
fn warm_up() {
    let event_loop = EventLoop::new().expect("a loop");
    event_loop.close().expect("close the loop");
    let pid = true_child(&OsKernel);
    assert_eq!(testing::reap(&OsKernel, pid), 0);
}

/// A test of `body` on both kernels, [`SEEDS`] seeds on the simulator, that fails if
/// it leaves a child, an fd or a thread behind.
fn both<B: Body>(name: &str, body: B) -> Test {
    Test::both(name, body).seeds(SEEDS).check_leaks()
}

/// Puts back to SIG_DFL the signals whose default actions these tests rely on (a
/// child's `kill -TERM $$`, `kill -SEGV $$`; SIGCHLD for the watchers) if this binary
/// inherited them ignored, as under `nohup` or as a background job may be. A handler
/// cannot be inherited, so SIG_IGN is all there is to undo.
fn reset_inherited_ignores() {
    testing::undo_inherited_ignores(&[Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGSEGV]);
}

fn main() -> ExitCode {
    reset_inherited_ignores();
    warm_up();
    let no_pidfd = testing::pidfd_unavailable();
    let pidfd = |test: Test| match &no_pidfd {
        Some(reason) => test.skip_os(reason.clone()),
        None => test,
    };
    let large = |seed| Simulation::new(seed).keep_trace(false);
    testing::main([
        both(
            "threaded_reports_returncodes_in_loop_thread",
            Returncodes(Kind::Threaded),
        )
        .check_report(returncodes_threads(Kind::Threaded)),
        pidfd(both(
            "pidfd_reports_returncodes_in_loop_thread",
            Returncodes(Kind::Pidfd),
        ))
        .check_report(returncodes_threads(Kind::Pidfd)),
        both(
            "threaded_needs_a_running_loop",
            NeedsARunningLoop(Kind::Threaded),
        )
        .check_report(nothing_started),
        pidfd(both(
            "pidfd_needs_a_running_loop",
            NeedsARunningLoop(Kind::Pidfd),
        ))
        .check_report(nothing_started),
        both("threaded_same_pid_twice_fires_both", ThreadedSamePidTwice),
        pidfd(both(
            "pidfd_same_pid_twice_replaces",
            PidfdSamePidTwiceReplaces,
        )),
        pidfd(both(
            "pidfd_reregister_in_another_loop_moves_it",
            PidfdReregisterInAnotherLoop,
        )),
        both(
            "threaded_remove_attach_close_are_noops",
            ThreadedRemoveAttachCloseAreNoops,
        ),
        pidfd(both(
            "pidfd_remove_before_exit_drops_the_callback",
            PidfdRemoveBeforeExit,
        )),
        pidfd(both(
            "pidfd_remove_from_another_thread",
            PidfdRemoveFromAnotherThread,
        )),
        both(
            "threaded_callback_panic_is_reported",
            CallbackPanicIsReported(Kind::Threaded),
        ),
        pidfd(both(
            "pidfd_callback_panic_is_reported",
            CallbackPanicIsReported(Kind::Pidfd),
        )),
        both(
            "threaded_thousand_children",
            ThousandChildren(Kind::Threaded),
        )
        .seeds(3)
        .simulation(large),
        pidfd(both(
            "pidfd_thousand_children",
            ThousandChildren(Kind::Pidfd),
        ))
        .seeds(3)
        .simulation(large),
        both(
            "finding_12_threaded_dropped_loop_is_freed",
            DroppedLoopIsFreed(Kind::Threaded),
        ),
        pidfd(both(
            "finding_12_pidfd_dropped_loop_is_freed",
            DroppedLoopIsFreed(Kind::Pidfd),
        )),
        both(
            "finding_15_threaded_sigchld_ignored_is_reported",
            SigchldIgnoredIsReported(Kind::Threaded),
        ),
        pidfd(both(
            "finding_15_pidfd_sigchld_ignored_is_reported",
            SigchldIgnoredIsReported(Kind::Pidfd),
        )),
        both(
            "threaded_names_its_threads_and_keeps_them_until_close",
            ThreadedNamesItsThreads,
        )
        .check_report(two_waiters_named),
        both("threaded_reuses_idle_waiters", ThreadedReusesIdleWaiters)
            .check_report(one_waiter_named),
        both(
            "threaded_add_joins_waiters_past_their_keep_alive",
            ThreadedAddJoinsFinishedWaiters {
                keep_alive: Duration::from_millis(200),
            },
        )
        .check_report(two_waiters_named),
        both(
            "threaded_without_keep_alive_joins_finished_waiters",
            ThreadedAddJoinsFinishedWaiters {
                keep_alive: Duration::ZERO,
            },
        )
        .check_report(two_waiters_named),
        both(
            "threaded_reaped_elsewhere_reports_255",
            ThreadedReapedElsewhere,
        ),
        both(
            "threaded_drop_with_blocked_waiter_warns",
            ThreadedDropWithBlockedWaiterWarns,
        ),
        both(
            "threaded_closed_loop_drops_callback",
            ThreadedClosedLoopDropsCallback,
        ),
        pidfd(both(
            "pidfd_reaped_before_add_is_process_lookup_error",
            PidfdReapedBeforeAdd,
        )),
        pidfd(both(
            "pidfd_reaped_behind_its_back_reports_255",
            PidfdReapedBehindItsBack,
        )),
        pidfd(both(
            "pidfd_closed_loop_closes_pidfd",
            PidfdClosedLoopClosesPidfd,
        )),
        pidfd(both(
            "pidfd_shares_the_process_pidfd",
            PidfdSharesTheProcessPidfd,
        )),
        both(
            "off_main_thread_errors_say_what_to_do",
            OffMainThreadErrorsSayWhatToDo,
        ),
        pidfd(both("auto_uses_pidfds", AutoUsesPidfds)).check_report(one_pidfd_open_no_thread),
        pidfd(both(
            "auto_reports_returncodes_in_loop_thread",
            Returncodes(Kind::Auto),
        ))
        .check_report(returncodes_threads(Kind::Auto)),
        both(
            "auto_waiter_reports_returncodes_in_loop_thread",
            Returncodes(Kind::AutoWaiter),
        )
        .check_report(returncodes_threads(Kind::AutoWaiter)),
        both("auto_needs_a_running_loop", NeedsARunningLoop(Kind::Auto))
            .check_report(nothing_started),
        pidfd(both(
            "auto_replaces_and_removes",
            AutoReplacesAndRemoves(Kind::Auto),
        )),
        both(
            "auto_waiter_replaces_and_removes",
            AutoReplacesAndRemoves(Kind::AutoWaiter),
        ),
        pidfd(both(
            "auto_callback_panic_is_reported",
            CallbackPanicIsReported(Kind::Auto),
        )),
        both(
            "auto_waiter_callback_panic_is_reported",
            CallbackPanicIsReported(Kind::AutoWaiter),
        ),
        pidfd(both("auto_thousand_children", ThousandChildren(Kind::Auto)))
            .seeds(3)
            .simulation(large),
        pidfd(both(
            "auto_dropped_loop_is_freed",
            DroppedLoopIsFreed(Kind::Auto),
        )),
        both(
            "auto_waiter_dropped_loop_is_freed",
            DroppedLoopIsFreed(Kind::AutoWaiter),
        ),
        pidfd(both(
            "auto_sigchld_ignored_is_reported",
            SigchldIgnoredIsReported(Kind::Auto),
        )),
        both(
            "auto_waiter_sigchld_ignored_is_reported",
            SigchldIgnoredIsReported(Kind::AutoWaiter),
        ),
        Test::new("auto_needs_a_rung", auto_needs_a_rung),
        pidfd(both("auto_job_events", JobEventsReport(Kind::Auto))),
        both("auto_waiter_job_events", JobEventsReport(Kind::AutoWaiter)),
        pidfd(both("pidfd_job_events", JobEventsReport(Kind::Pidfd))),
        both("threaded_job_events", JobEventsReport(Kind::Threaded)),
        Test::sim("job_events_under_faults", |k: &SimKernel| {
            JobEventsReport(Kind::Auto).run(k)
        })
        .seeds(64)
        .simulation(|seed| job_event_faults(seed, false))
        .check_leaks(),
        Test::sim("job_events_by_pid_under_faults", |k: &SimKernel| {
            JobEventsReport(Kind::Threaded).run(k)
        })
        .seeds(64)
        .simulation(|seed| job_event_faults(seed, true))
        .check_report(job_events_by_pid)
        .check_leaks(),
        Test::sim("job_events_by_pid_without_pidfds", |k: &SimKernel| {
            JobEventsReport(Kind::Auto).run(k)
        })
        .seeds(SEEDS)
        .simulation(without_pidfd_reusing_pids)
        .check_report(job_events_by_pid)
        .check_leaks(),
        pidfd(both("auto_reaps_orphans", AutoReapsOrphans)),
        both(
            "threaded_sigchld_ignored_later_is_explained",
            SigchldIgnoredLaterIsExplained(Kind::Threaded),
        ),
        pidfd(both(
            "pidfd_sigchld_ignored_later_is_explained",
            SigchldIgnoredLaterIsExplained(Kind::Pidfd),
        )),
        pidfd(both(
            "auto_sigchld_ignored_later_is_explained",
            SigchldIgnoredLaterIsExplained(Kind::Auto),
        )),
        both(
            "auto_waiter_sigchld_ignored_later_is_explained",
            SigchldIgnoredLaterIsExplained(Kind::AutoWaiter),
        ),
        // Simulator only: each says why in its section's note.
        Test::new(
            "both_watchers_replay_from_their_seed",
            both_watchers_replay_from_their_seed,
        ),
        Test::new("threaded_retries_eintr", threaded_retries_eintr),
        Test::sim("both_watchers_many_children_over_seeds", |k| {
            // Goal (T-3, T-4, K-2): 100 children at once, each reported 0 once whatever
            // the interleaving the seed picks, with either watcher.
            many_children(k, Kind::Threaded, 100, 100);
            many_children(k, Kind::Pidfd, 100, 100);
        })
        .seeds(SEEDS)
        .check_leaks(),
        with_foreign_reaper("threaded_with_foreign_reaper", Kind::Threaded),
        with_foreign_reaper("pidfd_with_foreign_reaper", Kind::Pidfd),
        with_foreign_reaper("auto_with_foreign_reaper", Kind::Auto),
        with_foreign_reaper("auto_waiter_with_foreign_reaper", Kind::AutoWaiter),
        Test::sim("auto_many_children_over_seeds", |k| {
            many_children(k, Kind::Auto, 100, 100);
            many_children(k, Kind::AutoWaiter, 100, 100);
        })
        .seeds(SEEDS)
        .check_leaks(),
        Test::sim(
            "auto_enosys_falls_back_to_waiters",
            auto_falls_back_to_waiters(Errno::ENOSYS),
        )
        .seeds(SEEDS)
        .simulation(pidfd_refused_with(Errno::ENOSYS))
        .check_report(pidfd_open_asked_once)
        .check_leaks(),
        Test::sim(
            "auto_eperm_falls_back_to_waiters",
            auto_falls_back_to_waiters(Errno::EPERM),
        )
        .seeds(SEEDS)
        .simulation(pidfd_refused_with(Errno::EPERM))
        .check_report(pidfd_open_asked_once)
        .check_leaks(),
        Test::sim(
            "auto_einval_falls_back_to_waiters",
            auto_falls_back_to_waiters(Errno::EINVAL),
        )
        .seeds(SEEDS)
        .simulation(pidfd_refused_with(Errno::EINVAL))
        .check_report(pidfd_open_asked_once)
        .check_leaks(),
        Test::sim(
            "auto_emfile_moves_one_child_down",
            auto_emfile_moves_one_child_down,
        )
        .seeds(SEEDS)
        .simulation(|seed| {
            Simulation::new(seed).faults(FaultPlan {
                fd_limit: Some(64),
                ..FaultPlan::default()
            })
        })
        .check_leaks(),
        Test::sim(
            "pidfd_one_exit_costs_one_waitpid",
            pidfd_one_exit_costs_one_waitpid,
        )
        .seeds(5)
        .check_report(one_waitpid_between_notes)
        .check_leaks(),
        Test::sim(
            "pidfd_enosys_reaches_the_caller",
            pidfd_unavailable_reaches_the_caller(Errno::ENOSYS),
        )
        .seeds(SEEDS)
        .simulation(|seed| {
            Simulation::new(seed).faults(FaultPlan {
                pidfd_enosys: true,
                ..FaultPlan::default()
            })
        })
        .check_leaks(),
        Test::sim(
            "pidfd_eperm_reaches_the_caller",
            pidfd_unavailable_reaches_the_caller(Errno::EPERM),
        )
        .seeds(SEEDS)
        .simulation(|seed| {
            Simulation::new(seed).faults(FaultPlan {
                pidfd_eperm: true,
                ..FaultPlan::default()
            })
        })
        .check_leaks(),
        Test::sim(
            "auto_waiter_reused_pid_gets_its_own_waiter",
            auto_waiter_reused_pid_gets_its_own_waiter,
        )
        .seeds(SEEDS)
        .simulation(without_pidfd_reusing_pids)
        .check_leaks(),
        Test::sim(
            "pidfd_reregistered_reused_pid_watches_the_newcomer",
            pidfd_reregistered_reused_pid_watches_the_newcomer,
        )
        .seeds(SEEDS)
        .simulation(|seed| reusing_pids(Simulation::new(seed)))
        .check_leaks(),
        Test::sim("finding_03_threaded_reused_pid_not_signalled", |k| {
            reused_pid_not_signalled(k, Kind::Threaded.make(k));
        })
        .seeds(SEEDS)
        .simulation(without_pidfd_reusing_pids)
        .check_report(pid_reused_without_pidfd)
        .check_leaks(),
        Test::sim("finding_03_multi_loop_reused_pid_not_signalled", |k| {
            reused_pid_not_signalled(k, Arc::new(MultiLoopChildWatcher::with_kernel(k.clone())));
        })
        .seeds(SEEDS)
        .simulation(without_pidfd_reusing_pids)
        .check_report(pid_reused_without_pidfd)
        .check_leaks(),
    ])
}
