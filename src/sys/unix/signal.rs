//! Signal dispositions and the wakeup fd.
//!
//! The one handler this module installs ([`wakeup_handler`]) writes the signal number as
//! a byte to the wakeup fd and does nothing else: `write` is async-signal-safe, and the
//! fd is read from an atomic. Handlers installed by other code are saved as they were
//! found and handed back as [`Disposition::Foreign`] tokens, so restoring one puts back
//! exactly that `sigaction`.
//!
//! A child forked without `exec` keeps the handler but must not write into its
//! parent's pipes (an inherited wakeup fd is the parent's loop): an at-fork hook,
//! registered the first time a handler or fd is set, unsets every fd in the child, as
//! CPython 3.12 sets the wakeup fd to -1 there.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use nix::fcntl::{FcntlArg, fcntl};

use super::{OsKernel, check, last_errno, with_fd};
use crate::kernel::{Disposition, Errno, Fd, Signal, Signals};

/// The fd the handler writes to, or -1.
static WAKEUP_FD: AtomicI32 = AtomicI32::new(-1);

/// Per signal, the fd of a [`Disposition::Notify`], or -1 for the wakeup fd.
static NOTIFY_FDS: [AtomicI32; 65] = [const { AtomicI32::new(-1) }; 65];

fn notify_slot(signal: i32) -> Option<&'static AtomicI32> {
    usize::try_from(signal).ok().and_then(|i| NOTIFY_FDS.get(i))
}

/// Runs in the child after `fork`: the fds the handler writes to are the parent's.
/// Atomic stores only, which are async-signal-safe: the child of a threaded parent
/// may not lock or allocate.
extern "C" fn unset_fds_in_child() {
    WAKEUP_FD.store(-1, Ordering::Relaxed);
    for slot in &NOTIFY_FDS {
        slot.store(-1, Ordering::Relaxed);
    }
}

/// Registers [`unset_fds_in_child`] once, before the first fd is handed to the handler.
fn register_at_fork() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        // libc, not nix: nix has no pthread_atfork.
        // SAFETY: registers a child-side hook that only stores to atomics. Failure
        // (ENOMEM) leaves forked children as they were before this hook existed.
        unsafe { libc::pthread_atfork(None, None, Some(unset_fds_in_child)) };
    });
}

#[allow(clippy::disallowed_types, reason = "OsKernel is the seam")]
static FOREIGN: std::sync::Mutex<Vec<SavedAction>> = std::sync::Mutex::new(Vec::new());

/// A `sigaction` found installed by someone else.
#[derive(Clone, Copy)]
struct SavedAction(libc::sigaction);

impl SavedAction {
    fn same_as(&self, other: &libc::sigaction) -> bool {
        self.0.sa_sigaction == other.sa_sigaction && self.0.sa_flags == other.sa_flags
    }
}

/// Per signal, the address of the foreign handler [`wakeup_handler`] runs after its
/// own write (0: none), whether that handler takes `SA_SIGINFO`'s three arguments, and
/// the [`Disposition::Foreign`] token it was chained as (`u64::MAX`: none). The
/// handler reads the first two atomics only, so chaining needs no lock in it.
static CHAINED: [AtomicUsize; 65] = [const { AtomicUsize::new(0) }; 65];
static CHAINED_SIGINFO: [AtomicBool; 65] = [const { AtomicBool::new(false) }; 65];
static CHAINED_TOKEN: [AtomicU64; 65] = [const { AtomicU64::new(u64::MAX) }; 65];

/// The handler of loopwatch's dispositions, installed with `SA_SIGINFO` so that a
/// chained foreign handler that wants the `siginfo_t` gets the one the kernel gave.
extern "C" fn wakeup_handler(
    signum: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // Saved and restored, so that the interrupted code's errno stays intact; nix reads
    // and writes the thread's errno slot, which is async-signal-safe.
    let saved = nix::errno::Errno::last_raw();
    let own = notify_slot(signum).map_or(-1, |slot| slot.load(Ordering::Relaxed));
    let fd = if own >= 0 {
        own
    } else {
        WAKEUP_FD.load(Ordering::Relaxed)
    };
    if fd >= 0 {
        let byte = signum as u8;
        // libc, not nix: nix's `write` wants a `BorrowedFd`, and the number here comes
        // from an atomic, so it would take an `unsafe` borrow all the same; the plain
        // call is what a handler should make.
        // SAFETY: write is async-signal-safe; the buffer is one valid byte. A full or
        // closed pipe loses the byte, which is what CPython's wakeup fd does too.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
    let index = usize::try_from(signum).unwrap_or(0);
    let chained = CHAINED
        .get(index)
        .map_or(0, |slot| slot.load(Ordering::Acquire));
    if chained != 0 {
        let siginfo = CHAINED_SIGINFO
            .get(index)
            .is_some_and(|slot| slot.load(Ordering::Acquire));
        // The foreign handler runs as the kernel would have run it, with the same
        // arguments; it keeps its own rules about errno. (Its `sa_mask` and flags are
        // not applied: this handler's own mask is in force.)
        if siginfo {
            // SAFETY: the address was read from a `sigaction` with SA_SIGINFO that
            // other code installed for this signal: a handler of this type.
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(chained) };
            handler(signum, info, context);
        } else {
            // SAFETY: the address was read from a `sigaction` without SA_SIGINFO that
            // other code installed for this signal: a one-argument handler.
            let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(chained) };
            handler(signum);
        }
    }
    nix::errno::Errno::set_raw(saved);
}

fn handler_address() -> libc::sighandler_t {
    wakeup_handler as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
        as libc::sighandler_t
}

/// An all-zero action to be filled in: no flags and an empty mask.
pub(super) fn empty_action() -> libc::sigaction {
    // SAFETY: sigaction is plain data (a handler address, a mask, flags and an optional
    // function pointer), for which all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// `sigaction(2)` by number: installs `new` if given, and returns the action it found.
///
/// libc, not nix: nix's `sigaction` takes only the classic signals its `Signal` names,
/// and the seam also handles realtime ones. (Its `SigAction` type would not save an
/// `unsafe` either: nix's `sigaction` is itself an `unsafe fn`.)
fn sigaction(signal: Signal, new: Option<&libc::sigaction>) -> Result<libc::sigaction, Errno> {
    let mut old = empty_action();
    let new = new.map_or(std::ptr::null(), |action| action as *const libc::sigaction);
    // SAFETY: `new` is NULL (only query) or a valid action, which is SIG_DFL, SIG_IGN,
    // the async-signal-safe wakeup handler or one that was installed before; `old` is
    // writable.
    check(unsafe { libc::sigaction(signal.0, new, &mut old) })?;
    Ok(old)
}

fn current_action(signal: Signal) -> Result<libc::sigaction, Errno> {
    sigaction(signal, None)
}

fn classify(signal: Signal, action: &libc::sigaction) -> Disposition {
    match action.sa_sigaction {
        libc::SIG_DFL => Disposition::Default,
        libc::SIG_IGN => Disposition::Ignore,
        handler if handler == handler_address() => {
            match notify_slot(signal.0).map_or(-1, |slot| slot.load(Ordering::Relaxed)) {
                fd if fd >= 0 => Disposition::Notify(Fd(fd)),
                _ => Disposition::Wakeup,
            }
        }
        _ => {
            let mut saved = FOREIGN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let index = match saved.iter().position(|s| s.same_as(action)) {
                Some(index) => index,
                None => {
                    saved.push(SavedAction(*action));
                    saved.len() - 1
                }
            };
            Disposition::Foreign(index as u64)
        }
    }
}

fn action_for(disposition: Disposition) -> Result<libc::sigaction, Errno> {
    let mut action = empty_action();
    match disposition {
        Disposition::Default => action.sa_sigaction = libc::SIG_DFL,
        Disposition::Ignore => action.sa_sigaction = libc::SIG_IGN,
        Disposition::Wakeup | Disposition::Notify(_) => {
            action.sa_sigaction = handler_address();
            // As CPython's siginterrupt(sig, False): interrupted calls restart.
            action.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
        }
        Disposition::Foreign(index) => {
            let saved = FOREIGN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            action = saved.get(index as usize).ok_or(Errno::EINVAL)?.0;
        }
    }
    Ok(action)
}

/// libc, not nix: nix's `SigSet` holds only the classic signals its `Signal` names, and
/// the seam also blocks realtime ones.
/// Returns whether `signal` was blocked before the change.
fn change_mask(how: libc::c_int, signal: Signal) -> Result<bool, Errno> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: `set` is a valid sigset_t; an invalid signal number gives EINVAL.
    check(unsafe { libc::sigaddset(&mut set, signal.0) })?;
    // SAFETY: sigset_t is plain data; pthread_sigmask fills it in.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` and `old` are valid sigset_t values.
    let rc = unsafe { libc::pthread_sigmask(how, &set, &mut old) };
    if rc != 0 {
        return Err(Errno(rc));
    }
    // SAFETY: `old` was filled in by pthread_sigmask; the number was checked above.
    Ok(unsafe { libc::sigismember(&old, signal.0) } == 1)
}

impl Signals for OsKernel {
    fn set_disposition(
        &self,
        signal: Signal,
        disposition: Disposition,
    ) -> Result<Disposition, Errno> {
        let action = action_for(disposition)?;
        if !signal.is_catchable() {
            return Err(Errno::EINVAL);
        }
        let slot = notify_slot(signal.0).ok_or(Errno::EINVAL)?;
        if matches!(disposition, Disposition::Wakeup | Disposition::Notify(_)) {
            register_at_fork();
        }
        let new_notify = match disposition {
            Disposition::Notify(fd) => {
                // F_GETFD only checks that the descriptor is open.
                with_fd(fd, |fd| fcntl(fd, FcntlArg::F_GETFD))?;
                fd.0
            }
            _ => -1,
        };
        // The previous disposition is read before the slot changes.
        let previous_notify = slot.load(Ordering::Relaxed);
        // Set before the handler is installed, so that its first run finds the fd.
        slot.store(new_notify, Ordering::Relaxed);
        let old = match sigaction(signal, Some(&action)) {
            Ok(old) => old,
            Err(errno) => {
                slot.store(previous_notify, Ordering::Relaxed);
                return Err(errno);
            }
        };
        let previous = classify(signal, &old);
        Ok(match previous {
            Disposition::Wakeup | Disposition::Notify(_) if previous_notify >= 0 => {
                Disposition::Notify(Fd(previous_notify))
            }
            Disposition::Notify(_) => Disposition::Wakeup,
            other => other,
        })
    }

    fn disposition(&self, signal: Signal) -> Result<Disposition, Errno> {
        Ok(classify(signal, &current_action(signal)?))
    }

    fn chain_foreign(&self, signal: Signal, foreign: Option<u64>) -> Result<Option<u64>, Errno> {
        if !signal.is_catchable() {
            return Err(Errno::EINVAL);
        }
        let index = usize::try_from(signal.0).map_err(|_| Errno::EINVAL)?;
        let (Some(slot), Some(siginfo), Some(token)) = (
            CHAINED.get(index),
            CHAINED_SIGINFO.get(index),
            CHAINED_TOKEN.get(index),
        ) else {
            return Err(Errno::EINVAL);
        };
        let (address, wants_info) = match foreign {
            None => (0, false),
            Some(id) => {
                let action = action_for(Disposition::Foreign(id))?;
                match action.sa_sigaction {
                    libc::SIG_DFL | libc::SIG_IGN => (0, false),
                    address => (address, action.sa_flags & libc::SA_SIGINFO != 0),
                }
            }
        };
        // The address goes last, after the flag it is read with; a handler running in
        // between sees the old address or none.
        slot.store(0, Ordering::Release);
        siginfo.store(wants_info, Ordering::Release);
        slot.store(address, Ordering::Release);
        let previous = token.swap(foreign.unwrap_or(u64::MAX), Ordering::Relaxed);
        Ok((previous != u64::MAX).then_some(previous))
    }

    fn set_wakeup_fd(&self, fd: Option<Fd>) -> Result<Option<Fd>, Errno> {
        if let Some(fd) = fd {
            // F_GETFD only checks that the descriptor is open.
            with_fd(fd, |fd| fcntl(fd, FcntlArg::F_GETFD))?;
            register_at_fork();
        }
        let old = WAKEUP_FD.swap(fd.map_or(-1, |fd| fd.0), Ordering::Relaxed);
        Ok((old >= 0).then_some(Fd(old)))
    }

    fn raise(&self, signal: Signal) -> Result<(), Errno> {
        // libc, not nix: nix's `raise` takes only the classic signals its `Signal` names,
        // and the seam also raises realtime ones.
        // SAFETY: raise takes a number; it runs the handler before returning when the
        // signal is not blocked.
        let rc = unsafe { libc::raise(signal.0) };
        if rc != 0 { Err(last_errno()) } else { Ok(()) }
    }

    fn block_signal(&self, signal: Signal) -> Result<bool, Errno> {
        change_mask(libc::SIG_BLOCK, signal)
    }

    fn unblock_signal(&self, signal: Signal) -> Result<bool, Errno> {
        change_mask(libc::SIG_UNBLOCK, signal)
    }
}
