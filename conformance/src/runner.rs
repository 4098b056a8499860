//! Runs a scenario on a loopwatch kernel and records the normalised trace.

use std::collections::{BTreeMap, BTreeSet};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use loopwatch::kernel::{
    Disposition, Kernel, Pid, Signal, SpawnRequest, WaitMode, WaitStatus, WaitTarget,
};
use loopwatch::watcher::{MultiLoopChildWatcher, fork_window};
use loopwatch::{
    AutoChildWatcher, Error, EventLoop, FastChildWatcher, PidfdChildWatcher, Process,
    SafeChildWatcher, ThreadedChildWatcher, WaitidChildWatcher, WatcherRef, policy,
};

use crate::scenario::{Fate, Scenario, SignalMethod, Step, WatcherName};

/// How long `wait` waits by default.
const WAIT_MS: u64 = 5000;
/// Teardown: how long to await the callback a registered child must get.
const TEARDOWN_WAIT_MS: u64 = 1000;
/// Teardown: how long to await a callback only some watchers give (the handler was
/// removed, or the child is already reaped).
const TEARDOWN_GRACE_MS: u64 = 300;
/// Teardown: how long a SIGKILLed child may take to stop running.
const DEATH_WAIT_MS: u64 = 3000;
/// Teardown: how long the loop runs before the zombies are listed.
const SETTLE_MS: u64 = 50;
/// As [`SETTLE_MS`], on the simulator: past the lag fault's longest delay
/// ([`crate::explore::LAG`]), so that a thread woken late has run.
const SIM_SETTLE_MS: u64 = 250;

/// What callbacks and steps share. A plain `std` lock: it is never held across a
/// kernel call.
#[allow(clippy::disallowed_types, reason = "never held across a kernel call")]
type Shared = Arc<std::sync::Mutex<Record>>;

#[derive(Default)]
struct Record {
    trace: Vec<String>,
    exited: BTreeMap<String, i32>,
    /// Whoever awaits a callback: the runner's loop, a `thread_start` thread's loop.
    wakers: Vec<Waker>,
    events: Vec<Event>,
    /// Pids learnt on other threads (`foreign_spawn`, `thread_start`).
    pids: BTreeMap<String, Pid>,
    /// Children whose spawn on another thread was tried, whatever came of it.
    tried: BTreeSet<String>,
    /// The simulator's serial of each child, from its spawn (`None`: reaped before
    /// it could be learnt).
    serials: BTreeMap<String, Option<u64>>,
}

/// What a run did that its trace does not say, for the invariant checker
/// ([`crate::invariants`]): which child is which, what was registered and removed
/// with which watcher, what the watcher was told, and whom the runner meant to signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A child was spawned.
    Spawned {
        /// Its name.
        child: String,
        /// Its pid.
        pid: Pid,
        /// The simulator's serial of the child (`None` on the real OS).
        serial: Option<u64>,
        /// Who spawned it.
        by: Spawner,
    },
    /// `add_child_handler` of the child was called with watcher number `watcher`
    /// (the first watcher is 0; each `replace_watcher` makes the next); recorded
    /// before the call, since a watcher may report the child from inside it (a
    /// [`Event::RegisterFailed`] follows if it fails). For a `subprocess` child,
    /// recorded once the process is started (its report goes to `process.wait()`).
    Registered {
        /// The child.
        child: String,
        /// Which watcher.
        watcher: u32,
        /// Whether it was registered in the fork window it was spawned in (`start`,
        /// `subprocess` …), rather than later (`register`).
        with_spawn: bool,
    },
    /// The `add_child_handler` recorded just before failed.
    RegisterFailed {
        /// The child.
        child: String,
    },
    /// `remove_child_handler` of the child was called.
    Removed {
        /// The child.
        child: String,
        /// What `remove_child_handler` answered: whether a handler was removed.
        removed: bool,
        /// The watcher's number.
        watcher: u32,
    },
    /// The child's callback (or, for a `subprocess` child, `process.wait()`) gave
    /// `code`.
    Reported {
        /// The child.
        child: String,
        /// The returncode.
        code: i32,
        /// When, on the kernel's clock.
        at: Duration,
    },
    /// The watcher was attached to the runner's loop.
    Attached,
    /// The watcher was detached (`attach_loop(None)`).
    Detached,
    /// Watcher number `watcher` was closed (by `close_watcher`, or replaced).
    WatcherClosed {
        /// Which watcher.
        watcher: u32,
    },
    /// The loop of a `thread_start` child's thread was closed.
    ThreadLoopClosed {
        /// The child.
        child: String,
    },
    /// The runner (a `kill` step, a `process_signal`, the teardown) sent `signal` to the
    /// child, meaning that child.
    Signalled {
        /// The child meant.
        child: String,
        /// The signal.
        signal: i32,
    },
    /// The teardown found the child a zombie, once the watcher had had its chance to
    /// reap it, and reaped it.
    Zombie {
        /// The child.
        child: String,
        /// The simulator's serial of the child (`None` on the real OS).
        serial: Option<u64>,
    },
    /// Code other than the watcher's reaped the child: a `foreign_wait` or a
    /// `foreign_reap_any`.
    ReapedByRunner {
        /// The child's name, when the runner knows it.
        child: Option<String>,
        /// Its pid.
        pid: Pid,
        /// The simulator's serial of the child (`None` on the real OS).
        serial: Option<u64>,
    },
}

/// Who spawned a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spawner {
    /// The runner, for the watcher (`start`, `spawn`, `thread_start`).
    Runner,
    /// loopwatch's subprocess API (`subprocess`).
    Subprocess,
    /// A foreign thread (`foreign_spawn`).
    Foreign,
    /// A thread of the runner's with a loop of its own (`thread_start`).
    Thread,
}

/// A run's trace and its [`Event`]s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The normalised trace.
    pub trace: Vec<String>,
    /// What the checker needs.
    pub events: Vec<Event>,
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Record> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn event(shared: &Shared, event: Event) {
    lock(shared).events.push(event);
}

/// The simulator's serial of the child that holds `pid`; `None` on the real OS.
fn serial_of<K: Kernel>(kernel: &K, pid: Pid) -> Option<u64> {
    let kernel: &dyn std::any::Any = kernel;
    kernel
        .downcast_ref::<loopwatch_sim::SimKernel>()
        .and_then(|sim| sim.serial_of(pid))
}

/// The simulator's serial of the latest child of `pid` the calling thread spawned,
/// reaped or not (a `subprocess` child may be reaped, and its pid reused, before
/// `subprocess_exec` returns); `None` on the real OS.
fn spawned_serial<K: Kernel>(kernel: &K, pid: Pid) -> Option<u64> {
    let kernel: &dyn std::any::Any = kernel;
    kernel
        .downcast_ref::<loopwatch_sim::SimKernel>()
        .and_then(|sim| sim.spawned_serial(pid))
}

/// Whether `kernel` is the simulator's.
fn is_sim<K: Kernel>(kernel: &K) -> bool {
    let kernel: &dyn std::any::Any = kernel;
    kernel.is::<loopwatch_sim::SimKernel>()
}

/// Records `child`'s exit `code`, reported at `at`, and wakes whoever awaits a
/// callback.
fn report(shared: &Shared, child: &str, code: i32, at: Duration) {
    let wakers = {
        let mut record = lock(shared);
        record.trace.push(format!("exit {child} {code}"));
        record.exited.insert(child.to_string(), code);
        record.events.push(Event::Reported {
            child: child.to_string(),
            code,
            at,
        });
        std::mem::take(&mut record.wakers)
    };
    for waker in wakers {
        waker.wake();
    }
}

/// The callback of `child`.
fn callback<K: Kernel>(
    kernel: &K,
    shared: &Shared,
    child: &str,
) -> loopwatch::watcher::ChildCallback {
    let (kernel, shared, child) = (kernel.clone(), shared.clone(), child.to_string());
    Box::new(move |_pid, code| report(&shared, &child, code, kernel.now()))
}

/// The request that runs `fate`.
fn request(fate: &Fate) -> SpawnRequest {
    let mut request = match fate.script() {
        Some(script) => SpawnRequest::new("/bin/sh", ["-c", script.as_str()]),
        None => SpawnRequest::new("sleep", ["1000"]),
    };
    // A scenario's child dies of the signals it names whatever the runner's own
    // process ignores (under `nohup`, as a background job): as the simulator's
    // children and CPython's runner, it starts at the defaults.
    request.restore_signals = true;
    request
}

/// The Python exception class name of an error, as CPython's runner prints it
/// (`type(exc).__name__`).
pub fn python_class(error: &Error) -> &'static str {
    error.kind().python_name()
}

/// A new watcher of kind `name` over `kernel`.
pub fn make_watcher<K: Kernel>(name: WatcherName, kernel: &K) -> WatcherRef<K> {
    let kernel = kernel.clone();
    match name {
        WatcherName::Safe => Arc::new(SafeChildWatcher::with_kernel(kernel)),
        WatcherName::Fast => Arc::new(FastChildWatcher::with_kernel(kernel)),
        WatcherName::MultiLoop => Arc::new(MultiLoopChildWatcher::with_kernel(kernel)),
        WatcherName::Threaded => Arc::new(ThreadedChildWatcher::with_kernel(kernel)),
        WatcherName::Pidfd => Arc::new(PidfdChildWatcher::with_kernel(kernel)),
        WatcherName::Waitid => Arc::new(WaitidChildWatcher::with_kernel(kernel)),
        WatcherName::Auto => Arc::new(AutoChildWatcher::with_kernel(kernel)),
    }
}

/// A one-shot timer on the loop: `fired` once its callback ran. The callback decides,
/// not a clock comparison: the loop may run a timer up to its clock resolution early,
/// as asyncio's does.
struct Timer {
    fired: Arc<std::sync::atomic::AtomicBool>,
}

impl Timer {
    fn start<K: Kernel>(event_loop: &EventLoop<K>, ms: u64, waker: Waker) -> Option<Timer> {
        let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = fired.clone();
        event_loop
            .call_later(ms as f64 / 1000.0, move || {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                waker.wake();
            })
            .ok()
            .map(|_| Timer { fired })
    }

    fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Awaits a timer of `ms` on `event_loop`.
async fn sleep<K: Kernel>(event_loop: &EventLoop<K>, ms: u64) {
    let mut timer: Option<Timer> = None;
    poll_fn(|cx| match &timer {
        Some(timer) if timer.fired() => Poll::Ready(()),
        Some(_) => Poll::Pending,
        None => match Timer::start(event_loop, ms, cx.waker().clone()) {
            Some(started) => {
                timer = Some(started);
                Poll::Pending
            }
            // A closed loop cannot time anything: give up at once.
            None => Poll::Ready(()),
        },
    })
    .await;
}

/// Awaits `child`'s callback; `false` on timeout.
async fn wait_exit<K: Kernel>(
    event_loop: &EventLoop<K>,
    shared: &Shared,
    child: &str,
    ms: u64,
) -> bool {
    let mut timer: Option<Timer> = None;
    poll_fn(|cx| {
        let mut record = lock(shared);
        if record.exited.contains_key(child) {
            return Poll::Ready(true);
        }
        if timer.as_ref().is_some_and(Timer::fired) {
            return Poll::Ready(false);
        }
        if !record.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            record.wakers.push(cx.waker().clone());
        }
        drop(record);
        if timer.is_none() {
            timer = Timer::start(event_loop, ms, cx.waker().clone());
            if timer.is_none() {
                return Poll::Ready(false);
            }
        }
        Poll::Pending
    })
    .await
}

/// A child as the kernel sees it now, without reaping it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChildState {
    Running,
    Zombie,
    /// Reaped (by a watcher, foreign code or this runner).
    Gone,
}

/// The steps' state.
struct Run<'m, K: Kernel> {
    kernel: K,
    event_loop: EventLoop<K>,
    watcher: WatcherRef<K>,
    /// The watcher's number: 0, then one more for each `replace_watcher`.
    generation: u32,
    make: &'m dyn Fn(&K) -> WatcherRef<K>,
    shared: Shared,
    pids: BTreeMap<String, Pid>,
    /// Children in creation order.
    order: Vec<String>,
    registered: BTreeSet<String>,
    /// Children whose handler was removed after they were registered.
    removed: BTreeSet<String>,
    /// Children this runner reaped itself (`foreign_wait`, teardown).
    reaped: BTreeSet<String>,
    /// Children started with `subprocess`.
    processes: BTreeMap<String, Process<K>>,
    /// The threads of `foreign_spawn` and `thread_start`, by child.
    threads: Vec<(String, K::JoinHandle)>,
}

impl<K: Kernel> Run<'_, K> {
    fn note(&self, line: String) {
        lock(&self.shared).trace.push(line);
    }

    fn event(&self, event: Event) {
        self::event(&self.shared, event);
    }

    fn error(&self, op: &str, child: &str, error: &Error) {
        self.note(format!("error {op} {child} {}", python_class(error)));
    }

    /// The child's pid, learnt here or on another thread.
    fn known_pid(&self, child: &str) -> Option<Pid> {
        self.pids
            .get(child)
            .copied()
            .or_else(|| lock(&self.shared).pids.get(child).copied())
    }

    /// The child's pid (learnt here or on another thread), or
    /// `error <op> <child> NoChild` when it has none.
    fn pid(&self, op: &str, child: &str) -> Option<Pid> {
        let pid = self.known_pid(child);
        if pid.is_none() {
            self.note(format!("error {op} {child} NoChild"));
        }
        pid
    }

    /// `child`'s state, by its `pid`. A pid that another child holds now (the child
    /// was reaped and its pid reused, which the simulator can tell) is `Gone`.
    fn state(&self, child: &str, pid: Pid) -> ChildState {
        if self.reused(child, pid) {
            return ChildState::Gone;
        }
        match self
            .kernel
            .wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang)
        {
            Ok(WaitStatus::StillAlive) => ChildState::Running,
            Ok(WaitStatus::Terminated(..)) => ChildState::Zombie,
            Err(_) => ChildState::Gone,
        }
    }

    /// Whether `pid` names another child than `child` now (on the simulator: `child`
    /// was reaped and its pid given to a new child). The runner never signals, registers or
    /// waits for a pid it does not mean.
    fn reused(&self, child: &str, pid: Pid) -> bool {
        if !is_sim(&self.kernel) {
            return false;
        }
        let meant = lock(&self.shared).serials.get(child).copied();
        let now = serial_of(&self.kernel, pid);
        match meant {
            // Reaped before the runner could learn its serial: any holder is another.
            Some(None) => now.is_some(),
            Some(Some(meant)) => now.is_some_and(|now| now != meant),
            None => false,
        }
    }

    /// Sends `signal` to `child`: on the simulator, by its serial, so that the check
    /// that it still holds `pid` and the kill are one step (another thread may reap
    /// it and reuse the pid in between two); by pid on the real OS.
    fn signal_child(
        &self,
        child: &str,
        pid: Pid,
        signal: Signal,
    ) -> Result<(), loopwatch::kernel::Errno> {
        let serial = lock(&self.shared).serials.get(child).copied();
        let kernel: &dyn std::any::Any = &self.kernel;
        match (kernel.downcast_ref::<loopwatch_sim::SimKernel>(), serial) {
            (Some(sim), Some(Some(serial))) => sim.kill_serial(serial, signal),
            (Some(_), Some(None)) => Err(loopwatch::kernel::Errno::ESRCH),
            _ => self.kernel.kill(pid, Some(signal)),
        }
    }

    /// The child's pid for `op`, unless it names another child now (then
    /// `error <op> <child> PidReused`).
    fn own_pid(&self, op: &str, child: &str) -> Option<Pid> {
        let pid = self.pid(op, child)?;
        if self.reused(child, pid) {
            self.note(format!("error {op} {child} PidReused"));
            return None;
        }
        Some(pid)
    }

    fn spawned(&mut self, child: &str, pid: Pid, by: Spawner) {
        let serial = spawned_serial(&self.kernel, pid);
        if is_sim(&self.kernel) {
            lock(&self.shared).serials.insert(child.to_string(), serial);
        }
        self.pids.insert(child.to_string(), pid);
        self.order.push(child.to_string());
        self.event(Event::Spawned {
            child: child.to_string(),
            pid,
            serial,
            by,
        });
    }

    fn spawn(&mut self, child: &str, fate: &Fate) -> Option<Pid> {
        match self.kernel.spawn(&request(fate)) {
            Ok(spawned) => {
                self.spawned(child, spawned.pid, Spawner::Runner);
                Some(spawned.pid)
            }
            Err(errno) => {
                self.error("spawn", child, &errno.into());
                None
            }
        }
    }

    fn register(&mut self, op: &str, child: &str, pid: Pid) {
        let callback = callback(&self.kernel, &self.shared, child);
        self.register_callback(op, child, pid, callback);
    }

    fn register_callback(
        &mut self,
        op: &str,
        child: &str,
        pid: Pid,
        callback: loopwatch::watcher::ChildCallback,
    ) {
        // Recorded before the call: a watcher may report the child from inside it.
        self.event(Event::Registered {
            child: child.to_string(),
            watcher: self.generation,
            with_spawn: op != "register",
        });
        match self.watcher.add_child_handler(pid, callback) {
            Ok(()) => {
                self.registered.insert(child.to_string());
                self.removed.remove(child);
            }
            Err(error) => {
                self.event(Event::RegisterFailed {
                    child: child.to_string(),
                });
                self.error(op, child, &error);
            }
        }
    }

    /// Runs a watcher call that takes no child; an error is `error <op> - <Kind>`.
    fn watcher_op(&self, op: &str, call: impl FnOnce(&WatcherRef<K>) -> Result<(), Error>) -> bool {
        match call(&self.watcher) {
            Ok(()) => true,
            Err(error) => {
                self.error(op, "-", &error);
                false
            }
        }
    }

    /// Sends `signal` to `child` by pid, unless the child is already reaped.
    fn kill(&self, op: &str, child: &str, pid: Pid, signal: Signal) {
        // A reaped child's pid may belong to a stranger by now: not signalled.
        if self.state(child, pid) == ChildState::Gone {
            self.error(op, child, &loopwatch::kernel::Errno::ESRCH.into());
            return;
        }
        self.event(Event::Signalled {
            child: child.to_string(),
            signal: signal.0,
        });
        if let Err(errno) = self.signal_child(child, pid, signal) {
            self.error(op, child, &errno.into());
        }
    }

    async fn step(&mut self, step: &Step) {
        match step {
            Step::Start { child, fate } => {
                let watcher = self.watcher.clone();
                let _window = fork_window(&*watcher);
                if let Some(pid) = self.spawn(child, fate) {
                    self.register("start", child, pid);
                }
            }
            Step::Spawn { child, fate } => {
                self.spawn(child, fate);
            }
            Step::StartPanicking { child, fate } => {
                let watcher = self.watcher.clone();
                let _window = fork_window(&*watcher);
                if let Some(pid) = self.spawn(child, fate) {
                    let recorded = callback(&self.kernel, &self.shared, child);
                    let panicking: loopwatch::watcher::ChildCallback =
                        Box::new(move |pid, code| {
                            recorded(pid, code);
                            // Not `panic!`: the panic hook would print every one.
                            std::panic::resume_unwind(Box::new("the callback panics, on purpose"));
                        });
                    // A watcher that reports from inside `add_child_handler` lets the
                    // callback's panic out of it, as CPython raises (Safe, Fast).
                    let registered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.register_callback("start_panicking", child, pid, panicking);
                    }));
                    if registered.is_err() {
                        self.note(format!("error start_panicking {child} Panic"));
                    }
                }
            }
            Step::ForkHolder { child, fate } => {
                let mut request = request(fate);
                if let Ok(Disposition::Notify(fd)) = self.kernel.disposition(Signal::SIGCHLD) {
                    request.stdout = loopwatch::kernel::Stdio::Fd(fd);
                }
                match self.kernel.spawn(&request) {
                    Ok(spawned) => self.spawned(child, spawned.pid, Spawner::Runner),
                    Err(errno) => self.error("fork_holder", child, &errno.into()),
                }
            }
            Step::Register { child } => {
                let Some(pid) = self.own_pid("register", child) else {
                    return;
                };
                let watcher = self.watcher.clone();
                let _window = fork_window(&*watcher);
                self.register("register", child, pid);
            }
            Step::Remove { child } => {
                let Some(pid) = self.own_pid("remove", child) else {
                    return;
                };
                let removed = self.watcher.remove_child_handler(pid);
                if self.registered.contains(child) {
                    self.removed.insert(child.clone());
                }
                self.event(Event::Removed {
                    child: child.clone(),
                    removed,
                    watcher: self.generation,
                });
                self.note(format!("removed {child} {removed}"));
            }
            Step::Wait { child, timeout_ms } => {
                let ms = timeout_ms.unwrap_or(WAIT_MS);
                let waited = match self.processes.get(child) {
                    Some(process) => {
                        wait_process(&self.event_loop, &self.shared, child, process, ms).await
                    }
                    None => wait_exit(&self.event_loop, &self.shared, child, ms).await,
                };
                if !waited {
                    self.note(format!("timeout {child}"));
                }
            }
            Step::Sleep { ms } => sleep(&self.event_loop, *ms).await,
            Step::Kill { child, signal } => {
                if let Some(pid) = self.own_pid("kill", child) {
                    self.kill("kill", child, pid, Signal(*signal));
                }
            }
            Step::ForeignWait { child } => {
                let Some(pid) = self.own_pid("foreign_wait", child) else {
                    return;
                };
                let serial = serial_of(&self.kernel, pid);
                let line = loop {
                    match self.kernel.wait_pid(pid, WaitMode::Block) {
                        Ok(WaitStatus::Terminated(_, status)) => {
                            self.reaped.insert(child.clone());
                            self.event(Event::ReapedByRunner {
                                child: Some(child.clone()),
                                pid,
                                serial,
                            });
                            break format!("foreign {child} {}", status.returncode());
                        }
                        Err(loopwatch::kernel::Errno::EINTR) => continue,
                        Err(loopwatch::kernel::Errno::ECHILD) => {
                            break format!("foreign {child} ECHILD");
                        }
                        other => break format!("foreign {child} {other:?}"),
                    }
                };
                self.note(line);
            }
            Step::Active => {
                let active = self.watcher.is_active();
                self.note(format!("active {active}"));
            }
            Step::Attach => {
                let event_loop = self.event_loop.clone();
                if self.watcher_op("attach", |w| w.attach_loop(Some(event_loop))) {
                    self.event(Event::Attached);
                }
            }
            Step::Detach => {
                if self.watcher_op("detach", |w| w.attach_loop(None)) {
                    self.event(Event::Detached);
                }
            }
            Step::CloseWatcher => {
                self.watcher_op("close_watcher", |w| w.close());
                self.event(Event::WatcherClosed {
                    watcher: self.generation,
                });
            }
            Step::ReplaceWatcher => self.replace_watcher(),
            Step::LoopCycle => self.loop_cycle(),
            // Applied before the set-up (see `execute_recorded`).
            Step::IgnoreSigchld => {}
            Step::ForeignSpawn { child, fate } => self.foreign_spawn(child, fate),
            Step::ForeignReapAny => self.foreign_reap_any(),
            Step::Subprocess { child, fate } => {
                match self.event_loop.subprocess_exec(&request(fate)) {
                    Ok(process) => {
                        self.spawned(child, process.pid(), Spawner::Subprocess);
                        self.event(Event::Registered {
                            child: child.clone(),
                            watcher: self.generation,
                            with_spawn: true,
                        });
                        self.processes.insert(child.clone(), process);
                    }
                    Err(error) => self.error("subprocess", child, &error),
                }
            }
            Step::ProcessSignal {
                child,
                method,
                signal,
            } => {
                let Some(process) = self.processes.get(child) else {
                    self.note(format!("error process_signal {child} NoChild"));
                    return;
                };
                let signal = match (method, signal) {
                    (SignalMethod::Kill, _) => Signal::SIGKILL,
                    (SignalMethod::Terminate, _) => Signal::SIGTERM,
                    (SignalMethod::SendSignal, signal) => Signal(signal.unwrap_or(0)),
                };
                self.event(Event::Signalled {
                    child: child.clone(),
                    signal: signal.0,
                });
                let sent = match method {
                    SignalMethod::Kill => process.kill(),
                    SignalMethod::Terminate => process.terminate(),
                    SignalMethod::SendSignal => process.send_signal(signal),
                };
                if let Err(error) = sent {
                    self.error("process_signal", child, &error);
                }
            }
            Step::ThreadStart { child, fate } => self.thread_start(child, fate),
        }
    }

    fn replace_watcher(&mut self) {
        let new = (self.make)(&self.kernel);
        // As asyncio's documentation has it: install, then attach. The policy closes
        // the watcher it held, which for Safe and Fast removes the loop's SIGCHLD
        // handler: attached first, the new watcher would lose its own.
        let replaced = policy::set_child_watcher(&self.kernel, Some(new.clone()));
        self.event(Event::WatcherClosed {
            watcher: self.generation,
        });
        self.watcher = new;
        self.generation += 1;
        if let Err(error) = replaced {
            self.error("replace_watcher", "-", &error);
        }
        match self.watcher.attach_loop(Some(self.event_loop.clone())) {
            Ok(()) => self.event(Event::Attached),
            Err(error) => {
                self.event(Event::Detached);
                self.error("replace_watcher", "-", &error);
            }
        }
    }

    fn loop_cycle(&mut self) {
        let other = match EventLoop::with_kernel(self.kernel.clone()) {
            Ok(other) => other,
            Err(error) => return self.error("loop_cycle", "-", &error),
        };
        // The second loop is closed while the watcher is still attached to it (and,
        // for Safe and Fast, while its SIGCHLD handler is the process's).
        let there = self.watcher.attach_loop(Some(other.clone()));
        let closed = other.close();
        let back = self.watcher.attach_loop(Some(self.event_loop.clone()));
        if let Err(error) = there.and(closed).and(back) {
            self.error("loop_cycle", "-", &error);
        }
    }

    fn foreign_spawn(&mut self, child: &str, fate: &Fate) {
        let (kernel, shared, name) = (self.kernel.clone(), self.shared.clone(), child.to_string());
        let request = request(fate);
        let body = move || {
            let pid = match kernel.spawn(&request) {
                Ok(spawned) => spawned.pid,
                Err(errno) => {
                    let mut record = lock(&shared);
                    record.tried.insert(name.clone());
                    let line =
                        format!("error foreign_spawn {name} {}", python_class(&errno.into()));
                    record.trace.push(line);
                    return;
                }
            };
            {
                let mut record = lock(&shared);
                record.pids.insert(name.clone(), pid);
                record.tried.insert(name.clone());
                if is_sim(&kernel) {
                    record
                        .serials
                        .insert(name.clone(), spawned_serial(&kernel, pid));
                }
                // As for `thread_start`, the checker finds the serial.
                record.events.push(Event::Spawned {
                    child: name.clone(),
                    pid,
                    serial: None,
                    by: Spawner::Foreign,
                });
            }
            let line = loop {
                match kernel.wait_pid(pid, WaitMode::Block) {
                    Ok(WaitStatus::Terminated(_, status)) => {
                        break format!("foreign-child {name} {}", status.returncode());
                    }
                    Ok(WaitStatus::StillAlive) | Err(loopwatch::kernel::Errno::EINTR) => continue,
                    Err(errno) => break format!("foreign-child {name} {errno:?}"),
                }
            };
            lock(&shared).trace.push(line);
        };
        match self.kernel.spawn_thread("foreign-spawner", Box::new(body)) {
            Ok(handle) => {
                self.order.push(child.to_string());
                self.threads.push((child.to_string(), handle));
            }
            Err(errno) => self.error("foreign_spawn", child, &errno.into()),
        }
    }

    fn foreign_reap_any(&mut self) {
        // Peeks first, so that the child's serial is known before its pid is freed.
        while let Ok(WaitStatus::Terminated(pid, _)) =
            self.kernel.wait_peek(WaitTarget::Any, WaitMode::NoHang)
        {
            let serial = serial_of(&self.kernel, pid);
            let Ok(WaitStatus::Terminated(_, status)) = self.kernel.wait_pid(pid, WaitMode::NoHang)
            else {
                // Someone else reaped it in between.
                continue;
            };
            let known = lock(&self.shared).pids.clone();
            let name = self
                .pids
                .iter()
                .chain(known.iter())
                .find(|(_, p)| **p == pid)
                .map(|(name, _)| name.clone());
            let shown = name.clone().unwrap_or_else(|| "?".to_string());
            self.note(format!("stole {shown} {}", status.returncode()));
            if let Some(name) = &name {
                self.reaped.insert(name.clone());
            }
            self.event(Event::ReapedByRunner {
                child: name,
                pid,
                serial,
            });
        }
    }

    fn thread_start(&mut self, child: &str, fate: &Fate) {
        let (kernel, shared, name) = (self.kernel.clone(), self.shared.clone(), child.to_string());
        let watcher = self.watcher.clone();
        let generation = self.generation;
        let request = request(fate);
        let body = move || {
            let note = |line: String| lock(&shared).trace.push(line);
            let event_loop = match EventLoop::with_kernel(kernel.clone()) {
                Ok(event_loop) => event_loop,
                Err(error) => {
                    lock(&shared).tried.insert(name.clone());
                    return note(format!(
                        "error thread_start {name} {}",
                        python_class(&error)
                    ));
                }
            };
            let (k, s, n, lp) = (
                kernel.clone(),
                shared.clone(),
                name.clone(),
                event_loop.clone(),
            );
            let ran = event_loop.run_until_complete(async move {
                {
                    let _window = fork_window(&*watcher);
                    let pid = match k.spawn(&request) {
                        Ok(spawned) => spawned.pid,
                        Err(errno) => {
                            let line =
                                format!("error thread_start {n} {}", python_class(&errno.into()));
                            return lock(&s).trace.push(line);
                        }
                    };
                    {
                        let mut record = lock(&s);
                        record.pids.insert(n.clone(), pid);
                        record.tried.insert(n.clone());
                        if is_sim(&k) {
                            record.serials.insert(n.clone(), spawned_serial(&k, pid));
                        }
                        // The serial is found by the checker, from the ledger's
                        // pid and spawning thread: by now another thread may have
                        // reaped the child and reused its pid.
                        record.events.push(Event::Spawned {
                            child: n.clone(),
                            pid,
                            serial: None,
                            by: Spawner::Thread,
                        });
                    }
                    lock(&s).events.push(Event::Registered {
                        child: n.clone(),
                        watcher: generation,
                        with_spawn: true,
                    });
                    if let Err(error) = watcher.add_child_handler(pid, callback(&k, &s, &n)) {
                        let line = format!("error thread_start {n} {}", python_class(&error));
                        let mut record = lock(&s);
                        record
                            .events
                            .push(Event::RegisterFailed { child: n.clone() });
                        return record.trace.push(line);
                    }
                }
                wait_exit(&lp, &s, &n, WAIT_MS).await;
            });
            if let Err(error) = ran {
                note(format!(
                    "error thread_start {name} {}",
                    python_class(&error)
                ));
            }
            let _ = event_loop.close();
            let mut record = lock(&shared);
            // Tried, whatever came of it (a spawn that failed in the loop too).
            record.tried.insert(name.clone());
            record.events.push(Event::ThreadLoopClosed {
                child: name.clone(),
            });
        };
        match self.kernel.spawn_thread("loop-thread", Box::new(body)) {
            Ok(handle) => {
                self.order.push(child.to_string());
                self.registered.insert(child.to_string());
                self.threads.push((child.to_string(), handle));
            }
            Err(errno) => self.error("thread_start", child, &errno.into()),
        }
    }

    /// SCENARIOS.md's teardown: child by child in creation order, kill what still runs
    /// and await its death, await the callback of a registered child that has had
    /// none; then let the loop run 50 ms, and list (and reap) the zombies.
    async fn teardown(&mut self) {
        for name in self.order.clone() {
            if self.reaped.contains(&name) {
                // A process learns of its exit all the same (as 255, R-2).
                if let Some(process) = self.processes.get(&name) {
                    let ms = TEARDOWN_GRACE_MS;
                    wait_process(&self.event_loop, &self.shared, &name, process, ms).await;
                }
                continue;
            }
            // A child another thread starts: wait until that thread has tried.
            if self.threads.iter().any(|(child, _)| *child == name) {
                let mut waited = 0;
                while !lock(&self.shared).tried.contains(&name) && waited < DEATH_WAIT_MS {
                    sleep(&self.event_loop, 2).await;
                    waited += 2;
                }
            }
            let Some(pid) = self.known_pid(&name) else {
                continue;
            };
            let state = self.state(&name, pid);
            if state == ChildState::Running {
                self.event(Event::Signalled {
                    child: name.clone(),
                    signal: Signal::SIGKILL.0,
                });
                let _ = self.signal_child(&name, pid, Signal::SIGKILL);
                let mut waited = 0;
                while self.state(&name, pid) == ChildState::Running && waited < DEATH_WAIT_MS {
                    sleep(&self.event_loop, 2).await;
                    waited += 2;
                }
            }
            if let Some(process) = self.processes.get(&name) {
                // Records the returncode, known already or still to come.
                wait_process(
                    &self.event_loop,
                    &self.shared,
                    &name,
                    process,
                    TEARDOWN_WAIT_MS,
                )
                .await;
                continue;
            }
            let called = lock(&self.shared).exited.contains_key(&name);
            if self.registered.contains(&name) && !called {
                let must_report = !self.removed.contains(&name) && state != ChildState::Gone;
                let ms = if must_report {
                    TEARDOWN_WAIT_MS
                } else {
                    TEARDOWN_GRACE_MS
                };
                wait_exit(&self.event_loop, &self.shared, &name, ms).await;
            }
        }
        // The threads end once their children have: a foreign spawner when its
        // `waitpid` returns, a loop thread when its wait does.
        for (_, handle) in std::mem::take(&mut self.threads) {
            if self.kernel.join_thread(handle).is_err() {
                self.note("error teardown - thread panicked".to_string());
            }
        }
        // Let the watcher handle a SIGCHLD still pending (Fast reaps unknown children
        // here), so that the zombie list does not depend on timing. On the simulator,
        // whose time costs nothing, long enough for the lag fault's late threads too.
        let settle = if !is_sim(&self.kernel) {
            SETTLE_MS
        } else {
            SIM_SETTLE_MS
        };
        sleep(&self.event_loop, settle).await;
        for name in self.order.clone() {
            if self.reaped.contains(&name) {
                continue;
            }
            let Some(pid) = self.known_pid(&name) else {
                continue;
            };
            if self.state(&name, pid) == ChildState::Zombie {
                self.note(format!("zombie {name}"));
                self.event(Event::Zombie {
                    child: name.clone(),
                    serial: serial_of(&self.kernel, pid),
                });
                let _ = self.kernel.wait_pid(pid, WaitMode::NoHang);
                self.reaped.insert(name.clone());
            }
        }
        self.processes.clear();
    }
}

/// Awaits `process.wait()`, at most `ms`; records `exit <child> <code>` once.
async fn wait_process<K: Kernel>(
    event_loop: &EventLoop<K>,
    shared: &Shared,
    child: &str,
    process: &Process<K>,
    ms: u64,
) -> bool {
    if lock(shared).exited.contains_key(child) {
        return true;
    }
    let mut wait = std::pin::pin!(process.wait());
    let mut timer: Option<Timer> = None;
    let code = poll_fn(|cx| {
        if let Poll::Ready(code) = wait.as_mut().poll(cx) {
            return Poll::Ready(Some(code));
        }
        if timer.as_ref().is_some_and(Timer::fired) {
            return Poll::Ready(None);
        }
        if timer.is_none() {
            timer = Timer::start(event_loop, ms, cx.waker().clone());
            if timer.is_none() {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    })
    .await;
    match code {
        Some(code) => {
            report(shared, child, code, event_loop.kernel().now());
            true
        }
        None => false,
    }
}

/// Runs `scenario` with `watcher` on `kernel`, from the process's main thread (the
/// signal-based watchers need it), and returns the trace.
///
/// # Errors
///
/// Setting the loop or the watcher up failed.
pub fn execute<K: Kernel>(
    kernel: &K,
    scenario: &Scenario,
    watcher: WatcherName,
) -> Result<Vec<String>, Error> {
    execute_with(kernel, scenario, &|k: &K| make_watcher(watcher, k))
}

/// As [`execute`], with a watcher that `make` builds: a user's own, or one of the
/// [`zoo`](crate::zoo)'s broken ones.
///
/// # Errors
///
/// Setting the loop or the watcher up failed.
pub fn execute_with<K: Kernel>(
    kernel: &K,
    scenario: &Scenario,
    make: &dyn Fn(&K) -> WatcherRef<K>,
) -> Result<Vec<String>, Error> {
    execute_recorded(kernel, scenario, make).map(|recorded| recorded.trace)
}

/// As [`execute_with`], with the [`Event`]s the invariant checker needs.
///
/// # Errors
///
/// Setting the loop or the watcher up failed.
pub fn execute_recorded<K: Kernel>(
    kernel: &K,
    scenario: &Scenario,
    make: &dyn Fn(&K) -> WatcherRef<K>,
) -> Result<Recorded, Error> {
    let ignored = scenario.steps.first() == Some(&Step::IgnoreSigchld);
    let before = if ignored {
        Some(kernel.set_disposition(Signal::SIGCHLD, Disposition::Ignore)?)
    } else {
        None
    };
    let result = set_up_and_run(kernel, scenario, make);
    if let Some(before) = before {
        kernel.set_disposition(Signal::SIGCHLD, before)?;
    }
    result
}

fn set_up_and_run<K: Kernel>(
    kernel: &K,
    scenario: &Scenario,
    make: &dyn Fn(&K) -> WatcherRef<K>,
) -> Result<Recorded, Error> {
    policy::set_event_loop_policy(kernel, None);
    let event_loop = EventLoop::with_kernel(kernel.clone())?;
    policy::set_event_loop(kernel, Some(event_loop.clone()))?;
    let watcher_ref = make(kernel);
    watcher_ref.attach_loop(Some(event_loop.clone()))?;
    policy::set_child_watcher(kernel, Some(watcher_ref.clone()))?;
    let shared: Shared = Arc::default();
    event(&shared, Event::Attached);
    let mut run = Run {
        kernel: kernel.clone(),
        event_loop: event_loop.clone(),
        watcher: watcher_ref,
        generation: 0,
        make,
        shared: shared.clone(),
        pids: BTreeMap::new(),
        order: Vec::new(),
        registered: BTreeSet::new(),
        removed: BTreeSet::new(),
        reaped: BTreeSet::new(),
        processes: BTreeMap::new(),
        threads: Vec::new(),
    };
    let steps = scenario.steps.clone();
    let outcome = event_loop.run_until_complete(async {
        for step in &steps {
            run.step(step).await;
        }
        run.teardown().await;
    });
    let last = run.watcher.clone();
    drop(run);
    let closed = last.close();
    policy::set_child_watcher(kernel, None)?;
    policy::set_event_loop(kernel, None)?;
    event_loop.close()?;
    policy::set_event_loop_policy(kernel, None);
    outcome?;
    closed?;
    let mut record = lock(&shared);
    Ok(Recorded {
        trace: std::mem::take(&mut record.trace),
        events: std::mem::take(&mut record.events),
    })
}
