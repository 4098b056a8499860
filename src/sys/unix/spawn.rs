//! Spawning with a pidfd made in the same step as the child
//! ([`SpawnRequest::pidfd`]): Linux's `clone3` with `CLONE_PIDFD` and vfork
//! semantics (or the C library's `clone` where `clone3` is refused), then `execve`.
//!
//! The child shares the parent's memory (`CLONE_VM`) and the parent is suspended until
//! the child has called `exec` or exited (`CLONE_VFORK`), as in the C library's
//! `posix_spawn`: no page table is copied, so a spawn with a pidfd costs what a plain
//! spawn costs. The child runs on a stack of its own, which each spawning thread maps
//! once and keeps (the parent is suspended while the child uses it, so one per thread
//! suffices); a guard page below it stops an overflow there.
//!
//! Everything the child needs is prepared in the parent before the clone: the program,
//! arguments and environment as C strings, the paths to try for a program without a
//! slash (searched in the child's `PATH` as `execvp` would), the working directory, and
//! the descriptors to place on its standard streams (pipes and `/dev/null` opened
//! close-on-exec, each numbered above 2 so that placing one never overwrites another).
//! Between the clone and `exec` the child only makes async-signal-safe system calls on
//! that prepared data, and writes nothing of the parent's but the one word that reports
//! its error: the child of a threaded parent may not allocate or lock.
//!
//! The parent blocks every signal around the clone, so that no handler of the parent
//! runs in the child (which has its own copy of the handler table, not the parent's:
//! no `CLONE_SIGHAND`). Every caught signal goes back to its default action (as `exec`
//! would do) before the child unblocks any: on x86-64 with Linux 5.5 or later the
//! kernel does it in the clone (`clone3`'s `CLONE_CLEAR_SIGHAND`, which needs a few
//! lines of assembly: the child starts on its own stack, where no Rust frame can be
//! returned to); elsewhere the child looks up each signal and resets the caught ones,
//! about 64 system calls while the parent waits (the C library's `posix_spawn` makes
//! 121). The child then sets SIGPIPE to its default too (as std's spawn does: Rust's
//! runtime ignores it for itself), and restores the mask (or, with
//! [`SpawnRequest::restore_signals`], resets every signal and unblocks all). The
//! two signals the C library keeps for itself cannot be changed by the child (only
//! the kernel's reset takes them); nothing sends them to a child before its `exec`.
//!
//! An `exec` failure comes back as the child's `errno`, stored in memory the parent
//! reads once it resumes; the parent then reaps the child and closes every descriptor
//! it opened, so the error leaves no zombie and no fd, as std's spawn does. A seccomp
//! filter that refuses the clone (`EPERM`) or a kernel that rejects the flag fails the
//! clone itself, before any child exists; a kernel before 5.2, which ignores the flag,
//! starts the child without a pidfd, and the caller opens one if it can.

/// `CLONE_PIDFD` is Linux's: elsewhere the caller falls back.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn spawn_with_pidfd(
    _request: &crate::kernel::SpawnRequest,
) -> Result<crate::kernel::Spawned, crate::kernel::Errno> {
    Err(crate::kernel::Errno::ENOSYS)
}

#[cfg(all(
    test,
    target_arch = "x86_64",
    any(target_os = "linux", target_os = "android")
))]
pub(super) use linux::handler_in_a_child;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) use linux::spawn_with_pidfd;
#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
pub(super) use linux::{CLONE_ONLY, clone3_clears_handlers};

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    use std::cell::RefCell;
    use std::ffi::{CString, OsStr, OsString};
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

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

    /// What the child needs, prepared by the parent. The pointer arrays point into the
    /// strings beside them and end with a null pointer.
    struct Prepared {
        /// Paths to `execve` in turn (one when the program has a slash).
        candidates: Vec<CString>,
        _argv: Vec<CString>,
        argv_ptrs: Vec<*const libc::c_char>,
        env: ChildEnv,
        cwd: Option<CString>,
        restore_signals: bool,
        /// The descriptor to place on stdin, stdout and stderr (`None`: inherited).
        /// Each is numbered above 2 and closed in the parent after the clone.
        child_ends: [Option<OwnedFd>; 3],
        /// The parent's ends of the pipes asked for.
        parent_ends: [Option<OwnedFd>; 3],
    }

    /// The environment the child is given.
    enum ChildEnv {
        /// The parent's own, read by the child from `environ` at `exec`, as
        /// `posix_spawn` does when std passes it the environment unchanged: nothing is
        /// copied. (Rust's `set_var` may not run while another thread reads the
        /// environment other than through `std::env`, and the C library's `setenv`
        /// is under the same rule.)
        Inherited,
        /// Built for the request: its strings, and their pointers ending with a null
        /// pointer.
        Built {
            _strings: Vec<CString>,
            pointers: Vec<*const libc::c_char>,
        },
    }

    unsafe extern "C" {
        /// The process's environment, the C library's.
        static mut environ: *const *const libc::c_char;
    }

    impl ChildEnv {
        /// The `envp` to pass to `execve`. Called in the child.
        fn envp(&self) -> *const *const libc::c_char {
            match self {
                // SAFETY: a copy of the pointer's current value, no reference to the
                // static.
                ChildEnv::Inherited => unsafe { environ },
                ChildEnv::Built { pointers, .. } => pointers.as_ptr(),
            }
        }
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
    /// slash, else each directory of the child's `PATH` (`path`; an empty entry being
    /// the working directory) joined with it.
    fn candidates(program: &OsStr, path: Option<&OsStr>) -> Result<Vec<CString>, Errno> {
        let name = program.as_bytes();
        if name.contains(&b'/') {
            return Ok(vec![c_string(name)?]);
        }
        if name.is_empty() {
            return Err(Errno::ENOENT);
        }
        let path = path.map_or(DEFAULT_PATH, OsStrExt::as_bytes);
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

    /// The paths to try and the environment for the child of `request`: the parent's
    /// environment as it is where the request changes nothing in it.
    fn program_and_env(request: &SpawnRequest) -> Result<(Vec<CString>, ChildEnv), Errno> {
        if !request.env_clear && request.env.is_empty() && request.env_remove.is_empty() {
            // PATH only for a name to search for: reading it takes std's lock.
            let path = if request.program.as_bytes().contains(&b'/') {
                None
            } else {
                std::env::var_os("PATH")
            };
            let candidates = candidates(&request.program, path.as_deref())?;
            return Ok((candidates, ChildEnv::Inherited));
        }
        let env = child_env(request);
        let path = env.iter().find(|(key, _)| key == "PATH");
        let candidates = candidates(&request.program, path.map(|(_, value)| value.as_os_str()))?;
        let strings = env
            .iter()
            .map(|(key, value)| {
                let mut entry = Vec::with_capacity(key.len() + value.len() + 2);
                entry.extend_from_slice(key.as_bytes());
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                c_string(&entry)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pointers = pointers(&strings);
        Ok((
            candidates,
            ChildEnv::Built {
                _strings: strings,
                pointers,
            },
        ))
    }

    fn prepare(request: &SpawnRequest) -> Result<Prepared, Errno> {
        let (candidates, env) = program_and_env(request)?;
        let argv = std::iter::once(&request.program)
            .chain(&request.args)
            .map(|arg| c_string(arg.as_bytes()))
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
        let argv_ptrs = pointers(&argv);
        Ok(Prepared {
            candidates,
            _argv: argv,
            argv_ptrs,
            env,
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

    /// What the child is given: the prepared data, the mask the parent had before it
    /// blocked every signal, and the word its error goes to.
    struct ChildArgs<'a> {
        prepared: &'a Prepared,
        parent_mask: &'a libc::sigset_t,
        /// The `errno` that stopped the child before or at `exec`; 0 while none has.
        /// The child shares the parent's memory, and the parent reads this once the
        /// kernel has resumed it (the child has called `exec` or exited).
        error: AtomicI32,
        /// Whether the kernel has set the child's caught signals back to their
        /// default action (`clone3`'s `CLONE_CLEAR_SIGHAND`, Linux 5.5).
        handlers_cleared: AtomicBool,
    }

    /// In the child: stores `errno` for the parent and exits without running any of
    /// the parent's code (no atexit handlers, no destructors, no stdio flush).
    fn fail(error: &AtomicI32, errno: libc::c_int) -> ! {
        // 0 would read as "exec succeeded".
        let errno = if errno == 0 { libc::EIO } else { errno };
        error.store(errno, Ordering::Relaxed);
        // SAFETY: _exit ends the process at once; it is async-signal-safe.
        unsafe { libc::_exit(EXEC_FAILED) }
    }

    /// In the child: sets `signum` to its default action.
    fn reset_to_default(signum: libc::c_int) {
        let mut default = empty_action();
        default.sa_sigaction = libc::SIG_DFL;
        // SAFETY: `default` is a valid action; async-signal-safe.
        unsafe { libc::sigaction(signum, &default, std::ptr::null_mut()) };
    }

    /// The child's entry point on its own stack: `arg` is the parent's [`ChildArgs`].
    extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: the parent passes a pointer to a ChildArgs that lives on its stack,
        // which stays put while the parent is suspended, that is while this runs.
        let args = unsafe { &*arg.cast::<ChildArgs<'_>>() };
        child(args)
    }

    /// The child, between the clone and `exec`: only async-signal-safe calls on data
    /// the parent prepared. Never returns.
    fn child(args: &ChildArgs<'_>) -> ! {
        let (prepared, error) = (args.prepared, &args.error);
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
                    fail(error, last_errno().0);
                }
            }
        }
        if let Some(cwd) = &prepared.cwd {
            // SAFETY: `cwd` is a NUL-terminated string; chdir is async-signal-safe.
            if unsafe { libc::chdir(cwd.as_ptr()) } < 0 {
                fail(error, last_errno().0);
            }
        }
        if prepared.restore_signals {
            if let Err(restore) = restore_default_signals() {
                fail(error, restore.raw_os_error().unwrap_or(libc::EINVAL));
            }
        } else {
            // Every signal is still blocked: a caught one goes back to its default
            // action (as exec would do), an ignored one stays ignored, before the
            // parent's mask comes back. The kernel may have done the first already.
            let first = if args.handlers_cleared.load(Ordering::Relaxed) {
                reset_to_default(libc::SIGPIPE);
                Signal::MAX + 1
            } else {
                1
            };
            for signum in first..=Signal::MAX {
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
                    reset_to_default(signum);
                }
            }
            // SAFETY: `parent_mask` is the valid set the parent had before the clone.
            let rc = unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, args.parent_mask, std::ptr::null_mut())
            };
            if rc != 0 {
                fail(error, rc);
            }
        }
        // As execvp: an error that another directory may not have (ENOENT and kin)
        // goes on to the next one; EACCES is remembered and reported if no directory
        // has the program; any other error ends the search.
        let mut eacces = false;
        let mut last = libc::ENOENT;
        for path in &prepared.candidates {
            // SAFETY: the path is NUL-terminated and both arrays end with a null
            // pointer, all prepared by the parent, whose memory this is (the
            // inherited environment is the C library's, as `posix_spawn` passes it).
            unsafe {
                libc::execve(
                    path.as_ptr(),
                    prepared.argv_ptrs.as_ptr(),
                    prepared.env.envp(),
                )
            };
            last = last_errno().0;
            match last {
                libc::EACCES => eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => fail(error, last),
            }
        }
        fail(error, if eacces { libc::EACCES } else { last })
    }

    /// Reaps a child whose `exec` failed: through its pidfd (which cannot name
    /// another process), or by pid without one or where `waitid` lacks `P_PIDFD`
    /// (Linux 5.3).
    fn reap_failed(pid: Pid, pidfd: Option<&OwnedFd>) {
        /// `waitid`'s id type for a pidfd (Linux's uapi `P_PIDFD`).
        const P_PIDFD: libc::idtype_t = 3;
        while let Some(pidfd) = pidfd {
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

    /// The size of the stack a child runs on until `exec`, above its guard page. The
    /// child's own code needs a few KiB; `exec` runs in the kernel.
    const STACK_SIZE: usize = 64 * 1024;

    /// A stack for children, mapped with a guard page below it and unmapped on drop.
    struct ChildStack {
        base: *mut libc::c_void,
        len: usize,
    }

    impl ChildStack {
        fn map() -> Result<ChildStack, Errno> {
            // SAFETY: sysconf only reads a constant of the system.
            let page =
                usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
            let len = STACK_SIZE + page;
            // libc, not nix: nix's mman feature would be built for these two calls.
            // SAFETY: a fresh private anonymous mapping, placed by the kernel.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return Err(last_errno());
            }
            let stack = ChildStack { base, len };
            // The stack grows down: its lowest page is the guard.
            // SAFETY: the first page of the mapping just made.
            if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
                return Err(last_errno());
            }
            Ok(stack)
        }

        /// The usable stack, above the guard page.
        fn range(&self) -> StackRange {
            StackRange {
                low: self.base as usize + (self.len - STACK_SIZE),
                size: STACK_SIZE,
            }
        }
    }

    impl Drop for ChildStack {
        fn drop(&mut self) {
            // SAFETY: the mapping this value made; no child runs on it any more (the
            // parent resumes only once its child has left it).
            unsafe { libc::munmap(self.base, self.len) };
        }
    }

    /// Where a child's stack lies: `size` bytes from `low` (both page-aligned).
    #[derive(Clone, Copy)]
    struct StackRange {
        low: usize,
        size: usize,
    }

    impl StackRange {
        /// The stack's top, where the child starts (page-aligned, so 16-byte aligned).
        fn top(self) -> *mut libc::c_void {
            (self.low + self.size) as *mut libc::c_void
        }
    }

    thread_local! {
        /// This thread's stack for children, mapped at its first spawn with a pidfd.
        static STACK: RefCell<Option<ChildStack>> = const { RefCell::new(None) };
    }

    /// This thread's stack for children, mapped at its first use; or, as the thread
    /// ends and its thread-locals are gone, one mapped for this spawn alone, which the
    /// caller keeps (the second value) until the child has left it.
    fn child_stack() -> Result<(StackRange, Option<ChildStack>), Errno> {
        let kept = STACK.try_with(|cell| -> Result<_, Errno> {
            // Never borrowed elsewhere: the borrow ends before this returns.
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(ChildStack::map()?);
            }
            Ok(slot.as_ref().map(ChildStack::range))
        });
        match kept {
            Ok(Ok(Some(top))) => Ok((top, None)),
            Ok(Err(errno)) => Err(errno),
            Ok(Ok(None)) | Err(_) => {
                let stack = ChildStack::map()?;
                Ok((stack.range(), Some(stack)))
            }
        }
    }

    /// Whether `clone3` with `CLONE_CLEAR_SIGHAND` may still be tried: cleared for the
    /// process by its first refusal (before Linux 5.5, or under a seccomp filter).
    #[cfg(target_arch = "x86_64")]
    static CLONE3_CLEARS_HANDLERS: AtomicBool = AtomicBool::new(true);

    /// Whether spawns still start children through `clone3` with `CLONE_CLEAR_SIGHAND`.
    #[cfg(test)]
    pub(in super::super) fn clone3_clears_handlers() -> bool {
        #[cfg(target_arch = "x86_64")]
        return CLONE3_CLEARS_HANDLERS.load(Ordering::Relaxed);
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Set by tests to start children with `clone` alone, as where `clone3` is refused.
    #[cfg(test)]
    pub(in super::super) static CLONE_ONLY: AtomicBool = AtomicBool::new(false);

    /// Whether tests asked for `clone` alone ([`CLONE_ONLY`]).
    #[cfg(target_arch = "x86_64")]
    fn clone_only() -> bool {
        #[cfg(test)]
        return CLONE_ONLY.load(Ordering::Relaxed);
        #[cfg(not(test))]
        false
    }

    /// Starts the child of `args` on `stack` with vfork semantics and a pidfd written
    /// into `pidfd`: through `clone3` where it can clear the child's handlers (x86-64,
    /// Linux 5.5), else through the C library's `clone`. Returns the child's pid once it
    /// has called `exec` or exited.
    fn start_child(
        args: &ChildArgs<'_>,
        stack: StackRange,
        pidfd: &mut libc::c_int,
    ) -> Result<libc::pid_t, Errno> {
        #[cfg(target_arch = "x86_64")]
        if !clone_only() {
            if let Some(started) = start_child_clearing_handlers(args, stack, pidfd) {
                return started;
            }
        }
        // libc, not nix: nix's clone takes no pidfd. vfork semantics (see the module
        // documentation), SIGCHLD at the child's exit; the C library's `clone` runs
        // `child_entry` on the child's stack.
        // SAFETY: the stack is mapped, writable and used by no one else while this
        // thread is suspended; `args` outlives the child's use of it (the call returns
        // once the child has called exec or exited); the kernel writes the pidfd into
        // `pidfd` (the parent_tid argument, which CLONE_PIDFD uses).
        let rc = unsafe {
            libc::clone(
                child_entry,
                stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
                std::ptr::from_ref(args).cast_mut().cast(),
                std::ptr::from_mut(pidfd),
            )
        };
        if rc < 0 { Err(last_errno()) } else { Ok(rc) }
    }

    /// [`start_child`] through `clone3` with `CLONE_CLEAR_SIGHAND`, unless the process
    /// has seen it refused; `None` when it is refused (nothing was started), which is
    /// then remembered.
    #[cfg(target_arch = "x86_64")]
    fn start_child_clearing_handlers(
        args: &ChildArgs<'_>,
        stack: StackRange,
        pidfd: &mut libc::c_int,
    ) -> Option<Result<libc::pid_t, Errno>> {
        if !CLONE3_CLEARS_HANDLERS.load(Ordering::Relaxed) {
            return None;
        }
        args.handlers_cleared.store(true, Ordering::Relaxed);
        let clone_args = CloneArgs::vfork(stack, pidfd);
        // SAFETY: as for `clone` in start_child; the kernel reads `clone_args` and
        // writes the pidfd into `pidfd`.
        let rc = unsafe { clone3_vfork(&clone_args, child_entry, std::ptr::from_ref(args)) };
        match rc {
            pid if pid > 0 => Some(Ok(pid as libc::pid_t)),
            // Nothing was started: no clone3 (ENOSYS, or a seccomp filter that answers
            // so), no CLONE_CLEAR_SIGHAND (EINVAL), a smaller clone_args (E2BIG), a
            // seccomp filter (EPERM).
            rc if [libc::ENOSYS, libc::EINVAL, libc::E2BIG, libc::EPERM]
                .contains(&(-rc as libc::c_int)) =>
            {
                CLONE3_CLEARS_HANDLERS.store(false, Ordering::Relaxed);
                args.handlers_cleared.store(false, Ordering::Relaxed);
                None
            }
            rc => Some(Err(Errno(-rc as libc::c_int))),
        }
    }

    /// The first 64 bytes of the kernel's `struct clone_args` (`CLONE_ARGS_SIZE_VER0`):
    /// all that is used here. The kernel reads the size it is given.
    #[cfg(target_arch = "x86_64")]
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

    /// `CLONE_CLEAR_SIGHAND` (Linux 5.5, `clone3` only).
    #[cfg(target_arch = "x86_64")]
    const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

    #[cfg(target_arch = "x86_64")]
    impl CloneArgs {
        /// A child with vfork semantics on `stack`, its caught signals back at their
        /// default action, its pidfd written into `pidfd`, SIGCHLD at its exit.
        fn vfork(stack: StackRange, pidfd: &mut libc::c_int) -> CloneArgs {
            CloneArgs {
                flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64
                    | CLONE_CLEAR_SIGHAND,
                pidfd: std::ptr::from_mut(pidfd) as u64,
                exit_signal: libc::SIGCHLD as u64,
                stack: stack.low as u64,
                stack_size: stack.size as u64,
                ..CloneArgs::default()
            }
        }
    }

    /// Starts a child as a spawn does, in which `signum`'s action is looked up first
    /// thing, and returns that handler (`SIG_DFL`, `SIG_IGN` or an address).
    #[cfg(all(test, target_arch = "x86_64"))]
    pub(in super::super) fn handler_in_a_child(signum: libc::c_int) -> Result<usize, Errno> {
        /// The child: stores its handler for the signal in `arg` and exits.
        extern "C" fn look(arg: *mut libc::c_void) -> libc::c_int {
            // SAFETY: the parent passes its AtomicUsize, alive while it is suspended.
            let seen = unsafe { &*arg.cast::<std::sync::atomic::AtomicUsize>() };
            let signum = seen.load(Ordering::Relaxed) as libc::c_int;
            let mut current = empty_action();
            // SAFETY: a query into a valid sigaction; _exit is async-signal-safe.
            unsafe {
                libc::sigaction(signum, std::ptr::null(), &mut current);
                seen.store(current.sa_sigaction, Ordering::Relaxed);
                libc::_exit(0)
            }
        }
        let seen = std::sync::atomic::AtomicUsize::new(signum as usize);
        let (stack, _this_call_only) = child_stack()?;
        let mut pidfd = -1;
        let clone_args = CloneArgs::vfork(stack, &mut pidfd);
        // SAFETY: as in start_child; `look` never returns.
        let rc = unsafe { clone3_vfork(&clone_args, look, std::ptr::from_ref(&seen)) };
        if rc < 0 {
            return Err(Errno(-rc as libc::c_int));
        }
        reap_failed(Pid(rc as libc::pid_t), Some(&owned(pidfd)));
        Ok(seen.load(Ordering::Relaxed))
    }

    /// `clone3(clone_args)`, with the child calling `entry(arg)` on the stack that
    /// `clone_args` names and never coming back: the raw result (the child's pid, or a
    /// negated errno) in the parent. Assembly, because the child starts on another
    /// stack with this function's registers, and no Rust frame can be returned to
    /// there (the C library's `clone` does the same for its callers).
    ///
    /// # Safety
    ///
    /// `clone_args` asks for `CLONE_VM` and `CLONE_VFORK` with a mapped, writable,
    /// 16-byte-aligned stack of its own, `entry` never returns, and `arg` stays valid
    /// while the parent is suspended.
    #[cfg(target_arch = "x86_64")]
    unsafe fn clone3_vfork<T>(
        clone_args: &CloneArgs,
        entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
        arg: *const T,
    ) -> isize {
        let rc: isize;
        // SAFETY: the caller's contract. `syscall` changes rax, rcx and r11 alone; the
        // child's branch runs on its own stack (the kernel sets it to the top of the
        // one named, 16-byte aligned for the call) and never comes back.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "xor ebp, ebp",
                "mov rdi, {arg}",
                "call {entry}",
                "ud2",
                "2:",
                entry = in(reg) entry,
                arg = in(reg) arg,
                inlateout("rax") libc::SYS_clone3 as isize => rc,
                in("rdi") std::ptr::from_ref(clone_args),
                in("rsi") std::mem::size_of::<CloneArgs>(),
                out("rcx") _,
                out("r11") _,
            );
        }
        rc
    }

    /// [`SpawnRequest::pidfd`]'s spawn: see the module documentation.
    pub(in super::super) fn spawn_with_pidfd(request: &SpawnRequest) -> Result<Spawned, Errno> {
        let mut prepared = prepare(request)?;
        let (stack, _this_spawn_only) = child_stack()?;
        let (mut all, mut parent_mask) = (sigset(), sigset());
        // SAFETY: `all` is a valid set to fill.
        unsafe { libc::sigfillset(&mut all) };
        // SAFETY: both sets are valid. Blocking every signal keeps the parent's
        // handlers from running in the child before it resets them.
        let blocked = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut parent_mask) };
        if blocked != 0 {
            return Err(Errno(blocked));
        }
        let args = ChildArgs {
            prepared: &prepared,
            parent_mask: &parent_mask,
            error: AtomicI32::new(0),
            handlers_cleared: AtomicBool::new(false),
        };
        let mut pidfd: libc::c_int = -1;
        let rc = start_child(&args, stack, &mut pidfd);
        // SAFETY: `parent_mask` is the valid set saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &parent_mask, std::ptr::null_mut()) };
        // No child on error: the guards close every descriptor opened for it.
        let pid = Pid(rc?);
        // A kernel before 5.2 ignores CLONE_PIDFD and leaves it at -1.
        let pidfd = (pidfd >= 0).then(|| owned(pidfd));
        let failed = args.error.load(Ordering::Relaxed);
        prepared.child_ends = [None, None, None];
        if failed != 0 {
            reap_failed(pid, pidfd.as_ref());
            // The pidfd and the parent's pipe ends close on return.
            return Err(Errno(failed));
        }
        let [stdin, stdout, stderr] = prepared
            .parent_ends
            .map(|end| end.map(|fd| Fd(fd.into_raw_fd())));
        Ok(Spawned {
            pid,
            stdin,
            stdout,
            stderr,
            pidfd: pidfd.map(|fd| Fd(fd.into_raw_fd())),
        })
    }

    #[cfg(test)]
    mod tests {
        //! The preparation in the parent; the spawn itself is tested in `../tests.rs`.

        use super::*;

        fn paths(program: &str, path: Option<&str>) -> Result<Vec<String>, Errno> {
            candidates(program.as_ref(), path.map(OsStr::new))
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
