//! Bad input to the watchers and to subprocess_exec gets a defined error or behaviour,
//! never a panic, a hang or a lost child (issue: watchers, "Bad input").

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use loopwatch::kernel::{Pid, Processes, SpawnRequest, Threads};
use loopwatch::watcher::{MultiLoopChildWatcher, fork_window};
use loopwatch::{ChildWatcher, ErrorKind, EventLoop, FastChildWatcher, SafeChildWatcher};
use loopwatch_sim::{SimKernel, Simulation};

fn run(test: &str, body: impl FnOnce(SimKernel) + Send + 'static) {
    Simulation::new(loopwatch_sim::seed_from_env(1))
        .run(body)
        .assert_completed(test);
}

fn noop() -> loopwatch::watcher::ChildCallback {
    Box::new(|_, _| {})
}

#[test]
fn pid_zero_or_negative_is_value_error() {
    // Goal: a pid ≤ 0 (waitpid's "any child" or a process group) is refused with
    // ValueError by every watcher before anything is waited for.
    run("pid_zero_or_negative_is_value_error", |k| {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let safe = SafeChildWatcher::with_kernel(k.clone());
        let fast = FastChildWatcher::with_kernel(k.clone());
        let multi = MultiLoopChildWatcher::with_kernel(k.clone());
        safe.attach_loop(Some(event_loop.clone())).unwrap();
        fast.attach_loop(Some(event_loop.clone())).unwrap();
        multi.attach_loop(None).unwrap();
        let _window = fork_window(&fast);
        for pid in [Pid(0), Pid(-1)] {
            let errors = [
                safe.add_child_handler(pid, noop()).unwrap_err(),
                fast.add_child_handler(pid, noop()).unwrap_err(),
                multi.add_child_handler(pid, noop()).unwrap_err(),
            ];
            for error in errors {
                assert_eq!(error.kind(), ErrorKind::ValueError, "{error}");
            }
        }
        drop(_window);
        safe.close().unwrap();
        fast.close().unwrap();
        multi.close().unwrap();
        event_loop.close().unwrap();
    });
}

#[test]
fn no_loop_and_no_window_errors() {
    // Goal (S-3, F-3, 3.7): Safe and Fast without a loop raise CPython's RuntimeError;
    // Fast outside a fork window raises AssertionError; a closed watcher is detached,
    // so it raises the same RuntimeError.
    run("no_loop_and_no_window_errors", |k| {
        let safe = SafeChildWatcher::with_kernel(k.clone());
        let err = safe.add_child_handler(Pid(5000), noop()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(
            err.message(),
            "Cannot add child handler, the child watcher does not have a loop attached"
        );
        let fast = FastChildWatcher::with_kernel(k.clone());
        let err = fast.add_child_handler(Pid(5000), noop()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AssertionError);
        assert_eq!(err.message(), "Must use the context manager");
        {
            let _window = fork_window(&fast);
            let err = fast.add_child_handler(Pid(5000), noop()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::RuntimeError);
        }
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        safe.attach_loop(Some(event_loop.clone())).unwrap();
        safe.close().unwrap();
        let err = safe.add_child_handler(Pid(5000), noop()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError, "closed: detached");
        event_loop.close().unwrap();
    });
}

#[test]
fn unknown_pid_reports_255_at_once() {
    // Goal (S-3, R-2): Safe given a pid that is not its child reports returncode 255
    // synchronously, inside add_child_handler.
    run("unknown_pid_reports_255_at_once", |k| {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let safe = SafeChildWatcher::with_kernel(k.clone());
        safe.attach_loop(Some(event_loop.clone())).unwrap();
        let got = Arc::new(AtomicI32::new(0));
        let slot = got.clone();
        safe.add_child_handler(
            Pid(31000),
            Box::new(move |_, code| slot.store(code, Ordering::SeqCst)),
        )
        .unwrap();
        assert_eq!(got.load(Ordering::SeqCst), 255);
        safe.close().unwrap();
        event_loop.close().unwrap();
    });
}

#[test]
fn closed_loop_is_runtime_error() {
    // Goal: attaching a watcher to a closed loop, and starting a process on one, fail
    // with RuntimeError 'Event loop is closed' and leave no child.
    run("closed_loop_is_runtime_error", |k| {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        event_loop.close().unwrap();
        let safe = SafeChildWatcher::with_kernel(k.clone());
        let err = safe.attach_loop(Some(event_loop.clone())).unwrap_err();
        assert_eq!(err.message(), "Event loop is closed");
        let err = event_loop
            .subprocess_exec(&SpawnRequest::new("true", Vec::<String>::new()))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(k.children_left(), (0, 0));
    });
}

#[test]
fn panicking_callback_on_synchronous_path_propagates() {
    // Goal: a callback that panics while add_child_handler reports an exit that
    // already happened propagates to the caller, as CPython's exception does, and the
    // watcher keeps working for other children.
    run("panicking_callback_on_synchronous_path_propagates", |k| {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let safe = SafeChildWatcher::with_kernel(k.clone());
        safe.attach_loop(Some(event_loop.clone())).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            safe.add_child_handler(Pid(31001), Box::new(|_, _| panic!("callback broke")))
        }));
        assert!(outcome.is_err(), "the panic reached the caller");
        let child = k
            .spawn(&SpawnRequest::new("/bin/sh", ["-c", "exit 4"]))
            .unwrap();
        let got = Arc::new(AtomicI32::new(0));
        let slot = got.clone();
        k.sleep(std::time::Duration::from_millis(1));
        safe.add_child_handler(
            child.pid,
            Box::new(move |_, code| slot.store(code, Ordering::SeqCst)),
        )
        .unwrap();
        assert_eq!(got.load(Ordering::SeqCst), 4);
        safe.close().unwrap();
        event_loop.close().unwrap();
    });
}

#[test]
fn multi_loop_needs_running_loop_and_main_thread() {
    // Goal (M-2, M-4): MultiLoop's add without a running loop is RuntimeError('no
    // running event loop'); its first attach outside the main thread is ValueError.
    run("multi_loop_needs_running_loop_and_main_thread", |k| {
        let multi = Arc::new(MultiLoopChildWatcher::with_kernel(k.clone()));
        let err = multi.add_child_handler(Pid(5000), noop()).unwrap_err();
        assert_eq!(err.message(), "no running event loop");
        let (other, k2) = (multi.clone(), k.clone());
        let worker = k
            .spawn_thread(
                "worker",
                Box::new(move || {
                    let err = other.attach_loop(None).unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::ValueError);
                    // CPython's message, then what to do.
                    assert!(
                        err.message()
                            .starts_with("signal only works in main thread: "),
                        "{}",
                        err.message()
                    );
                    let _ = k2;
                }),
            )
            .unwrap();
        k.join_thread(worker).unwrap();
        assert!(!multi.is_active());
        multi.close().unwrap();
    });
}

use loopwatch::kernel::Clock as _;
