//! The event loop on the real OS: `call_soon` throughput, `call_soon_threadsafe` from
//! 1 to 4 threads into one running loop, and timers (`call_later`).
//!
//! `cargo bench -p loopwatch-benches --bench event_loop`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput};
use loopwatch::{EventLoop, OsKernel};

/// Callbacks per measured iteration (divisible by 1 to 4 threads).
const CALLBACKS: usize = 1200;

/// A callback that counts, and stops the loop when it is the `total`th.
fn counting(
    event_loop: &EventLoop,
    counter: &Arc<AtomicUsize>,
    total: usize,
) -> impl FnOnce() + Send + 'static {
    let lp = event_loop.clone();
    let counter = counter.clone();
    move || {
        if counter.fetch_add(1, Ordering::Relaxed) + 1 == total {
            lp.stop();
        }
    }
}

/// Queues `CALLBACKS` callbacks with `call_soon` and runs the loop until they ran.
fn call_soon(event_loop: &EventLoop) {
    let counter = Arc::new(AtomicUsize::new(0));
    for _ in 0..CALLBACKS {
        event_loop
            .call_soon(counting(event_loop, &counter, CALLBACKS))
            .expect("call_soon");
    }
    event_loop.run_forever().expect("run_forever");
    assert_eq!(counter.load(Ordering::Relaxed), CALLBACKS);
}

/// `threads` threads each queue `CALLBACKS / threads` callbacks with
/// `call_soon_threadsafe` while the loop runs in this thread, until all have run.
fn call_soon_threadsafe(event_loop: &EventLoop, threads: usize) {
    let per_thread = CALLBACKS / threads;
    let total = per_thread * threads;
    let counter = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let counter = counter.clone();
            scope.spawn(move || {
                for _ in 0..per_thread {
                    event_loop
                        .call_soon_threadsafe(counting(event_loop, &counter, total))
                        .expect("call_soon_threadsafe");
                }
            });
        }
        // The last callback stops the loop; a loop that ran out of callbacks before
        // the threads were done keeps running, so run until all have run.
        while counter.load(Ordering::Relaxed) < total {
            event_loop.run_forever().expect("run_forever");
        }
    });
}

/// Arms `CALLBACKS` timers with `call_later(0)` and runs the loop until all fired.
fn timers(event_loop: &EventLoop) {
    let counter = Arc::new(AtomicUsize::new(0));
    for _ in 0..CALLBACKS {
        event_loop
            .call_later(0.0, counting(event_loop, &counter, CALLBACKS))
            .expect("call_later");
    }
    event_loop.run_forever().expect("run_forever");
    assert_eq!(counter.load(Ordering::Relaxed), CALLBACKS);
}

fn event_loop(c: &mut Criterion) {
    let lp = EventLoop::with_kernel(OsKernel).expect("a loop");
    let mut group = c.benchmark_group("event_loop");
    group.throughput(Throughput::Elements(CALLBACKS as u64));
    group.bench_function("call_soon", |b| b.iter(|| call_soon(&lp)));
    for threads in 1..=4 {
        group.bench_function(BenchmarkId::new("call_soon_threadsafe", threads), |b| {
            b.iter(|| call_soon_threadsafe(&lp, threads))
        });
    }
    group.bench_function("call_later_0", |b| b.iter(|| timers(&lp)));
    group.finish();
    lp.close().expect("close");
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    event_loop(&mut c);
    c.final_summary();
}
