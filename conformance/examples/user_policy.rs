//! Checking a policy of your own: the seed's `MyEventLoopPolicy` (the default
//! behaviour, with `get_event_loop` overridden) against the policy clauses, on the
//! real OS and the simulator.
//!
//! `cargo run -p loopwatch-conformance --example user_policy`

use std::sync::Arc;

use loopwatch::kernel::Kernel;
use loopwatch::policy::base;
use loopwatch::{AbstractEventLoopPolicy, EventLoop, PolicyRef, PolicyState, Result};
use loopwatch_conformance::matrix::Status;
use loopwatch_conformance::policy_suite::{MakePolicy, check_policy};

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

fn main() {
    let cells = check_policy(&Maker, 4);
    let mut failed = 0;
    for cell in &cells {
        let ok = matches!(cell.status, Status::Match);
        failed += usize::from(!ok);
        println!(
            "{} ({}) [{}]: {}",
            cell.scenario,
            cell.clauses.join(", "),
            cell.backend,
            if ok {
                "ok".to_string()
            } else {
                format!("{:?}", cell.status)
            }
        );
    }
    println!("{} checks, {failed} failed", cells.len());
    std::process::exit(i32::from(failed > 0));
}
