//! Orphans: children whose registration ended without a report (their loop was closed
//! or dropped while they ran), which nobody would otherwise reap. A best-effort reaper
//! keeps them from staying zombies, as tokio's orphan queue does.
//!
//! Only children watched through a pidfd are taken: the pidfd names the process for
//! its whole life, so reaping it (`waitid(P_PIDFD)`) can never take a later child that
//! reused its pid. A child that has exited when it is orphaned is reaped at once; one
//! still running waits in the process's queue (one per process, in its
//! [`ProcessLocals`](crate::kernel::ProcessLocals)) until the next time a watcher that
//! reaps orphans registers or reaps a child, or is closed.

use std::sync::Arc;

use super::{ReapFence, SharedPidfd};
use crate::kernel::{Errno, Kernel, Pid, WaitMode, WaitStatus};
use crate::loom::sync::Mutex;

/// A child nobody waits for any more, with the pidfd that names it and its reap fence,
/// if its [`Process`](crate::Process) may still be signalled.
struct Orphan<K: Kernel> {
    pid: Pid,
    pidfd: SharedPidfd<K>,
    fence: Option<ReapFence<K>>,
}

/// The process's orphans that are still running.
pub(crate) struct Orphans<K: Kernel> {
    /// A short lock: orphans are taken out before any kernel call, and their pidfds
    /// closed with it released.
    queue: Mutex<Vec<Orphan<K>>>,
}

impl<K: Kernel> Orphans<K> {
    /// The orphan queue of `kernel`'s process.
    pub(crate) fn of(kernel: &K) -> Arc<Orphans<K>> {
        kernel.process_locals().get_or_init(|| Orphans {
            queue: Mutex::new(Vec::new()),
        })
    }

    /// Takes `pid`, watched through `pidfd`, as an orphan: reaped now if it has exited,
    /// else queued. Its `fence` is marked when it is reaped.
    pub(crate) fn adopt(
        &self,
        kernel: &K,
        pid: Pid,
        pidfd: SharedPidfd<K>,
        fence: Option<ReapFence<K>>,
    ) {
        if let Some(orphan) = try_reap(kernel, Orphan { pid, pidfd, fence }) {
            self.queue.lock().push(orphan);
        }
    }

    /// Reaps every queued orphan that has exited; keeps the others.
    pub(crate) fn reap(&self, kernel: &K) {
        let queued = std::mem::take(&mut *self.queue.lock());
        if queued.is_empty() {
            return;
        }
        let left: Vec<Orphan<K>> = queued
            .into_iter()
            .filter_map(|orphan| try_reap(kernel, orphan))
            .collect();
        if !left.is_empty() {
            self.queue.lock().extend(left);
        }
    }

    /// How many orphans are queued, still running.
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().len()
    }
}

/// One `waitid(P_PIDFD, WNOHANG)` for `orphan`: `None` once it is gone (reaped now, or
/// by someone else before), the orphan back while it runs. On a kernel without
/// `P_PIDFD` (`EINVAL`) it is let go, unreaped: reaping by pid could take a newcomer
/// that reused the pid.
fn try_reap<K: Kernel>(kernel: &K, orphan: Orphan<K>) -> Option<Orphan<K>> {
    let mut guard = orphan.fence.as_ref().map(ReapFence::lock);
    let outcome = loop {
        match kernel.wait_pidfd(orphan.pidfd.fd(), WaitMode::NoHang) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    if matches!(outcome, Ok(WaitStatus::Terminated(..)) | Err(Errno::ECHILD)) {
        if let Some(guard) = guard.as_mut() {
            guard.mark_reaped();
        }
    }
    drop(guard);
    match outcome {
        Ok(WaitStatus::StillAlive) => Some(orphan),
        Ok(WaitStatus::Terminated(_, status)) => {
            tracing::debug!(
                target: super::DIAGNOSTICS,
                pid = orphan.pid.0,
                "orphaned child {} reaped (returncode {})",
                orphan.pid.0,
                status.returncode()
            );
            None
        }
        Err(Errno::ECHILD) => None,
        Err(errno) => {
            tracing::debug!(
                target: super::DIAGNOSTICS,
                pid = orphan.pid.0,
                "orphaned child {} cannot be reaped through its pidfd ({errno}): left",
                orphan.pid.0
            );
            if errno == Errno::EINVAL {
                // No P_PIDFD: let go, as before orphans were reaped.
                None
            } else {
                Some(orphan)
            }
        }
    }
}
