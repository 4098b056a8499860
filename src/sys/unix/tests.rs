//! Tests of [`OsKernel`] that only the real operating system can answer. The kernel
//! contract itself (what the trait documentation in `src/kernel/mod.rs` promises) is
//! tested once for both kernels, on `OsKernel` and on the simulator, by
//! `sim/tests/kernel_contract_processes.rs`, `sim/tests/kernel_contract_fds_signals.rs`
//! and `sim/tests/kernel_contract_threads.rs`.
//! What stays here, and why:
//!
//! - close-on-exec and `O_NONBLOCK` as `fcntl` reads them, on every fd the kernel hands
//!   out (pipes, a child's pipes, pidfds) and after the flag setters: the simulator's
//!   fds have flags but no `exec` to lose them across;
//! - spawn failures that need a filesystem (a file that is not executable, a missing
//!   working directory), with the fd table compared entry by entry;
//! - `Stdio::Null` as `/dev/null` in the child's `/proc/<pid>/fd`;
//! - `EPERM` for registering a regular file with the poller: the simulator has no files;
//! - that the Wakeup handler keeps the errno of the code it interrupts;
//! - a foreign handler installed with `sigaction` and restored bit for bit;
//! - a blocked signal shown pending by `sigpending`;
//! - a thread the kernel did not start (libtest's) as not the main thread: the
//!   simulator has no such threads;
//! - which fds a poller and its waker open (an `eventpoll` among them), and that each is
//!   closed, from `/proc/self/fd` and `fcntl`.
//!
//! Every test holds [`PROCESS_LOCK`], so the tests of this file never overlap. Tests of
//! other modules may still run in parallel threads of the same process, and some
//! behaviour here is process-wide: a count of the whole fd table would see their fds,
//! and "any child" waits their children. Those tests re-run themselves in a fresh copy
//! of the test binary that runs only them ([`isolated`]), where nothing else has
//! children or opens fds.
//!
//! Every child is reaped and every fd closed on every path, also when an assertion
//! fails: children and fds are held by guards ([`Child`], [`Owned`]) that clean up on drop.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use super::{OsKernel, last_errno};
use crate::kernel::*;

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
    /// Takes on a spawned child, and its pipe ends as [`Owned`] guards in the order
    /// stdin, stdout, stderr.
    fn adopt(spawned: Spawned) -> (Child, [Option<Owned>; 3]) {
        let own = |fd: Option<Fd>| fd.map(|fd| Owned(Some(fd)));
        let child = Child {
            pid: spawned.pid,
            reaped: false,
        };
        (
            child,
            [own(spawned.stdin), own(spawned.stdout), own(spawned.stderr)],
        )
    }

    /// Blocks until the child terminates, reaps it and returns its returncode.
    fn reap(&mut self) -> i32 {
        let result = OsKernel.wait_pid(self.pid, WaitMode::Block);
        if matches!(result, Ok(WaitStatus::Terminated(..)) | Err(Errno::ECHILD)) {
            self.reaped = true;
        }
        match result {
            Ok(WaitStatus::Terminated(pid, status)) => {
                assert_eq!(pid, self.pid, "wait_pid reaped another pid");
                status.returncode()
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

/// Runs a closure on drop: restores process-wide state even when an assertion fails.
struct Defer<F: FnMut()>(F);

impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)();
    }
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

/// Reads what the non-blocking `fd` holds now: the bytes, and whether the read ended
/// at end of file (`true`) or because it would block (`false`).
fn read_now(k: &OsKernel, fd: Fd) -> (Vec<u8>, bool) {
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

// Goal: every fd the kernel hands out (pipe ends, a child's pipe ends, pidfds) is close-on-exec, pipes start blocking, each flag setter changes its flag alone, and an fd lent to a child stays as it was.
#[test]
fn kernel_fds_are_close_on_exec_and_flags_are_exact() {
    let _lock = lock();
    let k = OsKernel;

    let (read, write) = pipe(&k);
    for fd in [read.fd(), write.fd()] {
        assert!(is_cloexec(fd), "pipe end {fd} is inheritable");
        assert!(!is_nonblocking(fd), "pipe end {fd} is non-blocking");
    }
    k.set_cloexec(read.fd(), false).expect("set_cloexec");
    assert!(!is_cloexec(read.fd()));
    assert!(!is_nonblocking(read.fd()), "set_cloexec changed O_NONBLOCK");
    k.set_cloexec(read.fd(), true).expect("set_cloexec");
    assert!(is_cloexec(read.fd()));
    k.set_nonblocking(read.fd(), true).expect("set_nonblocking");
    assert!(is_nonblocking(read.fd()));
    assert!(is_cloexec(read.fd()), "set_nonblocking changed FD_CLOEXEC");
    k.set_nonblocking(read.fd(), false)
        .expect("set_nonblocking");
    assert!(!is_nonblocking(read.fd()));

    // A child's pipes: the parent's ends are close-on-exec, so no later child inherits
    // them. Our own write end, lent as the child's stderr, stays as it was.
    let mut request = SpawnRequest::new("/bin/cat", std::iter::empty::<&str>());
    request.stdin = Stdio::Pipe;
    request.stdout = Stdio::Pipe;
    request.stderr = Stdio::Fd(write.fd());
    let (mut child, [stdin, stdout, stderr]) = Child::adopt(k.spawn(&request).expect("spawn cat"));
    assert!(stderr.is_none());
    let mut stdin = stdin.expect("stdin pipe");
    let stdout = stdout.expect("stdout pipe");
    assert!(is_cloexec(stdin.fd()), "stdin pipe is inheritable");
    assert!(is_cloexec(stdout.fd()), "stdout pipe is inheritable");
    assert!(is_cloexec(write.fd()), "our write end changed");
    assert!(!is_nonblocking(write.fd()), "our write end changed");

    // A pidfd.
    let mut pidfd = Owned(Some(k.pidfd_open(child.pid).expect("pidfd_open")));
    assert!(is_cloexec(pidfd.fd()), "pidfd is inheritable");
    assert_eq!(pidfd.close(), Ok(()));

    stdin.close().expect("close stdin");
    assert_eq!(child.reap(), 0);
}

// Goal: a program that cannot be started for a reason of the filesystem (a file that is not executable, a missing working directory) gives its errno and leaves no child and no fd behind: the fd table is unchanged entry by entry.
#[test]
fn spawn_failure_of_the_filesystem_leaves_no_child_and_no_fd() {
    isolated(
        "spawn_failure_of_the_filesystem_leaves_no_child_and_no_fd",
        |k| {
            let piped = |path: &str| {
                let mut request = SpawnRequest::new(path, std::iter::empty::<&str>());
                request.stdin = Stdio::Pipe;
                request.stdout = Stdio::Pipe;
                request.stderr = Stdio::Pipe;
                request
            };
            let mut bad_cwd = piped("/bin/true");
            bad_cwd.cwd = Some("/nonexistent/loopwatch-test-dir".into());
            let cases = [
                (piped("/etc/passwd"), Errno::EACCES),
                (bad_cwd, Errno::ENOENT),
            ];
            let before = open_fds();
            for (request, errno) in cases {
                match k.spawn(&request) {
                    Ok(spawned) => {
                        // Clean up through the guards, then fail.
                        drop(Child::adopt(spawned));
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
        },
    );
}

// Goal: Stdio::Null gives the child /dev/null as those streams.
#[test]
fn null_streams_are_dev_null() {
    let _lock = lock();
    let k = OsKernel;
    // The links are read in subshells: dash execs its last command with its redirection.
    let mut request = SpawnRequest::new(
        "/bin/sh",
        [
            "-c",
            r#"echo hi && i=$(readlink /proc/$$/fd/0) && o=$(readlink /proc/$$/fd/1) && echo "$i $o" >&2"#,
        ],
    );
    request.stdin = Stdio::Null;
    request.stdout = Stdio::Null;
    request.stderr = Stdio::Pipe;
    let (mut child, [_, _, stderr]) = Child::adopt(k.spawn(&request).expect("spawn sh"));
    let stderr = stderr.expect("stderr pipe");
    assert_eq!(child.reap(), 0);
    k.set_nonblocking(stderr.fd(), true)
        .expect("set_nonblocking");
    assert_eq!(
        read_now(&k, stderr.fd()),
        (b"/dev/null /dev/null\n".to_vec(), true)
    );
}

// Goal: a regular file cannot be registered with the poller: EPERM, as epoll answers.
#[test]
fn poller_refuses_a_regular_file() {
    let _lock = lock();
    let k = OsKernel;
    let poller = k.new_poller().expect("new_poller");
    let file = std::fs::File::open(std::env::current_exe().expect("test binary path"))
        .expect("open a regular file");
    assert_eq!(
        poller.register(Fd(file.as_raw_fd()), Token(5), Interest::READABLE),
        Err(Errno::EPERM)
    );
}

/// Makes both ends of a new pipe non-blocking, installs the write end as the wakeup fd
/// and returns the pipe with the previous wakeup fd, to be put back.
fn wakeup_pipe(k: &OsKernel) -> (Owned, Owned, Option<Fd>) {
    let (read, write) = pipe(k);
    k.set_nonblocking(read.fd(), true).expect("set_nonblocking");
    k.set_nonblocking(write.fd(), true)
        .expect("set_nonblocking");
    let previous = k.set_wakeup_fd(Some(write.fd())).expect("set_wakeup_fd");
    (read, write, previous)
}

// Goal: the Wakeup handler leaves the errno of the code it interrupted as it was, whether its write succeeds or fails (a full wakeup pipe).
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn wakeup_handler_keeps_errno() {
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
    let raise_keeps_errno = || {
        // SAFETY: __errno_location returns this thread's errno slot, valid for the thread.
        unsafe { *libc::__errno_location() = libc::EXDEV };
        assert_eq!(k.raise(signal), Ok(()));
        // SAFETY: as above.
        unsafe { *libc::__errno_location() }
    };

    // The handler's write succeeds.
    assert_eq!(
        raise_keeps_errno(),
        libc::EXDEV,
        "the handler changed errno"
    );
    assert_eq!(read_now(&k, read.fd()), (vec![12], false));

    // The handler's write fails with EAGAIN.
    let chunk = vec![0u8; 65536];
    loop {
        match k.write(write.fd(), &chunk) {
            Ok(_) => {}
            Err(Errno::EAGAIN) => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    assert_eq!(
        raise_keeps_errno(),
        libc::EXDEV,
        "the handler changed errno"
    );
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
    assert_eq!(read_now(&k, read.fd()), (vec![libc::SIGURG as u8], false));

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
    assert_eq!(read_now(&k, read.fd()), (vec![], false));

    // Found again, the same handler gives the same token.
    assert_eq!(
        k.set_disposition(signal, Disposition::Default),
        Ok(Disposition::Foreign(token))
    );
}

static FOREIGN_INFO_SIGNO: AtomicI32 = AtomicI32::new(0);

extern "C" fn foreign_info_handler(
    _signum: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel (through the chaining handler) passes the siginfo it filled in.
    let signo = unsafe { info.as_ref() }.map_or(-1, |info| info.si_signo);
    FOREIGN_INFO_SIGNO.store(signo, Ordering::SeqCst);
}

// Goal: a foreign handler chained to loopwatch's runs after loopwatch's byte is written, with the arguments the kernel gave (the siginfo too, for an SA_SIGINFO handler), and no more once unchained; an unknown token or SIGKILL is EINVAL.
#[test]
fn chained_foreign_handler_runs_after_the_byte() {
    let _lock = lock();
    let k = OsKernel;
    let signal = Signal(libc::SIGURG);
    let original = sigaction_of(signal);
    let _restore_original = Defer(move || install_sigaction(signal, &original));
    let (read, _write, previous_fd) = wakeup_pipe(&k);
    let _restore_fd = Defer(move || {
        let _ = OsKernel.set_wakeup_fd(previous_fd);
        let _ = OsKernel.chain_foreign(Signal(libc::SIGURG), None);
    });
    assert_eq!(k.chain_foreign(Signal::SIGKILL, None), Err(Errno::EINVAL));
    assert_eq!(
        k.chain_foreign(signal, Some(u64::MAX - 1)),
        Err(Errno::EINVAL)
    );

    // A one-argument handler.
    // SAFETY: sigaction is plain data; all-zero is an empty mask with no flags.
    let mut plain: libc::sigaction = unsafe { std::mem::zeroed() };
    plain.sa_sigaction = foreign_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
    install_sigaction(signal, &plain);
    let Ok(Disposition::Foreign(token)) = k.set_disposition(signal, Disposition::Wakeup) else {
        panic!("no foreign token");
    };
    assert_eq!(k.chain_foreign(signal, Some(token)), Ok(None));
    FOREIGN_RAN.store(false, Ordering::SeqCst);
    assert_eq!(k.raise(signal), Ok(()));
    assert!(
        FOREIGN_RAN.load(Ordering::SeqCst),
        "the chained handler did not run"
    );
    assert_eq!(read_now(&k, read.fd()), (vec![libc::SIGURG as u8], false));

    // An SA_SIGINFO handler gets the siginfo.
    // SAFETY: as above.
    let mut with_info: libc::sigaction = unsafe { std::mem::zeroed() };
    with_info.sa_sigaction = foreign_info_handler
        as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
        as libc::sighandler_t;
    with_info.sa_flags = libc::SA_SIGINFO;
    install_sigaction(signal, &with_info);
    let Ok(Disposition::Foreign(info_token)) = k.set_disposition(signal, Disposition::Wakeup)
    else {
        panic!("no foreign token");
    };
    assert_eq!(k.chain_foreign(signal, Some(info_token)), Ok(Some(token)));
    FOREIGN_INFO_SIGNO.store(0, Ordering::SeqCst);
    assert_eq!(k.raise(signal), Ok(()));
    assert_eq!(FOREIGN_INFO_SIGNO.load(Ordering::SeqCst), libc::SIGURG);
    assert_eq!(read_now(&k, read.fd()), (vec![libc::SIGURG as u8], false));

    // Unchained: loopwatch's byte only.
    assert_eq!(k.chain_foreign(signal, None), Ok(Some(info_token)));
    FOREIGN_INFO_SIGNO.store(0, Ordering::SeqCst);
    FOREIGN_RAN.store(false, Ordering::SeqCst);
    assert_eq!(k.raise(signal), Ok(()));
    assert_eq!(FOREIGN_INFO_SIGNO.load(Ordering::SeqCst), 0);
    assert!(!FOREIGN_RAN.load(Ordering::SeqCst));
    assert_eq!(read_now(&k, read.fd()), (vec![libc::SIGURG as u8], false));
}

// Goal: a thread the kernel did not start (one of libtest's) is not the main thread and is not named MainThread.
#[test]
fn threads_started_elsewhere_are_not_the_main_thread() {
    let _lock = lock();
    let k = OsKernel;
    assert!(
        !k.is_main_thread(),
        "libtest runs tests off the main thread"
    );
    assert_ne!(k.current_thread_name(), "MainThread");
}

// Goal: a signal blocked in the calling thread and raised is pending, as sigpending reports, until it is unblocked and handled.
#[test]
fn blocked_signal_is_pending_until_unblocked() {
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
    let is_pending = || {
        // SAFETY: sigset_t is plain data, filled in by sigpending.
        let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `pending` is a valid, writable sigset_t.
        assert_eq!(unsafe { libc::sigpending(&mut pending) }, 0);
        // SAFETY: `pending` is a valid sigset_t.
        unsafe { libc::sigismember(&pending, signal.0) == 1 }
    };

    assert_eq!(k.block_signal(signal), Ok(false));
    // Dropped first: a pending signal is handled while the handler and pipe still exist.
    let _unblock = Defer(move || {
        let _ = OsKernel.unblock_signal(signal);
    });
    assert!(!is_pending(), "pending before it was raised");
    assert_eq!(k.raise(signal), Ok(()));
    assert!(is_pending(), "not pending");
    assert_eq!(
        read_now(&k, read.fd()),
        (vec![], false),
        "handled while blocked"
    );

    assert_eq!(k.unblock_signal(signal), Ok(true));
    assert!(!is_pending(), "still pending once handled");
    assert_eq!(read_now(&k, read.fd()), (vec![12], false));
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

// ----- spawn with a pidfd (clone with CLONE_PIDFD) ------------------------------------

/// A child spawned with `pidfd: true`, its stream ends and its pidfd, all held by
/// guards. Panics if the kernel cannot spawn with a pidfd (this machine's can).
fn spawn_with_pidfd(k: &OsKernel, request: SpawnRequest) -> (Child, [Option<Owned>; 3], Owned) {
    let spawned = k
        .spawn(&request.pidfd(true))
        .unwrap_or_else(|e| panic!("spawn with a pidfd: {e}"));
    let pidfd = Owned(Some(spawned.pidfd.expect("a pidfd was asked for")));
    let (child, ends) = Child::adopt(spawned);
    (child, ends, pidfd)
}

/// Reads `fd` (blocking) to end of file.
fn read_all(k: &OsKernel, fd: Fd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match k.read(fd, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(e) => panic!("read({fd}): {e}"),
        }
    }
}

/// A directory of its own under the temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("loopwatch-{}-{name}", OsKernel.getpid()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    /// Writes a file named `name` with `text` and the permission bits `mode`.
    fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("chmod a file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// Goal: with a pidfd the child exits with its code or dies of its signal as a std spawn would report it, and the pidfd and the parent's pipe ends are close-on-exec.
#[test]
fn pidfd_spawn_reports_exit_codes_and_signals() {
    let _lock = lock();
    let k = OsKernel;
    let (mut child, _, pidfd) =
        spawn_with_pidfd(&k, SpawnRequest::new("/bin/sh", ["-c", "exit 7"]));
    assert!(is_cloexec(pidfd.fd()), "pidfd is inheritable");
    assert_eq!(child.reap(), 7);
    let (mut child, _, _pidfd) = spawn_with_pidfd(
        &k,
        SpawnRequest::new("/bin/sh", ["-c", "kill -TERM $$; sleep 5"]),
    );
    assert_eq!(child.reap(), -15);
    let request = SpawnRequest::new("/bin/cat", [] as [&str; 0])
        .stdin(Stdio::Pipe)
        .stdout(Stdio::Pipe)
        .stderr(Stdio::Pipe);
    let (mut child, [stdin, stdout, stderr], _pidfd) = spawn_with_pidfd(&k, request);
    for end in [&stdin, &stdout, &stderr] {
        let end = end.as_ref().expect("a pipe was asked for");
        assert!(is_cloexec(end.fd()), "pipe end {} is inheritable", end.fd());
    }
    drop(stdin);
    assert_eq!(child.reap(), 0);
}

// Goal: environment (cleared, removed, set, or the parent's unchanged), working directory and every kind of stream reach the child as asked, and a parent fd lent as a stream stays as it was.
#[test]
fn pidfd_spawn_passes_env_cwd_and_streams() {
    let _lock = lock();
    let k = OsKernel;
    let (lent_read, lent_write) = pipe(&k);
    let (input_read, mut input_write) = pipe(&k);
    k.write(input_write.fd(), b"from a lent fd\n")
        .expect("write");
    input_write.close().expect("close");
    let script = r#"echo "A=$A HOME=${HOME-unset} $(pwd)"; cat; echo err >&2; echo lent >&2"#;
    let request = SpawnRequest::new("/bin/sh", ["-c", script])
        .env_clear()
        .env("A", "1")
        .current_dir("/")
        .stdin(Stdio::Fd(input_read.fd()))
        .stdout(Stdio::Pipe)
        .stderr(Stdio::Fd(lent_write.fd()));
    let (mut child, [_, stdout, _], _pidfd) = spawn_with_pidfd(&k, request);
    let stdout = stdout.expect("stdout pipe");
    assert_eq!(
        String::from_utf8_lossy(&read_all(&k, stdout.fd())),
        "A=1 HOME=unset /\nfrom a lent fd\n"
    );
    assert_eq!(child.reap(), 0);
    assert!(is_cloexec(lent_write.fd()), "our lent fd changed");
    drop(lent_write);
    assert_eq!(read_all(&k, lent_read.fd()), b"err\nlent\n");

    // The parent's environment, less a removed variable; stdin and stdout /dev/null.
    let request = SpawnRequest::new(
        "/bin/sh",
        [
            "-c",
            r#"echo "${LOOPWATCH_NO_SUCH-unset} $HOME $(readlink /proc/$$/fd/0)" >&2; echo hidden"#,
        ],
    )
    .env_remove("LOOPWATCH_NO_SUCH")
    .stdin(Stdio::Null)
    .stdout(Stdio::Null)
    .stderr(Stdio::Pipe);
    let (mut child, [_, _, stderr], _pidfd) = spawn_with_pidfd(&k, request);
    let home = std::env::var("HOME").unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&read_all(&k, stderr.expect("stderr pipe").fd())),
        format!("unset {home} /dev/null\n")
    );
    assert_eq!(child.reap(), 0);

    // A request that changes nothing in the environment: the child reads the parent's
    // own, every variable of it, and finds a bare program name in the parent's PATH.
    let request = SpawnRequest::new("env", ["-0"]).stdout(Stdio::Pipe);
    let (mut child, [_, stdout, _], _pidfd) = spawn_with_pidfd(&k, request);
    let printed = read_all(&k, stdout.expect("stdout pipe").fd());
    assert_eq!(child.reap(), 0);
    let mut seen: Vec<&[u8]> = printed
        .split(|&b| b == 0)
        .filter(|l| !l.is_empty())
        .collect();
    let mut ours: Vec<Vec<u8>> = std::env::vars_os()
        .map(|(key, value)| [key.as_bytes(), b"=", value.as_bytes()].concat())
        .collect();
    seen.sort_unstable();
    ours.sort_unstable();
    assert_eq!(seen, ours.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

// Goal: a stream source that is itself fd 0, 1 or 2 is placed correctly: with the parent's fd 0 a pipe's write end lent as the child's stdout while its stdin is a new pipe, the data goes through both.
#[test]
fn pidfd_spawn_places_a_source_that_is_a_standard_fd() {
    isolated("pidfd_spawn_places_a_source_that_is_a_standard_fd", |k| {
        let (out_read, out_write) = pipe(k);
        // SAFETY: dup of fd 0 to keep it, then fd 0 replaced by the pipe's write end;
        // the test restores fd 0 below, in a process that runs this test alone.
        let saved = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
        assert!(saved >= 0, "dup fd 0: {}", last_errno());
        let saved = Owned(Some(Fd(saved)));
        // SAFETY: both are open descriptors.
        assert_eq!(unsafe { libc::dup2(out_write.fd().0, 0) }, 0);
        drop(out_write);
        let request = SpawnRequest::new("/bin/cat", [] as [&str; 0])
            .stdin(Stdio::Pipe)
            .stdout(Stdio::Fd(Fd(0)));
        let spawned = k.spawn(&request.pidfd(true));
        // SAFETY: puts the saved descriptor back on fd 0 (which closes the write end).
        assert_eq!(unsafe { libc::dup2(saved.fd().0, 0) }, 0);
        let spawned = spawned.expect("spawn cat");
        let _pidfd = Owned(spawned.pidfd);
        let (mut child, [stdin, _, _]) = Child::adopt(spawned);
        let mut stdin = stdin.expect("stdin pipe");
        k.write(stdin.fd(), b"through\n").expect("write");
        stdin.close().expect("close");
        assert_eq!(read_all(k, out_read.fd()), b"through\n");
        assert_eq!(child.reap(), 0);
    });
}

// Goal: a program without a slash is searched in the child's PATH as execvp would: a directory without it is skipped, a non-executable file is passed over for a later executable one, and EACCES is reported when only non-executable ones exist (ENOENT when none does).
#[test]
fn pidfd_spawn_searches_path_as_execvp() {
    let _lock = lock();
    let k = OsKernel;
    let (first, second) = (TempDir::new("path-first"), TempDir::new("path-second"));
    first.file("lw-prog", "#!/bin/sh\necho first\n", 0o644);
    second.file("lw-prog", "#!/bin/sh\necho second\n", 0o755);
    let path = format!(
        "/nonexistent-dir:{}:{}",
        first.0.display(),
        second.0.display()
    );
    let request = SpawnRequest::new("lw-prog", [] as [&str; 0])
        .env("PATH", &path)
        .stdout(Stdio::Pipe);
    let (mut child, [_, stdout, _], _pidfd) = spawn_with_pidfd(&k, request);
    assert_eq!(read_all(&k, stdout.expect("stdout pipe").fd()), b"second\n");
    assert_eq!(child.reap(), 0);
    // PATH without the executable one: only a file that cannot be run.
    let only_first = format!("/nonexistent-dir:{}", first.0.display());
    let request = SpawnRequest::new("lw-prog", [] as [&str; 0])
        .env("PATH", only_first)
        .pidfd(true);
    assert_eq!(k.spawn(&request).map(|s| s.pid), Err(Errno::EACCES));
    let request = SpawnRequest::new("lw-prog", [] as [&str; 0])
        .env("PATH", "/nonexistent-dir")
        .pidfd(true);
    assert_eq!(k.spawn(&request).map(|s| s.pid), Err(Errno::ENOENT));
}

// Goal: a program that cannot be started (missing, missing in PATH, not executable, a missing working directory, an argument with a NUL byte) gives its errno and leaves no child and no fd behind, through clone3 and through clone: the fd table is unchanged entry by entry.
#[test]
fn pidfd_spawn_failure_leaves_no_child_and_no_fd() {
    isolated("pidfd_spawn_failure_leaves_no_child_and_no_fd", |k| {
        let dir = TempDir::new("not-executable");
        let not_executable = dir.file("lw-data", "echo never\n", 0o644);
        let piped = |request: SpawnRequest| {
            request
                .stdin(Stdio::Pipe)
                .stdout(Stdio::Pipe)
                .stderr(Stdio::Null)
                .pidfd(true)
        };
        let none: [&str; 0] = [];
        let cases = [
            (
                piped(SpawnRequest::new("/nonexistent/lw-prog", none)),
                Errno::ENOENT,
            ),
            (
                piped(SpawnRequest::new("lw-prog-nowhere", none).env("PATH", "/nonexistent:/bin")),
                Errno::ENOENT,
            ),
            (
                piped(SpawnRequest::new(not_executable, none)),
                Errno::EACCES,
            ),
            (
                piped(SpawnRequest::new("/bin/true", none).current_dir("/nonexistent/lw-dir")),
                Errno::ENOENT,
            ),
            (
                piped(SpawnRequest::new("/bin/echo", ["a\0b"])),
                Errno::EINVAL,
            ),
        ];
        let before = open_fds();
        let through_both = [false, true].into_iter().flat_map(|clone_only| {
            cases
                .iter()
                .map(move |(request, errno)| (clone_only, request, *errno))
        });
        for (clone_only, request, errno) in through_both {
            super::spawn::CLONE_ONLY.store(clone_only, Ordering::Relaxed);
            match k.spawn(request) {
                Ok(spawned) => {
                    let _pidfd = Owned(spawned.pidfd);
                    drop(Child::adopt(spawned));
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

/// The `SigBlk`, `SigIgn` and `SigCgt` masks of a child started with `request` (with
/// a pidfd or through std), from its `/proc/<pid>/status` (cat reads its own and
/// changes none of them).
fn child_signal_masks(k: &OsKernel, request: SpawnRequest, pidfd: bool) -> BTreeMap<String, u64> {
    let request = SpawnRequest {
        program: "/bin/cat".into(),
        args: vec!["/proc/self/status".into()],
        stdout: Stdio::Pipe,
        pidfd,
        ..request
    };
    let spawned = k.spawn(&request).expect("spawn cat");
    let _pidfd = Owned(spawned.pidfd);
    assert_eq!(spawned.pidfd.is_some(), pidfd);
    let (mut child, [_, stdout, _]) = Child::adopt(spawned);
    let status = String::from_utf8(read_all(k, stdout.expect("stdout pipe").fd())).expect("utf-8");
    assert_eq!(child.reap(), 0);
    status
        .lines()
        .filter_map(|line| line.split_once(":\t"))
        .filter(|(key, _)| ["SigBlk", "SigIgn", "SigCgt"].contains(key))
        .map(|(key, mask)| {
            let mask = u64::from_str_radix(mask.trim(), 16).expect("hex mask");
            // Without the two signals the C library keeps for itself (32 and 33): its
            // posix_spawn, which std uses, ignores them in the child.
            (key.to_string(), mask & !(0b11 << 31))
        })
        .collect()
}

// Goal: the parent's handlers never reach the child (a caught signal is at its default there), an ignored signal and the calling thread's mask are inherited, SIGPIPE (which Rust's runtime ignores) is at its default, and restore_signals resets every signal and unblocks all: the same masks as a spawn through std.
#[test]
fn pidfd_spawn_resets_handlers_and_restores_signals() {
    isolated("pidfd_spawn_resets_handlers_and_restores_signals", |k| {
        for clone_only in [false, true] {
            super::spawn::CLONE_ONLY.store(clone_only, Ordering::Relaxed);
            handlers_reset_and_signals_restored(k);
        }
        #[cfg(target_arch = "x86_64")]
        assert!(
            super::spawn::clone3_clears_handlers(),
            "clone3 with CLONE_CLEAR_SIGHAND was refused: this machine's Linux is \
             expected to have it (5.5), so the kernel's reset of handlers is untested"
        );
    });
}

// Goal: a child started through clone3 finds the parent's caught signal at its default action from its first instruction (CLONE_CLEAR_SIGHAND), and its ignored signal still ignored, while the parent keeps both.
#[cfg(target_arch = "x86_64")]
#[test]
fn clone3_children_start_without_the_parents_handlers() {
    isolated("clone3_children_start_without_the_parents_handlers", |_| {
        let mut caught = super::signal::empty_action();
        caught.sa_sigaction = foreign_handler as *const () as libc::sighandler_t;
        install_sigaction(Signal::SIGUSR2, &caught);
        let mut ignore = super::signal::empty_action();
        ignore.sa_sigaction = libc::SIG_IGN;
        install_sigaction(Signal::SIGUSR1, &ignore);
        assert_eq!(
            super::spawn::handler_in_a_child(Signal::SIGUSR2.0),
            Ok(libc::SIG_DFL)
        );
        assert_eq!(
            super::spawn::handler_in_a_child(Signal::SIGUSR1.0),
            Ok(libc::SIG_IGN)
        );
        assert_eq!(
            sigaction_of(Signal::SIGUSR2).sa_sigaction,
            caught.sa_sigaction
        );
    });
}

/// The body of `pidfd_spawn_resets_handlers_and_restores_signals`, run through
/// `clone3` (the kernel resets the child's handlers) and through `clone` (the child
/// does).
fn handlers_reset_and_signals_restored(k: &OsKernel) {
    let bit = |signal: Signal| 1u64 << (signal.0 - 1);
    let mut ignore = super::signal::empty_action();
    ignore.sa_sigaction = libc::SIG_IGN;
    install_sigaction(Signal::SIGUSR1, &ignore);
    let mut caught = super::signal::empty_action();
    caught.sa_sigaction = foreign_handler as *const () as libc::sighandler_t;
    install_sigaction(Signal::SIGUSR2, &caught);
    assert_eq!(k.block_signal(Signal::SIGALRM), Ok(false));

    let masks = child_signal_masks(k, SpawnRequest::default(), true);
    assert_eq!(
        masks["SigIgn"] & bit(Signal::SIGUSR1),
        bit(Signal::SIGUSR1),
        "{masks:?}"
    );
    assert_eq!(masks["SigIgn"] & bit(Signal::SIGPIPE), 0, "{masks:?}");
    assert_eq!(masks["SigCgt"], 0, "a handler reached the child: {masks:?}");
    assert_eq!(masks["SigBlk"], bit(Signal::SIGALRM), "{masks:?}");
    assert_eq!(masks, child_signal_masks(k, SpawnRequest::default(), false));

    let restore = SpawnRequest::default().restore_signals(true);
    let masks = child_signal_masks(k, restore.clone(), true);
    assert_eq!(masks["SigIgn"] & bit(Signal::SIGUSR1), 0, "{masks:?}");
    assert_eq!(masks["SigCgt"], 0, "{masks:?}");
    assert_eq!(masks["SigBlk"], 0, "{masks:?}");
    assert_eq!(masks, child_signal_masks(k, restore, false));
    // The parent's own state is as it was.
    assert_eq!(k.unblock_signal(Signal::SIGALRM), Ok(true));
    assert_eq!(sigaction_of(Signal::SIGUSR1).sa_sigaction, libc::SIG_IGN);
    assert_eq!(
        sigaction_of(Signal::SIGUSR2).sa_sigaction,
        foreign_handler as *const () as libc::sighandler_t
    );
}

// Goal: the spawn-time pidfd polls readable once the child exits, waitid(P_PIDFD) reports that very child, and the pid is still ours to reap.
#[test]
fn pidfd_spawn_pidfd_polls_and_waits() {
    let _lock = lock();
    let k = OsKernel;
    let (mut child, _, pidfd) = spawn_with_pidfd(
        &k,
        SpawnRequest::new("/bin/sh", ["-c", "sleep 0.05; exit 5"]),
    );
    let poller = k.new_poller().expect("new_poller");
    poller
        .register(pidfd.fd(), Token(7), Interest::READABLE)
        .expect("register the pidfd");
    assert_eq!(poll_now(&poller), [], "readable before the child exited");
    let mut events = Vec::new();
    while events.is_empty() {
        match poller.poll(&mut events, Some(Duration::from_secs(10))) {
            Ok(()) | Err(Errno::EINTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
    }
    assert_eq!(
        events
            .iter()
            .map(|e| (e.token, e.readable))
            .collect::<Vec<_>>(),
        [(Token(7), true)]
    );
    let peek = k.wait_peek(WaitTarget::Pidfd(pidfd.fd()), WaitMode::Block);
    assert!(
        matches!(peek, Ok(WaitStatus::Terminated(pid, s)) if pid == child.pid && s.returncode() == 5),
        "{peek:?}"
    );
    poller.deregister(pidfd.fd()).expect("deregister");
    assert_eq!(child.reap(), 5);
}

// Goal: four threads spawning with pidfds at once each get their own children, outputs and exit codes, and every pidfd names its own child.
#[test]
fn pidfd_spawn_from_four_threads_at_once() {
    let _lock = lock();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            scope.spawn(move || {
                let k = OsKernel;
                for round in 0..10 {
                    let code = (thread * 10 + round) % 100;
                    let script = format!("echo {thread}-{round}; exit {code}");
                    let request =
                        SpawnRequest::new("/bin/sh", ["-c", script.as_str()]).stdout(Stdio::Pipe);
                    let (mut child, [_, stdout, _], pidfd) = spawn_with_pidfd(&k, request);
                    let out = read_all(&k, stdout.expect("stdout pipe").fd());
                    assert_eq!(out, format!("{thread}-{round}\n").as_bytes());
                    let peek = k.wait_peek(WaitTarget::Pidfd(pidfd.fd()), WaitMode::Block);
                    assert!(
                        matches!(peek, Ok(WaitStatus::Terminated(pid, _)) if pid == child.pid),
                        "{peek:?}"
                    );
                    assert_eq!(child.reap(), code);
                }
            });
        }
    });
}
