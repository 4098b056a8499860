//! The event loop's callbacks, timers, run methods, tasks, errors and exception
//! handler, each behaviour written once and run on both kernels: `name [os]` on the
//! real OS, `name [sim]` on the simulator over many seeds (timers there run in
//! virtual time). Readers, writers, threads and signal handlers are in
//! `event_loop_io.rs`.
//!
//! A `harness = false` binary on `loopwatch_sim::testing`: each test runs on the
//! process's main thread, one at a time, as the simulator's bodies run on its main
//! thread (thread 1); each checks that it leaves no fd, child or thread behind. Each
//! body says which asyncio behaviour it ports.
//!
//! `cargo test -p loopwatch-sim --test event_loop [NAME]`; `LOOPWATCH_SEEDS=N` and
//! `LOOPWATCH_SEED=S` choose the simulator's seeds.

use std::any::Any;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use loopwatch::kernel::Kernel;
use loopwatch::{ErrorKind, EventLoop, ExceptionContext, policy};
use loopwatch_sim::SimKernel;
use loopwatch_sim::testing::{self, Body, Capture, Log, yield_now};

loopwatch_sim::bodies!(
    run_until_complete_returns_output,
    run_until_complete_runs_earlier_callbacks_first,
    call_soon_runs_in_fifo_order,
    callbacks_scheduled_while_running_wait_an_iteration,
    stop_before_run_runs_one_iteration,
    call_later_orders_timers_by_deadline,
    call_later_rejects_nan,
    cancelled_handle_does_not_run,
    run_closed_loop_is_runtime_error,
    run_running_loop_is_runtime_error,
    run_while_another_loop_runs_is_runtime_error,
    stopped_before_future_completed,
    running_loop_is_visible_inside_only,
    create_task_and_await,
    task_cancel_gives_cancelled_error,
    task_panic_reported_and_loop_survives,
    callback_panic_goes_to_exception_handler,
    default_exception_handler_logs_on_asyncio_target,
    debug_mode_reports_slow_callbacks,
    debug_flag,
);

fn new_loop<K: Kernel>(k: &K) -> EventLoop<K> {
    EventLoop::with_kernel(k.clone()).expect("a loop can be created")
}

/// Schedules `stop()` behind the callbacks already scheduled.
fn stop_soon<K: Kernel>(event_loop: &EventLoop<K>) {
    let stopper = event_loop.clone();
    event_loop.call_soon(move || stopper.stop()).unwrap();
}

/// Whether the body runs on the simulator.
fn on_sim<K: Kernel>(k: &K) -> bool {
    (k as &dyn Any).is::<SimKernel>()
}

// ----- callbacks and the run methods ---------------------------------------------------

impl Body for run_until_complete_returns_output {
    // Goal: run_until_complete drives a future to completion and returns its value.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        assert_eq!(event_loop.run_until_complete(async { 40 + 2 }).unwrap(), 42);
        assert!(!event_loop.is_running());
        event_loop.close().unwrap();
    }
}

impl Body for run_until_complete_runs_earlier_callbacks_first {
    // Goal: as asyncio, where the future's task step is queued behind callbacks that
    // were already scheduled, those callbacks run before the future is first polled,
    // even when it is ready at once.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let log = Log::new();
        let l1 = log.clone();
        event_loop.call_soon(move || l1.push("callback")).unwrap();
        let l2 = log.clone();
        event_loop
            .run_until_complete(async move { l2.push("future") })
            .unwrap();
        assert_eq!(log.take(), ["callback", "future"]);
        event_loop.close().unwrap();
    }
}

impl Body for call_soon_runs_in_fifo_order {
    // Goal: callbacks scheduled with call_soon run in scheduling order, one iteration.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let log = Log::new();
        for i in 0..5 {
            let log = log.clone();
            event_loop
                .call_soon(move || log.push(format!("cb{i}")))
                .unwrap();
        }
        stop_soon(&event_loop);
        event_loop.run_forever().unwrap();
        assert_eq!(log.take(), ["cb0", "cb1", "cb2", "cb3", "cb4"]);
        event_loop.close().unwrap();
    }
}

impl Body for callbacks_scheduled_while_running_wait_an_iteration {
    // Goal: like asyncio's _run_once, an iteration runs only what was ready when it
    // started, so stop() from the first callback runs the second but not the third.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let log = Log::new();
        let (l1, l2, lp) = (log.clone(), log.clone(), event_loop.clone());
        event_loop
            .call_soon(move || {
                l1.push("first");
                let l3 = l1.clone();
                lp.call_soon(move || l3.push("third")).unwrap();
                lp.stop();
            })
            .unwrap();
        event_loop.call_soon(move || l2.push("second")).unwrap();
        event_loop.run_forever().unwrap();
        assert_eq!(log.take(), ["first", "second"]);
        // The third runs at the next start.
        stop_soon(&event_loop);
        event_loop.run_forever().unwrap();
        assert_eq!(log.take(), ["third"]);
        event_loop.close().unwrap();
    }
}

impl Body for stop_before_run_runs_one_iteration {
    // Goal: asyncio semantics: stop() on a loop that is not running makes the next
    // run_forever do one iteration and return.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        event_loop.stop();
        event_loop
            .call_soon(move || flag.store(true, Ordering::SeqCst))
            .unwrap();
        event_loop.run_forever().unwrap();
        assert!(ran.load(Ordering::SeqCst));
        event_loop.close().unwrap();
    }
}

impl Body for cancelled_handle_does_not_run {
    // Goal: Handle.cancel() before the iteration keeps the callback from running.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let handle = event_loop
            .call_soon(move || flag.store(true, Ordering::SeqCst))
            .unwrap();
        handle.cancel();
        assert!(handle.cancelled());
        stop_soon(&event_loop);
        event_loop.run_forever().unwrap();
        assert!(!ran.load(Ordering::SeqCst));
        event_loop.close().unwrap();
    }
}

impl Body for debug_flag {
    // Goal: get_debug/set_debug round-trip, default off.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        assert!(!event_loop.get_debug());
        event_loop.set_debug(true);
        assert!(event_loop.get_debug());
        assert!(format!("{event_loop:?}").contains("debug=true"));
        event_loop.close().unwrap();
    }
}

// ----- timers ------------------------------------------------------------------------

impl Body for call_later_orders_timers_by_deadline {
    // Goal: timers fire in deadline order, equal deadlines in scheduling order, and a
    // cancelled timer never fires; the loop's clock has reached the last deadline when
    // it fires. On the simulator the timers are an hour long and pass at once, in
    // virtual time.
    fn run<K: Kernel>(&self, k: &K) {
        let unit = if on_sim(k) { 900.0 } else { 0.01 };
        let event_loop = new_loop(k);
        let log = Log::new();
        let now = event_loop.time();
        for (name, when) in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("b2", 2.0)] {
            let log = log.clone();
            event_loop
                .call_at(now + when * unit, move || log.push(name))
                .unwrap();
        }
        let cancelled_log = log.clone();
        let cancelled = event_loop
            .call_later(1.5 * unit, move || cancelled_log.push("cancelled"))
            .unwrap();
        assert_eq!(cancelled.when().map(|w| w > now), Some(true));
        cancelled.cancel();
        assert!(cancelled.cancelled());
        let stopper = event_loop.clone();
        event_loop
            .call_later(4.0 * unit, move || stopper.stop())
            .unwrap();
        event_loop.run_forever().unwrap();
        assert_eq!(log.take(), ["a", "b", "b2", "c"]);
        assert!(event_loop.time() >= now + 4.0 * unit);
        event_loop.close().unwrap();
    }
}

impl Body for call_later_rejects_nan {
    // Goal: a NaN delay or deadline is a ValueError, not a timer that never fires.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let err = event_loop.call_later(f64::NAN, || {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        let err = event_loop.call_at(f64::NAN, || {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        event_loop.close().unwrap();
    }
}

// ----- a closed or running loop ------------------------------------------------------

impl Body for run_closed_loop_is_runtime_error {
    // Goal: running or scheduling on a closed loop raises RuntimeError
    // 'Event loop is closed'; close() twice is fine.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        event_loop.close().unwrap();
        event_loop.close().unwrap();
        assert!(event_loop.is_closed());
        for err in [
            event_loop.run_forever().unwrap_err(),
            event_loop.run_until_complete(async {}).unwrap_err(),
            event_loop.call_soon(|| {}).unwrap_err(),
            event_loop.call_soon_threadsafe(|| {}).unwrap_err(),
            event_loop.call_later(1.0, || {}).unwrap_err(),
            event_loop.create_task(async {}).unwrap_err(),
            event_loop
                .add_reader(loopwatch::kernel::Fd(0), || {})
                .unwrap_err(),
        ] {
            assert_eq!(err.kind(), ErrorKind::RuntimeError);
            assert_eq!(err.message(), "Event loop is closed");
        }
        assert!(!event_loop.remove_reader(loopwatch::kernel::Fd(0)).unwrap());
    }
}

impl Body for run_running_loop_is_runtime_error {
    // Goal: run_forever from inside the same running loop raises
    // 'This event loop is already running'; close while running raises
    // 'Cannot close a running event loop'.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let errors = Log::new();
        let (lp, log) = (event_loop.clone(), errors.clone());
        event_loop
            .call_soon(move || {
                log.push(lp.run_forever().unwrap_err().message().to_string());
                log.push(lp.close().unwrap_err().message().to_string());
                assert!(lp.is_running());
                lp.stop();
            })
            .unwrap();
        event_loop.run_forever().unwrap();
        assert_eq!(
            errors.take(),
            [
                "This event loop is already running",
                "Cannot close a running event loop"
            ]
        );
        event_loop.close().unwrap();
    }
}

impl Body for run_while_another_loop_runs_is_runtime_error {
    // Goal: a second loop cannot run in a thread where one is running.
    fn run<K: Kernel>(&self, k: &K) {
        let outer = new_loop(k);
        let inner = new_loop(k);
        let errors = Log::new();
        let (lp, other, log) = (outer.clone(), inner.clone(), errors.clone());
        outer
            .call_soon(move || {
                let err = other.run_until_complete(async {}).unwrap_err();
                log.push(format!("{:?}: {}", err.kind(), err.message()));
                lp.stop();
            })
            .unwrap();
        outer.run_forever().unwrap();
        assert_eq!(
            errors.take(),
            ["RuntimeError: Cannot run the event loop while another loop is running"]
        );
        outer.close().unwrap();
        inner.close().unwrap();
    }
}

impl Body for stopped_before_future_completed {
    // Goal: run_until_complete raises 'Event loop stopped before Future completed.'
    // when stop() comes first.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        stop_soon(&event_loop);
        let err = event_loop
            .run_until_complete(std::future::pending::<()>())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(err.message(), "Event loop stopped before Future completed.");
        event_loop.close().unwrap();
    }
}

impl Body for running_loop_is_visible_inside_only {
    // Goal: get_running_loop() is the loop inside its callbacks (P-4) and fails with
    // 'no running event loop' outside; the module get_event_loop prefers it (P-6).
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let seen = Log::new();
        let (slot, lp, k2) = (seen.clone(), event_loop.clone(), k.clone());
        let err = policy::get_running_loop(k).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(err.message(), "no running event loop");
        assert!(policy::try_get_running_loop(k).is_none());
        event_loop
            .call_soon(move || {
                let running = policy::get_running_loop(&k2).unwrap();
                let via_events = policy::get_event_loop(&k2).unwrap();
                slot.push((running == lp, via_events == lp));
                lp.stop();
            })
            .unwrap();
        event_loop.run_forever().unwrap();
        assert_eq!(seen.take(), [(true, true)]);
        assert!(policy::try_get_running_loop(k).is_none());
        event_loop.close().unwrap();
    }
}

// ----- tasks -------------------------------------------------------------------------

impl Body for create_task_and_await {
    // Goal: tasks run on the loop; awaiting one gives its output; tasks interleave.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let log = Log::new();
        let (l1, l2) = (log.clone(), log.clone());
        let a = event_loop
            .create_task(async move {
                l1.push("a1");
                yield_now().await;
                l1.push("a2");
                1
            })
            .unwrap();
        let b = event_loop
            .create_task(async move {
                l2.push("b1");
                yield_now().await;
                l2.push("b2");
                2
            })
            .unwrap();
        let total = event_loop
            .run_until_complete(async move { a.await.unwrap() + b.await.unwrap() })
            .unwrap();
        assert_eq!(total, 3);
        assert_eq!(log.take(), ["a1", "b1", "a2", "b2"]);
        event_loop.close().unwrap();
    }
}

impl Body for task_cancel_gives_cancelled_error {
    // Goal: a cancelled task's future is dropped and awaiting it gives CancelledError;
    // until its next step it is not done.
    fn run<K: Kernel>(&self, k: &K) {
        struct OnDrop(Arc<AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let event_loop = new_loop(k);
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = OnDrop(dropped.clone());
        let task = event_loop
            .create_task(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            })
            .unwrap();
        let result = event_loop
            .run_until_complete(async move {
                yield_now().await;
                assert!(task.cancel());
                // As asyncio's Task.cancel: a request, carried out at the next step.
                assert!(!task.done() && !task.cancelled());
                task.await
            })
            .unwrap();
        assert_eq!(result.unwrap_err().kind(), ErrorKind::CancelledError);
        assert!(dropped.load(Ordering::SeqCst));
        event_loop.close().unwrap();
    }
}

impl Body for task_panic_reported_and_loop_survives {
    // Goal: a task that panics finishes with a Panic error and is reported through
    // the exception handler; the loop keeps running.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let reports = Log::new();
        let sink = reports.clone();
        event_loop.set_exception_handler(Some(Arc::new(
            move |_: &EventLoop<K>, context: &ExceptionContext| {
                sink.push(format!(
                    "{} / {}",
                    context.message.split(':').next().unwrap_or(""),
                    context
                        .exception
                        .as_ref()
                        .map(|e| e.message().to_string())
                        .unwrap_or_default()
                ));
            },
        )));
        let task = event_loop
            .create_task(async {
                panic!("boom in task");
            })
            .unwrap();
        let result = event_loop.run_until_complete(task).unwrap();
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panic);
        assert_eq!(err.message(), "boom in task");
        assert_eq!(
            reports.take(),
            ["Task exception was never retrieved / boom in task"]
        );
        assert_eq!(event_loop.run_until_complete(async { 7 }).unwrap(), 7);
        event_loop.close().unwrap();
    }
}

// ----- the exception handler and debug mode ------------------------------------------

impl Body for callback_panic_goes_to_exception_handler {
    // Goal: asyncio's Handle._run: an exception in a callback is reported as
    // 'Exception in callback …' with the handle, and later callbacks still run.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let reports = Log::new();
        let sink = reports.clone();
        event_loop.set_exception_handler(Some(Arc::new(
            move |_: &EventLoop<K>, context: &ExceptionContext| {
                sink.push(format!(
                    "{}|{}|{}",
                    context.message.starts_with("Exception in callback "),
                    context.exception.as_ref().unwrap().message(),
                    context.handle.is_some()
                ));
            },
        )));
        let after = Arc::new(AtomicBool::new(false));
        let flag = after.clone();
        event_loop.call_soon(|| panic!("boom")).unwrap();
        event_loop
            .call_soon(move || flag.store(true, Ordering::SeqCst))
            .unwrap();
        stop_soon(&event_loop);
        event_loop.run_forever().unwrap();
        assert_eq!(reports.take(), ["true|boom|true"]);
        assert!(after.load(Ordering::SeqCst));
        event_loop.close().unwrap();
    }
}

impl Body for default_exception_handler_logs_on_asyncio_target {
    // Goal: with no custom handler, a failing callback becomes a tracing error event
    // on target 'asyncio'; a panicking custom handler is reported by the default one
    // as 'Unhandled error in exception handler'.
    fn run<K: Kernel>(&self, k: &K) {
        let capture = Capture::new();
        capture.during(|| {
            let event_loop = new_loop(k);
            event_loop.call_soon(|| panic!("first")).unwrap();
            stop_soon(&event_loop);
            event_loop.run_forever().unwrap();
            event_loop.set_exception_handler(Some(Arc::new(
                |_: &EventLoop<K>, _: &ExceptionContext| panic!("handler broke"),
            )));
            assert!(event_loop.get_exception_handler().is_some());
            event_loop.call_soon(|| panic!("second")).unwrap();
            stop_soon(&event_loop);
            event_loop.run_forever().unwrap();
            event_loop.set_exception_handler(None);
            assert!(event_loop.get_exception_handler().is_none());
            event_loop.close().unwrap();
        });
        let events = capture.events();
        let asyncio: Vec<_> = events.iter().filter(|e| e.target == "asyncio").collect();
        assert_eq!(asyncio.len(), 2, "{events:?}");
        assert!(asyncio.iter().all(|e| e.level == tracing::Level::ERROR));
        assert!(asyncio[0].message.starts_with("Exception in callback "));
        assert!(asyncio[0].fields["exception"].contains("first"));
        assert_eq!(asyncio[1].message, "Unhandled error in exception handler");
        assert!(asyncio[1].fields["exception"].contains("handler broke"));
    }
}

impl Body for debug_mode_reports_slow_callbacks {
    // Goal: in debug mode a callback at or over slow_callback_duration is reported as a
    // warning on target 'asyncio'; out of debug mode nothing is reported. A threshold
    // of zero makes every callback slow, so the test does not depend on timing; a
    // negative threshold is a ValueError.
    fn run<K: Kernel>(&self, k: &K) {
        let capture = Capture::new();
        let inner = capture.clone();
        capture.during(|| {
            let event_loop = new_loop(k);
            event_loop.set_slow_callback_duration(0.0).unwrap();
            assert_eq!(event_loop.slow_callback_duration(), 0.0);
            event_loop.call_soon(|| {}).unwrap();
            stop_soon(&event_loop);
            event_loop.run_forever().unwrap();
            assert!(inner.events().is_empty(), "debug is off");
            event_loop.set_debug(true);
            event_loop.call_soon(|| {}).unwrap();
            event_loop.run_until_complete(async {}).unwrap();
            let err = event_loop.set_slow_callback_duration(-1.0).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueError);
            event_loop.close().unwrap();
        });
        let events = capture.events();
        assert!(!events.is_empty());
        assert!(
            events.iter().all(|e| e.target == "asyncio"
                && e.level == tracing::Level::WARN
                && e.message.starts_with("Executing <Handle ")
                && e.message.ends_with(" seconds")),
            "{events:?}"
        );
    }
}

fn main() -> ExitCode {
    testing::main(tests())
}
