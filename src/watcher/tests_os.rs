//! [`ThreadedChildWatcher`] and [`PidfdChildWatcher`] on the real OS, with the loop
//! running in a thread that is not the main thread.
//!
//! Each test checks what it leaves behind: no zombie among its children, no pidfd and
//! no other fd left open, no `asyncio-waitpid-*` thread left running. Those are
//! process-wide facts, and tests of other modules run in parallel threads of the same
//! process (opening fds, starting threads), so every test re-runs itself in a fresh
//! copy of the test binary that runs only it ([`isolated`]), as the kernel tests do.
//! There nothing else opens fds, starts threads or has children, and warnings can be
//! captured by a process-wide `tracing` subscriber (Threaded warns from its threads).
//!
//! Every child is killed and reaped on every path: children are held by [`Children`],
//! which, when dropped, kills and reaps any that is still a child of this process.
//!
//! Linux only: the checks read `/proc`, and Pidfd needs `pidfd_open`. Not under loom,
//! whose locks need a loom model to run in.

#![cfg(all(target_os = "linux", not(loom)))]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::{ChildCallback, ChildWatcher, PidfdChildWatcher, ThreadedChildWatcher};
use crate::OsKernel;
use crate::error::ErrorKind;
use crate::event_loop::{EventLoop, ExceptionContext};
use crate::kernel::{
    Clock, Fds, Pid, Processes, Signal, SpawnRequest, ThreadId, Threads, WaitMode, WaitStatus,
};
use crate::loom::sync::Mutex;

/// How long a test waits for what should happen at once before it fails instead of
/// hanging. Generous: a loaded machine must not fail a test.
const PATIENCE: Duration = Duration::from_secs(120);

/// Tells a re-executed test binary which test body to run (see [`isolated`]).
const ISOLATED: &str = "LOOPWATCH_WATCHER_TEST_ISOLATED";

/// How many children the large tests register.
const MANY: usize = 1000;

/// Threaded's large test starts at most this many children (and threads) at a time.
const THREAD_BATCH: usize = 100;

// ----- isolation ---------------------------------------------------------------------

/// Runs `body` in a fresh copy of this test binary that runs only the test `name` of
/// this module (the calling test), with a process-wide capture of `tracing` events,
/// and checks that it passed.
fn isolated(name: &str, body: impl FnOnce()) {
    if std::env::var_os(ISOLATED).is_some_and(|v| v == name) {
        capture::install();
        body();
        return;
    }
    let test = crate::test_support::test_path(module_path!(), name);
    crate::test_support::rerun_alone(&test, ISOLATED, name, Duration::from_secs(600));
}

/// Calls `probe` every 10 ms until it answers, for at most `limit`.
fn poll_until<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let k = OsKernel;
    let step = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    loop {
        if let Some(answer) = probe() {
            return Some(answer);
        }
        if waited >= limit {
            return None;
        }
        k.sleep(step);
        waited += step;
    }
}

/// Captures every `tracing` event of the (isolated) process.
mod capture {
    use std::sync::{Arc, OnceLock};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    use crate::loom::sync::Mutex;

    /// One event: target, level, message and the `category` field, if any.
    #[derive(Clone, Debug)]
    pub(super) struct Captured {
        pub(super) target: String,
        pub(super) level: Level,
        pub(super) message: String,
        pub(super) category: String,
    }

    static EVENTS: OnceLock<Arc<Mutex<Vec<Captured>>>> = OnceLock::new();

    struct Capture(Arc<Mutex<Vec<Captured>>>);

    struct Fields(String, String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            match field.name() {
                "message" => self.0 = format!("{value:?}"),
                "category" => self.1 = format!("{value:?}"),
                _ => {}
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            match field.name() {
                "message" => self.0 = value.to_string(),
                "category" => self.1 = value.to_string(),
                _ => {}
            }
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields(String::new(), String::new());
            event.record(&mut fields);
            self.0.lock().push(Captured {
                target: event.metadata().target().to_string(),
                level: *event.metadata().level(),
                message: fields.0,
                category: fields.1,
            });
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// Installs the process-wide capture (once; the process runs one test).
    pub(super) fn install() {
        let events = EVENTS.get_or_init(Arc::default).clone();
        let _ = tracing::subscriber::set_global_default(Capture(events));
    }

    /// The `asyncio` events at `level` so far.
    pub(super) fn asyncio(level: Level) -> Vec<Captured> {
        of("asyncio", level)
    }

    /// The events of `target` at `level` so far.
    pub(super) fn of(target: &str, level: Level) -> Vec<Captured> {
        EVENTS
            .get()
            .map(|events| {
                events
                    .lock()
                    .iter()
                    .filter(|e| e.target == target && e.level == level)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn warnings() -> Vec<String> {
    capture::asyncio(tracing::Level::WARN)
        .into_iter()
        .map(|e| e.message)
        .collect()
}

// ----- children, fds, threads --------------------------------------------------------

/// The test's children: whatever is still a child of this process when the last
/// handle is dropped is killed and reaped. Only pids that are still our children are
/// signalled, so a reaped (and possibly reused) pid is never hit.
#[derive(Clone, Default)]
struct Children(Arc<ChildrenInner>);

#[derive(Default)]
struct ChildrenInner(Mutex<Vec<Pid>>);

impl Children {
    fn start(&self, request: &SpawnRequest) -> Pid {
        let spawned = OsKernel
            .spawn(request)
            .unwrap_or_else(|e| panic!("spawn {:?} {:?}: {e}", request.program, request.args));
        self.0.0.lock().push(spawned.pid);
        spawned.pid
    }

    /// `/bin/sh -c script`.
    fn sh(&self, script: &str) -> Pid {
        self.start(&SpawnRequest::new("/bin/sh", ["-c", script]))
    }

    /// A child that runs until killed (a minute at most).
    fn sleeper(&self) -> Pid {
        self.start(&SpawnRequest::new("/bin/sleep", ["60"]))
    }

    fn pids(&self) -> Vec<Pid> {
        self.0.0.lock().clone()
    }

    /// Takes on a child started elsewhere (by `spawn_with`).
    fn adopt(&self, pid: Pid) {
        self.0.0.lock().push(pid);
    }
}

impl Drop for ChildrenInner {
    fn drop(&mut self) {
        let k = OsKernel;
        for pid in std::mem::take(&mut *self.0.lock()) {
            if is_our_child(pid) {
                let _ = k.kill(pid, Some(Signal::SIGKILL));
                // A watcher's thread may reap it first: then this gives ECHILD.
                while k.wait_pid(pid, WaitMode::Block) == Err(crate::kernel::Errno::EINTR) {}
            }
        }
    }
}

/// The children of every thread of this process, from `/proc/self/task/*/children`,
/// or `None` where the kernel lacks those files (`CONFIG_PROC_CHILDREN`).
fn children_lists() -> Option<BTreeSet<Pid>> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut found = false;
    let mut pids = BTreeSet::new();
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        found = true;
        pids.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(Pid),
        );
    }
    found.then_some(pids)
}

/// Whether `pid` is (still) a child of this process, running or zombie.
fn is_our_child(pid: Pid) -> bool {
    if let Some(children) = children_lists() {
        return children.contains(&pid);
    }
    // Field 4 of /proc/PID/stat is the parent; the name before it may hold spaces and
    // parentheses, so parse after the last ')'.
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", pid.0)) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
    ppid == Some(OsKernel.getpid().0)
}

/// Open fds that are pidfds.
fn pidfds() -> BTreeSet<i32> {
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
    fds
}

/// Whether fd `n` is open and a pidfd.
fn is_pidfd(n: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{n}"))
        .is_ok_and(|target| target.to_string_lossy() == "anon_inode:[pidfd]")
}

/// Open fds of the process.
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Threads whose name starts with `asyncio-waitpid` (`comm` keeps 15 bytes of it).
fn waiter_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|comm| comm.trim_end().starts_with("asyncio-waitpid"))
        .count()
}

/// What a test checks at its end: its children reaped, no pidfd and no other fd
/// left open, no waiter thread left. A joined thread may linger in `/proc` for a
/// moment while the kernel tears it down, hence the bounded poll.
fn assert_clean(children: &Children, fds_before: usize) {
    for pid in children.pids() {
        assert!(!is_our_child(pid), "pid {pid} is left unreaped");
    }
    assert_eq!(pidfds(), BTreeSet::new(), "pidfds left open");
    let gone = poll_until(PATIENCE, || (waiter_threads() == 0).then_some(()));
    assert!(gone.is_some(), "{} waiter threads left", waiter_threads());
    assert_eq!(fd_count(), fds_before, "fds left open");
}

/// Warms up what the process opens once (so that the fd count after a test compares
/// with the one before) and returns the fd count.
fn warm_up() -> usize {
    let event_loop = EventLoop::new().expect("a loop");
    event_loop.close().expect("close");
    let children = Children::default();
    let pid = children.start(&SpawnRequest::new("/bin/true", std::iter::empty::<&str>()));
    assert!(matches!(
        OsKernel.wait_pid(pid, WaitMode::Block),
        Ok(WaitStatus::Terminated(..))
    ));
    fd_count()
}

// ----- loops and callbacks -------------------------------------------------------------

/// Runs `body` in a new thread (not the main thread) with a new loop, which is closed
/// afterwards if `body` left it open; returns what `body` returned, or re-raises its panic.
fn in_loop_thread<T: Send + 'static>(
    body: impl FnOnce(EventLoop, ThreadId) -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = OsKernel
        .spawn_thread(
            "loop-thread",
            Box::new(move || {
                let k = OsKernel;
                assert!(!k.is_main_thread());
                let event_loop = EventLoop::new().expect("a loop");
                let out = body(event_loop.clone(), k.current_thread());
                if !event_loop.is_closed() {
                    event_loop.close().expect("close the loop");
                }
                let _ = tx.send(out);
            }),
        )
        .expect("start the loop thread");
    match OsKernel.join_thread(thread) {
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
struct Reports {
    seen: Arc<Mutex<Vec<Reported>>>,
    target: Arc<AtomicUsize>,
    event_loop: EventLoop,
}

impl Reports {
    fn new(event_loop: &EventLoop) -> Reports {
        Reports {
            seen: Arc::default(),
            target: Arc::new(AtomicUsize::new(usize::MAX)),
            event_loop: event_loop.clone(),
        }
    }

    fn record(&self, tag: &str, pid: Pid, code: i32) {
        let count = {
            let mut seen = self.seen.lock();
            seen.push(Reported {
                tag: tag.to_string(),
                pid,
                code,
                thread: OsKernel.current_thread(),
            });
            seen.len()
        };
        if count >= self.target.load(Ordering::SeqCst) {
            self.event_loop.stop();
        }
    }

    fn callback(&self, tag: &str) -> ChildCallback {
        let (reports, tag) = (self.clone(), tag.to_string());
        Box::new(move |pid, code| reports.record(&tag, pid, code))
    }

    fn len(&self) -> usize {
        self.seen.lock().len()
    }

    /// Runs the loop (from its thread, not running) until `count` callbacks in all
    /// have arrived, or fails after [`PATIENCE`]; returns them all.
    fn wait_for(&self, count: usize) -> Vec<Reported> {
        self.target.store(count, Ordering::SeqCst);
        // Callbacks only run in this thread, so nothing arrives between check and run.
        if self.len() < count {
            let stopper = self.event_loop.clone();
            let watchdog = self
                .event_loop
                .call_later(PATIENCE.as_secs_f64(), move || stopper.stop())
                .expect("watchdog");
            self.event_loop.run_forever().expect("run_forever");
            watchdog.cancel();
        }
        let seen = self.seen.lock().clone();
        assert_eq!(seen.len(), count, "callbacks so far: {seen:?}");
        seen
    }
}

/// Registers `(tag, pid)` with `watcher` from inside the running loop, then waits for
/// one callback each; returns them sorted by tag.
fn register_and_wait(
    event_loop: &EventLoop,
    watcher: &dyn ChildWatcher,
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
    let mut seen = reports.wait_for(children.len());
    seen.sort_by(|a, b| a.tag.cmp(&b.tag));
    seen
}

/// The children of the returncode tests: `(tag, script, returncode)`.
const CODES: [(&str, &str, i32); 6] = [
    ("a-exit-0", "exit 0", 0),
    ("b-exit-1", "exit 1", 1),
    ("c-exit-3", "exit 3", 3),
    ("d-exit-255", "exit 255", 255),
    ("e-sigterm", "kill -TERM $$", -15),
    ("f-sigkill", "kill -9 $$", -9),
];

/// Spawns the [`CODES`] children and a sleeper, registers them all, kills the sleeper
/// once registered, and checks every returncode and that callbacks ran in the loop's
/// thread. Returns the pids (sleeper last).
fn check_returncodes(watcher: Arc<dyn ChildWatcher>, children: &Children) {
    let mut spawned: Vec<(String, Pid, i32)> = CODES
        .iter()
        .map(|&(tag, script, code)| (tag.to_string(), children.sh(script), code))
        .collect();
    let sleeper = children.sleeper();
    spawned.push(("g-killed".to_string(), sleeper, -9));
    let expected = spawned.clone();
    in_loop_thread(move |event_loop, loop_thread| {
        let reports = Reports::new(&event_loop);
        event_loop
            .run_until_complete(async {
                for (tag, pid, _) in &spawned {
                    watcher
                        .add_child_handler(*pid, reports.callback(tag))
                        .unwrap_or_else(|e| panic!("add_child_handler({pid}): {e}"));
                }
                // Killed while registered and running: -SIGKILL.
                OsKernel
                    .kill(sleeper, Some(Signal::SIGKILL))
                    .expect("kill the sleeper");
            })
            .expect("run_until_complete");
        let mut seen = reports.wait_for(spawned.len());
        seen.sort_by(|a, b| a.tag.cmp(&b.tag));
        for (report, (tag, pid, code)) in seen.iter().zip(&expected) {
            assert_eq!((&report.tag, report.pid, report.code), (tag, *pid, *code));
            assert_eq!(
                report.thread, loop_thread,
                "{tag}: callback outside the loop thread"
            );
        }
        watcher.close().expect("close");
    });
}

// ----- ThreadedChildWatcher ----------------------------------------------------------

#[test]
fn threaded_reports_returncodes_in_loop_thread() {
    // Goal (T-3, T-4, R-1, R-4): exit codes 0/1/3/255 and deaths by SIGTERM/SIGKILL arrive as returncodes, in the thread of the loop that ran at registration.
    isolated("threaded_reports_returncodes_in_loop_thread", || {
        let fds = warm_up();
        let children = Children::default();
        let watcher = Arc::new(ThreadedChildWatcher::new());
        check_returncodes(watcher.clone(), &children);
        assert_eq!(watcher.pending_threads(), 0, "close joined every waiter");
        assert!(warnings().is_empty(), "{:?}", warnings());
        assert_clean(&children, fds);
    });
}

#[test]
fn threaded_names_its_threads_and_keeps_them_until_close() {
    // Goal (T-3, T-2): each registration starts a thread named asyncio-waitpid-N that blocks while its child runs; close leaves blocked ones and joins finished ones.
    isolated(
        "threaded_names_its_threads_and_keeps_them_until_close",
        || {
            let fds = warm_up();
            let children = Children::default();
            let (first, second) = (children.sleeper(), children.sleeper());
            let watcher = Arc::new(ThreadedChildWatcher::new());
            let w = watcher.clone();
            in_loop_thread(move |event_loop, _| {
                let reports = Reports::new(&event_loop);
                event_loop
                    .run_until_complete(async {
                        w.add_child_handler(first, reports.callback("first"))
                            .unwrap();
                        w.add_child_handler(second, reports.callback("second"))
                            .unwrap();
                    })
                    .unwrap();
                // Both waiters are blocked; `comm` shows the name's first 15 bytes.
                let started = poll_until(PATIENCE, || (waiter_threads() == 2).then_some(()));
                assert!(started.is_some(), "{} waiter threads", waiter_threads());
                w.close().unwrap();
                assert_eq!(
                    w.pending_threads(),
                    2,
                    "close does not wait for blocked waiters"
                );
                OsKernel.kill(first, Some(Signal::SIGKILL)).unwrap();
                let seen = reports.wait_for(1);
                assert_eq!((seen[0].pid, seen[0].code), (first, -9));
                w.close().unwrap();
                assert_eq!(w.pending_threads(), 1, "the finished waiter is joined");
                OsKernel.kill(second, Some(Signal::SIGKILL)).unwrap();
                reports.wait_for(2);
                w.close().unwrap();
                assert_eq!(w.pending_threads(), 0);
            });
            assert_clean(&children, fds);
        },
    );
}

#[test]
fn threaded_add_joins_finished_waiters() {
    // Goal (T-3, deviation): each add_child_handler first joins the waiters that have finished, so a long-lived watcher holds handles only of live children.
    isolated("threaded_add_joins_finished_waiters", || {
        let fds = warm_up();
        let children = Children::default();
        let (first, second) = (children.sh("exit 1"), children.sleeper());
        let watcher = ThreadedChildWatcher::new();
        in_loop_thread(move |event_loop, _| {
            let reports = Reports::new(&event_loop);
            let add = |pid, tag| {
                event_loop
                    .run_until_complete(async {
                        watcher
                            .add_child_handler(pid, reports.callback(tag))
                            .unwrap();
                    })
                    .unwrap();
            };
            add(first, "first");
            reports.wait_for(1);
            // Once the thread is gone from /proc, its body has returned.
            let ended = poll_until(PATIENCE, || (waiter_threads() == 0).then_some(()));
            assert!(ended.is_some(), "the first waiter did not end");
            assert_eq!(watcher.pending_threads(), 1, "not joined yet");
            add(second, "second");
            assert_eq!(watcher.pending_threads(), 1, "the first waiter was joined");
            OsKernel.kill(second, Some(Signal::SIGKILL)).unwrap();
            let seen = reports.wait_for(2);
            assert_eq!((seen[0].code, seen[1].code), (1, -9));
            watcher.close().unwrap();
            assert_eq!(watcher.pending_threads(), 0);
        });
        assert_clean(&children, fds);
    });
}

#[test]
fn threaded_reaped_elsewhere_reports_255() {
    // Goal (R-2, T-4): a child reaped before registration is reported as 255 with "Unknown child process pid N, will report returncode 255".
    isolated("threaded_reaped_elsewhere_reports_255", || {
        let fds = warm_up();
        let children = Children::default();
        let pid = children.sh("exit 3");
        assert!(matches!(
            OsKernel.wait_pid(pid, WaitMode::Block),
            Ok(WaitStatus::Terminated(_, status)) if status.returncode() == 3
        ));
        let watcher = ThreadedChildWatcher::new();
        in_loop_thread(move |event_loop, _| {
            let seen = register_and_wait(&event_loop, &watcher, &[("reaped", pid)]);
            assert_eq!((seen[0].pid, seen[0].code), (pid, 255));
            watcher.close().unwrap();
            assert_eq!(watcher.pending_threads(), 0);
        });
        assert_eq!(
            warnings(),
            [format!(
                "Unknown child process pid {pid}, will report returncode 255"
            )]
        );
        assert_clean(&children, fds);
    });
}

#[test]
fn threaded_needs_a_running_loop() {
    // Goal (T-3): without a running loop in the calling thread add_child_handler fails with RuntimeError('no running event loop') and starts no thread; pid 0 is refused.
    isolated("threaded_needs_a_running_loop", || {
        let fds = warm_up();
        let children = Children::default();
        let pid = children.sh("exit 0");
        let watcher = ThreadedChildWatcher::new();
        let error = watcher
            .add_child_handler(pid, Box::new(|_, _| panic!("never called")))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::RuntimeError);
        assert_eq!(error.message(), "no running event loop");
        // A loop that exists in this thread but does not run does not count.
        let event_loop = EventLoop::new().unwrap();
        let error = watcher
            .add_child_handler(pid, Box::new(|_, _| panic!("never called")))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::RuntimeError);
        event_loop.close().unwrap();
        let error = watcher
            .add_child_handler(Pid(0), Box::new(|_, _| {}))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueError);
        assert_eq!(watcher.pending_threads(), 0);
        assert!(matches!(
            OsKernel.wait_pid(pid, WaitMode::Block),
            Ok(WaitStatus::Terminated(..))
        ));
        assert_clean(&children, fds);
    });
}

#[test]
fn threaded_same_pid_twice_fires_both() {
    // Goal (T-5): two registrations of one pid start two threads and both callbacks fire, one with the code and one with 255 and the warning; no thread crashes.
    isolated("threaded_same_pid_twice_fires_both", || {
        let fds = warm_up();
        let children = Children::default();
        let pid = children.sh("exit 3");
        let watcher = ThreadedChildWatcher::new();
        in_loop_thread(move |event_loop, _| {
            let seen = register_and_wait(&event_loop, &watcher, &[("first", pid), ("second", pid)]);
            let mut codes: Vec<i32> = seen.iter().map(|r| r.code).collect();
            codes.sort_unstable();
            assert_eq!(codes, [3, 255], "{seen:?}");
            watcher.close().unwrap();
            assert_eq!(watcher.pending_threads(), 0);
        });
        assert_eq!(
            warnings(),
            [format!(
                "Unknown child process pid {pid}, will report returncode 255"
            )]
        );
        assert!(capture::asyncio(tracing::Level::ERROR).is_empty());
        assert_clean(&children, fds);
    });
}

#[test]
fn threaded_remove_attach_close_are_noops() {
    // Goal (T-2, T-6): is_active is always true, attach_loop does nothing, remove_child_handler answers true and the callback still fires, also after close.
    isolated("threaded_remove_attach_close_are_noops", || {
        let fds = warm_up();
        let children = Children::default();
        let pid = children.sleeper();
        let watcher = ThreadedChildWatcher::new();
        assert!(watcher.is_active());
        watcher.attach_loop(None).unwrap();
        assert!(watcher.remove_child_handler(Pid(999_999)));
        in_loop_thread(move |event_loop, _| {
            watcher.attach_loop(Some(event_loop.clone())).unwrap();
            let reports = Reports::new(&event_loop);
            event_loop
                .run_until_complete(async {
                    watcher
                        .add_child_handler(pid, reports.callback("kept"))
                        .unwrap();
                    assert!(watcher.remove_child_handler(pid));
                    assert!(watcher.remove_child_handler(pid));
                    watcher.close().unwrap();
                    assert!(watcher.is_active());
                    OsKernel.kill(pid, Some(Signal::SIGKILL)).unwrap();
                })
                .unwrap();
            let seen = reports.wait_for(1);
            assert_eq!((seen[0].pid, seen[0].code), (pid, -9));
            watcher.close().unwrap();
            assert_eq!(watcher.pending_threads(), 0);
        });
        assert_clean(&children, fds);
    });
}

#[test]
fn threaded_drop_with_blocked_waiter_warns() {
    // Goal (T-7): dropping the watcher while a waiter is blocked warns as CPython's __del__ (ResourceWarning); the detached waiter still delivers, then ends.
    isolated("threaded_drop_with_blocked_waiter_warns", || {
        let fds = warm_up();
        let children = Children::default();
        let pid = children.sleeper();
        in_loop_thread(move |event_loop, _| {
            let watcher = ThreadedChildWatcher::new();
            let seen = {
                let reports = Reports::new(&event_loop);
                event_loop
                    .run_until_complete(async {
                        watcher
                            .add_child_handler(pid, reports.callback("detached"))
                            .unwrap();
                    })
                    .unwrap();
                drop(watcher);
                OsKernel.kill(pid, Some(Signal::SIGKILL)).unwrap();
                reports.wait_for(1)
            };
            assert_eq!((seen[0].pid, seen[0].code), (pid, -9));
        });
        let warned = capture::asyncio(tracing::Level::WARN);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(
            warned[0].message,
            "<class 'asyncio.unix_events.ThreadedChildWatcher'> has registered but not finished child processes"
        );
        assert_eq!(warned[0].category, "ResourceWarning");
        assert_clean(&children, fds);
    });
}

/// Signals on a channel when dropped: tells a test that a callback was dropped unrun.
struct DropSignal(mpsc::Sender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[test]
fn threaded_closed_loop_drops_callback() {
    // Goal (T-4): a child that exits after its loop was closed is reaped; the watcher logs "Loop … that handles pid N is closed" and drops the callback unrun.
    isolated("threaded_closed_loop_drops_callback", || {
        let fds = warm_up();
        let children = Children::default();
        let pid = children.sleeper();
        let watcher = Arc::new(ThreadedChildWatcher::new());
        let (dropped_tx, dropped) = mpsc::channel();
        let w = watcher.clone();
        // Kept alive here: the loop is closed, not dropped, when the child exits.
        let closed = in_loop_thread(move |event_loop, _| {
            let signal = DropSignal(dropped_tx);
            event_loop
                .run_until_complete(async {
                    w.add_child_handler(
                        pid,
                        Box::new(move |_, _| {
                            let _keep = &signal;
                            panic!("called on a closed loop");
                        }),
                    )
                    .unwrap();
                })
                .unwrap();
            event_loop.close().unwrap();
            event_loop
        });
        OsKernel.kill(pid, Some(Signal::SIGKILL)).unwrap();
        dropped
            .recv_timeout(PATIENCE)
            .expect("the callback is dropped");
        watcher.close().unwrap();
        assert_eq!(watcher.pending_threads(), 0);
        drop(closed);
        let warned = warnings();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(
            warned[0].starts_with("Loop <EventLoop #")
                && warned[0].ends_with(&format!(
                    "closed=true debug=false> that handles pid {pid} is closed"
                )),
            "{warned:?}"
        );
        assert_clean(&children, fds);
    });
}

#[test]
fn threaded_callback_panic_is_reported() {
    // Goal: a callback that panics is reported by the loop as "Exception in callback …" and the loop goes on delivering the other child's callback.
    isolated("threaded_callback_panic_is_reported", || {
        let fds = warm_up();
        let children = Children::default();
        let (bad, good) = (children.sh("exit 4"), children.sh("exit 5"));
        let watcher = ThreadedChildWatcher::new();
        in_loop_thread(move |event_loop, _| {
            check_panicking_callback(&event_loop, &watcher, bad, good);
            watcher.close().unwrap();
            assert_eq!(watcher.pending_threads(), 0);
        });
        assert_clean(&children, fds);
    });
}

/// Registers `bad` with a callback that records then panics, and `good` with one that
/// records; checks both ran and the panic went to the loop's exception handler.
fn check_panicking_callback(
    event_loop: &EventLoop,
    watcher: &dyn ChildWatcher,
    bad: Pid,
    good: Pid,
) {
    let handled: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink = handled.clone();
    event_loop.set_exception_handler(Some(Arc::new(move |_, context: &ExceptionContext| {
        let exception = context
            .exception
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        sink.lock().push((context.message.clone(), exception));
    })));
    let reports = Reports::new(event_loop);
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
    let mut seen = reports.wait_for(2);
    seen.sort_by(|a, b| a.tag.cmp(&b.tag));
    assert_eq!((seen[0].pid, seen[0].code), (bad, 4));
    assert_eq!((seen[1].pid, seen[1].code), (good, 5));
    // The panicking callback may have been the last to run: give the loop one more
    // iteration so that its report is in.
    let stopper = event_loop.clone();
    event_loop.call_soon(move || stopper.stop()).unwrap();
    event_loop.run_forever().unwrap();
    let handled = handled.lock().clone();
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert!(
        handled[0].0.starts_with("Exception in callback "),
        "{handled:?}"
    );
    assert!(handled[0].1.contains("callback boom"), "{handled:?}");
}

#[test]
fn threaded_thousand_children() {
    // Goal (T-3, T-4): 1,000 /bin/true children, 100 at a time, each report 0 in the loop thread; afterwards close joins every waiter: no zombie, fd or thread left.
    isolated("threaded_thousand_children", || {
        let fds = warm_up();
        let children = Children::default();
        let watcher = Arc::new(ThreadedChildWatcher::new());
        let (w, c) = (watcher.clone(), children.clone());
        in_loop_thread(move |event_loop, loop_thread| {
            let reports = Reports::new(&event_loop);
            for batch in 0..MANY / THREAD_BATCH {
                event_loop
                    .run_until_complete(async {
                        for _ in 0..THREAD_BATCH {
                            let pid = c
                                .start(&SpawnRequest::new("/bin/true", std::iter::empty::<&str>()));
                            w.add_child_handler(pid, reports.callback("true")).unwrap();
                        }
                    })
                    .unwrap();
                reports.wait_for((batch + 1) * THREAD_BATCH);
            }
            let seen = reports.wait_for(MANY);
            assert!(seen.iter().all(|r| r.code == 0 && r.thread == loop_thread));
            let pids: BTreeSet<Pid> = seen.iter().map(|r| r.pid).collect();
            assert_eq!(pids.len(), MANY, "each child reported once");
            w.close().unwrap();
            assert_eq!(w.pending_threads(), 0);
        });
        assert!(warnings().is_empty(), "{:?}", warnings());
        assert_clean(&children, fds);
    });
}

// ----- PidfdChildWatcher -------------------------------------------------------------

/// Whether `pidfd_open` works here (Linux ≥ 5.3, no seccomp filter refusing it). A
/// Pidfd test that cannot run says so and passes, as a skip with its reason.
fn pidfd_usable(test: &str) -> bool {
    let k = OsKernel;
    match k.pidfd_open(k.getpid()) {
        Ok(fd) => {
            k.close(fd).expect("close the probe pidfd");
            true
        }
        Err(errno) => {
            eprintln!("{test}: skipped: pidfd_open is unavailable ({errno})");
            false
        }
    }
}

#[test]
fn pidfd_reports_returncodes_in_loop_thread() {
    // Goal (K-2, R-1, R-4): exit codes 0/1/3/255 and deaths by SIGTERM/SIGKILL arrive as returncodes, synchronously in the thread of the loop that ran at registration.
    isolated("pidfd_reports_returncodes_in_loop_thread", || {
        if !pidfd_usable("pidfd_reports_returncodes_in_loop_thread") {
            return;
        }
        let fds = warm_up();
        let children = Children::default();
        check_returncodes(Arc::new(PidfdChildWatcher::new()), &children);
        assert!(warnings().is_empty(), "{:?}", warnings());
        assert_clean(&children, fds);
    });
}

#[test]
fn pidfd_reaped_before_add_is_process_lookup_error() {
    // Goal (K-3): registering a pid that was already reaped fails with ProcessLookupError; nothing is registered and no fd stays open.
    isolated("pidfd_reaped_before_add_is_process_lookup_error", || {
        if !pidfd_usable("pidfd_reaped_before_add_is_process_lookup_error") {
            return;
        }
        let fds = warm_up();
        let children = Children::default();
        let pid = children.sh("exit 3");
        assert!(matches!(
            OsKernel.wait_pid(pid, WaitMode::Block),
            Ok(WaitStatus::Terminated(..))
        ));
        let watcher = PidfdChildWatcher::new();
        in_loop_thread(move |event_loop, _| {
            event_loop
                .run_until_complete(async {
                    let error = watcher
                        .add_child_handler(pid, Box::new(|_, _| panic!("never called")))
                        .unwrap_err();
                    assert_eq!(error.kind(), ErrorKind::ProcessLookupError);
                    assert_eq!(error.message(), "[Errno 3] No such process");
                    assert!(pidfds().is_empty());
                })
                .unwrap();
        });
        assert_clean(&children, fds);
    });
}

#[test]
fn pidfd_reaped_behind_its_back_reports_255() {
    // Goal: a registered child reaped by other code is reported as 255 with "child process pid N exit status already read:  will report returncode 255".
    isolated("pidfd_reaped_behind_its_back_reports_255", || {
        if !pidfd_usable("pidfd_reaped_behind_its_back_reports_255") {
            return;
        }
        let fds = warm_up();
        let children = Children::default();
        let pid = children.sleeper();
        let watcher = PidfdChildWatcher::new();
        in_loop_thread(move |event_loop, _| {
            let reports = Reports::new(&event_loop);
            event_loop
                .run_until_complete(async {
                    watcher
                        .add_child_handler(pid, reports.callback("reaped"))
                        .unwrap();
                    OsKernel.kill(pid, Some(Signal::SIGKILL)).unwrap();
                    // Other code reaps it before the loop sees the pidfd readable.
                    assert!(matches!(
                        OsKernel.wait_pid(pid, WaitMode::Block),
                        Ok(WaitStatus::Terminated(..))
                    ));
                })
                .unwrap();
            let seen = reports.wait_for(1);
            assert_eq!((seen[0].pid, seen[0].code), (pid, 255));
        });
        assert_eq!(
            warnings(),
            [format!(
                "child process pid {pid} exit status already read:  will report returncode 255"
            )]
        );
        assert_clean(&children, fds);
    });
}

#[test]
fn pidfd_needs_a_running_loop() {
    // Goal (K-2): without a running loop in the calling thread add_child_handler fails with RuntimeError('no running event loop') and opens no pidfd.
    isolated("pidfd_needs_a_running_loop", || {
        if !pidfd_usable("pidfd_needs_a_running_loop") {
            return;
        }
        let fds = warm_up();
        let children = Children::default();
        let pid = children.sh("exit 0");
        let watcher = PidfdChildWatcher::new();
        let error = watcher
            .add_child_handler(pid, Box::new(|_, _| panic!("never called")))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::RuntimeError);
        assert_eq!(error.message(), "no running event loop");
        assert!(pidfds().is_empty());
        assert!(matches!(
            OsKernel.wait_pid(pid, WaitMode::Block),
            Ok(WaitStatus::Terminated(..))
        ));
        assert_clean(&children, fds);
    });
}

#[test]
fn pidfd_same_pid_twice_fires_both() {
    // Goal (K-2): two registrations of one pid use two pidfds and both callbacks fire, one with the code and one with 255 and the "already read" warning.
    isolated("pidfd_same_pid_twice_fires_both", || {
        if !pidfd_usable("pidfd_same_pid_twice_fires_both") {
            return;
        }
        let fds = warm_up();
        let children = Children::default();
        let pid = children.sh("exit 3");
        let watcher = PidfdChildWatcher::new();
        in_loop_thread(move |event_loop, _| {
            let seen = register_and_wait(&event_loop, &watcher, &[("first", pid), ("second", pid)]);
            let mut codes: Vec<i32> = seen.iter().map(|r| r.code).collect();
            codes.sort_unstable();
            assert_eq!(codes, [3, 255], "{seen:?}");
        });
        assert_eq!(
            warnings(),
            [format!(
                "child process pid {pid} exit status already read:  will report returncode 255"
            )]
        );
        assert_clean(&children, fds);
    });
}

#[test]
fn pidfd_remove_attach_close_are_noops() {
    // Goal (K-2): is_active is always true, attach_loop and close do nothing, remove_child_handler answers true and the callback still fires.
    isolated("pidfd_remove_attach_close_are_noops", || {
        if !pidfd_usable("pidfd_remove_attach_close_are_noops") {
            return;
        }
        let fds = warm_up();
        let children = Children::default();
        let pid = children.sleeper();
        let watcher = PidfdChildWatcher::new();
        assert!(watcher.is_active());
        watcher.attach_loop(None).unwrap();
        assert!(watcher.remove_child_handler(Pid(999_999)));
        in_loop_thread(move |event_loop, _| {
            watcher.attach_loop(Some(event_loop.clone())).unwrap();
            let reports = Reports::new(&event_loop);
            let mut registered = BTreeSet::new();
            event_loop
                .run_until_complete(async {
                    watcher
                        .add_child_handler(pid, reports.callback("kept"))
                        .unwrap();
                    registered = pidfds();
                    assert_eq!(registered.len(), 1);
                    assert!(watcher.remove_child_handler(pid));
                    watcher.close().unwrap();
                    assert!(watcher.is_active());
                    OsKernel.kill(pid, Some(Signal::SIGKILL)).unwrap();
                })
                .unwrap();
            let seen = reports.wait_for(1);
            assert_eq!((seen[0].pid, seen[0].code), (pid, -9));
            for n in registered {
                assert!(!is_pidfd(n), "pidfd {n} left open");
            }
        });
        assert_clean(&children, fds);
    });
}

#[test]
fn pidfd_closed_loop_closes_pidfd() {
    // Goal (K-2, deviation): closing the loop before the child exits drops the registration: its pidfd is closed (CPython leaks it) and the callback never runs.
    isolated("pidfd_closed_loop_closes_pidfd", || {
        if !pidfd_usable("pidfd_closed_loop_closes_pidfd") {
            return;
        }
        let fds = warm_up();
        let children = Children::default();
        let pid = children.sleeper();
        let watcher = PidfdChildWatcher::new();
        let (dropped_tx, dropped) = mpsc::channel();
        let opened = in_loop_thread(move |event_loop, _| {
            let signal = DropSignal(dropped_tx);
            let mut opened = BTreeSet::new();
            event_loop
                .run_until_complete(async {
                    watcher
                        .add_child_handler(
                            pid,
                            Box::new(move |_, _| {
                                let _keep = &signal;
                                panic!("called on a closed loop");
                            }),
                        )
                        .unwrap();
                    opened = pidfds();
                })
                .unwrap();
            event_loop.close().unwrap();
            opened
        });
        assert_eq!(opened.len(), 1);
        dropped
            .recv_timeout(PATIENCE)
            .expect("the callback is dropped");
        for n in opened {
            assert!(!is_pidfd(n), "pidfd {n} left open");
        }
        // Nobody reaps it now: the test does.
        OsKernel.kill(pid, Some(Signal::SIGKILL)).unwrap();
        assert!(matches!(
            OsKernel.wait_pid(pid, WaitMode::Block),
            Ok(WaitStatus::Terminated(_, status)) if status.returncode() == -9
        ));
        assert_clean(&children, fds);
    });
}

#[test]
fn pidfd_callback_panic_is_reported() {
    // Goal: a callback that panics is reported by the loop as "Exception in callback …"; its pidfd is closed and the other child's callback still runs.
    isolated("pidfd_callback_panic_is_reported", || {
        if !pidfd_usable("pidfd_callback_panic_is_reported") {
            return;
        }
        let fds = warm_up();
        let children = Children::default();
        let (bad, good) = (children.sh("exit 4"), children.sh("exit 5"));
        let watcher = PidfdChildWatcher::new();
        in_loop_thread(move |event_loop, _| {
            check_panicking_callback(&event_loop, &watcher, bad, good);
        });
        assert_clean(&children, fds);
    });
}

/// How many pidfds the large Pidfd test may hold at once: all of them when the fd
/// limit allows, else batches of 100.
fn pidfd_batch() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    if soft >= MANY + 256 { MANY } else { 100 }
}

#[test]
fn pidfd_thousand_children() {
    // Goal (K-2, K-4): 1,000 concurrent /bin/true children each report 0 in the loop thread, each pidfd is closed, and no zombie or fd is left.
    isolated("pidfd_thousand_children", || {
        if !pidfd_usable("pidfd_thousand_children") {
            return;
        }
        let fds = warm_up();
        let children = Children::default();
        let batch = pidfd_batch();
        let c = children.clone();
        in_loop_thread(move |event_loop, loop_thread| {
            let watcher = PidfdChildWatcher::new();
            let reports = Reports::new(&event_loop);
            let mut opened = BTreeSet::new();
            for round in 0..MANY / batch {
                event_loop
                    .run_until_complete(async {
                        for _ in 0..batch {
                            let pid = c
                                .start(&SpawnRequest::new("/bin/true", std::iter::empty::<&str>()));
                            watcher
                                .add_child_handler(pid, reports.callback("true"))
                                .unwrap();
                        }
                        // No reader has run yet: every pidfd is open.
                        let now = pidfds();
                        assert_eq!(now.len(), batch);
                        opened.extend(now);
                    })
                    .unwrap();
                reports.wait_for((round + 1) * batch);
            }
            let seen = reports.wait_for(MANY);
            assert!(seen.iter().all(|r| r.code == 0 && r.thread == loop_thread));
            let pids: BTreeSet<Pid> = seen.iter().map(|r| r.pid).collect();
            assert_eq!(pids.len(), MANY, "each child reported once");
            for n in opened {
                assert!(!is_pidfd(n), "pidfd {n} left open");
            }
        });
        assert!(warnings().is_empty(), "{:?}", warnings());
        assert_clean(&children, fds);
    });
}

// ----- reliability findings ----------------------------------------------------------

#[test]
fn finding_03_threaded_reaped_child_is_marked_before_the_hop() {
    // Goal (reliability finding 3): with pidfd_open unavailable, a child reaped by Threaded's waiter while its loop does not run is known reaped at once, before the hop reaches the loop: send_signal gives ProcessLookupError rather than kill() a pid that may be reused.
    isolated(
        "finding_03_threaded_reaped_child_is_marked_before_the_hop",
        || {
            let fds = warm_up();
            crate::subprocess::PIDFD_DISABLED.store(true, Ordering::SeqCst);
            let children = Children::default();
            let watcher = Arc::new(ThreadedChildWatcher::new());
            let (w, c) = (watcher.clone(), children.clone());
            in_loop_thread(move |event_loop, _| {
                let lp = event_loop.clone();
                let process = event_loop
                    .run_until_complete(async move {
                        crate::subprocess::spawn_with(
                            &lp,
                            &*w,
                            &SpawnRequest::new("/bin/sh", ["-c", "exit 3"]),
                        )
                    })
                    .expect("run_until_complete")
                    .expect("spawn");
                let pid = process.pid();
                c.adopt(pid);
                assert!(!process.has_pidfd(), "the switch took pidfds away");
                // The loop does not run: the waiter reaps the child, and its hop to the
                // loop waits in the loop's queue.
                let reaped = poll_until(PATIENCE, || (!is_our_child(pid)).then_some(()));
                assert!(reaped.is_some(), "the waiter did not reap {pid}");
                assert!(
                    process.known_reaped(),
                    "the reaping thread marks the child reaped"
                );
                let error = process.send_signal(Signal::SIGTERM).unwrap_err();
                assert_eq!(error.kind(), ErrorKind::ProcessLookupError);
                let code = event_loop
                    .run_until_complete(async { process.wait().await })
                    .expect("run_until_complete");
                assert_eq!(code, 3);
            });
            watcher.close().unwrap();
            assert_clean(&children, fds);
        },
    );
}

/// Starts `count` sleepers with `spawn_with` from a loop in a new thread, then drops the
/// processes and the loop without closing it; returns the pids.
fn spawn_then_drop_loop(watcher: Arc<dyn ChildWatcher>, count: usize) -> Vec<Pid> {
    let (tx, rx) = mpsc::channel();
    let thread = OsKernel
        .spawn_thread(
            "loop-thread",
            Box::new(move || {
                let event_loop = EventLoop::new().expect("a loop");
                let lp = event_loop.clone();
                let processes = event_loop
                    .run_until_complete(async move {
                        (0..count)
                            .map(|_| {
                                crate::subprocess::spawn_with(
                                    &lp,
                                    &*watcher,
                                    &SpawnRequest::new("/bin/sleep", ["60"]),
                                )
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
    if let Err(payload) = OsKernel.join_thread(thread) {
        std::panic::resume_unwind(payload);
    }
    rx.recv().expect("the pids")
}

#[test]
fn finding_12_threaded_dropped_loop_is_freed() {
    // Goal (reliability finding 12): a loop dropped without close while Threaded waits for its children is freed at once (its fds closed); once the children end, the waiters reap them and end; no fd, zombie or thread is left.
    isolated("finding_12_threaded_dropped_loop_is_freed", || {
        let fds = warm_up();
        let children = Children::default();
        let watcher = Arc::new(ThreadedChildWatcher::new());
        let pids = spawn_then_drop_loop(watcher.clone(), 10);
        for &pid in &pids {
            children.adopt(pid);
        }
        assert_eq!(fd_count(), fds, "the dropped loop's fds are closed");
        for &pid in &pids {
            OsKernel.kill(pid, Some(Signal::SIGKILL)).unwrap();
        }
        let reaped = poll_until(PATIENCE, || {
            pids.iter().all(|&pid| !is_our_child(pid)).then_some(())
        });
        assert!(reaped.is_some(), "the waiters reaped the children");
        watcher.close().unwrap();
        assert_eq!(watcher.pending_threads(), 0, "every waiter joined");
        assert_clean(&children, fds);
    });
}

#[test]
fn finding_12_pidfd_dropped_loop_is_freed() {
    // Goal (reliability finding 12): a loop dropped without close while Pidfd watches its children is freed with its readers: every pidfd and the loop's fds are closed. The children are left unreaped, as after close (documented), and are the caller's to reap.
    isolated("finding_12_pidfd_dropped_loop_is_freed", || {
        if !pidfd_usable("finding_12_pidfd_dropped_loop_is_freed") {
            return;
        }
        let fds = warm_up();
        let children = Children::default();
        let watcher = Arc::new(PidfdChildWatcher::new());
        let pids = spawn_then_drop_loop(watcher, 10);
        for &pid in &pids {
            children.adopt(pid);
        }
        assert_eq!(pidfds(), BTreeSet::new(), "pidfds left open");
        assert_eq!(fd_count(), fds, "the dropped loop's fds are closed");
        for &pid in &pids {
            OsKernel.kill(pid, Some(Signal::SIGKILL)).unwrap();
            assert!(matches!(
                OsKernel.wait_pid(pid, WaitMode::Block),
                Ok(WaitStatus::Terminated(_, status)) if status.returncode() == -9
            ));
        }
        assert_clean(&children, fds);
    });
}

/// Sets SIGCHLD's disposition while it lives, and puts back the one before when
/// dropped, however the test ends.
struct SigchldDisposition(crate::kernel::Disposition);

impl SigchldDisposition {
    fn set(disposition: crate::kernel::Disposition) -> SigchldDisposition {
        use crate::kernel::Signals;
        let previous = OsKernel
            .set_disposition(Signal::SIGCHLD, disposition)
            .expect("set SIGCHLD's disposition");
        SigchldDisposition(previous)
    }
}

impl Drop for SigchldDisposition {
    fn drop(&mut self) {
        use crate::kernel::Signals;
        let _ = OsKernel.set_disposition(Signal::SIGCHLD, self.0);
    }
}

/// With SIGCHLD ignored, `watcher` reports a registered child as 255 and warns on
/// target `loopwatch`, naming the cause and the pid.
fn check_sigchld_ignored(watcher: Arc<dyn ChildWatcher>) {
    let fds = warm_up();
    let children = Children::default();
    let ignored = SigchldDisposition::set(crate::kernel::Disposition::Ignore);
    let pid = children.sleeper();
    let w = watcher.clone();
    let seen = in_loop_thread(move |event_loop, _| {
        let reports = Reports::new(&event_loop);
        event_loop
            .run_until_complete(async {
                w.add_child_handler(pid, reports.callback("ignored"))
                    .unwrap();
            })
            .unwrap();
        OsKernel.kill(pid, Some(Signal::SIGKILL)).unwrap();
        reports.wait_for(1)
    });
    drop(ignored);
    watcher.close().unwrap();
    assert_eq!((seen[0].pid, seen[0].code), (pid, 255));
    let warned = capture::of("loopwatch", tracing::Level::WARN);
    assert_eq!(warned.len(), 1, "{warned:?}");
    let message = &warned[0].message;
    assert!(
        message.contains("SIGCHLD") && message.contains("SIG_IGN"),
        "{message}"
    );
    assert!(message.contains(&pid.0.to_string()), "{message}");
    assert_clean(&children, fds);
}

#[test]
fn finding_15_threaded_sigchld_ignored_is_reported() {
    // Goal (reliability finding 15): with SIGCHLD set to SIG_IGN before the watcher exists, Threaded reports the child as 255 (the kernel reaped it, as CPython) and warns on target loopwatch why; the disposition is restored on every path.
    isolated("finding_15_threaded_sigchld_ignored_is_reported", || {
        check_sigchld_ignored(Arc::new(ThreadedChildWatcher::new()));
    });
}

#[test]
fn finding_15_pidfd_sigchld_ignored_is_reported() {
    // Goal (reliability finding 15): with SIGCHLD set to SIG_IGN before the watcher exists, Pidfd reports the child as 255 (the kernel reaped it, as CPython) and warns on target loopwatch why; the disposition is restored on every path.
    isolated("finding_15_pidfd_sigchld_ignored_is_reported", || {
        if !pidfd_usable("finding_15_pidfd_sigchld_ignored_is_reported") {
            return;
        }
        check_sigchld_ignored(Arc::new(PidfdChildWatcher::new()));
    });
}
