//! loopwatch's conformance framework: scenarios as data, run on the real OS, on the
//! simulator and on real CPython, and compared.
//!
//! # Map
//!
//! - [`scenario`]: the `loopwatch-scenario/1` format (`SCENARIOS.md`,
//!   `scenario.schema.json`), and the scenarios built into the crate.
//! - [`runner`]: runs a scenario on any loopwatch kernel and records the normalised
//!   trace.
//! - [`Backend`], [`run`]: the three backends; CPython through the built-in copy of
//!   `cpython/runner.py`, under the interpreters of [`cpython::Pythons`].
//! - [`matrix`]: every scenario × watcher × backend, compared with loopwatch on the
//!   real OS as the reference, known divergences read from `divergences.json`.
//! - [`zoo`]: watchers broken on purpose, and [`zoo::check_watcher`] for your own.
//! - [`policy_suite`]: the policy clauses (P-, C-, D-) checked against any policy,
//!   [`policy_suite::check_policy`], on both kernels.
//! - [`testing`]: the watcher and policy checks as ready-made tests for a
//!   `harness = false` test binary, one test per cell.
//! - [`explore`]: seeded exploration on the simulator with faults and generated
//!   programs, sharded for CI matrices and job arrays, every run under
//!   [`invariants`], the checker that needs no oracle.
//! - [`programs`]: generated operation sequences for the simulator (proptest), and
//!   their shrinking.
//! - [`hunt`]: generated programs shrunk to small reproducers, written out and
//!   replayed as regressions.
//! - [`fuzzing`]: the bodies of the fuzz targets of `fuzz/` (cargo-fuzz), which
//!   `cargo test` also runs on their corpus and crash regressions.
//! - [`Error`]: bad input or a harness failure; a divergence is a result, not an
//!   error.
//!
//! # Running the tests
//!
//! `cargo test -p loopwatch-conformance` runs every scenario on both loopwatch
//! backends; `cargo loopwatch check` adds CPython.
//!
//! # Limitations
//!
//! Watchers are covered through scenarios, policies through [`policy_suite`]'s
//! checks (not yet through scenario files, so CPython is not their oracle beyond the
//! default policy). A user's own watcher is checked against the scenarios of the
//! built-in watcher whose contract it follows ([`zoo::check_watcher`],
//! [`testing::watcher_tests`]), a user's policy with [`policy_suite::check_policy`]
//! or [`testing::policy_tests`].

pub mod cpython;
mod error;
pub mod explore;
pub mod fuzzing;
pub mod hunt;
pub mod invariants;
pub mod loom_models;
pub mod matrix;
mod parallel;
pub mod policy_suite;
pub mod programs;
pub mod progress;
pub mod runner;
pub mod scenario;
pub mod testing;
pub mod zoo;

use serde::{Deserialize, Serialize};

pub use crate::cpython::{CPython, Pythons};
pub use crate::error::Error;
use crate::scenario::{Scenario, WatcherName};

/// Where a scenario runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    /// loopwatch on the real OS.
    Os,
    /// loopwatch on the simulator, from a seed.
    Sim(u64),
    /// A CPython interpreter.
    CPython(CPython),
}

impl Backend {
    /// The name used in traces and on the command line (`os`, `sim`, `cpython3.7`).
    pub fn label(&self) -> String {
        match self {
            Backend::Os => "os".into(),
            Backend::Sim(_) => "sim".into(),
            Backend::CPython(python) => python.label(),
        }
    }

    /// Parses `os`, `sim` (with `seed`) or `cpython3.X` (one of `pythons`).
    ///
    /// # Errors
    ///
    /// [`Error::Unknown`] naming the valid forms, or [`Error::NoCPython`] when
    /// `cpython3.X` is not among `pythons`.
    pub fn parse(text: &str, seed: u64, pythons: &Pythons) -> Result<Backend, Error> {
        match text {
            "os" => Ok(Backend::Os),
            "sim" => Ok(Backend::Sim(seed)),
            _ => match text
                .strip_prefix("cpython3.")
                .and_then(|m| m.parse::<u32>().ok())
            {
                Some(minor) => pythons.require(minor).cloned().map(Backend::CPython),
                None => Err(Error::Unknown {
                    what: "backend",
                    given: text.to_string(),
                    valid: ["os", "sim", "cpython3.7", "…", "cpython3.13"]
                        .map(String::from)
                        .to_vec(),
                }),
            },
        }
    }
}

/// What one run produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutput {
    /// The scenario's name.
    pub scenario: String,
    /// The watcher.
    pub watcher: String,
    /// The backend label.
    pub backend: String,
    /// The trace, when the run happened.
    #[serde(default)]
    pub trace: Vec<String>,
    /// Why it did not run (an interpreter without that watcher, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Runs `scenario` with `watcher` on `backend`. The OS backend must be called from the
/// process's main thread.
///
/// # Errors
///
/// [`Error::Backend`]: loopwatch's set-up failed, the simulation did not complete
/// (with the command that replays it), or the interpreter could not be started or
/// printed no trace.
pub fn run(
    scenario: &Scenario,
    watcher: WatcherName,
    backend: &Backend,
) -> Result<RunOutput, Error> {
    let output = |trace: Vec<String>| RunOutput {
        scenario: scenario.name.clone(),
        watcher: watcher.to_string(),
        backend: backend.label(),
        trace,
        skipped: None,
    };
    let failed = |message: String| Error::Backend {
        backend: backend.label(),
        scenario: format!("{} / {watcher}", scenario.name),
        message,
    };
    match backend {
        Backend::Os => runner::execute(&loopwatch::OsKernel, scenario, watcher)
            .map(output)
            .map_err(|e| failed(e.to_string())),
        Backend::Sim(seed) => {
            let scenario_copy = scenario.clone();
            let (result, report) = loopwatch_sim::Simulation::new(*seed)
                .run_returning(move |kernel| runner::execute(&kernel, &scenario_copy, watcher));
            let Some(result) = result else {
                let lines = report.trace.lines();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                return Err(failed(format!(
                    "simulation {:?} with seed {seed}; replay: {}\n{tail}",
                    report.outcome,
                    scenario.replay_command(watcher, *seed)
                )));
            };
            result.map(output).map_err(|e| failed(e.to_string()))
        }
        Backend::CPython(python) => {
            let text = serde_json::to_string(scenario)
                .map_err(|e| failed(format!("the scenario as JSON: {e}")))?;
            let out = python
                // CPython has no Waitid: it runs as Safe, whose contract it keeps.
                .script(cpython::RUNNER_PY, &[&text, watcher.contract().as_str()])
                .output()
                .map_err(|e| failed(format!("{}: {e}", python.path.display())))?;
            if !out.status.success() {
                return Err(failed(format!(
                    "{} exited with {}: {}",
                    python.path.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            let mut parsed: RunOutput = serde_json::from_slice(&out.stdout).map_err(|e| {
                failed(format!(
                    "the output is not a trace: {e}: {}",
                    String::from_utf8_lossy(&out.stdout)
                ))
            })?;
            parsed.backend = backend.label();
            Ok(parsed)
        }
    }
}
