//! The small helpers process tests keep writing.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use loopwatch::kernel::{Errno, Kernel, Pid, SpawnRequest, WaitMode, WaitStatus};

use crate::SimKernel;

/// `/bin/sh -c script`. The simulator runs the shell subset documented in
/// [`program`](crate::program) (`exit N`, `kill -SIG $$`, `sleep S`, `echo …`,
/// `$NAME`, `$((…))`, `;` between them …).
///
/// ```
/// let request = loopwatch_sim::testing::sh("sleep 1; exit 3");
/// assert_eq!(request.args, ["-c", "sleep 1; exit 3"]);
/// ```
pub fn sh(script: &str) -> SpawnRequest {
    SpawnRequest::new("/bin/sh", ["-c", script])
}

/// Spawns `/bin/sh -c script` on `kernel` and returns its pid; panics, naming the
/// script, if the spawn fails.
///
/// ```
/// use loopwatch_sim::testing::{reap, spawn_sh};
///
/// let pid = spawn_sh(&loopwatch::OsKernel, "exit 2");
/// assert_eq!(reap(&loopwatch::OsKernel, pid), 2);
/// ```
pub fn spawn_sh<K: Kernel>(kernel: &K, script: &str) -> Pid {
    match kernel.spawn(&sh(script)) {
        Ok(child) => child.pid,
        Err(errno) => panic!("spawning `sh -c {script:?}` failed: {errno:?}"),
    }
}

/// Waits for child `pid` (retrying after `EINTR`) and returns its returncode as
/// asyncio computes it (the exit code, or `-signal`); panics if `pid` cannot be
/// waited for (not a child, or reaped by other code).
pub fn reap<K: Kernel>(kernel: &K, pid: Pid) -> i32 {
    loop {
        match kernel.wait_pid(pid, WaitMode::Block) {
            Ok(WaitStatus::Terminated(got, status)) => {
                assert_eq!(got, pid, "waitpid({pid}) reaped another child");
                return status.returncode();
            }
            Err(Errno::EINTR) => continue,
            other => panic!("waitpid({pid}) gave {other:?}"),
        }
    }
}

/// Marks a point in the simulator's trace ([`SimKernel::note`]); nothing on the real
/// OS, which keeps no trace. Not a kernel call, so a note does not change the
/// schedule.
///
/// ```
/// use loopwatch::kernel::Kernel;
/// use loopwatch_sim::Simulation;
/// use loopwatch_sim::testing::note;
///
/// fn phases<K: Kernel>(kernel: &K) {
///     note(kernel, "setup done");
/// }
///
/// phases(&loopwatch::OsKernel);
/// let report = Simulation::new(0).run(|k| phases(&k));
/// assert!(report.trace.text().contains("note setup done"));
/// ```
pub fn note<K: Kernel>(kernel: &K, text: &str) {
    if let Some(sim) = (kernel as &dyn Any).downcast_ref::<SimKernel>() {
        sim.note(text);
    }
}

#[allow(
    clippy::disallowed_types,
    reason = "a test's record: held to push or copy, never across a kernel call"
)]
type StdMutex<T> = std::sync::Mutex<T>;

/// A record a test's callbacks append to, from any thread: a shared `Vec` behind a
/// lock that a panic elsewhere does not poison. Its lock is held only inside its own
/// methods, never across a kernel call.
///
/// ```
/// use loopwatch_sim::testing::Log;
///
/// let log = Log::new();
/// let writer = log.clone();
/// writer.push("exited 3");
/// assert_eq!(log.snapshot(), ["exited 3"]);
/// assert_eq!(log.take(), ["exited 3"]);
/// assert!(log.is_empty());
/// ```
pub struct Log<T>(Arc<StdMutex<Vec<T>>>);

impl<T> Log<T> {
    /// An empty record.
    pub fn new() -> Log<T> {
        Log(Arc::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends `item`.
    pub fn push(&self, item: T) {
        self.lock().push(item);
    }

    /// Everything so far, emptying the record.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.lock())
    }

    /// How many items there are.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl<T: Clone> Log<T> {
    /// A copy of everything so far.
    pub fn snapshot(&self) -> Vec<T> {
        self.lock().clone()
    }
}

impl<T> Clone for Log<T> {
    fn clone(&self) -> Log<T> {
        Log(self.0.clone())
    }
}

impl<T> Default for Log<T> {
    fn default() -> Log<T> {
        Log::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for Log<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.lock().iter()).finish()
    }
}
