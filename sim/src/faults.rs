//! Fault plans: kernel behaviours that are legal but rare, switched on per scenario
//! and fired by the seed.

/// What may go wrong in a run. Everything is off by default; each field is either a
/// switch or the probability that the fault fires at a point where it can.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    /// Probability that a blocking call (poll, wait, sleep, pipe read/write) returns
    /// `EINTR` instead of blocking, as after a signal handler without `SA_RESTART`.
    pub eintr: f64,
    /// `pidfd_open` answers `ENOSYS`, as on kernels before 5.3; a spawn that asks for
    /// a pidfd fails with `ENOSYS` too (such a kernel has no `CLONE_PIDFD` either).
    pub pidfd_enosys: bool,
    /// A spawn that asks for a pidfd ([`SpawnRequest::pidfd`](loopwatch::kernel::SpawnRequest::pidfd))
    /// answers `ENOSYS` before creating anything, as on a system without
    /// `CLONE_PIDFD`; `pidfd_open` still works.
    pub spawn_pidfd_enosys: bool,
    /// `pidfd_open` answers `EPERM`, as under a seccomp filter.
    pub pidfd_eperm: bool,
    /// `pidfd_open` answers `EINVAL`, as a kernel that refuses its flags does.
    pub pidfd_einval: bool,
    /// `waitid(P_ALL, WEXITED | WNOWAIT)` (a peek at any child,
    /// `wait_peek(WaitTarget::Any, …)`) answers `EINVAL`, as on a system whose
    /// `waitid` does not take `WNOWAIT` there. Peeks at one pid or pidfd still work.
    pub wait_peek_einval: bool,
    /// The process's fd limit (`RLIMIT_NOFILE`); `None` for the default of 1024.
    pub fd_limit: Option<usize>,
    /// Probability that `spawn` fails with `EAGAIN` (no pids, no memory).
    pub spawn_eagain: f64,
    /// Probability that a blocking poll returns early with no events.
    pub spurious_wakeup: f64,
    /// Probability, per child, that it exits as soon as it is spawned, before the
    /// parent can register it anywhere.
    pub exit_before_registration: f64,
    /// Probability, per SIGCHLD delivery, that foreign code reaps one zombie child
    /// between the signal and the watcher's wait.
    pub foreign_reap_on_sigchld: f64,
    /// Probability, per child exit, that foreign code (another library's thread
    /// blocked in `waitpid(-1)`) reaps the zombie at once, before anything of the
    /// process can wait for it. Unlike [`FaultPlan::foreign_reap_on_sigchld`] it needs
    /// no SIGCHLD delivery, so it reaches the watchers that leave SIGCHLD alone
    /// (Threaded, Pidfd, Auto).
    pub foreign_reap_on_exit: f64,
    /// Probability that a process-directed signal is taken by another thread that
    /// does not block it, rather than by the one Linux tries first (the thread that
    /// spawned the exiting child, the main thread for `kill()`). Legal: Linux passes
    /// over a thread that already has a signal waiting, and a thread running on
    /// another CPU may dequeue the shared signal before the chosen one wakes.
    pub signal_other_thread: f64,
    /// Scheduling delays, as on a loaded machine: each child starts running up to
    /// this late, and a thread whose blocking call completes runs again up to this
    /// late (at 3 wake-ups in 10). Code and scenarios must not depend on timing
    /// margins smaller than this. Zero (the default) for none.
    pub lag: std::time::Duration,
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }
}
