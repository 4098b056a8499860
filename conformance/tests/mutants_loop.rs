//! Proves the loop and subprocess mutants of `loopwatch::zoo` misbehave where the code does not.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use loopwatch::kernel::{Clock, Fds, Processes, Signal, Signals, SpawnRequest, Threads};
use loopwatch::policy::{self, WatcherRef};
use loopwatch::zoo::{Mutant, set_mutant};
use loopwatch::{
    ChildWatcher, ErrorKind, EventLoop, Process, SafeChildWatcher, ThreadedChildWatcher,
};
use loopwatch_sim::testing::{self, Log, Sweep};
use loopwatch_sim::{FaultPlan, Outcome, PidReuse, Report, SimKernel, Simulation};

/// Seeds each half of a test runs (`LOOPWATCH_SEEDS` / `LOOPWATCH_SEED` override).
const SEEDS: u64 = 8;

/// Runs `body` with `mutant` switched on, once per seed of a sweep built by
/// `simulation`, and asserts that at least one run shows the wrong behaviour `wrong`
/// judges from what the body returned (`None` when the run did not complete) and the
/// report. Prints the seeds that show it; if none does, fails with every seed's outcome
/// and the command that replays the first.
fn mutant_shows<T, F>(
    test: &str,
    mutant: Mutant,
    simulation: fn(u64) -> Simulation,
    body: F,
    wrong: impl Fn(Option<&T>, &Report) -> bool,
) where
    T: Debug + Send + 'static,
    F: Fn(&SimKernel) -> T + Send + Sync + 'static,
{
    let body = Arc::new(body);
    let seeds = Sweep::new(SEEDS).seeds().to_vec();
    let (mut shown, mut right) = (Vec::new(), Vec::new());
    for &seed in &seeds {
        let body = body.clone();
        let (value, report) = simulation(seed).run_returning(move |k| {
            set_mutant(&k, Some(mutant));
            body(&k)
        });
        if wrong(value.as_ref(), &report) {
            shown.push(seed);
        } else {
            right.push(format!("seed {seed}: {:?}, {value:?}", report.outcome));
        }
    }
    assert!(
        !shown.is_empty(),
        "mutant {mutant} behaved correctly on all {} seeds:\n{}\nreplay: {}",
        seeds.len(),
        right.join("\n"),
        testing::replay_command(seeds[0], Some(test), Some("loopwatch-conformance")),
    );
    println!(
        "{test}: mutant {mutant} shows on seeds {shown:?} of {}",
        seeds.len()
    );
}

/// Runs `body` on every seed of a sweep built by `simulation`, with no mutant, and
/// requires each run to complete and return `expected`.
fn correct_without_mutant<T, F>(simulation: fn(u64) -> Simulation, body: F, expected: T)
where
    T: Debug + PartialEq + Send + Sync + 'static,
    F: Fn(&SimKernel) -> T + Send + Sync + 'static,
{
    Sweep::new(SEEDS)
        .simulation(simulation)
        .run(move |k| assert_eq!(body(k), expected));
}

// ----- ThreadsafeNoWake ---------------------------------------------------------------

/// A loop idle in its poll (no timers, nothing ready) and another thread that calls
/// `call_soon_threadsafe` with a callback that stops it: returns how many times the
/// callback ran.
fn threadsafe_call_wakes_the_loop(k: &SimKernel) -> usize {
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let ran = Log::new();
    let (lp, log, kernel) = (event_loop.clone(), ran.clone(), k.clone());
    let caller = k
        .spawn_thread(
            "caller",
            Box::new(move || {
                // Virtual time moves only once the loop waits in its poll.
                kernel.sleep(Duration::from_secs(1));
                let stopper = lp.clone();
                lp.call_soon_threadsafe(move || {
                    log.push(());
                    stopper.stop();
                })
                .unwrap();
            }),
        )
        .unwrap();
    event_loop.run_forever().unwrap();
    k.join_thread(caller).unwrap();
    event_loop.close().unwrap();
    ran.len()
}

#[test]
fn threadsafe_no_wake() {
    // Goal: the callback wakes the idle loop and runs once; with the mutant nothing
    // wakes the loop, and the run ends in a deadlock with the loop asleep in its poll.
    correct_without_mutant(Simulation::new, threadsafe_call_wakes_the_loop, 1);
    mutant_shows(
        "threadsafe_no_wake",
        Mutant::ThreadsafeNoWake,
        Simulation::new,
        threadsafe_call_wakes_the_loop,
        |ran, report| ran.is_none() && matches!(report.outcome, Outcome::Deadlock(_)),
    );
}

// ----- KillAfterReap ------------------------------------------------------------------

/// Pids are handed out again as soon as they are freed.
fn reusing_pids(seed: u64) -> Simulation {
    let mut simulation = Simulation::new(seed);
    simulation.config_mut().pid_reuse = PidReuse::LastFreed;
    simulation
}

/// As [`reusing_pids`], on a kernel without pidfds (`pidfd_open` fails with ENOSYS), so
/// a `Process` can signal its child only by pid.
fn reusing_pids_without_pidfd(seed: u64) -> Simulation {
    reusing_pids(seed).faults(FaultPlan {
        pidfd_enosys: true,
        ..FaultPlan::none()
    })
}

/// What `kill()` on a reaped child's `Process` did: its result, and the returncode of
/// the stranger that got the pid, which the test sends only SIGTERM (-15; -9 if the
/// `kill()` reached it).
type KillOutcome = (Result<(), ErrorKind>, i32);

/// What is right: `ProcessLookupError`, and the stranger dies of the test's SIGTERM.
const STRANGER_SPARED: KillOutcome = (Err(ErrorKind::ProcessLookupError), -15);

/// Starts a stranger, which takes the freed pid of `process`'s reaped child, calls
/// `process.kill()`, then sends the stranger SIGTERM and reaps it. A simulated child
/// acts on its signals lowest number first, so a SIGKILL that reached it wins.
fn kill_after_reap(k: &SimKernel, process: &Process<SimKernel>) -> KillOutcome {
    let stranger = k
        .spawn(&SpawnRequest::new("/bin/sleep", ["100000"]))
        .unwrap()
        .pid;
    assert_eq!(
        stranger,
        process.pid(),
        "the freed pid went to the stranger"
    );
    let sent = process.kill().map_err(|error| error.kind());
    k.kill(stranger, Some(Signal::SIGTERM)).unwrap();
    (sent, testing::reap(k, stranger))
}

/// A `Process` under Threaded, on a kernel without pidfds: the watcher's thread reaps
/// the child and the loop hears of it, then the process is killed.
fn kill_after_the_watcher_reaped(k: &SimKernel) -> KillOutcome {
    let watcher: WatcherRef<SimKernel> = Arc::new(ThreadedChildWatcher::with_kernel(k.clone()));
    policy::set_child_watcher(k, Some(watcher)).unwrap();
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let lp = event_loop.clone();
    let process = event_loop
        .run_until_complete(async move { lp.subprocess_exec(&testing::sh("exit 3")) })
        .unwrap()
        .unwrap();
    let code = event_loop
        .run_until_complete(async { process.wait().await })
        .unwrap();
    assert_eq!(code, 3);
    let outcome = kill_after_reap(k, &process);
    drop(process);
    policy::set_child_watcher(k, None).unwrap();
    event_loop.close().unwrap();
    outcome
}

/// A `Process` under Safe, whose loop no longer runs, with a pidfd: other code reaps
/// the child (a `waitpid` of its own), then the process is killed.
fn kill_after_other_code_reaped(k: &SimKernel) -> KillOutcome {
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let watcher = Arc::new(SafeChildWatcher::with_kernel(k.clone()));
    watcher.attach_loop(Some(event_loop.clone())).unwrap();
    policy::set_child_watcher(k, Some(watcher)).unwrap();
    let lp = event_loop.clone();
    let process = event_loop
        .run_until_complete(async move { lp.subprocess_exec(&testing::sh("sleep 1; exit 3")) })
        .unwrap()
        .unwrap();
    assert_eq!(testing::reap(k, process.pid()), 3);
    let outcome = kill_after_reap(k, &process);
    drop(process);
    policy::set_child_watcher(k, None).unwrap();
    event_loop.close().unwrap();
    outcome
}

/// The mutant's `kill()` succeeds and the stranger dies of the SIGKILL it was never
/// sent.
fn stranger_killed(outcome: Option<&KillOutcome>, _: &Report) -> bool {
    outcome == Some(&(Ok(()), -9))
}

#[test]
fn kill_after_reap_by_the_watcher() {
    // Goal: once the watcher reaped the child, kill() is ProcessLookupError (the reap
    // fence) and the process that reused the pid is spared; with the mutant the kill
    // goes to the pid and kills that process.
    correct_without_mutant(
        reusing_pids_without_pidfd,
        kill_after_the_watcher_reaped,
        STRANGER_SPARED,
    );
    mutant_shows(
        "kill_after_reap_by_the_watcher",
        Mutant::KillAfterReap,
        reusing_pids_without_pidfd,
        kill_after_the_watcher_reaped,
        stranger_killed,
    );
}

#[test]
fn kill_after_reap_by_other_code() {
    // Goal: once other code reaped the child, kill() through the pidfd is
    // ProcessLookupError (ESRCH) and the process that reused the pid is spared; with
    // the mutant the kill goes to the pid and kills that process.
    correct_without_mutant(reusing_pids, kill_after_other_code_reaped, STRANGER_SPARED);
    mutant_shows(
        "kill_after_reap_by_other_code",
        Mutant::KillAfterReap,
        reusing_pids,
        kill_after_other_code_reaped,
        stranger_killed,
    );
}

// ----- StaleWakeupFd ------------------------------------------------------------------

/// A loop handles a child's SIGCHLD and is closed; pipes are opened until one takes
/// the fd number of the loop's wakeup fd (a pipe's write end: the simulator gives the
/// lowest free numbers); another child exits. Returns what that pipe received.
fn sigchld_after_close(k: &SimKernel) -> Vec<u8> {
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let lp = event_loop.clone();
    event_loop
        .add_signal_handler(Signal::SIGCHLD, move || lp.stop())
        .unwrap();
    // Read by unsetting it and setting it back: nothing signals in between.
    let wakeup = k
        .set_wakeup_fd(None)
        .unwrap()
        .expect("the loop set the wakeup fd");
    k.set_wakeup_fd(Some(wakeup)).unwrap();
    let child = testing::spawn_sh(k, "exit 0");
    event_loop.run_forever().unwrap();
    assert_eq!(testing::reap(k, child), 0);
    event_loop.close().unwrap();

    let mut pipes = Vec::new();
    while !pipes
        .iter()
        .any(|&(read, write)| wakeup == read || wakeup == write)
    {
        pipes.push(k.pipe().unwrap());
    }
    let (read, write) = *pipes.last().expect("one pipe at least");
    assert_eq!(
        write, wakeup,
        "the freed wakeup fd is a new pipe's write end"
    );
    let child = testing::spawn_sh(k, "exit 0");
    assert_eq!(testing::reap(k, child), 0);
    // Nothing else runs: a pending SIGCHLD is delivered before the clock moves on.
    k.sleep(Duration::from_secs(1));
    let (received, _) = testing::drain(k, read);
    for (read, write) in pipes {
        k.close(read).unwrap();
        k.close(write).unwrap();
    }
    received
}

#[test]
fn stale_wakeup_fd() {
    // Goal: after the loop closed, a SIGCHLD writes nothing into the pipe that reused
    // its wakeup fd; with the mutant it writes the signal number there.
    correct_without_mutant(Simulation::new, sigchld_after_close, Vec::new());
    mutant_shows(
        "stale_wakeup_fd",
        Mutant::StaleWakeupFd,
        Simulation::new,
        sigchld_after_close,
        |received, _| received == Some(&vec![Signal::SIGCHLD.0 as u8]),
    );
}
