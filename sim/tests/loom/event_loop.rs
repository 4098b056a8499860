//! The loop's cross-thread entry points.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loopwatch::EventLoop;
use loopwatch::kernel::Threads;
use loopwatch::zoo::Mutant;
use loopwatch_sim::SimKernel;

use crate::support::explore;

#[test]
fn call_soon_threadsafe_from_two_threads_wakes_a_sleeping_loop() {
    // Goal: two threads call call_soon_threadsafe while the loop goes to sleep in poll:
    // no wake-up is lost (the run would deadlock) and each callback runs exactly once,
    // on the loop's thread.
    explore("call_soon_threadsafe", two_producers);
}

#[test]
fn call_soon_threadsafe_model_catches_the_lost_wakeup() {
    // Goal: the model above fails when call_soon_threadsafe does not wake the loop
    // (the zoo's threadsafe-no-wake mutant).
    let caught = std::panic::catch_unwind(|| {
        explore("call_soon_threadsafe with threadsafe-no-wake", |k| {
            loopwatch::zoo::set_mutant(&k, Some(Mutant::ThreadsafeNoWake));
            two_producers(k);
        });
    });
    assert!(caught.is_err(), "the lost wake-up went unnoticed");
}

/// Two threads each call call_soon_threadsafe once; the loop runs until both callbacks
/// have run.
fn two_producers(k: SimKernel) {
    let event_loop = EventLoop::with_kernel(k.clone()).unwrap();
    let ran = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let loop_thread = k.current_thread();
    let mut producers = Vec::new();
    for t in 0..2 {
        let (lp, ran, k2) = (event_loop.clone(), ran.clone(), k.clone());
        let body = move || {
            let stopper = lp.clone();
            lp.call_soon_threadsafe(move || {
                assert_eq!(k2.current_thread(), loop_thread);
                ran[t].fetch_add(1, Ordering::SeqCst);
                if ran.iter().all(|count| count.load(Ordering::SeqCst) > 0) {
                    stopper.stop();
                }
            })
            .unwrap();
        };
        producers.push(k.spawn_thread("producer", Box::new(body)).unwrap());
    }
    event_loop.run_forever().unwrap();
    for producer in producers {
        k.join_thread(producer).unwrap();
    }
    for count in ran.iter() {
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
    event_loop.close().unwrap();
}
