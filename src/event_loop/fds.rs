//! Fds: readers and writers, registered with the loop's poller.

use super::{EventLoop, Handle, LoopState, Repeating, RepeatingCallback, closed_error};
use crate::error::{Error, Result};
use crate::kernel::{Fd, Interest, Kernel, Poller, Token};

pub(super) struct FdCallback {
    pub(super) handle: Handle,
    pub(super) callback: RepeatingCallback,
}

impl<K: Kernel> EventLoop<K> {
    /// Calls `callback` whenever `fd` is readable (level-triggered), replacing any
    /// reader already set for it.
    ///
    /// # Errors
    ///
    /// `ValueError` for a negative fd; `RuntimeError` if the loop is closed or runs in
    /// another thread; the kernel's `OSError` (e.g. `EBADF`, `EPERM`) if the fd cannot
    /// be polled.
    pub fn add_reader<F>(&self, fd: Fd, callback: F) -> Result<Handle>
    where
        F: FnMut() + Send + 'static,
    {
        self.add_fd_callback(fd, true, Box::new(callback), std::any::type_name::<F>())
    }

    /// Calls `callback` whenever `fd` is writable; as [`EventLoop::add_reader`].
    ///
    /// # Errors
    ///
    /// As [`EventLoop::add_reader`].
    pub fn add_writer<F>(&self, fd: Fd, callback: F) -> Result<Handle>
    where
        F: FnMut() + Send + 'static,
    {
        self.add_fd_callback(fd, false, Box::new(callback), std::any::type_name::<F>())
    }

    /// Stops watching `fd` for reading. Returns whether a reader was set.
    ///
    /// # Errors
    ///
    /// `RuntimeError` if the loop runs in another thread. A closed loop answers `false`.
    pub fn remove_reader(&self, fd: Fd) -> Result<bool> {
        self.remove_fd_callback(fd, true)
    }

    /// Stops watching `fd` for writing. Returns whether a writer was set.
    ///
    /// # Errors
    ///
    /// As [`EventLoop::remove_reader`].
    pub fn remove_writer(&self, fd: Fd) -> Result<bool> {
        self.remove_fd_callback(fd, false)
    }

    fn interest_of(state: &LoopState<K>, fd: Fd) -> Option<Interest> {
        let readable = state.readers.contains_key(&fd);
        let writable = state.writers.contains_key(&fd);
        (readable || writable).then_some(Interest { readable, writable })
    }

    fn add_fd_callback(
        &self,
        fd: Fd,
        reader: bool,
        callback: Box<dyn FnMut() + Send + 'static>,
        name: &'static str,
    ) -> Result<Handle> {
        if fd.0 < 0 {
            return Err(Error::value(format!("Invalid file descriptor: {}", fd.0)));
        }
        let poller = self.inner.poller.lock().clone().ok_or_else(closed_error)?;
        let handle = Handle::new(name);
        let mut state = self.inner.state.lock();
        if state.closed {
            return Err(closed_error());
        }
        self.inner.kernel_thread_check(&state)?;
        if state.signals.read_fd() == Some(fd) {
            return Err(Error::value(format!(
                "File descriptor {} is used by the loop itself",
                fd.0
            )));
        }
        let before = Self::interest_of(&state, fd);
        let after = Interest {
            readable: reader || before.is_some_and(|i| i.readable),
            writable: !reader || before.is_some_and(|i| i.writable),
        };
        let token = Token(fd.0 as usize);
        if before.is_none() {
            poller.register(fd, token, after).map_err(Error::from)?;
        } else if before != Some(after) {
            poller.reregister(fd, token, after).map_err(Error::from)?;
        }
        let entry = FdCallback {
            handle: handle.clone(),
            callback: Repeating::new(callback),
        };
        let table = if reader {
            &mut state.readers
        } else {
            &mut state.writers
        };
        if let Some(old) = table.insert(fd, entry) {
            old.handle.cancel();
        }
        Ok(handle)
    }

    fn remove_fd_callback(&self, fd: Fd, reader: bool) -> Result<bool> {
        let Some(poller) = self.inner.poller.lock().clone() else {
            return Ok(false);
        };
        let removed = {
            let mut state = self.inner.state.lock();
            self.inner.kernel_thread_check(&state)?;
            let table = if reader {
                &mut state.readers
            } else {
                &mut state.writers
            };
            let Some(removed) = table.remove(&fd) else {
                return Ok(false);
            };
            removed.handle.cancel();
            let token = Token(fd.0 as usize);
            // The fd may have been closed already, in which case the kernel forgot it;
            // the loop's own bookkeeping is what matters.
            let _ = match Self::interest_of(&state, fd) {
                None => poller.deregister(fd),
                Some(rest) => poller.reregister(fd, token, rest),
            };
            removed
        };
        drop(removed);
        Ok(true)
    }
}
