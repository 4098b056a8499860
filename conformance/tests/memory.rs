//! Reliability finding 5: a simulation must give back all its memory when it ends.
//!
//! Memory is counted exactly: this test binary's global allocator keeps a tally of the
//! bytes live on the heap, and each check compares the tally after a warm-up with the
//! tally after many more runs. A run that leaks even one small allocation grows the
//! tally by that much times the number of runs; a run that leaks nothing leaves it
//! where it was (a few once-only allocations, such as `tracing`'s callsite registry,
//! happen during the warm-up). Coroutine stacks are mapped outside the heap, so each
//! check also asserts that no simulated thread was abandoned with its stack.
//!
//! On the main-thread harness (`loopwatch_sim::testing`): the checks run one after
//! another on the main thread, so no other test allocates while one counts, and
//! `--list` and filters work. `LOOPWATCH_MEMORY_RUNS` sets the number of runs per
//! check (default 100,000 simulations in all).

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::ExitCode;
use std::sync::atomic::{AtomicIsize, Ordering};

use loopwatch::kernel::{Clock, Fds, SpawnRequest, Stdio, Threads};
use loopwatch::policy;
use loopwatch_conformance::explore;
use loopwatch_conformance::scenario::{self, Scenario, WatcherName};
use loopwatch_sim::testing::Test;
use loopwatch_sim::{SimKernel, Simulation};

/// The system allocator, with a count of the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments, so `System`'s
// guarantees carry over; the tally is a side effect that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Growth of the heap tally over all measured runs that still counts as flat: far
/// below one leaked byte per run, far above the few once-only allocations a warm-up
/// may not have reached.
const FLAT_BYTES: isize = 64 * 1024;

/// Runs `one(i)` `warmup` times, then `runs` more, and fails if the heap grew.
fn check_flat(warmup: u64, runs: u64, mut one: impl FnMut(u64) -> usize) -> Result<(), String> {
    let mut abandoned = 0;
    for i in 0..warmup {
        abandoned += one(i);
    }
    let before = LIVE.load(Ordering::Relaxed);
    for i in warmup..warmup + runs {
        abandoned += one(i);
    }
    let grown = LIVE.load(Ordering::Relaxed) - before;
    if grown <= FLAT_BYTES && abandoned == 0 {
        return Ok(());
    }
    Err(format!(
        "{runs} runs after {warmup}: the heap grew by {grown} bytes ({:.1} per run; at most \
         {FLAT_BYTES} in all counts as flat); {abandoned} threads abandoned with their stacks",
        grown as f64 / runs as f64,
    ))
}

/// The shape that leaked: the policy's loop and watcher, a subprocess, and nothing
/// closed by hand, so the process-wide policy holds the loop when the run ends.
fn policy_run(seed: u64) -> usize {
    let report = Simulation::new(seed).keep_trace(false).run(|k: SimKernel| {
        let event_loop = policy::get_event_loop(&k).unwrap();
        let watcher = policy::get_child_watcher(&k).unwrap();
        assert!(watcher.attached_loop() == Some(event_loop.clone()));
        let lp = event_loop.clone();
        let code = event_loop
            .run_until_complete(async move {
                let mut request = SpawnRequest::new("/bin/sh", ["-c", "exit 3"]);
                request.stdout = Stdio::Null;
                let process = lp.subprocess_exec(&request)?;
                Ok::<_, loopwatch::Error>(process.wait().await)
            })
            .unwrap()
            .unwrap();
        assert_eq!(code, 3);
    });
    report.assert_completed("memory policy_run");
    report.threads_abandoned
}

/// A thread still blocked when the main thread returns: the run abandons it, and
/// must still free its stack and what it holds (here a kernel handle, which holds the
/// whole simulated world).
fn abandoned_thread_run(seed: u64) -> usize {
    let report = Simulation::new(seed).keep_trace(false).run(|k: SimKernel| {
        let (read, write) = k.pipe().unwrap();
        let k2 = k.clone();
        let _reader = k
            .spawn_thread(
                "blocked-reader",
                Box::new(move || {
                    let mut buf = [0u8; 1];
                    let _ = k2.read(read, &mut buf);
                }),
            )
            .unwrap();
        // The reader runs and blocks before the main thread wakes and returns.
        k.sleep(std::time::Duration::from_secs(1));
        let _ = write;
    });
    report.assert_completed("memory abandoned_thread_run");
    assert_eq!(report.threads_abandoned, 1, "the reader is still blocked");
    0
}

fn main() -> ExitCode {
    let runs: u64 = std::env::var("LOOPWATCH_MEMORY_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    loopwatch_sim::testing::main([
        Test::new("finding_05_policy_loop_and_subprocess", move || {
            check_flat(200, runs, policy_run)
        }),
        Test::new("finding_05_abandoned_thread", move || {
            check_flat(200, runs / 10, abandoned_thread_run)
        }),
        // Explore's runs: every scenario with every watcher in turn, under faults.
        Test::new("finding_05_explore_runs_every_watcher", move || {
            let scenarios = scenario::builtin().map_err(|e| e.to_string())?;
            let cases: Vec<(Scenario, WatcherName)> = scenarios
                .iter()
                .flat_map(|s| s.all_watchers().into_iter().map(move |w| (s.clone(), w)))
                .collect();
            let faults = [explore::Fault::Eintr, explore::Fault::Spurious];
            check_flat(2 * cases.len() as u64, runs, |i| {
                let (scenario, watcher) = &cases[(i % cases.len() as u64) as usize];
                let (_, report) = explore::run_seed(scenario, *watcher, i, &faults);
                report.threads_abandoned
            })
        }),
    ])
}
