//! The conformance crate's one error type.
//!
//! Two kinds of error, and one thing that is not an error:
//!
//! - **bad input**, the caller's to fix: a scenario that cannot be read or is not
//!   valid, an unknown watcher, backend, fault or zoo watcher, a bad shard or seed, a
//!   CPython asked for that is not there ([`Error::is_bad_input`]; the CLI exits 2);
//! - **a harness failure**: a backend that could not run (loopwatch's set-up failed, a
//!   simulation did not complete, an interpreter could not be started or printed no
//!   trace), or output that could not be written (the CLI exits 1);
//! - a **divergence** (a trace that differs from the reference) is a result, not an
//!   error: it is a [`Status`](crate::matrix::Status) of a matrix cell or a failing
//!   [`Verdict`](crate::explore::Verdict).

use std::fmt;
use std::path::PathBuf;

/// What went wrong, when a run could not be judged at all.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory that cannot be read: a scenario, a scenario directory, the
    /// ratchet file.
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The read error.
        source: std::io::Error,
    },
    /// A scenario (or the ratchet file) that is not valid.
    Invalid {
        /// Where it came from (a path, or a built-in scenario's name); `None` for
        /// text given directly.
        origin: Option<String>,
        /// What is wrong, with line and column for malformed JSON.
        message: String,
    },
    /// A name that means nothing here: of a watcher, a backend, a fault, a zoo
    /// watcher or a built-in scenario.
    Unknown {
        /// What kind of name (`"watcher"`, `"backend"` …).
        what: &'static str,
        /// The name given.
        given: String,
        /// The valid names.
        valid: Vec<String>,
    },
    /// A scenario named on a command line that is neither a file nor a built-in
    /// scenario.
    NoScenario {
        /// The name given.
        given: String,
    },
    /// An argument whose value is out of range or malformed (a shard, a seed, an
    /// interpreter given with `--python`).
    BadArgument {
        /// The argument.
        argument: &'static str,
        /// Why it is refused.
        message: String,
    },
    /// A CPython version that was asked for and is not installed.
    NoCPython {
        /// The minor version asked for (3.`minor`).
        minor: u32,
        /// The interpreters that were found, as `cpython3.X (path)`.
        found: Vec<String>,
    },
    /// A backend that could not run a scenario or check.
    Backend {
        /// The backend's label (`os`, `sim`, `cpython3.12`).
        backend: String,
        /// The scenario or check.
        scenario: String,
        /// What failed.
        message: String,
    },
    /// Output that could not be written (a report).
    Io {
        /// The path.
        path: PathBuf,
        /// The write error.
        source: std::io::Error,
    },
}

impl Error {
    /// An invalid scenario or ratchet entry, from text given directly.
    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid {
            origin: None,
            message: message.into(),
        }
    }

    /// The same error, said of `origin` (a path or a built-in scenario's name).
    pub(crate) fn at(self, origin: impl Into<String>) -> Error {
        match self {
            Error::Invalid { message, .. } => Error::Invalid {
                origin: Some(origin.into()),
                message,
            },
            other => other,
        }
    }

    /// Whether the error is bad input (fixed by changing the command or the
    /// scenario) rather than a failure of the harness.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Unreadable { .. }
            | Error::Invalid { .. }
            | Error::Unknown { .. }
            | Error::NoScenario { .. }
            | Error::BadArgument { .. }
            | Error::NoCPython { .. } => true,
            Error::Backend { .. } | Error::Io { .. } => false,
        }
    }

    /// The CLI's exit code for this error: 2 for bad input, 1 for a harness failure.
    pub fn exit_code(&self) -> u8 {
        if self.is_bad_input() { 2 } else { 1 }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unreadable { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Invalid {
                origin: Some(origin),
                message,
            } => write!(f, "{origin}: {message}"),
            Error::Invalid {
                origin: None,
                message,
            } => f.write_str(message),
            Error::Unknown { what, given, valid } => {
                write!(f, "unknown {what} {given:?}; valid: {}", valid.join(", "))
            }
            Error::NoScenario { given } => write!(
                f,
                "{given}: no such file, and no built-in scenario of that name (`loopwatch scenario list` lists them)"
            ),
            Error::BadArgument { argument, message } => write!(f, "{argument}: {message}"),
            Error::NoCPython { minor, found } if found.is_empty() => write!(
                f,
                "no CPython 3.{minor} found, and no other CPython either (give one with --python PATH)"
            ),
            Error::NoCPython { minor, found } => write!(
                f,
                "no CPython 3.{minor} found; found: {} (or give one with --python PATH)",
                found.join(", ")
            ),
            Error::Backend {
                backend,
                scenario,
                message,
            } => write!(f, "{scenario} on {backend}: {message}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Unreadable { source, .. } | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_and_harness_failures_have_their_exit_codes() {
        // Goal: the CLI's exit code follows the kind: 2 for what the caller gave, 1
        // for what failed while running.
        let bad = [
            Error::invalid("watchers must not be empty"),
            Error::Unknown {
                what: "watcher",
                given: "speedy".into(),
                valid: vec!["safe".into()],
            },
            Error::NoCPython {
                minor: 99,
                found: vec![],
            },
        ];
        for error in bad {
            assert_eq!(error.exit_code(), 2, "{error}");
        }
        let harness = Error::Backend {
            backend: "cpython3.12".into(),
            scenario: "two-children".into(),
            message: "No such file or directory".into(),
        };
        assert_eq!(harness.exit_code(), 1);
        assert_eq!(
            harness.to_string(),
            "two-children on cpython3.12: No such file or directory"
        );
        assert_eq!(
            Error::invalid("step 0: bad").at("x.json").to_string(),
            "x.json: step 0: bad"
        );
    }
}
