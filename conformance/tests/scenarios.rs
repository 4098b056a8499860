//! Every built-in scenario, with every watcher it lists, on loopwatch's two backends:
//! the simulator (several seeds) must give the trace the real OS gives; the policy
//! checks against the default policy; and explore's shards. On the main-thread
//! harness (the real-OS runs need the process's main thread), so `--list` and
//! filters work as with cargo's own. The CPython comparison is
//! `cargo loopwatch check`'s job.

use std::process::ExitCode;

use loopwatch_conformance::explore::{self, Fault, References, Shard, Sweep};
use loopwatch_conformance::matrix::Options;
use loopwatch_conformance::policy_suite::DefaultPolicy;
use loopwatch_conformance::scenario::{self, WatcherName};
use loopwatch_conformance::testing;
use loopwatch_sim::testing::Test;

/// Goal: explore's shards 0/4 … 3/4 together give exactly the unsharded sweep's
/// verdicts, and every verdict holds. The references are the simulator's own seed-0
/// traces (the `[sim]` tests check that those are the real OS's), so the test runs
/// the simulator only.
fn explore_shards_cover_the_sweep_exactly() -> Result<(), String> {
    let scenarios = scenario::builtin().map_err(|e| e.to_string())?;
    let watcher = WatcherName::Threaded;
    let mut references = References::new();
    for scenario in scenarios.iter().filter(|s| s.watchers.contains(&watcher)) {
        let (trace, _) = explore::run_seed(scenario, watcher, 0, &[]);
        references.insert(scenario.name.clone(), trace?);
    }
    let sweep = |shard: Shard| {
        let mut seen = Vec::new();
        let sweep = Sweep {
            scenarios: &scenarios,
            watcher,
            seeds: 8,
            shard,
            faults: &[Fault::Eintr],
            jobs: Options::default().jobs,
            programs: 0,
            mutant: None,
        };
        explore::explore_against(&sweep, &references, |v| {
            seen.push((v.scenario.clone(), v.seed, v.ok, v.problem.clone()));
        })
        .map(|_| seen)
        .map_err(|e| e.to_string())
    };
    let mut whole = sweep(Shard::ALL)?;
    let mut parts = Vec::new();
    for index in 0..4 {
        parts.extend(sweep(Shard { index, count: 4 })?);
    }
    whole.sort();
    parts.sort();
    if whole.is_empty() {
        return Err("the sweep ran nothing".into());
    }
    if let Some((scenario, seed, _, problem)) = whole.iter().find(|v| !v.2) {
        return Err(format!("{scenario} seed {seed}: {problem:?}"));
    }
    if whole != parts {
        return Err(format!(
            "the shards' verdicts differ from the whole sweep's: {} against {}",
            parts.len(),
            whole.len()
        ));
    }
    Ok(())
}

/// Goal: this binary honours `--list` (lists its tests, runs none) and filters, as
/// cargo's own harness does, so that IDEs and nextest see one test per cell.
fn lists_its_tests_without_running_them() -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let list = |args: &[&str]| -> Result<Vec<String>, String> {
        let output = std::process::Command::new(&me)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!("{args:?} exited with {}", output.status));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    };
    let all = list(&["--list"])?;
    for expected in [
        "two-children / safe [os]: test",
        "two-children / safe [sim]: test",
        "DefaultEventLoopPolicy: policy:set_then_get [sim]: test",
        "lists_its_tests_without_running_them: test",
    ] {
        if !all.iter().any(|line| line == expected) {
            return Err(format!("{expected:?} not listed"));
        }
    }
    if all.iter().any(|line| line.contains(" ... ")) {
        return Err("--list ran tests".into());
    }
    let filtered = list(&["--list", "two-children / pidfd"])?;
    let names: Vec<&str> = filtered
        .iter()
        .filter_map(|l| l.strip_suffix(": test"))
        .collect();
    if names != ["two-children / pidfd [os]", "two-children / pidfd [sim]"] {
        return Err(format!("the filter listed {names:?}"));
    }
    Ok(())
}

fn main() -> ExitCode {
    let options = Options {
        seeds: loopwatch_sim::seeds_from_env(4),
        ..Options::default()
    };
    let mut tests = testing::scenario_tests(&options);
    tests.extend(testing::policy_tests(DefaultPolicy, options.seeds));
    tests.push(Test::new(
        "lists_its_tests_without_running_them",
        lists_its_tests_without_running_them,
    ));
    tests.push(Test::new(
        "explore_shards_cover_the_sweep_exactly",
        explore_shards_cover_the_sweep_exactly,
    ));
    loopwatch_sim::testing::main(tests)
}
