//! Event-loop policies, each behaviour written once and run on both kernels:
//! `name [os]` on the real OS, `name [sim]` on the simulator over many seeds. Ports of
//! CPython's `PolicyTests` (test_events.py) keep their names.
//!
//! A `harness = false` binary on `loopwatch_sim::testing`: each test runs on the
//! process's main thread, where the default policy creates a loop on the first
//! `get_event_loop()` (C-2), and what concerns other threads runs in a thread the
//! body starts. On the simulator the body runs on the simulated process's main thread
//! (thread 1), and each seed's process has its own policy slot; on the real OS the
//! harness puts back a fresh default policy before each test. Each test checks that
//! it leaves no fd, child or thread behind.
//!
//! | clause | tests |
//! |---|---|
//! | A-1 | `event_loop_policy` |
//! | P-1 | `get_event_loop_policy` |
//! | P-2 | `set_event_loop_policy`; the `TypeError` for a non-policy is enforced by types (`Option<PolicyRef>`) |
//! | P-3 | `set_event_loop_policy` |
//! | P-4 | `get_event_loop_returns_running_loop`, `running_loop_is_visible_inside_only` (event_loop.rs) |
//! | P-5 | `get_event_loop_returns_running_loop` |
//! | P-6 | `get_event_loop_returns_running_loop`, `running_loop_is_visible_inside_only` (event_loop.rs) |
//! | P-7 | `module_functions_delegate_to_policy` |
//! | C-1 | `loops_are_per_thread` |
//! | C-2 | `get_event_loop_thread`, `get_event_loop_calls_set_event_loop_in_worker_never` |
//! | C-3 | `get_event_loop_thread`, `get_event_loop_after_set_none` |
//! | C-4 | `get_event_loop_after_set_none` |
//! | C-5 | `set_event_loop`; the `TypeError` for a non-loop is enforced by types (`Option<EventLoop>`), so the "set called before validation" quirk cannot be observed |
//! | C-8 | `new_event_loop_has_no_side_effects` |
//!
//! `cargo test -p loopwatch-sim --test policy [NAME]`; `LOOPWATCH_SEEDS=N` and
//! `LOOPWATCH_SEED=S` choose the simulator's seeds.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loopwatch::kernel::Kernel;
use loopwatch::policy::{self, base};
use loopwatch::{
    AbstractEventLoopPolicy, DefaultEventLoopPolicy, Error, ErrorKind, EventLoop, PolicyRef,
    PolicyState, Result,
};
use loopwatch_sim::testing::{self, Body, Log};

loopwatch_sim::bodies!(
    event_loop_policy,
    get_event_loop_thread,
    new_event_loop_has_no_side_effects,
    set_event_loop,
    get_event_loop_after_set_none,
    loops_are_per_thread,
    get_event_loop_policy,
    set_event_loop_policy,
    module_functions_delegate_to_policy,
    get_event_loop_returns_running_loop,
    get_event_loop_calls_set_event_loop_in_worker_never,
);

/// Runs `body` in a new thread of `k` named `name` and returns its result.
fn in_thread<K: Kernel, T: Send + 'static>(
    k: &K,
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let slot = Log::new();
    let out = slot.clone();
    let handle = k
        .spawn_thread(name, Box::new(move || out.push(body())))
        .unwrap();
    k.join_thread(handle).unwrap();
    slot.take().pop().expect("the thread produced a result")
}

/// `policy.get_event_loop()`'s error, as (kind, message).
fn no_loop<K: Kernel>(policy: &dyn AbstractEventLoopPolicy<K>) -> (ErrorKind, String) {
    let err = policy.get_event_loop().unwrap_err();
    (err.kind(), err.message().to_string())
}

/// C-3's error for the thread named `name`.
fn no_loop_in(name: &str) -> (ErrorKind, String) {
    (
        ErrorKind::RuntimeError,
        format!("There is no current event loop in thread '{name}'."),
    )
}

/// A policy that implements nothing: the abstract class.
struct Abstract;
impl<K: Kernel> AbstractEventLoopPolicy<K> for Abstract {}

impl Body for event_loop_policy {
    // Port of test_event_loop_policy: every method of the abstract policy
    // raises NotImplementedError.
    fn run<K: Kernel>(&self, _: &K) {
        let policy: &dyn AbstractEventLoopPolicy<K> = &Abstract;
        let kinds = [
            policy.get_event_loop().map(drop),
            policy.set_event_loop(None),
            policy.new_event_loop().map(drop),
            policy.get_child_watcher().map(drop),
            policy.set_child_watcher(None),
        ]
        .map(|result| result.unwrap_err().kind());
        assert_eq!(kinds, [ErrorKind::NotImplementedError; 5]);
    }
}

impl Body for get_event_loop_thread {
    // Port of test_get_event_loop_thread (C-2, C-3): in a thread that is not the main
    // thread neither a fresh policy nor the process's creates a loop, and the error
    // names the thread; in the main thread the process's policy creates one, once.
    fn run<K: Kernel>(&self, k: &K) {
        let k2 = k.clone();
        let errors = in_thread(k, "Worker-X", move || {
            let fresh = DefaultEventLoopPolicy::with_kernel(k2.clone());
            let process = policy::get_event_loop(&k2).unwrap_err();
            (
                no_loop(&fresh),
                (process.kind(), process.message().to_string()),
            )
        });
        assert_eq!(errors, (no_loop_in("Worker-X"), no_loop_in("Worker-X")));
        let first = policy::get_event_loop(k).unwrap();
        assert_eq!(policy::get_event_loop(k).unwrap(), first);
        assert!(policy::get_event_loop_policy(k).state().is_some());
        first.close().unwrap();
    }
}

impl Body for new_event_loop_has_no_side_effects {
    // Port of test_new_event_loop (C-8): a new loop each call, made current nowhere:
    // the main thread's get_event_loop then creates a third, and another thread has
    // none.
    fn run<K: Kernel>(&self, k: &K) {
        let policy = Arc::new(DefaultEventLoopPolicy::with_kernel(k.clone()));
        let a = policy.new_event_loop().unwrap();
        let b = policy.new_event_loop().unwrap();
        assert_ne!(a, b);
        let other = policy.clone();
        let elsewhere = in_thread(k, "Worker-N", move || no_loop(&*other));
        assert_eq!(elsewhere, no_loop_in("Worker-N"));
        let current = policy.get_event_loop().unwrap();
        assert!(current != a && current != b, "neither was made current");
        for event_loop in [a, b, current] {
            event_loop.close().unwrap();
        }
    }
}

impl Body for set_event_loop {
    // Port of test_set_event_loop (C-5): the loop set is the loop got, and setting
    // another replaces it.
    fn run<K: Kernel>(&self, k: &K) {
        let policy = DefaultEventLoopPolicy::with_kernel(k.clone());
        let old_loop = policy.new_event_loop().unwrap();
        policy.set_event_loop(Some(old_loop.clone())).unwrap();
        assert_eq!(policy.get_event_loop().unwrap(), old_loop);
        let new_loop = policy.new_event_loop().unwrap();
        policy.set_event_loop(Some(new_loop.clone())).unwrap();
        assert_eq!(policy.get_event_loop().unwrap(), new_loop);
        assert_ne!(policy.get_event_loop().unwrap(), old_loop);
        old_loop.close().unwrap();
        new_loop.close().unwrap();
    }
}

impl Body for get_event_loop_after_set_none {
    // Port of test_get_event_loop_after_set_none (C-3, C-4): after
    // set_event_loop(None) there is no current loop, and the main thread does not
    // create one.
    fn run<K: Kernel>(&self, k: &K) {
        let policy = DefaultEventLoopPolicy::with_kernel(k.clone());
        let event_loop = policy.new_event_loop().unwrap();
        policy.set_event_loop(Some(event_loop.clone())).unwrap();
        policy.set_event_loop(None).unwrap();
        assert_eq!(no_loop(&policy), no_loop_in("MainThread"));
        event_loop.close().unwrap();
    }
}

impl Body for loops_are_per_thread {
    // Goal (C-1): the default policy's context is the thread: a loop set in one thread
    // is invisible in another, which can set its own.
    fn run<K: Kernel>(&self, k: &K) {
        let policy = Arc::new(DefaultEventLoopPolicy::with_kernel(k.clone()));
        let mine = policy.new_event_loop().unwrap();
        policy.set_event_loop(Some(mine.clone())).unwrap();
        let other = policy.clone();
        let (theirs_before, theirs) = in_thread(k, "Worker-C1", move || {
            let before = no_loop(&*other);
            let theirs = other.new_event_loop().unwrap();
            other.set_event_loop(Some(theirs.clone())).unwrap();
            assert_eq!(other.get_event_loop().unwrap(), theirs);
            (before, theirs)
        });
        assert_eq!(theirs_before, no_loop_in("Worker-C1"));
        assert_eq!(policy.get_event_loop().unwrap(), mine);
        assert_ne!(mine, theirs);
        mine.close().unwrap();
        theirs.close().unwrap();
    }
}

impl Body for get_event_loop_policy {
    // Port of test_get_event_loop_policy (P-1): the same object every call, the
    // default policy.
    fn run<K: Kernel>(&self, k: &K) {
        let a = policy::get_event_loop_policy(k);
        let b = policy::get_event_loop_policy(k);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.state().is_some(), "the default policy");
    }
}

impl Body for set_event_loop_policy {
    // Port of test_set_event_loop_policy (P-2, P-3): a policy set is the policy got;
    // None restores a default that is a fresh object, not the old one.
    fn run<K: Kernel>(&self, k: &K) {
        let old = policy::get_event_loop_policy(k);
        let new: PolicyRef<K> = Arc::new(DefaultEventLoopPolicy::with_kernel(k.clone()));
        policy::set_event_loop_policy(k, Some(new.clone()));
        assert!(Arc::ptr_eq(&policy::get_event_loop_policy(k), &new));
        assert!(!Arc::ptr_eq(&policy::get_event_loop_policy(k), &old));
        policy::set_event_loop_policy(k, None);
        let fresh = policy::get_event_loop_policy(k);
        assert!(!Arc::ptr_eq(&fresh, &new));
        assert!(!Arc::ptr_eq(&fresh, &old));
        assert!(fresh.state().is_some(), "the default policy");
    }
}

/// A default policy that counts the calls of the methods the module functions
/// forward to.
struct Counting<K: Kernel> {
    state: PolicyState<K>,
    sets: AtomicUsize,
    news: AtomicUsize,
}

impl<K: Kernel> AbstractEventLoopPolicy<K> for Counting<K> {
    fn state(&self) -> Option<&PolicyState<K>> {
        Some(&self.state)
    }
    fn set_event_loop(&self, event_loop: Option<EventLoop<K>>) -> Result<()> {
        self.sets.fetch_add(1, Ordering::SeqCst);
        base::set_event_loop(self, event_loop)
    }
    fn new_event_loop(&self) -> Result<EventLoop<K>> {
        self.news.fetch_add(1, Ordering::SeqCst);
        base::new_event_loop(self)
    }
}

impl<K: Kernel> Counting<K> {
    fn new(k: &K) -> Counting<K> {
        Counting {
            state: PolicyState::new(k.clone()),
            sets: AtomicUsize::new(0),
            news: AtomicUsize::new(0),
        }
    }

    fn calls(&self) -> (usize, usize) {
        (
            self.news.load(Ordering::SeqCst),
            self.sets.load(Ordering::SeqCst),
        )
    }
}

impl Body for module_functions_delegate_to_policy {
    // Goal (P-7): set_event_loop and new_event_loop call the current policy's methods.
    fn run<K: Kernel>(&self, k: &K) {
        let counting = Arc::new(Counting::new(k));
        policy::set_event_loop_policy(k, Some(counting.clone()));
        let event_loop = policy::new_event_loop(k).unwrap();
        policy::set_event_loop(k, Some(event_loop.clone())).unwrap();
        assert_eq!(policy::get_event_loop(k).unwrap(), event_loop);
        policy::set_event_loop(k, None).unwrap();
        policy::set_event_loop_policy(k, None);
        assert_eq!(counting.calls(), (1, 2), "(new_event_loop, set_event_loop)");
        event_loop.close().unwrap();
    }
}

impl Body for get_event_loop_returns_running_loop {
    // Port of test_get_event_loop_returns_running_loop (P-4, P-5, P-6): a policy
    // whose get_event_loop fails is bypassed while a loop runs, and only then.
    fn run<K: Kernel>(&self, k: &K) {
        struct Failing;
        impl<K: Kernel> AbstractEventLoopPolicy<K> for Failing {
            fn get_event_loop(&self) -> Result<EventLoop<K>> {
                Err(Error::value("TestError"))
            }
        }
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        policy::set_event_loop_policy(k, Some(Arc::new(Failing)));
        let outside = policy::get_event_loop(k).unwrap_err();
        assert_eq!(
            (outside.kind(), outside.message()),
            (ErrorKind::ValueError, "TestError")
        );
        assert_eq!(
            policy::get_running_loop(k).unwrap_err().message(),
            "no running event loop"
        );
        assert!(policy::try_get_running_loop(k).is_none());
        let (lp, k2) = (event_loop.clone(), k.clone());
        let inside = event_loop
            .run_until_complete(async move {
                (
                    policy::get_event_loop(&k2).unwrap() == lp,
                    policy::get_running_loop(&k2).unwrap() == lp,
                    policy::try_get_running_loop(&k2) == Some(lp.clone()),
                )
            })
            .unwrap();
        assert_eq!(inside, (true, true, true));
        assert_eq!(
            policy::get_event_loop(k).unwrap_err().message(),
            "TestError"
        );
        policy::set_event_loop_policy(k, None);
        assert!(policy::try_get_running_loop(k).is_none());
        event_loop.close().unwrap();
    }
}

impl Body for get_event_loop_calls_set_event_loop_in_worker_never {
    // Goal (C-2): outside the main thread the provided get_event_loop never creates,
    // so neither new_event_loop nor set_event_loop is called.
    fn run<K: Kernel>(&self, k: &K) {
        let spy = Arc::new(Counting::new(k));
        let worker = spy.clone();
        let error = in_thread(k, "Worker-W", move || no_loop(&*worker));
        assert_eq!(error, no_loop_in("Worker-W"));
        assert_eq!(spy.calls(), (0, 0), "(new_event_loop, set_event_loop)");
    }
}

fn main() -> ExitCode {
    testing::main(tests())
}
