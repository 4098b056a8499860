//! Runs a scenario on a loopwatch kernel and records the normalised trace.

use std::collections::{BTreeMap, BTreeSet};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};

use loopwatch::kernel::{Kernel, Pid, Signal, SpawnRequest, WaitMode, WaitStatus, WaitTarget};
use loopwatch::watcher::{MultiLoopChildWatcher, fork_window};
use loopwatch::{
    Error, EventLoop, FastChildWatcher, PidfdChildWatcher, SafeChildWatcher, ThreadedChildWatcher,
    WatcherRef, policy,
};

use crate::scenario::{Fate, Scenario, Step, WatcherName};

/// How long `wait` waits by default.
const WAIT_MS: u64 = 5000;
/// Teardown: how long to await the callback a registered child must get.
const TEARDOWN_WAIT_MS: u64 = 1000;
/// Teardown: how long to await a callback only some watchers give (the handler was
/// removed, or the child is already reaped).
const TEARDOWN_GRACE_MS: u64 = 300;
/// Teardown: how long a SIGKILLed child may take to stop running.
const DEATH_WAIT_MS: u64 = 3000;

/// What callbacks and steps share. A plain `std` lock: it is never held across a
/// kernel call.
#[allow(clippy::disallowed_types, reason = "never held across a kernel call")]
type Shared = Arc<std::sync::Mutex<Record>>;

#[derive(Default)]
struct Record {
    trace: Vec<String>,
    exited: BTreeMap<String, i32>,
    waker: Option<Waker>,
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Record> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        record.waker = Some(cx.waker().clone());
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
struct Run<K: Kernel> {
    kernel: K,
    event_loop: EventLoop<K>,
    watcher: WatcherRef<K>,
    shared: Shared,
    pids: BTreeMap<String, Pid>,
    /// Children in creation order.
    order: Vec<String>,
    registered: BTreeSet<String>,
    /// Children whose handler was removed after they were registered.
    removed: BTreeSet<String>,
    /// Children this runner reaped itself (`foreign_wait`, teardown).
    reaped: BTreeSet<String>,
}

impl<K: Kernel> Run<K> {
    fn note(&self, line: String) {
        lock(&self.shared).trace.push(line);
    }

    fn error(&self, op: &str, child: &str, error: &Error) {
        self.note(format!("error {op} {child} {}", python_class(error)));
    }

    /// The child's pid, or `error <op> <child> NoChild` when its spawn failed.
    fn pid(&self, op: &str, child: &str) -> Option<Pid> {
        let pid = self.pids.get(child).copied();
        if pid.is_none() {
            self.note(format!("error {op} {child} NoChild"));
        }
        pid
    }

    fn state(&self, pid: Pid) -> ChildState {
        match self
            .kernel
            .wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang)
        {
            Ok(WaitStatus::StillAlive) => ChildState::Running,
            Ok(WaitStatus::Terminated(..)) => ChildState::Zombie,
            Err(_) => ChildState::Gone,
        }
    }

    fn spawn(&mut self, child: &str, fate: &Fate) -> Option<Pid> {
        let mut request = match fate.script() {
            Some(script) => SpawnRequest::new("/bin/sh", ["-c", script.as_str()]),
            None => SpawnRequest::new("sleep", ["1000"]),
        };
        // A scenario's child dies of the signals it names whatever the runner's own
        // process ignores (under `nohup`, as a background job): as the simulator's
        // children and CPython's runner, it starts at the defaults.
        request.restore_signals = true;
        match self.kernel.spawn(&request) {
            Ok(spawned) => {
                self.pids.insert(child.to_string(), spawned.pid);
                self.order.push(child.to_string());
                Some(spawned.pid)
            }
            Err(errno) => {
                self.error("spawn", child, &errno.into());
                None
            }
        }
    }

    fn callback(&self, child: &str) -> loopwatch::watcher::ChildCallback {
        let (shared, child) = (self.shared.clone(), child.to_string());
        Box::new(move |_pid, code| {
            let waker = {
                let mut record = lock(&shared);
                record.trace.push(format!("exit {child} {code}"));
                record.exited.insert(child, code);
                record.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        })
    }

    fn register(&mut self, op: &str, child: &str, pid: Pid) {
        let callback = self.callback(child);
        match self.watcher.add_child_handler(pid, callback) {
            Ok(()) => {
                self.registered.insert(child.to_string());
                self.removed.remove(child);
            }
            Err(error) => self.error(op, child, &error),
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
            Step::Register { child } => {
                let Some(pid) = self.pid("register", child) else {
                    return;
                };
                let watcher = self.watcher.clone();
                let _window = fork_window(&*watcher);
                self.register("register", child, pid);
            }
            Step::Remove { child } => {
                let Some(pid) = self.pid("remove", child) else {
                    return;
                };
                let removed = self.watcher.remove_child_handler(pid);
                if self.registered.contains(child) {
                    self.removed.insert(child.clone());
                }
                self.note(format!("removed {child} {removed}"));
            }
            Step::Wait { child, timeout_ms } => {
                let ms = timeout_ms.unwrap_or(WAIT_MS);
                if !wait_exit(&self.event_loop, &self.shared, child, ms).await {
                    self.note(format!("timeout {child}"));
                }
            }
            Step::Sleep { ms } => sleep(&self.event_loop, *ms).await,
            Step::Kill { child, signal } => {
                let Some(pid) = self.pid("kill", child) else {
                    return;
                };
                // A reaped child's pid may belong to a stranger by now: not signalled.
                if self.state(pid) == ChildState::Gone {
                    self.error("kill", child, &loopwatch::kernel::Errno::ESRCH.into());
                } else if let Err(errno) = self.kernel.kill(pid, Some(Signal(*signal))) {
                    self.error("kill", child, &errno.into());
                }
            }
            Step::ForeignWait { child } => {
                let Some(pid) = self.pid("foreign_wait", child) else {
                    return;
                };
                let line = loop {
                    match self.kernel.wait_pid(pid, WaitMode::Block) {
                        Ok(WaitStatus::Terminated(_, status)) => {
                            self.reaped.insert(child.clone());
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
        }
    }

    /// SCENARIOS.md's teardown: child by child in creation order, kill what still runs
    /// and await its death, await the callback of a registered child that has had
    /// none; then let the loop run 50 ms, and list (and reap) the zombies.
    async fn teardown(&mut self) {
        for name in self.order.clone() {
            if self.reaped.contains(&name) {
                continue;
            }
            let pid = self.pids[&name];
            let state = self.state(pid);
            if state == ChildState::Running {
                let _ = self.kernel.kill(pid, Some(Signal::SIGKILL));
                let mut waited = 0;
                while self.state(pid) == ChildState::Running && waited < DEATH_WAIT_MS {
                    sleep(&self.event_loop, 2).await;
                    waited += 2;
                }
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
        // Let the watcher handle a SIGCHLD still pending (Fast reaps unknown children
        // here), so that the zombie list does not depend on timing.
        sleep(&self.event_loop, 50).await;
        for name in self.order.clone() {
            if self.reaped.contains(&name) {
                continue;
            }
            let pid = self.pids[&name];
            if self.state(pid) == ChildState::Zombie {
                self.note(format!("zombie {name}"));
                let _ = self.kernel.wait_pid(pid, WaitMode::NoHang);
                self.reaped.insert(name);
            }
        }
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
    policy::set_event_loop_policy(kernel, None);
    let event_loop = EventLoop::with_kernel(kernel.clone())?;
    policy::set_event_loop(kernel, Some(event_loop.clone()))?;
    let watcher_ref = make(kernel);
    watcher_ref.attach_loop(Some(event_loop.clone()))?;
    policy::set_child_watcher(kernel, Some(watcher_ref.clone()))?;
    let shared: Shared = Arc::default();
    let mut run = Run {
        kernel: kernel.clone(),
        event_loop: event_loop.clone(),
        watcher: watcher_ref.clone(),
        shared: shared.clone(),
        pids: BTreeMap::new(),
        order: Vec::new(),
        registered: BTreeSet::new(),
        removed: BTreeSet::new(),
        reaped: BTreeSet::new(),
    };
    let steps = scenario.steps.clone();
    let outcome = event_loop.run_until_complete(async move {
        for step in &steps {
            run.step(step).await;
        }
        run.teardown().await;
    });
    let closed = watcher_ref.close();
    policy::set_child_watcher(kernel, None)?;
    policy::set_event_loop(kernel, None)?;
    event_loop.close()?;
    policy::set_event_loop_policy(kernel, None);
    outcome?;
    closed?;
    let trace = std::mem::take(&mut lock(&shared).trace);
    Ok(trace)
}
