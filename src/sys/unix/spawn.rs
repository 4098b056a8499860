//! Spawning with a pidfd made in the same step as the child
//! ([`SpawnRequest::pidfd`]): Linux's `clone3` with `CLONE_PIDFD` and fork semantics,
//! then `execve`.
//!
//! Everything the child needs is prepared in the parent before the clone: the program,
//! arguments and environment as C strings, the paths to try for a program without a
//! slash (searched in the child's `PATH` as `execvp` would), the working directory, and
//! the descriptors to place on its standard streams (pipes and `/dev/null` opened
//! close-on-exec, each numbered above 2 so that placing one never overwrites another).
//! Between the clone and `exec` the child only makes async-signal-safe system calls on
//! that prepared data: the child of a threaded parent may not allocate or lock.
//!
//! The parent blocks every signal around the clone, so that no handler of the parent
//! runs in the child: the child first sets every caught signal back to its default
//! action (as `exec` would) and SIGPIPE too (as std's spawn does: Rust's runtime
//! ignores it for itself), then restores the mask (or, with
//! [`SpawnRequest::restore_signals`], resets every signal and unblocks all). The
//! two signals the C library keeps for itself cannot be changed and stay as they are.
//!
//! An `exec` failure comes back through a close-on-exec pipe as the child's `errno`;
//! the parent then reaps the child and closes every descriptor it opened, so the
//! error leaves no zombie and no fd, as std's spawn does. A kernel without `clone3`
//! or `CLONE_PIDFD` (`ENOSYS`), a seccomp filter that refuses it (`EPERM`) or an older
//! `clone3` ABI (`EINVAL`) fails the clone itself, before any child exists.

/// `clone3` and `CLONE_PIDFD` are Linux's: elsewhere the caller falls back.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn spawn_with_pidfd(
    _request: &crate::kernel::SpawnRequest,
) -> Result<crate::kernel::Spawned, crate::kernel::Errno> {
    Err(crate::kernel::Errno::ENOSYS)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) use linux::spawn_with_pidfd;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    use std::ffi::{CString, OsStr, OsString};
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;

    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::sys::stat::Mode;

    use super::super::process::restore_default_signals;
    use super::super::signal::empty_action;
    use super::super::{from_nix, last_errno, with_fd};
    use crate::kernel::{Errno, Fd, Pid, Signal, SpawnRequest, Spawned, Stdio};

    /// `execvp`'s search path when the environment has no `PATH` (glibc's
    /// `_PATH_DEFPATH`).
    const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

    /// The exit status of a child whose `exec` failed (the parent reaps it and never
    /// reports it).
    const EXEC_FAILED: libc::c_int = 127;

    /// The first 64 bytes of the kernel's `struct clone_args` (`CLONE_ARGS_SIZE_VER0`,
    /// Linux 5.3): all that a spawn with a pidfd needs. The kernel reads the size it
    /// is given, so later fields are not needed.
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
    }

    /// What the child needs, prepared by the parent. The pointer arrays point into the
    /// strings beside them and end with a null pointer.
    struct Prepared {
        /// Paths to `execve` in turn (one when the program has a slash).
        candidates: Vec<CString>,
        _argv: Vec<CString>,
        argv_ptrs: Vec<*const libc::c_char>,
        _envp: Vec<CString>,
        envp_ptrs: Vec<*const libc::c_char>,
        cwd: Option<CString>,
        restore_signals: bool,
        /// The descriptor to place on stdin, stdout and stderr (`None`: inherited).
        /// Each is numbered above 2 and closed in the parent after the clone.
        child_ends: [Option<OwnedFd>; 3],
        /// The parent's ends of the pipes asked for.
        parent_ends: [Option<OwnedFd>; 3],
    }

    fn c_string(bytes: &[u8]) -> Result<CString, Errno> {
        // A NUL byte cannot be passed to the kernel; std's spawn refuses it as
        // invalid input too.
        CString::new(bytes).map_err(|_| Errno::EINVAL)
    }

    /// The pointers of `strings`, then a null pointer.
    fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    }

    /// The child's environment: the parent's (unless cleared) without the removed
    /// variables, then the request's, which win over both.
    fn child_env(request: &SpawnRequest) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = if request.env_clear {
            Vec::new()
        } else {
            std::env::vars_os().collect()
        };
        env.retain(|(key, _)| !request.env_remove.contains(key));
        for (key, value) in &request.env {
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
        env
    }

    /// The paths `execvp` would try for `program`: the program itself if it has a
    /// slash, else each directory of the child's `PATH` (an empty entry being the
    /// working directory) joined with it.
    fn candidates(program: &OsStr, env: &[(OsString, OsString)]) -> Result<Vec<CString>, Errno> {
        let name = program.as_bytes();
        if name.contains(&b'/') {
            return Ok(vec![c_string(name)?]);
        }
        if name.is_empty() {
            return Err(Errno::ENOENT);
        }
        let path = env
            .iter()
            .find(|(key, _)| key == "PATH")
            .map_or(DEFAULT_PATH, |(_, value)| value.as_bytes());
        path.split(|&b| b == b':')
            .map(|dir| {
                let mut full = dir.to_vec();
                if !dir.is_empty() {
                    full.push(b'/');
                }
                full.extend_from_slice(name);
                c_string(&full)
            })
            .collect()
    }

    /// Takes ownership of a fresh descriptor.
    fn owned(fd: libc::c_int) -> OwnedFd {
        // SAFETY: every caller passes a descriptor it has just been given by the OS and
        // that nothing else owns.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    /// A close-on-exec duplicate of `fd` numbered 3 or above.
    fn dup_above_stdio(fd: Fd) -> Result<OwnedFd, Errno> {
        with_fd(fd, |fd| fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(3))).map(owned)
    }

    /// `fd` itself if it is numbered 3 or above, else a duplicate that is (a parent
    /// that closed its own stdin gets 0 for its next pipe): in the child, placing one
    /// stream must not overwrite the source of another.
    fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, Errno> {
        if fd.as_raw_fd() > 2 {
            Ok(fd)
        } else {
            dup_above_stdio(Fd(fd.as_raw_fd()))
        }
    }

    /// A close-on-exec pipe, both ends numbered 3 or above.
    fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(from_nix)?;
        Ok((above_stdio(read)?, above_stdio(write)?))
    }

    fn prepare(request: &SpawnRequest) -> Result<Prepared, Errno> {
        let env = child_env(request);
        let candidates = candidates(&request.program, &env)?;
        let argv = std::iter::once(&request.program)
            .chain(&request.args)
            .map(|arg| c_string(arg.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = env
            .iter()
            .map(|(key, value)| {
                let mut entry = key.as_bytes().to_vec();
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                c_string(&entry)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cwd = match &request.cwd {
            Some(cwd) => Some(c_string(cwd.as_os_str().as_bytes())?),
            None => None,
        };
        let mut child_ends = [None, None, None];
        let mut parent_ends = [None, None, None];
        for (index, stdio) in [request.stdin, request.stdout, request.stderr]
            .into_iter()
            .enumerate()
        {
            child_ends[index] = match stdio {
                Stdio::Inherit => None,
                Stdio::Null => {
                    let flags = if index == 0 {
                        OFlag::O_RDONLY
                    } else {
                        OFlag::O_WRONLY
                    };
                    let fd = nix::fcntl::open("/dev/null", flags | OFlag::O_CLOEXEC, Mode::empty())
                        .map_err(from_nix)?;
                    Some(above_stdio(fd)?)
                }
                Stdio::Pipe => {
                    let (read, write) = pipe()?;
                    let (child, parent) = if index == 0 {
                        (read, write)
                    } else {
                        (write, read)
                    };
                    parent_ends[index] = Some(parent);
                    Some(child)
                }
                Stdio::Fd(fd) => Some(dup_above_stdio(fd)?),
            };
        }
        let (argv_ptrs, envp_ptrs) = (pointers(&argv), pointers(&envp));
        Ok(Prepared {
            candidates,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            cwd,
            restore_signals: request.restore_signals,
            child_ends,
            parent_ends,
        })
    }

    /// An empty signal set, to be filled in.
    fn sigset() -> libc::sigset_t {
        // SAFETY: sigset_t is plain data; all-zero is a valid (empty) value.
        unsafe { std::mem::zeroed() }
    }

    /// In the child: writes `errno` to the error pipe and exits without running any
    /// of the parent's code (no atexit handlers, no destructors, no stdio flush).
    fn fail(error_pipe: libc::c_int, errno: libc::c_int) -> ! {
        let bytes = errno.to_ne_bytes();
        loop {
            // SAFETY: `bytes` is valid for its length; write is async-signal-safe.
            let rc = unsafe { libc::write(error_pipe, bytes.as_ptr().cast(), bytes.len()) };
            if rc >= 0 || last_errno() != Errno::EINTR {
                break;
            }
        }
        // SAFETY: _exit ends the process at once; it is async-signal-safe.
        unsafe { libc::_exit(EXEC_FAILED) }
    }

    /// The child, between `clone3` and `exec`: only async-signal-safe calls on data
    /// the parent prepared. Never returns.
    fn child(prepared: &Prepared, error_pipe: libc::c_int, parent_mask: &libc::sigset_t) -> ! {
        for (target, source) in prepared.child_ends.iter().enumerate() {
            let Some(source) = source else { continue };
            // Sources are numbered above 2, so none is overwritten before it is
            // placed, and dup2 gives the copy no close-on-exec flag.
            loop {
                // SAFETY: dup2 on two descriptor numbers; async-signal-safe.
                let rc = unsafe { libc::dup2(source.as_raw_fd(), target as libc::c_int) };
                if rc >= 0 {
                    break;
                }
                if last_errno() != Errno::EINTR {
                    fail(error_pipe, last_errno().0);
                }
            }
        }
        if let Some(cwd) = &prepared.cwd {
            // SAFETY: `cwd` is a NUL-terminated string; chdir is async-signal-safe.
            if unsafe { libc::chdir(cwd.as_ptr()) } < 0 {
                fail(error_pipe, last_errno().0);
            }
        }
        if prepared.restore_signals {
            if let Err(error) = restore_default_signals() {
                fail(error_pipe, error.raw_os_error().unwrap_or(libc::EINVAL));
            }
        } else {
            // Every signal is still blocked: a caught one goes back to its default
            // action (as exec would do), an ignored one stays ignored, before the
            // parent's mask comes back.
            for signum in 1..=Signal::MAX {
                if signum == libc::SIGKILL || signum == libc::SIGSTOP {
                    continue;
                }
                let mut current = empty_action();
                // SAFETY: a query into a valid sigaction; numbers the C library
                // reserves answer EINVAL and are left alone.
                let queried = unsafe { libc::sigaction(signum, std::ptr::null(), &mut current) };
                let handler = current.sa_sigaction;
                // SIGPIPE too, as std's spawn does: Rust's runtime ignores it in the
                // parent, not on behalf of the program started.
                let reset = handler != libc::SIG_IGN || signum == libc::SIGPIPE;
                if queried == 0 && handler != libc::SIG_DFL && reset {
                    let mut default = empty_action();
                    default.sa_sigaction = libc::SIG_DFL;
                    // SAFETY: `default` is a valid action.
                    unsafe { libc::sigaction(signum, &default, std::ptr::null_mut()) };
                }
            }
            // SAFETY: `parent_mask` is the valid set the parent had before the clone.
            let rc = unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, parent_mask, std::ptr::null_mut())
            };
            if rc != 0 {
                fail(error_pipe, rc);
            }
        }
        // As execvp: an error that another directory may not have (ENOENT and kin)
        // goes on to the next one; EACCES is remembered and reported if no directory
        // has the program; any other error ends the search.
        let mut eacces = false;
        let mut last = libc::ENOENT;
        for path in &prepared.candidates {
            // SAFETY: the path is NUL-terminated and both arrays end with a null
            // pointer, all prepared by the parent and alive in this copy of its memory.
            unsafe {
                libc::execve(
                    path.as_ptr(),
                    prepared.argv_ptrs.as_ptr(),
                    prepared.envp_ptrs.as_ptr(),
                )
            };
            last = last_errno().0;
            match last {
                libc::EACCES => eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => fail(error_pipe, last),
            }
        }
        fail(error_pipe, if eacces { libc::EACCES } else { last })
    }

    /// Reaps a child whose `exec` failed: through its pidfd (which cannot name
    /// another process), or by pid where `waitid` lacks `P_PIDFD` (Linux 5.3).
    fn reap_failed(pid: Pid, pidfd: &OwnedFd) {
        /// `waitid`'s id type for a pidfd (Linux's uapi `P_PIDFD`).
        const P_PIDFD: libc::idtype_t = 3;
        loop {
            // SAFETY: siginfo_t is plain data; all-zero is a valid value to fill in.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is a valid, writable siginfo_t.
            let rc = unsafe {
                libc::waitid(
                    P_PIDFD,
                    pidfd.as_raw_fd() as libc::id_t,
                    &mut info,
                    libc::WEXITED,
                )
            };
            match (rc, last_errno()) {
                (0, _) => return,
                (_, Errno::EINTR) => continue,
                (_, Errno::EINVAL) => break,
                // ECHILD: reaped by other code already.
                _ => return,
            }
        }
        loop {
            let mut status = 0;
            // SAFETY: `status` is a valid, writable int.
            let rc = unsafe { libc::waitpid(pid.0, &mut status, 0) };
            if rc >= 0 || last_errno() != Errno::EINTR {
                return;
            }
        }
    }

    /// Reads the child's `errno` from the error pipe: `Ok(None)` at end of file (the
    /// `exec` succeeded and closed the pipe), `Err` if the pipe itself cannot be read.
    fn exec_error(error_pipe: &OwnedFd) -> Result<Option<Errno>, Errno> {
        let mut bytes = [0u8; 4];
        let mut got = 0;
        while got < bytes.len() {
            // SAFETY: the buffer is valid for the remaining length.
            let rc = unsafe {
                libc::read(
                    error_pipe.as_raw_fd(),
                    bytes[got..].as_mut_ptr().cast(),
                    bytes.len() - got,
                )
            };
            match rc {
                0 => break,
                rc if rc > 0 => got += rc as usize,
                _ if last_errno() == Errno::EINTR => {}
                _ => return Err(last_errno()),
            }
        }
        Ok(match got {
            0 => None,
            4 => Some(Errno(i32::from_ne_bytes(bytes))),
            // The child writes its four bytes at once (below PIPE_BUF: atomically);
            // fewer means it died while writing them.
            _ => Some(Errno::EIO),
        })
    }

    /// [`SpawnRequest::pidfd`]'s spawn: see the module documentation.
    pub(in super::super) fn spawn_with_pidfd(request: &SpawnRequest) -> Result<Spawned, Errno> {
        let mut prepared = prepare(request)?;
        let (error_read, error_write) = pipe()?;
        let mut pidfd: libc::c_int = -1;
        let args = CloneArgs {
            flags: libc::CLONE_PIDFD as u64,
            pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        let (mut all, mut parent_mask) = (sigset(), sigset());
        // SAFETY: `all` is a valid set to fill.
        unsafe { libc::sigfillset(&mut all) };
        // SAFETY: both sets are valid. Blocking every signal keeps the parent's
        // handlers from running in the child before it resets them.
        let blocked = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut parent_mask) };
        if blocked != 0 {
            return Err(Errno(blocked));
        }
        // libc, not nix: nix has no clone3. Fork semantics: no CLONE_VM, no stack of
        // its own (the child runs on its copy of this one), SIGCHLD at its exit.
        // SAFETY: `args` is a valid clone_args of the size given; the kernel writes the
        // pidfd into `pidfd`. In the child (rc 0) only `child` runs, which never returns.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                std::ptr::addr_of!(args),
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if rc == 0 {
            child(&prepared, error_write.as_raw_fd(), &parent_mask);
        }
        let clone_errno = last_errno();
        // SAFETY: `parent_mask` is the valid set saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &parent_mask, std::ptr::null_mut()) };
        if rc < 0 {
            // No child: the guards close every descriptor opened for it.
            return Err(clone_errno);
        }
        let pid = Pid(rc as i32);
        let pidfd = owned(pidfd);
        drop(error_write);
        prepared.child_ends = [None, None, None];
        let failed = match exec_error(&error_read) {
            Ok(None) => None,
            Ok(Some(errno)) => Some(errno),
            Err(errno) => {
                // Whether the exec worked is unknown: the child must not outlive the
                // error, nor stay a zombie.
                // SAFETY: a pidfd this function owns, a signal, no siginfo, no flags.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        pidfd.as_raw_fd(),
                        libc::SIGKILL,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
                Some(errno)
            }
        };
        if let Some(errno) = failed {
            reap_failed(pid, &pidfd);
            // The pidfd, the error pipe and the parent's pipe ends close on return.
            return Err(errno);
        }
        let [stdin, stdout, stderr] = prepared
            .parent_ends
            .map(|end| end.map(|fd| Fd(fd.into_raw_fd())));
        Ok(Spawned {
            pid,
            stdin,
            stdout,
            stderr,
            pidfd: Some(Fd(pidfd.into_raw_fd())),
        })
    }

    #[cfg(test)]
    mod tests {
        //! The preparation in the parent; the spawn itself is tested in `../tests.rs`.

        use super::*;

        fn paths(program: &str, path: Option<&str>) -> Result<Vec<String>, Errno> {
            let env: Vec<(OsString, OsString)> = path
                .map(|p| vec![("PATH".into(), p.into())])
                .unwrap_or_default();
            candidates(program.as_ref(), &env)
                .map(|c| c.into_iter().map(|s| s.into_string().unwrap()).collect())
        }

        // Goal: the candidates are execvp's: the program itself with a slash, each PATH directory (an empty entry is the working directory) without one, the default path when PATH is unset, ENOENT for an empty name and EINVAL for a NUL byte.
        #[test]
        fn candidates_follow_execvp() {
            assert_eq!(paths("./x", Some("/a")), Ok(vec!["./x".to_string()]));
            assert_eq!(
                paths("x", Some("/a::/b/")),
                Ok(vec!["/a/x".into(), "x".into(), "/b//x".into()])
            );
            assert_eq!(
                paths("x", None),
                Ok(vec!["/bin/x".into(), "/usr/bin/x".into()])
            );
            assert_eq!(paths("", Some("/a")), Err(Errno::ENOENT));
            assert_eq!(paths("x\0y", Some("/a")), Err(Errno::EINVAL));
        }

        // Goal: the child's environment is the parent's without the removed variables, plus the request's, which win; env_clear starts from nothing.
        #[test]
        fn child_env_applies_clear_remove_and_set() {
            let request = SpawnRequest::new("x", [] as [&str; 0])
                .env_clear()
                .env("A", "1")
                .env("B", "2");
            let env = child_env(&request);
            assert_eq!(env, [("A".into(), "1".into()), ("B".into(), "2".into())]);
            let mut request = SpawnRequest::new("x", [] as [&str; 0]).env("PATH", "/only");
            request.env_remove.push("HOME".into());
            request.env_remove.push("PATH".into());
            let env = child_env(&request);
            assert!(env.iter().all(|(k, _)| k != "HOME"));
            let paths: Vec<_> = env.iter().filter(|(k, _)| k == "PATH").collect();
            assert_eq!(paths, [&("PATH".into(), "/only".into())]);
        }
    }
}
