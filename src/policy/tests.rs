//! Policies on the real OS, from cargo's worker threads (never the main thread). Ports
//! of CPython's `PolicyTests` (test_events.py) keep their names; main-thread behaviour
//! is tested in `sim/tests/main_thread_policy.rs` (marked "main" below).
//!
//! | clause | tests |
//! |---|---|
//! | A-1 | `event_loop_policy` |
//! | P-1 | `get_event_loop_policy` |
//! | P-2 | `set_event_loop_policy`; the `TypeError` for a non-policy is enforced by types (`Option<PolicyRef>`) |
//! | P-3 | `set_event_loop_policy`, main `set_event_loop_policy_none_gives_fresh_default` |
//! | P-4 | `get_event_loop_returns_running_loop`, `event_loop::tests::running_loop_is_visible_inside_only` |
//! | P-5 | `get_event_loop_returns_running_loop`, main `forked_child_does_not_see_running_loop` |
//! | P-6 | `get_event_loop_returns_running_loop`, `event_loop::tests::running_loop_is_visible_inside_only` |
//! | P-7 | `module_functions_delegate_to_policy` |
//! | C-1 | `loops_are_per_thread` |
//! | C-2 | main `get_event_loop`, main `get_event_loop_calls_set_event_loop`, `get_event_loop_thread`, `get_event_loop_calls_set_event_loop_in_worker_never`, main `custom_policy_override_is_used` |
//! | C-3 | `get_event_loop_thread`, main `get_event_loop_after_set_none_main_thread` |
//! | C-4 | `get_event_loop_after_set_none`, main `set_none_before_first_get_disables_creation` |
//! | C-5 | `set_event_loop`; the `TypeError` for a non-loop is enforced by types (`Option<EventLoop>`), so the "set called before validation" quirk cannot be observed |
//! | C-8 | `new_event_loop_has_no_side_effects` |

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::Error;
use crate::error::ErrorKind;
use crate::kernel::Threads;

/// Tests that replace the process-wide policy run one at a time.
#[allow(clippy::disallowed_types, reason = "test-only serialisation")]
static GLOBAL_POLICY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn global_policy_lock() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL_POLICY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `body` in a new kernel thread named `name` and returns its result.
fn in_thread<T: Send + 'static>(name: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    let slot = Arc::new(Mutex::new(None));
    let out = slot.clone();
    let handle = OsKernel
        .spawn_thread(name, Box::new(move || *out.lock() = Some(body())))
        .unwrap();
    OsKernel.join_thread(handle).unwrap();
    slot.lock().take().expect("thread produced a result")
}

/// A policy that implements nothing: the abstract class.
struct Abstract;
impl AbstractEventLoopPolicy for Abstract {}

#[test]
fn event_loop_policy() {
    // Port of test_event_loop_policy: every method of the abstract policy
    // raises NotImplementedError.
    let policy = Abstract;
    assert_eq!(
        policy.get_event_loop().unwrap_err().kind(),
        ErrorKind::NotImplementedError
    );
    assert_eq!(
        policy.set_event_loop(None).unwrap_err().kind(),
        ErrorKind::NotImplementedError
    );
    assert_eq!(
        policy.new_event_loop().unwrap_err().kind(),
        ErrorKind::NotImplementedError
    );
}

#[test]
fn get_event_loop_thread() {
    // Port of test_get_event_loop_thread (C-2, C-3): in a non-main thread a fresh
    // policy does not create a loop; the error names the thread.
    let err = in_thread("Worker-X", || {
        DefaultEventLoopPolicy::new().get_event_loop().unwrap_err()
    });
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    assert_eq!(
        err.message(),
        "There is no current event loop in thread 'Worker-X'."
    );
}

#[test]
fn new_event_loop_has_no_side_effects() {
    // Port of test_new_event_loop (C-8): a new loop each call, not made current.
    let policy = DefaultEventLoopPolicy::new();
    let a = policy.new_event_loop().unwrap();
    let b = policy.new_event_loop().unwrap();
    assert_ne!(a, b);
    assert!(policy.get_event_loop().is_err(), "not made current");
    a.close().unwrap();
    b.close().unwrap();
}

#[test]
fn set_event_loop() {
    // Port of test_set_event_loop (C-5): the loop set is the loop got, and setting
    // another replaces it.
    let policy = DefaultEventLoopPolicy::new();
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

#[test]
fn get_event_loop_after_set_none() {
    // Port of test_get_event_loop_after_set_none (C-4): after set_event_loop(None)
    // there is no current loop.
    let policy = DefaultEventLoopPolicy::new();
    let event_loop = policy.new_event_loop().unwrap();
    policy.set_event_loop(Some(event_loop.clone())).unwrap();
    policy.set_event_loop(None).unwrap();
    let err = policy.get_event_loop().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    assert!(
        err.message()
            .starts_with("There is no current event loop in thread ")
    );
    event_loop.close().unwrap();
}

#[test]
fn loops_are_per_thread() {
    // Goal (C-1): the default policy's context is the thread: a loop set in one thread
    // is invisible in another, which can set its own.
    let policy = Arc::new(DefaultEventLoopPolicy::new());
    let mine = policy.new_event_loop().unwrap();
    policy.set_event_loop(Some(mine.clone())).unwrap();
    let other = policy.clone();
    let (theirs_before, theirs) = in_thread("Worker-C1", move || {
        let before = other.get_event_loop().map_err(|e| e.kind());
        let theirs = other.new_event_loop().unwrap();
        other.set_event_loop(Some(theirs.clone())).unwrap();
        let got = other.get_event_loop().unwrap();
        assert_eq!(got, theirs);
        (before, theirs)
    });
    assert_eq!(theirs_before.unwrap_err(), ErrorKind::RuntimeError);
    assert_eq!(policy.get_event_loop().unwrap(), mine);
    assert_ne!(mine, theirs);
    mine.close().unwrap();
    theirs.close().unwrap();
}

#[test]
fn get_event_loop_policy() {
    // Port of test_get_event_loop_policy (P-1): the same object every call.
    let _guard = global_policy_lock();
    let a = crate::get_event_loop_policy();
    let b = crate::get_event_loop_policy();
    assert!(Arc::ptr_eq(&a, &b));
}

#[test]
fn set_event_loop_policy() {
    // Port of test_set_event_loop_policy (P-2, P-3): a policy set is the policy got;
    // None restores a default that is a fresh object, not the old one.
    let _guard = global_policy_lock();
    let old = crate::get_event_loop_policy();
    let policy: PolicyRef<OsKernel> = Arc::new(DefaultEventLoopPolicy::new());
    crate::set_event_loop_policy(Some(policy.clone()));
    assert!(Arc::ptr_eq(&crate::get_event_loop_policy(), &policy));
    assert!(!Arc::ptr_eq(&crate::get_event_loop_policy(), &old));
    crate::set_event_loop_policy(None);
    let fresh = crate::get_event_loop_policy();
    assert!(!Arc::ptr_eq(&fresh, &policy));
    assert!(!Arc::ptr_eq(&fresh, &old));
    assert!(fresh.state().is_some(), "the default policy");
}

#[test]
fn module_functions_delegate_to_policy() {
    // Goal (P-7): set_event_loop and new_event_loop call the current policy's methods.
    let _guard = global_policy_lock();
    struct Counting {
        state: PolicyState,
        sets: AtomicUsize,
        news: AtomicUsize,
    }
    impl AbstractEventLoopPolicy for Counting {
        fn state(&self) -> Option<&PolicyState> {
            Some(&self.state)
        }
        fn set_event_loop(&self, event_loop: Option<EventLoop>) -> Result<()> {
            self.sets.fetch_add(1, Ordering::SeqCst);
            base::set_event_loop(self, event_loop)
        }
        fn new_event_loop(&self) -> Result<EventLoop> {
            self.news.fetch_add(1, Ordering::SeqCst);
            base::new_event_loop(self)
        }
    }
    let policy = Arc::new(Counting {
        state: PolicyState::new(OsKernel),
        sets: AtomicUsize::new(0),
        news: AtomicUsize::new(0),
    });
    crate::set_event_loop_policy(Some(policy.clone()));
    let event_loop = crate::new_event_loop().unwrap();
    crate::set_event_loop(Some(event_loop.clone())).unwrap();
    assert_eq!(crate::get_event_loop().unwrap(), event_loop);
    crate::set_event_loop(None).unwrap();
    crate::set_event_loop_policy(None);
    assert_eq!(policy.news.load(Ordering::SeqCst), 1);
    assert_eq!(policy.sets.load(Ordering::SeqCst), 2);
    event_loop.close().unwrap();
}

#[test]
fn get_event_loop_returns_running_loop() {
    // Port of test_get_event_loop_returns_running_loop (P-4, P-5, P-6): a policy
    // whose get_event_loop fails is bypassed while a loop runs, and only then.
    let _guard = global_policy_lock();
    struct Failing;
    impl AbstractEventLoopPolicy for Failing {
        fn get_event_loop(&self) -> Result<EventLoop> {
            Err(Error::value("TestError"))
        }
    }
    let event_loop = EventLoop::new().unwrap();
    crate::set_event_loop_policy(Some(Arc::new(Failing)));
    let outside = crate::get_event_loop().unwrap_err();
    assert_eq!(outside.message(), "TestError");
    assert_eq!(
        crate::get_running_loop().unwrap_err().message(),
        "no running event loop"
    );
    assert!(crate::try_get_running_loop().is_none());
    let lp = event_loop.clone();
    let inside = event_loop
        .run_until_complete(async move {
            (
                crate::get_event_loop().unwrap() == lp,
                crate::get_running_loop().unwrap() == lp,
                crate::try_get_running_loop() == Some(lp.clone()),
            )
        })
        .unwrap();
    assert_eq!(inside, (true, true, true));
    assert_eq!(crate::get_event_loop().unwrap_err().message(), "TestError");
    crate::set_event_loop_policy(None);
    assert!(crate::try_get_running_loop().is_none());
    event_loop.close().unwrap();
}

#[test]
fn get_event_loop_calls_set_event_loop_in_worker_never() {
    // Goal (C-2): outside the main thread the provided get_event_loop never creates,
    // so neither new_event_loop nor set_event_loop is called.
    struct Spy {
        state: PolicyState,
        calls: AtomicUsize,
    }
    impl AbstractEventLoopPolicy for Spy {
        fn state(&self) -> Option<&PolicyState> {
            Some(&self.state)
        }
        fn set_event_loop(&self, event_loop: Option<EventLoop>) -> Result<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            base::set_event_loop(self, event_loop)
        }
        fn new_event_loop(&self) -> Result<EventLoop> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            base::new_event_loop(self)
        }
    }
    let spy = Spy {
        state: PolicyState::new(OsKernel),
        calls: AtomicUsize::new(0),
    };
    assert!(spy.get_event_loop().is_err());
    assert_eq!(spy.calls.load(Ordering::SeqCst), 0);
}
