//! The event loop on the real OS. Each test names the asyncio behaviour it ports.
//! Tests here run in cargo's worker threads, never the main thread; what needs the
//! main thread (signal handlers, auto-creation) is in `sim/tests/main_thread_policy.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;
use crate::kernel::{Fds, Threads};
use crate::loom::sync::Mutex;

fn new_loop() -> EventLoop {
    EventLoop::new().expect("a loop can be created")
}

/// Records calls in order, shareable with callbacks.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, entry: impl Into<String>) {
        self.0.lock().push(entry.into());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock())
    }
}

fn stop_soon(event_loop: &EventLoop) {
    let stopper = event_loop.clone();
    event_loop.call_soon(move || stopper.stop()).unwrap();
}

/// Collects the error events the default exception handler emits.
mod capture {
    use std::sync::Arc;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use crate::loom::sync::Mutex;

    #[derive(Clone, Default)]
    pub(super) struct Capture(pub(super) Arc<Mutex<Vec<(String, String, String)>>>);

    struct Fields(String, String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let text = format!("{value:?}");
            match field.name() {
                "message" => self.0 = text,
                "exception" => self.1 = text,
                _ => {}
            }
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields(String::new(), String::new());
            event.record(&mut fields);
            let target = event.metadata().target().to_string();
            self.0.lock().push((target, fields.0, fields.1));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[test]
fn run_until_complete_returns_output() {
    // Goal: run_until_complete drives a future to completion and returns its value.
    let event_loop = new_loop();
    assert_eq!(event_loop.run_until_complete(async { 40 + 2 }).unwrap(), 42);
    assert!(!event_loop.is_running());
    event_loop.close().unwrap();
}

#[test]
fn run_until_complete_runs_earlier_callbacks_first() {
    // Goal: as asyncio, where the future's task step is queued behind callbacks that
    // were already scheduled, those callbacks run before the future is first polled,
    // even when it is ready at once.
    let event_loop = new_loop();
    let log = Log::default();
    let l1 = log.clone();
    event_loop.call_soon(move || l1.push("callback")).unwrap();
    let l2 = log.clone();
    event_loop
        .run_until_complete(async move { l2.push("future") })
        .unwrap();
    assert_eq!(log.take(), ["callback", "future"]);
    event_loop.close().unwrap();
}

#[test]
fn call_soon_runs_in_fifo_order() {
    // Goal: callbacks scheduled with call_soon run in scheduling order, one iteration.
    let event_loop = new_loop();
    let log = Log::default();
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

#[test]
fn callbacks_scheduled_while_running_wait_an_iteration() {
    // Goal: like asyncio's _run_once, an iteration runs only what was ready when it
    // started, so stop() from the first callback runs the second but not the third.
    let event_loop = new_loop();
    let log = Log::default();
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

#[test]
fn stop_before_run_runs_one_iteration() {
    // Goal: asyncio semantics: stop() on a loop that is not running makes the next
    // run_forever do one iteration and return.
    let event_loop = new_loop();
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

#[test]
fn call_later_orders_timers_by_deadline() {
    // Goal: timers fire in deadline order, equal deadlines in scheduling order, and
    // a cancelled timer never fires.
    let event_loop = new_loop();
    let log = Log::default();
    let now = event_loop.time();
    for (name, when) in [("c", 0.03), ("a", 0.01), ("b", 0.02), ("b2", 0.02)] {
        let log = log.clone();
        event_loop
            .call_at(now + when, move || log.push(name))
            .unwrap();
    }
    let cancelled_log = log.clone();
    let cancelled = event_loop
        .call_later(0.015, move || cancelled_log.push("cancelled"))
        .unwrap();
    assert_eq!(cancelled.when().map(|w| w > now), Some(true));
    cancelled.cancel();
    assert!(cancelled.cancelled());
    let stopper = event_loop.clone();
    event_loop.call_later(0.04, move || stopper.stop()).unwrap();
    event_loop.run_forever().unwrap();
    assert_eq!(log.take(), ["a", "b", "b2", "c"]);
    assert!(event_loop.time() >= now + 0.04);
    event_loop.close().unwrap();
}

#[test]
fn call_later_rejects_nan() {
    // Goal: a NaN delay or deadline is a ValueError, not a timer that never fires.
    let event_loop = new_loop();
    let err = event_loop.call_later(f64::NAN, || {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    let err = event_loop.call_at(f64::NAN, || {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    event_loop.close().unwrap();
}

#[test]
fn many_cancelled_timers_are_pruned() {
    // Goal: cancelling most of many timers does not keep them (or stall the loop);
    // the survivors still fire.
    let event_loop = new_loop();
    let fired = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..1000 {
        let fired = fired.clone();
        let handle = event_loop
            .call_later(if i % 10 == 0 { 0.0 } else { 3600.0 }, move || {
                fired.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        handles.push(handle);
    }
    for (i, handle) in handles.iter().enumerate() {
        if i % 10 != 0 {
            handle.cancel();
        }
    }
    stop_soon(&event_loop);
    event_loop.run_forever().unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 100);
    assert!(event_loop.inner.state.lock().timers.len() < 900);
    event_loop.close().unwrap();
}

#[test]
fn cancelled_handle_does_not_run() {
    // Goal: Handle.cancel() before the iteration keeps the callback from running.
    let event_loop = new_loop();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let handle = event_loop
        .call_soon(move || flag.store(true, Ordering::SeqCst))
        .unwrap();
    handle.cancel();
    stop_soon(&event_loop);
    event_loop.run_forever().unwrap();
    assert!(!ran.load(Ordering::SeqCst));
    event_loop.close().unwrap();
}

#[test]
fn run_closed_loop_is_runtime_error() {
    // Goal: running or scheduling on a closed loop raises RuntimeError
    // 'Event loop is closed'; close() twice is fine.
    let event_loop = new_loop();
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
        event_loop.add_reader(Fd(0), || {}).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(err.message(), "Event loop is closed");
    }
    assert!(!event_loop.remove_reader(Fd(0)).unwrap());
}

#[test]
fn run_running_loop_is_runtime_error() {
    // Goal: run_forever from inside the same running loop raises
    // 'This event loop is already running'; close while running raises
    // 'Cannot close a running event loop'.
    let event_loop = new_loop();
    let errors = Log::default();
    let (lp, log) = (event_loop.clone(), errors.clone());
    event_loop
        .call_soon(move || {
            log.push(lp.run_forever().unwrap_err().message());
            log.push(lp.close().unwrap_err().message());
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

#[test]
fn run_while_another_loop_runs_is_runtime_error() {
    // Goal: a second loop cannot run in a thread where one is running.
    let outer = new_loop();
    let inner = new_loop();
    let errors = Log::default();
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

#[test]
fn stopped_before_future_completed() {
    // Goal: run_until_complete raises 'Event loop stopped before Future completed.'
    // when stop() comes first.
    let event_loop = new_loop();
    stop_soon(&event_loop);
    let err = event_loop
        .run_until_complete(std::future::pending::<()>())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    assert_eq!(err.message(), "Event loop stopped before Future completed.");
    event_loop.close().unwrap();
}

#[test]
fn running_loop_is_visible_inside_only() {
    // Goal: get_running_loop() is the loop inside its callbacks (P-4) and fails with
    // 'no running event loop' outside; the module get_event_loop prefers it (P-6).
    let event_loop = new_loop();
    let seen = Arc::new(Mutex::new(None));
    let (slot, lp) = (seen.clone(), event_loop.clone());
    let err = crate::get_running_loop().unwrap_err();
    assert_eq!(err.message(), "no running event loop");
    assert!(crate::try_get_running_loop().is_none());
    event_loop
        .call_soon(move || {
            let running = crate::get_running_loop().unwrap();
            let via_events = crate::get_event_loop().unwrap();
            *slot.lock() = Some((running == lp, via_events == lp));
            lp.stop();
        })
        .unwrap();
    event_loop.run_forever().unwrap();
    assert_eq!(*seen.lock(), Some((true, true)));
    assert!(crate::try_get_running_loop().is_none());
    event_loop.close().unwrap();
}

#[test]
fn call_soon_threadsafe_from_four_threads() {
    // Goal: 4 threads × 10,000 call_soon_threadsafe while the loop sleeps in poll:
    // each callback runs exactly once, in the loop's thread.
    const THREADS: usize = 4;
    const PER_THREAD: usize = 10_000;
    let event_loop = new_loop();
    let kernel = *event_loop.kernel();
    let loop_thread = kernel.current_thread();
    let seen = Arc::new(Mutex::new(vec![0u8; THREADS * PER_THREAD]));
    let wrong_thread = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for t in 0..THREADS {
        let (lp, seen, wrong, done) = (
            event_loop.clone(),
            seen.clone(),
            wrong_thread.clone(),
            done.clone(),
        );
        let body = move || {
            for i in 0..PER_THREAD {
                let (seen, wrong, done, stopper) =
                    (seen.clone(), wrong.clone(), done.clone(), lp.clone());
                lp.call_soon_threadsafe(move || {
                    if kernel.current_thread() != loop_thread {
                        wrong.fetch_add(1, Ordering::SeqCst);
                    }
                    seen.lock()[t * PER_THREAD + i] += 1;
                    if done.fetch_add(1, Ordering::SeqCst) + 1 == THREADS * PER_THREAD {
                        stopper.stop();
                    }
                })
                .unwrap();
            }
        };
        producers.push(
            kernel
                .spawn_thread(&format!("producer-{t}"), Box::new(body))
                .unwrap(),
        );
    }
    // Nothing is ready when the loop starts, so it blocks in poll until woken.
    event_loop.run_forever().unwrap();
    for producer in producers {
        kernel.join_thread(producer).unwrap();
    }
    assert_eq!(wrong_thread.load(Ordering::SeqCst), 0);
    let seen = seen.lock();
    assert!(
        seen.iter().all(|&count| count == 1),
        "every callback exactly once"
    );
    event_loop.close().unwrap();
}

#[test]
fn non_threadsafe_call_from_other_thread_is_runtime_error() {
    // Goal: as asyncio's debug-mode _check_thread: call_soon from another thread
    // while the loop runs is a RuntimeError, call_soon_threadsafe is fine.
    let event_loop = new_loop();
    let kernel = *event_loop.kernel();
    let result = Arc::new(Mutex::new(None));
    let intruder = Arc::new(Mutex::new(None));
    let (lp, slot, intruder_slot) = (event_loop.clone(), result.clone(), intruder.clone());
    event_loop
        .call_soon(move || {
            let lp2 = lp.clone();
            let handle = kernel
                .spawn_thread(
                    "intruder",
                    Box::new(move || {
                        let err = lp2.call_soon(|| {}).unwrap_err();
                        let err2 = lp2.add_reader(Fd(0), || {}).unwrap_err();
                        *slot.lock() = Some((err.message().to_string(), err2.kind()));
                        let stopper = lp2.clone();
                        lp2.call_soon_threadsafe(move || stopper.stop()).unwrap();
                    }),
                )
                .unwrap();
            *intruder_slot.lock() = Some(handle);
        })
        .unwrap();
    event_loop.run_forever().unwrap();
    let handle = intruder.lock().take().unwrap();
    kernel.join_thread(handle).unwrap();
    let (message, kind) = result.lock().clone().unwrap();
    assert_eq!(
        message,
        "Non-thread-safe operation invoked on an event loop other than the current one"
    );
    assert_eq!(kind, ErrorKind::RuntimeError);
    event_loop.close().unwrap();
}

#[test]
fn create_task_and_await() {
    // Goal: tasks run on the loop; awaiting one gives its output; tasks interleave.
    let event_loop = new_loop();
    let log = Log::default();
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

#[test]
fn task_cancel_gives_cancelled_error() {
    // Goal: a cancelled task's future is dropped and awaiting it gives CancelledError.
    let event_loop = new_loop();
    let dropped = Arc::new(AtomicBool::new(false));
    struct OnDrop(Arc<AtomicBool>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
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
            task.await
        })
        .unwrap();
    assert_eq!(result.unwrap_err().kind(), ErrorKind::CancelledError);
    assert!(dropped.load(Ordering::SeqCst));
    event_loop.close().unwrap();
}

#[test]
fn task_panic_reported_and_loop_survives() {
    // Goal: a task that panics finishes with a Panic error and is reported through
    // the exception handler; the loop keeps running.
    let event_loop = new_loop();
    let reports = Log::default();
    let sink = reports.clone();
    event_loop.set_exception_handler(Some(Arc::new(move |_, context: &ExceptionContext| {
        sink.push(format!(
            "{} / {}",
            context.message.split(':').next().unwrap_or(""),
            context
                .exception
                .as_ref()
                .map(|e| e.message().to_string())
                .unwrap_or_default()
        ));
    })));
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

#[test]
fn callback_panic_goes_to_exception_handler() {
    // Goal: asyncio's Handle._run: an exception in a callback is reported as
    // 'Exception in callback …' with the handle, and later callbacks still run.
    let event_loop = new_loop();
    let reports = Log::default();
    let sink = reports.clone();
    event_loop.set_exception_handler(Some(Arc::new(move |_, context: &ExceptionContext| {
        sink.push(format!(
            "{}|{}|{}",
            context.message.starts_with("Exception in callback "),
            context.exception.as_ref().unwrap().message(),
            context.handle.is_some()
        ));
    })));
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

#[test]
fn default_exception_handler_logs_on_asyncio_target() {
    // Goal: with no custom handler, a failing callback becomes a tracing error event
    // on target 'asyncio'; a panicking custom handler is reported by the default one
    // as 'Unhandled error in exception handler'.
    let capture = capture::Capture::default();
    let events = capture.0.clone();
    tracing::subscriber::with_default(capture, || {
        let event_loop = new_loop();
        event_loop.call_soon(|| panic!("first")).unwrap();
        stop_soon(&event_loop);
        event_loop.run_forever().unwrap();
        event_loop.set_exception_handler(Some(Arc::new(|_, _: &ExceptionContext| {
            panic!("handler broke")
        })));
        assert!(event_loop.get_exception_handler().is_some());
        event_loop.call_soon(|| panic!("second")).unwrap();
        stop_soon(&event_loop);
        event_loop.run_forever().unwrap();
        event_loop.set_exception_handler(None);
        assert!(event_loop.get_exception_handler().is_none());
        event_loop.close().unwrap();
    });
    let events = events.lock().clone();
    let asyncio: Vec<_> = events.iter().filter(|(t, _, _)| t == "asyncio").collect();
    assert_eq!(asyncio.len(), 2, "{events:?}");
    assert!(asyncio[0].1.starts_with("Exception in callback "));
    assert!(asyncio[0].2.contains("first"));
    assert_eq!(asyncio[1].1, "Unhandled error in exception handler");
    assert!(asyncio[1].2.contains("handler broke"));
}

#[test]
fn debug_mode_reports_slow_callbacks() {
    // Goal: in debug mode a callback at or over slow_callback_duration is reported as a
    // warning on target 'asyncio'; out of debug mode nothing is reported. A threshold
    // of zero makes every callback slow, so the test does not depend on timing.
    let capture = capture::Capture::default();
    let events = capture.0.clone();
    tracing::subscriber::with_default(capture, || {
        let event_loop = new_loop();
        event_loop.set_slow_callback_duration(0.0).unwrap();
        assert_eq!(event_loop.slow_callback_duration(), 0.0);
        event_loop.call_soon(|| {}).unwrap();
        stop_soon(&event_loop);
        event_loop.run_forever().unwrap();
        assert!(events.lock().is_empty(), "debug is off");
        event_loop.set_debug(true);
        event_loop.call_soon(|| {}).unwrap();
        event_loop.run_until_complete(async {}).unwrap();
        let err = event_loop.set_slow_callback_duration(-1.0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        event_loop.close().unwrap();
    });
    let events = events.lock().clone();
    assert!(!events.is_empty());
    assert!(events.iter().all(|(target, message, _)| target == "asyncio"
        && message.starts_with("Executing <Handle ")
        && message.ends_with(" seconds")));
}

#[test]
fn reader_is_level_triggered_and_removable() {
    // Goal: add_reader calls back while data is unread (level-triggered, as
    // selectors), remove_reader stops it and reports whether one was set.
    let event_loop = new_loop();
    let kernel = *event_loop.kernel();
    let (read, write) = kernel.pipe().unwrap();
    kernel.set_nonblocking(read, true).unwrap();
    kernel.write(write, b"xy").unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (count, lp) = (calls.clone(), event_loop.clone());
    event_loop
        .add_reader(read, move || {
            // Read one byte per call: the reader must be called again for the second.
            let mut byte = [0u8; 1];
            let n = kernel.read(read, &mut byte).unwrap();
            assert_eq!(n, 1);
            if count.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
                assert!(lp.remove_reader(read).unwrap());
                lp.stop();
            }
        })
        .unwrap();
    event_loop.run_forever().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(!event_loop.remove_reader(read).unwrap());
    kernel.close(read).unwrap();
    kernel.close(write).unwrap();
    event_loop.close().unwrap();
}

#[test]
fn reader_and_writer_on_one_fd_and_replacement() {
    // Goal: a reader and a writer can share an fd; adding a second reader replaces the
    // first (its handle is cancelled); removing one leaves the other working.
    let event_loop = new_loop();
    let kernel = *event_loop.kernel();
    let (read, write) = kernel.pipe().unwrap();
    let log = Log::default();
    let first = {
        let log = log.clone();
        event_loop
            .add_writer(write, move || log.push("first"))
            .unwrap()
    };
    let lp = event_loop.clone();
    let log2 = log.clone();
    event_loop
        .add_writer(write, move || {
            log2.push("writer");
            lp.remove_writer(write).unwrap();
            lp.stop();
        })
        .unwrap();
    assert!(first.cancelled());
    event_loop.run_forever().unwrap();
    assert_eq!(log.take(), ["writer"]);
    let lp = event_loop.clone();
    let log3 = log.clone();
    event_loop
        .add_reader(read, move || {
            log3.push("reader");
            lp.stop();
        })
        .unwrap();
    kernel.write(write, b"!").unwrap();
    event_loop.run_forever().unwrap();
    assert_eq!(log.take(), ["reader"]);
    assert!(event_loop.remove_reader(read).unwrap());
    assert!(!event_loop.remove_writer(write).unwrap());
    kernel.close(read).unwrap();
    kernel.close(write).unwrap();
    event_loop.close().unwrap();
}

#[test]
fn add_reader_bad_fd() {
    // Goal: a negative fd is a ValueError; an fd that is not open is the kernel's EBADF.
    let event_loop = new_loop();
    let err = event_loop.add_reader(Fd(-1), || {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.message(), "Invalid file descriptor: -1");
    // A number far above any open fd: closing a real one could race with another
    // test thread being given the same number.
    let err = event_loop.add_reader(Fd(i32::MAX), || {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Os(crate::kernel::Errno::EBADF));
    event_loop.close().unwrap();
}

#[test]
fn signal_handler_outside_main_thread_is_runtime_error() {
    // Goal: add_signal_handler needs the main thread (set_wakeup_fd), as CPython;
    // an invalid number is a ValueError first.
    let event_loop = new_loop();
    let err = event_loop
        .add_signal_handler(Signal::SIGUSR1, || {})
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    assert_eq!(err.message(), "set_wakeup_fd only works in main thread");
    let err = event_loop.add_signal_handler(Signal(0), || {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.message(), "sig 0 out of range(1, 65)");
    let err = event_loop.remove_signal_handler(Signal(65)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert!(!event_loop.remove_signal_handler(Signal::SIGUSR1).unwrap());
    event_loop.close().unwrap();
}

#[test]
fn debug_flag() {
    // Goal: get_debug/set_debug round-trip, default off.
    let event_loop = new_loop();
    assert!(!event_loop.get_debug());
    event_loop.set_debug(true);
    assert!(event_loop.get_debug());
    assert!(format!("{event_loop:?}").contains("debug=true"));
    event_loop.close().unwrap();
}

/// Yields once to the loop, as `asyncio.sleep(0)`.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}
