//! `ThreadedChildWatcher` and `PidfdChildWatcher` on the simulated kernel, over many
//! seeds: the scenarios of the OS tests (`src/watcher/tests_os.rs`) with every
//! interleaving of waiter threads, child exits and the loop's polls the seed picks,
//! plus what only the simulator shows: Pidfd's one `waitpid` per exit among 1,000 idle
//! children, `ENOSYS`/`EPERM` from `pidfd_open`, injected `EINTR`, and a foreign
//! `waitpid(-1)` reaper racing the watchers.
//!
//! Each run must complete with no child, fd or thread left over. A failure names its
//! seed: rerun it with `LOOPWATCH_SEED=<seed> cargo test -p loopwatch-sim --test
//! watchers_threaded_pidfd <name>`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use loopwatch::kernel::{
    Clock, ExitStatus, Fds, Pid, Processes, Signal, Signals, SpawnRequest, ThreadId, Threads,
    WaitMode, WaitStatus,
};
use loopwatch::watcher::{ChildCallback, MultiLoopChildWatcher};
use loopwatch::{
    ChildWatcher, ErrorKind, EventLoop, ExceptionContext, PidfdChildWatcher, ThreadedChildWatcher,
};
use loopwatch_sim::{
    FaultPlan, PidReuse, Report, SimKernel, Simulation, actors, check_determinism, seed_from_env,
    seeds_from_env,
};

type Loop = EventLoop<SimKernel>;
type Watcher = Arc<dyn ChildWatcher<SimKernel>>;
type MakeWatcher = fn(&SimKernel) -> Watcher;

/// Virtual seconds a scenario waits for callbacks before it fails.
const PATIENCE: f64 = 3600.0;

fn seeds(default: u64) -> Vec<u64> {
    match std::env::var("LOOPWATCH_SEED") {
        Ok(_) => vec![seed_from_env(0)],
        Err(_) => (0..seeds_from_env(default)).collect(),
    }
}

fn threaded(k: &SimKernel) -> Watcher {
    Arc::new(ThreadedChildWatcher::with_kernel(k.clone()))
}

fn pidfd(k: &SimKernel) -> Watcher {
    Arc::new(PidfdChildWatcher::with_kernel(k.clone()))
}

/// Checks that the run completed and left nothing behind.
fn assert_clean(report: &Report, test: &str) {
    report.assert_completed(test);
    let seed = report.seed;
    assert_eq!(report.children_left, (0, 0), "seed {seed}: children left");
    assert_eq!(report.fds_left, 0, "seed {seed}: fds left");
    assert_eq!(report.threads_abandoned, 0, "seed {seed}: threads left");
}

/// Names of the threads the run started, from its trace.
fn thread_names(report: &Report) -> Vec<String> {
    report
        .trace
        .lines()
        .iter()
        .filter_map(|l| l.split_once("spawn_thread(\"").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_string()))
        .collect()
}

/// Runs `body` in a new simulated thread with a new loop (closed afterwards if `body`
/// left it open), and re-raises its panic in the caller.
fn in_worker<T: Send + 'static>(
    k: &SimKernel,
    body: impl FnOnce(Loop, ThreadId) -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let k2 = k.clone();
    let worker = k
        .spawn_thread(
            "Worker",
            Box::new(move || {
                assert!(!k2.is_main_thread());
                let event_loop = EventLoop::with_kernel(k2.clone()).unwrap();
                let out = body(event_loop.clone(), k2.current_thread());
                if !event_loop.is_closed() {
                    event_loop.close().unwrap();
                }
                let _ = tx.send(out);
            }),
        )
        .unwrap();
    match k.join_thread(worker) {
        Ok(()) => rx.recv().unwrap(),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// One callback invocation.
#[derive(Clone, Debug)]
struct Reported {
    tag: String,
    pid: Pid,
    code: i32,
    thread: ThreadId,
}

/// Collects callback invocations; stops the loop once `target` have arrived.
#[derive(Clone)]
struct Reports {
    tx: mpsc::Sender<Reported>,
    count: Arc<AtomicUsize>,
    target: Arc<AtomicUsize>,
    event_loop: Loop,
}

impl Reports {
    fn new(event_loop: &Loop) -> (Reports, mpsc::Receiver<Reported>) {
        let (tx, rx) = mpsc::channel();
        let reports = Reports {
            tx,
            count: Arc::default(),
            target: Arc::new(AtomicUsize::new(usize::MAX)),
            event_loop: event_loop.clone(),
        };
        (reports, rx)
    }

    fn callback(&self, tag: &str) -> ChildCallback {
        let (reports, tag) = (self.clone(), tag.to_string());
        Box::new(move |pid, code| {
            let thread = reports.event_loop.kernel().current_thread();
            let _ = reports.tx.send(Reported {
                tag,
                pid,
                code,
                thread,
            });
            let count = reports.count.fetch_add(1, Ordering::SeqCst) + 1;
            if count >= reports.target.load(Ordering::SeqCst) {
                reports.event_loop.stop();
            }
        })
    }

    /// Runs the loop (from its thread) until `count` callbacks in all have arrived,
    /// with a watchdog in virtual time; returns those received so far, sorted by tag.
    fn wait_for(&self, rx: &mpsc::Receiver<Reported>, seen: &mut Vec<Reported>, count: usize) {
        self.target.store(count, Ordering::SeqCst);
        if self.count.load(Ordering::SeqCst) < count {
            let stopper = self.event_loop.clone();
            let watchdog = self
                .event_loop
                .call_later(PATIENCE, move || stopper.stop())
                .unwrap();
            self.event_loop.run_forever().unwrap();
            watchdog.cancel();
        }
        seen.extend(rx.try_iter());
        assert_eq!(seen.len(), count, "callbacks so far: {seen:?}");
        seen.sort_by(|a, b| a.tag.cmp(&b.tag));
    }
}

/// Registers `(tag, pid)`s from inside the running loop, then waits for one callback
/// each; returns them sorted by tag.
fn register_and_wait(
    event_loop: &Loop,
    watcher: &Watcher,
    children: &[(String, Pid)],
) -> Vec<Reported> {
    let (reports, rx) = Reports::new(event_loop);
    event_loop
        .run_until_complete(async {
            for (tag, pid) in children {
                watcher
                    .add_child_handler(*pid, reports.callback(tag))
                    .unwrap();
            }
        })
        .unwrap();
    let mut seen = Vec::new();
    reports.wait_for(&rx, &mut seen, children.len());
    seen
}

/// Captures the events of one target emitted on this OS thread (every simulated thread
/// runs on it): `(level, message, category)`.
mod capture {
    use std::sync::mpsc;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    pub(super) type Captured = (Level, String, String);

    /// Sends the events of target `.1` to `.0`.
    pub(super) struct Capture(pub(super) mpsc::Sender<Captured>, pub(super) &'static str);

    struct Fields(String, String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            match field.name() {
                "message" => self.0 = format!("{value:?}"),
                "category" => self.1 = format!("{value:?}"),
                _ => {}
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            match field.name() {
                "message" => self.0 = value.to_string(),
                "category" => self.1 = value.to_string(),
                _ => {}
            }
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            if event.metadata().target() != self.1 {
                return;
            }
            let mut fields = Fields(String::new(), String::new());
            event.record(&mut fields);
            let _ = self.0.send((*event.metadata().level(), fields.0, fields.1));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

/// Runs `simulation` with `scenario`, capturing the warnings the code under test logs
/// on target `asyncio` (CPython's).
fn run_capturing(
    simulation: Simulation,
    scenario: impl FnOnce(SimKernel) + Send + 'static,
) -> (Report, Vec<String>) {
    run_capturing_target(simulation, "asyncio", scenario)
}

/// As [`run_capturing`], for the warnings on `target`.
fn run_capturing_target(
    simulation: Simulation,
    target: &'static str,
    scenario: impl FnOnce(SimKernel) + Send + 'static,
) -> (Report, Vec<String>) {
    let (tx, rx) = mpsc::channel();
    let report = tracing::subscriber::with_default(capture::Capture(tx, target), || {
        simulation.run(scenario)
    });
    let warnings = rx
        .try_iter()
        .filter(|(level, _, _)| *level == tracing::Level::WARN)
        .map(|(_, message, _)| message)
        .collect();
    (report, warnings)
}

fn sh(k: &SimKernel, script: &str) -> Pid {
    k.spawn(&SpawnRequest::new("/bin/sh", ["-c", script]))
        .unwrap()
        .pid
}

/// A child that runs until killed (or 100,000 virtual seconds).
fn sleeper(k: &SimKernel) -> Pid {
    k.spawn(&SpawnRequest::new("sleep", ["100000"]))
        .unwrap()
        .pid
}

/// Reaps `pid` in the test, which must get its status.
fn reap(k: &SimKernel, pid: Pid) -> i32 {
    loop {
        match k.wait_pid(pid, WaitMode::Block) {
            Ok(WaitStatus::Terminated(_, status)) => return status.returncode(),
            Err(loopwatch::kernel::Errno::EINTR) => continue,
            other => panic!("wait_pid({pid}) gave {other:?}"),
        }
    }
}

// ----- both watchers -----------------------------------------------------------------

/// Exit codes, deaths by signal, a kill while registered; all in the loop's thread.
fn returncodes_scenario(make: MakeWatcher) -> impl Fn(SimKernel) + Clone + Send + 'static {
    move |k: SimKernel| {
        let scripts = [
            ("a", "exit 0", 0),
            ("b", "exit 1", 1),
            ("c", "exit 3", 3),
            ("d", "exit 255", 255),
            ("e", "kill -TERM $$", -15),
            ("f", "kill -9 $$", -9),
        ];
        let mut expected: Vec<(String, Pid, i32)> = scripts
            .iter()
            .map(|&(tag, script, code)| (tag.to_string(), sh(&k, script), code))
            .collect();
        let sleeper = sleeper(&k);
        expected.push(("g".to_string(), sleeper, -9));
        let watcher = make(&k);
        let k2 = k.clone();
        in_worker(&k, move |event_loop, loop_thread| {
            let (reports, rx) = Reports::new(&event_loop);
            event_loop
                .run_until_complete(async {
                    for (tag, pid, _) in &expected {
                        watcher
                            .add_child_handler(*pid, reports.callback(tag))
                            .unwrap();
                    }
                    k2.kill(sleeper, Some(Signal::SIGKILL)).unwrap();
                })
                .unwrap();
            let mut seen = Vec::new();
            reports.wait_for(&rx, &mut seen, expected.len());
            for (report, (tag, pid, code)) in seen.iter().zip(&expected) {
                assert_eq!((&report.tag, report.pid, report.code), (tag, *pid, *code));
                assert_eq!(report.thread, loop_thread);
            }
            watcher.close().unwrap();
        });
    }
}

#[test]
fn threaded_reports_returncodes_in_loop_thread() {
    // Goal (T-3, T-4, R-1, R-4): codes 0/1/3/255, -15, -9 and a kill while registered reach the callback in the loop's thread; waiters are named asyncio-waitpid-0…6.
    for seed in seeds(20) {
        let (report, warnings) =
            run_capturing(Simulation::new(seed), returncodes_scenario(threaded));
        assert_clean(&report, "threaded_reports_returncodes_in_loop_thread");
        assert!(warnings.is_empty(), "seed {seed}: {warnings:?}");
        let names: Vec<String> = thread_names(&report)
            .into_iter()
            .filter(|n| n.starts_with("asyncio-waitpid-"))
            .collect();
        let expected: Vec<String> = (0..7).map(|n| format!("asyncio-waitpid-{n}")).collect();
        assert_eq!(names, expected, "seed {seed}");
    }
}

#[test]
fn pidfd_reports_returncodes_in_loop_thread() {
    // Goal (K-2, R-1, R-4): codes 0/1/3/255, -15, -9 and a kill while registered reach the callback synchronously in the loop's thread; no thread is started.
    for seed in seeds(20) {
        let (report, warnings) = run_capturing(Simulation::new(seed), returncodes_scenario(pidfd));
        assert_clean(&report, "pidfd_reports_returncodes_in_loop_thread");
        assert!(warnings.is_empty(), "seed {seed}: {warnings:?}");
        assert_eq!(thread_names(&report), ["Worker"], "seed {seed}");
    }
}

#[test]
fn both_watchers_replay_from_their_seed() {
    // Goal (determinism): a seed replays the same trace for each watcher, EINTR faults included, so any failure above can be reproduced from its seed.
    for seed in seeds(5) {
        let plan = FaultPlan {
            eintr: 0.2,
            ..FaultPlan::default()
        };
        let simulation = Simulation::new(seed).faults(plan);
        let watchers: [(&str, MakeWatcher); 2] = [("threaded", threaded), ("pidfd", pidfd)];
        for (name, make) in watchers {
            let report = simulation.run(returncodes_scenario(make));
            assert_clean(&report, "both_watchers_replay_from_their_seed");
            let divergence = check_determinism(&simulation, returncodes_scenario(make));
            assert_eq!(divergence, None, "{name}, seed {seed}");
        }
    }
}

/// Registration with no running loop: RuntimeError, nothing started or opened.
fn no_loop_scenario(make: MakeWatcher) -> impl FnOnce(SimKernel) + Send + 'static {
    move |k: SimKernel| {
        let pid = sh(&k, "exit 0");
        let watcher = make(&k);
        let fds = k.open_fds();
        let error = watcher
            .add_child_handler(pid, Box::new(|_, _| panic!("never called")))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::RuntimeError);
        assert_eq!(error.message(), "no running event loop");
        // A loop that exists but does not run does not count.
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let error = watcher
            .add_child_handler(pid, Box::new(|_, _| panic!("never called")))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::RuntimeError);
        event_loop.close().unwrap();
        assert_eq!(k.open_fds(), fds);
        assert_eq!(reap(&k, pid), 0);
        watcher.close().unwrap();
    }
}

#[test]
fn threaded_needs_a_running_loop() {
    // Goal (T-3): without a running loop add_child_handler is RuntimeError('no running event loop') and starts no thread.
    for seed in seeds(20) {
        let report = Simulation::new(seed).run(no_loop_scenario(threaded));
        assert_clean(&report, "threaded_needs_a_running_loop");
        assert!(thread_names(&report).is_empty(), "seed {seed}");
    }
}

#[test]
fn pidfd_needs_a_running_loop() {
    // Goal (K-2): without a running loop add_child_handler is RuntimeError('no running event loop') and opens no pidfd.
    for seed in seeds(20) {
        let report = Simulation::new(seed).run(no_loop_scenario(pidfd));
        assert_clean(&report, "pidfd_needs_a_running_loop");
        assert!(
            !report
                .trace
                .lines()
                .iter()
                .any(|l| l.contains("pidfd_open(")),
            "seed {seed}"
        );
    }
}

/// One pid registered twice: both callbacks fire, one with 3, one with 255.
fn twice_scenario(make: MakeWatcher) -> impl FnOnce(SimKernel) + Send + 'static {
    move |k: SimKernel| {
        let pid = sh(&k, "sleep 0.5; exit 3");
        let watcher = make(&k);
        in_worker(&k, move |event_loop, _| {
            let children = [("first".to_string(), pid), ("second".to_string(), pid)];
            let seen = register_and_wait(&event_loop, &watcher, &children);
            let mut codes: Vec<i32> = seen.iter().map(|r| r.code).collect();
            codes.sort_unstable();
            assert_eq!(codes, [3, 255], "{seen:?}");
            watcher.close().unwrap();
        });
    }
}

#[test]
fn threaded_same_pid_twice_fires_both() {
    // Goal (T-5): two registrations of one pid start two threads; both callbacks fire, one with the code and one with 255 and the warning, and both threads end.
    for seed in seeds(20) {
        let (report, warnings) = run_capturing(Simulation::new(seed), twice_scenario(threaded));
        assert_clean(&report, "threaded_same_pid_twice_fires_both");
        assert_eq!(
            warnings,
            ["Unknown child process pid 1001, will report returncode 255"],
            "seed {seed}"
        );
    }
}

#[test]
fn pidfd_same_pid_twice_fires_both() {
    // Goal (K-2): two registrations of one pid use two pidfds; both callbacks fire, one with the code and one with 255 and the "already read" warning.
    for seed in seeds(20) {
        let (report, warnings) = run_capturing(Simulation::new(seed), twice_scenario(pidfd));
        assert_clean(&report, "pidfd_same_pid_twice_fires_both");
        assert_eq!(
            warnings,
            ["child process pid 1001 exit status already read:  will report returncode 255"],
            "seed {seed}"
        );
    }
}

/// remove/attach/close are no-ops and the callback still fires (T-2, T-6, K-2).
fn noops_scenario(make: MakeWatcher) -> impl FnOnce(SimKernel) + Send + 'static {
    move |k: SimKernel| {
        let pid = sleeper(&k);
        let watcher = make(&k);
        assert!(watcher.is_active());
        watcher.attach_loop(None).unwrap();
        assert!(watcher.remove_child_handler(Pid(4242)));
        let k2 = k.clone();
        in_worker(&k, move |event_loop, _| {
            watcher.attach_loop(Some(event_loop.clone())).unwrap();
            let (reports, rx) = Reports::new(&event_loop);
            event_loop
                .run_until_complete(async {
                    watcher
                        .add_child_handler(pid, reports.callback("kept"))
                        .unwrap();
                    assert!(watcher.remove_child_handler(pid));
                    assert!(watcher.remove_child_handler(pid));
                    watcher.close().unwrap();
                    assert!(watcher.is_active());
                    k2.kill(pid, Some(Signal::SIGKILL)).unwrap();
                })
                .unwrap();
            let mut seen = Vec::new();
            reports.wait_for(&rx, &mut seen, 1);
            assert_eq!((seen[0].pid, seen[0].code), (pid, -9));
            watcher.close().unwrap();
        });
    }
}

#[test]
fn threaded_remove_attach_close_are_noops() {
    // Goal (T-2, T-6): is_active is true, attach_loop does nothing, remove answers true and the callback still fires, also after close.
    for seed in seeds(20) {
        let report = Simulation::new(seed).run(noops_scenario(threaded));
        assert_clean(&report, "threaded_remove_attach_close_are_noops");
    }
}

#[test]
fn pidfd_remove_attach_close_are_noops() {
    // Goal (K-2): is_active is true, attach_loop and close do nothing, remove answers true and the callback still fires.
    for seed in seeds(20) {
        let report = Simulation::new(seed).run(noops_scenario(pidfd));
        assert_clean(&report, "pidfd_remove_attach_close_are_noops");
    }
}

/// A panicking callback is reported by the loop; the other child's still runs.
fn panic_scenario(make: MakeWatcher) -> impl FnOnce(SimKernel) + Send + 'static {
    move |k: SimKernel| {
        let (bad, good) = (sh(&k, "exit 4"), sh(&k, "sleep 0.1; exit 5"));
        let watcher = make(&k);
        in_worker(&k, move |event_loop, _| {
            let (handled_tx, handled) = mpsc::channel();
            event_loop.set_exception_handler(Some(Arc::new(
                move |_, context: &ExceptionContext| {
                    let exception = context
                        .exception
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    let _ = handled_tx.send((context.message.clone(), exception));
                },
            )));
            let (reports, rx) = Reports::new(&event_loop);
            event_loop
                .run_until_complete(async {
                    let record = reports.callback("bad");
                    watcher
                        .add_child_handler(
                            bad,
                            Box::new(move |pid, code| {
                                record(pid, code);
                                panic!("callback boom");
                            }),
                        )
                        .unwrap();
                    watcher
                        .add_child_handler(good, reports.callback("good"))
                        .unwrap();
                })
                .unwrap();
            let mut seen = Vec::new();
            reports.wait_for(&rx, &mut seen, 2);
            assert_eq!((seen[0].pid, seen[0].code), (bad, 4));
            assert_eq!((seen[1].pid, seen[1].code), (good, 5));
            // The panicking callback may have run last: one more iteration reports it.
            let stopper = event_loop.clone();
            event_loop.call_soon(move || stopper.stop()).unwrap();
            event_loop.run_forever().unwrap();
            let handled: Vec<(String, String)> = handled.try_iter().collect();
            assert_eq!(handled.len(), 1, "{handled:?}");
            assert!(
                handled[0].0.starts_with("Exception in callback "),
                "{handled:?}"
            );
            assert!(handled[0].1.contains("callback boom"), "{handled:?}");
            watcher.close().unwrap();
        });
    }
}

#[test]
fn threaded_callback_panic_is_reported() {
    // Goal: a panicking callback is reported as "Exception in callback …" and the loop goes on to deliver the other child.
    for seed in seeds(20) {
        let report = Simulation::new(seed).run(panic_scenario(threaded));
        assert_clean(&report, "threaded_callback_panic_is_reported");
    }
}

#[test]
fn pidfd_callback_panic_is_reported() {
    // Goal: a panicking callback is reported as "Exception in callback …", its pidfd is closed, and the loop goes on to deliver the other child.
    for seed in seeds(20) {
        let report = Simulation::new(seed).run(panic_scenario(pidfd));
        assert_clean(&report, "pidfd_callback_panic_is_reported");
    }
}

/// `MANY` `/bin/true` children registered `batch` at a time, each reporting 0.
fn many_scenario(
    make: MakeWatcher,
    many: usize,
    batch: usize,
) -> impl FnOnce(SimKernel) + Send + 'static {
    move |k: SimKernel| {
        let watcher = make(&k);
        let k2 = k.clone();
        in_worker(&k, move |event_loop, loop_thread| {
            let (reports, rx) = Reports::new(&event_loop);
            let mut seen = Vec::new();
            for round in 0..many / batch {
                event_loop
                    .run_until_complete(async {
                        for _ in 0..batch {
                            let pid = k2
                                .spawn(&SpawnRequest::new("/bin/true", std::iter::empty::<&str>()))
                                .unwrap()
                                .pid;
                            watcher
                                .add_child_handler(pid, reports.callback("true"))
                                .unwrap();
                        }
                    })
                    .unwrap();
                reports.wait_for(&rx, &mut seen, (round + 1) * batch);
            }
            assert!(seen.iter().all(|r| r.code == 0 && r.thread == loop_thread));
            let pids: BTreeSet<Pid> = seen.iter().map(|r| r.pid).collect();
            assert_eq!(pids.len(), many, "each child reported once");
            watcher.close().unwrap();
        });
    }
}

#[test]
fn threaded_thousand_children() {
    // Goal (T-3, T-4): 1,000 children, 100 at a time, each report 0 in the loop's thread; close joins every waiter thread (none abandoned).
    for seed in seeds(3) {
        let report = Simulation::new(seed)
            .keep_trace(false)
            .run(many_scenario(threaded, 1000, 100));
        assert_clean(&report, "threaded_thousand_children");
    }
}

#[test]
fn pidfd_thousand_children() {
    // Goal (K-2, K-4): 1,000 children registered at once each report 0 in the loop's thread, and every pidfd is closed.
    for seed in seeds(3) {
        let report = Simulation::new(seed)
            .keep_trace(false)
            .run(many_scenario(pidfd, 1000, 1000));
        assert_clean(&report, "pidfd_thousand_children");
    }
}

#[test]
fn both_watchers_many_children_over_seeds() {
    // Goal (T-3, T-4, K-2): 100 children at once, over 20 seeds per watcher, each report 0 once whatever the interleaving.
    for seed in seeds(20) {
        let report = Simulation::new(seed).run(many_scenario(threaded, 100, 100));
        assert_clean(&report, "both_watchers_many_children_over_seeds");
        let report = Simulation::new(seed).run(many_scenario(pidfd, 100, 100));
        assert_clean(&report, "both_watchers_many_children_over_seeds");
    }
}

/// A foreign `waitpid(-1)` reaper races the watcher: each registered child is reported
/// exactly once, with its code or (when stolen) 255 and a warning; a child stolen
/// before Pidfd could open its pidfd is a ProcessLookupError. Adds the number of
/// children reported as 255 to `stolen`.
fn foreign_reaper_scenario(
    make: MakeWatcher,
    stolen: Arc<AtomicUsize>,
) -> impl FnOnce(SimKernel) + Send + 'static {
    move |k: SimKernel| {
        let pids: Vec<Pid> = (0..5)
            .map(|i| sh(&k, &format!("sleep 0.{i}; exit 7")))
            .collect();
        let (reaper, lines) = actors::reap_any(&k, 20, Duration::from_millis(30));
        let watcher = make(&k);
        let count = pids.len();
        let (reported, registered) = in_worker(&k, move |event_loop, _| {
            let (reports, rx) = Reports::new(&event_loop);
            let mut registered = 0;
            event_loop
                .run_until_complete(async {
                    for pid in &pids {
                        match watcher.add_child_handler(*pid, reports.callback("child")) {
                            Ok(()) => registered += 1,
                            Err(e) => assert_eq!(e.kind(), ErrorKind::ProcessLookupError),
                        }
                    }
                })
                .unwrap();
            let mut seen = Vec::new();
            reports.wait_for(&rx, &mut seen, registered);
            watcher.close().unwrap();
            (seen, registered)
        });
        k.join_thread(reaper).unwrap();
        let stole = lines.lock().unwrap().len();
        let lost = reported.iter().filter(|r| r.code == 255).count();
        assert!(
            reported.iter().all(|r| r.code == 7 || r.code == 255),
            "{reported:?}"
        );
        // Each stolen child is either refused at registration or reported as 255.
        assert_eq!(lost + (count - registered), stole, "{reported:?}");
        stolen.fetch_add(lost, Ordering::SeqCst);
    }
}

#[test]
fn threaded_with_foreign_reaper() {
    // Goal (R-2, T-4): a foreign waitpid(-1) reaper steals some children; each registered child is still reported once, with 7 or with 255 after a warning.
    let stolen = Arc::new(AtomicUsize::new(0));
    for seed in seeds(20) {
        let before = stolen.load(Ordering::SeqCst);
        let (report, warnings) = run_capturing(
            Simulation::new(seed),
            foreign_reaper_scenario(threaded, stolen.clone()),
        );
        let lost = stolen.load(Ordering::SeqCst) - before;
        assert_eq!(warnings.len(), lost, "seed {seed}: one warning per 255");
        assert_clean(&report, "threaded_with_foreign_reaper");
        assert!(
            warnings
                .iter()
                .all(|w| w.starts_with("Unknown child process pid "))
        );
    }
    assert!(
        stolen.load(Ordering::SeqCst) > 0,
        "no stolen child was reported as 255"
    );
}

#[test]
fn pidfd_with_foreign_reaper() {
    // Goal (R-2, K-3, K-4): a foreign waitpid(-1) reaper steals some children; each is reported once (7, or 255 after a warning) or refused with ProcessLookupError.
    let stolen = Arc::new(AtomicUsize::new(0));
    for seed in seeds(20) {
        let before = stolen.load(Ordering::SeqCst);
        let (report, warnings) = run_capturing(
            Simulation::new(seed),
            foreign_reaper_scenario(pidfd, stolen.clone()),
        );
        let lost = stolen.load(Ordering::SeqCst) - before;
        assert_eq!(warnings.len(), lost, "seed {seed}: one warning per 255");
        assert_clean(&report, "pidfd_with_foreign_reaper");
        assert!(
            warnings
                .iter()
                .all(|w| w.ends_with("exit status already read:  will report returncode 255"))
        );
    }
    assert!(
        stolen.load(Ordering::SeqCst) > 0,
        "no stolen child was reported as 255"
    );
}

// ----- Threaded only -----------------------------------------------------------------

#[test]
fn threaded_reaped_elsewhere_reports_255() {
    // Goal (R-2, T-4): a child reaped before registration is reported as 255 with "Unknown child process pid N, will report returncode 255".
    for seed in seeds(20) {
        let (report, warnings) = run_capturing(Simulation::new(seed), |k| {
            let pid = sh(&k, "exit 3");
            assert_eq!(reap(&k, pid), 3);
            let watcher = threaded(&k);
            in_worker(&k, move |event_loop, _| {
                let seen = register_and_wait(&event_loop, &watcher, &[("reaped".to_string(), pid)]);
                assert_eq!((seen[0].pid, seen[0].code), (pid, 255));
                watcher.close().unwrap();
            });
        });
        assert_clean(&report, "threaded_reaped_elsewhere_reports_255");
        assert_eq!(
            warnings,
            ["Unknown child process pid 1001, will report returncode 255"],
            "seed {seed}"
        );
    }
}

#[test]
fn threaded_retries_eintr() {
    // Goal (T-4): waitpid interrupted by EINTR is retried: every code still arrives.
    let mut injected = 0;
    for seed in seeds(20) {
        let plan = FaultPlan {
            eintr: 0.3,
            ..FaultPlan::default()
        };
        let report = Simulation::new(seed)
            .faults(plan)
            .run(returncodes_scenario(threaded));
        assert_clean(&report, "threaded_retries_eintr");
        injected += report.mark("eintr_injected");
    }
    assert!(injected > 0, "no EINTR was injected");
}

#[test]
fn threaded_close_waits_only_for_reaped_waiters() {
    // Goal (T-2, deviation): close joins waiters whose waitpid returned and leaves blocked ones running; a later close joins them once their children exit.
    for seed in seeds(20) {
        let report = Simulation::new(seed).run(|k| {
            let (first, second) = (sleeper(&k), sleeper(&k));
            let watcher = Arc::new(ThreadedChildWatcher::with_kernel(k.clone()));
            let k2 = k.clone();
            in_worker(&k, move |event_loop, _| {
                let (reports, rx) = Reports::new(&event_loop);
                event_loop
                    .run_until_complete(async {
                        watcher
                            .add_child_handler(first, reports.callback("first"))
                            .unwrap();
                        watcher
                            .add_child_handler(second, reports.callback("second"))
                            .unwrap();
                    })
                    .unwrap();
                watcher.close().unwrap();
                assert_eq!(watcher.pending_threads(), 2);
                k2.kill(first, Some(Signal::SIGKILL)).unwrap();
                let mut seen = Vec::new();
                reports.wait_for(&rx, &mut seen, 1);
                watcher.close().unwrap();
                assert_eq!(watcher.pending_threads(), 1);
                k2.kill(second, Some(Signal::SIGKILL)).unwrap();
                reports.wait_for(&rx, &mut seen, 2);
                watcher.close().unwrap();
                assert_eq!(watcher.pending_threads(), 0);
            });
        });
        assert_clean(&report, "threaded_close_waits_only_for_reaped_waiters");
    }
}

#[test]
fn threaded_add_joins_finished_waiters() {
    // Goal (T-3, deviation): each add_child_handler first joins the waiters that have finished, so a long-lived watcher holds handles only of live children.
    for seed in seeds(20) {
        let report = Simulation::new(seed).run(|k| {
            let (first, second) = (sh(&k, "exit 1"), sh(&k, "exit 2"));
            let watcher = Arc::new(ThreadedChildWatcher::with_kernel(k.clone()));
            let k2 = k.clone();
            in_worker(&k, move |event_loop, _| {
                let (reports, rx) = Reports::new(&event_loop);
                let mut seen = Vec::new();
                let add = |pid, tag| {
                    event_loop
                        .run_until_complete(async {
                            watcher
                                .add_child_handler(pid, reports.callback(tag))
                                .unwrap();
                        })
                        .unwrap();
                };
                add(first, "first");
                reports.wait_for(&rx, &mut seen, 1);
                // Virtual time passes only once every other thread waits: the first
                // waiter has ended by then.
                k2.sleep(Duration::from_secs(1));
                assert_eq!(watcher.pending_threads(), 1);
                add(second, "second");
                assert_eq!(watcher.pending_threads(), 1, "the first waiter was joined");
                reports.wait_for(&rx, &mut seen, 2);
                assert_eq!((seen[0].code, seen[1].code), (1, 2));
                watcher.close().unwrap();
                assert_eq!(watcher.pending_threads(), 0);
            });
        });
        assert_clean(&report, "threaded_add_joins_finished_waiters");
    }
}

/// Sets a flag when dropped: tells a test that a callback was dropped unrun.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn threaded_closed_loop_drops_callback() {
    // Goal (T-4): a child exiting after its loop was closed is reaped; the watcher warns "Loop … that handles pid N is closed" and drops the callback unrun.
    for seed in seeds(20) {
        let (report, warnings) = run_capturing(Simulation::new(seed), |k| {
            let pid = sleeper(&k);
            let watcher = Arc::new(ThreadedChildWatcher::with_kernel(k.clone()));
            let dropped = Arc::new(AtomicBool::new(false));
            let (w, flag) = (watcher.clone(), DropFlag(dropped.clone()));
            // Kept alive here: the loop is closed, not dropped, when the child exits.
            let closed = in_worker(&k, move |event_loop, _| {
                event_loop
                    .run_until_complete(async {
                        w.add_child_handler(
                            pid,
                            Box::new(move |_, _| {
                                let _keep = &flag;
                                panic!("called on a closed loop");
                            }),
                        )
                        .unwrap();
                    })
                    .unwrap();
                event_loop.close().unwrap();
                event_loop
            });
            k.kill(pid, Some(Signal::SIGKILL)).unwrap();
            // Bounded polling in virtual time: the waiter needs a few steps.
            for _ in 0..10_000 {
                if dropped.load(Ordering::SeqCst) {
                    break;
                }
                k.sleep(Duration::from_millis(1));
            }
            assert!(
                dropped.load(Ordering::SeqCst),
                "the callback was not dropped"
            );
            watcher.close().unwrap();
            assert_eq!(watcher.pending_threads(), 0);
            drop(closed);
        });
        assert_clean(&report, "threaded_closed_loop_drops_callback");
        assert_eq!(warnings.len(), 1, "seed {seed}: {warnings:?}");
        assert!(
            warnings[0].starts_with("Loop <EventLoop #")
                && warnings[0]
                    .ends_with("closed=true debug=false> that handles pid 1001 is closed"),
            "seed {seed}: {warnings:?}"
        );
    }
}

// ----- Pidfd only --------------------------------------------------------------------

#[test]
fn pidfd_reaped_before_add_is_process_lookup_error() {
    // Goal (K-3): a pid already reaped is refused with ProcessLookupError; nothing is registered and no fd is left open.
    for seed in seeds(20) {
        let report = Simulation::new(seed).run(|k| {
            let pid = sh(&k, "exit 3");
            assert_eq!(reap(&k, pid), 3);
            let watcher = pidfd(&k);
            in_worker(&k, move |event_loop, _| {
                event_loop
                    .run_until_complete(async {
                        let error = watcher
                            .add_child_handler(pid, Box::new(|_, _| panic!("never called")))
                            .unwrap_err();
                        assert_eq!(error.kind(), ErrorKind::ProcessLookupError);
                    })
                    .unwrap();
            });
        });
        assert_clean(&report, "pidfd_reaped_before_add_is_process_lookup_error");
    }
}

#[test]
fn pidfd_reaped_behind_its_back_reports_255() {
    // Goal: a registered child reaped by other code is reported as 255 with "child process pid N exit status already read:  will report returncode 255".
    for seed in seeds(20) {
        let (report, warnings) = run_capturing(Simulation::new(seed), |k| {
            let pid = sleeper(&k);
            let watcher = pidfd(&k);
            let k2 = k.clone();
            in_worker(&k, move |event_loop, _| {
                let (reports, rx) = Reports::new(&event_loop);
                event_loop
                    .run_until_complete(async {
                        watcher
                            .add_child_handler(pid, reports.callback("reaped"))
                            .unwrap();
                        k2.kill(pid, Some(Signal::SIGKILL)).unwrap();
                        assert_eq!(reap(&k2, pid), -9);
                    })
                    .unwrap();
                let mut seen = Vec::new();
                reports.wait_for(&rx, &mut seen, 1);
                assert_eq!((seen[0].pid, seen[0].code), (pid, 255));
            });
        });
        assert_clean(&report, "pidfd_reaped_behind_its_back_reports_255");
        assert_eq!(
            warnings,
            ["child process pid 1001 exit status already read:  will report returncode 255"],
            "seed {seed}"
        );
    }
}

#[test]
fn pidfd_closed_loop_closes_pidfd() {
    // Goal (K-2, deviation): a loop closed before the child exits drops the registration: the pidfd is closed and the callback never runs.
    for seed in seeds(20) {
        let report = Simulation::new(seed).run(|k| {
            let pid = sleeper(&k);
            let watcher = pidfd(&k);
            let dropped = Arc::new(AtomicBool::new(false));
            let flag = DropFlag(dropped.clone());
            in_worker(&k, move |event_loop, _| {
                event_loop
                    .run_until_complete(async {
                        watcher
                            .add_child_handler(
                                pid,
                                Box::new(move |_, _| {
                                    let _keep = &flag;
                                    panic!("called on a closed loop");
                                }),
                            )
                            .unwrap();
                    })
                    .unwrap();
                event_loop.close().unwrap();
            });
            assert!(dropped.load(Ordering::SeqCst));
            assert_eq!(k.open_fds(), 0, "the pidfd is closed");
            k.kill(pid, Some(Signal::SIGKILL)).unwrap();
            assert_eq!(reap(&k, pid), -9);
        });
        assert_clean(&report, "pidfd_closed_loop_closes_pidfd");
    }
}

/// Marks a point in the trace: a pipe opened and closed.
fn marker(k: &SimKernel) {
    let (r, w) = k.pipe().unwrap();
    k.close(r).unwrap();
    k.close(w).unwrap();
}

#[test]
fn pidfd_one_exit_costs_one_waitpid() {
    // Goal (K-4): with 1,000 idle registered children, one exit costs exactly one waitpid call (O(1)), for the pid that exited.
    for seed in seeds(5) {
        let report = Simulation::new(seed).run(|k| {
            let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
            let watcher = pidfd(&k);
            let pids: Vec<Pid> = (0..=1000).map(|_| sleeper(&k)).collect();
            let (reports, rx) = Reports::new(&event_loop);
            event_loop
                .run_until_complete(async {
                    for pid in &pids {
                        watcher
                            .add_child_handler(*pid, reports.callback("idle"))
                            .unwrap();
                    }
                })
                .unwrap();
            let last = *pids.last().unwrap();
            marker(&k);
            assert!(k.end_child(last, ExitStatus::from_exit_code(3)));
            let mut seen = Vec::new();
            reports.wait_for(&rx, &mut seen, 1);
            marker(&k);
            assert_eq!((seen[0].pid, seen[0].code), (last, 3));
            // Clean up through the watcher: every other child is killed and reported.
            for pid in &pids[..1000] {
                k.kill(*pid, Some(Signal::SIGKILL)).unwrap();
            }
            reports.wait_for(&rx, &mut seen, 1001);
            assert!(seen.iter().filter(|r| r.pid != last).all(|r| r.code == -9));
            event_loop.close().unwrap();
        });
        assert_clean(&report, "pidfd_one_exit_costs_one_waitpid");
        let lines = report.trace.lines();
        let marks: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains("pipe() = "))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(marks.len(), 2);
        let waits: Vec<&String> = lines[marks[0]..marks[1]]
            .iter()
            .filter(|l| l.contains(" waitpid("))
            .collect();
        assert_eq!(waits.len(), 1, "seed {}: {waits:?}", report.seed);
        assert!(waits[0].contains("waitpid(2001, NoHang)"), "{waits:?}");
    }
}

/// `pidfd_open` fails with `errno`: add_child_handler gives Os(errno), nothing stays.
fn pidfd_unavailable(plan: FaultPlan, errno: loopwatch::kernel::Errno, test: &str) {
    for seed in seeds(20) {
        let report = Simulation::new(seed).faults(plan.clone()).run(move |k| {
            let pid = sh(&k, "exit 0");
            let watcher = pidfd(&k);
            in_worker(&k, move |event_loop, _| {
                event_loop
                    .run_until_complete(async {
                        let error = watcher
                            .add_child_handler(pid, Box::new(|_, _| panic!("never called")))
                            .unwrap_err();
                        assert_eq!(error.kind(), ErrorKind::Os(errno));
                        assert_eq!(error.errno(), Some(errno));
                    })
                    .unwrap();
            });
            assert_eq!(reap(&k, pid), 0);
        });
        assert_clean(&report, test);
    }
}

#[test]
fn pidfd_enosys_reaches_the_caller() {
    // Goal (K-3): on a kernel without pidfd_open, add_child_handler is Os(ENOSYS), the cue to fall back to another watcher.
    let plan = FaultPlan {
        pidfd_enosys: true,
        ..FaultPlan::default()
    };
    pidfd_unavailable(
        plan,
        loopwatch::kernel::Errno::ENOSYS,
        "pidfd_enosys_reaches_the_caller",
    );
}

#[test]
fn pidfd_eperm_reaches_the_caller() {
    // Goal (K-3): under a seccomp filter that refuses pidfd_open, add_child_handler is Os(EPERM).
    let plan = FaultPlan {
        pidfd_eperm: true,
        ..FaultPlan::default()
    };
    pidfd_unavailable(
        plan,
        loopwatch::kernel::Errno::EPERM,
        "pidfd_eperm_reaches_the_caller",
    );
}

// ----- reliability findings ------------------------------------------------------------

/// A simulation where `pidfd_open` fails with ENOSYS (a kernel before 5.3), so a
/// `Process` can only signal by pid, and where a freed pid goes to the next child at once.
fn without_pidfd_reusing_pids(seed: u64) -> Simulation {
    let plan = FaultPlan {
        pidfd_enosys: true,
        ..FaultPlan::default()
    };
    let mut simulation = Simulation::new(seed).faults(plan);
    simulation.config_mut().pid_reuse = PidReuse::LastFreed;
    simulation
}

fn multi_loop(k: &SimKernel) -> Watcher {
    Arc::new(MultiLoopChildWatcher::with_kernel(k.clone()))
}

/// A watcher that reaps in a thread of its own (Threaded, MultiLoop) reaps a process's
/// child while the loop does not run; its pid goes to a stranger; `send_signal` must
/// refuse rather than hit the stranger.
fn reused_pid_scenario(make: MakeWatcher) -> impl Fn(SimKernel) + Clone + Send + 'static {
    move |k: SimKernel| {
        let watcher = make(&k);
        // MultiLoop installs its handler here (main thread); a no-op for Threaded.
        watcher.attach_loop(None).unwrap();
        loopwatch::policy::set_child_watcher(&k, Some(watcher.clone())).unwrap();
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let lp = event_loop.clone();
        let process = event_loop
            .run_until_complete(async move {
                lp.subprocess_exec(&SpawnRequest::new("/bin/sh", ["-c", "exit 3"]))
            })
            .unwrap()
            .unwrap();
        let pid = process.pid();
        // The loop does not run: the watcher's thread reaps the child, and the hop that
        // tells the loop waits in the loop's queue.
        while k.children_left() != (0, 0) {
            k.sleep(Duration::from_millis(1));
        }
        let stranger = sleeper(&k);
        assert_eq!(stranger, pid, "the freed pid went to the stranger");
        let error = process
            .send_signal(Signal::SIGTERM)
            .expect_err("the child was reaped: nothing to signal");
        assert_eq!(error.kind(), ErrorKind::ProcessLookupError);
        assert_eq!(
            k.wait_pid(stranger, WaitMode::NoHang),
            Ok(WaitStatus::StillAlive),
            "the stranger survives"
        );
        let code = event_loop
            .run_until_complete(async { process.wait().await })
            .unwrap();
        assert_eq!(code, 3);
        k.kill(stranger, Some(Signal::SIGKILL)).unwrap();
        assert_eq!(reap(&k, stranger), -9);
        drop(process);
        loopwatch::policy::set_child_watcher(&k, None).unwrap();
        event_loop.close().unwrap();
    }
}

#[test]
fn finding_03_threaded_reused_pid_not_signalled() {
    // Goal (reliability finding 3): without pidfds, a child reaped by Threaded's waiter before the loop hears of it is marked reaped at once: send_signal gives ProcessLookupError and the stranger that got its pid survives.
    for seed in seeds(20) {
        let report = without_pidfd_reusing_pids(seed).run(reused_pid_scenario(threaded));
        assert_clean(&report, "finding_03_threaded_reused_pid_not_signalled");
        assert!(
            report.mark("pidfd_enosys") > 0,
            "seed {seed}: pidfd was used"
        );
        assert!(report.mark("pid_reused") > 0, "seed {seed}: no pid reused");
    }
}

#[test]
fn finding_03_multi_loop_reused_pid_not_signalled() {
    // Goal (reliability finding 3): without pidfds, a child reaped by MultiLoop's reaper thread before the loop hears of it is marked reaped at once: send_signal gives ProcessLookupError and the stranger that got its pid survives.
    for seed in seeds(20) {
        let report = without_pidfd_reusing_pids(seed).run(reused_pid_scenario(multi_loop));
        assert_clean(&report, "finding_03_multi_loop_reused_pid_not_signalled");
        assert!(
            report.mark("pidfd_enosys") > 0,
            "seed {seed}: pidfd was used"
        );
        assert!(report.mark("pid_reused") > 0, "seed {seed}: no pid reused");
    }
}

/// Spawns `count` long-running processes from a loop in a worker thread, then drops
/// the processes and the loop without closing it; returns the pids.
fn spawn_then_drop_loop(k: &SimKernel, count: usize) -> Vec<Pid> {
    let (tx, rx) = mpsc::channel();
    let k2 = k.clone();
    let worker = k
        .spawn_thread(
            "Worker",
            Box::new(move || {
                let event_loop = EventLoop::with_kernel(k2.clone()).unwrap();
                let lp = event_loop.clone();
                let processes = event_loop
                    .run_until_complete(async move {
                        (0..count)
                            .map(|_| {
                                lp.subprocess_exec(&SpawnRequest::new("sleep", ["100000"]))
                                    .unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap();
                let _ = tx.send(processes.iter().map(|p| p.pid()).collect::<Vec<_>>());
                drop(processes);
                drop(event_loop);
            }),
        )
        .unwrap();
    k.join_thread(worker).unwrap();
    rx.recv().unwrap()
}

#[test]
fn finding_12_threaded_dropped_loop_is_freed() {
    // Goal (reliability finding 12): a loop dropped without close while Threaded waits for its children is freed (its fds closed); once the children end, their waiters end and nothing is left.
    for seed in seeds(20) {
        let (report, warnings) = run_capturing(Simulation::new(seed), |k| {
            let fds = k.open_fds();
            let watcher = threaded(&k);
            loopwatch::policy::set_child_watcher(&k, Some(watcher.clone())).unwrap();
            let pids = spawn_then_drop_loop(&k, 10);
            assert_eq!(k.open_fds(), fds, "the dropped loop's fds are closed");
            for pid in &pids {
                k.kill(*pid, Some(Signal::SIGKILL)).unwrap();
            }
            while k.children_left() != (0, 0) {
                k.sleep(Duration::from_millis(1));
            }
            loopwatch::policy::set_child_watcher(&k, None).unwrap();
            drop(watcher);
        });
        assert_clean(&report, "finding_12_threaded_dropped_loop_is_freed");
        // Each waiter found its loop gone, and said so as for a closed loop.
        assert_eq!(warnings.len(), 10, "seed {seed}: {warnings:?}");
        assert!(
            warnings.iter().all(|w| w.starts_with("Loop <EventLoop #")
                && w.contains(" dropped> that handles pid ")
                && w.ends_with(" is closed")),
            "seed {seed}: {warnings:?}"
        );
    }
}

#[test]
fn finding_12_pidfd_dropped_loop_is_freed() {
    // Goal (reliability finding 12): a loop dropped without close while Pidfd watches its children is freed with its readers, so every pidfd is closed; the children are left unreaped, as close leaves them (documented), and nothing else.
    for seed in seeds(20) {
        let report = Simulation::new(seed).run(|k| {
            let fds = k.open_fds();
            let watcher = pidfd(&k);
            loopwatch::policy::set_child_watcher(&k, Some(watcher.clone())).unwrap();
            let pids = spawn_then_drop_loop(&k, 10);
            assert_eq!(
                k.open_fds(),
                fds,
                "the pidfds and the loop's fds are closed"
            );
            for pid in &pids {
                k.kill(*pid, Some(Signal::SIGKILL)).unwrap();
            }
            // Nobody is left to reap them: as after close, they are the caller's.
            for pid in &pids {
                assert_eq!(reap(&k, *pid), -9);
            }
            loopwatch::policy::set_child_watcher(&k, None).unwrap();
            drop(watcher);
        });
        assert_clean(&report, "finding_12_pidfd_dropped_loop_is_freed");
    }
}

/// SIGCHLD is ignored before the watcher exists: the kernel reaps the child itself, the
/// watcher reports 255, and says why on target `loopwatch`.
fn sigchld_ignored_scenario(make: MakeWatcher) -> impl FnOnce(SimKernel) + Send + 'static {
    move |k: SimKernel| {
        let before = actors::ignore_sigchld(&k).unwrap();
        let pid = sh(&k, "sleep 1; exit 3");
        let watcher = make(&k);
        in_worker(&k, move |event_loop, _| {
            let seen = register_and_wait(&event_loop, &watcher, &[("a".to_string(), pid)]);
            assert_eq!((seen[0].pid, seen[0].code), (pid, 255));
            watcher.close().unwrap();
        });
        k.set_disposition(Signal::SIGCHLD, before).unwrap();
    }
}

fn check_sigchld_ignored_warning(make: MakeWatcher, test: &str) {
    for seed in seeds(20) {
        let (report, warnings) = run_capturing_target(
            Simulation::new(seed),
            "loopwatch",
            sigchld_ignored_scenario(make),
        );
        assert_clean(&report, test);
        assert_eq!(warnings.len(), 1, "seed {seed}: {warnings:?}");
        assert!(
            warnings[0].contains("SIGCHLD") && warnings[0].contains("SIG_IGN"),
            "seed {seed}: {warnings:?}"
        );
        assert!(warnings[0].contains("1001"), "names the pid: {warnings:?}");
    }
}

#[test]
fn finding_15_threaded_sigchld_ignored_is_reported() {
    // Goal (reliability finding 15): with SIGCHLD set to SIG_IGN before the watcher exists, Threaded still reports the child (as 255, as CPython) and warns on target loopwatch why.
    check_sigchld_ignored_warning(threaded, "finding_15_threaded_sigchld_ignored_is_reported");
}

#[test]
fn finding_15_pidfd_sigchld_ignored_is_reported() {
    // Goal (reliability finding 15): with SIGCHLD set to SIG_IGN before the watcher exists, Pidfd still reports the child (as 255, as CPython) and warns on target loopwatch why.
    check_sigchld_ignored_warning(pidfd, "finding_15_pidfd_sigchld_ignored_is_reported");
}
