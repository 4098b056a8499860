//! Checking a policy of your own: the seed's `MyEventLoopPolicy` (the default
//! behaviour, with `get_event_loop` overridden) against the policy clauses, on the
//! real OS and the simulator: one test per check and backend, on
//! `loopwatch_sim::testing`'s main-thread harness, as a `harness = false` test binary
//! of your own crate would run them.
//!
//! `cargo run -p loopwatch-conformance --example user_policy` (add `-- --list` to list
//! the tests).

use std::sync::Arc;

use loopwatch::kernel::Kernel;
use loopwatch::policy::base;
use loopwatch::{AbstractEventLoopPolicy, EventLoop, PolicyRef, PolicyState, Result};
use loopwatch_conformance::policy_suite::MakePolicy;
use loopwatch_conformance::testing::policy_tests;

/// The seed's custom policy: super().get_event_loop(), then "do something".
struct MyEventLoopPolicy<K: Kernel> {
    state: PolicyState<K>,
}

impl<K: Kernel> AbstractEventLoopPolicy<K> for MyEventLoopPolicy<K> {
    fn state(&self) -> Option<&PolicyState<K>> {
        Some(&self.state)
    }

    fn get_event_loop(&self) -> Result<EventLoop<K>> {
        let event_loop = base::get_event_loop(self)?;
        event_loop.set_debug(true);
        Ok(event_loop)
    }
}

#[derive(Clone)]
struct Maker;

impl MakePolicy for Maker {
    fn name(&self) -> String {
        "MyEventLoopPolicy".into()
    }

    fn make<K: Kernel>(&self, kernel: &K) -> PolicyRef<K> {
        Arc::new(MyEventLoopPolicy {
            state: PolicyState::new(kernel.clone()),
        })
    }
}

fn main() -> std::process::ExitCode {
    loopwatch_sim::testing::main(policy_tests(Maker, 4))
}
