//! `BlockingMutex`: the lock the loop and the watchers hold across kernel calls.

use std::sync::Arc;

use loopwatch::kernel::{Clock, Threads};
use loopwatch::sync::BlockingMutex;

use crate::support::explore;

#[test]
fn blocking_mutex_excludes_and_wakes_its_waiter() {
    // Goal: two threads each increment a counter under a BlockingMutex, with a kernel
    // call (a scheduling point) between the read and the write, and notify; the main
    // thread waits under the lock until both are in. No increment is lost and no
    // notification is missed (the run would deadlock).
    explore("blocking_mutex", |k| {
        let counter = Arc::new(BlockingMutex::new(&k, 0u32));
        let mut workers = Vec::new();
        for _ in 0..2 {
            let (counter, k2) = (counter.clone(), k.clone());
            let body = move || {
                let mut guard = counter.lock();
                let seen = *guard;
                let _ = k2.now();
                *guard = seen + 1;
                drop(guard);
                counter.notify_all();
            };
            workers.push(k.spawn_thread("worker", Box::new(body)).unwrap());
        }
        {
            let mut guard = counter.lock();
            while *guard < 2 {
                guard.wait(None);
            }
            assert_eq!(*guard, 2);
        }
        for worker in workers {
            k.join_thread(worker).unwrap();
        }
    });
}
