//! The programs a simulated child runs: the ones the simulator knows, the shell
//! subset its `sh -c` understands, and how to teach it your own.
//!
//! On the real OS the kernel runs the program a [`SpawnRequest`] names. On the
//! simulator a [`ChildPlan`] stands for it: when the child exits and with which
//! status, what it writes to stdout and stderr, whether it dies of a signal, runs
//! until killed or copies its input. The simulator finds the plan for a request in
//! this order:
//!
//! 1. a program registered under exactly the request's `program` string, with
//!    [`SimKernel::register_program`] (one plan) or
//!    [`SimKernel::register_program_fn`] (a plan computed from the [`Invocation`]: the
//!    arguments, the final environment, the working directory);
//! 2. a built-in program, recognised by the last component of its path (`/bin/sh`,
//!    `/usr/bin/sh` and `sh` are all `sh`);
//! 3. nothing: the spawn fails with `ENOENT`, as on the OS for a program that does not
//!    exist, and the simulator says what it did not model in its trace (so the trace
//!    tail of a failing sweep shows it) and in a `tracing` warning on target
//!    `loopwatch_sim`, for example: "the simulator does not model `grep` (in
//!    `/bin/sh -c 'grep x'`): register it with SimKernel::register_program or
//!    register_program_fn".
//!
//! A request the simulator cannot run exactly is refused the same way rather than
//! guessed at. `PATH` is not searched. [`builtin`] shows what the simulator makes of a
//! request without registrations.
//!
//! # Built-in programs
//!
//! | Program | Arguments | What the child does |
//! |---|---|---|
//! | `true` | any, but not a lone `--help` or `--version` | exits 0 |
//! | `false` | as `true` | exits 1 |
//! | `sleep` | one non-negative decimal number of seconds (`2`, `0.5`, `.5`, `1e-1`), optionally with an `s`, `m`, `h` or `d` suffix | exits 0 once that much virtual time has passed |
//! | `cat` | none | copies stdin to stdout until end of file, then exits 0 |
//! | `echo` | words, after an optional `-n` | writes the words joined by spaces and a newline (none after `-n`), exits 0 |
//! | `sh` | `-c SCRIPT [NAME [ARGS…]]` | runs SCRIPT in the shell subset below; `$0` is NAME, else the program as spawned |
//!
//! `echo` (the program and the shell's) refuses a backslash in its words and any option
//! but one leading `-n`: the echo commands of dash, bash and coreutils disagree there.
//!
//! # The shell subset
//!
//! The reference is dash, `/bin/sh` on Debian and Ubuntu; where bash would behave
//! differently, the form is refused.
//!
//! | Form | Meaning |
//! |---|---|
//! | `A; B`, or `A` and `B` on separate lines | the commands in turn; the script exits with the last one's status |
//! | `# …` | a comment, to the end of the line |
//! | `'…'`, `"…"`, `\c` | quoting as in sh: quoted text is not split, and `"…"` still expands `$` forms |
//! | `$NAME`, `${NAME}` | the variable from the child's environment: the request's `env` over the simulated process's own ([`SimKernel::set_env_var`]; empty at start) less the request's `env_remove`, none of it with `env_clear`; unset is empty; unquoted, the value is split at blanks |
//! | `$$` | the child's pid |
//! | `$?` | the status of the last command |
//! | `$0` | the shell's name |
//! | `$((EXPR))` | 64-bit integer arithmetic: decimal numbers, variables by bare name or by `$`, `+ - * / %`, unary `+ -`, parentheses; a division by zero is dash's error: a message on stderr, exit 2 |
//! | `exit [N]` | exits with N mod 256 (without N, with `$?`); N that is not a number up to 2³¹−1 is dash's "Illegal number" error: a message on stderr, exit 2 |
//! | `echo [-n] WORDS…` | as the `echo` program |
//! | `COMMAND >&2`, `COMMAND 1>&2` | the command's standard output goes to standard error |
//! | `true`, `:`, `false` | status 0, 0 and 1 |
//! | `sleep S` | the `sleep` program: virtual time passes, status 0 |
//! | `kill [-SIG \| -N \| -s SIG] $$` | the shell signals itself (default SIGTERM; SIG is a name without `SIG`, N a number up to 64): it dies of the signal; or nothing happens (0, SIGCHLD, SIGCONT, SIGURG, SIGWINCH); or, as the last command, it stops until SIGCONT and then exits 0 |
//! | `read -r NAME` | reads one line of standard input: up to and including a newline (status 0) or to end of file (status 1); a stdin that is not a pipe is at end of file. Until then the child is certainly alive. Only with nothing slept before it, and as the last command or followed by just `exit [N]`, where N uses neither NAME nor `$?` (without N the script exits with `read`'s status) |
//! | `ulimit [-H\|-S] -X N` | sets a resource limit, which changes nothing the simulator models; status 0 |
//! | `exec PROGRAM ARGS…` | the shell becomes the program (built-in or registered), after what it has written and slept so far |
//! | `PROGRAM ARGS…` | a program (built-in or registered) the shell runs and waits for: what it writes and the time it takes are the shell's, its exit status is `$?` |
//!
//! Refused: pipelines, `&&`, `||`, `&`, redirections other than `>&2`, subshells and
//! groups, command substitution, assignments, compound commands (`if`, `for`,
//! `while`, `case` …), globbing and `~`, positional parameters and the `${…}`
//! operators, `$PPID`, `$PWD` and the other variables the shell sets itself. Refused
//! too because no plan could say it: a program run as a command that dies of a signal
//! (dash would report it and go on: run it with `exec`), commands after a `kill` that
//! stops the shell, output or a sleep before `cat` or a program that runs until killed,
//! a sleep before `read` and any command after it but `exit [N]`.
//!
//! # Time
//!
//! A child writes all its output as soon as it runs (as far as its pipes have room)
//! and ends once the sum of its sleeps has passed (a script with `read`, once its line
//! or end of file is there): output written after a `sleep` on the OS is there from
//! the start on the simulator. A program the shell runs as a
//! command is part of the shell's own plan, so a signal to the shell ends both.
//!
//! # Examples, one per form
//!
//! Each example asks [`builtin`] for the plan of `/bin/sh -c SCRIPT` for a child with
//! pid 1001; `sh` and `run` are these helpers:
//!
//! ```
//! use loopwatch::kernel::{Pid, SpawnRequest};
//! use loopwatch_sim::program::{self, ChildPlan, Unmodelled};
//!
//! fn run(script: &str, env: &[(&str, &str)]) -> Result<ChildPlan, Unmodelled> {
//!     let mut request = SpawnRequest::new("/bin/sh", ["-c", script]);
//!     request.env = env.iter().map(|(k, v)| (k.into(), v.into())).collect();
//!     program::builtin(&request, Pid(1001))
//! }
//! let sh = |script: &str| run(script, &[]);
//!
//! assert_eq!(sh("exit 3"), Ok(ChildPlan::exit(3)));
//! ```
//!
//! Built-in programs, spawned directly:
//!
//! ```
//! # use std::time::Duration;
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! let spawn = |program: &str, args: &[&str]| {
//!     program::builtin(&SpawnRequest::new(program, args), Pid(1001))
//! };
//! assert_eq!(spawn("/bin/true", &[]), Ok(ChildPlan::exit(0)));
//! assert_eq!(spawn("false", &[]), Ok(ChildPlan::exit(1)));
//! assert_eq!(spawn("sleep", &["0.5"]), Ok(ChildPlan::exit_after(0, Duration::from_millis(500))));
//! assert_eq!(spawn("sleep", &["2m"]), Ok(ChildPlan::exit_after(0, Duration::from_secs(120))));
//! assert_eq!(spawn("cat", &[]), Ok(ChildPlan::Cat));
//! assert_eq!(spawn("echo", &["a", "b"]), Ok(ChildPlan::exit_with_output(0, "a b\n", "")));
//! assert_eq!(spawn("echo", &["-n", "a"]), Ok(ChildPlan::exit_with_output(0, "a", "")));
//! assert!(spawn("echo", &["-e", "a\\nb"]).is_err());
//! assert!(spawn("grep", &["x"]).is_err());
//! ```
//!
//! `;`, newlines, comments, and the script's status:
//!
//! ```
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! # let sh = |s: &str| program::builtin(&SpawnRequest::new("/bin/sh", ["-c", s]), Pid(1001));
//! assert_eq!(sh("true; false"), Ok(ChildPlan::exit(1)));
//! assert_eq!(sh("false\ntrue # the last status counts"), Ok(ChildPlan::exit(0)));
//! assert_eq!(sh(""), Ok(ChildPlan::exit(0)));
//! ```
//!
//! Quoting:
//!
//! ```
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! # let sh = |s: &str| program::builtin(&SpawnRequest::new("/bin/sh", ["-c", s]), Pid(1001));
//! assert_eq!(
//!     sh(r#"echo 'a  b' "c  d" e\ \ f"#),
//!     Ok(ChildPlan::exit_with_output(0, "a  b c  d e  f\n", ""))
//! );
//! ```
//!
//! `$NAME` and `${NAME}`, split at blanks unless quoted:
//!
//! ```
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan, Unmodelled};
//! # fn run(script: &str, env: &[(&str, &str)]) -> Result<ChildPlan, Unmodelled> {
//! #     let mut request = SpawnRequest::new("/bin/sh", ["-c", script]);
//! #     request.env = env.iter().map(|(k, v)| (k.into(), v.into())).collect();
//! #     program::builtin(&request, Pid(1001))
//! # }
//! let env = [("N", "7"), ("WORDS", "a   b")];
//! assert_eq!(
//!     run(r#"echo ${N}x $WORDS "$WORDS" -$UNSET-"#, &env),
//!     Ok(ChildPlan::exit_with_output(0, "7x a b a   b --\n", ""))
//! );
//! ```
//!
//! `$$`, `$?` and `$0`:
//!
//! ```
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! # let sh = |s: &str| program::builtin(&SpawnRequest::new("/bin/sh", ["-c", s]), Pid(1001));
//! assert_eq!(
//!     sh("false; echo $$ $? $0"),
//!     Ok(ChildPlan::exit_with_output(0, "1001 1 /bin/sh\n", ""))
//! );
//! ```
//!
//! `$((EXPR))`, and a division by zero as dash reports it:
//!
//! ```
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan, Unmodelled};
//! # fn run(script: &str, env: &[(&str, &str)]) -> Result<ChildPlan, Unmodelled> {
//! #     let mut request = SpawnRequest::new("/bin/sh", ["-c", script]);
//! #     request.env = env.iter().map(|(k, v)| (k.into(), v.into())).collect();
//! #     program::builtin(&request, Pid(1001))
//! # }
//! assert_eq!(run("exit $((N % 7))", &[("N", "23")]), Ok(ChildPlan::exit(2)));
//! assert_eq!(run("echo $(( (1 + $N) * -2 ))", &[("N", "4")]),
//!            Ok(ChildPlan::exit_with_output(0, "-10\n", "")));
//! assert_eq!(
//!     run("echo $((N / 0)); echo not reached", &[("N", "1")]),
//!     Ok(ChildPlan::exit_with_output(
//!         2,
//!         "",
//!         "/bin/sh: 1: arithmetic expression: division by zero: \"N / 0\"\n"
//!     ))
//! );
//! ```
//!
//! `exit`:
//!
//! ```
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! # let sh = |s: &str| program::builtin(&SpawnRequest::new("/bin/sh", ["-c", s]), Pid(1001));
//! assert_eq!(sh("exit 300"), Ok(ChildPlan::exit(44)));
//! assert_eq!(sh("false; exit"), Ok(ChildPlan::exit(1)));
//! assert_eq!(
//!     sh("exit -1"),
//!     Ok(ChildPlan::exit_with_output(2, "", "/bin/sh: 1: exit: Illegal number: -1\n"))
//! );
//! ```
//!
//! `echo` and `>&2`:
//!
//! ```
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! # let sh = |s: &str| program::builtin(&SpawnRequest::new("/bin/sh", ["-c", s]), Pid(1001));
//! assert_eq!(
//!     sh("echo out; echo err >&2; echo -n more; exit 4"),
//!     Ok(ChildPlan::exit_with_output(4, "out\nmore", "err\n"))
//! );
//! ```
//!
//! `true`, `:` and `false`:
//!
//! ```
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! # let sh = |s: &str| program::builtin(&SpawnRequest::new("/bin/sh", ["-c", s]), Pid(1001));
//! assert_eq!(sh(":"), Ok(ChildPlan::exit(0)));
//! assert_eq!(sh("true; false"), Ok(ChildPlan::exit(1)));
//! ```
//!
//! `sleep`, with an expanded value:
//!
//! ```
//! # use std::time::Duration;
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! let mut request = SpawnRequest::new("/bin/sh", ["-c", "sleep $T; sleep 0.5; exit 3"]);
//! request.env.push(("T".into(), "1".into()));
//! assert_eq!(
//!     program::builtin(&request, Pid(1001)),
//!     Ok(ChildPlan::exit_after(3, Duration::from_millis(1500)))
//! );
//! ```
//!
//! `kill … $$`:
//!
//! ```
//! # use loopwatch::kernel::{Pid, Signal, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! # let sh = |s: &str| program::builtin(&SpawnRequest::new("/bin/sh", ["-c", s]), Pid(1001));
//! assert_eq!(sh("kill -TERM $$"), Ok(ChildPlan::killed(Signal::SIGTERM)));
//! assert_eq!(sh("kill -9 $$"), Ok(ChildPlan::killed(Signal::SIGKILL)));
//! assert_eq!(sh("kill -s INT $$"), Ok(ChildPlan::killed(Signal::SIGINT)));
//! assert_eq!(sh("kill $$"), Ok(ChildPlan::killed(Signal::SIGTERM)));
//! // SIGCHLD's default action is to do nothing: the script goes on.
//! assert_eq!(sh("kill -CHLD $$; exit 5"), Ok(ChildPlan::exit(5)));
//! // dash's kill has no `-SIGTERM`, and only the shell's own pid is modelled.
//! assert!(sh("kill -SIGTERM $$").is_err());
//! assert!(sh("kill -TERM 1").is_err());
//! ```
//!
//! `read -r NAME`, after output, as the last command or before `exit [N]`:
//!
//! ```
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! # let sh = |s: &str| program::builtin(&SpawnRequest::new("/bin/sh", ["-c", s]), Pid(1001));
//! assert_eq!(
//!     sh("echo ready; read -r line; exit 3"),
//!     Ok(ChildPlan::ReadLine { stdout: b"ready\n".to_vec(), stderr: vec![], code: Some(3) })
//! );
//! // Without `exit N`, the script's status is `read`'s: 0 for a line, 1 at end of file.
//! assert_eq!(
//!     sh("read -r line"),
//!     Ok(ChildPlan::ReadLine { stdout: vec![], stderr: vec![], code: None })
//! );
//! // What was read, and what the script does after it, are not modelled.
//! assert!(sh("read -r line; exit $line").is_err());
//! assert!(sh("read -r line; echo done").is_err());
//! assert!(sh("sleep 1; read -r line").is_err());
//! assert!(sh("read line").is_err());
//! ```
//!
//! `ulimit`:
//!
//! ```
//! # use loopwatch::kernel::{Pid, Signal, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! # let sh = |s: &str| program::builtin(&SpawnRequest::new("/bin/sh", ["-c", s]), Pid(1001));
//! assert_eq!(sh("ulimit -c 0; kill -SEGV $$"), Ok(ChildPlan::killed(Signal::SIGSEGV)));
//! // A query prints the limit, which is not modelled.
//! assert!(sh("ulimit -c").is_err());
//! ```
//!
//! `exec`:
//!
//! ```
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! # let sh = |s: &str| program::builtin(&SpawnRequest::new("/bin/sh", ["-c", s]), Pid(1001));
//! assert_eq!(sh("exec cat"), Ok(ChildPlan::Cat));
//! assert_eq!(
//!     sh("echo a; exec sh -c 'echo b; exit 6'; echo never"),
//!     Ok(ChildPlan::exit_with_output(6, "a\nb\n", ""))
//! );
//! ```
//!
//! A program as a command:
//!
//! ```
//! # use std::time::Duration;
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program::{self, ChildPlan};
//! # let sh = |s: &str| program::builtin(&SpawnRequest::new("/bin/sh", ["-c", s]), Pid(1001));
//! assert_eq!(
//!     sh("/bin/echo hi >&2; sh -c 'exit 7'; exit $(($? + 1))"),
//!     Ok(ChildPlan::exit_with_output(8, "", "hi\n"))
//! );
//! ```
//!
//! What is refused, and why:
//!
//! ```
//! # use loopwatch::kernel::{Pid, SpawnRequest};
//! # use loopwatch_sim::program;
//! # let sh = |s: &str| program::builtin(&SpawnRequest::new("/bin/sh", ["-c", s]), Pid(1001));
//! let refusal = sh("grep -q x; exit 3").unwrap_err();
//! assert_eq!(refusal.what(), "`grep`");
//! assert_eq!(
//!     refusal.to_string(),
//!     "the simulator does not model `grep` (in `/bin/sh -c 'grep -q x; exit 3'`): \
//!      register it with SimKernel::register_program or register_program_fn"
//! );
//! assert_eq!(sh("echo a | cat").unwrap_err().what(), "`|`");
//! assert_eq!(sh("if true; then exit 1; fi").unwrap_err().what(), "`if`");
//! ```
//!
//! [`SimKernel::register_program`]: crate::SimKernel::register_program
//! [`SimKernel::register_program_fn`]: crate::SimKernel::register_program_fn
//! [`SimKernel::set_env_var`]: crate::SimKernel::set_env_var

mod arith;
mod shell;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use loopwatch::kernel::{Pid, Signal, SpawnRequest};

/// The scripted behaviour of a simulated child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildPlan {
    /// Write `stdout` and `stderr` to its standard output and error, then exit with
    /// `code` once `after` has passed since it started (and all is written).
    Exit {
        /// Exit code.
        code: u8,
        /// Virtual time from start to exit.
        after: Duration,
        /// Bytes written to stdout before exiting.
        stdout: Vec<u8>,
        /// Bytes written to stderr before exiting.
        stderr: Vec<u8>,
    },
    /// Write `stdout` and `stderr`, then send itself `signal` once `after` has passed
    /// (a shell's `kill -S $$`): it dies from it, unless `signal` is ignored by default
    /// (then it exits 0) or stops it (then it exits 0 once continued).
    Killed {
        /// The signal.
        signal: Signal,
        /// Virtual time from start to death.
        after: Duration,
        /// Bytes written to stdout before the signal.
        stdout: Vec<u8>,
        /// Bytes written to stderr before the signal.
        stderr: Vec<u8>,
    },
    /// Run until killed.
    Forever,
    /// Copy stdin to stdout until end of file, then exit 0.
    Cat,
    /// Write `stdout` and `stderr`, then read one line of standard input (a shell's
    /// `read -r NAME`: up to and including a newline, or to end of file; a stdin that
    /// is not a pipe reads as end of file), then exit with `code`, or, without one,
    /// with `read`'s status: 0 for a whole line, 1 at end of file. Until its input has
    /// a newline or is closed, the child is certainly alive.
    ReadLine {
        /// Bytes written to stdout before reading.
        stdout: Vec<u8>,
        /// Bytes written to stderr before reading.
        stderr: Vec<u8>,
        /// Exit code after the read (`exit N` after `read`), if any.
        code: Option<u8>,
    },
}

impl ChildPlan {
    /// Exit with `code` at once.
    pub fn exit(code: u8) -> ChildPlan {
        ChildPlan::exit_after(code, Duration::ZERO)
    }

    /// Exit with `code` after `after`.
    pub fn exit_after(code: u8, after: Duration) -> ChildPlan {
        ChildPlan::Exit {
            code,
            after,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// Write `stdout` and `stderr`, then exit with `code`.
    pub fn exit_with_output(
        code: u8,
        stdout: impl Into<Vec<u8>>,
        stderr: impl Into<Vec<u8>>,
    ) -> ChildPlan {
        ChildPlan::Exit {
            code,
            after: Duration::ZERO,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    /// Send itself `signal` at once.
    pub fn killed(signal: Signal) -> ChildPlan {
        ChildPlan::Killed {
            signal,
            after: Duration::ZERO,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// The bytes it writes to stdout and to stderr (none for `Forever` and `Cat`,
    /// whose output is not scripted).
    pub(crate) fn output(&self) -> [&[u8]; 2] {
        match self {
            ChildPlan::Exit { stdout, stderr, .. }
            | ChildPlan::Killed { stdout, stderr, .. }
            | ChildPlan::ReadLine { stdout, stderr, .. } => [stdout, stderr],
            ChildPlan::Forever | ChildPlan::Cat => [&[], &[]],
        }
    }
}

/// What a registered program is started with, as its closure sees it (see
/// [`SimKernel::register_program_fn`](crate::SimKernel::register_program_fn)).
///
/// ```
/// use loopwatch::kernel::SpawnRequest;
/// use loopwatch_sim::program::Invocation;
///
/// let mut request = SpawnRequest::new("tool", ["--fail", "3"]);
/// request.env.push(("MODE".into(), "strict".into()));
/// let invocation = Invocation::new(&request);
/// assert_eq!(invocation.program(), "tool");
/// assert_eq!(invocation.arg(1), Some("3"));
/// assert_eq!(invocation.var("MODE"), Some("strict"));
/// assert_eq!(invocation.cwd(), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    program: OsString,
    args: Vec<OsString>,
    env: BTreeMap<OsString, OsString>,
    cwd: Option<PathBuf>,
    /// The process's pid, when the simulator knows it: not for a program that a
    /// simulated shell runs as a command (it would have a pid of its own).
    pid: Option<Pid>,
}

impl Invocation {
    /// The invocation of `request` by a process with an empty environment: what a
    /// registered closure gets for it in a simulation where
    /// [`SimKernel::set_env_var`](crate::SimKernel::set_env_var) was not called. For
    /// testing such a closure on its own.
    pub fn new(request: &SpawnRequest) -> Invocation {
        Invocation::spawned(request, &BTreeMap::new(), None)
    }

    /// The invocation of `request` spawned with `pid` by a process whose environment
    /// is `parent_env`.
    fn spawned(
        request: &SpawnRequest,
        parent_env: &BTreeMap<OsString, OsString>,
        pid: Option<Pid>,
    ) -> Invocation {
        let mut env = if request.env_clear {
            BTreeMap::new()
        } else {
            parent_env.clone()
        };
        // As the OS kernel applies them: the removals first, so that a variable in
        // both `env_remove` and `env` is set.
        for name in &request.env_remove {
            env.remove(name);
        }
        env.extend(request.env.iter().cloned());
        Invocation {
            program: request.program.clone(),
            args: request.args.clone(),
            env,
            cwd: request.cwd.clone(),
            pid,
        }
    }

    /// A program a simulated shell runs, in its environment; with its pid when the
    /// shell `exec`s it.
    fn command(&self, program: &str, args: &[&str], exec: bool) -> Invocation {
        Invocation {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            pid: if exec { self.pid } else { None },
        }
    }

    /// The program as the request (or the shell's command) names it.
    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// The arguments after the program name.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// Argument `index` (0 is the first after the program name), if there is one and
    /// it is UTF-8.
    pub fn arg(&self, index: usize) -> Option<&str> {
        self.args.get(index).and_then(|a| a.to_str())
    }

    /// The final environment: the request's `env` over the simulated process's own,
    /// without the variables of its `env_remove` (none of it with `env_clear`); a
    /// variable in both `env` and `env_remove` is set.
    pub fn env(&self) -> &BTreeMap<OsString, OsString> {
        &self.env
    }

    /// Variable `name` of the final environment, if set and UTF-8.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.get(OsStr::new(name)).and_then(|v| v.to_str())
    }

    /// The working directory the request asks for; `None` is the parent's.
    pub fn cwd(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    fn strings(&self) -> Option<(&str, Vec<&str>)> {
        let args = self
            .args
            .iter()
            .map(|a| a.to_str())
            .collect::<Option<_>>()?;
        Some((self.program.to_str()?, args))
    }
}

/// Why the simulator will not run a request: the command or shell construct it does
/// not model, and what to do about it. Its text is what the trace and the warning
/// say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmodelled {
    what: String,
    why: String,
    /// The request, as a command line, once known.
    request: Option<String>,
}

impl Unmodelled {
    fn new(what: impl Into<String>, why: &str) -> Unmodelled {
        Unmodelled {
            what: what.into(),
            why: why.to_string(),
            request: None,
        }
    }

    /// A program that is neither built in nor registered.
    fn command(invocation: &Invocation) -> Unmodelled {
        Unmodelled::new(
            format!("`{}`", invocation.program.to_string_lossy()),
            "register it with SimKernel::register_program or register_program_fn",
        )
    }

    fn in_request(mut self, request: &SpawnRequest) -> Unmodelled {
        let words = std::iter::once(&request.program).chain(&request.args);
        let shown: Vec<String> = words.map(|w| shell_quoted(&w.to_string_lossy())).collect();
        self.request = Some(shown.join(" "));
        self
    }

    /// The command or construct not modelled, in backquotes (`` `grep` ``, `` `|` ``).
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Why, and what to do instead.
    pub fn reason(&self) -> &str {
        &self.why
    }
}

impl fmt::Display for Unmodelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the simulator does not model {}", self.what)?;
        if let Some(request) = &self.request {
            write!(f, " (in `{request}`)")?;
        }
        write!(f, ": {}", self.why)
    }
}

impl std::error::Error for Unmodelled {}

/// `word` as a shell would need it written: bare when plain, else in single quotes.
fn shell_quoted(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./,:=+%@".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The plan the simulator gives `request` for a child with `pid`, without registered
/// programs and with an empty environment in the parent: `Err` says what is not
/// modelled. See the [module documentation](self) for the forms.
///
/// ```
/// use loopwatch::kernel::{Pid, SpawnRequest};
/// use loopwatch_sim::program::{self, ChildPlan};
///
/// let request = SpawnRequest::new("/bin/sh", ["-c", "echo $$; exit 2"]);
/// assert_eq!(
///     program::builtin(&request, Pid(4242)),
///     Ok(ChildPlan::exit_with_output(2, "4242\n", ""))
/// );
/// ```
pub fn builtin(request: &SpawnRequest, pid: Pid) -> Result<ChildPlan, Unmodelled> {
    Programs::default().resolve(request, pid)
}

/// A registered program's closure.
pub(crate) type ProgramFn = dyn Fn(&Invocation) -> ChildPlan + Send + Sync;

#[derive(Clone)]
enum Registered {
    Plan(ChildPlan),
    Fn(Arc<ProgramFn>),
}

/// The simulated process's registered programs and its environment, which its
/// children inherit.
#[derive(Clone, Default)]
pub(crate) struct Programs {
    registered: BTreeMap<String, Registered>,
    env: BTreeMap<OsString, OsString>,
}

impl fmt::Debug for Programs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Programs")
            .field("registered", &self.registered.keys().collect::<Vec<_>>())
            .field("env", &self.env)
            .finish()
    }
}

impl Programs {
    pub(crate) fn register(&mut self, program: String, plan: ChildPlan) {
        self.registered.insert(program, Registered::Plan(plan));
    }

    pub(crate) fn register_fn(&mut self, program: String, behaviour: Arc<ProgramFn>) {
        self.registered.insert(program, Registered::Fn(behaviour));
    }

    /// Sets (`Some`) or removes (`None`) a variable of the process's environment.
    pub(crate) fn set_env_var(&mut self, name: OsString, value: Option<OsString>) {
        match value {
            Some(value) => self.env.insert(name, value),
            None => self.env.remove(&name),
        };
    }

    /// The plan for `request`, spawned as `pid`.
    pub(crate) fn resolve(
        &self,
        request: &SpawnRequest,
        pid: Pid,
    ) -> Result<ChildPlan, Unmodelled> {
        let invocation = Invocation::spawned(request, &self.env, Some(pid));
        let lookup = Lookup {
            registered: &self.registered,
        };
        lookup
            .find(&invocation, 0)
            .and_then(|plan| plan.ok_or_else(|| Unmodelled::command(&invocation)))
            .map_err(|refusal| refusal.in_request(request))
    }
}

/// How deep `exec sh -c …` and shells run by shells may nest.
const MAX_DEPTH: usize = 16;

/// Finds programs: the registered ones, then the built-in ones.
pub(crate) struct Lookup<'a> {
    registered: &'a BTreeMap<String, Registered>,
}

impl Lookup<'_> {
    /// The plan of the program `invocation` names; `None` if there is no such program.
    fn find(&self, invocation: &Invocation, depth: usize) -> Result<Option<ChildPlan>, Unmodelled> {
        if depth > MAX_DEPTH {
            return Err(Unmodelled::new(
                format!("shells nested more than {MAX_DEPTH} deep"),
                "a script that runs itself again is not modelled",
            ));
        }
        let registered = invocation
            .program
            .to_str()
            .and_then(|name| self.registered.get(name));
        match registered {
            Some(Registered::Plan(plan)) => Ok(Some(plan.clone())),
            Some(Registered::Fn(behaviour)) => {
                Ok(Some(call_registered(behaviour.as_ref(), invocation)))
            }
            None => self.builtin(invocation, depth),
        }
    }

    fn builtin(
        &self,
        invocation: &Invocation,
        depth: usize,
    ) -> Result<Option<ChildPlan>, Unmodelled> {
        let Some((program, args)) = invocation.strings() else {
            return Err(Unmodelled::new(
                format!("`{}`", invocation.program.to_string_lossy()),
                "a program name or argument that is not UTF-8 is not modelled",
            ));
        };
        let name = program.rsplit('/').next().unwrap_or(program);
        let arguments = || {
            Unmodelled::new(
                format!("`{name}` with the arguments {args:?}"),
                "see the built-in programs in loopwatch_sim::program",
            )
        };
        let help = matches!(args.as_slice(), ["--help" | "--version"]);
        Ok(Some(match (name, args.as_slice()) {
            ("true", _) if !help => ChildPlan::exit(0),
            ("false", _) if !help => ChildPlan::exit(1),
            ("sleep", [time]) => ChildPlan::exit_after(0, seconds(time).ok_or_else(arguments)?),
            ("cat", []) => ChildPlan::Cat,
            ("echo", words) if !help => ChildPlan::exit_with_output(0, echo_output(words)?, ""),
            ("sh", ["-c", script, rest @ ..]) => {
                let zero = rest.first().copied().unwrap_or(program).to_string();
                shell::Shell::new(invocation, zero, self, depth).run(script)?
            }
            ("true" | "false" | "sleep" | "cat" | "echo" | "sh", _) => return Err(arguments()),
            _ => return Ok(None),
        }))
    }
}

thread_local! {
    /// Set while a registered closure runs, inside a spawn that holds the model.
    static IN_PROGRAM_FN: Cell<bool> = const { Cell::new(false) };
}

fn call_registered(behaviour: &ProgramFn, invocation: &Invocation) -> ChildPlan {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_PROGRAM_FN.set(self.0);
        }
    }
    let _restore = Restore(IN_PROGRAM_FN.replace(true));
    behaviour(invocation)
}

/// Panics if a registered program's closure is running: it runs inside the spawn,
/// while the simulator's state is locked, so a kernel call from it would deadlock.
pub(crate) fn assert_not_in_program_fn() {
    if IN_PROGRAM_FN.get() {
        panic!(
            "a program registered with SimKernel::register_program_fn called the simulated \
             kernel: it runs inside the spawn and may only compute its ChildPlan"
        );
    }
}

/// What `echo WORDS` writes, as dash's builtin and the coreutils program agree on it.
fn echo_output(words: &[&str]) -> Result<Vec<u8>, Unmodelled> {
    let (newline, words) = match words {
        ["-n", rest @ ..] => (false, rest),
        _ => (true, words),
    };
    let option =
        |w: &str| w.len() > 1 && w.starts_with('-') && w[1..].bytes().all(|b| b"neE".contains(&b));
    if words.first().is_some_and(|w| option(w)) || words.iter().any(|w| w.contains('\\')) {
        return Err(Unmodelled::new(
            format!("`echo {}`", words.join(" ")),
            "echo's options other than one leading `-n`, and backslashes, differ between dash, \
             bash and coreutils",
        ));
    }
    let mut out = words.join(" ").into_bytes();
    if newline {
        out.push(b'\n');
    }
    Ok(out)
}

/// A `sleep` operand: a non-negative decimal number, optionally with a unit suffix, up
/// to `u32::MAX` seconds.
fn seconds(text: &str) -> Option<Duration> {
    let (number, unit) = match text.as_bytes().last()? {
        b's' => (&text[..text.len() - 1], 1.0),
        b'm' => (&text[..text.len() - 1], 60.0),
        b'h' => (&text[..text.len() - 1], 3600.0),
        b'd' => (&text[..text.len() - 1], 86400.0),
        _ => (text, 1.0),
    };
    let decimal = number.bytes().any(|b| b.is_ascii_digit())
        && number
            .bytes()
            .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b))
        && !number.starts_with('-');
    if !decimal {
        return None;
    }
    let value = number.parse::<f64>().ok()? * unit;
    (value.is_finite() && (0.0..=f64::from(u32::MAX)).contains(&value))
        .then(|| Duration::from_secs_f64(value))
}
