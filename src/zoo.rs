//! Mutants: loopwatch's own components with one historical bug put back, for the bug
//! hunt to find (`cargo loopwatch zoo`).
//!
//! Each [`Mutant`] is a small, documented variant of the real code at one point of it,
//! switched on per process of a kernel with [`set_mutant`] (for the simulator, per
//! simulated process, so runs side by side do not see each other's mutant). The points
//! are compiled only with the `zoo` cargo feature, which the conformance crate enables;
//! without it `active` is a constant `false` and no mutant can be switched on.
//!
//! Every mutant names the bug it re-creates: a CPython issue, or a defect loopwatch
//! itself once had (a "reliability finding", whose regression test is named
//! `finding_NN_…`).

#![cfg_attr(
    not(feature = "zoo"),
    allow(
        dead_code,
        unreachable_pub,
        reason = "public only with the zoo feature"
    )
)]

use std::fmt;

use crate::kernel::Kernel;

/// A historical bug, put back into one component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Mutant {
    /// MultiLoop hands an exit to the child's loop without waking it, so a loop idle
    /// in its poll never runs the callback (bpo-38323).
    MultiLoopNoWake,
    /// Threaded's waiter waits on a pid that someone else reaped, after the pid may
    /// have been given to a new child, and reaps that stranger (bpo-42110).
    WaiterReusedPid,
    /// `Process::kill`/`terminate`/`send_signal` signal the pid after the child was
    /// reaped, hitting whatever process holds the pid now (gh-127049).
    KillAfterReap,
    /// Fast keeps waiting for a child that someone else reaped: its `waitpid(-1)` pass
    /// retries on `ECHILD` instead of ending, and the loop never gets control back.
    FastHangsOnStolen,
    /// `call_soon_threadsafe` queues the callback without writing to the loop's
    /// waker, so a loop asleep in its poll does not run it.
    ThreadsafeNoWake,
    /// Safe's `add_child_handler` does not poll the child at once, so a child that
    /// exited before it was registered is never reported (CPython's
    /// `test_sigchld_race_condition`).
    SafeNoInitialPoll,
    /// Threaded starts a second waiter thread when a pid is registered again; the
    /// second finds the child gone and reports 255, or both report.
    ThreadedDoubleWaiter,
    /// Fast forgets an exit it reaped before the child was registered (its zombie
    /// table), so a child that exits before `add_child_handler` is never reported.
    FastLostEarlyExit,
    /// MultiLoop's SIGCHLD pass runs again while one is in progress (re-entrant
    /// handler, no pass lock); the inner pass reaps a child, the outer gets `ECHILD`
    /// for it and reports 255 for a child that exited 0 (CPython 3.11–3.13).
    MultiLoopReentrant255,
    /// A closed loop leaves its signal wakeup fd set; once the fd number is reused,
    /// signals write bytes into an unrelated file (reliability findings 1 and 2).
    StaleWakeupFd,
    /// Threaded marks a child reaped only when the exit reaches the loop, not when it
    /// reaps it, so a signal sent in between can reach a reused pid (finding 3).
    ReapedAfterHop,
    /// A callback that panics ends the watcher's pass: the exits coalesced into the
    /// same SIGCHLD are left unreported (finding 9).
    PanicEndsPass,
    /// Pidfd's reader does not handle `ECHILD` when someone else reaped the child: it
    /// returns early, the callback is never called and the pidfd stays open
    /// (CPython 3.9's `PidfdChildWatcher._do_wait`).
    PidfdUnhandledEchild,
    /// MultiLoop's `close` waits for its pipe to reach end-of-file, which never comes
    /// while a child that inherited the write end lives (finding 11).
    MultiLoopCloseWaitsInheritedPipe,
}

impl Mutant {
    /// Every mutant.
    pub const ALL: [Mutant; 14] = [
        Mutant::MultiLoopNoWake,
        Mutant::WaiterReusedPid,
        Mutant::KillAfterReap,
        Mutant::FastHangsOnStolen,
        Mutant::ThreadsafeNoWake,
        Mutant::SafeNoInitialPoll,
        Mutant::ThreadedDoubleWaiter,
        Mutant::FastLostEarlyExit,
        Mutant::MultiLoopReentrant255,
        Mutant::StaleWakeupFd,
        Mutant::ReapedAfterHop,
        Mutant::PanicEndsPass,
        Mutant::PidfdUnhandledEchild,
        Mutant::MultiLoopCloseWaitsInheritedPipe,
    ];

    /// Its name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::MultiLoopNoWake => "multi-loop-no-wake",
            Mutant::WaiterReusedPid => "waiter-reused-pid",
            Mutant::KillAfterReap => "kill-after-reap",
            Mutant::FastHangsOnStolen => "fast-hangs-on-stolen",
            Mutant::ThreadsafeNoWake => "threadsafe-no-wake",
            Mutant::SafeNoInitialPoll => "safe-no-initial-poll",
            Mutant::ThreadedDoubleWaiter => "threaded-double-waiter",
            Mutant::FastLostEarlyExit => "fast-lost-early-exit",
            Mutant::MultiLoopReentrant255 => "multi-loop-reentrant-255",
            Mutant::StaleWakeupFd => "stale-wakeup-fd",
            Mutant::ReapedAfterHop => "reaped-after-hop",
            Mutant::PanicEndsPass => "panic-ends-pass",
            Mutant::PidfdUnhandledEchild => "pidfd-unhandled-echild",
            Mutant::MultiLoopCloseWaitsInheritedPipe => "multi-loop-close-waits-inherited-pipe",
        }
    }

    /// The bug it re-creates: a CPython issue or a loopwatch finding.
    pub fn origin(self) -> &'static str {
        match self {
            Mutant::MultiLoopNoWake => "bpo-38323",
            Mutant::WaiterReusedPid => "bpo-42110",
            Mutant::KillAfterReap => "gh-127049",
            Mutant::FastHangsOnStolen => "Fast and a foreign reaper",
            Mutant::ThreadsafeNoWake => "lost wake-up",
            Mutant::SafeNoInitialPoll => "test_sigchld_race_condition",
            Mutant::ThreadedDoubleWaiter => "Threaded double registration",
            Mutant::FastLostEarlyExit => "Fast's reap/register race",
            Mutant::MultiLoopReentrant255 => "MultiLoop re-entrant handler (3.11-3.13)",
            Mutant::StaleWakeupFd => "findings 1-2",
            Mutant::ReapedAfterHop => "finding 3",
            Mutant::PanicEndsPass => "finding 9",
            Mutant::PidfdUnhandledEchild => "CPython 3.9 PidfdChildWatcher",
            Mutant::MultiLoopCloseWaitsInheritedPipe => "finding 11",
        }
    }

    /// Parses [`Mutant::name`].
    pub fn parse(text: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == text)
    }
}

impl fmt::Display for Mutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The mutant switched on for one process of a kernel.
#[cfg(feature = "zoo")]
#[derive(Debug)]
struct Switched(crate::loom::sync::Mutex<Option<Mutant>>);

/// Written out: the loom shim's `Mutex` has no `Default`.
#[cfg(feature = "zoo")]
impl Default for Switched {
    fn default() -> Switched {
        Switched(crate::loom::sync::Mutex::new(None))
    }
}

/// Whether a mutant was ever switched on in this OS process: the points cost one
/// relaxed load until one is.
#[cfg(feature = "zoo")]
static EVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Switches `mutant` on (or, with `None`, every mutant off) for `kernel`'s process.
#[cfg(feature = "zoo")]
pub fn set_mutant<K: Kernel>(kernel: &K, mutant: Option<Mutant>) {
    if mutant.is_some() {
        EVER.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let switched = kernel.process_locals().get_or_init(Switched::default);
    *switched.0.lock() = mutant;
}

/// The mutant switched on for `kernel`'s process, if any.
#[cfg(feature = "zoo")]
pub fn mutant<K: Kernel>(kernel: &K) -> Option<Mutant> {
    if !EVER.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let switched = kernel.process_locals().get::<Switched>()?;
    *switched.0.lock()
}

/// Whether `mutant` is switched on for `kernel`'s process: always `false` without the
/// `zoo` feature.
#[inline]
pub(crate) fn active<K: Kernel>(kernel: &K, mutant: Mutant) -> bool {
    #[cfg(feature = "zoo")]
    {
        self::mutant(kernel) == Some(mutant)
    }
    #[cfg(not(feature = "zoo"))]
    {
        let _ = (kernel, mutant);
        false
    }
}
