//! Checking a watcher of your own: `CountingWatcher` wraps Pidfd and counts the exits it
//! reports. It follows Pidfd's contract, so the suite runs Pidfd's scenarios with it,
//! on the real OS and the simulator, and compares its traces with Pidfd's.
//!
//! `cargo run -p loopwatch-conformance --example user_watcher`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loopwatch::kernel::{Kernel, Pid};
use loopwatch::watcher::ChildCallback;
use loopwatch::{ChildWatcher, EventLoop, PidfdChildWatcher, Result, WatcherRef};
use loopwatch_conformance::matrix::{Options, Status};
use loopwatch_conformance::scenario::WatcherName;
use loopwatch_conformance::zoo::{MakeWatcher, check_watcher};

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

fn main() {
    let matrix = check_watcher(&Maker, &Options::default()).expect("scenarios load");
    for cell in &matrix.cells {
        println!("{} [{}]: {:?}", cell.scenario, cell.backend, cell.status);
    }
    let failed = matrix
        .cells
        .iter()
        .filter(|c| !matches!(c.status, Status::Match))
        .count();
    println!("{} checks, {failed} failed", matrix.cells.len());
    std::process::exit(i32::from(failed > 0));
}
