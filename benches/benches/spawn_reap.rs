//! Spawn and reap `/bin/true` through the loopwatch loop on the real OS, with each
//! watcher, one child at a time (`sequential`) and 200 at once (`batch_200`); in the
//! same group, `std::process::Command` spawn+wait and `tokio::process` on a
//! current-thread runtime, so that the ratios come from one run.
//!
//! `cargo bench -p loopwatch-benches --bench spawn_reap`

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use loopwatch::OsKernel;
use loopwatch_benches::{Bench, Watcher, true_request};

const BATCH: usize = 200;

fn std_spawn_wait(count: usize) {
    let mut children = Vec::with_capacity(count);
    for _ in 0..count {
        #[allow(
            clippy::disallowed_methods,
            reason = "std's spawn is the baseline this benchmark compares with"
        )]
        let child = std::process::Command::new("/bin/true")
            .spawn()
            .expect("spawn /bin/true");
        children.push(child);
    }
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
}

fn tokio_spawn_wait(runtime: &tokio::runtime::Runtime, count: usize) {
    runtime.block_on(async {
        let mut children = Vec::with_capacity(count);
        for _ in 0..count {
            children.push(
                tokio::process::Command::new("/bin/true")
                    .spawn()
                    .expect("spawn /bin/true"),
            );
        }
        for mut child in children {
            assert!(child.wait().await.expect("wait").success());
        }
    });
}

fn group(c: &mut Criterion, name: &str, count: usize) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(count as u64));
    group.measurement_time(Duration::from_secs(if count == 1 { 3 } else { 5 }));
    group.sample_size(if count == 1 { 100 } else { 20 });
    group.bench_function("std", |b| b.iter(|| std_spawn_wait(count)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    group.bench_function("tokio", |b| b.iter(|| tokio_spawn_wait(&runtime, count)));
    drop(runtime);
    let request = true_request();
    for watcher in Watcher::ALL {
        let bench = Bench::new(&OsKernel, watcher).expect("set up the loop and watcher");
        group.bench_function(BenchmarkId::new("loopwatch", watcher), |b| {
            b.iter(|| bench.spawn_reap(&request, count).expect("spawn and reap"))
        });
        bench.close().expect("close the loop and watcher");
    }
    group.finish();
}

fn spawn_reap(c: &mut Criterion) {
    group(c, "spawn_reap/sequential", 1);
    group(c, "spawn_reap/batch_200", BATCH);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    spawn_reap(&mut c);
    c.final_summary();
}
