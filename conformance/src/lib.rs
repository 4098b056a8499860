//! loopwatch's conformance framework: scenarios as data, run on the real OS, on the
//! simulator and on real CPython, and compared.
//!
//! # Map
//!
//! - [`scenario`]: the `loopwatch-scenario/1` format (`SCENARIOS.md`,
//!   `scenario.schema.json`).
//! - [`runner`]: runs a scenario on any loopwatch kernel and records the normalised
//!   trace.
//! - [`Backend`], [`run`]: the three backends; CPython through `cpython/runner.py`
//!   under the interpreters found in `$(pyenv root)/versions`.
//! - [`matrix`]: every scenario × watcher × backend, compared with loopwatch on the
//!   real OS as the reference, known divergences read from `divergences.json`.
//! - [`zoo`]: watchers broken on purpose, and [`zoo::check_watcher`] for your own.
//! - [`policy_suite`]: the policy clauses (P-, C-, D-) checked against any policy,
//!   [`policy_suite::check_policy`], on both kernels.
//! - [`explore`]: seeded exploration on the simulator with faults that must not change
//!   what a watcher reports, sharded for CI matrices and job arrays.
//!
//! # Running the tests
//!
//! `cargo test -p loopwatch-conformance` runs every scenario on both loopwatch
//! backends and, where interpreters exist, against CPython.
//!
//! # Limitations
//!
//! Watchers are covered through scenarios, policies through [`policy_suite`]'s
//! checks (not yet through scenario files, so CPython is not their oracle). A user's
//! own watcher is checked against the scenarios of the built-in watcher whose
//! contract it follows ([`zoo::check_watcher`]), a user's policy with
//! [`policy_suite::check_policy`]. The check's progress is a one-line counter, not a
//! bar.

pub mod explore;
pub mod matrix;
pub mod policy_suite;
pub mod runner;
pub mod scenario;
pub mod zoo;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::scenario::{Scenario, WatcherName};

/// Where a scenario runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Backend {
    /// loopwatch on the real OS.
    Os,
    /// loopwatch on the simulator, from a seed.
    Sim(u64),
    /// CPython 3.`minor`, through its interpreter.
    CPython(u32),
}

impl Backend {
    /// The name used in traces and on the command line (`os`, `sim`, `cpython3.7`).
    pub fn label(&self) -> String {
        match self {
            Backend::Os => "os".into(),
            Backend::Sim(_) => "sim".into(),
            Backend::CPython(minor) => format!("cpython3.{minor}"),
        }
    }

    /// Parses `os`, `sim` (with `seed`) or `cpython3.X`.
    ///
    /// # Errors
    ///
    /// A message naming the valid forms.
    pub fn parse(text: &str, seed: u64) -> Result<Backend, String> {
        match text {
            "os" => Ok(Backend::Os),
            "sim" => Ok(Backend::Sim(seed)),
            _ => text
                .strip_prefix("cpython3.")
                .and_then(|m| m.parse().ok())
                .map(Backend::CPython)
                .ok_or_else(|| {
                    format!("unknown backend {text:?}; valid: os, sim, cpython3.7 … cpython3.13")
                }),
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

/// This crate's directory (scenarios, the CPython runner, the ratchet file).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The CPython 3.`minor` interpreter, if one is installed under pyenv.
pub fn cpython(minor: u32) -> Option<PathBuf> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")))?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(root.join("versions"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix(&format!("3.{minor}."))
                .is_some_and(|patch| patch.chars().all(|c| c.is_ascii_digit()))
        })
        .map(|e| e.path().join("bin").join("python3"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

/// Runs `scenario` with `watcher` on `backend`. The OS backend must be called from the
/// process's main thread.
///
/// # Errors
///
/// A message saying what failed (set-up, the simulation's outcome, the interpreter).
pub fn run(
    scenario: &Scenario,
    scenario_path: &Path,
    watcher: WatcherName,
    backend: &Backend,
) -> Result<RunOutput, String> {
    let output = |trace: Vec<String>| RunOutput {
        scenario: scenario.name.clone(),
        watcher: watcher.to_string(),
        backend: backend.label(),
        trace,
        skipped: None,
    };
    match backend {
        Backend::Os => runner::execute(&loopwatch::OsKernel, scenario, watcher)
            .map(output)
            .map_err(|e| e.to_string()),
        Backend::Sim(seed) => {
            let scenario_copy = scenario.clone();
            let (result, report) = loopwatch_sim::Simulation::new(*seed)
                .run_returning(move |kernel| runner::execute(&kernel, &scenario_copy, watcher));
            let Some(result) = result else {
                let lines = report.trace.lines();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                return Err(format!(
                    "simulation {:?} with seed {seed}; replay: cargo loopwatch replay {} --watcher {watcher} --seed {seed}\n{tail}",
                    report.outcome,
                    scenario_path.display()
                ));
            };
            result.map(output).map_err(|e| e.to_string())
        }
        Backend::CPython(minor) => {
            let Some(python) = cpython(*minor) else {
                return Ok(RunOutput {
                    skipped: Some(format!("no CPython 3.{minor} under pyenv")),
                    ..output(Vec::new())
                });
            };
            let out = Command::new(&python)
                .arg(crate_dir().join("cpython").join("runner.py"))
                .arg(scenario_path)
                .arg(watcher.as_str())
                .output()
                .map_err(|e| format!("{}: {e}", python.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} exited with {}: {}",
                    python.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let mut parsed: RunOutput = serde_json::from_slice(&out.stdout).map_err(|e| {
                format!(
                    "CPython 3.{minor}'s output is not a trace: {e}: {}",
                    String::from_utf8_lossy(&out.stdout)
                )
            })?;
            parsed.backend = backend.label();
            Ok(parsed)
        }
    }
}
