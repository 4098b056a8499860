//! Seed sweeps: one body over many simulator seeds, with one concise report.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use loopwatch::OsKernel;

use super::Body;
use super::leaks::{LeakAccount, Resources};
use super::quiet::{self, PanicRecord, Quiet};
use crate::{Outcome, Report, SimKernel, Simulation};

/// How many trace lines of the first failing seed a report shows.
const TAIL_LINES: usize = 20;
/// How many lines of a failure's message a report shows.
const MESSAGE_LINES: usize = 12;
/// How many other failing seeds a report names (it counts them all).
const SEEDS_NAMED: usize = 10;

type Configure = Arc<dyn Fn(u64) -> Simulation + Send + Sync>;
type CheckReport = Arc<dyn Fn(&Report) -> Result<(), String> + Send + Sync>;

/// A seed sweep: runs a body on the simulator once per seed and, if any seed fails,
/// gives one report (see [`SweepFailure`]).
///
/// The seeds are `0..n`, or `0..LOOPWATCH_SEEDS` when that variable is set, or only
/// `LOOPWATCH_SEED` when that one is. A seed fails when its run does not complete
/// (the body panicked, deadlocked, or hit the step limit), when
/// [`check_leaks`](Sweep::check_leaks) is on and the run left children, fds or
/// threads, or when [`check_report`](Sweep::check_report) says so.
///
/// ```
/// use loopwatch::kernel::{Errno, Fds};
/// use loopwatch_sim::testing::Sweep;
/// use loopwatch_sim::{FaultPlan, Simulation};
///
/// // Goal: with 8 fds allowed (3 for stdio), a third pipe is refused with EMFILE.
/// let sweep = Sweep::new(8)
///     .simulation(|seed| {
///         Simulation::new(seed).faults(FaultPlan { fd_limit: Some(8), ..FaultPlan::none() })
///     })
///     .check_leaks();
/// let swept = sweep.run(|k| {
///     let pipes: Vec<_> = (0..2).map(|_| k.pipe().unwrap()).collect();
///     assert_eq!(k.pipe().unwrap_err(), Errno::EMFILE);
///     for (read, write) in pipes {
///         k.close(read).unwrap();
///         k.close(write).unwrap();
///     }
/// });
/// assert_eq!(swept.seeds, sweep.seeds().len());
/// ```
#[derive(Clone)]
pub struct Sweep {
    seeds: Vec<u64>,
    simulation: Configure,
    check_leaks: bool,
    check_report: Option<CheckReport>,
    name: Option<String>,
    package: Option<String>,
}

impl fmt::Debug for Sweep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sweep")
            .field("seeds", &self.seeds.len())
            .field("check_leaks", &self.check_leaks)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a passing sweep ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// How many seeds ran.
    pub seeds: usize,
    /// Each coverage mark's count summed over the seeds, so a test can check that a
    /// rare state was reached by some seed.
    pub marks: BTreeMap<&'static str, u64>,
}

/// The seeds a sweep of `n` runs, after `LOOPWATCH_SEED` and `LOOPWATCH_SEEDS`.
fn seeds(n: u64) -> Vec<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.trim().parse().ok());
    match (var("LOOPWATCH_SEED"), var("LOOPWATCH_SEEDS")) {
        (Some(seed), _) => vec![seed],
        (None, Some(count)) => (0..count).collect(),
        (None, None) => (0..n).collect(),
    }
}

impl Sweep {
    /// A sweep of `n` seeds (unless the environment says otherwise) with default
    /// simulations, checking only that each run completes.
    pub fn new(n: u64) -> Sweep {
        Sweep {
            seeds: seeds(n),
            simulation: Arc::new(Simulation::new),
            check_leaks: false,
            check_report: None,
            name: None,
            package: None,
        }
    }

    /// The seeds it will run.
    pub fn seeds(&self) -> &[u64] {
        &self.seeds
    }

    /// Builds each seed's simulation with `configure` (faults, pid reuse, strategy …)
    /// instead of `Simulation::new(seed)`.
    pub fn simulation(
        mut self,
        configure: impl Fn(u64) -> Simulation + Send + Sync + 'static,
    ) -> Sweep {
        self.simulation = Arc::new(configure);
        self
    }

    /// Fails a seed whose run left children, fds or threads behind.
    pub fn check_leaks(mut self) -> Sweep {
        self.check_leaks = true;
        self
    }

    /// Judges each seed's report with `check` instead of requiring that the run
    /// completed: `Err(problem)` fails the seed. Use [`completed`] inside it to keep
    /// that requirement; leave it out to expect, say, a deadlock.
    pub fn check_report(
        mut self,
        check: impl Fn(&Report) -> Result<(), String> + Send + Sync + 'static,
    ) -> Sweep {
        self.check_report = Some(Arc::new(check));
        self
    }

    /// The test's name for the replay command (default: the name of the thread that
    /// runs the sweep, which is the test's name under cargo's harness).
    pub fn name(mut self, name: impl Into<String>) -> Sweep {
        self.name = Some(name.into());
        self
    }

    /// The package for the replay command's `-p` (default: `CARGO_PKG_NAME` as cargo
    /// and nextest set it when they run a test binary; none when it is unset).
    pub fn package(mut self, package: impl Into<String>) -> Sweep {
        self.package = Some(package.into());
        self
    }

    fn judge(&self, report: &Report) -> Option<String> {
        let verdict = match &self.check_report {
            Some(check) => check(report),
            None => completed(report),
        };
        verdict.err().or_else(|| {
            self.check_leaks
                .then(|| Resources::left_in(report).leaked_since(&Resources::default()))
                .flatten()
        })
    }

    /// Runs `body` once per seed: `Ok` with what ran, or the report of the first
    /// failing seed. The other seeds still run, to be counted; while the sweep runs
    /// the panics of this thread are not printed (the report has the first one).
    pub fn try_run<F>(&self, body: F) -> Result<Swept, SweepFailure>
    where
        F: Fn(&SimKernel) + Send + Sync + 'static,
    {
        let body = Arc::new(body);
        let mut swept = Swept::default();
        let mut first: Option<Box<FirstFailure>> = None;
        let mut failed = Vec::new();
        {
            let _quiet = Quiet::begin();
            for &seed in &self.seeds {
                let body = body.clone();
                quiet::take_first_panic();
                let report = (self.simulation)(seed).run(move |kernel| body(&kernel));
                match self.judge(&report) {
                    None => {
                        swept.seeds += 1;
                        for (mark, count) in &report.marks {
                            *swept.marks.entry(mark).or_default() += count;
                        }
                    }
                    Some(problem) => {
                        failed.push(seed);
                        if first.is_none() {
                            let lines = report.trace.lines();
                            first = Some(Box::new(FirstFailure {
                                seed,
                                problem,
                                panic: quiet::take_first_panic(),
                                tail: lines[lines.len().saturating_sub(TAIL_LINES)..].to_vec(),
                                steps: report.trace.len(),
                            }));
                        }
                    }
                }
            }
        }
        let Some(first) = first else {
            return Ok(swept);
        };
        let test = self.name.clone().or_else(current_test_name);
        let package = self
            .package
            .clone()
            .or_else(|| std::env::var("CARGO_PKG_NAME").ok());
        Err(SweepFailure {
            replay: replay_command(first.seed, test.as_deref(), package.as_deref()),
            first,
            failed,
            total: self.seeds.len(),
        })
    }

    /// As [`Sweep::try_run`], panicking with the report if a seed fails.
    #[track_caller]
    pub fn run<F>(&self, body: F) -> Swept
    where
        F: Fn(&SimKernel) + Send + Sync + 'static,
    {
        match self.try_run(body) {
            Ok(swept) => swept,
            Err(failure) => panic!("{failure}"),
        }
    }

    /// Runs `body` once on the real OS ([`run_on_os`], with this sweep's leak check),
    /// then on every seed; panics with the first failure's report.
    #[track_caller]
    pub fn run_both<B: Body>(&self, body: B) -> Swept {
        if let Err(problem) = run_on_os(&body, self.check_leaks) {
            panic!("on the real OS: {problem}");
        }
        self.run(move |kernel| body.run(kernel))
    }
}

/// Runs `body` on the simulator for `n` seeds (see [`Sweep`] for the environment
/// variables), from an ordinary `#[test]` or anywhere else; panics with one concise
/// report if a seed fails.
///
/// ```
/// use loopwatch::kernel::{Processes, WaitMode, WaitStatus};
/// use loopwatch_sim::testing;
///
/// // Goal: a blocking wait for any child returns the one child there is.
/// testing::for_seeds(16, |k| {
///     let pid = testing::spawn_sh(k, "sleep 1; exit 4");
///     match k.wait_any(WaitMode::Block).unwrap() {
///         WaitStatus::Terminated(got, status) => {
///             assert_eq!((got, status.returncode()), (pid, 4));
///         }
///         other => panic!("{other:?}"),
///     }
/// });
/// ```
#[track_caller]
pub fn for_seeds<F>(n: u64, body: F) -> Swept
where
    F: Fn(&SimKernel) + Send + Sync + 'static,
{
    Sweep::new(n).run(body)
}

/// Runs `body` once on the real OS, then on the simulator for `n` seeds; panics with
/// one concise report at the first failure. On the OS the body runs on the calling
/// thread: in an ordinary `#[test]` that is a worker thread, so code that needs the
/// main thread belongs in a [`Harness`](super::Harness) binary.
///
/// ```
/// use loopwatch::kernel::{Kernel, Processes};
/// use loopwatch_sim::testing::{self, Body};
///
/// /// Goal: a child killed by SIGKILL has returncode -9.
/// struct Killed;
///
/// impl Body for Killed {
///     fn run<K: Kernel>(&self, kernel: &K) {
///         let pid = testing::spawn_sh(kernel, "kill -9 $$");
///         assert_eq!(testing::reap(kernel, pid), -9);
///     }
/// }
///
/// testing::for_seeds_and_os(8, Killed);
/// ```
#[track_caller]
pub fn for_seeds_and_os<B: Body>(n: u64, body: B) -> Swept {
    Sweep::new(n).run_both(body)
}

/// Runs `body` once on the real OS on the calling thread: `Err` with the panic's
/// message if it panicked, or with the leak if `check_leaks` is set and the process
/// holds more children, fds or threads afterwards (see [`LeakAccount`]). The panic is
/// printed as usual.
pub fn run_on_os<B: Body>(body: &B, check_leaks: bool) -> Result<(), String> {
    let account = if check_leaks {
        Some(LeakAccount::start().map_err(|e| format!("reading /proc: {e}"))?)
    } else {
        None
    };
    catch_unwind(AssertUnwindSafe(|| body.run(&OsKernel))).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string())
    })?;
    account.map_or(Ok(()), LeakAccount::finish)
}

/// The default judgement of a seed: `Ok` when its run completed, else what happened.
///
/// ```
/// use loopwatch_sim::Simulation;
/// use loopwatch_sim::testing::completed;
///
/// assert_eq!(completed(&Simulation::new(0).run(|_| {})), Ok(()));
/// let failed = Simulation::new(0).run(|_| panic!("no"));
/// assert_eq!(completed(&failed).unwrap_err(), "panicked: no");
/// ```
pub fn completed(report: &Report) -> Result<(), String> {
    match &report.outcome {
        Outcome::Completed => Ok(()),
        Outcome::Panicked(message) => Err(format!("panicked: {message}")),
        Outcome::Deadlock(what) => Err(format!("deadlock: {what}")),
        Outcome::StepLimit(steps) => Err(format!("no end after {steps} scheduling steps")),
        Outcome::KilledBySignal(signal) => {
            Err(format!("the process was killed by signal {signal}"))
        }
        Outcome::ModelViolation(v) => Err(format!(
            "the simulator broke its model's invariant {} at step {}: {}",
            v.rule, v.step, v.detail
        )),
    }
}

struct FirstFailure {
    seed: u64,
    problem: String,
    panic: Option<PanicRecord>,
    tail: Vec<String>,
    steps: u64,
}

/// A failed sweep's report, as [`Sweep::try_run`] returns it and [`for_seeds`]
/// panics with. Displayed, it reads:
///
/// ```text
/// 3 of 16 seeds failed; the first is seed 5:
///   panicked: assertion `left == right` failed …
///   at tests/my_tests.rs:12:9
/// its last 20 of 311 trace lines:
///   0.000000 T1 spawn("/bin/sh" ["-c", "exit 1"]) = 1001
///   …
/// the other failing seeds (run only to be counted): 7, 11
/// replay: LOOPWATCH_SEED=5 cargo test -p my-crate --test my_tests my_test -- --exact
/// ```
pub struct SweepFailure {
    first: Box<FirstFailure>,
    failed: Vec<u64>,
    total: usize,
    replay: String,
}

impl SweepFailure {
    /// The first failing seed.
    pub fn seed(&self) -> u64 {
        self.first.seed
    }

    /// Every failing seed, in the order they ran.
    pub fn failed_seeds(&self) -> &[u64] {
        &self.failed
    }

    /// What went wrong with the first failing seed.
    pub fn problem(&self) -> &str {
        &self.first.problem
    }

    /// The command that replays the first failing seed.
    pub fn replay(&self) -> &str {
        &self.replay
    }
}

impl fmt::Debug for SweepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SweepFailure")
            .field("seed", &self.first.seed)
            .field("problem", &self.first.problem)
            .field("failed", &self.failed)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// Writes `text` indented, at most `max` lines of it.
fn indented(f: &mut fmt::Formatter<'_>, text: &str, max: usize) -> fmt::Result {
    let lines: Vec<&str> = text.lines().collect();
    for line in lines.iter().take(max) {
        writeln!(f, "  {line}")?;
    }
    if lines.len() > max {
        writeln!(f, "  … ({} more lines)", lines.len() - max)?;
    }
    Ok(())
}

impl fmt::Display for SweepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = &self.first;
        writeln!(
            f,
            "{} of {} seeds failed; the first is seed {}:",
            self.failed.len(),
            self.total,
            first.seed
        )?;
        indented(f, &first.problem, MESSAGE_LINES)?;
        if let Some(panic) = &first.panic {
            if !first.problem.contains(panic.message.as_str()) {
                indented(f, &format!("first panic: {}", panic.message), MESSAGE_LINES)?;
            }
            if let Some(location) = &panic.location {
                writeln!(f, "  at {location}")?;
            }
            if let Some(backtrace) = &panic.backtrace {
                writeln!(f, "  its own frames (RUST_BACKTRACE is set):")?;
                indented(f, backtrace, usize::MAX)?;
            }
        }
        if first.tail.is_empty() {
            writeln!(f, "its trace was not kept")?;
        } else {
            writeln!(
                f,
                "its last {} of {} trace lines:",
                first.tail.len(),
                first.steps
            )?;
            for line in &first.tail {
                writeln!(f, "  {line}")?;
            }
        }
        let others = &self.failed[1..];
        if !others.is_empty() {
            let mut named: Vec<String> = others
                .iter()
                .take(SEEDS_NAMED)
                .map(u64::to_string)
                .collect();
            if others.len() > SEEDS_NAMED {
                named.push(format!("… ({} in all)", others.len()));
            }
            writeln!(
                f,
                "the other failing seeds (run only to be counted): {}",
                named.join(", ")
            )?;
        }
        write!(f, "replay: {}", self.replay)
    }
}

impl std::error::Error for SweepFailure {}

thread_local! {
    /// The trial a [`Harness`](super::Harness) runs on this thread.
    static TRIAL: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` as the harness's trial `name`, so that a sweep inside it names that
/// trial in its replay command.
pub(crate) fn as_trial<R>(name: &str, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<String>);
    impl Drop for Reset {
        fn drop(&mut self) {
            TRIAL.with(|trial| *trial.borrow_mut() = self.0.take());
        }
    }
    let _reset = Reset(TRIAL.with(|trial| trial.borrow_mut().replace(name.to_string())));
    f()
}

/// The name of the running test: the harness's trial, else the thread's name (cargo's
/// harness names each test's thread after the test).
fn current_test_name() -> Option<String> {
    if let Some(name) = TRIAL.with(|trial| trial.borrow().clone()) {
        return Some(name);
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "the test's name, outside any simulation"
    )]
    let thread = std::thread::current();
    thread
        .name()
        .filter(|name| *name != "main")
        .map(str::to_string)
}

/// The cargo target of a test binary named `stem` (its file name without cargo's
/// `-<hash>`): `--lib` for the library's unit tests, else `--test <stem>`.
fn target_of(stem: &str, package: Option<&str>) -> String {
    let binary = match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name
        }
        _ => stem,
    };
    match package {
        Some(package) if package.replace('-', "_") == binary => "--lib".to_string(),
        _ => format!("--test {binary}"),
    }
}

/// `text` as one shell word.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.:/=,+@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The command that runs test `test` of the running test binary with seed `seed`
/// alone: `LOOPWATCH_SEED=<seed> cargo test [-p <package>] --test <binary> <test> --
/// --exact`, where the binary is this executable's name without cargo's hash (`--lib`
/// for the library's unit tests, when `package` names the package).
///
/// ```
/// let command = loopwatch_sim::testing::replay_command(5, Some("my_test"), Some("my-crate"));
/// assert!(command.starts_with("LOOPWATCH_SEED=5 cargo test -p my-crate "));
/// assert!(command.ends_with(" my_test -- --exact"));
/// ```
pub fn replay_command(seed: u64, test: Option<&str>, package: Option<&str>) -> String {
    let stem = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()));
    let mut command = format!("LOOPWATCH_SEED={seed} cargo test");
    if let Some(package) = package {
        command.push_str(&format!(" -p {}", shell_word(package)));
    }
    if let Some(stem) = stem {
        command.push(' ');
        command.push_str(&target_of(&stem, package));
    }
    if let Some(test) = test {
        command.push_str(&format!(" {} -- --exact", shell_word(test)));
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_strips_cargos_hash() {
        // Goal: cargo's `-<16 hex>` suffix is dropped, other dashes are kept, and the
        // library's unit-test binary is `--lib`.
        assert_eq!(
            target_of("fidelity-0123456789abcdef", None),
            "--test fidelity"
        );
        assert_eq!(target_of("my-tests", None), "--test my-tests");
        assert_eq!(
            target_of("my_crate-0123456789abcdef", Some("my-crate")),
            "--lib"
        );
        assert_eq!(
            target_of("other-0123456789abcdef", Some("my-crate")),
            "--test other"
        );
    }

    #[test]
    fn test_names_are_quoted_for_the_shell() {
        // Goal: a harness trial name with a space and brackets is one shell word.
        assert_eq!(shell_word("mod::name"), "mod::name");
        assert_eq!(shell_word("name [sim]"), "'name [sim]'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
