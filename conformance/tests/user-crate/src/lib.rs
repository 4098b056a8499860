//! A user's code: run shell jobs at once on an event loop and collect their exit codes,
//! in the order given. Generic over the kernel, so it runs on the real OS and on the
//! simulator alike.

use loopwatch::kernel::{Kernel, SpawnRequest};
use loopwatch::{EventLoop, Result};

/// Starts every script with `/bin/sh -c`, then waits for them all; the child watcher is
/// the policy's (`loopwatch::policy::set_child_watcher` chooses it).
pub fn run_jobs<K: Kernel>(event_loop: &EventLoop<K>, scripts: &[&str]) -> Result<Vec<i32>> {
    let lp = event_loop.clone();
    let scripts: Vec<String> = scripts.iter().map(|s| s.to_string()).collect();
    event_loop.try_run_until_complete(async move {
        let mut processes = Vec::new();
        for script in &scripts {
            processes.push(lp.subprocess_exec(&SpawnRequest::new("/bin/sh", ["-c", script]))?);
        }
        let mut codes = Vec::new();
        for process in &processes {
            codes.push(process.wait().await);
        }
        Ok(codes)
    })
}
