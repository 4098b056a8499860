//! The model's invariants, checked after every scheduling step (when
//! [`Config::check_model`](super::Config::check_model) is on): each relation between two
//! pieces of bookkeeping that every operation must keep. A broken one is a bug of the
//! simulator; the driver records it and ends the run.
//!
//! Every check is linear in the state the process holds now (fds, pipes, children,
//! registrations, monitors, threads), never in the length of the run.

use std::collections::BTreeSet;

use loopwatch::kernel::{Disposition, Fd, Pid};

use super::{FdKind, FdRef, Model, ProcState, Status};

/// The first invariant broken: its rule and what was found.
type Broken = (&'static str, String);

/// A reference to a pipe end: the pipe's id, 0 for its read end or 1 for its write
/// end, and the process's fd when the reference is one (else a child holds it).
pub(super) type PipeRef = (u64, usize, Option<i32>);

/// How many objects (fds, children, pipes, registrations…) a check may visit per
/// step on average. A process holding fewer is checked at every step; one holding
/// more, every few steps, so that checking does not make a step cost as much as the
/// whole state (a run with a thousand children would otherwise be quadratic).
const CHECK_BUDGET: u64 = 64;

impl Model {
    /// Whether the invariants are checked at this step (see [`CHECK_BUDGET`]).
    pub(crate) fn check_due(&mut self) -> bool {
        let registrations: usize = self.pollers.values().map(|p| p.registrations.len()).sum();
        let cost = [
            self.fds.len(),
            self.procs.len(),
            self.pipes.len(),
            registrations,
            self.freed_pids.len(),
            self.monitors.len(),
            self.notify_fds.len(),
        ]
        .iter()
        .sum::<usize>() as u64;
        if cost <= CHECK_BUDGET {
            self.check_credit = 0;
            return true;
        }
        self.check_credit += CHECK_BUDGET;
        if self.check_credit < cost {
            return false;
        }
        self.check_credit -= cost;
        true
    }

    /// The first invariant the model breaks now, if any.
    pub(crate) fn check_model(&mut self) -> Option<Broken> {
        let mut refs = std::mem::take(&mut self.check_scratch);
        let result = self
            .check_pids()
            .and_then(|()| self.check_children())
            .and_then(|()| self.check_pipes(&mut refs))
            .and_then(|()| self.check_pollers())
            .and_then(|()| self.check_kept_fds())
            .and_then(|()| self.check_monitors());
        self.check_scratch = refs;
        result.err()
    }

    /// `model.pids`: the children's pids are in the configured range and are not the
    /// process's own; the pids kept for reuse are distinct and held by no child.
    fn check_pids(&self) -> Result<(), Broken> {
        let broken = |detail: String| Err(("model.pids", detail));
        let range = self.config.pid_min..=self.config.pid_max;
        for pid in self.procs.keys() {
            if !range.contains(&pid.0) || pid.0 == self.config.pid {
                return broken(format!("child pid {pid} outside {range:?}"));
            }
        }
        let mut freed = BTreeSet::new();
        for &pid in &self.freed_pids {
            if self.procs.contains_key(&Pid(pid)) {
                return broken(format!("pid {pid} is free for reuse but a child holds it"));
            }
            if !freed.insert(pid) {
                return broken(format!("pid {pid} is free for reuse twice"));
            }
        }
        Ok(())
    }

    /// `model.child-ledger`: each live pid maps to exactly one child of the ledger, the
    /// one with its serial, not reaped, whose end agrees with the child's state; and
    /// the ledger has no other unreaped child.
    fn check_children(&self) -> Result<(), Broken> {
        let broken = |detail: String| Err(("model.child-ledger", detail));
        // Two live children cannot share a serial: the ledger's child of that serial
        // would have both their pids.
        for (&pid, proc) in &self.procs {
            let serial = proc.serial();
            let Some(life) = self.ledger.child(serial) else {
                return broken(format!(
                    "child {pid} (serial {serial}) is not in the ledger"
                ));
            };
            if life.pid != pid || life.reaped_by.is_some() {
                return broken(format!(
                    "child {pid} (serial {serial}) is live; the ledger has {life:?}"
                ));
            }
            let agrees = match proc.state {
                ProcState::Running => life.ended_at.is_none() && life.returncode.is_none(),
                ProcState::Zombie(status) => {
                    life.ended_at.is_some() && life.returncode == Some(status.returncode())
                }
            };
            if !agrees {
                return broken(format!(
                    "child {pid} is {:?}; the ledger has {life:?}",
                    proc.state
                ));
            }
        }
        if self.unreaped != self.procs.len() {
            return broken(format!(
                "{} children of the ledger are not reaped, {} are live",
                self.unreaped,
                self.procs.len()
            ));
        }
        Ok(())
    }

    /// `model.pipe-eof` and `model.pipe-refcount`: each pipe end's count is the number
    /// of fds of the process and of children's inherited ends that refer to it; a
    /// pipe is kept while something refers to it; a read end of a pipe nobody can write
    /// to any more reads end of file.
    ///
    /// `refs` is scratch space, kept from one step to the next so that a check does
    /// not allocate: it gets every reference to a pipe (its id, 0 for a read end or 1
    /// for a write end, and the process's fd when it is one), sorted by pipe.
    fn check_pipes(&self, refs: &mut Vec<PipeRef>) -> Result<(), Broken> {
        let refcount = |detail: String| Err(("model.pipe-refcount", detail));
        refs.clear();
        for (&fd, entry) in &self.fds {
            match entry.kind {
                FdKind::PipeRead(id) => refs.push((id, 0, Some(fd))),
                FdKind::PipeWrite(id) => refs.push((id, 1, Some(fd))),
                _ => {}
            }
        }
        for proc in self.procs.values() {
            let ends = [(proc.stdin, 0), (proc.stdout, 1), (proc.stderr, 1)];
            for (pipe, end) in ends {
                if let Some(id) = pipe {
                    refs.push((id, end, None));
                }
            }
        }
        refs.sort_unstable();
        // Walk the references, a pipe at a time, beside the pipes (both by id).
        let mut pipes = self.pipes.iter().peekable();
        let mut rest = &refs[..];
        while let Some(&(id, _, _)) = rest.first() {
            let (group, tail) = rest.split_at(rest.iter().take_while(|r| r.0 == id).count());
            rest = tail;
            if let Some((unreferred, _)) = pipes.next_if(|(kept, _)| **kept < id) {
                return refcount(format!(
                    "pipe {unreferred} is kept with nothing referring to it"
                ));
            }
            let Some((_, pipe)) = pipes.next_if(|(kept, _)| **kept == id) else {
                return refcount(format!("pipe {id} is referred to but gone"));
            };
            let readers = group.iter().filter(|r| r.1 == 0).count() as u32;
            let writers = group.len() as u32 - readers;
            let read_fd = group.iter().find_map(|r| r.2.filter(|_| r.1 == 0));
            if let (0, Some(fd)) = (writers, read_fd) {
                if !self.readiness(fd).0 {
                    return Err((
                        "model.pipe-eof",
                        format!("fd {fd} reads pipe {id}, which has no writer, but not EOF"),
                    ));
                }
            }
            if pipe.readers != readers || pipe.writers != writers {
                return refcount(format!(
                    "pipe {id} counts {} reader(s) and {} writer(s); {readers} and \
                     {writers} refer to it",
                    pipe.readers, pipe.writers
                ));
            }
        }
        match pipes.next() {
            Some((unreferred, _)) => refcount(format!(
                "pipe {unreferred} is kept with nothing referring to it"
            )),
            None => Ok(()),
        }
    }

    /// `model.poller-closed-fd`: what a poller still watches (an armed registration)
    /// is an open fd, the same file that was registered: a closed fd is watched by no
    /// poller, as epoll forgets a file when it is closed.
    fn check_pollers(&self) -> Result<(), Broken> {
        for (id, poller) in &self.pollers {
            // Both tables are ordered by fd number: walk them side by side.
            let mut fds = self.fds.iter().peekable();
            for (&fd, registration) in &poller.registrations {
                while fds.next_if(|(open, _)| **open < fd).is_some() {}
                if !registration.armed {
                    continue;
                }
                let open = fds
                    .peek()
                    .filter(|(open, _)| **open == fd)
                    .map(|(_, e)| e.generation);
                if open != Some(registration.generation) {
                    return Err((
                        "model.poller-closed-fd",
                        format!(
                            "poller {id} watches fd {fd} of generation {}, which is {}",
                            registration.generation,
                            match open {
                                None => "closed".to_string(),
                                Some(g) => format!("closed and reused (generation {g})"),
                            }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `model.wakeup-fd`: the wakeup fd, and the fd of each `Notify` disposition, is
    /// known closed exactly when its number no longer names the file it was set to;
    /// while not closed, it points at that open fd. Each `Notify(fd)` disposition has
    /// its fd kept, and no other signal has one.
    fn check_kept_fds(&self) -> Result<(), Broken> {
        let broken = |detail: String| Err(("model.wakeup-fd", detail));
        let open_file = |kept: &FdRef| {
            self.fds
                .get(&kept.fd.0)
                .is_some_and(|e| e.generation == kept.generation)
        };
        let kept = self.wakeup_fd.iter().map(|kept| ("wakeup fd", kept));
        let notify = self.notify_fds.values().map(|kept| ("Notify fd", kept));
        for (what, kept) in kept.chain(notify) {
            if kept.closed == open_file(kept) {
                return broken(format!(
                    "the {what} {} of generation {} is {} but the model says closed={}",
                    kept.fd,
                    kept.generation,
                    if open_file(kept) { "open" } else { "closed" },
                    kept.closed
                ));
            }
        }
        let mut notified = 0;
        for (&signal, disposition) in &self.dispositions {
            if let Disposition::Notify(fd) = *disposition {
                notified += 1;
                let kept = self.notify_fds.get(&signal).map(|kept| kept.fd);
                if kept != Some(fd) {
                    return broken(format!(
                        "signal {signal} notifies {fd}, but the fd kept for it is {kept:?}"
                    ));
                }
            }
        }
        if notified != self.notify_fds.len() {
            return broken(format!(
                "{} fds kept for {notified} Notify dispositions",
                self.notify_fds.len()
            ));
        }
        Ok(())
    }

    /// `model.monitor-owner`: a monitor is held by a thread that exists and has not
    /// finished.
    fn check_monitors(&self) -> Result<(), Broken> {
        for (id, monitor) in &self.monitors {
            let Some(owner) = monitor.owner else {
                continue;
            };
            let alive = self
                .threads
                .get(&owner)
                .is_some_and(|t| t.status != Status::Finished);
            if !alive {
                return Err((
                    "model.monitor-owner",
                    format!("monitor {id} is held by T{owner}, which is not a live thread"),
                ));
            }
        }
        Ok(())
    }
}

/// A way to break the model's state as a bug of the simulator would, so that a test
/// can see each invariant caught. Not for use outside the simulator's tests.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelDamage {
    /// The pipe of `fd` counts one reader more than refers to it.
    ExtraPipeReader(Fd),
    /// The pipe that read end `fd` reads counts a writer though none refers to it.
    PhantomPipeWriter(Fd),
    /// Child `pid`'s pid is also kept free for reuse.
    FreeLivePid(Pid),
    /// Child `pid` leaves the process without being reaped.
    ForgetChild(Pid),
    /// The newest monitor is held by a thread that does not exist.
    MonitorOwnedByNoThread,
    /// `fd` leaves the fd table without what a close does beside (pollers, the wakeup
    /// fd and `Notify` fds are not told).
    CloseUntracked(Fd),
}

impl Model {
    /// Applies `damage`; says whether it applied (the fd or child it names exists and
    /// is of the right kind).
    pub(crate) fn damage(&mut self, damage: ModelDamage) -> bool {
        let pipe_of = |model: &Model, fd: Fd| match model.fds.get(&fd.0).map(|e| e.kind) {
            Some(FdKind::PipeRead(id) | FdKind::PipeWrite(id)) => Some(id),
            _ => None,
        };
        match damage {
            ModelDamage::ExtraPipeReader(fd) => pipe_of(self, fd)
                .and_then(|id| self.pipes.get_mut(&id))
                .map(|pipe| pipe.readers += 1)
                .is_some(),
            ModelDamage::PhantomPipeWriter(fd) => pipe_of(self, fd)
                .and_then(|id| self.pipes.get_mut(&id))
                .map(|pipe| pipe.writers += 1)
                .is_some(),
            ModelDamage::FreeLivePid(pid) => {
                let live = self.procs.contains_key(&pid);
                if live {
                    self.freed_pids.push(pid.0);
                }
                live
            }
            ModelDamage::ForgetChild(pid) => self.procs.remove(&pid).is_some(),
            ModelDamage::MonitorOwnedByNoThread => {
                let nobody = self.next_tid;
                self.monitors
                    .values_mut()
                    .next_back()
                    .map(|monitor| monitor.owner = Some(nobody))
                    .is_some()
            }
            ModelDamage::CloseUntracked(fd) => match self.fds.remove(&fd.0) {
                Some(entry) => {
                    self.release(entry.kind);
                    true
                }
                None => false,
            },
        }
    }
}
