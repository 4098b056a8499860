//! The seed's `MyEventLoopPolicy`: "subclass" the default policy and override
//! `get_event_loop`, calling the default behaviour where Python calls `super()`.
//!
//! ```python
//! class MyEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
//!     def get_event_loop(self):
//!         loop = super().get_event_loop()
//!         # Do something with loop ...
//!         return loop
//!
//! asyncio.set_event_loop_policy(MyEventLoopPolicy())
//! ```
//!
//! Run it with `cargo run --example custom_policy`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loopwatch::policy::base;
use loopwatch::{AbstractEventLoopPolicy, EventLoop, PolicyState, Result};

/// The default policy's state plus what the override does with each loop: it counts
/// the calls and turns on debug mode.
#[derive(Debug)]
pub(crate) struct MyEventLoopPolicy {
    state: PolicyState,
    /// How many times `get_event_loop` ran through the override.
    pub(crate) calls: AtomicUsize,
}

impl MyEventLoopPolicy {
    /// A new policy over the real OS.
    pub(crate) fn new() -> MyEventLoopPolicy {
        MyEventLoopPolicy {
            state: PolicyState::new(loopwatch::OsKernel),
            calls: AtomicUsize::new(0),
        }
    }
}

impl AbstractEventLoopPolicy for MyEventLoopPolicy {
    fn state(&self) -> Option<&PolicyState> {
        Some(&self.state)
    }

    fn get_event_loop(&self) -> Result<EventLoop> {
        // super().get_event_loop()
        let event_loop = base::get_event_loop(self)?;
        // Do something with loop ...
        self.calls.fetch_add(1, Ordering::SeqCst);
        event_loop.set_debug(true);
        Ok(event_loop)
    }
}

#[allow(
    dead_code,
    reason = "the main-thread tests include this file for the policy"
)]
fn main() -> Result<()> {
    // Under the default policy: the main thread gets a loop on first use.
    let event_loop = loopwatch::get_event_loop()?;
    let answer = event_loop.run_until_complete(async { 6 * 7 })?;
    println!(
        "default policy: loop {event_loop:?} ran a future to {answer}; debug={}",
        event_loop.get_debug()
    );
    event_loop.close()?;
    loopwatch::set_event_loop(None)?;

    let policy = Arc::new(MyEventLoopPolicy::new());
    loopwatch::set_event_loop_policy(Some(policy.clone()));
    let event_loop = loopwatch::get_event_loop()?;
    let again = loopwatch::get_event_loop()?;
    let stopper = event_loop.clone();
    event_loop.call_later(0.01, move || stopper.stop())?;
    event_loop.run_forever()?;
    println!(
        "MyEventLoopPolicy: same loop twice: {}; override ran {} times; debug={}",
        event_loop == again,
        policy.calls.load(Ordering::SeqCst),
        event_loop.get_debug()
    );
    event_loop.close()?;
    loopwatch::set_event_loop_policy(None);
    Ok(())
}
