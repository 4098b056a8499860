//! Event-loop policies: the process-wide policy and the per-context loops it manages.
//!
//! - [`AbstractEventLoopPolicy`] is the policy interface. Every method has a provided
//!   body that does the default policy's work through `&self`, on the state returned by
//!   [`AbstractEventLoopPolicy::state`]; with no state (the trait's own default) every
//!   method raises `NotImplementedError`, as CPython's abstract class does (A-1).
//! - [`DefaultEventLoopPolicy`] supplies that state: its context is the current thread.
//! - "Subclassing `DefaultEventLoopPolicy`" is implementing the trait for a type that
//!   owns a [`PolicyState`] and overriding some methods. The provided bodies call the
//!   others through `self`, so an override is seen by them (C-2:
//!   `get_event_loop` creates through `self.set_event_loop(self.new_event_loop())`).
//!   An override calls [`base`]'s functions where Python would call `super()`.
//!
//! The free functions here mirror `asyncio.events` for any kernel; the crate root has
//! the same for the real OS.

pub mod base;

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Result;
use crate::event_loop::EventLoop;
use crate::kernel::{Kernel, ThreadId};
use crate::loom::sync::Mutex;
use crate::sync::BlockingMutex;
use crate::sys::unix::OsKernel;
use crate::watcher::{ChildWatcher, SafeChildWatcher};
use std::sync::Arc;

/// The policy interface (asyncio's `AbstractEventLoopPolicy`), with the default
/// (Unix) policy's behaviour as provided methods.
///
/// # Example
///
/// "Subclassing" the default policy: own a [`PolicyState`], return it from
/// [`state`](AbstractEventLoopPolicy::state), override what changes and call
/// [`base`] where Python calls `super()`. The provided methods call the others through
/// `self`, so they see the override (C-2). Without a state, every provided method
/// raises `NotImplementedError` naming itself (A-1).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// use loopwatch::policy::base;
/// use loopwatch::{AbstractEventLoopPolicy, ErrorKind, EventLoop, PolicyState, Result};
///
/// /// The default policy, counting the loops it makes.
/// struct Counting {
///     state: PolicyState,
///     made: AtomicUsize,
/// }
///
/// impl AbstractEventLoopPolicy for Counting {
///     fn state(&self) -> Option<&PolicyState> {
///         Some(&self.state)
///     }
///     fn new_event_loop(&self) -> Result<EventLoop> {
///         self.made.fetch_add(1, Ordering::SeqCst);
///         base::new_event_loop(self) // super().new_event_loop()
///     }
/// }
///
/// let policy = Counting { state: PolicyState::new(loopwatch::OsKernel), made: AtomicUsize::new(0) };
/// // In the main thread (a doc test runs there) the first call creates the loop,
/// // through the override.
/// let event_loop = policy.get_event_loop()?;
/// assert!(policy.get_event_loop()? == event_loop);
/// assert_eq!(policy.made.load(Ordering::SeqCst), 1);
/// policy.set_event_loop(None)?;
/// event_loop.close()?;
///
/// /// A policy with neither state nor overrides: the abstract class.
/// struct Abstract;
/// impl AbstractEventLoopPolicy for Abstract {}
///
/// let error = Abstract.get_event_loop().unwrap_err();
/// assert_eq!(error.kind(), ErrorKind::NotImplementedError);
/// assert!(error.message().starts_with("AbstractEventLoopPolicy.get_event_loop: "));
/// # Ok::<(), loopwatch::Error>(())
/// ```
pub trait AbstractEventLoopPolicy<K: Kernel = OsKernel>: Send + Sync + 'static {
    /// The per-context state the provided methods work on; `None` (the default) makes
    /// them raise `NotImplementedError` ("AbstractEventLoopPolicy.get_event_loop: the
    /// policy neither overrides it nor returns a PolicyState from state() …": CPython's
    /// class, with a message that says what to do).
    fn state(&self) -> Option<&PolicyState<K>> {
        None
    }

    /// The loop of the current context (C-2, C-3): the one set for this thread, or, in
    /// the main thread before any `set_event_loop`, a new one made current through
    /// `self.set_event_loop(self.new_event_loop())`.
    ///
    /// # Errors
    ///
    /// `RuntimeError` "There is no current event loop in thread 'NAME'." when none is
    /// set and none may be created.
    fn get_event_loop(&self) -> Result<EventLoop<K>> {
        base::get_event_loop(self)
    }

    /// Makes `event_loop` the current context's loop; `None` also stops the main
    /// thread's auto-creation for good (C-4, C-5).
    fn set_event_loop(&self, event_loop: Option<EventLoop<K>>) -> Result<()> {
        base::set_event_loop(self, event_loop)
    }

    /// A new loop, not made current anywhere (C-8).
    fn new_event_loop(&self) -> Result<EventLoop<K>> {
        base::new_event_loop(self)
    }

    /// The child watcher, the same object every time; created on first use and, in
    /// the main thread, attached to the main thread's current loop (D-2, D-3).
    fn get_child_watcher(&self) -> Result<WatcherRef<K>> {
        base::get_child_watcher(self)
    }

    /// Replaces the child watcher, closing the old one (D-4). The new one is not
    /// attached; `None` makes the next `get_child_watcher` create a default.
    fn set_child_watcher(&self, watcher: Option<WatcherRef<K>>) -> Result<()> {
        base::set_child_watcher(self, watcher)
    }
}

/// Per-thread state of one context (CPython's `_Local`).
#[derive(Debug)]
pub(crate) struct Local<K: Kernel> {
    pub(crate) event_loop: Option<EventLoop<K>>,
    pub(crate) set_called: bool,
}

impl<K: Kernel> Default for Local<K> {
    fn default() -> Self {
        Local {
            event_loop: None,
            set_called: false,
        }
    }
}

/// What the default policy keeps: the kernel and, per thread, the current loop and
/// whether `set_event_loop` was ever called there (CPython's `self._local`).
pub struct PolicyState<K: Kernel = OsKernel> {
    kernel: K,
    locals: Mutex<BTreeMap<ThreadId, Local<K>>>,
    /// The child watcher (CPython's `self._watcher`), created on first use (D-1).
    /// Held only to read or replace the slot: never while a watcher is created or
    /// attached, which runs other code (the factory, child callbacks).
    pub(crate) watcher: BlockingMutex<K, Option<WatcherRef<K>>>,
    /// Serialises the creation of the default watcher, so the factory runs once
    /// (D-1). A kernel lock: the factory may make kernel calls.
    pub(crate) creation: BlockingMutex<K, ()>,
    /// The thread running the factory, if one is: a factory that asks for the watcher
    /// it is building gets an error instead of a deadlock.
    pub(crate) creator: Mutex<Option<ThreadId>>,
    /// Builds the default watcher.
    pub(crate) watcher_factory: WatcherFactory<K>,
}

/// A shared child watcher, as policies hand it out.
pub type WatcherRef<K = OsKernel> = Arc<dyn ChildWatcher<K>>;

/// Builds a policy's default child watcher.
pub type WatcherFactory<K = OsKernel> = Arc<dyn Fn(&K) -> WatcherRef<K> + Send + Sync>;

impl<K: Kernel> PolicyState<K> {
    /// Fresh state: no thread has a loop, and the default watcher is
    /// [`SafeChildWatcher`] (CPython 3.7, D-2).
    pub fn new(kernel: K) -> PolicyState<K> {
        let factory: WatcherFactory<K> =
            Arc::new(|kernel: &K| Arc::new(SafeChildWatcher::with_kernel(kernel.clone())));
        PolicyState::with_watcher_factory(kernel, factory)
    }

    /// Fresh state whose default watcher `factory` builds (e.g. a Pidfd watcher),
    /// without writing a policy.
    pub fn with_watcher_factory(kernel: K, factory: WatcherFactory<K>) -> PolicyState<K> {
        PolicyState {
            watcher: BlockingMutex::new(&kernel, None),
            creation: BlockingMutex::new(&kernel, ()),
            creator: Mutex::new(None),
            kernel,
            locals: Mutex::new(BTreeMap::new()),
            watcher_factory: factory,
        }
    }

    /// The kernel the policy's loops run on.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// The child watcher if one was created or set, without creating one (CPython's
    /// `policy._watcher`).
    pub fn current_watcher(&self) -> Option<WatcherRef<K>> {
        self.watcher.lock().clone()
    }

    /// Runs `f` on the calling thread's entry.
    pub(crate) fn with_local<R>(&self, f: impl FnOnce(&mut Local<K>) -> R) -> R {
        let thread = self.kernel.current_thread();
        let mut locals = self.locals.lock();
        f(locals.entry(thread).or_default())
    }
}

impl<K: Kernel> fmt::Debug for PolicyState<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyState")
            .field("kernel", &self.kernel)
            .field("threads", &self.locals.lock().len())
            .finish()
    }
}

/// The default policy: one loop per thread, auto-created in the main thread only.
///
/// # Example
///
/// The default policy with [`PidfdChildWatcher`](crate::PidfdChildWatcher) as its
/// default watcher instead of [`SafeChildWatcher`], made the process's policy:
///
/// ```
/// use std::sync::Arc;
///
/// use loopwatch::kernel::SpawnRequest;
/// use loopwatch::{
///     ChildWatcher, DefaultEventLoopPolicy, PidfdChildWatcher, WatcherFactory, WatcherRef,
/// };
///
/// let factory: WatcherFactory =
///     Arc::new(|_kernel| Arc::new(PidfdChildWatcher::new()) as WatcherRef);
/// let policy = DefaultEventLoopPolicy::with_watcher_factory(loopwatch::OsKernel, factory);
/// loopwatch::set_event_loop_policy(Some(Arc::new(policy)));
/// assert_eq!(loopwatch::get_child_watcher()?.type_name(), "PidfdChildWatcher");
///
/// let event_loop = loopwatch::get_event_loop()?; // the main thread's, created now
/// let lp = event_loop.clone();
/// let code = event_loop.run_until_complete(async move {
///     let process = lp.subprocess_exec(&SpawnRequest::new("/bin/sh", ["-c", "exit 7"]))?;
///     Ok::<_, loopwatch::Error>(process.wait().await)
/// })??;
/// assert_eq!(code, 7);
/// event_loop.close()?;
/// loopwatch::set_event_loop_policy(None); // back to a fresh default policy
/// # Ok::<(), loopwatch::Error>(())
/// ```
#[derive(Debug)]
pub struct DefaultEventLoopPolicy<K: Kernel = OsKernel> {
    state: PolicyState<K>,
}

impl DefaultEventLoopPolicy<OsKernel> {
    /// The default policy on the real OS.
    pub fn new() -> DefaultEventLoopPolicy<OsKernel> {
        DefaultEventLoopPolicy::with_kernel(OsKernel)
    }
}

impl Default for DefaultEventLoopPolicy<OsKernel> {
    fn default() -> Self {
        DefaultEventLoopPolicy::new()
    }
}

impl<K: Kernel> DefaultEventLoopPolicy<K> {
    /// The default policy over `kernel`.
    pub fn with_kernel(kernel: K) -> DefaultEventLoopPolicy<K> {
        DefaultEventLoopPolicy {
            state: PolicyState::new(kernel),
        }
    }

    /// The default policy over `kernel` whose default child watcher is an
    /// [`AutoChildWatcher`](crate::AutoChildWatcher): the choice for a program that
    /// runs loops in any thread (`cargo test`'s worker threads too) and does not need
    /// CPython 3.7's Safe watcher. [`DefaultEventLoopPolicy::new`] keeps Safe, as
    /// CPython 3.7 does (spec D-2).
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use loopwatch::kernel::{SpawnRequest, Threads};
    /// use loopwatch::{ChildWatcher, DefaultEventLoopPolicy, OsKernel};
    ///
    /// let policy = DefaultEventLoopPolicy::with_auto_watcher(OsKernel);
    /// loopwatch::set_event_loop_policy(Some(Arc::new(policy)));
    /// // Not the main thread: Safe could not serve this loop, Auto can.
    /// let worker = OsKernel.spawn_thread(
    ///     "worker",
    ///     Box::new(|| {
    ///         let watcher = loopwatch::get_child_watcher().expect("the watcher");
    ///         assert_eq!(watcher.type_name(), "AutoChildWatcher");
    ///         let event_loop = loopwatch::new_event_loop().expect("a loop");
    ///         let lp = event_loop.clone();
    ///         let code = event_loop
    ///             .run_until_complete(async move {
    ///                 let process = lp.subprocess_exec(&SpawnRequest::new("/bin/sh", ["-c", "exit 3"]))?;
    ///                 Ok::<_, loopwatch::Error>(process.wait().await)
    ///             })
    ///             .expect("run")
    ///             .expect("spawned");
    ///         assert_eq!(code, 3);
    ///         event_loop.close().expect("close");
    ///     }),
    /// )?;
    /// OsKernel.join_thread(worker).expect("the worker");
    /// loopwatch::set_event_loop_policy(None); // back to a fresh default policy
    /// # Ok::<(), loopwatch::Error>(())
    /// ```
    pub fn with_auto_watcher(kernel: K) -> DefaultEventLoopPolicy<K> {
        let factory: WatcherFactory<K> = Arc::new(|kernel: &K| {
            Arc::new(crate::AutoChildWatcher::with_kernel(kernel.clone())) as WatcherRef<K>
        });
        DefaultEventLoopPolicy::with_watcher_factory(kernel, factory)
    }

    /// The default policy over `kernel`, whose default child watcher `factory` builds.
    pub fn with_watcher_factory(
        kernel: K,
        factory: WatcherFactory<K>,
    ) -> DefaultEventLoopPolicy<K> {
        DefaultEventLoopPolicy {
            state: PolicyState::with_watcher_factory(kernel, factory),
        }
    }
}

impl<K: Kernel> AbstractEventLoopPolicy<K> for DefaultEventLoopPolicy<K> {
    fn state(&self) -> Option<&PolicyState<K>> {
        Some(&self.state)
    }
}

/// A shared policy object, as the process-wide slot holds it.
pub type PolicyRef<K> = Arc<dyn AbstractEventLoopPolicy<K>>;

/// `events._event_loop_policy` under `events._lock`, one per process. A kernel lock:
/// making the default policy on first use calls the kernel.
struct PolicySlot<K: Kernel>(BlockingMutex<K, Option<PolicyRef<K>>>);

fn policy_slot<K: Kernel>(kernel: &K) -> Arc<PolicySlot<K>> {
    kernel
        .process_locals()
        .get_or_init(|| PolicySlot(BlockingMutex::new(kernel, None)))
}

/// The policy of `kernel`'s process, created as a [`DefaultEventLoopPolicy`] on first
/// use; the same object until it is replaced (P-1).
pub fn get_event_loop_policy<K: Kernel>(kernel: &K) -> PolicyRef<K> {
    let slot = policy_slot(kernel);
    let mut policy = slot.0.lock();
    policy
        .get_or_insert_with(|| Arc::new(DefaultEventLoopPolicy::with_kernel(kernel.clone())))
        .clone()
}

/// Replaces the process's policy; `None` restores the default by making the next
/// [`get_event_loop_policy`] build a fresh one (P-2, P-3). Passing a non-policy is
/// ruled out by the type (P-2's `TypeError`).
pub fn set_event_loop_policy<K: Kernel>(kernel: &K, policy: Option<PolicyRef<K>>) {
    let slot = policy_slot(kernel);
    let old = std::mem::replace(&mut *slot.0.lock(), policy);
    // Dropped outside the lock: the old policy's loops and watcher may call back here.
    drop(old);
}

pub use crate::event_loop::{get_running_loop, try_get_running_loop};

/// The running loop if there is one, else the policy's `get_event_loop()` (P-6).
pub fn get_event_loop<K: Kernel>(kernel: &K) -> Result<EventLoop<K>> {
    match try_get_running_loop(kernel) {
        Some(event_loop) => Ok(event_loop),
        None => get_event_loop_policy(kernel).get_event_loop(),
    }
}

/// `get_event_loop_policy().set_event_loop(event_loop)` (P-7).
pub fn set_event_loop<K: Kernel>(kernel: &K, event_loop: Option<EventLoop<K>>) -> Result<()> {
    get_event_loop_policy(kernel).set_event_loop(event_loop)
}

/// `get_event_loop_policy().get_child_watcher()` (P-7).
pub fn get_child_watcher<K: Kernel>(kernel: &K) -> Result<WatcherRef<K>> {
    get_event_loop_policy(kernel).get_child_watcher()
}

/// `get_event_loop_policy().set_child_watcher(watcher)` (P-7).
pub fn set_child_watcher<K: Kernel>(kernel: &K, watcher: Option<WatcherRef<K>>) -> Result<()> {
    get_event_loop_policy(kernel).set_child_watcher(watcher)
}

/// `get_event_loop_policy().new_event_loop()` (P-7).
pub fn new_event_loop<K: Kernel>(kernel: &K) -> Result<EventLoop<K>> {
    get_event_loop_policy(kernel).new_event_loop()
}
