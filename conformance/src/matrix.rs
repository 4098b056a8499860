//! The conformance matrix: every scenario × watcher × backend, compared with loopwatch
//! on the real OS, with known divergences read from the ratchet file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cpython::{MINORS, Pythons};
use crate::progress::Progress;
use crate::scenario::{Scenario, WatcherName};
use crate::{Backend, Error, run};

/// CPython minor versions compared (3.7 … 3.13).
pub const CPYTHON_MINORS: std::ops::RangeInclusive<u32> = MINORS;

/// The ratchet file built into the crate (`divergences.json`).
pub const DIVERGENCES_JSON: &str = include_str!("../divergences.json");

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
    /// Whether the entry explains a difference of `scenario` with `watcher` on
    /// `backend`.
    pub fn covers(&self, scenario: &str, watcher: &str, backend: &str) -> bool {
        self.scenario == scenario
            && self.watcher == watcher
            && (self.backend == backend
                || (self.backend == "cpython*" && backend.starts_with("cpython")))
    }
}

/// Parses a ratchet file's text.
///
/// # Errors
///
/// [`Error::Invalid`] with line and column.
pub fn parse_divergences(text: &str) -> Result<Vec<KnownDivergence>, Error> {
    serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("line {}, column {}: {e}", e.line(), e.column())))
}

/// Reads the ratchet file at `path`, or the built-in one when `path` is `None`.
///
/// # Errors
///
/// The file cannot be read ([`Error::Unreadable`]) or parsed ([`Error::Invalid`]).
pub fn load_divergences(path: Option<&Path>) -> Result<Vec<KnownDivergence>, Error> {
    match path {
        None => parse_divergences(DIVERGENCES_JSON).map_err(|e| e.at("built-in divergences.json")),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Unreadable {
                path: path.to_path_buf(),
                source,
            })?;
            parse_divergences(&text).map_err(|e| e.at(path.display().to_string()))
        }
    }
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
    /// Not run: the backend has no such watcher (shown as `-`).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Not run: the backend itself is not available here, e.g. no interpreter of
    /// that CPython version was found (shown as `n/a`).
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The run itself failed.
    Failed {
        /// How.
        error: String,
    },
}

impl Status {
    /// Whether the cell counts as matched: a match, a known divergence, or a cell
    /// that did not run.
    pub fn is_ok(&self) -> bool {
        matches!(
            self,
            Status::Match
                | Status::Known { .. }
                | Status::Skipped { .. }
                | Status::Unavailable { .. }
        )
    }

    /// Whether the cell ran and was compared.
    pub fn ran(&self) -> bool {
        !matches!(self, Status::Skipped { .. } | Status::Unavailable { .. })
    }

    /// The terminal view's mark: `ok`, `known`, `DIFF`, `-`, `n/a`, `FAIL`.
    pub fn mark(&self) -> &'static str {
        match self {
            Status::Match => "ok",
            Status::Known { .. } => "known",
            Status::Diverges { .. } => "DIFF",
            Status::Skipped { .. } => "-",
            Status::Unavailable { .. } => "n/a",
            Status::Failed { .. } => "FAIL",
        }
    }
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

impl Cell {
    /// A readable account of a cell that is not ok: what was run, the clauses at
    /// stake, and the expected and actual trace lines (or the error). `None` for a
    /// cell that is ok.
    pub fn failure(&self) -> Option<String> {
        let head = format!(
            "{} / {} on {} (clauses {})",
            self.scenario,
            self.watcher,
            self.backend,
            self.clauses.join(", ")
        );
        match &self.status {
            Status::Diverges { expected, got } => Some(format!(
                "{head}: the trace differs\n{}",
                trace_diff(expected, got)
            )),
            Status::Failed { error } => Some(format!("{head}: {error}")),
            _ => None,
        }
    }
}

/// `expected` and `got`, one line each, marking the first line that differs.
pub fn trace_diff(expected: &[String], got: &[String]) -> String {
    let first = expected
        .iter()
        .zip(got)
        .position(|(e, g)| e != g)
        .unwrap_or(expected.len().min(got.len()));
    let mut out = String::new();
    for (label, lines) in [("expected", expected), ("got", got)] {
        let _ = writeln!(out, "  {label}:");
        if lines.is_empty() {
            let _ = writeln!(out, "      (no lines)");
        }
        for (index, line) in lines.iter().enumerate() {
            let marker = if index == first { ">" } else { " " };
            let _ = writeln!(out, "    {marker} {line}");
        }
    }
    out.pop();
    out
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
    /// The scenario files' directory; `None` for the scenarios built into the crate.
    pub scenarios: Option<PathBuf>,
    /// The ratchet file; `None` for the one built into the crate.
    pub divergences: Option<PathBuf>,
    /// Simulator seeds per scenario and watcher.
    pub seeds: u64,
    /// The CPythons to compare with; `None` leaves CPython out (no CPython cells).
    /// With `Some`, a version not found gives `n/a` cells.
    pub cpython: Option<Pythons>,
    /// How many simulator runs go at once, beside the real-OS runs (which stay on
    /// the main thread, one at a time). Default: the machine's CPUs.
    pub jobs: usize,
    /// How many CPython interpreters run at once. Default 6: they mostly wait on
    /// children and timers, so more than the CPUs pay.
    pub cpython_jobs: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scenarios: None,
            divergences: None,
            seeds: 4,
            cpython: None,
            jobs: crate::parallel::cpus(),
            cpython_jobs: 6,
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

    /// Whether every cell matches, is known, or did not run.
    pub fn ok(&self) -> bool {
        self.cells.iter().all(|c| c.status.is_ok())
    }

    /// How many comparisons were made (cells that ran).
    pub fn compared(&self) -> usize {
        self.cells.iter().filter(|c| c.status.ran()).count()
    }

    fn count(&self, pick: fn(&Status) -> bool) -> usize {
        self.cells.iter().filter(|c| pick(&c.status)).count()
    }

    /// `N comparisons: a match, b known divergences, …`: the counts in one line.
    pub fn summary(&self) -> String {
        format!(
            "{} comparisons (scenario × watcher × backend): {} match, {} known divergences, {} new divergences, {} failed; not run: {} skipped (-), {} n/a",
            self.compared(),
            self.count(|s| matches!(s, Status::Match)),
            self.count(|s| matches!(s, Status::Known { .. })),
            self.count(|s| matches!(s, Status::Diverges { .. })),
            self.count(|s| matches!(s, Status::Failed { .. })),
            self.count(|s| matches!(s, Status::Skipped { .. })),
            self.count(|s| matches!(s, Status::Unavailable { .. })),
        )
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# loopwatch conformance\n");
        let _ = writeln!(out, "{}.\n", self.summary());
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
                Status::Unavailable { reason } => format!("n/a: {reason}"),
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

    /// A compact terminal view: one line per scenario × watcher, one mark per backend
    /// (`ok`, `known`, `DIFF`, `FAIL`; `-` for a watcher that CPython version does not
    /// have, `n/a` for a CPython version that is not installed).
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
                .map(|c| format!("{}:{}", c.backend, c.status.mark()))
                .collect();
            let _ = writeln!(out, "{scenario:<40} {watcher:<10} {}", marks.join(" "));
        }
        out
    }

    /// The matrix as a JUnit XML report: one test suite per backend, one test case
    /// per scenario × watcher; a new divergence is a `<failure>`, a failed run an
    /// `<error>`, a cell that did not run `<skipped>`.
    pub fn junit(&self) -> String {
        let mut backends: Vec<&str> = Vec::new();
        for cell in &self.cells {
            if !backends.contains(&cell.backend.as_str()) {
                backends.push(&cell.backend);
            }
        }
        let counts = |cells: &[&Cell]| {
            let count =
                |pick: fn(&Status) -> bool| cells.iter().filter(|c| pick(&c.status)).count();
            format!(
                "tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\"",
                cells.len(),
                count(|s| matches!(s, Status::Diverges { .. })),
                count(|s| matches!(s, Status::Failed { .. })),
                count(|s| !s.ran()),
            )
        };
        let all: Vec<&Cell> = self.cells.iter().collect();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"loopwatch conformance\" {}>",
            counts(&all)
        );
        for backend in backends {
            let cells: Vec<&Cell> = self.cells.iter().filter(|c| c.backend == backend).collect();
            let _ = writeln!(
                out,
                "  <testsuite name=\"{}\" {}>",
                xml_escape(backend),
                counts(&cells)
            );
            for cell in cells {
                let _ = write!(
                    out,
                    "    <testcase classname=\"loopwatch.{}\" name=\"{} / {} ({})\"",
                    xml_escape(backend),
                    xml_escape(&cell.scenario),
                    xml_escape(&cell.watcher),
                    xml_escape(&cell.clauses.join(", "))
                );
                match &cell.status {
                    Status::Match => out.push_str("/>\n"),
                    Status::Known { reason } => {
                        let _ = writeln!(
                            out,
                            ">\n      <system-out>known divergence: {}</system-out>\n    </testcase>",
                            xml_escape(reason)
                        );
                    }
                    Status::Skipped { reason } | Status::Unavailable { reason } => {
                        let _ = writeln!(
                            out,
                            ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                            xml_escape(reason)
                        );
                    }
                    Status::Diverges { expected, got } => {
                        let _ = writeln!(
                            out,
                            ">\n      <failure type=\"divergence\" message=\"the trace differs from loopwatch's on the real OS\">{}</failure>\n    </testcase>",
                            xml_escape(&trace_diff(expected, got))
                        );
                    }
                    Status::Failed { error } => {
                        let _ = writeln!(
                            out,
                            ">\n      <error type=\"run failed\" message=\"{}\">{}</error>\n    </testcase>",
                            xml_escape(error.lines().next().unwrap_or("")),
                            xml_escape(error)
                        );
                    }
                }
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }
}

/// `text` for an XML attribute or text node: the five special characters as
/// entities, and the control characters XML 1.0 does not allow dropped.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Runs the matrix, telling `progress` about its phases ("OS and simulator runs",
/// "CPython runs"). Must be called from the process's main thread (the real-OS
/// backend needs it); simulator runs and interpreters run in worker threads
/// ([`Options::jobs`], [`Options::cpython_jobs`]).
///
/// # Errors
///
/// The scenarios or the ratchet file cannot be read or are not valid.
pub fn check(options: &Options, progress: &dyn Progress) -> Result<Matrix, Error> {
    let scenarios = crate::scenario::load(options.scenarios.as_deref())?;
    let known = load_divergences(options.divergences.as_deref())?;
    let mut used = vec![false; known.len()];
    let mut matrix = Matrix::default();
    let rows = ours(&scenarios, options, &known, progress);
    for row in &rows {
        let cell = |backend: &str, status: Status| Cell {
            scenario: row.scenario.name.clone(),
            clauses: row.scenario.clauses.clone(),
            watcher: row.watcher.to_string(),
            backend: backend.to_string(),
            status,
        };
        match &row.os {
            Ok(_) => {
                matrix.cells.push(cell("os", Status::Match));
                let (status, known_at) = row.sim.clone();
                if let Some(at) = known_at {
                    used[at] = true;
                }
                matrix.cells.push(cell("sim", status));
            }
            Err(error) => matrix.cells.push(cell(
                "os",
                Status::Failed {
                    error: error.clone(),
                },
            )),
        }
    }
    let mut judged: BTreeSet<String> = BTreeSet::from(["os".to_string(), "sim".to_string()]);
    if let Some(pythons) = &options.cpython {
        for python in pythons.iter() {
            judged.insert(python.label());
        }
        let cells = theirs(&rows, pythons, options, &known, &mut used, progress);
        matrix.cells.extend(cells);
    }
    let ran: BTreeSet<(&str, &str)> = rows
        .iter()
        .filter(|r| r.os.is_ok())
        .map(|r| (r.scenario.name.as_str(), r.watcher.as_str()))
        .collect();
    // An entry can be judged stale only if its scenario ran and every backend it
    // covers did.
    matrix.stale = known
        .iter()
        .zip(&used)
        .filter(|(k, used)| {
            let covered = if k.backend == "cpython*" {
                CPYTHON_MINORS
                    .into_iter()
                    .all(|m| judged.contains(&format!("cpython3.{m}")))
            } else {
                judged.contains(&k.backend)
            };
            !**used && covered && ran.contains(&(k.scenario.as_str(), k.watcher.as_str()))
        })
        .map(|(k, _)| k.clone())
        .collect();
    matrix.references = rows
        .into_iter()
        .filter_map(|row| {
            let trace = row.os.ok()?;
            Some(((row.scenario.name.clone(), row.watcher), trace))
        })
        .collect();
    Ok(matrix)
}

/// One scenario × watcher on loopwatch's two backends.
struct Row<'a> {
    scenario: &'a Scenario,
    watcher: WatcherName,
    /// The real OS's trace (the reference), or why there is none.
    os: Result<Vec<String>, String>,
    /// The simulator's verdict over the seeds, with the ratchet entry it used.
    sim: (Status, Option<usize>),
}

/// loopwatch on the real OS (the reference, on this thread) and on the simulator's
/// seeds (in worker threads, as each reference comes).
fn ours<'a>(
    scenarios: &'a [Scenario],
    options: &Options,
    known: &[KnownDivergence],
    progress: &dyn Progress,
) -> Vec<Row<'a>> {
    let pairs: Vec<(&Scenario, WatcherName)> = scenarios
        .iter()
        .flat_map(|s| s.all_watchers().into_iter().map(move |w| (s, w)))
        .collect();
    progress.phase("OS and simulator runs", pairs.len());
    let mut rows: Vec<Row<'a>> = pairs
        .iter()
        .map(|&(scenario, watcher)| Row {
            scenario,
            watcher,
            os: Err("not run".into()),
            sim: (
                Status::Skipped {
                    reason: "no reference".into(),
                },
                None,
            ),
        })
        .collect();
    let mut references: Vec<Result<Vec<String>, String>> = Vec::new();
    let sims = crate::parallel::beside_main(
        crate::parallel::Work::Simulations,
        options.jobs,
        |submit| {
            for (index, &(scenario, watcher)) in pairs.iter().enumerate() {
                match run(scenario, watcher, &Backend::Os) {
                    Ok(output) => {
                        submit(index, (scenario, watcher, output.trace.clone()));
                        references.push(Ok(output.trace));
                    }
                    Err(error) => {
                        references.push(Err(error.to_string()));
                        progress.step(&format!("{} / {watcher}", scenario.name));
                    }
                }
            }
        },
        |(scenario, watcher, reference): (&Scenario, WatcherName, Vec<String>)| {
            let verdict = sim_seeds(scenario, watcher, &reference, options.seeds, known);
            progress.step(&format!("{} / {watcher}", scenario.name));
            verdict
        },
    );
    for (row, reference) in rows.iter_mut().zip(references) {
        row.os = reference;
    }
    for (index, verdict) in sims {
        rows[index].sim = verdict;
    }
    rows
}

/// The simulator must agree with the real OS on every seed.
fn sim_seeds(
    scenario: &Scenario,
    watcher: WatcherName,
    reference: &[String],
    seeds: u64,
    known: &[KnownDivergence],
) -> (Status, Option<usize>) {
    let mut verdict = (Status::Match, None);
    for seed in 0..seeds {
        let got = match run(scenario, watcher, &Backend::Sim(seed)) {
            Ok(output) => output.trace,
            Err(error) => {
                return (
                    Status::Failed {
                        error: error.to_string(),
                    },
                    None,
                );
            }
        };
        match judge(scenario, watcher, "sim", reference, got, known) {
            (Status::Diverges { expected, got }, _) => {
                return (
                    Status::Failed {
                        error: format!(
                            "seed {seed} differs from the OS; replay: {}\n{}",
                            scenario.replay_command(watcher, seed),
                            trace_diff(&expected, &got)
                        ),
                    },
                    None,
                );
            }
            known @ (Status::Known { .. }, _) => verdict = known,
            _ => {}
        }
    }
    verdict
}

/// The CPython cells of every row whose reference exists.
fn theirs(
    rows: &[Row<'_>],
    pythons: &Pythons,
    options: &Options,
    known: &[KnownDivergence],
    used: &mut [bool],
    progress: &dyn Progress,
) -> Vec<Cell> {
    let mut jobs = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        if row.os.is_err() {
            continue;
        }
        for python in pythons.iter() {
            if python.minor >= row.watcher.since_cpython() {
                jobs.push((index, python.clone()));
            }
        }
    }
    if !jobs.is_empty() {
        progress.phase(
            &format!("CPython runs ({}: {} runs)", pythons.versions(), jobs.len()),
            jobs.len(),
        );
    }
    let results = crate::parallel::map(
        crate::parallel::Work::Processes,
        &jobs,
        options.cpython_jobs,
        |(index, python)| {
            let row = &rows[*index];
            let result = run(row.scenario, row.watcher, &Backend::CPython(python.clone()));
            progress.step(&format!(
                "{} / {} on {}",
                row.scenario.name,
                row.watcher,
                python.label()
            ));
            result
        },
    );
    let mut results: BTreeMap<(usize, u32), Result<crate::RunOutput, Error>> = jobs
        .iter()
        .map(|(index, python)| (*index, python.minor))
        .zip(results)
        .collect();
    let mut cells = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let Ok(reference) = &row.os else { continue };
        for minor in CPYTHON_MINORS {
            let backend = format!("cpython3.{minor}");
            let status = if minor < row.watcher.since_cpython() {
                Status::Skipped {
                    reason: format!(
                        "CPython 3.{minor} has no {} watcher in this form",
                        row.watcher
                    ),
                }
            } else {
                match results.remove(&(index, minor)) {
                    None => Status::Unavailable {
                        reason: format!("no CPython 3.{minor} found"),
                    },
                    Some(Err(error)) => Status::Failed {
                        error: error.to_string(),
                    },
                    Some(Ok(output)) => match output.skipped {
                        Some(reason) => Status::Skipped { reason },
                        None => {
                            let (status, known_at) = judge(
                                row.scenario,
                                row.watcher,
                                &backend,
                                reference,
                                output.trace,
                                known,
                            );
                            if let Some(at) = known_at {
                                used[at] = true;
                            }
                            status
                        }
                    },
                }
            };
            cells.push(Cell {
                scenario: row.scenario.name.clone(),
                clauses: row.scenario.clauses.clone(),
                watcher: row.watcher.to_string(),
                backend,
                status,
            });
        }
    }
    cells
}

/// Compares `got` with the reference, consulting the ratchet: the status, and the
/// index of the ratchet entry that explains a difference.
fn judge(
    scenario: &Scenario,
    watcher: WatcherName,
    backend: &str,
    reference: &[String],
    got: Vec<String>,
    known: &[KnownDivergence],
) -> (Status, Option<usize>) {
    if got == reference {
        return (Status::Match, None);
    }
    // Waitid is run against CPython's Safe (its contract), so Safe's entries explain
    // its differences too: they are about what CPython's Safe does (3.7 has no
    // `is_active`), not about how loopwatch's pass finds exits. No scenario's result
    // depends on Safe's O(n) pass: each gives Waitid Safe's trace on both kernels.
    match known
        .iter()
        .position(|k| k.covers(&scenario.name, watcher.contract().as_str(), backend))
    {
        Some(index) => (
            Status::Known {
                reason: known[index].reason.clone(),
            },
            Some(index),
        ),
        None => (
            Status::Diverges {
                expected: reference.to_vec(),
                got,
            },
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_ratchet_file_parses() {
        // Goal: the ratchet file built into the crate is valid.
        assert!(!load_divergences(None).unwrap().is_empty());
    }

    #[test]
    fn junit_escapes_what_xml_reserves() {
        // Goal: trace lines and reasons with XML's special characters and control
        // characters come out as well-formed text.
        assert_eq!(
            xml_escape("a<b & \"c\" 'd'>\u{1}\n"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;&#10;"
        );
        let matrix = Matrix {
            cells: vec![Cell {
                scenario: "s<1>".into(),
                clauses: vec!["R-1".into()],
                watcher: "safe".into(),
                backend: "cpython3.12".into(),
                status: Status::Diverges {
                    expected: vec!["exit a 3".into()],
                    got: vec!["exit a <&>".into()],
                },
            }],
            ..Matrix::default()
        };
        let xml = matrix.junit();
        assert!(xml.contains("name=\"s&lt;1&gt; / safe (R-1)\""), "{xml}");
        assert!(xml.contains("exit a &lt;&amp;&gt;"), "{xml}");
        assert!(xml.contains("failures=\"1\""), "{xml}");
    }

    #[test]
    fn a_failure_names_the_scenario_clauses_and_lines() {
        // Goal: a diverging cell explains itself: scenario, watcher, backend,
        // clauses, and both traces with the first differing line marked.
        let cell = Cell {
            scenario: "two-children".into(),
            clauses: vec!["S-5".into(), "R-1".into()],
            watcher: "safe".into(),
            backend: "sim".into(),
            status: Status::Diverges {
                expected: vec!["exit a 3".into(), "exit b -15".into()],
                got: vec!["exit a 3".into(), "exit b 143".into()],
            },
        };
        let text = cell.failure().unwrap();
        assert!(
            text.starts_with("two-children / safe on sim (clauses S-5, R-1)"),
            "{text}"
        );
        assert!(text.contains("    > exit b -15"), "{text}");
        assert!(text.contains("    > exit b 143"), "{text}");
        assert!(text.contains("      exit a 3"), "{text}");
    }
}
