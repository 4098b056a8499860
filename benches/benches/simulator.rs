//! The simulator's speed:
//! - `simulator/kernel_calls`: `SimKernel` calls per second (a non-blocking pipe's
//!   write and read, each a full scheduling point) in one simulation on one OS thread,
//!   and in four independent simulations on four OS threads at once;
//! - `simulator/scenario_run`: small scenarios (`two-children`) per second, each a
//!   conformance `Run` judged by the invariant checker, per watcher;
//! - `simulator/explore`: `explore` runs per second on one core (`jobs = 1`): every
//!   built-in scenario of the watcher at one seed, against reference traces;
//! - `simulator/100_children`: one scenario that starts 100 children and waits for
//!   each, on `OsKernel` and on `SimKernel`, with the Pidfd watcher: the speed-up is
//!   the ratio of the two.
//!
//! `cargo bench -p loopwatch-benches --bench simulator`

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use loopwatch::OsKernel;
use loopwatch::kernel::{Fds, Threads};
use loopwatch_conformance::explore::{self, References, Shard, Sweep};
use loopwatch_conformance::runner;
use loopwatch_conformance::scenario::{self, Scenario, WatcherName};
use loopwatch_sim::{SimKernel, Simulation};

/// Kernel calls per simulation in `kernel_calls`.
const CALLS: u64 = 100_000;

const WATCHERS: [WatcherName; 6] = [
    WatcherName::Safe,
    WatcherName::Fast,
    WatcherName::MultiLoop,
    WatcherName::Threaded,
    WatcherName::Pidfd,
    WatcherName::Waitid,
];

/// `calls` calls on one simulated thread: writes and reads of one byte.
fn pipe_calls(k: &SimKernel, calls: u64) {
    let (read, write) = k.pipe().expect("pipe");
    k.set_nonblocking(read, true).expect("nonblocking");
    let mut buf = [0u8; 1];
    for _ in 0..calls / 2 {
        k.write(write, b"x").expect("write");
        k.read(read, &mut buf).expect("read");
    }
    k.close(read).expect("close");
    k.close(write).expect("close");
}

/// One simulation making `calls` calls; checks that it made them.
fn simulation_of_calls(calls: u64) {
    let mut simulation = Simulation::new(1).keep_trace(false);
    simulation.config_mut().steps_max = u64::MAX;
    let (made, report) = simulation.run_returning(move |k| {
        pipe_calls(&k, calls);
        k.call_counts()
    });
    report.assert_completed("kernel_calls");
    let made = made.expect("completed");
    assert_eq!(made["write"] + made["read"], calls);
}

fn kernel_calls(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulator/kernel_calls");
    group.sample_size(10);
    group.throughput(Throughput::Elements(CALLS));
    group.bench_function("1_simulation", |b| b.iter(|| simulation_of_calls(CALLS)));
    group.throughput(Throughput::Elements(4 * CALLS));
    group.bench_function("4_simulations_4_threads", |b| {
        b.iter(|| {
            std::thread::scope(|scope| {
                for _ in 0..4 {
                    scope.spawn(|| simulation_of_calls(CALLS));
                }
            })
        })
    });
    group.finish();
}

fn scenario_runs(c: &mut Criterion, scenarios: &[Scenario]) {
    let two_children = scenarios
        .iter()
        .find(|s| s.name == "two-children")
        .expect("the built-in scenario two-children");
    let mut group = c.benchmark_group("simulator/scenario_run");
    group.throughput(Throughput::Elements(1));
    for watcher in WATCHERS {
        let mut seed = 0;
        group.bench_function(BenchmarkId::from_parameter(watcher), |b| {
            b.iter(|| {
                seed += 1;
                let checked = explore::Run {
                    scenario: two_children,
                    watcher,
                    seed,
                    faults: &[],
                    mutant: None,
                    keep_trace: false,
                }
                .checked();
                assert!(checked.breaches.is_empty(), "{:?}", checked.breaches);
            })
        });
    }
    group.finish();
}

/// Each scenario's trace on the simulator at seed 0: the references explore compares
/// with (on the real OS they are the same; the simulator's keep this bench off it).
fn sim_references(scenarios: &[Scenario], watcher: WatcherName) -> References {
    scenarios
        .iter()
        .filter(|s| s.runs_with(watcher))
        .map(|scenario| {
            let (trace, _) = explore::run_seed(scenario, watcher, 0, &[]);
            (scenario.name.clone(), trace.expect("a reference trace"))
        })
        .collect()
}

fn explore_runs(c: &mut Criterion, scenarios: &[Scenario]) {
    let mut group = c.benchmark_group("simulator/explore");
    group.sample_size(10);
    let shard = Shard::parse("0/1").expect("shard");
    for watcher in WATCHERS {
        let references = sim_references(scenarios, watcher);
        let sweep = Sweep {
            scenarios,
            watcher,
            seeds: 1,
            shard,
            faults: &[],
            jobs: 1,
            programs: 0,
            mutant: None,
        };
        group.throughput(Throughput::Elements(references.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(watcher), |b| {
            b.iter(|| {
                let summary =
                    explore::explore_against(&sweep, &references, |_| {}).expect("explore");
                assert_eq!(summary.runs, references.len() as u64);
            })
        });
    }
    group.finish();
}

/// A scenario that starts `children` children at once, exiting 0, 1, 2 … at once, and
/// waits for each in turn.
fn many_children(children: usize) -> Scenario {
    let mut steps = Vec::new();
    for i in 0..children {
        steps.push(format!(
            r#"{{"op": "start", "child": "c{i}", "fate": {{"exit": {}}}}}"#,
            i % 256
        ));
    }
    for i in 0..children {
        steps.push(format!(
            r#"{{"op": "wait", "child": "c{i}", "timeout_ms": 10000}}"#
        ));
    }
    let text = format!(
        r#"{{"format": "loopwatch-scenario/1", "name": "children-{children}",
            "description": "{children} children started at once, each waited for in turn.",
            "clauses": [], "watchers": ["pidfd"], "steps": [{}]}}"#,
        steps.join(", ")
    );
    Scenario::parse(&text).expect("the generated scenario parses")
}

fn hundred_children(c: &mut Criterion) {
    let scenario = many_children(100);
    let mut group = c.benchmark_group("simulator/100_children");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("os", |b| {
        b.iter(|| runner::execute(&OsKernel, &scenario, WatcherName::Pidfd).expect("the OS run"))
    });
    let mut seed = 0;
    group.bench_function("sim", |b| {
        b.iter(|| {
            seed += 1;
            let scenario = scenario.clone();
            let (trace, report) = Simulation::new(seed)
                .keep_trace(false)
                .run_returning(move |k| {
                    // The simulated process's main thread, as the OS run's.
                    assert!(k.is_main_thread());
                    runner::execute(&k, &scenario, WatcherName::Pidfd)
                });
            report.assert_completed("100_children");
            trace.expect("completed").expect("the simulated run")
        })
    });
    group.finish();
}

fn main() {
    let scenarios = scenario::builtin().expect("the built-in scenarios");
    let mut c = Criterion::default().configure_from_args();
    kernel_calls(&mut c);
    scenario_runs(&mut c, &scenarios);
    explore_runs(&mut c, &scenarios);
    hundred_children(&mut c);
    c.final_summary();
}
