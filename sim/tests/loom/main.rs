//! Models checked by loom over the real loop, policy and locks, on the simulated
//! kernel driven by loom's threads (`--cfg loom`): every order of the model's threads
//! up to the preemption bound. Run them with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 cargo test -p loopwatch-sim --release --test loom`
//! (the README's "Model checking with loom"). The watchers' models run scenarios under
//! the invariant checker, in loopwatch-conformance's `loom` test binary.
#![cfg(loom)]

mod support;

mod event_loop;
mod policy;
mod sync;
