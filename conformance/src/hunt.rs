//! The hunt: generated programs ([`crate::programs`]) run on the simulator under the
//! invariant checker, a failure shrunk to a small program and written out as a
//! scenario file, and regressions replayed.
//!
//! A generated program is its steps, the faults it switches on and the scheduler's
//! seed; shrinking reduces all three together (proptest's value tree), keeping a
//! simplification while the run still fails with the same [`Verdict::signature`].

use std::path::{Path, PathBuf};

use loopwatch::zoo::Mutant;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::explore::{Checked, Fault, Run, Verdict, loopwatch_command, verdict};
use crate::programs::{self, Program};
use crate::scenario::{Scenario, WatcherName};

/// The most operations a generated program has.
pub const MAX_STEPS: usize = 24;

/// How many candidate programs shrinking may judge.
pub const SHRINK_RUNS: usize = 2_000;

/// How many candidates the second pass, which drops one step at a time, may judge.
pub const DROP_RUNS: usize = 500;

/// How many seeds a candidate is tried with while shrinking: its own, then others
/// derived from it. A failure that needs one interleaving is tied to its seed, and a
/// smaller program makes other kernel calls, so the same seed schedules it otherwise;
/// another seed often finds the interleaving again, and the shrink goes on.
pub const SHRINK_SEEDS: u64 = 3;

/// A program's run, checked.
pub fn run_program(
    program: &Program,
    name: &str,
    watcher: WatcherName,
    mutant: Option<Mutant>,
) -> (Scenario, Checked, Verdict) {
    let scenario = program.to_scenario(name, watcher);
    let run = Run {
        scenario: &scenario,
        watcher,
        seed: program.seed,
        faults: &program.faults,
        mutant,
        keep_trace: false,
    };
    let checked = run.checked();
    let verdict = verdict(&run, None, true, &checked);
    (scenario.clone(), checked, verdict)
}

/// A failing program, found and shrunk.
#[derive(Clone, Debug)]
pub struct Found {
    /// The generated case.
    pub case: u64,
    /// The program as generated.
    pub program: Program,
    /// Its verdict.
    pub verdict: Verdict,
    /// The smallest program found that fails the same way.
    pub shrunk: Program,
    /// The shrunk program's verdict.
    pub shrunk_verdict: Verdict,
    /// Candidate programs the shrinking judged, both passes (each run with up to
    /// [`SHRINK_SEEDS`] seeds).
    pub shrink_runs: usize,
}

/// Runs generated program `case` for `watcher` (with `mutant` on); if it fails,
/// shrinks it.
pub fn hunt_case(watcher: WatcherName, case: u64, mutant: Option<Mutant>) -> Option<Found> {
    let (program, tree) = programs::sample(watcher, MAX_STEPS, case);
    let name = format!("program-{case}");
    let (_, _, verdict) = run_program(&program, &name, watcher, mutant);
    let signature = verdict.signature()?;
    let mut fails = |candidate: &Program| {
        (0..SHRINK_SEEDS).find_map(|k| {
            let tried = Program {
                seed: candidate.seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ..candidate.clone()
            };
            let (_, _, v) = run_program(&tried, &name, watcher, mutant);
            (v.signature().as_ref() == Some(&signature)).then_some(tried)
        })
    };
    let (shrunk, shrink_runs) = programs::shrink(tree, &mut fails, SHRINK_RUNS);
    let (shrunk, dropping_runs) = programs::drop_steps(shrunk, &mut fails, watcher, DROP_RUNS);
    let shrink_runs = shrink_runs + dropping_runs;
    let (_, _, shrunk_verdict) = run_program(&shrunk, &name, watcher, mutant);
    Some(Found {
        case,
        program,
        verdict,
        shrunk,
        shrunk_verdict,
        shrink_runs,
    })
}

/// A committed regression: a shrunk program, its seed and faults, and what it must
/// give (`conformance/regressions/*.json`, replayed by `cargo test`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regression {
    /// The watcher.
    pub watcher: WatcherName,
    /// The simulator's seed.
    pub seed: u64,
    /// Faults switched on.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// The zoo mutant it was found with, if any (by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutant: Option<String>,
    /// The invariants the run must break, sorted (empty: it must pass).
    pub breaks: Vec<String>,
    /// The scenario.
    pub scenario: Scenario,
}

impl Regression {
    /// A regression of `found`'s shrunk program, found with `mutant`.
    pub fn of(
        found: &Found,
        watcher: WatcherName,
        mutant: Option<Mutant>,
        name: &str,
    ) -> Regression {
        let mut breaks: Vec<String> = found
            .shrunk_verdict
            .breaches
            .iter()
            .map(|b| b.rule.clone())
            .collect();
        breaks.sort();
        breaks.dedup();
        let mut scenario = found.shrunk.to_scenario(name, watcher);
        scenario.description = format!(
            "Shrunk from generated program {} ({} steps to {}); simulator seed {}, faults [{}]{}.",
            found.case,
            found.program.len(),
            found.shrunk.len(),
            found.shrunk.seed,
            Fault::names(&found.shrunk.faults),
            mutant.map(|m| format!(", mutant {m}")).unwrap_or_default()
        );
        Regression {
            watcher,
            seed: found.shrunk.seed,
            faults: found.shrunk.faults.clone(),
            mutant: mutant.map(|m| m.name().to_string()),
            breaks,
            scenario,
        }
    }

    /// Its mutant.
    ///
    /// # Errors
    ///
    /// [`Error::Unknown`] for a mutant name that does not exist.
    pub fn mutant(&self) -> Result<Option<Mutant>, Error> {
        self.mutant
            .as_deref()
            .map(|name| {
                Mutant::parse(name).ok_or_else(|| Error::Unknown {
                    what: "mutant",
                    given: name.to_string(),
                    valid: Mutant::ALL.iter().map(|m| m.name().to_string()).collect(),
                })
            })
            .transpose()
    }

    /// Runs it (keeping the kernel trace's lines when `keep_trace`): the rules it
    /// broke, sorted.
    ///
    /// # Errors
    ///
    /// As [`Regression::mutant`].
    pub fn replay(&self, keep_trace: bool) -> Result<(Vec<String>, Checked), Error> {
        let run = Run {
            scenario: &self.scenario,
            watcher: self.watcher,
            seed: self.seed,
            faults: &self.faults,
            mutant: self.mutant()?,
            keep_trace,
        };
        let checked = run.checked();
        let mut broke: Vec<String> = checked.breaches.iter().map(|b| b.rule.clone()).collect();
        broke.sort();
        broke.dedup();
        Ok((broke, checked))
    }

    /// Reads a regression file.
    ///
    /// # Errors
    ///
    /// [`Error::Unreadable`], or [`Error::Invalid`] naming the file.
    pub fn load(path: &Path) -> Result<Regression, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("line {}, column {}: {e}", e.line(), e.column())))
            .map_err(|e| e.at(path.display().to_string()))
    }

    /// Writes it as pretty JSON to `dir/<scenario name>.json`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, Error> {
        let path = dir.join(format!("{}.json", self.scenario.name));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
            std::fs::write(&path, text + "\n")
        };
        write().map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// The command that replays the file at `path` on the simulator.
    pub fn replay_command(&self, path: &Path) -> String {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        format!("{} regression {}", loopwatch_command(), path.display())
    }
}

/// The committed regressions (`conformance/regressions/*.json`, built into the crate),
/// as (file name, parsed regression).
///
/// # Errors
///
/// [`Error::Invalid`] naming the first file that does not parse.
pub fn committed() -> Result<Vec<(&'static str, Regression)>, Error> {
    REGRESSIONS
        .iter()
        .map(|(file, text)| {
            serde_json::from_str(text)
                .map(|r| (*file, r))
                .map_err(|e| Error::invalid(format!("{e}")).at(format!("regression {file}")))
        })
        .collect()
}

// `REGRESSIONS`: (file name, text) of every file of `regressions/`, written by the
// build script.
include!(concat!(env!("OUT_DIR"), "/regressions.rs"));
