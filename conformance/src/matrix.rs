//! The conformance matrix: every scenario × watcher × backend, compared with loopwatch
//! on the real OS, with known divergences read from the ratchet file.

use std::collections::BTreeMap;
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
    /// loopwatch's trace on the real OS of each scenario and watcher that ran there:
    /// the reference, kept so that exploration need not run the OS again.
    #[serde(skip)]
    pub references: BTreeMap<(String, WatcherName), Vec<String>>,
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
    /// The real-OS traces of `watcher`'s scenarios, by scenario name, as
    /// [`explore_against`](crate::explore::explore_against) takes them.
    pub fn os_traces(&self, watcher: WatcherName) -> crate::explore::References {
        self.references
            .iter()
            .filter(|((_, w), _)| *w == watcher)
            .map(|((name, _), trace)| (name.clone(), trace.clone()))
            .collect()
    }

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

/// How many CPython runs go at once: they mostly wait on children and timers, so
/// more than the two cores of the reference machine pay.
const CPYTHON_PARALLEL: usize = 6;

/// Runs the matrix. `progress` hears about each scenario × watcher as it starts, then
/// about the CPython runs. Must be called from the process's main thread (the real-OS
/// backend needs it).
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
    let mut used = vec![false; known.len()];
    let mut matrix = Matrix::default();
    // loopwatch on the OS (the reference) and on the simulator, in the main thread.
    let mut references = Vec::new();
    for scenario in &scenarios {
        let path = options.scenarios.join(format!("{}.json", scenario.name));
        for &watcher in &scenario.watchers {
            progress(&format!("{} / {watcher}", scenario.name));
            let (cells, reference) = ours(scenario, &path, watcher, options, &known, &mut used);
            matrix.cells.extend(cells);
            if let Some(reference) = reference {
                references.push((scenario, path.clone(), watcher, reference));
            }
        }
    }
    // CPython, several interpreters at a time.
    if options.cpython {
        let mut jobs = Vec::new();
        for (index, (_, _, watcher, _)) in references.iter().enumerate() {
            for minor in CPYTHON_MINORS {
                if minor >= watcher.since_cpython() {
                    jobs.push((index, minor));
                }
            }
        }
        progress(&format!("{} CPython runs", jobs.len()));
        let results = run_parallel(&jobs, |&(index, minor)| {
            let (scenario, path, watcher, _) = &references[index];
            run(scenario, path, *watcher, &Backend::CPython(minor))
        });
        for (index, (scenario, _, watcher, reference)) in references.iter().enumerate() {
            for minor in CPYTHON_MINORS {
                let backend = Backend::CPython(minor).label();
                let status = if minor < watcher.since_cpython() {
                    Status::Skipped {
                        reason: format!("CPython 3.{minor} has no {watcher} watcher in this form"),
                    }
                } else {
                    let at = jobs
                        .iter()
                        .position(|job| *job == (index, minor))
                        .expect("a job per cell");
                    match &results[at] {
                        Ok(output) => match &output.skipped {
                            Some(reason) => Status::Skipped {
                                reason: reason.clone(),
                            },
                            None => judge(
                                scenario,
                                *watcher,
                                &backend,
                                reference,
                                output.trace.clone(),
                                &known,
                                &mut used,
                            ),
                        },
                        Err(error) => Status::Failed {
                            error: error.clone(),
                        },
                    }
                };
                matrix.cells.push(Cell {
                    scenario: scenario.name.clone(),
                    clauses: scenario.clauses.clone(),
                    watcher: watcher.to_string(),
                    backend,
                    status,
                });
            }
        }
    }
    matrix.references = references
        .into_iter()
        .map(|(scenario, _, watcher, trace)| ((scenario.name.clone(), watcher), trace))
        .collect();
    // A ratchet entry for a backend that did not run cannot be judged stale.
    matrix.stale = known
        .iter()
        .zip(&used)
        .filter(|(k, used)| !**used && (options.cpython || !k.backend.starts_with("cpython")))
        .map(|(k, _)| k.clone())
        .collect();
    Ok(matrix)
}

/// Runs `work` on each job with up to [`CPYTHON_PARALLEL`] threads; results in job order.
fn run_parallel<J: Sync, T: Send>(jobs: &[J], work: impl Fn(&J) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    #[allow(
        clippy::disallowed_types,
        reason = "collects results; the harness, not simulated code"
    )]
    let results = std::sync::Mutex::new((0..jobs.len()).map(|_| None).collect::<Vec<Option<T>>>());
    #[allow(
        clippy::disallowed_methods,
        reason = "the harness starts interpreters in parallel; nothing here is simulated"
    )]
    std::thread::scope(|scope| {
        for _ in 0..CPYTHON_PARALLEL {
            scope.spawn(|| {
                loop {
                    let at = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(job) = jobs.get(at) else { break };
                    let result = work(job);
                    results
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)[at] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// Compares `got` with the reference, consulting the ratchet.
fn judge(
    scenario: &Scenario,
    watcher: WatcherName,
    backend: &str,
    reference: &[String],
    got: Vec<String>,
    known: &[KnownDivergence],
    used: &mut [bool],
) -> Status {
    if got == reference {
        return Status::Match;
    }
    match known
        .iter()
        .position(|k| k.covers(&scenario.name, watcher.as_str(), backend))
    {
        Some(index) => {
            used[index] = true;
            Status::Known {
                reason: known[index].reason.clone(),
            }
        }
        None => Status::Diverges {
            expected: reference.to_vec(),
            got,
        },
    }
}

/// loopwatch on the real OS (the reference) and on the simulator's seeds.
fn ours(
    scenario: &Scenario,
    path: &Path,
    watcher: WatcherName,
    options: &Options,
    known: &[KnownDivergence],
    used: &mut [bool],
) -> (Vec<Cell>, Option<Vec<String>>) {
    let cell = |backend: &str, status: Status| Cell {
        scenario: scenario.name.clone(),
        clauses: scenario.clauses.clone(),
        watcher: watcher.to_string(),
        backend: backend.to_string(),
        status,
    };
    let reference = match run(scenario, path, watcher, &Backend::Os) {
        Ok(output) => output.trace,
        Err(error) => return (vec![cell("os", Status::Failed { error })], None),
    };
    // The simulator must agree with the real OS on every seed.
    let mut sim = Status::Match;
    for seed in 0..options.seeds {
        let got = match run(scenario, path, watcher, &Backend::Sim(seed)) {
            Ok(output) => output.trace,
            Err(error) => {
                sim = Status::Failed { error };
                break;
            }
        };
        match judge(scenario, watcher, "sim", &reference, got, known, used) {
            Status::Diverges { expected, got } => {
                sim = Status::Failed {
                    error: format!(
                        "seed {seed} differs from the OS: expected {expected:?}, got {got:?}; replay: cargo loopwatch replay {} --watcher {watcher} --seed {seed}",
                        path.display()
                    ),
                };
                break;
            }
            status @ Status::Known { .. } => sim = status,
            _ => {}
        }
    }
    (
        vec![cell("os", Status::Match), cell("sim", sim)],
        Some(reference),
    )
}
