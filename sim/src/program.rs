//! What a simulated child does: its plan, and how a `SpawnRequest` names one.
//!
//! The simulator understands the same requests the real-OS tests make, so one test
//! body can run on both kernels: `true`, `false`, `sleep S`, `cat`, `echo …`, and
//! `sh -c` with `exit N`, `kill -SIG $$`, `sleep S; exit N`, `echo …; exit N` or
//! `echo …; read -r line; exit N`.
//! Anything else is `ENOENT` unless registered with
//! [`SimKernel::register_program`](crate::SimKernel::register_program).

use std::time::Duration;

use loopwatch::kernel::{Signal, SpawnRequest};

/// The scripted behaviour of a simulated child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildPlan {
    /// Write `stdout` to its standard output, then exit with `code` once `after` has
    /// passed since it started.
    Exit {
        /// Exit code.
        code: u8,
        /// Virtual time from start to exit.
        after: Duration,
        /// Bytes written to stdout before exiting.
        stdout: Vec<u8>,
    },
    /// Send itself `signal` once `after` has passed (a shell's `kill -S $$`): it dies
    /// from it, unless `signal` is ignored by default (then it exits 0) or stops it
    /// (then it exits 0 once continued).
    Killed {
        /// The signal.
        signal: Signal,
        /// Virtual time from start to death.
        after: Duration,
    },
    /// Run until killed.
    Forever,
    /// Copy stdin to stdout until end of file, then exit 0.
    Cat,
    /// Write `stdout` to its standard output, then read one line of standard input (a
    /// shell's `read -r line`: up to and including a newline, or to end of file; a
    /// stdin that is not a pipe reads as end of file), then exit with `code`, or,
    /// without one, with `read`'s status: 0 for a whole line, 1 at end of file.
    ReadLine {
        /// Bytes written to stdout before reading.
        stdout: Vec<u8>,
        /// Exit code after the read (`exit N` after `read`), if any.
        code: Option<u8>,
    },
}

impl ChildPlan {
    /// Exit with `code` at once.
    pub fn exit(code: u8) -> ChildPlan {
        ChildPlan::Exit {
            code,
            after: Duration::ZERO,
            stdout: Vec::new(),
        }
    }

    /// Exit with `code` after `after`.
    pub fn exit_after(code: u8, after: Duration) -> ChildPlan {
        ChildPlan::Exit {
            code,
            after,
            stdout: Vec::new(),
        }
    }
}

fn signal_by_name(name: &str) -> Option<Signal> {
    let name = name.trim_start_matches('-');
    if let Ok(number) = name.parse::<i32>() {
        return Some(Signal(number));
    }
    Some(match name.trim_start_matches("SIG") {
        "HUP" => Signal::SIGHUP,
        "INT" => Signal::SIGINT,
        "QUIT" => Signal::SIGQUIT,
        "ABRT" => Signal::SIGABRT,
        "KILL" => Signal::SIGKILL,
        "USR1" => Signal::SIGUSR1,
        "SEGV" => Signal::SIGSEGV,
        "USR2" => Signal::SIGUSR2,
        "PIPE" => Signal::SIGPIPE,
        "ALRM" => Signal::SIGALRM,
        "TERM" => Signal::SIGTERM,
        "CHLD" => Signal::SIGCHLD,
        "CONT" => Signal::SIGCONT,
        "STOP" => Signal::SIGSTOP,
        "TSTP" => Signal(20),
        "TTIN" => Signal(21),
        "TTOU" => Signal(22),
        "URG" => Signal(23),
        "WINCH" => Signal(28),
        _ => return None,
    })
}

fn seconds(text: &str) -> Option<Duration> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn basename(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// One `sh -c` script: `;`-separated commands, of which the last decides the fate.
/// `ulimit` is accepted and does nothing. `read` may only follow output (not a
/// `sleep`), and only `exit N` may follow it.
fn shell(script: &str) -> Option<ChildPlan> {
    let mut after = Duration::ZERO;
    let mut stdout = Vec::new();
    let mut commands = script.split(';').map(str::trim).filter(|c| !c.is_empty());
    while let Some(command) = commands.next() {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["exit", code] => {
                return Some(ChildPlan::Exit {
                    code: code.parse::<u8>().ok()?,
                    after,
                    stdout,
                });
            }
            ["kill", signal, "$$"] => {
                return Some(ChildPlan::Killed {
                    signal: signal_by_name(signal)?,
                    after,
                });
            }
            ["read", ..] if after.is_zero() => {
                let rest: Vec<Vec<&str>> = commands
                    .by_ref()
                    .map(|c| c.split_whitespace().collect())
                    .collect();
                let code = match rest.as_slice() {
                    [] => None,
                    [exit] => match exit.as_slice() {
                        ["exit", code] => Some(code.parse::<u8>().ok()?),
                        _ => return None,
                    },
                    _ => return None,
                };
                return Some(ChildPlan::ReadLine { stdout, code });
            }
            ["sleep", s] => after += seconds(s)?,
            ["echo", rest @ ..] => {
                stdout.extend_from_slice(rest.join(" ").as_bytes());
                stdout.push(b'\n');
            }
            ["true"] | [":"] => {}
            // Resource limits (`ulimit -c 0` before a test's `kill -SEGV $$`, so that
            // no core file is written) change nothing the simulator models.
            ["ulimit", ..] => {}
            _ => return None,
        }
    }
    Some(ChildPlan::Exit {
        code: 0,
        after,
        stdout,
    })
}

/// The plan for a request the simulator knows without registration.
pub(crate) fn builtin(request: &SpawnRequest) -> Option<ChildPlan> {
    let program = request.program.to_str()?;
    let args: Vec<&str> = request
        .args
        .iter()
        .map(|a| a.to_str())
        .collect::<Option<_>>()?;
    match (basename(program), args.as_slice()) {
        ("true", []) => Some(ChildPlan::exit(0)),
        ("false", []) => Some(ChildPlan::exit(1)),
        ("sleep", [s]) => Some(ChildPlan::exit_after(0, seconds(s)?)),
        ("cat", []) => Some(ChildPlan::Cat),
        ("echo", words) => {
            let mut stdout = words.join(" ").into_bytes();
            stdout.push(b'\n');
            Some(ChildPlan::Exit {
                code: 0,
                after: Duration::ZERO,
                stdout,
            })
        }
        ("sh", ["-c", script]) => shell(script),
        _ => None,
    }
}
