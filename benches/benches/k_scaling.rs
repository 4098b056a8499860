//! The cost of one reap (spawn and reap `/bin/true` through the loop) with K idle
//! registered children, per watcher, on the real OS; `std` (spawn+wait beside the
//! same K idle children, which it does not watch) in the same group is the baseline.
//!
//! K is 0, 100, 1,000 and 5,000, less what this machine's limits do not allow (see
//! `loopwatch_benches::limits`: each K needs 2K + 1,024 processes, open files and
//! pids); `LOOPWATCH_BENCH_K=0,100` chooses others. The idle children are `sleep`
//! processes, killed and reaped after each watcher's run: none is left behind.
//!
//! `cargo bench -p loopwatch-benches --bench k_scaling`

use std::process::ExitCode;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use loopwatch::OsKernel;
use loopwatch_benches::limits::{self, Limits};
use loopwatch_benches::{Bench, Error, Watcher, true_request};

const DEFAULT_KS: [u64; 4] = [0, 100, 1000, 5000];

fn std_spawn_wait() {
    #[allow(
        clippy::disallowed_methods,
        reason = "std's spawn is the baseline this benchmark compares with"
    )]
    let mut child = std::process::Command::new("/bin/true")
        .spawn()
        .expect("spawn /bin/true");
    assert!(child.wait().expect("wait").success());
}

fn k_scaling(c: &mut Criterion, ks: &[u64]) -> Result<(), Error> {
    let request = true_request();
    for &k in ks {
        let mut group = c.benchmark_group(format!("k_scaling/k_{k}"));
        group.sample_size(20);
        group.measurement_time(Duration::from_secs(3));
        group.warm_up_time(Duration::from_secs(1));
        for watcher in Watcher::ALL {
            let bench = Bench::new(&OsKernel, watcher)?;
            let idle = bench.start_idle(k as usize)?;
            if watcher == Watcher::Safe {
                // The baseline, beside the same number of idle children.
                group.bench_function("std", |b| b.iter(std_spawn_wait));
            }
            group.bench_function(BenchmarkId::new("loopwatch", watcher), |b| {
                b.iter(|| bench.spawn_reap(&request, 1).expect("spawn and reap"))
            });
            bench.stop_idle(idle)?;
            bench.close()?;
        }
        group.finish();
    }
    Ok(())
}

fn main() -> ExitCode {
    let ks = match Limits::current().and_then(|limits| limits::ks(&DEFAULT_KS, &limits)) {
        Ok(ks) => ks,
        Err(error) => {
            eprintln!("k_scaling: {error}");
            return ExitCode::from(2);
        }
    };
    let mut c = Criterion::default().configure_from_args();
    if let Err(error) = k_scaling(&mut c, &ks) {
        eprintln!("k_scaling: {error}");
        return ExitCode::FAILURE;
    }
    c.final_summary();
    ExitCode::SUCCESS
}
