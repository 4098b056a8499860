//! Value types of the kernel seam: pids, fds, signals, wait statuses, errno values and
//! the poller's vocabulary.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// A process id. Real pids are positive; `Pid(0)` and negative values only appear as
/// input to be rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(pub i32);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A file descriptor number. The kernel seam passes numbers, not owning handles, so the
/// simulator can hand out the same numbers a real kernel would (lowest free first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fd(pub i32);

impl fmt::Display for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A signal number, with Linux's numbering for the constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signal(pub i32);

impl Signal {
    /// Hangup.
    pub const SIGHUP: Signal = Signal(1);
    /// Interrupt from the keyboard.
    pub const SIGINT: Signal = Signal(2);
    /// Quit from the keyboard.
    pub const SIGQUIT: Signal = Signal(3);
    /// Abort.
    pub const SIGABRT: Signal = Signal(6);
    /// Kill; cannot be caught or ignored.
    pub const SIGKILL: Signal = Signal(9);
    /// User-defined signal 1.
    pub const SIGUSR1: Signal = Signal(10);
    /// Invalid memory reference.
    pub const SIGSEGV: Signal = Signal(11);
    /// User-defined signal 2.
    pub const SIGUSR2: Signal = Signal(12);
    /// Write to a pipe with no readers.
    pub const SIGPIPE: Signal = Signal(13);
    /// Alarm clock.
    pub const SIGALRM: Signal = Signal(14);
    /// Termination.
    pub const SIGTERM: Signal = Signal(15);
    /// A child stopped or terminated.
    pub const SIGCHLD: Signal = Signal(17);
    /// Continue if stopped.
    pub const SIGCONT: Signal = Signal(18);
    /// Stop; cannot be caught or ignored.
    pub const SIGSTOP: Signal = Signal(19);
    /// The largest signal number (`NSIG - 1` on Linux).
    pub const MAX: i32 = 64;

    /// Whether the number names a signal at all (1 ..= 64), as CPython's
    /// `_check_signal` asks before anything else.
    pub fn is_valid(self) -> bool {
        (1..=Self::MAX).contains(&self.0)
    }

    /// Whether a handler may be installed: SIGKILL and SIGSTOP cannot be caught.
    pub fn is_catchable(self) -> bool {
        self.is_valid() && self != Self::SIGKILL && self != Self::SIGSTOP
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An `errno` value, exact, so that the simulator can reproduce what a kernel returns
/// and callers can branch on it (ECHILD means "reaped elsewhere", ENOSYS means "no
/// pidfd").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(1);
    /// No such file or directory.
    pub const ENOENT: Errno = Errno(2);
    /// No such process.
    pub const ESRCH: Errno = Errno(3);
    /// Interrupted system call.
    pub const EINTR: Errno = Errno(4);
    /// Input/output error.
    pub const EIO: Errno = Errno(5);
    /// Argument list too long.
    pub const E2BIG: Errno = Errno(7);
    /// Exec format error.
    pub const ENOEXEC: Errno = Errno(8);
    /// Bad file descriptor.
    pub const EBADF: Errno = Errno(9);
    /// No child processes.
    pub const ECHILD: Errno = Errno(10);
    /// Resource temporarily unavailable (also EWOULDBLOCK).
    pub const EAGAIN: Errno = Errno(11);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(12);
    /// Permission denied.
    pub const EACCES: Errno = Errno(13);
    /// File exists.
    pub const EEXIST: Errno = Errno(17);
    /// Not a directory.
    pub const ENOTDIR: Errno = Errno(20);
    /// Is a directory.
    pub const EISDIR: Errno = Errno(21);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(22);
    /// Too many open files in the system.
    pub const ENFILE: Errno = Errno(23);
    /// Too many open files.
    pub const EMFILE: Errno = Errno(24);
    /// Text file busy.
    pub const ETXTBSY: Errno = Errno(26);
    /// No space left on device (also: a poller's watch limit reached).
    pub const ENOSPC: Errno = Errno(28);
    /// Broken pipe.
    pub const EPIPE: Errno = Errno(32);
    /// File name too long.
    pub const ENAMETOOLONG: Errno = Errno(36);
    /// Function not implemented.
    pub const ENOSYS: Errno = Errno(38);
    /// Too many levels of symbolic links.
    pub const ELOOP: Errno = Errno(40);

    /// The symbolic name, where this crate knows it.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EINTR => "EINTR",
            Errno::EIO => "EIO",
            Errno::E2BIG => "E2BIG",
            Errno::ENOEXEC => "ENOEXEC",
            Errno::EBADF => "EBADF",
            Errno::ECHILD => "ECHILD",
            Errno::EAGAIN => "EAGAIN",
            Errno::ENOMEM => "ENOMEM",
            Errno::EACCES => "EACCES",
            Errno::EEXIST => "EEXIST",
            Errno::ENOTDIR => "ENOTDIR",
            Errno::EISDIR => "EISDIR",
            Errno::EINVAL => "EINVAL",
            Errno::ENFILE => "ENFILE",
            Errno::EMFILE => "EMFILE",
            Errno::ENOSPC => "ENOSPC",
            Errno::ETXTBSY => "ETXTBSY",
            Errno::EPIPE => "EPIPE",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::ENOSYS => "ENOSYS",
            Errno::ELOOP => "ELOOP",
            _ => return None,
        })
    }

    /// The C library's description, as Python prints after `[Errno N]`.
    pub fn description(self) -> String {
        let text = std::io::Error::from_raw_os_error(self.0).to_string();
        // std appends " (os error N)"; Python does not.
        match text.rfind(" (os error ") {
            Some(at) => text[..at].to_string(),
            None => text,
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[Errno {}] {}", self.0, self.description())
    }
}

impl std::error::Error for Errno {}

/// A raw wait status as `waitpid` fills it in (Linux encoding), kept raw so that the
/// "status we do not understand" case of spec R-1 can pass through unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExitStatus(pub i32);

impl ExitStatus {
    /// The status of a child that called `exit(code)`.
    pub fn from_exit_code(code: u8) -> ExitStatus {
        ExitStatus(i32::from(code) << 8)
    }

    /// The status of a child killed by `signal`.
    pub fn from_signal(signal: Signal, core_dumped: bool) -> ExitStatus {
        ExitStatus((signal.0 & 0x7f) | if core_dumped { 0x80 } else { 0 })
    }

    /// `WIFEXITED` then `WEXITSTATUS`.
    pub fn code(self) -> Option<i32> {
        (self.0 & 0x7f == 0).then_some((self.0 >> 8) & 0xff)
    }

    /// `WIFSIGNALED` then `WTERMSIG`.
    pub fn signal(self) -> Option<Signal> {
        let sig = self.0 & 0x7f;
        // 0 is "exited", 0x7f is "stopped"; anything else is a terminating signal.
        (sig != 0 && sig != 0x7f).then_some(Signal(sig))
    }

    /// `WCOREDUMP`.
    pub fn core_dumped(self) -> bool {
        self.signal().is_some() && self.0 & 0x80 != 0
    }

    /// asyncio's returncode (spec R-1): the exit code, `-signum` when killed by a signal,
    /// and the raw status when it is neither.
    pub fn returncode(self) -> i32 {
        if let Some(signal) = self.signal() {
            -signal.0
        } else if let Some(code) = self.code() {
            code
        } else {
            self.0
        }
    }
}

/// What a wait call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitStatus {
    /// `WNOHANG` was given and no matching child has terminated (`waitpid` returned 0).
    StillAlive,
    /// A child terminated; for `waitpid` it is now reaped, for a `WNOWAIT` peek it is
    /// still a zombie.
    Terminated(Pid, ExitStatus),
}

/// What a job-control wait found: a child's stop, its continue, or its exit
/// (`waitid` with `WSTOPPED | WCONTINUED`, see [`Processes::wait_job_peek`](crate::kernel::Processes::wait_job_peek)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// `WNOHANG` was given and the child has nothing to report.
    StillAlive,
    /// The child was stopped by this signal (`CLD_STOPPED`, or `CLD_TRAPPED` under a
    /// tracer).
    Stopped(Pid, Signal),
    /// A stopped child was continued by `SIGCONT` (`CLD_CONTINUED`).
    Continued(Pid),
    /// The child terminated; a peek leaves it a zombie.
    Terminated(Pid, ExitStatus),
}

/// Whether a wait call may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitMode {
    /// Return [`WaitStatus::StillAlive`] at once if nothing has terminated (`WNOHANG`).
    NoHang,
    /// Block until a matching child terminates.
    Block,
}

/// Which children a `waitid` peek looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitTarget {
    /// One child (`P_PID`).
    Pid(Pid),
    /// Any child (`P_ALL`).
    Any,
    /// The child a pidfd refers to (`P_PIDFD`, Linux 5.4): `ECHILD` once that very
    /// process was reaped, even if its pid names another child by then.
    Pidfd(Fd),
}

/// Where one of a child's standard streams goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Stdio {
    /// The parent's own stream.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A new pipe; the parent's end is returned in [`Spawned`], close-on-exec.
    Pipe,
    /// A descriptor of the parent's, duplicated onto the stream (the parent keeps its own).
    Fd(Fd),
}

/// What to run: the arguments of `Processes::spawn`.
///
/// # Example
///
/// ```
/// use loopwatch::OsKernel;
/// use loopwatch::kernel::{Fds, Processes, SpawnRequest, Stdio, WaitMode, WaitStatus};
///
/// let mut request = SpawnRequest::new("/bin/sh", ["-c", "echo \"$GREETING\"; exit 3"]);
/// request.env.push(("GREETING".into(), "hello".into()));
/// request.stdout = Stdio::Pipe;
/// let child = OsKernel.spawn(&request)?;
/// let out = child.stdout.expect("a pipe was asked for");
/// let mut buf = [0u8; 16];
/// let n = OsKernel.read(out, &mut buf)?;
/// assert_eq!(&buf[..n], b"hello\n");
/// OsKernel.close(out)?;
/// let status = OsKernel.wait_pid(child.pid, WaitMode::Block)?;
/// assert!(matches!(status, WaitStatus::Terminated(_, s) if s.returncode() == 3));
/// # Ok::<(), loopwatch::kernel::Errno>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpawnRequest {
    /// The program, searched in `PATH` when it has no slash.
    pub program: OsString,
    /// Arguments after the program name.
    pub args: Vec<OsString>,
    /// Variables added to (or, with `env_clear`, replacing) the parent's environment;
    /// they win over `env_remove`.
    pub env: Vec<(OsString, OsString)>,
    /// Variables of the parent's environment the child does not get.
    pub env_remove: Vec<OsString>,
    /// Start from an empty environment.
    pub env_clear: bool,
    /// Working directory of the child.
    pub cwd: Option<PathBuf>,
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
    /// Start the child with every signal at its default action and none blocked, as
    /// Python's `Popen(restore_signals=True)` (for every signal, not only the ones
    /// Python ignores). Without it the child inherits what the parent ignores and
    /// blocks (a handler never survives `exec`): a parent started under `nohup` or as
    /// a background job passes on an ignored SIGHUP, SIGINT or SIGQUIT. A simulated
    /// child always starts with the defaults.
    pub restore_signals: bool,
    /// Also return a pidfd for the child ([`Spawned::pidfd`]), made atomically with it
    /// (Linux's `clone` with `CLONE_PIDFD`): unlike a `pidfd_open` after the spawn, no
    /// `waitpid(-1)` elsewhere in the process can reap the child and free its pid
    /// before the pidfd exists. A kernel that cannot do it fails the spawn with its
    /// errno before any child is created (see [`Processes::spawn`](crate::kernel::Processes::spawn));
    /// the caller then spawns again without it. `subprocess_exec` asks for it with
    /// every child, whatever this field says.
    pub pidfd: bool,
}

impl SpawnRequest {
    /// A request to run `program` with `args` and inherited streams.
    ///
    /// The chainable methods below set the other fields, as `std::process::Command`'s
    /// do; each takes the request and gives it back, so one expression builds it:
    ///
    /// ```
    /// use loopwatch::kernel::{SpawnRequest, Stdio};
    ///
    /// let request = SpawnRequest::new("/bin/sh", ["-c"])
    ///     .arg("echo \"$GREETING\" from \"$(pwd)\"")
    ///     .env("GREETING", "hello")
    ///     .current_dir("/")
    ///     .stdout(Stdio::Pipe)
    ///     .stderr(Stdio::Null);
    /// assert_eq!(request.args.len(), 2);
    /// assert_eq!(request.env, [("GREETING".into(), "hello".into())]);
    /// assert_eq!(request.cwd.as_deref(), Some("/".as_ref()));
    /// assert_eq!((request.stdin, request.stdout), (Stdio::Inherit, Stdio::Pipe));
    /// ```
    pub fn new<P, I, A>(program: P, args: I) -> SpawnRequest
    where
        P: Into<OsString>,
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        SpawnRequest {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            ..SpawnRequest::default()
        }
    }

    /// Appends one argument.
    ///
    /// ```
    /// use loopwatch::kernel::SpawnRequest;
    ///
    /// let request = SpawnRequest::new("/bin/echo", ["a"]).arg("b");
    /// assert_eq!(request.args, ["a", "b"]);
    /// ```
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> SpawnRequest {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    ///
    /// ```
    /// use loopwatch::kernel::SpawnRequest;
    ///
    /// let request = SpawnRequest::new("/bin/echo", ["a"]).args(["b", "c"]);
    /// assert_eq!(request.args, ["a", "b", "c"]);
    /// ```
    #[must_use]
    pub fn args<I, A>(mut self, args: I) -> SpawnRequest
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets variable `key` to `value` in the child's environment, replacing an earlier
    /// `env` of the same key and undoing an earlier [`env_remove`](Self::env_remove)
    /// of it.
    ///
    /// ```
    /// use loopwatch::kernel::SpawnRequest;
    ///
    /// let request = SpawnRequest::new("/usr/bin/env", [] as [&str; 0])
    ///     .env("A", "1")
    ///     .env("B", "2")
    ///     .env("A", "3");
    /// assert_eq!(request.env, [("B".into(), "2".into()), ("A".into(), "3".into())]);
    /// ```
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> SpawnRequest {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env_remove.retain(|k| *k != key);
        self.env.push((key, value.into()));
        self
    }

    /// Sets several variables, as [`env`](Self::env) does one by one.
    ///
    /// ```
    /// use loopwatch::kernel::SpawnRequest;
    ///
    /// let request = SpawnRequest::new("/usr/bin/env", [] as [&str; 0]).envs([("A", "1"), ("B", "2")]);
    /// assert_eq!(request.env.len(), 2);
    /// ```
    #[must_use]
    pub fn envs<I, K, V>(self, vars: I) -> SpawnRequest
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        vars.into_iter()
            .fold(self, |request, (key, value)| request.env(key, value))
    }

    /// Keeps variable `key` out of the child's environment, whether the parent has it
    /// or an earlier [`env`](Self::env) set it.
    ///
    /// ```
    /// use loopwatch::kernel::SpawnRequest;
    ///
    /// let request = SpawnRequest::new("/usr/bin/env", [] as [&str; 0])
    ///     .env("A", "1")
    ///     .env_remove("A")
    ///     .env_remove("HOME");
    /// assert!(request.env.is_empty());
    /// assert_eq!(request.env_remove, ["A", "HOME"]);
    /// ```
    #[must_use]
    pub fn env_remove(mut self, key: impl Into<OsString>) -> SpawnRequest {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        if !self.env_remove.contains(&key) {
            self.env_remove.push(key);
        }
        self
    }

    /// Starts the child from an empty environment: only what [`env`](Self::env) sets
    /// after this call reaches it (earlier `env` and `env_remove` calls are forgotten,
    /// as with `std::process::Command::env_clear`).
    ///
    /// ```
    /// use loopwatch::kernel::SpawnRequest;
    ///
    /// let request = SpawnRequest::new("/usr/bin/env", [] as [&str; 0])
    ///     .env("FORGOTTEN", "1")
    ///     .env_clear()
    ///     .env("ONLY", "1");
    /// assert!(request.env_clear);
    /// assert_eq!(request.env, [("ONLY".into(), "1".into())]);
    /// ```
    #[must_use]
    pub fn env_clear(mut self) -> SpawnRequest {
        self.env_clear = true;
        self.env.clear();
        self.env_remove.clear();
        self
    }

    /// Sets the child's working directory (`cwd`).
    ///
    /// ```
    /// use loopwatch::kernel::SpawnRequest;
    ///
    /// let request = SpawnRequest::new("/bin/pwd", [] as [&str; 0]).current_dir("/");
    /// assert_eq!(request.cwd.as_deref(), Some("/".as_ref()));
    /// ```
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> SpawnRequest {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets where the child's standard input comes from.
    ///
    /// ```
    /// use loopwatch::kernel::{SpawnRequest, Stdio};
    ///
    /// let request = SpawnRequest::new("/bin/cat", [] as [&str; 0]).stdin(Stdio::Pipe);
    /// assert_eq!(request.stdin, Stdio::Pipe);
    /// ```
    #[must_use]
    pub fn stdin(mut self, stdio: Stdio) -> SpawnRequest {
        self.stdin = stdio;
        self
    }

    /// Sets where the child's standard output goes.
    ///
    /// ```
    /// use loopwatch::kernel::{SpawnRequest, Stdio};
    ///
    /// let request = SpawnRequest::new("/bin/true", [] as [&str; 0]).stdout(Stdio::Null);
    /// assert_eq!(request.stdout, Stdio::Null);
    /// ```
    #[must_use]
    pub fn stdout(mut self, stdio: Stdio) -> SpawnRequest {
        self.stdout = stdio;
        self
    }

    /// Sets where the child's standard error goes.
    ///
    /// ```
    /// use loopwatch::kernel::{SpawnRequest, Stdio};
    ///
    /// let request = SpawnRequest::new("/bin/true", [] as [&str; 0]).stderr(Stdio::Pipe);
    /// assert_eq!(request.stderr, Stdio::Pipe);
    /// ```
    #[must_use]
    pub fn stderr(mut self, stdio: Stdio) -> SpawnRequest {
        self.stderr = stdio;
        self
    }

    /// Sets [`restore_signals`](SpawnRequest#structfield.restore_signals): the child
    /// starts with every signal at its default action and none blocked.
    ///
    /// ```
    /// use loopwatch::kernel::SpawnRequest;
    ///
    /// let request = SpawnRequest::new("/bin/true", [] as [&str; 0]).restore_signals(true);
    /// assert!(request.restore_signals);
    /// ```
    #[must_use]
    pub fn restore_signals(mut self, restore: bool) -> SpawnRequest {
        self.restore_signals = restore;
        self
    }

    /// Sets [`pidfd`](SpawnRequest#structfield.pidfd): the spawn also returns a pidfd
    /// for the child, made atomically with it, or fails with `ENOSYS`, `EPERM` or
    /// `EINVAL` before starting anything where the kernel cannot make one.
    ///
    /// ```
    /// use loopwatch::OsKernel;
    /// use loopwatch::kernel::{Errno, Fds, Processes, SpawnRequest, WaitMode, WaitStatus, WaitTarget};
    ///
    /// let request = SpawnRequest::new("/bin/sh", ["-c", "exit 4"]).pidfd(true);
    /// assert!(request.pidfd);
    /// let child = match OsKernel.spawn(&request) {
    ///     Ok(child) => child,
    ///     // Not Linux, or a seccomp filter refuses the clone: nothing was started.
    ///     Err(Errno::ENOSYS | Errno::EPERM | Errno::EINVAL) => OsKernel.spawn(&request.pidfd(false))?,
    ///     Err(errno) => return Err(errno),
    /// };
    /// if let Some(pidfd) = child.pidfd {
    ///     // The pidfd names this child even if its pid were reaped and reused.
    ///     let peek = OsKernel.wait_peek(WaitTarget::Pidfd(pidfd), WaitMode::Block)?;
    ///     assert!(matches!(peek, WaitStatus::Terminated(pid, _) if pid == child.pid));
    ///     OsKernel.close(pidfd)?;
    /// }
    /// let status = OsKernel.wait_pid(child.pid, WaitMode::Block)?;
    /// assert!(matches!(status, WaitStatus::Terminated(_, s) if s.returncode() == 4));
    /// # Ok::<(), loopwatch::kernel::Errno>(())
    /// ```
    #[must_use]
    pub fn pidfd(mut self, pidfd: bool) -> SpawnRequest {
        self.pidfd = pidfd;
        self
    }
}

/// A started child: its pid and the parent's ends of any pipes asked for. The caller
/// owns the fds and must close them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Spawned {
    /// The child's pid; it stays a zombie after exit until someone waits for it.
    pub pid: Pid,
    /// Write end of the child's stdin pipe.
    pub stdin: Option<Fd>,
    /// Read end of the child's stdout pipe.
    pub stdout: Option<Fd>,
    /// Read end of the child's stderr pipe.
    pub stderr: Option<Fd>,
    /// The child's pidfd, close-on-exec, when [`SpawnRequest::pidfd`] asked for one;
    /// `None` otherwise.
    pub pidfd: Option<Fd>,
}

/// What the kernel does when a signal arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// `SIG_DFL`.
    Default,
    /// `SIG_IGN`. For SIGCHLD this makes the kernel reap children itself.
    Ignore,
    /// loopwatch's handler: write the signal number as one byte to the wakeup fd, the
    /// only thing it does (async-signal-safe, as CPython's `set_wakeup_fd`).
    Wakeup,
    /// loopwatch's handler writing to this signal's own fd instead of the wakeup fd:
    /// how a component that is not a loop (a process-wide SIGCHLD watcher) hears a
    /// signal without taking the loops' wakeup fd. The fd should be non-blocking.
    Notify(Fd),
    /// A handler somebody else installed. The number is a kernel-chosen token that
    /// restores exactly that handler when passed back to `set_disposition`.
    Foreign(u64),
}

/// A thread id chosen by the kernel: unique within a process for its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub u64);

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A poller registration key (mio's vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub usize);

/// What readiness a registration asks for. At least one of the two is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interest {
    /// Report when a read would not block (data, EOF, or an error).
    pub readable: bool,
    /// Report when a write would not block (room, or an error such as no reader).
    pub writable: bool,
}

impl Interest {
    /// Readable only.
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Writable only.
    pub const WRITABLE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Both.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };
}

/// One readiness report from a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// The token the fd was registered with.
    pub token: Token,
    /// A read would not block: data, end of file, or an error to collect.
    pub readable: bool,
    /// A write would not block: room in the buffer, or an error such as EPIPE.
    pub writable: bool,
}
