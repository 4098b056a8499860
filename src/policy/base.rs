//! The default policy's method bodies (CPython's `BaseDefaultEventLoopPolicy`), callable
//! from an override where Python would write `super().method()`.
//!
//! Each takes the policy as `&P` and calls the other methods through it, so overrides
//! are honoured: `get_event_loop` creates with `policy.set_event_loop(policy.new_event_loop())`.

use std::sync::Arc;

use super::{AbstractEventLoopPolicy, WatcherRef};
use crate::error::{Error, ErrorKind, Result};
use crate::event_loop::EventLoop;
use crate::kernel::{Kernel, ThreadId};

/// A-1's `NotImplementedError`, for a method that `policy` neither overrides nor can
/// run by default (it has no [`state`](AbstractEventLoopPolicy::state)). CPython's
/// abstract class gives no message; this one names the method and says what to do.
/// Conformance compares the class only.
fn not_implemented(method: &str) -> Error {
    Error::new(
        ErrorKind::NotImplementedError,
        format!(
            "AbstractEventLoopPolicy.{method}: the policy neither overrides it nor returns \
             a PolicyState from state(), which would give the default policy's behaviour"
        ),
    )
}

/// The default `get_event_loop` (C-2, C-3).
pub fn get_event_loop<K, P>(policy: &P) -> Result<EventLoop<K>>
where
    K: Kernel,
    P: AbstractEventLoopPolicy<K> + ?Sized,
{
    let state = policy
        .state()
        .ok_or_else(|| not_implemented("get_event_loop"))?;
    let kernel = state.kernel();
    let create = state.with_local(|local| {
        local.event_loop.is_none() && !local.set_called && kernel.is_main_thread()
    });
    if create {
        policy.set_event_loop(Some(policy.new_event_loop()?))?;
    }
    state
        .with_local(|local| local.event_loop.clone())
        .ok_or_else(|| {
            Error::runtime(format!(
                "There is no current event loop in thread '{}'.",
                kernel.current_thread_name()
            ))
        })
}

/// The default `set_event_loop` (C-4, C-5, D-5): marks the thread as set, stores,
/// and from the main thread attaches an existing child watcher to the new loop
/// (`None` detaches it). It never creates a watcher.
pub fn set_event_loop<K, P>(policy: &P, event_loop: Option<EventLoop<K>>) -> Result<()>
where
    K: Kernel,
    P: AbstractEventLoopPolicy<K> + ?Sized,
{
    let state = policy
        .state()
        .ok_or_else(|| not_implemented("set_event_loop"))?;
    let old = state.with_local(|local| {
        local.set_called = true;
        std::mem::replace(&mut local.event_loop, event_loop.clone())
    });
    // Dropped outside the lock: it may be the last handle of a loop.
    drop(old);
    if state.kernel().is_main_thread() {
        let watcher = state.watcher.lock().clone();
        if let Some(watcher) = watcher {
            watcher.attach_loop(event_loop)?;
        }
    }
    Ok(())
}

/// The default `get_child_watcher` (D-1, D-2, D-3): create the default watcher once
/// and, in the main thread, attach it to the main thread's current loop.
///
/// The watcher is stored before it is attached, and no lock of the policy is held
/// while the factory runs or the watcher attaches: attaching may run child callbacks
/// (Safe reports at once the children that exited while it was detached), and a
/// callback that asks for the watcher gets it, as in CPython, whose `_watcher` is set
/// before `attach_loop` runs. If attaching fails, the watcher is not kept.
///
/// # Errors
///
/// The watcher's `attach_loop` error; `RuntimeError` if the factory itself asks for
/// the watcher it is building.
pub fn get_child_watcher<K, P>(policy: &P) -> Result<WatcherRef<K>>
where
    K: Kernel,
    P: AbstractEventLoopPolicy<K> + ?Sized,
{
    let state = policy
        .state()
        .ok_or_else(|| not_implemented("get_child_watcher"))?;
    if let Some(watcher) = state.current_watcher() {
        return Ok(watcher);
    }
    let kernel = state.kernel();
    let me = kernel.current_thread();
    if *state.creator.lock() == Some(me) {
        return Err(Error::runtime(
            "get_child_watcher() called by the child watcher factory it is running",
        ));
    }
    let watcher = {
        let _creation = state.creation.lock();
        // Created by another thread while this one waited.
        if let Some(watcher) = state.current_watcher() {
            return Ok(watcher);
        }
        /// Forgets the creator however the factory ends, a panic included.
        struct Creating<'a>(&'a crate::loom::sync::Mutex<Option<ThreadId>>);
        impl Drop for Creating<'_> {
            fn drop(&mut self) {
                *self.0.lock() = None;
            }
        }
        *state.creator.lock() = Some(me);
        let creating = Creating(&state.creator);
        let watcher = (state.watcher_factory)(kernel);
        drop(creating);
        *state.watcher.lock() = Some(watcher.clone());
        watcher
    };
    if kernel.is_main_thread() {
        let current = state.with_local(|local| local.event_loop.clone());
        if let Err(error) = watcher.attach_loop(current) {
            let removed = {
                let mut slot = state.watcher.lock();
                if slot.as_ref().is_some_and(|w| Arc::ptr_eq(w, &watcher)) {
                    slot.take()
                } else {
                    None
                }
            };
            drop(removed);
            return Err(error);
        }
    }
    Ok(watcher)
}

/// The default `set_child_watcher` (D-4): close the old watcher, store the new one
/// without attaching it.
pub fn set_child_watcher<K, P>(policy: &P, watcher: Option<WatcherRef<K>>) -> Result<()>
where
    K: Kernel,
    P: AbstractEventLoopPolicy<K> + ?Sized,
{
    let state = policy
        .state()
        .ok_or_else(|| not_implemented("set_child_watcher"))?;
    let old = std::mem::replace(&mut *state.watcher.lock(), watcher);
    if let Some(old) = old {
        old.close()?;
    }
    Ok(())
}

/// The default `new_event_loop` (C-8): a new loop over the policy's kernel.
pub fn new_event_loop<K, P>(policy: &P) -> Result<EventLoop<K>>
where
    K: Kernel,
    P: AbstractEventLoopPolicy<K> + ?Sized,
{
    let state = policy
        .state()
        .ok_or_else(|| not_implemented("new_event_loop"))?;
    EventLoop::with_kernel(state.kernel().clone())
}
