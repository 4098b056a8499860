//! Pollers: epoll instances with their registrations and wakers.
//!
//! A poller's table of registrations is keyed by fd number, as loopwatch's poller
//! over epoll keeps it. Closing an fd makes epoll forget the file (the registration
//! is disarmed: never reported again, and `reregister` fails as `EPOLL_CTL_MOD` does,
//! with `EBADF` for a closed number and `ENOENT` for a number now naming another
//! file), while the number stays in the table until `deregister`, so `register` of
//! the number answers `EEXIST` meanwhile.

use std::collections::BTreeMap;
use std::time::Duration;

use loopwatch::kernel::{Errno, Event, Fd, Interest, Token};

use super::{Attempt, FdKind, Model, Tid, Wait, fd_limit};

/// One fd in a poller's table.
#[derive(Clone, Copy, Debug)]
pub(super) struct Registration {
    pub(super) token: Token,
    pub(super) interest: Interest,
    /// The generation of the file registered.
    pub(super) generation: u64,
    /// Epoll still watches that file: cleared when it is closed.
    pub(super) armed: bool,
}

#[derive(Debug, Default)]
pub(super) struct PollerState {
    pub(super) registrations: BTreeMap<i32, Registration>,
    pub(super) woken: bool,
    pub(super) closed: bool,
}

impl Model {
    /// A poller and its two fds (the epoll instance and the waker's eventfd), as a real
    /// poller costs.
    pub(crate) fn new_poller(&mut self, tid: Tid) -> Attempt<Result<(u64, Fd, Fd), Errno>> {
        let result = (|| {
            if self.fds.len() + 2 > fd_limit(&self.config) {
                self.mark("emfile");
                return Err(Errno::EMFILE);
            }
            let id = self.next_poller;
            self.next_poller += 1;
            self.pollers.insert(id, PollerState::default());
            let epoll = self.alloc_fd(FdKind::Epoll(id), true)?;
            let event = self.alloc_fd(FdKind::EventFd(id), true)?;
            Ok((id, epoll, event))
        })();
        self.log(tid, format_args!("poller() = {result:?}"));
        Attempt::Done(result)
    }

    /// Closes a poller's fds (no scheduling: called from `Drop`).
    pub(crate) fn drop_poller(&mut self, id: u64, epoll: Fd, event: Fd) {
        for fd in [epoll, event] {
            self.remove_fd(fd);
        }
        self.pollers.remove(&id);
        self.log_event(format_args!("poller {id} dropped"));
    }

    pub(crate) fn poller_ctl(
        &mut self,
        tid: Tid,
        id: u64,
        fd: Fd,
        change: Option<(Token, Interest)>,
        add: bool,
    ) -> Attempt<Result<(), Errno>> {
        let generation = self.fds.get(&fd.0).map(|entry| entry.generation);
        let poller = self.pollers.get_mut(&id).expect("live poller");
        let result = match (change, add) {
            (Some((token, interest)), true) => {
                if !interest.readable && !interest.writable {
                    Err(Errno::EINVAL)
                } else if poller.registrations.contains_key(&fd.0) {
                    Err(Errno::EEXIST)
                } else if poller.registrations.values().any(|r| r.token == token) {
                    Err(Errno::EINVAL)
                } else if let Some(generation) = generation {
                    let registration = Registration {
                        token,
                        interest,
                        generation,
                        armed: true,
                    };
                    poller.registrations.insert(fd.0, registration);
                    Ok(())
                } else {
                    Err(Errno::EBADF)
                }
            }
            (Some((token, interest)), false) => {
                if !interest.readable && !interest.writable {
                    Err(Errno::EINVAL)
                } else if !poller.registrations.contains_key(&fd.0) {
                    Err(Errno::ENOENT)
                } else if poller
                    .registrations
                    .iter()
                    .any(|(f, r)| r.token == token && *f != fd.0)
                {
                    Err(Errno::EINVAL)
                } else {
                    match poller.registrations.get_mut(&fd.0) {
                        Some(registration) if registration.armed => {
                            registration.token = token;
                            registration.interest = interest;
                            Ok(())
                        }
                        // Epoll forgot the closed file: EPOLL_CTL_MOD finds no open
                        // fd, or one it does not watch.
                        _ if generation.is_none() => Err(Errno::EBADF),
                        _ => Err(Errno::ENOENT),
                    }
                }
            }
            (None, _) => match poller.registrations.remove(&fd.0) {
                Some(_) => Ok(()),
                None => Err(Errno::ENOENT),
            },
        };
        let verb = match (change.is_some(), add) {
            (true, true) => "register",
            (true, false) => "reregister",
            _ => "deregister",
        };
        self.log(tid, format_args!("{verb}(poller {id}, {fd}) = {result:?}"));
        self.changed = true;
        Attempt::Done(result)
    }

    pub(crate) fn poll(
        &mut self,
        tid: Tid,
        id: u64,
        deadline: Option<Duration>,
    ) -> Attempt<Result<Vec<Event>, Errno>> {
        let registrations: Vec<(i32, Token, Interest)> = self.pollers[&id]
            .registrations
            .iter()
            .filter(|(_, r)| r.armed)
            .map(|(&fd, r)| (fd, r.token, r.interest))
            .collect();
        let mut ready = Vec::new();
        for (fd, token, interest) in registrations {
            let (readable, writable) = self.readiness(fd);
            let readable = readable && interest.readable;
            let writable = writable && interest.writable;
            if readable || writable {
                let event = Event {
                    token,
                    readable,
                    writable,
                };
                ready.push((self.ready_stamp(fd), event));
            }
        }
        // Oldest readiness first, as epoll's ready list; ties in registration order.
        ready.sort_by_key(|(stamp, _)| *stamp);
        let events: Vec<Event> = ready.into_iter().map(|(_, event)| event).collect();
        let poller = self.pollers.get_mut(&id).expect("live poller");
        let woken = std::mem::take(&mut poller.woken);
        let timed_out = deadline.is_some_and(|d| self.time >= d);
        if events.is_empty() && !woken && !timed_out {
            let p = self.config.faults.spurious_wakeup;
            if p > 0.0 && self.rng.chance(p) {
                self.mark("spurious_wakeup");
            } else {
                let wait = Wait {
                    deadline,
                    interruptible: true,
                };
                match self.block_or_interrupt(tid, wait, || Err(Errno::EINTR)) {
                    Attempt::Done(result) => {
                        self.log(tid, format_args!("poll({id}) = EINTR"));
                        return Attempt::Done(result);
                    }
                    block => return block,
                }
            }
        }
        if woken {
            self.changed = true;
        }
        self.log(
            tid,
            format_args!(
                "poll({id}) = {} event(s){}",
                events.len(),
                if woken { " +wake" } else { "" }
            ),
        );
        Attempt::Done(Ok(events))
    }

    pub(crate) fn wake_poller(&mut self, tid: Tid, id: u64) -> Attempt<Result<(), Errno>> {
        if let Some(poller) = self.pollers.get_mut(&id) {
            poller.woken = true;
            self.changed = true;
        }
        self.log(tid, format_args!("wake(poller {id})"));
        Attempt::Done(Ok(()))
    }
}
