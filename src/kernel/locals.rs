//! [`ProcessLocals`]: the one place a kernel keeps state for the code above it.
//!
//! asyncio keeps some state per process in module globals: the policy slot, the running
//! loop of each thread, the signal wiring of the loops. Above the seam that state
//! belongs to the module that owns it; the kernel only offers a slot per type for each
//! process it serves, so that each simulated process has its own and the real OS one.
//! The kernel never looks inside: the seam names no type above it.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::loom::sync::Mutex;

type Slot = Arc<dyn Any + Send + Sync>;

/// How often [`ProcessLocals::clear`] drops what the previous round's drops stored:
/// each round can only be caused by a `Drop` of the round before, and no chain of
/// owners in this crate is deeper than this.
const CLEAR_ROUNDS: usize = 8;

/// Per-process values keyed by their type, created on first use.
///
/// A kernel hands out one `ProcessLocals` per process it serves
/// ([`Kernel::process_locals`](super::Kernel::process_locals)). A simulator calls
/// [`ProcessLocals::clear`] when its process ends, which drops every value: the values
/// may hold the kernel itself (a policy holds loops, a loop holds its kernel), and
/// without the clear that would be a reference cycle.
pub struct ProcessLocals {
    slots: Mutex<BTreeMap<TypeId, Slot>>,
}

impl Default for ProcessLocals {
    fn default() -> Self {
        ProcessLocals::new()
    }
}

impl ProcessLocals {
    /// An empty store.
    pub fn new() -> ProcessLocals {
        ProcessLocals {
            slots: Mutex::new(BTreeMap::new()),
        }
    }

    /// The process's value of type `T`, made by `init` if there is none yet.
    ///
    /// `init` runs without the store's lock held, so it may make kernel calls or use
    /// other slots; if two threads race, the first value stored wins and the other is
    /// dropped.
    pub fn get_or_init<T, F>(&self, init: F) -> Arc<T>
    where
        T: Any + Send + Sync,
        F: FnOnce() -> T,
    {
        if let Some(value) = self.get::<T>() {
            return value;
        }
        let made: Slot = Arc::new(init());
        let slot = self
            .slots
            .lock()
            .entry(TypeId::of::<T>())
            .or_insert(made)
            .clone();
        Arc::downcast(slot).expect("slots are keyed by their type")
    }

    /// The process's value of type `T`, if one was made.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let slot = self.slots.lock().get(&TypeId::of::<T>())?.clone();
        Some(Arc::downcast(slot).expect("slots are keyed by their type"))
    }

    /// Drops every value: the process is over. Values are dropped with the store's
    /// lock released, so a value's `Drop` may use the store again (a loop dropped with
    /// the policy gives back its signal wiring); what such a `Drop` stores is dropped
    /// in a further round, up to a fixed number of rounds.
    pub fn clear(&self) {
        for _ in 0..CLEAR_ROUNDS {
            let slots = std::mem::take(&mut *self.slots.lock());
            if slots.is_empty() {
                return;
            }
            drop(slots);
        }
    }
}

impl fmt::Debug for ProcessLocals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessLocals")
            .field("slots", &self.slots.lock().len())
            .finish()
    }
}
