//! Signal wiring: a loop's signal handlers, and the process-wide table of who holds
//! which signal.
//!
//! The kernel has one disposition per signal and one wakeup fd per process, while any
//! number of loops (and [`MultiLoopChildWatcher`](crate::watcher::MultiLoopChildWatcher)s)
//! may want a signal. [`SignalRegistry`], one per process in the kernel's
//! [`ProcessLocals`](crate::kernel::ProcessLocals), keeps the owners of each signal in
//! the order they took it, and decides what the kernel is left with:
//!
//! - A signal has the disposition of its most recent owner ([`Disposition::Wakeup`]
//!   for a loop, [`Disposition::Notify`] for a watcher with its own pipe) while it has
//!   owners, and goes back to what the OS had before loopwatch touched it when the last
//!   one leaves. A disposition of loopwatch's own found there is never "what the OS
//!   had": it belongs to a loop or watcher that may be closed, so `SIG_DFL` stands in
//!   for it, as CPython's `remove_signal_handler` restores `SIG_DFL` (for SIGINT its
//!   `default_int_handler`, which is what `SIG_DFL` does in Rust).
//! - The wakeup fd belongs to the most recent loop that still has a handler, passes
//!   back to the one before when that loop removes its last handler or closes, and is
//!   unset when no loop has one. An owner leaves the table before it closes its fds,
//!   so no handler ever writes to an fd its owner has closed.
//! - A disposition someone else installed over loopwatch's is theirs: loopwatch warns
//!   (a `RuntimeWarning` on the `asyncio` target) and never restores over it.
//! - SIGCHLD only: a handler of other code that loopwatch's replaces (the signal's
//!   original) is chained, so loopwatch's handler runs it after writing its byte
//!   ([`Signals::chain_foreign`](crate::kernel::Signals::chain_foreign)), until the
//!   original goes back.
//!
//! MultiLoop's `Notify` shares the table rather than restoring on its own: it and the
//! loops take turns on the same kernel slot (SIGCHLD's disposition), and only a table
//! that knows every owner can hand the signal back to a loop or watcher still open
//! instead of to `SIG_DFL` or to an fd that was closed.
//!
//! [`LoopSignals`] is one loop's part: its handlers, the pipe the kernel's handler
//! writes signal numbers to, and its place in the table.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    EventLoop, Job, LoopState, Ready, Repeating, RepeatingCallback, check_signal, closed_error,
};
use crate::error::{Error, Result};
use crate::event_loop::Handle;
use crate::kernel::{Disposition, Errno, Fd, Interest, Kernel, Pid, Poller, Signal, Token};
use crate::sync::{BlockingMutex, BlockingMutexGuard};
use crate::zoo::Mutant;

/// Bytes read from the signal pipe per `read` call.
const SIGNAL_READ_CHUNK: usize = 64;

/// Who holds a signal: a number the registry hands out, unique in its process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct OwnerId(u64);

/// How an owner hears its signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Through the process's wakeup fd, which this loop's pipe write end becomes
    /// while it is the most recent loop with a handler.
    Wakeup(Fd),
    /// Through this fd of the owner's own, for this signal only.
    Notify(Fd),
}

impl Route {
    fn disposition(self) -> Disposition {
        match self {
            Route::Wakeup(_) => Disposition::Wakeup,
            Route::Notify(fd) => Disposition::Notify(fd),
        }
    }
}

/// One signal's owners.
#[derive(Debug)]
struct Held {
    /// What the OS had before loopwatch touched the signal.
    original: Disposition,
    /// Owners in the order they took the signal; the last one's disposition is
    /// installed.
    owners: Vec<(OwnerId, Disposition)>,
    /// Whether a replacement by other code was reported already.
    warned: bool,
    /// The foreign handler loopwatch's handler runs after its own work (SIGCHLD's
    /// original, when it was another library's: see [`Held::chain`]).
    chained: Option<u64>,
}

impl Held {
    /// The disposition loopwatch installed and expects to find.
    fn installed(&self) -> Disposition {
        self.owners.last().map_or(self.original, |&(_, d)| d)
    }

    /// Which foreign handler loopwatch's handler should run after its own: SIGCHLD's
    /// original one, if other code had installed a handler of its own. SIGCHLD is
    /// shared by nature: every library with children needs its exits, and a library
    /// whose handler never runs leaves its children unreaped and waits for them
    /// forever. Other signals are taken over, as `add_signal_handler` does in CPython.
    fn wanted_chain(&self, signal: Signal) -> Option<u64> {
        match (signal, self.original, self.owners.is_empty()) {
            (Signal::SIGCHLD, Disposition::Foreign(id), false) => Some(id),
            _ => None,
        }
    }

    /// Tells the kernel which foreign handler to chain, if that changed. A kernel
    /// that refuses leaves the foreign handler unheard, as before chaining existed.
    fn chain<K: Kernel>(&mut self, kernel: &K, signal: Signal) {
        let wanted = self.wanted_chain(signal);
        if wanted != self.chained && kernel.chain_foreign(signal, wanted).is_ok() {
            self.chained = wanted;
        }
    }
}

#[derive(Debug)]
struct Wiring {
    /// The process this table describes: a child forked without `exec` inherits a
    /// copy of its parent's, whose owners are not its own.
    pid: Pid,
    next_owner: u64,
    signals: BTreeMap<Signal, Held>,
    /// Loops with at least one handler, in the order they got their first; the last
    /// one's fd is the wakeup fd.
    wakeup: Vec<(OwnerId, Fd)>,
}

/// The process's table of signal owners (see the module docs).
pub(crate) struct SignalRegistry<K: Kernel> {
    wiring: BlockingMutex<K, Wiring>,
}

/// The registry of `kernel`'s process.
pub(crate) fn registry<K: Kernel>(kernel: &K) -> Arc<SignalRegistry<K>> {
    kernel.process_locals().get_or_init(|| SignalRegistry {
        wiring: BlockingMutex::new(
            kernel,
            Wiring {
                pid: kernel.getpid(),
                next_owner: 1,
                signals: BTreeMap::new(),
                wakeup: Vec::new(),
            },
        ),
    })
}

/// A name for warnings, as Python's `signal.Signals` would print it.
fn signal_name(signal: Signal) -> String {
    match signal {
        Signal::SIGHUP => "SIGHUP".into(),
        Signal::SIGINT => "SIGINT".into(),
        Signal::SIGQUIT => "SIGQUIT".into(),
        Signal::SIGUSR1 => "SIGUSR1".into(),
        Signal::SIGUSR2 => "SIGUSR2".into(),
        Signal::SIGALRM => "SIGALRM".into(),
        Signal::SIGTERM => "SIGTERM".into(),
        Signal::SIGCHLD => "SIGCHLD".into(),
        other => format!("signal {}", other.0),
    }
}

/// What a replaced handler means, in a warning, unless the caller knows better.
const UNHEARD: &str = "loopwatch no longer hears it and leaves the other handler in place";

/// What a replaced SIGCHLD handler means to a child watcher.
pub(crate) const CHILDREN_UNHEARD: &str =
    "child processes' exits will not be reported until it is put back";

fn warn_replaced(signal: Signal, found: Disposition, consequence: &str) {
    tracing::warn!(
        target: "asyncio",
        category = "RuntimeWarning",
        "{} handler was changed by outside code ({found:?}): {consequence}",
        signal_name(signal)
    );
}

/// A disposition found before loopwatch installed its own, as it may be put back:
/// one of loopwatch's own belongs to a loop or watcher that may be closed.
fn restorable(found: Disposition) -> Disposition {
    match found {
        Disposition::Wakeup | Disposition::Notify(_) => Disposition::Default,
        other => other,
    }
}

impl<K: Kernel> SignalRegistry<K> {
    /// The table, forgotten first if it was inherited through `fork`: the parent's
    /// loops are not this process's, and what they installed is left as found.
    fn lock(&self, kernel: &K) -> BlockingMutexGuard<'_, K, Wiring> {
        let mut wiring = self.wiring.lock();
        let pid = kernel.getpid();
        if wiring.pid != pid {
            wiring.pid = pid;
            wiring.signals.clear();
            wiring.wakeup.clear();
        }
        wiring
    }

    /// A new owner id.
    pub(crate) fn new_owner(&self, kernel: &K) -> OwnerId {
        let mut wiring = self.lock(kernel);
        let id = OwnerId(wiring.next_owner);
        wiring.next_owner += 1;
        id
    }

    /// Makes `owner` hear `signal` by `route`; nothing if it does already. The wakeup
    /// fd is set before the disposition, so that the first signal finds it.
    ///
    /// # Errors
    ///
    /// The kernel's: `EINVAL` for a signal that cannot be caught, `EBADF` for an fd
    /// that is not open. Nothing is changed then.
    pub(crate) fn hold(
        &self,
        kernel: &K,
        owner: OwnerId,
        signal: Signal,
        route: Route,
    ) -> std::result::Result<(), Errno> {
        let mut wiring = self.lock(kernel);
        if wiring
            .signals
            .get(&signal)
            .is_some_and(|held| held.owners.iter().any(|&(o, _)| o == owner))
        {
            return Ok(());
        }
        let mut pushed = false;
        if let Route::Wakeup(fd) = route {
            if !wiring.wakeup.iter().any(|&(o, _)| o == owner) {
                kernel.set_wakeup_fd(Some(fd))?;
                wiring.wakeup.push((owner, fd));
                pushed = true;
            }
        }
        let disposition = route.disposition();
        let installed = match wiring.signals.get_mut(&signal) {
            Some(held) => Self::take_over(kernel, signal, held, disposition),
            None => kernel
                .set_disposition(signal, disposition)
                .map(|found| Held {
                    original: restorable(found),
                    owners: Vec::new(),
                    warned: false,
                    chained: None,
                })
                .map(|held| {
                    wiring.signals.insert(signal, held);
                }),
        };
        match installed {
            Ok(()) => {
                let held = wiring.signals.get_mut(&signal).expect("held now");
                held.owners.push((owner, disposition));
                held.chain(kernel, signal);
                Ok(())
            }
            Err(errno) => {
                if pushed {
                    wiring.wakeup.pop();
                    let _ = kernel.set_wakeup_fd(wiring.wakeup.last().map(|&(_, fd)| fd));
                }
                Err(errno)
            }
        }
    }

    /// Installs `disposition` for a signal loopwatch holds already. If other code
    /// replaced loopwatch's disposition meanwhile, that one is what the OS had before
    /// this install, and what goes back when the last owner leaves.
    fn take_over(
        kernel: &K,
        signal: Signal,
        held: &mut Held,
        disposition: Disposition,
    ) -> std::result::Result<(), Errno> {
        let current = kernel.disposition(signal)?;
        if current != held.installed() {
            if !held.warned {
                let consequence =
                    if signal == Signal::SIGCHLD && matches!(current, Disposition::Foreign(_)) {
                        "loopwatch installs its own over it, runs it from its own, and puts it \
                     back when done"
                    } else {
                        "loopwatch installs its own over it and puts it back when done"
                    };
                warn_replaced(signal, current, consequence);
            }
            held.original = restorable(current);
        }
        if current != disposition {
            kernel.set_disposition(signal, disposition)?;
        }
        held.warned = false;
        Ok(())
    }

    /// `owner` stops hearing `signal`: the disposition goes to the owner before it,
    /// or back to what the OS had, unless other code replaced loopwatch's (then it is
    /// left and a warning says so). The wakeup fd passes on if `owner` has no other
    /// signal routed through it.
    ///
    /// # Errors
    ///
    /// The kernel's, from putting a disposition back; the table forgets `owner`
    /// anyway.
    pub(crate) fn release(
        &self,
        kernel: &K,
        owner: OwnerId,
        signal: Signal,
    ) -> std::result::Result<(), Errno> {
        let mut wiring = self.lock(kernel);
        let restored = Self::release_signal(kernel, &mut wiring, owner, signal);
        Self::release_wakeup(kernel, &mut wiring, owner);
        restored
    }

    /// `owner` stops hearing every signal it holds (a loop or watcher closing).
    /// Errors putting dispositions back are ignored: nothing better can be done while
    /// closing.
    pub(crate) fn release_all(&self, kernel: &K, owner: OwnerId) {
        let mut wiring = self.lock(kernel);
        let signals: Vec<Signal> = wiring
            .signals
            .iter()
            .filter(|(_, held)| held.owners.iter().any(|&(o, _)| o == owner))
            .map(|(&signal, _)| signal)
            .collect();
        for signal in signals {
            let _ = Self::release_signal(kernel, &mut wiring, owner, signal);
        }
        Self::release_wakeup(kernel, &mut wiring, owner);
    }

    fn release_signal(
        kernel: &K,
        wiring: &mut Wiring,
        owner: OwnerId,
        signal: Signal,
    ) -> std::result::Result<(), Errno> {
        let Some(held) = wiring.signals.get_mut(&signal) else {
            return Ok(());
        };
        let Some(at) = held.owners.iter().position(|&(o, _)| o == owner) else {
            return Ok(());
        };
        let before = held.installed();
        held.owners.remove(at);
        let after = held.installed();
        let mut result = Ok(());
        if after != before {
            match kernel.disposition(signal) {
                Ok(current) if current == before => {
                    result = kernel.set_disposition(signal, after).map(drop);
                }
                Ok(current) => {
                    if !held.warned {
                        warn_replaced(signal, current, UNHEARD);
                        held.warned = true;
                    }
                }
                Err(errno) => result = Err(errno),
            }
        }
        held.chain(kernel, signal);
        if held.owners.is_empty() {
            wiring.signals.remove(&signal);
        }
        result
    }

    /// Takes `owner` off the wakeup list if no signal of its goes through the wakeup
    /// fd any more; the fd passes to the loop before it, or is unset.
    fn release_wakeup(kernel: &K, wiring: &mut Wiring, owner: OwnerId) {
        let still = wiring.signals.values().any(|held| {
            held.owners
                .iter()
                .any(|&(o, d)| o == owner && d == Disposition::Wakeup)
        });
        let Some(at) = wiring.wakeup.iter().position(|&(o, _)| o == owner) else {
            return;
        };
        if still {
            return;
        }
        let was_last = at + 1 == wiring.wakeup.len();
        wiring.wakeup.remove(at);
        if was_last {
            // Setting an fd that is open (the loop before closes its pipe only after
            // leaving this list) or none cannot fail.
            let _ = kernel.set_wakeup_fd(wiring.wakeup.last().map(|&(_, fd)| fd));
        }
    }

    /// Whether `signal`, which loopwatch holds, still has the disposition loopwatch
    /// installed. If other code replaced it, warns once (`RuntimeWarning`) and
    /// answers `false`: loopwatch will not hear that signal. A signal loopwatch does
    /// not hold answers `true`.
    pub(crate) fn check(&self, kernel: &K, signal: Signal, consequence: &str) -> bool {
        let mut wiring = self.lock(kernel);
        let Some(held) = wiring.signals.get_mut(&signal) else {
            return true;
        };
        match kernel.disposition(signal) {
            Ok(current) if current != held.installed() => {
                if !held.warned {
                    warn_replaced(signal, current, consequence);
                    held.warned = true;
                }
                false
            }
            _ => true,
        }
    }
}

/// Warns (once per replacement, saying `consequence`) if loopwatch holds `signal`
/// and other code has replaced its handler since: the cheap check a watcher makes
/// before it counts on hearing a child's SIGCHLD. Returns whether loopwatch's handler
/// is in place.
pub(crate) fn check_handler<K: Kernel>(kernel: &K, signal: Signal, consequence: &str) -> bool {
    registry(kernel).check(kernel, signal, consequence)
}

/// One of a loop's signal handlers.
struct SignalEntry {
    handle: Handle,
    callback: RepeatingCallback,
}

/// A loop's signal handlers, the pipe the kernel's handler writes to, and its place in
/// the process's [`SignalRegistry`]. Lives in the loop's state, under its lock.
pub(super) struct LoopSignals {
    handlers: BTreeMap<Signal, SignalEntry>,
    /// `(read end, write end)` of the pipe the kernel's handler writes to.
    pipe: Option<(Fd, Fd)>,
    owner: Option<OwnerId>,
}

/// What a closing loop still has to give back, outside its lock.
pub(super) struct Closing {
    handlers: BTreeMap<Signal, SignalEntry>,
    pipe: Option<(Fd, Fd)>,
    owner: Option<OwnerId>,
}

impl Closing {
    /// Gives the signals back to the registry, then closes the pipe: the kernel's
    /// handler never writes to an fd this loop has closed.
    pub(super) fn release<K: Kernel>(self, kernel: &K) {
        if let Some(owner) = self.owner {
            // zoo: finding 1, the closed loop's handlers keep writing to the fd it closes below
            if !crate::zoo::active(kernel, Mutant::StaleWakeupFd) {
                registry(kernel).release_all(kernel, owner);
            }
        }
        if let Some((read, write)) = self.pipe {
            let _ = kernel.close(read);
            let _ = kernel.close(write);
        }
        // Dropped last, outside any lock: a callback's captures may hold the loop.
        drop(self.handlers);
    }
}

impl LoopSignals {
    pub(super) fn new() -> LoopSignals {
        LoopSignals {
            handlers: BTreeMap::new(),
            pipe: None,
            owner: None,
        }
    }

    /// The read end of the signal pipe, if the loop has one.
    pub(super) fn read_fd(&self) -> Option<Fd> {
        self.pipe.map(|(read, _)| read)
    }

    /// Everything, for [`Closing::release`].
    pub(super) fn take(&mut self) -> Closing {
        Closing {
            handlers: std::mem::take(&mut self.handlers),
            pipe: self.pipe.take(),
            owner: self.owner.take(),
        }
    }

    fn ensure_pipe<K: Kernel>(&mut self, kernel: &K, poller: &K::Poller) -> Result<(Fd, Fd)> {
        if let Some(pipe) = self.pipe {
            return Ok(pipe);
        }
        let (read, write) = kernel.pipe().map_err(Error::from)?;
        let setup = kernel
            .set_nonblocking(read, true)
            .and_then(|()| kernel.set_nonblocking(write, true))
            .and_then(|()| poller.register(read, Token(read.0 as usize), Interest::READABLE));
        if let Err(errno) = setup {
            let _ = kernel.close(read);
            let _ = kernel.close(write);
            return Err(Error::from(errno));
        }
        self.pipe = Some((read, write));
        Ok((read, write))
    }
}

fn uncatchable(signal: Signal, errno: Errno) -> Error {
    if errno == Errno::EINVAL {
        Error::runtime(format!("sig {} cannot be caught", signal.0))
    } else {
        Error::from(errno)
    }
}

impl<K: Kernel> EventLoop<K> {
    /// Runs `callback` in the loop whenever `signal` arrives, replacing any handler this
    /// loop had for it. Main thread only, as CPython's (it relies on the wakeup fd).
    ///
    /// Several loops may handle signals at once: a signal keeps loopwatch's handler
    /// while any loop has one for it, and the most recent loop to add its first
    /// handler gets the signals (one wakeup fd per process, as in CPython) until it
    /// removes its last or closes; then the loop before it gets them again.
    ///
    /// # Errors
    ///
    /// `ValueError` for a number outside 1..NSIG; `RuntimeError` if the loop is closed,
    /// if called outside the main thread (`set_wakeup_fd only works in main thread`),
    /// or for a signal that cannot be caught (`sig 9 cannot be caught`).
    pub fn add_signal_handler<F>(&self, signal: Signal, callback: F) -> Result<Handle>
    where
        F: FnMut() + Send + 'static,
    {
        check_signal(signal)?;
        let kernel = &self.inner.kernel;
        let poller = self.inner.poller.lock().clone().ok_or_else(closed_error)?;
        let mut state = self.inner.state.lock();
        if state.closed {
            return Err(closed_error());
        }
        self.inner.kernel_thread_check(&state)?;
        if !kernel.is_main_thread() {
            return Err(Error::runtime("set_wakeup_fd only works in main thread"));
        }
        let signals = &mut state.signals;
        let (_, write) = signals.ensure_pipe(kernel, &poller)?;
        let registry = registry(kernel);
        let owner = *signals
            .owner
            .get_or_insert_with(|| registry.new_owner(kernel));
        if !signals.handlers.contains_key(&signal) {
            registry
                .hold(kernel, owner, signal, Route::Wakeup(write))
                .map_err(|errno| uncatchable(signal, errno))?;
        }
        let handle = Handle::new(std::any::type_name::<F>());
        let entry = SignalEntry {
            handle: handle.clone(),
            callback: Repeating::new(Box::new(callback)),
        };
        if let Some(old) = signals.handlers.insert(signal, entry) {
            old.handle.cancel();
        }
        Ok(handle)
    }

    /// Removes this loop's handler for `signal`. The signal goes to the loop that had
    /// it before, or back to the disposition the OS had before loopwatch touched it.
    /// Returns whether a handler was set.
    ///
    /// # Errors
    ///
    /// `ValueError` for a number outside 1..NSIG, or, when a handler is set, a call from
    /// a thread other than the main thread (`signal only works in main thread`).
    pub fn remove_signal_handler(&self, signal: Signal) -> Result<bool> {
        check_signal(signal)?;
        let kernel = &self.inner.kernel;
        let mut state = self.inner.state.lock();
        if !state.signals.handlers.contains_key(&signal) {
            return Ok(false);
        }
        if !kernel.is_main_thread() {
            return Err(Error::value("signal only works in main thread"));
        }
        let signals = &mut state.signals;
        let entry = signals.handlers.remove(&signal).expect("checked above");
        entry.handle.cancel();
        if let Some(owner) = signals.owner {
            registry(kernel)
                .release(kernel, owner, signal)
                .map_err(|errno| uncatchable(signal, errno))?;
        }
        drop(state);
        drop(entry);
        Ok(true)
    }

    /// Drains the signal pipe and queues the handler of each signal number read.
    pub(super) fn read_signals(&self, fd: Fd) {
        let kernel = &self.inner.kernel;
        let mut buf = [0u8; SIGNAL_READ_CHUNK];
        loop {
            match kernel.read(fd, &mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    let mut state = self.inner.state.lock();
                    let state: &mut LoopState<K> = &mut state;
                    for &byte in &buf[..n] {
                        let Some(entry) = state.signals.handlers.get(&Signal(i32::from(byte)))
                        else {
                            continue;
                        };
                        let ready = Ready {
                            handle: entry.handle.clone(),
                            job: Job::Repeat(entry.callback.clone()),
                        };
                        state.ready.push_back(ready);
                    }
                }
                Err(Errno::EINTR) => continue,
                // EAGAIN: drained. Anything else: nothing more to read.
                Err(_) => return,
            }
        }
    }
}
