//! Reliability finding 7: the scenarios' results must not depend on how the runner was
//! started. Under `nohup` (SIGHUP ignored) or as a background job of a non-interactive
//! shell (SIGINT and SIGQUIT ignored) a child inherits those ignored dispositions
//! through `exec`, and a child meant to die of one of them lived on.
//!
//! This binary ignores, in its own process, every signal the scenarios send or die of
//! that can be ignored, then runs each scenario using one of them on the real OS and
//! checks the trace against the simulator's. No harness: the real-OS runs need the
//! process's main thread, and the dispositions are process-wide.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use loopwatch::OsKernel;
use loopwatch::kernel::{Clock, Disposition, Pid, Processes, Signal, Signals, Threads};
use loopwatch_conformance::scenario::{self, Scenario, Step};
use loopwatch_conformance::{Backend, crate_dir, run};

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

fn main() {
    // Reliability finding 7: with the scenarios' signals ignored in the runner, each
    // scenario still gives the simulator's trace on the real OS.
    let progress = Arc::new(AtomicU64::new(0));
    watchdog(progress.clone());
    let dir = crate_dir().join("scenarios");
    let scenarios = scenario::load_dir(&dir).expect("the scenarios load");
    let chosen: Vec<&Scenario> = scenarios
        .iter()
        .filter(|s| signals_of(s).into_iter().any(ignorable))
        .collect();
    let mut ignored: Vec<i32> = chosen.iter().flat_map(|s| signals_of(s)).collect();
    ignored.retain(|&signal| ignorable(signal));
    ignored.sort_unstable();
    ignored.dedup();
    let kernel = OsKernel;
    let previous: Vec<(Signal, Disposition)> = ignored
        .iter()
        .map(|&signal| {
            let signal = Signal(signal);
            let previous = kernel
                .set_disposition(signal, Disposition::Ignore)
                .expect("ignore a signal");
            (signal, previous)
        })
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for scenario in &chosen {
        progress.fetch_add(1, Ordering::SeqCst);
        let watcher = scenario.watchers[0];
        let path = dir.join(format!("{}.json", scenario.name));
        let os = run(scenario, &path, watcher, &Backend::Os).map(|out| out.trace);
        let sim = run(scenario, &path, watcher, &Backend::Sim(0)).map(|out| out.trace);
        let name = format!(
            "finding_07_inherited_ignores {} / {watcher} (ignoring {ignored:?})",
            scenario.name
        );
        match (os, sim) {
            (Ok(os), Ok(sim)) if os == sim => {
                passed += 1;
                println!("test {name} ... ok");
            }
            (os, sim) => {
                failed += 1;
                println!("test {name} ... FAILED\n  os:  {os:?}\n  sim: {sim:?}");
            }
        }
    }
    for (signal, disposition) in previous {
        kernel
            .set_disposition(signal, disposition)
            .expect("put a disposition back");
    }
    if chosen.is_empty() {
        failed += 1;
        println!("test finding_07_inherited_ignores ... FAILED: no scenario sends a signal");
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
