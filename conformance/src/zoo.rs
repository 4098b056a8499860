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

use crate::matrix::{Cell, Matrix, Options, Status};
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
/// the simulator (`options.seeds` seeds), and compares each trace with the built-in
/// watcher's on the real OS. Call it from the process's main thread.
///
/// # Errors
///
/// The scenarios cannot be loaded.
pub fn check_watcher<M: MakeWatcher>(maker: &M, options: &Options) -> Result<Matrix, String> {
    let scenarios = crate::scenario::load_dir(&options.scenarios)?;
    let like = maker.like();
    let mut matrix = Matrix::default();
    for scenario in scenarios.iter().filter(|s| s.watchers.contains(&like)) {
        let cell = |backend: &str, status: Status| Cell {
            scenario: scenario.name.clone(),
            clauses: scenario.clauses.clone(),
            watcher: maker.name(),
            backend: backend.to_string(),
            status,
        };
        let expected = match execute(&loopwatch::OsKernel, scenario, like) {
            Ok(trace) => trace,
            Err(error) => {
                matrix.cells.push(cell(
                    "os",
                    Status::Failed {
                        error: error.to_string(),
                    },
                ));
                continue;
            }
        };
        let judge = |got: Result<Vec<String>, String>| match got {
            Ok(got) if got == expected => Status::Match,
            Ok(got) => Status::Diverges {
                expected: expected.clone(),
                got,
            },
            Err(error) => Status::Failed { error },
        };
        let on_os = execute_with(&loopwatch::OsKernel, scenario, &|k| maker.make(k));
        matrix
            .cells
            .push(cell("os", judge(on_os.map_err(|e| e.to_string()))));
        let mut sim = Status::Match;
        for seed in 0..options.seeds {
            let got = on_sim(scenario, seed, maker);
            sim = judge(got);
            if sim != Status::Match {
                break;
            }
        }
        matrix.cells.push(cell("sim", sim));
    }
    Ok(matrix)
}

fn on_sim<M: MakeWatcher>(
    scenario: &Scenario,
    seed: u64,
    maker: &M,
) -> Result<Vec<String>, String> {
    let (scenario, maker) = (scenario.clone(), maker.clone());
    let (result, report) = loopwatch_sim::Simulation::new(seed)
        .run_returning(move |kernel| execute_with(&kernel, &scenario, &|k| maker.make(k)));
    let result =
        result.ok_or_else(|| format!("simulation {:?} with seed {seed}", report.outcome))?;
    result.map_err(|e| e.to_string())
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

/// Runs each bug of the zoo on Safe and says which scenarios caught it (with their
/// clauses); an empty list means the bug slipped through.
///
/// # Errors
///
/// The scenarios cannot be loaded.
pub fn hunt(options: &Options) -> Result<Vec<(String, Vec<Cell>)>, String> {
    let mut found = Vec::new();
    for bug in Bug::ALL {
        let maker = ZooMaker {
            bug,
            like: WatcherName::Safe,
        };
        let matrix = check_watcher(&maker, options)?;
        let caught: Vec<Cell> = matrix
            .cells
            .into_iter()
            .filter(|c| matches!(c.status, Status::Diverges { .. }))
            .collect();
        found.push((maker.name(), caught));
    }
    Ok(found)
}
