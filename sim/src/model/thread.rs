//! Threads and locks: simulated threads, joins, monitors and sleeps.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use super::{Attempt, Model, Tid, Wait};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Wants to run (at a scheduling point, or new).
    Runnable,
    /// Waiting inside an operation.
    Blocked(Wait),
    /// Its body returned or panicked.
    Finished,
}

pub(crate) struct ThreadState {
    pub(crate) name: String,
    pub(crate) status: Status,
    pub(super) mask: BTreeSet<i32>,
    /// A signal was delivered while it waited interruptibly.
    pub(crate) interrupted: bool,
    /// Inside a kernel call that has blocked at least once and not returned yet: a
    /// signal it takes now has its handler run when the call returns (or restarts),
    /// as Linux runs handlers only on the way back to user space.
    pub(crate) in_call: bool,
    /// Signals this thread has taken whose handlers run when its call returns. They
    /// stay pending for the process until then, so more of them coalesce.
    pub(super) handlers: Vec<i32>,
    /// The call it last blocked in, for deadlock reports.
    pub(crate) blocked_in: &'static str,
    /// Its body panicked and no one has joined it yet (the payload is the driver's).
    pub(crate) panicked: bool,
}

impl fmt::Debug for ThreadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadState")
            .field("name", &self.name)
            .field("status", &self.status)
            .finish()
    }
}

#[derive(Debug, Default)]
pub(super) struct MonitorState {
    /// The thread that holds it: one that has not finished.
    pub(super) owner: Option<Tid>,
    pub(super) generation: u64,
    /// The thread that finished while holding it: it can never be taken again, as a
    /// lock whose owner exited stays locked.
    pub(super) abandoned_by: Option<Tid>,
}

impl Model {
    /// A new runnable thread, with the spawner's signal mask; the driver holds its body
    /// and starts it.
    pub(crate) fn spawn_thread(&mut self, tid: Tid, name: &str) -> Attempt<Tid> {
        let new = self.next_tid;
        self.next_tid += 1;
        self.threads.insert(
            new,
            ThreadState {
                name: name.to_string(),
                status: Status::Runnable,
                mask: self.threads[&tid].mask.clone(),
                interrupted: false,
                in_call: false,
                handlers: Vec::new(),
                blocked_in: "",
                panicked: false,
            },
        );
        self.log(tid, format_args!("spawn_thread({name:?}) = T{new}"));
        self.changed = true;
        Attempt::Done(new)
    }

    /// Waits for `target` to finish; says whether it panicked. Only the first join of
    /// a panicked thread sees the panic, as the payload can be handed out once.
    pub(crate) fn join(&mut self, tid: Tid, target: Tid) -> Attempt<bool> {
        match self.threads.get_mut(&target) {
            Some(thread) if thread.status == Status::Finished => {
                let panicked = std::mem::take(&mut thread.panicked);
                self.log(
                    tid,
                    format_args!(
                        "join(T{target}) = {}",
                        if panicked { "panicked" } else { "Ok" }
                    ),
                );
                Attempt::Done(panicked)
            }
            Some(_) => Attempt::Block(Wait::forever()),
            None => Attempt::Done(false),
        }
    }

    pub(crate) fn new_monitor(&mut self) -> u64 {
        let id = self.next_monitor;
        self.next_monitor += 1;
        self.monitors.insert(id, MonitorState::default());
        id
    }

    pub(crate) fn drop_monitor(&mut self, id: u64) {
        self.monitors.remove(&id);
    }

    /// Thread `tid`'s body returned or panicked: the monitors it still holds stay
    /// locked for good (recorded as `kernel.monitor-held-at-exit`).
    pub(crate) fn thread_finished(&mut self, tid: Tid, panicked: bool) {
        let thread = self.thread_mut(tid);
        thread.status = Status::Finished;
        thread.panicked = panicked;
        self.changed = true;
        let held: Vec<u64> = self
            .monitors
            .iter()
            .filter(|(_, m)| m.owner == Some(tid))
            .map(|(&id, _)| id)
            .collect();
        for id in held {
            let monitor = self.monitors.get_mut(&id).expect("listed");
            monitor.owner = None;
            monitor.abandoned_by = Some(tid);
            let name = self.thread_name(tid);
            self.violation(
                "kernel.monitor-held-at-exit",
                format!("thread {name:?} (T{tid}) ended holding monitor {id}"),
            );
        }
    }

    pub(crate) fn monitor_enter(&mut self, tid: Tid, id: u64) -> Attempt<()> {
        let monitor = self.monitors.get_mut(&id).expect("live monitor");
        if monitor.abandoned_by.is_some() {
            return match self.aborting {
                true => Attempt::Done(()),
                false => Attempt::Block(Wait::forever()),
            };
        }
        match monitor.owner {
            None => {
                monitor.owner = Some(tid);
                self.changed = true;
                Attempt::Done(())
            }
            // While an abandoned thread is unwound, its destructors may enter a monitor
            // that a frame further out still holds: nothing blocks any more.
            Some(_) if self.aborting => Attempt::Done(()),
            Some(owner) => {
                assert_ne!(owner, tid, "simulated monitor entered twice by T{tid}");
                Attempt::Block(Wait::forever())
            }
        }
    }

    pub(crate) fn monitor_exit(&mut self, tid: Tid, id: u64) -> Attempt<()> {
        if let Some(monitor) = self.monitors.get_mut(&id) {
            if monitor.owner == Some(tid) {
                monitor.owner = None;
                self.changed = true;
            }
        }
        Attempt::Done(())
    }

    /// The release half of a monitor wait: returns the generation to wait past.
    pub(crate) fn monitor_release(&mut self, tid: Tid, id: u64) -> u64 {
        let monitor = self.monitors.get_mut(&id).expect("live monitor");
        if monitor.owner == Some(tid) {
            monitor.owner = None;
        }
        self.changed = true;
        monitor.generation
    }

    pub(crate) fn monitor_await(
        &mut self,
        id: u64,
        generation: u64,
        deadline: Option<Duration>,
    ) -> Attempt<bool> {
        let monitor = &self.monitors[&id];
        if monitor.generation != generation {
            return Attempt::Done(true);
        }
        if deadline.is_some_and(|d| self.time >= d) || self.aborting {
            return Attempt::Done(false);
        }
        Attempt::Block(Wait {
            deadline,
            interruptible: false,
        })
    }

    pub(crate) fn monitor_notify(&mut self, id: u64) -> Attempt<()> {
        if let Some(monitor) = self.monitors.get_mut(&id) {
            monitor.generation += 1;
            self.changed = true;
        }
        Attempt::Done(())
    }

    pub(crate) fn sleep(&mut self, deadline: Duration) -> Attempt<()> {
        if self.time >= deadline || self.aborting {
            return Attempt::Done(());
        }
        Attempt::Block(Wait {
            deadline: Some(deadline),
            interruptible: false,
        })
    }
}
