//! Running a model: loom's builder with this suite's bounds, and a line per model with
//! its explored executions and run time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use loopwatch_sim::{SimKernel, Simulation};

/// The preemption bound when `LOOM_MAX_PREEMPTIONS` does not set one.
const DEFAULT_PREEMPTIONS: usize = 2;

/// Explores every execution of `scenario` on a fresh simulated process, up to the
/// preemption bound, failing at the first one that does not complete. Prints the
/// number of executions and the time taken.
#[allow(
    clippy::disallowed_methods,
    reason = "the model's wall time, for its report line"
)]
pub(crate) fn explore(name: &str, scenario: impl Fn(SimKernel) + Clone + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(DEFAULT_PREEMPTIONS));
    // A run makes hundreds of kernel calls, each a branch point.
    builder.max_branches = builder.max_branches.max(200_000);
    let executions = Arc::new(AtomicUsize::new(0));
    let counted = executions.clone();
    let owned = name.to_string();
    let started = Instant::now();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        let report = Simulation::new(0).run(scenario.clone());
        report.assert_completed(&owned);
        assert_eq!(report.threads_abandoned, 0, "{owned}: every thread ended");
    });
    eprintln!(
        "loom model {name}: {} executions in {:.1} s (preemption bound {})",
        executions.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        builder.preemption_bound.unwrap_or(0),
    );
}
