//! Child processes: spawn through `std::process::Command` (with a pidfd: through
//! `clone` with `CLONE_PIDFD`, in `spawn`); waits and signals through
//! libc, since nix's versions would lose what the seam reports (see each use).

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::process::CommandExt;

use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

use super::signal::empty_action;
use super::{OsKernel, check, errno_of, last_errno, with_fd};
use crate::kernel::{
    Errno, ExitStatus, Fd, JobStatus, Pid, Processes, Signal, SpawnRequest, Spawned, Stdio,
    WaitMode, WaitStatus, WaitTarget,
};

/// `waitid`'s id type for a pidfd (Linux's uapi `P_PIDFD`, since 5.4), which the
/// libc crate does not name.
const P_PIDFD: libc::idtype_t = 3;

fn wait_flags(mode: WaitMode) -> libc::c_int {
    match mode {
        WaitMode::NoHang => libc::WNOHANG,
        WaitMode::Block => 0,
    }
}

/// libc, not nix: nix's `waitpid` decodes the status into its own `WaitStatus`, which
/// cannot hold a status it does not understand (spec R-1 passes those through raw) nor
/// a death by a realtime signal.
fn waitpid(pid: libc::pid_t, mode: WaitMode) -> Result<WaitStatus, Errno> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid, writable int.
    let rc = unsafe { libc::waitpid(pid, &mut status, wait_flags(mode)) };
    match rc {
        0 => Ok(WaitStatus::StillAlive),
        rc if rc > 0 => Ok(WaitStatus::Terminated(Pid(rc), ExitStatus(status))),
        _ => Err(last_errno()),
    }
}

/// `waitid(idtype, id, flags)`, its siginfo read back as a [`WaitStatus`]: for flags
/// that ask only for exits.
fn waitid(idtype: libc::idtype_t, id: libc::id_t, flags: libc::c_int) -> Result<WaitStatus, Errno> {
    Ok(match waitid_job(idtype, id, flags)? {
        JobStatus::Terminated(pid, status) => WaitStatus::Terminated(pid, status),
        // Without WSTOPPED or WCONTINUED in `flags` the kernel reports neither.
        JobStatus::StillAlive | JobStatus::Stopped(..) | JobStatus::Continued(_) => {
            WaitStatus::StillAlive
        }
    })
}

/// `waitid(idtype, id, flags)`, its siginfo read back as a [`JobStatus`].
///
/// libc, not nix: nix's `waitid` fails with EINVAL for a child killed by a realtime
/// signal, which its `Signal` cannot name, where this reports the number.
fn waitid_job(
    idtype: libc::idtype_t,
    id: libc::id_t,
    flags: libc::c_int,
) -> Result<JobStatus, Errno> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value to be filled in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t.
    check(unsafe { libc::waitid(idtype, id, &mut info, flags) })?;
    // SAFETY: waitid filled in a SIGCHLD siginfo (or left it zeroed for WNOHANG).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(JobStatus::StillAlive);
    }
    let pid = Pid(pid);
    Ok(match info.si_code {
        libc::CLD_EXITED => JobStatus::Terminated(pid, ExitStatus::from_exit_code(status as u8)),
        libc::CLD_KILLED => {
            JobStatus::Terminated(pid, ExitStatus::from_signal(Signal(status), false))
        }
        libc::CLD_DUMPED => {
            JobStatus::Terminated(pid, ExitStatus::from_signal(Signal(status), true))
        }
        libc::CLD_STOPPED | libc::CLD_TRAPPED => JobStatus::Stopped(pid, Signal(status)),
        libc::CLD_CONTINUED => JobStatus::Continued(pid),
        _ => JobStatus::Terminated(pid, ExitStatus(status)),
    })
}

/// `waitid`'s id type and id for a job-control wait on one child.
fn job_target(target: WaitTarget) -> Result<(libc::idtype_t, libc::id_t), Errno> {
    match target {
        WaitTarget::Pid(pid) if pid.0 > 0 => Ok((libc::P_PID, pid.0 as libc::id_t)),
        WaitTarget::Pidfd(fd) if fd.0 >= 0 => Ok((P_PIDFD, fd.0 as libc::id_t)),
        WaitTarget::Pidfd(_) => Err(Errno::EBADF),
        WaitTarget::Pid(_) | WaitTarget::Any => Err(Errno::EINVAL),
    }
}

/// A duplicate of `fd` (close-on-exec) for std to place on a child's stream.
fn dup_for_child(fd: Fd) -> Result<std::process::Stdio, Errno> {
    let copy = with_fd(fd, |fd| fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(0)))?;
    // SAFETY: `copy` is a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(copy) };
    Ok(std::process::Stdio::from(owned))
}

fn std_stdio(stdio: Stdio) -> Result<std::process::Stdio, Errno> {
    Ok(match stdio {
        Stdio::Inherit => std::process::Stdio::inherit(),
        Stdio::Null => std::process::Stdio::null(),
        Stdio::Pipe => std::process::Stdio::piped(),
        Stdio::Fd(fd) => dup_for_child(fd)?,
    })
}

/// In the child, between `fork` and `exec`: every signal back to its default action
/// and none blocked ([`SpawnRequest::restore_signals`]). Only async-signal-safe calls
/// on this thread's stack: the child of a threaded parent may not allocate or lock.
pub(super) fn restore_default_signals() -> std::io::Result<()> {
    // libc, not nix: this walks every number up to 64, and nix's `sigaction` takes only
    // the classic signals its `Signal` names.
    let mut action = empty_action();
    action.sa_sigaction = libc::SIG_DFL;
    for signum in 1..=Signal::MAX {
        if signum == libc::SIGKILL || signum == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `action` is valid. The C library refuses the numbers it reserves for
        // itself (EINVAL), which then keep what they have: nothing to undo there.
        unsafe { libc::sigaction(signum, &action, std::ptr::null_mut()) };
    }
    // An empty set built on the stack and one sigprocmask: async-signal-safe, and the
    // child has this one thread.
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}

impl Processes for OsKernel {
    fn spawn(&self, request: &SpawnRequest) -> Result<Spawned, Errno> {
        if request.pidfd {
            return super::spawn::spawn_with_pidfd(request);
        }
        let mut command = std::process::Command::new(&request.program);
        command.args(&request.args);
        if request.env_clear {
            command.env_clear();
        }
        for key in &request.env_remove {
            command.env_remove(key);
        }
        // After the removals: a variable in both lists is set.
        command.envs(request.env.iter().map(|(k, v)| (k, v)));
        if let Some(cwd) = &request.cwd {
            command.current_dir(cwd);
        }
        command
            .stdin(std_stdio(request.stdin)?)
            .stdout(std_stdio(request.stdout)?)
            .stderr(std_stdio(request.stderr)?);
        if request.restore_signals {
            // std's hook, unsafe by nature (it runs in the forked child); nix offers no
            // safe way to run code between fork and exec.
            // SAFETY: the closure runs in the forked child before exec and makes only
            // async-signal-safe calls (see restore_default_signals).
            unsafe { command.pre_exec(restore_default_signals) };
        }
        // std reports an exec failure through a close-on-exec pipe and reaps the failed
        // child itself, so an error here leaves neither a zombie nor an open fd.
        #[allow(clippy::disallowed_methods, reason = "OsKernel is the seam")]
        let mut child = command.spawn().map_err(|e| errno_of(&e))?;
        // Dropping a std Child neither waits nor kills: the pid stays ours to reap.
        Ok(Spawned {
            pid: Pid(child.id() as i32),
            stdin: child.stdin.take().map(|s| Fd(s.into_raw_fd())),
            stdout: child.stdout.take().map(|s| Fd(s.into_raw_fd())),
            stderr: child.stderr.take().map(|s| Fd(s.into_raw_fd())),
            pidfd: None,
        })
    }

    fn wait_pid(&self, pid: Pid, mode: WaitMode) -> Result<WaitStatus, Errno> {
        // 0 and negative pids mean process groups and "any child" to waitpid; they are
        // not what this method is for.
        if pid.0 <= 0 {
            return Err(Errno::EINVAL);
        }
        waitpid(pid.0, mode)
    }

    fn wait_any(&self, mode: WaitMode) -> Result<WaitStatus, Errno> {
        waitpid(-1, mode)
    }

    fn wait_peek(&self, target: WaitTarget, mode: WaitMode) -> Result<WaitStatus, Errno> {
        let (idtype, id) = match target {
            WaitTarget::Pid(pid) if pid.0 <= 0 => return Err(Errno::EINVAL),
            WaitTarget::Pid(pid) => (libc::P_PID, pid.0 as libc::id_t),
            WaitTarget::Any => (libc::P_ALL, 0),
            WaitTarget::Pidfd(fd) => (P_PIDFD, fd.0 as libc::id_t),
        };
        waitid(idtype, id, libc::WEXITED | libc::WNOWAIT | wait_flags(mode))
    }

    fn wait_pidfd(&self, pidfd: Fd, mode: WaitMode) -> Result<WaitStatus, Errno> {
        if pidfd.0 < 0 {
            return Err(Errno::EBADF);
        }
        waitid(
            P_PIDFD,
            pidfd.0 as libc::id_t,
            libc::WEXITED | wait_flags(mode),
        )
    }

    fn wait_job_peek(&self, target: WaitTarget, mode: WaitMode) -> Result<JobStatus, Errno> {
        let (idtype, id) = job_target(target)?;
        let flags = libc::WEXITED | libc::WSTOPPED | libc::WCONTINUED | libc::WNOWAIT;
        waitid_job(idtype, id, flags | wait_flags(mode))
    }

    fn take_job(&self, target: WaitTarget) -> Result<JobStatus, Errno> {
        let (idtype, id) = job_target(target)?;
        waitid_job(
            idtype,
            id,
            libc::WSTOPPED | libc::WCONTINUED | libc::WNOHANG,
        )
    }

    fn kill(&self, pid: Pid, signal: Option<Signal>) -> Result<(), Errno> {
        // kill(0) and kill(-n) signal whole process groups, kill(-1) every process the
        // caller may signal: never what a watcher means.
        if pid.0 <= 0 {
            return Err(Errno::EINVAL);
        }
        let sig = signal.map_or(0, |s| s.0);
        // libc, not nix: nix's `kill` takes only the classic signals its `Signal` names,
        // and the seam also sends realtime ones.
        // SAFETY: kill takes two numbers.
        check(unsafe { libc::kill(pid.0, sig) }).map(drop)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn pidfd_open(&self, pid: Pid) -> Result<Fd, Errno> {
        if pid.0 <= 0 {
            return Err(Errno::EINVAL);
        }
        // libc, not nix: nix has no pidfd_open.
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.0, 0) };
        if rc < 0 {
            Err(last_errno())
        } else {
            Ok(Fd(rc as i32))
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn pidfd_open(&self, _pid: Pid) -> Result<Fd, Errno> {
        Err(Errno::ENOSYS)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn pidfd_send_signal(&self, pidfd: Fd, signal: Signal) -> Result<(), Errno> {
        // libc, not nix: nix has no pidfd_send_signal.
        // SAFETY: a NULL siginfo pointer is allowed and means "as kill() would send".
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.0,
                signal.0,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 { Err(last_errno()) } else { Ok(()) }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn pidfd_send_signal(&self, _pidfd: Fd, _signal: Signal) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn getpid(&self) -> Pid {
        Pid(cached_pid())
    }
}

/// This process's id once asked for, 0 before; a forked child forgets it.
static PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The child half of the `pthread_atfork` handler: the forked child is another process.
/// Only an atomic store, so it is async-signal-safe, as a handler run by `fork` must be.
extern "C" fn forget_pid() {
    PID.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// `getpid()` without a system call after the first: the running-loop check asks for it
/// on every `get_running_loop`. The cache is emptied in a child made by `fork()` (an
/// atfork handler, registered before the first value is cached). A child made by a raw
/// `clone` system call, which runs no atfork handlers, would see its parent's pid; such
/// a child can call nothing of loopwatch's anyway, only async-signal-safe code.
pub(crate) fn cached_pid() -> i32 {
    let pid = PID.load(std::sync::atomic::Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    static ATFORK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let registered = *ATFORK.get_or_init(|| {
        // SAFETY: `forget_pid` only stores to an atomic, which is allowed in a forked
        // child of a multithreaded process.
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) == 0 }
    });
    let pid = nix::unistd::getpid().as_raw();
    // Without the handler (ENOMEM), a forked child could not forget it: ask each time.
    if registered {
        PID.store(pid, std::sync::atomic::Ordering::Relaxed);
    }
    pid
}
