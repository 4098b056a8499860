//! Regression tests for the reliability findings about the watchers that need the
//! process's main thread: exits coalesced into one SIGCHLD (finding 9), a forked
//! child holding MultiLoop's pipe (11), MultiLoop's reaper dropping the last handle
//! (13) and a watcher factory whose callback asks for the watcher (14). Each is named
//! `finding_NN_…` after its finding; the findings about the signal wiring are in
//! `main_thread_findings_signals.rs`.
//!
//! Each behaviour is one body run on both kernels: `name [os]` on the real OS, on the
//! main thread of this binary, one test at a time from a fresh default policy;
//! `name [sim]` on the simulator's main thread over many seeds, where a deadlock is
//! reported rather than waited out. What only the real OS can run says why beside
//! its registration in `main`.
//!
//! `cargo test -p loopwatch-sim --test main_thread_findings [NAME]`;
//! `LOOPWATCH_SEEDS=N` and `LOOPWATCH_SEED=S` choose the simulator's seeds.

mod main_thread_common;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use loopwatch::kernel::{
    Disposition, Errno, Fd, Fds, Kernel, Pid, Processes, Signal, Signals, SpawnRequest, Threads,
    WaitMode, WaitStatus, WaitTarget,
};
use loopwatch::policy;
use loopwatch::watcher::{ChildCallback, fork_window};
use loopwatch::{
    ChildWatcher, DefaultEventLoopPolicy, EventLoop, MultiLoopChildWatcher, OsKernel, Result,
    SafeChildWatcher, WatcherFactory, WatcherRef,
};
use loopwatch_sim::Report;
use loopwatch_sim::testing::{self, Body, Log, Test, sh, yield_now};

use main_thread_common::{
    Kind, PATIENCE, bare, child_count, fd_count, fork, in_worker, install, os, poll_until, sim,
    thread_count, uninstall, with_pipes,
};

// ----- finding 9: exits coalesced into one SIGCHLD --------------------------------------

/// What [`CoalescedExits`] must give back however it ends, on the real OS: the
/// children's stdin pipes closed and the children reaped, so that the next test
/// starts clean. The simulator's run ends with the test, children and all.
struct Leftovers<K: Kernel> {
    kernel: K,
    stdins: Vec<Fd>,
    pids: Vec<Pid>,
}

impl<K: Kernel> Drop for Leftovers<K> {
    fn drop(&mut self) {
        let Some(k) = os(&self.kernel) else {
            return;
        };
        for fd in self.stdins.drain(..) {
            let _ = k.close(fd);
        }
        for pid in self.pids.drain(..) {
            while k.wait_pid(pid, WaitMode::Block) == Err(Errno::EINTR) {}
        }
    }
}

/// Blocks SIGCHLD in this thread; unblocks it when dropped, however the test ends.
struct SigchldBlocked<K: Kernel>(K);

impl<K: Kernel> SigchldBlocked<K> {
    fn new(k: &K) -> SigchldBlocked<K> {
        k.block_signal(Signal::SIGCHLD).unwrap();
        SigchldBlocked(k.clone())
    }
}

impl<K: Kernel> Drop for SigchldBlocked<K> {
    fn drop(&mut self) {
        let _ = self.0.unblock_signal(Signal::SIGCHLD);
    }
}

/// A child that exits with `code` once its stdin closes: on the real OS a shell's
/// `read x; exit N`. The simulator's shell has no `read`, and its children run on
/// virtual time, which stands still while this thread registers them without
/// blocking: `sleep 1; exit N` exits after the registration just the same.
fn exits_after_registration<K: Kernel>(k: &K, code: i32) -> SpawnRequest {
    let script = if sim(k).is_some() {
        format!("sleep 1; exit {code}")
    } else {
        format!("read x; exit {code}")
    };
    with_pipes(sh(&script), true, false, false)
}

/// Goal (reliability finding 9): five exits coalesced into one SIGCHLD, the first
/// callback panicking: the panic goes to the loop's exception handler on its own, the
/// other four are reported in the same pass, and no zombie is left.
struct CoalescedExits(Kind);

impl Body for CoalescedExits {
    fn run<K: Kernel>(&self, k: &K) {
        // SIGCHLD can then only reach the main thread, which blocks it: the five exits
        // make one pending signal, and one pass of the watcher. (The simulated process
        // starts with its main thread alone.)
        if thread_count(k).is_some() {
            assert!(
                poll_until(k, || thread_count(k) == Some(1)),
                "the process is single-threaded"
            );
        }
        let watcher = self.0.make(k);
        let event_loop = install(k, watcher.clone()).unwrap();
        let reported = Log::new();
        let panics = Log::new();
        let seen = panics.clone();
        event_loop.set_exception_handler(Some(Arc::new(move |_, context| {
            seen.push(context.message.clone());
        })));
        let mut leftovers = Leftovers {
            kernel: k.clone(),
            stdins: Vec::new(),
            pids: Vec::new(),
        };
        let blocked = SigchldBlocked::new(k);
        {
            let _window = fork_window(&*watcher);
            for code in 0..5 {
                let spawned = k.spawn(&exits_after_registration(k, code)).unwrap();
                let pid = spawned.pid;
                leftovers.pids.push(pid);
                leftovers.stdins.extend(spawned.stdin);
                let slot = reported.clone();
                let callback: ChildCallback = if code == 0 {
                    Box::new(|_, _| panic!("boom in the first callback"))
                } else {
                    Box::new(move |pid, code| slot.push((pid, code)))
                };
                watcher.add_child_handler(pid, callback).unwrap();
            }
        }
        for fd in leftovers.stdins.drain(..) {
            k.close(fd).unwrap();
        }
        for &pid in &leftovers.pids {
            // Waits for the exit without reaping: the child stays a zombie.
            k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block).unwrap();
        }
        // The one pending SIGCHLD is delivered here, to this thread.
        drop(blocked);
        let out = reported.clone();
        event_loop
            .run_until_complete(async move {
                for _ in 0..100 {
                    yield_now().await;
                    if out.len() == 4 {
                        break;
                    }
                }
            })
            .unwrap();
        let mut got = reported.take();
        got.sort();
        let expected: Vec<(Pid, i32)> = leftovers.pids[1..].iter().copied().zip(1..).collect();
        assert_eq!(got, expected, "the other four");
        assert_eq!(
            panics.take(),
            ["Unknown exception in SIGCHLD handler"],
            "one report"
        );
        uninstall(k, event_loop).unwrap();
        // All five were reaped by the watcher's pass.
        leftovers.pids.clear();
        assert_eq!(child_count(k), 0, "no zombie left");
    }
}

// ----- finding 11: a forked child holds MultiLoop's pipe --------------------------------

/// Goal (reliability finding 11): close, Drop and set_child_watcher replacing a
/// MultiLoop watcher return while a forked child that did not exec still holds the
/// watcher's pipe, instead of waiting for that child to end.
fn finding_11_multi_loop_close_returns_while_a_forked_child_lives()
-> std::result::Result<(), String> {
    let kernel = OsKernel;
    for how in ["close", "drop", "set_child_watcher"] {
        let watcher = Arc::new(MultiLoopChildWatcher::new());
        watcher.attach_loop(None).map_err(|e| e.to_string())?;
        if how == "set_child_watcher" {
            loopwatch::set_child_watcher(Some(watcher.clone())).map_err(|e| e.to_string())?;
        }
        let child = fork::fork_sleeper();
        // A safety net: if closing hangs, the child is killed after a long while, so
        // that the suite ends (and this test fails: the child must outlive the close).
        let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
        let net = kernel
            .spawn_thread(
                "finding-11-net",
                Box::new(move || {
                    if cancelled
                        .recv_timeout(Duration::from_secs_f64(PATIENCE))
                        .is_err()
                    {
                        let _ = OsKernel.kill(child, Some(Signal::SIGKILL));
                    }
                }),
            )
            .map_err(|e| e.to_string())?;
        match how {
            "close" => watcher.close().map_err(|e| e.to_string())?,
            "drop" => drop(watcher),
            _ => {
                drop(watcher);
                loopwatch::set_child_watcher(None).map_err(|e| e.to_string())?;
            }
        }
        let alive = kernel.wait_pid(child, WaitMode::NoHang) == Ok(WaitStatus::StillAlive);
        let _ = cancel.send(());
        if kernel.join_thread(net).is_err() {
            return Err("the safety net panicked".into());
        }
        let _ = kernel.kill(child, Some(Signal::SIGKILL));
        while kernel.wait_pid(child, WaitMode::Block) == Err(Errno::EINTR) {}
        assert!(alive, "{how} returned only once the forked child ended");
        assert_eq!(
            kernel.disposition(Signal::SIGCHLD),
            Ok(Disposition::Default),
            "SIGCHLD restored"
        );
    }
    Ok(())
}

// ----- finding 13: MultiLoop's reaper drops the last handle ----------------------------

/// Goal (reliability finding 13): when MultiLoop's reaper thread drops a callback that
/// holds the last handle of the watcher, the watcher closes inside its own reaper
/// without joining itself: the thread ends (on the simulator, the leak check sees
/// it), the pipe's fds are closed, SIGCHLD is restored.
struct ReaperDropsTheLastHandle;

impl Body for ReaperDropsTheLastHandle {
    fn run<K: Kernel>(&self, k: &K) {
        let fds_before = fd_count(k);
        let threads_before = thread_count(k);
        let watcher = Kind::MultiLoop.make(k);
        watcher.attach_loop(None).unwrap();
        let child = k
            .spawn(&with_pipes(bare("cat"), true, false, false))
            .unwrap();
        let (w, pid) = (watcher.clone(), child.pid);
        // The worker's loop is closed when it returns, before the child exits.
        in_worker(k, move |event_loop| {
            event_loop.run_until_complete(async move {
                let keep = w.clone();
                w.add_child_handler(pid, Box::new(move |_, _| drop(keep)))
            })?
        })
        .unwrap();
        drop(watcher);
        // cat exits at end of input; the reaper finds its loop closed and drops the
        // callback, and with it the watcher.
        k.close(child.stdin.expect("a stdin pipe")).unwrap();
        let settled = poll_until(k, || {
            child_count(k) == 0 && thread_count(k) == threads_before && fd_count(k) == fds_before
        });
        assert_eq!(child_count(k), 0, "the reaper reaped the child");
        assert_eq!(thread_count(k), threads_before, "the reaper thread ended");
        assert_eq!(fd_count(k), fds_before, "the watcher's fds are closed");
        assert!(settled, "settled");
        assert_eq!(
            k.disposition(Signal::SIGCHLD).unwrap(),
            Disposition::Default,
            "SIGCHLD restored"
        );
    }
}

// ----- finding 14: a callback asks for the watcher being attached ----------------------

/// Goal (reliability finding 14): a custom watcher factory hands out a Safe watcher
/// with a registered child that has exited; attaching it inside get_child_watcher runs
/// that child's callback, which calls get_child_watcher and gets the same watcher
/// instead of deadlocking on the policy's lock.
///
/// On the real OS it runs in a forked child, so that a deadlock fails this test (the
/// parent gives up after a long while) rather than hanging the suite; the simulator
/// reports a deadlock itself.
struct CallbackMayAskForTheWatcherBeingAttached;

impl Body for CallbackMayAskForTheWatcherBeingAttached {
    fn run<K: Kernel>(&self, k: &K) {
        if os(k).is_none() {
            assert!(
                attach_runs_callback_asking_for_watcher(k).unwrap(),
                "the callback got another watcher"
            );
            return;
        }
        let pid = fork::fork_running(
            || match attach_runs_callback_asking_for_watcher(&OsKernel) {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(_) => 2,
            },
        );
        let mut status = None;
        let ended = poll_until(k, || match k.wait_pid(pid, WaitMode::NoHang) {
            Ok(WaitStatus::Terminated(_, s)) => {
                status = Some(s.returncode());
                true
            }
            _ => false,
        });
        if !ended {
            let _ = k.kill(pid, Some(Signal::SIGKILL));
            let _ = k.wait_pid(pid, WaitMode::Block);
            panic!("get_child_watcher deadlocked (the child was killed)");
        }
        assert_eq!(status, Some(0), "the child's report");
    }
}

/// The body of finding 14: whether the callback got the policy's watcher.
fn attach_runs_callback_asking_for_watcher<K: Kernel>(k: &K) -> Result<bool> {
    let got: Log<WatcherRef<K>> = Log::new();
    let slot = got.clone();
    let factory: WatcherFactory<K> = Arc::new(move |k: &K| {
        let watcher = SafeChildWatcher::with_kernel(k.clone());
        // A loop of the factory's own, to register with (3.7: Safe needs one).
        let own = EventLoop::with_kernel(k.clone()).expect("a loop");
        watcher.attach_loop(Some(own.clone())).expect("attach");
        // It exits once its stdin is closed, after it was registered.
        let child = k
            .spawn(&with_pipes(bare("cat"), true, false, false))
            .expect("spawn");
        let (slot, k2) = (slot.clone(), k.clone());
        watcher
            .add_child_handler(
                child.pid,
                Box::new(move |_, _| {
                    slot.push(policy::get_child_watcher(&k2).expect("get_child_watcher"));
                }),
            )
            .expect("add_child_handler");
        watcher.attach_loop(None).expect("detach");
        own.close().expect("close");
        k.close(child.stdin.expect("a stdin pipe"))
            .expect("close its stdin");
        k.wait_peek(WaitTarget::Pid(child.pid), WaitMode::Block)
            .expect("the child exits");
        Arc::new(watcher) as WatcherRef<K>
    });
    let policy = Arc::new(DefaultEventLoopPolicy::with_watcher_factory(
        k.clone(),
        factory,
    ));
    policy::set_event_loop_policy(k, Some(policy));
    let event_loop = policy::new_event_loop(k)?;
    policy::set_event_loop(k, Some(event_loop.clone()))?;
    let watcher = policy::get_child_watcher(k)?;
    let got = got.take();
    let same = got.len() == 1 && Arc::ptr_eq(&got[0], &watcher);
    policy::set_child_watcher(k, None)?;
    policy::set_event_loop(k, None)?;
    event_loop.close()?;
    Ok(same)
}

/// The simulator's report of [`CoalescedExits`]: the five exits made one SIGCHLD (the
/// other four coalesced into it), as the test sets out to provoke.
fn five_exits_one_sigchld(report: &Report) -> std::result::Result<(), String> {
    testing::completed(report)?;
    match report.mark("sigchld_coalesced") {
        4 => Ok(()),
        n => Err(format!("{n} SIGCHLDs coalesced, not 4")),
    }
}

fn main() -> ExitCode {
    main_thread_common::main([
        Test::both(
            "finding_09_safe_panic_does_not_hide_coalesced_exits",
            CoalescedExits(Kind::Safe),
        )
        .check_report(five_exits_one_sigchld)
        .check_leaks(),
        Test::both(
            "finding_09_fast_panic_does_not_hide_coalesced_exits",
            CoalescedExits(Kind::Fast),
        )
        .check_report(five_exits_one_sigchld)
        .check_leaks(),
        // Real OS only: the child that holds the watcher's pipe is a fork of this
        // process that does not exec; the simulator's children run no code.
        Test::new(
            "finding_11_multi_loop_close_returns_while_a_forked_child_lives",
            finding_11_multi_loop_close_returns_while_a_forked_child_lives,
        )
        .check_leaks(),
        Test::both(
            "finding_13_reaper_dropping_the_last_handle_closes_cleanly",
            ReaperDropsTheLastHandle,
        )
        .check_leaks(),
        Test::both(
            "finding_14_callback_may_ask_for_the_watcher_being_attached",
            CallbackMayAskForTheWatcherBeingAttached,
        )
        .check_leaks(),
    ])
}
