//! Tests of [`OsKernel`] against the real operating system: the kernel layer's own
//! contract, as the trait documentation in `src/kernel/mod.rs` states it.
//!
//! Every test holds [`PROCESS_LOCK`], so the tests of this file never overlap. Tests of
//! other modules may still run in parallel threads of the same process, and some
//! behaviour here is process-wide: `wait_any` and a peek at any child could steal or see
//! those tests' children, SIGCHLD set to `SIG_IGN` would make the kernel reap them, and a
//! count of the whole fd table would see their fds. Those tests re-run themselves in a
//! fresh copy of the test binary that runs only them ([`isolated`]), where nothing else
//! has children or opens fds.
//!
//! Every child is reaped and every fd closed on every path, also when an assertion
//! fails: children and fds are held by guards ([`Child`], [`Owned`]) that clean up on drop.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::{OsJoinHandle, OsKernel, OsPoller, last_errno};
use crate::kernel::*;
use crate::sync::BlockingMutex;

#[allow(
    clippy::disallowed_types,
    reason = "a test-only lock under src/sys, serialising tests of process-wide state; \
              it never meets the simulator"
)]
static PROCESS_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`PROCESS_LOCK`]; a test that failed while holding it does not poison the rest.
fn lock() -> std::sync::MutexGuard<'static, ()> {
    PROCESS_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a test waits for something that should happen at once before it fails
/// instead of hanging. Generous: a loaded machine must not fail a test.
const PATIENCE: Duration = Duration::from_secs(30);

/// A descriptor number far above `RLIMIT_NOFILE`, so never open in this process. Tests
/// use it rather than closing a real fd twice: between two closes another thread may be
/// given the same number, and the second close would close that thread's fd.
const NEVER_OPEN: Fd = Fd(i32::MAX);

/// The environment variable that tells a re-executed test binary to run the body of
/// the test it names (see [`isolated`]).
const ISOLATED: &str = "LOOPWATCH_KERNEL_TEST_ISOLATED";

/// A descriptor the test owns: closed on drop unless it was closed explicitly.
struct Owned(Option<Fd>);

impl Owned {
    fn fd(&self) -> Fd {
        self.0.expect("descriptor already closed")
    }

    fn close(&mut self) -> Result<(), Errno> {
        OsKernel.close(self.0.take().expect("descriptor already closed"))
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            let _ = OsKernel.close(fd);
        }
    }
}

/// A child the test must reap: killed and reaped on drop if the test did not reap it.
/// Until reaped its pid cannot be reused, so the kill can only reach this child.
struct Child {
    pid: Pid,
    reaped: bool,
}

impl Child {
    /// `wait_pid` that remembers when the child is gone.
    fn wait(&mut self, mode: WaitMode) -> Result<WaitStatus, Errno> {
        let result = OsKernel.wait_pid(self.pid, mode);
        if matches!(result, Ok(WaitStatus::Terminated(..)) | Err(Errno::ECHILD)) {
            self.reaped = true;
        }
        result
    }

    /// Blocks until the child terminates, reaps it and returns its status.
    fn reap(&mut self) -> ExitStatus {
        match self.wait(WaitMode::Block) {
            Ok(WaitStatus::Terminated(pid, status)) => {
                assert_eq!(pid, self.pid, "wait_pid reaped another pid");
                status
            }
            other => panic!("wait_pid({}, Block) gave {other:?}", self.pid),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = OsKernel.kill(self.pid, Some(Signal::SIGKILL));
            let _ = OsKernel.wait_pid(self.pid, WaitMode::Block);
        }
    }
}

/// A started child with the parent's ends of its pipes. Fields drop in order: the
/// child is killed and reaped before its pipes are closed.
struct Started {
    child: Child,
    stdin: Option<Owned>,
    stdout: Option<Owned>,
    stderr: Option<Owned>,
}

impl Started {
    fn stdin(&mut self) -> &mut Owned {
        self.stdin.as_mut().expect("no stdin pipe")
    }

    fn stdout(&self) -> Fd {
        self.stdout.as_ref().expect("no stdout pipe").fd()
    }

    fn stderr(&self) -> Fd {
        self.stderr.as_ref().expect("no stderr pipe").fd()
    }
}

/// Runs a closure on drop: restores process-wide state even when an assertion fails.
struct Defer<F: FnMut()>(F);

impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

fn start(k: &OsKernel, request: &SpawnRequest) -> Started {
    let spawned = k
        .spawn(request)
        .unwrap_or_else(|e| panic!("spawn {:?} {:?}: {e}", request.program, request.args));
    Started {
        child: Child {
            pid: spawned.pid,
            reaped: false,
        },
        stdin: spawned.stdin.map(|fd| Owned(Some(fd))),
        stdout: spawned.stdout.map(|fd| Owned(Some(fd))),
        stderr: spawned.stderr.map(|fd| Owned(Some(fd))),
    }
}

/// `/bin/sh -c script`.
fn sh(script: &str) -> SpawnRequest {
    SpawnRequest::new("/bin/sh", ["-c", script])
}

/// `program` without arguments.
fn program(path: &str) -> SpawnRequest {
    SpawnRequest::new(path, std::iter::empty::<&str>())
}

fn pipe(k: &OsKernel) -> (Owned, Owned) {
    let (read, write) = k.pipe().expect("pipe");
    (Owned(Some(read)), Owned(Some(write)))
}

/// `fcntl(fd, F_GETFD)`: the descriptor flags, `EBADF` if the fd is not open.
fn fd_flags(fd: Fd) -> Result<libc::c_int, Errno> {
    // SAFETY: F_GETFD takes no argument and only reads the descriptor table.
    let rc = unsafe { libc::fcntl(fd.0, libc::F_GETFD) };
    if rc < 0 { Err(last_errno()) } else { Ok(rc) }
}

/// `fcntl(fd, F_GETFL)`: the file status flags.
fn status_flags(fd: Fd) -> libc::c_int {
    // SAFETY: F_GETFL takes no argument and only reads the open file's flags.
    let rc = unsafe { libc::fcntl(fd.0, libc::F_GETFL) };
    assert!(rc >= 0, "fcntl({fd}, F_GETFL): {}", last_errno());
    rc
}

fn is_cloexec(fd: Fd) -> bool {
    fd_flags(fd).unwrap_or_else(|e| panic!("fcntl({fd}, F_GETFD): {e}")) & libc::FD_CLOEXEC != 0
}

fn is_nonblocking(fd: Fd) -> bool {
    status_flags(fd) & libc::O_NONBLOCK != 0
}

fn write_all(k: &OsKernel, fd: Fd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match k.write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => panic!("write({fd}): {e}"),
        }
    }
}

/// Makes `fd` non-blocking and reads what is there: the bytes, and whether the read
/// ended at end of file (`true`) or because it would block (`false`).
fn drain(k: &OsKernel, fd: Fd) -> (Vec<u8>, bool) {
    k.set_nonblocking(fd, true).expect("set_nonblocking");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match k.read(fd, &mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN) => return (out, false),
            Err(Errno::EINTR) => {}
            Err(e) => panic!("read({fd}): {e}"),
        }
    }
}

/// Reaps the child, then reads all of `fd`, which must be at end of file: once the
/// child is gone no writer may be left, or an fd leaked. Only for outputs that fit in a
/// pipe; never blocks.
fn output_after_exit(k: &OsKernel, started: &mut Started, fd: Fd) -> (ExitStatus, String) {
    let status = started.child.reap();
    let (bytes, eof) = drain(k, fd);
    assert!(
        eof,
        "a writer of fd {fd} is still open after the child exited: an fd leaked \
         (read so far: {bytes:?})"
    );
    (status, String::from_utf8(bytes).expect("UTF-8 output"))
}

/// The open descriptors of this process and what they refer to.
fn open_fds() -> BTreeMap<i32, PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .map(|entry| {
            let entry = entry.expect("read /proc/self/fd");
            let fd = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
                .expect("fd number");
            (fd, std::fs::read_link(entry.path()).unwrap_or_default())
        })
        .collect()
}

/// Polls without blocking; the events sorted by token.
fn poll_now(poller: &impl Poller) -> Vec<Event> {
    let mut events = Vec::new();
    poller
        .poll(&mut events, Some(Duration::ZERO))
        .expect("poll");
    events.sort_by_key(|event| event.token);
    events
}

fn readable(token: usize) -> Event {
    Event {
        token: Token(token),
        readable: true,
        writable: false,
    }
}

fn writable(token: usize) -> Event {
    Event {
        token: Token(token),
        readable: false,
        writable: true,
    }
}

/// Runs `body` holding [`PROCESS_LOCK`] in a fresh copy of this test binary that runs
/// only the test `name` of this module (which must be the calling test), so that no
/// other test's children or fds exist there, and checks that it passed.
fn isolated(name: &str, body: impl FnOnce(&OsKernel)) {
    let _lock = lock();
    if std::env::var_os(ISOLATED).is_some_and(|v| v == name) {
        body(&OsKernel);
        return;
    }
    let test = crate::test_support::test_path(module_path!(), name);
    crate::test_support::rerun_alone(&test, ISOLATED, name, Duration::from_secs(600));
}

// Goal: a child stays a zombie until waited for; a peek does not reap it, and wait_pid reaps it exactly once.
#[test]
fn wait_pid_reaps_a_zombie_exactly_once() {
    let _lock = lock();
    let k = OsKernel;
    // The child waits for its stdin to close, so "still alive" is certain at first.
    let mut request = sh("read -r line; exit 3");
    request.stdin = Stdio::Pipe;
    let mut started = start(&k, &request);
    let pid = started.child.pid;
    assert_eq!(
        started.child.wait(WaitMode::NoHang),
        Ok(WaitStatus::StillAlive)
    );
    assert_eq!(
        k.wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang),
        Ok(WaitStatus::StillAlive)
    );
    assert_eq!(k.kill(pid, None), Ok(()));

    started.stdin().close().expect("close stdin");
    let peeked = k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block);
    let Ok(WaitStatus::Terminated(peeked_pid, peeked_status)) = peeked else {
        panic!("wait_peek(Pid({pid}), Block) gave {peeked:?}");
    };
    assert_eq!(peeked_pid, pid);
    assert_eq!(peeked_status.returncode(), 3);
    // Not reaped: the zombie still exists, and peeking again finds it again.
    assert_eq!(k.kill(pid, None), Ok(()));
    assert_eq!(
        k.wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang),
        Ok(WaitStatus::Terminated(pid, peeked_status))
    );

    let status = started.child.reap();
    assert_eq!(
        status, peeked_status,
        "peek and wait disagree on the status"
    );
    assert_eq!(status.code(), Some(3));
    assert_eq!(status.signal(), None);
    assert_eq!(status.returncode(), 3);

    // Reaped: the pid is no longer ours, nor a process at all. (Pids are handed out
    // cyclically, so it is not reused within this test.)
    assert_eq!(k.wait_pid(pid, WaitMode::Block), Err(Errno::ECHILD));
    assert_eq!(k.wait_pid(pid, WaitMode::NoHang), Err(Errno::ECHILD));
    assert_eq!(
        k.wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang),
        Err(Errno::ECHILD)
    );
    assert_eq!(k.kill(pid, None), Err(Errno::ESRCH));
}

// Goal: real exits and deaths by signal give asyncio's returncodes (spec R-1), and peek and wait report the same raw status.
#[test]
fn returncodes_follow_the_r1_table() {
    let _lock = lock();
    let k = OsKernel;
    let cases = [
        ("exit 0", 0, None),
        ("exit 255", 255, None),
        ("kill -9 $$", -9, Some(Signal::SIGKILL)),
        ("kill -TERM $$", -15, Some(Signal::SIGTERM)),
        // No core file is wanted from this test.
        ("ulimit -c 0; kill -SEGV $$", -11, Some(Signal::SIGSEGV)),
    ];
    for (script, returncode, signal) in cases {
        let mut started = start(&k, &sh(script));
        let pid = started.child.pid;
        let peeked = k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block);
        let status = started.child.reap();
        assert_eq!(
            peeked,
            Ok(WaitStatus::Terminated(pid, status)),
            "{script}: peek and wait disagree"
        );
        assert_eq!(status.returncode(), returncode, "{script}: {status:?}");
        assert_eq!(status.signal(), signal, "{script}: {status:?}");
        match signal {
            Some(_) => assert_eq!(status.code(), None, "{script}: {status:?}"),
            None => assert_eq!(status.code(), Some(returncode), "{script}: {status:?}"),
        }
    }
}

// Goal: wait_any and a peek at any child find our terminated children (the peek without reaping), and report ECHILD once there are none.
#[test]
fn wait_any_and_peek_any_find_terminated_children() {
    isolated("wait_any_and_peek_any_find_terminated_children", |k| {
        assert_eq!(k.wait_any(WaitMode::NoHang), Err(Errno::ECHILD));
        assert_eq!(
            k.wait_peek(WaitTarget::Any, WaitMode::NoHang),
            Err(Errno::ECHILD)
        );

        // Two children, each waiting for its stdin to close.
        let mut first_request = sh("read -r line; exit 7");
        first_request.stdin = Stdio::Pipe;
        let mut second_request = sh("read -r line; exit 8");
        second_request.stdin = Stdio::Pipe;
        let mut first = start(k, &first_request);
        let mut second = start(k, &second_request);
        let (a, b) = (first.child.pid, second.child.pid);
        assert_eq!(k.wait_any(WaitMode::NoHang), Ok(WaitStatus::StillAlive));
        assert_eq!(
            k.wait_peek(WaitTarget::Any, WaitMode::NoHang),
            Ok(WaitStatus::StillAlive)
        );

        // The first exits: a peek at any child finds it and leaves it a zombie.
        first.stdin().close().expect("close stdin");
        let peeked = k.wait_peek(WaitTarget::Any, WaitMode::Block);
        let Ok(WaitStatus::Terminated(pid, status)) = peeked else {
            panic!("wait_peek(Any, Block) gave {peeked:?}");
        };
        assert_eq!(pid, a);
        assert_eq!(status.returncode(), 7);
        assert_eq!(k.kill(a, None), Ok(()));
        assert_eq!(
            k.wait_peek(WaitTarget::Any, WaitMode::NoHang),
            Ok(WaitStatus::Terminated(a, status))
        );
        assert_eq!(first.child.reap(), status);
        assert_eq!(k.wait_any(WaitMode::NoHang), Ok(WaitStatus::StillAlive));

        // The second exits: wait_any reaps it.
        second.stdin().close().expect("close stdin");
        let reaped = k.wait_any(WaitMode::Block);
        if matches!(reaped, Ok(WaitStatus::Terminated(pid, _)) if pid == b) {
            second.child.reaped = true;
        }
        let Ok(WaitStatus::Terminated(pid, status)) = reaped else {
            panic!("wait_any(Block) gave {reaped:?}");
        };
        assert_eq!(pid, b);
        assert_eq!(status.returncode(), 8);
        assert_eq!(k.kill(b, None), Err(Errno::ESRCH));

        // No children are left.
        assert_eq!(k.wait_any(WaitMode::NoHang), Err(Errno::ECHILD));
        assert_eq!(k.wait_any(WaitMode::Block), Err(Errno::ECHILD));
        assert_eq!(
            k.wait_peek(WaitTarget::Any, WaitMode::Block),
            Err(Errno::ECHILD)
        );
    });
}

// Goal: pids ≤ 0 (process groups, "every process") are refused with EINVAL before reaching the kernel.
#[test]
fn pids_below_one_are_refused() {
    let _lock = lock();
    let k = OsKernel;
    for pid in [Pid(0), Pid(-1), Pid(-2), Pid(i32::MIN)] {
        assert_eq!(
            k.wait_pid(pid, WaitMode::NoHang),
            Err(Errno::EINVAL),
            "{pid}"
        );
        assert_eq!(
            k.wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang),
            Err(Errno::EINVAL),
            "{pid}"
        );
        // Only signal 0: should the check be missing, nothing is sent to anybody.
        assert_eq!(k.kill(pid, None), Err(Errno::EINVAL), "{pid}");
        assert_eq!(k.kill(pid, Some(Signal(0))), Err(Errno::EINVAL), "{pid}");
        assert_eq!(k.pidfd_open(pid), Err(Errno::EINVAL), "{pid}");
    }
}

// Goal: a program that cannot be started gives its errno and leaves no zombie and no open fd behind.
#[test]
fn spawn_failure_leaves_no_zombie_and_no_fd() {
    isolated("spawn_failure_leaves_no_zombie_and_no_fd", |k| {
        let piped = |mut request: SpawnRequest| {
            request.stdin = Stdio::Pipe;
            request.stdout = Stdio::Pipe;
            request.stderr = Stdio::Pipe;
            request
        };
        let mut bad_cwd = piped(program("/bin/true"));
        bad_cwd.cwd = Some("/nonexistent/loopwatch-test-dir".into());
        let mut bad_fd = program("/bin/true");
        bad_fd.stdout = Stdio::Fd(NEVER_OPEN);
        let cases = [
            (
                piped(program("/nonexistent/loopwatch-test-program")),
                Errno::ENOENT,
            ),
            (
                piped(program("loopwatch-test-no-such-program")),
                Errno::ENOENT,
            ),
            (piped(program("/etc/passwd")), Errno::EACCES),
            (bad_cwd, Errno::ENOENT),
            (bad_fd, Errno::EBADF),
        ];
        let before = open_fds();
        for (request, errno) in cases {
            match k.spawn(&request) {
                Ok(spawned) => {
                    // Clean up through the guards, then fail.
                    drop(Started {
                        child: Child {
                            pid: spawned.pid,
                            reaped: false,
                        },
                        stdin: spawned.stdin.map(|fd| Owned(Some(fd))),
                        stdout: spawned.stdout.map(|fd| Owned(Some(fd))),
                        stderr: spawned.stderr.map(|fd| Owned(Some(fd))),
                    });
                    panic!("spawn {request:?} succeeded; expected {errno:?}");
                }
                Err(e) => assert_eq!(e, errno, "spawn {request:?}"),
            }
            assert_eq!(open_fds(), before, "fds after spawn {request:?}");
            assert_eq!(
                k.wait_any(WaitMode::NoHang),
                Err(Errno::ECHILD),
                "a child is left after spawn {request:?}"
            );
        }
    });
}

// Goal: Stdio::Pipe, Null and Fd put the child's streams where asked, the parent's pipe ends are close-on-exec, and no extra writer is left open.
#[test]
fn spawn_plumbs_pipes_null_and_fds() {
    let _lock = lock();
    let k = OsKernel;

    // Pipes both ways, through cat.
    let mut request = program("/bin/cat");
    request.stdin = Stdio::Pipe;
    request.stdout = Stdio::Pipe;
    let mut started = start(&k, &request);
    assert!(started.stderr.is_none());
    assert!(
        is_cloexec(started.stdin().fd()),
        "stdin pipe is inheritable"
    );
    assert!(is_cloexec(started.stdout()), "stdout pipe is inheritable");
    write_all(&k, started.stdin().fd(), b"hello\n");
    started.stdin().close().expect("close stdin");
    let stdout = started.stdout();
    let (status, output) = output_after_exit(&k, &mut started, stdout);
    assert_eq!(status.returncode(), 0);
    assert_eq!(output, "hello\n");
    started
        .stdout
        .as_mut()
        .expect("stdout")
        .close()
        .expect("close stdout");

    // Null: the shell's stdin and stdout are /dev/null; echo succeeds into it. (The
    // links are read in subshells: dash execs its last command with its redirection.)
    let mut request = sh(
        r#"echo hi && i=$(readlink /proc/$$/fd/0) && o=$(readlink /proc/$$/fd/1) && echo "$i $o" >&2"#,
    );
    request.stdin = Stdio::Null;
    request.stdout = Stdio::Null;
    request.stderr = Stdio::Pipe;
    let mut started = start(&k, &request);
    assert!(started.stdin.is_none() && started.stdout.is_none());
    let stderr = started.stderr();
    let (status, output) = output_after_exit(&k, &mut started, stderr);
    assert_eq!(status.returncode(), 0);
    assert_eq!(output, "/dev/null /dev/null\n");

    // Fd: the child writes into our own pipe; we keep our write end as it was.
    let (read, mut write) = pipe(&k);
    let mut request = SpawnRequest::new("/bin/echo", ["hi"]);
    request.stdout = Stdio::Fd(write.fd());
    let mut started = start(&k, &request);
    assert!(started.stdout.is_none());
    assert_eq!(started.child.reap().returncode(), 0);
    assert!(is_cloexec(write.fd()), "our write end changed");
    write.close().expect("close our write end");
    let (bytes, eof) = drain(&k, read.fd());
    assert_eq!(bytes, b"hi\n");
    assert!(eof, "a copy of the write end leaked");
}

// Goal: spawn passes arguments, added or cleared environment variables and the working directory.
#[test]
fn spawn_passes_arguments_environment_and_cwd() {
    let _lock = lock();
    let k = OsKernel;
    let mut request = SpawnRequest::new(
        "/bin/sh",
        [
            "-c",
            r#"printf '%s|%s|%s|%s' "$0" "$1" "$LW_TEST_VAR" "$(pwd)""#,
            "zero",
            "one two",
        ],
    );
    request.env.push(("LW_TEST_VAR".into(), "value".into()));
    request.cwd = Some("/".into());
    request.stdout = Stdio::Pipe;
    let mut started = start(&k, &request);
    let stdout = started.stdout();
    let (status, output) = output_after_exit(&k, &mut started, stdout);
    assert_eq!(status.returncode(), 0);
    assert_eq!(output, "zero|one two|value|/");

    let mut request = program("/usr/bin/env");
    request.env_clear = true;
    request.env.push(("LW_ONLY".into(), "1".into()));
    request.stdout = Stdio::Pipe;
    let mut started = start(&k, &request);
    let stdout = started.stdout();
    let (status, output) = output_after_exit(&k, &mut started, stdout);
    assert_eq!(status.returncode(), 0);
    assert_eq!(output, "LW_ONLY=1\n");
}

// Goal: a pidfd polls readable once its process dies, signals exactly that process, and reports ESRCH once it is reaped.
#[test]
fn pidfd_polls_readable_on_exit_and_signals_only_its_process() {
    let _lock = lock();
    let k = OsKernel;
    let mut started = start(&k, &SpawnRequest::new("/bin/sleep", ["60"]));
    let pid = started.child.pid;
    let mut pidfd = match k.pidfd_open(pid) {
        Ok(fd) => Owned(Some(fd)),
        Err(Errno::ENOSYS) => panic!(
            "pidfd_open gave ENOSYS: this machine's Linux is expected to have pidfd \
             (5.3 or later), so OsKernel's pidfd path is untested"
        ),
        Err(e) => panic!("pidfd_open({pid}): {e}"),
    };
    assert!(is_cloexec(pidfd.fd()), "pidfd is inheritable");

    let poller = k.new_poller().expect("new_poller");
    poller
        .register(pidfd.fd(), Token(7), Interest::READABLE)
        .expect("register pidfd");
    assert_eq!(
        poll_now(&poller),
        [],
        "a running process's pidfd is readable"
    );

    assert_eq!(k.pidfd_send_signal(pidfd.fd(), Signal::SIGKILL), Ok(()));
    let mut events = Vec::new();
    poller.poll(&mut events, Some(PATIENCE)).expect("poll");
    assert_eq!(events, [readable(7)], "no readable pidfd after SIGKILL");

    assert_eq!(started.child.reap().returncode(), -9);
    poller.deregister(pidfd.fd()).expect("deregister");
    assert_eq!(k.pidfd_open(pid), Err(Errno::ESRCH));
    assert_eq!(
        k.pidfd_send_signal(pidfd.fd(), Signal::SIGKILL),
        Err(Errno::ESRCH)
    );
    assert_eq!(pidfd.close(), Ok(()));
}

// Goal: pipes are close-on-exec and blocking, read and write report EAGAIN, EOF, EPIPE and EBADF exactly, and the flag setters work.
#[test]
fn pipes_report_eagain_eof_epipe_and_ebadf() {
    let _lock = lock();
    let k = OsKernel;

    let (mut read, mut write) = pipe(&k);
    for fd in [read.fd(), write.fd()] {
        assert!(is_cloexec(fd), "pipe end {fd} is inheritable");
        assert!(!is_nonblocking(fd), "pipe end {fd} is non-blocking");
    }
    k.set_cloexec(read.fd(), false).expect("set_cloexec");
    assert!(!is_cloexec(read.fd()));
    k.set_cloexec(read.fd(), true).expect("set_cloexec");
    assert!(is_cloexec(read.fd()));

    k.set_nonblocking(read.fd(), true).expect("set_nonblocking");
    assert!(is_nonblocking(read.fd()));
    let mut buf = [0u8; 16];
    assert_eq!(k.read(read.fd(), &mut buf), Err(Errno::EAGAIN));
    assert_eq!(k.write(write.fd(), b"abc"), Ok(3));
    assert_eq!(k.read(read.fd(), &mut buf), Ok(3));
    assert_eq!(&buf[..3], b"abc");
    assert_eq!(k.read(read.fd(), &mut buf), Err(Errno::EAGAIN));
    assert_eq!(write.close(), Ok(()));
    assert_eq!(
        k.read(read.fd(), &mut buf),
        Ok(0),
        "no EOF after the writer closed"
    );
    k.set_nonblocking(read.fd(), false)
        .expect("set_nonblocking");
    assert!(!is_nonblocking(read.fd()));
    assert_eq!(k.read(read.fd(), &mut buf), Ok(0));
    assert_eq!(read.close(), Ok(()));

    // A full non-blocking pipe refuses more; without a reader a write is EPIPE.
    assert_eq!(
        k.disposition(Signal::SIGPIPE),
        Ok(Disposition::Ignore),
        "the Rust runtime is assumed to ignore SIGPIPE, so that writes give EPIPE"
    );
    let (mut read, write) = pipe(&k);
    k.set_nonblocking(write.fd(), true)
        .expect("set_nonblocking");
    let chunk = vec![0u8; 65536];
    let mut written = 0usize;
    loop {
        match k.write(write.fd(), &chunk) {
            Ok(n) => {
                written += n;
                assert!(written < 64 << 20, "a pipe took 64 MiB without EAGAIN");
            }
            Err(Errno::EAGAIN) => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(written > 0);
    assert_eq!(read.close(), Ok(()));
    assert_eq!(k.write(write.fd(), b"x"), Err(Errno::EPIPE));

    for fd in [NEVER_OPEN, Fd(-1)] {
        assert_eq!(k.close(fd), Err(Errno::EBADF), "close({fd})");
        assert_eq!(k.read(fd, &mut buf), Err(Errno::EBADF), "read({fd})");
        assert_eq!(k.write(fd, b"x"), Err(Errno::EBADF), "write({fd})");
        assert_eq!(k.set_nonblocking(fd, true), Err(Errno::EBADF), "{fd}");
        assert_eq!(k.set_cloexec(fd, true), Err(Errno::EBADF), "{fd}");
    }
}

// Goal: the poller is level-triggered (a still-ready fd is reported again), keeps its registration table exact, and reports EOF and a lost reader.
#[test]
fn poller_is_level_triggered_and_registrations_are_exact() {
    let _lock = lock();
    let k = OsKernel;
    let poller = k.new_poller().expect("new_poller");
    let (read, mut write) = pipe(&k);
    k.set_nonblocking(read.fd(), true).expect("set_nonblocking");
    let mut byte = [0u8; 1];

    poller
        .register(read.fd(), Token(1), Interest::READABLE)
        .expect("register");
    // poll clears what the vector held before.
    let mut events = vec![readable(99)];
    poller
        .poll(&mut events, Some(Duration::ZERO))
        .expect("poll");
    assert_eq!(
        events,
        [],
        "an empty pipe is readable, or events were not cleared"
    );

    write_all(&k, write.fd(), b"x");
    assert_eq!(poll_now(&poller), [readable(1)]);
    assert_eq!(
        poll_now(&poller),
        [readable(1)],
        "not reported again while ready"
    );
    assert_eq!(
        poll_now(&poller),
        [readable(1)],
        "not reported a third time"
    );
    assert_eq!(k.read(read.fd(), &mut byte), Ok(1));
    assert_eq!(poll_now(&poller), [], "reported after the data was read");

    // Registration errors.
    let (other_read, mut other_write) = pipe(&k);
    assert_eq!(
        poller.register(read.fd(), Token(2), Interest::READABLE),
        Err(Errno::EEXIST)
    );
    assert_eq!(poller.deregister(other_read.fd()), Err(Errno::ENOENT));
    assert_eq!(
        poller.reregister(other_read.fd(), Token(3), Interest::READABLE),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        poller.register(NEVER_OPEN, Token(4), Interest::READABLE),
        Err(Errno::EBADF)
    );
    let file = std::fs::File::open(std::env::current_exe().expect("test binary path"))
        .expect("open a regular file");
    assert_eq!(
        poller.register(Fd(file.as_raw_fd()), Token(5), Interest::READABLE),
        Err(Errno::EPERM)
    );
    drop(file);

    // reregister changes the token.
    poller
        .reregister(read.fd(), Token(6), Interest::READABLE)
        .expect("reregister");
    write_all(&k, write.fd(), b"x");
    assert_eq!(poll_now(&poller), [readable(6)]);

    // A deregistered fd is not reported, ready or not; it can be registered again.
    poller.deregister(read.fd()).expect("deregister");
    assert_eq!(poll_now(&poller), [], "a deregistered fd was reported");
    assert_eq!(poller.deregister(read.fd()), Err(Errno::ENOENT));
    poller
        .register(read.fd(), Token(1), Interest::READABLE)
        .expect("register again");
    assert_eq!(poll_now(&poller), [readable(1)]);
    assert_eq!(k.read(read.fd(), &mut byte), Ok(1));
    assert_eq!(poll_now(&poller), []);

    // A write end with room is writable, and stays reported.
    poller
        .register(write.fd(), Token(2), Interest::WRITABLE)
        .expect("register write end");
    assert_eq!(poll_now(&poller), [writable(2)]);
    assert_eq!(poll_now(&poller), [writable(2)]);

    // Closing the writer makes the registered reader readable: end of file.
    poller
        .register(other_read.fd(), Token(3), Interest::READABLE)
        .expect("register");
    assert_eq!(poll_now(&poller), [writable(2)]);
    other_write.close().expect("close");
    assert_eq!(poll_now(&poller), [writable(2), readable(3)]);
    assert_eq!(k.read(other_read.fd(), &mut byte), Ok(0));
    assert_eq!(
        poll_now(&poller),
        [writable(2), readable(3)],
        "EOF is level too"
    );
    poller.deregister(other_read.fd()).expect("deregister");
    drop(other_read);

    // Without a reader the write end is still reported writable: the write will fail.
    poller.deregister(read.fd()).expect("deregister");
    drop(read);
    assert_eq!(poll_now(&poller), [writable(2)]);
    assert_eq!(k.write(write.fd(), b"x"), Err(Errno::EPIPE));
    poller.deregister(write.fd()).expect("deregister");
    assert_eq!(poll_now(&poller), []);
    write.close().expect("close");
}

/// What [`poll_forever_in_thread`] reports: `None` when it starts polling, then the result.
type PollReports = mpsc::Receiver<Option<Result<Vec<Event>, Errno>>>;

/// Starts a thread that polls `poller` without a timeout and sends back what poll gave.
fn poll_forever_in_thread(k: &OsKernel, poller: &Arc<OsPoller>) -> (OsJoinHandle, PollReports) {
    let (tx, rx) = mpsc::channel();
    let poller = Arc::clone(poller);
    let handle = k
        .spawn_thread(
            "lw-poll",
            Box::new(move || {
                let _ = tx.send(None);
                let mut events = Vec::new();
                let result = poller.poll(&mut events, None).map(|()| events);
                let _ = tx.send(Some(result));
            }),
        )
        .expect("spawn_thread");
    (handle, rx)
}

// Goal: a wake ends a poll(None) of another thread, also when it comes before that poll starts, and is never reported as an event.
#[test]
fn waker_ends_a_blocking_poll_from_another_thread() {
    let _lock = lock();
    let k = OsKernel;
    let poller: Arc<OsPoller> = Arc::new(k.new_poller().expect("new_poller"));
    let (read, _write) = pipe(&k);
    poller
        .register(read.fd(), Token(1), Interest::READABLE)
        .expect("register");
    let waker = poller.waker();

    // A wake while the other thread is (most likely) blocked in poll. Whether it has
    // blocked yet does not change the outcome: a wake before the poll is kept.
    let (handle, rx) = poll_forever_in_thread(&k, &poller);
    assert_eq!(
        rx.recv_timeout(PATIENCE),
        Ok(None),
        "the thread did not start"
    );
    k.sleep(Duration::from_millis(20));
    assert_eq!(waker.clone().wake(), Ok(()));
    match rx.recv_timeout(PATIENCE) {
        Ok(result) => assert_eq!(result, Some(Ok(Vec::new()))),
        Err(e) => panic!("poll(None) did not return after wake(): {e}"),
    }
    assert!(k.join_thread(handle).is_ok());
    assert_eq!(poll_now(&*poller), [], "the waker was reported as an event");

    // A wake before the poll starts.
    assert_eq!(waker.wake(), Ok(()));
    assert_eq!(waker.wake(), Ok(()));
    let (handle, rx) = poll_forever_in_thread(&k, &poller);
    assert_eq!(
        rx.recv_timeout(PATIENCE),
        Ok(None),
        "the thread did not start"
    );
    match rx.recv_timeout(PATIENCE) {
        Ok(result) => assert_eq!(result, Some(Ok(Vec::new()))),
        Err(e) => panic!("poll(None) did not return after an earlier wake(): {e}"),
    }
    assert!(k.join_thread(handle).is_ok());
    poller.deregister(read.fd()).expect("deregister");
}

/// Makes both ends of a new pipe non-blocking, installs the write end as the wakeup fd
/// and returns the pipe with a guard that puts the previous wakeup fd back. Declared
/// after the pipe, the guard drops before it.
fn wakeup_pipe(k: &OsKernel) -> (Owned, Owned, Option<Fd>) {
    let (read, write) = pipe(k);
    k.set_nonblocking(read.fd(), true).expect("set_nonblocking");
    k.set_nonblocking(write.fd(), true)
        .expect("set_nonblocking");
    let previous = k.set_wakeup_fd(Some(write.fd())).expect("set_wakeup_fd");
    (read, write, previous)
}

// Goal: the Wakeup disposition writes the signal number to the wakeup fd, and set_disposition and set_wakeup_fd hand back what they replace.
#[test]
fn wakeup_disposition_writes_the_signal_number() {
    let _lock = lock();
    let k = OsKernel;
    let signal = Signal::SIGUSR2;
    let (read, write, previous_fd) = wakeup_pipe(&k);
    let _restore_fd = Defer(move || {
        let _ = OsKernel.set_wakeup_fd(previous_fd);
    });
    let previous = k.set_disposition(signal, Disposition::Wakeup);
    let _restore_disposition = Defer(move || {
        if let Ok(previous) = previous {
            let _ = OsKernel.set_disposition(signal, previous);
        }
    });
    assert_eq!(previous, Ok(Disposition::Default));
    assert_eq!(k.disposition(signal), Ok(Disposition::Wakeup));

    assert_eq!(k.raise(signal), Ok(()));
    assert_eq!(drain(&k, read.fd()), (vec![12], false));
    assert_eq!(k.raise(signal), Ok(()));
    assert_eq!(k.raise(signal), Ok(()));
    assert_eq!(drain(&k, read.fd()), (vec![12, 12], false));

    // Ignored: nothing happens, nothing is written.
    assert_eq!(
        k.set_disposition(signal, Disposition::Ignore),
        Ok(Disposition::Wakeup)
    );
    assert_eq!(k.disposition(signal), Ok(Disposition::Ignore));
    assert_eq!(k.raise(signal), Ok(()));
    assert_eq!(drain(&k, read.fd()), (vec![], false));

    assert_eq!(
        k.set_disposition(signal, Disposition::Default),
        Ok(Disposition::Ignore)
    );
    assert_eq!(k.disposition(signal), Ok(Disposition::Default));
    assert_eq!(k.set_wakeup_fd(previous_fd), Ok(Some(write.fd())));
    // An fd that is not open is refused and changes nothing.
    assert_eq!(k.set_wakeup_fd(Some(NEVER_OPEN)), Err(Errno::EBADF));
    assert_eq!(k.set_wakeup_fd(previous_fd), Ok(previous_fd));
}

// Goal: the Wakeup handler neither blocks on a full wakeup pipe (the byte is lost) nor changes the errno of the code it interrupted.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn wakeup_handler_drops_the_byte_on_a_full_pipe_and_keeps_errno() {
    let _lock = lock();
    let k = OsKernel;
    let signal = Signal::SIGUSR2;
    let (read, write, previous_fd) = wakeup_pipe(&k);
    let _restore_fd = Defer(move || {
        let _ = OsKernel.set_wakeup_fd(previous_fd);
    });
    let previous = k.set_disposition(signal, Disposition::Wakeup);
    let _restore_disposition = Defer(move || {
        if let Ok(previous) = previous {
            let _ = OsKernel.set_disposition(signal, previous);
        }
    });
    assert_eq!(previous, Ok(Disposition::Default));

    let chunk = vec![0u8; 65536];
    loop {
        match k.write(write.fd(), &chunk) {
            Ok(_) => {}
            Err(Errno::EAGAIN) => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    // The handler's write fails with EAGAIN; errno must still be what we set.
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread.
    unsafe { *libc::__errno_location() = libc::EXDEV };
    assert_eq!(k.raise(signal), Ok(()));
    // SAFETY: as above.
    let errno = unsafe { *libc::__errno_location() };
    assert_eq!(errno, libc::EXDEV, "the signal handler changed errno");
    let (bytes, eof) = drain(&k, read.fd());
    assert!(!eof);
    assert!(
        bytes.iter().all(|&b| b == 0),
        "the signal byte got into a full pipe"
    );
}

// Goal: invalid signal numbers, and handlers for SIGKILL and SIGSTOP, are refused with EINVAL, as is an unknown Foreign token.
#[test]
fn set_disposition_rejects_invalid_signals() {
    let _lock = lock();
    let k = OsKernel;
    let all = [
        Disposition::Default,
        Disposition::Ignore,
        Disposition::Wakeup,
    ];
    for signal in [Signal(0), Signal(-1), Signal(65), Signal(i32::MAX)] {
        for disposition in all {
            assert_eq!(
                k.set_disposition(signal, disposition),
                Err(Errno::EINVAL),
                "{signal} {disposition:?}"
            );
        }
        assert_eq!(k.disposition(signal), Err(Errno::EINVAL), "{signal}");
        assert_eq!(k.block_signal(signal), Err(Errno::EINVAL), "{signal}");
        assert_eq!(k.unblock_signal(signal), Err(Errno::EINVAL), "{signal}");
        if signal != Signal(0) {
            assert_eq!(k.raise(signal), Err(Errno::EINVAL), "raise({signal})");
        }
    }
    for signal in [Signal::SIGKILL, Signal::SIGSTOP] {
        for disposition in all {
            assert_eq!(
                k.set_disposition(signal, disposition),
                Err(Errno::EINVAL),
                "{signal} {disposition:?}"
            );
        }
        assert_eq!(k.disposition(signal), Ok(Disposition::Default), "{signal}");
    }
    let before = k.disposition(Signal::SIGUSR2);
    assert_eq!(
        k.set_disposition(Signal::SIGUSR2, Disposition::Foreign(u64::MAX)),
        Err(Errno::EINVAL)
    );
    assert_eq!(k.disposition(Signal::SIGUSR2), before);
}

static FOREIGN_RAN: AtomicBool = AtomicBool::new(false);

extern "C" fn foreign_handler(_signum: libc::c_int) {
    FOREIGN_RAN.store(true, Ordering::SeqCst);
}

/// The `sigaction` installed for `signal`, straight from libc.
fn sigaction_of(signal: Signal) -> libc::sigaction {
    // SAFETY: sigaction is plain data; all-zero is valid to be overwritten.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a NULL new action only queries; `action` is writable.
    let rc = unsafe { libc::sigaction(signal.0, std::ptr::null(), &mut action) };
    assert_eq!(rc, 0, "sigaction({signal}): {}", last_errno());
    action
}

/// Installs `action` for `signal` with libc, as foreign code would.
fn install_sigaction(signal: Signal, action: &libc::sigaction) {
    // SAFETY: `action` is a valid sigaction whose handler (SIG_DFL, SIG_IGN, one found
    // installed, or `foreign_handler`) is async-signal-safe.
    let rc = unsafe { libc::sigaction(signal.0, action, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "sigaction({signal}): {}", last_errno());
}

// Goal: a handler installed by other code comes back as a Foreign token, and passing the token back restores exactly that handler.
#[test]
fn foreign_handler_is_handed_back_and_restored_exactly() {
    let _lock = lock();
    let k = OsKernel;
    let signal = Signal(libc::SIGURG);
    let original = sigaction_of(signal);
    let _restore_original = Defer(move || install_sigaction(signal, &original));
    let (read, _write, previous_fd) = wakeup_pipe(&k);
    let _restore_fd = Defer(move || {
        let _ = OsKernel.set_wakeup_fd(previous_fd);
    });

    // SAFETY: sigaction is plain data; all-zero is an empty mask with no flags.
    let mut foreign: libc::sigaction = unsafe { std::mem::zeroed() };
    foreign.sa_sigaction = foreign_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
    foreign.sa_flags = libc::SA_RESTART;
    install_sigaction(signal, &foreign);
    let installed = sigaction_of(signal);
    FOREIGN_RAN.store(false, Ordering::SeqCst);

    let previous = k.set_disposition(signal, Disposition::Wakeup);
    let Ok(Disposition::Foreign(token)) = previous else {
        panic!("set_disposition over a foreign handler gave {previous:?}");
    };
    assert_eq!(k.disposition(signal), Ok(Disposition::Wakeup));
    assert_eq!(k.raise(signal), Ok(()));
    assert!(
        !FOREIGN_RAN.load(Ordering::SeqCst),
        "the replaced handler ran"
    );
    assert_eq!(drain(&k, read.fd()), (vec![libc::SIGURG as u8], false));

    assert_eq!(
        k.set_disposition(signal, Disposition::Foreign(token)),
        Ok(Disposition::Wakeup)
    );
    assert_eq!(k.disposition(signal), Ok(Disposition::Foreign(token)));
    let restored = sigaction_of(signal);
    assert_eq!(
        restored.sa_sigaction, installed.sa_sigaction,
        "another handler"
    );
    assert_eq!(restored.sa_flags, installed.sa_flags, "other flags");
    assert_eq!(k.raise(signal), Ok(()));
    assert!(
        FOREIGN_RAN.load(Ordering::SeqCst),
        "the restored handler did not run"
    );
    assert_eq!(drain(&k, read.fd()), (vec![], false));

    // Found again, the same handler gives the same token.
    assert_eq!(
        k.set_disposition(signal, Disposition::Default),
        Ok(Disposition::Foreign(token))
    );
}

// Goal: a signal blocked in the calling thread stays pending (no byte written) until it is unblocked, and is then handled.
#[test]
fn blocked_signal_is_handled_on_unblock() {
    let _lock = lock();
    let k = OsKernel;
    let signal = Signal::SIGUSR2;
    let (read, _write, previous_fd) = wakeup_pipe(&k);
    let _restore_fd = Defer(move || {
        let _ = OsKernel.set_wakeup_fd(previous_fd);
    });
    let previous = k.set_disposition(signal, Disposition::Wakeup);
    let _restore_disposition = Defer(move || {
        if let Ok(previous) = previous {
            let _ = OsKernel.set_disposition(signal, previous);
        }
    });
    assert_eq!(previous, Ok(Disposition::Default));

    assert_eq!(k.block_signal(signal), Ok(false));
    // Dropped first: a pending signal is handled while the handler and pipe still exist.
    let _unblock = Defer(move || {
        let _ = OsKernel.unblock_signal(signal);
    });
    assert_eq!(k.raise(signal), Ok(()));
    assert_eq!(
        drain(&k, read.fd()),
        (vec![], false),
        "a blocked signal was handled"
    );
    // SAFETY: sigset_t is plain data, filled in by sigpending.
    let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `pending` is a valid, writable sigset_t.
    assert_eq!(unsafe { libc::sigpending(&mut pending) }, 0);
    // SAFETY: `pending` is a valid sigset_t.
    let is_pending = unsafe { libc::sigismember(&pending, signal.0) };
    assert_eq!(is_pending, 1, "not pending");

    assert_eq!(k.unblock_signal(signal), Ok(true));
    assert_eq!(
        drain(&k, read.fd()),
        (vec![12], false),
        "not handled on unblock"
    );
}

// Goal: realtime signals (34..=64 on Linux), which the seam accepts as CPython does, are handled, blocked, sent and reported by number like the classic ones.
#[test]
fn realtime_signals_pass_through_by_number() {
    let _lock = lock();
    let k = OsKernel;
    for signal in [Signal(40), Signal(Signal::MAX)] {
        let (read, _write, previous_fd) = wakeup_pipe(&k);
        let _restore_fd = Defer(move || {
            let _ = OsKernel.set_wakeup_fd(previous_fd);
        });
        let previous = k.set_disposition(signal, Disposition::Wakeup);
        let _restore_disposition = Defer(move || {
            if let Ok(previous) = previous {
                let _ = OsKernel.set_disposition(signal, previous);
            }
        });
        assert_eq!(previous, Ok(Disposition::Default), "{signal}");
        assert_eq!(k.disposition(signal), Ok(Disposition::Wakeup), "{signal}");

        assert_eq!(k.block_signal(signal), Ok(false), "{signal}");
        let _unblock = Defer(move || {
            let _ = OsKernel.unblock_signal(signal);
        });
        assert_eq!(k.raise(signal), Ok(()), "{signal}");
        assert_eq!(drain(&k, read.fd()), (vec![], false), "{signal} blocked");
        assert_eq!(k.unblock_signal(signal), Ok(true), "{signal}");
        let byte = signal.0 as u8;
        assert_eq!(drain(&k, read.fd()), (vec![byte], false), "{signal}");

        // A child started at the default actions dies of it, and both waits report the
        // number. It is signalled once it says it runs the shell: before `exec` it
        // would still have this process's handler.
        let mut request = sh("echo ready; read -r line");
        request.stdin = Stdio::Pipe;
        request.stdout = Stdio::Pipe;
        request.restore_signals = true;
        let mut started = start(&k, &request);
        let pid = started.child.pid;
        let mut ready = [0u8; 6];
        assert_eq!(k.read(started.stdout(), &mut ready), Ok(6), "{signal}");
        assert_eq!(k.kill(pid, Some(signal)), Ok(()), "{signal}");
        let peeked = k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block);
        let status = started.child.reap();
        assert_eq!(peeked, Ok(WaitStatus::Terminated(pid, status)), "{signal}");
        assert_eq!(status.signal(), Some(signal), "{signal}: {status:?}");
        assert_eq!(status.returncode(), -signal.0, "{signal}: {status:?}");

        assert_eq!(
            k.set_disposition(signal, Disposition::Default),
            Ok(Disposition::Wakeup),
            "{signal}"
        );
    }
}

// Goal: with SIGCHLD ignored the kernel reaps children itself (wait_pid finds nothing), and restoring the disposition brings zombies back.
#[test]
fn ignored_sigchld_makes_the_kernel_reap_children() {
    isolated("ignored_sigchld_makes_the_kernel_reap_children", |k| {
        let previous = k
            .set_disposition(Signal::SIGCHLD, Disposition::Ignore)
            .expect("set_disposition(SIGCHLD, Ignore)");
        let _restore = Defer(move || {
            let _ = OsKernel.set_disposition(Signal::SIGCHLD, previous);
        });
        assert_eq!(previous, Disposition::Default);

        let mut started = start(k, &program("/bin/true"));
        // Blocks until the child exits; the kernel has reaped it by then.
        assert_eq!(started.child.wait(WaitMode::Block), Err(Errno::ECHILD));

        assert_eq!(
            k.set_disposition(Signal::SIGCHLD, previous),
            Ok(Disposition::Ignore)
        );
        let mut started = start(k, &program("/bin/true"));
        assert_eq!(started.child.reap().returncode(), 0);
    });
}

// Goal: threads get their name and a fresh identity from the kernel, test threads are not the main thread, and a panic reaches join_thread.
#[test]
fn threads_have_names_identities_and_report_panics() {
    let _lock = lock();
    let k = OsKernel;
    let me = k.current_thread();
    assert_eq!(k.current_thread(), me, "a thread's id changed");
    assert!(
        !k.is_main_thread(),
        "libtest runs tests off the main thread"
    );
    assert_ne!(k.current_thread_name(), "MainThread");

    let mut ids = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::channel();
        let handle = k
            .spawn_thread(
                "lw-test",
                Box::new(move || {
                    let k = OsKernel;
                    let id = k.current_thread();
                    let _ = tx.send((
                        k.current_thread_name(),
                        k.is_main_thread(),
                        id,
                        k.current_thread(),
                    ));
                }),
            )
            .expect("spawn_thread");
        assert!(k.join_thread(handle).is_ok());
        let (name, main, id, again) = rx.recv().expect("the thread's report");
        assert_eq!(name, "lw-test");
        assert!(!main);
        assert_eq!(id, again);
        assert_ne!(id, me);
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "two threads share an id");

    let handle = k
        .spawn_thread("lw-panic", Box::new(|| panic!("lw-test panic")))
        .expect("spawn_thread");
    let payload = k
        .join_thread(handle)
        .expect_err("a panicking thread joined Ok");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"lw-test panic"));
}

// Goal: BlockingMutex over OsMonitor excludes, wakes waiters on notify_all, times out without one, and is released by a panic.
#[test]
fn blocking_mutex_excludes_waits_and_times_out() {
    let _lock = lock();
    let k = OsKernel;

    let counter = Arc::new(BlockingMutex::new(&k, 0u64));
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let counter = Arc::clone(&counter);
            k.spawn_thread(
                &format!("lw-count-{i}"),
                Box::new(move || {
                    for _ in 0..10_000 {
                        *counter.lock() += 1;
                    }
                }),
            )
            .expect("spawn_thread")
        })
        .collect();
    for handle in handles {
        assert!(k.join_thread(handle).is_ok());
    }
    assert_eq!(*counter.lock(), 20_000);

    // The waiter holds the lock when it reports; we can only take it once `wait` has
    // released it, and our notify comes after the flag is set.
    let flag = Arc::new(BlockingMutex::new(&k, false));
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let flag = Arc::clone(&flag);
        k.spawn_thread(
            "lw-waiter",
            Box::new(move || {
                let mut guard = flag.lock();
                let _ = tx.send(false);
                while !*guard {
                    guard.wait(None);
                }
                let _ = tx.send(*guard);
            }),
        )
        .expect("spawn_thread")
    };
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(false));
    *flag.lock() = true;
    flag.notify_all();
    assert_eq!(
        rx.recv_timeout(PATIENCE),
        Ok(true),
        "the waiter did not wake"
    );
    assert!(k.join_thread(waiter).is_ok());

    let mut guard = flag.lock();
    assert!(
        !guard.wait(Some(Duration::from_millis(10))),
        "woken without notify"
    );
    assert!(*guard, "the data changed under a held lock");
    drop(guard);

    // A panic releases the lock and leaves the data as it was set.
    let value = Arc::new(BlockingMutex::new(&k, 0u32));
    let handle = {
        let value = Arc::clone(&value);
        k.spawn_thread(
            "lw-panic-holder",
            Box::new(move || {
                let mut guard = value.lock();
                *guard = 7;
                panic!("lw-test panic under the lock");
            }),
        )
        .expect("spawn_thread")
    };
    assert!(k.join_thread(handle).is_err());
    assert_eq!(*value.lock(), 7);
}

// Goal: now() never goes backwards, and sleep lasts at least as long as asked.
#[test]
fn clock_is_monotonic_and_sleep_lasts() {
    let _lock = lock();
    let k = OsKernel;
    let mut last = k.now();
    for _ in 0..1000 {
        let now = k.now();
        assert!(now >= last, "now() went back from {last:?} to {now:?}");
        last = now;
    }
    let before = k.now();
    k.sleep(Duration::from_millis(1));
    let after = k.now();
    assert!(
        after >= before + Duration::from_millis(1),
        "slept 1 ms from {before:?} but now() is {after:?}"
    );
}

// Goal: a poller and its waker close every fd they opened once the last of them is dropped.
#[test]
fn poller_and_waker_close_their_fds() {
    isolated("poller_and_waker_close_their_fds", |k| {
        let before = open_fds();
        let (created, waker) = {
            let (read, write) = pipe(k);
            let poller = k.new_poller().expect("new_poller");
            poller
                .register(read.fd(), Token(1), Interest::READABLE)
                .expect("register");
            let waker = poller.waker();
            assert_eq!(waker.wake(), Ok(()));
            assert_eq!(poll_now(&poller), []);
            let created: BTreeMap<i32, PathBuf> = open_fds()
                .into_iter()
                .filter(|(fd, _)| {
                    !before.contains_key(fd) && *fd != read.fd().0 && *fd != write.fd().0
                })
                .collect();
            assert!(
                created
                    .values()
                    .any(|link| link.to_string_lossy().contains("eventpoll")),
                "no epoll fd among the poller's fds {created:?}"
            );
            poller.deregister(read.fd()).expect("deregister");
            (created, waker)
        };
        // The poller is gone; the waker clone keeps only its own fd and still works.
        assert_eq!(waker.wake(), Ok(()));
        let still_open: Vec<i32> = created
            .keys()
            .copied()
            .filter(|&fd| fd_flags(Fd(fd)).is_ok())
            .collect();
        assert!(
            still_open.len() < created.len(),
            "dropping the poller closed none of {created:?}"
        );
        drop(waker);
        for &fd in created.keys() {
            assert_eq!(fd_flags(Fd(fd)), Err(Errno::EBADF), "fd {fd} left open");
        }
        assert_eq!(open_fds(), before);
    });
}
