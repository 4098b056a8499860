//! Each watcher mutant of `loopwatch::zoo` shows its documented bug on the simulator.
//
// One `#[test]` per mutant: a small body, run over a seed sweep without the mutant
// (every seed must complete and see the correct behaviour; `LOOPWATCH_SEED=S` and
// `LOOPWATCH_SEEDS=N` choose the seeds, as for every sweep) and over seeds 0..16 with
// the mutant switched on in the simulated process (at least one must show the
// documented wrong behaviour; the seeds that do are printed).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use loopwatch::kernel::{
    Clock, Disposition, Errno, Pid, Processes, Signal, Signals, SpawnRequest, Stdio, Threads,
    WaitMode, WaitStatus, WaitTarget,
};
use loopwatch::watcher::{ChildCallback, fork_window};
use loopwatch::zoo::{self, Mutant};
use loopwatch::{
    ChildWatcher, ErrorKind, EventLoop, FastChildWatcher, MultiLoopChildWatcher, PidfdChildWatcher,
    SafeChildWatcher, ThreadedChildWatcher, WatcherRef,
};
use loopwatch_sim::testing::{self, Capture, Log, Sweep, yield_now};
use loopwatch_sim::{
    ChildPlan, FaultPlan, ForeignHandler, Outcome, PidReuse, Report, SimKernel, Simulation,
};

/// What a watcher reported: `(pid, returncode)` per callback.
type Reports = Vec<(Pid, i32)>;

/// Seeds in each arm of a proof.
const SEEDS: u64 = 16;

/// One seed's run of a body.
struct Run<T> {
    seed: u64,
    /// What the body returned; `None` if the run did not complete.
    seen: Option<T>,
    report: Report,
    /// The warnings logged during the run.
    warnings: Vec<String>,
}

impl<T: fmt::Debug> Run<T> {
    /// The run's outcome, what the body saw and the end of its trace, for a failure.
    fn describe(&self) -> String {
        let lines = self.report.trace.lines();
        let tail = &lines[lines.len().saturating_sub(40)..];
        format!(
            "outcome {:?}, saw {:?}\nlast steps:\n{}",
            self.report.outcome,
            self.seen,
            tail.join("\n")
        )
    }
}

/// A mutant, a body that meets it, and how to tell the correct behaviour from the
/// mutant's.
struct Proof<T> {
    /// The `#[test]`'s name, for the replay command.
    test: &'static str,
    mutant: Mutant,
    /// Each seed's simulation.
    simulation: fn(u64) -> Simulation,
    body: fn(&SimKernel) -> T,
    /// Without the mutant: `Err` names what a seed got wrong.
    correct: fn(&T, &Run<T>) -> Result<(), String>,
    /// With the mutant: what a seed showed of the documented wrong behaviour, if it did.
    shows: fn(&Run<T>) -> Option<String>,
}

impl<T: fmt::Debug + Send + 'static> Proof<T> {
    /// Runs the body on each of `seeds`, with `mutant` switched on in the simulated
    /// process.
    fn sweep(&self, seeds: &[u64], mutant: Option<Mutant>) -> Vec<Run<T>> {
        let body = self.body;
        seeds
            .iter()
            .map(|&seed| {
                let capture = Capture::new();
                let (seen, report) = capture.during(|| {
                    (self.simulation)(seed).run_returning(move |k| {
                        zoo::set_mutant(&k, mutant);
                        body(&k)
                    })
                });
                Run {
                    seed,
                    seen,
                    report,
                    warnings: capture.warnings(),
                }
            })
            .collect()
    }

    /// Panics unless every seed of the sweep is correct without the mutant, and some
    /// seed of `0..SEEDS` shows the mutant's wrong behaviour with it. (Those seeds do not
    /// follow `LOOPWATCH_SEED` and `LOOPWATCH_SEEDS`: fewer could show nothing.)
    fn check(&self) {
        for run in self.sweep(Sweep::new(SEEDS).seeds(), None) {
            let verdict = match (&run.seen, testing::completed(&run.report)) {
                (_, Err(problem)) => Err(problem),
                (Some(seen), Ok(())) => (self.correct)(seen, &run),
                (None, Ok(())) => Err("no result".to_string()),
            };
            if let Err(problem) = verdict {
                panic!(
                    "without {}, seed {}: {problem}\n{}\nreplay: {}",
                    self.mutant,
                    run.seed,
                    run.describe(),
                    testing::replay_command(
                        run.seed,
                        Some(self.test),
                        Some("loopwatch-conformance")
                    )
                );
            }
        }
        let seeds: Vec<u64> = (0..SEEDS).collect();
        let runs = self.sweep(&seeds, Some(self.mutant));
        let shown: Vec<(u64, String)> = runs
            .iter()
            .filter_map(|run| (self.shows)(run).map(|what| (run.seed, what)))
            .collect();
        match shown.first() {
            Some((seed, what)) => {
                let seeds: Vec<u64> = shown.iter().take(12).map(|(seed, _)| *seed).collect();
                eprintln!(
                    "{}: shown by {} of {} seeds (seeds {seeds:?}…); seed {seed}: {what}",
                    self.mutant,
                    shown.len(),
                    runs.len()
                );
            }
            None => panic!(
                "{} did not show on any of seeds 0..{SEEDS}; seed 0: {}\nrerun: cargo test -p loopwatch-conformance --test mutants_watchers {} -- --exact",
                self.mutant,
                runs[0].describe(),
                self.test
            ),
        }
    }
}

/// `Ok` if `seen` is `expected`.
fn expect<T: PartialEq + fmt::Debug>(seen: &T, expected: T) -> Result<(), String> {
    if *seen == expected {
        Ok(())
    } else {
        Err(format!("saw {seen:?}, expected {expected:?}"))
    }
}

/// A callback that records `(pid, returncode)` in `log`.
fn recorder(log: &Log<(Pid, i32)>) -> ChildCallback {
    let log = log.clone();
    Box::new(move |pid, code| log.push((pid, code)))
}

/// Runs `event_loop` for `turns` iterations.
fn turn(event_loop: &EventLoop<SimKernel>, turns: usize) {
    event_loop
        .run_until_complete(async move {
            for _ in 0..turns {
                yield_now().await;
            }
        })
        .unwrap();
}

/// An exception handler for `event_loop` that records each context's message.
fn record_exceptions(event_loop: &EventLoop<SimKernel>) -> Log<String> {
    let log = Log::new();
    let seen = log.clone();
    event_loop.set_exception_handler(Some(Arc::new(move |_, context| {
        seen.push(context.message.clone());
    })));
    log
}

fn deadlocked<T>(run: &Run<T>) -> bool {
    matches!(run.report.outcome, Outcome::Deadlock(_))
}

// ----- MultiLoop ----------------------------------------------------------------------

/// A loop in a worker thread waits, idle in its poll, for an exit that MultiLoop's
/// reaper hands it while the main thread is blocked in `join`. What its callback got.
fn idle_loop_in_worker(k: &SimKernel) -> Reports {
    let watcher = Arc::new(MultiLoopChildWatcher::with_kernel(k.clone()));
    watcher.attach_loop(None).unwrap();
    // Spawned here, so that its SIGCHLD goes to this thread and never interrupts the
    // worker's poll. It exits once every thread waits: the worker is then idle.
    let pid = testing::spawn_sh(k, "sleep 1; exit 0");
    let reports = Log::new();
    let (w, log, k2) = (watcher.clone(), reports.clone(), k.clone());
    let worker = k
        .spawn_thread(
            "worker",
            Box::new(move || {
                let event_loop = EventLoop::with_kernel(k2).unwrap();
                let stopper = event_loop.clone();
                let callback: ChildCallback = Box::new(move |pid, code| {
                    log.push((pid, code));
                    stopper.stop();
                });
                event_loop
                    .run_until_complete(async move { w.add_child_handler(pid, callback) })
                    .unwrap()
                    .unwrap();
                event_loop.run_forever().unwrap();
                event_loop.close().unwrap();
            }),
        )
        .unwrap();
    k.join_thread(worker).unwrap();
    watcher.close().unwrap();
    reports.take()
}

#[test]
fn multi_loop_no_wake() {
    // Goal: with MultiLoopNoWake an idle loop in another thread never runs its child's callback (the run deadlocks); without it the callback runs once with 0.
    Proof {
        test: "multi_loop_no_wake",
        mutant: Mutant::MultiLoopNoWake,
        simulation: Simulation::new,
        body: idle_loop_in_worker,
        correct: |seen, _| expect(&seen.iter().map(|r| r.1).collect::<Vec<_>>(), vec![0]),
        shows: |run| {
            let dropped = run.warnings.iter().any(|w| w.ends_with("is closed"));
            (deadlocked(run) && dropped)
                .then(|| "the exit was dropped and the idle loop never woke".to_string())
        },
    }
    .check();
}

/// Five children exit about when they are registered, so that the reaper's pass and
/// `add_child_handler`'s own poll may overlap. The returncodes reported, sorted.
fn quick_exits_to_multi_loop(k: &SimKernel) -> Vec<i32> {
    let watcher = Arc::new(MultiLoopChildWatcher::with_kernel(k.clone()));
    watcher.attach_loop(None).unwrap();
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let (all, setter) = event_loop.create_future::<()>();
    let reports = Log::new();
    let (w, k2, log) = (watcher.clone(), k.clone(), reports.clone());
    event_loop
        .run_until_complete(async move {
            for _ in 0..5 {
                let pid = testing::spawn_sh(&k2, "exit 0");
                let (log, setter) = (log.clone(), setter.clone());
                let callback: ChildCallback = Box::new(move |_, code| {
                    log.push(code);
                    if log.len() == 5 {
                        let _ = setter.set_result(());
                    }
                });
                w.add_child_handler(pid, callback).unwrap();
            }
        })
        .unwrap();
    event_loop.run_until_complete(all).unwrap().unwrap();
    watcher.close().unwrap();
    event_loop.close().unwrap();
    let mut codes = reports.take();
    codes.sort_unstable();
    codes
}

#[test]
fn multi_loop_reentrant_255() {
    // Goal: with MultiLoopReentrant255 overlapping passes report 255 for a child that exited 0 on some seed; without it every child is reported once with 0.
    Proof {
        test: "multi_loop_reentrant_255",
        mutant: Mutant::MultiLoopReentrant255,
        simulation: Simulation::new,
        body: quick_exits_to_multi_loop,
        correct: |seen, _| expect(seen, vec![0; 5]),
        shows: |run| {
            let codes = run.seen.as_ref()?;
            codes
                .contains(&255)
                .then(|| format!("children that exited 0 reported as {codes:?}"))
        },
    }
    .check();
}

/// A child holds the write end of MultiLoop's pipe (as a forked child that did not
/// exec would) while the watcher closes. SIGCHLD's disposition after `close`.
fn close_while_a_child_holds_the_pipe(k: &SimKernel) -> Disposition {
    k.register_program("forever", ChildPlan::Forever);
    let watcher = MultiLoopChildWatcher::with_kernel(k.clone());
    watcher.attach_loop(None).unwrap();
    let Disposition::Notify(write) = k.disposition(Signal::SIGCHLD).unwrap() else {
        panic!("MultiLoop installs a Notify handler");
    };
    let mut request = SpawnRequest::new("forever", Vec::<String>::new());
    request.stdout = Stdio::Fd(write);
    let holder = k.spawn(&request).unwrap().pid;
    watcher.close().unwrap();
    let after = k.disposition(Signal::SIGCHLD).unwrap();
    k.kill(holder, Some(Signal::SIGKILL)).unwrap();
    assert_eq!(testing::reap(k, holder), -9);
    after
}

#[test]
fn multi_loop_close_waits_inherited_pipe() {
    // Goal (finding 11): with MultiLoopCloseWaitsInheritedPipe close never returns while a child holds the pipe (the run deadlocks); without it close returns and restores SIGCHLD.
    Proof {
        test: "multi_loop_close_waits_inherited_pipe",
        mutant: Mutant::MultiLoopCloseWaitsInheritedPipe,
        simulation: Simulation::new,
        body: close_while_a_child_holds_the_pipe,
        correct: |seen, _| expect(seen, Disposition::Default),
        shows: |run| {
            deadlocked(run).then(|| "close waited for the child holding the pipe".to_string())
        },
    }
    .check();
}

// ----- Threaded -----------------------------------------------------------------------

/// Threaded's waiter sees its child exit; a foreign SIGCHLD handler, run by the waiter
/// thread as its peek returns, reaps the child; the pid goes to a new child (`exit 7`)
/// that this thread waits for. What the watcher reported, and what this thread's
/// `waitpid` of the newcomer gave.
fn waiter_meets_a_stranger(k: &SimKernel) -> (i32, Result<i32, Errno>) {
    // A thread per registration, as in CPython: an idle waiter kept for the next one
    // would have SIGCHLD unblocked and run the foreign handler, which would then reap
    // the stranger too.
    let watcher = ThreadedChildWatcher::with_kernel(k.clone()).with_keep_alive(Duration::ZERO);
    k.install_foreign_handler(Signal::SIGCHLD, ForeignHandler::ReapAll);
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let (reported, setter) = event_loop.create_future::<i32>();
    let pid = testing::spawn_sh(k, "sleep 1; exit 3");
    let callback: ChildCallback = Box::new(move |_, code| {
        let _ = setter.set_result(code);
    });
    event_loop
        .run_until_complete(async { watcher.add_child_handler(pid, callback) })
        .unwrap()
        .unwrap();
    // The waiter was born with SIGCHLD unblocked; from now on it is the only thread
    // that takes one, so the foreign handler runs between its peek and its reap.
    k.block_signal(Signal::SIGCHLD).unwrap();
    let _ = k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block);
    while k.wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang) != Err(Errno::ECHILD) {}
    let stranger = testing::spawn_sh(k, "sleep 1; exit 7");
    assert_eq!(stranger, pid, "the freed pid went to the stranger");
    let code = event_loop.run_until_complete(reported).unwrap().unwrap();
    let ours = loop {
        match k.wait_pid(stranger, WaitMode::Block) {
            Ok(WaitStatus::Terminated(_, status)) => break Ok(status.returncode()),
            Err(Errno::EINTR) => {}
            Err(errno) => break Err(errno),
            Ok(WaitStatus::StillAlive) => unreachable!("a blocking wait"),
        }
    };
    watcher.close().unwrap();
    event_loop.close().unwrap();
    (code, ours)
}

/// Pids are reused at once.
fn reusing_pids(seed: u64) -> Simulation {
    let mut simulation = Simulation::new(seed);
    simulation.config_mut().pid_reuse = PidReuse::LastFreed;
    simulation
}

#[test]
fn waiter_reused_pid() {
    // Goal (bpo-42110): with WaiterReusedPid the waiter reaps the stranger that got its child's pid and reports the stranger's 7 (on some seed); without it the watcher reports its child's 3 or 255 and the stranger's own waitpid gets its 7.
    Proof {
        test: "waiter_reused_pid",
        mutant: Mutant::WaiterReusedPid,
        simulation: reusing_pids,
        body: waiter_meets_a_stranger,
        // 3 when the waiter reaps the child before the handler runs, 255 after.
        correct: |seen, _| match seen {
            (3 | 255, Ok(7)) => Ok(()),
            _ => Err(format!("saw {seen:?}, expected (3 or 255, Ok(7))")),
        },
        shows: |run| {
            (run.seen == Some((7, Err(Errno::ECHILD))))
                .then(|| "the waiter reaped the stranger and reported its 7".to_string())
        },
    }
    .check();
}

/// One child registered once with Threaded. How many waiter threads the registration
/// started, and the returncode reported.
fn one_registration(k: &SimKernel) -> (usize, i32) {
    let watcher = ThreadedChildWatcher::with_kernel(k.clone());
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let (reported, setter) = event_loop.create_future::<i32>();
    let callback: ChildCallback = Box::new(move |_, code| {
        let _ = setter.set_result(code);
    });
    let waiters = event_loop
        .run_until_complete(async {
            let pid = testing::spawn_sh(k, "exit 0");
            watcher.add_child_handler(pid, callback).unwrap();
            watcher.pending_threads()
        })
        .unwrap();
    let code = event_loop.run_until_complete(reported).unwrap().unwrap();
    let joined = testing::wait_until(k, Duration::from_secs(1), || {
        watcher.close().unwrap();
        (watcher.pending_threads() == 0).then_some(())
    });
    assert!(joined.is_some(), "the waiters end");
    event_loop.close().unwrap();
    (waiters, code)
}

fn unknown_child_warned<T>(run: &Run<T>) -> bool {
    run.warnings
        .iter()
        .any(|w| w.starts_with("Unknown child process pid"))
}

#[test]
fn threaded_double_waiter() {
    // Goal: with ThreadedDoubleWaiter one registration starts two waiters and, on some seed, a child that exited 0 is reported 255; without it one waiter reports 0 and nothing is warned.
    Proof {
        test: "threaded_double_waiter",
        mutant: Mutant::ThreadedDoubleWaiter,
        simulation: Simulation::new,
        body: one_registration,
        correct: |seen, run| {
            expect(seen, (1, 0))?;
            match unknown_child_warned(run) {
                true => Err(format!("warned {:?}", run.warnings)),
                false => Ok(()),
            }
        },
        shows: |run| {
            (run.seen == Some((2, 255)) && unknown_child_warned(run)).then(|| {
                "two waiters, and the one that found the child gone reported 255".to_string()
            })
        },
    }
    .check();
}

/// Without pidfds, a `Process` under Threaded whose child the waiter reaped while the
/// loop does not run, its pid already a stranger's, is sent SIGTERM. What
/// `send_signal` answered, how the stranger ended, and what `wait` gave.
fn signal_between_reap_and_hop(k: &SimKernel) -> (Result<(), ErrorKind>, i32, i32) {
    let watcher: WatcherRef<SimKernel> = Arc::new(ThreadedChildWatcher::with_kernel(k.clone()));
    loopwatch::policy::set_child_watcher(k, Some(watcher)).unwrap();
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let lp = event_loop.clone();
    let process = event_loop
        .run_until_complete(async move { lp.subprocess_exec(&testing::sh("exit 3")) })
        .unwrap()
        .unwrap();
    let pid = process.pid();
    // The loop does not run: the waiter reaps the child, and its hop to the loop waits
    // in the loop's queue.
    while k.children_left() != (0, 0) {
        k.sleep(Duration::from_millis(1));
    }
    let stranger = testing::spawn_sh(k, "sleep 100000");
    assert_eq!(stranger, pid, "the freed pid went to the stranger");
    let sent = process
        .send_signal(Signal::SIGTERM)
        .map_err(|error| error.kind());
    // A second of virtual time for a signal to end it.
    let ended = testing::wait_until(k, Duration::from_secs(1), || {
        matches!(
            k.wait_peek(WaitTarget::Pid(stranger), WaitMode::NoHang),
            Ok(WaitStatus::Terminated(..))
        )
        .then_some(())
    });
    if ended.is_none() {
        k.kill(stranger, Some(Signal::SIGKILL)).unwrap();
    }
    let stranger_code = testing::reap(k, stranger);
    let code = event_loop
        .run_until_complete(async { process.wait().await })
        .unwrap();
    drop(process);
    loopwatch::policy::set_child_watcher(k, None).unwrap();
    event_loop.close().unwrap();
    (sent, stranger_code, code)
}

/// No pidfds (a kernel before 5.3), and pids reused at once.
fn without_pidfd_reusing_pids(seed: u64) -> Simulation {
    reusing_pids(seed).faults(FaultPlan {
        pidfd_enosys: true,
        ..FaultPlan::default()
    })
}

#[test]
fn reaped_after_hop() {
    // Goal (finding 3): with ReapedAfterHop send_signal between the waiter's reap and the loop's hearing of it kills the stranger that got the pid; without it send_signal gives ProcessLookupError and the stranger lives (until this test kills it).
    Proof {
        test: "reaped_after_hop",
        mutant: Mutant::ReapedAfterHop,
        simulation: without_pidfd_reusing_pids,
        body: signal_between_reap_and_hop,
        correct: |seen, _| expect(seen, (Err(ErrorKind::ProcessLookupError), -9, 3)),
        shows: |run| {
            (run.seen == Some((Ok(()), -15, 3)))
                .then(|| "SIGTERM reached the stranger that holds the reused pid".to_string())
        },
    }
    .check();
}

// ----- Safe and Fast ------------------------------------------------------------------

/// A child exits, and its SIGCHLD is gone, before Safe is attached; then it is
/// registered. What was reported inside `add_child_handler`, what the loop reported
/// after, and whether the child was left a zombie.
fn registered_after_exit(k: &SimKernel) -> (Reports, Reports, bool) {
    let pid = testing::spawn_sh(k, "exit 4");
    k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block).unwrap();
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let watcher = SafeChildWatcher::with_kernel(k.clone());
    watcher.attach_loop(Some(event_loop.clone())).unwrap();
    let reports = Log::new();
    watcher.add_child_handler(pid, recorder(&reports)).unwrap();
    let at_once = reports.take();
    turn(&event_loop, 20);
    let later = reports.take();
    let zombie = matches!(
        k.wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang),
        Ok(WaitStatus::Terminated(..))
    );
    watcher.close().unwrap();
    event_loop.close().unwrap();
    (at_once, later, zombie)
}

#[test]
fn safe_no_initial_poll() {
    // Goal: with SafeNoInitialPoll a child that exited before it was registered is never reported and stays a zombie; without it add_child_handler reports it at once.
    Proof {
        test: "safe_no_initial_poll",
        mutant: Mutant::SafeNoInitialPoll,
        simulation: Simulation::new,
        body: registered_after_exit,
        correct: |seen, _| expect(seen, (vec![(Pid(1001), 4)], vec![], false)),
        shows: |run| {
            (run.seen == Some((vec![], vec![], true)))
                .then(|| "never reported, left a zombie".to_string())
        },
    }
    .check();
}

/// Five children registered with Safe exit while SIGCHLD is blocked, so one SIGCHLD
/// covers them all; the first one's callback panics. What the others reported, what
/// the loop's exception handler got, and the children left (running, zombies).
fn coalesced_exits_first_panics(k: &SimKernel) -> (Reports, Vec<String>, (usize, usize)) {
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let exceptions = record_exceptions(&event_loop);
    let watcher = SafeChildWatcher::with_kernel(k.clone());
    watcher.attach_loop(Some(event_loop.clone())).unwrap();
    let reports = Log::new();
    k.block_signal(Signal::SIGCHLD).unwrap();
    let mut pids = Vec::new();
    for code in 0..5 {
        let pid = testing::spawn_sh(k, &format!("sleep 1; exit {code}"));
        let callback: ChildCallback = match code {
            0 => Box::new(|_, _| panic!("boom in the first callback")),
            _ => recorder(&reports),
        };
        watcher.add_child_handler(pid, callback).unwrap();
        pids.push(pid);
    }
    for &pid in &pids {
        k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block).unwrap();
    }
    // The one pending SIGCHLD is delivered here.
    k.unblock_signal(Signal::SIGCHLD).unwrap();
    turn(&event_loop, 20);
    let left = k.children_left();
    watcher.close().unwrap();
    event_loop.close().unwrap();
    let mut reported = reports.take();
    reported.sort_unstable();
    (reported, exceptions.take(), left)
}

#[test]
fn panic_ends_pass() {
    // Goal (finding 9): with PanicEndsPass the first callback's panic ends the pass, leaving the other four exits unreported and zombies; without it they are reported in the same pass and nothing is left.
    Proof {
        test: "panic_ends_pass",
        mutant: Mutant::PanicEndsPass,
        simulation: Simulation::new,
        body: coalesced_exits_first_panics,
        correct: |seen, _| {
            let others = (1..5).map(|code| (Pid(1001 + code), code)).collect();
            let report = vec!["Unknown exception in SIGCHLD handler".to_string()];
            expect(seen, (others, report, (0, 0)))
        },
        shows: |run| {
            let (reported, _, left) = run.seen.as_ref()?;
            (reported.is_empty() && *left == (0, 4))
                .then(|| "the other four exits were left unreported, as zombies".to_string())
        },
    }
    .check();
}

/// Other code reaps Fast's registered child before the loop handles its SIGCHLD. What
/// Fast reported (F-7: nothing).
fn stolen_from_fast(k: &SimKernel) -> Reports {
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let watcher = FastChildWatcher::with_kernel(k.clone());
    watcher.attach_loop(Some(event_loop.clone())).unwrap();
    let reports = Log::new();
    let pid = {
        let _window = fork_window(&watcher);
        let pid = testing::spawn_sh(k, "exit 3");
        watcher.add_child_handler(pid, recorder(&reports)).unwrap();
        pid
    };
    // Its SIGCHLD waits in the loop's wakeup pipe meanwhile.
    assert_eq!(testing::reap(k, pid), 3);
    turn(&event_loop, 20);
    watcher.close().unwrap();
    event_loop.close().unwrap();
    reports.take()
}

/// A step limit that the correct run stays far below, so that a hang ends quickly.
fn few_steps(seed: u64) -> Simulation {
    let mut simulation = Simulation::new(seed);
    simulation.config_mut().steps_max = 20_000;
    simulation
}

#[test]
fn fast_hangs_on_stolen() {
    // Goal: with FastHangsOnStolen the pass that finds the registered child stolen never ends (the run hits its step limit); without it the pass ends and the child is never reported (F-7).
    Proof {
        test: "fast_hangs_on_stolen",
        mutant: Mutant::FastHangsOnStolen,
        simulation: few_steps,
        body: stolen_from_fast,
        correct: |seen, _| expect(seen, vec![]),
        shows: |run| {
            matches!(run.report.outcome, Outcome::StepLimit(_))
                .then(|| "the SIGCHLD pass never ended".to_string())
        },
    }
    .check();
}

/// Fast's pass reaps a child inside the fork window before it is registered. What
/// `add_child_handler` reported at once, and what the loop reported after.
fn early_exit_under_fast(k: &SimKernel) -> (Reports, Reports) {
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let watcher = FastChildWatcher::with_kernel(k.clone());
    watcher.attach_loop(Some(event_loop.clone())).unwrap();
    let reports = Log::new();
    let at_once = {
        let _window = fork_window(&watcher);
        let pid = testing::spawn_sh(k, "exit 5");
        k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block).unwrap();
        watcher.handle_sigchld();
        watcher.add_child_handler(pid, recorder(&reports)).unwrap();
        reports.take()
    };
    turn(&event_loop, 20);
    let later = reports.take();
    watcher.close().unwrap();
    event_loop.close().unwrap();
    (at_once, later)
}

#[test]
fn fast_lost_early_exit() {
    // Goal (F-4): with FastLostEarlyExit a child reaped before its registration is never reported; without it add_child_handler reports it at once.
    Proof {
        test: "fast_lost_early_exit",
        mutant: Mutant::FastLostEarlyExit,
        simulation: Simulation::new,
        body: early_exit_under_fast,
        correct: |seen, _| expect(seen, (vec![(Pid(1001), 5)], vec![])),
        shows: |run| {
            (run.seen == Some((vec![], vec![])))
                .then(|| "the early exit was never reported".to_string())
        },
    }
    .check();
}

// ----- Pidfd --------------------------------------------------------------------------

/// Other code reaps a child registered with Pidfd before the loop polls its pidfd.
/// What was reported, what the loop's exception handler got, and how many fds the
/// registration left open.
fn reaped_elsewhere_under_pidfd(k: &SimKernel) -> (Reports, Vec<String>, usize) {
    let watcher = PidfdChildWatcher::with_kernel(k.clone());
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let exceptions = record_exceptions(&event_loop);
    let before = testing::fd_count(k);
    let reports = Log::new();
    let pid = event_loop
        .run_until_complete(async {
            let pid = testing::spawn_sh(k, "exit 6");
            watcher.add_child_handler(pid, recorder(&reports)).unwrap();
            pid
        })
        .unwrap();
    assert_eq!(testing::reap(k, pid), 6);
    turn(&event_loop, 20);
    let left_open = testing::fd_count(k) - before;
    event_loop.close().unwrap();
    (reports.take(), exceptions.take(), left_open)
}

#[test]
fn pidfd_unhandled_echild() {
    // Goal: with PidfdUnhandledEchild a child reaped elsewhere is never reported, the error reaches the loop and the pidfd stays open; without it the child is reported 255 and the pidfd closed.
    Proof {
        test: "pidfd_unhandled_echild",
        mutant: Mutant::PidfdUnhandledEchild,
        simulation: Simulation::new,
        body: reaped_elsewhere_under_pidfd,
        correct: |seen, _| expect(seen, (vec![(Pid(1001), 255)], vec![], 0)),
        shows: |run| {
            let escaped =
                vec!["Exception in callback PidfdChildWatcher._do_wait(1001)".to_string()];
            (run.seen == Some((vec![], escaped, 1)))
                .then(|| "never reported, ECHILD escaped, the pidfd left open".to_string())
        },
    }
    .check();
}
