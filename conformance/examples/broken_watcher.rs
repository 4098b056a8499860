//! A watcher with a bug, checked by the suite: it reports a child killed by SIGTERM as
//! 143 (the shell's 128 + 15) instead of asyncio's -15. The suite fails and says which
//! scenario caught it and which spec clauses that scenario checks.
//!
//! `cargo run -p loopwatch-conformance --example broken_watcher` (exits 1).

use loopwatch_conformance::matrix::Options;
use loopwatch_conformance::scenario::WatcherName;
use loopwatch_conformance::zoo::{Bug, ZooMaker, check_watcher};

fn main() {
    let maker = ZooMaker {
        bug: Bug::ShellReturncode,
        like: WatcherName::Safe,
    };
    let matrix = match check_watcher(&maker, &Options::default()) {
        Ok(matrix) => matrix,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };
    let mut failed = 0;
    for cell in &matrix.cells {
        if let Some(failure) = cell.failure() {
            failed += 1;
            println!("{failure}");
        }
    }
    println!("{} checks, {failed} failed", matrix.cells.len());
    std::process::exit(i32::from(failed > 0));
}
