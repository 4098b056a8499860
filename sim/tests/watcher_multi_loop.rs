//! MultiLoopChildWatcher on the simulator, wherever the spec's matrix (1.N) gives it a
//! defined outcome: the handler it installs, callbacks handed to the registering loop
//! (never synchronously), replacement and removal, reaped-elsewhere, closed loops,
//! close's restore, and idle loops in other threads being woken (bpo-38323 fixed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use loopwatch::kernel::{
    Clock, Disposition, ExitStatus, Pid, Processes, Signal, Signals, SpawnRequest, Stdio, Threads,
    WaitMode,
};
use loopwatch::watcher::MultiLoopChildWatcher;
use loopwatch::{ChildWatcher, EventLoop};
use loopwatch_sim::testing::{self, Sweep, yield_now};
use loopwatch_sim::{ChildPlan, SimKernel};

/// What the callbacks saw.
type Log = testing::Log<String>;

/// Runs `body` for each seed; each run must complete and leave no child, fd or
/// thread behind.
fn each_seed(test: &str, body: fn(SimKernel)) {
    Sweep::new(20)
        .name(test)
        .check_leaks()
        .run(move |k| body(k.clone()));
}

fn forever(k: &SimKernel) -> Pid {
    k.spawn(&SpawnRequest::new("sleep", ["100000"]))
        .unwrap()
        .pid
}

fn recorder(log: &Log, name: &'static str) -> loopwatch::watcher::ChildCallback {
    let log = log.clone();
    Box::new(move |pid, code| log.push(format!("{name} {} {code}", pid.0)))
}

#[test]
fn attach_installs_process_wide_handler() {
    // Goal (M-2, M-3, M-7): attach_loop ignores its argument, installs the handler once
    // (is_active from then on, also after attach_loop(None)); close restores the
    // disposition it replaced and is_active turns false.
    each_seed("attach_installs_process_wide_handler", |k| {
        let watcher = MultiLoopChildWatcher::with_kernel(k.clone());
        assert!(!watcher.is_active());
        watcher.attach_loop(None).unwrap();
        assert!(watcher.is_active());
        assert!(matches!(
            k.disposition(Signal::SIGCHLD).unwrap(),
            Disposition::Notify(_)
        ));
        watcher.attach_loop(None).unwrap();
        assert!(watcher.is_active(), "idempotent");
        watcher.close().unwrap();
        assert!(!watcher.is_active());
        assert_eq!(
            k.disposition(Signal::SIGCHLD).unwrap(),
            Disposition::Default
        );
    });
}

#[test]
fn exits_reach_the_registering_loop_never_synchronously() {
    // Goal (M-4, M-5, R-4): a child that already exited is reported through the loop
    // (after add returns), and a later exit through the reaper thread; a replaced
    // handler never runs; a removed one neither.
    each_seed(
        "exits_reach_the_registering_loop_never_synchronously",
        |k| {
            let watcher = Arc::new(MultiLoopChildWatcher::with_kernel(k.clone()));
            watcher.attach_loop(None).unwrap();
            let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
            let log = Log::new();
            let (w, l, lp, k2) = (watcher.clone(), log.clone(), event_loop.clone(), k.clone());
            event_loop
                .run_until_complete(async move {
                    let early = forever(&k2);
                    k2.end_child(early, ExitStatus::from_exit_code(5));
                    w.add_child_handler(early, recorder(&l, "early")).unwrap();
                    l.push("after add".to_string());
                    let later = forever(&k2);
                    w.add_child_handler(later, recorder(&l, "replaced"))
                        .unwrap();
                    w.add_child_handler(later, recorder(&l, "later")).unwrap();
                    let removed = forever(&k2);
                    w.add_child_handler(removed, recorder(&l, "removed"))
                        .unwrap();
                    assert!(w.remove_child_handler(removed));
                    assert!(!w.remove_child_handler(removed));
                    k2.end_child(later, ExitStatus::from_signal(Signal::SIGTERM, false));
                    while l.len() < 3 {
                        k2.sleep(Duration::from_millis(1));
                        yield_now().await;
                    }
                    // Nobody waits for the removed child: reap it here.
                    k2.kill(removed, Some(Signal::SIGKILL)).unwrap();
                    k2.wait_pid(removed, WaitMode::Block).unwrap();
                    let _ = lp;
                })
                .unwrap();
            let log = log.snapshot();
            assert_eq!(log[0], "after add", "{log:?}");
            assert!(
                log[1].starts_with("early ") && log[1].ends_with(" 5"),
                "{log:?}"
            );
            assert!(
                log[2].starts_with("later ") && log[2].ends_with(" -15"),
                "{log:?}"
            );
            watcher.close().unwrap();
            event_loop.close().unwrap();
        },
    );
}

#[test]
fn reaped_elsewhere_and_closed_loop() {
    // Goal (R-2, M-5): a child reaped by someone else reports 255; an exit for a loop
    // that has closed is dropped (logged), not delivered.
    each_seed("reaped_elsewhere_and_closed_loop", |k| {
        let watcher = Arc::new(MultiLoopChildWatcher::with_kernel(k.clone()));
        watcher.attach_loop(None).unwrap();
        let log = Log::new();
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let (w, l, k2) = (watcher.clone(), log.clone(), k.clone());
        event_loop
            .run_until_complete(async move {
                let stolen = forever(&k2);
                k2.end_child(stolen, ExitStatus::from_exit_code(1));
                k2.wait_pid(stolen, WaitMode::Block).unwrap();
                w.add_child_handler(stolen, recorder(&l, "stolen")).unwrap();
                while l.is_empty() {
                    yield_now().await;
                }
            })
            .unwrap();
        assert!(log.snapshot()[0].ends_with(" 255"));
        let doomed = EventLoop::with_kernel(k.clone()).unwrap();
        let (w, l, k2) = (watcher.clone(), log.clone(), k.clone());
        let pid = doomed
            .run_until_complete(async move {
                let pid = forever(&k2);
                w.add_child_handler(pid, recorder(&l, "late")).unwrap();
                pid
            })
            .unwrap();
        doomed.close().unwrap();
        k.end_child(pid, ExitStatus::from_exit_code(0));
        // Give the reaper its turn: the exit is reaped but not delivered.
        while k.children_left() != (0, 0) {
            k.sleep(Duration::from_millis(1));
        }
        assert_eq!(log.len(), 1, "nothing for the closed loop");
        watcher.close().unwrap();
        event_loop.close().unwrap();
    });
}

#[test]
fn idle_loop_in_another_thread_is_woken() {
    // Goal (M-8 not reproduced, bpo-38323): a loop in a worker thread, idle in poll
    // with no timers, learns of its child's exit while the main thread is blocked in
    // join: the reaper wakes it through call_soon_threadsafe.
    each_seed("idle_loop_in_another_thread_is_woken", |k| {
        let watcher = Arc::new(MultiLoopChildWatcher::with_kernel(k.clone()));
        watcher.attach_loop(None).unwrap();
        let code = Arc::new(AtomicUsize::new(0));
        let (w, slot, k2) = (watcher.clone(), code.clone(), k.clone());
        let worker = k
            .spawn_thread(
                "Worker-M",
                Box::new(move || {
                    let event_loop = EventLoop::with_kernel(k2.clone()).unwrap();
                    let (lp, k3) = (event_loop.clone(), k2.clone());
                    event_loop
                        .call_soon(move || {
                            let child = k3
                                .spawn(&SpawnRequest::new("/bin/sh", ["-c", "sleep 0.01; exit 8"]))
                                .unwrap();
                            let stopper = lp.clone();
                            w.add_child_handler(
                                child.pid,
                                Box::new(move |_, rc| {
                                    slot.store(rc as usize, Ordering::SeqCst);
                                    stopper.stop();
                                }),
                            )
                            .unwrap();
                        })
                        .unwrap();
                    event_loop.run_forever().unwrap();
                    event_loop.close().unwrap();
                }),
            )
            .unwrap();
        k.join_thread(worker).unwrap();
        assert_eq!(code.load(Ordering::SeqCst), 8);
        watcher.close().unwrap();
    });
}

#[test]
fn close_leaves_a_replaced_handler_alone() {
    // Goal (M-7): if outside code replaced the SIGCHLD handler after attach, close
    // warns and leaves it in place rather than restoring over it.
    each_seed("close_leaves_a_replaced_handler_alone", |k| {
        let watcher = MultiLoopChildWatcher::with_kernel(k.clone());
        watcher.attach_loop(None).unwrap();
        k.set_disposition(Signal::SIGCHLD, Disposition::Ignore)
            .unwrap();
        watcher.close().unwrap();
        assert_eq!(k.disposition(Signal::SIGCHLD).unwrap(), Disposition::Ignore);
        k.set_disposition(Signal::SIGCHLD, Disposition::Default)
            .unwrap();
    });
}

#[test]
fn finding_11_close_returns_while_a_child_holds_the_pipe() {
    // Goal (reliability finding 11): close, and dropping the watcher, return while a child holds the write end of the watcher's pipe (as a forked child that did not exec does), rather than waiting for that child to end.
    each_seed(
        "finding_11_close_returns_while_a_child_holds_the_pipe",
        |k| {
            k.register_program("forever", ChildPlan::Forever);
            let mut holders = Vec::new();
            for closing in [true, false] {
                let watcher = MultiLoopChildWatcher::with_kernel(k.clone());
                watcher.attach_loop(None).unwrap();
                let Disposition::Notify(write) = k.disposition(Signal::SIGCHLD).unwrap() else {
                    panic!("MultiLoop installs a Notify handler");
                };
                // The simulator's children do not fork; a child given the write end as
                // its stdout holds it as an inherited copy would.
                let mut request = SpawnRequest::new("forever", Vec::<String>::new());
                request.stdout = Stdio::Fd(write);
                holders.push(k.spawn(&request).unwrap().pid);
                if closing {
                    watcher.close().unwrap();
                    assert!(!watcher.is_active());
                } else {
                    drop(watcher);
                }
                assert_eq!(
                    k.disposition(Signal::SIGCHLD).unwrap(),
                    Disposition::Default
                );
            }
            for holder in holders {
                k.kill(holder, Some(Signal::SIGKILL)).unwrap();
                k.wait_pid(holder, WaitMode::Block).unwrap();
            }
        },
    );
}

#[test]
fn finding_13_reaper_dropping_the_last_handle_closes_cleanly() {
    // Goal (reliability finding 13): when the reaper thread drops a callback that holds the last handle of the watcher, the watcher closes from inside its own reaper: no self-join, the pipe's fds closed, the disposition restored, the thread ended.
    each_seed(
        "finding_13_reaper_dropping_the_last_handle_closes_cleanly",
        |k| {
            let fds = k.open_fds();
            let watcher: Arc<dyn ChildWatcher<SimKernel>> =
                Arc::new(MultiLoopChildWatcher::with_kernel(k.clone()));
            watcher.attach_loop(None).unwrap();
            let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
            let (w, k2) = (watcher.clone(), k.clone());
            let pid = event_loop
                .run_until_complete(async move {
                    let pid = forever(&k2);
                    let keep = w.clone();
                    w.add_child_handler(pid, Box::new(move |_, _| drop(keep)))
                        .unwrap();
                    pid
                })
                .unwrap();
            // The exit will find its loop closed: the reaper drops the callback, and with
            // it the last handle of the watcher.
            event_loop.close().unwrap();
            drop(event_loop);
            drop(watcher);
            k.end_child(pid, ExitStatus::from_exit_code(0));
            for _ in 0..1000 {
                if k.open_fds() == fds && k.children_left() == (0, 0) {
                    break;
                }
                k.sleep(Duration::from_millis(1));
            }
            assert_eq!(k.children_left(), (0, 0), "the reaper reaped the child");
            assert_eq!(k.open_fds(), fds, "the watcher's pipe is closed");
            assert_eq!(
                k.disposition(Signal::SIGCHLD).unwrap(),
                Disposition::Default
            );
            // One more turn for the reaper to return.
            k.sleep(Duration::from_millis(1));
        },
    );
}
