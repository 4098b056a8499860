//! The kernel model: a process with its children, fds, pipes, pollers, signals,
//! threads and locks, and virtual time. Pure data and functions; it knows nothing of
//! how simulated threads are run (see `driver`), so another driver (loom's) can use it.
//!
//! Each operation takes `&mut Model` and the calling thread and returns
//! [`Attempt::Done`] with the result, or [`Attempt::Block`] when a real kernel would put the
//! thread to sleep; a blocked operation is retried after the state changes. Operations
//! append their own trace line when they complete.
//!
//! This file holds the state and its bookkeeping and virtual time; the operations are
//! in `fd` (fds and pipes), `poller`, `process` (spawn, wait, kill, pidfds), `child`
//! (children running their plans), `signal` and `thread` (threads and locks). `check`
//! holds the invariants the model checks on itself after every scheduling step.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use loopwatch::kernel::{Disposition, Pid, Signal};

use crate::faults::FaultPlan;
use crate::ledger::{Ledger, Violation};
use crate::program::{ChildPlan, Programs};
use crate::rng::Rng;
use crate::trace::Trace;

mod check;
mod child;
mod fd;
mod poller;
mod process;
mod signal;
mod thread;

pub use check::ModelDamage;
use fd::{FdEntry, FdKind, FdRef, Pipe, fd_limit};
use poller::PollerState;
use process::{Proc, ProcState, status_text};
use thread::MonitorState;
pub(crate) use thread::{Status, ThreadState};

/// A simulated thread's id; the main thread is 1.
pub(crate) type Tid = u64;

/// The main thread's id.
pub(crate) const MAIN_THREAD: Tid = 1;

/// Capacity of a pipe's buffer, as Linux's default.
pub(crate) const PIPE_CAPACITY: usize = 65536;

/// How a blocked operation waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wait {
    /// Virtual time at which the operation gives up (it then sees the time passed).
    pub(crate) deadline: Option<Duration>,
    /// Whether a signal delivered to the thread ends the wait with `EINTR`.
    pub(crate) interruptible: bool,
}

impl Wait {
    pub(crate) fn forever() -> Wait {
        Wait {
            deadline: None,
            interruptible: false,
        }
    }

    /// Until virtual time `deadline`, not interruptible.
    pub(crate) fn until(deadline: Duration) -> Wait {
        Wait {
            deadline: Some(deadline),
            interruptible: false,
        }
    }
}

/// The outcome of one attempt at an operation.
pub(crate) enum Attempt<R> {
    Done(R),
    Block(Wait),
}

/// How the next pid is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidReuse {
    /// As Linux: the next free pid after the last one handed out, wrapping at `pid_max`.
    Sequential,
    /// The pid freed most recently, when there is one: reuse as soon as possible.
    LastFreed,
}

/// The simulated process and what the simulation is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// The seed of every random decision.
    pub seed: u64,
    /// Faults switched on.
    pub faults: FaultPlan,
    /// The simulated process's pid.
    pub pid: i32,
    /// The lowest pid a child may get.
    pub pid_min: i32,
    /// The highest pid a child may get (a small value forces reuse).
    pub pid_max: i32,
    /// How pids are reused.
    pub pid_reuse: PidReuse,
    /// Whether trace lines are kept (they are always hashed).
    pub keep_trace: bool,
    /// Probability, at each scheduling point, that a due child event or a pending
    /// signal is delivered now rather than later.
    pub event_chance: f64,
    /// The thread-scheduling strategy.
    pub strategy: crate::sched::Strategy,
    /// Upper bound on scheduling steps; the run ends with a step-limit report past it
    /// (`LOOPWATCH_STEPS_MAX`, default 1,000,000).
    pub steps_max: u64,
    /// Whether the model checks its own consistency after every scheduling step (pipe
    /// reference counts, pids, children against the ledger, poller registrations,
    /// the wakeup fd, monitor owners); a broken invariant ends the run with
    /// [`Outcome::ModelViolation`](crate::Outcome::ModelViolation). A check costs as
    /// much as the process holds: while it holds more than 64 fds, children, pipes
    /// and registrations in all, the check runs every few steps instead, so that a
    /// step costs about the same whatever the process holds; the end of a run is
    /// always checked. On by default; `LOOPWATCH_CHECK_MODEL=0` turns it off.
    pub check_model: bool,
}

impl Config {
    /// Defaults for `seed`.
    pub fn new(seed: u64) -> Config {
        Config {
            seed,
            faults: FaultPlan::none(),
            pid: 1000,
            pid_min: 1001,
            pid_max: 32768,
            pid_reuse: PidReuse::Sequential,
            keep_trace: true,
            event_chance: 0.5,
            strategy: crate::sched::Strategy::Random,
            steps_max: std::env::var("LOOPWATCH_STEPS_MAX")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000),
            check_model: std::env::var_os("LOOPWATCH_CHECK_MODEL").is_none_or(|v| v != "0"),
        }
    }
}

/// A foreign signal handler's behaviour: code other than loopwatch's in the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignHandler {
    /// Only counts deliveries.
    Count,
    /// Reaps every zombie child (`waitpid(-1, WNOHANG)` in a loop), as a process
    /// supervisor's SIGCHLD handler would: steals loopwatch's children.
    ReapAll,
}

pub(crate) struct Model {
    pub(crate) config: Config,
    pub(crate) time: Duration,
    pub(crate) rng: Rng,
    pub(crate) trace: Trace,
    pub(crate) marks: BTreeMap<&'static str, u64>,
    /// Set by every mutation; blocked threads retry after one.
    pub(crate) changed: bool,
    pub(crate) current: Tid,
    pub(crate) steps: u64,
    pub(crate) threads: BTreeMap<Tid, ThreadState>,
    next_tid: Tid,
    /// Set while the run is being torn down: nothing may block any more.
    pub(crate) aborting: bool,
    /// A signal whose default action killed the process.
    pub(crate) killed: Option<i32>,
    procs: BTreeMap<Pid, Proc>,
    spawn_seq: u64,
    next_pid: i32,
    /// Under [`PidReuse::LastFreed`], the free pids that were used, most recently freed
    /// last; distinct, and none held by a child. Empty under `Sequential`.
    freed_pids: Vec<i32>,
    used_pids: BTreeSet<i32>,
    programs: Programs,
    fds: BTreeMap<i32, FdEntry>,
    /// Files opened so far: the generation of the next fd is one more, so a number
    /// closed and opened again has a new generation.
    opens: u64,
    pipes: BTreeMap<u64, Pipe>,
    next_pipe: u64,
    pollers: BTreeMap<u64, PollerState>,
    next_poller: u64,
    dispositions: BTreeMap<i32, Disposition>,
    foreign: Vec<ForeignHandler>,
    /// Per signal, the foreign handler loopwatch's handler runs after its own work.
    chained: BTreeMap<i32, u64>,
    pub(crate) foreign_deliveries: u64,
    pending: BTreeSet<i32>,
    /// For each pending signal, the thread Linux tries first (`complete_signal`'s
    /// suggested task): the parent thread for a child's SIGCHLD, the main thread for
    /// `kill()` of the process.
    suggested: BTreeMap<i32, Tid>,
    wakeup_fd: Option<FdRef>,
    /// The fd of each signal whose disposition is `Notify(fd)`, as it was set.
    notify_fds: BTreeMap<i32, FdRef>,
    monitors: BTreeMap<u64, MonitorState>,
    next_monitor: u64,
    /// Counts readiness changes: a poll reports ready fds in the order they became
    /// ready, as epoll's ready list does.
    stamps: u64,
    /// Every child's life and every signal sent to one, and the violations found.
    pub(crate) ledger: Ledger,
    /// Children of the ledger not reaped yet: as many as `procs`.
    unreaped: usize,
    /// What the steps since the last check of the invariants have saved up for the
    /// next one, when the state is too large to check at every step.
    check_credit: u64,
    /// Scratch space of the checks, kept so that a check does not allocate.
    check_scratch: Vec<check::PipeRef>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("time", &self.time)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Model {
    pub(crate) fn new(config: Config) -> Model {
        let mut fds = BTreeMap::new();
        for fd in 0..3 {
            fds.insert(
                fd,
                FdEntry {
                    kind: FdKind::Stdio,
                    nonblocking: false,
                    cloexec: false,
                    generation: fd as u64 + 1,
                },
            );
        }
        let mut threads = BTreeMap::new();
        threads.insert(
            MAIN_THREAD,
            ThreadState {
                name: "MainThread".to_string(),
                status: Status::Runnable,
                mask: BTreeSet::new(),
                interrupted: false,
                in_call: false,
                handlers: Vec::new(),
                blocked_in: "",
                panicked: false,
            },
        );
        Model {
            rng: Rng::new(config.seed),
            trace: Trace::new(config.keep_trace),
            next_pid: config.pid_min,
            config,
            time: Duration::ZERO,
            marks: BTreeMap::new(),
            changed: false,
            current: MAIN_THREAD,
            steps: 0,
            threads,
            next_tid: MAIN_THREAD + 1,
            aborting: false,
            killed: None,
            procs: BTreeMap::new(),
            spawn_seq: 0,
            freed_pids: Vec::new(),
            used_pids: BTreeSet::new(),
            programs: Programs::default(),
            fds,
            opens: 3,
            pipes: BTreeMap::new(),
            next_pipe: 1,
            pollers: BTreeMap::new(),
            next_poller: 1,
            // A Rust program starts with SIGPIPE ignored (its runtime does so before
            // `main`), so that a write without a reader fails with EPIPE.
            dispositions: BTreeMap::from([(Signal::SIGPIPE.0, Disposition::Ignore)]),
            foreign: Vec::new(),
            chained: BTreeMap::new(),
            foreign_deliveries: 0,
            pending: BTreeSet::new(),
            suggested: BTreeMap::new(),
            wakeup_fd: None,
            notify_fds: BTreeMap::new(),
            monitors: BTreeMap::new(),
            next_monitor: 1,
            stamps: 0,
            ledger: Ledger::default(),
            unreaped: 0,
            check_credit: 0,
            check_scratch: Vec::new(),
        }
    }

    // ----- bookkeeping ---------------------------------------------------------------

    pub(crate) fn log(&mut self, tid: Tid, text: impl fmt::Display) {
        let line = format!("{:.6} T{tid} {text}", self.time.as_secs_f64());
        self.trace.push(line);
    }

    pub(crate) fn log_event(&mut self, text: impl fmt::Display) {
        let line = format!("{:.6} -- {text}", self.time.as_secs_f64());
        self.trace.push(line);
    }

    pub(crate) fn mark(&mut self, name: &'static str) {
        *self.marks.entry(name).or_default() += 1;
    }

    /// Records that `rule` broke at this step, in the ledger and the trace.
    pub(crate) fn violation(&mut self, rule: &'static str, detail: String) -> Violation {
        self.log_event(format_args!("violation {rule}: {detail}"));
        let violation = Violation {
            step: self.steps,
            rule,
            detail,
        };
        self.ledger.violations.push(violation.clone());
        violation
    }

    /// The name of thread `tid`, as the ledger records it.
    fn thread_name(&self, tid: Tid) -> String {
        self.threads
            .get(&tid)
            .map_or_else(|| format!("T{tid}"), |t| t.name.clone())
    }

    fn pid(&self) -> Pid {
        Pid(self.config.pid)
    }

    /// A delay drawn for the `lag` fault (zero when it is off), marked as `mark`.
    fn draw_lag(&mut self, mark: &'static str) -> Duration {
        let max = self.config.faults.lag;
        if max.is_zero() {
            return Duration::ZERO;
        }
        self.mark(mark);
        let micros = max.as_micros().min(u128::from(u64::MAX)) as u64;
        Duration::from_micros(self.rng.below(micros + 1))
    }

    /// Under the `lag` fault, when a thread woken from a blocking call runs again:
    /// `None` for at once.
    pub(crate) fn wake_lag(&mut self) -> Option<Duration> {
        if self.config.faults.lag.is_zero() || !self.rng.chance(0.3) {
            return None;
        }
        Some(self.time + self.draw_lag("thread_lag"))
    }

    /// Whether an injected `EINTR` fires for a blocking call that would block now.
    fn inject_eintr(&mut self) -> bool {
        let p = self.config.faults.eintr;
        if p > 0.0 && self.rng.chance(p) {
            self.mark("eintr_injected");
            true
        } else {
            false
        }
    }

    /// What a call that would block does: injected EINTR, a taken interruption, or block.
    fn block_or_interrupt<R>(
        &mut self,
        tid: Tid,
        wait: Wait,
        on_eintr: impl FnOnce() -> R,
    ) -> Attempt<R> {
        let interrupted = std::mem::take(&mut self.thread_mut(tid).interrupted);
        if (interrupted && wait.interruptible) || self.inject_eintr() {
            return Attempt::Done(on_eintr());
        }
        Attempt::Block(wait)
    }

    fn thread_mut(&mut self, tid: Tid) -> &mut ThreadState {
        self.threads.get_mut(&tid).expect("known thread")
    }

    // ----- virtual time --------------------------------------------------------------

    /// The next virtual time at which something is due: a deadline or a child's exit.
    pub(crate) fn next_timer(&self) -> Option<Duration> {
        let deadlines = self.threads.values().filter_map(|t| match t.status {
            Status::Blocked(wait) => wait.deadline,
            _ => None,
        });
        let exits = self
            .procs
            .values()
            .filter(|p| !p.stopped && matches!(p.state, ProcState::Running))
            .flat_map(|p| {
                let exit = match &p.plan {
                    ChildPlan::Exit { after, .. } | ChildPlan::Killed { after, .. } => {
                        Some(p.started + *after)
                    }
                    ChildPlan::Forever | ChildPlan::Cat | ChildPlan::ReadLine { .. } => None,
                };
                // A child the lag fault starts late may have work before its exit.
                [Some(p.started), exit]
            })
            .flatten();
        deadlines.chain(exits).filter(|&t| t > self.time).min()
    }

    /// Moves virtual time forward and wakes threads whose deadline passed.
    pub(crate) fn advance_to(&mut self, time: Duration) {
        self.time = time;
        self.log_event(format_args!("time advances"));
        for thread in self.threads.values_mut() {
            if let Status::Blocked(wait) = thread.status {
                if wait.deadline.is_some_and(|d| d <= time) {
                    thread.status = Status::Runnable;
                }
            }
        }
    }

    /// Makes every blocked thread retry after a change.
    pub(crate) fn wake_blocked(&mut self) {
        if !std::mem::take(&mut self.changed) {
            return;
        }
        for thread in self.threads.values_mut() {
            if matches!(thread.status, Status::Blocked(_)) {
                thread.status = Status::Runnable;
            }
        }
    }
}
