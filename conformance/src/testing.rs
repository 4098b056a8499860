//! The conformance checks as ready-made tests, one per cell, for a test binary built
//! on [`loopwatch_sim::testing`]'s main-thread harness (the real-OS runs need the
//! process's main thread, so cargo's own harness cannot run them).
//!
//! In `Cargo.toml`:
//!
//! ```toml
//! [[test]]
//! name = "conformance"
//! harness = false
//! ```
//!
//! and in `tests/conformance.rs`:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use loopwatch::kernel::Kernel;
//! # use loopwatch::{PidfdChildWatcher, WatcherRef};
//! use loopwatch_conformance::matrix::Options;
//! use loopwatch_conformance::policy_suite::DefaultPolicy;
//! use loopwatch_conformance::scenario::WatcherName;
//! use loopwatch_conformance::testing::{policy_tests, watcher_tests};
//! use loopwatch_conformance::zoo::MakeWatcher;
//!
//! #[derive(Clone)]
//! struct MyWatcher;
//!
//! impl MakeWatcher for MyWatcher {
//!     fn name(&self) -> String {
//!         "my-watcher".into()
//!     }
//!     fn like(&self) -> WatcherName {
//!         WatcherName::Pidfd
//!     }
//!     fn make<K: Kernel>(&self, kernel: &K) -> WatcherRef<K> {
//!         Arc::new(PidfdChildWatcher::with_kernel(kernel.clone()))
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let mut tests = watcher_tests(MyWatcher, &Options::default());
//!     tests.extend(policy_tests(DefaultPolicy, 4));
//!     loopwatch_sim::testing::main(tests)
//! }
//! ```
//!
//! `cargo test --test conformance -- --list` lists one test per scenario and
//! backend (`my-watcher: two-children [os]`, `… [sim]`), filters pick some, and a
//! failure names the scenario, its clauses, and the expected and actual trace lines.

use std::collections::BTreeMap;
use std::sync::Arc;

use loopwatch_sim::testing::Test;

use crate::matrix::{Options, trace_diff};
use crate::policy_suite::{MakePolicy, check_names, run_check};
use crate::runner::execute;
use crate::scenario::{Scenario, WatcherName};
use crate::zoo::{MakeWatcher, on_sim};

/// A plain `std` lock: shared by tests that run one at a time on the main thread.
#[allow(
    clippy::disallowed_types,
    reason = "the harness's own bookkeeping, never held across a kernel call"
)]
type Lock<T> = std::sync::Mutex<T>;

/// The real OS's traces of built-in watchers, by scenario and watcher: computed by
/// the first test that needs one, shared by the others.
#[derive(Clone, Default)]
struct References(Arc<Lock<BTreeMap<(String, WatcherName), Reference>>>);

/// A real-OS trace, or why there is none.
type Reference = Result<Vec<String>, String>;

impl References {
    /// `watcher`'s trace of `scenario` on the real OS (main thread only).
    fn get(&self, scenario: &Scenario, watcher: WatcherName) -> Result<Vec<String>, String> {
        let key = (scenario.name.clone(), watcher);
        let cached = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(trace) = cached {
            return trace;
        }
        let trace = execute(&loopwatch::OsKernel, scenario, watcher)
            .map_err(|e| format!("set-up failed on the real OS: {e}"));
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, trace.clone());
        trace
    }
}

/// `two-children (clauses S-5, R-1)`.
fn about(scenario: &Scenario) -> String {
    format!(
        "{} (clauses {})",
        scenario.name,
        scenario.clauses.join(", ")
    )
}

/// The scenarios of `options`, or a single failing test saying why there are none.
fn scenarios_or_test(options: &Options) -> Result<Vec<Scenario>, Vec<Test>> {
    crate::scenario::load(options.scenarios.as_deref()).map_err(|error| {
        let error = error.to_string();
        vec![Test::new("scenarios load", move || Err(error))]
    })
}

/// Runs `seeds` seeds with up to `jobs` at a time; the first failing one, if any.
fn first_failing_seed(
    seeds: u64,
    jobs: usize,
    one: impl Fn(u64) -> Result<(), String> + Sync,
) -> Result<(), String> {
    let seeds: Vec<u64> = (0..seeds).collect();
    crate::parallel::map(crate::parallel::Work::Simulations, &seeds, jobs, |&seed| {
        one(seed)
    })
    .into_iter()
    .find(Result::is_err)
    .unwrap_or(Ok(()))
}

/// Every scenario × watcher of `options`' scenarios on loopwatch's two backends, two
/// tests each: `{scenario} / {watcher} [os]` runs it on the real OS (the reference:
/// it must run), `… [sim]` on `options.seeds` simulator seeds, each of which must
/// give the real OS's trace.
pub fn scenario_tests(options: &Options) -> Vec<Test> {
    let scenarios = match scenarios_or_test(options) {
        Ok(scenarios) => scenarios,
        Err(tests) => return tests,
    };
    let references = References::default();
    let mut tests = Vec::new();
    for scenario in scenarios {
        for watcher in scenario.all_watchers() {
            let name = format!("{} / {watcher}", scenario.name);
            let (on_os, refs) = (scenario.clone(), references.clone());
            tests.push(Test::new(format!("{name} [os]"), move || {
                refs.get(&on_os, watcher)
                    .map(drop)
                    .map_err(|e| format!("{} with {watcher}: {e}", about(&on_os)))
            }));
            let (on_sim, refs, seeds, jobs) = (
                scenario.clone(),
                references.clone(),
                options.seeds,
                options.jobs,
            );
            tests.push(Test::new(format!("{name} [sim]"), move || {
                let expected = refs
                    .get(&on_sim, watcher)
                    .map_err(|e| format!("no reference: {e}"))?;
                first_failing_seed(seeds, jobs, |seed| {
                    let got = crate::run(&on_sim, watcher, &crate::Backend::Sim(seed))
                        .map_err(|e| format!("{} with {watcher}, seed {seed}: {e}", about(&on_sim)))?
                        .trace;
                    if got == expected {
                        return Ok(());
                    }
                    Err(format!(
                        "{} with {watcher} on the simulator, seed {seed}: the trace differs from the real OS's\n{}\n  replay: {}",
                        about(&on_sim),
                        trace_diff(&expected, &got),
                        on_sim.replay_command(watcher, seed)
                    ))
                })
            }));
        }
    }
    tests
}

/// `maker`'s watcher on every scenario of the built-in watcher it follows
/// (`maker.like()`), two tests per scenario: `{name}: {scenario} [os]` on the real
/// OS and `… [sim]` on `options.seeds` simulator seeds. Each trace must be the one
/// the built-in watcher gives on the real OS.
pub fn watcher_tests<M: MakeWatcher>(maker: M, options: &Options) -> Vec<Test> {
    let scenarios = match scenarios_or_test(options) {
        Ok(scenarios) => scenarios,
        Err(tests) => return tests,
    };
    let like = maker.like();
    let references = References::default();
    let mut tests = Vec::new();
    for scenario in scenarios.into_iter().filter(|s| s.runs_with(like)) {
        let name = format!("{}: {}", maker.name(), scenario.name);
        let (on_os, refs, os_maker) = (scenario.clone(), references.clone(), maker.clone());
        tests.push(Test::new(format!("{name} [os]"), move || {
            let expected = refs
                .get(&on_os, like)
                .map_err(|e| format!("the built-in {like} watcher: {e}"))?;
            let got =
                crate::runner::execute_with(&loopwatch::OsKernel, &on_os, &|k| os_maker.make(k))
                    .map_err(|e| {
                        format!(
                            "{}: {} on the real OS: set-up failed: {e}",
                            about(&on_os),
                            os_maker.name()
                        )
                    })?;
            if got == expected {
                return Ok(());
            }
            Err(format!(
                "{}: {} on the real OS gives another trace than the built-in {like} watcher\n{}",
                about(&on_os),
                os_maker.name(),
                trace_diff(&expected, &got)
            ))
        }));
        let (on_sim_scenario, refs, sim_maker, seeds, jobs) = (
            scenario.clone(),
            references.clone(),
            maker.clone(),
            options.seeds,
            options.jobs,
        );
        tests.push(Test::new(format!("{name} [sim]"), move || {
            let expected = refs
                .get(&on_sim_scenario, like)
                .map_err(|e| format!("the built-in {like} watcher: {e}"))?;
            first_failing_seed(seeds, jobs, |seed| {
                let got = on_sim(&on_sim_scenario, seed, &sim_maker).map_err(|e| {
                    format!(
                        "{}: {} on the simulator, seed {seed}: {e}",
                        about(&on_sim_scenario),
                        sim_maker.name()
                    )
                })?;
                if got == expected {
                    return Ok(());
                }
                Err(format!(
                    "{}: {} on the simulator, seed {seed}, gives another trace than the built-in {like} watcher on the real OS\n{}",
                    about(&on_sim_scenario),
                    sim_maker.name(),
                    trace_diff(&expected, &got)
                ))
            })
        }));
    }
    tests
}

/// Every policy check against `maker`'s policy, two tests per check:
/// `{name}: policy:{check} [os]` on the real OS and `… [sim]` on `seeds` simulator
/// seeds.
pub fn policy_tests<M: MakePolicy>(maker: M, seeds: u64) -> Vec<Test> {
    let mut tests = Vec::new();
    for (check, clauses) in check_names() {
        let name = format!("{}: policy:{check}", maker.name());
        let about = format!("policy check {check} (clauses {})", clauses.join(", "));
        let (os_maker, os_about) = (maker.clone(), about.clone());
        tests.push(Test::new(format!("{name} [os]"), move || {
            run_check(&loopwatch::OsKernel, &os_maker, check).map_err(|failure| {
                format!("{os_about}, {} on the real OS: {failure}", os_maker.name())
            })
        }));
        let sim_maker = maker.clone();
        tests.push(Test::new(format!("{name} [sim]"), move || {
            for seed in 0..seeds {
                let one = sim_maker.clone();
                let (result, report) = loopwatch_sim::Simulation::new(seed)
                    .run_returning(move |kernel| run_check(&kernel, &one, check));
                let failure = match result {
                    Some(Ok(())) => continue,
                    Some(Err(failure)) => failure.to_string(),
                    None => format!("the simulation ended: {:?}", report.outcome),
                };
                return Err(format!(
                    "{about}, {} on the simulator, seed {seed}: {failure}",
                    sim_maker.name()
                ));
            }
            Ok(())
        }));
    }
    tests
}
