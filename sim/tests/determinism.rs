//! Determinism: a seed replays exactly, different seeds explore different schedules,
//! and the self-check names the first step where two runs part.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use loopwatch::kernel::{
    Clock, Disposition, Errno, Fds, Processes, Signal, Signals, SpawnRequest, Threads, WaitMode,
    WaitStatus,
};
use loopwatch::sync::BlockingMutex;
use loopwatch_sim::{
    Outcome, PidReuse, SimKernel, Simulation, Strategy, check_determinism, seeds_from_env,
};

/// Four threads: three each spawn and reap children in a loop (with few pids, so pids
/// are reused), while the main thread takes SIGCHLD through the wakeup fd.
fn four_threads(k: SimKernel) {
    let (read, write) = k.pipe().unwrap();
    k.set_nonblocking(read, true).unwrap();
    k.set_nonblocking(write, true).unwrap();
    k.set_wakeup_fd(Some(write)).unwrap();
    k.set_disposition(Signal::SIGCHLD, Disposition::Wakeup)
        .unwrap();
    let mut workers = Vec::new();
    for worker in 0..3u8 {
        let k2 = k.clone();
        let body = move || {
            for round in 0..4u8 {
                let code = worker * 10 + round;
                let script = format!("sleep 0.00{}; exit {code}", (round % 3) + 1);
                let child = k2
                    .spawn(&SpawnRequest::new("/bin/sh", ["-c", script.as_str()]))
                    .unwrap();
                match k2.wait_pid(child.pid, WaitMode::Block).unwrap() {
                    WaitStatus::Terminated(_, status) => {
                        assert_eq!(status.returncode(), i32::from(code));
                    }
                    other => panic!("{other:?}"),
                }
            }
        };
        workers.push(
            k.spawn_thread(&format!("worker-{worker}"), Box::new(body))
                .unwrap(),
        );
    }
    let mut buf = [0u8; 8];
    for _ in 0..6 {
        match k.read(read, &mut buf) {
            Ok(_) | Err(Errno::EAGAIN) => {}
            Err(e) => panic!("read: {e:?}"),
        }
        k.sleep(Duration::from_micros(700));
    }
    for worker in workers {
        k.join_thread(worker).unwrap();
    }
    k.close(read).unwrap();
    k.close(write).unwrap();
}

fn small_pid_space(seed: u64) -> Simulation {
    let mut simulation = Simulation::new(seed).keep_trace(false);
    let config = simulation.config_mut();
    config.pid_max = config.pid_min + 5;
    config.pid_reuse = PidReuse::LastFreed;
    simulation
}

#[test]
fn seeds_replay_and_differ() {
    // Goal: each of LOOPWATCH_SEEDS (default 1000) seeds of the 4-thread scenario run
    // twice gives the same trace hash, and the seeds give many distinct traces.
    let seeds = seeds_from_env(1000);
    let mut distinct = BTreeSet::new();
    let mut marks = std::collections::BTreeMap::new();
    for seed in 0..seeds {
        let first = small_pid_space(seed).run(four_threads);
        let second = small_pid_space(seed).run(four_threads);
        first.assert_completed("seeds_replay_and_differ");
        assert_eq!(
            (first.hash(), &first.outcome),
            (second.hash(), &second.outcome),
            "seed {seed} diverged; replay: LOOPWATCH_SEED={seed} cargo test -p loopwatch-sim --test determinism"
        );
        distinct.insert(first.hash());
        for (name, count) in &first.marks {
            *marks.entry(*name).or_insert(0u64) += count;
        }
    }
    println!(
        "{seeds} seeds: {} distinct traces; marks over all runs: {marks:?}",
        distinct.len()
    );
    assert!(
        distinct.len() as u64 >= seeds * 3 / 10,
        "only {} distinct traces from {seeds} seeds",
        distinct.len()
    );
    assert!(
        marks.get("pid_reused").copied().unwrap_or(0) > 0,
        "pids were reused"
    );
    assert!(
        marks.get("sigchld_coalesced").copied().unwrap_or(0) > 0,
        "SIGCHLD coalesced somewhere"
    );
}

#[test]
fn pct_strategy_replays() {
    // Goal: the PCT strategy is as deterministic as the random one.
    for seed in 0..50 {
        let run = |seed| {
            small_pid_space(seed)
                .strategy(Strategy::Pct {
                    depth: 3,
                    steps: 400,
                })
                .run(four_threads)
        };
        let (a, b) = (run(seed), run(seed));
        a.assert_completed("pct_strategy_replays");
        assert_eq!(a.hash(), b.hash(), "seed {seed}");
    }
}

#[test]
fn new_faults_replay() {
    // Goal: the faults the reliability findings added (6: a signal taken by another
    // thread; 8: scheduling lag) draw only from the seed: with them on, each seed of
    // the 4-thread scenario replays exactly, and they do fire.
    let plan = loopwatch_sim::FaultPlan {
        signal_other_thread: 0.5,
        lag: Duration::from_millis(2),
        ..loopwatch_sim::FaultPlan::none()
    };
    let mut marks = std::collections::BTreeMap::new();
    for seed in 0..200 {
        let run = |seed| small_pid_space(seed).faults(plan.clone()).run(four_threads);
        let (a, b) = (run(seed), run(seed));
        a.assert_completed("new_faults_replay");
        assert_eq!(
            (a.hash(), &a.outcome),
            (b.hash(), &b.outcome),
            "seed {seed}"
        );
        for (name, count) in &a.marks {
            *marks.entry(*name).or_insert(0u64) += count;
        }
    }
    for mark in ["signal_other_thread", "child_lag", "thread_lag"] {
        assert!(
            marks.get(mark).copied().unwrap_or(0) > 0,
            "{mark}: {marks:?}"
        );
    }
}

#[test]
fn self_check_names_first_divergent_step() {
    // Goal: a scenario that reads outside state (a counter that grows between runs)
    // is caught by the determinism check, which names the first differing step; a
    // deterministic scenario passes it.
    let runs = Arc::new(AtomicU64::new(0));
    let leaky = move |k: SimKernel| {
        let n = runs.fetch_add(1, Ordering::SeqCst);
        let (r, w) = k.pipe().unwrap();
        k.sleep(Duration::from_millis(1 + n));
        k.close(r).unwrap();
        k.close(w).unwrap();
    };
    let divergence =
        check_determinism(&Simulation::new(7), leaky).expect("the leaky scenario diverges");
    // pipe() is step 0, "sleep blocks" step 1; the sleeps end at different virtual
    // times at step 2.
    assert_eq!(divergence.step, 2, "{divergence:?}");
    assert_eq!(
        divergence.first.as_deref(),
        Some("0.001000 -- time advances")
    );
    assert_eq!(
        divergence.second.as_deref(),
        Some("0.002000 -- time advances")
    );
    assert_eq!(check_determinism(&Simulation::new(7), four_threads), None);
}

#[test]
fn lock_order_inversion_is_a_deadlock() {
    // Goal: two threads taking two kernel locks in opposite orders deadlock under some
    // seed, and the run ends with a report naming both threads rather than hanging.
    let mut found = None;
    for seed in 0..200 {
        let report = Simulation::new(seed).run(|k| {
            let a = Arc::new(BlockingMutex::new(&k, 0));
            let b = Arc::new(BlockingMutex::new(&k, 0));
            let (a2, b2, k2) = (a.clone(), b.clone(), k.clone());
            let other = k
                .spawn_thread(
                    "inverted",
                    Box::new(move || {
                        let _b = b2.lock();
                        k2.getpid();
                        let _a = a2.lock();
                    }),
                )
                .unwrap();
            {
                let _a = a.lock();
                let _b = b.lock();
            }
            k.join_thread(other).unwrap();
        });
        if let Outcome::Deadlock(text) = &report.outcome {
            found = Some((seed, text.clone()));
            break;
        }
        report.assert_completed("lock_order_inversion_is_a_deadlock");
    }
    let (seed, text) = found.expect("some seed interleaves the two threads badly");
    assert!(
        text.contains("MainThread") && text.contains("inverted"),
        "seed {seed}: {text}"
    );
}

#[test]
fn short_trace_snapshot() {
    // Goal: the trace format is stable: a fixed seed's trace of a small scenario
    // (a child, its SIGCHLD through the wakeup fd, a waiter thread) stays as reviewed.
    let report = Simulation::new(42).run(|k| {
        let (read, write) = k.pipe().unwrap();
        k.set_nonblocking(read, true).unwrap();
        k.set_wakeup_fd(Some(write)).unwrap();
        k.set_disposition(Signal::SIGCHLD, Disposition::Wakeup)
            .unwrap();
        let child = k
            .spawn(&SpawnRequest::new("/bin/sh", ["-c", "sleep 0.5; exit 3"]))
            .unwrap();
        let k2 = k.clone();
        let waiter = k
            .spawn_thread(
                "waiter",
                Box::new(move || {
                    let status = k2.wait_pid(child.pid, WaitMode::Block).unwrap();
                    assert!(matches!(status, WaitStatus::Terminated(_, s) if s.returncode() == 3));
                }),
            )
            .unwrap();
        k.join_thread(waiter).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(k.read(read, &mut buf), Ok(1));
        assert_eq!(k.now(), Duration::from_millis(500));
    });
    report.assert_completed("short_trace_snapshot");
    insta::assert_snapshot!(report.trace.text());
}

/// `SimKernel::call_counts` of the whole four-thread run, taken by the main thread at
/// its end.
fn four_threads_counts(seed: u64) -> std::collections::BTreeMap<&'static str, u64> {
    let (counts, report) = small_pid_space(seed).run_returning(|k| {
        four_threads(k.clone());
        k.call_counts()
    });
    report.assert_completed("call_counts_replay_with_the_seed");
    counts.expect("completed")
}

#[test]
fn call_counts_replay_with_the_seed() {
    // Counts of every thread, deterministic like the trace: the same for a seed
    // whatever else runs in the test process, and exact where the code fixes them.
    let seed = loopwatch_sim::seed_from_env(5);
    let counts = four_threads_counts(seed);
    assert_eq!(counts, four_threads_counts(seed));
    // Three workers, four children each: as many spawns and reaping waits.
    assert_eq!(counts["spawn"], 12);
    assert_eq!(counts["wait_pid"], 12);
    assert_eq!(counts["spawn_thread"], 3);
    assert_eq!(counts["join_thread"], 3);
    assert_eq!(counts["sleep"], 6);
    assert_eq!(counts["pipe"], 1);
    assert_eq!(counts["close"], 2);
    // The main thread's reads, EAGAIN or not, each count once.
    assert_eq!(counts["read"], 6);
}
