//! [`ThreadedChildWatcher`] on the real OS with the crate's test-only switch that
//! takes pidfds away (`subprocess::PIDFD_DISABLED`), which only a unit test inside
//! the crate can reach. The watchers' other behaviour tests are written once for
//! both kernels in `sim/tests/watchers.rs`.
//!
//! The test checks what it leaves behind: no zombie among its children, no pidfd and
//! no other fd left open, no `asyncio-waitpid-*` thread left running. Those are
//! process-wide facts, and tests of other modules run in parallel threads of the same
//! process (opening fds, starting threads), so the test re-runs itself in a fresh copy
//! of the test binary that runs only it ([`isolated`]), as the kernel tests do.
//!
//! Every child is killed and reaped on every path: children are held by [`Children`],
//! which, when dropped, kills and reaps any that is still a child of this process.
//!
//! Linux only: the checks read `/proc`. Not under loom, whose locks need a loom model
//! to run in.

#![cfg(all(target_os = "linux", not(loom)))]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use super::{ChildWatcher, ThreadedChildWatcher};
use crate::OsKernel;
use crate::error::ErrorKind;
use crate::event_loop::EventLoop;
use crate::kernel::{
    Clock, Pid, Processes, Signal, SpawnRequest, ThreadId, Threads, WaitMode, WaitStatus,
};
use crate::loom::sync::Mutex;

/// How long a test waits for what should happen at once before it fails instead of
/// hanging. Generous: a loaded machine must not fail a test.
const PATIENCE: Duration = Duration::from_secs(120);

/// Tells a re-executed test binary which test body to run (see [`isolated`]).
const ISOLATED: &str = "LOOPWATCH_WATCHER_TEST_ISOLATED";

// ----- isolation ---------------------------------------------------------------------

/// Runs `body` in a fresh copy of this test binary that runs only the test `name` of
/// this module (the calling test), and checks that it passed.
fn isolated(name: &str, body: impl FnOnce()) {
    if std::env::var_os(ISOLATED).is_some_and(|v| v == name) {
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
