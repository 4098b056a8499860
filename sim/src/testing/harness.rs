//! The main-thread harness for `harness = false` test binaries.

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use super::Body;
use super::capture::Capture;
use super::leaks::LeakAccount;
use super::quiet::run_quietly;
use super::sweep::{Sweep, as_trial, run_on_os};
use crate::{Report, SimKernel, Simulation};

/// How many seeds a simulator arm runs unless the environment says otherwise.
const DEFAULT_SEEDS: u64 = 16;

type MainThreadFn = Box<dyn FnOnce() -> Result<(), String> + Send>;
type OsArm = Arc<dyn Fn(bool) -> Result<(), String> + Send + Sync>;
type SimBody = Arc<dyn Fn(&SimKernel) + Send + Sync>;
type Configure = Arc<dyn Fn(u64) -> Simulation + Send + Sync>;
type CheckReport = Arc<dyn Fn(&Report) -> Result<(), String> + Send + Sync>;

enum Run {
    /// A plain function on the real OS: one trial, named as the test.
    MainThread(MainThreadFn),
    /// A [`Body`] on both kernels: trials `name [os]` and `name [sim]`.
    Both { os: OsArm, sim: SimBody },
    /// A simulator body: the trial `name [sim]`.
    Sim(SimBody),
}

/// One test of a [`Harness`] binary: a plain main-thread function ([`Test::new`]), a
/// body for both kernels ([`Test::both`]) or a simulator body ([`Test::sim`]), with
/// its options.
///
/// ```
/// use loopwatch::kernel::{Kernel, Processes, Signal};
/// use loopwatch_sim::testing::{self, Body, Test};
/// use loopwatch_sim::{PidReuse, Simulation};
///
/// /// Goal: a reaped child's pid may be handed to the next child.
/// struct PidReused;
///
/// impl Body for PidReused {
///     fn run<K: Kernel>(&self, kernel: &K) {
///         let first = testing::spawn_sh(kernel, "exit 0");
///         testing::reap(kernel, first);
///         let second = testing::spawn_sh(kernel, "exit 0");
///         testing::reap(kernel, second);
///         assert_eq!(first, second);
///     }
/// }
///
/// let test = Test::both("pid_reused", PidReused)
///     .skip_os("Linux hands out pids in turn: reuse cannot be provoked on demand")
///     .simulation(|seed| {
///         let mut simulation = Simulation::new(seed);
///         simulation.config_mut().pid_reuse = PidReuse::LastFreed;
///         simulation
///     })
///     .check_leaks();
/// assert_eq!(test.trial_names(), ["pid_reused [os]", "pid_reused [sim]"]);
/// ```
pub struct Test {
    name: String,
    run: Run,
    skip_os: Option<String>,
    skip_sim: Option<String>,
    ignore: Option<String>,
    check_leaks: bool,
    seeds: u64,
    simulation: Option<Configure>,
    check_report: Option<CheckReport>,
}

impl fmt::Debug for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Test")
            .field("trials", &self.trial_names())
            .field("skip_os", &self.skip_os)
            .field("skip_sim", &self.skip_sim)
            .field("ignore", &self.ignore)
            .field("check_leaks", &self.check_leaks)
            .finish_non_exhaustive()
    }
}

impl Test {
    fn with_run(name: impl Into<String>, run: Run) -> Test {
        Test {
            name: name.into(),
            run,
            skip_os: None,
            skip_sim: None,
            ignore: None,
            check_leaks: false,
            seeds: DEFAULT_SEEDS,
            simulation: None,
            check_report: None,
        }
    }

    /// A test that runs `test` on the main thread, on the real OS: it fails if `test`
    /// returns `Err` or panics.
    pub fn new<E: fmt::Display>(
        name: impl Into<String>,
        test: impl FnOnce() -> Result<(), E> + Send + 'static,
    ) -> Test {
        Test::with_run(
            name,
            Run::MainThread(Box::new(move || test().map_err(|e| e.to_string()))),
        )
    }

    /// A test of `body` on both kernels: the trial `name [os]` runs it once on the
    /// real OS, on the main thread; `name [sim]` runs it on the simulator for 16
    /// seeds (see [`Test::seeds`]; `LOOPWATCH_SEEDS` and `LOOPWATCH_SEED` override).
    pub fn both<B: Body>(name: impl Into<String>, body: B) -> Test {
        let body = Arc::new(body);
        let on_os = body.clone();
        Test::with_run(
            name,
            Run::Both {
                os: Arc::new(move |check_leaks| run_on_os(&*on_os, check_leaks)),
                sim: Arc::new(move |kernel: &SimKernel| body.run(kernel)),
            },
        )
    }

    /// A simulator-only test: the trial `name [sim]` runs `body` for 16 seeds. Say
    /// why beside it (pid reuse, an injected fault, a deadlock: what the real OS
    /// cannot show on demand).
    pub fn sim(name: impl Into<String>, body: impl Fn(&SimKernel) + Send + Sync + 'static) -> Test {
        Test::with_run(name, Run::Sim(Arc::new(body)))
    }

    /// Skips the real-OS arm, printing `reason` (`ignored (reason)`).
    pub fn skip_os(mut self, reason: impl Into<String>) -> Test {
        self.skip_os = Some(reason.into());
        self
    }

    /// Skips the simulator arm, printing `reason`.
    pub fn skip_sim(mut self, reason: impl Into<String>) -> Test {
        self.skip_sim = Some(reason.into());
        self
    }

    /// Marks every trial of the test ignored, as `#[ignore = "reason"]` does: it runs
    /// only with `--ignored` or `--include-ignored`.
    pub fn ignore(mut self, reason: impl Into<String>) -> Test {
        self.ignore = Some(reason.into());
        self
    }

    /// Fails the test if it leaves children, fds or threads behind: on the real OS
    /// compared with before it ran, on the simulator at the end of each seed's run.
    pub fn check_leaks(mut self) -> Test {
        self.check_leaks = true;
        self
    }

    /// How many seeds the simulator arm runs unless the environment says otherwise.
    pub fn seeds(mut self, n: u64) -> Test {
        self.seeds = n;
        self
    }

    /// The simulator arm builds each seed's simulation with `configure` (see
    /// [`Sweep::simulation`]).
    pub fn simulation(
        mut self,
        configure: impl Fn(u64) -> Simulation + Send + Sync + 'static,
    ) -> Test {
        self.simulation = Some(Arc::new(configure));
        self
    }

    /// The simulator arm judges each seed's report with `check` (see
    /// [`Sweep::check_report`]).
    pub fn check_report(
        mut self,
        check: impl Fn(&Report) -> Result<(), String> + Send + Sync + 'static,
    ) -> Test {
        self.check_report = Some(Arc::new(check));
        self
    }

    /// The names of the trials the test registers, as `--list` prints them.
    pub fn trial_names(&self) -> Vec<String> {
        match &self.run {
            Run::MainThread(_) => vec![self.name.clone()],
            Run::Both { .. } => vec![self.os_name(), self.sim_name()],
            Run::Sim(_) => vec![self.sim_name()],
        }
    }

    fn os_name(&self) -> String {
        format!("{} [os]", self.name)
    }

    fn sim_name(&self) -> String {
        format!("{} [sim]", self.name)
    }

    fn sweep(&self) -> Sweep {
        let mut sweep = Sweep::new(self.seeds).name(self.sim_name());
        if let Some(configure) = self.simulation.clone() {
            sweep = sweep.simulation(move |seed| configure(seed));
        }
        if let Some(check) = self.check_report.clone() {
            sweep = sweep.check_report(move |report| check(report));
        }
        if self.check_leaks {
            sweep = sweep.check_leaks();
        }
        sweep
    }

    fn trials(self) -> Vec<Trial> {
        let (os_name, sim_name) = match self.run {
            Run::MainThread(_) => (self.name.clone(), self.sim_name()),
            _ => (self.os_name(), self.sim_name()),
        };
        let sweep = self.sweep();
        let check_leaks = self.check_leaks;
        let (os, sim): (Option<MainThreadFn>, Option<SimBody>) = match self.run {
            Run::MainThread(test) => (
                Some(Box::new(move || {
                    let account = check_leaks
                        .then(LeakAccount::start)
                        .transpose()
                        .map_err(|e| format!("reading /proc: {e}"))?;
                    test()?;
                    account.map_or(Ok(()), LeakAccount::finish)
                })),
                None,
            ),
            Run::Both { os, sim } => (Some(Box::new(move || os(check_leaks))), Some(sim)),
            Run::Sim(sim) => (None, Some(sim)),
        };
        let mut trials = Vec::new();
        if let Some(os) = os {
            let skip = self.skip_os;
            let name = os_name.clone();
            trials.push(Trial::ignorable_test(os_name, move || match skip {
                Some(reason) => Ok(Completion::ignored_with(reason)),
                None => {
                    // Each test on the real OS starts from a fresh default policy,
                    // whatever the one before left in the process.
                    loopwatch::set_event_loop_policy(None);
                    // The panic's message goes to the failure's report alone, not
                    // also to the terminal as it happens.
                    run_quietly(|| as_trial(&name, os))
                        .map(|()| Completion::Completed)
                        .map_err(Failed::from)
                }
            }));
        }
        if let Some(body) = sim {
            let skip = self.skip_sim;
            trials.push(Trial::ignorable_test(sim_name, move || match skip {
                Some(reason) => Ok(Completion::ignored_with(reason)),
                None => sweep
                    .try_run(move |kernel| body(kernel))
                    .map(|_| Completion::Completed)
                    .map_err(Failed::from),
            }));
        }
        let ignored = self.ignore.is_some();
        trials
            .into_iter()
            .map(|trial| trial.with_ignored_flag(ignored))
            .collect()
    }
}

/// A test binary's harness: runs its [`Test`]s on the process's main thread, one at
/// a time, with the command line and output of cargo's own harness.
///
/// For binaries declared with `harness = false`. It understands `--list` (listing
/// without running, one `name: test` line each, as nextest and IDEs read it), a name
/// filter, `--exact`, `--skip`, `--ignored`, `--include-ignored` and
/// `--format terse`; `--test-threads` is accepted but tests always run one at a
/// time, since they share the process (a note says so). It ends with cargo's summary
/// line, `test result: ok. N passed; M failed; …`, and exits non-zero on a failure.
///
/// Before each test on the real OS the default event-loop policy is put back (as
/// CPython's tests do), and while it runs, a [`Capture`] also records the events of
/// the process's other threads. A test's panic is reported once, in its failure's
/// section, with where it happened (and the test's own frames when `RUST_BACKTRACE`
/// is set), rather than also printed as it happens; panics of other threads are
/// printed as usual.
///
/// ```no_run
/// use loopwatch_sim::testing::{Harness, Test};
///
/// fn main() -> std::process::ExitCode {
///     Harness::new()
///         .test(Test::new("two_and_two", || {
///             if 2 + 2 == 4 { Ok(()) } else { Err("arithmetic") }
///         }))
///         .run()
/// }
/// ```
#[derive(Default)]
pub struct Harness {
    tests: Vec<Test>,
}

impl fmt::Debug for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.tests).finish()
    }
}

impl Harness {
    /// A harness with no tests.
    pub fn new() -> Harness {
        Harness::default()
    }

    /// Adds `test`.
    pub fn test(mut self, test: Test) -> Harness {
        self.tests.push(test);
        self
    }

    /// Adds every test of `tests`.
    pub fn tests(mut self, tests: impl IntoIterator<Item = Test>) -> Harness {
        self.tests.extend(tests);
        self
    }

    /// Parses the command line, runs the selected tests on this thread (call it from
    /// `main`) and returns the exit code for `main` to return.
    pub fn run(self) -> ExitCode {
        let mut args = Arguments::from_args();
        if args.test_threads.is_some_and(|n| n != 1) {
            eprintln!(
                "note: --test-threads ignored: these tests share the process and its main \
                 thread, so they run one at a time"
            );
        }
        args.test_threads = Some(1);
        Capture::forward_other_threads();
        let trials = self.tests.into_iter().flat_map(Test::trials).collect();
        libtest_mimic::run(&args, trials).exit_code()
    }
}

/// Runs `tests` with a [`Harness`]: `fn main() -> ExitCode { testing::main([...]) }`.
pub fn main(tests: impl IntoIterator<Item = Test>) -> ExitCode {
    Harness::new().tests(tests).run()
}
