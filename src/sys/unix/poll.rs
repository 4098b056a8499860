//! The poller: mio underneath, made level-triggered.
//!
//! mio registers every fd edge-triggered. asyncio's readers are level-triggered (a
//! reader that leaves data in a pipe is called again), so each fd reported by one poll
//! is re-armed with `EPOLL_CTL_MOD` at the start of the next: if it is still ready by
//! then, the kernel reports it again.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;

use super::{OsKernel, errno_of};
use crate::kernel::{Errno, Event, Fd, Interest, Poll, PollWaker, Poller, Token};

#[allow(clippy::disallowed_types, reason = "OsKernel is the seam")]
type StdMutex<T> = std::sync::Mutex<T>;

/// The waker's token inside mio; user tokens are passed through unchanged.
const WAKER_TOKEN: mio::Token = mio::Token(usize::MAX);

/// [`Poller`] over `mio::Poll`.
#[derive(Debug)]
pub struct OsPoller {
    poll: StdMutex<PollState>,
    registry: mio::Registry,
    registered: StdMutex<Registrations>,
    waker: OsWaker,
}

/// What is registered, by fd and by token; tokens are unique among registrations.
#[derive(Debug, Default)]
struct Registrations {
    by_fd: BTreeMap<RawFd, (Token, Interest)>,
    by_token: BTreeMap<usize, RawFd>,
}

#[derive(Debug)]
struct PollState {
    poll: mio::Poll,
    events: mio::Events,
    /// Fds reported by the previous poll, re-armed before the next.
    delivered: Vec<RawFd>,
}

/// [`PollWaker`] over `mio::Waker` (an eventfd on Linux).
#[derive(Clone, Debug)]
pub struct OsWaker(Arc<mio::Waker>);

impl Poll for OsKernel {
    type Poller = OsPoller;

    fn new_poller(&self) -> Result<OsPoller, Errno> {
        let poll = mio::Poll::new().map_err(|e| errno_of(&e))?;
        let registry = poll.registry().try_clone().map_err(|e| errno_of(&e))?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN).map_err(|e| errno_of(&e))?;
        Ok(OsPoller {
            poll: StdMutex::new(PollState {
                poll,
                events: mio::Events::with_capacity(256),
                delivered: Vec::new(),
            }),
            registry,
            registered: StdMutex::new(Registrations::default()),
            waker: OsWaker(Arc::new(waker)),
        })
    }
}

fn mio_interest(interest: Interest) -> Result<mio::Interest, Errno> {
    match (interest.readable, interest.writable) {
        (true, true) => Ok(mio::Interest::READABLE | mio::Interest::WRITABLE),
        (true, false) => Ok(mio::Interest::READABLE),
        (false, true) => Ok(mio::Interest::WRITABLE),
        (false, false) => Err(Errno::EINVAL),
    }
}

impl OsPoller {
    fn registered(&self) -> std::sync::MutexGuard<'_, Registrations> {
        self.registered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Poller for OsPoller {
    type Waker = OsWaker;

    fn register(&self, fd: Fd, token: Token, interest: Interest) -> Result<(), Errno> {
        if token.0 == WAKER_TOKEN.0 {
            return Err(Errno::EINVAL);
        }
        let mio_interest = mio_interest(interest)?;
        let mut registered = self.registered();
        if registered.by_fd.contains_key(&fd.0) {
            return Err(Errno::EEXIST);
        }
        if registered.by_token.contains_key(&token.0) {
            return Err(Errno::EINVAL);
        }
        self.registry
            .register(&mut SourceFd(&fd.0), mio::Token(token.0), mio_interest)
            .map_err(|e| errno_of(&e))?;
        registered.by_fd.insert(fd.0, (token, interest));
        registered.by_token.insert(token.0, fd.0);
        Ok(())
    }

    fn reregister(&self, fd: Fd, token: Token, interest: Interest) -> Result<(), Errno> {
        if token.0 == WAKER_TOKEN.0 {
            return Err(Errno::EINVAL);
        }
        let mio_interest = mio_interest(interest)?;
        let mut registered = self.registered();
        let Some(&(old_token, _)) = registered.by_fd.get(&fd.0) else {
            return Err(Errno::ENOENT);
        };
        if old_token != token && registered.by_token.contains_key(&token.0) {
            return Err(Errno::EINVAL);
        }
        self.registry
            .reregister(&mut SourceFd(&fd.0), mio::Token(token.0), mio_interest)
            .map_err(|e| errno_of(&e))?;
        registered.by_token.remove(&old_token.0);
        registered.by_token.insert(token.0, fd.0);
        registered.by_fd.insert(fd.0, (token, interest));
        Ok(())
    }

    fn deregister(&self, fd: Fd) -> Result<(), Errno> {
        let mut registered = self.registered();
        let Some((token, _)) = registered.by_fd.remove(&fd.0) else {
            return Err(Errno::ENOENT);
        };
        registered.by_token.remove(&token.0);
        match self.registry.deregister(&mut SourceFd(&fd.0)) {
            // A closed fd has already left the epoll set.
            Ok(()) | Err(_) => Ok(()),
        }
    }

    fn poll(&self, events: &mut Vec<Event>, timeout: Option<Duration>) -> Result<(), Errno> {
        events.clear();
        let mut state = self
            .poll
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = &mut *state;
        {
            let registered = self.registered();
            for fd in state.delivered.drain(..) {
                if let Some(&(token, interest)) = registered.by_fd.get(&fd) {
                    // Failure means the fd was closed behind the poller's back; there
                    // is then nothing left to report for it.
                    let _ = self.registry.reregister(
                        &mut SourceFd(&fd),
                        mio::Token(token.0),
                        mio_interest(interest)?,
                    );
                }
            }
        }
        state
            .poll
            .poll(&mut state.events, timeout)
            .map_err(|e| errno_of(&e))?;
        let registered = self.registered();
        for event in state.events.iter() {
            if event.token() == WAKER_TOKEN {
                continue;
            }
            let error = event.is_error();
            let readable = event.is_readable() || event.is_read_closed() || error;
            let writable = event.is_writable() || event.is_write_closed() || error;
            // An fd deregistered since the kernel queued its event is not reported.
            let Some(&fd) = registered.by_token.get(&event.token().0) else {
                continue;
            };
            let Some(&(_, interest)) = registered.by_fd.get(&fd) else {
                continue;
            };
            state.delivered.push(fd);
            let readable = readable && interest.readable;
            let writable = writable && interest.writable;
            if readable || writable {
                events.push(Event {
                    token: Token(event.token().0),
                    readable,
                    writable,
                });
            }
        }
        Ok(())
    }

    fn waker(&self) -> OsWaker {
        self.waker.clone()
    }
}

impl PollWaker for OsWaker {
    fn wake(&self) -> Result<(), Errno> {
        self.0.wake().map_err(|e| errno_of(&e))
    }
}
