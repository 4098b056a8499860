//! The ledger of a run: every child's life and every signal sent to a child, as the
//! simulated kernel saw them, and the violations it found (of its own model's
//! consistency, and of rules the code under test broke that the kernel can see).
//!
//! It is always kept and small (one entry per child, per signal sent, per violation),
//! and every entry is written in constant time, so long runs do not slow down. A
//! checker reads it from [`Report::ledger`](crate::Report::ledger) after the run.
//!
//! ```
//! use loopwatch::kernel::{Processes, Signal};
//! use loopwatch_sim::{Reaper, Simulation, testing};
//!
//! let report = Simulation::new(3).run(|k| {
//!     let pid = testing::spawn_sh(&k, "sleep 5");
//!     k.kill(pid, Some(Signal::SIGTERM)).unwrap();
//!     assert_eq!(testing::reap(&k, pid), -15);
//! });
//! report.assert_completed("ledger");
//! let life = report.ledger.child(0).unwrap();
//! assert_eq!(life.program, "/bin/sh -c sleep 5");
//! assert_eq!(life.returncode, Some(-15));
//! assert_eq!(life.reaped_by, Some(Reaper::Thread("MainThread".into())));
//! assert_eq!(report.ledger.signals[0].landed_on, Some(0));
//! ```

use std::time::Duration;

use loopwatch::kernel::Pid;

/// Every child's life and every signal sent, as the kernel saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// The children of the run, indexed by their serial: `children[n].serial == n`.
    pub children: Vec<ChildLife>,
    /// The signals sent with `kill` to a pid (a child's, a free one, or the process's
    /// own) and with `pidfd_send_signal`, in the order they were sent. A call that
    /// sends nothing is not recorded: `kill(pid, 0)`, an invalid signal or pid, a
    /// bad pidfd.
    pub signals: Vec<SignalSent>,
    /// What broke, in the order found: `model.*` rules (the simulator's own
    /// consistency; the first ends the run with
    /// [`Outcome::ModelViolation`](crate::Outcome::ModelViolation)) and `kernel.*`
    /// rules (what the code under test did that the kernel can see is wrong; the run
    /// goes on): `kernel.stale-wakeup-write` and `kernel.notify-stale-write` (a
    /// signal's byte written into the file that now holds a closed fd's number),
    /// `kernel.closed-wakeup-write` (a signal's byte written to a wakeup or Notify fd
    /// that is closed: the wake-up is lost), `kernel.monitor-held-at-exit`.
    pub violations: Vec<Violation>,
}

/// One child's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildLife {
    /// The n-th child of the run, from 0: tells apart children that shared a pid.
    pub serial: u64,
    /// Its pid.
    pub pid: Pid,
    /// `argv[0]` and the arguments, joined by spaces.
    pub program: String,
    /// The name of the simulated thread that spawned it (`MainThread` for the main
    /// thread, else the name given to `spawn_thread`).
    pub spawned_by: String,
    /// Virtual time of the spawn.
    pub spawned_at: Duration,
    /// Its returncode once it ended: the exit code, or minus the signal that killed it.
    pub returncode: Option<i32>,
    /// Virtual time at which it ended (became a zombie).
    pub ended_at: Option<Duration>,
    /// Who reaped it, once reaped.
    pub reaped_by: Option<Reaper>,
    /// Virtual time at which it was reaped.
    pub reaped_at: Option<Duration>,
}

/// Who reaped a child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reaper {
    /// A wait call (`waitpid(pid)` or `waitpid(-1)`) of the simulated thread of this
    /// name.
    Thread(String),
    /// SIGCHLD was `SIG_IGN`: the kernel reaped it as it exited.
    Ignored,
    /// The [`FaultPlan::foreign_reap_on_sigchld`](crate::FaultPlan) fault (foreign code
    /// reaped it between a SIGCHLD and the watcher's wait) or
    /// [`FaultPlan::foreign_reap_on_exit`](crate::FaultPlan) (as it exited).
    ForeignFault,
    /// A foreign SIGCHLD handler ([`ForeignHandler::ReapAll`](crate::ForeignHandler))
    /// reaped it, running in the simulated thread of this name.
    ForeignHandler(String),
}

/// How a signal was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalVia {
    /// `kill(pid, signal)`.
    Kill,
    /// `pidfd_send_signal(pidfd, signal)`.
    Pidfd,
}

/// One signal sent to a pid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalSent {
    /// The signal number.
    pub signal: i32,
    /// The pid it was sent to (for a pidfd, the pid the pidfd was opened for).
    pub pid: Pid,
    /// The name of the simulated thread that sent it.
    pub by: String,
    /// The call that sent it.
    pub via: SignalVia,
    /// Virtual time of the call.
    pub at: Duration,
    /// The scheduling step of the call.
    pub step: u64,
    /// The serial of the child it reached (running or zombie); `None` when the call
    /// failed with `ESRCH` or the pid is not a child (the process's own pid).
    pub landed_on: Option<u64>,
}

/// A broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The scheduling step at which it was found.
    pub step: u64,
    /// The rule's name: `model.…` for the simulator's own consistency, `kernel.…` for
    /// what the code under test did.
    pub rule: &'static str,
    /// What was found.
    pub detail: String,
}

impl Ledger {
    /// The child with `serial`.
    pub fn child(&self, serial: u64) -> Option<&ChildLife> {
        usize::try_from(serial)
            .ok()
            .and_then(|index| self.children.get(index))
    }

    /// The children that had `pid`, oldest first.
    pub fn by_pid(&self, pid: Pid) -> impl Iterator<Item = &ChildLife> {
        self.children.iter().filter(move |life| life.pid == pid)
    }

    /// The violations of rule `rule`.
    pub fn violations_of<'a>(&'a self, rule: &'a str) -> impl Iterator<Item = &'a Violation> {
        self.violations.iter().filter(move |v| v.rule == rule)
    }

    /// The life of the child with `serial`, to update (the model's bookkeeping).
    pub(crate) fn child_mut(&mut self, serial: u64) -> Option<&mut ChildLife> {
        usize::try_from(serial)
            .ok()
            .and_then(|index| self.children.get_mut(index))
    }
}
