//! Worker threads for the runs that need no main thread: simulations and CPython
//! interpreters. Runs on the real OS stay on the calling (main) thread.
//!
//! A worker that runs simulations blocks SIGCHLD first, so that a child of a real-OS
//! run on the main thread has its SIGCHLD delivered as when no worker exists (to the
//! thread that spawned it, or a watcher's own thread), never to a worker. A worker
//! that starts interpreters keeps the signal mask it was given: a child inherits its
//! parent thread's mask, and CPython's watchers need SIGCHLD.

use std::sync::mpsc;

use loopwatch::kernel::{Signal, Signals as _};

/// A plain `std` lock: the harness's, held only to take a job or store a result.
#[allow(
    clippy::disallowed_types,
    reason = "the harness's own threads, not simulated code; never held across a kernel call"
)]
type Lock<T> = std::sync::Mutex<T>;

fn lock<T>(lock: &Lock<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The default number of simulator runs at once: the machine's CPUs.
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What worker threads do, which decides their signal mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Work {
    /// Simulations: SIGCHLD blocked.
    Simulations,
    /// Child processes (interpreters): the mask as given.
    Processes,
}

/// Runs `work` on each of `items` with up to `threads` worker threads; results in
/// the items' order.
pub(crate) fn map<I: Sync, T: Send>(
    kind: Work,
    items: &[I],
    threads: usize,
    work: impl Fn(&I) -> T + Sync,
) -> Vec<T> {
    let mut results: Vec<(usize, T)> = beside_main(
        kind,
        threads,
        |submit| {
            for index in 0..items.len() {
                submit(index, index);
            }
        },
        |index| work(&items[index]),
    );
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Runs `main` on the calling thread; it hands jobs, each with an index, to
/// `submit`, and up to `threads` worker threads run `work` on them as they come.
/// Returns each job's index and result, in no particular order.
pub(crate) fn beside_main<J: Send, T: Send>(
    kind: Work,
    threads: usize,
    main: impl FnOnce(&dyn Fn(usize, J)),
    work: impl Fn(J) -> T + Sync,
) -> Vec<(usize, T)> {
    let (sender, receiver) = mpsc::channel::<(usize, J)>();
    let receiver = Lock::new(receiver);
    let results = Lock::new(Vec::new());
    #[allow(
        clippy::disallowed_methods,
        reason = "the harness's worker threads run simulations and interpreters; nothing here is simulated"
    )]
    std::thread::scope(|scope| {
        // Owned here, so that it is dropped (and the workers end) even if `main`
        // panics.
        let sender = sender;
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                if kind == Work::Simulations {
                    let _ = loopwatch::OsKernel.block_signal(Signal::SIGCHLD);
                }
                loop {
                    let job = lock(&receiver).recv();
                    let Ok((index, job)) = job else { break };
                    let result = work(job);
                    lock(&results).push((index, result));
                }
            });
        }
        let submit = |index: usize, job: J| {
            // The workers outlive the sender, so a send cannot fail.
            let _ = sender.send((index, job));
        };
        main(&submit);
        drop(sender);
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
