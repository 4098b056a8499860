//! The process's signal wiring on the simulator: which disposition and wakeup fd the
//! kernel is left with as loops and watchers come and go, and what happens when code
//! other than loopwatch installs a handler of its own (reliability findings 1, 2, 16).
//!
//! `cargo test -p loopwatch-sim --test signal_wiring`; `LOOPWATCH_SEEDS=N` sets how
//! many seeds each test runs (default 20), `LOOPWATCH_SEED=S` runs one seed.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use loopwatch::kernel::{
    Clock, Disposition, Errno, Fds, Processes, Signal, Signals, WaitMode, WaitStatus,
};
use loopwatch::watcher::{MultiLoopChildWatcher, fork_window};
use loopwatch::{ChildWatcher, EventLoop, FastChildWatcher, SafeChildWatcher, WatcherRef};
use loopwatch_sim::testing::{self, Capture, Sweep, yield_now};
use loopwatch_sim::{ForeignHandler, Report, SimKernel, Simulation};

/// Runs `body` for each seed; each run must complete and leave no child, fd or
/// thread behind.
fn each_seed(test: &str, body: impl Fn(SimKernel) + Send + Sync + 'static) {
    Sweep::new(20)
        .name(test)
        .check_leaks()
        .run(move |k| body(k.clone()));
}

fn check_report(test: &str, seed: u64, report: &Report) {
    report.assert_completed(test);
    assert_eq!(report.children_left, (0, 0), "seed {seed}: children left");
    assert_eq!(report.fds_left, 0, "seed {seed}: fds left");
    assert_eq!(report.threads_abandoned, 0, "seed {seed}: threads left");
}

/// Runs `event_loop` until a SIGCHLD handler of its own sees a new child exit. A loop
/// that never hears it blocks for ever, which the simulator reports as a deadlock.
fn loop_hears_sigchld(k: &SimKernel, event_loop: &EventLoop<SimKernel>) {
    let child = testing::spawn_sh(k, "sleep 0.01; exit 0");
    let (k2, lp) = (k.clone(), event_loop.clone());
    event_loop
        .add_signal_handler(Signal::SIGCHLD, move || {
            if let Ok(WaitStatus::Terminated(..)) = k2.wait_pid(child, WaitMode::NoHang) {
                lp.stop();
            }
        })
        .unwrap();
    event_loop.run_forever().unwrap();
}

/// Opens pipes onto the fd numbers just freed, lets a child exit and its SIGCHLD be
/// delivered, and says whether any of the pipes received a byte. Two rounds, the
/// second shifted by one number, so that every freed number is a pipe's write end in
/// one of them.
fn sigchld_writes_into_reused_fds(k: &SimKernel) -> bool {
    let mut wrote = false;
    for shift in [false, true] {
        let mut fds = Vec::new();
        if shift {
            let (read, write) = k.pipe().unwrap();
            k.close(write).unwrap();
            fds.push(read);
        }
        let mut reads = Vec::new();
        for _ in 0..16 {
            let (read, write) = k.pipe().unwrap();
            k.set_nonblocking(read, true).unwrap();
            reads.push(read);
            fds.extend([read, write]);
        }
        let child = testing::spawn_sh(k, "exit 0");
        k.wait_pid(child, WaitMode::Block).unwrap();
        // With nothing else to run, the simulator delivers pending signals before
        // time moves on.
        k.sleep(Duration::from_secs(1));
        let mut buf = [0u8; 16];
        for read in reads {
            if k.read(read, &mut buf) != Err(Errno::EAGAIN) {
                wrote = true;
            }
        }
        for fd in fds {
            k.close(fd).unwrap();
        }
    }
    wrote
}

fn two_loops_sigchld(k: SimKernel, close_first_added_first: bool) {
    let a = EventLoop::with_kernel(k.clone()).unwrap();
    let b = EventLoop::with_kernel(k.clone()).unwrap();
    a.add_signal_handler(Signal::SIGCHLD, || {}).unwrap();
    b.add_signal_handler(Signal::SIGCHLD, || {}).unwrap();
    let (first, second) = if close_first_added_first {
        (a, b)
    } else {
        (b, a)
    };
    first.close().unwrap();
    loop_hears_sigchld(&k, &second);
    second.close().unwrap();
    assert_eq!(
        k.disposition(Signal::SIGCHLD).unwrap(),
        Disposition::Default,
        "SIGCHLD back to SIG_DFL"
    );
    assert!(
        !sigchld_writes_into_reused_fds(&k),
        "a byte reached an fd opened after both loops closed"
    );
    assert_eq!(k.set_wakeup_fd(None).unwrap(), None, "wakeup fd unset");
}

#[test]
fn finding_01_two_loops_sigchld_close_first_added_first() {
    // Reliability finding 1: loops A and B both handle SIGCHLD; A closes first. B still
    // hears SIGCHLD, and once B closes SIGCHLD is back to SIG_DFL, the wakeup fd is
    // unset, and no byte reaches an fd number reused later.
    each_seed(
        "finding_01_two_loops_sigchld_close_first_added_first",
        |k| two_loops_sigchld(k, true),
    );
}

#[test]
fn finding_01_two_loops_sigchld_close_last_added_first() {
    // Reliability finding 1: as above with B closed first: A gets the wakeup fd back
    // and hears SIGCHLD, and closing A leaves nothing behind. This order worked before
    // the fix; the test keeps the fix from breaking it.
    each_seed("finding_01_two_loops_sigchld_close_last_added_first", |k| {
        two_loops_sigchld(k, false)
    });
}

fn two_multi_loop_watchers(k: SimKernel, close_first_first: bool) {
    let first = Arc::new(MultiLoopChildWatcher::with_kernel(k.clone()));
    let second = Arc::new(MultiLoopChildWatcher::with_kernel(k.clone()));
    first.attach_loop(None).unwrap();
    second.attach_loop(None).unwrap();
    let (closed, left) = if close_first_first {
        (first, second)
    } else {
        (second, first)
    };
    closed.close().unwrap();
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let (w, k2) = (left.clone(), k.clone());
    let code = event_loop
        .run_until_complete(async move {
            let child = testing::spawn_sh(&k2, "sleep 0.01; exit 5");
            let (tx, rx) = mpsc::channel();
            w.add_child_handler(child, Box::new(move |_, code| tx.send(code).unwrap()))
                .unwrap();
            // A watcher that never hears the exit leaves this loop idle for ever: the
            // simulator reports a deadlock.
            loop {
                if let Ok(code) = rx.try_recv() {
                    return code;
                }
                yield_now().await;
                k2.sleep(Duration::from_millis(1));
            }
        })
        .unwrap();
    assert_eq!(code, 5, "the watcher left open reports its child");
    event_loop.close().unwrap();
    left.close().unwrap();
    assert_eq!(
        k.disposition(Signal::SIGCHLD).unwrap(),
        Disposition::Default,
        "SIGCHLD back to SIG_DFL"
    );
    assert!(
        !sigchld_writes_into_reused_fds(&k),
        "a byte reached an fd opened after both watchers closed"
    );
}

#[test]
fn finding_02_two_multi_loop_watchers_close_first_first() {
    // Reliability finding 2: two MultiLoop watchers attached one after the other; the
    // first closes first. The second still reports its child, and once it closes
    // SIGCHLD is back to SIG_DFL and no byte reaches an fd number reused later.
    each_seed(
        "finding_02_two_multi_loop_watchers_close_first_first",
        |k| two_multi_loop_watchers(k, true),
    );
}

#[test]
fn finding_02_two_multi_loop_watchers_close_second_first() {
    // Reliability finding 2: as above with the second closed first: the first gets
    // SIGCHLD back, and closing it leaves nothing behind. This order worked before
    // the fix; the test keeps the fix from breaking it.
    each_seed(
        "finding_02_two_multi_loop_watchers_close_second_first",
        |k| two_multi_loop_watchers(k, false),
    );
}

#[test]
fn finding_02_multi_loop_over_a_loops_handler() {
    // Reliability finding 2: a loop handles SIGCHLD, then a MultiLoop watcher installs
    // its own SIGCHLD handler and closes: the loop hears SIGCHLD again (its handler is
    // put back, not SIG_DFL), and closing the loop leaves SIG_DFL. This passed before
    // the fix too; it keeps the fix from restoring SIG_DFL under a loop still open.
    each_seed("finding_02_multi_loop_over_a_loops_handler", |k| {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        event_loop
            .add_signal_handler(Signal::SIGCHLD, || {})
            .unwrap();
        let watcher = MultiLoopChildWatcher::with_kernel(k.clone());
        watcher.attach_loop(None).unwrap();
        assert!(matches!(
            k.disposition(Signal::SIGCHLD).unwrap(),
            Disposition::Notify(_)
        ));
        watcher.close().unwrap();
        assert_eq!(k.disposition(Signal::SIGCHLD).unwrap(), Disposition::Wakeup);
        loop_hears_sigchld(&k, &event_loop);
        event_loop.close().unwrap();
        assert_eq!(
            k.disposition(Signal::SIGCHLD).unwrap(),
            Disposition::Default
        );
        assert_eq!(k.set_wakeup_fd(None).unwrap(), None, "wakeup fd unset");
    });
}

/// The `(category, message)` of each warning on target `asyncio` that `capture` holds.
fn asyncio_warnings(capture: &Capture) -> Vec<(String, String)> {
    capture
        .events()
        .into_iter()
        .filter(|e| e.target == "asyncio" && e.level == tracing::Level::WARN)
        .map(|e| {
            (
                e.fields.get("category").cloned().unwrap_or_default(),
                e.message,
            )
        })
        .collect()
}

fn foreign_handler_after_attach(k: SimKernel, make: fn(&SimKernel) -> WatcherRef<SimKernel>) {
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let watcher = make(&k);
    watcher.attach_loop(Some(event_loop.clone())).unwrap();
    let foreign = k.install_foreign_handler(Signal::SIGCHLD, ForeignHandler::Count);
    let (w, k2) = (watcher.clone(), k.clone());
    let child = event_loop
        .run_until_complete(async move {
            let _window = fork_window(&*w);
            let child = testing::spawn_sh(&k2, "sleep 0.01; exit 0");
            w.add_child_handler(child, Box::new(|_, _| {})).unwrap();
            child
        })
        .unwrap();
    k.wait_pid(child, WaitMode::Block).unwrap();
    k.sleep(Duration::from_secs(1));
    assert_eq!(
        k.foreign_deliveries(),
        1,
        "the foreign handler heard the exit"
    );
    watcher.close().unwrap();
    event_loop.close().unwrap();
    assert_eq!(
        k.disposition(Signal::SIGCHLD).unwrap(),
        foreign,
        "closing left the foreign handler in place"
    );
}

fn foreign_handler_test(test: &str, make: fn(&SimKernel) -> WatcherRef<SimKernel>) {
    for &seed in Sweep::new(20).seeds() {
        let capture = Capture::new();
        let report = capture
            .during(|| Simulation::new(seed).run(move |k| foreign_handler_after_attach(k, make)));
        check_report(test, seed, &report);
        let warned = asyncio_warnings(&capture);
        assert!(
            warned
                .iter()
                .any(|(category, message)| category == "RuntimeWarning"
                    && message.contains("SIGCHLD")),
            "seed {seed}: a RuntimeWarning naming SIGCHLD when registering the child: {warned:?}"
        );
    }
}

#[test]
fn finding_16_foreign_sigchld_handler_after_attach_safe() {
    // Reliability finding 16: another library installs a SIGCHLD handler after Safe was
    // attached: registering the next child warns that its exit will not be heard, and
    // closing the watcher and its loop leaves the other library's handler in place.
    foreign_handler_test(
        "finding_16_foreign_sigchld_handler_after_attach_safe",
        |k| Arc::new(SafeChildWatcher::with_kernel(k.clone())),
    );
}

#[test]
fn finding_16_foreign_sigchld_handler_after_attach_fast() {
    // Reliability finding 16: as above, with Fast.
    foreign_handler_test(
        "finding_16_foreign_sigchld_handler_after_attach_fast",
        |k| Arc::new(FastChildWatcher::with_kernel(k.clone())),
    );
}

#[test]
fn finding_16_foreign_sigchld_handler_after_attach_multi_loop() {
    // Reliability finding 16: as above, with MultiLoop.
    foreign_handler_test(
        "finding_16_foreign_sigchld_handler_after_attach_multi_loop",
        |k| Arc::new(MultiLoopChildWatcher::with_kernel(k.clone())),
    );
}

#[test]
fn finding_16_loop_added_over_a_foreign_handler_puts_it_back() {
    // Reliability finding 16: loop A handles SIGCHLD, another library replaces the
    // handler, then loop B adds one (taking SIGCHLD back, with a warning). When both
    // have closed, the other library's handler is back, not SIG_DFL.
    for &seed in Sweep::new(20).seeds() {
        let capture = Capture::new();
        let report = capture.during(|| {
            Simulation::new(seed).run(|k| {
                let a = EventLoop::with_kernel(k.clone()).unwrap();
                a.add_signal_handler(Signal::SIGCHLD, || {}).unwrap();
                let foreign = k.install_foreign_handler(Signal::SIGCHLD, ForeignHandler::Count);
                let b = EventLoop::with_kernel(k.clone()).unwrap();
                b.add_signal_handler(Signal::SIGCHLD, || {}).unwrap();
                assert_eq!(k.disposition(Signal::SIGCHLD).unwrap(), Disposition::Wakeup);
                loop_hears_sigchld(&k, &b);
                a.close().unwrap();
                b.close().unwrap();
                assert_eq!(k.disposition(Signal::SIGCHLD).unwrap(), foreign);
                assert_eq!(k.set_wakeup_fd(None).unwrap(), None, "wakeup fd unset");
            })
        });
        check_report(
            "finding_16_loop_added_over_a_foreign_handler_puts_it_back",
            seed,
            &report,
        );
        let warned = asyncio_warnings(&capture);
        assert!(
            warned
                .iter()
                .any(|(category, _)| category == "RuntimeWarning"),
            "seed {seed}: a RuntimeWarning when B took SIGCHLD over: {warned:?}"
        );
    }
}
