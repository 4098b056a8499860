//! Foreign actors: code other than loopwatch's living in the simulated process, as a
//! real program has (a library that runs its own subprocesses, a supervisor that reaps
//! every child, a handler somebody else installed). Each runs as a simulated thread,
//! so the scheduler interleaves it with the code under test.

use loopwatch::kernel::{
    Disposition, Errno, Processes, Signal, Signals, SpawnRequest, Threads, WaitMode, WaitStatus,
};

use crate::kernel::{SimJoinHandle, SimKernel};
use crate::model::ForeignHandler;

/// What a foreign actor saw, for the test to check. A plain `std` lock: it is never
/// held across a kernel call.
#[allow(clippy::disallowed_types, reason = "never held across a kernel call")]
pub type ActorResult = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

fn record(result: &ActorResult, line: String) {
    result
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(line);
}

/// A thread that spawns its own child and waits for it with `waitpid(pid)`, as
/// `subprocess.run` would. It records `reaped <pid> <returncode>`, or the errno it got
/// (`ECHILD` when someone stole its child).
pub fn spawn_and_wait(kernel: &SimKernel, request: SpawnRequest) -> (SimJoinHandle, ActorResult) {
    let result = ActorResult::default();
    let (k, out) = (kernel.clone(), result.clone());
    let body = move || {
        let child = match k.spawn(&request) {
            Ok(child) => child,
            Err(errno) => return record(&out, format!("spawn {errno:?}")),
        };
        record(&out, format!("spawned {}", child.pid));
        loop {
            match k.wait_pid(child.pid, WaitMode::Block) {
                Ok(WaitStatus::Terminated(pid, status)) => {
                    return record(&out, format!("reaped {pid} {}", status.returncode()));
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => continue,
                Err(errno) => return record(&out, format!("wait {errno:?}")),
            }
        }
    };
    let handle = kernel
        .spawn_thread("foreign-spawner", Box::new(body))
        .expect("simulated threads can always be spawned");
    (handle, result)
}

/// A thread that reaps any child with `waitpid(-1, WNOHANG)` `rounds` times, sleeping
/// `pause` between rounds: the stealing half of a careless supervisor. It records
/// `stole <pid> <returncode>` for each child it reaped.
pub fn reap_any(
    kernel: &SimKernel,
    rounds: u32,
    pause: std::time::Duration,
) -> (SimJoinHandle, ActorResult) {
    use loopwatch::kernel::Clock;
    let result = ActorResult::default();
    let (k, out) = (kernel.clone(), result.clone());
    let body = move || {
        for _ in 0..rounds {
            while let Ok(WaitStatus::Terminated(pid, status)) = k.wait_any(WaitMode::NoHang) {
                record(&out, format!("stole {pid} {}", status.returncode()));
            }
            k.sleep(pause);
        }
    };
    let handle = kernel
        .spawn_thread("foreign-reaper", Box::new(body))
        .expect("simulated threads can always be spawned");
    (handle, result)
}

/// Foreign code installs its own SIGCHLD handler, replacing whatever was there.
pub fn install_sigchld_handler(kernel: &SimKernel, handler: ForeignHandler) -> Disposition {
    kernel.install_foreign_handler(Signal::SIGCHLD, handler)
}

/// Foreign code sets SIGCHLD to `SIG_IGN`, so the kernel reaps every child itself.
pub fn ignore_sigchld(kernel: &SimKernel) -> Result<Disposition, Errno> {
    kernel.set_disposition(Signal::SIGCHLD, Disposition::Ignore)
}
