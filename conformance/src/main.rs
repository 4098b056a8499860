//! `loopwatch`: run the conformance matrix, or one scenario on one backend.
//!
//! ```text
//! cargo loopwatch check [--seeds N] [--no-cpython]
//! cargo loopwatch scenario run FILE --backend os|sim|cpython3.X --watcher W [--seed S]
//! cargo loopwatch scenario diff FILE [--watcher W]   (also: cargo loopwatch diff FILE)
//! cargo loopwatch explore --watcher W [--seeds N] [--shard i/n] [--faults eintr,spurious]
//! cargo loopwatch replay FILE --watcher W --seed S [--faults …]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use loopwatch_conformance::explore::{self, Fault, Shard};
use loopwatch_conformance::matrix::{self, Options, Status};
use loopwatch_conformance::scenario::{Scenario, WatcherName};
use loopwatch_conformance::{Backend, run};

#[derive(Parser, Debug)]
#[command(
    name = "loopwatch",
    about = "Conformance of asyncio child watchers: loopwatch on the OS, on the simulator, and CPython"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every scenario × watcher on the OS, the simulator and CPython 3.7–3.13; writes
    /// target/loopwatch/report.md and report.json; fails on a new divergence.
    Check {
        /// Simulator seeds per scenario and watcher.
        #[arg(long, default_value_t = 4)]
        seeds: u64,
        /// Skip the CPython comparison.
        #[arg(long)]
        no_cpython: bool,
        /// Scenario directory (default: the crate's scenarios/).
        #[arg(long)]
        scenarios: Option<PathBuf>,
        /// Check a watcher of the bug zoo instead of the built-in ones
        /// (shell-returncode, no-replace, lost-wakeup): fails, naming what it broke.
        #[arg(long)]
        zoo: Option<String>,
    },
    /// Seeded exploration on the simulator: every scenario of WATCHER over seeds,
    /// checking that each trace equals the real OS's; JSON lines out.
    Explore {
        /// The watcher.
        #[arg(long)]
        watcher: String,
        /// Seeds of the whole sweep (0..N).
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// This run's part of the sweep, i/n (seeds with seed % n == i).
        #[arg(long, default_value = "0/1")]
        shard: String,
        /// Faults to switch on: eintr, spurious, other-thread, lag (comma-separated).
        #[arg(long, default_value = "")]
        faults: String,
        /// Scenario directory (default: the crate's scenarios/).
        #[arg(long)]
        scenarios: Option<PathBuf>,
    },
    /// Re-runs one seed of FILE on the simulator and prints the kernel trace.
    Replay {
        /// The scenario file.
        file: PathBuf,
        /// The watcher.
        #[arg(long)]
        watcher: String,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Faults, as given to explore.
        #[arg(long, default_value = "")]
        faults: String,
    },
    /// Runs FILE on loopwatch (OS) and every CPython and shows where traces differ
    /// (the same as `scenario diff`).
    Diff {
        /// The scenario file.
        file: PathBuf,
        /// Only this watcher (default: all the scenario lists).
        #[arg(long)]
        watcher: Option<String>,
    },
    /// One scenario.
    Scenario {
        #[command(subcommand)]
        command: ScenarioCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ScenarioCommand {
    /// Runs FILE on one backend and prints its trace as JSON.
    Run {
        /// The scenario file.
        file: PathBuf,
        /// os, sim or cpython3.X.
        #[arg(long, default_value = "os")]
        backend: String,
        /// The watcher (default: the scenario's first).
        #[arg(long)]
        watcher: Option<String>,
        /// The simulator's seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Runs FILE on loopwatch (OS) and every CPython, and shows where traces differ.
    Diff {
        /// The scenario file.
        file: PathBuf,
        /// Only this watcher (default: all the scenario lists).
        #[arg(long)]
        watcher: Option<String>,
    },
}

fn watchers(scenario: &Scenario, chosen: Option<&str>) -> Result<Vec<WatcherName>, String> {
    match chosen {
        Some(name) => Ok(vec![WatcherName::parse(name)?]),
        None => Ok(scenario.watchers.clone()),
    }
}

/// `check --zoo NAME`: the suite against one broken watcher; false when it is caught.
fn check_zoo(name: &str, options: &Options) -> Result<bool, String> {
    use loopwatch_conformance::zoo::{Bug, MakeWatcher, ZooMaker, check_watcher};
    let bug = Bug::ALL
        .into_iter()
        .find(|b| b.name().strip_prefix("zoo-") == Some(name))
        .ok_or_else(|| {
            let names: Vec<&str> = Bug::ALL
                .iter()
                .filter_map(|b| b.name().strip_prefix("zoo-"))
                .collect();
            format!("unknown zoo watcher {name:?}; valid: {}", names.join(", "))
        })?;
    let maker = ZooMaker {
        bug,
        like: WatcherName::Safe,
    };
    let result = check_watcher(&maker, options)?;
    let mut clean = true;
    for cell in &result.cells {
        if let Status::Diverges { expected, got } = &cell.status {
            clean = false;
            println!(
                "{} breaks {} in scenario {} on {}:\n  expected {expected:?}\n  got      {got:?}",
                maker.name(),
                cell.clauses.join(", "),
                cell.scenario,
                cell.backend
            );
        }
    }
    println!("{} checks of {}", result.cells.len(), maker.name());
    Ok(clean)
}

/// `[=====>    ]  120/249`: a bar for the terminal, on stderr.
fn progress_bar(done: usize, total: usize) -> String {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let mut bar = "=".repeat(filled);
    if filled < WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat(WIDTH - filled - 1));
    }
    format!("[{bar}] {done:>4}/{total}")
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
    match execute(cli.command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn execute(command: Command) -> Result<bool, String> {
    match command {
        Command::Diff { file, watcher } => execute(Command::Scenario {
            command: ScenarioCommand::Diff { file, watcher },
        }),
        Command::Explore {
            watcher,
            seeds,
            shard,
            faults,
            scenarios,
        } => {
            // Check every argument before producing any output.
            let watcher = WatcherName::parse(&watcher)?;
            let shard = Shard::parse(&shard)?;
            let faults = Fault::parse_list(&faults)?;
            let dir =
                scenarios.unwrap_or_else(|| loopwatch_conformance::crate_dir().join("scenarios"));
            loopwatch_conformance::scenario::load_dir(&dir)?;
            let mut ok = true;
            explore::explore(&dir, watcher, seeds, shard, &faults, |verdict| {
                ok &= verdict.ok;
                println!("{}", serde_json::to_string(verdict).unwrap_or_default());
            })?;
            Ok(ok)
        }
        Command::Replay {
            file,
            watcher,
            seed,
            faults,
        } => {
            let watcher = WatcherName::parse(&watcher)?;
            let faults = Fault::parse_list(&faults)?;
            let scenario = Scenario::load(&file)?;
            let (trace, report) = explore::run_seed(&scenario, watcher, seed, &faults);
            print!("{}", report.trace.text());
            println!("outcome: {:?}", report.outcome);
            println!(
                "trace hash: {:016x}; marks: {:?}",
                report.hash(),
                report.marks
            );
            match trace {
                Ok(trace) => {
                    println!("scenario trace: {trace:?}");
                    Ok(true)
                }
                Err(error) => {
                    println!("no scenario trace: {error}");
                    Ok(false)
                }
            }
        }
        Command::Check {
            seeds,
            no_cpython,
            scenarios,
            zoo,
        } => {
            let mut options = Options {
                seeds,
                cpython: !no_cpython,
                ..Options::default()
            };
            if let Some(dir) = scenarios {
                options.scenarios = dir;
            }
            if let Some(name) = zoo {
                return check_zoo(&name, &options);
            }
            let total = loopwatch_conformance::scenario::load_dir(&options.scenarios)?
                .iter()
                .map(|s| s.watchers.len())
                .sum::<usize>();
            let mut done = 0;
            let mut result = matrix::check(&options, |what| {
                done += 1;
                eprint!("\r{} {what:<60}", progress_bar(done.min(total), total));
            })?;
            eprintln!();
            // The policy clauses, against the default policy, on both kernels, and
            // the same checks on CPython.
            let policy_cells = loopwatch_conformance::policy_suite::check_policy(
                &loopwatch_conformance::policy_suite::DefaultPolicy,
                seeds,
            );
            if options.cpython {
                let theirs =
                    loopwatch_conformance::policy_suite::compare_with_cpython(&policy_cells);
                result.cells.extend(theirs);
            }
            result.cells.extend(policy_cells);
            print!("{}", result.terminal());
            let out = PathBuf::from("target").join("loopwatch");
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            std::fs::write(out.join("report.md"), result.markdown()).map_err(|e| e.to_string())?;
            let json = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
            std::fs::write(out.join("report.json"), json).map_err(|e| e.to_string())?;
            for cell in &result.cells {
                match &cell.status {
                    Status::Diverges { expected, got } => println!(
                        "NEW DIVERGENCE {} / {} / {} (clauses {}):\n  loopwatch: {expected:?}\n  {}: {got:?}",
                        cell.scenario,
                        cell.watcher,
                        cell.backend,
                        cell.clauses.join(", "),
                        cell.backend
                    ),
                    Status::Failed { error } => println!(
                        "FAILED {} / {} / {} (clauses {}): {error}",
                        cell.scenario,
                        cell.watcher,
                        cell.backend,
                        cell.clauses.join(", ")
                    ),
                    _ => {}
                }
            }
            println!(
                "{} comparisons; report: target/loopwatch/report.md, report.json",
                result.compared()
            );
            // The bug zoo: each broken watcher must be caught by some scenario.
            let mut zoo_ok = true;
            for (name, caught) in loopwatch_conformance::zoo::hunt(&options)? {
                match caught.first() {
                    Some(cell) => println!(
                        "zoo: {name} caught by {} on {} (clauses {})",
                        cell.scenario,
                        cell.backend,
                        cell.clauses.join(", ")
                    ),
                    None => {
                        zoo_ok = false;
                        println!("zoo: {name} SLIPPED THROUGH: no scenario caught it");
                    }
                }
            }
            Ok(result.ok() && zoo_ok)
        }
        Command::Scenario {
            command:
                ScenarioCommand::Run {
                    file,
                    backend,
                    watcher,
                    seed,
                },
        } => {
            let scenario = Scenario::load(&file)?;
            let backend = Backend::parse(&backend, seed)?;
            let mut ok = true;
            for watcher in watchers(&scenario, watcher.as_deref())? {
                let output = run(&scenario, &file, watcher, &backend)?;
                println!(
                    "{}",
                    serde_json::to_string(&output).map_err(|e| e.to_string())?
                );
                ok &= output.skipped.is_none();
            }
            Ok(ok)
        }
        Command::Scenario {
            command: ScenarioCommand::Diff { file, watcher },
        } => {
            let scenario = Scenario::load(&file)?;
            let mut same = true;
            for watcher in watchers(&scenario, watcher.as_deref())? {
                let ours = run(&scenario, &file, watcher, &Backend::Os)?;
                println!("{watcher} loopwatch: {:?}", ours.trace);
                for minor in matrix::CPYTHON_MINORS {
                    if minor < watcher.since_cpython() {
                        continue;
                    }
                    let theirs = run(&scenario, &file, watcher, &Backend::CPython(minor))?;
                    if let Some(reason) = theirs.skipped {
                        println!("  cpython3.{minor}: skipped ({reason})");
                    } else if theirs.trace == ours.trace {
                        println!("  cpython3.{minor}: same");
                    } else {
                        same = false;
                        println!("  cpython3.{minor}: {:?}", theirs.trace);
                    }
                }
            }
            Ok(same)
        }
    }
}
