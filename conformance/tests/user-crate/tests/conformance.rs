//! The crate's own watcher and policy, checked by loopwatch's conformance suite: every
//! scenario of the watcher it follows, and every policy check, on the real OS and the
//! simulator, one test each (`cargo test --test conformance -- --list`).

use std::process::ExitCode;
use std::sync::Arc;

use loopwatch::kernel::{Kernel, Pid};
use loopwatch::watcher::ChildCallback;
use loopwatch::{
    AbstractEventLoopPolicy, ChildWatcher, EventLoop, PolicyRef, PolicyState, Result,
    ThreadedChildWatcher, WatcherRef,
};
use loopwatch_conformance::matrix::Options;
use loopwatch_conformance::policy_suite::MakePolicy;
use loopwatch_conformance::scenario::WatcherName;
use loopwatch_conformance::testing::{policy_tests, watcher_tests};
use loopwatch_conformance::zoo::MakeWatcher;

/// The crate's watcher: ThreadedChildWatcher behind a type of its own.
#[derive(Debug)]
struct JobsWatcher<K: Kernel> {
    inner: ThreadedChildWatcher<K>,
}

impl<K: Kernel> ChildWatcher<K> for JobsWatcher<K> {
    fn inner(&self) -> Option<&dyn ChildWatcher<K>> {
        Some(&self.inner)
    }
    fn add_child_handler(&self, pid: Pid, callback: ChildCallback) -> Result<()> {
        self.inner.add_child_handler(pid, callback)
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
struct Watchers;

impl MakeWatcher for Watchers {
    fn name(&self) -> String {
        "jobs-watcher".into()
    }
    fn like(&self) -> WatcherName {
        WatcherName::Threaded
    }
    fn make<K: Kernel>(&self, kernel: &K) -> WatcherRef<K> {
        Arc::new(JobsWatcher {
            inner: ThreadedChildWatcher::with_kernel(kernel.clone()),
        })
    }
}

/// The default policy's behaviour, with debug mode on for every loop it makes.
struct JobsPolicy<K: Kernel> {
    state: PolicyState<K>,
}

impl<K: Kernel> AbstractEventLoopPolicy<K> for JobsPolicy<K> {
    fn state(&self) -> Option<&PolicyState<K>> {
        Some(&self.state)
    }
    fn new_event_loop(&self) -> Result<EventLoop<K>> {
        let event_loop = loopwatch::policy::base::new_event_loop(self)?;
        event_loop.set_debug(true);
        Ok(event_loop)
    }
}

#[derive(Clone)]
struct Policies;

impl MakePolicy for Policies {
    fn name(&self) -> String {
        "JobsPolicy".into()
    }
    fn make<K: Kernel>(&self, kernel: &K) -> PolicyRef<K> {
        Arc::new(JobsPolicy {
            state: PolicyState::new(kernel.clone()),
        })
    }
}

fn main() -> ExitCode {
    let mut tests = watcher_tests(Watchers, &Options::default());
    tests.extend(policy_tests(Policies, 4));
    loopwatch_sim::testing::main(tests)
}
