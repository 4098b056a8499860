//! The process-wide policy slot and the per-thread running-loop slots.

use std::sync::Arc;

use loopwatch::kernel::Threads;
use loopwatch::policy::{self, get_running_loop};
use loopwatch::{ErrorKind, EventLoop};

use crate::support::explore;

#[test]
fn get_event_loop_on_two_threads_racing_a_policy_reset() {
    // Goal (P-1, P-3, C-1, D-2): get_event_loop on the main thread and on another
    // thread while a third resets the policy with set_event_loop_policy(None): the
    // main thread always gets a loop, the other thread the RuntimeError of a thread
    // with no loop set, and afterwards the slot holds one policy, the same object on
    // each call.
    explore("policy_reset_race", |k| {
        let (k1, k2) = (k.clone(), k.clone());
        let other = k
            .spawn_thread(
                "other",
                Box::new(move || {
                    let error = policy::get_event_loop(&k1).unwrap_err();
                    assert_eq!(error.kind(), ErrorKind::RuntimeError);
                }),
            )
            .unwrap();
        let reset = k
            .spawn_thread(
                "reset",
                Box::new(move || policy::set_event_loop_policy(&k2, None)),
            )
            .unwrap();
        let first = policy::get_event_loop(&k).unwrap();
        k.join_thread(other).unwrap();
        k.join_thread(reset).unwrap();
        let policy = policy::get_event_loop_policy(&k);
        assert!(Arc::ptr_eq(&policy, &policy::get_event_loop_policy(&k)));
        let last = policy::get_event_loop(&k).unwrap();
        if last != first {
            first.close().unwrap();
        }
        last.close().unwrap();
    });
}

#[test]
fn running_loop_slots_are_per_thread() {
    // Goal (D-1, P-6): two threads each run a loop of their own at the same time; in
    // each, get_running_loop gives that thread's loop and never the other's, and
    // outside a running loop it is a RuntimeError.
    explore("running_loop_slots", |k| {
        let k1 = k.clone();
        let other = k
            .spawn_thread("other", Box::new(move || run_checking_slot(&k1)))
            .unwrap();
        run_checking_slot(&k);
        k.join_thread(other).unwrap();
    });
}

/// Runs a new loop until a callback has checked that it is this thread's running loop.
fn run_checking_slot(k: &loopwatch_sim::SimKernel) {
    let kind = get_running_loop(k).map(|_| ()).unwrap_err().kind();
    assert_eq!(kind, ErrorKind::RuntimeError);
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let (lp, k2) = (event_loop.clone(), k.clone());
    event_loop
        .call_soon(move || {
            assert!(get_running_loop(&k2).unwrap() == lp);
            lp.stop();
        })
        .unwrap();
    event_loop.run_forever().unwrap();
    assert!(get_running_loop(k).is_err());
    event_loop.close().unwrap();
}
