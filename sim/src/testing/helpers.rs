//! The small helpers process tests keep writing.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use loopwatch::kernel::Signals as _;
use loopwatch::kernel::{
    Disposition, Errno, ExitStatus, Fd, Kernel, Pid, Signal, SpawnRequest, Spawned, WaitMode,
    WaitStatus,
};
use loopwatch::{JobEvent, OsKernel, Process};

use crate::SimKernel;

/// `/bin/sh -c script`. The simulator runs the shell subset documented in
/// [`program`](crate::program) (`exit N`, `kill -SIG $$`, `sleep S`, `echo …`,
/// `read -r line`, `$NAME`, `$((…))`, `;` between them …).
///
/// ```
/// let request = loopwatch_sim::testing::sh("sleep 1; exit 3");
/// assert_eq!(request.args, ["-c", "sleep 1; exit 3"]);
/// ```
pub fn sh(script: &str) -> SpawnRequest {
    SpawnRequest::new("/bin/sh", ["-c", script])
}

/// Sends each of `signals` to `process` in turn and waits for the job event that
/// follows it (`None` once the child has exited): what a child's stops and continues
/// look like from the loop (spec X-8).
///
/// # Errors
///
/// The first error of [`Process::job_events`] or [`Process::send_signal`].
pub async fn job_events_after<K: Kernel>(
    process: &Process<K>,
    signals: &[Signal],
) -> loopwatch::Result<Vec<Option<JobEvent>>> {
    let mut jobs = process.job_events()?;
    let mut events = Vec::new();
    for &signal in signals {
        process.send_signal(signal)?;
        events.push(jobs.next_event().await);
    }
    Ok(events)
}

/// Spawns `/bin/sh -c script` on `kernel` and returns its pid; panics, naming the
/// script, if the spawn fails.
///
/// ```
/// use loopwatch_sim::testing::{reap, spawn_sh};
///
/// let pid = spawn_sh(&loopwatch::OsKernel, "exit 2");
/// assert_eq!(reap(&loopwatch::OsKernel, pid), 2);
/// ```
pub fn spawn_sh<K: Kernel>(kernel: &K, script: &str) -> Pid {
    match kernel.spawn(&sh(script)) {
        Ok(child) => child.pid,
        Err(errno) => panic!("spawning `sh -c {script:?}` failed: {errno:?}"),
    }
}

/// Waits for child `pid` (retrying after `EINTR`) and returns its returncode as
/// asyncio computes it (the exit code, or `-signal`); panics if `pid` cannot be
/// waited for (not a child, or reaped by other code).
pub fn reap<K: Kernel>(kernel: &K, pid: Pid) -> i32 {
    loop {
        match kernel.wait_pid(pid, WaitMode::Block) {
            Ok(WaitStatus::Terminated(got, status)) => {
                assert_eq!(got, pid, "waitpid({pid}) reaped another child");
                return status.returncode();
            }
            Err(Errno::EINTR) => continue,
            other => panic!("waitpid({pid}) gave {other:?}"),
        }
    }
}

/// Marks a point in the simulator's trace ([`SimKernel::note`]); nothing on the real
/// OS, which keeps no trace. Not a kernel call, so a note does not change the
/// schedule.
///
/// ```
/// use loopwatch::kernel::Kernel;
/// use loopwatch_sim::Simulation;
/// use loopwatch_sim::testing::note;
///
/// fn phases<K: Kernel>(kernel: &K) {
///     note(kernel, "setup done");
/// }
///
/// phases(&loopwatch::OsKernel);
/// let report = Simulation::new(0).run(|k| phases(&k));
/// assert!(report.trace.text().contains("note setup done"));
/// ```
pub fn note<K: Kernel>(kernel: &K, text: &str) {
    if let Some(sim) = (kernel as &dyn Any).downcast_ref::<SimKernel>() {
        sim.note(text);
    }
}

/// A future that is pending once, waking itself, then ready: awaited in a task on an
/// [`EventLoop`](loopwatch::EventLoop), it hands the loop back for one iteration, as
/// `await asyncio.sleep(0)` does.
///
/// ```
/// use loopwatch::EventLoop;
/// use loopwatch_sim::testing::{Log, yield_now};
///
/// let event_loop = EventLoop::new().unwrap();
/// let log = Log::new();
/// let task = |name: &'static str| {
///     let log = log.clone();
///     event_loop
///         .create_task(async move {
///             log.push(format!("{name} before"));
///             yield_now().await;
///             log.push(format!("{name} after"));
///         })
///         .unwrap()
/// };
/// let (a, b) = (task("a"), task("b"));
/// event_loop
///     .run_until_complete(async move { (a.await.unwrap(), b.await.unwrap()) })
///     .unwrap();
/// assert_eq!(log.take(), ["a before", "b before", "a after", "b after"]);
/// event_loop.close().unwrap();
/// ```
pub fn yield_now() -> impl Future<Output = ()> + Send {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

#[allow(
    clippy::disallowed_types,
    reason = "a test's record: held to push or copy, never across a kernel call"
)]
type StdMutex<T> = std::sync::Mutex<T>;

/// A record a test's callbacks append to, from any thread: a shared `Vec` behind a
/// lock that a panic elsewhere does not poison. Its lock is held only inside its own
/// methods, never across a kernel call.
///
/// ```
/// use loopwatch_sim::testing::Log;
///
/// let log = Log::new();
/// let writer = log.clone();
/// writer.push("exited 3");
/// assert_eq!(log.snapshot(), ["exited 3"]);
/// assert_eq!(log.take(), ["exited 3"]);
/// assert!(log.is_empty());
/// ```
pub struct Log<T>(Arc<StdMutex<Vec<T>>>);

impl<T> Log<T> {
    /// An empty record.
    pub fn new() -> Log<T> {
        Log(Arc::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends `item`.
    pub fn push(&self, item: T) {
        self.lock().push(item);
    }

    /// Everything so far, emptying the record.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.lock())
    }

    /// How many items there are.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl<T: Clone> Log<T> {
    /// A copy of everything so far.
    pub fn snapshot(&self) -> Vec<T> {
        self.lock().clone()
    }
}

impl<T> Clone for Log<T> {
    fn clone(&self) -> Log<T> {
        Log(self.0.clone())
    }
}

impl<T> Default for Log<T> {
    fn default() -> Log<T> {
        Log::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for Log<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.lock().iter()).finish()
    }
}

/// As [`reap`], but returns the whole status, for a test that compares it or asks it
/// for the signal or the core bit.
///
/// ```
/// use loopwatch::kernel::Signal;
/// use loopwatch_sim::testing::{reap_status, spawn_sh};
///
/// let pid = spawn_sh(&loopwatch::OsKernel, "kill -TERM $$");
/// let status = reap_status(&loopwatch::OsKernel, pid);
/// assert_eq!((status.signal(), status.returncode()), (Some(Signal::SIGTERM), -15));
/// ```
pub fn reap_status<K: Kernel>(kernel: &K, pid: Pid) -> ExitStatus {
    loop {
        match kernel.wait_pid(pid, WaitMode::Block) {
            Ok(WaitStatus::Terminated(got, status)) => {
                assert_eq!(got, pid, "waitpid({pid}) reaped another child");
                return status;
            }
            Err(Errno::EINTR) => continue,
            other => panic!("waitpid({pid}) gave {other:?}"),
        }
    }
}

/// Reads what `fd` holds now without blocking: makes it non-blocking, then reads until
/// a read would block or gives end of file. Returns the bytes and whether it ended at
/// end of file (`true`) rather than because it would block. Retries after `EINTR`;
/// panics on any other error.
///
/// ```
/// use loopwatch::kernel::Fds;
/// use loopwatch_sim::testing::drain;
///
/// let k = loopwatch::OsKernel;
/// let (read, write) = k.pipe().unwrap();
/// k.write(write, b"hi").unwrap();
/// assert_eq!(drain(&k, read), (b"hi".to_vec(), false));
/// k.close(write).unwrap();
/// assert_eq!(drain(&k, read), (Vec::new(), true));
/// k.close(read).unwrap();
/// ```
pub fn drain<K: Kernel>(kernel: &K, fd: Fd) -> (Vec<u8>, bool) {
    kernel
        .set_nonblocking(fd, true)
        .unwrap_or_else(|e| panic!("set_nonblocking({fd}): {e:?}"));
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match kernel.read(fd, &mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN) => return (out, false),
            Err(Errno::EINTR) => {}
            Err(e) => panic!("read({fd}): {e:?}"),
        }
    }
}

/// Reads `fd` to end of file, blocking as the fd does; retries after `EINTR`, panics
/// on any other error.
///
/// ```
/// use loopwatch::kernel::{Processes, SpawnRequest, Stdio};
/// use loopwatch_sim::testing::{read_to_end, reap};
///
/// let k = loopwatch::OsKernel;
/// let mut request = SpawnRequest::new("echo", ["hi"]);
/// request.stdout = Stdio::Pipe;
/// let child = k.spawn(&request).unwrap();
/// let stdout = child.stdout.unwrap();
/// assert_eq!(read_to_end(&k, stdout), b"hi\n");
/// assert_eq!(reap(&k, child.pid), 0);
/// # use loopwatch::kernel::Fds;
/// # k.close(stdout).unwrap();
/// ```
pub fn read_to_end<K: Kernel>(kernel: &K, fd: Fd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match kernel.read(fd, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(e) => panic!("read({fd}): {e:?}"),
        }
    }
}

/// Writes all of `bytes` to `fd`, however many writes it takes; retries after `EINTR`,
/// panics on any other error (`EAGAIN` included: give it a blocking fd).
///
/// ```
/// use loopwatch::kernel::Fds;
/// use loopwatch_sim::testing::{drain, write_all};
///
/// let k = loopwatch::OsKernel;
/// let (read, write) = k.pipe().unwrap();
/// write_all(&k, write, b"hello");
/// assert_eq!(drain(&k, read).0, b"hello");
/// k.close(read).unwrap();
/// k.close(write).unwrap();
/// ```
pub fn write_all<K: Kernel>(kernel: &K, fd: Fd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match kernel.write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => panic!("write({fd}): {e:?}"),
        }
    }
}

/// How many fds the process `kernel` serves has open: on the simulator those other
/// than 0, 1 and 2; on the real OS (any kernel other than the simulator's) every
/// entry of `/proc/self/fd`. Only two counts of one kernel compare.
///
/// ```
/// use loopwatch::kernel::Fds;
/// use loopwatch_sim::Simulation;
/// use loopwatch_sim::testing::fd_count;
///
/// let report = Simulation::new(0).run(|k| {
///     let before = fd_count(&k);
///     let (read, write) = k.pipe().unwrap();
///     assert_eq!(fd_count(&k), before + 2);
///     k.close(read).unwrap();
///     k.close(write).unwrap();
///     assert_eq!(fd_count(&k), before);
/// });
/// report.assert_completed("fd_count");
/// ```
pub fn fd_count<K: Kernel>(kernel: &K) -> usize {
    match (kernel as &dyn Any).downcast_ref::<SimKernel>() {
        Some(sim) => sim.open_fds(),
        None => std::fs::read_dir("/proc/self/fd")
            .expect("list /proc/self/fd")
            .count(),
    }
}

/// Asks `probe` every millisecond of `kernel`'s clock until it answers `Some`, for at
/// most `patience`; `None` if it never did. For a test that waits for another
/// thread's progress without a timing assumption: `patience` only turns a hang into a
/// failure. On the simulator the clock is virtual: each pause lets the other threads
/// run until they all wait.
///
/// ```
/// use std::time::Duration;
/// use loopwatch::kernel::Clock;
/// use loopwatch_sim::testing::wait_until;
///
/// let k = loopwatch::OsKernel;
/// let start = k.now();
/// let later = wait_until(&k, Duration::from_secs(30), || {
///     (k.now() > start).then_some("the clock moved")
/// });
/// assert_eq!(later, Some("the clock moved"));
/// ```
pub fn wait_until<K: Kernel, T>(
    kernel: &K,
    patience: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = kernel.now() + patience;
    loop {
        if let Some(answer) = probe() {
            return Some(answer);
        }
        if kernel.now() >= deadline {
            return None;
        }
        kernel.sleep(Duration::from_millis(1));
    }
}

/// Puts `signals` back to `SIG_DFL` in this process where it inherited them ignored
/// (under `nohup`, or as a background job), for test binaries that rely on their
/// default actions (a child's `kill -TERM $$`) or on finding them at the default. A
/// handler cannot be inherited across `exec`, so `SIG_IGN` is all there is to undo.
/// Call it first thing in `main`.
///
/// ```
/// use loopwatch::kernel::{Disposition, Signal, Signals};
/// use loopwatch_sim::testing::undo_inherited_ignores;
///
/// undo_inherited_ignores(&[Signal::SIGTERM]);
/// assert_ne!(loopwatch::OsKernel.disposition(Signal::SIGTERM), Ok(Disposition::Ignore));
/// ```
pub fn undo_inherited_ignores(signals: &[Signal]) {
    for &signal in signals {
        if OsKernel.disposition(signal) == Ok(Disposition::Ignore) {
            OsKernel
                .set_disposition(signal, Disposition::Default)
                .unwrap_or_else(|e| panic!("reset ignored signal {signal} to SIG_DFL: {e:?}"));
        }
    }
}

type Undo<K> = Box<dyn FnOnce(&K)>;

/// What a test holds on the real OS and must give back even when it fails half-way,
/// so that a failure does not spill into the tests after it: children, fds, and
/// process-wide changes to undo (a disposition, the wakeup fd, a blocked signal).
///
/// Dropped while the test panics, it runs the undo actions (the last registered
/// first), kills and reaps the children that are still its own (a pid `waitpid` no
/// longer knows is never signalled, so a reused pid is safe), then closes the fds
/// not yet closed through [`Cleanup::close`]. Dropped on success it does nothing: a
/// passing test gives back what it took itself, and asserts that doing so works. On
/// the simulator it never acts: the simulated process ends with the run.
///
/// ```
/// use loopwatch::kernel::{Disposition, Fds, Signal, Signals};
/// use loopwatch_sim::testing::Cleanup;
///
/// let k = loopwatch::OsKernel;
/// let mut held = Cleanup::new(&k);
/// let (read, write) = held.pipe();
/// let previous = k.set_disposition(Signal::SIGUSR1, Disposition::Ignore).unwrap();
/// held.undo(move |k| {
///     let _ = k.set_disposition(Signal::SIGUSR1, previous);
/// });
/// // … assertions that may fail …
/// assert_eq!(k.set_disposition(Signal::SIGUSR1, previous), Ok(Disposition::Ignore));
/// assert_eq!(held.close(read), Ok(()));
/// assert_eq!(held.close(write), Ok(()));
/// ```
pub struct Cleanup<K: Kernel> {
    kernel: K,
    children: Vec<Pid>,
    fds: Vec<Fd>,
    undo: Vec<Undo<K>>,
}

impl<K: Kernel> Cleanup<K> {
    /// Nothing held yet.
    pub fn new(kernel: &K) -> Cleanup<K> {
        Cleanup {
            kernel: kernel.clone(),
            children: Vec::new(),
            fds: Vec::new(),
            undo: Vec::new(),
        }
    }

    /// Holds child `pid`; returns it.
    pub fn child(&mut self, pid: Pid) -> Pid {
        self.children.push(pid);
        pid
    }

    /// Holds fd `fd`; returns it. Close it with [`Cleanup::close`].
    pub fn fd(&mut self, fd: Fd) -> Fd {
        self.fds.push(fd);
        fd
    }

    /// Holds a spawned child, the parent's ends of its pipes and its pidfd; returns it.
    pub fn spawned(&mut self, spawned: Spawned) -> Spawned {
        self.child(spawned.pid);
        for fd in [spawned.stdin, spawned.stdout, spawned.stderr, spawned.pidfd]
            .into_iter()
            .flatten()
        {
            self.fd(fd);
        }
        spawned
    }

    /// A new pipe, held; panics if the kernel refuses one.
    pub fn pipe(&mut self) -> (Fd, Fd) {
        let (read, write) = self
            .kernel
            .pipe()
            .unwrap_or_else(|e| panic!("pipe(): {e:?}"));
        (self.fd(read), self.fd(write))
    }

    /// Closes `fd` and lets go of it (also when the close fails), so that a failure
    /// later does not close the number again after it was handed out anew.
    pub fn close(&mut self, fd: Fd) -> Result<(), Errno> {
        self.fds.retain(|&held| held != fd);
        self.kernel.close(fd)
    }

    /// Runs `action` if the test fails: it puts back a process-wide change.
    pub fn undo(&mut self, action: impl FnOnce(&K) + 'static) {
        self.undo.push(Box::new(action));
    }
}

impl<K: Kernel> Drop for Cleanup<K> {
    fn drop(&mut self) {
        let on_sim = (&self.kernel as &dyn Any).downcast_ref::<SimKernel>();
        if !std::thread::panicking() || on_sim.is_some() {
            return;
        }
        let k = &self.kernel;
        while let Some(action) = self.undo.pop() {
            action(k);
        }
        for pid in std::mem::take(&mut self.children) {
            if k.wait_pid(pid, WaitMode::NoHang) == Ok(WaitStatus::StillAlive) {
                let _ = k.kill(pid, Some(Signal::SIGKILL));
                while k.wait_pid(pid, WaitMode::Block) == Err(Errno::EINTR) {}
            }
        }
        for fd in std::mem::take(&mut self.fds) {
            let _ = k.close(fd);
        }
    }
}

impl<K: Kernel> fmt::Debug for Cleanup<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cleanup")
            .field("children", &self.children)
            .field("fds", &self.fds)
            .field("undo", &self.undo.len())
            .finish()
    }
}

/// Why tests that need pidfds cannot run on this machine's real OS, if they cannot: the
/// reason to give [`Test::skip_os`](crate::testing::Test::skip_os). `pidfd_open`
/// needs Linux 5.3 and no seccomp filter refusing it.
///
/// ```
/// if let Some(reason) = loopwatch_sim::testing::pidfd_unavailable() {
///     assert!(reason.starts_with("pidfd_open is unavailable here"));
/// }
/// ```
pub fn pidfd_unavailable() -> Option<String> {
    use loopwatch::kernel::{Fds as _, Processes as _};
    let k = OsKernel;
    match k.pidfd_open(k.getpid()) {
        Ok(fd) => {
            k.close(fd).expect("close the probe pidfd");
            None
        }
        Err(errno) => Some(format!("pidfd_open is unavailable here ({errno})")),
    }
}
