//! `WaitidChildWatcher` on both kernels, from the process's main thread (it attaches
//! to the main thread's loop, as Safe does): children reported with their codes, one
//! that ended before it was registered reported inside `add_child_handler`, and a
//! foreign zombie at the head of the queue (spec I-1, I-2).
//!
//! Each behaviour is one body: `name [os]` on the real OS, on the main thread of this
//! binary, one test at a time; `name [sim]` on the simulator's main thread over many
//! seeds.
//!
//! `cargo test -p loopwatch-sim --test main_thread_waitid [NAME]`;
//! `LOOPWATCH_SEEDS=N` and `LOOPWATCH_SEED=S` choose the simulator's seeds.

mod main_thread_common;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loopwatch::kernel::{Kernel, Pid, WaitMode, WaitStatus, WaitTarget};
use loopwatch::{ChildWatcher, EventLoop, WaitidChildWatcher};
use loopwatch_sim::testing::{Body, Test, sh};

use main_thread_common::poll_until;

/// Codes reported by pid. A plain `std` lock: never held across a kernel call.
#[allow(clippy::disallowed_types, reason = "never held across a kernel call")]
type Seen = Arc<std::sync::Mutex<Vec<(Pid, i32)>>>;

/// Whether `pid` has ended and is still waiting to be reaped.
fn is_zombie<K: Kernel>(k: &K, pid: Pid) -> bool {
    matches!(
        k.wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang),
        Ok(WaitStatus::Terminated(..))
    )
}

/// Registers children exiting with `codes` (each after a short sleep, so after its
/// registration) and runs the loop until all are reported; returns the codes by
/// child, in registration order.
fn run_children<K: Kernel>(
    k: &K,
    event_loop: &EventLoop<K>,
    watcher: &WaitidChildWatcher<K>,
    codes: &[i32],
) -> Vec<i32> {
    let seen: Seen = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let mut pids = Vec::new();
    for code in codes {
        let child = k.spawn(&sh(&format!("sleep 0.05; exit {code}"))).unwrap();
        let (seen, done, stopper, all) =
            (seen.clone(), done.clone(), event_loop.clone(), codes.len());
        watcher
            .add_child_handler(
                child.pid,
                Box::new(move |pid, returncode| {
                    seen.lock().unwrap().push((pid, returncode));
                    if done.fetch_add(1, Ordering::SeqCst) + 1 == all {
                        stopper.stop();
                    }
                }),
            )
            .unwrap();
        pids.push(child.pid);
    }
    let timeout = event_loop
        .call_later(main_thread_common::PATIENCE, {
            let stopper = event_loop.clone();
            move || stopper.stop()
        })
        .unwrap();
    event_loop.run_forever().unwrap();
    timeout.cancel();
    let seen = seen.lock().unwrap().clone();
    pids.iter()
        .map(|pid| {
            seen.iter()
                .find(|(p, _)| p == pid)
                .map_or(-1000, |(_, code)| *code)
        })
        .collect()
}

/// Children of its own are reported with their codes, and one that ended before it
/// was registered is reported inside `add_child_handler`.
struct ReportsItsChildren;

impl Body for ReportsItsChildren {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let watcher = WaitidChildWatcher::with_kernel(k.clone());
        watcher.attach_loop(Some(event_loop.clone())).unwrap();
        assert_eq!(
            run_children(k, &event_loop, &watcher, &[3, 0, 7]),
            [3, 0, 7]
        );
        let early = k.spawn(&sh("exit 5")).unwrap();
        assert!(poll_until(k, || is_zombie(k, early.pid)));
        let code = Arc::new(AtomicUsize::new(0));
        let got = code.clone();
        watcher
            .add_child_handler(
                early.pid,
                Box::new(move |_, returncode| got.store(returncode as usize, Ordering::SeqCst)),
            )
            .unwrap();
        assert_eq!(code.load(Ordering::SeqCst), 5, "reported inside add");
        assert_eq!(watcher.peek_unsupported(), None);
        watcher.close().unwrap();
        event_loop.close().unwrap();
    }
}

/// A child of other code ends first and stays a zombie (its owner reaps it only at
/// the end) while children of its own end: they are all reported with their codes,
/// and the foreign one is left for its owner, whose waitpid gets its status.
struct ForeignZombieAtTheHead;

impl Body for ForeignZombieAtTheHead {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let watcher = WaitidChildWatcher::with_kernel(k.clone());
        watcher.attach_loop(Some(event_loop.clone())).unwrap();
        let foreign = k.spawn(&sh("exit 9")).unwrap();
        assert!(poll_until(k, || is_zombie(k, foreign.pid)));
        // It is the oldest child, and the only one ended: the peek names it.
        assert!(matches!(
            k.wait_peek(WaitTarget::Any, WaitMode::NoHang),
            Ok(WaitStatus::Terminated(pid, _)) if pid == foreign.pid
        ));
        assert_eq!(
            run_children(k, &event_loop, &watcher, &[1, 2, 3]),
            [1, 2, 3]
        );
        assert!(is_zombie(k, foreign.pid), "left for its owner");
        match k.wait_pid(foreign.pid, WaitMode::NoHang) {
            Ok(WaitStatus::Terminated(_, status)) => assert_eq!(status.returncode(), 9),
            other => panic!("the owner's waitpid got {other:?}"),
        }
        watcher.close().unwrap();
        event_loop.close().unwrap();
    }
}

fn main() -> ExitCode {
    main_thread_common::main([
        Test::both("waitid_reports_its_children", ReportsItsChildren).check_leaks(),
        Test::both("waitid_foreign_zombie_at_the_head", ForeignZombieAtTheHead).check_leaks(),
    ])
}
