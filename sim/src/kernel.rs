//! `SimKernel`: the `Kernel` seam over the model, through the driver.

use std::any::Any;
use std::ffi::OsStr;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use loopwatch::kernel::{
    Clock, Disposition, Errno, Event, Fd, Fds, Interest, JobStatus, Kernel, Monitor, Pid, Poll,
    PollWaker, Poller, ProcessLocals, Processes, Signal, Signals, SpawnRequest, Spawned, ThreadId,
    Threads, Token, WaitMode, WaitStatus, WaitTarget,
};

use crate::calls::Call;
use crate::driver::SimRun;
use crate::model::{Attempt, ForeignHandler, MAIN_THREAD, ModelDamage};
use crate::program::{ChildPlan, Invocation};

/// The simulated kernel of one simulated process. A cheap handle: clones share the
/// process. Valid inside the [`Simulation`](crate::Simulation) that made it.
#[derive(Clone)]
pub struct SimKernel {
    pub(crate) shared: Arc<SimRun>,
}

impl fmt::Debug for SimKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        write!(f, "SimKernel(pid {}, t={:?})", state.config.pid, state.time)
    }
}

impl SimKernel {
    /// Makes `program` run `plan`, whatever its arguments: a request whose `program` is
    /// exactly this string, or a simulated shell's command or `exec` naming it (see
    /// [`program`](crate::program)). Replaces a built-in program of that name and an
    /// earlier registration.
    ///
    /// ```
    /// use loopwatch::kernel::{Processes, SpawnRequest};
    /// use loopwatch_sim::{ChildPlan, Simulation, testing};
    ///
    /// let report = Simulation::new(0).run(|k| {
    ///     k.register_program("server", ChildPlan::Forever);
    ///     let child = k.spawn(&SpawnRequest::new("server", ["--port", "0"])).unwrap();
    ///     k.kill(child.pid, Some(loopwatch::kernel::Signal::SIGTERM)).unwrap();
    ///     assert_eq!(testing::reap(&k, child.pid), -15);
    /// });
    /// report.assert_completed("register_program");
    /// ```
    pub fn register_program(&self, program: &str, plan: ChildPlan) {
        self.shared
            .lock()
            .programs()
            .register(program.to_string(), plan);
    }

    /// Makes `program` run the plan `behaviour` computes from each [`Invocation`]: its
    /// arguments, final environment and working directory. Matched as for
    /// [`SimKernel::register_program`].
    ///
    /// `behaviour` is called once per spawn of `program` (or per shell command naming
    /// it), inside the spawn on the simulation's thread, so it must be deterministic
    /// (compute from the invocation, not from clocks or the host's state). It must not
    /// call the kernel: the simulator's state is locked meanwhile, and a call panics.
    ///
    /// ```
    /// use loopwatch::kernel::{Fds, Processes, SpawnRequest, Stdio};
    /// use loopwatch_sim::{ChildPlan, Simulation, testing};
    ///
    /// let report = Simulation::new(0).run(|k| {
    ///     // `check FILE` fails (exit 1) for the file named "missing"; with LOUD=1 in
    ///     // its environment it first says which file it checked.
    ///     k.register_program_fn("check", |invocation| {
    ///         let file = invocation.arg(0).unwrap_or_default();
    ///         let said = match invocation.var("LOUD") {
    ///             Some("1") => format!("checked {file}\n"),
    ///             _ => String::new(),
    ///         };
    ///         ChildPlan::exit_with_output(u8::from(file == "missing"), said, "")
    ///     });
    ///     let pid = testing::spawn_sh(&k, "check present; check missing");
    ///     assert_eq!(testing::reap(&k, pid), 1);
    ///
    ///     let mut request = SpawnRequest::new("check", ["present"]);
    ///     request.env.push(("LOUD".into(), "1".into()));
    ///     request.stdout = Stdio::Pipe;
    ///     let child = k.spawn(&request).unwrap();
    ///     let out = child.stdout.unwrap();
    ///     let (mut said, mut buf) = (Vec::new(), [0u8; 64]);
    ///     loop {
    ///         match k.read(out, &mut buf).unwrap() {
    ///             0 => break,
    ///             n => said.extend_from_slice(&buf[..n]),
    ///         }
    ///     }
    ///     k.close(out).unwrap();
    ///     assert_eq!(said, b"checked present\n");
    ///     assert_eq!(testing::reap(&k, child.pid), 0);
    /// });
    /// report.assert_completed("register_program_fn");
    /// ```
    pub fn register_program_fn(
        &self,
        program: &str,
        behaviour: impl Fn(&Invocation) -> ChildPlan + Send + Sync + 'static,
    ) {
        self.shared
            .lock()
            .programs()
            .register_fn(program.to_string(), Arc::new(behaviour));
    }

    /// Sets variable `name` of the simulated process's environment, which its children
    /// inherit (unless a request asks for `env_clear`) and its simulated shells read.
    /// The environment starts empty, so that a simulation does not depend on the
    /// machine it runs on.
    pub fn set_env_var(&self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        self.shared.lock().programs().set_env_var(
            name.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        );
    }

    /// Removes variable `name` from the simulated process's environment.
    pub fn remove_env_var(&self, name: impl AsRef<OsStr>) {
        self.shared
            .lock()
            .programs()
            .set_env_var(name.as_ref().to_os_string(), None);
    }

    /// Installs a handler of foreign code for `signal`, as another library in the
    /// process would, and returns its disposition.
    pub fn install_foreign_handler(&self, signal: Signal, handler: ForeignHandler) -> Disposition {
        self.shared.syscall("install_foreign", |state, _| {
            state.changed = true;
            Attempt::Done(state.install_foreign(signal, handler))
        })
    }

    /// Ends running child `pid` now with `status` (its SIGCHLD is raised as for any
    /// exit), whatever its plan: lets a test script the exact moment and status of an
    /// exit. Returns `false` if `pid` is not a running child. Not a scheduling point.
    pub fn end_child(&self, pid: Pid, status: loopwatch::kernel::ExitStatus) -> bool {
        self.shared.lock().end_child(pid, status)
    }

    /// The serial (in the run's [`Ledger`](crate::Ledger)) of the child that holds `pid`
    /// now, running or zombie; `None` if no child does. A query of the model, not a
    /// kernel call nor a scheduling point, so code that just spawned a child can learn
    /// its serial.
    ///
    /// ```
    /// use loopwatch::kernel::Processes;
    /// use loopwatch_sim::{Simulation, testing};
    ///
    /// let report = Simulation::new(0).run(|k| {
    ///     let first = testing::spawn_sh(&k, "exit 0");
    ///     let second = testing::spawn_sh(&k, "exit 1");
    ///     assert_eq!(k.serial_of(second), Some(1));
    ///     testing::reap(&k, first);
    ///     assert_eq!(k.serial_of(first), None);
    ///     testing::reap(&k, second);
    /// });
    /// report.assert_completed("serial_of");
    /// ```
    pub fn serial_of(&self, pid: Pid) -> Option<u64> {
        self.shared.lock().serial_of(pid)
    }

    /// The serial of the latest child of `pid` that the calling thread spawned, even
    /// if it was reaped since and the pid given to another child: what code that just
    /// spawned a child (inside a library call that may have reaped it) needs to name
    /// it. A pure query, not a scheduling point.
    pub fn spawned_serial(&self, pid: Pid) -> Option<u64> {
        let state = self.shared.lock();
        let me = state.threads[&state.current].name.clone();
        state
            .ledger
            .by_pid(pid)
            .filter(|life| life.spawned_by == me)
            .map(|life| life.serial)
            .max()
    }

    /// `kill(pid, signal)` for the child of serial `serial`, if it still holds its
    /// pid (running or a zombie), else `ESRCH`: the check and the kill are one kernel
    /// call, so no other thread can reap the child and reuse its pid in between.
    /// What a test harness needs to signal exactly the child it means.
    pub fn kill_serial(&self, serial: u64, signal: Signal) -> Result<(), Errno> {
        self.shared.syscall("kill", |state, tid| {
            let pid = state.ledger.child(serial).map(|life| life.pid);
            match pid {
                Some(pid) if state.serial_of(pid) == Some(serial) => {
                    state.kill(tid, pid, Some(signal))
                }
                _ => Attempt::Done(Err(Errno::ESRCH)),
            }
        })
    }

    /// Breaks the model's state as `damage` says, so that the simulator's tests see
    /// its invariants caught; says whether it applied. Not a scheduling point.
    #[doc(hidden)]
    pub fn damage_model(&self, damage: ModelDamage) -> bool {
        self.shared.lock().damage(damage)
    }

    /// How many signals foreign handlers have received.
    pub fn foreign_deliveries(&self) -> u64 {
        self.shared.lock().foreign_deliveries
    }

    /// Running and zombie children of the process.
    pub fn children_left(&self) -> (usize, usize) {
        self.shared.lock().children_left()
    }

    /// Open fds other than 0, 1 and 2.
    pub fn open_fds(&self) -> usize {
        self.shared.lock().open_fds()
    }

    /// How many calls through the `Kernel` seam this simulated process has made since
    /// its run began, by kind: the seam method's name (`wait_pid`, `poll`, `spawn` …;
    /// a [`Monitor`]'s methods as `monitor_enter`, `monitor_exit`, `monitor_wait` and
    /// `monitor_notify_all`). Kinds never called are left out. Every call counts once,
    /// however long it blocks and however often it is retried inside the simulator;
    /// calls by every thread of the process count, and the simulator's own work
    /// (children, signal handlers, the trace) does not. Some kinds are not system
    /// calls on Linux (`now` is the vDSO, `current_thread` a thread-local), so this
    /// counts the seam's traffic, of which system calls are a part.
    ///
    /// The counts are deterministic for a seed, like the trace; take the difference
    /// of two snapshots to count one phase of a run. Counting takes no lock and is not
    /// a scheduling point.
    ///
    /// ```
    /// use loopwatch::kernel::{Fds, Processes, SpawnRequest, WaitMode};
    /// use loopwatch_sim::Simulation;
    ///
    /// let (counts, report) = Simulation::new(1).run_returning(|k| {
    ///     let child = k.spawn(&SpawnRequest::new("true", [] as [&str; 0])).unwrap();
    ///     k.wait_pid(child.pid, WaitMode::Block).unwrap();
    ///     let (read, write) = k.pipe().unwrap();
    ///     k.close(read).unwrap();
    ///     k.close(write).unwrap();
    ///     k.call_counts()
    /// });
    /// report.assert_completed("call_counts");
    /// let counts = counts.unwrap();
    /// assert_eq!(counts["spawn"], 1);
    /// assert_eq!(counts["wait_pid"], 1);
    /// assert_eq!(counts["pipe"], 1);
    /// assert_eq!(counts["close"], 2);
    /// assert_eq!(counts.len(), 4);
    /// ```
    pub fn call_counts(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.shared.calls.snapshot()
    }

    /// Writes `text` into the trace as a line of the calling simulated thread
    /// (`T<n> note <text>`), so a test can mark where its phases begin and end. Not a
    /// kernel call and not a scheduling point: the schedule and every other line stay
    /// as they were; only the trace's hash counts the extra line.
    ///
    /// ```
    /// use loopwatch_sim::Simulation;
    ///
    /// let report = Simulation::new(1).run(|k| k.note("phase one"));
    /// assert!(report.trace.lines().iter().any(|l| l.ends_with("T1 note phase one")));
    /// ```
    pub fn note(&self, text: &str) {
        let mut state = self.shared.lock();
        let tid = state.current;
        state.log(tid, format_args!("note {text}"));
    }
}

impl Clock for SimKernel {
    fn now(&self) -> Duration {
        self.shared.calls.count(Call::Now);
        self.shared.lock().time
    }

    fn sleep(&self, duration: Duration) {
        self.shared.calls.count(Call::Sleep);
        let deadline = self.shared.lock().time + duration;
        self.shared.syscall("sleep", |state, tid| {
            let step = state.sleep(deadline);
            if let Attempt::Done(()) = step {
                state.log(tid, format_args!("sleep({duration:?})"));
            }
            step
        });
    }
}

impl Fds for SimKernel {
    fn pipe(&self) -> Result<(Fd, Fd), Errno> {
        self.shared.calls.count(Call::Pipe);
        self.shared.syscall("pipe", |state, tid| state.pipe(tid))
    }

    fn read(&self, fd: Fd, buf: &mut [u8]) -> Result<usize, Errno> {
        self.shared.calls.count(Call::Read);
        let len = buf.len();
        let data = self
            .shared
            .syscall("read", |state, tid| state.read(tid, fd, len))?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    fn write(&self, fd: Fd, buf: &[u8]) -> Result<usize, Errno> {
        self.shared.calls.count(Call::Write);
        self.shared
            .syscall("write", |state, tid| state.write(tid, fd, buf))
    }

    fn close(&self, fd: Fd) -> Result<(), Errno> {
        self.shared.calls.count(Call::Close);
        self.shared
            .syscall("close", |state, tid| state.close(tid, fd))
    }

    fn set_nonblocking(&self, fd: Fd, nonblocking: bool) -> Result<(), Errno> {
        self.shared.calls.count(Call::SetNonblocking);
        self.shared.syscall("set_flag", |state, tid| {
            state.set_flag(tid, fd, Some(nonblocking), None)
        })
    }

    fn set_cloexec(&self, fd: Fd, cloexec: bool) -> Result<(), Errno> {
        self.shared.calls.count(Call::SetCloexec);
        self.shared.syscall("set_flag", |state, tid| {
            state.set_flag(tid, fd, None, Some(cloexec))
        })
    }
}

/// A simulated poller: a readiness view over the model, with its two fds.
pub struct SimPoller {
    shared: Arc<SimRun>,
    id: u64,
    epoll: Fd,
    event: Fd,
}

impl fmt::Debug for SimPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimPoller({})", self.id)
    }
}

impl Drop for SimPoller {
    fn drop(&mut self) {
        self.shared
            .lock()
            .drop_poller(self.id, self.epoll, self.event);
    }
}

/// The waker of a [`SimPoller`].
#[derive(Clone)]
pub struct SimWaker {
    shared: Arc<SimRun>,
    id: u64,
}

impl fmt::Debug for SimWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimWaker({})", self.id)
    }
}

impl Poll for SimKernel {
    type Poller = SimPoller;

    fn new_poller(&self) -> Result<SimPoller, Errno> {
        self.shared.calls.count(Call::NewPoller);
        let (id, epoll, event) = self
            .shared
            .syscall("new_poller", |state, tid| state.new_poller(tid))?;
        Ok(SimPoller {
            shared: self.shared.clone(),
            id,
            epoll,
            event,
        })
    }
}

impl Poller for SimPoller {
    type Waker = SimWaker;

    fn register(&self, fd: Fd, token: Token, interest: Interest) -> Result<(), Errno> {
        self.shared.calls.count(Call::Register);
        self.shared.syscall("poller_ctl", |state, tid| {
            state.poller_ctl(tid, self.id, fd, Some((token, interest)), true)
        })
    }

    fn reregister(&self, fd: Fd, token: Token, interest: Interest) -> Result<(), Errno> {
        self.shared.calls.count(Call::Reregister);
        self.shared.syscall("poller_ctl", |state, tid| {
            state.poller_ctl(tid, self.id, fd, Some((token, interest)), false)
        })
    }

    fn deregister(&self, fd: Fd) -> Result<(), Errno> {
        self.shared.calls.count(Call::Deregister);
        self.shared.syscall("poller_ctl", |state, tid| {
            state.poller_ctl(tid, self.id, fd, None, false)
        })
    }

    fn poll(&self, events: &mut Vec<Event>, timeout: Option<Duration>) -> Result<(), Errno> {
        self.shared.calls.count(Call::Poll);
        events.clear();
        let deadline = timeout.map(|t| self.shared.lock().time.saturating_add(t));
        let found = self
            .shared
            .syscall("poll", |state, tid| state.poll(tid, self.id, deadline))?;
        events.extend(found);
        Ok(())
    }

    fn waker(&self) -> SimWaker {
        SimWaker {
            shared: self.shared.clone(),
            id: self.id,
        }
    }
}

impl PollWaker for SimWaker {
    fn wake(&self) -> Result<(), Errno> {
        self.shared.calls.count(Call::Wake);
        self.shared
            .syscall("wake_poller", |state, tid| state.wake_poller(tid, self.id))
    }
}

impl Processes for SimKernel {
    fn spawn(&self, request: &SpawnRequest) -> Result<Spawned, Errno> {
        self.shared.calls.count(Call::Spawn);
        self.shared
            .syscall("spawn", |state, tid| state.spawn(tid, request))
    }

    fn wait_pid(&self, pid: Pid, mode: WaitMode) -> Result<WaitStatus, Errno> {
        self.shared.calls.count(Call::WaitPid);
        if pid.0 <= 0 {
            return Err(Errno::EINVAL);
        }
        self.shared.syscall("wait", |state, tid| {
            state.wait(tid, WaitTarget::Pid(pid), mode, true)
        })
    }

    fn wait_any(&self, mode: WaitMode) -> Result<WaitStatus, Errno> {
        self.shared.calls.count(Call::WaitAny);
        self.shared.syscall("wait", |state, tid| {
            state.wait(tid, WaitTarget::Any, mode, true)
        })
    }

    fn wait_peek(&self, target: WaitTarget, mode: WaitMode) -> Result<WaitStatus, Errno> {
        self.shared.calls.count(Call::WaitPeek);
        self.shared.syscall("wait", |state, tid| {
            if target == WaitTarget::Any && state.config.faults.wait_peek_einval {
                state.mark("wait_peek_einval");
                return Attempt::Done(Err(Errno::EINVAL));
            }
            state.wait(tid, target, mode, false)
        })
    }

    fn wait_pidfd(&self, pidfd: Fd, mode: WaitMode) -> Result<WaitStatus, Errno> {
        self.shared.calls.count(Call::WaitPidfd);
        self.shared.syscall("wait", |state, tid| {
            state.wait(tid, WaitTarget::Pidfd(pidfd), mode, true)
        })
    }

    fn wait_job_peek(&self, target: WaitTarget, mode: WaitMode) -> Result<JobStatus, Errno> {
        self.shared.calls.count(Call::WaitJobPeek);
        self.shared.syscall("wait", |state, tid| {
            state.wait_job(tid, target, mode, false)
        })
    }

    fn take_job(&self, target: WaitTarget) -> Result<JobStatus, Errno> {
        self.shared.calls.count(Call::TakeJob);
        self.shared.syscall("wait", |state, tid| {
            state.wait_job(tid, target, WaitMode::NoHang, true)
        })
    }

    fn kill(&self, pid: Pid, signal: Option<Signal>) -> Result<(), Errno> {
        self.shared.calls.count(Call::Kill);
        self.shared
            .syscall("kill", |state, tid| state.kill(tid, pid, signal))
    }

    fn pidfd_open(&self, pid: Pid) -> Result<Fd, Errno> {
        self.shared.calls.count(Call::PidfdOpen);
        self.shared
            .syscall("pidfd_open", |state, tid| state.pidfd_open(tid, pid))
    }

    fn pidfd_send_signal(&self, pidfd: Fd, signal: Signal) -> Result<(), Errno> {
        self.shared.calls.count(Call::PidfdSendSignal);
        self.shared.syscall("pidfd_send_signal", |state, tid| {
            state.pidfd_send_signal(tid, pidfd, signal)
        })
    }

    fn getpid(&self) -> Pid {
        self.shared.calls.count(Call::Getpid);
        Pid(self.shared.lock().config.pid)
    }
}

impl Signals for SimKernel {
    fn set_disposition(
        &self,
        signal: Signal,
        disposition: Disposition,
    ) -> Result<Disposition, Errno> {
        self.shared.calls.count(Call::SetDisposition);
        self.shared.syscall("set_disposition", |state, tid| {
            state.set_disposition(tid, signal, disposition)
        })
    }

    fn disposition(&self, signal: Signal) -> Result<Disposition, Errno> {
        self.shared.calls.count(Call::Disposition);
        self.shared
            .syscall("disposition", |state, tid| state.disposition(tid, signal))
    }

    fn chain_foreign(&self, signal: Signal, foreign: Option<u64>) -> Result<Option<u64>, Errno> {
        self.shared.calls.count(Call::ChainForeign);
        self.shared.syscall("chain_foreign", |state, tid| {
            state.chain_foreign(tid, signal, foreign)
        })
    }

    fn set_wakeup_fd(&self, fd: Option<Fd>) -> Result<Option<Fd>, Errno> {
        self.shared.calls.count(Call::SetWakeupFd);
        self.shared
            .syscall("set_wakeup_fd", |state, tid| state.set_wakeup_fd(tid, fd))
    }

    fn raise(&self, signal: Signal) -> Result<(), Errno> {
        self.shared.calls.count(Call::Raise);
        self.shared
            .syscall("raise", |state, tid| state.raise(tid, signal))
    }

    fn block_signal(&self, signal: Signal) -> Result<bool, Errno> {
        self.shared.calls.count(Call::BlockSignal);
        self.shared
            .syscall("mask", |state, tid| state.mask(tid, signal, true))
    }

    fn unblock_signal(&self, signal: Signal) -> Result<bool, Errno> {
        self.shared.calls.count(Call::UnblockSignal);
        self.shared
            .syscall("mask", |state, tid| state.mask(tid, signal, false))
    }
}

/// A simulated thread to join.
#[derive(Debug)]
pub struct SimJoinHandle(u64);

/// A [`Monitor`] in the model: waiting parks the simulated thread.
pub struct SimMonitor {
    shared: Arc<SimRun>,
    id: u64,
}

impl fmt::Debug for SimMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimMonitor({})", self.id)
    }
}

impl Drop for SimMonitor {
    fn drop(&mut self) {
        self.shared.lock().drop_monitor(self.id);
    }
}

impl SimMonitor {
    fn take(&self) {
        self.shared.syscall("monitor_enter", |state, tid| {
            state.monitor_enter(tid, self.id)
        });
    }
}

impl Monitor for SimMonitor {
    fn enter(&self) {
        self.shared.calls.count(Call::MonitorEnter);
        self.take();
    }

    fn exit(&self) {
        self.shared.calls.count(Call::MonitorExit);
        self.shared.syscall("monitor_exit", |state, tid| {
            state.monitor_exit(tid, self.id)
        });
    }

    fn wait(&self, timeout: Option<Duration>) -> bool {
        self.shared.calls.count(Call::MonitorWait);
        let (generation, deadline) = {
            let mut state = self.shared.lock();
            let tid = state.current;
            let deadline = timeout.map(|t| state.time.saturating_add(t));
            (state.monitor_release(tid, self.id), deadline)
        };
        let notified = self.shared.syscall("monitor_await", |state, _| {
            state.monitor_await(self.id, generation, deadline)
        });
        // Taking the monitor back is part of this call, not a call of its own.
        self.take();
        notified
    }

    fn notify_all(&self) {
        self.shared.calls.count(Call::MonitorNotifyAll);
        self.shared
            .syscall("monitor_notify", |state, _| state.monitor_notify(self.id));
    }
}

impl Threads for SimKernel {
    type JoinHandle = SimJoinHandle;
    type Monitor = SimMonitor;

    fn spawn_thread(
        &self,
        name: &str,
        body: Box<dyn FnOnce() + Send + 'static>,
    ) -> Result<SimJoinHandle, Errno> {
        self.shared.calls.count(Call::SpawnThread);
        Ok(SimJoinHandle(self.shared.spawn_thread(name, body)))
    }

    fn join_thread(&self, handle: SimJoinHandle) -> Result<(), Box<dyn Any + Send>> {
        self.shared.calls.count(Call::JoinThread);
        self.shared.join_thread(handle.0)
    }

    fn current_thread(&self) -> ThreadId {
        self.shared.calls.count(Call::CurrentThread);
        ThreadId(self.shared.lock().current)
    }

    fn current_thread_name(&self) -> String {
        self.shared.calls.count(Call::CurrentThreadName);
        let state = self.shared.lock();
        state.threads[&state.current].name.clone()
    }

    fn is_main_thread(&self) -> bool {
        self.shared.calls.count(Call::IsMainThread);
        self.shared.lock().current == MAIN_THREAD
    }

    fn new_monitor(&self) -> SimMonitor {
        self.shared.calls.count(Call::NewMonitor);
        let id = self.shared.lock().new_monitor();
        SimMonitor {
            shared: self.shared.clone(),
            id,
        }
    }
}

impl Kernel for SimKernel {
    fn process_locals(&self) -> &ProcessLocals {
        &self.shared.locals
    }
}

impl Aborted for u64 {
    fn aborted() -> Self {
        0
    }
}

impl Aborted for Disposition {
    fn aborted() -> Self {
        Disposition::Default
    }
}

use crate::driver::Aborted;
