//! `loopwatch`: run the conformance matrix, or one scenario on one backend.
//!
//! ```text
//! cargo loopwatch check [--seeds N] [--jobs N] [--python PATH]… [--no-cpython] [--no-zoo] [--junit PATH]
//! cargo loopwatch scenario run SCENARIO --backend os|sim|cpython3.X --watcher W [--seed S]
//! cargo loopwatch scenario diff SCENARIO [--watcher W]   (also: cargo loopwatch diff SCENARIO)
//! cargo loopwatch scenario list
//! cargo loopwatch explore --watcher W [--seeds N] [--shard i/n] [--faults all|eintr,…] [--programs N] [--mutant M] [--jobs N]
//! cargo loopwatch replay SCENARIO --watcher W --seed S [--faults …] [--mutant M]
//! cargo loopwatch hunt --watcher W --case N [--mutant M] [--out DIR]
//! cargo loopwatch regression FILE
//! cargo loopwatch zoo [--mutant M]… [--watcher W] [--runs N] [--seconds S] [--no-real] [--regressions DIR] [--jobs N]
//! ```
//!
//! Exit codes: 0 when everything ran and matched (known divergences and cells that
//! did not run count as matched), 1 for a divergence, a failed check or a harness
//! failure, 2 for bad input.

mod hunting;
mod ui;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::{EnumValueParser, PossibleValue, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use loopwatch::zoo::Mutant;
use loopwatch_conformance::explore::Shard;
use loopwatch_conformance::matrix::{self, Matrix, Options, Status};
use loopwatch_conformance::policy_suite;
use loopwatch_conformance::progress::Progress as _;
use loopwatch_conformance::scenario::{self, Scenario, WatcherName};
use loopwatch_conformance::zoo::{self, Bug};
use loopwatch_conformance::{Backend, Error, Pythons, run};

use crate::ui::Ui;

const ABOUT: &str =
    "Conformance of asyncio child watchers: loopwatch on the OS, on the simulator, and CPython";

const AFTER_HELP: &str = "\
Exit codes: 0 everything ran and matched (known divergences, and cells that did not \
run, count as matched); 1 a new divergence, a failed check or run; 2 bad input.

Scenarios: the ones built in (`loopwatch scenario list`), or a directory with \
--scenarios. A SCENARIO argument is a file, or the name of a built-in scenario.

LOOPWATCH_LOG (else RUST_LOG) filters what loopwatch logs on stderr (`warn`, \
`asyncio=info`, …). Default: `warn`; `error` for check, whose scenarios provoke \
asyncio's warnings on purpose, hundreds of times; `off` for explore, hunt and zoo, \
whose runs provoke them by the thousand.";

#[derive(Parser, Debug)]
#[command(name = "loopwatch", version, about = ABOUT, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which CPythons to compare with.
#[derive(Args, Debug, Clone)]
struct PythonArgs {
    /// A CPython 3.7–3.13 interpreter to compare with (repeatable), in addition to
    /// those found: under pyenv ($PYENV_ROOT or ~/.pyenv), and for the versions
    /// pyenv lacks, python3.7 … python3.13 on PATH.
    #[arg(long = "python", value_name = "PATH")]
    pythons: Vec<PathBuf>,
    /// Use only the interpreters given with --python: look neither under pyenv nor
    /// on PATH.
    #[arg(long)]
    no_python_discovery: bool,
}

impl PythonArgs {
    fn find(&self) -> Result<Pythons, Error> {
        Pythons::with(&self.pythons, !self.no_python_discovery)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every scenario × watcher on the real OS, the simulator and CPython 3.7–3.13,
    /// then the policy checks and the bug zoo. Writes target/loopwatch/report.md and
    /// report.json (and JUnit XML with --junit).
    Check {
        /// Simulator seeds per scenario and watcher.
        #[arg(long, default_value = "4", value_parser = count, allow_negative_numbers = true)]
        seeds: u64,
        /// Leave CPython out (no CPython cells).
        #[arg(long)]
        no_cpython: bool,
        #[command(flatten)]
        python: PythonArgs,
        /// A directory of scenario files instead of the built-in scenarios (the zoo
        /// still runs on the built-in ones).
        #[arg(long, value_name = "DIR")]
        scenarios: Option<PathBuf>,
        /// Check one watcher of the bug zoo instead of the built-in ones: exits 1,
        /// naming what it broke.
        #[arg(long, value_enum, value_name = "BUG")]
        zoo: Option<Bug>,
        /// Skip the bug zoo (the pass checking that each broken watcher is caught).
        #[arg(long, conflicts_with = "zoo")]
        no_zoo: bool,
        /// How many simulator runs and CPython interpreters run at once (default:
        /// simulator runs, one per CPU; interpreters, 6). Runs on the real OS are
        /// not parallel: they need the main thread and go one at a time, beside the
        /// simulator runs.
        #[arg(long, value_name = "N", value_parser = jobs)]
        jobs: Option<usize>,
        /// Also write the matrix as a JUnit XML report to PATH.
        #[arg(long, value_name = "PATH")]
        junit: Option<PathBuf>,
    },
    /// Seeded exploration on the simulator: every scenario of WATCHER over seeds,
    /// under faults, and generated programs, every run under the invariant checker.
    /// JSON lines out, one per run; a summary on stderr.
    #[command(after_help = "\
Every run is judged by the invariant checker (each child reported once with its true \
returncode or the documented alternative, no removed handler called, no child stolen, \
no signal to a reused pid, no leak, progress). With only eintr, spurious, other-thread \
and lag, each seed's trace must also equal the real OS's. With a fault that may change \
traces (the others), how its trace differs is recorded as `changed`. `--faults all` \
switches every fault on but pidfd-einval, wait-peek-einval and foreign-reap-exit; \
`--programs N` adds N generated programs, each with its own \
faults and seed.")]
    Explore {
        /// The watcher.
        #[arg(long, value_enum)]
        watcher: WatcherName,
        /// Seeds of the whole sweep (0..N).
        #[arg(long, default_value = "100", value_parser = count, allow_negative_numbers = true)]
        seeds: u64,
        /// This run's part of the sweep, i/n (seeds with seed % n == i).
        #[arg(long, default_value = "0/1", value_name = "i/n")]
        shard: Shard,
        /// Faults to switch on (comma-separated), or `all`.
        #[arg(long, value_enum, value_delimiter = ',', value_name = "FAULTS")]
        faults: Vec<hunting::FaultArg>,
        /// Generated programs to run after the scenarios (0..N, sharded as the seeds).
        #[arg(long, default_value = "0", value_parser = count, allow_negative_numbers = true)]
        programs: u64,
        /// A mutant of the zoo to switch on in every run (see `loopwatch zoo`).
        #[arg(long, value_parser = hunting::mutant, value_name = "MUTANT")]
        mutant: Option<Mutant>,
        /// A directory of scenario files instead of the built-in scenarios.
        #[arg(long, value_name = "DIR")]
        scenarios: Option<PathBuf>,
        /// How many simulator runs go at once (default: one per CPU). The reference
        /// runs on the real OS go one at a time, first.
        #[arg(long, value_name = "N", value_parser = jobs)]
        jobs: Option<usize>,
    },
    /// Re-runs one seed of SCENARIO on the simulator, prints the kernel trace and the
    /// invariants it breaks.
    Replay {
        /// The scenario: a file, or the name of a built-in scenario.
        scenario: PathBuf,
        /// The watcher.
        #[arg(long, value_enum)]
        watcher: WatcherName,
        /// The seed.
        #[arg(long, value_parser = seed, allow_negative_numbers = true)]
        seed: u64,
        /// Faults, as given to explore.
        #[arg(long, value_enum, value_delimiter = ',', value_name = "FAULTS")]
        faults: Vec<hunting::FaultArg>,
        /// A mutant of the zoo to switch on.
        #[arg(long, value_parser = hunting::mutant, value_name = "MUTANT")]
        mutant: Option<Mutant>,
    },
    /// Runs generated program CASE for WATCHER; if it breaks an invariant, shrinks it
    /// and writes the shrunk program as a regression file (a scenario with its seed and
    /// faults).
    Hunt {
        /// The watcher.
        #[arg(long, value_enum)]
        watcher: WatcherName,
        /// The generated program's number.
        #[arg(long, value_parser = seed, allow_negative_numbers = true)]
        case: u64,
        /// A mutant of the zoo to switch on.
        #[arg(long, value_parser = hunting::mutant, value_name = "MUTANT")]
        mutant: Option<Mutant>,
        /// Where to write the regression file.
        #[arg(long, value_name = "DIR", default_value = "target/loopwatch/hunt")]
        out: PathBuf,
    },
    /// Replays a regression file (from `hunt` or `zoo`): exits 0 when its run breaks
    /// exactly the invariants the file names.
    Regression {
        /// The file.
        file: PathBuf,
    },
    /// The bug zoo: hunts each mutant with every technique within a budget, and the
    /// real watchers with ten times the budget; one row per mutant.
    #[command(after_help = "\
Exit 1 if a mutant escapes every technique, or a real watcher fails one.")]
    Zoo {
        /// Only these mutants (repeatable; default: every one, or with --watcher every
        /// one whose code that watcher runs).
        #[arg(long, value_parser = hunting::mutant, value_name = "MUTANT")]
        mutant: Vec<Mutant>,
        /// Hunt each mutant inside this watcher instead of its own (Auto runs Pidfd's
        /// and Threaded's code as its rungs; every watcher runs the subprocesses'), and
        /// run only this watcher for real.
        #[arg(long, value_enum, value_name = "WATCHER")]
        watcher: Option<WatcherName>,
        /// Runs each technique may make per mutant.
        #[arg(long, default_value = "10000", value_parser = count, allow_negative_numbers = true)]
        runs: u64,
        /// Seconds each technique may take per mutant.
        #[arg(long, default_value = "60", value_parser = count, allow_negative_numbers = true)]
        seconds: u64,
        /// Skip the real watchers' ten-times-budget run.
        #[arg(long)]
        no_real: bool,
        /// Write each mutant's shrunk program as a regression file into DIR.
        #[arg(long, value_name = "DIR")]
        regressions: Option<PathBuf>,
        /// How many simulator runs go at once (default: one per CPU).
        #[arg(long, value_name = "N", value_parser = jobs)]
        jobs: Option<usize>,
    },
    /// Runs SCENARIO on loopwatch (OS) and every CPython found, and shows where
    /// traces differ (the same as `scenario diff`).
    Diff(DiffArgs),
    /// One scenario.
    Scenario {
        #[command(subcommand)]
        command: ScenarioCommand,
    },
}

#[derive(Args, Debug)]
struct DiffArgs {
    /// The scenario: a file, or the name of a built-in scenario.
    scenario: PathBuf,
    /// Only this watcher (default: all the scenario lists).
    #[arg(long, value_enum)]
    watcher: Option<WatcherName>,
    #[command(flatten)]
    python: PythonArgs,
}

#[derive(Subcommand, Debug)]
enum ScenarioCommand {
    /// Runs SCENARIO on one backend and prints its trace as JSON, one line per
    /// watcher.
    Run {
        /// The scenario: a file, or the name of a built-in scenario.
        scenario: PathBuf,
        /// Where to run it (a cpython3.X must be installed, or given with --python).
        #[arg(long, default_value = "os", value_parser = BackendParser)]
        backend: BackendName,
        /// The watcher (default: every watcher the scenario lists).
        #[arg(long, value_enum)]
        watcher: Option<WatcherName>,
        /// The simulator's seed.
        #[arg(long, default_value = "0", value_parser = seed, allow_negative_numbers = true)]
        seed: u64,
        #[command(flatten)]
        python: PythonArgs,
    },
    /// Runs SCENARIO on loopwatch (OS) and every CPython found, and shows where
    /// traces differ.
    Diff(DiffArgs),
    /// Lists the built-in scenarios.
    List,
}

/// A backend as named on the command line, before its interpreter is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BackendName {
    Os,
    Sim,
    CPython(u32),
}

impl BackendName {
    const ALL: [BackendName; 9] = [
        BackendName::Os,
        BackendName::Sim,
        BackendName::CPython(7),
        BackendName::CPython(8),
        BackendName::CPython(9),
        BackendName::CPython(10),
        BackendName::CPython(11),
        BackendName::CPython(12),
        BackendName::CPython(13),
    ];

    fn resolve(self, seed: u64, python: &PythonArgs) -> Result<Backend, Error> {
        match self {
            BackendName::Os => Ok(Backend::Os),
            BackendName::Sim => Ok(Backend::Sim(seed)),
            BackendName::CPython(minor) => {
                let pythons = python.find()?;
                pythons.require(minor).cloned().map(Backend::CPython)
            }
        }
    }
}

impl ValueEnum for BackendName {
    fn value_variants<'a>() -> &'a [Self] {
        &BackendName::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            BackendName::Os => PossibleValue::new("os").help("loopwatch on the real OS"),
            BackendName::Sim => {
                PossibleValue::new("sim").help("loopwatch on the simulator, from --seed")
            }
            BackendName::CPython(minor) => {
                const NAMES: [&str; 7] = [
                    "cpython3.7",
                    "cpython3.8",
                    "cpython3.9",
                    "cpython3.10",
                    "cpython3.11",
                    "cpython3.12",
                    "cpython3.13",
                ];
                let name = NAMES.get(minor.checked_sub(7)? as usize)?;
                PossibleValue::new(*name).help("this CPython, if installed or given with --python")
            }
        })
    }
}

/// `os`, `sim`, or `cpython3.N` for any N (refused later, with the interpreters
/// found, if there is none); clap's suggestions for anything else.
#[derive(Clone, Debug)]
struct BackendParser;

impl TypedValueParser for BackendParser {
    type Value = BackendName;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<BackendName, clap::Error> {
        let minor = value
            .to_str()
            .and_then(|text| text.strip_prefix("cpython3."))
            .and_then(|minor| minor.parse().ok());
        match minor {
            Some(minor) => Ok(BackendName::CPython(minor)),
            None => EnumValueParser::<BackendName>::new().parse_ref(command, arg, value),
        }
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            BackendName::ALL
                .iter()
                .filter_map(ValueEnum::to_possible_value),
        ))
    }
}

/// A seed: a whole number from 0.
fn seed(text: &str) -> Result<u64, String> {
    whole(text, "a seed")
}

/// A number of seeds: a whole number from 0.
fn count(text: &str) -> Result<u64, String> {
    whole(text, "a number of seeds")
}

fn whole(text: &str, what: &str) -> Result<u64, String> {
    text.parse().map_err(|_| {
        if text.trim_start().starts_with('-') {
            format!(
                "{what} cannot be negative: use a whole number from 0 to {}",
                u64::MAX
            )
        } else {
            format!("{what} is a whole number from 0 to {}", u64::MAX)
        }
    })
}

/// A number of parallel runs: 1 or more.
fn jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("the number of jobs is a whole number from 1".into()),
    }
}

/// How a command ended, when it could run at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Everything ran and matched.
    Pass,
    /// A divergence, a failed check or run.
    Fail,
}

impl Outcome {
    fn from_ok(ok: bool) -> Outcome {
        if ok { Outcome::Pass } else { Outcome::Fail }
    }
}

fn main() -> ExitCode {
    // As a Unix filter: end quietly when the reader of stdout goes away (`| head`),
    // rather than panic on EPIPE, which Rust programs get with SIGPIPE ignored.
    use loopwatch::kernel::Signals as _;
    let _ = loopwatch::OsKernel.set_disposition(
        loopwatch::kernel::Signal::SIGPIPE,
        loopwatch::kernel::Disposition::Default,
    );
    let cli = Cli::parse();
    ui::init_logging(match cli.command {
        Command::Check { .. } => "error",
        // Their runs provoke asyncio's warnings and errors (a callback that panics on
        // purpose) by the thousand: the verdicts say what went wrong.
        Command::Explore { .. } | Command::Zoo { .. } | Command::Hunt { .. } => "off",
        _ => "warn",
    });
    match execute(cli.command) {
        Ok(Outcome::Pass) => ExitCode::SUCCESS,
        Ok(Outcome::Fail) => ExitCode::FAILURE,
        Err(error) => {
            ui::eprint_above(&format!("error: {error}\n"));
            ExitCode::from(error.exit_code())
        }
    }
}

fn execute(command: Command) -> Result<Outcome, Error> {
    match command {
        Command::Check {
            seeds,
            no_cpython,
            python,
            scenarios,
            zoo,
            no_zoo,
            jobs,
            junit,
        } => {
            let defaults = Options::default();
            let options = Options {
                scenarios,
                seeds,
                cpython: None,
                jobs: jobs.unwrap_or(defaults.jobs),
                cpython_jobs: jobs.unwrap_or(defaults.cpython_jobs),
                ..defaults
            };
            // Every argument is checked before anything runs.
            scenario::load(options.scenarios.as_deref())?;
            if let Some(path) = &junit {
                writable(path)?;
            }
            if let Some(bug) = zoo {
                return check_zoo(bug, &options);
            }
            let pythons = if no_cpython {
                None
            } else {
                Some(python.find()?)
            };
            check(
                Options {
                    cpython: pythons,
                    ..options
                },
                no_zoo,
                junit.as_deref(),
            )
        }
        Command::Explore {
            watcher,
            seeds,
            shard,
            faults,
            programs,
            mutant,
            scenarios,
            jobs,
        } => hunting::explore(hunting::ExploreArgs {
            watcher,
            seeds,
            shard,
            faults: hunting::faults(&faults),
            programs,
            mutant,
            scenarios,
            jobs: jobs.unwrap_or_else(|| Options::default().jobs),
        }),
        Command::Replay {
            scenario,
            watcher,
            seed,
            faults,
            mutant,
        } => hunting::replay(&scenario, watcher, seed, &hunting::faults(&faults), mutant),
        Command::Hunt {
            watcher,
            case,
            mutant,
            out,
        } => hunting::hunt(watcher, case, mutant, &out),
        Command::Regression { file } => hunting::regression(&file),
        Command::Zoo {
            mutant,
            watcher,
            runs,
            seconds,
            no_real,
            regressions,
            jobs,
        } => hunting::zoo(hunting::ZooArgs {
            mutants: mutant,
            watcher,
            budget: zoo::Budget {
                runs,
                time: std::time::Duration::from_secs(seconds),
            },
            real: !no_real,
            regressions,
            jobs: jobs.unwrap_or_else(|| Options::default().jobs),
        }),
        Command::Diff(args)
        | Command::Scenario {
            command: ScenarioCommand::Diff(args),
        } => diff(&args),
        Command::Scenario {
            command:
                ScenarioCommand::Run {
                    scenario,
                    backend,
                    watcher,
                    seed,
                    python,
                },
        } => {
            let scenario = scenario::find(&scenario)?;
            let backend = backend.resolve(seed, &python)?;
            let watchers = match watcher {
                Some(watcher) => vec![watcher],
                None => scenario.all_watchers(),
            };
            for watcher in watchers {
                let output = run(&scenario, watcher, &backend)?;
                // A watcher this backend does not have is reported as skipped, and
                // is not a failure.
                println!("{}", serde_json::to_string(&output).unwrap_or_default());
            }
            Ok(Outcome::Pass)
        }
        Command::Scenario {
            command: ScenarioCommand::List,
        } => {
            for scenario in scenario::builtin()? {
                let watchers: Vec<&str> = scenario.watchers.iter().map(|w| w.as_str()).collect();
                println!(
                    "{:<40} {:<40} {}",
                    scenario.name,
                    watchers.join(","),
                    scenario.description
                );
            }
            Ok(Outcome::Pass)
        }
    }
}

/// Refuses an output path whose directory does not exist, before anything runs.
fn writable(path: &Path) -> Result<(), Error> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    match dir {
        Some(dir) if !dir.is_dir() => Err(Error::BadArgument {
            argument: "--junit",
            message: format!("{}: no such directory", dir.display()),
        }),
        _ => Ok(()),
    }
}

/// `check`: the matrix, the policy checks, the reports and the zoo.
fn check(options: Options, no_zoo: bool, junit: Option<&Path>) -> Result<Outcome, Error> {
    let ui = Ui::new();
    match &options.cpython {
        None => ui.notice("CPython: left out (--no-cpython)"),
        Some(pythons) if pythons.is_empty() => {
            let looked = if pythons.looked().is_empty() {
                "discovery off (--no-python-discovery), none given with --python".to_string()
            } else {
                format!("looked in {}", pythons.looked().join(" and "))
            };
            ui.notice(&format!(
                "notice: no CPython found ({looked}); the CPython cells are n/a. Give one with --python PATH."
            ));
        }
        Some(pythons) => {
            let found: Vec<String> = pythons
                .iter()
                .map(|p| format!("3.{} ({})", p.minor, p.path.display()))
                .collect();
            ui.notice(&format!("CPython: {}", found.join(", ")));
            let missing: Vec<String> = matrix::CPYTHON_MINORS
                .filter(|m| pythons.get(*m).is_none())
                .map(|m| format!("3.{m}"))
                .collect();
            if !missing.is_empty() {
                ui.notice(&format!(
                    "notice: no CPython {} found; those cells are n/a",
                    missing.join(", ")
                ));
            }
        }
    }
    if options.scenarios.is_some() && !no_zoo {
        ui.notice("notice: the zoo runs on the built-in scenarios, not on --scenarios");
    }
    let mut result = matrix::check(&options, &ui)?;
    let checks = policy_suite::check_names().len();
    ui.phase("policy checks (default policy)", checks);
    let policy_cells = policy_suite::check_policy(&policy_suite::DefaultPolicy, options.seeds);
    let theirs = match &options.cpython {
        Some(pythons) => policy_suite::compare_with_cpython(&policy_cells, pythons),
        None => Vec::new(),
    };
    result.cells.extend(policy_cells);
    result.cells.extend(theirs);
    ui.finish();
    print!("{}", result.terminal());
    for cell in &result.cells {
        if let Some(failure) = cell.failure() {
            let label = match cell.status {
                Status::Diverges { .. } => "NEW DIVERGENCE",
                _ => "FAILED",
            };
            println!("{label} {failure}");
        }
    }
    for entry in &result.stale {
        println!(
            "stale ratchet entry (no longer diverges): {} / {} / {}",
            entry.scenario, entry.watcher, entry.backend
        );
    }
    println!("{}", result.summary());
    let written = write_reports(&result, junit)?;
    println!("report: {}", written.join(", "));
    let mut ok = result.ok();
    if !no_zoo {
        ok &= hunt(&options, &ui)?;
    }
    Ok(Outcome::from_ok(ok))
}

/// Writes report.md and report.json under target/loopwatch (and the JUnit report);
/// the absolute paths written.
fn write_reports(result: &Matrix, junit: Option<&Path>) -> Result<Vec<String>, Error> {
    let out = Path::new("target").join("loopwatch");
    let out = std::path::absolute(&out).unwrap_or(out);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let json = serde_json::to_string_pretty(result).unwrap_or_default();
    let mut files = vec![
        (out.join("report.md"), result.markdown()),
        (out.join("report.json"), json),
    ];
    if let Some(path) = junit {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        files.push((path, result.junit()));
    }
    let mut written = Vec::new();
    for (path, text) in files {
        std::fs::write(&path, text).map_err(io(&path))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// The bug zoo: each broken watcher must be caught by some scenario.
fn hunt(options: &Options, ui: &Ui) -> Result<bool, Error> {
    let found = zoo::hunt_with(options, ui)?;
    ui.finish();
    let mut ok = true;
    for (name, caught) in found {
        match caught.first() {
            Some(cell) => println!(
                "zoo: {name} caught by {} on {} (clauses {})",
                cell.scenario,
                cell.backend,
                cell.clauses.join(", ")
            ),
            None => {
                ok = false;
                println!("zoo: {name} SLIPPED THROUGH: no scenario caught it");
            }
        }
    }
    Ok(ok)
}

/// `check --zoo BUG`: the suite against one broken watcher; it fails when caught.
fn check_zoo(bug: Bug, options: &Options) -> Result<Outcome, Error> {
    let maker = zoo::ZooMaker {
        bug,
        like: WatcherName::Safe,
    };
    let ui = Ui::new();
    let scenarios = scenario::load(options.scenarios.as_deref())?;
    let total = scenarios
        .iter()
        .filter(|s| s.watchers.contains(&WatcherName::Safe))
        .count();
    ui.phase(
        &format!(
            "{} on the OS and the simulator",
            zoo::MakeWatcher::name(&maker)
        ),
        total,
    );
    let result = zoo::check_watcher_with(&maker, options, &ui)?;
    ui.finish();
    for cell in &result.cells {
        if let Some(failure) = cell.failure() {
            println!("{} breaks {failure}", zoo::MakeWatcher::name(&maker));
        }
    }
    println!(
        "{} checks of {}",
        result.cells.len(),
        zoo::MakeWatcher::name(&maker)
    );
    Ok(Outcome::from_ok(result.ok()))
}

/// `diff`: loopwatch on the OS against every CPython found.
fn diff(args: &DiffArgs) -> Result<Outcome, Error> {
    let scenario = scenario::find(&args.scenario)?;
    let pythons = args.python.find()?;
    let known = matrix::load_divergences(None)?;
    if pythons.is_empty() {
        ui::eprint_above(
            "notice: no CPython found; nothing to compare with (give one with --python PATH)\n",
        );
    }
    let watchers = match args.watcher {
        Some(watcher) => vec![watcher],
        None => scenario.all_watchers(),
    };
    let mut same = true;
    for watcher in watchers {
        same &= diff_one(&scenario, watcher, &pythons, &known)?;
    }
    Ok(Outcome::from_ok(same))
}

fn diff_one(
    scenario: &Scenario,
    watcher: WatcherName,
    pythons: &Pythons,
    known: &[matrix::KnownDivergence],
) -> Result<bool, Error> {
    let ours = run(scenario, watcher, &Backend::Os)?;
    println!("{watcher} loopwatch: {:?}", ours.trace);
    let mut same = true;
    for minor in matrix::CPYTHON_MINORS {
        let label = format!("cpython3.{minor}");
        if minor < watcher.since_cpython() {
            println!("  {label}: -  (no {watcher} watcher in this form)");
            continue;
        }
        let Some(python) = pythons.get(minor) else {
            println!("  {label}: n/a (not found)");
            continue;
        };
        let theirs = run(scenario, watcher, &Backend::CPython(python.clone()))?;
        if let Some(reason) = theirs.skipped {
            println!("  {label}: skipped ({reason})");
        } else if theirs.trace == ours.trace {
            println!("  {label}: same");
        } else if let Some(entry) = known
            .iter()
            .find(|k| k.covers(&scenario.name, watcher.contract().as_str(), &label))
        {
            println!(
                "  {label}: known divergence ({}): {:?}",
                entry.reason, theirs.trace
            );
        } else {
            same = false;
            println!("  {label}: {:?}", theirs.trace);
        }
    }
    Ok(same)
}
