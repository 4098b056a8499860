//! Subprocesses: `loop.subprocess_exec` and `create_subprocess_exec` (spec L-1 … L-4).
//!
//! Starting a process follows `_make_subprocess_transport`: fetch the policy's child
//! watcher, open its fork window, refuse to spawn if the watcher is not active (3.8's
//! check: a process that no watcher would ever report is never started), spawn, and
//! register the pid with a callback that hops to the process's loop
//! (`call_soon_threadsafe`, R-5). If registration fails anyway, the child is killed and
//! reaped before the error is returned: no child is ever lost.
//!
//! A [`Process`] signals its child through a pidfd when the kernel has them, so a
//! signal can never reach a later process that reused the pid. The pidfd is made with
//! the child ([`SpawnRequest::pidfd`], asked for every child: Linux's `clone` with
//! `CLONE_PIDFD`, 5.2, at no extra cost), so that not even a foreign `waitpid(-1)` can
//! reap the child before the pidfd names it; where the kernel refuses that (once per
//! process: `ENOSYS`, `EPERM`, `EINVAL`) `pidfd_open` right after the spawn
//! serves. A watcher that polls pidfds shares the process's either way (no second
//! `pidfd_open`). Without pidfds (a kernel
//! before 5.3, a seccomp filter, no fd left: `pidfd_open`'s error is logged at `debug`
//! level on target [`DIAGNOSTICS`]) it signals by pid,
//! and refuses with `ProcessLookupError` once the child is reaped. "Reaped" is marked
//! by the watcher in the thread that reaps, in the same critical section as its
//! `waitpid` (the child's [`ReapFence`], handed over with
//! [`ChildWatcher::add_child_handler_fenced`]), and `send_signal` holds that fence
//! across its check and its `kill()`: the kill reaches the child (at worst a zombie)
//! or nothing, never a process that took its pid. A child reaped by code outside
//! loopwatch (a foreign `waitpid(-1)`) is outside the fence: there only a pidfd helps.
//!
//! The process's registration holds its loop weakly: a loop dropped without `close`
//! is not kept alive by its children's pending exits.

mod job;
mod stream;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

pub use job::{JobEvent, JobEvents, NextJobEvent};
pub use stream::{PipeReader, PipeWriter};

use crate::OsKernel;
use crate::asyncio::Join3;
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::EventLoop;
use crate::kernel::{Errno, Kernel, Pid, Signal, SpawnRequest, Spawned, WaitMode};
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicBool, Ordering};
use crate::watcher::{ChildWatcher, DIAGNOSTICS, ReapFence, SharedPidfd, fork_window};
use crate::zoo::Mutant;

/// Set by tests to give `spawn_with` the fallback of kernels without pidfds (before
/// 5.3, or under a seccomp filter) on a kernel that has them.
#[cfg(test)]
pub(crate) static PIDFD_DISABLED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// What the watcher callback and the `Process` share.
struct Exit {
    state: Mutex<ExitState>,
}

#[derive(Default)]
struct ExitState {
    returncode: Option<i32>,
    waiters: Vec<Waker>,
}

/// A child process started by [`EventLoop::subprocess_exec`] (asyncio's `Process`).
///
/// # Example
///
/// Under the policy's watcher (Safe, attached to the main thread's loop by
/// `set_event_loop`; a doc test runs in the main thread):
///
/// ```
/// use loopwatch::kernel::{SpawnRequest, Stdio};
///
/// let event_loop = loopwatch::new_event_loop()?;
/// loopwatch::set_event_loop(Some(event_loop.clone()))?;
/// let lp = event_loop.clone();
/// let (code, out) = event_loop.run_until_complete(async move {
///     let mut request = SpawnRequest::new("/bin/sh", ["-c", "read line; echo \"got $line\"; exit 2"]);
///     request.stdin = Stdio::Pipe;
///     request.stdout = Stdio::Pipe;
///     let mut process = lp.subprocess_exec(&request)?;
///     let (out, _err) = process.communicate(Some(b"hi\n")).await?;
///     Ok::<_, loopwatch::Error>((process.wait().await, out))
/// })??;
/// assert_eq!((code, out.as_slice()), (2, &b"got hi\n"[..]));
/// loopwatch::set_event_loop(None)?;
/// loopwatch::set_child_watcher(None)?;
/// event_loop.close()?;
/// # Ok::<(), loopwatch::Error>(())
/// ```
pub struct Process<K: Kernel = OsKernel> {
    pid: Pid,
    kernel: K,
    exit: Arc<Exit>,
    /// Marked by the watcher when it reaps the child; held by `send_signal`.
    fence: ReapFence<K>,
    /// A pidfd for signalling, when the kernel has them. A watcher that polls pidfds
    /// shares it (through the fence); it is closed with the last of them.
    pidfd: Option<SharedPidfd<K>>,
    /// Set once [`Process::job_events`] has started observing the child.
    observed: AtomicBool,
    /// The child's standard input, if it is a pipe.
    pub stdin: Option<PipeWriter<K>>,
    /// The child's standard output, if it is a pipe.
    pub stdout: Option<PipeReader<K>>,
    /// The child's standard error, if it is a pipe.
    pub stderr: Option<PipeReader<K>>,
}

impl<K: Kernel> fmt::Debug for Process<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<Process {} returncode={:?}>",
            self.pid.0,
            self.returncode()
        )
    }
}

impl<K: Kernel> EventLoop<K> {
    /// Starts `request` as a child process of this loop (asyncio's
    /// `loop.subprocess_exec`), registered with the child watcher of the kernel's
    /// current policy. Pipes asked for in `request` become the process's
    /// [`stdin`](Process::stdin), [`stdout`](Process::stdout) and
    /// [`stderr`](Process::stderr).
    ///
    /// # Errors
    ///
    /// - `RuntimeError("asyncio.get_child_watcher() is not activated, subprocess
    ///   support is not installed.")` if the watcher is not active (for Safe and Fast:
    ///   no loop attached, or the attached loop is not running), before anything is
    ///   spawned;
    /// - the kernel's error from spawning, with no child and no fd left behind: for
    ///   an error about the program its message names it, as CPython's does
    ///   (`Os(ENOENT)`, `[Errno 2] No such file or directory: 'prog'`; `Os(EACCES)`
    ///   for a file that is not executable);
    /// - the watcher's error from registering, after the child was killed and reaped.
    ///
    /// The "not activated" message goes on after CPython's with what would activate
    /// the watcher it names, or which watcher to use instead.
    pub fn subprocess_exec(&self, request: &SpawnRequest) -> Result<Process<K>> {
        let kernel = self.kernel().clone();
        let watcher = crate::policy::get_child_watcher(&kernel)?;
        spawn_with(self, &*watcher, request)
    }
}

/// Starts `request` on the running loop of the real OS (asyncio's
/// `create_subprocess_exec`).
///
/// # Errors
///
/// `RuntimeError('no running event loop')` outside a running loop; otherwise as
/// [`EventLoop::subprocess_exec`].
pub async fn create_subprocess_exec(request: SpawnRequest) -> Result<Process> {
    let event_loop = crate::get_running_loop()?;
    event_loop.subprocess_exec(&request)
}

/// The body of `subprocess_exec`, for any watcher.
pub(crate) fn spawn_with<K: Kernel, W: ChildWatcher<K> + ?Sized>(
    event_loop: &EventLoop<K>,
    watcher: &W,
    request: &SpawnRequest,
) -> Result<Process<K>> {
    if event_loop.is_closed() {
        return Err(Error::runtime("Event loop is closed"));
    }
    let kernel = event_loop.kernel().clone();
    let _window = fork_window::<K, W>(watcher);
    if !watcher.is_active() {
        return Err(Error::runtime(format!(
            "asyncio.get_child_watcher() is not activated, subprocess support is not installed. {}",
            crate::watcher::inactive_hint(watcher.type_name())
        )));
    }
    let spawned = spawn_child(&kernel, request).map_err(|errno| spawn_error(errno, request))?;
    // Made with the child where the kernel can, so that no foreign `waitpid(-1)` can
    // reap it and free its pid first; else opened before registration, while no
    // watcher can have reaped it (foreign code still could).
    let opened = match spawned.pidfd {
        Some(fd) => Ok(fd),
        None => kernel.pidfd_open(spawned.pid),
    };
    let pidfd = match opened {
        Ok(fd) => Some(SharedPidfd::new(&kernel, fd)),
        Err(errno) => {
            tracing::debug!(
                target: DIAGNOSTICS,
                pid = spawned.pid.0,
                %errno,
                "pidfd_open failed: the process will be signalled by pid, until reaped"
            );
            None
        }
    };
    #[cfg(test)]
    let pidfd = if PIDFD_DISABLED.load(std::sync::atomic::Ordering::SeqCst) {
        None
    } else {
        pidfd
    };
    let exit = Arc::new(Exit {
        state: Mutex::new(ExitState::default()),
    });
    // Through the fence, a watcher that polls pidfds uses this one while we hold it.
    let fence = ReapFence::with_pidfd(&kernel, pidfd.as_ref());
    // Weak: the loop's queue may hold this callback, and must not keep the loop alive.
    let (hop, for_callback, marked) = (event_loop.downgrade(), exit.clone(), fence.clone());
    let callback = Box::new(move |_pid: Pid, code: i32| {
        // The watcher marked it already where it reaped; a watcher of the user's that
        // does not know fences reaches here first.
        marked.lock().mark_reaped();
        let exit = for_callback.clone();
        let settle = move || exit.settle(code);
        let hopped = match hop.upgrade() {
            Some(event_loop) => event_loop.call_soon_threadsafe(settle),
            None => Err(Error::runtime("Event loop is closed")),
        };
        if let Err(error) = hopped {
            // The loop is closed or gone: nobody will run the hop, so settle here.
            tracing::debug!(target: "asyncio", "{error}");
            for_callback.settle(code);
        }
    });
    if let Err(error) = watcher.add_child_handler_fenced(spawned.pid, fence.clone(), callback) {
        abandon(&kernel, &spawned, pidfd.as_ref());
        return Err(error);
    }
    let nonblocking = [spawned.stdin, spawned.stdout, spawned.stderr]
        .into_iter()
        .flatten()
        .try_for_each(|fd| kernel.set_nonblocking(fd, true));
    if let Err(errno) = nonblocking {
        // Registered: the watcher reaps it once killed, perhaps already has.
        kill_and_close(&kernel, &spawned, pidfd.as_ref(), Some(&fence));
        return Err(errno.into());
    }
    let stdin = spawned
        .stdin
        .map(|fd| PipeWriter::new(event_loop.clone(), fd));
    let stdout = spawned
        .stdout
        .map(|fd| PipeReader::new(event_loop.clone(), fd));
    let stderr = spawned
        .stderr
        .map(|fd| PipeReader::new(event_loop.clone(), fd));
    Ok(Process {
        pid: spawned.pid,
        kernel,
        exit,
        fence,
        pidfd,
        observed: AtomicBool::new(false),
        stdin,
        stdout,
        stderr,
    })
}

/// Whether spawns in this process still ask the kernel for a pidfd made with the
/// child: cleared by the first spawn the kernel refuses for want of support.
#[derive(Debug)]
struct SpawnPidfd(AtomicBool);

/// Spawns `request` with a pidfd made with the child, where the kernel can, whether
/// or not the request asks for one ([`SpawnRequest::pidfd`]): the process signals its
/// child through it, and a watcher that polls pidfds waits on it. Made with the child,
/// it names the child before any foreign `waitpid(-1)` could reap it and free its pid,
/// and on Linux it costs what a spawn without it costs (`clone` with `CLONE_VM`: see
/// `OsKernel`'s spawn). Where the kernel cannot (`ENOSYS`, `EPERM` from a seccomp
/// filter, `EINVAL`), nothing was started: the request is spawned without, and if that
/// works, every later spawn of the process goes without from the start (the caller
/// then uses `pidfd_open`). `EMFILE` (no fd left for the pidfd) falls back for this
/// child only. A failure of the request itself (an `EPERM` from `exec`, an argument
/// with a NUL byte) fails again without the pidfd and is not remembered.
fn spawn_child<K: Kernel>(
    kernel: &K,
    request: &SpawnRequest,
) -> std::result::Result<Spawned, Errno> {
    let without = || spawn_asking(kernel, request, false);
    if crate::zoo::active(kernel, Mutant::SpawnPidfdLate) {
        // zoo: the pidfd is left to pidfd_open after the spawn, when the child may
        // have been reaped by foreign code and its pid reused
        return without();
    }
    let supported = kernel
        .process_locals()
        .get_or_init(|| SpawnPidfd(AtomicBool::new(true)));
    if !supported.0.load(Ordering::Relaxed) {
        return without();
    }
    match spawn_asking(kernel, request, true) {
        Err(errno @ (Errno::ENOSYS | Errno::EPERM | Errno::EINVAL | Errno::EMFILE)) => {
            let spawned = without();
            if spawned.is_ok() && errno != Errno::EMFILE {
                supported.0.store(false, Ordering::Relaxed);
                tracing::debug!(
                    target: DIAGNOSTICS,
                    %errno,
                    "spawning with a pidfd failed: this process spawns without and uses pidfd_open"
                );
            }
            spawned
        }
        with => with,
    }
}

/// Spawns `request` asking for a spawn-time pidfd or not, copying the request only
/// where its own [`SpawnRequest::pidfd`] says otherwise.
fn spawn_asking<K: Kernel>(
    kernel: &K,
    request: &SpawnRequest,
    pidfd: bool,
) -> std::result::Result<Spawned, Errno> {
    if request.pidfd == pidfd {
        kernel.spawn(request)
    } else {
        kernel.spawn(&request.clone().pidfd(pidfd))
    }
}

/// The error of a failed spawn. The errors `exec` and `chdir` give about a path name
/// the program, as CPython 3.8 and later do (`[Errno 2] No such file or directory:
/// 'prog'`; 3.7 repeats the name), keeping the errno's kind (`Os(ENOENT)` is
/// `FileNotFoundError`, `Os(EACCES)` `PermissionError`). When the request sets a
/// working directory the error may be about it instead, and the kernel does not say
/// which: the message then names both.
fn spawn_error(errno: Errno, request: &SpawnRequest) -> Error {
    let error = Error::from(errno);
    let about_a_path = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::E2BIG,
        Errno::ENOEXEC,
        Errno::EACCES,
        Errno::ENOTDIR,
        Errno::EISDIR,
        Errno::ETXTBSY,
        Errno::ENAMETOOLONG,
        Errno::ELOOP,
    ];
    if !about_a_path.contains(&errno) {
        return error;
    }
    let mut message = format!("{errno}: {}", python_repr(&request.program));
    if let Some(cwd) = &request.cwd {
        message.push_str(&format!(" (cwd {})", python_repr(cwd.as_os_str())));
    }
    Error::new(error.kind(), message)
}

/// A name as Python's `repr` of a `str` prints it: in single quotes unless it holds
/// one and no double quote, with backslashes, that quote and control characters
/// escaped. Bytes that are not UTF-8 show as U+FFFD.
fn python_repr(name: &std::ffi::OsStr) -> String {
    let name = name.to_string_lossy();
    let quote = if name.contains('\'') && !name.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut repr = String::with_capacity(name.len() + 2);
    repr.push(quote);
    for c in name.chars() {
        match c {
            '\\' => repr.push_str("\\\\"),
            '\n' => repr.push_str("\\n"),
            '\r' => repr.push_str("\\r"),
            '\t' => repr.push_str("\\t"),
            c if c == quote => {
                repr.push('\\');
                repr.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                repr.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => repr.push(c),
        }
    }
    repr.push(quote);
    repr
}

/// Kills a child that will not be handed out (through its pidfd when there is one,
/// or by pid under its reap fence if a watcher may reap it, so that the signal cannot
/// reach another process) and closes its fds.
fn kill_and_close<K: Kernel>(
    kernel: &K,
    spawned: &Spawned,
    pidfd: Option<&SharedPidfd<K>>,
    fence: Option<&ReapFence<K>>,
) {
    match pidfd {
        Some(pidfd) => {
            let _ = kernel.pidfd_send_signal(pidfd.fd(), Signal::SIGKILL);
        }
        None => {
            let guard = fence.map(ReapFence::lock);
            if !guard.as_ref().is_some_and(|g| g.is_reaped()) {
                let _ = kernel.kill(spawned.pid, Some(Signal::SIGKILL));
            }
            drop(guard);
        }
    }
    for fd in [spawned.stdin, spawned.stdout, spawned.stderr]
        .into_iter()
        .flatten()
    {
        let _ = kernel.close(fd);
    }
}

/// A child that could not be registered: nobody else will reap it, so kill it, close
/// its fds and reap it here.
fn abandon<K: Kernel>(kernel: &K, spawned: &Spawned, pidfd: Option<&SharedPidfd<K>>) {
    kill_and_close(kernel, spawned, pidfd, None);
    while kernel.wait_pid(spawned.pid, WaitMode::Block) == Err(Errno::EINTR) {}
}

impl Exit {
    /// Runs in the process's loop: records the returncode and wakes waiters (L-2).
    fn settle(&self, code: i32) {
        let waiters = {
            let mut state = self.state.lock();
            if state.returncode.is_none() {
                state.returncode = Some(code);
            }
            std::mem::take(&mut state.waiters)
        };
        for waiter in waiters {
            waiter.wake();
        }
    }
}

impl<K: Kernel> Process<K> {
    /// The child's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Whether the child is known to be reaped (its pid may name another process).
    #[cfg(test)]
    pub(crate) fn known_reaped(&self) -> bool {
        self.fence.is_reaped()
    }

    /// Whether the process signals through a pidfd.
    #[cfg(test)]
    pub(crate) fn has_pidfd(&self) -> bool {
        self.pidfd.is_some()
    }

    /// The exit status as asyncio reports it (spec R-1), once the loop has learnt of
    /// the exit; `None` before.
    pub fn returncode(&self) -> Option<i32> {
        self.exit.state.lock().returncode
    }

    /// Waits for the child to exit and returns its returncode.
    pub fn wait(&self) -> WaitForExit<'_> {
        WaitForExit { exit: &self.exit }
    }

    /// Sends `signal` to the child.
    ///
    /// # Errors
    ///
    /// `ProcessLookupError` once the child has been reaped (its pid may already name
    /// another process); the kernel's error otherwise.
    pub fn send_signal(&self, signal: Signal) -> Result<()> {
        if crate::zoo::active(&self.kernel, Mutant::KillAfterReap) {
            // zoo: gh-127049, kill(pid) whether or not the child was reaped and its pid reused
            return signalled(self.kernel.kill(self.pid, Some(signal)));
        }
        // Held across the check and the kill: the watcher cannot reap the child in
        // between, so a kill by pid reaches the child (at worst a zombie) or nobody.
        let fence = self.fence.lock();
        if fence.is_reaped() {
            return Err(Error::new(ErrorKind::ProcessLookupError, ""));
        }
        let sent = match &self.pidfd {
            Some(pidfd) => self.kernel.pidfd_send_signal(pidfd.fd(), signal),
            None => self.kernel.kill(self.pid, Some(signal)),
        };
        drop(fence);
        signalled(sent)
    }

    /// Starts reporting the child's stops and continues (job control, spec X-8): an
    /// opt-in, since it costs a thread blocked on the child until it exits, and it
    /// takes each report from the kernel (a `waitpid(WUNTRACED)` elsewhere in the
    /// process no longer sees it). See [`JobEvents`].
    ///
    /// A child already reaped gives a stream that has ended. A stop or continue that
    /// happened before this call is still reported, unless a later change or the exit
    /// replaced it (see [`JobEvents`]).
    ///
    /// # Errors
    ///
    /// `RuntimeError` if the child's job events are observed already (one stream per
    /// child: each report is taken once); the kernel's error if the observer thread
    /// cannot be started.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use loopwatch::kernel::{Signal, SpawnRequest};
    /// use loopwatch::subprocess::JobEvent;
    /// use loopwatch::watcher::AutoChildWatcher;
    /// use loopwatch::{EventLoop, WatcherRef};
    ///
    /// loopwatch::set_child_watcher(Some(Arc::new(AutoChildWatcher::new()) as WatcherRef))?;
    /// let event_loop = EventLoop::new()?;
    /// let lp = event_loop.clone();
    /// let (events, code) = event_loop.run_until_complete(async move {
    ///     let process = lp.subprocess_exec(&SpawnRequest::new("/bin/sleep", ["60"]))?;
    ///     let mut jobs = process.job_events()?;
    ///     let mut events = Vec::new();
    ///     for signal in [Signal::SIGSTOP, Signal::SIGCONT, Signal::SIGKILL] {
    ///         process.send_signal(signal)?;
    ///         events.push(jobs.next_event().await);
    ///     }
    ///     Ok::<_, loopwatch::Error>((events, process.wait().await))
    /// })??;
    /// // The stream ends with the exit, which `wait` reports.
    /// assert_eq!(
    ///     events,
    ///     [Some(JobEvent::Stopped(Signal::SIGSTOP)), Some(JobEvent::Continued), None]
    /// );
    /// assert_eq!(code, -9);
    /// event_loop.close()?;
    /// loopwatch::set_child_watcher(None)?;
    /// # Ok::<(), loopwatch::Error>(())
    /// ```
    pub fn job_events(&self) -> Result<JobEvents<K>> {
        if self.observed.swap(true, Ordering::AcqRel) {
            return Err(Error::runtime(format!(
                "the job events of process {} are observed already",
                self.pid.0
            )));
        }
        JobEvents::start(
            &self.kernel,
            self.pid,
            self.pidfd.clone(),
            self.fence.clone(),
        )
        .map_err(|errno| {
            self.observed.store(false, Ordering::Release);
            Error::from(errno)
        })
    }

    /// `send_signal(SIGTERM)`.
    ///
    /// # Errors
    ///
    /// As [`Process::send_signal`].
    pub fn terminate(&self) -> Result<()> {
        self.send_signal(Signal::SIGTERM)
    }

    /// `send_signal(SIGKILL)`.
    ///
    /// # Errors
    ///
    /// As [`Process::send_signal`].
    pub fn kill(&self) -> Result<()> {
        self.send_signal(Signal::SIGKILL)
    }

    /// Writes `input` (if any) to stdin and closes it, reads stdout and stderr to end
    /// of file, waits for the exit, and returns both outputs (empty for streams that
    /// are not pipes).
    ///
    /// # Errors
    ///
    /// The first I/O error; a closed stdin pipe (EPIPE) is not one, as in asyncio.
    pub async fn communicate(&mut self, input: Option<&[u8]>) -> Result<(Vec<u8>, Vec<u8>)> {
        let stdin = self.stdin.take();
        let stdout = self.stdout.take();
        let stderr = self.stderr.take();
        let write = async move {
            if let Some(mut stdin) = stdin {
                if let Some(input) = input {
                    match stdin.write_all(input).await {
                        Ok(()) => {}
                        Err(error) if error.errno() == Some(Errno::EPIPE) => {}
                        Err(error) => return Err(error),
                    }
                }
                stdin.close()?;
            }
            Ok(())
        };
        let read = |stream: Option<PipeReader<K>>| async move {
            match stream {
                Some(mut stream) => stream.read_to_end().await,
                None => Ok(Vec::new()),
            }
        };
        let (written, out, err) = Join3::new(write, read(stdout), read(stderr)).await;
        written?;
        let (out, err) = (out?, err?);
        self.wait().await;
        Ok((out, err))
    }
}

/// What `send_signal` returns for the kernel's answer: `ESRCH` (no such process) is
/// `ProcessLookupError`.
fn signalled(sent: std::result::Result<(), Errno>) -> Result<()> {
    match sent {
        Ok(()) => Ok(()),
        Err(Errno::ESRCH) => Err(Error::new(ErrorKind::ProcessLookupError, "")),
        Err(errno) => Err(errno.into()),
    }
}

/// The future of [`Process::wait`].
#[derive(Debug)]
pub struct WaitForExit<'a> {
    exit: &'a Exit,
}

impl fmt::Debug for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Exit({:?})", self.state.lock().returncode)
    }
}

impl Future for WaitForExit<'_> {
    type Output = i32;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        let mut state = self.exit.state.lock();
        match state.returncode {
            Some(code) => Poll::Ready(code),
            None => {
                state.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The message of a spawn error, which needs the private helpers: the behaviour
    //! on both kernels is in `sim/tests/helpers.rs`.

    use super::*;

    // Goal: names are quoted and escaped as Python's repr of a str does it.
    #[test]
    fn python_repr_quotes_as_python() {
        let repr = |s: &str| python_repr(s.as_ref());
        assert_eq!(repr("prog"), "'prog'");
        assert_eq!(repr("it's"), "\"it's\"");
        assert_eq!(repr("both ' and \""), "'both \\' and \"'");
        assert_eq!(repr("a\\b\nc\u{1}"), "'a\\\\b\\nc\\x01'");
    }

    // Goal: errors about the program name it and keep the errno's kind; others are
    // left as the kernel gave them; a working directory is named too.
    #[test]
    fn spawn_error_names_the_program() {
        let request = SpawnRequest::new("no-such-prog", ["x"]);
        let error = spawn_error(Errno::ENOENT, &request);
        assert_eq!(error.kind(), ErrorKind::Os(Errno::ENOENT));
        assert_eq!(
            error.message(),
            "[Errno 2] No such file or directory: 'no-such-prog'"
        );
        let error = spawn_error(Errno::EACCES, &SpawnRequest::new("/etc/passwd", ["x"]));
        assert_eq!(
            error.message(),
            "[Errno 13] Permission denied: '/etc/passwd'"
        );
        let error = spawn_error(Errno::EMFILE, &request);
        assert_eq!(error, Error::from(Errno::EMFILE));
        let error = spawn_error(Errno::ENOENT, &request.current_dir("/nonexistent"));
        assert_eq!(
            error.message(),
            "[Errno 2] No such file or directory: 'no-such-prog' (cwd '/nonexistent')"
        );
    }
}
