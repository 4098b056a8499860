//! What the crate's own tests share.

use std::io::{Read, Seek};
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::OsKernel;
use crate::kernel::{Clock, Fd, Processes, Signal, SpawnRequest, Stdio, WaitMode, WaitStatus};

/// Runs test `test` (its libtest path) alone in a fresh copy of this test binary, with
/// `var=marker` in its environment so the copy runs the test's body, and asserts that
/// it passed. Used by tests of process-wide state (children, fds, dispositions),
/// which in the shared test process would see other tests' children and fds.
///
/// The output goes to an unlinked file rather than a pipe: reading a pipe to its end
/// would hang, not fail, if a copy of its write end leaked. A copy still running
/// after `limit` is killed and the test fails.
pub(crate) fn rerun_alone(test: &str, var: &str, marker: &str, limit: Duration) {
    let k = OsKernel;
    let exe = std::env::current_exe().expect("path of the test binary");
    let path = std::env::temp_dir().join(format!("loopwatch-{}-{marker}.log", k.getpid()));
    let mut log = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    std::fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    let mut request = SpawnRequest::new(exe, [test, "--exact", "--test-threads=1"]);
    request.env.push((var.into(), marker.into()));
    request.stdin = Stdio::Null;
    request.stdout = Stdio::Fd(Fd(log.as_raw_fd()));
    request.stderr = Stdio::Fd(Fd(log.as_raw_fd()));
    let pid = k
        .spawn(&request)
        .unwrap_or_else(|e| panic!("spawn {test}: {e}"))
        .pid;
    let step = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    let status = loop {
        match k.wait_pid(pid, WaitMode::NoHang) {
            Ok(WaitStatus::Terminated(_, status)) => break status,
            Ok(WaitStatus::StillAlive) if waited >= limit => {
                let _ = k.kill(pid, Some(Signal::SIGKILL));
                let _ = k.wait_pid(pid, WaitMode::Block);
                panic!("{test} in its own process did not end within {limit:?}");
            }
            Ok(WaitStatus::StillAlive) => {
                k.sleep(step);
                waited += step;
            }
            Err(errno) => panic!("wait_pid({pid}) for {test}: {errno}"),
        }
    };
    let mut output = String::new();
    log.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| log.read_to_string(&mut output))
        .expect("read the output");
    assert!(
        status.returncode() == 0 && output.contains("test result: ok. 1 passed"),
        "{test} in its own process gave returncode {}:\n{output}",
        status.returncode()
    );
}

/// A test's libtest path: its module path without the crate name, then its name.
pub(crate) fn test_path(module: &str, name: &str) -> String {
    let module = module.split_once("::").map_or(module, |(_, path)| path);
    format!("{module}::{name}")
}
