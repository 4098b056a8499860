//! The coroutine driver: simulated threads as stackful coroutines on the calling OS
//! thread, one at a time; the seeded scheduler decides at every scheduling point which
//! one goes next.
//!
//! Coroutines switch in tens of nanoseconds, where handing a baton between OS threads
//! costs microseconds; and with one OS thread nothing but the seed decides the order.

use std::any::Any;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

use super::{Aborted, Outcome, check_model, fire_event, panic_text};
use crate::model::{Attempt, MAIN_THREAD, Model, Status, Tid};
use crate::sched::Scheduler;

/// Stack of each simulated thread: mapped lazily, so only touched pages cost memory.
const STACK_BYTES: usize = 1 << 20;

type SimYielder = Yielder<(), ()>;

thread_local! {
    /// The yielder of the coroutine running on this OS thread, or null on the host
    /// stack. Each coroutine stores its own at start and after every suspension, so
    /// while a coroutine runs this is always its yielder.
    static CURRENT: Cell<*const SimYielder> = const { Cell::new(std::ptr::null()) };
}

#[allow(
    clippy::disallowed_types,
    reason = "the simulator is a kernel: its state lock never spans a switch"
)]
type StdMutex<T> = std::sync::Mutex<T>;

/// What every `SimKernel` handle of one run shares.
pub(crate) struct SimRun {
    state: StdMutex<Model>,
    /// The code and values of the simulated threads, kept apart from the model, which
    /// is data only.
    threads: StdMutex<ThreadBodies>,
    /// The simulated process's store for state above the seam; cleared at the end
    /// of the run, which ends the cycles through its values back to this `SimRun`.
    pub(crate) locals: loopwatch::kernel::ProcessLocals,
    /// How many calls of each kind the seam has had.
    pub(crate) calls: crate::calls::CallCounts,
}

/// What the driver keeps of each simulated thread beside the model's record of it.
#[derive(Default)]
struct ThreadBodies {
    /// Bodies of threads spawned since the scheduler last looked, to be started.
    unstarted: Vec<(Tid, Box<dyn FnOnce() + Send>)>,
    /// The panic payload of each thread that panicked, until it is joined.
    panics: BTreeMap<Tid, Box<dyn Any + Send>>,
}

impl fmt::Debug for SimRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRun").finish_non_exhaustive()
    }
}

fn in_coroutine() -> bool {
    !CURRENT.with(Cell::get).is_null()
}

/// Gives control back to the scheduler; returns when this thread is picked again.
fn suspend() {
    let yielder = CURRENT.with(Cell::get);
    assert!(!yielder.is_null(), "suspend outside a simulated thread");
    // SAFETY: `yielder` was stored by the coroutine now running from the `&Yielder`
    // its closure received, which lives until that closure returns; we are inside the
    // closure (this coroutine is the one running), so the reference is valid.
    unsafe { (*yielder).suspend(()) };
    CURRENT.with(|current| current.set(yielder));
}

impl SimRun {
    pub(crate) fn new(state: Model) -> SimRun {
        SimRun {
            state: StdMutex::new(state),
            threads: StdMutex::new(ThreadBodies::default()),
            locals: loopwatch::kernel::ProcessLocals::new(),
            calls: crate::calls::CallCounts::new(),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Model> {
        crate::program::assert_not_in_program_fn();
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn thread_bodies(&self) -> std::sync::MutexGuard<'_, ThreadBodies> {
        self.threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Spawns a simulated thread running `body`: the model records it, and the
    /// scheduler starts it at its next step.
    pub(crate) fn spawn_thread(&self, name: &str, body: Box<dyn FnOnce() + Send>) -> Tid {
        let mut body = Some(body);
        self.syscall("spawn_thread", |state, tid| {
            let step = state.spawn_thread(tid, name);
            if let Attempt::Done(new) = step {
                let body = body.take().expect("spawned once");
                self.thread_bodies().unstarted.push((new, body));
            }
            step
        })
    }

    /// Waits for thread `target` to finish; its panic payload if it panicked and this
    /// is the first join.
    pub(crate) fn join_thread(&self, target: Tid) -> Result<(), Box<dyn Any + Send>> {
        if !self.syscall("join", |state, tid| state.join(tid, target)) {
            return Ok(());
        }
        let payload = self.thread_bodies().panics.remove(&target);
        payload.map_or(Ok(()), Err)
    }

    /// One kernel call: a scheduling point, then `op` until it completes. `op` runs
    /// with the model locked; the lock is never held across a switch. Signals the
    /// thread takes while the call is blocked have their handlers run when it
    /// returns; a blocked call then fails with EINTR if it can be interrupted, or
    /// restarts after the handlers (SA_RESTART).
    pub(crate) fn syscall<R: Aborted>(
        &self,
        name: &'static str,
        mut op: impl FnMut(&mut Model, Tid) -> Attempt<R>,
    ) -> R {
        let inside = in_coroutine();
        let held = loopwatch::sync::short_locks_held();
        if held > 0 && inside && !std::thread::panicking() {
            // The seam's rule: a short lock never spans a kernel call. Here it would
            // span a thread switch, so another simulated thread could find the lock
            // taken and block the only OS thread forever.
            panic!("{name} called while holding {held} short lock(s): use a BlockingMutex");
        }
        if inside && !self.lock().aborting {
            suspend();
        }
        let mut blocked = false;
        loop {
            let mut state = self.lock();
            let tid = state.current;
            match op(&mut state, tid) {
                Attempt::Done(result) => {
                    // The lag fault: a woken thread runs again late; signals it takes
                    // meanwhile have their handlers run when it does.
                    if let Some(until) = blocked.then(|| state.wake_lag()).flatten() {
                        drop(state);
                        self.hold(tid, until);
                        state = self.lock();
                    }
                    state.leave_call(tid);
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
                    let thread = state.threads.get_mut(&tid).expect("running thread");
                    thread.status = Status::Blocked(wait);
                    thread.in_call = true;
                    thread.blocked_in = name;
                    drop(state);
                    suspend();
                }
            }
        }
    }
}

impl SimRun {
    /// Keeps thread `tid`, inside a call, from running before virtual time `until`.
    fn hold(&self, tid: Tid, until: std::time::Duration) {
        loop {
            let mut state = self.lock();
            if state.aborting || state.time >= until {
                return;
            }
            let thread = state.threads.get_mut(&tid).expect("running thread");
            thread.status = Status::Blocked(crate::model::Wait::until(until));
            thread.blocked_in = "lag";
            drop(state);
            suspend();
        }
    }
}

pub(crate) struct RunResult {
    pub(crate) outcome: Outcome,
    pub(crate) threads_abandoned: usize,
    /// The threads still alive at the end, to be unwound by [`unwind_abandoned`]
    /// once the report has been taken.
    pub(crate) abandoned: Abandoned,
}

/// Threads that were alive when the process ended: suspended coroutines, and threads
/// spawned in the last step that never started.
pub(crate) struct Abandoned(Vec<Coroutine<(), (), ()>>);

/// Frees the abandoned threads: each suspended coroutine is unwound, so the values on
/// its stack are dropped and its stack is unmapped. The run is over (`aborting` is
/// set), so a destructor's kernel call is not a scheduling point and a call that would
/// block fails with `EIO` at once; the thread's own `catch_unwind` at its root ends the
/// unwinding. Threads that never started drop their bodies unrun.
pub(crate) fn unwind_abandoned(shared: &SimRun, abandoned: Abandoned) {
    debug_assert!(shared.lock().aborting, "only a finished run is torn down");
    for mut coroutine in abandoned.0 {
        coroutine.force_unwind();
    }
    let unstarted = std::mem::take(&mut shared.thread_bodies().unstarted);
    drop(unstarted);
}

fn new_coroutine(
    shared: Arc<SimRun>,
    tid: Tid,
    body: Box<dyn FnOnce() + Send>,
) -> Coroutine<(), (), ()> {
    let stack = DefaultStack::new(STACK_BYTES).expect("a simulated thread's stack can be mapped");
    Coroutine::with_stack(stack, move |yielder: &SimYielder, ()| {
        CURRENT.with(|current| current.set(yielder as *const SimYielder));
        let result = catch_unwind(AssertUnwindSafe(body));
        let mut state = shared.lock();
        let panicked = result.is_err();
        if let Err(payload) = result {
            shared.thread_bodies().panics.insert(tid, payload);
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
    })
}

/// Runs the simulation to its end.
pub(crate) fn run(shared: &Arc<SimRun>, main: Box<dyn FnOnce() + Send>) -> RunResult {
    assert!(
        !in_coroutine(),
        "a simulation cannot be started from inside another simulation"
    );
    let mut scheduler = {
        let mut state = shared.lock();
        let strategy = state.config.strategy;
        Scheduler::new(strategy, &mut state.rng)
    };
    let mut coroutines = std::collections::BTreeMap::new();
    coroutines.insert(
        MAIN_THREAD,
        new_coroutine(shared.clone(), MAIN_THREAD, main),
    );
    let mut last = None;
    let outcome = loop {
        let mut state = shared.lock();
        state.steps += 1;
        if let Some(violation) = check_model(&mut state, false) {
            break Outcome::ModelViolation(violation);
        }
        if state.steps > state.config.steps_max {
            break Outcome::StepLimit(state.config.steps_max);
        }
        if let Some(signal) = state.killed {
            break Outcome::KilledBySignal(signal);
        }
        let unstarted = std::mem::take(&mut shared.thread_bodies().unstarted);
        for (tid, body) in unstarted {
            coroutines.insert(tid, new_coroutine(shared.clone(), tid, body));
        }
        state.wake_blocked();
        let runnable: Vec<Tid> = state
            .threads
            .iter()
            .filter(|(_, t)| t.status == Status::Runnable)
            .map(|(&tid, _)| tid)
            .collect();
        if fire_event(&mut state, runnable.is_empty()) {
            continue;
        }
        if runnable.is_empty() {
            if let Some(time) = state.next_timer() {
                state.advance_to(time);
                continue;
            }
            let waiting: Vec<String> = state
                .threads
                .iter()
                .filter(|(_, t)| matches!(t.status, Status::Blocked(_)))
                .map(|(tid, t)| format!("T{tid} {:?} in {}", t.name, t.blocked_in))
                .collect();
            break Outcome::Deadlock(format!("blocked forever: {}", waiting.join(", ")));
        }
        let step = state.steps;
        let tid = scheduler.pick(&mut state.rng, &runnable, step);
        if runnable.len() > 1 && last != Some(tid) {
            state.log_event(format_args!("switch to T{tid}"));
        }
        last = Some(tid);
        state.current = tid;
        drop(state);
        let coroutine = coroutines
            .get_mut(&tid)
            .expect("a coroutine per live thread");
        let result = coroutine.resume(());
        CURRENT.with(|current| current.set(std::ptr::null()));
        if let CoroutineResult::Return(()) = result {
            coroutines.remove(&tid);
            if tid == MAIN_THREAD {
                let main_panic = shared.thread_bodies().panics.remove(&MAIN_THREAD);
                break match main_panic {
                    Some(payload) => Outcome::Panicked(panic_text(&*payload)),
                    None => match check_model(&mut shared.lock(), true) {
                        Some(violation) => Outcome::ModelViolation(violation),
                        None => Outcome::Completed,
                    },
                };
            }
        }
    };
    shared.lock().aborting = true;
    // Threads still alive when the process ends stop where they stand, as in a
    // process exit; they are unwound after the report is taken.
    let threads_abandoned = coroutines.len();
    RunResult {
        outcome,
        threads_abandoned,
        abandoned: Abandoned(coroutines.into_values().collect()),
    }
}
