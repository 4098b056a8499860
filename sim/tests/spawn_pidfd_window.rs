//! The window between spawning a child and opening its pidfd: foreign code that reaps
//! any child (`waitpid(-1)`) and spawns its own can, in that window, reap loopwatch's
//! child and hand its pid to a stranger. A pidfd made with the child (Linux's `clone`
//! with `CLONE_PIDFD`), which `subprocess_exec` asks for with every child, closes the
//! window: the `Process` keeps naming its own child, and `send_signal` never reaches
//! the stranger. With the zoo's
//! `SpawnPidfdLate` (the pidfd opened after the spawn) the same runs show the stranger
//! signalled.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use loopwatch::kernel::{Errno, Fds, Processes, SpawnRequest, Threads, WaitMode, WaitStatus};
use loopwatch::policy::{self, WatcherRef};
use loopwatch::zoo::{Mutant, set_mutant};
use loopwatch::{ErrorKind, EventLoop, PidfdChildWatcher};
use loopwatch_sim::testing::{self, Sweep};
use loopwatch_sim::{FaultPlan, PidReuse, Report, SimKernel, Simulation};

/// Seeds each half runs (`LOOPWATCH_SEEDS` / `LOOPWATCH_SEED` override).
const SEEDS: u64 = 32;

/// How many times the foreign supervisor asks for a dead child before it gives up.
const ATTEMPTS: u32 = 400;

/// Pids are handed out again as soon as they are freed, and every child exits as soon
/// as it is spawned: the window is open from the spawn on.
fn window_simulation(seed: u64) -> Simulation {
    let mut simulation = Simulation::new(seed).faults(FaultPlan {
        exit_before_registration: 1.0,
        ..FaultPlan::none()
    });
    simulation.config_mut().pid_reuse = PidReuse::LastFreed;
    simulation
}

/// What a run saw.
#[derive(Debug, PartialEq)]
struct Seen {
    /// Whether the stranger had taken the child's pid by the time `subprocess_exec`
    /// returned: the foreign code ran inside the window.
    in_window: bool,
    /// What `kill()` on the process gave (`None`: `subprocess_exec` itself failed).
    sent: Option<Result<(), ErrorKind>>,
}

/// A careless supervisor in another thread of the process reaps the first child it
/// finds with `waitpid(-1, WNOHANG)` and starts one of its own (the stranger), which
/// takes the freed pid and keeps it until the main thread has killed its process. Meanwhile the main thread starts a child through
/// `subprocess_exec` under the Pidfd watcher, then kills it.
fn foreign_reaper_in_the_window(k: &SimKernel, made_with_the_child: bool) -> Seen {
    let stranger = Arc::new(AtomicI32::new(0));
    // The supervisor reaps its stranger only once the main thread has sent its kill:
    // until then the stranger holds the pid, as a running one would.
    let (go_read, go_write) = k.pipe().unwrap();
    let (kernel, took) = (k.clone(), stranger.clone());
    let supervisor = k
        .spawn_thread(
            "foreign-supervisor",
            Box::new(move || {
                for _ in 0..ATTEMPTS {
                    match kernel.wait_any(WaitMode::NoHang) {
                        Ok(WaitStatus::Terminated(..)) => {}
                        _ => continue,
                    }
                    let Ok(child) = kernel.spawn(&SpawnRequest::new("/bin/sleep", ["100000"]))
                    else {
                        return;
                    };
                    took.store(child.pid.0, Ordering::SeqCst);
                    let mut byte = [0u8; 1];
                    while kernel.read(go_read, &mut byte) == Err(Errno::EINTR) {}
                    // Its own child: reaped by pid (ECHILD if the watcher took it).
                    while kernel.wait_pid(child.pid, WaitMode::Block) == Err(Errno::EINTR) {}
                    return;
                }
            }),
        )
        .expect("simulated threads can always be spawned");
    let watcher: WatcherRef<SimKernel> = Arc::new(PidfdChildWatcher::with_kernel(k.clone()));
    policy::set_child_watcher(k, Some(watcher)).unwrap();
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let lp = event_loop.clone();
    let started = event_loop
        .run_until_complete(async move {
            lp.subprocess_exec(&testing::sh("exit 3").pidfd(made_with_the_child))
        })
        .unwrap();
    let seen = match started {
        Ok(process) => {
            let in_window = stranger.load(Ordering::SeqCst) == process.pid().0;
            let sent = process.kill().map_err(|error| error.kind());
            event_loop
                .run_until_complete(async { process.wait().await })
                .unwrap();
            Seen {
                in_window,
                sent: Some(sent),
            }
        }
        Err(_) => Seen {
            in_window: stranger.load(Ordering::SeqCst) != 0,
            sent: None,
        },
    };
    k.write(go_write, b"x").unwrap();
    k.join_thread(supervisor).unwrap();
    k.close(go_read).unwrap();
    k.close(go_write).unwrap();
    policy::set_child_watcher(k, None).unwrap();
    event_loop.close().unwrap();
    seen
}

/// Whether a signal of the run reached the stranger (a `sleep` child) rather than the
/// process's own child.
fn stranger_signalled(report: &Report) -> bool {
    report.ledger.signals.iter().any(|signal| {
        signal
            .landed_on
            .and_then(|serial| report.ledger.children.get(serial as usize))
            .is_some_and(|child| child.program.contains("sleep"))
    })
}

/// Every seed's run, with `mutant` switched on or not, its process spawned with a
/// pidfd made with the child (`SpawnRequest::pidfd`) or not.
fn runs(mutant: Option<Mutant>, made_with_the_child: bool) -> Vec<(u64, Option<Seen>, Report)> {
    Sweep::new(SEEDS)
        .seeds()
        .iter()
        .map(|&seed| {
            let (seen, report) = window_simulation(seed).run_returning(move |k| {
                set_mutant(&k, mutant);
                foreign_reaper_in_the_window(&k, made_with_the_child)
            });
            (seed, seen, report)
        })
        .collect()
}

/// Checks that whenever the foreign supervisor reaps the child and gives its pid to a
/// stranger before registration, the process still names its own child: kill() is
/// ProcessLookupError (the child is gone) and no signal of the run reaches the
/// stranger; and that the window is hit on some seed, so the check can fail.
fn assert_window_closed(made_with_the_child: bool, test: &str) {
    let runs = runs(None, made_with_the_child);
    let mut hit = Vec::new();
    for (seed, seen, report) in &runs {
        let replay = testing::replay_command(*seed, Some(test), None);
        let seen = seen
            .as_ref()
            .unwrap_or_else(|| panic!("seed {seed}: {:?}\nreplay: {replay}", report.outcome));
        assert!(
            !stranger_signalled(report),
            "seed {seed}: a signal reached the stranger ({seen:?})\nreplay: {replay}"
        );
        assert!(
            seen.sent.is_some(),
            "seed {seed}: subprocess_exec failed\nreplay: {replay}"
        );
        if seen.in_window {
            assert_eq!(
                seen.sent,
                Some(Err(ErrorKind::ProcessLookupError)),
                "seed {seed}\nreplay: {replay}"
            );
            hit.push(*seed);
        }
    }
    assert!(
        !hit.is_empty(),
        "the foreign supervisor never ran inside the window on {} seeds",
        runs.len()
    );
    println!("window hit on seeds {hit:?} of {}", runs.len());
}

#[test]
fn spawn_time_pidfd_closes_the_window() {
    // Goal: a request that asks for its pidfd made with the child keeps naming its own
    // child through the window (see assert_window_closed).
    assert_window_closed(true, "spawn_time_pidfd_closes_the_window");
}

#[test]
fn a_request_that_does_not_ask_is_made_with_its_pidfd_too() {
    // Goal: subprocess_exec asks for the pidfd with every child, so a request that
    // does not ask is as safe: the window is hit and closed on the same seeds.
    assert_window_closed(
        false,
        "a_request_that_does_not_ask_is_made_with_its_pidfd_too",
    );
}

#[test]
fn spawn_pidfd_late_signals_the_stranger() {
    // Goal: with the pidfd opened after the spawn (SpawnPidfdLate), on some seed the
    // foreign supervisor reaps the child first and the pidfd names the stranger that
    // took its pid: the process's kill() reaches the stranger.
    let runs = runs(Some(Mutant::SpawnPidfdLate), true);
    let shown: Vec<u64> = runs
        .iter()
        .filter(|(_, _, report)| stranger_signalled(report))
        .map(|(seed, _, _)| *seed)
        .collect();
    assert!(
        !shown.is_empty(),
        "mutant spawn-pidfd-late behaved correctly on all {} seeds: {:?}",
        runs.len(),
        runs.iter()
            .map(|(seed, seen, _)| (seed, seen))
            .collect::<Vec<_>>()
    );
    println!("mutant shows on seeds {shown:?} of {}", runs.len());
}
