//! The watchers' cost and their manners toward other code's children, counted on the
//! simulated kernel: Safe makes one wait call per registered child per SIGCHLD (O(n)),
//! Fast a constant number per exit (O(1)); Fast steals a foreign child, Safe does not.

use std::sync::Arc;

use loopwatch::kernel::{ExitStatus, Processes, SpawnRequest, Threads};
use loopwatch::watcher::fork_window;
use loopwatch::{ChildWatcher, EventLoop, FastChildWatcher, SafeChildWatcher};
use loopwatch_sim::testing;
use loopwatch_sim::{SimKernel, Simulation, actors};

const IDLE: usize = 1000;

/// Registers `IDLE` children that run forever and one that the test ends, then runs
/// one SIGCHLD pass between two notes in the trace; returns the number of wait calls in that pass.
fn waits_for_one_exit<W: ChildWatcher<SimKernel>>(
    seed: u64,
    make: fn(SimKernel) -> W,
    handle_sigchld: fn(&W),
) -> usize {
    let report = Simulation::new(seed).run(move |k| {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let watcher = make(k.clone());
        watcher.attach_loop(Some(event_loop.clone())).unwrap();
        let fired = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut last = None;
        {
            let _window = fork_window(&watcher);
            for _ in 0..=IDLE {
                let child = k.spawn(&SpawnRequest::new("sleep", ["100000"])).unwrap();
                let fired = fired.clone();
                watcher
                    .add_child_handler(
                        child.pid,
                        Box::new(move |_, code| {
                            assert_eq!(code, 3);
                            fired.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }),
                    )
                    .unwrap();
                last = Some(child.pid);
            }
        }
        k.end_child(last.unwrap(), ExitStatus::from_exit_code(3));
        testing::note(&k, "sigchld pass");
        handle_sigchld(&watcher);
        testing::note(&k, "sigchld pass done");
        assert_eq!(fired.load(std::sync::atomic::Ordering::SeqCst), 1);
        watcher.close().unwrap();
        event_loop.close().unwrap();
    });
    report.assert_completed("waits_for_one_exit");
    let lines = report.trace.lines();
    let note = |text: &str| {
        lines
            .iter()
            .position(|l| l.ends_with(&format!(" note {text}")))
            .unwrap_or_else(|| panic!("note {text:?} is not in the trace"))
    };
    let (start, end) = (note("sigchld pass"), note("sigchld pass done"));
    lines[start..end]
        .iter()
        .filter(|l| l.contains(" waitpid(") || l.contains(" waitid("))
        .count()
}

#[test]
fn safe_polls_every_registered_child() {
    // Goal (S-5): with 1,001 registered children and one exit, one SIGCHLD pass makes
    // one waitpid per registered child: 1,001 calls.
    let waits = waits_for_one_exit(
        1,
        SafeChildWatcher::with_kernel,
        SafeChildWatcher::handle_sigchld,
    );
    assert_eq!(waits, IDLE + 1);
}

#[test]
fn fast_reaps_in_constant_calls() {
    // Goal (F-5): with 1,001 registered children and one exit, Fast makes three wait
    // calls: a waitid(P_ALL, WNOWAIT) peek that names the child, the waitpid that reaps
    // it (under its reap fence), and a peek that finds nobody else exited.
    let waits = waits_for_one_exit(
        1,
        FastChildWatcher::with_kernel,
        FastChildWatcher::handle_sigchld,
    );
    assert_eq!(waits, 3);
}

/// A library thread spawns and waits for its own child while the watcher (attached to
/// the main thread's loop) handles a SIGCHLD pass; returns what the library saw.
fn foreign_child_fate<W: ChildWatcher<SimKernel>>(
    seed: u64,
    make: fn(SimKernel) -> W,
    handle_sigchld: fn(&W),
) -> String {
    let seen = Arc::new(std::sync::OnceLock::new());
    let slot = seen.clone();
    let report = Simulation::new(seed).run(move |k| {
        let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
        let watcher = make(k.clone());
        watcher.attach_loop(Some(event_loop.clone())).unwrap();
        let (library, lines) = actors::spawn_and_wait(
            &k,
            SpawnRequest::new("/bin/sh", ["-c", "sleep 0.001; exit 2"]),
        );
        // Let the library's child exit, then run the watcher's pass before the library
        // gets to its waitpid: the window Fast steals in.
        k.sleep(std::time::Duration::from_millis(1));
        handle_sigchld(&watcher);
        k.join_thread(library).unwrap();
        let _ = slot.set(lines.lock().unwrap().last().cloned().unwrap_or_default());
        watcher.close().unwrap();
        event_loop.close().unwrap();
    });
    report.assert_completed("foreign_child_fate");
    seen.get().cloned().unwrap_or_default()
}

use loopwatch::kernel::Clock as _;

#[test]
fn fast_steals_a_foreign_child_safe_does_not() {
    // Goal (F-5, S-6): across seeds, Fast sometimes reaps the library's child first
    // (the library then gets ECHILD), and Safe never does. Fast's pass makes three
    // calls before its reap (a peek, and its lock around the fence lookup), each a
    // point where the library may reap first: it steals in a few percent of seeds.
    let mut stolen = 0;
    for seed in 0..400 {
        let fate = foreign_child_fate(
            seed,
            FastChildWatcher::with_kernel,
            FastChildWatcher::handle_sigchld,
        );
        if fate == "wait ECHILD" {
            stolen += 1;
        } else {
            assert!(fate.starts_with("reaped"), "seed {seed}: {fate}");
        }
        let fate = foreign_child_fate(
            seed,
            SafeChildWatcher::with_kernel,
            SafeChildWatcher::handle_sigchld,
        );
        assert!(
            fate.starts_with("reaped") && fate.ends_with(" 2"),
            "seed {seed}: Safe left {fate}"
        );
    }
    assert!(stolen > 0, "Fast never stole in 400 seeds");
}
