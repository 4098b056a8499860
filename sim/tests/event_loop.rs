//! The real event loop and policy, unchanged, on the simulated kernel: timers run in
//! virtual time, SIGCHLD reaches a signal handler through the wakeup fd, threads call
//! in with call_soon_threadsafe, and the main thread's policy creates its loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use loopwatch::kernel::{Clock, Processes, Signal, SpawnRequest, Threads, WaitMode, WaitStatus};
use loopwatch::{ErrorKind, EventLoop, policy};
use loopwatch_sim::testing::Sweep;
use loopwatch_sim::{SimKernel, Simulation};

#[test]
fn timers_run_in_virtual_time() {
    // Goal: an hour of call_later passes at once in virtual time, in deadline order.
    for &seed in Sweep::new(50).seeds() {
        let report = Simulation::new(seed).run(|k: SimKernel| {
            let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
            let order = Arc::new(AtomicUsize::new(0));
            let (o1, o2, lp) = (order.clone(), order.clone(), event_loop.clone());
            event_loop
                .call_later(3600.0, move || {
                    assert_eq!(o1.fetch_add(1, Ordering::SeqCst), 1);
                    lp.stop();
                })
                .unwrap();
            event_loop
                .call_later(60.0, move || {
                    assert_eq!(o2.fetch_add(1, Ordering::SeqCst), 0)
                })
                .unwrap();
            event_loop.run_forever().unwrap();
            assert_eq!(order.load(Ordering::SeqCst), 2);
            assert!(k.now() >= Duration::from_secs(3600));
            event_loop.close().unwrap();
        });
        report.assert_completed("timers_run_in_virtual_time");
        assert_eq!(report.fds_left, 0, "the loop's fds are closed");
    }
}

#[test]
fn sigchld_handler_reaps_child() {
    // Goal: on the simulated main thread, add_signal_handler(SIGCHLD) runs its callback
    // in the loop when a child exits, whatever the interleaving of the exit, the
    // signal's delivery and the poll; the callback reaps the child.
    for &seed in Sweep::new(50).seeds() {
        let report = Simulation::new(seed).run(|k: SimKernel| {
            let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
            let child = k
                .spawn(&SpawnRequest::new("/bin/sh", ["-c", "sleep 0.01; exit 6"]))
                .unwrap();
            let (lp, k2) = (event_loop.clone(), k.clone());
            let code = Arc::new(AtomicUsize::new(0));
            let seen = code.clone();
            event_loop
                .add_signal_handler(Signal::SIGCHLD, move || {
                    if let Ok(WaitStatus::Terminated(_, status)) =
                        k2.wait_pid(child.pid, WaitMode::NoHang)
                    {
                        seen.store(status.returncode() as usize, Ordering::SeqCst);
                        lp.stop();
                    }
                })
                .unwrap();
            event_loop.run_forever().unwrap();
            assert_eq!(code.load(Ordering::SeqCst), 6);
            assert!(event_loop.remove_signal_handler(Signal::SIGCHLD).unwrap());
            event_loop.close().unwrap();
        });
        report.assert_completed("sigchld_handler_reaps_child");
        assert_eq!(report.children_left, (0, 0));
    }
}

#[test]
fn threadsafe_calls_from_threads() {
    // Goal: two simulated threads call call_soon_threadsafe while the loop waits in
    // poll; every callback runs once, in the loop's thread.
    for &seed in Sweep::new(50).seeds() {
        let report = Simulation::new(seed).run(|k: SimKernel| {
            let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
            let ran = Arc::new(AtomicUsize::new(0));
            let loop_thread = k.current_thread();
            let mut producers = Vec::new();
            for t in 0..2 {
                let (lp, ran, k2) = (event_loop.clone(), ran.clone(), k.clone());
                let body = move || {
                    for _ in 0..20 {
                        let (ran, lp2, k3) = (ran.clone(), lp.clone(), k2.clone());
                        lp.call_soon_threadsafe(move || {
                            assert_eq!(k3.current_thread(), loop_thread);
                            if ran.fetch_add(1, Ordering::SeqCst) + 1 == 40 {
                                lp2.stop();
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
            event_loop.run_forever().unwrap();
            for producer in producers {
                k.join_thread(producer).unwrap();
            }
            assert_eq!(ran.load(Ordering::SeqCst), 40);
            event_loop.close().unwrap();
        });
        report.assert_completed("threadsafe_calls_from_threads");
    }
}

#[test]
fn default_policy_in_simulated_process() {
    // Goal (C-2, C-3, P-1): each simulated process has its own policy slot; its main
    // thread gets a loop created once, another thread gets RuntimeError naming it.
    for &seed in Sweep::new(50).seeds() {
        let report = Simulation::new(seed).run(|k: SimKernel| {
            let first = policy::get_event_loop(&k).unwrap();
            assert_eq!(policy::get_event_loop(&k).unwrap(), first);
            let policy_object = policy::get_event_loop_policy(&k);
            let k2 = k.clone();
            let worker = k
                .spawn_thread(
                    "Worker-S",
                    Box::new(move || {
                        let err = policy::get_event_loop(&k2).unwrap_err();
                        assert_eq!(err.kind(), ErrorKind::RuntimeError);
                        assert_eq!(
                            err.message(),
                            "There is no current event loop in thread 'Worker-S'."
                        );
                    }),
                )
                .unwrap();
            k.join_thread(worker).unwrap();
            assert!(policy_object.state().is_some());
            first.close().unwrap();
        });
        report.assert_completed("default_policy_in_simulated_process");
    }
}

#[test]
fn finding_18_no_short_lock_held_across_kernel_calls() {
    // Goal (reliability finding 18): a reader callback, a signal handler and a task
    // step each run with no short lock held, so the kernel calls they make are
    // scheduling points like any other; the simulator checks this at every call.
    for &seed in Sweep::new(50).seeds() {
        let report = Simulation::new(seed).run(|k: SimKernel| {
            use loopwatch::kernel::{Fds, Signals};
            use loopwatch::sync::short_locks_held;
            let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
            let held = Arc::new(AtomicUsize::new(0));
            let (read, write) = k.pipe().unwrap();
            let (h1, k1, lp1) = (held.clone(), k.clone(), event_loop.clone());
            event_loop
                .add_reader(read, move || {
                    h1.fetch_add(short_locks_held(), Ordering::SeqCst);
                    let mut buf = [0u8; 8];
                    let _ = k1.read(read, &mut buf);
                    lp1.remove_reader(read).unwrap();
                })
                .unwrap();
            let (h2, k2, lp2) = (held.clone(), k.clone(), event_loop.clone());
            event_loop
                .add_signal_handler(Signal::SIGUSR1, move || {
                    h2.fetch_add(short_locks_held(), Ordering::SeqCst);
                    let _ = k2.write(write, b"x");
                    let _ = &lp2;
                })
                .unwrap();
            let (h3, k3, lp3) = (held.clone(), k.clone(), event_loop.clone());
            let task = event_loop
                .create_task(async move {
                    h3.fetch_add(short_locks_held(), Ordering::SeqCst);
                    k3.raise(Signal::SIGUSR1).unwrap();
                    let stopper = lp3.clone();
                    lp3.call_later(1.0, move || stopper.stop()).unwrap();
                })
                .unwrap();
            event_loop.run_forever().unwrap();
            assert!(task.done());
            assert_eq!(held.load(Ordering::SeqCst), 0);
            assert!(event_loop.remove_signal_handler(Signal::SIGUSR1).unwrap());
            event_loop.close().unwrap();
            let _ = (k.close(read), k.close(write));
        });
        report.assert_completed("finding_18_no_short_lock_held_across_kernel_calls");
    }
}
