//! Spawns and reaps `/bin/true` N times, one after the other, through the loop with the
//! chosen watcher, while K idle children (`sleep`) stay registered: a small program to
//! count the system calls a child costs, e.g.
//!
//! ```text
//! cargo build --release --example spawn_reap
//! strace -f -c -o calls.txt target/release/examples/spawn_reap safe 1000 0
//! ```
//!
//! Arguments: WATCHER (safe, fast, multi_loop, threaded, pidfd, auto), N (default 100), K
//! (default 0). It prints the number of children reaped.

use std::sync::Arc;

use loopwatch::kernel::SpawnRequest;
use loopwatch::{
    AutoChildWatcher, Error, ErrorKind, FastChildWatcher, MultiLoopChildWatcher, PidfdChildWatcher,
    Result, SafeChildWatcher, ThreadedChildWatcher, WatcherRef,
};

fn watcher(name: &str) -> Result<WatcherRef> {
    Ok(match name {
        "safe" => Arc::new(SafeChildWatcher::new()),
        "fast" => Arc::new(FastChildWatcher::new()),
        "multi_loop" => Arc::new(MultiLoopChildWatcher::new()),
        "threaded" => Arc::new(ThreadedChildWatcher::new()),
        "pidfd" => Arc::new(PidfdChildWatcher::new()),
        "auto" => Arc::new(AutoChildWatcher::new()),
        other => {
            return Err(Error::new(
                ErrorKind::ValueError,
                format!(
                    "unknown watcher {other:?}: safe, fast, multi_loop, threaded, pidfd or auto"
                ),
            ));
        }
    })
}

fn number(arg: Option<String>, default: usize) -> Result<usize> {
    match arg {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| Error::new(ErrorKind::ValueError, format!("not a count: {text:?}"))),
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let watcher = watcher(&args.next().unwrap_or_else(|| "safe".to_string()))?;
    let n = number(args.next(), 100)?;
    let k = number(args.next(), 0)?;

    let event_loop = loopwatch::new_event_loop()?;
    loopwatch::set_child_watcher(Some(watcher))?;
    loopwatch::set_event_loop(Some(event_loop.clone()))?;
    let lp = event_loop.clone();
    let reaped = event_loop.run_until_complete(async move {
        let idle = (0..k)
            .map(|_| lp.subprocess_exec(&SpawnRequest::new("sleep", ["3600"])))
            .collect::<Result<Vec<_>>>()?;
        let mut reaped = 0;
        for _ in 0..n {
            let process = lp.subprocess_exec(&SpawnRequest::new("/bin/true", [] as [&str; 0]))?;
            if process.wait().await == 0 {
                reaped += 1;
            }
        }
        for process in &idle {
            process.kill()?;
        }
        for process in idle {
            process.wait().await;
        }
        Ok::<_, Error>(reaped)
    })??;
    loopwatch::set_event_loop(None)?;
    loopwatch::set_child_watcher(None)?;
    event_loop.close()?;
    println!("{reaped} of {n} children reaped, with {k} idle children registered");
    Ok(())
}
