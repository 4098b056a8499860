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
    /// MultiLoop's reaper hands an exit to the child's loop with `call_soon`, which
    /// does not wake it, instead of `call_soon_threadsafe`: asyncio's `call_soon` would
    /// queue the callback for a loop that sleeps on in its poll; loopwatch's refuses a
    /// call from another thread while the loop runs, and the exit is dropped with the
    /// "Loop … is closed" warning. Either way a loop waiting in another thread never
    /// runs the callback (bpo-38323, spec M-8).
    MultiLoopNoWake,
    /// Threaded's waiter, once its peek has seen the child exit, reaps it with a
    /// blocking `waitpid(pid)` (CPython's `waitpid(pid, 0)`) instead of `WNOHANG`: if
    /// someone else reaped the child in between and the pid went to a new child, the
    /// waiter waits for that stranger, reaps it and reports its status as the child's
    /// (bpo-42110; its form before the peek is spec T-8, which no waiter by pid avoids).
    WaiterReusedPid,
    /// `Process::kill`/`terminate`/`send_signal` signal the raw pid whatever the
    /// child's state, neither checking that it was not reaped nor using its pidfd: once
    /// the child is reaped (by the watcher or by other code) the signal hits whatever
    /// process holds the pid now (gh-127049).
    KillAfterReap,
    /// Fast keeps waiting for a registered child that someone else reaped: its
    /// `waitpid(-1)` pass retries on `ECHILD` while a child is registered instead of
    /// ending, and the loop never gets control back.
    FastHangsOnStolen,
    /// `call_soon_threadsafe` (and so every hop from another thread: a task woken
    /// there, a watcher's exit) queues the callback without writing to the loop's
    /// waker, so a loop asleep in its poll does not run it until something else wakes
    /// it, if ever.
    ThreadsafeNoWake,
    /// Safe's `add_child_handler` does not poll the child at once, so a child that
    /// exited before it was registered (its SIGCHLD handled or lost already) is never
    /// reported and stays a zombie (CPython's `test_sigchld_race_condition`).
    SafeNoInitialPoll,
    /// Threaded registers each child twice: two waiter threads race for it. One reaps
    /// it, the other finds it gone and warns "Unknown child process pid …"; the
    /// callback runs once, with whichever report reaches the loop first, so a child
    /// that exited 0 may be reported as 255.
    ThreadedDoubleWaiter,
    /// Fast forgets an exit it reaped before the child was registered (its zombie
    /// table): the exit is logged as an unknown pid's, so a child that exits before
    /// `add_child_handler` is never reported (spec F-4).
    FastLostEarlyExit,
    /// MultiLoop polls a pid outside its lock, so its passes are not serialised, as
    /// with CPython 3.11–3.13's re-entrant handler: when two overlap (the reaper's and
    /// `add_child_handler`'s immediate poll), one reaps the child, the other gets
    /// `ECHILD`, and if that one takes the callback first, a child that exited 0 is
    /// reported as 255.
    MultiLoopReentrant255,
    /// A closed loop leaves its signals with loopwatch's handler and the process's
    /// wakeup fd on the pipe it closed, instead of handing them back to the loop before
    /// it or to what the OS had; once the fd number is reused, each of those signals
    /// writes a byte into an unrelated file (reliability finding 1).
    StaleWakeupFd,
    /// Threaded marks a child reaped only when the exit reaches the loop, not when it
    /// reaps it, so a signal sent in between can reach a reused pid (finding 3).
    ReapedAfterHop,
    /// A callback that panics ends Safe's or Fast's pass: the exits coalesced into the
    /// same SIGCHLD are left unreported, their children zombies (finding 9).
    PanicEndsPass,
    /// Pidfd's reader does not handle `ECHILD` when someone else reaped the child: the
    /// error leaves the reader for the loop's exception handler, the callback is never
    /// called and the pidfd stays open (CPython 3.9's `PidfdChildWatcher._do_wait`).
    PidfdUnhandledEchild,
    /// MultiLoop's `close` waits for its pipe to reach end-of-file, which never comes
    /// while a child that inherited the write end lives (finding 11).
    MultiLoopCloseWaitsInheritedPipe,
    /// `subprocess_exec` spawns without a pidfd and opens one with `pidfd_open` after
    /// the spawn, as CPython's Pidfd watcher does: a foreign `waitpid(-1)` that reaps
    /// the child in between frees its pid, and the pidfd then names whatever process
    /// took the pid (or nothing), so `send_signal` and the watcher reach a stranger.
    SpawnPidfdLate,
    /// Waitid's pass reaps whatever child its `waitid(WNOWAIT)` peek names, as Fast's
    /// `waitpid(-1)` does, instead of only its own: a child that other code spawned and
    /// waits for is reaped here, and its owner's `waitpid` gets ECHILD (spec I-2).
    WaitidReapsForeign,
}

impl Mutant {
    /// Every mutant.
    pub const ALL: [Mutant; 16] = [
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
        Mutant::SpawnPidfdLate,
        Mutant::WaitidReapsForeign,
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
            Mutant::SpawnPidfdLate => "spawn-pidfd-late",
            Mutant::WaitidReapsForeign => "waitid-reaps-foreign",
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
            Mutant::StaleWakeupFd => "finding 1",
            Mutant::ReapedAfterHop => "finding 3",
            Mutant::PanicEndsPass => "finding 9",
            Mutant::PidfdUnhandledEchild => "CPython 3.9 PidfdChildWatcher",
            Mutant::MultiLoopCloseWaitsInheritedPipe => "finding 11",
            Mutant::SpawnPidfdLate => "the spawn-to-pidfd_open window",
            Mutant::WaitidReapsForeign => "a stealing O(1) pass",
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
    // Not under loom: a model's executions must take the same steps whatever another
    // model running beside it in the process switches on.
    #[cfg(not(loom))]
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
