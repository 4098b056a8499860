//! Simulated kernel calls per second, on one simulated thread and on four that switch.
//!
//! `cargo run --release -p loopwatch-sim --example speed [CALLS]`
//!
//! A call here is a `pipe` write and read on a non-blocking pipe, each a full
//! scheduling point. With four threads the random scheduler picks any of them at each
//! point, so about three calls in four switch threads.

use std::time::Duration;

use loopwatch::kernel::{Fds, Threads};
use loopwatch_sim::{SimKernel, Simulation};

fn calls_per_thread(k: &SimKernel, calls: u64) {
    let (read, write) = k.pipe().expect("pipe");
    k.set_nonblocking(read, true).expect("nonblocking");
    let mut buf = [0u8; 1];
    for _ in 0..calls / 2 {
        k.write(write, b"x").expect("write");
        k.read(read, &mut buf).expect("read");
    }
    k.close(read).expect("close");
    k.close(write).expect("close");
}

fn measure(threads: u64, calls: u64) -> (f64, u64) {
    #[allow(
        clippy::disallowed_methods,
        reason = "measuring wall time is this program's job"
    )]
    let start = std::time::Instant::now();
    let mut simulation = Simulation::new(1).keep_trace(false);
    simulation.config_mut().steps_max = u64::MAX;
    let report = simulation.run(move |k| {
        let mut handles = Vec::new();
        for t in 1..threads {
            let k2 = k.clone();
            let body = move || calls_per_thread(&k2, calls);
            handles.push(
                k.spawn_thread(&format!("t{t}"), Box::new(body))
                    .expect("spawn"),
            );
        }
        calls_per_thread(&k, calls);
        for handle in handles {
            k.join_thread(handle).expect("join");
        }
    });
    report.assert_completed("speed");
    let elapsed: Duration = start.elapsed();
    let total = threads * calls;
    (total as f64 / elapsed.as_secs_f64(), report.steps)
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    for threads in [1, 4] {
        let (rate, steps) = measure(threads, calls);
        println!(
            "{threads} thread(s): {:.0} simulated calls/s ({} calls, {steps} scheduling steps)",
            rate,
            threads * calls
        );
    }
}
