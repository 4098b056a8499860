//! Checking a watcher of your own: `CountingWatcher` wraps Pidfd and counts the exits it
//! reports. It follows Pidfd's contract, so the suite runs Pidfd's scenarios with it,
//! on the real OS and the simulator, and compares its traces with Pidfd's: one test
//! per scenario and backend, on `loopwatch_sim::testing`'s main-thread harness, as a
//! `harness = false` test binary of your own crate would run them.
//!
//! `cargo run -p loopwatch-conformance --example user_watcher` (add `-- --list` to list
//! the tests, `-- two-children` to run those whose name contains it).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loopwatch::kernel::{Kernel, Pid};
use loopwatch::watcher::ChildCallback;
use loopwatch::{ChildWatcher, EventLoop, PidfdChildWatcher, Result, WatcherRef};
use loopwatch_conformance::matrix::Options;
use loopwatch_conformance::scenario::WatcherName;
use loopwatch_conformance::testing::watcher_tests;
use loopwatch_conformance::zoo::MakeWatcher;

/// Pidfd, counting the exits it reports.
#[derive(Debug)]
struct CountingWatcher<K: Kernel> {
    inner: PidfdChildWatcher<K>,
    exits: Arc<AtomicUsize>,
}

impl<K: Kernel> ChildWatcher<K> for CountingWatcher<K> {
    // A wrapper: the fork window and the attached loop are Pidfd's, forwarded by the
    // trait's provided methods.
    fn inner(&self) -> Option<&dyn ChildWatcher<K>> {
        Some(&self.inner)
    }
    fn add_child_handler(&self, pid: Pid, callback: ChildCallback) -> Result<()> {
        let exits = self.exits.clone();
        self.inner.add_child_handler(
            pid,
            Box::new(move |pid, code| {
                exits.fetch_add(1, Ordering::SeqCst);
                callback(pid, code);
            }),
        )
    }
    fn remove_child_handler(&self, pid: Pid) -> bool {
        self.inner.remove_child_handler(pid)
    }
    fn attach_loop(&self, event_loop: Option<EventLoop<K>>) -> Result<()> {
        self.inner.attach_loop(event_loop)
    }
    fn close(&self) -> Result<()> {
        self.inner.close()
    }
    fn is_active(&self) -> bool {
        self.inner.is_active()
    }
}

#[derive(Clone)]
struct Maker;

impl MakeWatcher for Maker {
    fn name(&self) -> String {
        "counting-pidfd".into()
    }
    fn like(&self) -> WatcherName {
        WatcherName::Pidfd
    }
    fn make<K: Kernel>(&self, kernel: &K) -> WatcherRef<K> {
        Arc::new(CountingWatcher {
            inner: PidfdChildWatcher::with_kernel(kernel.clone()),
            exits: Arc::default(),
        })
    }
}

fn main() -> std::process::ExitCode {
    loopwatch_sim::testing::main(watcher_tests(Maker, &Options::default()))
}
