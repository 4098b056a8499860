//! An ordinary `#[test]` (on one of cargo's worker threads): the function under test
//! runs on 100 simulator seeds and once on the real OS, with ThreadedChildWatcher,
//! which works from any thread.

use std::sync::Arc;

use loopwatch::kernel::Kernel;
use loopwatch::{ChildWatcher, EventLoop, ThreadedChildWatcher, policy};
use loopwatch_sim::testing::{self, Body};

struct JobsReportTheirCodes;

impl Body for JobsReportTheirCodes {
    fn run<K: Kernel>(&self, kernel: &K) {
        let event_loop = EventLoop::with_kernel(kernel.clone()).unwrap();
        let watcher = Arc::new(ThreadedChildWatcher::with_kernel(kernel.clone()));
        policy::set_child_watcher(kernel, Some(watcher.clone())).unwrap();
        let codes = my_jobs::run_jobs(&event_loop, &["exit 3", "sleep 0.1; exit 1", "kill -9 $$"]);
        policy::set_child_watcher(kernel, None).unwrap();
        watcher.close().unwrap();
        event_loop.close().unwrap();
        assert_eq!(codes.unwrap(), [3, 1, -9]);
    }
}

#[test]
fn jobs_report_their_codes() {
    testing::for_seeds_and_os(100, JobsReportTheirCodes);
}
