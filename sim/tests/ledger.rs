//! The ledger of a run (every child's life, every signal sent, the violations found)
//! and the model's checks of its own invariants.

use std::sync::Arc;
use std::time::Duration;

use loopwatch::kernel::{
    Clock, Disposition, Errno, Fds, Interest, Monitor, Pid, Poll, Poller, Processes, Signal,
    Signals, Threads, Token, WaitMode, WaitStatus,
};
use loopwatch_sim::testing::{self, sh};
use loopwatch_sim::{
    FaultPlan, ForeignHandler, Ledger, ModelDamage, Outcome, PidReuse, Reaper, Report, SignalVia,
    SimKernel, Simulation, actors, body,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn main_thread() -> Option<Reaper> {
    Some(Reaper::Thread("MainThread".to_string()))
}

/// The one child's reaper, after `scenario` ran on seed `seed`.
fn reaper_of_only_child(seed: u64, faults: FaultPlan, scenario: fn(&SimKernel)) -> Option<Reaper> {
    let report = Simulation::new(seed)
        .faults(faults)
        .run(move |k| scenario(&k));
    report.assert_completed("reaper_of_only_child");
    assert_eq!(report.ledger.children.len(), 1, "{:?}", report.ledger);
    report.ledger.children[0].reaped_by.clone()
}

#[test]
fn a_child_reaped_by_the_main_thread_has_its_whole_life_recorded() {
    // Goal: spawn, end and reap times (virtual), program, pid, returncode and both
    // threads are the ones the run saw.
    let (pid, report) = Simulation::new(1).run_returning(|k| {
        k.sleep(secs(1));
        let pid = testing::spawn_sh(&k, "sleep 2; exit 3");
        assert_eq!(testing::reap(&k, pid), 3);
        pid
    });
    report.assert_completed("main_thread_reaps");
    let life = report.ledger.child(0).expect("one child");
    assert_eq!(life.serial, 0);
    assert_eq!(Some(life.pid), pid);
    assert_eq!(life.program, "/bin/sh -c sleep 2; exit 3");
    assert_eq!(life.spawned_by, "MainThread");
    assert_eq!(life.spawned_at, secs(1));
    assert_eq!(life.returncode, Some(3));
    assert_eq!(life.ended_at, Some(secs(3)));
    assert_eq!(life.reaped_by, main_thread());
    assert_eq!(life.reaped_at, Some(secs(3)));
    assert_eq!(report.ledger.children.len(), 1);
    assert!(report.ledger.signals.is_empty());
    assert!(report.ledger.violations.is_empty());
}

#[test]
fn a_child_left_running_is_neither_ended_nor_reaped() {
    // Goal: a child the run ends before has no end or reaper in the ledger.
    let report = Simulation::new(2).run(|k| {
        testing::spawn_sh(&k, "sleep 100");
    });
    report.assert_completed("left_running");
    let life = &report.ledger.children[0];
    assert_eq!(
        (
            life.returncode,
            life.ended_at,
            &life.reaped_by,
            life.reaped_at
        ),
        (None, None, &None, None)
    );
}

#[test]
fn a_child_stolen_by_a_reap_any_thread_names_that_thread() {
    // Goal: the foreign reaper thread's waitpid(-1) is the reaper, and the thread that
    // spawned the child stays its spawner.
    let report = Simulation::new(4).run(|k| {
        let pid = testing::spawn_sh(&k, "exit 4");
        let (reaper, stolen) = actors::reap_any(&k, 3, Duration::from_millis(10));
        k.join_thread(reaper).unwrap();
        assert_eq!(stolen.lock().unwrap().clone(), [format!("stole {pid} 4")]);
        assert_eq!(k.wait_pid(pid, WaitMode::NoHang), Err(Errno::ECHILD));
    });
    report.assert_completed("reap_any");
    let life = &report.ledger.children[0];
    assert_eq!(life.spawned_by, "MainThread");
    assert_eq!(life.returncode, Some(4));
    assert_eq!(
        life.reaped_by,
        Some(Reaper::Thread("foreign-reaper".to_string()))
    );
}

#[test]
fn a_foreign_actors_child_is_a_child_too() {
    // Goal: a child another library's thread spawns and waits for is in the ledger
    // with that thread as spawner and reaper.
    let report = Simulation::new(5).run(|k| {
        let (thread, result) = actors::spawn_and_wait(&k, sh("exit 7"));
        k.join_thread(thread).unwrap();
        assert!(result.lock().unwrap()[1].ends_with(" 7"));
    });
    report.assert_completed("spawn_and_wait");
    let life = &report.ledger.children[0];
    assert_eq!(life.spawned_by, "foreign-spawner");
    assert_eq!(
        life.reaped_by,
        Some(Reaper::Thread("foreign-spawner".to_string()))
    );
    assert_eq!(life.returncode, Some(7));
}

#[test]
fn sigchld_ignored_means_the_kernel_reaped_it() {
    // Goal: with SIGCHLD at SIG_IGN the child is reaped at its exit, by the kernel.
    let reaper = reaper_of_only_child(6, FaultPlan::none(), |k| {
        actors::ignore_sigchld(k).unwrap();
        testing::spawn_sh(k, "exit 5");
        k.sleep(secs(1));
        assert_eq!(k.wait_any(WaitMode::NoHang), Err(Errno::ECHILD));
    });
    assert_eq!(reaper, Some(Reaper::Ignored));
}

#[test]
fn the_foreign_reap_fault_is_its_own_reaper() {
    // Goal: a child reaped by the foreign_reap_on_sigchld fault says so.
    let faults = FaultPlan {
        foreign_reap_on_sigchld: 1.0,
        ..FaultPlan::none()
    };
    let reaper = reaper_of_only_child(7, faults, |k| {
        k.install_foreign_handler(Signal::SIGCHLD, ForeignHandler::Count);
        testing::spawn_sh(k, "exit 0");
        k.sleep(secs(1));
        assert_eq!(k.wait_any(WaitMode::NoHang), Err(Errno::ECHILD));
    });
    assert_eq!(reaper, Some(Reaper::ForeignFault));
}

#[test]
fn a_foreign_reaping_handler_names_the_thread_it_ran_in() {
    // Goal: a foreign SIGCHLD handler that reaps every zombie is recorded as such,
    // with the thread that took the signal.
    let reaper = reaper_of_only_child(8, FaultPlan::none(), |k| {
        actors::install_sigchld_handler(k, ForeignHandler::ReapAll);
        testing::spawn_sh(k, "exit 0");
        k.sleep(secs(1));
        assert_eq!(k.wait_any(WaitMode::NoHang), Err(Errno::ECHILD));
    });
    assert_eq!(
        reaper,
        Some(Reaper::ForeignHandler("MainThread".to_string()))
    );
}

#[test]
fn signals_are_recorded_with_the_child_they_reached() {
    // Goal: with LastFreed pid reuse, a kill aimed at a reaped child's pid lands on the
    // new child that got it (its serial), while the old child's pidfd reaches nobody;
    // a free pid and the process's own are reached by no child; a probe (signal 0)
    // sends nothing.
    let mut simulation = Simulation::new(9);
    simulation.config_mut().pid_reuse = PidReuse::LastFreed;
    let (pids, report) = simulation.run_returning(|k| {
        k.sleep(secs(1));
        let first = k.spawn(&sh("sleep 100")).unwrap().pid;
        let first_pidfd = k.pidfd_open(first).unwrap();
        k.kill(first, Some(Signal::SIGTERM)).unwrap();
        assert_eq!(testing::reap(&k, first), -15);
        let second = k.spawn(&sh("sleep 100")).unwrap().pid;
        assert_eq!(second, first, "LastFreed hands out the pid just freed");
        assert_eq!(k.serial_of(second), Some(1));
        let second_pidfd = k.pidfd_open(second).unwrap();
        let signaller = k.clone();
        let thread = k
            .spawn_thread(
                "signaller",
                Box::new(move || signaller.kill(first, Some(Signal::SIGTERM)).unwrap()),
            )
            .unwrap();
        k.join_thread(thread).unwrap();
        assert_eq!(
            k.pidfd_send_signal(first_pidfd, Signal::SIGTERM),
            Err(Errno::ESRCH)
        );
        assert_eq!(k.kill(Pid(4242), Some(Signal::SIGTERM)), Err(Errno::ESRCH));
        k.kill(second, None).unwrap();
        k.kill(k.getpid(), Some(Signal::SIGCHLD)).unwrap();
        k.pidfd_send_signal(second_pidfd, Signal::SIGKILL).unwrap();
        assert_eq!(testing::reap(&k, second), -15);
        assert_eq!(k.serial_of(second), None);
        k.close(first_pidfd).unwrap();
        k.close(second_pidfd).unwrap();
        (first, k.getpid())
    });
    report.assert_completed("signals");
    let (pid, own) = pids.unwrap();
    let ledger = &report.ledger;
    let seen: Vec<_> = ledger
        .signals
        .iter()
        .map(|s| (s.signal, s.pid, s.by.as_str(), s.via, s.landed_on))
        .collect();
    let main = "MainThread";
    assert_eq!(
        seen,
        [
            (15, pid, main, SignalVia::Kill, Some(0)),
            (15, pid, "signaller", SignalVia::Kill, Some(1)),
            (15, pid, main, SignalVia::Pidfd, None),
            (15, Pid(4242), main, SignalVia::Kill, None),
            (17, own, main, SignalVia::Kill, None),
            (9, pid, main, SignalVia::Pidfd, Some(1)),
        ]
    );
    assert!(ledger.signals.iter().all(|s| s.at == secs(1)));
    let steps: Vec<u64> = ledger.signals.iter().map(|s| s.step).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "steps {steps:?}");
    assert!(steps[0] > 0 && steps[5] <= report.steps);
    // Both lives of the pid, oldest first; the first was killed by the first kill.
    let lives: Vec<(u64, Option<i32>)> = ledger
        .by_pid(pid)
        .map(|life| (life.serial, life.returncode))
        .collect();
    assert_eq!(lives, [(0, Some(-15)), (1, Some(-15))]);
    assert!(ledger.child(2).is_none());
}

#[test]
fn serial_of_names_the_child_holding_a_pid_now() {
    // Goal: serial_of follows a pid through its children: running, zombie, reaped.
    let report = Simulation::new(10).run(|k| {
        assert_eq!(k.serial_of(Pid(1001)), None);
        let a = testing::spawn_sh(&k, "exit 0");
        let b = testing::spawn_sh(&k, "sleep 1");
        assert_eq!((k.serial_of(a), k.serial_of(b)), (Some(0), Some(1)));
        let peeked = k.wait_peek(loopwatch::kernel::WaitTarget::Pid(a), WaitMode::Block);
        assert!(matches!(peeked, Ok(WaitStatus::Terminated(..))));
        assert_eq!(k.serial_of(a), Some(0), "a zombie still holds its pid");
        testing::reap(&k, a);
        testing::reap(&k, b);
        assert_eq!((k.serial_of(a), k.serial_of(b)), (None, None));
    });
    report.assert_completed("serial_of");
}

#[test]
fn a_stale_wakeup_write_is_recorded_and_lands_in_the_new_file() {
    // Goal: a wakeup fd closed and its number reused by a new pipe: the signal's byte
    // goes to the new pipe (as CPython writes to the number), and the ledger records
    // kernel.stale-wakeup-write; while the fd was merely closed, nothing is written
    // and the ledger records kernel.closed-wakeup-write (the wake-up is lost).
    let report = Simulation::new(11).run(|k| {
        let (read, write) = k.pipe().unwrap();
        k.set_wakeup_fd(Some(write)).unwrap();
        k.set_disposition(Signal::SIGUSR1, Disposition::Wakeup)
            .unwrap();
        k.raise(Signal::SIGUSR1).unwrap();
        assert_eq!(testing::drain(&k, read).0, [10]);
        k.close(read).unwrap();
        k.close(write).unwrap();
        k.raise(Signal::SIGUSR1).unwrap();
        k.note("closed");
        let (new_read, new_write) = k.pipe().unwrap();
        assert_eq!((new_read, new_write), (read, write), "numbers reused");
        k.raise(Signal::SIGUSR1).unwrap();
        assert_eq!(testing::drain(&k, new_read).0, [10]);
        k.set_wakeup_fd(None).unwrap();
        k.close(new_read).unwrap();
        k.close(new_write).unwrap();
    });
    report.assert_completed("stale_wakeup_write");
    let rules: Vec<&str> = report.ledger.violations.iter().map(|v| v.rule).collect();
    assert_eq!(
        rules,
        ["kernel.closed-wakeup-write", "kernel.stale-wakeup-write"]
    );
    assert_eq!(report.mark("closed_wakeup_write"), 1);
    assert_eq!(report.mark("stale_wakeup_write"), 1);
    let step = report.ledger.violations[1].step;
    assert!(step > 0 && step < report.steps);
}

#[test]
fn a_stale_notify_write_is_recorded() {
    // Goal: the same for a Notify(fd) disposition's fd.
    let report = Simulation::new(12).run(|k| {
        let (read, write) = k.pipe().unwrap();
        k.set_disposition(Signal::SIGUSR2, Disposition::Notify(write))
            .unwrap();
        k.raise(Signal::SIGUSR2).unwrap();
        k.close(read).unwrap();
        k.close(write).unwrap();
        let (new_read, new_write) = k.pipe().unwrap();
        assert_eq!(new_write, write);
        k.raise(Signal::SIGUSR2).unwrap();
        assert_eq!(testing::drain(&k, new_read).0, [12]);
        k.set_disposition(Signal::SIGUSR2, Disposition::Default)
            .unwrap();
        k.close(new_read).unwrap();
        k.close(new_write).unwrap();
    });
    report.assert_completed("stale_notify_write");
    let rules: Vec<&str> = report.ledger.violations.iter().map(|v| v.rule).collect();
    assert_eq!(rules, ["kernel.notify-stale-write"]);
}

#[test]
fn a_thread_that_ends_holding_a_monitor_leaves_it_locked_for_good() {
    // Goal: as a lock whose owner exited, the monitor can never be taken again, and
    // the ledger says which thread left it held; the run goes on.
    let hold = |k: &SimKernel| {
        let monitor = Arc::new(k.new_monitor());
        let held = monitor.clone();
        let thread = k
            .spawn_thread("holder", Box::new(move || held.enter()))
            .unwrap();
        k.join_thread(thread).unwrap();
        monitor
    };
    let report = Simulation::new(13).run(move |k| drop(hold(&k)));
    report.assert_completed("monitor_held_at_exit");
    let violation = &report.ledger.violations[0];
    assert_eq!(violation.rule, "kernel.monitor-held-at-exit");
    assert!(violation.detail.contains("holder"), "{}", violation.detail);
    let report = Simulation::new(13).run(move |k| hold(&k).enter());
    assert!(
        matches!(&report.outcome, Outcome::Deadlock(what) if what.contains("MainThread")),
        "{:?}",
        report.outcome
    );
}

#[test]
fn a_closed_fd_is_watched_by_no_poller() {
    // Goal: on both kernels, a registered fd closed without deregistering is never
    // reported again, not even once its number names a new, ready file; the number
    // stays in the poller's table (register answers EEXIST, reregister fails as
    // EPOLL_CTL_MOD does, deregister succeeds), after which the new file registers.
    testing::for_seeds_and_os(
        4,
        body!(|k| {
            let poller = k.new_poller().unwrap();
            let (read, write) = k.pipe().unwrap();
            poller.register(read, Token(1), Interest::READABLE).unwrap();
            k.close(read).unwrap();
            k.close(write).unwrap();
            let (new_read, new_write) = k.pipe().unwrap();
            k.write(new_write, b"x").unwrap();
            let mut events = Vec::new();
            poller.poll(&mut events, Some(Duration::ZERO)).unwrap();
            assert_eq!(events, [], "a closed fd was reported");
            assert_eq!(
                poller.register(read, Token(2), Interest::READABLE),
                Err(Errno::EEXIST)
            );
            let again = poller.reregister(read, Token(1), Interest::READABLE);
            if new_read == read {
                assert_eq!(again, Err(Errno::ENOENT));
            } else {
                assert!(matches!(again, Err(Errno::ENOENT | Errno::EBADF)));
            }
            poller.deregister(read).unwrap();
            poller
                .register(new_read, Token(3), Interest::READABLE)
                .unwrap();
            poller.poll(&mut events, Some(Duration::ZERO)).unwrap();
            let tokens: Vec<Token> = events.iter().map(|e| e.token).collect();
            assert_eq!(tokens, [Token(3)]);
            poller.deregister(new_read).unwrap();
            k.close(new_read).unwrap();
            k.close(new_write).unwrap();
        }),
    );
}

/// Runs `scenario` on seed 21 with the model checks `on` or off; `scenario` breaks
/// the model with the damage it returns, then makes a kernel call (a scheduling step).
fn damaged<F>(on: bool, scenario: F) -> Report
where
    F: Fn(&SimKernel) -> ModelDamage + Send + 'static,
{
    let mut simulation = Simulation::new(21);
    simulation.config_mut().check_model = on;
    simulation.run(move |k| {
        let damage = scenario(&k);
        assert!(k.damage_model(damage), "{damage:?} did not apply");
        k.sleep(Duration::from_millis(1));
        k.note("went on");
    })
}

/// Checks that the damage `scenario` does breaks exactly `rule`, at the step after it,
/// ending the run; and that with the checks off the run completes.
fn assert_caught<F>(rule: &str, scenario: F)
where
    F: Fn(&SimKernel) -> ModelDamage + Clone + Send + 'static,
{
    let report = damaged(true, scenario.clone());
    let Outcome::ModelViolation(violation) = &report.outcome else {
        panic!("{rule}: the run ended {:?}", report.outcome);
    };
    assert_eq!(violation.rule, rule, "{}", violation.detail);
    assert_eq!(report.ledger.violations.last(), Some(violation));
    assert_eq!(violation.step, report.steps);
    assert!(!report.trace.text().contains("note went on"));
    let unchecked = damaged(false, scenario);
    unchecked.assert_completed(rule);
    assert!(unchecked.ledger.violations.is_empty());
}

#[test]
fn a_pipe_reference_count_off_by_one_is_caught() {
    assert_caught("model.pipe-refcount", |k| {
        let (read, _write) = k.pipe().unwrap();
        ModelDamage::ExtraPipeReader(read)
    });
}

#[test]
fn a_pipe_without_writers_that_does_not_read_eof_is_caught() {
    assert_caught("model.pipe-eof", |k| {
        let (read, write) = k.pipe().unwrap();
        k.close(write).unwrap();
        ModelDamage::PhantomPipeWriter(read)
    });
}

#[test]
fn a_live_pid_kept_free_is_caught() {
    assert_caught("model.pids", |k| {
        ModelDamage::FreeLivePid(testing::spawn_sh(k, "sleep 100"))
    });
}

#[test]
fn a_child_gone_without_a_reaper_is_caught() {
    assert_caught("model.child-ledger", |k| {
        ModelDamage::ForgetChild(testing::spawn_sh(k, "sleep 100"))
    });
}

#[test]
fn a_monitor_held_by_no_thread_is_caught() {
    assert_caught("model.monitor-owner", |k| {
        // Kept for the rest of the run.
        std::mem::forget(k.new_monitor());
        ModelDamage::MonitorOwnedByNoThread
    });
}

#[test]
fn a_closed_fd_left_in_a_poller_is_caught() {
    assert_caught("model.poller-closed-fd", |k| {
        let poller = k.new_poller().unwrap();
        let (read, _write) = k.pipe().unwrap();
        poller.register(read, Token(1), Interest::READABLE).unwrap();
        std::mem::forget(poller);
        ModelDamage::CloseUntracked(read)
    });
}

#[test]
fn a_wakeup_fd_closed_behind_the_models_back_is_caught() {
    assert_caught("model.wakeup-fd", |k| {
        let (_read, write) = k.pipe().unwrap();
        k.set_wakeup_fd(Some(write)).unwrap();
        ModelDamage::CloseUntracked(write)
    });
    assert_caught("model.wakeup-fd", |k| {
        let (_read, write) = k.pipe().unwrap();
        k.set_disposition(Signal::SIGUSR1, Disposition::Notify(write))
            .unwrap();
        ModelDamage::CloseUntracked(write)
    });
}

#[test]
fn a_large_state_is_checked_every_few_steps() {
    // Goal: a process holding many fds (more than a check visits per step) is still
    // checked during the run, within a few steps of the damage, not only at its end.
    let report = Simulation::new(23).run(|k| {
        let pipes: Vec<_> = (0..40).map(|_| k.pipe().unwrap()).collect();
        assert!(k.damage_model(ModelDamage::ExtraPipeReader(pipes[0].0)));
        for step in 0..10 {
            k.sleep(Duration::from_millis(1));
            k.note(&format!("slept {step}"));
        }
    });
    let Outcome::ModelViolation(violation) = &report.outcome else {
        panic!("the run ended {:?}", report.outcome);
    };
    assert_eq!(violation.rule, "model.pipe-refcount");
    assert!(
        !report.trace.text().contains("note slept 2"),
        "checked too late"
    );
}

#[test]
fn a_model_violation_is_reported_with_its_seed_even_at_the_very_end() {
    // Goal: damage done after the last scheduling step is still caught (the end of a
    // run is always checked), and the failure names the seed and the rule.
    let report = Simulation::new(22).run(|k| {
        let (read, _write) = k.pipe().unwrap();
        assert!(k.damage_model(ModelDamage::ExtraPipeReader(read)));
    });
    let problem = testing::completed(&report).unwrap_err();
    assert!(problem.contains("model.pipe-refcount"), "{problem}");
    let panic = std::panic::catch_unwind(|| report.assert_completed("at_the_end"))
        .expect_err("a model violation is not a completed run");
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("seed 22"), "{message}");
    assert!(message.contains("LOOPWATCH_SEED=22"), "{message}");
    assert!(message.contains("model.pipe-refcount"), "{message}");
}

/// Children spawned by two threads, reaped by whichever of the main thread's
/// `waitpid(-1)` and a foreign reaper gets there first, and signalled: a ledger the
/// schedule decides.
fn contended(k: SimKernel) {
    let (reaper, _) = actors::reap_any(&k, 4, Duration::from_millis(1));
    let (spawner, _) = actors::spawn_and_wait(&k, sh("sleep 1; exit 2"));
    for code in 0..4 {
        let pid = testing::spawn_sh(&k, &format!("exit {code}"));
        let _ = k.kill(pid, Some(Signal::SIGTERM));
    }
    while let Ok(_) | Err(Errno::EINTR) = k.wait_any(WaitMode::Block) {}
    k.join_thread(reaper).unwrap();
    k.join_thread(spawner).unwrap();
}

#[test]
fn the_same_seed_gives_the_same_ledger() {
    // Goal: the ledger is as deterministic as the trace; and it does depend on the
    // schedule, so the comparison means something.
    let mut ledgers: Vec<Ledger> = Vec::new();
    for seed in 0..8 {
        let first = Simulation::new(seed).run(contended);
        let second = Simulation::new(seed).run(contended);
        first.assert_completed("the_same_seed_gives_the_same_ledger");
        assert_eq!(first.ledger, second.ledger, "seed {seed}");
        assert_eq!(first.ledger.children.len(), 5);
        ledgers.push(first.ledger);
    }
    ledgers.dedup();
    assert!(ledgers.len() > 1, "every seed gave the same ledger");
}
