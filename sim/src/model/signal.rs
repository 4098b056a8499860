//! Signals: dispositions, pending signals, which thread takes one, handlers, the
//! wakeup fd and signal masks.

use loopwatch::kernel::{Disposition, Errno, Fd, Signal};

use super::{
    Attempt, FdEntry, FdKind, FdRef, ForeignHandler, MAIN_THREAD, Model, PIPE_CAPACITY, Status,
    Tid, status_text,
};
use crate::ledger::Reaper;

impl Model {
    /// Signals whose default action is to do nothing.
    pub(super) fn ignored_by_default(signal: i32) -> bool {
        [Signal::SIGCHLD.0, Signal::SIGCONT.0, 23, 28].contains(&signal)
    }

    /// Whether a signal with `disposition` is ignored, so the kernel drops it.
    fn is_ignored(signal: i32, disposition: Disposition) -> bool {
        disposition == Disposition::Ignore
            || (disposition == Disposition::Default && Self::ignored_by_default(signal))
    }

    /// Generates a process-directed `signal`; `suggested` is the thread Linux tries
    /// first. A signal already pending coalesces, keeping the first suggestion (Linux
    /// drops the second before choosing a thread).
    pub(super) fn raise_process(&mut self, signal: Signal, suggested: Tid) {
        let disposition = self
            .dispositions
            .get(&signal.0)
            .copied()
            .unwrap_or(Disposition::Default);
        // Linux drops an ignored signal when it is generated, unless the main thread
        // blocks it (then it stays pending until unblocked or ignored-and-unblocked).
        let blocked = self
            .threads
            .get(&MAIN_THREAD)
            .is_some_and(|t| t.mask.contains(&signal.0));
        if Self::is_ignored(signal.0, disposition) && !blocked {
            return;
        }
        if self.pending.insert(signal.0) {
            self.suggested.insert(signal.0, suggested);
        } else if disposition != Disposition::Default {
            self.mark(if signal == Signal::SIGCHLD {
                "sigchld_coalesced"
            } else {
                "signal_coalesced"
            });
        }
        self.changed = true;
    }

    /// Whether some thread has taken `signal` and will run its handler when its call
    /// returns.
    fn taken(&self, signal: i32) -> bool {
        self.threads.values().any(|t| t.handlers.contains(&signal))
    }

    /// Pending signals not yet taken, and the threads that could take each (not
    /// blocking it).
    pub(crate) fn deliverable(&self) -> Vec<(i32, Vec<Tid>)> {
        self.pending
            .iter()
            .filter(|&&sig| !self.taken(sig))
            .map(|&sig| {
                let threads = self
                    .threads
                    .iter()
                    .filter(|(_, t)| t.status != Status::Finished && !t.mask.contains(&sig))
                    .map(|(&tid, _)| tid)
                    .collect();
                (sig, threads)
            })
            .filter(|(_, threads): &(i32, Vec<Tid>)| !threads.is_empty())
            .collect()
    }

    /// The thread that takes pending `signal`, by Linux's rule (`complete_signal` and
    /// `wants_signal` in kernel/signal.c): the suggested thread if it wants the signal,
    /// else another thread that wants it. A thread wants a signal when it does not
    /// block it and has no signal of its own waiting for its handler. When none wants
    /// it, a thread that does not block it takes it with the others it has waiting.
    /// The `signal_other_thread` fault lets another thread that wants it take it
    /// first, as a thread already running in the kernel can on a real machine.
    pub(crate) fn signal_target(&mut self, signal: i32) -> Tid {
        let eligible: Vec<Tid> = self
            .threads
            .iter()
            .filter(|(_, t)| t.status != Status::Finished && !t.mask.contains(&signal))
            .map(|(&tid, _)| tid)
            .collect();
        let wanting: Vec<Tid> = eligible
            .iter()
            .copied()
            .filter(|tid| self.threads[tid].handlers.is_empty())
            .collect();
        let suggested = self.suggested.get(&signal).copied().unwrap_or(MAIN_THREAD);
        let others: Vec<Tid> = wanting
            .iter()
            .copied()
            .filter(|&tid| tid != suggested)
            .collect();
        let p = self.config.faults.signal_other_thread;
        if !others.is_empty() && p > 0.0 && self.rng.chance(p) {
            self.mark("signal_other_thread");
            return others[self.rng.below(others.len() as u64) as usize];
        }
        if wanting.contains(&suggested) {
            return suggested;
        }
        if !wanting.is_empty() {
            return wanting[self.rng.below(wanting.len() as u64) as usize];
        }
        if eligible.contains(&suggested) {
            return suggested;
        }
        eligible.first().copied().unwrap_or(MAIN_THREAD)
    }

    /// Delivers pending `signal` to `tid`. A default action applies at once (one that
    /// terminates marks the process killed; the driver ends the run); so does a
    /// handler, unless `tid` is inside a blocked kernel call: then the call is woken
    /// and checks its condition again, and the handler runs when the call returns,
    /// fails with EINTR or restarts (the driver calls [`Model::leave_call`] and
    /// [`Model::run_handlers`]).
    pub(crate) fn deliver(&mut self, signal: i32, tid: Tid) {
        let disposition = self
            .dispositions
            .get(&signal)
            .copied()
            .unwrap_or(Disposition::Default);
        let handled = matches!(
            disposition,
            Disposition::Wakeup | Disposition::Notify(_) | Disposition::Foreign(_)
        );
        if handled && self.threads.get(&tid).is_some_and(|t| t.in_call) {
            self.log_event(format_args!(
                "signal {signal} taken by T{tid}: its handler runs when the call returns"
            ));
            self.changed = true;
            let thread = self.thread_mut(tid);
            thread.handlers.push(signal);
            thread.status = Status::Runnable;
            return;
        }
        self.pending.remove(&signal);
        self.act(signal, tid, disposition);
    }

    /// Runs `signal`'s action in `tid`: the kernel's default, or the handler.
    fn act(&mut self, signal: i32, tid: Tid, disposition: Disposition) {
        self.log_event(format_args!(
            "deliver signal {signal} to T{tid} ({disposition:?})"
        ));
        self.changed = true;
        match disposition {
            Disposition::Default => {
                if !Self::ignored_by_default(signal) {
                    self.killed = Some(signal);
                }
            }
            Disposition::Ignore => {}
            Disposition::Wakeup | Disposition::Notify(_) => {
                let (target, rule) = match disposition {
                    Disposition::Notify(_) => (
                        self.notify_fds.get(&signal).copied(),
                        "kernel.notify-stale-write",
                    ),
                    _ => (self.wakeup_fd, "kernel.stale-wakeup-write"),
                };
                if let Some(target) = target {
                    self.check_stale_write(signal, target, rule);
                    self.wakeup_write(target.fd, signal as u8);
                }
                if let Some(&id) = self.chained.get(&signal) {
                    self.log_event(format_args!(
                        "loopwatch's handler runs the chained foreign handler {id}"
                    ));
                    self.run_foreign(id, tid);
                }
            }
            Disposition::Foreign(id) => self.run_foreign(id, tid),
        }
        if signal == Signal::SIGCHLD.0 {
            let p = self.config.faults.foreign_reap_on_sigchld;
            if p > 0.0 && self.rng.chance(p) {
                if let Some((pid, _)) = self.oldest_zombie() {
                    self.reap(pid, Reaper::ForeignFault);
                    self.mark("foreign_reap");
                    self.log_event(format_args!("foreign code reaps {pid}"));
                }
            }
        }
    }

    /// Runs foreign handler `id` in `tid`.
    fn run_foreign(&mut self, id: u64, tid: Tid) {
        self.foreign_deliveries += 1;
        if self.foreign.get(id as usize) == Some(&ForeignHandler::ReapAll) {
            while let Some((pid, status)) = self.oldest_zombie() {
                let reaper = Reaper::ForeignHandler(self.thread_name(tid));
                self.reap(pid, reaper);
                self.mark("foreign_reap");
                self.log_event(format_args!(
                    "foreign handler reaps {pid} ({})",
                    status_text(status)
                ));
            }
        }
    }

    pub(crate) fn chain_foreign(
        &mut self,
        tid: Tid,
        signal: Signal,
        foreign: Option<u64>,
    ) -> Attempt<Result<Option<u64>, Errno>> {
        let unknown = foreign.is_some_and(|id| id as usize >= self.foreign.len());
        let result = if !signal.is_catchable() || unknown {
            Err(Errno::EINVAL)
        } else {
            Ok(match foreign {
                Some(id) => self.chained.insert(signal.0, id),
                None => self.chained.remove(&signal.0),
            })
        };
        self.log(
            tid,
            format_args!("chain_foreign({}, {foreign:?}) = {result:?}", signal.0),
        );
        self.changed = true;
        Attempt::Done(result)
    }

    /// Runs the handlers of the signals `tid` took while in its call; says whether
    /// there were any. A signal no longer pending (ignored since) is skipped; the
    /// action is the disposition's now, as Linux reads it when it dequeues.
    pub(crate) fn run_handlers(&mut self, tid: Tid) -> bool {
        let taken = std::mem::take(&mut self.thread_mut(tid).handlers);
        let any = !taken.is_empty();
        for signal in taken {
            if self.pending.remove(&signal) {
                let disposition = self
                    .dispositions
                    .get(&signal)
                    .copied()
                    .unwrap_or(Disposition::Default);
                self.act(signal, tid, disposition);
            }
        }
        any
    }

    /// `tid`'s kernel call returns: it is back in user space, where it runs the
    /// handlers of the signals it took meanwhile.
    pub(crate) fn leave_call(&mut self, tid: Tid) {
        self.thread_mut(tid).in_call = false;
        self.run_handlers(tid);
    }

    /// Whether `tid` has taken signals whose handlers have not run yet.
    pub(crate) fn has_handlers(&self, tid: Tid) -> bool {
        self.threads
            .get(&tid)
            .is_some_and(|t| !t.handlers.is_empty())
    }

    /// A blocked call of `tid` that took a signal gives up with EINTR on its next try.
    pub(crate) fn interrupt(&mut self, tid: Tid) {
        self.thread_mut(tid).interrupted = true;
    }

    /// Before the handler writes `signal`'s byte to `target`'s number: records `rule`
    /// if the number now names another open file than when it was set (the file was
    /// closed and the number reused), so the byte goes to a stranger.
    fn check_stale_write(&mut self, signal: i32, target: FdRef, rule: &'static str) {
        let Some(now) = self.fds.get(&target.fd.0).copied() else {
            // Linux's write fails with EBADF and the signal's byte is lost: whoever
            // closed the fd left it set.
            self.mark("closed_wakeup_write");
            let detail = format!(
                "signal {signal}'s byte written to {}, which is closed (EBADF: the wake-up is lost)",
                target.fd
            );
            self.violation("kernel.closed-wakeup-write", detail);
            return;
        };
        if now.generation != target.generation {
            self.mark("stale_wakeup_write");
            let detail = format!(
                "signal {signal}'s byte written to {}, which now names another file ({:?}) \
                 than when it was set",
                target.fd, now.kind
            );
            self.violation(rule, detail);
        }
    }

    /// The handler's `write(wakeup_fd, &signum, 1)`: never blocks, drops the byte
    /// when the pipe is full.
    fn wakeup_write(&mut self, fd: Fd, byte: u8) {
        if let Some(FdEntry {
            kind: FdKind::PipeWrite(id),
            ..
        }) = self.fds.get(&fd.0).copied()
        {
            let pipe = self.pipes.get_mut(&id).expect("open pipe");
            if pipe.readers > 0 && pipe.buf.len() < PIPE_CAPACITY {
                pipe.buf.push_back(byte);
                self.stamps += 1;
                pipe.stamp = self.stamps;
            }
        }
    }

    pub(crate) fn set_disposition(
        &mut self,
        tid: Tid,
        signal: Signal,
        disposition: Disposition,
    ) -> Attempt<Result<Disposition, Errno>> {
        let unknown_foreign =
            matches!(disposition, Disposition::Foreign(id) if id as usize >= self.foreign.len());
        let notify = match disposition {
            Disposition::Notify(fd) => Some(self.fds.get(&fd.0).map(|e| FdRef::new(fd, e))),
            _ => None,
        };
        let result = if !signal.is_catchable() || unknown_foreign {
            Err(Errno::EINVAL)
        } else if notify == Some(None) {
            Err(Errno::EBADF)
        } else {
            let old = self
                .dispositions
                .insert(signal.0, disposition)
                .unwrap_or(Disposition::Default);
            match notify.flatten() {
                Some(kept) => self.notify_fds.insert(signal.0, kept),
                None => self.notify_fds.remove(&signal.0),
            };
            if Self::is_ignored(signal.0, disposition) {
                // POSIX: making a pending signal ignored discards it (zombies of a
                // SIGCHLD stay).
                self.pending.remove(&signal.0);
            }
            Ok(old)
        };
        self.log(
            tid,
            format_args!("sigaction({}, {disposition:?}) = {result:?}", signal.0),
        );
        self.changed = true;
        Attempt::Done(result)
    }

    pub(crate) fn disposition(
        &mut self,
        tid: Tid,
        signal: Signal,
    ) -> Attempt<Result<Disposition, Errno>> {
        let result = if signal.is_valid() {
            Ok(self
                .dispositions
                .get(&signal.0)
                .copied()
                .unwrap_or(Disposition::Default))
        } else {
            Err(Errno::EINVAL)
        };
        self.log(tid, format_args!("sigaction({}) = {result:?}", signal.0));
        Attempt::Done(result)
    }

    pub(crate) fn install_foreign(
        &mut self,
        signal: Signal,
        handler: ForeignHandler,
    ) -> Disposition {
        self.foreign.push(handler);
        let disposition = Disposition::Foreign(self.foreign.len() as u64 - 1);
        self.dispositions.insert(signal.0, disposition);
        self.notify_fds.remove(&signal.0);
        self.log_event(format_args!(
            "foreign code installs {handler:?} for signal {}",
            signal.0
        ));
        disposition
    }

    pub(crate) fn set_wakeup_fd(
        &mut self,
        tid: Tid,
        fd: Option<Fd>,
    ) -> Attempt<Result<Option<Fd>, Errno>> {
        let result = match fd.map(|fd| self.fds.get(&fd.0).map(|e| FdRef::new(fd, e))) {
            Some(None) => Err(Errno::EBADF),
            Some(kept) => Ok(std::mem::replace(&mut self.wakeup_fd, kept)),
            None => Ok(self.wakeup_fd.take()),
        }
        .map(|old| old.map(|kept| kept.fd));
        self.log(tid, format_args!("set_wakeup_fd({fd:?}) = {result:?}"));
        Attempt::Done(result)
    }

    pub(crate) fn raise(&mut self, tid: Tid, signal: Signal) -> Attempt<Result<(), Errno>> {
        if !signal.is_valid() {
            return Attempt::Done(Err(Errno::EINVAL));
        }
        self.log(tid, format_args!("raise({})", signal.0));
        // raise() delivers to the calling thread before it returns, unless blocked.
        if self.pending.insert(signal.0) {
            self.suggested.insert(signal.0, tid);
        }
        if !self.thread_mut(tid).mask.contains(&signal.0) {
            self.deliver(signal.0, tid);
        }
        self.changed = true;
        Attempt::Done(Ok(()))
    }

    pub(crate) fn mask(
        &mut self,
        tid: Tid,
        signal: Signal,
        block: bool,
    ) -> Attempt<Result<bool, Errno>> {
        if !signal.is_valid() {
            return Attempt::Done(Err(Errno::EINVAL));
        }
        let mask = &mut self.thread_mut(tid).mask;
        let was_blocked = if block {
            !mask.insert(signal.0)
        } else {
            mask.remove(&signal.0)
        };
        self.log(tid, format_args!("sigmask({}, block={block})", signal.0));
        self.changed = true;
        // A pending signal the thread just unblocked is delivered to it before the call
        // returns, as Linux does on the way back to user space.
        if !block && self.pending.contains(&signal.0) {
            self.deliver(signal.0, tid);
        }
        Attempt::Done(Ok(was_blocked))
    }
}
