//! The bug zoo: watchers broken on purpose, each after a real class of bug, and the
//! suite's entry point for checking any watcher of your own ([`check_watcher`]).
//!
//! A zoo watcher wraps a correct one and breaks one rule. The suite must catch each:
//! `cargo loopwatch check` runs them and fails if one slips through.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use loopwatch::kernel::{Kernel, Pid};
use loopwatch::watcher::ChildCallback;
use loopwatch::{ChildWatcher, EventLoop, Result as LwResult, WatcherRef};

use crate::Error;
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
    let chosen: Vec<&Scenario> = scenarios
        .iter()
        .filter(|s| s.watchers.contains(&like))
        .collect();
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
