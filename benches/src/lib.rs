//! The workloads of loopwatch's benchmarks (`benches/`) and of its call-count test
//! (`tests/call_counts.rs`), written once for any kernel: the benchmarks time them on
//! the real OS ([`OsKernel`](loopwatch::OsKernel)), the test counts their kernel calls
//! on the simulator (`loopwatch_sim::SimKernel`).
//!
//! - [`Watcher`]: the watchers by name.
//! - [`Bench`]: a loop with a watcher, set up as code that works with any watcher sets
//!   it up (see loopwatch's "Choosing a watcher"): the loop current in the main
//!   thread, children spawned and registered by [`EventLoop::subprocess_exec`].
//!   [`Bench::spawn_reap`] spawns children and waits for them all;
//!   [`Bench::start_idle`] and [`Bench::stop_idle`] keep idle registered children
//!   around, and kill and reap them.
//! - [`limits`]: whether this machine lets one process keep K children.
//!
//! # Running
//!
//! `cargo bench -p loopwatch-benches` runs every benchmark (README: "Benchmarks");
//! `cargo bench -p loopwatch-benches -- --test` runs each once, as CI does.
//! `cargo test -p loopwatch-benches` runs the call-count test.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use loopwatch::kernel::{Kernel, Signal, SpawnRequest, WaitMode};
use loopwatch::{
    AutoChildWatcher, EventLoop, FastChildWatcher, MultiLoopChildWatcher, PidfdChildWatcher,
    Process, SafeChildWatcher, ThreadedChildWatcher, WaitidChildWatcher, WatcherRef, policy,
};

pub mod limits;

/// One of loopwatch's child watchers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Watcher {
    /// [`SafeChildWatcher`]: polls every registered child on each SIGCHLD.
    Safe,
    /// [`FastChildWatcher`]: `waitpid(-1)` on each SIGCHLD.
    Fast,
    /// [`MultiLoopChildWatcher`]: a reaper thread polls every registered child.
    MultiLoop,
    /// [`ThreadedChildWatcher`]: a waiter thread per child.
    Threaded,
    /// [`PidfdChildWatcher`]: a pidfd per child in the running loop.
    Pidfd,
    /// [`WaitidChildWatcher`]: a `waitid(WNOWAIT)` peek on each SIGCHLD, reaping only
    /// its own children.
    Waitid,
    /// [`AutoChildWatcher`]: the best rung this process has (here, the process's own
    /// pidfd).
    Auto,
}

impl Watcher {
    /// All of them, in the order of the README's tables.
    pub const ALL: [Watcher; 7] = [
        Watcher::Safe,
        Watcher::Fast,
        Watcher::MultiLoop,
        Watcher::Threaded,
        Watcher::Pidfd,
        Watcher::Waitid,
        Watcher::Auto,
    ];

    /// Whether CPython has this watcher (Waitid and Auto are loopwatch's own).
    pub fn in_cpython(self) -> bool {
        !matches!(self, Watcher::Waitid | Watcher::Auto)
    }

    /// Its name in benchmark ids and tables: `safe`, `fast`, `multi_loop`, `threaded`,
    /// `pidfd`, `waitid`, `auto`.
    pub fn name(self) -> &'static str {
        match self {
            Watcher::Safe => "safe",
            Watcher::Fast => "fast",
            Watcher::MultiLoop => "multi_loop",
            Watcher::Threaded => "threaded",
            Watcher::Pidfd => "pidfd",
            Watcher::Waitid => "waitid",
            Watcher::Auto => "auto",
        }
    }

    /// A new watcher of this kind over `kernel`.
    pub fn make<K: Kernel>(self, kernel: &K) -> WatcherRef<K> {
        let kernel = kernel.clone();
        match self {
            Watcher::Safe => Arc::new(SafeChildWatcher::with_kernel(kernel)),
            Watcher::Fast => Arc::new(FastChildWatcher::with_kernel(kernel)),
            Watcher::MultiLoop => Arc::new(MultiLoopChildWatcher::with_kernel(kernel)),
            Watcher::Threaded => Arc::new(ThreadedChildWatcher::with_kernel(kernel)),
            Watcher::Pidfd => Arc::new(PidfdChildWatcher::with_kernel(kernel)),
            Watcher::Waitid => Arc::new(WaitidChildWatcher::with_kernel(kernel)),
            Watcher::Auto => Arc::new(AutoChildWatcher::with_kernel(kernel)),
        }
    }
}

impl fmt::Display for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Watcher {
    type Err = Error;

    fn from_str(text: &str) -> Result<Watcher, Error> {
        Watcher::ALL
            .into_iter()
            .find(|w| w.name() == text)
            .ok_or_else(|| Error::BadInput(format!("unknown watcher {text:?}: expected one of safe, fast, multi_loop, threaded, pidfd, waitid, auto")))
    }
}

/// What went wrong in a workload.
#[derive(Debug)]
pub enum Error {
    /// The loop, the watcher or a spawn failed.
    Loop(loopwatch::Error),
    /// A child ended with another returncode than the workload expects.
    Returncode {
        /// What the workload expected.
        expected: i32,
        /// What the watcher reported.
        got: i32,
    },
    /// A setting (an environment variable, an argument) that cannot be used.
    BadInput(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Loop(error) => write!(f, "{error}"),
            Error::Returncode { expected, got } => {
                write!(
                    f,
                    "a child was reported with returncode {got}, expected {expected}"
                )
            }
            Error::BadInput(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl From<loopwatch::Error> for Error {
    fn from(error: loopwatch::Error) -> Error {
        Error::Loop(error)
    }
}

/// `/bin/true`: the child every spawn-and-reap workload runs.
pub fn true_request() -> SpawnRequest {
    SpawnRequest::new("/bin/true", [] as [&str; 0])
}

/// A child that waits until it is killed: `sleep 100000`.
pub fn idle_request() -> SpawnRequest {
    SpawnRequest::new("sleep", ["100000"])
}

/// A loop with a watcher, set up from the process's main thread (Safe, Fast and
/// MultiLoop need it): the watcher is the policy's, and the loop is current there, so
/// the watcher is attached to it. Close it with [`Bench::close`].
#[derive(Debug)]
pub struct Bench<K: Kernel> {
    kernel: K,
    event_loop: EventLoop<K>,
    watcher: Watcher,
}

/// Idle children registered with a [`Bench`]'s watcher, until [`Bench::stop_idle`].
#[derive(Debug)]
pub struct Idle<K: Kernel> {
    processes: Vec<Process<K>>,
}

impl<K: Kernel> Idle<K> {
    /// How many children.
    pub fn len(&self) -> usize {
        self.processes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }
}

impl<K: Kernel> Bench<K> {
    /// A new loop from the policy of `kernel`, with a new `watcher` as the policy's
    /// watcher, current in this thread, which must be the process's main thread.
    ///
    /// # Errors
    ///
    /// The policy refused the loop or the watcher (not the main thread, for the
    /// watchers that need it).
    pub fn new(kernel: &K, watcher: Watcher) -> Result<Bench<K>, Error> {
        let event_loop = policy::new_event_loop(kernel)?;
        policy::set_child_watcher(kernel, Some(watcher.make(kernel)))?;
        policy::set_event_loop(kernel, Some(event_loop.clone()))?;
        Ok(Bench {
            kernel: kernel.clone(),
            event_loop,
            watcher,
        })
    }

    /// The loop.
    pub fn event_loop(&self) -> &EventLoop<K> {
        &self.event_loop
    }

    /// The watcher's kind.
    pub fn watcher(&self) -> Watcher {
        self.watcher
    }

    /// Runs the loop until `count` children of `request`, spawned at once, have all
    /// been reaped, and checks that each ended with returncode 0.
    ///
    /// # Errors
    ///
    /// A spawn or the loop failed, or a child's returncode was not 0.
    pub fn spawn_reap(&self, request: &SpawnRequest, count: usize) -> Result<(), Error> {
        let lp = self.event_loop.clone();
        let request = request.clone();
        let codes = self.event_loop.try_run_until_complete(async move {
            let mut processes = Vec::with_capacity(count);
            for _ in 0..count {
                processes.push(lp.subprocess_exec(&request)?);
            }
            let mut codes = Vec::with_capacity(count);
            for process in &processes {
                codes.push(process.wait().await);
            }
            Ok(codes)
        })?;
        expect_all(&codes, 0)
    }

    /// Starts `count` children of [`idle_request`], registered with the watcher, and
    /// returns without waiting for them.
    ///
    /// # Errors
    ///
    /// A spawn or the loop failed: the children started so far are killed and reaped.
    pub fn start_idle(&self, count: usize) -> Result<Idle<K>, Error> {
        let lp = self.event_loop.clone();
        let request = idle_request();
        let (processes, failure) = self.event_loop.try_run_until_complete(async move {
            let mut processes = Vec::with_capacity(count);
            for _ in 0..count {
                match lp.subprocess_exec(&request) {
                    Ok(process) => processes.push(process),
                    Err(error) => return Ok((processes, Some(error))),
                }
            }
            Ok((processes, None))
        })?;
        let idle = Idle { processes };
        match failure {
            None => Ok(idle),
            Some(error) => {
                self.stop_idle(idle)?;
                Err(error.into())
            }
        }
    }

    /// Kills every idle child (all first, then waits for each) and checks that each
    /// was reported killed by SIGKILL.
    ///
    /// # Errors
    ///
    /// A kill or the loop failed, or a child was reported otherwise.
    pub fn stop_idle(&self, idle: Idle<K>) -> Result<(), Error> {
        let codes = self.event_loop.try_run_until_complete(async move {
            for process in &idle.processes {
                process.kill()?;
            }
            let mut codes = Vec::with_capacity(idle.processes.len());
            for process in &idle.processes {
                codes.push(process.wait().await);
            }
            Ok(codes)
        })?;
        expect_all(&codes, -9)
    }

    /// Runs `steps` iterations of the loop that each run one callback, which schedules
    /// the next with `call_soon` (the last stops the loop).
    ///
    /// # Errors
    ///
    /// The loop failed.
    pub fn call_soon_chain(&self, steps: usize) -> Result<(), Error> {
        fn step<K: Kernel>(lp: EventLoop<K>, left: usize) {
            if left == 0 {
                lp.stop();
                return;
            }
            let next = lp.clone();
            if lp.call_soon(move || step(next, left - 1)).is_err() {
                lp.stop();
            }
        }
        let lp = self.event_loop.clone();
        self.event_loop.call_soon(move || step(lp, steps))?;
        self.event_loop.run_forever()?;
        Ok(())
    }

    /// Runs `steps` iterations of the loop that each wait for a timer of `delay`
    /// seconds, which arms the next (the last stops the loop).
    ///
    /// # Errors
    ///
    /// The loop failed.
    pub fn timer_chain(&self, steps: usize, delay: f64) -> Result<(), Error> {
        fn step<K: Kernel>(lp: EventLoop<K>, left: usize, delay: f64) {
            if left == 0 {
                lp.stop();
                return;
            }
            let next = lp.clone();
            if lp
                .call_later(delay, move || step(next, left - 1, delay))
                .is_err()
            {
                lp.stop();
            }
        }
        let lp = self.event_loop.clone();
        self.event_loop.call_soon(move || step(lp, steps, delay))?;
        self.event_loop.run_forever()?;
        Ok(())
    }

    /// Detaches and closes the watcher and closes the loop first, then kills and reaps
    /// each idle child directly with the kernel: O(K) kernel calls, where
    /// [`Bench::stop_idle`] lets the watcher reap them, which costs Safe and MultiLoop
    /// a pass over every remaining child for each SIGCHLD, O(K²) when the exits come
    /// apart. Not for Threaded, whose waiter threads are waiting for those children.
    ///
    /// # Errors
    ///
    /// The policy or the loop refused, or a kill or wait failed.
    pub fn close_and_kill(self, idle: Idle<K>) -> Result<(), Error> {
        let kernel = self.kernel.clone();
        self.close()?;
        for process in &idle.processes {
            kernel
                .kill(process.pid(), Some(Signal::SIGKILL))
                .map_err(loopwatch::Error::from)?;
        }
        for process in &idle.processes {
            kernel
                .wait_pid(process.pid(), WaitMode::Block)
                .map_err(loopwatch::Error::from)?;
        }
        Ok(())
    }

    /// Detaches and closes the watcher and closes the loop.
    ///
    /// # Errors
    ///
    /// The policy or the loop refused.
    pub fn close(self) -> Result<(), Error> {
        policy::set_event_loop(&self.kernel, None)?;
        policy::set_child_watcher(&self.kernel, None)?;
        self.event_loop.close()?;
        Ok(())
    }
}

/// The `q`-quantile (0 < q ≤ 1) of `sorted` samples, by nearest rank: the smallest
/// sample with at least `q` of them at or below it. `None` for no samples.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn expect_all(codes: &[i32], expected: i32) -> Result<(), Error> {
    match codes.iter().find(|&&code| code != expected) {
        None => Ok(()),
        Some(&got) => Err(Error::Returncode { expected, got }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&sorted, 0.50), Some(50));
        assert_eq!(quantile(&sorted, 0.99), Some(99));
        assert_eq!(quantile(&sorted[..1], 0.99), Some(1));
        assert_eq!(quantile(&[] as &[u32], 0.5), None);
    }

    #[test]
    fn watcher_names_parse_back() {
        for watcher in Watcher::ALL {
            assert_eq!(watcher.name().parse::<Watcher>().unwrap(), watcher);
        }
        assert!(matches!("slow".parse::<Watcher>(), Err(Error::BadInput(_))));
    }

    #[test]
    fn returncodes_are_checked() {
        assert!(expect_all(&[0, 0], 0).is_ok());
        assert!(matches!(
            expect_all(&[0, 3], 0),
            Err(Error::Returncode {
                expected: 0,
                got: 3
            })
        ));
    }
}
