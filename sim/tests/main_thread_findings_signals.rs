//! Regression tests for the reliability findings about the process's signal wiring
//! that need its main thread: two loops handling SIGCHLD (finding 1), two MultiLoop
//! watchers (2), a forked child's signals (10) and another library's SIGCHLD handler
//! installed after the watcher was attached (16). Each is named `finding_NN_…` after
//! its finding; the findings about the watchers are in `main_thread_findings.rs`, the
//! simulator-only ones about the wiring in `signal_wiring.rs`.
//!
//! Each behaviour is one body run on both kernels: `name [os]` on the real OS, on the
//! main thread of this binary, one test at a time from a fresh default policy;
//! `name [sim]` on the simulator's main thread over many seeds. What only the real OS
//! can run says why beside its registration in `main`.
//!
//! `cargo test -p loopwatch-sim --test main_thread_findings_signals [NAME]`;
//! `LOOPWATCH_SEEDS=N` and `LOOPWATCH_SEED=S` choose the simulator's seeds.

mod main_thread_common;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use loopwatch::kernel::{
    Disposition, Errno, Fds, Kernel, Processes, Signal, Signals, WaitMode, WaitStatus,
};
use loopwatch::watcher::fork_window;
use loopwatch::{EventLoop, OsKernel};
use loopwatch_sim::ForeignHandler;
use loopwatch_sim::testing::{self, Body, Capture, Log, Test};

use main_thread_common::{Kind, PATIENCE, fork, install, sim, sleep, uninstall};

/// Seeds of the simulator arms, as many as their former simulator-only twins in
/// `signal_wiring.rs` ran.
const SEEDS: u64 = 20;

/// Lets a SIGCHLD that is pending be handled. On the real OS it already was: this
/// process's only thread took it before its blocking wait returned. The simulator
/// picks when a signal is delivered; with nothing else to run, it delivers pending
/// ones before its clock moves on.
fn deliver_pending_sigchld<K: Kernel>(k: &K) {
    if sim(k).is_some() {
        k.sleep(Duration::from_secs(1));
    }
}

// ----- finding 1: two loops handle SIGCHLD -------------------------------------------

/// Runs `event_loop` until a SIGCHLD handler of its own sees a new child exit, or a
/// generous limit passes (a loop that never hears SIGCHLD would otherwise hang the
/// binary). Returns whether the handler saw it; the child is reaped either way.
fn loop_hears_sigchld<K: Kernel>(k: &K, event_loop: &EventLoop<K>) -> bool {
    let child = testing::spawn_sh(k, "exit 0");
    let heard = Arc::new(AtomicBool::new(false));
    let (flag, lp, k2) = (heard.clone(), event_loop.clone(), k.clone());
    event_loop
        .add_signal_handler(Signal::SIGCHLD, move || {
            if let Ok(WaitStatus::Terminated(..)) = k2.wait_pid(child, WaitMode::NoHang) {
                flag.store(true, Ordering::SeqCst);
                lp.stop();
            }
        })
        .unwrap();
    let lp = event_loop.clone();
    let limit = event_loop.call_later(PATIENCE, move || lp.stop()).unwrap();
    event_loop.run_forever().unwrap();
    limit.cancel();
    let _ = k.wait_pid(child, WaitMode::Block);
    heard.load(Ordering::SeqCst)
}

/// Opens pipes onto the fd numbers just freed, lets a child exit and its SIGCHLD be
/// handled, and says whether any of the pipes received a byte. Two rounds, the second
/// shifted by one number, so that every freed number is a pipe's write end in one of
/// them.
fn sigchld_writes_into_reused_fds<K: Kernel>(k: &K) -> bool {
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
        deliver_pending_sigchld(k);
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

/// Reliability finding 1: loops A and B both handle SIGCHLD; whichever closes first
/// (`true`: A, the first added), the other still hears SIGCHLD, and once both are
/// closed SIGCHLD is back to SIG_DFL, the wakeup fd is unset, and no byte reaches an
/// fd number reused later. B first worked before the fix; its test keeps the fix from
/// breaking it.
struct TwoLoopsSigchld(bool);

impl Body for TwoLoopsSigchld {
    fn run<K: Kernel>(&self, k: &K) {
        assert_eq!(
            k.disposition(Signal::SIGCHLD).unwrap(),
            Disposition::Default,
            "SIGCHLD starts at SIG_DFL"
        );
        let a = EventLoop::with_kernel(k.clone()).unwrap();
        let b = EventLoop::with_kernel(k.clone()).unwrap();
        a.add_signal_handler(Signal::SIGCHLD, || {}).unwrap();
        b.add_signal_handler(Signal::SIGCHLD, || {}).unwrap();
        let (first, second) = if self.0 { (a, b) } else { (b, a) };
        first.close().unwrap();
        assert!(
            loop_hears_sigchld(k, &second),
            "the loop still open hears SIGCHLD after the other closed"
        );
        second.close().unwrap();
        let disposition = k.disposition(Signal::SIGCHLD).unwrap();
        let wrote = sigchld_writes_into_reused_fds(k);
        let wakeup = k.set_wakeup_fd(None).unwrap();
        assert_eq!(disposition, Disposition::Default, "SIGCHLD back to SIG_DFL");
        assert_eq!(wakeup, None, "wakeup fd unset");
        assert!(
            !wrote,
            "a byte reached an fd opened after both loops closed"
        );
    }
}

// ----- finding 2: two MultiLoop watchers -----------------------------------------------

/// Reliability finding 2: two MultiLoop watchers attached one after the other and
/// closed in either order (`true`: the first first): the one left still reports its
/// children, and once both are closed SIGCHLD is back to SIG_DFL and no byte reaches
/// an fd number reused later. The second first worked before the fix; its test keeps
/// the fix from breaking it.
struct TwoMultiLoopWatchers(bool);

impl Body for TwoMultiLoopWatchers {
    fn run<K: Kernel>(&self, k: &K) {
        assert_eq!(
            k.disposition(Signal::SIGCHLD).unwrap(),
            Disposition::Default,
            "SIGCHLD starts at SIG_DFL"
        );
        let first = Kind::MultiLoop.make(k);
        let second = Kind::MultiLoop.make(k);
        first.attach_loop(None).unwrap();
        second.attach_loop(None).unwrap();
        let (closed, left) = if self.0 {
            (first, second)
        } else {
            (second, first)
        };
        closed.close().unwrap();
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let (lp, watcher, k2) = (event_loop.clone(), left.clone(), k.clone());
        let code = event_loop
            .run_until_complete(async move {
                let child = testing::spawn_sh(&k2, "exit 5");
                let got = Log::new();
                let sink = got.clone();
                watcher
                    .add_child_handler(child, Box::new(move |_, code| sink.push(code)))
                    .expect("add_child_handler");
                // A generous limit instead of a hang if the exit is never reported.
                let deadline = lp.time() + PATIENCE;
                loop {
                    if let Some(code) = got.take().pop() {
                        return Some(code);
                    }
                    if lp.time() > deadline {
                        let _ = k2.wait_pid(child, WaitMode::Block);
                        return None;
                    }
                    sleep(&lp, 0.01).await;
                }
            })
            .unwrap();
        event_loop.close().unwrap();
        assert_eq!(code, Some(5), "the watcher left open reports its child");
        left.close().unwrap();
        let disposition = k.disposition(Signal::SIGCHLD).unwrap();
        let wrote = sigchld_writes_into_reused_fds(k);
        assert_eq!(disposition, Disposition::Default, "SIGCHLD back to SIG_DFL");
        assert!(
            !wrote,
            "a byte reached an fd opened after both watchers closed"
        );
    }
}

// ----- finding 10: a forked child's signals --------------------------------------------

/// Reliability finding 10: a child forked (without exec) while a loop handles SIGUSR1
/// and SIGUSR2 has its own signal wired to a pipe (`Notify`) must not write into the
/// parent's pipes when signalled: its wakeup fd is unset, and the signals it raises
/// reach neither the parent's loop nor the parent's notify pipe.
fn finding_10_forked_child_drops_the_parents_signal_wiring() -> std::result::Result<(), String> {
    let kernel = OsKernel;
    let event_loop = EventLoop::new().map_err(|e| e.to_string())?;
    let heard = Arc::new(AtomicUsize::new(0));
    let count = heard.clone();
    event_loop
        .add_signal_handler(Signal::SIGUSR1, move || {
            count.fetch_add(1, Ordering::SeqCst);
        })
        .map_err(|e| e.to_string())?;
    let (notify_read, notify_write) = kernel.pipe().map_err(|e| e.to_string())?;
    kernel.set_nonblocking(notify_read, true).unwrap();
    kernel.set_nonblocking(notify_write, true).unwrap();
    let previous = kernel
        .set_disposition(Signal::SIGUSR2, Disposition::Notify(notify_write))
        .unwrap();
    let pid = fork::fork_running(|| {
        let unset = kernel.set_wakeup_fd(None) == Ok(None);
        let raised = kernel.raise(Signal::SIGUSR1).is_ok() && kernel.raise(Signal::SIGUSR2).is_ok();
        if unset && raised { 0 } else { 1 }
    });
    let status = kernel.wait_pid(pid, WaitMode::Block);
    let mut buf = [0u8; 8];
    let notified = kernel.read(notify_read, &mut buf);
    let lp = event_loop.clone();
    event_loop
        .call_soon(move || lp.stop())
        .map_err(|e| e.to_string())?;
    event_loop.run_forever().map_err(|e| e.to_string())?;
    kernel.set_disposition(Signal::SIGUSR2, previous).unwrap();
    kernel.close(notify_read).unwrap();
    kernel.close(notify_write).unwrap();
    event_loop.close().map_err(|e| e.to_string())?;
    assert!(
        matches!(status, Ok(WaitStatus::Terminated(_, s)) if s.returncode() == 0),
        "the child found its wakeup fd unset: {status:?}"
    );
    assert_eq!(
        notified,
        Err(Errno::EAGAIN),
        "the child's SIGUSR2 reached the parent's notify pipe"
    );
    assert_eq!(
        heard.load(Ordering::SeqCst),
        0,
        "the child's SIGUSR1 ran the parent loop's handler"
    );
    Ok(())
}

// ----- finding 16: another library's SIGCHLD handler -----------------------------------

/// Another library's SIGCHLD handler, which counts what it receives: installed with
/// libc on the real OS, as the simulator's foreign handler there.
enum Foreign {
    Os(fork::ForeignSigchld),
    Sim(Disposition),
}

impl Foreign {
    fn install<K: Kernel>(k: &K) -> Foreign {
        match sim(k) {
            Some(s) => {
                Foreign::Sim(s.install_foreign_handler(Signal::SIGCHLD, ForeignHandler::Count))
            }
            None => Foreign::Os(fork::ForeignSigchld::install()),
        }
    }

    /// Whether it is SIGCHLD's handler now.
    fn is_installed<K: Kernel>(&self, k: &K) -> bool {
        match self {
            Foreign::Os(handler) => handler.is_installed(),
            Foreign::Sim(disposition) => k.disposition(Signal::SIGCHLD) == Ok(*disposition),
        }
    }

    /// How many signals it has received.
    fn deliveries<K: Kernel>(&self, k: &K) -> u64 {
        match self {
            Foreign::Os(handler) => handler.deliveries() as u64,
            Foreign::Sim(_) => sim(k).map_or(0, |s| s.foreign_deliveries()),
        }
    }
}

/// Reliability finding 16: another library installs its own SIGCHLD handler after the
/// watcher was attached. Registering the next child warns (a RuntimeWarning on the
/// `asyncio` target, naming SIGCHLD) that its exit will not be heard, the other
/// library's handler gets that exit's SIGCHLD, and closing the watcher and its loop
/// leaves the other library's handler in place.
struct ForeignSigchldHandlerAfterAttach(Kind);

impl Body for ForeignSigchldHandlerAfterAttach {
    fn run<K: Kernel>(&self, k: &K) {
        let watcher = self.0.make(k);
        let event_loop = install(k, watcher.clone()).unwrap();
        let foreign = Foreign::install(k);
        let capture = Capture::new();
        let (lp, w, k2) = (event_loop.clone(), watcher.clone(), k.clone());
        let child = capture
            .during(|| {
                lp.clone().run_until_complete(async move {
                    // Fast wants spawn and registration in one window, as asyncio's `with`.
                    let _window = fork_window(&*w);
                    let child = testing::spawn_sh(&k2, "exit 0");
                    w.add_child_handler(child, Box::new(|_, _| {}))
                        .expect("add_child_handler");
                    child
                })
            })
            .unwrap();
        // The watcher's own poll in `add_child_handler` may already have reaped a child
        // that exited that fast (S-3, M-4); otherwise nothing will, so reap it here.
        match k.wait_pid(child, WaitMode::Block) {
            Ok(_) | Err(Errno::ECHILD) => {}
            Err(errno) => panic!("waitpid({child}): {errno:?}"),
        }
        deliver_pending_sigchld(k);
        uninstall(k, event_loop).unwrap();
        let still_installed = foreign.is_installed(k);
        let ran = foreign.deliveries(k);
        k.set_disposition(Signal::SIGCHLD, Disposition::Default)
            .unwrap();
        assert_eq!(ran, 1, "the foreign handler got the child's SIGCHLD");
        let warned: Vec<(String, String)> = capture
            .events()
            .into_iter()
            .filter(|e| e.target == "asyncio" && e.level == tracing::Level::WARN)
            .map(|e| {
                (
                    e.fields.get("category").cloned().unwrap_or_default(),
                    e.message,
                )
            })
            .collect();
        assert!(
            warned
                .iter()
                .any(|(category, message)| category == "RuntimeWarning"
                    && message.contains("SIGCHLD")),
            "a RuntimeWarning naming SIGCHLD when registering the child: {warned:?}"
        );
        assert!(
            still_installed,
            "closing the watcher and its loop left the foreign handler in place"
        );
    }
}

/// Goal: another library's SIGCHLD handler, installed before the watcher
/// was attached, is not clobbered. loopwatch's handler runs it after its own work, so
/// both hear each exit: the watcher reports the child's code and the other handler
/// counts its SIGCHLD. Nothing warns (nobody replaced anybody's handler behind their
/// back), and closing the watcher and its loop puts the other handler back, unchained.
struct ForeignSigchldHandlerChained(Kind);

impl Body for ForeignSigchldHandlerChained {
    fn run<K: Kernel>(&self, k: &K) {
        let foreign = Foreign::install(k);
        let watcher = self.0.make(k);
        let event_loop = install(k, watcher.clone()).unwrap();
        let capture = Capture::new();
        let (lp, w, k2) = (event_loop.clone(), watcher.clone(), k.clone());
        let code: Log<i32> = Log::new();
        let seen = code.clone();
        capture.during(|| {
            let stopper = lp.clone();
            lp.run_until_complete(async move {
                let _window = fork_window(&*w);
                let child = testing::spawn_sh(&k2, "exit 3");
                w.add_child_handler(
                    child,
                    Box::new(move |_, code| {
                        seen.push(code);
                        stopper.stop();
                    }),
                )
                .expect("add_child_handler");
            })
            .unwrap();
            if code.is_empty() {
                let stopper = lp.clone();
                let limit = lp.call_later(PATIENCE, move || stopper.stop()).unwrap();
                lp.run_forever().unwrap();
                limit.cancel();
            }
        });
        deliver_pending_sigchld(k);
        let heard = foreign.deliveries(k);
        uninstall(k, event_loop).unwrap();
        let back = foreign.is_installed(k);
        // Unchained now: the next exit reaches the other handler once, by itself.
        let child = testing::spawn_sh(k, "exit 0");
        assert_eq!(testing::reap(k, child), 0);
        deliver_pending_sigchld(k);
        let after = foreign.deliveries(k);
        k.set_disposition(Signal::SIGCHLD, Disposition::Default)
            .unwrap();
        assert_eq!(code.snapshot(), [3], "the watcher reported the child once");
        assert!(heard >= 1, "the other library's handler heard the exit");
        assert!(back, "the other library's handler is back");
        assert_eq!(
            after,
            heard + 1,
            "one more delivery, to the other handler alone"
        );
        assert!(capture.warnings().is_empty(), "{:?}", capture.warnings());
    }
}

fn main() -> ExitCode {
    main_thread_common::main([
        Test::both(
            "finding_01_two_loops_sigchld_close_first_added_first",
            TwoLoopsSigchld(true),
        )
        .seeds(SEEDS)
        .check_leaks(),
        Test::both(
            "finding_01_two_loops_sigchld_close_last_added_first",
            TwoLoopsSigchld(false),
        )
        .seeds(SEEDS)
        .check_leaks(),
        Test::both(
            "finding_02_two_multi_loop_watchers_close_first_first",
            TwoMultiLoopWatchers(true),
        )
        .seeds(SEEDS)
        .check_leaks(),
        Test::both(
            "finding_02_two_multi_loop_watchers_close_second_first",
            TwoMultiLoopWatchers(false),
        )
        .seeds(SEEDS)
        .check_leaks(),
        // Real OS only: the child whose signals are checked is a fork of this process
        // that does not exec; the simulator's children run no code.
        Test::new(
            "finding_10_forked_child_drops_the_parents_signal_wiring",
            finding_10_forked_child_drops_the_parents_signal_wiring,
        )
        .check_leaks(),
        Test::both(
            "finding_16_foreign_sigchld_handler_after_attach_safe",
            ForeignSigchldHandlerAfterAttach(Kind::Safe),
        )
        .seeds(SEEDS)
        .check_leaks(),
        Test::both(
            "finding_16_foreign_sigchld_handler_after_attach_fast",
            ForeignSigchldHandlerAfterAttach(Kind::Fast),
        )
        .seeds(SEEDS)
        .check_leaks(),
        Test::both(
            "finding_16_foreign_sigchld_handler_after_attach_multi_loop",
            ForeignSigchldHandlerAfterAttach(Kind::MultiLoop),
        )
        .seeds(SEEDS)
        .check_leaks(),
        Test::both(
            "sigchld_chained_to_a_foreign_handler_safe",
            ForeignSigchldHandlerChained(Kind::Safe),
        )
        .seeds(SEEDS)
        .check_leaks(),
        Test::both(
            "sigchld_chained_to_a_foreign_handler_fast",
            ForeignSigchldHandlerChained(Kind::Fast),
        )
        .seeds(SEEDS)
        .check_leaks(),
        Test::both(
            "sigchld_chained_to_a_foreign_handler_multi_loop",
            ForeignSigchldHandlerChained(Kind::MultiLoop),
        )
        .seeds(SEEDS)
        .check_leaks(),
    ])
}
