//! The driver: runs simulated threads and decides which one goes when.
//!
//! A kernel call from a simulated thread first reaches a scheduling point, then
//! performs its operation on the model. An operation that blocks marks the thread
//! blocked; the thread retries after the model changes, its deadline passes, or a
//! signal interrupts it. When no thread can run, due child events and pending signals
//! fire, then virtual time advances to the next timer; with nothing left to wait for,
//! the run ends in a deadlock report.
//!
//! Two drivers run the same model:
//! - [`coroutine`] (normally): stackful coroutines on the calling OS thread, picked by
//!   the seeded scheduler, so the seed alone decides the order;
//! - `loom_threads` (under `--cfg loom`): loom's threads, mutex and condition
//!   variables, so that loom explores the orders exhaustively, up to its preemption
//!   bound, over the real loop, watcher and policy code.

use crate::model::Model;

#[cfg(not(loom))]
mod coroutine;
#[cfg(not(loom))]
pub(crate) use coroutine::{SimRun, run, unwind_abandoned};

#[cfg(loom)]
mod loom_threads;
#[cfg(loom)]
pub(crate) use loom_threads::{SimRun, run, unwind_abandoned};

/// The value a call gives when the run is being torn down and it cannot block.
pub(crate) trait Aborted {
    fn aborted() -> Self;
}

impl<T> Aborted for Result<T, loopwatch::kernel::Errno> {
    fn aborted() -> Self {
        // What a call that would block gets once the run is over, so that code left
        // running ends instead of retrying.
        Err(loopwatch::kernel::Errno::EIO)
    }
}

impl Aborted for () {
    fn aborted() -> Self {}
}

impl Aborted for bool {
    fn aborted() -> Self {
        false
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The main thread returned.
    Completed,
    /// The main thread panicked; the message is the panic's.
    Panicked(String),
    /// Every thread waits for something that can no longer happen.
    Deadlock(String),
    /// The run took more scheduling steps than allowed.
    StepLimit(u64),
    /// A signal whose default action is to terminate reached the process.
    KilledBySignal(i32),
    /// The simulator's model broke one of its own invariants (see
    /// [`Config::check_model`](crate::Config::check_model)): a bug of the simulator,
    /// not of the code under test. The violation is also the last `model.*` entry of
    /// the ledger.
    ModelViolation(crate::Violation),
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Fires one due child event or pending signal, if the dice (or `force`) say so, and
/// says whether it did.
fn fire_event(state: &mut Model, force: bool) -> bool {
    let children = state.due_children();
    let signals = state.deliverable();
    let count = children.len() + signals.len();
    if count == 0 {
        return false;
    }
    let chance = state.config.event_chance;
    if !force && !state.rng.chance(chance) {
        return false;
    }
    let pick = state.rng.below(count as u64) as usize;
    if pick < children.len() {
        state.step_child(children[pick]);
    } else {
        let signal = signals[pick - children.len()].0;
        let target = state.signal_target(signal);
        state.deliver(signal, target);
    }
    true
}

/// When the run checks its model and a check is due (or `force`d): the first broken
/// invariant, recorded in the ledger.
fn check_model(state: &mut Model, force: bool) -> Option<crate::Violation> {
    if !state.config.check_model || !(force || state.check_due()) {
        return None;
    }
    let (rule, detail) = state.check_model()?;
    Some(state.violation(rule, detail))
}
