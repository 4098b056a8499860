//! Each fault of a fault plan, switched on, does what a real kernel may do, and foreign
//! actors interleave with the code under test as the seed decides.

use std::time::Duration;

use loopwatch::kernel::{
    Clock, Disposition, Errno, Fds, Interest, Poll, Poller, Processes, Signal, Signals, Threads,
    Token, WaitMode, WaitStatus, WaitTarget,
};
use loopwatch_sim::testing::sh;
use loopwatch_sim::{FaultPlan, Simulation, actors};

#[test]
fn eintr_ends_blocking_calls() {
    // Goal: with EINTR injection on, a blocking read and a blocking waitpid return
    // EINTR instead of blocking, and the mark counts them.
    let plan = FaultPlan {
        eintr: 1.0,
        ..FaultPlan::none()
    };
    let report = Simulation::new(1).faults(plan).run(|k| {
        let (read, write) = k.pipe().unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(k.read(read, &mut buf), Err(Errno::EINTR));
        let child = k.spawn(&sh("sleep 1; exit 0")).unwrap();
        assert_eq!(k.wait_pid(child.pid, WaitMode::Block), Err(Errno::EINTR));
        k.kill(child.pid, Some(Signal::SIGKILL)).unwrap();
        assert!(k.wait_pid(child.pid, WaitMode::NoHang).is_ok());
        k.close(read).unwrap();
        k.close(write).unwrap();
    });
    report.assert_completed("eintr_ends_blocking_calls");
    assert_eq!(report.mark("eintr_injected"), 2);
}

#[test]
fn spawn_eagain_and_pidfd_eperm() {
    // Goal: spawn can fail with EAGAIN and pidfd_open with EPERM (seccomp), each on.
    let report = Simulation::new(2)
        .faults(FaultPlan {
            spawn_eagain: 1.0,
            ..FaultPlan::none()
        })
        .run(|k| assert_eq!(k.spawn(&sh("exit 0")).err(), Some(Errno::EAGAIN)));
    report.assert_completed("spawn_eagain_and_pidfd_eperm");
    assert_eq!(report.mark("spawn_eagain"), 1);
    let report = Simulation::new(2)
        .faults(FaultPlan {
            pidfd_eperm: true,
            ..FaultPlan::none()
        })
        .run(|k| {
            let child = k.spawn(&sh("exit 0")).unwrap();
            assert_eq!(k.pidfd_open(child.pid), Err(Errno::EPERM));
            k.wait_pid(child.pid, WaitMode::Block).unwrap();
        });
    report.assert_completed("spawn_eagain_and_pidfd_eperm");
}

#[test]
fn spurious_wakeup_returns_empty_poll() {
    // Goal: a poll with nothing ready and no timeout can return early with no events.
    let plan = FaultPlan {
        spurious_wakeup: 1.0,
        ..FaultPlan::none()
    };
    let report = Simulation::new(3).faults(plan).run(|k| {
        let poller = k.new_poller().unwrap();
        let (read, write) = k.pipe().unwrap();
        poller.register(read, Token(1), Interest::READABLE).unwrap();
        let mut events = Vec::new();
        poller.poll(&mut events, None).unwrap();
        assert!(events.is_empty());
        poller.deregister(read).unwrap();
        k.close(read).unwrap();
        k.close(write).unwrap();
    });
    report.assert_completed("spurious_wakeup_returns_empty_poll");
    assert_eq!(report.mark("spurious_wakeup"), 1);
}

#[test]
fn zombie_reaped_between_sigchld_and_wait() {
    // Goal: with the fault on, foreign code reaps the zombie as SIGCHLD is delivered,
    // so our own waitpid finds ECHILD: the case watchers report as returncode 255.
    let plan = FaultPlan {
        foreign_reap_on_sigchld: 1.0,
        ..FaultPlan::none()
    };
    let report = Simulation::new(4).faults(plan).run(|k| {
        let (read, write) = k.pipe().unwrap();
        k.set_nonblocking(write, true).unwrap();
        k.set_wakeup_fd(Some(write)).unwrap();
        k.set_disposition(Signal::SIGCHLD, Disposition::Wakeup)
            .unwrap();
        let child = k.spawn(&sh("exit 3")).unwrap();
        k.sleep(Duration::from_millis(1));
        assert_eq!(k.wait_pid(child.pid, WaitMode::NoHang), Err(Errno::ECHILD));
        k.close(read).unwrap();
        k.close(write).unwrap();
    });
    report.assert_completed("zombie_reaped_between_sigchld_and_wait");
    assert_eq!(report.mark("foreign_reap"), 1);
}

#[test]
fn zombie_reaped_as_it_exits_without_sigchld() {
    // Goal: with the fault on, foreign code reaps a child as it exits, also when
    // SIGCHLD is left at its default (no delivery, as under Threaded, Pidfd and Auto):
    // our own wait finds ECHILD, and a pidfd of the child reports it gone.
    let plan = FaultPlan {
        foreign_reap_on_exit: 1.0,
        ..FaultPlan::none()
    };
    let report = Simulation::new(4).faults(plan).run(|k| {
        let child = k.spawn(&sh("exit 3")).unwrap();
        let pidfd = k.pidfd_open(child.pid).unwrap();
        k.sleep(Duration::from_millis(1));
        assert_eq!(k.wait_pidfd(pidfd, WaitMode::NoHang), Err(Errno::ECHILD));
        assert_eq!(k.wait_pid(child.pid, WaitMode::NoHang), Err(Errno::ECHILD));
        k.close(pidfd).unwrap();
    });
    report.assert_completed("zombie_reaped_as_it_exits_without_sigchld");
    assert_eq!(report.mark("foreign_reap_on_exit"), 1);
    assert_eq!(report.mark("foreign_reap"), 0, "no SIGCHLD was delivered");
}

#[test]
fn foreign_reaper_sometimes_steals() {
    // Goal: a waitpid(-1) reaper and a library waiting for its own child race; over
    // seeds both orders happen: the library reaps its child, or finds ECHILD because
    // the reaper stole it. (A watcher using waitpid(-1) does this to other code.)
    let (mut reaped, mut stolen) = (0, 0);
    for seed in 0..100 {
        let outcome = std::sync::Arc::new(std::sync::OnceLock::new());
        let slot = outcome.clone();
        let report = Simulation::new(seed).run(move |k| {
            // The child exits at 2 ms, just as the reaper wakes from its second pause:
            // who gets to the zombie first is the scheduler's choice.
            let (spawner, seen) = actors::spawn_and_wait(&k, sh("sleep 0.002; exit 2"));
            let (reaper, _) = actors::reap_any(&k, 3, Duration::from_millis(1));
            k.join_thread(spawner).unwrap();
            k.join_thread(reaper).unwrap();
            let lines = seen.lock().unwrap().clone();
            let _ = slot.set(lines.last().cloned().unwrap_or_default());
        });
        report.assert_completed("foreign_reaper_sometimes_steals");
        let last = outcome.get().cloned().unwrap_or_default();
        if last.starts_with("reaped") {
            reaped += 1;
        } else if last == "wait ECHILD" {
            stolen += 1;
        } else {
            panic!("seed {seed}: unexpected {last:?}");
        }
    }
    assert!(reaped > 0 && stolen > 0, "reaped {reaped}, stolen {stolen}");
}

#[test]
fn foreign_sig_ign_auto_reaps_everyones_children() {
    // Goal: once foreign code sets SIGCHLD to SIG_IGN, a library waiting for its own
    // child gets ECHILD: the kernel reaped it.
    let report = Simulation::new(5).run(|k| {
        actors::ignore_sigchld(&k).unwrap();
        let (spawner, seen) = actors::spawn_and_wait(&k, sh("exit 1"));
        k.join_thread(spawner).unwrap();
        assert_eq!(
            seen.lock().unwrap().last().map(String::as_str),
            Some("wait ECHILD")
        );
        assert!(k.now() >= Duration::ZERO);
    });
    report.assert_completed("foreign_sig_ign_auto_reaps_everyones_children");
    assert_eq!(report.mark("sigchld_ignored_autoreap"), 1);
}

/// What a helper thread woken by SIGCHLD's handler byte found when it polled the
/// child; see [`helper_races_blocking_wait`].
#[derive(Debug, PartialEq, Eq)]
enum HelperSaw {
    /// The main thread's waitpid had reaped the child first.
    Gone,
    /// The helper reaped it, and the main thread's waitpid got ECHILD.
    Reaped,
}

/// The shape of MultiLoop's reaper beside foreign code's blocking waitpid: SIGCHLD's
/// handler writes a byte to a pipe; a helper thread reads it and polls the child; the
/// main thread, which spawned the child, waits for it. With `helper_blocks`, the
/// helper blocks SIGCHLD first.
fn helper_races_blocking_wait(seed: u64, plan: FaultPlan, helper_blocks: bool) -> HelperSaw {
    let outcome = std::sync::Arc::new(std::sync::OnceLock::new());
    let slot = outcome.clone();
    let report = Simulation::new(seed).faults(plan).run(move |k| {
        let (read, write) = k.pipe().unwrap();
        k.set_nonblocking(write, true).unwrap();
        k.set_disposition(Signal::SIGCHLD, Disposition::Notify(write))
            .unwrap();
        let child = k.spawn(&sh("sleep 1; exit 3")).unwrap();
        let (helper_kernel, pid) = (k.clone(), child.pid);
        let helper = k
            .spawn_thread(
                "helper",
                Box::new(move || {
                    if helper_blocks {
                        helper_kernel.block_signal(Signal::SIGCHLD).unwrap();
                    }
                    let mut buf = [0u8; 1];
                    while helper_kernel.read(read, &mut buf) != Ok(1) {}
                    let _ = helper_kernel.wait_pid(pid, WaitMode::NoHang);
                }),
            )
            .unwrap();
        let main = k.wait_pid(child.pid, WaitMode::Block);
        k.join_thread(helper).unwrap();
        let _ = slot.set(main);
    });
    report.assert_completed("helper_races_blocking_wait");
    match outcome.get().expect("the main thread finished") {
        Ok(_) => HelperSaw::Gone,
        Err(Errno::ECHILD) => HelperSaw::Reaped,
        other => panic!("seed {seed}: main thread's waitpid gave {other:?}"),
    }
}

#[test]
fn finding_06_sigchld_goes_to_the_spawning_thread_unless_the_fault_says_otherwise() {
    // Goal (reliability finding 6): without faults the waiting main thread always
    // takes its child's SIGCHLD and reaps first; with `signal_other_thread` the
    // helper may take it, and then (a legal Linux schedule) it can beat the wait.
    let other = FaultPlan {
        signal_other_thread: 1.0,
        ..FaultPlan::none()
    };
    let mut helper_first = 0;
    for seed in 0..200 {
        assert_eq!(
            helper_races_blocking_wait(seed, FaultPlan::none(), false),
            HelperSaw::Gone,
            "seed {seed} without faults"
        );
        if helper_races_blocking_wait(seed, other.clone(), false) == HelperSaw::Reaped {
            helper_first += 1;
        }
    }
    assert!(helper_first > 0, "the fault never let the helper win");
}

#[test]
fn finding_06_signal_other_thread_never_picks_a_thread_that_blocks_it() {
    // Goal (reliability finding 6): even with `signal_other_thread` always on, a
    // thread that blocks SIGCHLD never takes it, so a helper that blocks it can never
    // beat the spawning thread's waitpid (MultiLoop's reaper thread could do the same).
    let other = FaultPlan {
        signal_other_thread: 1.0,
        ..FaultPlan::none()
    };
    for seed in 0..200 {
        assert_eq!(
            helper_races_blocking_wait(seed, other.clone(), true),
            HelperSaw::Gone,
            "seed {seed}"
        );
    }
}

#[test]
fn finding_08_lag_delays_children_and_woken_threads() {
    // Goal (reliability finding 8): the lag fault starts a child up to its bound late
    // (never early), and a thread woken from a blocking call may run again late, as
    // on a loaded machine; over seeds both delays happen and stay within the bound.
    let lag = Duration::from_millis(100);
    let plan = FaultPlan {
        lag,
        ..FaultPlan::none()
    };
    let (mut late_exits, mut late_wakes) = (0, 0);
    for seed in 0..100 {
        let seen = std::sync::Arc::new(std::sync::OnceLock::new());
        let slot = seen.clone();
        let report = Simulation::new(seed).faults(plan.clone()).run(move |k| {
            let child = k.spawn(&sh("sleep 0.2; exit 4")).unwrap();
            k.wait_pid(child.pid, WaitMode::Block).unwrap();
            let exited = k.now();
            // A reader woken by a writer that notes when it wrote.
            let (read, write) = k.pipe().unwrap();
            let written_at = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (writer_kernel, note) = (k.clone(), written_at.clone());
            let writer = k
                .spawn_thread(
                    "writer",
                    Box::new(move || {
                        writer_kernel.sleep(Duration::from_millis(50));
                        let now = writer_kernel.now().as_micros() as u64;
                        note.store(now, std::sync::atomic::Ordering::SeqCst);
                        writer_kernel.write(write, b"x").unwrap();
                    }),
                )
                .unwrap();
            let mut buf = [0u8; 1];
            assert_eq!(k.read(read, &mut buf), Ok(1));
            let woken = k.now();
            k.join_thread(writer).unwrap();
            let written =
                Duration::from_micros(written_at.load(std::sync::atomic::Ordering::SeqCst));
            let _ = slot.set((exited, woken - written));
        });
        report.assert_completed("finding_08_lag_delays_children_and_woken_threads");
        let (exited, wake_delay) = *seen.get().expect("ran");
        let exit_delay = exited - Duration::from_millis(200);
        assert!(
            exit_delay <= lag * 2,
            "seed {seed}: exit {exit_delay:?} late"
        );
        assert!(wake_delay <= lag, "seed {seed}: woken {wake_delay:?} late");
        late_exits += usize::from(exit_delay > Duration::ZERO);
        late_wakes += usize::from(wake_delay > Duration::ZERO);
    }
    assert!(
        late_exits > 0 && late_wakes > 0,
        "{late_exits} {late_wakes}"
    );
}

#[test]
fn spawn_pidfd_enosys_fails_before_creating_anything() {
    // Goal: with spawn_pidfd_enosys (no CLONE_PIDFD) a spawn that asks for a pidfd fails
    // with ENOSYS leaving no child and no fd, a spawn without one and pidfd_open still
    // work; pidfd_enosys (no pidfds at all) implies it; without faults the spawn
    // returns the child's pidfd.
    let request = sh("exit 3").pidfd(true);
    for plan in [
        FaultPlan {
            spawn_pidfd_enosys: true,
            ..FaultPlan::none()
        },
        FaultPlan {
            pidfd_enosys: true,
            ..FaultPlan::none()
        },
    ] {
        let enosys_everywhere = plan.pidfd_enosys;
        let request = request.clone();
        let report = Simulation::new(4).faults(plan).run(move |k| {
            let fds = k.open_fds();
            assert_eq!(k.spawn(&request).map(|s| s.pid), Err(Errno::ENOSYS));
            assert_eq!(k.open_fds(), fds);
            assert_eq!(k.wait_any(WaitMode::NoHang), Err(Errno::ECHILD));
            let child = k.spawn(&request.clone().pidfd(false)).unwrap();
            assert_eq!(child.pidfd, None);
            match k.pidfd_open(child.pid) {
                Ok(fd) => {
                    assert!(!enosys_everywhere);
                    k.close(fd).unwrap();
                }
                Err(errno) => assert_eq!((errno, enosys_everywhere), (Errno::ENOSYS, true)),
            }
            k.wait_pid(child.pid, WaitMode::Block).unwrap();
        });
        report.assert_completed("spawn_pidfd_enosys_fails_before_creating_anything");
        assert_eq!(report.mark("spawn_pidfd_enosys"), 1);
    }
    let report = Simulation::new(4).run(move |k| {
        let child = k.spawn(&request).unwrap();
        let pidfd = child.pidfd.expect("a pidfd was asked for");
        let peek = k.wait_peek(WaitTarget::Pidfd(pidfd), WaitMode::Block);
        assert!(matches!(peek, Ok(WaitStatus::Terminated(pid, _)) if pid == child.pid));
        k.close(pidfd).unwrap();
        k.wait_pid(child.pid, WaitMode::Block).unwrap();
    });
    report.assert_completed("spawn_pidfd_enosys_fails_before_creating_anything");
    assert_eq!(report.mark("spawn_pidfd_enosys"), 0);
}
