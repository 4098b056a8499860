//! The seam's signal and errno numbers are Linux's, so that simulator traces read the
//! same everywhere. `OsKernel` passes them to the OS unchanged, which is right only
//! where the OS uses the same numbers: this module makes the build fail anywhere else
//! (macOS numbers SIGCHLD 20, Linux on MIPS 18), instead of compiling an `OsKernel`
//! that would handle the wrong signal.

use crate::kernel::{Errno, Signal};

/// Fails the build, naming the constant, when the OS's number differs from the seam's.
macro_rules! same_numbers {
    ($($seam:expr => $os:path),* $(,)?) => {
        $(
            const _: () = assert!(
                $seam == $os,
                concat!(
                    "OsKernel passes the seam's Linux numbers to the OS unchanged, and this ",
                    "target numbers ", stringify!($os), " differently: OsKernel supports ",
                    "Linux targets with Linux's generic signal and errno numbers"
                )
            );
        )*
    };
}

same_numbers! {
    Signal::SIGHUP.0 => libc::SIGHUP,
    Signal::SIGINT.0 => libc::SIGINT,
    Signal::SIGQUIT.0 => libc::SIGQUIT,
    Signal::SIGABRT.0 => libc::SIGABRT,
    Signal::SIGKILL.0 => libc::SIGKILL,
    Signal::SIGUSR1.0 => libc::SIGUSR1,
    Signal::SIGSEGV.0 => libc::SIGSEGV,
    Signal::SIGUSR2.0 => libc::SIGUSR2,
    Signal::SIGPIPE.0 => libc::SIGPIPE,
    Signal::SIGALRM.0 => libc::SIGALRM,
    Signal::SIGTERM.0 => libc::SIGTERM,
    Signal::SIGCHLD.0 => libc::SIGCHLD,
    Signal::SIGCONT.0 => libc::SIGCONT,
    Signal::SIGSTOP.0 => libc::SIGSTOP,
    Errno::EPERM.0 => libc::EPERM,
    Errno::ENOENT.0 => libc::ENOENT,
    Errno::ESRCH.0 => libc::ESRCH,
    Errno::EINTR.0 => libc::EINTR,
    Errno::EIO.0 => libc::EIO,
    Errno::EBADF.0 => libc::EBADF,
    Errno::ECHILD.0 => libc::ECHILD,
    Errno::EAGAIN.0 => libc::EAGAIN,
    Errno::ENOMEM.0 => libc::ENOMEM,
    Errno::EACCES.0 => libc::EACCES,
    Errno::EEXIST.0 => libc::EEXIST,
    Errno::EINVAL.0 => libc::EINVAL,
    Errno::ENFILE.0 => libc::ENFILE,
    Errno::EMFILE.0 => libc::EMFILE,
    Errno::ENOSPC.0 => libc::ENOSPC,
    Errno::EPIPE.0 => libc::EPIPE,
    Errno::ENOSYS.0 => libc::ENOSYS,
    Errno::E2BIG.0 => libc::E2BIG,
    Errno::ENOEXEC.0 => libc::ENOEXEC,
    Errno::ENOTDIR.0 => libc::ENOTDIR,
    Errno::EISDIR.0 => libc::EISDIR,
    Errno::ETXTBSY.0 => libc::ETXTBSY,
    Errno::ENAMETOOLONG.0 => libc::ENAMETOOLONG,
    Errno::ELOOP.0 => libc::ELOOP,
}

// Other systems lack pidfds, `pipe2` and Linux's wait semantics that the seam
// documents; say so plainly rather than through the first missing symbol.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
compile_error!("OsKernel supports Linux only: the seam's numbers and calls are Linux's");
