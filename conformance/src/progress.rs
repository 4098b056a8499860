//! How a long run reports its progress: phases, each with a number of steps.

/// Hears about a run's phases and steps. Steps may be reported from several threads
/// at once (simulator runs and CPython interpreters run in parallel).
pub trait Progress: Sync {
    /// A phase begins: `name` (`"OS and simulator runs"` …) with `total` steps.
    fn phase(&self, name: &str, total: usize);
    /// One step of the current phase is done; `what` names it.
    fn step(&self, what: &str);
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _name: &str, _total: usize) {}
    fn step(&self, _what: &str) {}
}
