//! The kernel contract for threads, locks and the clock (`Threads`, `Monitor` through
//! `loopwatch::sync::BlockingMutex`, `Clock` of `loopwatch::kernel`): each behaviour
//! the trait documentation promises, written once as a body generic over the kernel
//! and run on the real OS (`OsKernel`) and on the simulator (`SimKernel`, 16 seeds).
//! Processes are in `kernel_contract_processes.rs`, fds, pollers and signals in
//! `kernel_contract_fds_signals.rs`; that a thread the kernel did not start is not the
//! main thread only the real OS shows (`src/sys/unix/tests.rs`).
//!
//! A `harness = false` binary on `loopwatch_sim::testing`: each test runs on the
//! process's main thread, one at a time, and checks that it leaves no thread behind.
//! A panic in a thread of the real OS is printed as it happens: two tests make one on
//! purpose.
//!
//! `cargo test -p loopwatch-sim --test kernel_contract_threads [NAME]`;
//! `LOOPWATCH_SEEDS=N` sets how many seeds each simulator arm runs, `LOOPWATCH_SEED=S`
//! runs one seed.

use std::any::Any;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use loopwatch::kernel::Kernel;
use loopwatch::sync::BlockingMutex;
use loopwatch_sim::SimKernel;
use loopwatch_sim::testing::{self, Body, Log};

/// How long a body waits for something that should happen at once before it fails
/// instead of hanging. Generous: a loaded machine must not fail a test.
const PATIENCE: Duration = Duration::from_secs(30);

loopwatch_sim::bodies!(
    threads_have_names_identities_and_report_panics,
    blocking_mutex_excludes_waits_and_times_out,
    blocking_mutex_wakes_every_waiter_among_lockers,
    clock_is_monotonic_and_sleep_lasts,
);

impl Body for threads_have_names_identities_and_report_panics {
    // Goal: the main thread is the main thread and named MainThread; threads get their
    // name and a fresh, stable identity from the kernel and are not the main thread;
    // a panic's payload reaches join_thread.
    fn run<K: Kernel>(&self, k: &K) {
        let me = k.current_thread();
        assert_eq!(k.current_thread(), me, "a thread's id changed");
        assert!(k.is_main_thread(), "the test runs on the main thread");
        assert_eq!(k.current_thread_name(), "MainThread");

        let mut ids = Vec::new();
        for _ in 0..2 {
            let log = Log::new();
            let (k2, report) = (k.clone(), log.clone());
            let handle = k
                .spawn_thread(
                    "lw-test",
                    Box::new(move || {
                        let id = k2.current_thread();
                        report.push((
                            k2.current_thread_name(),
                            k2.is_main_thread(),
                            id,
                            k2.current_thread(),
                        ));
                    }),
                )
                .expect("spawn_thread");
            assert!(k.join_thread(handle).is_ok());
            let [(name, main, id, again)] = <[_; 1]>::try_from(log.take())
                .unwrap_or_else(|all| panic!("one report expected: {all:?}"));
            assert_eq!(name, "lw-test");
            assert!(!main);
            assert_eq!(id, again);
            assert_ne!(id, me);
            ids.push(id);
        }
        assert_ne!(ids[0], ids[1], "two threads share an id");

        let handle = k
            .spawn_thread("lw-panic", Box::new(|| panic!("lw-test panic")))
            .expect("spawn_thread");
        let payload = k
            .join_thread(handle)
            .expect_err("a panicking thread joined Ok");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"lw-test panic"));
    }
}

/// What the waiter of [`blocking_mutex_excludes_waits_and_times_out`] and the main
/// thread share.
#[derive(Debug, Default)]
struct Handshake {
    /// The waiter holds the lock and is about to wait.
    waiting: bool,
    /// Set by the main thread before it notifies.
    flag: bool,
}

impl Body for blocking_mutex_excludes_waits_and_times_out {
    // Goal: BlockingMutex over the kernel's Monitor excludes, wakes waiters on
    // notify_all, times out without one, and is released by a panic with the data as
    // it was set.
    fn run<K: Kernel>(&self, k: &K) {
        // Every lock is a scheduling point on the simulator, so a few hundred rounds
        // interleave the two threads there as thoroughly as the OS's ten thousand (and
        // sixteen seeds of those would take long).
        let rounds: u64 = if (k as &dyn Any).is::<SimKernel>() {
            500
        } else {
            10_000
        };
        let counter = Arc::new(BlockingMutex::new(k, 0u64));
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let counter = Arc::clone(&counter);
                k.spawn_thread(
                    &format!("lw-count-{i}"),
                    Box::new(move || {
                        for _ in 0..rounds {
                            *counter.lock() += 1;
                        }
                    }),
                )
                .expect("spawn_thread")
            })
            .collect();
        for handle in handles {
            assert!(k.join_thread(handle).is_ok());
        }
        assert_eq!(*counter.lock(), 2 * rounds);

        // The waiter says it waits while holding the lock, so our notify comes after
        // it has started waiting or before it looks at the flag: either way it wakes.
        // A lost notify times out after PATIENCE, and the test fails instead of hanging.
        let shared = Arc::new(BlockingMutex::new(k, Handshake::default()));
        let outcome = Log::new();
        let waiter = {
            let (shared, outcome) = (Arc::clone(&shared), outcome.clone());
            k.spawn_thread(
                "lw-waiter",
                Box::new(move || {
                    let mut guard = shared.lock();
                    guard.waiting = true;
                    shared.notify_all();
                    while !guard.flag {
                        if !guard.wait(Some(PATIENCE)) {
                            break;
                        }
                    }
                    outcome.push(guard.flag);
                }),
            )
            .expect("spawn_thread")
        };
        {
            let mut guard = shared.lock();
            while !guard.waiting {
                assert!(guard.wait(Some(PATIENCE)), "the waiter did not start");
            }
            guard.flag = true;
        }
        shared.notify_all();
        assert!(k.join_thread(waiter).is_ok());
        assert_eq!(outcome.take(), [true], "the waiter did not wake");

        let mut guard = shared.lock();
        assert!(
            !guard.wait(Some(Duration::from_millis(10))),
            "woken without notify"
        );
        assert!(guard.flag, "the data changed under a held lock");
        drop(guard);

        // A panic releases the lock and leaves the data as it was set.
        let value = Arc::new(BlockingMutex::new(k, 0u32));
        let handle = {
            let value = Arc::clone(&value);
            k.spawn_thread(
                "lw-panic-holder",
                Box::new(move || {
                    let mut guard = value.lock();
                    *guard = 7;
                    panic!("lw-test panic under the lock");
                }),
            )
            .expect("spawn_thread")
        };
        assert!(k.join_thread(handle).is_err());
        assert_eq!(*value.lock(), 7);
    }
}

/// What the threads of [`blocking_mutex_wakes_every_waiter_among_lockers`] share.
#[derive(Debug, Default)]
struct Gathering {
    /// Waiters holding the lock and about to wait.
    waiting: usize,
    /// Set by the main thread before it notifies.
    go: bool,
    /// Increments by the lockers.
    count: u64,
}

impl Body for blocking_mutex_wakes_every_waiter_among_lockers {
    // Goal: several waiters at once, while other threads queue to take the lock, are
    // all woken by one notify_all, and no locker is left waiting for the lock: the
    // monitor notifies only when someone waits, so its count of waiters must be right
    // with more than one of each.
    fn run<K: Kernel>(&self, k: &K) {
        const WAITERS: usize = 3;
        let rounds: u64 = if (k as &dyn Any).is::<SimKernel>() {
            200
        } else {
            5_000
        };
        let shared = Arc::new(BlockingMutex::new(k, Gathering::default()));
        let woken = Log::new();
        let mut handles = Vec::new();
        for i in 0..WAITERS {
            let (shared, woken) = (Arc::clone(&shared), woken.clone());
            let body = move || {
                let mut guard = shared.lock();
                guard.waiting += 1;
                shared.notify_all();
                while !guard.go {
                    if !guard.wait(Some(PATIENCE)) {
                        break;
                    }
                }
                woken.push(guard.go);
            };
            handles.push(
                k.spawn_thread(&format!("lw-waiter-{i}"), Box::new(body))
                    .expect("spawn_thread"),
            );
        }
        for i in 0..2 {
            let shared = Arc::clone(&shared);
            let body = move || {
                for _ in 0..rounds {
                    shared.lock().count += 1;
                }
            };
            handles.push(
                k.spawn_thread(&format!("lw-locker-{i}"), Box::new(body))
                    .expect("spawn_thread"),
            );
        }
        {
            let mut guard = shared.lock();
            while guard.waiting < WAITERS {
                assert!(guard.wait(Some(PATIENCE)), "the waiters did not start");
            }
            guard.go = true;
        }
        shared.notify_all();
        for handle in handles {
            assert!(k.join_thread(handle).is_ok());
        }
        assert_eq!(woken.take(), [true; WAITERS], "a waiter was not woken");
        assert_eq!(shared.lock().count, 2 * rounds);
    }
}

impl Body for clock_is_monotonic_and_sleep_lasts {
    // Goal: now() never goes backwards, and sleep lasts at least as long as asked (a
    // lower bound only: it may last longer on a loaded machine).
    fn run<K: Kernel>(&self, k: &K) {
        let mut last = k.now();
        for _ in 0..1000 {
            let now = k.now();
            assert!(now >= last, "now() went back from {last:?} to {now:?}");
            last = now;
        }
        let before = k.now();
        k.sleep(Duration::from_millis(1));
        let after = k.now();
        assert!(
            after >= before + Duration::from_millis(1),
            "slept 1 ms from {before:?} but now() is {after:?}"
        );
    }
}

fn main() -> ExitCode {
    testing::main(tests())
}
