//! Regression tests of the reliability findings that live in the conformance suite:
//! the simulator's fidelity to the real OS in a scenario, and what the scenario parser
//! accepts. Simulator runs only, so they need no main thread and run in the harness.

use loopwatch_conformance::explore::{Fault, run_seed};
use loopwatch_conformance::scenario::{Scenario, WatcherName};

fn scenario(name: &str) -> Scenario {
    let path = loopwatch_conformance::crate_dir()
        .join("scenarios")
        .join(format!("{name}.json"));
    Scenario::load(&path).expect("the scenario loads")
}

/// The seeds of `reaped-elsewhere` × `multi_loop` that failed `explore` before the
/// simulator chose SIGCHLD's thread as Linux does: without faults, and with
/// `--faults eintr,spurious`.
const FAILED_PLAIN: [u64; 10] = [47, 57, 88, 98, 102, 197, 232, 303, 304, 346];
const FAILED_FAULTS: [u64; 10] = [77, 222, 258, 261, 321, 359, 446, 455, 534, 554];

#[test]
fn finding_06_reaped_elsewhere_multi_loop_seeds_that_failed() {
    // Goal (reliability finding 6): the seeds on which the simulator let MultiLoop's
    // reaper thread beat the main thread's blocking waitpid now give the real OS's
    // trace: the foreign wait gets the status, the watcher reports 255. On Linux the
    // child's SIGCHLD goes to the thread that spawned it (the main thread, blocked in
    // waitpid), which reaps the child before its handler writes the reaper's byte.
    let reaped_elsewhere = scenario("reaped-elsewhere");
    let expected = vec!["foreign a 3".to_string(), "exit a 255".to_string()];
    let faults = [Fault::Eintr, Fault::Spurious];
    for (seeds, faults) in [(&FAILED_PLAIN, &[][..]), (&FAILED_FAULTS, &faults[..])] {
        for &seed in seeds.iter() {
            let (trace, _) = run_seed(&reaped_elsewhere, WatcherName::MultiLoop, seed, faults);
            assert_eq!(
                trace.as_ref(),
                Ok(&expected),
                "seed {seed}, faults {faults:?}: replay with cargo loopwatch replay conformance/scenarios/reaped-elsewhere.json --watcher multi_loop --seed {seed}"
            );
        }
    }
}

#[test]
fn finding_06_reaped_elsewhere_holds_for_every_watcher_over_many_seeds() {
    // Goal (reliability finding 6): over 500 seeds with EINTR and spurious wake-ups,
    // every watcher of `reaped-elsewhere` gives the trace the real OS gives.
    let reaped_elsewhere = scenario("reaped-elsewhere");
    let faults = [Fault::Eintr, Fault::Spurious];
    for &watcher in &reaped_elsewhere.watchers {
        // The real OS's traces (`cargo loopwatch scenario run … --backend os`).
        let expected: Vec<String> = match watcher {
            // F-7: Fast never reports a child reaped elsewhere.
            WatcherName::Fast => vec!["foreign a 3".into(), "timeout a".into()],
            _ => vec!["foreign a 3".into(), "exit a 255".into()],
        };
        for seed in 0..500 {
            let (trace, _) = run_seed(&reaped_elsewhere, watcher, seed, &faults);
            assert_eq!(trace.as_ref(), Ok(&expected), "{watcher}, seed {seed}");
        }
    }
}
