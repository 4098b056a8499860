//! How many calls each kind of the `Kernel` seam's methods has had in one run: see
//! [`SimKernel::call_counts`](crate::SimKernel::call_counts).
//!
//! Counted with plain atomics beside the model rather than in it: counting takes no
//! lock, so it changes neither the schedule nor, under loom, the executions explored.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A method of the `Kernel` seam that [`SimKernel`](crate::SimKernel) counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    Now,
    Sleep,
    Pipe,
    Read,
    Write,
    Close,
    SetNonblocking,
    SetCloexec,
    NewPoller,
    Register,
    Reregister,
    Deregister,
    Poll,
    Wake,
    Spawn,
    WaitPid,
    WaitAny,
    WaitPeek,
    WaitPidfd,
    WaitJobPeek,
    TakeJob,
    Kill,
    PidfdOpen,
    PidfdSendSignal,
    Getpid,
    SetDisposition,
    Disposition,
    ChainForeign,
    SetWakeupFd,
    Raise,
    BlockSignal,
    UnblockSignal,
    SpawnThread,
    JoinThread,
    CurrentThread,
    CurrentThreadName,
    IsMainThread,
    NewMonitor,
    MonitorEnter,
    MonitorExit,
    MonitorWait,
    MonitorNotifyAll,
}

/// Each [`Call`]'s name, in the enum's order: the seam method's name, prefixed with
/// `monitor_` for the methods of a `Monitor`.
const NAMES: [&str; 42] = [
    "now",
    "sleep",
    "pipe",
    "read",
    "write",
    "close",
    "set_nonblocking",
    "set_cloexec",
    "new_poller",
    "register",
    "reregister",
    "deregister",
    "poll",
    "wake",
    "spawn",
    "wait_pid",
    "wait_any",
    "wait_peek",
    "wait_pidfd",
    "wait_job_peek",
    "take_job",
    "kill",
    "pidfd_open",
    "pidfd_send_signal",
    "getpid",
    "set_disposition",
    "disposition",
    "chain_foreign",
    "set_wakeup_fd",
    "raise",
    "block_signal",
    "unblock_signal",
    "spawn_thread",
    "join_thread",
    "current_thread",
    "current_thread_name",
    "is_main_thread",
    "new_monitor",
    "monitor_enter",
    "monitor_exit",
    "monitor_wait",
    "monitor_notify_all",
];

/// One run's counts, shared by every handle of the run.
#[derive(Debug)]
pub(crate) struct CallCounts {
    counts: [AtomicU64; NAMES.len()],
}

impl CallCounts {
    pub(crate) fn new() -> CallCounts {
        CallCounts {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    #[inline]
    pub(crate) fn count(&self, call: Call) {
        self.counts[call as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The calls made so far, by name; kinds not called yet are left out.
    pub(crate) fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        NAMES
            .iter()
            .zip(&self.counts)
            .filter_map(|(name, count)| {
                let count = count.load(Ordering::Relaxed);
                (count > 0).then_some((*name, count))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_enum() {
        assert_eq!(NAMES[Call::Now as usize], "now");
        assert_eq!(NAMES[Call::WaitPeek as usize], "wait_peek");
        assert_eq!(NAMES[Call::MonitorNotifyAll as usize], "monitor_notify_all");
        assert_eq!(Call::MonitorNotifyAll as usize, NAMES.len() - 1);
        let unique: std::collections::BTreeSet<_> = NAMES.iter().collect();
        assert_eq!(unique.len(), NAMES.len());
    }

    #[test]
    fn counts_by_kind_and_leaves_out_what_was_not_called() {
        let counts = CallCounts::new();
        assert!(counts.snapshot().is_empty());
        counts.count(Call::WaitPid);
        counts.count(Call::WaitPid);
        counts.count(Call::Poll);
        let snapshot = counts.snapshot();
        assert_eq!(snapshot.len(), 2);
        assert_eq!(snapshot["wait_pid"], 2);
        assert_eq!(snapshot["poll"], 1);
    }
}
