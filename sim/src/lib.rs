//! A deterministic simulated kernel for loopwatch.
//!
//! [`SimKernel`] implements loopwatch's whole [`Kernel`](loopwatch::Kernel) seam over a
//! model of one process: its children (running, zombie, reaped; scripted fates), pids
//! (with a reuse policy), fds and pipes, pollers, signal dispositions, pending signals
//! that coalesce, the wakeup fd, threads, locks and virtual time. The real event loop,
//! policies and watchers run on it unchanged. A [`Simulation`] runs them from a seed:
//! simulated threads are coroutines on one OS thread, exactly one runs at a time,
//! every kernel call is a scheduling point, and every choice (which thread, when a
//! child exits, when and to whom a signal is delivered, which fault fires) comes from
//! the seed. Same seed, same trace.
//!
//! # Map
//!
//! - [`Simulation`], [`Report`]: configure and run; the report has the outcome, the
//!   trace and its hash, coverage marks and the [`Ledger`].
//! - [`Ledger`]: every child's life ([`ChildLife`]: serial, pid, program, who spawned
//!   and who reaped it, when, its returncode), every signal sent to a pid
//!   ([`SignalSent`]: by whom, how, which child it reached) and the [`Violation`]s
//!   found: of the model's own invariants, checked after every step
//!   ([`Config::check_model`]; one ends the run with [`Outcome::ModelViolation`]),
//!   and of rules the kernel sees the code under test break (`kernel.*`: a signal
//!   byte written to a wakeup fd whose number was closed and reused, a thread that
//!   ended holding a lock). [`SimKernel::serial_of`] names the child a pid is now.
//! - [`SimKernel`]: the seam, with [`SimKernel::call_counts`], the calls made through
//!   it by kind (deterministic for a seed); [`ForeignHandler`] plays other code's signal handlers,
//!   [`actors`] other code's threads (a spawner that waits for its own child, a
//!   `waitpid(-1)` reaper, SIG_IGN).
//! - [`program`]: what a simulated child runs. The built-in programs (`true`,
//!   `false`, `sleep S`, `cat`, `echo`, `sh -c`) and the exact shell subset of the
//!   simulator's `sh -c` (variables from the child's environment, `$$`, `$((…))`,
//!   `exit`, `echo`, `>&2`, `kill -SIG $$`, `read -r NAME`, `exec` …), each with an
//!   example; a
//!   [`ChildPlan`] scripts a child; [`SimKernel::register_program`] and
//!   [`SimKernel::register_program_fn`] (a plan computed from the arguments and the
//!   environment) add your own programs. A command it does not model is `ENOENT`
//!   with a warning, and a trace line, naming it.
//! - [`FaultPlan`]: EINTR, ENOSYS/EPERM from `pidfd_open`, EMFILE, EAGAIN from spawn,
//!   spurious wake-ups, children that exit before registration, zombies reaped by
//!   foreign code, a signal taken by another thread than Linux's usual choice, and
//!   scheduling lag (children and woken threads running late, as on a loaded
//!   machine).
//! - [`Strategy`]: uniform random or PCT scheduling.
//! - [`testing`]: how to test your own code with all of this: one body for the real OS
//!   and the simulator, seed sweeps whose failure report ends with a replay command
//!   for your crate, a main-thread harness for `harness = false` test binaries, a
//!   leak account and a capture of loopwatch's warnings.
//! - `model` (the kernel model) is separate from `driver` (coroutines and scheduling),
//!   so another driver can run the same model.
//!
//! # Which thread takes a signal, and when its handler runs
//!
//! As Linux does (`complete_signal` and `wants_signal` in kernel/signal.c):
//! - A process-directed signal is first offered to a suggested thread: for a child's
//!   SIGCHLD, the thread that spawned the child (or, once it has exited, the first
//!   live thread, the main thread while it lives, as Linux re-parents the child);
//!   for `kill()` of the process, the main thread (the thread-group leader).
//! - The suggested thread takes it if it wants it: it does not block the signal and
//!   has no signal of its own still waiting for its handler. Otherwise another thread
//!   that wants it takes it (the seed picks which); if none does, a thread that does
//!   not block it takes it along with the ones it already has.
//! - A handler runs on the taking thread's way back to user space. A thread blocked
//!   in a kernel call is woken, the call checks its condition again (a `waitpid`
//!   whose child has exited reaps it), and only then does the handler run, as the
//!   call returns, fails with EINTR (poll, pipe reads and writes) or restarts (the
//!   waits, as with `SA_RESTART`). Until then the signal stays pending for the
//!   process, so more of the same coalesce with it.
//!
//! Linux may also let another thread that does not block the signal take it, for
//! example one already running on another CPU that dequeues it first. That is rare,
//! so the simulator does it only under the [`FaultPlan::signal_other_thread`] fault.
//!
//! # Running the tests
//!
//! `cargo test -p loopwatch-sim`. `tests/fidelity.rs` runs each kernel-behaviour test
//! body on the real OS and on the simulator and expects the same outcome;
//! `tests/determinism.rs` checks that seeds replay.
//!
//! # Reproducing a failure
//!
//! Every failing run prints its seed and the command that replays it:
//! `LOOPWATCH_SEED=<seed> cargo test -p loopwatch-sim <test>`. [`Report::trace`] shows
//! every step; [`check_determinism`] names the first step where two runs of one seed
//! differ. In your own crate, [`testing::for_seeds`] and [`testing::Harness`] print a
//! replay command naming your package, test binary and test.
//!
//! # Limitations
//!
//! What the model does not model:
//! - One simulated process. Children are scripted entities, not processes running
//!   code: they do not fork, run threads or handle signals; they run the programs of
//!   [`program`] and the ones registered. A child writes its scripted output as soon
//!   as it runs, even output that on the OS follows a `sleep`. A signal's default action
//!   applies when the child next runs, lowest number first: termination; nothing for
//!   the signals ignored by default; a stop for SIGSTOP and the job-control stops
//!   (as for a process group that is not orphaned), after which the child neither
//!   progresses nor acts on signals until SIGCONT (SIGKILL still ends it at once).
//!   A shell's `kill -S $$` that it survives ends its script: it exits 0. Signals
//!   32 and 33 terminate, as the kernel's default; glibc programs catch them.
//! - Stops and continues raise SIGCHLD (as without `SA_NOCLDSTOP`) but no wait
//!   reports them (no `WUNTRACED`/`WCONTINUED`); no process groups or sessions, no
//!   `SA_NOCLDWAIT`, no real-time signal queues (every signal coalesces).
//! - Descriptors are pipes, pollers, eventfds, pidfds and stdio; no files, sockets or
//!   ttys. Stdio always reads and writes at once.
//! - Pipes have Linux's 64 KiB capacity; writes are partial when the pipe fills; no
//!   `PIPE_BUF` atomicity guarantees are modelled beyond that.
//! - Closing an fd makes every poller forget it at once. Linux's epoll forgets a file
//!   when its last reference goes, which is later when a child inherited the same
//!   open file (a pipe end passed as `Stdio::Fd`) and still holds it.
//! - Virtual time advances only when every simulated thread waits; the code's own
//!   computation takes no virtual time.
//! - A signal interrupts (`EINTR`) only a poll or a pipe read/write that is blocked; the
//!   wait calls restart, as with `SA_RESTART`. Injected `EINTR` can hit any of them.
//! - Threads still blocked when the main thread returns stop there, as in a process
//!   exit: the report counts them and what they hold. Only then are they unwound, so
//!   the run's memory is freed; their destructors' kernel calls fail with `EIO`.
//! - Locks other than the kernel's [`Monitor`](loopwatch::kernel::Monitor) are not
//!   scheduling points: code must not hold a `std` lock across a kernel call.

pub mod actors;
mod calls;
mod driver;
mod faults;
mod kernel;
mod ledger;
mod model;
pub mod program;
mod rng;
mod sched;
pub mod testing;
mod trace;

/// The README's examples (which use both crates), compiled and run as doc tests. The
/// user crate's test files, which name that crate (`my_jobs`), are `ignore` here:
/// `conformance/tests/user_crate.rs` builds that crate and runs them.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use driver::Outcome;
pub use faults::FaultPlan;
pub use kernel::{SimJoinHandle, SimKernel, SimMonitor, SimPoller, SimWaker};
pub use ledger::{ChildLife, Ledger, Reaper, SignalSent, SignalVia, Violation};
#[doc(hidden)]
pub use model::ModelDamage;
pub use model::{Config, ForeignHandler, PidReuse};
pub use program::ChildPlan;
pub use rng::Rng;
pub use sched::Strategy;
pub use trace::Trace;

/// What a run did.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed that produced it.
    pub seed: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Every step, when kept (see [`Config::keep_trace`]), and the hash of all.
    pub trace: Trace,
    /// How often each rare state was reached ("sigchld_coalesced", "pid_reused" …).
    pub marks: BTreeMap<&'static str, u64>,
    /// Scheduling steps taken.
    pub steps: u64,
    /// Threads still blocked when the run ended.
    pub threads_abandoned: usize,
    /// Running and zombie children left at the end.
    pub children_left: (usize, usize),
    /// Fds other than stdio still open at the end.
    pub fds_left: usize,
    /// Every child's life, every signal sent, and the violations found.
    pub ledger: Ledger,
}

impl Report {
    /// The trace hash.
    pub fn hash(&self) -> u64 {
        self.trace.hash()
    }

    /// How often the mark `name` was reached.
    pub fn mark(&self, name: &str) -> u64 {
        self.marks.get(name).copied().unwrap_or(0)
    }

    /// Panics with the seed, the replay command and the trace's tail unless the run
    /// completed.
    pub fn assert_completed(&self, test: &str) {
        if self.outcome != Outcome::Completed {
            let lines = self.trace.lines();
            let tail = &lines[lines.len().saturating_sub(40)..];
            panic!(
                "simulation {:?} with seed {}\nreplay: LOOPWATCH_SEED={} cargo test -p loopwatch-sim {test}\nlast steps:\n{}",
                self.outcome,
                self.seed,
                self.seed,
                tail.join("\n")
            );
        }
    }
}

/// A configured simulation, run with [`Simulation::run`].
#[derive(Clone, Debug)]
pub struct Simulation {
    config: Config,
}

impl Simulation {
    /// A simulation with default settings for `seed`.
    pub fn new(seed: u64) -> Simulation {
        Simulation {
            config: Config::new(seed),
        }
    }

    /// A simulation with `config`.
    pub fn with_config(config: Config) -> Simulation {
        Simulation { config }
    }

    /// The configuration, to change before running.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Switches on the faults of `plan`.
    pub fn faults(mut self, plan: FaultPlan) -> Simulation {
        self.config.faults = plan;
        self
    }

    /// Uses `strategy` to schedule threads.
    pub fn strategy(mut self, strategy: Strategy) -> Simulation {
        self.config.strategy = strategy;
        self
    }

    /// Keeps or drops trace lines (the hash is always computed).
    pub fn keep_trace(mut self, keep: bool) -> Simulation {
        self.config.keep_trace = keep;
        self
    }

    /// Runs `main` as the simulated process's main thread until it returns, then
    /// reports. Never hangs: a deadlock or the step limit ends the run with a report.
    pub fn run<F>(&self, main: F) -> Report
    where
        F: FnOnce(SimKernel) + Send + 'static,
    {
        let shared = Arc::new(driver::SimRun::new(model::Model::new(self.config.clone())));
        let kernel = SimKernel {
            shared: shared.clone(),
        };
        let result = driver::run(&shared, Box::new(move || main(kernel)));
        // The process is over: its policy, running loops and signal wiring hold
        // kernels, and so this `SimRun`. Dropping them ends those cycles, so the whole
        // simulation's memory is freed.
        shared.locals.clear();
        let report = {
            let mut state = shared.lock();
            Report {
                seed: self.config.seed,
                outcome: result.outcome,
                trace: state.trace.clone(),
                marks: state.marks.clone(),
                steps: state.steps,
                threads_abandoned: result.threads_abandoned,
                children_left: state.children_left(),
                fds_left: state.open_fds(),
                ledger: std::mem::take(&mut state.ledger),
            }
        };
        // What the abandoned threads held is freed only now, so the report shows the
        // process as it ended; their destructors may store into the process's slots
        // again, hence the second clear.
        driver::unwind_abandoned(&shared, result.abandoned);
        shared.locals.clear();
        // A registered program's closure may hold a kernel, and so this run.
        let programs = shared.lock().take_programs();
        drop(programs);
        report
    }
}

impl Simulation {
    /// As [`Simulation::run`], handing back what `main` returned (`None` when the run
    /// did not complete: a deadlock, a panic, the step limit).
    pub fn run_returning<T, F>(&self, main: F) -> (Option<T>, Report)
    where
        T: Send + 'static,
        F: FnOnce(SimKernel) -> T + Send + 'static,
    {
        #[allow(
            clippy::disallowed_types,
            reason = "set once by the finished main thread, read after the run"
        )]
        let slot = Arc::new(std::sync::Mutex::new(None));
        let out = slot.clone();
        let report = self.run(move |kernel| {
            let value = main(kernel);
            *out.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
        });
        let value = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        (
            value.filter(|_| report.outcome == Outcome::Completed),
            report,
        )
    }

    /// As [`Simulation::run`]; with `LOOPWATCH_CHECK_DETERMINISM` set, runs the
    /// scenario a second time and panics, naming the first divergent step, if the two
    /// traces differ.
    pub fn run_checked<F>(&self, scenario: F) -> Report
    where
        F: Fn(SimKernel) + Clone + Send + 'static,
    {
        if std::env::var_os("LOOPWATCH_CHECK_DETERMINISM").is_some() {
            if let Some(divergence) = check_determinism(self, scenario.clone()) {
                panic!(
                    "seed {} is not deterministic: first divergence at step {}: {:?} vs {:?}",
                    self.config.seed, divergence.step, divergence.first, divergence.second
                );
            }
        }
        self.run(scenario)
    }
}

/// The seed from `LOOPWATCH_SEED`, else `default`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var("LOOPWATCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The number of seeds from `LOOPWATCH_SEEDS`, else `default`.
pub fn seeds_from_env(default: u64) -> u64 {
    std::env::var("LOOPWATCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Where two runs of one seed first differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The index of the first differing trace line.
    pub step: usize,
    /// That line in the first run (or `None` if the first run ended there).
    pub first: Option<String>,
    /// That line in the second run.
    pub second: Option<String>,
}

/// Runs `simulation` twice with `scenario` and compares the traces: `None` when they
/// are identical, else the first divergent step.
pub fn check_determinism<F>(simulation: &Simulation, scenario: F) -> Option<Divergence>
where
    F: Fn(SimKernel) + Clone + Send + 'static,
{
    let simulation = simulation.clone().keep_trace(true);
    let first = simulation.run(scenario.clone());
    let second = simulation.run(scenario);
    if first.hash() == second.hash() && first.outcome == second.outcome {
        return None;
    }
    let (a, b) = (first.trace.lines(), second.trace.lines());
    let step = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    Some(Divergence {
        step,
        first: a.get(step).cloned(),
        second: b.get(step).cloned(),
    })
}
