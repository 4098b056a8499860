//! Exact kernel calls per reap, by kind, for each watcher with K idle registered
//! children, and per iteration of an idle loop: counted on the simulator
//! (`SimKernel::call_counts`), where they are deterministic for a seed, and kept as
//! insta snapshots (`tests/snapshots/`). They are counts, not times.
//!
//! When the loop or a watcher changes how many calls it makes, the snapshots change:
//! review the new counts with `cargo insta review` (or rerun with
//! `INSTA_UPDATE=always` and read the diff) and commit them.
//!
//! Every reap here is one `/bin/true` spawned through `EventLoop::subprocess_exec` and
//! waited for, after one such reap that is not counted (so that what the first child
//! sets up, such as MultiLoop's reaper thread, is not counted as a reap's cost).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use loopwatch::kernel::Clock;

use loopwatch_benches::{Bench, Watcher, true_request};
use loopwatch_sim::{FaultPlan, SimKernel, Simulation};

/// The seed of every run: the counts are exact for it.
const SEED: u64 = 0;

/// Idle registered children beside the reaped ones.
const KS: [usize; 3] = [0, 100, 1000];

/// K for Threaded: each idle child is a waiter thread, and the simulator's scheduler
/// looks at every simulated thread at each step, so 1,000 of them take about a
/// minute even in a release build. Its cost per reap does not depend on K.
const KS_THREADED: [usize; 2] = [0, 100];

/// Reaps counted per figure (after the uncounted one); the figures are per reap.
const REAPS: usize = 4;

/// How long the main thread sleeps after each reap, in virtual time: every other
/// simulated thread runs until it blocks, so the work a reaper thread (MultiLoop's)
/// does for the reap is counted with it. The sleeps themselves are not counted.
const SETTLE: Duration = Duration::from_millis(1);

/// Loop iterations counted per idle-loop figure.
const ITERATIONS: usize = 100;

type Counts = BTreeMap<&'static str, u64>;

fn difference(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .map(|(kind, count)| (*kind, count - before.get(kind).copied().unwrap_or(0)))
        .filter(|(_, count)| *count > 0)
        .collect()
}

fn simulation() -> Simulation {
    let mut simulation = Simulation::new(SEED).keep_trace(false);
    simulation.config_mut().steps_max = u64::MAX;
    // The model's self-checks are the simulator's own tests' business; they make no
    // kernel calls, so the counts are the same without them.
    simulation.config_mut().check_model = false;
    // Pidfd holds two fds per child (the process's and the watcher's): more than the
    // simulator's default limit of 1,024 (Linux's usual `ulimit -n`) at K = 1,000.
    let mut limits = FaultPlan::none();
    limits.fd_limit = Some(16 * 1024);
    simulation.faults(limits)
}

/// Runs `body` on the simulator's main thread with a [`Bench`] of `watcher`, and
/// returns the calls `body` made between the two snapshots it takes.
fn count(
    watcher: Watcher,
    body: impl FnOnce(&SimKernel, &Bench<SimKernel>) -> (Counts, Counts) + Send + 'static,
) -> Counts {
    let (counts, report) = simulation().run_returning(move |kernel| {
        let bench = Bench::new(&kernel, watcher).expect("set up the loop and watcher");
        let (before, after) = body(&kernel, &bench);
        bench.close().expect("close the loop and watcher");
        difference(&before, &after)
    });
    report.assert_completed("call_counts");
    assert_eq!(
        report.children_left,
        (0, 0),
        "{watcher}: children left behind"
    );
    counts.expect("completed runs return their counts")
}

/// The calls of `REAPS` reaps, one after the other, with `k` idle registered
/// children.
fn reaps(watcher: Watcher, k: usize) -> Counts {
    count(watcher, move |kernel, bench| {
        counted_reaps(kernel, bench, k)
    })
}

/// As [`reaps`] at K = 5,000: the loop and watcher are closed before the idle
/// children are killed (see `Bench::close_and_kill`), which keeps the teardown O(K).
fn reaps_5000(watcher: Watcher) -> Counts {
    let (counts, report) = simulation().run_returning(move |kernel| {
        let bench = Bench::new(&kernel, watcher).expect("set up the loop and watcher");
        let idle = bench.start_idle(5000).expect("start the idle children");
        let (before, after) = counted_reaps_with(&kernel, &bench);
        bench.close_and_kill(idle).expect("kill the idle children");
        difference(&before, &after)
    });
    report.assert_completed("call_counts");
    assert_eq!(
        report.children_left,
        (0, 0),
        "{watcher}: children left behind"
    );
    counts.expect("completed runs return their counts")
}

fn counted_reaps(kernel: &SimKernel, bench: &Bench<SimKernel>, k: usize) -> (Counts, Counts) {
    let idle = bench.start_idle(k).expect("start the idle children");
    let counts = counted_reaps_with(kernel, bench);
    bench.stop_idle(idle).expect("stop the idle children");
    counts
}

/// One uncounted reap, then the counts before and after `REAPS` counted ones.
fn counted_reaps_with(kernel: &SimKernel, bench: &Bench<SimKernel>) -> (Counts, Counts) {
    {
        bench
            .spawn_reap(&true_request(), 1)
            .expect("the uncounted reap");
        kernel.sleep(SETTLE);
        let before = kernel.call_counts();
        for _ in 0..REAPS {
            bench.spawn_reap(&true_request(), 1).expect("a reap");
            kernel.sleep(SETTLE);
        }
        let mut after = kernel.call_counts();
        if let Some(sleeps) = after.get_mut("sleep") {
            *sleeps -= REAPS as u64;
        }
        (before, after)
    }
}

/// `count / per`, exactly: an integer, or with the two decimals it needs.
fn ratio(count: u64, per: usize) -> String {
    let per = per as u64;
    if count % per == 0 {
        (count / per).to_string()
    } else {
        format!("{:.2}", count as f64 / per as f64)
    }
}

/// `label: total = kind count, …`, each divided by `per`.
fn line(label: &str, counts: &Counts, per: usize) -> String {
    let kinds: Vec<String> = counts
        .iter()
        .map(|(kind, count)| format!("{kind} {}", ratio(*count, per)))
        .collect();
    format!(
        "{label}: {} = {}\n",
        ratio(total(counts), per),
        kinds.join(", ")
    )
}

/// The snapshot of one watcher: a line per K, and the counts per K for the checks.
fn watcher_table(watcher: Watcher, ks: &[usize]) -> (String, Vec<Counts>) {
    let mut table = format!(
        "kernel calls per reap with {watcher} (over {REAPS} reaps), seed {SEED}, K idle registered children\n"
    );
    let mut all = Vec::new();
    for &k in ks {
        let counts = reaps(watcher, k);
        table.push_str(&line(&format!("K={k}"), &counts, REAPS));
        all.push(counts);
    }
    (table, all)
}

fn total(counts: &Counts) -> u64 {
    counts.values().sum()
}

#[test]
fn safe_per_reap() {
    let (table, counts) = watcher_table(Watcher::Safe, &KS);
    insta::assert_snapshot!("safe", table);
    // S-5: Safe's SIGCHLD pass polls every registered child, so a reap costs at least
    // one wait_pid per idle child: O(K).
    assert_linear(&counts);
}

#[test]
fn multi_loop_per_reap() {
    let (table, counts) = watcher_table(Watcher::MultiLoop, &KS);
    insta::assert_snapshot!("multi_loop", table);
    // M-6: its reaper thread polls every registered child too: O(K).
    assert_linear(&counts);
}

#[test]
fn fast_per_reap() {
    let (table, counts) = watcher_table(Watcher::Fast, &KS);
    insta::assert_snapshot!("fast", table);
    // F-5: `waitpid(-1)` reaps the one child, whatever K.
    assert_constant(&counts);
}

#[test]
fn threaded_per_reap() {
    let (table, counts) = watcher_table(Watcher::Threaded, &KS_THREADED);
    insta::assert_snapshot!("threaded", table);
    assert_constant(&counts);
}

#[test]
fn pidfd_per_reap() {
    let (table, counts) = watcher_table(Watcher::Pidfd, &KS);
    insta::assert_snapshot!("pidfd", table);
    assert_constant(&counts);
}

#[test]
fn auto_per_reap() {
    let (table, counts) = watcher_table(Watcher::Auto, &KS);
    insta::assert_snapshot!("auto", table);
    assert_constant(&counts);
    // One wait call per reap, whatever K: the pidfd's own process, reaped by waitid.
    for (k, counts) in KS.iter().zip(&counts) {
        let waits: u64 = counts
            .iter()
            .filter(|(name, _)| name.starts_with("wait_"))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(waits, REAPS as u64, "K={k}: {counts:?}");
    }
}

#[test]
fn waitid_per_reap() {
    let (table, counts) = watcher_table(Watcher::Waitid, &KS);
    insta::assert_snapshot!("waitid", table);
    // I-2: nothing per idle child. Here each child has exited by the time it is
    // registered: the registration's waitpid reaps it, and its SIGCHLD's pass makes
    // one peek that finds nothing (that SIGCHLD was counted as early). A child that
    // exits after its registration costs a peek that names it, its waitpid and a peek
    // that finds nothing (`sim/tests/watcher_waitid.rs`).
    assert_constant(&counts);
    for (k, counts) in KS.iter().zip(&counts) {
        let get = |call: &str| counts.get(call).copied().unwrap_or(0);
        assert_eq!(get("wait_pid"), REAPS as u64, "K={k}: {counts:?}");
        assert_eq!(get("wait_peek"), REAPS as u64, "K={k}: {counts:?}");
    }
}

/// The watchers that poll every registered child on each SIGCHLD: each reap costs at
/// least one `wait_pid` per idle child.
fn assert_linear(counts: &[Counts]) {
    for (k, counts) in KS.iter().zip(counts) {
        let waits = counts.get("wait_pid").copied().unwrap_or(0);
        assert!(
            waits >= (REAPS * k) as u64,
            "K={k}: {waits} wait_pid calls in {REAPS} reaps: {counts:?}"
        );
    }
}

/// The watchers whose cost does not grow with K: a reap with the most idle children
/// costs no more than twice one with none (the schedule may differ a little).
fn assert_constant(counts: &[Counts]) {
    let (first, last) = (total(&counts[0]), total(&counts[counts.len() - 1]));
    assert!(
        last <= 2 * first,
        "calls per reap grew from {first} to {last}: {counts:?}"
    );
}

#[test]
fn idle_loop_iterations() {
    let mut table = format!("kernel calls per loop iteration (over {ITERATIONS}), seed {SEED}\n");
    let soon = count(Watcher::Pidfd, |kernel, bench| {
        bench.call_soon_chain(1).expect("warm-up");
        let before = kernel.call_counts();
        bench.call_soon_chain(ITERATIONS).expect("iterations");
        (before, kernel.call_counts())
    });
    table.push_str(&line(
        "call_soon (one ready callback each)",
        &soon,
        ITERATIONS,
    ));
    let timers = count(Watcher::Pidfd, |kernel, bench| {
        bench.timer_chain(1, 0.001).expect("warm-up");
        let before = kernel.call_counts();
        bench.timer_chain(ITERATIONS, 0.001).expect("iterations");
        (before, kernel.call_counts())
    });
    table.push_str(&line(
        "call_later 1 ms (a poll that times out each)",
        &timers,
        ITERATIONS,
    ));
    let mut note = String::new();
    let _ = write!(
        note,
        "polls: {} and {}",
        soon.get("poll").copied().unwrap_or(0),
        timers.get("poll").copied().unwrap_or(0)
    );
    insta::assert_snapshot!("idle_loop", table);
    // Each iteration polls once: a loop that polled more often would show here.
    assert!(
        soon.get("poll").copied().unwrap_or(0) <= ITERATIONS as u64 + 1,
        "{note}"
    );
    assert!(
        timers.get("poll").copied().unwrap_or(0) >= ITERATIONS as u64,
        "{note}"
    );
}

#[test]
#[ignore = "about 7 minutes in a debug build; `cargo test --release -p loopwatch-benches --test call_counts -- --ignored` runs it in about a minute"]
fn k_5000_per_reap() {
    // Threaded is left out: 5,000 waiter threads (see KS_THREADED).
    let mut table = format!(
        "kernel calls per reap (over {REAPS} reaps), seed {SEED}, K = 5000 idle registered children\n"
    );
    for watcher in [
        Watcher::Safe,
        Watcher::Fast,
        Watcher::MultiLoop,
        Watcher::Pidfd,
        Watcher::Waitid,
        Watcher::Auto,
    ] {
        let counts = reaps_5000(watcher);
        table.push_str(&line(watcher.name(), &counts, REAPS));
        let waits = counts.get("wait_pid").copied().unwrap_or(0);
        if matches!(watcher, Watcher::Safe | Watcher::MultiLoop) {
            assert!(waits >= (REAPS * 5000) as u64, "{watcher}: {counts:?}");
        } else {
            assert!(
                total(&counts) < (REAPS * 200) as u64,
                "{watcher}: {counts:?}"
            );
        }
    }
    insta::assert_snapshot!("k_5000", table);
}
