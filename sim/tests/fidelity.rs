//! Fidelity: each kernel-behaviour test body is written once, generic over the kernel,
//! and run on the real OS (`OsKernel`) and on the simulator (`SimKernel`, several
//! seeds) with the same expected outcome. The kernel contract trait by trait
//! (spawning, waiting, pipes, pollers, dispositions, threads) is in
//! `kernel_contract_processes.rs`, `kernel_contract_fds_signals.rs` and
//! `kernel_contract_threads.rs`; here are SIGCHLD's finer points, the reliability
//! findings and what the simulator alone shows.
//!
//! A `harness = false` binary on `loopwatch_sim::testing`: each test runs on the
//! process's main thread, one at a time, so process-wide state (SIGCHLD's disposition
//! and mask, "any child" waits) belongs to the test that runs. Behaviours the real OS cannot show on demand (pid reuse,
//! ENOSYS from pidfd_open, a zombie stolen by foreign code) are tested on the
//! simulator alone, each with the reason beside it.
//!
//! `cargo test -p loopwatch-sim --test fidelity [NAME]` (with libtest's options:
//! `--list`, `--exact`, `--skip`); `LOOPWATCH_SEEDS=N` sets how many seeds each
//! simulator arm runs (default 16), `LOOPWATCH_SEED=S` runs one seed.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use loopwatch::kernel::{
    Clock, Disposition, Errno, Fd, Kernel, Signal, SpawnRequest, WaitMode, WaitStatus, WaitTarget,
};
use loopwatch::kernel::{Fds as _, Processes as _};
use loopwatch_sim::testing::{self, Body, Test, reap, sh};
use loopwatch_sim::{FaultPlan, ForeignHandler, Outcome, PidReuse, Report, Simulation};

/// Declares the unit structs of the bodies run on both kernels and `both_kernels()`,
/// their tests.
macro_rules! bodies {
    ($($name:ident),* $(,)?) => {
        $(
            #[allow(non_camel_case_types)]
            #[derive(Clone, Copy)]
            struct $name;
        )*
        fn both_kernels() -> Vec<Test> {
            vec![$(Test::both(stringify!($name), $name)),*]
        }
    };
}

bodies!(
    sigchld_coalesces,
    blocking_wait_parks_and_wakes,
    notify_disposition_writes_its_own_fd,
    ignored_sigchld_is_not_kept_for_later,
    finding_07_restore_signals_undoes_inherited_ignores,
    finding_06_waiting_parent_thread_reaps_before_its_handler,
    finding_17_stop_continue_and_signals_that_do_not_kill,
);

/// A non-blocking pipe whose write end is the wakeup fd, and SIGCHLD on it.
struct SigchldToPipe {
    read: Fd,
    write: Fd,
    previous: Disposition,
}

impl SigchldToPipe {
    fn install<K: Kernel>(k: &K) -> SigchldToPipe {
        let (read, write) = k.pipe().unwrap();
        k.set_nonblocking(read, true).unwrap();
        k.set_nonblocking(write, true).unwrap();
        k.set_wakeup_fd(Some(write)).unwrap();
        let previous = k
            .set_disposition(Signal::SIGCHLD, Disposition::Wakeup)
            .unwrap();
        SigchldToPipe {
            read,
            write,
            previous,
        }
    }

    fn drain<K: Kernel>(&self, k: &K) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = [0u8; 16];
        loop {
            match k.read(self.read, &mut buf) {
                Ok(n) if n > 0 => all.extend_from_slice(&buf[..n]),
                Err(Errno::EAGAIN) => return all,
                other => panic!("read gave {other:?}"),
            }
        }
    }

    fn remove<K: Kernel>(self, k: &K) {
        k.set_disposition(Signal::SIGCHLD, self.previous).unwrap();
        k.set_wakeup_fd(None).unwrap();
        k.close(self.read).unwrap();
        k.close(self.write).unwrap();
    }
}

impl Body for sigchld_coalesces {
    // Goal: two children exit while SIGCHLD is blocked: one SIGCHLD is pending, and
    // unblocking delivers it once (one byte on the wakeup fd, not two).
    fn run<K: Kernel>(&self, k: &K) {
        let wakeup = SigchldToPipe::install(k);
        k.block_signal(Signal::SIGCHLD).unwrap();
        let a = k.spawn(&sh("exit 1")).unwrap();
        let b = k.spawn(&sh("exit 2")).unwrap();
        for pid in [a.pid, b.pid] {
            k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block).unwrap();
        }
        assert!(wakeup.drain(k).is_empty(), "blocked: nothing delivered yet");
        k.unblock_signal(Signal::SIGCHLD).unwrap();
        assert_eq!(wakeup.drain(k), vec![Signal::SIGCHLD.0 as u8]);
        assert_eq!((reap(k, a.pid), reap(k, b.pid)), (1, 2));
        wakeup.remove(k);
    }
}

impl Body for blocking_wait_parks_and_wakes {
    // Goal: a blocking waitpid sleeps until the child exits, then reaps it.
    fn run<K: Kernel>(&self, k: &K) {
        // Reliability finding 8: half a second, not 50 ms, for the check below that
        // it still runs: a loaded machine may take tens of milliseconds to get here.
        let child = k.spawn(&sh("sleep 0.5; exit 7")).unwrap();
        assert_eq!(
            k.wait_pid(child.pid, WaitMode::NoHang),
            Ok(WaitStatus::StillAlive)
        );
        assert_eq!(reap(k, child.pid), 7);
    }
}

impl Body for notify_disposition_writes_its_own_fd {
    // Goal: a Notify(fd) disposition writes the signal number to its own fd, not to the
    // wakeup fd, reports itself as Notify(fd), and hands back what it replaced.
    fn run<K: Kernel>(&self, k: &K) {
        let (own_read, own_write) = k.pipe().unwrap();
        let (wake_read, wake_write) = k.pipe().unwrap();
        for fd in [own_read, own_write, wake_read, wake_write] {
            k.set_nonblocking(fd, true).unwrap();
        }
        let previous_wakeup = k.set_wakeup_fd(Some(wake_write)).unwrap();
        let previous = k
            .set_disposition(Signal::SIGUSR2, Disposition::Notify(own_write))
            .unwrap();
        assert_eq!(previous, Disposition::Default);
        assert_eq!(
            k.disposition(Signal::SIGUSR2).unwrap(),
            Disposition::Notify(own_write)
        );
        k.raise(Signal::SIGUSR2).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(k.read(own_read, &mut buf), Ok(1));
        assert_eq!(buf[0], Signal::SIGUSR2.0 as u8);
        assert_eq!(k.read(wake_read, &mut buf), Err(Errno::EAGAIN));
        assert_eq!(
            k.set_disposition(Signal::SIGUSR2, Disposition::Wakeup),
            Ok(Disposition::Notify(own_write))
        );
        assert_eq!(
            k.set_disposition(Signal::SIGUSR2, previous),
            Ok(Disposition::Wakeup)
        );
        assert_eq!(
            k.set_disposition(Signal::SIGUSR2, Disposition::Notify(Fd(i32::MAX))),
            Err(Errno::EBADF)
        );
        k.set_wakeup_fd(previous_wakeup).unwrap();
        for fd in [own_read, own_write, wake_read, wake_write] {
            k.close(fd).unwrap();
        }
    }
}

impl Body for ignored_sigchld_is_not_kept_for_later {
    // Goal: a SIGCHLD generated while its disposition is SIG_DFL (ignored) is dropped,
    // not handed to a handler installed afterwards: only the zombie remains.
    fn run<K: Kernel>(&self, k: &K) {
        assert_eq!(
            k.disposition(Signal::SIGCHLD).unwrap(),
            Disposition::Default
        );
        let child = k.spawn(&sh("exit 6")).unwrap();
        k.wait_peek(WaitTarget::Pid(child.pid), WaitMode::Block)
            .unwrap();
        let wakeup = SigchldToPipe::install(k);
        assert!(wakeup.drain(k).is_empty(), "the old SIGCHLD was dropped");
        assert_eq!(reap(k, child.pid), 6);
        wakeup.remove(k);
    }
}

impl Body for finding_06_waiting_parent_thread_reaps_before_its_handler {
    // Goal (reliability finding 6): a child's SIGCHLD goes to the thread that spawned
    // it when that thread does not block it, and that thread, blocked in waitpid for
    // the child, reaps it before its handler runs: a helper thread woken by the
    // handler's byte finds the child already gone (ECHILD), every time.
    fn run<K: Kernel>(&self, k: &K) {
        let (read, write) = k.pipe().unwrap();
        k.set_nonblocking(write, true).unwrap();
        let previous = k
            .set_disposition(Signal::SIGCHLD, Disposition::Notify(write))
            .unwrap();
        // The second lets the main thread block in waitpid long before the exit.
        let child = k.spawn(&sh("sleep 1; exit 3")).unwrap();
        let seen = Arc::new(AtomicI32::new(0));
        let (helper_kernel, helper_seen, pid) = (k.clone(), seen.clone(), child.pid);
        let helper = k
            .spawn_thread(
                "helper",
                Box::new(move || {
                    let mut buf = [0u8; 1];
                    loop {
                        match helper_kernel.read(read, &mut buf) {
                            Ok(1) => break,
                            Err(Errno::EINTR) => continue,
                            other => panic!("helper read gave {other:?}"),
                        }
                    }
                    let code = match helper_kernel.wait_pid(pid, WaitMode::NoHang) {
                        Err(Errno::ECHILD) => 1,
                        Ok(WaitStatus::StillAlive) => 2,
                        Ok(WaitStatus::Terminated(..)) => 3,
                        _ => 4,
                    };
                    helper_seen.store(code, Ordering::SeqCst);
                }),
            )
            .unwrap();
        let reaped = k.wait_pid(child.pid, WaitMode::Block);
        k.join_thread(helper).unwrap();
        k.set_disposition(Signal::SIGCHLD, previous).unwrap();
        k.close(read).unwrap();
        k.close(write).unwrap();
        assert!(
            matches!(reaped, Ok(WaitStatus::Terminated(_, s)) if s.returncode() == 3),
            "the waiting thread reaps its child, got {reaped:?}"
        );
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "the handler ran after the reap (1 = ECHILD, 3 = the helper reaped first)"
        );
    }
}

impl Body for finding_17_stop_continue_and_signals_that_do_not_kill {
    // Goal (reliability finding 17): SIGSTOP holds a child past its exit time until
    // SIGCONT (no wait reports the stop); a fatal signal sent to a stopped child
    // waits for SIGCONT, SIGKILL does not; a shell that sends itself a signal ignored
    // by default (SIGCHLD, SIGWINCH) exits 0.
    fn run<K: Kernel>(&self, k: &K) {
        // Stopped at once, a second before its script would exit.
        let a = k.spawn(&sh("sleep 1; exit 3")).unwrap();
        k.kill(a.pid, Some(Signal::SIGSTOP)).unwrap();
        k.sleep(Duration::from_millis(1500));
        assert_eq!(
            k.wait_pid(a.pid, WaitMode::NoHang),
            Ok(WaitStatus::StillAlive),
            "stopped: not exited, and the stop is not reported"
        );
        k.kill(a.pid, Some(Signal::SIGCONT)).unwrap();
        assert_eq!(reap(k, a.pid), 3);

        // A shell that stops itself: its stop's SIGCHLD says when it is stopped
        // (no wait reports a stop), so SIGTERM surely reaches a stopped child.
        let (read, write) = k.pipe().unwrap();
        k.set_nonblocking(write, true).unwrap();
        let previous = k
            .set_disposition(Signal::SIGCHLD, Disposition::Notify(write))
            .unwrap();
        let b = k.spawn(&sh("kill -STOP $$")).unwrap();
        let mut buf = [0u8; 1];
        while k.read(read, &mut buf) != Ok(1) {}
        k.set_disposition(Signal::SIGCHLD, previous).unwrap();
        k.kill(b.pid, Some(Signal::SIGTERM)).unwrap();
        // Were SIGTERM to end a stopped child, 200 ms would see it gone.
        k.sleep(Duration::from_millis(200));
        assert_eq!(
            k.wait_pid(b.pid, WaitMode::NoHang),
            Ok(WaitStatus::StillAlive),
            "SIGTERM waits for SIGCONT"
        );
        k.kill(b.pid, Some(Signal::SIGCONT)).unwrap();
        assert_eq!(reap(k, b.pid), -15);
        k.close(read).unwrap();
        k.close(write).unwrap();

        let c = k.spawn(&SpawnRequest::new("sleep", ["100"])).unwrap();
        k.kill(c.pid, Some(Signal::SIGSTOP)).unwrap();
        k.kill(c.pid, Some(Signal::SIGKILL)).unwrap();
        assert_eq!(reap(k, c.pid), -9);

        for script in ["kill -17 $$", "kill -28 $$", "kill -23 $$"] {
            let child = k.spawn(&sh(script)).unwrap();
            assert_eq!(reap(k, child.pid), 0, "{script}");
        }
    }
}

// ----- simulator only ---------------------------------------------------------------

/// The simulator-only tests, each with the reason beside it.
fn sim_only() -> Vec<Test> {
    vec![
        // Why simulator only: Linux hands out pids sequentially up to pid_max, so
        // reuse cannot be provoked on demand.
        Test::sim("sim_pid_reuse_last_freed", |k| {
            // Goal: with "last freed" reuse the next child gets the pid just reaped,
            // and its pidfd-free ESRCH rules still tell them apart.
            let first = k.spawn(&sh("exit 1")).unwrap();
            let pidfd = k.pidfd_open(first.pid).unwrap();
            assert_eq!(reap(k, first.pid), 1);
            let second = k.spawn(&SpawnRequest::new("sleep", ["1"])).unwrap();
            assert_eq!(second.pid, first.pid, "pid reused");
            assert_eq!(
                k.pidfd_send_signal(pidfd, Signal::SIGTERM),
                Err(Errno::ESRCH)
            );
            assert_eq!(reap(k, second.pid), 0, "the new child was not signalled");
            k.close(pidfd).unwrap();
        })
        .simulation(|seed| {
            let mut simulation = Simulation::new(seed);
            simulation.config_mut().pid_reuse = PidReuse::LastFreed;
            simulation
        })
        .check_report(|report| mark_reached(report, "pid_reused")),
        // Why simulator only: this machine's kernel has pidfd_open.
        Test::sim("sim_pidfd_enosys_fault", |k| {
            // Goal: the ENOSYS fault reaches the caller as ENOSYS.
            let child = k.spawn(&sh("exit 0")).unwrap();
            assert_eq!(k.pidfd_open(child.pid), Err(Errno::ENOSYS));
            reap(k, child.pid);
        })
        .simulation(|seed| {
            Simulation::new(seed).faults(FaultPlan {
                pidfd_enosys: true,
                ..FaultPlan::none()
            })
        }),
        // Why simulator only: a foreign SIGCHLD handler racing ours needs control
        // over which handler runs when.
        Test::sim("sim_foreign_reaper_steals_zombie", |k| {
            // Goal: a foreign handler that reaps everything leaves our waitpid with
            // ECHILD.
            k.install_foreign_handler(Signal::SIGCHLD, ForeignHandler::ReapAll);
            let child = k.spawn(&sh("exit 5")).unwrap();
            // Sleep until the child's SIGCHLD has surely been handled.
            k.sleep(Duration::from_millis(10));
            assert_eq!(k.wait_pid(child.pid, WaitMode::NoHang), Err(Errno::ECHILD));
            assert_eq!(k.foreign_deliveries(), 1);
        })
        .check_report(|report| mark_reached(report, "foreign_reap")),
        // Why simulator only: whether a child exits before its parent's next step is
        // up to the OS scheduler.
        Test::sim("sim_exit_before_registration", |k| {
            // Goal: the fault makes the child a zombie as spawn returns.
            let child = k.spawn(&sh("exit 9")).unwrap();
            let peek = k
                .wait_peek(WaitTarget::Pid(child.pid), WaitMode::NoHang)
                .unwrap();
            assert!(matches!(peek, WaitStatus::Terminated(_, s) if s.returncode() == 9));
            reap(k, child.pid);
        })
        .simulation(|seed| {
            Simulation::new(seed).faults(FaultPlan {
                exit_before_registration: 1.0,
                ..FaultPlan::none()
            })
        }),
        // Why simulator only: lowering RLIMIT_NOFILE would affect the whole test
        // process.
        Test::sim("sim_emfile_at_limit", |k| {
            // Goal: fds run out with EMFILE at the configured limit, and closing frees
            // one.
            let mut fds = Vec::new();
            loop {
                match k.pipe() {
                    Ok((r, w)) => fds.extend([r, w]),
                    Err(e) => {
                        assert_eq!(e, Errno::EMFILE);
                        break;
                    }
                }
            }
            assert_eq!(
                fds.len(),
                4,
                "3 stdio + 4 < 8, a fifth pipe would exceed it"
            );
            for fd in fds {
                k.close(fd).unwrap();
            }
            let (r, w) = k.pipe().unwrap();
            k.close(r).unwrap();
            k.close(w).unwrap();
        })
        .simulation(|seed| {
            Simulation::new(seed).faults(FaultPlan {
                fd_limit: Some(8),
                ..FaultPlan::none()
            })
        }),
        // Why simulator only: on the OS this would hang.
        Test::sim("sim_deadlock_is_reported", |k| {
            // Goal: a thread blocked forever (reading a pipe nobody writes) ends the
            // run with a deadlock report.
            let (read, _write) = k.pipe().unwrap();
            let mut buf = [0u8; 1];
            let _ = k.read(read, &mut buf);
        })
        .check_report(|report| match &report.outcome {
            Outcome::Deadlock(text) if text.contains("MainThread") => Ok(()),
            other => Err(format!("expected a deadlock, got {other:?}")),
        }),
    ]
}

/// A completed run that reached coverage mark `name` exactly once.
fn mark_reached(report: &Report, name: &str) -> Result<(), String> {
    testing::completed(report)?;
    match report.mark(name) {
        1 => Ok(()),
        n => Err(format!("{name} mark reached {n} times, expected once")),
    }
}

impl Body for finding_07_restore_signals_undoes_inherited_ignores {
    // Reliability finding 7: a parent that ignores SIGHUP and SIGINT (as under `nohup`
    // or as a background job) and SIGTERM spawns children with `restore_signals`: each
    // child starts at the defaults and dies of its own signal.
    fn run<K: Kernel>(&self, k: &K) {
        let signals = [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM];
        let previous: Vec<Disposition> = signals
            .iter()
            .map(|&signal| k.set_disposition(signal, Disposition::Ignore).unwrap())
            .collect();
        let codes: Vec<i32> = signals
            .iter()
            .map(|signal| {
                let mut request = sh(&format!("kill -{} $$; exit 7", signal.0));
                request.restore_signals = true;
                let child = k.spawn(&request).unwrap();
                reap(k, child.pid)
            })
            .collect();
        for (&signal, previous) in signals.iter().zip(previous) {
            k.set_disposition(signal, previous).unwrap();
        }
        assert_eq!(codes, vec![-1, -2, -15]);
    }
}

/// Reliability finding 7: the signals whose default actions these tests rely on, put
/// back to SIG_DFL if this binary inherited them ignored (under `nohup`, as a
/// background job). A handler cannot be inherited, so SIG_IGN is all there is to undo.
fn reset_inherited_ignores() {
    testing::undo_inherited_ignores(&[
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTERM,
        Signal::SIGSEGV,
    ]);
}

fn main() -> ExitCode {
    reset_inherited_ignores();
    testing::main(both_kernels().into_iter().chain(sim_only()))
}
