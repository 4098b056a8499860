//! The kernel model: a process with its children, fds, pipes, pollers, signals,
//! threads and locks, and virtual time. Pure data and functions; it knows nothing of
//! how simulated threads are run (see `driver`), so another driver (loom's) can use it.
//!
//! Each operation takes `&mut State` and the calling thread and returns
//! [`Step::Done`] with the result, or [`Step::Block`] when a real kernel would put the
//! thread to sleep; a blocked operation is retried after the state changes. Operations
//! append their own trace line when they complete.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use loopwatch::kernel::{
    Disposition, Errno, Event, ExitStatus, Fd, Interest, Pid, Signal, SpawnRequest, Spawned, Stdio,
    Token, WaitMode, WaitStatus, WaitTarget,
};

use crate::faults::FaultPlan;
use crate::program::{self, ChildPlan};
use crate::rng::Rng;
use crate::trace::Trace;

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
pub(crate) enum Step<R> {
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

#[derive(Debug)]
enum ProcState {
    Running,
    Zombie(ExitStatus),
}

#[derive(Debug)]
struct Proc {
    /// Spawn sequence number: tells incarnations of a reused pid apart, and orders
    /// `wait_any` (the kernel scans children oldest first).
    seq: u64,
    plan: ChildPlan,
    started: Duration,
    state: ProcState,
    /// Pipes the child holds: its stdin read end and its stdout/stderr write ends.
    stdin: Option<u64>,
    stdout: Option<u64>,
    stderr: Option<u64>,
    /// Bytes of the plan's stdout already written.
    written: usize,
    /// When it terminated, for ready-list order.
    stamp: u64,
    /// The thread that spawned it: Linux sends its SIGCHLD to that thread first.
    parent: Tid,
    /// Stopped by a stop signal, until SIGCONT.
    stopped: bool,
    /// Signals sent to it that it has not acted on yet: it does when it next runs
    /// (a stopped child does not run until continued).
    signals: BTreeSet<i32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FdKind {
    Stdio,
    PipeRead(u64),
    PipeWrite(u64),
    Epoll(u64),
    EventFd(u64),
    PidFd { pid: Pid, seq: u64 },
}

#[derive(Clone, Copy, Debug)]
struct FdEntry {
    kind: FdKind,
    nonblocking: bool,
    cloexec: bool,
}

#[derive(Debug, Default)]
struct Pipe {
    buf: VecDeque<u8>,
    readers: u32,
    writers: u32,
    /// When it last became readable (data or end of file), for ready-list order.
    stamp: u64,
}

#[derive(Debug, Default)]
struct PollerState {
    registrations: BTreeMap<i32, (Token, Interest)>,
    woken: bool,
    closed: bool,
}

/// Where a simulated thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Wants to run (at a scheduling point, or new).
    Runnable,
    /// Waiting inside an operation.
    Blocked(Wait),
    /// Its body returned or panicked.
    Finished,
}

pub(crate) struct ThreadState {
    pub(crate) name: String,
    pub(crate) status: Status,
    mask: BTreeSet<i32>,
    /// A signal was delivered while it waited interruptibly.
    pub(crate) interrupted: bool,
    /// Inside a kernel call that has blocked at least once and not returned yet: a
    /// signal it takes now has its handler run when the call returns (or restarts),
    /// as Linux runs handlers only on the way back to user space.
    pub(crate) in_call: bool,
    /// Signals this thread has taken whose handlers run when its call returns. They
    /// stay pending for the process until then, so more of them coalesce.
    handlers: Vec<i32>,
    /// The call it last blocked in, for deadlock reports.
    pub(crate) blocked_in: &'static str,
    /// The body's outcome, until joined.
    pub(crate) result: Option<Result<(), Box<dyn Any + Send>>>,
}

impl fmt::Debug for ThreadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadState")
            .field("name", &self.name)
            .field("status", &self.status)
            .finish()
    }
}

#[derive(Debug, Default)]
struct MonitorState {
    owner: Option<Tid>,
    generation: u64,
}

/// The whole model.
pub(crate) struct State {
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
    /// Thread bodies waiting for the driver to start them.
    pub(crate) new_threads: Vec<(Tid, Box<dyn FnOnce() + Send>)>,
    /// Set while the run is being torn down: nothing may block any more.
    pub(crate) aborting: bool,
    /// A signal whose default action killed the process.
    pub(crate) killed: Option<i32>,
    procs: BTreeMap<Pid, Proc>,
    spawn_seq: u64,
    next_pid: i32,
    freed_pids: Vec<i32>,
    used_pids: BTreeSet<i32>,
    programs: BTreeMap<String, ChildPlan>,
    fds: BTreeMap<i32, FdEntry>,
    pipes: BTreeMap<u64, Pipe>,
    next_pipe: u64,
    pollers: BTreeMap<u64, PollerState>,
    next_poller: u64,
    dispositions: BTreeMap<i32, Disposition>,
    foreign: Vec<ForeignHandler>,
    pub(crate) foreign_deliveries: u64,
    pending: BTreeSet<i32>,
    /// For each pending signal, the thread Linux tries first (`complete_signal`'s
    /// suggested task): the parent thread for a child's SIGCHLD, the main thread for
    /// `kill()` of the process.
    suggested: BTreeMap<i32, Tid>,
    wakeup_fd: Option<Fd>,
    monitors: BTreeMap<u64, MonitorState>,
    next_monitor: u64,
    /// Counts readiness changes: a poll reports ready fds in the order they became
    /// ready, as epoll's ready list does.
    stamps: u64,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("time", &self.time)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

fn fd_limit(config: &Config) -> usize {
    config.faults.fd_limit.unwrap_or(1024)
}

fn status_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (_, Some(signal)) => format!("signal {}", signal.0),
        _ => format!("status {}", status.0),
    }
}

impl State {
    pub(crate) fn new(config: Config) -> State {
        let mut fds = BTreeMap::new();
        for fd in 0..3 {
            fds.insert(
                fd,
                FdEntry {
                    kind: FdKind::Stdio,
                    nonblocking: false,
                    cloexec: false,
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
                result: None,
            },
        );
        State {
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
            new_threads: Vec::new(),
            aborting: false,
            killed: None,
            procs: BTreeMap::new(),
            spawn_seq: 0,
            freed_pids: Vec::new(),
            used_pids: BTreeSet::new(),
            programs: BTreeMap::new(),
            fds,
            pipes: BTreeMap::new(),
            next_pipe: 1,
            pollers: BTreeMap::new(),
            next_poller: 1,
            dispositions: BTreeMap::new(),
            foreign: Vec::new(),
            foreign_deliveries: 0,
            pending: BTreeSet::new(),
            suggested: BTreeMap::new(),
            wakeup_fd: None,
            monitors: BTreeMap::new(),
            next_monitor: 1,
            stamps: 0,
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
    ) -> Step<R> {
        let interrupted = std::mem::take(&mut self.thread_mut(tid).interrupted);
        if (interrupted && wait.interruptible) || self.inject_eintr() {
            return Step::Done(on_eintr());
        }
        Step::Block(wait)
    }

    fn thread_mut(&mut self, tid: Tid) -> &mut ThreadState {
        self.threads.get_mut(&tid).expect("known thread")
    }

    // ----- fds -----------------------------------------------------------------------

    fn alloc_fd(&mut self, kind: FdKind, cloexec: bool) -> Result<Fd, Errno> {
        if self.fds.len() >= fd_limit(&self.config) {
            self.mark("emfile");
            return Err(Errno::EMFILE);
        }
        let mut fd = 0;
        while self.fds.contains_key(&fd) {
            fd += 1;
        }
        self.fds.insert(
            fd,
            FdEntry {
                kind,
                nonblocking: false,
                cloexec,
            },
        );
        Ok(Fd(fd))
    }

    fn entry(&self, fd: Fd) -> Result<FdEntry, Errno> {
        self.fds.get(&fd.0).copied().ok_or(Errno::EBADF)
    }

    /// Drops one reference to whatever `kind` refers to.
    fn release(&mut self, kind: FdKind) {
        match kind {
            FdKind::PipeRead(id) => {
                if let Some(pipe) = self.pipes.get_mut(&id) {
                    pipe.readers -= 1;
                }
                self.gc_pipe(id);
            }
            FdKind::PipeWrite(id) => {
                if let Some(pipe) = self.pipes.get_mut(&id) {
                    pipe.writers -= 1;
                    self.stamps += 1;
                    pipe.stamp = self.stamps;
                }
                self.gc_pipe(id);
            }
            FdKind::Epoll(id) => {
                if let Some(poller) = self.pollers.get_mut(&id) {
                    poller.closed = true;
                }
            }
            FdKind::Stdio | FdKind::EventFd(_) | FdKind::PidFd { .. } => {}
        }
        self.changed = true;
    }

    fn gc_pipe(&mut self, id: u64) {
        if self
            .pipes
            .get(&id)
            .is_some_and(|p| p.readers == 0 && p.writers == 0)
        {
            self.pipes.remove(&id);
        }
    }

    pub(crate) fn pipe(&mut self, tid: Tid) -> Step<Result<(Fd, Fd), Errno>> {
        let result = self.make_pipe();
        self.log(tid, format_args!("pipe() = {result:?}"));
        Step::Done(result)
    }

    /// A new empty pipe with one reader and one writer; returns its id.
    fn new_pipe(&mut self) -> u64 {
        let id = self.next_pipe;
        self.next_pipe += 1;
        self.pipes.insert(
            id,
            Pipe {
                buf: VecDeque::new(),
                readers: 1,
                writers: 1,
                stamp: 0,
            },
        );
        id
    }

    fn make_pipe(&mut self) -> Result<(Fd, Fd), Errno> {
        if self.fds.len() + 2 > fd_limit(&self.config) {
            self.mark("emfile");
            return Err(Errno::EMFILE);
        }
        let id = self.new_pipe();
        let read = self.alloc_fd(FdKind::PipeRead(id), true)?;
        let write = self.alloc_fd(FdKind::PipeWrite(id), true)?;
        self.changed = true;
        Ok((read, write))
    }

    pub(crate) fn read(&mut self, tid: Tid, fd: Fd, len: usize) -> Step<Result<Vec<u8>, Errno>> {
        let result = match self.entry(fd) {
            Err(e) => Err(e),
            Ok(FdEntry {
                kind: FdKind::PipeRead(id),
                nonblocking,
                ..
            }) => {
                let pipe = self.pipes.get_mut(&id).expect("open pipe");
                if !pipe.buf.is_empty() {
                    let n = len.min(pipe.buf.len());
                    let data: Vec<u8> = pipe.buf.drain(..n).collect();
                    self.changed = true;
                    Ok(data)
                } else if pipe.writers == 0 || len == 0 {
                    Ok(Vec::new())
                } else if nonblocking {
                    Err(Errno::EAGAIN)
                } else {
                    let wait = Wait {
                        deadline: None,
                        interruptible: true,
                    };
                    return match self.block_or_interrupt(tid, wait, || Err(Errno::EINTR)) {
                        Step::Done(r) => {
                            self.log(tid, format_args!("read({fd}) = {r:?}"));
                            Step::Done(r)
                        }
                        block => block,
                    };
                }
            }
            Ok(_) => Err(Errno::EINVAL),
        };
        match &result {
            Ok(data) => self.log(tid, format_args!("read({fd}, {len}) = {}", data.len())),
            Err(e) => self.log(tid, format_args!("read({fd}, {len}) = {e:?}")),
        }
        Step::Done(result)
    }

    pub(crate) fn write(&mut self, tid: Tid, fd: Fd, data: &[u8]) -> Step<Result<usize, Errno>> {
        let result = match self.entry(fd) {
            Err(e) => Err(e),
            Ok(FdEntry {
                kind: FdKind::PipeWrite(id),
                nonblocking,
                ..
            }) => {
                let pipe = self.pipes.get_mut(&id).expect("open pipe");
                let room = PIPE_CAPACITY - pipe.buf.len();
                if pipe.readers == 0 {
                    // SIGPIPE is ignored by Rust programs, so the write fails instead.
                    Err(Errno::EPIPE)
                } else if data.is_empty() {
                    Ok(0)
                } else if room > 0 {
                    let n = room.min(data.len());
                    pipe.buf.extend(&data[..n]);
                    self.stamps += 1;
                    pipe.stamp = self.stamps;
                    self.changed = true;
                    Ok(n)
                } else if nonblocking {
                    Err(Errno::EAGAIN)
                } else {
                    let wait = Wait {
                        deadline: None,
                        interruptible: true,
                    };
                    return self.block_or_interrupt(tid, wait, || Err(Errno::EINTR));
                }
            }
            Ok(FdEntry {
                kind: FdKind::Stdio,
                ..
            }) => Ok(data.len()),
            Ok(_) => Err(Errno::EINVAL),
        };
        self.log(
            tid,
            format_args!("write({fd}, {}) = {result:?}", data.len()),
        );
        Step::Done(result)
    }

    pub(crate) fn close(&mut self, tid: Tid, fd: Fd) -> Step<Result<(), Errno>> {
        let result = match self.fds.remove(&fd.0) {
            None => Err(Errno::EBADF),
            Some(entry) => {
                self.release(entry.kind);
                Ok(())
            }
        };
        self.log(tid, format_args!("close({fd}) = {result:?}"));
        Step::Done(result)
    }

    pub(crate) fn set_flag(
        &mut self,
        tid: Tid,
        fd: Fd,
        nonblocking: Option<bool>,
        cloexec: Option<bool>,
    ) -> Step<Result<(), Errno>> {
        let result = match self.fds.get_mut(&fd.0) {
            None => Err(Errno::EBADF),
            Some(entry) => {
                if let Some(value) = nonblocking {
                    entry.nonblocking = value;
                }
                if let Some(value) = cloexec {
                    entry.cloexec = value;
                }
                Ok(())
            }
        };
        self.log(
            tid,
            format_args!("fcntl({fd}, nonblock={nonblocking:?} cloexec={cloexec:?}) = {result:?}"),
        );
        Step::Done(result)
    }

    /// When `fd` last became readable: epoll's ready list keeps that order.
    fn ready_stamp(&self, fd: i32) -> u64 {
        match self.fds.get(&fd).map(|e| e.kind) {
            Some(FdKind::PipeRead(id)) => self.pipes.get(&id).map_or(0, |p| p.stamp),
            Some(FdKind::PidFd { pid, seq }) => match self.procs.get(&pid) {
                Some(proc) if proc.seq == seq => proc.stamp,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// Whether `fd` reads and writes without blocking, as epoll sees it.
    fn readiness(&self, fd: i32) -> (bool, bool) {
        let Some(entry) = self.fds.get(&fd) else {
            return (false, false);
        };
        match entry.kind {
            FdKind::Stdio => (true, true),
            FdKind::PipeRead(id) => {
                let pipe = &self.pipes[&id];
                (!pipe.buf.is_empty() || pipe.writers == 0, false)
            }
            FdKind::PipeWrite(id) => {
                let pipe = &self.pipes[&id];
                (false, pipe.buf.len() < PIPE_CAPACITY || pipe.readers == 0)
            }
            FdKind::PidFd { pid, seq } => {
                let exited = match self.procs.get(&pid) {
                    Some(proc) if proc.seq == seq => matches!(proc.state, ProcState::Zombie(_)),
                    _ => true,
                };
                (exited, false)
            }
            FdKind::EventFd(id) => (self.pollers.get(&id).is_some_and(|p| p.woken), true),
            FdKind::Epoll(_) => (false, false),
        }
    }

    // ----- pollers -------------------------------------------------------------------

    /// A poller and its two fds (the epoll instance and the waker's eventfd), as a real
    /// poller costs.
    pub(crate) fn new_poller(&mut self, tid: Tid) -> Step<Result<(u64, Fd, Fd), Errno>> {
        let result = (|| {
            if self.fds.len() + 2 > fd_limit(&self.config) {
                self.mark("emfile");
                return Err(Errno::EMFILE);
            }
            let id = self.next_poller;
            self.next_poller += 1;
            self.pollers.insert(id, PollerState::default());
            let epoll = self.alloc_fd(FdKind::Epoll(id), true)?;
            let event = self.alloc_fd(FdKind::EventFd(id), true)?;
            Ok((id, epoll, event))
        })();
        self.log(tid, format_args!("poller() = {result:?}"));
        Step::Done(result)
    }

    /// Closes a poller's fds (no scheduling: called from `Drop`).
    pub(crate) fn drop_poller(&mut self, id: u64, epoll: Fd, event: Fd) {
        for fd in [epoll, event] {
            if let Some(entry) = self.fds.remove(&fd.0) {
                self.release(entry.kind);
            }
        }
        self.pollers.remove(&id);
        self.log_event(format_args!("poller {id} dropped"));
    }

    pub(crate) fn poller_ctl(
        &mut self,
        tid: Tid,
        id: u64,
        fd: Fd,
        change: Option<(Token, Interest)>,
        add: bool,
    ) -> Step<Result<(), Errno>> {
        let fd_open = self.fds.contains_key(&fd.0);
        let poller = self.pollers.get_mut(&id).expect("live poller");
        let result = match (change, add) {
            (Some((token, interest)), true) => {
                if !interest.readable && !interest.writable {
                    Err(Errno::EINVAL)
                } else if poller.registrations.contains_key(&fd.0) {
                    Err(Errno::EEXIST)
                } else if poller.registrations.values().any(|(t, _)| *t == token) {
                    Err(Errno::EINVAL)
                } else if !fd_open {
                    Err(Errno::EBADF)
                } else {
                    poller.registrations.insert(fd.0, (token, interest));
                    Ok(())
                }
            }
            (Some((token, interest)), false) => {
                if !interest.readable && !interest.writable {
                    Err(Errno::EINVAL)
                } else if !poller.registrations.contains_key(&fd.0) {
                    Err(Errno::ENOENT)
                } else if poller
                    .registrations
                    .iter()
                    .any(|(f, (t, _))| *t == token && *f != fd.0)
                {
                    Err(Errno::EINVAL)
                } else {
                    poller.registrations.insert(fd.0, (token, interest));
                    Ok(())
                }
            }
            (None, _) => match poller.registrations.remove(&fd.0) {
                Some(_) => Ok(()),
                None => Err(Errno::ENOENT),
            },
        };
        let verb = match (change.is_some(), add) {
            (true, true) => "register",
            (true, false) => "reregister",
            _ => "deregister",
        };
        self.log(tid, format_args!("{verb}(poller {id}, {fd}) = {result:?}"));
        self.changed = true;
        Step::Done(result)
    }

    pub(crate) fn poll(
        &mut self,
        tid: Tid,
        id: u64,
        deadline: Option<Duration>,
    ) -> Step<Result<Vec<Event>, Errno>> {
        let registrations: Vec<(i32, Token, Interest)> = self.pollers[&id]
            .registrations
            .iter()
            .map(|(&fd, &(token, interest))| (fd, token, interest))
            .collect();
        let mut ready = Vec::new();
        for (fd, token, interest) in registrations {
            let (readable, writable) = self.readiness(fd);
            let readable = readable && interest.readable;
            let writable = writable && interest.writable;
            if readable || writable {
                let event = Event {
                    token,
                    readable,
                    writable,
                };
                ready.push((self.ready_stamp(fd), event));
            }
        }
        // Oldest readiness first, as epoll's ready list; ties in registration order.
        ready.sort_by_key(|(stamp, _)| *stamp);
        let events: Vec<Event> = ready.into_iter().map(|(_, event)| event).collect();
        let poller = self.pollers.get_mut(&id).expect("live poller");
        let woken = std::mem::take(&mut poller.woken);
        let timed_out = deadline.is_some_and(|d| self.time >= d);
        if events.is_empty() && !woken && !timed_out {
            let p = self.config.faults.spurious_wakeup;
            if p > 0.0 && self.rng.chance(p) {
                self.mark("spurious_wakeup");
            } else {
                let wait = Wait {
                    deadline,
                    interruptible: true,
                };
                match self.block_or_interrupt(tid, wait, || Err(Errno::EINTR)) {
                    Step::Done(result) => {
                        self.log(tid, format_args!("poll({id}) = EINTR"));
                        return Step::Done(result);
                    }
                    block => return block,
                }
            }
        }
        if woken {
            self.changed = true;
        }
        self.log(
            tid,
            format_args!(
                "poll({id}) = {} event(s){}",
                events.len(),
                if woken { " +wake" } else { "" }
            ),
        );
        Step::Done(Ok(events))
    }

    pub(crate) fn wake_poller(&mut self, tid: Tid, id: u64) -> Step<Result<(), Errno>> {
        if let Some(poller) = self.pollers.get_mut(&id) {
            poller.woken = true;
            self.changed = true;
        }
        self.log(tid, format_args!("wake(poller {id})"));
        Step::Done(Ok(()))
    }

    // ----- processes -----------------------------------------------------------------

    pub(crate) fn register_program(&mut self, name: String, plan: ChildPlan) {
        self.programs.insert(name, plan);
    }

    fn alloc_pid(&mut self) -> Option<i32> {
        let in_use = |state: &State, pid: i32| state.procs.contains_key(&Pid(pid));
        if self.config.pid_reuse == PidReuse::LastFreed {
            while let Some(pid) = self.freed_pids.pop() {
                if !in_use(self, pid) {
                    return Some(pid);
                }
            }
        }
        let span = self.config.pid_max - self.config.pid_min + 1;
        for _ in 0..span {
            let pid = self.next_pid;
            self.next_pid = if pid >= self.config.pid_max {
                self.config.pid_min
            } else {
                pid + 1
            };
            if !in_use(self, pid) {
                return Some(pid);
            }
        }
        None
    }

    pub(crate) fn spawn(
        &mut self,
        tid: Tid,
        request: &SpawnRequest,
    ) -> Step<Result<Spawned, Errno>> {
        let result = self.do_spawn(tid, request);
        self.log(
            tid,
            format_args!("spawn({}) = {result:?}", request.program.to_string_lossy()),
        );
        if let Ok(spawned) = &result {
            let p = self.config.faults.exit_before_registration;
            if p > 0.0 && self.rng.chance(p) {
                self.mark("exit_before_registration");
                self.terminate_now(spawned.pid);
            }
        }
        Step::Done(result)
    }

    fn do_spawn(&mut self, tid: Tid, request: &SpawnRequest) -> Result<Spawned, Errno> {
        let p = self.config.faults.spawn_eagain;
        if p > 0.0 && self.rng.chance(p) {
            self.mark("spawn_eagain");
            return Err(Errno::EAGAIN);
        }
        let name = request.program.to_string_lossy().into_owned();
        let plan = match self.programs.get(&name) {
            Some(plan) => plan.clone(),
            None => program::builtin(request).ok_or(Errno::ENOENT)?,
        };
        let mut parent_fds = Vec::new();
        let mut child_ends = [None, None, None];
        let mut parent_ends = [None, None, None];
        let streams = [request.stdin, request.stdout, request.stderr];
        // Validate fds and the limit before changing anything.
        let pipes_needed = streams.iter().filter(|s| **s == Stdio::Pipe).count();
        if self.fds.len() + pipes_needed > fd_limit(&self.config) {
            self.mark("emfile");
            return Err(Errno::EMFILE);
        }
        for stream in &streams {
            if let Stdio::Fd(fd) = stream {
                self.entry(*fd)?;
            }
        }
        let Some(pid) = self.alloc_pid() else {
            return Err(Errno::EAGAIN);
        };
        for (index, stream) in streams.iter().enumerate() {
            match stream {
                Stdio::Pipe => {
                    let id = self.new_pipe();
                    let kind = if index == 0 {
                        FdKind::PipeWrite(id)
                    } else {
                        FdKind::PipeRead(id)
                    };
                    let fd = self.alloc_fd(kind, true)?;
                    parent_fds.push(fd);
                    parent_ends[index] = Some(fd);
                    child_ends[index] = Some(id);
                }
                Stdio::Fd(fd) => {
                    let kind = self.entry(*fd)?.kind;
                    match (index, kind) {
                        (0, FdKind::PipeRead(id)) => {
                            self.pipes.get_mut(&id).expect("open").readers += 1;
                            child_ends[0] = Some(id);
                        }
                        (1 | 2, FdKind::PipeWrite(id)) => {
                            self.pipes.get_mut(&id).expect("open").writers += 1;
                            child_ends[index] = Some(id);
                        }
                        _ => {}
                    }
                }
                Stdio::Inherit | Stdio::Null => {}
            }
        }
        if self.used_pids.contains(&pid) {
            self.mark("pid_reused");
        }
        self.used_pids.insert(pid);
        self.spawn_seq += 1;
        let started = self.time + self.draw_lag("child_lag");
        self.procs.insert(
            Pid(pid),
            Proc {
                seq: self.spawn_seq,
                plan,
                started,
                state: ProcState::Running,
                stdin: child_ends[0],
                stdout: child_ends[1],
                stderr: child_ends[2],
                written: 0,
                stamp: 0,
                parent: tid,
                stopped: false,
                signals: BTreeSet::new(),
            },
        );
        self.changed = true;
        Ok(Spawned {
            pid: Pid(pid),
            stdin: parent_ends[0],
            stdout: parent_ends[1],
            stderr: parent_ends[2],
        })
    }

    /// Ends a running child now with the fate its plan gives, or with `signal`.
    fn terminate(&mut self, pid: Pid, status: ExitStatus) {
        let Some(proc) = self.procs.get_mut(&pid) else {
            return;
        };
        if !matches!(proc.state, ProcState::Running) {
            return;
        }
        proc.state = ProcState::Zombie(status);
        self.stamps += 1;
        proc.stamp = self.stamps;
        let ends = [
            proc.stdin.take().map(FdKind::PipeRead),
            proc.stdout.take().map(FdKind::PipeWrite),
            proc.stderr.take().map(FdKind::PipeWrite),
        ];
        for kind in ends.into_iter().flatten() {
            self.release(kind);
        }
        self.log_event(format_args!("child {pid} {}", status_text(status)));
        self.changed = true;
        if self.dispositions.get(&Signal::SIGCHLD.0) == Some(&Disposition::Ignore) {
            // SIG_IGN for SIGCHLD: the kernel reaps the child itself.
            self.reap(pid);
            self.mark("sigchld_ignored_autoreap");
            self.log_event(format_args!("child {pid} auto-reaped"));
        } else {
            let parent = self.parent_thread(pid);
            self.raise_process(Signal::SIGCHLD, parent);
        }
    }

    /// The thread a child's SIGCHLD goes to first: the one that spawned it, or, once
    /// that thread has exited, the first live thread (Linux re-parents the child to
    /// it, the main thread while it lives).
    fn parent_thread(&self, pid: Pid) -> Tid {
        let alive = |tid: &Tid| {
            self.threads
                .get(tid)
                .is_some_and(|t| t.status != Status::Finished)
        };
        self.procs
            .get(&pid)
            .map(|p| p.parent)
            .filter(alive)
            .or_else(|| self.threads.keys().copied().find(alive))
            .unwrap_or(MAIN_THREAD)
    }

    /// Ends a running child now with `status`, whatever its plan (a test's script).
    pub(crate) fn end_child(&mut self, pid: Pid, status: ExitStatus) -> bool {
        let running = self
            .procs
            .get(&pid)
            .is_some_and(|p| matches!(p.state, ProcState::Running));
        if running {
            self.terminate(pid, status);
        }
        running
    }

    /// Ends a running child at once with its plan's fate (used by faults).
    fn terminate_now(&mut self, pid: Pid) {
        let status = match self.procs.get(&pid).map(|p| p.plan.clone()) {
            Some(ChildPlan::Exit { code, .. }) => ExitStatus::from_exit_code(code),
            Some(ChildPlan::Killed { signal, .. }) => {
                self.kill_self(pid, signal);
                return;
            }
            Some(ChildPlan::Forever | ChildPlan::Cat) | None => return,
        };
        // A child that dies early still produces its output first.
        self.child_output(pid);
        self.terminate(pid, status);
    }

    fn reap(&mut self, pid: Pid) -> Option<ExitStatus> {
        match self.procs.get(&pid)?.state {
            ProcState::Running => None,
            ProcState::Zombie(status) => {
                self.procs.remove(&pid);
                self.freed_pids.push(pid.0);
                self.changed = true;
                Some(status)
            }
        }
    }

    fn has_children(&self) -> bool {
        !self.procs.is_empty()
    }

    /// The oldest zombie child, as the kernel's scan of its children list finds it.
    fn oldest_zombie(&self) -> Option<(Pid, ExitStatus)> {
        self.procs
            .iter()
            .filter_map(|(&pid, p)| match p.state {
                ProcState::Zombie(status) => Some((p.seq, pid, status)),
                ProcState::Running => None,
            })
            .min_by_key(|(seq, _, _)| *seq)
            .map(|(_, pid, status)| (pid, status))
    }

    pub(crate) fn wait(
        &mut self,
        tid: Tid,
        target: WaitTarget,
        mode: WaitMode,
        reap: bool,
    ) -> Step<Result<WaitStatus, Errno>> {
        let name = match (target, reap) {
            (WaitTarget::Pid(_), true) => "waitpid",
            (WaitTarget::Any, true) => "waitpid(-1)",
            (_, false) => "waitid(WNOWAIT)",
        };
        let found = match target {
            WaitTarget::Pid(pid) if pid.0 <= 0 => Err(Errno::EINVAL),
            WaitTarget::Pid(pid) => match self.procs.get(&pid) {
                None => Err(Errno::ECHILD),
                Some(proc) => Ok(match proc.state {
                    ProcState::Zombie(status) => Some((pid, status)),
                    ProcState::Running => None,
                }),
            },
            WaitTarget::Any => {
                if self.has_children() {
                    Ok(self.oldest_zombie())
                } else {
                    Err(Errno::ECHILD)
                }
            }
        };
        let result = match found {
            Err(e) => Err(e),
            Ok(Some((pid, status))) => {
                if reap {
                    self.reap(pid);
                }
                Ok(WaitStatus::Terminated(pid, status))
            }
            Ok(None) if mode == WaitMode::NoHang => Ok(WaitStatus::StillAlive),
            Ok(None) => {
                // waitpid restarts after a handler (SA_RESTART); only injected EINTR ends it.
                return self.block_or_interrupt(tid, Wait::forever(), || Err(Errno::EINTR));
            }
        };
        let shown = match target {
            WaitTarget::Pid(pid) => pid.to_string(),
            WaitTarget::Any => "-1".to_string(),
        };
        self.log(tid, format_args!("{name}({shown}, {mode:?}) = {result:?}"));
        Step::Done(result)
    }

    /// Whether `signal`'s default action stops a process (SIGSTOP, and the
    /// job-control stops, modelled as for a process group that is not orphaned).
    fn stops(signal: i32) -> bool {
        (19..=22).contains(&signal)
    }

    /// Sends `signal` to child `pid`, as `kill()` does (children run the default
    /// actions): SIGKILL ends it at once, stopped or not; SIGCONT continues it at once
    /// and discards its pending stop signals; a signal ignored by default is dropped;
    /// any other waits until the child runs ([`State::child_takes_signals`]), which a
    /// stopped child does only once continued.
    fn signal_child(&mut self, pid: Pid, signal: Signal) {
        let Some(proc) = self.procs.get_mut(&pid) else {
            return;
        };
        if !matches!(proc.state, ProcState::Running) {
            return;
        }
        self.changed = true;
        if signal == Signal::SIGKILL {
            self.terminate(pid, ExitStatus::from_signal(signal, false));
        } else if signal == Signal::SIGCONT {
            proc.signals.retain(|s| !Self::stops(*s));
            if std::mem::take(&mut proc.stopped) {
                self.log_event(format_args!("child {pid} continued"));
                self.notify_parent(pid);
            }
        } else if !Self::ignored_by_default(signal.0) {
            proc.signals.insert(signal.0);
        }
    }

    /// The child runs and acts on the signals sent to it, lowest number first as
    /// Linux dequeues them: a stop signal stops it (the rest wait for SIGCONT), any
    /// other ends it.
    fn child_takes_signals(&mut self, pid: Pid) {
        while let Some(proc) = self.procs.get_mut(&pid) {
            if proc.stopped || !matches!(proc.state, ProcState::Running) {
                return;
            }
            let Some(signal) = proc.signals.pop_first() else {
                return;
            };
            self.changed = true;
            if Self::stops(signal) {
                proc.stopped = true;
                self.log_event(format_args!("child {pid} stopped by signal {signal}"));
                self.notify_parent(pid);
            } else {
                self.terminate(pid, ExitStatus::from_signal(Signal(signal), false));
            }
        }
    }

    /// A child stopped or continued: SIGCHLD for its parent, as Linux sends without
    /// `SA_NOCLDSTOP` (which neither loopwatch nor CPython sets). No wait reports it:
    /// the seam has no `WUNTRACED`.
    fn notify_parent(&mut self, pid: Pid) {
        let parent = self.parent_thread(pid);
        self.raise_process(Signal::SIGCHLD, parent);
    }

    /// A shell's `kill -S $$`: it signals itself and acts on it before its next
    /// command. If it survives (S is ignored, or stops it until SIGCONT), the script
    /// is over and it exits 0.
    fn kill_self(&mut self, pid: Pid, signal: Signal) {
        self.signal_child(pid, signal);
        self.child_takes_signals(pid);
        if let Some(proc) = self.procs.get_mut(&pid) {
            if matches!(proc.state, ProcState::Running) {
                proc.plan = ChildPlan::exit(0);
                if !proc.stopped {
                    self.terminate(pid, ExitStatus::from_exit_code(0));
                }
            }
        }
    }

    pub(crate) fn kill(
        &mut self,
        tid: Tid,
        pid: Pid,
        signal: Option<Signal>,
    ) -> Step<Result<(), Errno>> {
        let result = if pid.0 <= 0 || signal.is_some_and(|s| !s.is_valid()) {
            Err(Errno::EINVAL)
        } else if pid == self.pid() {
            if let Some(signal) = signal {
                // kill() finds the thread-group leader by the pid: it is tried first.
                self.raise_process(signal, MAIN_THREAD);
            }
            Ok(())
        } else if self.procs.contains_key(&pid) {
            if let Some(signal) = signal {
                self.signal_child(pid, signal);
            }
            Ok(())
        } else {
            Err(Errno::ESRCH)
        };
        self.log(tid, format_args!("kill({pid}, {signal:?}) = {result:?}"));
        Step::Done(result)
    }

    pub(crate) fn pidfd_open(&mut self, tid: Tid, pid: Pid) -> Step<Result<Fd, Errno>> {
        let result = if self.config.faults.pidfd_enosys {
            self.mark("pidfd_enosys");
            Err(Errno::ENOSYS)
        } else if self.config.faults.pidfd_eperm {
            self.mark("pidfd_eperm");
            Err(Errno::EPERM)
        } else if pid.0 <= 0 {
            Err(Errno::EINVAL)
        } else if let Some(proc) = self.procs.get(&pid) {
            let seq = proc.seq;
            self.alloc_fd(FdKind::PidFd { pid, seq }, true)
        } else {
            Err(Errno::ESRCH)
        };
        self.log(tid, format_args!("pidfd_open({pid}) = {result:?}"));
        Step::Done(result)
    }

    pub(crate) fn pidfd_send_signal(
        &mut self,
        tid: Tid,
        pidfd: Fd,
        signal: Signal,
    ) -> Step<Result<(), Errno>> {
        let result = match self.entry(pidfd) {
            Err(e) => Err(e),
            Ok(FdEntry {
                kind: FdKind::PidFd { pid, seq },
                ..
            }) => {
                if !signal.is_valid() {
                    Err(Errno::EINVAL)
                } else {
                    match self.procs.get(&pid) {
                        Some(proc) if proc.seq == seq => {
                            self.signal_child(pid, signal);
                            Ok(())
                        }
                        // Reaped: the pidfd never reaches a later process with its pid.
                        _ => Err(Errno::ESRCH),
                    }
                }
            }
            Ok(_) => Err(Errno::EBADF),
        };
        self.log(
            tid,
            format_args!("pidfd_send_signal({pidfd}, {}) = {result:?}", signal.0),
        );
        Step::Done(result)
    }

    /// Child events that may happen now: exits that are due, output to write, input
    /// to copy. Returns the pids with something to do, oldest first.
    pub(crate) fn due_children(&self) -> Vec<Pid> {
        let mut due: Vec<(u64, Pid)> = self
            .procs
            .iter()
            .filter(|(_, p)| matches!(p.state, ProcState::Running))
            .filter(|(pid, p)| self.child_can_progress(**pid, p))
            .map(|(&pid, p)| (p.seq, pid))
            .collect();
        due.sort();
        due.into_iter().map(|(_, pid)| pid).collect()
    }

    fn child_can_progress(&self, _pid: Pid, proc: &Proc) -> bool {
        // Not running yet (the lag fault), or stopped.
        if proc.stopped || self.time < proc.started {
            return false;
        }
        if !proc.signals.is_empty() {
            return true;
        }
        match &proc.plan {
            ChildPlan::Exit { after, stdout, .. } => {
                self.time >= proc.started + *after || self.output_pending(proc, stdout)
            }
            ChildPlan::Killed { after, .. } => self.time >= proc.started + *after,
            ChildPlan::Forever => false,
            ChildPlan::Cat => {
                let input = proc.stdin.and_then(|id| self.pipes.get(&id));
                match input {
                    None => true,
                    Some(pipe) if pipe.buf.is_empty() => pipe.writers == 0,
                    Some(_) => proc
                        .stdout
                        .and_then(|id| self.pipes.get(&id))
                        .is_none_or(|out| out.buf.len() < PIPE_CAPACITY || out.readers == 0),
                }
            }
        }
    }

    fn output_pending(&self, proc: &Proc, stdout: &[u8]) -> bool {
        proc.written < stdout.len()
            && proc
                .stdout
                .and_then(|id| self.pipes.get(&id))
                .is_some_and(|p| p.buf.len() < PIPE_CAPACITY)
    }

    /// Writes what the plan's stdout still has to the pipe, as room allows.
    fn child_output(&mut self, pid: Pid) {
        let Some(proc) = self.procs.get_mut(&pid) else {
            return;
        };
        let ChildPlan::Exit { stdout, .. } = &proc.plan else {
            return;
        };
        let Some(pipe) = proc.stdout.and_then(|id| self.pipes.get_mut(&id)) else {
            return;
        };
        if pipe.readers == 0 {
            proc.written = stdout.len();
            return;
        }
        let room = PIPE_CAPACITY - pipe.buf.len();
        let n = room.min(stdout.len() - proc.written);
        pipe.buf.extend(&stdout[proc.written..proc.written + n]);
        self.stamps += 1;
        pipe.stamp = self.stamps;
        proc.written += n;
        self.changed = true;
    }

    /// Lets one child make progress (the driver decides when).
    pub(crate) fn step_child(&mut self, pid: Pid) {
        let Some(proc) = self.procs.get(&pid) else {
            return;
        };
        if !proc.signals.is_empty() {
            self.child_takes_signals(pid);
            return;
        }
        let (started, plan) = (proc.started, proc.plan.clone());
        match plan {
            ChildPlan::Exit {
                code,
                after,
                stdout,
            } => {
                self.child_output(pid);
                let done_writing =
                    self.procs[&pid].written >= stdout.len() || self.procs[&pid].stdout.is_none();
                if self.time >= started + after && done_writing {
                    self.terminate(pid, ExitStatus::from_exit_code(code));
                }
            }
            ChildPlan::Killed { signal, .. } => self.kill_self(pid, signal),
            ChildPlan::Forever => {}
            ChildPlan::Cat => {
                let proc = &self.procs[&pid];
                let (input, output) = (proc.stdin, proc.stdout);
                let eof = input
                    .and_then(|id| self.pipes.get(&id))
                    .is_none_or(|pipe| pipe.buf.is_empty() && pipe.writers == 0);
                let data: Vec<u8> = match eof {
                    true => {
                        self.terminate(pid, ExitStatus::from_exit_code(0));
                        return;
                    }
                    false => {
                        let room = output
                            .and_then(|id| self.pipes.get(&id))
                            .map_or(usize::MAX, |out| PIPE_CAPACITY - out.buf.len());
                        let pipe = self.pipes.get_mut(&input.expect("checked")).expect("open");
                        let n = room.min(pipe.buf.len());
                        pipe.buf.drain(..n).collect()
                    }
                };
                if let Some(out) = output.and_then(|id| self.pipes.get_mut(&id)) {
                    if out.readers > 0 {
                        out.buf.extend(data);
                        self.stamps += 1;
                        out.stamp = self.stamps;
                    }
                }
                self.changed = true;
                self.log_event(format_args!("child {pid} copies input"));
            }
        }
    }

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
                    ChildPlan::Forever | ChildPlan::Cat => None,
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

    // ----- signals -------------------------------------------------------------------

    /// Signals whose default action is to do nothing.
    fn ignored_by_default(signal: i32) -> bool {
        [Signal::SIGCHLD.0, Signal::SIGCONT.0, 23, 28].contains(&signal)
    }

    /// Whether a signal with `disposition` is ignored, so the kernel drops it.
    fn is_ignored(signal: i32, disposition: Disposition) -> bool {
        disposition == Disposition::Ignore
            || (disposition == Disposition::Default && Self::ignored_by_default(signal))
    }

    /// Generates a process-directed `signal`; `suggested` is the thread Linux tries
    /// first. A signal already pending coalesces, keeping the first suggestion (Linux
    /// drops the second before choosing a thread).
    fn raise_process(&mut self, signal: Signal, suggested: Tid) {
        let disposition = self
            .dispositions
            .get(&signal.0)
            .copied()
            .unwrap_or(Disposition::Default);
        // Linux drops an ignored signal when it is generated, unless the main thread
        // blocks it (then it stays pending until unblocked or ignored-and-unblocked).
        let blocked = self
            .threads
            .get(&MAIN_THREAD)
            .is_some_and(|t| t.mask.contains(&signal.0));
        if Self::is_ignored(signal.0, disposition) && !blocked {
            return;
        }
        if self.pending.insert(signal.0) {
            self.suggested.insert(signal.0, suggested);
        } else if disposition != Disposition::Default {
            self.mark(if signal == Signal::SIGCHLD {
                "sigchld_coalesced"
            } else {
                "signal_coalesced"
            });
        }
        self.changed = true;
    }

    /// Whether some thread has taken `signal` and will run its handler when its call
    /// returns.
    fn taken(&self, signal: i32) -> bool {
        self.threads.values().any(|t| t.handlers.contains(&signal))
    }

    /// Pending signals not yet taken, and the threads that could take each (not
    /// blocking it).
    pub(crate) fn deliverable(&self) -> Vec<(i32, Vec<Tid>)> {
        self.pending
            .iter()
            .filter(|&&sig| !self.taken(sig))
            .map(|&sig| {
                let threads = self
                    .threads
                    .iter()
                    .filter(|(_, t)| t.status != Status::Finished && !t.mask.contains(&sig))
                    .map(|(&tid, _)| tid)
                    .collect();
                (sig, threads)
            })
            .filter(|(_, threads): &(i32, Vec<Tid>)| !threads.is_empty())
            .collect()
    }

    /// The thread that takes pending `signal`, by Linux's rule (`complete_signal` and
    /// `wants_signal` in kernel/signal.c): the suggested thread if it wants the signal,
    /// else another thread that wants it. A thread wants a signal when it does not
    /// block it and has no signal of its own waiting for its handler. When none wants
    /// it, a thread that does not block it takes it with the others it has waiting.
    /// The `signal_other_thread` fault lets another thread that wants it take it
    /// first, as a thread already running in the kernel can on a real machine.
    pub(crate) fn signal_target(&mut self, signal: i32) -> Tid {
        let eligible: Vec<Tid> = self
            .threads
            .iter()
            .filter(|(_, t)| t.status != Status::Finished && !t.mask.contains(&signal))
            .map(|(&tid, _)| tid)
            .collect();
        let wanting: Vec<Tid> = eligible
            .iter()
            .copied()
            .filter(|tid| self.threads[tid].handlers.is_empty())
            .collect();
        let suggested = self.suggested.get(&signal).copied().unwrap_or(MAIN_THREAD);
        let others: Vec<Tid> = wanting
            .iter()
            .copied()
            .filter(|&tid| tid != suggested)
            .collect();
        let p = self.config.faults.signal_other_thread;
        if !others.is_empty() && p > 0.0 && self.rng.chance(p) {
            self.mark("signal_other_thread");
            return others[self.rng.below(others.len() as u64) as usize];
        }
        if wanting.contains(&suggested) {
            return suggested;
        }
        if !wanting.is_empty() {
            return wanting[self.rng.below(wanting.len() as u64) as usize];
        }
        if eligible.contains(&suggested) {
            return suggested;
        }
        eligible.first().copied().unwrap_or(MAIN_THREAD)
    }

    /// Delivers pending `signal` to `tid`. A default action applies at once (one that
    /// terminates marks the process killed; the driver ends the run); so does a
    /// handler, unless `tid` is inside a blocked kernel call: then the call is woken
    /// and checks its condition again, and the handler runs when the call returns,
    /// fails with EINTR or restarts (the driver calls [`State::leave_call`] and
    /// [`State::run_handlers`]).
    pub(crate) fn deliver(&mut self, signal: i32, tid: Tid) {
        let disposition = self
            .dispositions
            .get(&signal)
            .copied()
            .unwrap_or(Disposition::Default);
        let handled = matches!(
            disposition,
            Disposition::Wakeup | Disposition::Notify(_) | Disposition::Foreign(_)
        );
        if handled && self.threads.get(&tid).is_some_and(|t| t.in_call) {
            self.log_event(format_args!(
                "signal {signal} taken by T{tid}: its handler runs when the call returns"
            ));
            self.changed = true;
            let thread = self.thread_mut(tid);
            thread.handlers.push(signal);
            thread.status = Status::Runnable;
            return;
        }
        self.pending.remove(&signal);
        self.act(signal, tid, disposition);
    }

    /// Runs `signal`'s action in `tid`: the kernel's default, or the handler.
    fn act(&mut self, signal: i32, tid: Tid, disposition: Disposition) {
        self.log_event(format_args!(
            "deliver signal {signal} to T{tid} ({disposition:?})"
        ));
        self.changed = true;
        match disposition {
            Disposition::Default => {
                if !Self::ignored_by_default(signal) {
                    self.killed = Some(signal);
                }
            }
            Disposition::Ignore => {}
            Disposition::Wakeup | Disposition::Notify(_) => {
                let target = match disposition {
                    Disposition::Notify(fd) => Some(fd),
                    _ => self.wakeup_fd,
                };
                if let Some(fd) = target {
                    self.wakeup_write(fd, signal as u8);
                }
            }
            Disposition::Foreign(id) => {
                self.foreign_deliveries += 1;
                if self.foreign.get(id as usize) == Some(&ForeignHandler::ReapAll) {
                    while let Some((pid, status)) = self.oldest_zombie() {
                        self.reap(pid);
                        self.mark("foreign_reap");
                        self.log_event(format_args!(
                            "foreign handler reaps {pid} ({})",
                            status_text(status)
                        ));
                    }
                }
            }
        }
        if signal == Signal::SIGCHLD.0 {
            let p = self.config.faults.foreign_reap_on_sigchld;
            if p > 0.0 && self.rng.chance(p) {
                if let Some((pid, _)) = self.oldest_zombie() {
                    self.reap(pid);
                    self.mark("foreign_reap");
                    self.log_event(format_args!("foreign code reaps {pid}"));
                }
            }
        }
    }

    /// Runs the handlers of the signals `tid` took while in its call; says whether
    /// there were any. A signal no longer pending (ignored since) is skipped; the
    /// action is the disposition's now, as Linux reads it when it dequeues.
    pub(crate) fn run_handlers(&mut self, tid: Tid) -> bool {
        let taken = std::mem::take(&mut self.thread_mut(tid).handlers);
        let any = !taken.is_empty();
        for signal in taken {
            if self.pending.remove(&signal) {
                let disposition = self
                    .dispositions
                    .get(&signal)
                    .copied()
                    .unwrap_or(Disposition::Default);
                self.act(signal, tid, disposition);
            }
        }
        any
    }

    /// `tid`'s kernel call returns: it is back in user space, where it runs the
    /// handlers of the signals it took meanwhile.
    pub(crate) fn leave_call(&mut self, tid: Tid) {
        self.thread_mut(tid).in_call = false;
        self.run_handlers(tid);
    }

    /// Whether `tid` has taken signals whose handlers have not run yet.
    pub(crate) fn has_handlers(&self, tid: Tid) -> bool {
        self.threads
            .get(&tid)
            .is_some_and(|t| !t.handlers.is_empty())
    }

    /// A blocked call of `tid` that took a signal gives up with EINTR on its next try.
    pub(crate) fn interrupt(&mut self, tid: Tid) {
        self.thread_mut(tid).interrupted = true;
    }

    /// The handler's `write(wakeup_fd, &signum, 1)`: never blocks, drops the byte
    /// when the pipe is full.
    fn wakeup_write(&mut self, fd: Fd, byte: u8) {
        if let Some(FdEntry {
            kind: FdKind::PipeWrite(id),
            ..
        }) = self.fds.get(&fd.0).copied()
        {
            let pipe = self.pipes.get_mut(&id).expect("open pipe");
            if pipe.readers > 0 && pipe.buf.len() < PIPE_CAPACITY {
                pipe.buf.push_back(byte);
                self.stamps += 1;
                pipe.stamp = self.stamps;
            }
        }
    }

    pub(crate) fn set_disposition(
        &mut self,
        tid: Tid,
        signal: Signal,
        disposition: Disposition,
    ) -> Step<Result<Disposition, Errno>> {
        let unknown_foreign =
            matches!(disposition, Disposition::Foreign(id) if id as usize >= self.foreign.len());
        let result = if !signal.is_catchable() || unknown_foreign {
            Err(Errno::EINVAL)
        } else if matches!(disposition, Disposition::Notify(fd) if !self.fds.contains_key(&fd.0)) {
            Err(Errno::EBADF)
        } else {
            let old = self
                .dispositions
                .insert(signal.0, disposition)
                .unwrap_or(Disposition::Default);
            if Self::is_ignored(signal.0, disposition) {
                // POSIX: making a pending signal ignored discards it (zombies of a
                // SIGCHLD stay).
                self.pending.remove(&signal.0);
            }
            Ok(old)
        };
        self.log(
            tid,
            format_args!("sigaction({}, {disposition:?}) = {result:?}", signal.0),
        );
        self.changed = true;
        Step::Done(result)
    }

    pub(crate) fn disposition(
        &mut self,
        tid: Tid,
        signal: Signal,
    ) -> Step<Result<Disposition, Errno>> {
        let result = if signal.is_valid() {
            Ok(self
                .dispositions
                .get(&signal.0)
                .copied()
                .unwrap_or(Disposition::Default))
        } else {
            Err(Errno::EINVAL)
        };
        self.log(tid, format_args!("sigaction({}) = {result:?}", signal.0));
        Step::Done(result)
    }

    pub(crate) fn install_foreign(
        &mut self,
        signal: Signal,
        handler: ForeignHandler,
    ) -> Disposition {
        self.foreign.push(handler);
        let disposition = Disposition::Foreign(self.foreign.len() as u64 - 1);
        self.dispositions.insert(signal.0, disposition);
        self.log_event(format_args!(
            "foreign code installs {handler:?} for signal {}",
            signal.0
        ));
        disposition
    }

    pub(crate) fn set_wakeup_fd(
        &mut self,
        tid: Tid,
        fd: Option<Fd>,
    ) -> Step<Result<Option<Fd>, Errno>> {
        let result = match fd {
            Some(fd) if !self.fds.contains_key(&fd.0) => Err(Errno::EBADF),
            _ => Ok(std::mem::replace(&mut self.wakeup_fd, fd)),
        };
        self.log(tid, format_args!("set_wakeup_fd({fd:?}) = {result:?}"));
        Step::Done(result)
    }

    pub(crate) fn raise(&mut self, tid: Tid, signal: Signal) -> Step<Result<(), Errno>> {
        if !signal.is_valid() {
            return Step::Done(Err(Errno::EINVAL));
        }
        self.log(tid, format_args!("raise({})", signal.0));
        // raise() delivers to the calling thread before it returns, unless blocked.
        if self.pending.insert(signal.0) {
            self.suggested.insert(signal.0, tid);
        }
        if !self.thread_mut(tid).mask.contains(&signal.0) {
            self.deliver(signal.0, tid);
        }
        self.changed = true;
        Step::Done(Ok(()))
    }

    pub(crate) fn mask(
        &mut self,
        tid: Tid,
        signal: Signal,
        block: bool,
    ) -> Step<Result<bool, Errno>> {
        if !signal.is_valid() {
            return Step::Done(Err(Errno::EINVAL));
        }
        let mask = &mut self.thread_mut(tid).mask;
        let was_blocked = if block {
            !mask.insert(signal.0)
        } else {
            mask.remove(&signal.0)
        };
        self.log(tid, format_args!("sigmask({}, block={block})", signal.0));
        self.changed = true;
        // A pending signal the thread just unblocked is delivered to it before the call
        // returns, as Linux does on the way back to user space.
        if !block && self.pending.contains(&signal.0) {
            self.deliver(signal.0, tid);
        }
        Step::Done(Ok(was_blocked))
    }

    // ----- threads and locks ---------------------------------------------------------

    pub(crate) fn spawn_thread(
        &mut self,
        tid: Tid,
        name: &str,
        body: Box<dyn FnOnce() + Send>,
    ) -> Step<Tid> {
        let new = self.next_tid;
        self.next_tid += 1;
        self.threads.insert(
            new,
            ThreadState {
                name: name.to_string(),
                status: Status::Runnable,
                mask: self.threads[&tid].mask.clone(),
                interrupted: false,
                in_call: false,
                handlers: Vec::new(),
                blocked_in: "",
                result: None,
            },
        );
        self.new_threads.push((new, body));
        self.log(tid, format_args!("spawn_thread({name:?}) = T{new}"));
        self.changed = true;
        Step::Done(new)
    }

    pub(crate) fn join(&mut self, tid: Tid, target: Tid) -> Step<Result<(), Box<dyn Any + Send>>> {
        match self.threads.get_mut(&target) {
            Some(thread) if thread.status == Status::Finished => {
                let result = thread.result.take().unwrap_or(Ok(()));
                self.log(
                    tid,
                    format_args!(
                        "join(T{target}) = {}",
                        if result.is_ok() { "Ok" } else { "panicked" }
                    ),
                );
                Step::Done(result)
            }
            Some(_) => Step::Block(Wait::forever()),
            None => Step::Done(Ok(())),
        }
    }

    pub(crate) fn new_monitor(&mut self) -> u64 {
        let id = self.next_monitor;
        self.next_monitor += 1;
        self.monitors.insert(id, MonitorState::default());
        id
    }

    pub(crate) fn drop_monitor(&mut self, id: u64) {
        self.monitors.remove(&id);
    }

    pub(crate) fn monitor_enter(&mut self, tid: Tid, id: u64) -> Step<()> {
        let monitor = self.monitors.get_mut(&id).expect("live monitor");
        match monitor.owner {
            None => {
                monitor.owner = Some(tid);
                self.changed = true;
                Step::Done(())
            }
            Some(owner) => {
                assert_ne!(owner, tid, "simulated monitor entered twice by T{tid}");
                if self.aborting {
                    return Step::Done(());
                }
                Step::Block(Wait::forever())
            }
        }
    }

    pub(crate) fn monitor_exit(&mut self, tid: Tid, id: u64) -> Step<()> {
        if let Some(monitor) = self.monitors.get_mut(&id) {
            if monitor.owner == Some(tid) {
                monitor.owner = None;
                self.changed = true;
            }
        }
        Step::Done(())
    }

    /// The release half of a monitor wait: returns the generation to wait past.
    pub(crate) fn monitor_release(&mut self, tid: Tid, id: u64) -> u64 {
        let monitor = self.monitors.get_mut(&id).expect("live monitor");
        if monitor.owner == Some(tid) {
            monitor.owner = None;
        }
        self.changed = true;
        monitor.generation
    }

    pub(crate) fn monitor_await(
        &mut self,
        id: u64,
        generation: u64,
        deadline: Option<Duration>,
    ) -> Step<bool> {
        let monitor = &self.monitors[&id];
        if monitor.generation != generation {
            return Step::Done(true);
        }
        if deadline.is_some_and(|d| self.time >= d) || self.aborting {
            return Step::Done(false);
        }
        Step::Block(Wait {
            deadline,
            interruptible: false,
        })
    }

    pub(crate) fn monitor_notify(&mut self, id: u64) -> Step<()> {
        if let Some(monitor) = self.monitors.get_mut(&id) {
            monitor.generation += 1;
            self.changed = true;
        }
        Step::Done(())
    }

    pub(crate) fn sleep(&mut self, deadline: Duration) -> Step<()> {
        if self.time >= deadline || self.aborting {
            return Step::Done(());
        }
        Step::Block(Wait {
            deadline: Some(deadline),
            interruptible: false,
        })
    }

    /// Zombies and running children left, for end-of-run checks.
    pub(crate) fn children_left(&self) -> (usize, usize) {
        let zombies = self
            .procs
            .values()
            .filter(|p| matches!(p.state, ProcState::Zombie(_)))
            .count();
        (self.procs.len() - zombies, zombies)
    }

    /// Open fds other than stdio.
    pub(crate) fn open_fds(&self) -> usize {
        self.fds.len().saturating_sub(3)
    }
}
