//! One error type whose [`ErrorKind`] mirrors the Python exception CPython raises.

use std::fmt;

use crate::kernel::Errno;

/// The Python exception class an [`Error`] stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `RuntimeError`: the operation is not valid in the current state (closed loop,
    /// loop already running, no current loop, wrong thread …).
    RuntimeError,
    /// `ValueError`: an argument has the right type but a bad value.
    ValueError,
    /// `TypeError`: an argument of the wrong kind, where Rust's types cannot rule it out.
    TypeError,
    /// `NotImplementedError`: a method of an abstract policy or watcher.
    NotImplementedError,
    /// `AssertionError`: a precondition CPython checks with `assert` (e.g. Fast's
    /// "Must use the context manager").
    AssertionError,
    /// `asyncio.CancelledError`: the task or future was cancelled.
    CancelledError,
    /// `asyncio.InvalidStateError`: a future's result or exception set twice, or set
    /// after it was cancelled.
    InvalidStateError,
    /// `asyncio.TimeoutError`: `wait_for`'s timeout passed first.
    TimeoutError,
    /// `ChildProcessError` (`ECHILD`).
    ChildProcessError,
    /// `ProcessLookupError` (`ESRCH`).
    ProcessLookupError,
    /// Any other `OSError`, with its exact errno.
    Os(Errno),
    /// Rust code run by the loop (a callback or a task) panicked; the message is the
    /// panic's. CPython's equivalent is whatever exception the callback raised.
    Panic,
}

/// Linux's values of the errnos CPython maps to an `OSError` subclass and the seam
/// does not name (the seam's [`Errno`] constants are Linux's values too).
mod linux {
    use crate::kernel::Errno;

    pub(super) const ECONNABORTED: Errno = Errno(103);
    pub(super) const ECONNRESET: Errno = Errno(104);
    pub(super) const ESHUTDOWN: Errno = Errno(108);
    pub(super) const ETIMEDOUT: Errno = Errno(110);
    pub(super) const ECONNREFUSED: Errno = Errno(111);
    pub(super) const EALREADY: Errno = Errno(114);
    pub(super) const EINPROGRESS: Errno = Errno(115);
}

impl ErrorKind {
    /// The name of the Python exception class, as `type(exc).__name__` gives it in
    /// CPython: `"RuntimeError"`, `"ChildProcessError"`, and for [`ErrorKind::Os`] the
    /// `OSError` subclass CPython picks for the errno (`EACCES` and `EPERM` are
    /// `"PermissionError"`, `ENOENT` is `"FileNotFoundError"`, `EAGAIN` is
    /// `"BlockingIOError"`, …; an errno without a subclass is `"OSError"`). A
    /// [`ErrorKind::Panic`] is `"Exception"`: the Rust counterpart of whatever
    /// exception a Python callback raised.
    pub fn python_name(&self) -> &'static str {
        match *self {
            ErrorKind::RuntimeError => "RuntimeError",
            ErrorKind::ValueError => "ValueError",
            ErrorKind::TypeError => "TypeError",
            ErrorKind::NotImplementedError => "NotImplementedError",
            ErrorKind::AssertionError => "AssertionError",
            ErrorKind::CancelledError => "CancelledError",
            ErrorKind::ChildProcessError => "ChildProcessError",
            ErrorKind::ProcessLookupError => "ProcessLookupError",
            ErrorKind::InvalidStateError => "InvalidStateError",
            ErrorKind::TimeoutError => "TimeoutError",
            ErrorKind::Panic => "Exception",
            // CPython's errno map (`Objects/exceptions.c`, PEP 3151).
            ErrorKind::Os(errno) => match errno {
                Errno::EAGAIN | linux::EALREADY | linux::EINPROGRESS => "BlockingIOError",
                Errno::ECHILD => "ChildProcessError",
                Errno::EPIPE | linux::ESHUTDOWN => "BrokenPipeError",
                linux::ECONNABORTED => "ConnectionAbortedError",
                linux::ECONNREFUSED => "ConnectionRefusedError",
                linux::ECONNRESET => "ConnectionResetError",
                Errno::EEXIST => "FileExistsError",
                Errno::ENOENT => "FileNotFoundError",
                Errno::EISDIR => "IsADirectoryError",
                Errno::ENOTDIR => "NotADirectoryError",
                Errno::EINTR => "InterruptedError",
                Errno::EACCES | Errno::EPERM => "PermissionError",
                Errno::ESRCH => "ProcessLookupError",
                linux::ETIMEDOUT => "TimeoutError",
                _ => "OSError",
            },
        }
    }
}

/// An error of loopwatch's API: a kind and CPython's message.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// `RuntimeError(message)`.
    pub fn runtime(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::RuntimeError, message)
    }

    /// `ValueError(message)`.
    pub fn value(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::ValueError, message)
    }

    /// `NotImplementedError()`, as the abstract classes raise it (no message).
    pub fn not_implemented() -> Error {
        Error::new(ErrorKind::NotImplementedError, "")
    }

    /// `CancelledError()`.
    pub fn cancelled() -> Error {
        Error::new(ErrorKind::CancelledError, "")
    }

    /// The Python exception class.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, as `str(exc)` gives it in CPython.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The errno behind an `OSError`-family error.
    pub fn errno(&self) -> Option<Errno> {
        match self.kind {
            ErrorKind::Os(errno) => Some(errno),
            ErrorKind::ChildProcessError => Some(Errno::ECHILD),
            ErrorKind::ProcessLookupError => Some(Errno::ESRCH),
            _ => None,
        }
    }
}

impl From<Errno> for Error {
    /// As CPython maps errno values to `OSError` subclasses.
    fn from(errno: Errno) -> Error {
        let kind = match errno {
            Errno::ECHILD => ErrorKind::ChildProcessError,
            Errno::ESRCH => ErrorKind::ProcessLookupError,
            errno => ErrorKind::Os(errno),
        };
        Error::new(kind, errno.to_string())
    }
}

impl From<Error> for std::io::Error {
    fn from(error: Error) -> std::io::Error {
        match error.errno() {
            Some(errno) => std::io::Error::from_raw_os_error(errno.0),
            None => std::io::Error::other(error),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({:?})", self.kind, self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            ErrorKind::RuntimeError => "RuntimeError",
            ErrorKind::ValueError => "ValueError",
            ErrorKind::TypeError => "TypeError",
            ErrorKind::NotImplementedError => "NotImplementedError",
            ErrorKind::AssertionError => "AssertionError",
            ErrorKind::CancelledError => "CancelledError",
            ErrorKind::InvalidStateError => "InvalidStateError",
            ErrorKind::TimeoutError => "TimeoutError",
            ErrorKind::ChildProcessError => "ChildProcessError",
            ErrorKind::ProcessLookupError => "ProcessLookupError",
            ErrorKind::Os(_) => "OSError",
            ErrorKind::Panic => "panic",
        };
        if self.message.is_empty() {
            write!(f, "{name}")
        } else {
            write!(f, "{name}: {}", self.message)
        }
    }
}

impl std::error::Error for Error {}

/// `Result` with loopwatch's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_names_follow_cpython() {
        // Goal: each kind names the class CPython raises, and an errno names the
        // `OSError` subclass CPython's errno map gives it (PEP 3151), whether the
        // error came from `From<Errno>` or was built as `ErrorKind::Os` directly.
        assert_eq!(ErrorKind::RuntimeError.python_name(), "RuntimeError");
        assert_eq!(
            ErrorKind::NotImplementedError.python_name(),
            "NotImplementedError"
        );
        assert_eq!(ErrorKind::CancelledError.python_name(), "CancelledError");
        assert_eq!(ErrorKind::Panic.python_name(), "Exception");
        let by_errno = [
            (Errno::ECHILD, "ChildProcessError"),
            (Errno::ESRCH, "ProcessLookupError"),
            (Errno::EPERM, "PermissionError"),
            (Errno::EACCES, "PermissionError"),
            (Errno::ENOENT, "FileNotFoundError"),
            (Errno::EEXIST, "FileExistsError"),
            (Errno::EINTR, "InterruptedError"),
            (Errno::EAGAIN, "BlockingIOError"),
            (Errno::EPIPE, "BrokenPipeError"),
            (Errno(20), "NotADirectoryError"),
            (Errno(21), "IsADirectoryError"),
            (Errno(104), "ConnectionResetError"),
            (Errno(110), "TimeoutError"),
            (Errno(115), "BlockingIOError"),
            (Errno::EBADF, "OSError"),
            (Errno::EINVAL, "OSError"),
            (Errno::EMFILE, "OSError"),
            (Errno::ENOSYS, "OSError"),
        ];
        for (errno, name) in by_errno {
            assert_eq!(Error::from(errno).kind().python_name(), name, "{errno:?}");
            assert_eq!(ErrorKind::Os(errno).python_name(), name, "Os({errno:?})");
        }
    }
}
