//! The conformance matrix: every scenario × watcher × backend, compared with loopwatch
//! on the real OS, with known divergences read from the ratchet file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::scenario::{Scenario, WatcherName};
use crate::{Backend, run};

/// CPython minor versions compared (3.7 … 3.13).
pub const CPYTHON_MINORS: std::ops::RangeInclusive<u32> = 7..=13;

/// A known, explained divergence from CPython (an entry of `divergences.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownDivergence {
    /// The scenario.
    pub scenario: String,
    /// The watcher.
    pub watcher: String,
    /// The backend label (`cpython3.7` …), or `cpython*` for every version.
    pub backend: String,
    /// The spec clause at stake.
    pub clause: String,
    /// Why loopwatch differs on purpose.
    pub reason: String,
}

impl KnownDivergence {
    fn covers(&self, scenario: &str, watcher: &str, backend: &str) -> bool {
        self.scenario == scenario
            && self.watcher == watcher
            && (self.backend == backend
                || (self.backend == "cpython*" && backend.starts_with("cpython")))
    }
}

/// Reads the ratchet file.
///
/// # Errors
///
/// The file cannot be read or parsed.
pub fn load_divergences(path: &Path) -> Result<Vec<KnownDivergence>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: line {}, column {}: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// One comparison's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Same trace as the reference.
    Match,
    /// Differs, as the ratchet file explains.
    Known {
        /// The ratchet entry's reason.
        reason: String,
    },
    /// Differs, and nothing explains it.
    Diverges {
        /// loopwatch's trace on the real OS.
        expected: Vec<String>,
        /// This backend's trace.
        got: Vec<String>,
    },
    /// Not run here.
    Skipped {
        /// Why.
        reason: String,
    },
    /// The run itself failed.
    Failed {
        /// How.
        error: String,
    },
}

/// One cell of the matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// The scenario.
    pub scenario: String,
    /// Its clauses.
    pub clauses: Vec<String>,
    /// The watcher.
    pub watcher: String,
    /// The backend label.
    pub backend: String,
    /// The outcome.
    #[serde(flatten)]
    pub status: Status,
}

/// The whole matrix.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Matrix {
    /// Every cell.
    pub cells: Vec<Cell>,
    /// Ratchet entries that no longer diverge (they should be removed).
    pub stale: Vec<KnownDivergence>,
}

/// What to compare.
#[derive(Clone, Debug)]
pub struct Options {
    /// The scenario files' directory.
    pub scenarios: PathBuf,
    /// The ratchet file.
    pub divergences: PathBuf,
    /// Simulator seeds per scenario and watcher.
    pub seeds: u64,
    /// Whether to run CPython.
    pub cpython: bool,
}

impl Default for Options {
    fn default() -> Self {
        let dir = crate::crate_dir();
        Options {
            scenarios: dir.join("scenarios"),
            divergences: dir.join("divergences.json"),
            seeds: 4,
            cpython: true,
        }
    }
}

impl Matrix {
    /// Whether every cell matches, is known, or was skipped.
    pub fn ok(&self) -> bool {
        self.cells.iter().all(|c| {
            matches!(
                c.status,
                Status::Match | Status::Known { .. } | Status::Skipped { .. }
            )
        })
    }

    /// How many comparisons were made (cells that ran).
    pub fn compared(&self) -> usize {
        self.cells
            .iter()
            .filter(|c| !matches!(c.status, Status::Skipped { .. }))
            .count()
    }

    fn count(&self, pick: fn(&Status) -> bool) -> usize {
        self.cells.iter().filter(|c| pick(&c.status)).count()
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# loopwatch conformance\n");
        let _ = writeln!(
            out,
            "{} comparisons (scenario × watcher × backend): {} match, {} known divergences, {} new divergences, {} failed, {} skipped.\n",
            self.compared(),
            self.count(|s| matches!(s, Status::Match)),
            self.count(|s| matches!(s, Status::Known { .. })),
            self.count(|s| matches!(s, Status::Diverges { .. })),
            self.count(|s| matches!(s, Status::Failed { .. })),
            self.count(|s| matches!(s, Status::Skipped { .. })),
        );
        let _ = writeln!(
            out,
            "| scenario | watcher | backend | result |\n|---|---|---|---|"
        );
        for cell in &self.cells {
            let result = match &cell.status {
                Status::Match => "match".to_string(),
                Status::Known { reason } => format!("known: {reason}"),
                Status::Diverges { expected, got } => {
                    format!("**DIVERGES**: expected `{expected:?}`, got `{got:?}`")
                }
                Status::Skipped { reason } => format!("skipped: {reason}"),
                Status::Failed { error } => {
                    format!("**FAILED**: {}", error.lines().next().unwrap_or(""))
                }
            };
            let _ = writeln!(
                out,
                "| {} ({}) | {} | {} | {result} |",
                cell.scenario,
                cell.clauses.join(", "),
                cell.watcher,
                cell.backend
            );
        }
        for entry in &self.stale {
            let _ = writeln!(
                out,
                "\nStale ratchet entry (no longer diverges): {} / {} / {}",
                entry.scenario, entry.watcher, entry.backend
            );
        }
        out
    }

    /// A compact terminal view: one line per scenario × watcher, one mark per backend.
    pub fn terminal(&self) -> String {
        let mut out = String::new();
        let mut rows: Vec<(String, String)> = Vec::new();
        for cell in &self.cells {
            let key = (cell.scenario.clone(), cell.watcher.clone());
            if !rows.contains(&key) {
                rows.push(key);
            }
        }
        for (scenario, watcher) in rows {
            let marks: Vec<String> = self
                .cells
                .iter()
                .filter(|c| c.scenario == scenario && c.watcher == watcher)
                .map(|c| {
                    let mark = match c.status {
                        Status::Match => "ok",
                        Status::Known { .. } => "known",
                        Status::Diverges { .. } => "DIFF",
                        Status::Skipped { .. } => "-",
                        Status::Failed { .. } => "FAIL",
                    };
                    format!("{}:{mark}", c.backend)
                })
                .collect();
            let _ = writeln!(out, "{scenario:<40} {watcher:<10} {}", marks.join(" "));
        }
        out
    }
}

/// Runs the matrix. `progress` hears about each scenario × watcher as it starts. Must
/// be called from the process's main thread (the real-OS backend needs it).
///
/// # Errors
///
/// The scenarios or the ratchet file cannot be read.
pub fn check(options: &Options, mut progress: impl FnMut(&str)) -> Result<Matrix, String> {
    let scenarios = crate::scenario::load_dir(&options.scenarios)?;
    let known = if options.divergences.exists() {
        load_divergences(&options.divergences)?
    } else {
        Vec::new()
    };
    let mut matrix = Matrix::default();
    let mut used = vec![false; known.len()];
    for scenario in &scenarios {
        let path = options.scenarios.join(format!("{}.json", scenario.name));
        for &watcher in &scenario.watchers {
            progress(&format!("{} / {watcher}", scenario.name));
            let cells = compare(scenario, &path, watcher, options, &known, &mut used);
            matrix.cells.extend(cells);
        }
    }
    matrix.stale = known
        .iter()
        .zip(&used)
        .filter(|(_, used)| !**used)
        .map(|(k, _)| k.clone())
        .collect();
    Ok(matrix)
}

fn compare(
    scenario: &Scenario,
    path: &Path,
    watcher: WatcherName,
    options: &Options,
    known: &[KnownDivergence],
    used: &mut [bool],
) -> Vec<Cell> {
    let cell = |backend: String, status: Status| Cell {
        scenario: scenario.name.clone(),
        clauses: scenario.clauses.clone(),
        watcher: watcher.to_string(),
        backend,
        status,
    };
    let reference = match run(scenario, path, watcher, &Backend::Os) {
        Ok(output) => output.trace,
        Err(error) => return vec![cell("os".into(), Status::Failed { error })],
    };
    let mut cells = vec![cell("os".into(), Status::Match)];
    let mut judge = |backend: String, got: Vec<String>| {
        if got == reference {
            return Status::Match;
        }
        match known
            .iter()
            .position(|k| k.covers(&scenario.name, watcher.as_str(), &backend))
        {
            Some(index) => {
                used[index] = true;
                Status::Known {
                    reason: known[index].reason.clone(),
                }
            }
            None => Status::Diverges {
                expected: reference.clone(),
                got,
            },
        }
    };
    // The simulator must agree with the real OS on every seed.
    let mut sim = Status::Match;
    for seed in 0..options.seeds {
        match run(scenario, path, watcher, &Backend::Sim(seed)) {
            Ok(output) if output.trace == reference => {}
            Ok(output) => {
                sim = judge("sim".into(), output.trace);
                if !matches!(sim, Status::Known { .. }) {
                    if let Status::Diverges { expected, got } = sim {
                        sim = Status::Failed {
                            error: format!(
                                "seed {seed} differs from the OS: expected {expected:?}, got {got:?}; replay: cargo loopwatch scenario run {} --backend sim --seed {seed} --watcher {watcher}",
                                path.display()
                            ),
                        };
                    }
                    break;
                }
            }
            Err(error) => {
                sim = Status::Failed { error };
                break;
            }
        }
    }
    cells.push(cell("sim".into(), sim));
    if options.cpython {
        for minor in CPYTHON_MINORS {
            let backend = Backend::CPython(minor);
            let status = if minor < watcher.since_cpython() {
                Status::Skipped {
                    reason: format!("CPython 3.{minor} has no {watcher} watcher in this form"),
                }
            } else {
                match run(scenario, path, watcher, &backend) {
                    Ok(output) => match output.skipped {
                        Some(reason) => Status::Skipped { reason },
                        None => judge(backend.label(), output.trace),
                    },
                    Err(error) => Status::Failed { error },
                }
            };
            cells.push(cell(backend.label(), status));
        }
    }
    cells
}
