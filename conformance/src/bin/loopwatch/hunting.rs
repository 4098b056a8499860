//! The hunting commands: `explore`, `replay`, `hunt`, `regression` and `zoo`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use loopwatch::kernel::Clock as _;
use loopwatch::zoo::Mutant;
use loopwatch_conformance::explore::{self, Fault, Run, SeedOutcome, Shard, Sweep};
use loopwatch_conformance::hunt::{self, Regression};
use loopwatch_conformance::loom_models;
use loopwatch_conformance::scenario::{self, WatcherName};
use loopwatch_conformance::zoo::{self, Budget, Technique, ZooRow};
use loopwatch_conformance::{Error, invariants};

use crate::{Outcome, ui};

/// One value of `--faults`: a fault, or `all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultArg {
    /// Every fault.
    All,
    /// One fault.
    One(Fault),
}

/// Every value `--faults` takes, `all` first.
const FAULT_ARGS: [FaultArg; 16] = [
    FaultArg::All,
    FaultArg::One(Fault::Eintr),
    FaultArg::One(Fault::Spurious),
    FaultArg::One(Fault::OtherThread),
    FaultArg::One(Fault::Lag),
    FaultArg::One(Fault::PidfdEnosys),
    FaultArg::One(Fault::PidfdEperm),
    FaultArg::One(Fault::SpawnPidfdEnosys),
    FaultArg::One(Fault::FdLimit),
    FaultArg::One(Fault::SpawnEagain),
    FaultArg::One(Fault::ExitEarly),
    FaultArg::One(Fault::ForeignReap),
    FaultArg::One(Fault::PidReuse),
    FaultArg::One(Fault::PidfdEinval),
    FaultArg::One(Fault::WaitPeekEinval),
    FaultArg::One(Fault::ForeignReapExit),
];

impl clap::ValueEnum for FaultArg {
    fn value_variants<'a>() -> &'a [Self] {
        &FAULT_ARGS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            FaultArg::All => Some(
                clap::builder::PossibleValue::new("all")
                    .help("every fault but pidfd-einval, wait-peek-einval and foreign-reap-exit"),
            ),
            FaultArg::One(fault) => clap::ValueEnum::to_possible_value(fault),
        }
    }
}

/// The faults `args` name, each once, in the order of [`Fault`]'s variants.
pub(crate) fn faults(args: &[FaultArg]) -> Vec<Fault> {
    let mut faults: Vec<Fault> = args
        .iter()
        .flat_map(|arg| match arg {
            FaultArg::All => Fault::ALL.to_vec(),
            FaultArg::One(fault) => vec![*fault],
        })
        .collect();
    faults.sort();
    faults.dedup();
    faults
}

/// `--mutant`: a mutant of the zoo, by name.
pub(crate) fn mutant(text: &str) -> Result<Mutant, String> {
    Mutant::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
        format!("no mutant {text:?}; the mutants: {}", names.join(", "))
    })
}

/// What `explore` was asked.
pub(crate) struct ExploreArgs {
    pub(crate) watcher: WatcherName,
    pub(crate) seeds: u64,
    pub(crate) shard: Shard,
    pub(crate) faults: Vec<Fault>,
    pub(crate) programs: u64,
    pub(crate) mutant: Option<Mutant>,
    pub(crate) scenarios: Option<PathBuf>,
    pub(crate) jobs: usize,
}

/// `explore`: the sweep, one JSON line per run, and a closing summary.
pub(crate) fn explore(args: ExploreArgs) -> Result<Outcome, Error> {
    let scenarios = scenario::load(args.scenarios.as_deref())?;
    let watcher = args.watcher;
    if args.seeds > 0 && !scenarios.iter().any(|s| s.runs_with(watcher)) {
        return Err(Error::BadArgument {
            argument: "--watcher",
            message: format!("no scenario lists the {watcher} watcher"),
        });
    }
    let began = loopwatch::OsKernel.now();
    // The real OS's traces first (one run per scenario, on this thread), so that the
    // simulator's rate is measured on its own.
    let references = if args.seeds > 0 {
        explore::os_references(&scenarios, watcher)?
    } else {
        explore::References::new()
    };
    let started = loopwatch::OsKernel.now();
    let sweep = Sweep {
        scenarios: &scenarios,
        watcher,
        seeds: args.seeds,
        shard: args.shard,
        faults: &args.faults,
        jobs: args.jobs,
        programs: args.programs,
        mutant: args.mutant,
    };
    let mut first: BTreeMap<String, String> = BTreeMap::new();
    let summary = explore::explore_against(&sweep, &references, |verdict| {
        println!("{}", serde_json::to_string(verdict).unwrap_or_default());
        if let Some(signature) = verdict.signature() {
            first
                .entry(signature)
                .or_insert_with(|| verdict.replay.clone());
        }
    })?;
    let took = loopwatch::OsKernel.now().saturating_sub(started);
    let references_took = started.saturating_sub(began);
    let faults = if args.faults.is_empty() {
        "none".to_string()
    } else {
        Fault::names(&args.faults)
    };
    let per_second = summary.runs as f64 / took.as_secs_f64().max(1e-3);
    let hit = summary.marks.values().filter(|count| **count > 0).count();
    ui::eprint_above(&format!(
        "explore {watcher}: {} runs ({} scenarios × {} seeds of shard {}/{} in 0..{}, {} generated programs) in {}, {:.0} runs/s, {} failures, {} distinct; faults: {faults}; coverage marks hit: {hit} ({}); the real OS's reference traces took {}\n",
        summary.runs,
        summary.scenarios,
        summary.seeds,
        args.shard.index,
        args.shard.count,
        args.seeds,
        summary.programs,
        ui::duration(took),
        per_second,
        summary.failures,
        summary.signatures.len(),
        summary
            .marks
            .iter()
            .map(|(mark, count)| format!("{mark} {count}"))
            .collect::<Vec<_>>()
            .join(", "),
        ui::duration(references_took),
    ));
    for (signature, replay) in &first {
        let runs = summary.signatures.get(signature).copied().unwrap_or(0);
        ui::eprint_above(&format!("  {signature} ({runs} runs); first: {replay}\n"));
    }
    Ok(Outcome::from_ok(summary.failures == 0))
}

/// Prints a checked run: the kernel trace, its outcome and marks, the scenario trace
/// and the breaches. `true` when nothing broke.
fn print_checked(checked: &explore::Checked) -> bool {
    let report = &checked.report;
    print!("{}", report.trace.text());
    println!("outcome: {:?}", report.outcome);
    println!(
        "trace hash: {:016x}; marks: {:?}",
        report.hash(),
        report.marks
    );
    if let Some(events) = &checked.events {
        println!("events:");
        for event in events {
            println!("  {event:?}");
        }
    }
    println!("children:");
    for line in invariants::describe(&report.ledger) {
        println!("  {line}");
    }
    let traced = match &checked.outcome {
        SeedOutcome::Trace(trace) => {
            println!("scenario trace: {trace:?}");
            true
        }
        other => {
            let why = other.trace().err().unwrap_or_default();
            println!("no scenario trace: {why}");
            matches!(other, SeedOutcome::SetUpFailed(_))
        }
    };
    for breach in &checked.breaches {
        println!("breach: {breach}");
    }
    traced && checked.breaches.is_empty()
}

/// `replay`: one seed of a scenario, with its kernel trace and breaches.
pub(crate) fn replay(
    scenario: &Path,
    watcher: WatcherName,
    seed: u64,
    faults: &[Fault],
    mutant: Option<Mutant>,
) -> Result<Outcome, Error> {
    let scenario = scenario::find(scenario)?;
    let run = Run {
        scenario: &scenario,
        watcher,
        seed,
        faults,
        mutant,
        keep_trace: true,
    };
    let checked = run.checked();
    Ok(Outcome::from_ok(print_checked(&checked)))
}

/// `hunt`: one generated program; shrunk and written out if it fails.
pub(crate) fn hunt(
    watcher: WatcherName,
    case: u64,
    mutant: Option<Mutant>,
    out: &Path,
) -> Result<Outcome, Error> {
    let Some(found) = hunt::hunt_case(watcher, case, mutant) else {
        println!("program {case} for {watcher}: every invariant holds");
        return Ok(Outcome::Pass);
    };
    let name = match mutant {
        Some(mutant) => format!("{mutant}-{watcher}-case-{case}"),
        None => format!("{watcher}-case-{case}"),
    };
    let regression = Regression::of(&found, watcher, mutant, &name);
    let path = regression.save(out)?;
    println!(
        "program {case} for {watcher}: {} ({} steps); shrunk to {} steps in {} runs: {}",
        found.verdict.signature().unwrap_or_default(),
        found.program.len(),
        found.shrunk.len(),
        found.shrink_runs,
        found
            .shrunk_verdict
            .breaches
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!("written: {}", path.display());
    println!("replay: {}", regression.replay_command(&path));
    Ok(Outcome::Fail)
}

/// `regression`: replays a regression file.
pub(crate) fn regression(file: &Path) -> Result<Outcome, Error> {
    let regression = Regression::load(file)?;
    let (broke, checked) = regression.replay(true)?;
    print_checked(&checked);
    println!(
        "expected to break: {:?}; broke: {broke:?}",
        regression.breaks
    );
    Ok(Outcome::from_ok(broke == regression.breaks))
}

/// What `zoo` was asked.
pub(crate) struct ZooArgs {
    pub(crate) mutants: Vec<Mutant>,
    /// Hunt the mutants inside this watcher, and run only it for real.
    pub(crate) watcher: Option<WatcherName>,
    pub(crate) budget: Budget,
    pub(crate) real: bool,
    pub(crate) regressions: Option<PathBuf>,
    pub(crate) jobs: usize,
}

/// `zoo`: every mutant hunted by every technique; the real watchers at ten times the
/// budget.
pub(crate) fn zoo(args: ZooArgs) -> Result<Outcome, Error> {
    let mutants = match (args.mutants.is_empty(), args.watcher) {
        (true, None) => Mutant::ALL.to_vec(),
        (true, Some(watcher)) => Mutant::ALL
            .into_iter()
            .filter(|m| zoo::reaches(*m, watcher))
            .collect(),
        (false, _) => args.mutants.clone(),
    };
    if let Some(watcher) = args.watcher {
        let elsewhere: Vec<&str> = mutants
            .iter()
            .filter(|m| !zoo::reaches(**m, watcher))
            .map(|m| m.name())
            .collect();
        if !elsewhere.is_empty() {
            return Err(Error::BadArgument {
                argument: "--mutant",
                message: format!(
                    "the {} watcher never runs the code of {}",
                    watcher.as_str(),
                    elsewhere.join(", ")
                ),
            });
        }
    }
    let home = |mutant: Mutant| args.watcher.unwrap_or_else(|| zoo::mutant_watcher(mutant));
    let real: Vec<WatcherName> = match args.watcher {
        Some(watcher) => vec![watcher],
        None => WatcherName::ALL.to_vec(),
    };
    let builtin = scenario::builtin()?;
    let mut watchers: Vec<WatcherName> = mutants.iter().map(|m| home(*m)).collect();
    if args.real {
        watchers.extend(&real);
    }
    watchers.sort();
    watchers.dedup();
    let mut references = BTreeMap::new();
    for watcher in &watchers {
        references.insert(*watcher, explore::os_references(&builtin, *watcher)?);
    }
    println!(
        "{:<40} {:<10} {:<10} {:>7} {:>9} {:>7}  bug",
        "mutant", "watcher", "caught by", "runs", "time", "shrunk"
    );
    let mut ok = true;
    for mutant in mutants {
        let row = zoo::hunt_in(
            Some(mutant),
            home(mutant),
            &Technique::ALL,
            &references,
            args.budget,
            args.jobs,
        );
        ok &= row.first().is_some();
        print_row(&row);
        print_loom(mutant, home(mutant));
        if let Some(dir) = &args.regressions {
            for hunted in &row.hunted {
                if let Some(regression) = &hunted.regression {
                    let path = regression.save(dir)?;
                    println!("    regression: {}", path.display());
                }
            }
        }
    }
    if args.real {
        let budget = args.budget.times(10);
        for watcher in real {
            let row = zoo::hunt_real(watcher, &Technique::ALL, &references, budget, args.jobs);
            ok &= row.first().is_none();
            print_row(&row);
        }
    }
    Ok(Outcome::from_ok(ok))
}

/// The loom technique: loom explores whole interleavings only in a `--cfg loom` build,
/// so the zoo names the model that catches the mutant (the `loom` test binary checks
/// that it does) and the command that runs it. A model of another watcher than the
/// one hunted (`--watcher`) is named as such.
fn print_loom(mutant: Mutant, hunted: WatcherName) {
    match loom_models::catching(mutant) {
        Some(model) if model.watcher != hunted => println!(
            "    {:<10} no model of {}; model {} catches it in {}",
            "loom",
            hunted.as_str(),
            model.name,
            model.watcher.as_str()
        ),
        Some(model) => {
            println!(
                "    {:<10} caught by model {} ({}, preemption bound {})",
                "loom",
                model.name,
                model.watcher.as_str(),
                model.preemptions
            );
            if let Some(command) = model.zoo_command() {
                println!("      run: {command}");
            }
        }
        None => println!("    {:<10} no model reaches it", "loom"),
    }
}

fn print_row(row: &ZooRow) {
    let name = row.mutant.clone().unwrap_or_else(|| "(real)".to_string());
    match row.first() {
        Some(first) => {
            let shrunk = row
                .hunted
                .iter()
                .find_map(|h| h.shrunk)
                .map(|(from, to)| format!("{from}→{to}"))
                .unwrap_or_else(|| "-".to_string());
            println!(
                "{:<40} {:<10} {:<10} {:>7} {:>9} {:>7}  {}",
                name,
                row.watcher.as_str(),
                first.technique.name(),
                first.runs,
                ui::duration(first.elapsed),
                shrunk,
                row.origin
            );
        }
        None => println!(
            "{:<40} {:<10} {:<10} {:>7} {:>9} {:>7}  {}",
            name,
            row.watcher.as_str(),
            if row.mutant.is_some() {
                "ESCAPED"
            } else {
                "survived"
            },
            row.hunted.iter().map(|h| h.runs).sum::<u64>(),
            ui::duration(row.hunted.iter().map(|h| h.elapsed).sum()),
            "-",
            row.origin
        ),
    }
    for hunted in &row.hunted {
        let what = match &hunted.failure {
            Some(verdict) => format!(
                "failed after {} runs: {}",
                hunted.runs,
                verdict.signature().unwrap_or_default()
            ),
            None => format!("nothing in {} runs", hunted.runs),
        };
        println!(
            "    {:<10} {what} ({})",
            hunted.technique.name(),
            ui::duration(hunted.elapsed)
        );
        if let Some(verdict) = &hunted.failure {
            println!("      replay: {}", verdict.replay);
        }
    }
}
