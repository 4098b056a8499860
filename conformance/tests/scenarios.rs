//! Every scenario, with every watcher it lists, on loopwatch's two backends: the
//! simulator (several seeds) must give the trace the real OS gives. No harness: the
//! real-OS runs need the process's main thread. The CPython comparison is
//! `cargo loopwatch check`'s job.

use loopwatch_conformance::matrix::{self, Options, Status};

fn main() {
    let options = Options {
        seeds: loopwatch_sim::seeds_from_env(4),
        cpython: false,
        ..Options::default()
    };
    let result = matrix::check(&options, |_| {}).expect("the scenarios load");
    let (mut passed, mut failed) = (0, 0);
    for cell in &result.cells {
        match &cell.status {
            Status::Match | Status::Known { .. } => {
                passed += 1;
                println!(
                    "test {} / {} [{}] ... ok",
                    cell.scenario, cell.watcher, cell.backend
                );
            }
            Status::Skipped { reason } => {
                println!(
                    "test {} / {} [{}] ... skipped: {reason}",
                    cell.scenario, cell.watcher, cell.backend
                );
            }
            other => {
                failed += 1;
                println!(
                    "test {} / {} [{}] ... FAILED {other:?}",
                    cell.scenario, cell.watcher, cell.backend
                );
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
