//! Every scenario, with every watcher it lists, on loopwatch's two backends: the
//! simulator (several seeds) must give the trace the real OS gives. No harness: the
//! real-OS runs need the process's main thread. The CPython comparison is
//! `cargo loopwatch check`'s job.

use loopwatch_conformance::explore::{self, Fault, Shard};
use loopwatch_conformance::matrix::{self, Options, Status};
use loopwatch_conformance::scenario::WatcherName;

fn main() {
    let options = Options {
        seeds: loopwatch_sim::seeds_from_env(4),
        cpython: false,
        ..Options::default()
    };
    let result = matrix::check(&options, |_| {}).expect("the scenarios load");
    let (mut passed, mut failed) = (0, 0);
    for cell in &result.cells {
        match &cell.status {
            Status::Match | Status::Known { .. } => {
                passed += 1;
                println!(
                    "test {} / {} [{}] ... ok",
                    cell.scenario, cell.watcher, cell.backend
                );
            }
            Status::Skipped { reason } => {
                println!(
                    "test {} / {} [{}] ... skipped: {reason}",
                    cell.scenario, cell.watcher, cell.backend
                );
            }
            other => {
                failed += 1;
                println!(
                    "test {} / {} [{}] ... FAILED {other:?}",
                    cell.scenario, cell.watcher, cell.backend
                );
            }
        }
    }
    // The policy clauses against the default policy, on both kernels.
    for cell in loopwatch_conformance::policy_suite::check_policy(
        &loopwatch_conformance::policy_suite::DefaultPolicy,
        4,
    ) {
        match &cell.status {
            Status::Match => {
                passed += 1;
                println!(
                    "test {} ({}) [{}] ... ok",
                    cell.scenario,
                    cell.clauses.join(", "),
                    cell.backend
                );
            }
            other => {
                failed += 1;
                println!(
                    "test {} ({}) [{}] ... FAILED {other:?}",
                    cell.scenario,
                    cell.clauses.join(", "),
                    cell.backend
                );
            }
        }
    }
    // explore's shards: 0/4 … 3/4 together give exactly the unsharded run's verdicts.
    // Reliability finding 8: the five sweeps compare with the real-OS traces the
    // matrix already took, rather than each running every scenario on the OS again.
    let dir = loopwatch_conformance::crate_dir().join("scenarios");
    let references = result.os_traces(WatcherName::Threaded);
    let sweep = |shard: Shard| {
        let mut seen = Vec::new();
        explore::explore_against(
            &dir,
            WatcherName::Threaded,
            &references,
            8,
            shard,
            &[Fault::Eintr],
            |v| {
                seen.push((v.scenario.clone(), v.seed, v.ok));
            },
        )
        .expect("explore runs");
        seen
    };
    let mut whole = sweep(Shard::ALL);
    let mut parts: Vec<_> = (0..4)
        .flat_map(|i| sweep(Shard { index: i, count: 4 }))
        .collect();
    whole.sort();
    parts.sort();
    if whole == parts && !whole.is_empty() && whole.iter().all(|(_, _, ok)| *ok) {
        passed += 1;
        println!("test explore_shards_cover_the_sweep_exactly ... ok");
    } else {
        failed += 1;
        println!("test explore_shards_cover_the_sweep_exactly ... FAILED {whole:?} vs {parts:?}");
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
