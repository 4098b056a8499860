//! Processes: spawning children, their exits and output, waiting for them, and
//! sending them signals.

use std::collections::BTreeSet;
use std::time::Duration;

use loopwatch::kernel::{
    Disposition, Errno, ExitStatus, Fd, JobStatus, Pid, Signal, SpawnRequest, Spawned, Stdio,
    WaitMode, WaitStatus, WaitTarget,
};

use super::{Attempt, FdEntry, FdKind, MAIN_THREAD, Model, PidReuse, Status, Tid, Wait, fd_limit};
use crate::ledger::{ChildLife, Reaper, SignalSent, SignalVia};
use crate::program::{ChildPlan, Programs, Unmodelled};

#[derive(Debug)]
pub(super) enum ProcState {
    Running,
    Zombie(ExitStatus),
}

#[derive(Debug)]
pub(super) struct Proc {
    /// Spawn sequence number: tells incarnations of a reused pid apart, and orders
    /// `wait_any` (the kernel scans children oldest first).
    pub(super) seq: u64,
    pub(super) plan: ChildPlan,
    pub(super) started: Duration,
    pub(super) state: ProcState,
    /// Pipes the child holds: its stdin read end and its stdout/stderr write ends.
    pub(super) stdin: Option<u64>,
    pub(super) stdout: Option<u64>,
    pub(super) stderr: Option<u64>,
    /// Bytes of the plan's stdout and stderr already written.
    pub(super) written: [usize; 2],
    /// When it terminated, for ready-list order.
    pub(super) stamp: u64,
    /// The thread that spawned it: Linux sends its SIGCHLD to that thread first.
    pub(super) parent: Tid,
    /// Stopped by a stop signal, until SIGCONT.
    pub(super) stopped: bool,
    /// The stop or continue not yet taken by a job-control wait (`WSTOPPED`,
    /// `WCONTINUED`): each is reported once, and a continue replaces a stop.
    pub(super) job: Option<Job>,
    /// Signals sent to it that it has not acted on yet: it does when it next runs
    /// (a stopped child does not run until continued).
    pub(super) signals: BTreeSet<i32>,
}

/// A child's job-control change, waiting for a `WSTOPPED | WCONTINUED` wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Job {
    /// Stopped by this signal.
    Stopped(i32),
    /// Continued by SIGCONT.
    Continued,
}

impl Proc {
    /// Its serial in the ledger: the n-th child of the run, from 0.
    pub(super) fn serial(&self) -> u64 {
        self.seq - 1
    }
}

/// `argv[0]` and the arguments of `request`, joined by spaces.
fn command_line(request: &SpawnRequest) -> String {
    std::iter::once(&request.program)
        .chain(&request.args)
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn status_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (_, Some(signal)) => format!("signal {}", signal.0),
        _ => format!("status {}", status.0),
    }
}

impl Model {
    /// The registered programs and the environment children inherit.
    pub(crate) fn programs(&mut self) -> &mut Programs {
        &mut self.programs
    }

    /// Takes the registered programs out (at the end of a run: a closure may hold a
    /// kernel, and so the run).
    pub(crate) fn take_programs(&mut self) -> Programs {
        std::mem::take(&mut self.programs)
    }

    /// Records why a spawn failed with ENOENT: in the trace, as a mark and as a
    /// `tracing` warning.
    fn unmodelled(&mut self, tid: Tid, refusal: &Unmodelled) {
        self.mark("spawn_unmodelled");
        self.log(tid, format_args!("spawn refused: {refusal}"));
        tracing::warn!(target: "loopwatch_sim", what = refusal.what(), "{refusal}");
    }

    /// The serial of the child that holds `pid` now, running or zombie.
    pub(crate) fn serial_of(&self, pid: Pid) -> Option<u64> {
        self.procs.get(&pid).map(Proc::serial)
    }

    /// `pid` is free again: under `LastFreed` it is the next to be handed out.
    fn free_pid(&mut self, pid: i32) {
        if self.config.pid_reuse == PidReuse::LastFreed {
            self.freed_pids.push(pid);
        }
    }

    fn alloc_pid(&mut self) -> Option<i32> {
        let in_use = |state: &Model, pid: i32| state.procs.contains_key(&Pid(pid));
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
    ) -> Attempt<Result<Spawned, Errno>> {
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
        Attempt::Done(result)
    }

    fn do_spawn(&mut self, tid: Tid, request: &SpawnRequest) -> Result<Spawned, Errno> {
        // Before anything is created, as a kernel without CLONE_PIDFD answers.
        if request.pidfd
            && (self.config.faults.spawn_pidfd_enosys || self.config.faults.pidfd_enosys)
        {
            self.mark("spawn_pidfd_enosys");
            return Err(Errno::ENOSYS);
        }
        let p = self.config.faults.spawn_eagain;
        if p > 0.0 && self.rng.chance(p) {
            self.mark("spawn_eagain");
            return Err(Errno::EAGAIN);
        }
        let mut parent_fds = Vec::new();
        let mut child_ends = [None, None, None];
        let mut parent_ends = [None, None, None];
        let streams = [request.stdin, request.stdout, request.stderr];
        // Validate fds and the limit before changing anything.
        let pipes_needed = streams.iter().filter(|s| **s == Stdio::Pipe).count();
        let fds_needed = pipes_needed + usize::from(request.pidfd);
        if self.fds.len() + fds_needed > fd_limit(&self.config) {
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
        // As fork and exec: the child has its pid before the program is looked up (so
        // `$$` has a value), and a program that cannot run frees it again.
        let plan = match self.programs.resolve(request, Pid(pid)) {
            Ok(plan) => plan,
            Err(refusal) => {
                self.free_pid(pid);
                self.unmodelled(tid, &refusal);
                return Err(Errno::ENOENT);
            }
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
                written: [0, 0],
                stamp: 0,
                parent: tid,
                stopped: false,
                job: None,
                signals: BTreeSet::new(),
            },
        );
        self.ledger.children.push(ChildLife {
            serial: self.spawn_seq - 1,
            pid: Pid(pid),
            program: command_line(request),
            spawned_by: self.thread_name(tid),
            spawned_at: self.time,
            returncode: None,
            ended_at: None,
            reaped_by: None,
            reaped_at: None,
        });
        self.unreaped += 1;
        self.changed = true;
        // In the same step as the child (clone's CLONE_PIDFD): no other thread can
        // reap it first. The fd limit was checked above.
        let pidfd = if request.pidfd {
            Some(self.open_pidfd(Pid(pid))?)
        } else {
            None
        };
        Ok(Spawned {
            pid: Pid(pid),
            stdin: parent_ends[0],
            stdout: parent_ends[1],
            stderr: parent_ends[2],
            pidfd,
        })
    }

    /// Ends a running child now with the fate its plan gives, or with `signal`.
    pub(super) fn terminate(&mut self, pid: Pid, status: ExitStatus) {
        let Some(proc) = self.procs.get_mut(&pid) else {
            return;
        };
        if !matches!(proc.state, ProcState::Running) {
            return;
        }
        proc.state = ProcState::Zombie(status);
        // A zombie has no stop or continue left to report.
        proc.job = None;
        self.stamps += 1;
        proc.stamp = self.stamps;
        let serial = proc.serial();
        let ends = [
            proc.stdin.take().map(FdKind::PipeRead),
            proc.stdout.take().map(FdKind::PipeWrite),
            proc.stderr.take().map(FdKind::PipeWrite),
        ];
        for kind in ends.into_iter().flatten() {
            self.release(kind);
        }
        let time = self.time;
        if let Some(life) = self.ledger.child_mut(serial) {
            life.returncode = Some(status.returncode());
            life.ended_at = Some(time);
        }
        self.log_event(format_args!("child {pid} {}", status_text(status)));
        self.changed = true;
        if self.dispositions.get(&Signal::SIGCHLD.0) == Some(&Disposition::Ignore) {
            // SIG_IGN for SIGCHLD: the kernel reaps the child itself.
            self.reap(pid, Reaper::Ignored);
            self.mark("sigchld_ignored_autoreap");
            self.log_event(format_args!("child {pid} auto-reaped"));
        } else {
            let parent = self.parent_thread(pid);
            self.raise_process(Signal::SIGCHLD, parent);
            let p = self.config.faults.foreign_reap_on_exit;
            if p > 0.0 && self.rng.chance(p) {
                self.reap(pid, Reaper::ForeignFault);
                self.mark("foreign_reap_on_exit");
                self.log_event(format_args!("foreign code reaps {pid} as it exits"));
            }
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
        let fate = match self.procs.get(&pid).map(|p| &p.plan) {
            Some(ChildPlan::Exit { code, .. }) => Ok(ExitStatus::from_exit_code(*code)),
            Some(ChildPlan::Killed { signal, .. }) => Err(*signal),
            // These wait for their input (or a signal) and cannot end early.
            Some(ChildPlan::Forever | ChildPlan::Cat | ChildPlan::ReadLine { .. }) | None => return,
        };
        // A child that dies early still produces its output first.
        self.child_output(pid);
        match fate {
            Ok(status) => self.terminate(pid, status),
            Err(signal) => self.kill_self(pid, signal),
        }
    }

    /// Reaps zombie `pid` (`reaper` did), freeing its pid; `None` if it is not a
    /// zombie child.
    pub(super) fn reap(&mut self, pid: Pid, reaper: Reaper) -> Option<ExitStatus> {
        let proc = self.procs.get(&pid)?;
        let ProcState::Zombie(status) = proc.state else {
            return None;
        };
        let serial = proc.serial();
        self.procs.remove(&pid);
        self.free_pid(pid.0);
        self.changed = true;
        let time = self.time;
        if let Some(life) = self.ledger.child_mut(serial) {
            life.reaped_by = Some(reaper);
            life.reaped_at = Some(time);
        }
        self.unreaped -= 1;
        Some(status)
    }

    fn has_children(&self) -> bool {
        !self.procs.is_empty()
    }

    /// The oldest zombie child, as the kernel's scan of its children list finds it.
    pub(super) fn oldest_zombie(&self) -> Option<(Pid, ExitStatus)> {
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
    ) -> Attempt<Result<WaitStatus, Errno>> {
        // The trace line reads like the call: `waitpid(-1, Block)`, or
        // `waitid(-1, Block, WNOWAIT)` for a peek that leaves the zombie in place.
        let (name, flags) = if reap {
            ("waitpid", "")
        } else {
            ("waitid", ", WNOWAIT")
        };
        let found = match target {
            WaitTarget::Any => {
                if self.has_children() {
                    Ok(self.oldest_zombie())
                } else {
                    Err(Errno::ECHILD)
                }
            }
            WaitTarget::Pid(_) | WaitTarget::Pidfd(_) => {
                self.one_child(target)
                    .map(|pid| match self.procs[&pid].state {
                        ProcState::Zombie(status) => Some((pid, status)),
                        ProcState::Running => None,
                    })
            }
        };
        let result = match found {
            Err(e) => Err(e),
            Ok(Some((pid, status))) => {
                if reap {
                    let reaper = Reaper::Thread(self.thread_name(tid));
                    self.reap(pid, reaper);
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
            WaitTarget::Pidfd(fd) => format!("pidfd {}", fd.0),
        };
        self.log(
            tid,
            format_args!("{name}({shown}, {mode:?}{flags}) = {result:?}"),
        );
        Attempt::Done(result)
    }

    /// The child a wait on one child names: `EINVAL` for a pid ≤ 0 (or
    /// [`WaitTarget::Any`]), `ECHILD` for a pid that is no child, or a pidfd whose
    /// process was reaped (its pid may be another's now), `EBADF` for an fd that is
    /// not open or not a pidfd.
    fn one_child(&self, target: WaitTarget) -> Result<Pid, Errno> {
        match target {
            WaitTarget::Pid(pid) if pid.0 <= 0 => Err(Errno::EINVAL),
            WaitTarget::Pid(pid) if self.procs.contains_key(&pid) => Ok(pid),
            WaitTarget::Pid(_) => Err(Errno::ECHILD),
            WaitTarget::Any => Err(Errno::EINVAL),
            WaitTarget::Pidfd(fd) => match self.fds.get(&fd.0).map(|e| e.kind) {
                Some(FdKind::PidFd { pid, seq }) => match self.procs.get(&pid) {
                    Some(proc) if proc.seq == seq => Ok(pid),
                    _ => Err(Errno::ECHILD),
                },
                // Linux's pidfd_get_pid: any fd that is no pidfd is "bad".
                Some(_) | None => Err(Errno::EBADF),
            },
        }
    }

    /// A job-control wait on one child: with `take`, `waitid(WSTOPPED | WCONTINUED |
    /// WNOHANG)`, which takes the pending stop or continue (`ECHILD` for a zombie);
    /// without, `waitid(WEXITED |
    /// WSTOPPED | WCONTINUED | WNOWAIT)`, which reports the exit, or else the pending
    /// change, and consumes nothing (and blocks for one unless `NoHang`).
    pub(crate) fn wait_job(
        &mut self,
        tid: Tid,
        target: WaitTarget,
        mode: WaitMode,
        take: bool,
    ) -> Attempt<Result<JobStatus, Errno>> {
        let report = |pid: Pid, job: Job| match job {
            Job::Stopped(signal) => JobStatus::Stopped(pid, Signal(signal)),
            Job::Continued => JobStatus::Continued(pid),
        };
        let result = match self.one_child(target) {
            Err(e) => Err(e),
            // Linux: a zombie is no candidate for a wait without WEXITED.
            Ok(pid) if take && matches!(self.procs[&pid].state, ProcState::Zombie(_)) => {
                Err(Errno::ECHILD)
            }
            Ok(pid) if take => {
                let job = self.procs.get_mut(&pid).and_then(|p| p.job.take());
                if job.is_some() {
                    self.changed = true;
                }
                Ok(job.map_or(JobStatus::StillAlive, |job| report(pid, job)))
            }
            Ok(pid) => {
                let proc = &self.procs[&pid];
                match (&proc.state, proc.job) {
                    (ProcState::Zombie(status), _) => Ok(JobStatus::Terminated(pid, *status)),
                    (ProcState::Running, Some(job)) => Ok(report(pid, job)),
                    (ProcState::Running, None) if mode == WaitMode::NoHang => {
                        Ok(JobStatus::StillAlive)
                    }
                    (ProcState::Running, None) => {
                        match self.block_or_interrupt(tid, Wait::forever(), || Err(Errno::EINTR)) {
                            // Traced, as every job wait that returns is.
                            Attempt::Done(interrupted) => interrupted,
                            block => return block,
                        }
                    }
                }
            }
        };
        let shown = match target {
            WaitTarget::Pid(pid) => pid.to_string(),
            WaitTarget::Any => "-1".to_string(),
            WaitTarget::Pidfd(fd) => format!("pidfd {}", fd.0),
        };
        let flags = if take {
            "WSTOPPED|WCONTINUED, NoHang".to_string()
        } else {
            format!("WEXITED|WSTOPPED|WCONTINUED, {mode:?}, WNOWAIT")
        };
        self.log(tid, format_args!("waitid({shown}, {flags}) = {result:?}"));
        Attempt::Done(result)
    }

    /// Whether `signal`'s default action stops a process (SIGSTOP, and the
    /// job-control stops, modelled as for a process group that is not orphaned).
    fn stops(signal: i32) -> bool {
        (19..=22).contains(&signal)
    }

    /// Sends `signal` to child `pid`, as `kill()` does (children run the default
    /// actions): SIGKILL ends it at once, stopped or not; SIGCONT continues it at once
    /// and discards its pending stop signals; a signal ignored by default is dropped;
    /// any other waits until the child runs ([`Model::child_takes_signals`]), which a
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
                proc.job = Some(Job::Continued);
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
    pub(super) fn child_takes_signals(&mut self, pid: Pid) {
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
                proc.job = Some(Job::Stopped(signal));
                self.log_event(format_args!("child {pid} stopped by signal {signal}"));
                self.notify_parent(pid);
            } else {
                self.terminate(pid, ExitStatus::from_signal(Signal(signal), false));
            }
        }
    }

    /// A child stopped or continued: SIGCHLD for its parent, as Linux sends without
    /// `SA_NOCLDSTOP` (which neither loopwatch nor CPython sets). Only a job-control
    /// wait ([`Model::wait_job`]) reports the change itself.
    fn notify_parent(&mut self, pid: Pid) {
        let parent = self.parent_thread(pid);
        self.raise_process(Signal::SIGCHLD, parent);
    }

    /// A shell's `kill -S $$`: it signals itself and acts on it before its next
    /// command. If it survives (S is ignored, or stops it until SIGCONT), the script
    /// is over and it exits 0.
    pub(super) fn kill_self(&mut self, pid: Pid, signal: Signal) {
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
    ) -> Attempt<Result<(), Errno>> {
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
        if let (Some(signal), true) = (signal, result != Err(Errno::EINVAL)) {
            let landed_on = self.serial_of(pid);
            self.record_signal(tid, signal, pid, SignalVia::Kill, landed_on);
        }
        self.log(tid, format_args!("kill({pid}, {signal:?}) = {result:?}"));
        Attempt::Done(result)
    }

    /// A pidfd for the process `pid` now has (`ESRCH` if none): `pidfd_open`'s, and a
    /// spawn's that asks for one, in the same step as the child.
    fn open_pidfd(&mut self, pid: Pid) -> Result<Fd, Errno> {
        match self.procs.get(&pid) {
            Some(proc) => {
                let seq = proc.seq;
                self.alloc_fd(FdKind::PidFd { pid, seq }, true)
            }
            None => Err(Errno::ESRCH),
        }
    }

    pub(crate) fn pidfd_open(&mut self, tid: Tid, pid: Pid) -> Attempt<Result<Fd, Errno>> {
        let result = if self.config.faults.pidfd_enosys {
            self.mark("pidfd_enosys");
            Err(Errno::ENOSYS)
        } else if self.config.faults.pidfd_eperm {
            self.mark("pidfd_eperm");
            Err(Errno::EPERM)
        } else if self.config.faults.pidfd_einval {
            self.mark("pidfd_einval");
            Err(Errno::EINVAL)
        } else if pid.0 <= 0 {
            Err(Errno::EINVAL)
        } else {
            self.open_pidfd(pid)
        };
        self.log(tid, format_args!("pidfd_open({pid}) = {result:?}"));
        Attempt::Done(result)
    }

    pub(crate) fn pidfd_send_signal(
        &mut self,
        tid: Tid,
        pidfd: Fd,
        signal: Signal,
    ) -> Attempt<Result<(), Errno>> {
        let result = match self.entry(pidfd) {
            Err(e) => Err(e),
            Ok(FdEntry {
                kind: FdKind::PidFd { pid, seq },
                ..
            }) => {
                if !signal.is_valid() {
                    Err(Errno::EINVAL)
                } else {
                    let landed_on = match self.procs.get(&pid) {
                        Some(proc) if proc.seq == seq => Some(proc.serial()),
                        // Reaped: the pidfd never reaches a later process with its pid.
                        _ => None,
                    };
                    self.record_signal(tid, signal, pid, SignalVia::Pidfd, landed_on);
                    match landed_on {
                        Some(_) => {
                            self.signal_child(pid, signal);
                            Ok(())
                        }
                        None => Err(Errno::ESRCH),
                    }
                }
            }
            Ok(_) => Err(Errno::EBADF),
        };
        self.log(
            tid,
            format_args!("pidfd_send_signal({pidfd}, {}) = {result:?}", signal.0),
        );
        Attempt::Done(result)
    }

    /// Records in the ledger that `tid` sent `signal` to `pid`.
    fn record_signal(
        &mut self,
        tid: Tid,
        signal: Signal,
        pid: Pid,
        via: SignalVia,
        landed_on: Option<u64>,
    ) {
        let sent = SignalSent {
            signal: signal.0,
            pid,
            by: self.thread_name(tid),
            via,
            at: self.time,
            step: self.steps,
            landed_on,
        };
        self.ledger.signals.push(sent);
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
}
