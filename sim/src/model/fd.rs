//! Fds and pipes: the process's fd table, pipe buffers, and the readiness a poll sees.

use std::collections::VecDeque;

use loopwatch::kernel::{Errno, Fd, Pid};

use super::{Attempt, Config, Model, PIPE_CAPACITY, ProcState, Tid, Wait};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FdKind {
    Stdio,
    PipeRead(u64),
    PipeWrite(u64),
    Epoll(u64),
    EventFd(u64),
    PidFd { pid: Pid, seq: u64 },
}

#[derive(Clone, Copy, Debug)]
pub(super) struct FdEntry {
    pub(super) kind: FdKind,
    pub(super) nonblocking: bool,
    pub(super) cloexec: bool,
    /// Which opening of this number it is: every open file gets a new one, so a
    /// number closed and reused has a different generation.
    pub(super) generation: u64,
}

/// An fd number kept beyond the call that named it (the wakeup fd, a `Notify(fd)`
/// disposition), with the file it referred to then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FdRef {
    pub(super) fd: Fd,
    /// The generation of the file the number referred to when it was set.
    pub(super) generation: u64,
    /// That file has been closed since (its number may refer to another file now).
    pub(super) closed: bool,
}

impl FdRef {
    /// The open `fd` of `entry`.
    pub(super) fn new(fd: Fd, entry: &FdEntry) -> FdRef {
        FdRef {
            fd,
            generation: entry.generation,
            closed: false,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Pipe {
    pub(super) buf: VecDeque<u8>,
    pub(super) readers: u32,
    pub(super) writers: u32,
    /// When it last became readable (data or end of file), for ready-list order.
    pub(super) stamp: u64,
}

pub(super) fn fd_limit(config: &Config) -> usize {
    config.faults.fd_limit.unwrap_or(1024)
}

impl Model {
    pub(super) fn alloc_fd(&mut self, kind: FdKind, cloexec: bool) -> Result<Fd, Errno> {
        if self.fds.len() >= fd_limit(&self.config) {
            self.mark("emfile");
            return Err(Errno::EMFILE);
        }
        let mut fd = 0;
        while self.fds.contains_key(&fd) {
            fd += 1;
        }
        self.opens += 1;
        self.fds.insert(
            fd,
            FdEntry {
                kind,
                nonblocking: false,
                cloexec,
                generation: self.opens,
            },
        );
        Ok(Fd(fd))
    }

    /// Closes `fd`: its number leaves the table, the pollers forget the file (as
    /// epoll does when the last reference to it goes), the wakeup fd and `Notify`
    /// fds that named it are marked closed, and its reference is released.
    pub(super) fn remove_fd(&mut self, fd: Fd) -> Option<FdEntry> {
        let entry = self.fds.remove(&fd.0)?;
        for poller in self.pollers.values_mut() {
            if let Some(registration) = poller.registrations.get_mut(&fd.0) {
                if registration.generation == entry.generation {
                    registration.armed = false;
                }
            }
        }
        let refs = self
            .wakeup_fd
            .iter_mut()
            .chain(self.notify_fds.values_mut());
        for kept in refs {
            if kept.fd == fd && kept.generation == entry.generation {
                kept.closed = true;
            }
        }
        self.release(entry.kind);
        Some(entry)
    }

    pub(super) fn entry(&self, fd: Fd) -> Result<FdEntry, Errno> {
        self.fds.get(&fd.0).copied().ok_or(Errno::EBADF)
    }

    /// Drops one reference to whatever `kind` refers to.
    pub(super) fn release(&mut self, kind: FdKind) {
        match kind {
            FdKind::PipeRead(id) => {
                if let Some(pipe) = self.pipes.get_mut(&id) {
                    pipe.readers -= 1;
                }
                self.gc_pipe(id);
            }
            FdKind::PipeWrite(id) => {
                if let Some(pipe) = self.pipes.get_mut(&id) {
                    pipe.writers -= 1;
                    self.stamps += 1;
                    pipe.stamp = self.stamps;
                }
                self.gc_pipe(id);
            }
            FdKind::Epoll(id) => {
                if let Some(poller) = self.pollers.get_mut(&id) {
                    poller.closed = true;
                }
            }
            FdKind::Stdio | FdKind::EventFd(_) | FdKind::PidFd { .. } => {}
        }
        self.changed = true;
    }

    fn gc_pipe(&mut self, id: u64) {
        if self
            .pipes
            .get(&id)
            .is_some_and(|p| p.readers == 0 && p.writers == 0)
        {
            self.pipes.remove(&id);
        }
    }

    pub(crate) fn pipe(&mut self, tid: Tid) -> Attempt<Result<(Fd, Fd), Errno>> {
        let result = self.make_pipe();
        self.log(tid, format_args!("pipe() = {result:?}"));
        Attempt::Done(result)
    }

    /// A new empty pipe with one reader and one writer; returns its id.
    pub(super) fn new_pipe(&mut self) -> u64 {
        let id = self.next_pipe;
        self.next_pipe += 1;
        self.pipes.insert(
            id,
            Pipe {
                buf: VecDeque::new(),
                readers: 1,
                writers: 1,
                stamp: 0,
            },
        );
        id
    }

    fn make_pipe(&mut self) -> Result<(Fd, Fd), Errno> {
        if self.fds.len() + 2 > fd_limit(&self.config) {
            self.mark("emfile");
            return Err(Errno::EMFILE);
        }
        let id = self.new_pipe();
        let read = self.alloc_fd(FdKind::PipeRead(id), true)?;
        let write = self.alloc_fd(FdKind::PipeWrite(id), true)?;
        self.changed = true;
        Ok((read, write))
    }

    pub(crate) fn read(&mut self, tid: Tid, fd: Fd, len: usize) -> Attempt<Result<Vec<u8>, Errno>> {
        let result = match self.entry(fd) {
            Err(e) => Err(e),
            Ok(FdEntry {
                kind: FdKind::PipeRead(id),
                nonblocking,
                ..
            }) => {
                let pipe = self.pipes.get_mut(&id).expect("open pipe");
                if !pipe.buf.is_empty() {
                    let n = len.min(pipe.buf.len());
                    let data: Vec<u8> = pipe.buf.drain(..n).collect();
                    self.changed = true;
                    Ok(data)
                } else if pipe.writers == 0 || len == 0 {
                    Ok(Vec::new())
                } else if nonblocking {
                    Err(Errno::EAGAIN)
                } else {
                    let wait = Wait {
                        deadline: None,
                        interruptible: true,
                    };
                    return match self.block_or_interrupt(tid, wait, || Err(Errno::EINTR)) {
                        Attempt::Done(r) => {
                            self.log(tid, format_args!("read({fd}) = {r:?}"));
                            Attempt::Done(r)
                        }
                        block => block,
                    };
                }
            }
            Ok(_) => Err(Errno::EINVAL),
        };
        match &result {
            Ok(data) => self.log(tid, format_args!("read({fd}, {len}) = {}", data.len())),
            Err(e) => self.log(tid, format_args!("read({fd}, {len}) = {e:?}")),
        }
        Attempt::Done(result)
    }

    pub(crate) fn write(&mut self, tid: Tid, fd: Fd, data: &[u8]) -> Attempt<Result<usize, Errno>> {
        let result = match self.entry(fd) {
            Err(e) => Err(e),
            Ok(FdEntry {
                kind: FdKind::PipeWrite(id),
                nonblocking,
                ..
            }) => {
                let pipe = self.pipes.get_mut(&id).expect("open pipe");
                let room = PIPE_CAPACITY - pipe.buf.len();
                if pipe.readers == 0 {
                    // No SIGPIPE is sent: the process is taken to ignore it, as a Rust
                    // program starts (see `Model::new`), so the write fails instead.
                    Err(Errno::EPIPE)
                } else if data.is_empty() {
                    Ok(0)
                } else if room > 0 {
                    let n = room.min(data.len());
                    pipe.buf.extend(&data[..n]);
                    self.stamps += 1;
                    pipe.stamp = self.stamps;
                    self.changed = true;
                    Ok(n)
                } else if nonblocking {
                    Err(Errno::EAGAIN)
                } else {
                    let wait = Wait {
                        deadline: None,
                        interruptible: true,
                    };
                    return self.block_or_interrupt(tid, wait, || Err(Errno::EINTR));
                }
            }
            Ok(FdEntry {
                kind: FdKind::Stdio,
                ..
            }) => Ok(data.len()),
            Ok(_) => Err(Errno::EINVAL),
        };
        self.log(
            tid,
            format_args!("write({fd}, {}) = {result:?}", data.len()),
        );
        Attempt::Done(result)
    }

    pub(crate) fn close(&mut self, tid: Tid, fd: Fd) -> Attempt<Result<(), Errno>> {
        let result = match self.remove_fd(fd) {
            None => Err(Errno::EBADF),
            Some(_) => Ok(()),
        };
        self.log(tid, format_args!("close({fd}) = {result:?}"));
        Attempt::Done(result)
    }

    pub(crate) fn set_flag(
        &mut self,
        tid: Tid,
        fd: Fd,
        nonblocking: Option<bool>,
        cloexec: Option<bool>,
    ) -> Attempt<Result<(), Errno>> {
        let result = match self.fds.get_mut(&fd.0) {
            None => Err(Errno::EBADF),
            Some(entry) => {
                if let Some(value) = nonblocking {
                    entry.nonblocking = value;
                }
                if let Some(value) = cloexec {
                    entry.cloexec = value;
                }
                Ok(())
            }
        };
        self.log(
            tid,
            format_args!("fcntl({fd}, nonblock={nonblocking:?} cloexec={cloexec:?}) = {result:?}"),
        );
        Attempt::Done(result)
    }

    /// When `fd` last became readable: epoll's ready list keeps that order.
    pub(super) fn ready_stamp(&self, fd: i32) -> u64 {
        match self.fds.get(&fd).map(|e| e.kind) {
            Some(FdKind::PipeRead(id)) => self.pipes.get(&id).map_or(0, |p| p.stamp),
            Some(FdKind::PidFd { pid, seq }) => match self.procs.get(&pid) {
                Some(proc) if proc.seq == seq => proc.stamp,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// Whether `fd` reads and writes without blocking, as epoll sees it.
    pub(super) fn readiness(&self, fd: i32) -> (bool, bool) {
        let Some(entry) = self.fds.get(&fd) else {
            return (false, false);
        };
        match entry.kind {
            FdKind::Stdio => (true, true),
            FdKind::PipeRead(id) => {
                let pipe = &self.pipes[&id];
                (!pipe.buf.is_empty() || pipe.writers == 0, false)
            }
            FdKind::PipeWrite(id) => {
                let pipe = &self.pipes[&id];
                (false, pipe.buf.len() < PIPE_CAPACITY || pipe.readers == 0)
            }
            FdKind::PidFd { pid, seq } => {
                let exited = match self.procs.get(&pid) {
                    Some(proc) if proc.seq == seq => matches!(proc.state, ProcState::Zombie(_)),
                    _ => true,
                };
                (exited, false)
            }
            FdKind::EventFd(id) => (self.pollers.get(&id).is_some_and(|p| p.woken), true),
            FdKind::Epoll(_) => (false, false),
        }
    }

    /// Open fds other than stdio.
    pub(crate) fn open_fds(&self) -> usize {
        self.fds.len().saturating_sub(3)
    }
}
