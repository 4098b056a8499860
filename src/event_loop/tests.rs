//! Unit tests that read the loop's private state; every behaviour seen through the
//! public API is tested on both kernels in `sim/tests/event_loop*.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

#[test]
fn many_cancelled_timers_are_pruned() {
    // Goal: cancelling most of many timers does not keep them (or stall the loop);
    // the survivors still fire. Needs the private timer heap, to count what is kept.
    let event_loop = EventLoop::new().expect("a loop can be created");
    let fired = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..1000 {
        let fired = fired.clone();
        let handle = event_loop
            .call_later(if i % 10 == 0 { 0.0 } else { 3600.0 }, move || {
                fired.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        handles.push(handle);
    }
    for (i, handle) in handles.iter().enumerate() {
        if i % 10 != 0 {
            handle.cancel();
        }
    }
    let stopper = event_loop.clone();
    event_loop.call_soon(move || stopper.stop()).unwrap();
    event_loop.run_forever().unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 100);
    assert!(event_loop.inner.state.lock().timers.len() < 900);
    event_loop.close().unwrap();
}
