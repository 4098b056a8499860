//! The event loop's readers and writers, calls from other threads and signal
//! handlers, each behaviour written once and run on both kernels: `name [os]` on the
//! real OS, `name [sim]` on the simulator over many seeds (every interleaving of the
//! loop's polls with other threads, child exits and signal deliveries the seed picks).
//! Callbacks, timers, tasks and the exception handler are in `event_loop.rs`.
//!
//! A `harness = false` binary on `loopwatch_sim::testing`: each test runs on the
//! process's main thread, one at a time (signal handlers need it), as the simulator's
//! bodies run on its main thread (thread 1); each checks that it leaves no fd, child
//! or thread behind.
//!
//! `cargo test -p loopwatch-sim --test event_loop_io [NAME]`; `LOOPWATCH_SEEDS=N` and
//! `LOOPWATCH_SEED=S` choose the simulator's seeds.

use std::any::Any;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loopwatch::kernel::{Errno, Fd, Kernel, Signal, WaitMode, WaitStatus};
use loopwatch::sync::short_locks_held;
use loopwatch::{ErrorKind, EventLoop, Handle};
use loopwatch_sim::SimKernel;
use loopwatch_sim::testing::{self, Body, Log};

loopwatch_sim::bodies!(
    reader_is_level_triggered_and_removable,
    reader_and_writer_on_one_fd_and_replacement,
    add_reader_bad_fd,
    call_soon_threadsafe_from_four_threads,
    non_threadsafe_call_from_other_thread_is_runtime_error,
    signal_handler_outside_main_thread_is_runtime_error,
    sigchld_handler_reaps_child,
    finding_18_no_short_lock_held_across_kernel_calls,
);

/// How long (seconds; virtual ones on the simulator) a test waits for what should
/// happen at once before it fails instead of hanging. Generous: a loaded machine must
/// not fail a test.
const PATIENCE: f64 = 120.0;

fn new_loop<K: Kernel>(k: &K) -> EventLoop<K> {
    EventLoop::with_kernel(k.clone()).expect("a loop can be created")
}

/// Stops `event_loop` after [`PATIENCE`]: a test whose loop waits for something
/// that never comes fails its assertions instead of hanging. Cancel it once the loop
/// has returned.
fn patience<K: Kernel>(event_loop: &EventLoop<K>) -> Handle {
    let stopper = event_loop.clone();
    event_loop
        .call_later(PATIENCE, move || stopper.stop())
        .unwrap()
}

/// Whether the body runs on the simulator.
fn on_sim<K: Kernel>(k: &K) -> bool {
    (k as &dyn Any).is::<SimKernel>()
}

// ----- readers and writers -----------------------------------------------------------

impl Body for reader_is_level_triggered_and_removable {
    // Goal: add_reader calls back while data is unread (level-triggered, as
    // selectors), remove_reader stops it and reports whether one was set.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let (read, write) = k.pipe().unwrap();
        k.set_nonblocking(read, true).unwrap();
        k.write(write, b"xy").unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let (count, lp, k2) = (calls.clone(), event_loop.clone(), k.clone());
        event_loop
            .add_reader(read, move || {
                // Read one byte per call: the reader must be called again for the second.
                let mut byte = [0u8; 1];
                assert_eq!(k2.read(read, &mut byte), Ok(1));
                if count.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
                    assert!(lp.remove_reader(read).unwrap());
                    lp.stop();
                }
            })
            .unwrap();
        event_loop.run_forever().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(!event_loop.remove_reader(read).unwrap());
        k.close(read).unwrap();
        k.close(write).unwrap();
        event_loop.close().unwrap();
    }
}

impl Body for reader_and_writer_on_one_fd_and_replacement {
    // Goal: a reader and a writer can share an fd; adding a second writer replaces the
    // first (its handle is cancelled); removing one leaves the other working.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let (read, write) = k.pipe().unwrap();
        let log = Log::new();
        let first = {
            let log = log.clone();
            event_loop
                .add_writer(write, move || log.push("first"))
                .unwrap()
        };
        let (lp, log2) = (event_loop.clone(), log.clone());
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
        let (lp, log3) = (event_loop.clone(), log.clone());
        event_loop
            .add_reader(read, move || {
                log3.push("reader");
                lp.stop();
            })
            .unwrap();
        k.write(write, b"!").unwrap();
        event_loop.run_forever().unwrap();
        assert_eq!(log.take(), ["reader"]);
        assert!(event_loop.remove_reader(read).unwrap());
        assert!(!event_loop.remove_writer(write).unwrap());
        k.close(read).unwrap();
        k.close(write).unwrap();
        event_loop.close().unwrap();
    }
}

impl Body for add_reader_bad_fd {
    // Goal: a negative fd is a ValueError; an fd that is not open is the kernel's
    // EBADF, and neither leaves a reader behind.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let err = event_loop.add_reader(Fd(-1), || {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        assert_eq!(err.message(), "Invalid file descriptor: -1");
        // One just closed: the test runs alone, so nothing reopens the number.
        let (read, write) = k.pipe().unwrap();
        k.close(read).unwrap();
        let err = event_loop.add_reader(read, || {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Os(Errno::EBADF));
        assert_eq!(err.errno(), Some(Errno::EBADF));
        assert!(!event_loop.remove_reader(read).unwrap());
        k.close(write).unwrap();
        event_loop.close().unwrap();
    }
}

// ----- other threads -----------------------------------------------------------------

impl Body for call_soon_threadsafe_from_four_threads {
    // Goal: 4 threads call call_soon_threadsafe while the loop sleeps in poll: each
    // callback runs exactly once, in the loop's thread. 10,000 calls a thread on the
    // real OS; 20 on the simulator, where each seed interleaves them differently.
    fn run<K: Kernel>(&self, k: &K) {
        const THREADS: usize = 4;
        let per_thread = if on_sim(k) { 20 } else { 10_000 };
        let event_loop = new_loop(k);
        let loop_thread = k.current_thread();
        let seen: Arc<Vec<AtomicUsize>> = Arc::new(
            (0..THREADS * per_thread)
                .map(|_| AtomicUsize::new(0))
                .collect(),
        );
        let wrong_thread = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let mut producers = Vec::new();
        for t in 0..THREADS {
            let (lp, seen, wrong, done, k2) = (
                event_loop.clone(),
                seen.clone(),
                wrong_thread.clone(),
                done.clone(),
                k.clone(),
            );
            let body = move || {
                for i in 0..per_thread {
                    let (seen, wrong, done, stopper, k3) = (
                        seen.clone(),
                        wrong.clone(),
                        done.clone(),
                        lp.clone(),
                        k2.clone(),
                    );
                    lp.call_soon_threadsafe(move || {
                        if k3.current_thread() != loop_thread {
                            wrong.fetch_add(1, Ordering::SeqCst);
                        }
                        seen[t * per_thread + i].fetch_add(1, Ordering::SeqCst);
                        if done.fetch_add(1, Ordering::SeqCst) + 1 == THREADS * per_thread {
                            stopper.stop();
                        }
                    })
                    .unwrap();
                }
            };
            producers.push(
                k.spawn_thread(&format!("producer-{t}"), Box::new(body))
                    .unwrap(),
            );
        }
        // Nothing is ready when the loop starts, so it blocks in poll until woken.
        let patience = patience(&event_loop);
        event_loop.run_forever().unwrap();
        patience.cancel();
        for producer in producers {
            k.join_thread(producer).unwrap();
        }
        assert_eq!(wrong_thread.load(Ordering::SeqCst), 0);
        assert_eq!(done.load(Ordering::SeqCst), THREADS * per_thread);
        assert!(
            seen.iter().all(|count| count.load(Ordering::SeqCst) == 1),
            "every callback exactly once"
        );
        event_loop.close().unwrap();
    }
}

impl Body for non_threadsafe_call_from_other_thread_is_runtime_error {
    // Goal: as asyncio's debug-mode _check_thread: call_soon from another thread
    // while the loop runs is a RuntimeError, call_soon_threadsafe is fine.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let result = Log::new();
        let intruder = Log::new();
        let (lp, slot, intruder_slot, k2) = (
            event_loop.clone(),
            result.clone(),
            intruder.clone(),
            k.clone(),
        );
        event_loop
            .call_soon(move || {
                let lp2 = lp.clone();
                let handle = k2
                    .spawn_thread(
                        "intruder",
                        Box::new(move || {
                            let call = lp2.call_soon(|| {}).map(drop);
                            let reader = lp2.add_reader(Fd(0), || {}).map(drop);
                            slot.push([call, reader].map(|result| {
                                result.map_err(|e| (e.kind(), e.message().to_string()))
                            }));
                            let stopper = lp2.clone();
                            lp2.call_soon_threadsafe(move || stopper.stop()).unwrap();
                        }),
                    )
                    .unwrap();
                intruder_slot.push(handle);
            })
            .unwrap();
        let patience = patience(&event_loop);
        event_loop.run_forever().unwrap();
        patience.cancel();
        for handle in intruder.take() {
            k.join_thread(handle).unwrap();
        }
        let refused = Err((
            ErrorKind::RuntimeError,
            "Non-thread-safe operation invoked on an event loop other than the current one"
                .to_string(),
        ));
        assert_eq!(result.take(), [[refused.clone(), refused]]);
        event_loop.close().unwrap();
    }
}

// ----- signal handlers ---------------------------------------------------------------

impl Body for signal_handler_outside_main_thread_is_runtime_error {
    // Goal: add_signal_handler needs the main thread (set_wakeup_fd), as CPython; a
    // number out of range is a ValueError in any thread.
    fn run<K: Kernel>(&self, k: &K) {
        let errors = Log::new();
        let sink = errors.clone();
        let k2 = k.clone();
        let worker = k
            .spawn_thread(
                "Worker-S",
                Box::new(move || {
                    let event_loop = new_loop(&k2);
                    for err in [
                        event_loop
                            .add_signal_handler(Signal::SIGUSR1, || {})
                            .unwrap_err(),
                        event_loop.add_signal_handler(Signal(0), || {}).unwrap_err(),
                    ] {
                        sink.push((err.kind(), err.message().to_string()));
                    }
                    event_loop.close().unwrap();
                }),
            )
            .unwrap();
        k.join_thread(worker).unwrap();
        assert_eq!(
            errors.take(),
            [
                (
                    ErrorKind::RuntimeError,
                    "set_wakeup_fd only works in main thread".to_string()
                ),
                (
                    ErrorKind::ValueError,
                    "sig 0 out of range(1, 65)".to_string()
                ),
            ]
        );
        let event_loop = new_loop(k);
        let err = event_loop.add_signal_handler(Signal(0), || {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        assert_eq!(err.message(), "sig 0 out of range(1, 65)");
        let err = event_loop.remove_signal_handler(Signal(65)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        assert!(!event_loop.remove_signal_handler(Signal::SIGUSR1).unwrap());
        event_loop.close().unwrap();
    }
}

impl Body for sigchld_handler_reaps_child {
    // Goal: on the main thread, add_signal_handler(SIGCHLD) runs its callback in the
    // loop when a child exits, whatever the interleaving of the exit, the signal's
    // delivery and the poll; the callback reaps the child, and removing the handler
    // puts SIGCHLD's disposition back.
    fn run<K: Kernel>(&self, k: &K) {
        let before = k.disposition(Signal::SIGCHLD).unwrap();
        let event_loop = new_loop(k);
        // The handler is in place before the child exists, so its exit cannot come
        // first and go unheard.
        let children = Log::new();
        let codes = Log::new();
        let (lp, k2, pids, seen) = (
            event_loop.clone(),
            k.clone(),
            children.clone(),
            codes.clone(),
        );
        event_loop
            .add_signal_handler(Signal::SIGCHLD, move || {
                for pid in pids.snapshot() {
                    if let Ok(WaitStatus::Terminated(_, status)) =
                        k2.wait_pid(pid, WaitMode::NoHang)
                    {
                        seen.push(status.returncode());
                        lp.stop();
                    }
                }
            })
            .unwrap();
        children.push(testing::spawn_sh(k, "sleep 0.01; exit 6"));
        let patience = patience(&event_loop);
        event_loop.run_forever().unwrap();
        patience.cancel();
        assert_eq!(codes.take(), [6]);
        assert!(event_loop.remove_signal_handler(Signal::SIGCHLD).unwrap());
        assert_eq!(k.disposition(Signal::SIGCHLD).unwrap(), before);
        event_loop.close().unwrap();
    }
}

impl Body for finding_18_no_short_lock_held_across_kernel_calls {
    // Goal (reliability finding 18): a reader callback, a signal handler and a task
    // step each run with no short lock held, so the kernel calls they make are
    // scheduling points like any other; the simulator also checks this at every call.
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        // Who ran, in order, and how many short locks each held.
        let held = Log::new();
        let (read, write) = k.pipe().unwrap();
        let (h1, k1, lp1) = (held.clone(), k.clone(), event_loop.clone());
        event_loop
            .add_reader(read, move || {
                h1.push(("reader", short_locks_held()));
                let mut buf = [0u8; 8];
                assert_eq!(k1.read(read, &mut buf), Ok(1));
                assert!(lp1.remove_reader(read).unwrap());
                lp1.stop();
            })
            .unwrap();
        let (h2, k2) = (held.clone(), k.clone());
        event_loop
            .add_signal_handler(Signal::SIGUSR1, move || {
                h2.push(("signal handler", short_locks_held()));
                assert_eq!(k2.write(write, b"x"), Ok(1));
            })
            .unwrap();
        let (h3, k3) = (held.clone(), k.clone());
        let task = event_loop
            .create_task(async move {
                h3.push(("task", short_locks_held()));
                k3.raise(Signal::SIGUSR1).unwrap();
            })
            .unwrap();
        // The task raises the signal, whose handler writes the byte the reader reads;
        // the reader stops the loop.
        event_loop.run_forever().unwrap();
        assert!(task.done());
        assert_eq!(
            held.take(),
            [("task", 0), ("signal handler", 0), ("reader", 0)]
        );
        assert!(event_loop.remove_signal_handler(Signal::SIGUSR1).unwrap());
        event_loop.close().unwrap();
        k.close(read).unwrap();
        k.close(write).unwrap();
    }
}

// ----- main ----------------------------------------------------------------------------

/// Puts SIGCHLD back to SIG_DFL if this binary inherited it ignored (under `nohup`,
/// as a background job): an ignored SIGCHLD makes the kernel reap a child that exits
/// before the loop's handler is installed. A handler cannot be inherited, so SIG_IGN
/// is all there is to undo.
fn reset_inherited_ignores() {
    testing::undo_inherited_ignores(&[Signal::SIGCHLD]);
}

fn main() -> ExitCode {
    reset_inherited_ignores();
    testing::main(tests())
}
