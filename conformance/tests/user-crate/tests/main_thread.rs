//! Tests that need the process's main thread, on loopwatch_sim's harness
//! (`harness = false` in Cargo.toml): SafeChildWatcher, the default policy's
//! watcher, attached to the main thread's loop.

use std::process::ExitCode;

use loopwatch::kernel::Kernel;
use loopwatch::policy;
use loopwatch_sim::testing::{self, Body, Test};

/// The default policy's watcher (SafeChildWatcher) reports each job's code.
struct WithSafe;

impl Body for WithSafe {
    fn run<K: Kernel>(&self, kernel: &K) {
        let event_loop = policy::new_event_loop(kernel).unwrap();
        policy::set_event_loop(kernel, Some(event_loop.clone())).unwrap();
        let watcher = policy::get_child_watcher(kernel).unwrap();
        assert!(watcher.type_name().contains("SafeChildWatcher"));
        let codes = my_jobs::run_jobs(&event_loop, &["exit 0", "exit 7"]).unwrap();
        policy::set_child_watcher(kernel, None).unwrap();
        policy::set_event_loop(kernel, None).unwrap();
        event_loop.close().unwrap();
        assert_eq!(codes, [0, 7]);
    }
}

/// A bug that only some interleavings show, switched on by MY_JOBS_BUG=1: the job
/// that ends first is taken to be the first one started.
struct FirstToEndIsFirst;

impl Body for FirstToEndIsFirst {
    fn run<K: Kernel>(&self, kernel: &K) {
        use loopwatch::kernel::{WaitMode, WaitStatus};
        let first = testing::spawn_sh(kernel, "exit 1");
        let second = testing::spawn_sh(kernel, "exit 2");
        let ended = match kernel.wait_any(WaitMode::Block) {
            Ok(WaitStatus::Terminated(pid, _)) => pid,
            other => panic!("wait_any gave {other:?}"),
        };
        testing::reap(kernel, if ended == first { second } else { first });
        if std::env::var_os("MY_JOBS_BUG").is_some() {
            assert_eq!(ended, first, "the first job started ended first");
        }
    }
}

fn main() -> ExitCode {
    testing::main([
        Test::both("jobs_with_safe", WithSafe).check_leaks(),
        Test::both("first_to_end_is_first", FirstToEndIsFirst)
            .skip_os("which of two children that exit at once is reaped first is up to the OS")
            .seeds(64),
    ])
}
