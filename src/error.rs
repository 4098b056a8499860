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
