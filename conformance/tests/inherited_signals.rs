//! Reliability finding 7: the scenarios' results must not depend on how the runner was
//! started. Under `nohup` (SIGHUP ignored) or as a background job of a non-interactive
//! shell (SIGINT and SIGQUIT ignored) a child inherits those ignored dispositions
//! through `exec`, and a child meant to die of one of them lived on.
//!
//! This binary ignores, in its own process, every signal the scenarios send or die of
//! that can be ignored, then runs each scenario using one of them on the real OS and
//! checks the trace against the simulator's. On the main-thread harness
//! (`loopwatch_sim::testing`): the real-OS runs need the process's main thread, and
//! the dispositions are process-wide, so the tests run one at a time; `--list` and
//! filters work.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use loopwatch::OsKernel;
use loopwatch::kernel::{Clock, Disposition, Pid, Processes, Signal, Signals, Threads};
use loopwatch_conformance::scenario::{self, Scenario, Step};
use loopwatch_conformance::{Backend, run};
use loopwatch_sim::testing::Test;

/// The signals a scenario sends (`kill`) or has a child die of (`fate.signal`).
fn signals_of(scenario: &Scenario) -> Vec<i32> {
    let mut signals: Vec<i32> = scenario
        .steps
        .iter()
        .filter_map(|step| match step {
            Step::Start { fate, .. } | Step::Spawn { fate, .. } => fate.signal,
            Step::Kill { signal, .. } => Some(*signal),
            _ => None,
        })
        .collect();
    signals.sort_unstable();
    signals.dedup();
    signals
}

/// Whether ignoring `signal` in this process is harmless and changes what a child
/// inherits: not SIGKILL/SIGSTOP (cannot be ignored), not SIGCHLD (ignoring it makes
/// the kernel reap children itself), not SIGCONT (continues a process whatever its
/// disposition), not the C library's reserved 32 and 33.
fn ignorable(signal: i32) -> bool {
    Signal(signal).is_catchable() && ![17, 18, 32, 33].contains(&signal)
}

/// How long one scenario may take before the run is declared hung. A child that
/// ignores the SIGTERM meant to end it can leave a `foreign_wait` blocked for ever;
/// the limit turns that into a failure, far beyond what any scenario needs.
const HUNG_AFTER: Duration = Duration::from_secs(120);

/// Ends the process with a failure if `progress` stays the same for [`HUNG_AFTER`],
/// killing this process's children first so that none is left behind.
fn watchdog(progress: Arc<AtomicU64>) {
    let kernel = OsKernel;
    let body = move || {
        let step = Duration::from_secs(1);
        let (mut seen, mut still) = (progress.load(Ordering::SeqCst), Duration::ZERO);
        loop {
            kernel.sleep(step);
            let now = progress.load(Ordering::SeqCst);
            if now != seen {
                (seen, still) = (now, Duration::ZERO);
                continue;
            }
            still += step;
            if still >= HUNG_AFTER {
                println!("test finding_07_inherited_ignores ... FAILED: a scenario hung");
                for pid in children() {
                    let _ = kernel.kill(pid, Some(Signal::SIGKILL));
                }
                std::process::exit(1);
            }
        }
    };
    kernel
        .spawn_thread("watchdog", Box::new(body))
        .expect("start the watchdog");
}

/// This process's children, from `/proc`.
fn children() -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .map(Pid)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Goal (reliability finding 7): with every ignorable signal the scenarios use
/// ignored in this process, `scenario` gives the simulator's trace on the real OS.
fn same_as_simulator(scenario: &Scenario, progress: &AtomicU64) -> Result<(), String> {
    progress.fetch_add(1, Ordering::SeqCst);
    let watcher = scenario.watchers[0];
    let os = run(scenario, watcher, &Backend::Os).map(|out| out.trace);
    let sim = run(scenario, watcher, &Backend::Sim(0)).map(|out| out.trace);
    match (os, sim) {
        (Ok(os), Ok(sim)) if os == sim => Ok(()),
        (os, sim) => Err(format!(
            "{} / {watcher}:\n  os:  {os:?}\n  sim: {sim:?}",
            scenario.name
        )),
    }
}

fn main() -> ExitCode {
    let scenarios = match scenario::builtin() {
        Ok(scenarios) => scenarios,
        Err(error) => {
            return loopwatch_sim::testing::main([Test::new("scenarios load", move || {
                Err(error.to_string())
            })]);
        }
    };
    let chosen: Vec<Scenario> = scenarios
        .into_iter()
        .filter(|s| signals_of(s).into_iter().any(ignorable))
        .collect();
    let mut ignored: Vec<i32> = chosen.iter().flat_map(signals_of).collect();
    ignored.retain(|&signal| ignorable(signal));
    ignored.sort_unstable();
    ignored.dedup();
    // The dispositions are process-wide: ignored for the whole run, put back after.
    let kernel = OsKernel;
    let mut previous: Vec<(Signal, Disposition)> = Vec::new();
    let mut refused = Vec::new();
    for &signal in &ignored {
        match kernel.set_disposition(Signal(signal), Disposition::Ignore) {
            Ok(old) => previous.push((Signal(signal), old)),
            Err(errno) => refused.push(format!("signal {signal}: {errno:?}")),
        }
    }
    let progress = Arc::new(AtomicU64::new(0));
    let any = !chosen.is_empty();
    let mut tests = vec![Test::new(
        "finding_07_the_scenarios_signals_are_ignored",
        move || {
            if !any {
                return Err("no scenario sends a signal".to_string());
            }
            if refused.is_empty() {
                Ok(())
            } else {
                Err(format!("could not ignore {}", refused.join(", ")))
            }
        },
    )];
    for scenario in chosen {
        let progress = progress.clone();
        let name = format!(
            "finding_07_inherited_ignores {} / {} (ignoring {ignored:?})",
            scenario.name, scenario.watchers[0]
        );
        tests.push(Test::new(name, move || {
            same_as_simulator(&scenario, &progress)
        }));
    }
    watchdog(progress);
    let code = loopwatch_sim::testing::main(tests);
    for (signal, disposition) in previous {
        let _ = kernel.set_disposition(signal, disposition);
    }
    code
}
