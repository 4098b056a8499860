//! `WaitidChildWatcher` on the simulated kernel (spec I-1 … I-4): its cost per exit,
//! a foreign zombie at the head of the queue, a child other code reaped, the fallback
//! when the peek is refused, and the zoo's mutant of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use loopwatch::kernel::{
    Clock as _, Errno, ExitStatus, Pid, Processes, SpawnRequest, Threads, WaitMode, WaitStatus,
    WaitTarget,
};
use loopwatch::zoo::{Mutant, set_mutant};
use loopwatch::{ChildWatcher, EventLoop, WaitidChildWatcher};
use loopwatch_sim::{FaultPlan, Reaper, Report, SimKernel, Simulation, actors, testing};

/// What a test collects from callbacks and threads. A plain `std` lock: never held
/// across a kernel call.
#[allow(clippy::disallowed_types, reason = "never held across a kernel call")]
type Shared<T> = Arc<std::sync::Mutex<T>>;

/// Idle children registered beside the one that exits.
const IDLE: usize = 1000;

/// Seeds of the tests that sweep them.
const SEEDS: u64 = 40;

/// The wait calls (`waitpid`, `waitid`) in the trace between two notes.
fn waits_between(report: &Report, start: &str, end: &str) -> (usize, usize) {
    let lines = report.trace.lines();
    let note = |text: &str| {
        lines
            .iter()
            .position(|l| l.ends_with(&format!(" note {text}")))
            .unwrap_or_else(|| panic!("note {text:?} is not in the trace"))
    };
    let pass = &lines[note(start)..note(end)];
    let count = |call: &str| pass.iter().filter(|l| l.contains(call)).count();
    (count(" waitpid("), count(" waitid("))
}

/// Registers `IDLE` children that run forever and one that the test ends with
/// `code`, under `plan`, then runs two SIGCHLD passes between notes: the exit's, and
/// one more for nobody. Returns the report.
fn one_exit_among_idle(seed: u64, plan: FaultPlan) -> Report {
    let report = Simulation::new(seed).faults(plan).run(move |k| {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let watcher = WaitidChildWatcher::with_kernel(k.clone());
        watcher.attach_loop(Some(event_loop.clone())).unwrap();
        let fired = Arc::new(AtomicUsize::new(0));
        let mut last = None;
        for _ in 0..=IDLE {
            let child = k.spawn(&SpawnRequest::new("sleep", ["100000"])).unwrap();
            let fired = fired.clone();
            watcher
                .add_child_handler(
                    child.pid,
                    Box::new(move |_, code| {
                        assert_eq!(code, 3);
                        fired.fetch_add(1, Ordering::SeqCst);
                    }),
                )
                .unwrap();
            last = Some(child.pid);
        }
        k.end_child(last.unwrap(), ExitStatus::from_exit_code(3));
        testing::note(&k, "sigchld pass");
        watcher.handle_sigchld();
        testing::note(&k, "sigchld pass done");
        assert_eq!(fired.load(Ordering::SeqCst), 1);
        testing::note(&k, "second pass");
        watcher.handle_sigchld();
        testing::note(&k, "second pass done");
        testing::note(&k, &format!("unsupported {:?}", watcher.peek_unsupported()));
        watcher.close().unwrap();
        event_loop.close().unwrap();
    });
    report.assert_completed("one_exit_among_idle");
    report
}

#[test]
fn one_exit_costs_three_wait_calls_whatever_the_idle_children() {
    // Goal (I-2): with 1,001 registered children and one exit, the pass makes three
    // wait calls: a peek that names the child, the waitpid that reaps it, a peek that
    // finds nobody else. Nothing per idle child.
    let report = one_exit_among_idle(1, FaultPlan::none());
    assert_eq!(
        waits_between(&report, "sigchld pass", "sigchld pass done"),
        (1, 2)
    );
    // A SIGCHLD whose child is gone (here: none exited) polls every registered child,
    // so that one reaped by other code is reported (I-3): one peek, then O(n).
    assert_eq!(
        waits_between(&report, "second pass", "second pass done"),
        (IDLE, 1)
    );
    assert!(report.trace.text().contains("note unsupported None"));
}

#[test]
fn the_sigchld_of_a_child_reaped_at_registration_costs_one_peek() {
    // Goal (I-2): a child that exited before it was registered is reaped by the
    // registration's poll; the pass its SIGCHLD wakes finds no exit and, knowing the
    // exit was reaped early, makes one peek and nothing per idle child. A pass that
    // finds no exit with none counted polls every pid (I-3).
    let report = Simulation::new(5).run(|k| {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let watcher = WaitidChildWatcher::with_kernel(k.clone());
        watcher.attach_loop(Some(event_loop.clone())).unwrap();
        for _ in 0..IDLE {
            let idle = k.spawn(&SpawnRequest::new("sleep", ["100000"])).unwrap();
            watcher
                .add_child_handler(idle.pid, Box::new(|_, _| panic!("idle child reported")))
                .unwrap();
        }
        let child = k.spawn(&SpawnRequest::new("sleep", ["100000"])).unwrap();
        k.end_child(child.pid, ExitStatus::from_exit_code(6));
        let code = Arc::new(AtomicUsize::new(0));
        let got = code.clone();
        watcher
            .add_child_handler(
                child.pid,
                Box::new(move |_, returncode| got.store(returncode as usize, Ordering::SeqCst)),
            )
            .unwrap();
        assert_eq!(code.load(Ordering::SeqCst), 6);
        testing::note(&k, "counted pass");
        watcher.handle_sigchld();
        testing::note(&k, "counted pass done");
        watcher.handle_sigchld();
        testing::note(&k, "uncounted pass done");
        watcher.close().unwrap();
        event_loop.close().unwrap();
    });
    report.assert_completed("the_sigchld_of_a_child_reaped_at_registration");
    assert_eq!(
        waits_between(&report, "counted pass", "counted pass done"),
        (0, 1)
    );
    assert_eq!(
        waits_between(&report, "counted pass done", "uncounted pass done"),
        (IDLE, 1)
    );
}

#[test]
fn a_refused_peek_falls_back_to_polling_each_pid_for_good() {
    // Goal (I-4): when waitid(P_ALL, WNOWAIT) answers EINVAL, the pass polls every
    // registered child (the exit is still reported with its code), and the watcher
    // does not peek again.
    let plan = FaultPlan {
        wait_peek_einval: true,
        ..FaultPlan::none()
    };
    let report = one_exit_among_idle(2, plan);
    // The refusal was learned by attach_loop's pass, the only peek of the run.
    assert_eq!(
        waits_between(&report, "sigchld pass", "sigchld pass done"),
        (IDLE + 1, 0)
    );
    assert_eq!(
        waits_between(&report, "second pass", "second pass done"),
        (IDLE, 0)
    );
    assert!(
        report
            .trace
            .text()
            .contains("note unsupported Some(EINVAL)")
    );
    assert_eq!(report.mark("wait_peek_einval"), 1);
}

/// What the foreign-zombie run saw: the codes reported for ours, by pid order, and
/// the library's line about its own child.
struct HeadRun {
    ours: Vec<i32>,
    library: String,
    report: Report,
}

/// A library thread spawns a child that exits first and is reaped by the library
/// only 10 s later; meanwhile three children of ours exit (codes 3, 4, 5) while the
/// loop runs. Returns what each side saw.
fn foreign_zombie_at_head(seed: u64, mutant: Option<Mutant>) -> HeadRun {
    let seen: Shared<Vec<(Pid, i32)>> = Arc::default();
    let library_line: Shared<String> = Arc::default();
    let (seen_in, line_in) = (seen.clone(), library_line.clone());
    let report = Simulation::new(seed).run(move |k| {
        set_mutant(&k, mutant);
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let watcher = WaitidChildWatcher::with_kernel(k.clone());
        watcher.attach_loop(Some(event_loop.clone())).unwrap();
        // The library: its child exits at once, and it reaps it 10 s later.
        let (lk, out) = (k.clone(), line_in.clone());
        let library = k
            .spawn_thread(
                "foreign-library",
                Box::new(move || {
                    let child = lk.spawn(&SpawnRequest::new("sleep", ["100000"])).unwrap();
                    lk.end_child(child.pid, ExitStatus::from_exit_code(7));
                    lk.sleep(Duration::from_secs(10));
                    let line = loop {
                        match lk.wait_pid(child.pid, WaitMode::NoHang) {
                            Err(Errno::EINTR) => continue,
                            Ok(WaitStatus::Terminated(_, status)) => {
                                break format!("reaped {}", status.returncode());
                            }
                            other => break format!("{other:?}"),
                        }
                    };
                    *out.lock().unwrap() = line;
                }),
            )
            .unwrap();
        // Ours start once the library's child is a zombie: it is at the head.
        k.sleep(Duration::from_millis(1));
        let head = k.wait_peek(WaitTarget::Any, WaitMode::NoHang);
        testing::note(&k, &format!("head {head:?}"));
        let done = Arc::new(AtomicUsize::new(0));
        for code in [3_u8, 4, 5] {
            let child = k.spawn(&SpawnRequest::new("sleep", ["100000"])).unwrap();
            let (seen, done, stopper) = (seen_in.clone(), done.clone(), event_loop.clone());
            watcher
                .add_child_handler(
                    child.pid,
                    Box::new(move |pid, returncode| {
                        seen.lock().unwrap().push((pid, returncode));
                        if done.fetch_add(1, Ordering::SeqCst) == 2 {
                            stopper.stop();
                        }
                    }),
                )
                .unwrap();
            let pid = child.pid;
            let ender = k.clone();
            event_loop
                .call_later(0.01 * f64::from(code), move || {
                    ender.end_child(pid, ExitStatus::from_exit_code(code));
                })
                .unwrap();
        }
        event_loop.run_forever().unwrap();
        testing::note(&k, &format!("reported at {:?}", k.now()));
        k.join_thread(library).unwrap();
        watcher.close().unwrap();
        event_loop.close().unwrap();
    });
    let mut ours = seen.lock().unwrap().clone();
    ours.sort();
    HeadRun {
        ours: ours.into_iter().map(|(_, code)| code).collect(),
        library: library_line.lock().unwrap().clone(),
        report,
    }
}

#[test]
fn a_foreign_zombie_at_the_head_blocks_neither_ours_nor_its_owner() {
    // Goal (I-2): a child of other code exits first and stays a zombie while three of
    // ours exit. Each of ours is reported with its own code while the foreign one
    // lingers (the loop stops before its owner reaps it), and the foreign one is never
    // reaped by the watcher: its owner's waitpid gets its status.
    for seed in 0..SEEDS {
        let run = foreign_zombie_at_head(seed, None);
        run.report.assert_completed("foreign_zombie_at_head");
        assert_eq!(run.ours, [3, 4, 5], "seed {seed}");
        assert_eq!(run.library, "reaped 7", "seed {seed}");
        let text = run.report.trace.text();
        assert!(text.contains("note head Ok(Terminated("), "seed {seed}");
        let reported = text
            .lines()
            .find_map(|l| l.split(" note reported at ").nth(1))
            .unwrap_or_else(|| panic!("seed {seed}: no report time"));
        assert!(
            reported.ends_with("ms"),
            "seed {seed}: ours were reported at {reported}, not before the owner's reap"
        );
        for life in &run.report.ledger.children {
            if life.spawned_by == "foreign-library" {
                assert_eq!(
                    life.reaped_by,
                    Some(Reaper::Thread("foreign-library".into())),
                    "seed {seed}"
                );
            }
        }
    }
}

#[test]
fn the_mutant_that_reaps_whatever_it_peeks_steals_the_foreign_zombie() {
    // Goal: the zoo's waitid-reaps-foreign mutant, in the same run, reaps the library's
    // child: its owner gets ECHILD. What the invariant checker's `steal` rule catches.
    let run = foreign_zombie_at_head(0, Some(Mutant::WaitidReapsForeign));
    run.report
        .assert_completed("foreign_zombie_at_head, mutant");
    assert_eq!(run.ours, [3, 4, 5]);
    assert_eq!(run.library, "Err(ECHILD)");
}

#[test]
fn a_child_reaped_by_other_code_is_reported_as_255() {
    // Goal (R-2, I-3): a registered child that a foreign waitpid(-1) reaps before the
    // watcher's pass is reported as 255, by the pass whose peek finds no exit.
    for seed in 0..SEEDS {
        let code = Arc::new(AtomicUsize::new(0));
        let got = code.clone();
        let report = Simulation::new(seed).run(move |k: SimKernel| {
            let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
            let watcher = WaitidChildWatcher::with_kernel(k.clone());
            watcher.attach_loop(Some(event_loop.clone())).unwrap();
            let child = k.spawn(&SpawnRequest::new("sleep", ["100000"])).unwrap();
            let (got, stopper) = (got.clone(), event_loop.clone());
            watcher
                .add_child_handler(
                    child.pid,
                    Box::new(move |_, returncode| {
                        got.store(returncode as usize, Ordering::SeqCst);
                        stopper.stop();
                    }),
                )
                .unwrap();
            k.end_child(child.pid, ExitStatus::from_exit_code(9));
            let (reaper, stolen) = actors::reap_any(&k, 1, Duration::from_millis(1));
            k.join_thread(reaper).unwrap();
            assert_eq!(stolen.lock().unwrap().len(), 1);
            event_loop.run_forever().unwrap();
            watcher.close().unwrap();
            event_loop.close().unwrap();
        });
        report.assert_completed("a_child_reaped_by_other_code");
        assert_eq!(code.load(Ordering::SeqCst), 255, "seed {seed}");
    }
}

#[test]
fn a_stolen_child_merged_with_one_of_ours_waits_for_a_pass_that_finds_nothing() {
    // Goal (I-3, the documented cost): two of ours exit under one SIGCHLD and other
    // code reaps one of them first. The pass reaps and reports the other; the stolen
    // one is reported as 255 by the next pass whose first peek finds no exit.
    let report = Simulation::new(4).run(|k| {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let watcher = WaitidChildWatcher::with_kernel(k.clone());
        watcher.attach_loop(Some(event_loop.clone())).unwrap();
        let codes: Shared<Vec<(Pid, i32)>> = Arc::default();
        let mut pids = Vec::new();
        for _ in 0..2 {
            let child = k.spawn(&SpawnRequest::new("sleep", ["100000"])).unwrap();
            let codes = codes.clone();
            watcher
                .add_child_handler(
                    child.pid,
                    Box::new(move |pid, code| codes.lock().unwrap().push((pid, code))),
                )
                .unwrap();
            pids.push(child.pid);
        }
        k.end_child(pids[0], ExitStatus::from_exit_code(3));
        k.end_child(pids[1], ExitStatus::from_exit_code(4));
        let (stolen, thief) = (pids[0], k.clone());
        let reaper = k
            .spawn_thread(
                "foreign-reaper",
                Box::new(move || {
                    let reaped = thief.wait_pid(stolen, WaitMode::NoHang);
                    assert!(matches!(reaped, Ok(WaitStatus::Terminated(..))));
                }),
            )
            .unwrap();
        k.join_thread(reaper).unwrap();
        watcher.handle_sigchld();
        assert_eq!(*codes.lock().unwrap(), [(pids[1], 4)]);
        watcher.handle_sigchld();
        assert_eq!(*codes.lock().unwrap(), [(pids[1], 4), (pids[0], 255)]);
        watcher.close().unwrap();
        event_loop.close().unwrap();
    });
    report.assert_completed("a_stolen_child_merged_with_one_of_ours");
}

#[test]
fn it_never_reaps_a_library_child_across_seeds() {
    // Goal (S-6 kept): a library spawns and waits for its own child while the
    // watcher's passes run; the library always reaps it with its true code.
    for seed in 0..400 {
        let lines = Arc::new(std::sync::OnceLock::new());
        let slot = lines.clone();
        let report = Simulation::new(seed).run(move |k| {
            let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
            let watcher = WaitidChildWatcher::with_kernel(k.clone());
            watcher.attach_loop(Some(event_loop.clone())).unwrap();
            let (library, seen) = actors::spawn_and_wait(
                &k,
                SpawnRequest::new("/bin/sh", ["-c", "sleep 0.001; exit 2"]),
            );
            k.sleep(Duration::from_millis(1));
            watcher.handle_sigchld();
            k.join_thread(library).unwrap();
            let _ = slot.set(seen.lock().unwrap().last().cloned().unwrap_or_default());
            watcher.close().unwrap();
            event_loop.close().unwrap();
        });
        report.assert_completed("it_never_reaps_a_library_child");
        let fate = lines.get().cloned().unwrap_or_default();
        assert!(
            fate.starts_with("reaped") && fate.ends_with(" 2"),
            "seed {seed}: the library saw {fate}"
        );
    }
}

#[test]
fn registration_replaces_and_remove_removes() {
    // Goal (S-4, S-7 kept): registering a pid again replaces its callback; a removed
    // handler never fires, and the removed child is left for whoever wants it.
    let report = Simulation::new(3).run(|k| {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let watcher = WaitidChildWatcher::with_kernel(k.clone());
        let refused = watcher
            .add_child_handler(Pid(1), Box::new(|_, _| {}))
            .unwrap_err();
        assert_eq!(refused.kind(), loopwatch::ErrorKind::RuntimeError);
        watcher.attach_loop(Some(event_loop.clone())).unwrap();
        let bad = watcher
            .add_child_handler(Pid(0), Box::new(|_, _| {}))
            .unwrap_err();
        assert_eq!(bad.kind(), loopwatch::ErrorKind::ValueError);
        let calls = Arc::new(AtomicUsize::new(0));
        let (a, b) = (
            k.spawn(&SpawnRequest::new("sleep", ["100000"])).unwrap(),
            k.spawn(&SpawnRequest::new("sleep", ["100000"])).unwrap(),
        );
        let first = calls.clone();
        watcher
            .add_child_handler(a.pid, Box::new(move |_, _| panic!("replaced: {first:?}")))
            .unwrap();
        let second = calls.clone();
        watcher
            .add_child_handler(
                a.pid,
                Box::new(move |_, code| {
                    assert_eq!(code, 1);
                    second.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .unwrap();
        watcher
            .add_child_handler(b.pid, Box::new(|_, _| panic!("removed")))
            .unwrap();
        assert!(watcher.remove_child_handler(b.pid));
        assert!(!watcher.remove_child_handler(b.pid));
        k.end_child(a.pid, ExitStatus::from_exit_code(1));
        k.end_child(b.pid, ExitStatus::from_exit_code(2));
        watcher.handle_sigchld();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // b is left a zombie, for its owner.
        assert_eq!(
            k.wait_pid(b.pid, WaitMode::NoHang),
            Ok(WaitStatus::Terminated(b.pid, ExitStatus::from_exit_code(2)))
        );
        watcher.close().unwrap();
        event_loop.close().unwrap();
    });
    report.assert_completed("registration_replaces_and_remove_removes");
}
