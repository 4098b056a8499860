//! Testing your own process code with loopwatch: one body for both kernels, seed
//! sweeps with a replay command that works in your crate, a main-thread test harness,
//! a leak account and a capture of loopwatch's warnings.
//!
//! # Which tool for which test
//!
//! - **A body generic over the kernel**, run on the real OS and on the simulator:
//!   implement [`Body`] (or write one with [`body!`](crate::body!)). In an ordinary
//!   `#[test]`, [`for_seeds_and_os`] runs it once on [`OsKernel`](loopwatch::OsKernel)
//!   and on N simulator seeds; in a [`Harness`] binary, [`Test::both`] registers the
//!   two trials `name [os]` and `name [sim]`.
//! - **Simulator only** (pid reuse, injected faults, a deadlock): [`for_seeds`] in an
//!   ordinary `#[test]`, or [`Test::sim`] in a harness binary.
//! - **Code that needs the process's main thread** (SafeChildWatcher and
//!   FastChildWatcher attach to the main thread's loop, signal handlers, the main
//!   thread's automatic loop): cargo's own harness runs tests on worker threads, so
//!   put them in a test binary with `harness = false` built on [`Harness`]: it runs
//!   each test on the main thread, one at a time, and understands the usual
//!   `cargo test` arguments (`--list`, filters, `--exact`, `--skip`, `--ignored`,
//!   `--format terse`), so IDEs and nextest find the tests.
//!
//! # Seeds and replay
//!
//! A sweep runs seeds `0..n`; `LOOPWATCH_SEEDS=N` runs N seeds instead and
//! `LOOPWATCH_SEED=S` runs seed S alone. A failing sweep prints one report: the first
//! failing seed, what went wrong, the last steps of its trace, how many other seeds
//! failed (they run on only to be counted, and their panics are not printed), and a
//! command that replays the first one in the crate the test lives in, e.g.
//!
//! ```text
//! LOOPWATCH_SEED=5 cargo test -p my-crate --test my_tests my_test -- --exact
//! ```
//!
//! # A harness binary
//!
//! In `Cargo.toml`:
//!
//! ```toml
//! [[test]]
//! name = "main_thread"
//! harness = false
//! ```
//!
//! and in `tests/main_thread.rs`:
//!
//! ```no_run
//! use loopwatch::kernel::{Kernel, Processes};
//! use loopwatch_sim::testing::{self, Body, Test};
//!
//! /// Goal: a child's exit code reaches its parent, on both kernels.
//! struct ExitCode3;
//!
//! impl Body for ExitCode3 {
//!     fn run<K: Kernel>(&self, kernel: &K) {
//!         let pid = testing::spawn_sh(kernel, "exit 3");
//!         assert_eq!(testing::reap(kernel, pid), 3);
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     testing::main([
//!         Test::both("exit_code", ExitCode3).check_leaks(),
//!         Test::new("runs_on_main_thread", || {
//!             use loopwatch::kernel::Threads;
//!             if loopwatch::OsKernel.is_main_thread() {
//!                 Ok(())
//!             } else {
//!                 Err("not on the main thread")
//!             }
//!         }),
//!     ])
//! }
//! ```
//!
//! `cargo test --test main_thread -- --list` then prints
//!
//! ```text
//! exit_code [os]: test
//! exit_code [sim]: test
//! runs_on_main_thread: test
//! ```
//!
//! # The rest
//!
//! - [`Resources`] and [`LeakAccount`]: children, fds and threads before and after a
//!   body (from `/proc` on the real OS, from the [`Report`](crate::Report) on the
//!   simulator); [`Test::check_leaks`] and [`Sweep::check_leaks`] switch the check on.
//! - [`Capture`]: the `tracing` events a body logs (loopwatch logs asyncio's warnings
//!   on target `"asyncio"`), to assert on them.
//! - [`sh`], [`spawn_sh`], [`reap`], [`reap_status`], [`note`], [`Log`] and [`yield_now`]: the small
//!   helpers every process test writes; [`drain`], [`read_to_end`] and [`write_all`]
//!   for pipes; [`fd_count`] and [`wait_until`] for what a body checks or waits for on
//!   either kernel; [`Cleanup`] and [`undo_inherited_ignores`] so that a test on the
//!   real OS leaves the process as it found it.

mod capture;
mod harness;
mod helpers;
mod leaks;
mod quiet;
mod sweep;

pub use capture::{Capture, Logged};
pub use harness::{Harness, Test, main};
pub use helpers::{
    Cleanup, Log, drain, fd_count, job_events_after, note, pidfd_unavailable, read_to_end, reap,
    reap_status, sh, spawn_sh, undo_inherited_ignores, wait_until, write_all, yield_now,
};
pub use leaks::{LeakAccount, Resources};
pub use sweep::{
    Sweep, SweepFailure, Swept, completed, for_seeds, for_seeds_and_os, replay_command, run_on_os,
};

/// A test body written once and run on either kernel: the real OS
/// ([`OsKernel`](loopwatch::OsKernel)) or the simulator ([`SimKernel`](crate::SimKernel)).
/// A failure is a panic (`assert!`, `unwrap`).
///
/// ```
/// use loopwatch::kernel::{Kernel, Processes};
/// use loopwatch_sim::testing::{self, Body};
///
/// /// Goal: `exit 7` in a shell is returncode 7.
/// struct ExitSeven;
///
/// impl Body for ExitSeven {
///     fn run<K: Kernel>(&self, kernel: &K) {
///         let pid = testing::spawn_sh(kernel, "exit 7");
///         assert_eq!(testing::reap(kernel, pid), 7);
///     }
/// }
///
/// testing::for_seeds_and_os(4, ExitSeven);
/// ```
pub trait Body: Send + Sync + 'static {
    /// Runs the body on `kernel`.
    fn run<K: loopwatch::kernel::Kernel>(&self, kernel: &K);
}

#[doc(hidden)]
pub use loopwatch::kernel::Kernel as __Kernel;

/// A [`Body`](crate::testing::Body) from closure-like syntax, for bodies that capture nothing:
/// `body!(|k| { … })` gives a value whose `run` is the block, generic over the
/// kernel `k`.
///
/// ```
/// use loopwatch::kernel::Fds;
/// use loopwatch_sim::{body, testing};
///
/// testing::for_seeds_and_os(
///     4,
///     body!(|k| {
///         let (read, write) = k.pipe().unwrap();
///         assert_eq!(k.write(write, b"hi").unwrap(), 2);
///         let mut buf = [0u8; 2];
///         assert_eq!(k.read(read, &mut buf).unwrap(), 2);
///         k.close(read).unwrap();
///         k.close(write).unwrap();
///     }),
/// );
/// ```
#[macro_export]
macro_rules! body {
    (|$kernel:ident| $body:block) => {{
        struct ClosureBody;
        impl $crate::testing::Body for ClosureBody {
            fn run<K: $crate::testing::__Kernel>(&self, $kernel: &K) $body
        }
        ClosureBody
    }};
}

/// Declares a unit struct for each name, to implement [`Body`](crate::testing::Body)
/// on, and `fn tests() -> Vec<Test>`, which registers each as
/// `Test::both(name, Name).check_leaks()`: the usual shape of a harness binary whose
/// bodies all run on both kernels and must leave nothing behind.
///
/// ```no_run
/// use loopwatch::kernel::{Fds, Kernel};
/// use loopwatch_sim::testing::{self, Body};
///
/// loopwatch_sim::bodies!(pipe_round_trip);
///
/// impl Body for pipe_round_trip {
///     fn run<K: Kernel>(&self, k: &K) {
///         let (read, write) = k.pipe().unwrap();
///         k.write(write, b"x").unwrap();
///         let mut buf = [0u8; 1];
///         assert_eq!(k.read(read, &mut buf), Ok(1));
///         k.close(read).unwrap();
///         k.close(write).unwrap();
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     testing::main(tests())
/// }
/// ```
#[macro_export]
macro_rules! bodies {
    ($($name:ident),* $(,)?) => {
        $(
            #[allow(non_camel_case_types)]
            #[derive(Clone, Copy, Debug)]
            struct $name;
        )*
        fn tests() -> ::std::vec::Vec<$crate::testing::Test> {
            ::std::vec![$(
                $crate::testing::Test::both(::std::stringify!($name), $name).check_leaks()
            ),*]
        }
    };
}
