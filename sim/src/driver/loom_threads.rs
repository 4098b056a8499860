//! The loom driver: each simulated thread is a loom thread, the model sits behind a
//! loom mutex, and a blocked call waits on a loom condition variable, so that loom,
//! not a seed, decides every order, and explores them all up to its preemption bound.
//!
//! Every kernel call takes the model's lock, which is where loom may switch threads:
//! the same scheduling points as the coroutine driver's. Child events, signal
//! deliveries and virtual time belong to a kernel thread, which is the loom model's
//! own thread: it fires a due event whenever loom runs it, so loom places each exit and
//! each SIGCHLD between any two kernel calls it chooses; it advances virtual time only
//! when every simulated thread is blocked. The simulated process's main thread is a
//! loom thread of its own, with a full-size stack.
//!
//! loom allows 5 threads, so a model has the kernel thread, the main thread and at
//! most 3 threads of its own (a Threaded watcher's waiters count).

use std::any::Any;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use loom::sync::{Condvar, Mutex, MutexGuard};

use super::{Aborted, Outcome, check_model, fire_event, panic_text};
use crate::model::{Attempt, MAIN_THREAD, Model, Status, Tid, Wait};

/// Stack of each simulated thread: the loop, the watchers and the model's calls need
/// more than loom's default of 32 KiB.
const STACK_BYTES: usize = 1 << 20;

#[allow(
    clippy::disallowed_types,
    reason = "never held across a loom operation, so never a loom scheduling point"
)]
type StdMutex<T> = std::sync::Mutex<T>;

loom::thread_local! {
    /// The simulated thread this loom thread runs; 0 on the kernel thread.
    static TID: Cell<Tid> = Cell::new(0);
}

/// The most kernel calls a run may make under loom: a thread that spins on the kernel
/// (a livelock) must end the run before loom's own branch limit, which would abort the
/// exploration.
const LOOM_STEPS_MAX: u64 = 10_000;

/// Unwinds a simulated thread that calls the kernel after the run has ended, as the
/// coroutine driver unwinds the threads it abandons: what the process's exit would do
/// to it. Not a panic of the thread's own (no panic hook runs, no payload is kept).
struct RunOver;

fn current_tid() -> Tid {
    TID.with(Cell::get)
}

/// What every `SimKernel` handle of one run shares.
pub(crate) struct SimRun {
    state: Mutex<Model>,
    /// Blocked simulated threads wait here for the model to change.
    changed: Condvar,
    /// The kernel thread waits here for work: a due event, or every thread blocked.
    kernel: Condvar,
    /// The panic payload of each thread that panicked, until it is joined.
    panics: StdMutex<BTreeMap<Tid, Box<dyn Any + Send>>>,
    /// How the run ended, once it has.
    ended: StdMutex<Option<Outcome>>,
    /// The simulated process's store for state above the seam; see the coroutine
    /// driver's.
    pub(crate) locals: loopwatch::kernel::ProcessLocals,
    /// How many calls of each kind the seam has had.
    pub(crate) calls: crate::calls::CallCounts,
}

impl fmt::Debug for SimRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRun").finish_non_exhaustive()
    }
}

impl SimRun {
    pub(crate) fn new(state: Model) -> SimRun {
        SimRun {
            state: Mutex::new(state),
            changed: Condvar::new(),
            kernel: Condvar::new(),
            panics: StdMutex::new(BTreeMap::new()),
            ended: StdMutex::new(None),
            locals: loopwatch::kernel::ProcessLocals::new(),
            calls: crate::calls::CallCounts::new(),
        }
    }

    /// The model, locked for the calling simulated thread (a loom scheduling point).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Model> {
        crate::program::assert_not_in_program_fn();
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tid = current_tid();
        if tid != 0 {
            state.current = tid;
        }
        state
    }

    fn panics(&self) -> std::sync::MutexGuard<'_, BTreeMap<Tid, Box<dyn Any + Send>>> {
        self.panics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ends the run with `outcome` (the first ending wins): every call that would block
    /// now fails at once, and the kernel thread stops.
    fn end(&self, state: &mut Model, outcome: Outcome) {
        let mut ended = self
            .ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ended.get_or_insert(outcome);
        state.aborting = true;
        self.changed.notify_all();
        self.kernel.notify_all();
    }

    /// After a call changed the model: blocked threads retry, the kernel thread looks
    /// for work, and the model checks itself when a check is due.
    fn settle(&self, state: &mut Model) {
        state.steps += 1;
        if let Some(violation) = check_model(state, false) {
            self.end(state, Outcome::ModelViolation(violation));
            return;
        }
        let max = state.config.steps_max.min(LOOM_STEPS_MAX);
        if state.steps > max {
            self.end(state, Outcome::StepLimit(max));
            return;
        }
        if state.changed {
            state.wake_blocked();
            self.changed.notify_all();
        }
        if kernel_has_work(state) {
            self.kernel.notify_all();
        }
    }

    /// Spawns a simulated thread running `body` on a loom thread of its own.
    pub(crate) fn spawn_thread(
        self: &Arc<Self>,
        name: &str,
        body: Box<dyn FnOnce() + Send>,
    ) -> Tid {
        let tid = self.syscall("spawn_thread", |state, tid| state.spawn_thread(tid, name));
        {
            let mut state = self.lock();
            if state.aborting {
                // The run is over: the model recorded a thread that never starts.
                state.thread_finished(tid, false);
                return tid;
            }
        }
        let shared = self.clone();
        loom::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn(move || thread_main(&shared, tid, body))
            .expect("loom spawns a thread");
        tid
    }

    /// Waits for thread `target` to finish; its panic payload if it panicked and this
    /// is the first join.
    pub(crate) fn join_thread(&self, target: Tid) -> Result<(), Box<dyn Any + Send>> {
        if !self.syscall("join", |state, tid| state.join(tid, target)) {
            return Ok(());
        }
        let payload = self.panics().remove(&target);
        payload.map_or(Ok(()), Err)
    }

    /// One kernel call: the model's lock (a loom scheduling point), then `op` until it
    /// completes, waiting on the condition variable while it blocks. Signals taken
    /// while blocked are handled as in the coroutine driver.
    pub(crate) fn syscall<R: Aborted>(
        &self,
        name: &'static str,
        mut op: impl FnMut(&mut Model, Tid) -> Attempt<R>,
    ) -> R {
        // Outside a simulated thread (the kernel thread tearing the process down), a
        // call acts for the thread that ran last, as on the coroutine driver's host stack.
        let inside = current_tid() != 0;
        let mut state = self.lock();
        if inside && state.aborting && !std::thread::panicking() {
            drop(state);
            std::panic::resume_unwind(Box::new(RunOver));
        }
        let tid = state.current;
        let mut blocked = false;
        loop {
            match op(&mut state, tid) {
                Attempt::Done(result) => {
                    if let Some(until) = blocked.then(|| state.wake_lag()).flatten() {
                        state = self.hold(state, tid, until);
                    }
                    state.leave_call(tid);
                    self.settle(&mut state);
                    return result;
                }
                Attempt::Block(wait) => {
                    if !inside || state.aborting {
                        return R::aborted();
                    }
                    if state.has_handlers(tid) {
                        if wait.interruptible {
                            state.interrupt(tid);
                        } else {
                            state.run_handlers(tid);
                        }
                        continue;
                    }
                    if !blocked {
                        blocked = true;
                        state.log(tid, format_args!("{name} blocks"));
                    }
                    state = self.block(state, tid, wait, name);
                }
            }
        }
    }

    /// Marks `tid` blocked and waits until something makes it runnable again (or the
    /// run ends).
    fn block<'a>(
        &'a self,
        mut state: MutexGuard<'a, Model>,
        tid: Tid,
        wait: Wait,
        name: &'static str,
    ) -> MutexGuard<'a, Model> {
        let thread = state.threads.get_mut(&tid).expect("running thread");
        thread.status = Status::Blocked(wait);
        thread.in_call = true;
        thread.blocked_in = name;
        self.settle(&mut state);
        while !state.aborting && matches!(state.threads[&tid].status, Status::Blocked(_)) {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.current = tid;
        state
    }

    /// Keeps thread `tid`, inside a call, from running before virtual time `until`.
    fn hold<'a>(
        &'a self,
        mut state: MutexGuard<'a, Model>,
        tid: Tid,
        until: std::time::Duration,
    ) -> MutexGuard<'a, Model> {
        while !state.aborting && state.time < until {
            state = self.block(state, tid, Wait::until(until), "lag");
        }
        state
    }
}

/// Whether the kernel thread has something to do: a child event or a signal to
/// deliver, or every simulated thread blocked (time to advance, or a deadlock).
fn kernel_has_work(state: &Model) -> bool {
    state.aborting
        || state.killed.is_some()
        || all_blocked(state)
        || !state.due_children().is_empty()
        || !state.deliverable().is_empty()
}

/// No simulated thread can run: each has finished or is blocked.
fn all_blocked(state: &Model) -> bool {
    state
        .threads
        .values()
        .all(|t| matches!(t.status, Status::Blocked(_) | Status::Finished))
        && state
            .threads
            .values()
            .any(|t| matches!(t.status, Status::Blocked(_)))
}

/// The body of a simulated thread's loom thread.
fn thread_main(shared: &SimRun, tid: Tid, body: Box<dyn FnOnce() + Send>) {
    TID.with(|cell| cell.set(tid));
    let result = catch_unwind(AssertUnwindSafe(body));
    let mut state = shared.lock();
    let result = result.or_else(|payload| match payload.downcast::<RunOver>() {
        Ok(_) => Ok(()),
        Err(payload) => Err(payload),
    });
    let panicked = result.is_err();
    if let Err(payload) = result {
        shared.panics().insert(tid, payload);
    }
    state.log(
        tid,
        if panicked {
            "thread panicked"
        } else {
            "thread exits"
        },
    );
    state.thread_finished(tid, panicked);
    if tid == MAIN_THREAD {
        let outcome = match shared.panics().remove(&MAIN_THREAD) {
            Some(payload) => Outcome::Panicked(panic_text(&*payload)),
            None => match check_model(&mut state, true) {
                Some(violation) => Outcome::ModelViolation(violation),
                None => Outcome::Completed,
            },
        };
        shared.end(&mut state, outcome);
    } else {
        shared.settle(&mut state);
    }
}

/// How the run ended and what it left.
pub(crate) struct RunResult {
    pub(crate) outcome: Outcome,
    pub(crate) threads_abandoned: usize,
    pub(crate) abandoned: Abandoned,
}

/// Nothing to unwind here: a thread still alive when the run ended is unwound at its
/// next kernel call, before the loom execution ends.
pub(crate) struct Abandoned;

pub(crate) fn unwind_abandoned(_shared: &SimRun, _abandoned: Abandoned) {}

/// Runs the simulation to its end: the calling loom thread (the model's own) is the
/// kernel thread, and the simulated main thread runs on a loom thread of its own.
pub(crate) fn run(shared: &Arc<SimRun>, main: Box<dyn FnOnce() + Send>) -> RunResult {
    assert_eq!(
        current_tid(),
        0,
        "a simulation cannot be started from inside another simulation"
    );
    let main_thread = {
        let shared = shared.clone();
        loom::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn(move || thread_main(&shared, MAIN_THREAD, main))
            .expect("loom spawns a thread")
    };
    let mut state = shared.lock();
    loop {
        if state.aborting {
            break;
        }
        if let Some(signal) = state.killed {
            shared.end(&mut state, Outcome::KilledBySignal(signal));
            break;
        }
        if fire_event(&mut state, true) {
            shared.settle(&mut state);
            // The lock goes, so loom may run any thread before the next event.
            drop(state);
            state = shared.lock();
            continue;
        }
        if all_blocked(&state) {
            if let Some(time) = state.next_timer() {
                state.advance_to(time);
                shared.changed.notify_all();
                drop(state);
                state = shared.lock();
                continue;
            }
            let waiting: Vec<String> = state
                .threads
                .iter()
                .filter(|(_, t)| matches!(t.status, Status::Blocked(_)))
                .map(|(tid, t)| format!("T{tid} {:?} in {}", t.name, t.blocked_in))
                .collect();
            let report = format!("blocked forever: {}", waiting.join(", "));
            shared.end(&mut state, Outcome::Deadlock(report));
            break;
        }
        state = shared
            .kernel
            .wait(state)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    let threads_abandoned = state
        .threads
        .values()
        .filter(|t| t.status != Status::Finished)
        .count();
    drop(state);
    let outcome = shared
        .ended
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .expect("the run has ended");
    // Not joined: a main thread that did not finish (a deadlock, the step limit) is
    // unwound at its next kernel call, and loom waits for it before the execution ends.
    drop(main_thread);
    RunResult {
        outcome,
        threads_abandoned,
        abandoned: Abandoned,
    }
}
