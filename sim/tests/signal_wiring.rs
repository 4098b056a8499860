//! The process's signal wiring on the simulator: which disposition and wakeup fd the
//! kernel is left with as loops and watchers come and go, and what happens when code
//! other than loopwatch installs a handler of its own (reliability findings 2, 16).
//! The findings' tests that run on both kernels (1, 2 and 16 with each watcher) are in
//! `main_thread_findings_signals.rs`; these are the simulator-only ones.
//!
//! `cargo test -p loopwatch-sim --test signal_wiring`; `LOOPWATCH_SEEDS=N` sets how
//! many seeds each test runs (default 20), `LOOPWATCH_SEED=S` runs one seed.

use loopwatch::kernel::{Disposition, Processes, Signal, Signals, WaitMode, WaitStatus};
use loopwatch::watcher::MultiLoopChildWatcher;
use loopwatch::{ChildWatcher, EventLoop};
use loopwatch_sim::testing::{self, Capture, Sweep};
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
