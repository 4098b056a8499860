//! Exit-to-callback latency per watcher on the real OS: from `kill(SIGKILL)` of an idle
//! child returning to the child's `Process::wait()` resolving in the loop (the watcher's
//! callback has run and the task waiting for it was woken). The child's death takes
//! the same time under every watcher; the rest is the watcher's path to the loop.
//!
//! Criterion reports the mean (`latency/<watcher>`, through `iter_custom`); the
//! percentiles come from a loop of their own, printed as
//! `latency <watcher>: p50 … µs, p99 … µs (N samples)`: `LOOPWATCH_LATENCY_SAMPLES`
//! samples per watcher (default 1,000; 5 under `--test`).
//!
//! `cargo bench -p loopwatch-benches --bench latency`

use std::process::ExitCode;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use loopwatch::OsKernel;
use loopwatch::kernel::Clock;
use loopwatch_benches::{Bench, Error, Watcher, idle_request, quantile};

const DEFAULT_SAMPLES: usize = 1000;

/// Starts an idle child, then times from its kill to its `wait()` resolving.
fn one_latency(bench: &Bench<OsKernel>) -> Result<Duration, Error> {
    let lp = bench.event_loop().clone();
    let request = idle_request();
    let (elapsed, code) = bench.event_loop().try_run_until_complete(async move {
        let process = lp.subprocess_exec(&request)?;
        let start = OsKernel.now();
        process.kill()?;
        let code = process.wait().await;
        Ok((OsKernel.now() - start, code))
    })?;
    if code != -9 {
        return Err(Error::Returncode {
            expected: -9,
            got: code,
        });
    }
    Ok(elapsed)
}

fn samples_wanted(test_mode: bool) -> Result<usize, Error> {
    match std::env::var("LOOPWATCH_LATENCY_SAMPLES") {
        Ok(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                Error::BadInput(format!(
                    "LOOPWATCH_LATENCY_SAMPLES: {text:?} is not a positive number"
                ))
            }),
        Err(_) if test_mode => Ok(5),
        Err(_) => Ok(DEFAULT_SAMPLES),
    }
}

fn latency(c: &mut Criterion, samples: usize) -> Result<(), Error> {
    let mut group = c.benchmark_group("latency");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(3));
    for watcher in Watcher::ALL {
        let bench = Bench::new(&OsKernel, watcher)?;
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            times.push(one_latency(&bench)?);
        }
        times.sort();
        println!(
            "latency {watcher}: p50 {:.1} µs, p99 {:.1} µs ({samples} samples)",
            quantile(&times, 0.50).unwrap_or_default().as_secs_f64() * 1e6,
            quantile(&times, 0.99).unwrap_or_default().as_secs_f64() * 1e6,
        );
        group.bench_function(BenchmarkId::from_parameter(watcher), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| one_latency(&bench).expect("a latency sample"))
                    .sum()
            })
        });
        bench.close()?;
    }
    group.finish();
    Ok(())
}

fn main() -> ExitCode {
    let test_mode = std::env::args().any(|arg| arg == "--test");
    let samples = match samples_wanted(test_mode) {
        Ok(samples) => samples,
        Err(error) => {
            eprintln!("latency: {error}");
            return ExitCode::from(2);
        }
    };
    let mut c = Criterion::default().configure_from_args();
    if let Err(error) = latency(&mut c, samples) {
        eprintln!("latency: {error}");
        return ExitCode::FAILURE;
    }
    c.final_summary();
    ExitCode::SUCCESS
}
