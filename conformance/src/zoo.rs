//! The bug zoo: watchers broken on purpose, each after a real class of bug, and the
//! suite's entry point for checking any watcher of your own ([`check_watcher`]).
//!
//! Two kinds of inhabitant:
//! - a zoo watcher ([`Broken`], [`Bug`]) wraps a correct one and breaks one rule. The
//!   suite must catch each: `cargo loopwatch check` runs them and fails if one slips
//!   through;
//! - a mutant ([`loopwatch::zoo::Mutant`]) puts a historical bug back into loopwatch's
//!   own code. `cargo loopwatch zoo` hunts each with every [`Technique`] within a
//!   [`Budget`], and the real watchers with ten times the budget, which they must
//!   survive.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use loopwatch::kernel::{Kernel, Pid};
use loopwatch::watcher::ChildCallback;
use loopwatch::zoo::Mutant;
use loopwatch::{ChildWatcher, EventLoop, Result as LwResult, WatcherRef};
use serde::Serialize;

use crate::Error;
use crate::explore::{Fault, References, Run, Verdict, verdict};
use crate::hunt::Regression;
use crate::matrix::{Cell, Matrix, Options, Status};
use crate::progress::{Progress, Silent};
use crate::runner::{execute, execute_with, make_watcher};
use crate::scenario::{Scenario, WatcherName};

/// Builds a watcher for any kernel: what [`check_watcher`] needs of a user's watcher.
pub trait MakeWatcher: Clone + Send + Sync + 'static {
    /// A name for reports.
    fn name(&self) -> String;
    /// The built-in watcher whose contract this one follows: its scenarios are run,
    /// and its traces are the expected ones.
    fn like(&self) -> WatcherName;
    /// A new watcher over `kernel`.
    fn make<K: Kernel>(&self, kernel: &K) -> WatcherRef<K>;
}

/// Runs every scenario of `maker.like()` with `maker`'s watcher on the real OS and on
/// the simulator (`options.seeds` seeds, `options.jobs` at once), and compares each
/// trace with the built-in watcher's on the real OS. Call it from the process's main
/// thread. For one test per cell in a test binary, see
/// [`testing::watcher_tests`](crate::testing::watcher_tests).
///
/// # Errors
///
/// The scenarios cannot be loaded.
pub fn check_watcher<M: MakeWatcher>(maker: &M, options: &Options) -> Result<Matrix, Error> {
    check_watcher_with(maker, options, &Silent)
}

/// As [`check_watcher`], telling `progress` about each scenario.
///
/// # Errors
///
/// The scenarios cannot be loaded.
pub fn check_watcher_with<M: MakeWatcher>(
    maker: &M,
    options: &Options,
    progress: &dyn Progress,
) -> Result<Matrix, Error> {
    let scenarios = crate::scenario::load(options.scenarios.as_deref())?;
    let like = maker.like();
    let chosen: Vec<&Scenario> = scenarios.iter().filter(|s| s.runs_with(like)).collect();
    let cell = |scenario: &Scenario, backend: &str, status: Status| Cell {
        scenario: scenario.name.clone(),
        clauses: scenario.clauses.clone(),
        watcher: maker.name(),
        backend: backend.to_string(),
        status,
    };
    let mut os_cells: Vec<Cell> = Vec::new();
    let sims = crate::parallel::beside_main(
        crate::parallel::Work::Simulations,
        options.jobs,
        |submit| {
            for (index, scenario) in chosen.iter().enumerate() {
                let expected = match execute(&loopwatch::OsKernel, scenario, like) {
                    Ok(trace) => trace,
                    Err(error) => {
                        let error = format!("the built-in {like} watcher on the OS: {error}");
                        os_cells.push(cell(scenario, "os", Status::Failed { error }));
                        progress.step(&scenario.name);
                        continue;
                    }
                };
                let on_os = execute_with(&loopwatch::OsKernel, scenario, &|k| maker.make(k))
                    .map_err(|e| e.to_string());
                os_cells.push(cell(scenario, "os", judge(&expected, on_os)));
                submit(index, (*scenario, expected));
            }
        },
        |(scenario, expected): (&Scenario, Vec<String>)| {
            let mut status = Status::Match;
            for seed in 0..options.seeds {
                status = judge(&expected, on_sim(scenario, seed, maker));
                if let Status::Failed { error } = &mut status {
                    *error = format!("seed {seed}: {error}");
                }
                if status != Status::Match {
                    break;
                }
            }
            progress.step(&scenario.name);
            cell(scenario, "sim", status)
        },
    );
    let mut sims: std::collections::BTreeMap<usize, Cell> = sims.into_iter().collect();
    let mut matrix = Matrix::default();
    for (index, os) in os_cells.into_iter().enumerate() {
        matrix.cells.push(os);
        matrix.cells.extend(sims.remove(&index));
    }
    Ok(matrix)
}

/// A trace judged against the built-in watcher's.
fn judge(expected: &[String], got: Result<Vec<String>, String>) -> Status {
    match got {
        Ok(got) if got == expected => Status::Match,
        Ok(got) => Status::Diverges {
            expected: expected.to_vec(),
            got,
        },
        Err(error) => Status::Failed { error },
    }
}

/// `maker`'s watcher on the simulator: the trace, or why there is none.
pub(crate) fn on_sim<M: MakeWatcher>(
    scenario: &Scenario,
    seed: u64,
    maker: &M,
) -> Result<Vec<String>, String> {
    let (scenario, maker) = (scenario.clone(), maker.clone());
    let (result, report) = loopwatch_sim::Simulation::new(seed)
        .run_returning(move |kernel| execute_with(&kernel, &scenario, &|k| maker.make(k)));
    match result {
        None => Err(format!("the simulation ended: {:?}", report.outcome)),
        Some(Err(error)) => Err(format!("set-up failed: {error}")),
        Some(Ok(trace)) => Ok(trace),
    }
}

/// A zoo watcher: a correct watcher with one rule broken.
pub struct Broken<K: Kernel> {
    inner: WatcherRef<K>,
    bug: Bug,
    seen: Seen,
}

/// The pids a zoo watcher was given. A plain `std` lock: never held across a kernel
/// call.
#[allow(clippy::disallowed_types, reason = "never held across a kernel call")]
type Seen = std::sync::Mutex<BTreeSet<Pid>>;

/// The bugs of the zoo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// Reports a death by signal as `128 + signum`, the shell's convention, instead of
    /// `-signum` (breaks R-1).
    ShellReturncode,
    /// Keeps the first callback when a pid is registered again instead of replacing
    /// it (breaks W-2; CPython's Safe, Fast and MultiLoop replace).
    NoReplace,
    /// Loses the exit of every second child it is given (a lost wakeup; breaks W-2's
    /// "callback is called when the process terminates").
    LostWakeup,
}

impl Bug {
    /// Every bug.
    pub const ALL: [Bug; 3] = [Bug::ShellReturncode, Bug::NoReplace, Bug::LostWakeup];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Bug::ShellReturncode => "zoo-shell-returncode",
            Bug::NoReplace => "zoo-no-replace",
            Bug::LostWakeup => "zoo-lost-wakeup",
        }
    }
}

impl clap::ValueEnum for Bug {
    fn value_variants<'a>() -> &'a [Self] {
        &Bug::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let name = self.name().strip_prefix("zoo-").unwrap_or(self.name());
        let help = match self {
            Bug::ShellReturncode => "reports a death by signal as 128 + signum (breaks R-1)",
            Bug::NoReplace => "keeps the first callback of a pid registered again (breaks W-2)",
            Bug::LostWakeup => "loses the exit of every second child (breaks W-2)",
        };
        Some(clap::builder::PossibleValue::new(name).help(help))
    }
}

impl<K: Kernel> fmt::Debug for Broken<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Broken({:?}, {:?})", self.bug, self.inner)
    }
}

impl<K: Kernel> ChildWatcher<K> for Broken<K> {
    /// The correct watcher: the fork window and the attached loop are its.
    fn inner(&self) -> Option<&dyn ChildWatcher<K>> {
        Some(&*self.inner)
    }

    fn add_child_handler(&self, pid: Pid, callback: ChildCallback) -> LwResult<()> {
        let first = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(pid);
        let count = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        match self.bug {
            Bug::ShellReturncode => self.inner.add_child_handler(
                pid,
                Box::new(move |pid, code| callback(pid, if code < 0 { 128 - code } else { code })),
            ),
            Bug::NoReplace if !first => Ok(()),
            Bug::LostWakeup if count % 2 == 0 => {
                self.inner.add_child_handler(pid, Box::new(|_, _| {}))
            }
            Bug::NoReplace | Bug::LostWakeup => self.inner.add_child_handler(pid, callback),
        }
    }

    fn remove_child_handler(&self, pid: Pid) -> bool {
        self.inner.remove_child_handler(pid)
    }

    fn attach_loop(&self, event_loop: Option<EventLoop<K>>) -> LwResult<()> {
        self.inner.attach_loop(event_loop)
    }

    fn close(&self) -> LwResult<()> {
        self.inner.close()
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }
}

/// Makes a zoo watcher: `bug` on top of the built-in `like`.
#[derive(Clone, Copy, Debug)]
pub struct ZooMaker {
    /// The bug.
    pub bug: Bug,
    /// The correct watcher it breaks.
    pub like: WatcherName,
}

impl MakeWatcher for ZooMaker {
    fn name(&self) -> String {
        format!("{}({})", self.bug.name(), self.like)
    }

    fn like(&self) -> WatcherName {
        self.like
    }

    fn make<K: Kernel>(&self, kernel: &K) -> WatcherRef<K> {
        Arc::new(Broken {
            inner: make_watcher(self.like, kernel),
            bug: self.bug,
            seen: Seen::new(BTreeSet::new()),
        })
    }
}

/// Runs each bug of the zoo on Safe, over the scenarios built into the crate
/// (whatever `options.scenarios` says: the zoo is meant to be caught by them), and
/// says which scenarios caught it (with their clauses); an empty list means the bug
/// slipped through.
///
/// # Errors
///
/// The built-in scenarios cannot be loaded.
pub fn hunt(options: &Options) -> Result<Vec<(String, Vec<Cell>)>, Error> {
    hunt_with(options, &Silent)
}

/// As [`hunt`], telling `progress` about the phase ("the zoo") and each scenario.
///
/// # Errors
///
/// The built-in scenarios cannot be loaded.
pub fn hunt_with(
    options: &Options,
    progress: &dyn Progress,
) -> Result<Vec<(String, Vec<Cell>)>, Error> {
    let options = Options {
        scenarios: None,
        ..options.clone()
    };
    let safe = crate::scenario::builtin()?
        .iter()
        .filter(|s| s.watchers.contains(&WatcherName::Safe))
        .count();
    progress.phase(
        &format!("the zoo ({} broken watchers)", Bug::ALL.len()),
        Bug::ALL.len() * safe,
    );
    let mut found = Vec::new();
    for bug in Bug::ALL {
        let maker = ZooMaker {
            bug,
            like: WatcherName::Safe,
        };
        let matrix = check_watcher_with(&maker, &options, progress)?;
        let caught: Vec<Cell> = matrix
            .cells
            .into_iter()
            .filter(|c| matches!(c.status, Status::Diverges { .. }))
            .collect();
        found.push((maker.name(), caught));
    }
    Ok(found)
}

// ----- the historical zoo: mutants of loopwatch's own components ----------------------

/// A way of hunting bugs, from the cheapest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Technique {
    /// The built-in scenarios on the simulator, without faults, each trace compared
    /// with the real watcher's on the OS, every run under the invariant checker.
    Scenarios,
    /// The built-in scenarios over seeds with every fault on, judged by the invariant
    /// checker alone: `explore --faults all` on even seeds, and on odd ones with
    /// pidfds working and a foreign reaper at exit (see `explore_faults`).
    Explore,
    /// Generated programs (proptest), judged by the invariant checker; the first
    /// failure is shrunk.
    Proptest,
}

impl Technique {
    /// Every technique, cheapest first.
    pub const ALL: [Technique; 3] = [
        Technique::Scenarios,
        Technique::Explore,
        Technique::Proptest,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Technique::Scenarios => "scenarios",
            Technique::Explore => "explore",
            Technique::Proptest => "proptest",
        }
    }
}

/// How long a technique may hunt one mutant: whichever limit comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Runs (seeds or generated cases).
    pub runs: u64,
    /// Wall time.
    pub time: Duration,
}

impl Budget {
    /// The acceptance budget: 10,000 runs or 60 s.
    pub const DEFAULT: Budget = Budget {
        runs: 10_000,
        time: Duration::from_secs(60),
    };

    /// `factor` times this budget.
    pub fn times(self, factor: u32) -> Budget {
        Budget {
            runs: self.runs * u64::from(factor),
            time: self.time * factor,
        }
    }
}

/// What one technique did against one watcher.
#[derive(Clone, Debug, Serialize)]
pub struct Hunted {
    /// The technique.
    pub technique: Technique,
    /// Runs made (up to and including the first failure).
    pub runs: u64,
    /// Wall time taken.
    pub elapsed: Duration,
    /// The first failing run's verdict, if one failed.
    pub failure: Option<Verdict>,
    /// For a failing generated program: its size and its shrunk size.
    pub shrunk: Option<(usize, usize)>,
    /// For a failing generated program: the regression of the shrunk one.
    #[serde(skip)]
    pub regression: Option<Regression>,
}

/// The watcher a mutant lives in (or, for a mutant of the loop or of subprocesses,
/// the watcher the hunt runs it with).
pub fn mutant_watcher(mutant: Mutant) -> WatcherName {
    match mutant {
        Mutant::SafeNoInitialPoll | Mutant::StaleWakeupFd | Mutant::PanicEndsPass => {
            WatcherName::Safe
        }
        Mutant::FastHangsOnStolen | Mutant::FastLostEarlyExit => WatcherName::Fast,
        Mutant::MultiLoopNoWake
        | Mutant::MultiLoopReentrant255
        | Mutant::MultiLoopCloseWaitsInheritedPipe => WatcherName::MultiLoop,
        Mutant::PidfdUnhandledEchild | Mutant::SpawnPidfdLate => WatcherName::Pidfd,
        Mutant::WaitidReapsForeign => WatcherName::Waitid,
        Mutant::WaiterReusedPid
        | Mutant::ThreadsafeNoWake
        | Mutant::ThreadedDoubleWaiter
        | Mutant::ReapedAfterHop
        | Mutant::KillAfterReap => WatcherName::Threaded,
        _ => WatcherName::Safe,
    }
}

/// Whether `watcher` runs the code `mutant` changes, so that the mutant can be hunted
/// inside it ([`hunt_in`]): its own watcher's code, the subprocesses' (every
/// watcher's children are started there), the cross-thread hop of the loop (for the
/// watchers that report from another thread), and, for Auto, the code of Pidfd and
/// Threaded, whose watchers are its rungs.
pub fn reaches(mutant: Mutant, watcher: WatcherName) -> bool {
    let home = mutant_watcher(mutant);
    let rungs: &[WatcherName] = match watcher {
        WatcherName::Auto => &[WatcherName::Pidfd, WatcherName::Threaded],
        _ => &[],
    };
    match mutant {
        Mutant::KillAfterReap | Mutant::SpawnPidfdLate => true,
        Mutant::ThreadsafeNoWake => matches!(
            watcher,
            WatcherName::Threaded | WatcherName::MultiLoop | WatcherName::Auto
        ),
        _ => home == watcher || rungs.contains(&home),
    }
}

/// Hunts `watcher` with `mutant` on (which may be another watcher's, see [`reaches`]),
/// or the real `watcher` with `None`, with every technique in `techniques`.
pub fn hunt_in(
    mutant: Option<Mutant>,
    watcher: WatcherName,
    techniques: &[Technique],
    references: &BTreeMap<WatcherName, References>,
    budget: Budget,
    jobs: usize,
) -> ZooRow {
    let empty = References::new();
    let references = references.get(&watcher).unwrap_or(&empty);
    ZooRow {
        mutant: mutant.map(|m| m.name().to_string()),
        origin: mutant
            .map_or("the real watcher", |m| m.origin())
            .to_string(),
        watcher,
        hunted: techniques
            .iter()
            .map(|t| hunt_with_technique(*t, watcher, mutant, references, budget, jobs))
            .collect(),
    }
}

/// The faults of the explore technique for `seed`, one of two sets in turn: every
/// fault of `all` on even seeds; on odd ones, every fault of `all` but the two
/// `pidfd_open` refusals, which keep Pidfd's and Auto's pidfd paths idle for a whole
/// run, and with `foreign-reap-exit`, the foreign reaper that needs no SIGCHLD and so
/// reaches Threaded, Pidfd and Auto.
fn explore_faults(seed: u64) -> Vec<Fault> {
    if seed % 2 == 0 {
        return Fault::ALL.to_vec();
    }
    Fault::ALL
        .into_iter()
        .filter(|f| !matches!(f, Fault::PidfdEnosys | Fault::PidfdEperm))
        .chain([Fault::ForeignReapExit])
        .collect()
}

/// Runs `technique` against `watcher` (with `mutant` on, or the real watcher) until a
/// run fails or `budget` is spent. `references` are the real OS's traces of the
/// watcher's scenarios (for [`Technique::Scenarios`]).
pub fn hunt_with_technique(
    technique: Technique,
    watcher: WatcherName,
    mutant: Option<Mutant>,
    references: &References,
    budget: Budget,
    jobs: usize,
) -> Hunted {
    use loopwatch::kernel::Clock as _;
    let started = loopwatch::OsKernel.now();
    let elapsed = || loopwatch::OsKernel.now().saturating_sub(started);
    let scenarios: Vec<Scenario> = crate::scenario::builtin()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.runs_with(watcher) && references.contains_key(&s.name))
        .collect();
    // Runs go in batches, in a fixed order (seed-major), so that "runs to the first
    // failure" does not depend on how many run at once.
    let batch = (jobs.max(1) * 8) as u64;
    let mut runs = 0;
    let mut next = 0_u64;
    while next < budget.runs && elapsed() < budget.time {
        let indices: Vec<u64> = (next..(next + batch).min(budget.runs)).collect();
        next += indices.len() as u64;
        let verdicts = crate::parallel::map(
            crate::parallel::Work::Simulations,
            &indices,
            jobs,
            |&index| match technique {
                Technique::Scenarios | Technique::Explore => {
                    let count = scenarios.len().max(1) as u64;
                    let scenario = scenarios.get((index % count) as usize)?;
                    let seed = index / count;
                    let (faults, reference) = if technique == Technique::Scenarios {
                        (Vec::new(), Some(references[&scenario.name].as_slice()))
                    } else {
                        (explore_faults(seed), None)
                    };
                    let run = Run {
                        scenario,
                        watcher,
                        seed,
                        faults: &faults,
                        mutant,
                        keep_trace: false,
                    };
                    let checked = run.checked();
                    Some(verdict(&run, reference, false, &checked))
                }
                Technique::Proptest => {
                    let program = crate::programs::sample(watcher, crate::hunt::MAX_STEPS, index).0;
                    let (_, _, mut verdict) = crate::hunt::run_program(
                        &program,
                        &format!("program-{index}"),
                        watcher,
                        mutant,
                    );
                    verdict.replay = crate::explore::program_replay(watcher, index, mutant);
                    Some(verdict)
                }
            },
        );
        for (index, verdict) in indices.iter().zip(verdicts) {
            runs += 1;
            let Some(verdict) = verdict.filter(|v| !v.ok) else {
                continue;
            };
            let mut hunted = Hunted {
                technique,
                runs,
                elapsed: elapsed(),
                failure: Some(verdict),
                shrunk: None,
                regression: None,
            };
            if technique == Technique::Proptest {
                if let Some(found) = crate::hunt::hunt_case(watcher, *index, mutant) {
                    hunted.shrunk = Some((found.program.len(), found.shrunk.len()));
                    let name = match mutant {
                        Some(mutant) => format!("{mutant}-{watcher}"),
                        None => format!("{watcher}-case-{index}"),
                    };
                    hunted.regression = Some(Regression::of(&found, watcher, mutant, &name));
                }
            }
            return hunted;
        }
        if scenarios.is_empty() && technique != Technique::Proptest {
            break;
        }
    }
    Hunted {
        technique,
        runs,
        elapsed: elapsed(),
        failure: None,
        shrunk: None,
        regression: None,
    }
}

/// One mutant's row of `cargo loopwatch zoo`.
#[derive(Clone, Debug, Serialize)]
pub struct ZooRow {
    /// The mutant (`None`: the real watcher, which must survive).
    pub mutant: Option<String>,
    /// The bug it re-creates.
    pub origin: String,
    /// The watcher it ran with.
    pub watcher: WatcherName,
    /// Each technique's hunt.
    pub hunted: Vec<Hunted>,
}

impl ZooRow {
    /// The technique that caught the mutant in the least time, if any did.
    pub fn first(&self) -> Option<&Hunted> {
        self.hunted
            .iter()
            .filter(|h| h.failure.is_some())
            .min_by_key(|h| h.elapsed)
    }
}

/// Hunts `mutant` with every technique in `techniques`, each within `budget`.
pub fn hunt_mutant(
    mutant: Mutant,
    techniques: &[Technique],
    references: &BTreeMap<WatcherName, References>,
    budget: Budget,
    jobs: usize,
) -> ZooRow {
    hunt_in(
        Some(mutant),
        mutant_watcher(mutant),
        techniques,
        references,
        budget,
        jobs,
    )
}

/// Runs the real `watcher` through every technique in `techniques` within `budget`:
/// it must survive them all.
pub fn hunt_real(
    watcher: WatcherName,
    techniques: &[Technique],
    references: &BTreeMap<WatcherName, References>,
    budget: Budget,
    jobs: usize,
) -> ZooRow {
    hunt_in(None, watcher, techniques, references, budget, jobs)
}
