//! Seeded exploration: every scenario of a watcher on the simulator, over many seeds,
//! with faults a real kernel may show. Seeds are sharded by `seed % n == i`, so the
//! shards of one sweep cover its seeds exactly once.
//!
//! Every run is judged by the invariant checker ([`crate::invariants`]), which needs
//! no oracle. Besides, two kinds of fault:
//!
//! - faults that must not change what a watcher reports (EINTR on blocking calls,
//!   spurious poll wake-ups, a signal taken by another thread, scheduling lag): each
//!   seed's trace must also equal the real OS's;
//! - faults that may change it (`pidfd_open` failing, spawn failing with EAGAIN, a
//!   low fd limit, a child that exits at once, foreign code that reaps a child): each
//!   seed must run to its end, with errors reported as errors, never a panic,
//!   deadlock or hang; how the trace differs from the OS's is recorded in the
//!   verdict.
//!
//! Generated programs ([`crate::programs`]) follow the scenarios when the sweep asks
//! for them: each brings its own faults and seed and is judged by the invariants
//! alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use loopwatch::zoo::Mutant;

use crate::Error;
use crate::invariants::{self, Breach, Rules};
use crate::runner::{execute, execute_recorded, make_watcher};
use crate::scenario::{Scenario, WatcherName};

/// `i/n`: this run's part of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which part, `0..count`.
    pub index: u64,
    /// How many parts.
    pub count: u64,
}

impl Shard {
    /// The whole sweep.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `i/n`.
    ///
    /// # Errors
    ///
    /// [`Error::BadArgument`] when the form is wrong, `n` is 0, or `i` is not below
    /// `n`.
    pub fn parse(text: &str) -> Result<Shard, Error> {
        let bad = |message: String| Error::BadArgument {
            argument: "shard",
            message,
        };
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| bad(format!("{text:?} is not of the form i/n")))?;
        let index: u64 = index
            .parse()
            .map_err(|_| bad(format!("{text:?}: {index:?} is not a number")))?;
        let count: u64 = count
            .parse()
            .map_err(|_| bad(format!("{text:?}: {count:?} is not a number")))?;
        if count == 0 {
            return Err(bad(format!("{text:?}: n must be at least 1")));
        }
        if index >= count {
            return Err(bad(format!("{text:?}: i must be below n ({count})")));
        }
        Ok(Shard { index, count })
    }

    /// The seeds of `0..seeds` that belong to this shard.
    pub fn seeds(self, seeds: u64) -> impl Iterator<Item = u64> {
        (0..seeds).filter(move |s| s % self.count == self.index)
    }
}

impl std::str::FromStr for Shard {
    type Err = Error;

    fn from_str(text: &str) -> Result<Shard, Error> {
        Shard::parse(text)
    }
}

/// Faults an exploration may switch on: every fault of the simulator's
/// [`FaultPlan`](loopwatch_sim::FaultPlan).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// EINTR from blocking calls (probability 0.3)
    Eintr,
    /// polls that wake with nothing to report (probability 0.3)
    Spurious,
    /// a process-directed signal taken by another thread than the one Linux tries
    /// first (probability 0.3): legal but rare on a real machine
    OtherThread,
    /// scheduling delays of up to 100 ms, as on a loaded machine
    Lag,
    /// pidfd_open fails with ENOSYS, as before Linux 5.3 (may change traces)
    PidfdEnosys,
    /// pidfd_open fails with EPERM, as under a seccomp filter (may change traces)
    PidfdEperm,
    /// a spawn with a pidfd (CLONE_PIDFD) fails with ENOSYS, as on a system
    /// without it, so the pidfd comes from pidfd_open (may change traces)
    SpawnPidfdEnosys,
    /// an fd limit (RLIMIT_NOFILE) of 16 (may change traces)
    FdLimit,
    /// spawn fails with EAGAIN (probability 0.3; may change traces)
    SpawnEagain,
    /// a child exits as soon as it is spawned, before it can be registered
    /// (probability 0.3; may change traces)
    ExitEarly,
    /// foreign code reaps a zombie between SIGCHLD and the watcher's wait
    /// (probability 0.3; may change traces)
    ForeignReap,
    /// a freed pid is handed out again at once, as on a busy machine whose pid
    /// counter wraps (may change traces)
    PidReuse,
    /// pidfd_open fails with EINVAL, as a kernel that refuses its flags does (may
    /// change traces; not in `all`)
    PidfdEinval,
    /// waitid(P_ALL, WEXITED | WNOWAIT) fails with EINVAL, so Waitid falls back to
    /// Safe's pass (may change traces; not in `all`)
    WaitPeekEinval,
    /// foreign code reaps a child as it exits, with no SIGCHLD needed, so it reaches
    /// Threaded, Pidfd and Auto too (probability 0.3; may change traces; not in `all`)
    ForeignReapExit,
}

/// The longest delay the [`Fault::Lag`] fault adds to a child's start or a woken
/// thread. Two CPU hogs on two cores delay a thread by a few milliseconds to tens of
/// them; scenarios keep their timing margins above this.
pub const LAG: std::time::Duration = std::time::Duration::from_millis(LAG_MS);
const LAG_MS: u64 = 100;

/// The fd limit of [`Fault::FdLimit`].
pub const FD_LIMIT: usize = 16;

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 12] = [
        Fault::Eintr,
        Fault::Spurious,
        Fault::OtherThread,
        Fault::Lag,
        Fault::PidfdEnosys,
        Fault::PidfdEperm,
        Fault::SpawnPidfdEnosys,
        Fault::FdLimit,
        Fault::SpawnEagain,
        Fault::ExitEarly,
        Fault::ForeignReap,
        Fault::PidReuse,
    ];

    /// The faults `all` leaves out, asked for by name: the EINVAL ones move a watcher
    /// to its fallback for the whole run (which [`Fault::ALL`]'s faults do already
    /// for the pidfd rungs), and a foreign reap at every exit was added after `all`'s
    /// sweeps, hunt budgets and regressions were recorded.
    pub const EXTRA: [Fault; 3] = [
        Fault::PidfdEinval,
        Fault::WaitPeekEinval,
        Fault::ForeignReapExit,
    ];

    /// Its name on the command line (`eintr`, `other-thread` …).
    pub fn name(self) -> &'static str {
        match self {
            Fault::Eintr => "eintr",
            Fault::Spurious => "spurious",
            Fault::OtherThread => "other-thread",
            Fault::Lag => "lag",
            Fault::PidfdEnosys => "pidfd-enosys",
            Fault::PidfdEperm => "pidfd-eperm",
            Fault::SpawnPidfdEnosys => "spawn-pidfd-enosys",
            Fault::FdLimit => "fd-limit",
            Fault::SpawnEagain => "spawn-eagain",
            Fault::ExitEarly => "exit-early",
            Fault::ForeignReap => "foreign-reap",
            Fault::PidReuse => "pid-reuse",
            Fault::PidfdEinval => "pidfd-einval",
            Fault::WaitPeekEinval => "wait-peek-einval",
            Fault::ForeignReapExit => "foreign-reap-exit",
        }
    }

    /// Whether the fault may change what a correct watcher reports (then a seed is
    /// judged on finishing, not on its trace).
    pub fn changes_traces(self) -> bool {
        !matches!(
            self,
            Fault::Eintr | Fault::Spurious | Fault::OtherThread | Fault::Lag
        )
    }

    /// Parses a comma-separated list of fault names; `all` is every fault.
    ///
    /// # Errors
    ///
    /// [`Error::Unknown`] naming the unknown fault and the valid ones.
    pub fn parse_list(text: &str) -> Result<Vec<Fault>, Error> {
        let mut faults = Vec::new();
        for f in text.split(',').filter(|f| !f.is_empty()) {
            if f == "all" {
                faults.extend(Fault::ALL);
                continue;
            }
            let known = || Fault::ALL.into_iter().chain(Fault::EXTRA);
            let fault = known()
                .find(|fault| fault.name() == f)
                .ok_or_else(|| Error::Unknown {
                    what: "fault",
                    given: f.to_string(),
                    valid: std::iter::once("all".to_string())
                        .chain(known().map(|f| f.name().to_string()))
                        .collect(),
                })?;
            faults.push(fault);
        }
        faults.sort();
        faults.dedup();
        Ok(faults)
    }

    /// `eintr,spurious`: the names of `faults`, as `--faults` takes them.
    pub fn names(faults: &[Fault]) -> String {
        faults
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The simulation for `seed` with `faults`.
pub fn simulation(seed: u64, faults: &[Fault]) -> loopwatch_sim::Simulation {
    let mut plan = loopwatch_sim::FaultPlan::none();
    let mut simulation = loopwatch_sim::Simulation::new(seed);
    for fault in faults {
        match fault {
            Fault::Eintr => plan.eintr = 0.3,
            Fault::Spurious => plan.spurious_wakeup = 0.3,
            Fault::OtherThread => plan.signal_other_thread = 0.3,
            Fault::Lag => plan.lag = LAG,
            Fault::PidfdEnosys => plan.pidfd_enosys = true,
            Fault::PidfdEperm => plan.pidfd_eperm = true,
            Fault::SpawnPidfdEnosys => plan.spawn_pidfd_enosys = true,
            Fault::FdLimit => plan.fd_limit = Some(FD_LIMIT),
            Fault::SpawnEagain => plan.spawn_eagain = 0.3,
            Fault::ExitEarly => plan.exit_before_registration = 0.3,
            Fault::ForeignReap => plan.foreign_reap_on_sigchld = 0.3,
            Fault::PidReuse => {
                simulation.config_mut().pid_reuse = loopwatch_sim::PidReuse::LastFreed
            }
            Fault::PidfdEinval => plan.pidfd_einval = true,
            Fault::WaitPeekEinval => plan.wait_peek_einval = true,
            Fault::ForeignReapExit => plan.foreign_reap_on_exit = 0.3,
        }
    }
    simulation.faults(plan)
}

/// One seed's verdict, printed as a JSON line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The seed.
    pub seed: u64,
    /// The scenario.
    pub scenario: String,
    /// The watcher.
    pub watcher: String,
    /// Whether the run passed: its trace (when compared) and every invariant.
    pub ok: bool,
    /// What went wrong with the trace or the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The invariants the run broke ([`crate::invariants`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breaches: Vec<Breach>,
    /// Under a fault that may change traces: how this seed's outcome differs from
    /// the real OS's trace (not a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<String>,
    /// The command that replays this seed.
    pub replay: String,
}

impl Verdict {
    /// What kind of failure this is, for counting distinct ones: the watcher and the
    /// rules broken (`threaded: once+returncode`), or the trace problem's kind.
    pub fn signature(&self) -> Option<String> {
        if self.ok {
            return None;
        }
        let mut rules: Vec<&str> = self.breaches.iter().map(|b| b.rule.as_str()).collect();
        rules.dedup();
        if rules.is_empty() {
            let kind = match &self.problem {
                Some(p) if p.starts_with("simulation ended") => "incomplete",
                Some(p) if p.starts_with("set-up failed") => "set-up",
                _ => "trace",
            };
            rules.push(kind);
        }
        Some(format!("{}: {}", self.watcher, rules.join("+")))
    }
}

/// The outcome of one scenario run on the simulator: the trace, or why there is
/// none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeedOutcome {
    /// The run completed with this trace.
    Trace(Vec<String>),
    /// The run completed, but loopwatch's set-up failed with this error (under a
    /// fault such as a low fd limit, a correct answer).
    SetUpFailed(String),
    /// The simulation did not complete: a panic, a deadlock, the step limit, or a
    /// fatal signal (always a failure).
    Incomplete(String),
}

impl SeedOutcome {
    /// The trace, or a description of why there is none.
    pub fn trace(&self) -> Result<&Vec<String>, String> {
        match self {
            SeedOutcome::Trace(trace) => Ok(trace),
            SeedOutcome::SetUpFailed(error) => Err(format!("set-up failed: {error}")),
            SeedOutcome::Incomplete(why) => Err(format!("simulation ended: {why}")),
        }
    }
}

/// Runs `scenario` with `watcher` on the simulator: the scenario trace (or why there
/// is none) and the simulation's report, which has the kernel trace either way.
pub fn run_seed(
    scenario: &Scenario,
    watcher: WatcherName,
    seed: u64,
    faults: &[Fault],
) -> (Result<Vec<String>, String>, loopwatch_sim::Report) {
    let (outcome, report) = run_seed_outcome(scenario, watcher, seed, faults);
    (outcome.trace().cloned(), report)
}

/// As [`run_seed`], telling a failed set-up apart from a run that did not complete.
pub fn run_seed_outcome(
    scenario: &Scenario,
    watcher: WatcherName,
    seed: u64,
    faults: &[Fault],
) -> (SeedOutcome, loopwatch_sim::Report) {
    let run = Run {
        scenario,
        watcher,
        seed,
        faults,
        mutant: None,
        keep_trace: true,
    };
    let checked = run.checked();
    (checked.outcome, checked.report)
}

/// One simulated run, to be checked.
#[derive(Clone, Copy, Debug)]
pub struct Run<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// The watcher.
    pub watcher: WatcherName,
    /// The simulator's seed.
    pub seed: u64,
    /// Faults switched on.
    pub faults: &'a [Fault],
    /// The [`Mutant`] switched on in the simulated process, for the zoo.
    pub mutant: Option<Mutant>,
    /// Whether the report keeps the kernel trace's lines (a replay wants them, a
    /// sweep only their hash).
    pub keep_trace: bool,
}

/// A run and what the invariant checker made of it.
#[derive(Debug)]
pub struct Checked {
    /// The scenario trace, or why there is none.
    pub outcome: SeedOutcome,
    /// The invariants it broke.
    pub breaches: Vec<Breach>,
    /// What the runner recorded for the checker, when the run completed.
    pub events: Option<Vec<crate::runner::Event>>,
    /// The simulator's report.
    pub report: loopwatch_sim::Report,
}

impl Run<'_> {
    /// Runs it and checks every invariant of [`crate::invariants`].
    pub fn checked(&self) -> Checked {
        let (scenario, watcher, mutant) = (self.scenario.clone(), self.watcher, self.mutant);
        let (result, report) = simulation(self.seed, self.faults)
            .keep_trace(self.keep_trace)
            .run_returning(move |kernel| {
                loopwatch::zoo::set_mutant(&kernel, mutant);
                execute_recorded(&kernel, &scenario, &|k| make_watcher(watcher, k))
            });
        let (outcome, events) = match result {
            None => (
                SeedOutcome::Incomplete(format!("{:?}", report.outcome)),
                None,
            ),
            Some(Ok(recorded)) => (SeedOutcome::Trace(recorded.trace), Some(recorded.events)),
            Some(Err(error)) => (SeedOutcome::SetUpFailed(error.to_string()), None),
        };
        let breaches = invariants::check(
            self.scenario,
            Rules::of(self.watcher),
            events.as_deref(),
            &report,
        );
        Checked {
            outcome,
            breaches,
            events,
            report,
        }
    }

    /// The command that replays this run, from any directory: this program's own path
    /// when it is the `loopwatch` binary, else `cargo loopwatch`.
    pub fn replay_command(&self) -> String {
        let mut command = format!(
            "{} replay {} --watcher {} --seed {}",
            loopwatch_command(),
            self.scenario.locator(),
            self.watcher,
            self.seed
        );
        if !self.faults.is_empty() {
            command.push_str(&format!(" --faults {}", Fault::names(self.faults)));
        }
        if let Some(mutant) = self.mutant {
            command.push_str(&format!(" --mutant {mutant}"));
        }
        command
    }
}

/// How to run the `loopwatch` CLI from any directory: the running binary's path when
/// it is that binary, else `cargo loopwatch` (which works inside the workspace).
pub fn loopwatch_command() -> String {
    match std::env::current_exe() {
        Ok(path) if path.file_stem().is_some_and(|stem| stem == "loopwatch") => {
            path.display().to_string()
        }
        _ => "cargo loopwatch".to_string(),
    }
}

/// Each scenario's trace on the real OS, by scenario name: what exploration compares
/// the simulator's traces with.
pub type References = BTreeMap<String, Vec<String>>;

/// The real OS's trace of every scenario of `watcher` among `scenarios`. Must run on
/// the process's main thread.
///
/// # Errors
///
/// [`Error::Backend`] for the first run that failed.
pub fn os_references(scenarios: &[Scenario], watcher: WatcherName) -> Result<References, Error> {
    scenarios
        .iter()
        .filter(|s| s.runs_with(watcher))
        .map(|scenario| {
            execute(&loopwatch::OsKernel, scenario, watcher)
                .map(|trace| (scenario.name.clone(), trace))
                .map_err(|e| Error::Backend {
                    backend: "os".into(),
                    scenario: format!("{} / {watcher}", scenario.name),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Runs (scenario × seed, and generated programs).
    pub runs: u64,
    /// Runs that failed.
    pub failures: u64,
    /// Seeds of this shard.
    pub seeds: u64,
    /// Scenarios explored.
    pub scenarios: u64,
    /// Generated programs run.
    pub programs: u64,
    /// Distinct failures ([`Verdict::signature`]) and how many runs had each.
    pub signatures: BTreeMap<String, u64>,
    /// The simulator's coverage marks, summed over the runs.
    pub marks: BTreeMap<String, u64>,
}

impl Summary {
    fn add(&mut self, verdict: &Verdict, report: &loopwatch_sim::Report) {
        self.runs += 1;
        if let Some(signature) = verdict.signature() {
            self.failures += 1;
            *self.signatures.entry(signature).or_default() += 1;
        }
        for (mark, count) in &report.marks {
            *self.marks.entry((*mark).to_string()).or_default() += count;
        }
    }
}

/// A sweep: what to explore and how.
#[derive(Clone, Debug)]
pub struct Sweep<'a> {
    /// The scenarios (those that list the watcher are explored).
    pub scenarios: &'a [Scenario],
    /// The watcher.
    pub watcher: WatcherName,
    /// Seeds of the whole sweep (`0..seeds`).
    pub seeds: u64,
    /// This run's part of it.
    pub shard: Shard,
    /// Faults switched on for the scenarios (a generated program brings its own).
    pub faults: &'a [Fault],
    /// Simulations at once.
    pub jobs: usize,
    /// Generated programs ([`crate::programs`]) of the whole sweep (`0..programs`,
    /// sharded as the seeds are), run after the scenarios.
    pub programs: u64,
    /// The [`Mutant`] switched on in every run (the zoo's hunt).
    pub mutant: Option<Mutant>,
}

/// Explores every scenario of the sweep over its shard's seeds, calling `emit` with
/// each verdict (in scenario and seed order). Runs each scenario once on the real OS
/// first, for the reference, so it must run on the process's main thread.
///
/// # Errors
///
/// A reference run failed.
pub fn explore(sweep: &Sweep<'_>, emit: impl FnMut(&Verdict)) -> Result<Summary, Error> {
    let references = os_references(sweep.scenarios, sweep.watcher)?;
    explore_against(sweep, &references, emit)
}

/// As [`explore`], against reference traces computed beforehand ([`os_references`],
/// or [`Matrix::os_traces`](crate::matrix::Matrix::os_traces) after a check), so that
/// several sweeps share one run of each scenario on the real OS. Runs only the
/// simulator, on any thread.
///
/// # Errors
///
/// [`Error::BadArgument`] when one of the scenarios has no reference.
pub fn explore_against(
    sweep: &Sweep<'_>,
    references: &References,
    mut emit: impl FnMut(&Verdict),
) -> Result<Summary, Error> {
    let watcher = sweep.watcher;
    let seeds: Vec<u64> = sweep.shard.seeds(sweep.seeds).collect();
    // With no seed no scenario runs: generated programs alone need no reference.
    let chosen: Vec<&Scenario> = sweep
        .scenarios
        .iter()
        .filter(|s| s.runs_with(watcher) && !seeds.is_empty())
        .collect();
    for scenario in &chosen {
        if !references.contains_key(&scenario.name) {
            return Err(Error::BadArgument {
                argument: "references",
                message: format!("no reference trace of {} with {watcher}", scenario.name),
            });
        }
    }
    let lenient = sweep.faults.iter().any(|f| f.changes_traces());
    let mut summary = Summary {
        seeds: seeds.len() as u64,
        scenarios: chosen.len() as u64,
        ..Summary::default()
    };
    for scenario in chosen {
        let reference = &references[&scenario.name];
        let verdicts = crate::parallel::map(
            crate::parallel::Work::Simulations,
            &seeds,
            sweep.jobs,
            |&seed| {
                let run = Run {
                    scenario,
                    watcher,
                    seed,
                    faults: sweep.faults,
                    mutant: sweep.mutant,
                    keep_trace: false,
                };
                let checked = run.checked();
                (
                    verdict(&run, Some(reference), lenient, &checked),
                    checked.report,
                )
            },
        );
        for (verdict, report) in &verdicts {
            summary.add(verdict, report);
            emit(verdict);
        }
    }
    let cases: Vec<u64> = sweep.shard.seeds(sweep.programs).collect();
    let programs = crate::parallel::map(
        crate::parallel::Work::Simulations,
        &cases,
        sweep.jobs,
        |&case| {
            let program = crate::programs::sample(watcher, crate::hunt::MAX_STEPS, case).0;
            let scenario = program.to_scenario(&format!("program-{case}"), watcher);
            let run = Run {
                scenario: &scenario,
                watcher,
                seed: program.seed,
                faults: &program.faults,
                mutant: sweep.mutant,
                keep_trace: false,
            };
            let checked = run.checked();
            let mut verdict = verdict(&run, None, true, &checked);
            verdict.replay = program_replay(watcher, case, sweep.mutant);
            (verdict, checked.report)
        },
    );
    for (verdict, report) in &programs {
        summary.programs += 1;
        summary.add(verdict, report);
        emit(verdict);
    }
    Ok(summary)
}

/// The command that re-runs generated program `case`, shrinks it, and writes the
/// shrunk program as a scenario file.
pub fn program_replay(watcher: WatcherName, case: u64, mutant: Option<Mutant>) -> String {
    let mut command = format!(
        "{} hunt --watcher {watcher} --case {case}",
        loopwatch_command()
    );
    if let Some(mutant) = mutant {
        command.push_str(&format!(" --mutant {mutant}"));
    }
    command
}

/// The verdict of `run`: its invariants, and its trace against `reference` (when
/// there is one and the faults may not change traces).
pub fn verdict(
    run: &Run<'_>,
    reference: Option<&[String]>,
    lenient: bool,
    checked: &Checked,
) -> Verdict {
    let lenient = lenient || reference.is_none();
    let reference = reference.unwrap_or_default();
    let (problem, changed) = match &checked.outcome {
        SeedOutcome::Trace(trace) if trace == reference => (None, None),
        SeedOutcome::Trace(trace) if lenient => (None, Some(format!("trace {trace:?}"))),
        SeedOutcome::Trace(trace) => (Some(format!("expected {reference:?}, got {trace:?}")), None),
        SeedOutcome::SetUpFailed(error) if lenient => {
            (None, Some(format!("set-up failed: {error}")))
        }
        SeedOutcome::SetUpFailed(error) => (Some(format!("set-up failed: {error}")), None),
        SeedOutcome::Incomplete(why) => (Some(format!("simulation ended: {why}")), None),
    };
    Verdict {
        seed: run.seed,
        scenario: run.scenario.name.clone(),
        watcher: run.watcher.to_string(),
        ok: problem.is_none() && checked.breaches.is_empty(),
        problem,
        breaches: checked.breaches.clone(),
        changed,
        replay: run.replay_command(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_seeds() {
        // Goal: for several n, the shards i/n are disjoint and together give 0..N.
        for count in 1..6 {
            let mut all: Vec<u64> = (0..count)
                .flat_map(|index| Shard { index, count }.seeds(37).collect::<Vec<_>>())
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..37).collect::<Vec<_>>(), "n = {count}");
        }
    }

    #[test]
    fn bad_shards_and_faults_are_refused() {
        // Goal: malformed or out-of-range shards and unknown faults are clear errors.
        for bad in ["", "1", "a/2", "1/b", "2/2", "0/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Shard::parse("3/4").unwrap(), Shard { index: 3, count: 4 });
        let error = Fault::parse_list("eintr,bogus").unwrap_err();
        assert!(error.to_string().contains("bogus"), "{error}");
        assert!(error.is_bad_input());
        assert_eq!(
            Fault::parse_list("other-thread,fd-limit").unwrap(),
            [Fault::OtherThread, Fault::FdLimit]
        );
    }

    #[test]
    fn every_fault_has_its_command_line_name() {
        // Goal: the names `--faults` takes are those clap offers, and every fault
        // of the list parses back to itself.
        use clap::ValueEnum as _;
        for fault in Fault::ALL.into_iter().chain(Fault::EXTRA) {
            let value = fault.to_possible_value().unwrap();
            assert_eq!(value.get_name(), fault.name());
            assert_eq!(Fault::parse_list(fault.name()).unwrap(), [fault]);
        }
        assert_eq!(
            Fault::value_variants().len(),
            Fault::ALL.len() + Fault::EXTRA.len()
        );
    }

    #[test]
    fn all_leaves_out_the_extra_faults() {
        // Goal: `all` is every fault but the ones asked for by name, which it can be
        // given beside.
        assert_eq!(Fault::parse_list("all").unwrap(), Fault::ALL);
        let with = Fault::parse_list("all,wait-peek-einval").unwrap();
        assert_eq!(with.len(), Fault::ALL.len() + 1);
        assert!(with.contains(&Fault::WaitPeekEinval));
        assert!(!with.contains(&Fault::PidfdEinval));
    }
}
