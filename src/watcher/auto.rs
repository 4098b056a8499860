//! `AutoChildWatcher`: the watcher to pick when CPython 3.7's exact behaviour is not
//! needed. It serves a loop in any thread, like Pidfd, and gives each child the best
//! way of waiting that this process has, falling back one rung at a time.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use super::orphans::Orphans;
use super::{
    ChildCallback, ChildWatcher, DIAGNOSTICS, PidfdChildWatcher, ReapFence, ThreadedChildWatcher,
    check_pid,
};
use crate::OsKernel;
use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, get_running_loop};
use crate::kernel::{Errno, Kernel, Pid};
use crate::loom::sync::Mutex;

/// A way of waiting for one child, best first: what [`AutoChildWatcher`] tries in this
/// order, and what [`AutoChildWatcher::rung_of`] says a child got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Rung {
    /// The pidfd the child's [`Process`](crate::Process) holds, polled by the loop,
    /// with no system call to register: opened right after the spawn, or made with
    /// the child where the request asks ([`SpawnRequest::pidfd`](crate::kernel::SpawnRequest::pidfd)),
    /// which leaves no window in which other code could reap the child before the
    /// pidfd names it.
    ProcessPidfd,
    /// A pidfd opened at registration with `pidfd_open` (Linux ≥ 5.3), polled by the
    /// loop. A child that other code reaps before the pidfd is opened is reported as
    /// `pidfd_open`'s `ProcessLookupError`, never confused with a newcomer.
    PidfdOpen,
    /// A waiter thread blocked on the child ([`ThreadedChildWatcher`]'s way, with its
    /// reused idle threads): works everywhere, costs a thread per running child.
    Waiter,
}

impl Rung {
    /// Every rung, best first.
    pub const ALL: [Rung; 3] = [Rung::ProcessPidfd, Rung::PidfdOpen, Rung::Waiter];

    /// A short name (`"process-pidfd"`, `"pidfd-open"`, `"waiter"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Rung::ProcessPidfd => "process-pidfd",
            Rung::PidfdOpen => "pidfd-open",
            Rung::Waiter => "waiter",
        }
    }

    /// Whether a child on this rung is waited for through a pidfd.
    fn is_pidfd(self) -> bool {
        matches!(self, Rung::ProcessPidfd | Rung::PidfdOpen)
    }
}

impl fmt::Display for Rung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Waits for each child the best way this process has, from a loop in any thread.
///
/// Each registration climbs down a ladder of [`Rung`]s until one takes the child:
///
/// 1. **[`Rung::ProcessPidfd`]**: a child started by
///    [`EventLoop::subprocess_exec`](crate::EventLoop::subprocess_exec) comes with its
///    process's pidfd in its reap fence; the loop polls that one.
/// 2. **[`Rung::PidfdOpen`]**: a pidfd opened for the pid, polled by the loop
///    (as [`PidfdChildWatcher`]).
/// 3. **[`Rung::Waiter`]**: a waiter thread (as [`ThreadedChildWatcher`], whose idle
///    threads are reused).
///
/// Where pidfds are missing or refused for the whole process (`pidfd_open` answers
/// `ENOSYS` before Linux 5.3, `EPERM` under a seccomp filter, `EINVAL`), the first
/// answer is remembered for the process and no later registration asks again: the
/// pidfd rungs are skipped from then on ([`AutoChildWatcher::pidfd_refused`] says
/// why). Where one child cannot have a pidfd (`EMFILE` or `ENFILE`: no fd left;
/// `ENOMEM`), that child alone goes to the next rung, and the next child tries a
/// pidfd again.
///
/// # Which rung a platform gets
///
/// | platform | rung |
/// |---|---|
/// | Linux ≥ 5.3, a child of `subprocess_exec` | [`Rung::ProcessPidfd`] (made with the child: `clone` with `CLONE_PIDFD`, 5.2) |
/// | Linux ≥ 5.3, a pid registered by hand | [`Rung::PidfdOpen`] |
/// | Linux before 5.3, or `pidfd_open` refused by seccomp | [`Rung::Waiter`] |
/// | any Linux, a child registered with no fd left | [`Rung::Waiter`], that child only |
/// | other Unix systems (no pidfds) | [`Rung::Waiter`] |
///
/// # The contract
///
/// It is [`PidfdChildWatcher`]'s, whatever the rung:
///
/// - [`ChildWatcher::add_child_handler`] must be called while a loop runs in the
///   calling thread (`RuntimeError('no running event loop')` otherwise); the callback
///   runs in that loop's thread once the child exits, with its returncode (R-1), or
///   255 and a warning when other code reaped it (R-2).
/// - A pid that no longer exists when a pidfd is opened for it gives
///   `ProcessLookupError`, and nothing is registered.
/// - Registering a pending pid again replaces its callback: one callback fires, once.
///   On the pidfd rungs the child is watched through a new registration (as Pidfd
///   does); a child on the waiter rung keeps its waiter, which reports to the new
///   callback in the loop where the child was first registered.
/// - [`ChildWatcher::remove_child_handler`] takes a pending registration back and
///   answers whether there was one; the callback never runs. A child on a pidfd rung
///   is then never waited for (its parent reaps it, as with Pidfd); one on the waiter
///   rung is still reaped by its waiter, and the report dropped.
/// - `attach_loop` does nothing, `is_active` is always true, and `close` ends idle
///   waiter threads; pending registrations survive it until they report.
/// - Children it was not given are never waited for, and no signal disposition is
///   touched.
///
/// # Orphans
///
/// A child whose loop is closed or dropped while the child still runs can no longer be
/// reported; [`PidfdChildWatcher`] then leaves it for someone else to reap, as CPython
/// does, and it stays a zombie once it exits. Auto does not: such a child on a pidfd
/// rung goes to the process's orphan reaper with its pidfd. One that has exited is
/// reaped at once; one still running is reaped (by its pidfd, never by a pid that may
/// have been reused) at the next registration, report or `close` of any
/// `AutoChildWatcher` of the process after it exits: best effort, as tokio's orphan
/// queue. [`AutoChildWatcher::orphans`] counts the ones still running. A child on the
/// waiter rung is reaped by its waiter whatever becomes of its loop. A registration
/// taken back with `remove_child_handler` is not an orphan: its child is the caller's
/// to reap.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
///
/// use loopwatch::kernel::{SpawnRequest, Threads};
/// use loopwatch::watcher::AutoChildWatcher;
/// use loopwatch::{EventLoop, OsKernel, WatcherRef};
///
/// loopwatch::set_child_watcher(Some(Arc::new(AutoChildWatcher::new()) as WatcherRef))?;
/// // From any thread: no main thread, no signal handler.
/// let worker = OsKernel.spawn_thread(
///     "worker",
///     Box::new(|| {
///         let event_loop = EventLoop::new().expect("a loop");
///         let lp = event_loop.clone();
///         let code = event_loop
///             .run_until_complete(async move {
///                 let process = lp.subprocess_exec(&SpawnRequest::new("/bin/sh", ["-c", "exit 5"]))?;
///                 Ok::<_, loopwatch::Error>(process.wait().await)
///             })
///             .expect("run")
///             .expect("spawned");
///         assert_eq!(code, 5);
///         event_loop.close().expect("close");
///     }),
/// )?;
/// OsKernel.join_thread(worker).expect("the worker");
/// loopwatch::set_child_watcher(None)?;
/// # Ok::<(), loopwatch::Error>(())
/// ```
#[derive(Clone)]
pub struct AutoChildWatcher<K: Kernel = OsKernel> {
    shared: Arc<Shared<K>>,
}

/// What the watcher and the callbacks it gave its rungs share.
struct Shared<K: Kernel> {
    kernel: K,
    /// The rungs this watcher may use (all, unless [`AutoChildWatcher::without`]).
    allowed: Vec<Rung>,
    pidfd: PidfdChildWatcher<K>,
    waiter: ThreadedChildWatcher<K>,
    /// The process's orphans: children of registrations whose loop went away.
    orphans: Arc<Orphans<K>>,
    /// A short lock: no kernel call is made while it is held.
    table: Mutex<Table<K>>,
}

/// The pending registrations by pid.
struct Table<K: Kernel> {
    next_token: u64,
    by_pid: BTreeMap<Pid, Entry<K>>,
}

/// One pending registration: the rung that waits for the child and the user's callback.
struct Entry<K: Kernel> {
    /// Which registration this is: a rung's report carrying another token is for a
    /// registration that was replaced or removed.
    token: u64,
    rung: Rung,
    callback: ChildCallback,
    /// On the waiter rung, the fence its waiter marks when it reaps the child: while
    /// it is not marked, the pid still names that child (a pid is reused only once
    /// reaped).
    fence: Option<ReapFence<K>>,
    /// On the waiter rung, set when a later registration of the pid took this waiter
    /// over (its callback replaced this one's): the later registration's fence, if it
    /// had one. A 255 from such a waiter is not trusted (see [`AutoChildWatcher::add`]).
    taken_over: Option<Option<ReapFence<K>>>,
}

/// Whether this process may have pidfds: `0` until a `pidfd_open` was refused for the
/// whole process, then that errno. One per process (kept in its
/// [`ProcessLocals`](crate::kernel::ProcessLocals)), so every watcher asks once.
#[derive(Default)]
struct PidfdProbe(AtomicI32);

impl PidfdProbe {
    fn of<K: Kernel>(kernel: &K) -> Arc<PidfdProbe> {
        kernel.process_locals().get_or_init(PidfdProbe::default)
    }

    fn refused(&self) -> Option<Errno> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            errno => Some(Errno(errno)),
        }
    }
}

/// What `pidfd_open`'s error means for the ladder.
enum PidfdFailure {
    /// Pidfds are missing or refused for the whole process.
    Process,
    /// This child cannot have one now; the next may.
    Child,
    /// The caller's error (a pid that does not exist, a loop that refuses the reader).
    Caller,
}

fn classify(errno: Option<Errno>) -> PidfdFailure {
    match errno {
        Some(Errno::ENOSYS | Errno::EPERM | Errno::EINVAL) => PidfdFailure::Process,
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOMEM | Errno::ENOSPC) => PidfdFailure::Child,
        _ => PidfdFailure::Caller,
    }
}

impl AutoChildWatcher<OsKernel> {
    /// A new watcher on the real OS.
    pub fn new() -> Self {
        AutoChildWatcher::with_kernel(OsKernel)
    }
}

impl Default for AutoChildWatcher<OsKernel> {
    fn default() -> Self {
        AutoChildWatcher::new()
    }
}

impl<K: Kernel> AutoChildWatcher<K> {
    /// A new watcher over `kernel`, with every rung.
    pub fn with_kernel(kernel: K) -> Self {
        AutoChildWatcher::with_rungs(kernel, Rung::ALL.to_vec())
    }

    fn with_rungs(kernel: K, allowed: Vec<Rung>) -> Self {
        AutoChildWatcher {
            shared: Arc::new(Shared {
                pidfd: PidfdChildWatcher::reaping_orphans(kernel.clone()),
                orphans: Orphans::of(&kernel),
                waiter: ThreadedChildWatcher::with_kernel(kernel.clone()),
                kernel,
                allowed,
                table: Mutex::new(Table {
                    next_token: 0,
                    by_pid: BTreeMap::new(),
                }),
            }),
        }
    }

    /// The same watcher without `rung`: for a program that must not start threads
    /// (without [`Rung::Waiter`], a child no pidfd rung takes gives the pidfd error),
    /// or to try the lower rungs where the upper ones work.
    ///
    /// # Errors
    ///
    /// `ValueError` if no rung would be left.
    pub fn without(self, rung: Rung) -> Result<Self> {
        let allowed: Vec<Rung> = self
            .shared
            .allowed
            .iter()
            .copied()
            .filter(|r| *r != rung)
            .collect();
        if allowed.is_empty() {
            return Err(Error::value("AutoChildWatcher needs at least one rung"));
        }
        Ok(AutoChildWatcher::with_rungs(
            self.shared.kernel.clone(),
            allowed,
        ))
    }

    /// The rung that waits for `pid`, while it is registered.
    pub fn rung_of(&self, pid: Pid) -> Option<Rung> {
        self.shared.table.lock().by_pid.get(&pid).map(|e| e.rung)
    }

    /// Why pidfds are not used in this process: the errno with which `pidfd_open` was
    /// refused for the whole process (`ENOSYS`, `EPERM`, `EINVAL`), or `None` while
    /// no such answer was seen.
    pub fn pidfd_refused(&self) -> Option<Errno> {
        PidfdProbe::of(&self.shared.kernel).refused()
    }

    /// Children of this process whose loop went away while they ran, still running:
    /// the orphan reaper reaps each once it has exited (see the type's
    /// documentation).
    pub fn orphans(&self) -> usize {
        self.shared.orphans.len()
    }

    /// Waiter threads idling for the next child (see
    /// [`ThreadedChildWatcher::idle_threads`]).
    pub fn idle_threads(&self) -> usize {
        self.shared.waiter.idle_threads()
    }

    fn allows(&self, rung: Rung) -> bool {
        self.shared.allowed.contains(&rung)
    }

    /// The callback a rung gets for the registration `token` of `pid`.
    fn report_to(&self, pid: Pid, token: u64) -> ChildCallback {
        let shared = Arc::downgrade(&self.shared);
        Box::new(move |pid_seen, code| {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let entry = {
                let mut table = shared.table.lock();
                match table.by_pid.get(&pid) {
                    Some(entry) if entry.token == token => table.by_pid.remove(&pid),
                    _ => None,
                }
            };
            if let Some(entry) = entry {
                match entry.taken_over {
                    // The waiter found its child reaped elsewhere, but the pid was
                    // registered again meanwhile: the later registration may be for a
                    // newcomer that took the pid (after other code reaped the first
                    // child), which this waiter never saw. It gets a waiter of its own,
                    // which reports the newcomer, or 255 again if the pid names no child
                    // of ours.
                    Some(fence) if code == 255 => {
                        let watcher = AutoChildWatcher {
                            shared: shared.clone(),
                        };
                        if let Err(error) = watcher.add(pid, fence, entry.callback) {
                            tracing::warn!(
                                target: DIAGNOSTICS,
                                pid = pid.0,
                                "pid {} could not be watched again ({error}): its exit is lost",
                                pid.0
                            );
                        }
                    }
                    _ => (entry.callback)(pid_seen, code),
                }
            }
            shared.orphans.reap(&shared.kernel);
        })
    }

    fn add(&self, pid: Pid, fence: Option<ReapFence<K>>, callback: ChildCallback) -> Result<()> {
        check_pid(pid)?;
        let kernel = &self.shared.kernel;
        drop(get_running_loop(kernel)?);
        self.shared.orphans.reap(kernel);
        // A child on the waiter rung that its waiter has not reaped yet keeps its
        // waiter: a second waiter would race the first for the status, and one of
        // them would report 255. Once reaped, the pid may name a newcomer, which gets
        // a registration of its own below (the old report is then dropped).
        // (The fence is a kernel lock: it is read with the table's short lock released.
        // The waiter's report reaches this loop's thread, which is busy here, so the
        // callback swapped below is the one it finds.)
        let waiting = {
            let table = self.shared.table.lock();
            match table.by_pid.get(&pid) {
                Some(entry) if entry.rung == Rung::Waiter => {
                    entry.fence.clone().map(|fence| (entry.token, fence))
                }
                _ => None,
            }
        };
        let same_child = waiting.filter(|(_, fence)| !fence.is_reaped());
        let callback = match same_child {
            Some((waiting, _)) => {
                let mut table = self.shared.table.lock();
                match table.by_pid.get_mut(&pid) {
                    Some(entry) if entry.token == waiting => {
                        entry.taken_over = Some(fence.clone());
                        Err(std::mem::replace(&mut entry.callback, callback))
                    }
                    _ => Ok(callback),
                }
            }
            None => Ok(callback),
        };
        // The replaced callback is dropped with the lock released: it may hold a loop.
        let callback = match callback {
            Ok(callback) => callback,
            Err(replaced) => {
                drop(replaced);
                return Ok(());
            }
        };
        let token = {
            let mut table = self.shared.table.lock();
            table.next_token += 1;
            table.next_token
        };
        let (rung, fence) = self.climb(pid, fence, token)?;
        let replaced = {
            let mut table = self.shared.table.lock();
            table.by_pid.insert(
                pid,
                Entry {
                    token,
                    rung,
                    callback,
                    fence,
                    taken_over: None,
                },
            )
        };
        // A registration on a pidfd rung that this one did not replace there (the new
        // one is on the waiter rung) is taken back from the pidfd watcher.
        if let Some(old) = replaced {
            if old.rung.is_pidfd() && !rung.is_pidfd() {
                self.shared.pidfd.remove_child_handler(pid);
            }
            drop(old);
        }
        Ok(())
    }

    /// Registers `pid` on the first rung that takes it; gives the rung, and on the
    /// waiter rung the fence its waiter marks.
    fn climb(
        &self,
        pid: Pid,
        fence: Option<ReapFence<K>>,
        token: u64,
    ) -> Result<(Rung, Option<ReapFence<K>>)> {
        let kernel = &self.shared.kernel;
        let probe = PidfdProbe::of(kernel);
        let process_pidfd =
            fence.as_ref().is_some_and(|f| f.pidfd().is_some()) && self.allows(Rung::ProcessPidfd);
        let pidfd_rung = if process_pidfd {
            Some(Rung::ProcessPidfd)
        } else if self.allows(Rung::PidfdOpen) && probe.refused().is_none() {
            Some(Rung::PidfdOpen)
        } else {
            None
        };
        let mut last_error = None;
        if let Some(rung) = pidfd_rung {
            let callback = self.report_to(pid, token);
            let added = match fence.clone() {
                Some(fence) => self
                    .shared
                    .pidfd
                    .add_child_handler_fenced(pid, fence, callback),
                None => self.shared.pidfd.add_child_handler(pid, callback),
            };
            match added {
                Ok(()) => return Ok((rung, None)),
                Err(error) => match classify(error.errno()) {
                    PidfdFailure::Caller => return Err(error),
                    PidfdFailure::Process => {
                        let errno = error.errno().map_or(Errno::ENOSYS.0, |e| e.0);
                        if probe
                            .0
                            .compare_exchange(0, errno, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                        {
                            tracing::info!(
                                target: DIAGNOSTICS,
                                errno = errno,
                                "pidfd_open refused ({error}): AutoChildWatcher uses its \
                                 next rung for every child of this process"
                            );
                        }
                        last_error = Some(error);
                    }
                    PidfdFailure::Child => {
                        tracing::debug!(
                            target: DIAGNOSTICS,
                            pid = pid.0,
                            "no pidfd for pid {} ({error}): AutoChildWatcher uses its next \
                             rung for this child",
                            pid.0
                        );
                        last_error = Some(error);
                    }
                },
            }
        }
        if self.allows(Rung::Waiter) {
            let callback = self.report_to(pid, token);
            // Always fenced: the fence says when the waiter has reaped the child.
            let fence = fence.unwrap_or_else(|| ReapFence::new(kernel));
            self.shared
                .waiter
                .add_child_handler_fenced(pid, fence.clone(), callback)?;
            return Ok((Rung::Waiter, Some(fence)));
        }
        Err(last_error.unwrap_or_else(|| Error::from(probe.refused().unwrap_or(Errno::ENOSYS))))
    }
}

impl<K: Kernel> ChildWatcher<K> for AutoChildWatcher<K> {
    /// `None`: it does its own work.
    fn inner(&self) -> Option<&dyn ChildWatcher<K>> {
        None
    }

    /// Registers `pid` on the best rung that takes it (see the type's documentation);
    /// `callback(pid, returncode)` runs in the loop running in the calling thread once
    /// the child exits.
    ///
    /// # Errors
    ///
    /// `ValueError` for a pid ≤ 0; `RuntimeError('no running event loop')` when no loop
    /// runs in the calling thread; `ProcessLookupError` for a pid that no longer
    /// exists; the error of the last rung tried when none takes the child (a waiter
    /// thread that cannot be started). Nothing new stays registered then.
    fn add_child_handler(&self, pid: Pid, callback: ChildCallback) -> Result<()> {
        self.add(pid, None, callback)
    }

    /// # Errors
    ///
    /// As [`ChildWatcher::add_child_handler`].
    fn add_child_handler_fenced(
        &self,
        pid: Pid,
        fence: ReapFence<K>,
        callback: ChildCallback,
    ) -> Result<()> {
        self.add(pid, Some(fence), callback)
    }

    /// Takes back `pid`'s pending registration, if any, and answers whether there was
    /// one; its callback never runs (see the type's documentation).
    fn remove_child_handler(&self, pid: Pid) -> bool {
        let entry = self.shared.table.lock().by_pid.remove(&pid);
        match entry {
            Some(entry) => {
                if entry.rung.is_pidfd() {
                    self.shared.pidfd.remove_child_handler(pid);
                }
                drop(entry);
                true
            }
            None => false,
        }
    }

    /// Does nothing: callbacks go to the loop running where each child was registered.
    fn attach_loop(&self, _event_loop: Option<EventLoop<K>>) -> Result<()> {
        Ok(())
    }

    /// Ends idle waiter threads; pending registrations report as before.
    ///
    /// # Errors
    ///
    /// None.
    fn close(&self) -> Result<()> {
        self.shared.orphans.reap(&self.shared.kernel);
        self.shared.pidfd.close()?;
        self.shared.waiter.close()
    }

    /// Always `true`.
    fn is_active(&self) -> bool {
        true
    }
}

impl<K: Kernel> fmt::Debug for AutoChildWatcher<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.shared.table.lock();
        let pids: Vec<(i32, Rung)> = table.by_pid.iter().map(|(p, e)| (p.0, e.rung)).collect();
        f.debug_struct("AutoChildWatcher")
            .field("pids", &pids)
            .finish()
    }
}
