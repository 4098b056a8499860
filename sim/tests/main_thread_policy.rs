//! The policy and the main thread's loop: auto-creation in the main thread,
//! `set_event_loop(None)`, `set_event_loop_policy`, a custom policy, signal handlers
//! (which only the main thread may add) and a whole loop life's resources.
//!
//! Each behaviour is one body run on both kernels: `name [os]` on the real OS, on the
//! main thread of this binary, one test at a time from a fresh default policy;
//! `name [sim]` on the simulator's main thread over many seeds. What only the real
//! OS can run says why beside its registration in `main`.
//!
//! `cargo test -p loopwatch-sim --test main_thread_policy [NAME]`;
//! `LOOPWATCH_SEEDS=N` and `LOOPWATCH_SEED=S` choose the simulator's seeds.

#[path = "../../examples/custom_policy.rs"]
mod custom_policy;
mod main_thread_common;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use loopwatch::kernel::{Disposition, Kernel, Processes, Signal, WaitMode, WaitStatus};
use loopwatch::policy::{self, base};
use loopwatch::{
    AbstractEventLoopPolicy, DefaultEventLoopPolicy, ErrorKind, EventLoop, PolicyState, Result,
};
use loopwatch_sim::testing::{Body, Log, Test};

use main_thread_common::fork;

// ----- the policy ----------------------------------------------------------------------

/// Port of test_get_event_loop (C-2): in the main thread a fresh policy creates a loop
/// on first use and returns the same one afterwards.
struct GetEventLoop;

impl Body for GetEventLoop {
    fn run<K: Kernel>(&self, k: &K) {
        assert!(k.is_main_thread(), "runs on the main thread");
        let policy = DefaultEventLoopPolicy::with_kernel(k.clone());
        let first = policy.get_event_loop().unwrap();
        let second = policy.get_event_loop().unwrap();
        assert!(first == second, "same loop twice");
        first.close().unwrap();
    }
}

/// A default policy that records each `set_event_loop` call.
struct Spy<K: Kernel> {
    state: PolicyState<K>,
    set_with: Log<Option<EventLoop<K>>>,
}

impl<K: Kernel> AbstractEventLoopPolicy<K> for Spy<K> {
    fn state(&self) -> Option<&PolicyState<K>> {
        Some(&self.state)
    }

    fn set_event_loop(&self, event_loop: Option<EventLoop<K>>) -> Result<()> {
        self.set_with.push(event_loop.clone());
        base::set_event_loop(self, event_loop)
    }
}

/// Port of test_get_event_loop_calls_set_event_loop (C-2): creation goes through
/// self.set_event_loop(self.new_event_loop()), so overrides see it.
struct GetEventLoopCallsSetEventLoop;

impl Body for GetEventLoopCallsSetEventLoop {
    fn run<K: Kernel>(&self, k: &K) {
        let spy = Spy {
            state: PolicyState::new(k.clone()),
            set_with: Log::new(),
        };
        let created = spy.get_event_loop().unwrap();
        let calls = spy.set_with.take();
        assert_eq!(calls.len(), 1, "set_event_loop called once");
        assert!(calls[0].as_ref() == Some(&created), "with the created loop");
        spy.get_event_loop().unwrap();
        assert!(spy.set_with.take().is_empty(), "not again");
        created.close().unwrap();
    }
}

/// Port of test_get_event_loop_after_set_none (C-3, C-4) in the main thread: the
/// message names 'MainThread'.
struct GetEventLoopAfterSetNoneMainThread;

impl Body for GetEventLoopAfterSetNoneMainThread {
    fn run<K: Kernel>(&self, k: &K) {
        let policy = DefaultEventLoopPolicy::with_kernel(k.clone());
        let created = policy.get_event_loop().unwrap();
        policy.set_event_loop(None).unwrap();
        let err = policy.get_event_loop().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(
            err.message(),
            "There is no current event loop in thread 'MainThread'.",
            "CPython's message"
        );
        created.close().unwrap();
    }
}

/// Goal (C-4): set_event_loop(None) before any get stops auto-creation for good.
struct SetNoneBeforeFirstGetDisablesCreation;

impl Body for SetNoneBeforeFirstGetDisablesCreation {
    fn run<K: Kernel>(&self, k: &K) {
        let policy = DefaultEventLoopPolicy::with_kernel(k.clone());
        policy.set_event_loop(None).unwrap();
        for _ in 0..2 {
            assert!(policy.get_event_loop().is_err(), "never creates");
        }
    }
}

/// Goal (P-3): after set_event_loop_policy(None) the new default policy has none of
/// the old one's loops: the main thread gets a different, new loop.
struct SetEventLoopPolicyNoneGivesFreshDefault;

impl Body for SetEventLoopPolicyNoneGivesFreshDefault {
    fn run<K: Kernel>(&self, k: &K) {
        let first = policy::get_event_loop(k).unwrap();
        policy::set_event_loop_policy(k, None);
        let second = policy::get_event_loop(k).unwrap();
        assert!(first != second, "fresh policy, fresh loop");
        first.close().unwrap();
        second.close().unwrap();
    }
}

/// Goal (seed "Custom Policies", C-2): with the example's MyEventLoopPolicy installed,
/// the module get_event_loop() goes through its override, which calls the default
/// behaviour.
fn custom_policy_override_is_used() -> std::result::Result<(), String> {
    let policy = Arc::new(custom_policy::MyEventLoopPolicy::new());
    loopwatch::set_event_loop_policy(Some(policy.clone()));
    let event_loop = loopwatch::get_event_loop().map_err(|e| e.to_string())?;
    assert_eq!(policy.calls.load(Ordering::SeqCst), 1, "override ran");
    assert!(event_loop.get_debug(), "override's change is visible");
    assert!(
        loopwatch::get_event_loop().unwrap() == event_loop,
        "same loop"
    );
    assert_eq!(policy.calls.load(Ordering::SeqCst), 2, "override ran again");
    event_loop.close().map_err(|e| e.to_string())
}

// ----- signal handlers on the main thread's loop ---------------------------------------

/// Goal: add_signal_handler(SIGUSR1) runs the callback in the loop after raise;
/// adding again replaces the handler.
struct SignalHandlerDeliversOnRaise;

impl Body for SignalHandlerDeliversOnRaise {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let (count, lp) = (calls.clone(), event_loop.clone());
        let first = event_loop
            .add_signal_handler(Signal::SIGUSR1, || panic!("replaced handler ran"))
            .unwrap();
        event_loop
            .add_signal_handler(Signal::SIGUSR1, move || {
                count.fetch_add(1, Ordering::SeqCst);
                lp.stop();
            })
            .unwrap();
        assert!(first.cancelled(), "replaced handle is cancelled");
        let k2 = k.clone();
        event_loop
            .call_soon(move || k2.raise(Signal::SIGUSR1).expect("raise"))
            .unwrap();
        event_loop.run_forever().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "handler ran once");
        assert!(
            event_loop.remove_signal_handler(Signal::SIGUSR1).unwrap(),
            "was set"
        );
        assert!(
            !event_loop.remove_signal_handler(Signal::SIGUSR1).unwrap(),
            "now gone"
        );
        event_loop.close().unwrap();
    }
}

/// Goal: a signal sent from another thread while the loop is blocked in poll (no
/// timers, nothing ready) wakes it through the wakeup fd.
struct SignalHandlerWakesLoopBlockedInPoll;

impl Body for SignalHandlerWakesLoopBlockedInPoll {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let lp = event_loop.clone();
        event_loop
            .add_signal_handler(Signal::SIGUSR2, move || lp.stop())
            .unwrap();
        let k2 = k.clone();
        let sender = k
            .spawn_thread(
                "signal-sender",
                Box::new(move || {
                    let pid = k2.getpid();
                    k2.kill(pid, Some(Signal::SIGUSR2)).expect("kill");
                }),
            )
            .unwrap();
        event_loop.run_forever().unwrap();
        assert!(k.join_thread(sender).is_ok(), "sender panicked");
        event_loop.remove_signal_handler(Signal::SIGUSR2).unwrap();
        event_loop.close().unwrap();
    }
}

/// Goal: remove_signal_handler puts back what was there before add, here SIG_IGN and
/// then SIG_DFL, and the wakeup fd is released once no handler is left.
struct RemoveSignalHandlerRestoresPreviousDisposition;

impl Body for RemoveSignalHandlerRestoresPreviousDisposition {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let before = k
            .set_disposition(Signal::SIGUSR1, Disposition::Ignore)
            .unwrap();
        event_loop
            .add_signal_handler(Signal::SIGUSR1, || {})
            .unwrap();
        assert_eq!(
            k.disposition(Signal::SIGUSR1).unwrap(),
            Disposition::Wakeup,
            "handler installed"
        );
        assert!(
            k.set_wakeup_fd(None).unwrap().is_some(),
            "wakeup fd set by the loop"
        );
        event_loop.remove_signal_handler(Signal::SIGUSR1).unwrap();
        assert_eq!(
            k.disposition(Signal::SIGUSR1).unwrap(),
            Disposition::Ignore,
            "SIG_IGN restored"
        );
        k.set_disposition(Signal::SIGUSR1, before).unwrap();
        event_loop
            .add_signal_handler(Signal::SIGUSR1, || {})
            .unwrap();
        event_loop.remove_signal_handler(Signal::SIGUSR1).unwrap();
        assert_eq!(
            k.disposition(Signal::SIGUSR1).unwrap(),
            Disposition::Default,
            "SIG_DFL restored"
        );
        assert!(
            k.set_wakeup_fd(None).unwrap().is_none(),
            "wakeup fd released"
        );
        event_loop.close().unwrap();
    }
}

/// Goal: as CPython, an uncatchable signal is RuntimeError 'sig 9 cannot be caught'
/// and leaves no wakeup fd behind.
struct UncatchableSignalIsRuntimeError;

impl Body for UncatchableSignalIsRuntimeError {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let err = event_loop
            .add_signal_handler(Signal::SIGKILL, || {})
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(err.message(), "sig 9 cannot be caught", "CPython's message");
        assert!(
            k.set_wakeup_fd(None).unwrap().is_none(),
            "wakeup fd not left set"
        );
        event_loop.close().unwrap();
    }
}

/// Goal: close() removes the loop's signal handlers, and so does dropping a loop that
/// was never closed.
struct CloseAndDropRestoreDispositions;

impl Body for CloseAndDropRestoreDispositions {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        event_loop
            .add_signal_handler(Signal::SIGUSR1, || {})
            .unwrap();
        event_loop.close().unwrap();
        assert_eq!(
            k.disposition(Signal::SIGUSR1).unwrap(),
            Disposition::Default,
            "close restored"
        );
        let dropped = EventLoop::with_kernel(k.clone()).unwrap();
        dropped.add_signal_handler(Signal::SIGUSR2, || {}).unwrap();
        drop(dropped);
        assert_eq!(
            k.disposition(Signal::SIGUSR2).unwrap(),
            Disposition::Default,
            "drop restored"
        );
        assert!(
            k.set_wakeup_fd(None).unwrap().is_none(),
            "wakeup fd released"
        );
    }
}

// ----- a loop's life -------------------------------------------------------------------

/// Port of test_get_event_loop_new_process (P-5): a child forked while a loop runs
/// does not see the parent's running loop, and can run a new loop of its own.
fn forked_child_does_not_see_running_loop() -> std::result::Result<(), String> {
    let kernel = loopwatch::OsKernel;
    let event_loop = EventLoop::new().map_err(|e| e.to_string())?;
    let child = Log::new();
    let (slot, lp) = (child.clone(), event_loop.clone());
    event_loop
        .call_soon(move || {
            slot.push(fork::fork_running(|| match child_after_fork() {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(_) => 2,
            }));
            lp.stop();
        })
        .map_err(|e| e.to_string())?;
    event_loop.run_forever().map_err(|e| e.to_string())?;
    let pid = child.take().pop().ok_or("the callback did not fork")?;
    match kernel.wait_pid(pid, WaitMode::Block) {
        Ok(WaitStatus::Terminated(_, status)) => assert_eq!(
            status.returncode(),
            0,
            "the child saw a running loop (1) or could not run its own (2)"
        ),
        other => return Err(format!("waitpid: {other:?}")),
    }
    event_loop.close().map_err(|e| e.to_string())
}

/// The forked child's part: whether it sees no running loop and can run one of its
/// own.
fn child_after_fork() -> Result<bool> {
    if loopwatch::try_get_running_loop().is_some() {
        return Ok(false);
    }
    let event_loop = loopwatch::new_event_loop()?;
    loopwatch::set_event_loop(Some(event_loop.clone()))?;
    let hello = event_loop.run_until_complete(async { "hello" })?;
    event_loop.close()?;
    Ok(hello == "hello")
}

/// Goal: a loop's whole life (create, run callbacks, timers, a task, a reader, a
/// signal handler, threadsafe calls from a thread, close) leaves the fd table, the
/// thread count and the child list as they were (the leak check).
struct LoopLifeLeaksNothing;

impl Body for LoopLifeLeaksNothing {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let (read, write) = k.pipe().unwrap();
        let got = Arc::new(AtomicBool::new(false));
        let (flag, lp, k2) = (got.clone(), event_loop.clone(), k.clone());
        event_loop
            .add_reader(read, move || {
                let mut buf = [0u8; 8];
                let _ = k2.read(read, &mut buf);
                flag.store(true, Ordering::SeqCst);
                lp.remove_reader(read).expect("remove_reader");
            })
            .unwrap();
        event_loop
            .add_signal_handler(Signal::SIGUSR1, || {})
            .unwrap();
        let k2 = k.clone();
        event_loop
            .call_later(0.001, move || {
                k2.write(write, b"x").expect("write");
            })
            .unwrap();
        let remote = event_loop.clone();
        let thread = k
            .spawn_thread(
                "leak-check",
                Box::new(move || {
                    remote.call_soon_threadsafe(|| {}).expect("threadsafe");
                }),
            )
            .unwrap();
        let task = event_loop.create_task(async { 5 }).unwrap();
        let lp = event_loop.clone();
        let out = event_loop
            .run_until_complete(async move {
                let value = task.await.expect("task");
                // Waits on a timer, not by yielding in a loop: the loop then blocks in
                // its poll, where the simulator's clock moves on to the write.
                while !got.load(Ordering::SeqCst) {
                    main_thread_common::sleep(&lp, 0.001).await;
                }
                value
            })
            .unwrap();
        assert_eq!(out, 5, "task output");
        assert!(k.join_thread(thread).is_ok(), "thread panicked");
        event_loop.close().unwrap();
        k.close(read).unwrap();
        k.close(write).unwrap();
    }
}

fn main() -> ExitCode {
    main_thread_common::main([
        Test::both("get_event_loop", GetEventLoop).check_leaks(),
        Test::both(
            "get_event_loop_calls_set_event_loop",
            GetEventLoopCallsSetEventLoop,
        )
        .check_leaks(),
        Test::both(
            "get_event_loop_after_set_none_main_thread",
            GetEventLoopAfterSetNoneMainThread,
        )
        .check_leaks(),
        Test::both(
            "set_none_before_first_get_disables_creation",
            SetNoneBeforeFirstGetDisablesCreation,
        )
        .check_leaks(),
        Test::both(
            "set_event_loop_policy_none_gives_fresh_default",
            SetEventLoopPolicyNoneGivesFreshDefault,
        )
        .check_leaks(),
        // Real OS only: the example's policy is written for the real OS, as a user's
        // would be (its state is a `PolicyState<OsKernel>`).
        Test::new(
            "custom_policy_override_is_used",
            custom_policy_override_is_used,
        )
        .check_leaks(),
        Test::both(
            "signal_handler_delivers_on_raise",
            SignalHandlerDeliversOnRaise,
        )
        .check_leaks(),
        Test::both(
            "signal_handler_wakes_loop_blocked_in_poll",
            SignalHandlerWakesLoopBlockedInPoll,
        )
        .check_leaks(),
        Test::both(
            "remove_signal_handler_restores_previous_disposition",
            RemoveSignalHandlerRestoresPreviousDisposition,
        )
        .check_leaks(),
        Test::both(
            "uncatchable_signal_is_runtime_error",
            UncatchableSignalIsRuntimeError,
        )
        .check_leaks(),
        Test::both(
            "close_and_drop_restore_dispositions",
            CloseAndDropRestoreDispositions,
        )
        .check_leaks(),
        // Real OS only: it forks this process, which the simulator (one process whose
        // children run no code) cannot.
        Test::new(
            "forked_child_does_not_see_running_loop",
            forked_child_does_not_see_running_loop,
        )
        .check_leaks(),
        Test::both("loop_life_leaks_nothing", LoopLifeLeaksNothing).check_leaks(),
    ])
}
