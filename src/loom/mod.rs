//! The synchronisation shim: short critical sections that never span a kernel call use
//! these types, which are `std`'s normally and loom's under `--cfg loom`, so that loom
//! can explore the thread-shared parts (callback queues, wake flags) of the loop.
//! Anything held across a kernel call uses [`BlockingMutex`](crate::sync::BlockingMutex).

#[cfg(not(loom))]
mod std_impl;
#[cfg(not(loom))]
pub(crate) use std_impl::*;

#[cfg(loom)]
mod loom_impl;
#[cfg(loom)]
pub(crate) use loom_impl::*;
