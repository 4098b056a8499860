//! The kernel contract for processes (`Processes` of `loopwatch::kernel`): each
//! behaviour the trait documentation promises, written once as a body generic over the
//! kernel and run on the real OS (`OsKernel`) and on the simulator (`SimKernel`, 16
//! seeds). Spawning, waiting, peeking, signalling and pidfds; pipes and streams as a
//! child sees them. Fds, pollers and signals are in `kernel_contract_fds_signals.rs`,
//! threads, locks and the clock in `kernel_contract_threads.rs`; what only the real OS
//! can show (close-on-exec flags, `/proc` paths, files and directories) stays in
//! `src/sys/unix/tests.rs`.
//!
//! A `harness = false` binary on `loopwatch_sim::testing`: each test runs on the
//! process's main thread, one at a time, so "any child" waits and SIGCHLD's disposition
//! belong to the test that runs. Every test checks that it leaves no child, fd or
//! thread behind; on the real OS a failing test still gives back what it held
//! (`testing::Cleanup`).
//!
//! `cargo test -p loopwatch-sim --test kernel_contract_processes [NAME]`;
//! `LOOPWATCH_SEEDS=N` sets how many seeds each simulator arm runs, `LOOPWATCH_SEED=S`
//! runs one seed.

use std::process::ExitCode;
use std::time::Duration;

use loopwatch::kernel::{
    Disposition, Errno, Event, Fd, Interest, JobStatus, Kernel, Pid, Poller, Signal, SpawnRequest,
    Stdio, Token, WaitMode, WaitStatus, WaitTarget,
};
use loopwatch_sim::testing::{
    self, Body, Cleanup, Test, drain, fd_count, read_to_end, reap_status, sh,
};

/// How long a body waits for something that should happen at once before it fails
/// instead of hanging. Generous: a loaded machine must not fail a test.
const PATIENCE: Duration = Duration::from_secs(30);

/// A descriptor number far above `RLIMIT_NOFILE`: never open.
const NEVER_OPEN: Fd = Fd(i32::MAX);

/// Declares the unit structs of the bodies; their names are the tests' names.
macro_rules! bodies {
    ($($name:ident),* $(,)?) => {
        $(
            #[allow(non_camel_case_types)]
            #[derive(Clone, Copy)]
            struct $name;
        )*
    };
}

/// The test of body `$name` on both kernels, with a leak check.
macro_rules! both {
    ($name:ident) => {
        Test::both(stringify!($name), $name).check_leaks()
    };
}

bodies!(
    wait_pid_reaps_a_zombie_exactly_once,
    returncodes_follow_the_r1_table,
    wait_any_and_peek_any_find_terminated_children,
    pids_below_one_are_refused,
    spawn_failure_leaves_no_child_and_no_fd,
    spawn_plumbs_pipes_null_and_fds,
    spawn_passes_arguments_and_environment_to_a_script,
    spawn_passes_arguments_environment_and_cwd,
    pidfd_polls_readable_on_exit_and_signals_only_its_process,
    spawn_with_a_pidfd_returns_the_childs_pidfd,
    ignored_sigchld_makes_the_kernel_reap_children,
    job_waits_report_stops_and_continues_once,
);

fn tests() -> Vec<Test> {
    vec![
        both!(wait_pid_reaps_a_zombie_exactly_once),
        both!(returncodes_follow_the_r1_table),
        both!(wait_any_and_peek_any_find_terminated_children),
        both!(pids_below_one_are_refused),
        both!(spawn_failure_leaves_no_child_and_no_fd),
        both!(spawn_plumbs_pipes_null_and_fds),
        both!(spawn_passes_arguments_and_environment_to_a_script),
        both!(spawn_passes_arguments_environment_and_cwd).skip_sim(
            "the simulator's shell has no `printf`, `$1` or `$(pwd)`, and no `env` program \
             (see loopwatch_sim::program): a simulated child's working directory shows only \
             in a registered program's Invocation::cwd; arguments and environment are \
             checked on both kernels by spawn_passes_arguments_and_environment_to_a_script",
        ),
        both!(pidfd_polls_readable_on_exit_and_signals_only_its_process),
        both!(spawn_with_a_pidfd_returns_the_childs_pidfd),
        both!(ignored_sigchld_makes_the_kernel_reap_children),
        both!(job_waits_report_stops_and_continues_once),
    ]
}

/// A child that reads one line of its stdin, then exits with `code`: until its stdin
/// closes it is certainly alive.
fn reading_child(code: u8) -> SpawnRequest {
    let mut request = sh(&format!("read -r line; exit {code}"));
    request.stdin = Stdio::Pipe;
    request
}

impl Body for wait_pid_reaps_a_zombie_exactly_once {
    // Goal: a child stays a zombie until waited for (signalable, peekable again and
    // again with the same status); wait_pid reaps it exactly once; then the pid is
    // neither a child (ECHILD) nor a process (ESRCH).
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let child = held.spawned(k.spawn(&reading_child(3)).expect("spawn"));
        let (pid, stdin) = (child.pid, child.stdin.expect("a stdin pipe"));
        assert_eq!(
            k.wait_pid(pid, WaitMode::NoHang),
            Ok(WaitStatus::StillAlive)
        );
        assert_eq!(
            k.wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang),
            Ok(WaitStatus::StillAlive)
        );
        assert_eq!(k.kill(pid, None), Ok(()));

        assert_eq!(held.close(stdin), Ok(()));
        let peeked = k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block);
        let Ok(WaitStatus::Terminated(peeked_pid, peeked_status)) = peeked else {
            panic!("wait_peek(Pid({pid}), Block) gave {peeked:?}");
        };
        assert_eq!(peeked_pid, pid);
        assert_eq!(peeked_status.returncode(), 3);
        // Not reaped: the zombie still exists, and peeking again finds it again.
        assert_eq!(k.kill(pid, None), Ok(()), "a zombie still exists");
        assert_eq!(
            k.wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang),
            Ok(WaitStatus::Terminated(pid, peeked_status))
        );

        let status = reap_status(k, pid);
        assert_eq!(
            status, peeked_status,
            "peek and wait disagree on the status"
        );
        assert_eq!(status.code(), Some(3));
        assert_eq!(status.signal(), None);
        assert_eq!(status.returncode(), 3);

        // Reaped: the pid is no longer ours, nor a process at all. (Pids are handed out
        // in turn, so it is not reused within this test.)
        assert_eq!(k.wait_pid(pid, WaitMode::Block), Err(Errno::ECHILD));
        assert_eq!(k.wait_pid(pid, WaitMode::NoHang), Err(Errno::ECHILD));
        assert_eq!(
            k.wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang),
            Err(Errno::ECHILD)
        );
        assert_eq!(k.kill(pid, None), Err(Errno::ESRCH));
    }
}

impl Body for returncodes_follow_the_r1_table {
    // Goal (spec R-1): real exits and deaths by signal give asyncio's returncodes (the
    // exit code, or -signum with the signal and no exit code), no core bit for a death
    // by SIGSEGV under `ulimit -c 0`, and peek and wait report the same raw status.
    fn run<K: Kernel>(&self, k: &K) {
        let cases = [
            ("exit 0", 0, None),
            ("exit 255", 255, None),
            ("kill -9 $$", -9, Some(Signal::SIGKILL)),
            ("kill -TERM $$", -15, Some(Signal::SIGTERM)),
            // No core file is wanted from this test.
            ("ulimit -c 0; kill -SEGV $$", -11, Some(Signal::SIGSEGV)),
        ];
        let mut held = Cleanup::new(k);
        for (script, returncode, signal) in cases {
            let pid = held.child(k.spawn(&sh(script)).expect("spawn").pid);
            let peeked = k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block);
            let status = reap_status(k, pid);
            assert_eq!(
                peeked,
                Ok(WaitStatus::Terminated(pid, status)),
                "{script}: peek and wait disagree"
            );
            assert_eq!(status.returncode(), returncode, "{script}: {status:?}");
            assert_eq!(status.signal(), signal, "{script}: {status:?}");
            assert!(!status.core_dumped(), "{script}: {status:?}");
            match signal {
                Some(_) => assert_eq!(status.code(), None, "{script}: {status:?}"),
                None => assert_eq!(status.code(), Some(returncode), "{script}: {status:?}"),
            }
        }
    }
}

impl Body for wait_any_and_peek_any_find_terminated_children {
    // Goal: wait_any and a peek at any child find our terminated children (the peek
    // without reaping), say StillAlive while they all run, and report ECHILD once
    // there are none.
    fn run<K: Kernel>(&self, k: &K) {
        assert_eq!(k.wait_any(WaitMode::NoHang), Err(Errno::ECHILD));
        assert_eq!(
            k.wait_peek(WaitTarget::Any, WaitMode::NoHang),
            Err(Errno::ECHILD)
        );

        let mut held = Cleanup::new(k);
        let first = held.spawned(k.spawn(&reading_child(7)).expect("spawn"));
        let second = held.spawned(k.spawn(&reading_child(8)).expect("spawn"));
        let (a, b) = (first.pid, second.pid);
        assert_eq!(k.wait_any(WaitMode::NoHang), Ok(WaitStatus::StillAlive));
        assert_eq!(
            k.wait_peek(WaitTarget::Any, WaitMode::NoHang),
            Ok(WaitStatus::StillAlive)
        );

        // The first exits: a peek at any child finds it and leaves it a zombie.
        assert_eq!(held.close(first.stdin.expect("a stdin pipe")), Ok(()));
        let peeked = k.wait_peek(WaitTarget::Any, WaitMode::Block);
        let Ok(WaitStatus::Terminated(pid, status)) = peeked else {
            panic!("wait_peek(Any, Block) gave {peeked:?}");
        };
        assert_eq!(pid, a);
        assert_eq!(status.returncode(), 7);
        assert_eq!(k.kill(a, None), Ok(()));
        assert_eq!(
            k.wait_peek(WaitTarget::Any, WaitMode::NoHang),
            Ok(WaitStatus::Terminated(a, status))
        );
        assert_eq!(reap_status(k, a), status);
        assert_eq!(k.wait_any(WaitMode::NoHang), Ok(WaitStatus::StillAlive));

        // The second exits: wait_any reaps it.
        assert_eq!(held.close(second.stdin.expect("a stdin pipe")), Ok(()));
        let reaped = k.wait_any(WaitMode::Block);
        let Ok(WaitStatus::Terminated(pid, status)) = reaped else {
            panic!("wait_any(Block) gave {reaped:?}");
        };
        assert_eq!(pid, b);
        assert_eq!(status.returncode(), 8);
        assert_eq!(k.kill(b, None), Err(Errno::ESRCH));

        // No children are left.
        assert_eq!(k.wait_any(WaitMode::NoHang), Err(Errno::ECHILD));
        assert_eq!(k.wait_any(WaitMode::Block), Err(Errno::ECHILD));
        assert_eq!(
            k.wait_peek(WaitTarget::Any, WaitMode::Block),
            Err(Errno::ECHILD)
        );
    }
}

impl Body for pids_below_one_are_refused {
    // Goal: pids ≤ 0 (process groups, "every process") are refused with EINVAL before
    // reaching the kernel; a pid that is not a child (our own) is ECHILD to wait for.
    fn run<K: Kernel>(&self, k: &K) {
        for pid in [Pid(0), Pid(-1), Pid(-2), Pid(i32::MIN)] {
            assert_eq!(
                k.wait_pid(pid, WaitMode::NoHang),
                Err(Errno::EINVAL),
                "{pid}"
            );
            assert_eq!(
                k.wait_peek(WaitTarget::Pid(pid), WaitMode::NoHang),
                Err(Errno::EINVAL),
                "{pid}"
            );
            // Only signal 0: should the check be missing, nothing is sent to anybody.
            assert_eq!(k.kill(pid, None), Err(Errno::EINVAL), "{pid}");
            assert_eq!(k.kill(pid, Some(Signal(0))), Err(Errno::EINVAL), "{pid}");
            assert_eq!(k.pidfd_open(pid), Err(Errno::EINVAL), "{pid}");
        }
        assert_eq!(k.wait_pid(k.getpid(), WaitMode::NoHang), Err(Errno::ECHILD));
    }
}

impl Body for spawn_failure_leaves_no_child_and_no_fd {
    // Goal: a program that cannot be started (not found by path or in PATH, a stream
    // fd that is not open), with or without a pidfd asked for, gives its errno and
    // leaves no child and no open fd behind.
    // (Files that are not executable and missing working directories are the real
    // OS's alone: see src/sys/unix/tests.rs.)
    fn run<K: Kernel>(&self, k: &K) {
        let piped = |program: &str| {
            let mut request = SpawnRequest::new(program, ["x"]);
            request.stdin = Stdio::Pipe;
            request.stdout = Stdio::Pipe;
            request.stderr = Stdio::Pipe;
            request
        };
        let mut bad_fd = SpawnRequest::new("/bin/true", std::iter::empty::<&str>());
        bad_fd.stdout = Stdio::Fd(NEVER_OPEN);
        let cases = [
            (piped("/nonexistent/loopwatch-test-program"), Errno::ENOENT),
            (piped("loopwatch-test-no-such-program"), Errno::ENOENT),
            (bad_fd, Errno::EBADF),
        ];
        let mut held = Cleanup::new(k);
        let before = fd_count(k);
        // With a pidfd asked for too: neither the child nor its pidfd is left.
        let with_pidfd = cases
            .clone()
            .map(|(request, errno)| (request.pidfd(true), errno));
        for (request, errno) in cases.into_iter().chain(with_pidfd) {
            match k.spawn(&request) {
                Ok(spawned) => {
                    held.spawned(spawned);
                    panic!("spawn {request:?} succeeded; expected {errno:?}");
                }
                Err(e) => assert_eq!(e, errno, "spawn {request:?}"),
            }
            assert_eq!(fd_count(k), before, "fds after spawn {request:?}");
            assert_eq!(
                k.wait_any(WaitMode::NoHang),
                Err(Errno::ECHILD),
                "a child is left after spawn {request:?}"
            );
        }
    }
}

/// Reaps `pid`, then reads all of `fd`, which must be at end of file: once the child
/// is gone no writer may be left, or an fd leaked. Only for outputs that fit in a pipe;
/// never blocks.
fn output_after_exit<K: Kernel>(k: &K, pid: Pid, fd: Fd) -> (i32, Vec<u8>) {
    let returncode = reap_status(k, pid).returncode();
    let (bytes, eof) = drain(k, fd);
    assert!(
        eof,
        "a writer of fd {fd} is still open after the child exited: an fd leaked \
         (read so far: {bytes:?})"
    );
    (returncode, bytes)
}

impl Body for spawn_plumbs_pipes_null_and_fds {
    // Goal: Stdio::Pipe, Null and Fd put the child's streams where asked: pipes carry
    // data both ways and end at end of file, only the pipes asked for are returned,
    // and a parent's fd given to the child stays the parent's, with no extra writer
    // left open. (That the pipe ends are close-on-exec and Null is /dev/null only the
    // real OS can show: see src/sys/unix/tests.rs.)
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);

        // Pipes both ways, through cat.
        let mut request = SpawnRequest::new("/bin/cat", std::iter::empty::<&str>());
        request.stdin = Stdio::Pipe;
        request.stdout = Stdio::Pipe;
        let child = held.spawned(k.spawn(&request).expect("spawn cat"));
        assert!(child.stderr.is_none());
        let (stdin, stdout) = (child.stdin.expect("stdin"), child.stdout.expect("stdout"));
        assert_eq!(k.write(stdin, b"hello\n"), Ok(6));
        assert_eq!(held.close(stdin), Ok(()));
        assert_eq!(
            output_after_exit(k, child.pid, stdout),
            (0, b"hello\n".to_vec())
        );
        assert_eq!(held.close(stdout), Ok(()));

        // A stdout pipe alone, read with blocking reads to its end.
        let mut request = SpawnRequest::new("echo", ["hi", "there"]);
        request.stdout = Stdio::Pipe;
        let child = held.spawned(k.spawn(&request).expect("spawn echo"));
        assert!(child.stdin.is_none() && child.stderr.is_none());
        let stdout = child.stdout.expect("stdout");
        assert_eq!(read_to_end(k, stdout), b"hi there\n");
        assert_eq!(reap_status(k, child.pid).returncode(), 0);
        assert_eq!(held.close(stdout), Ok(()));

        // Null: no pipe is returned for it, and echo succeeds into it.
        let mut request = sh("echo hi");
        request.stdin = Stdio::Null;
        request.stdout = Stdio::Null;
        request.stderr = Stdio::Pipe;
        let child = held.spawned(k.spawn(&request).expect("spawn sh"));
        assert!(child.stdin.is_none() && child.stdout.is_none());
        let stderr = child.stderr.expect("stderr");
        assert_eq!(output_after_exit(k, child.pid, stderr), (0, Vec::new()));
        assert_eq!(held.close(stderr), Ok(()));

        // Fd: the child writes into our own pipe; we keep our write end as it was.
        let (read, write) = held.pipe();
        let mut request = SpawnRequest::new("/bin/echo", ["hi"]);
        request.stdout = Stdio::Fd(write);
        let child = held.spawned(k.spawn(&request).expect("spawn echo"));
        assert!(child.stdin.is_none() && child.stdout.is_none() && child.stderr.is_none());
        assert_eq!(reap_status(k, child.pid).returncode(), 0);
        assert_eq!(k.write(write, b""), Ok(0), "our write end was closed");
        assert_eq!(held.close(write), Ok(()));
        assert_eq!(
            drain(k, read),
            (b"hi\n".to_vec(), true),
            "a copy of the write end leaked"
        );
        assert_eq!(held.close(read), Ok(()));
    }
}

impl Body for spawn_passes_arguments_and_environment_to_a_script {
    // Goal: a shell script sees its $0 as given (blanks kept) and the environment the
    // request makes: a variable added, one in both `env_remove` and `env` (set: the
    // removals come first), one removed (unset).
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let mut request = SpawnRequest::new(
            "/bin/sh",
            [
                "-c",
                r#"echo "$0|$LW_TEST_VAR|$LW_BOTH|$LW_REMOVED""#,
                "zero  one",
            ],
        );
        request.env.push(("LW_TEST_VAR".into(), "value".into()));
        request.env.push(("LW_BOTH".into(), "kept".into()));
        request.env_remove = vec!["LW_BOTH".into(), "LW_REMOVED".into()];
        request.stdout = Stdio::Pipe;
        let child = held.spawned(k.spawn(&request).expect("spawn sh"));
        let stdout = child.stdout.expect("stdout");
        assert_eq!(
            output_after_exit(k, child.pid, stdout),
            (0, b"zero  one|value|kept|\n".to_vec())
        );
        assert_eq!(held.close(stdout), Ok(()));
    }
}

impl Body for spawn_passes_arguments_environment_and_cwd {
    // Goal: spawn passes arguments ($0 and after), added or cleared environment
    // variables and the working directory.
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let mut request = SpawnRequest::new(
            "/bin/sh",
            [
                "-c",
                r#"printf '%s|%s|%s|%s' "$0" "$1" "$LW_TEST_VAR" "$(pwd)""#,
                "zero",
                "one two",
            ],
        );
        request.env.push(("LW_TEST_VAR".into(), "value".into()));
        request.cwd = Some("/".into());
        request.stdout = Stdio::Pipe;
        let child = held.spawned(k.spawn(&request).expect("spawn sh"));
        let stdout = child.stdout.expect("stdout");
        assert_eq!(
            output_after_exit(k, child.pid, stdout),
            (0, b"zero|one two|value|/".to_vec())
        );
        assert_eq!(held.close(stdout), Ok(()));

        let mut request = SpawnRequest::new("/usr/bin/env", std::iter::empty::<&str>());
        request.env_clear = true;
        request.env.push(("LW_ONLY".into(), "1".into()));
        request.stdout = Stdio::Pipe;
        let child = held.spawned(k.spawn(&request).expect("spawn env"));
        let stdout = child.stdout.expect("stdout");
        assert_eq!(
            output_after_exit(k, child.pid, stdout),
            (0, b"LW_ONLY=1\n".to_vec())
        );
        assert_eq!(held.close(stdout), Ok(()));
    }
}

impl Body for pidfd_polls_readable_on_exit_and_signals_only_its_process {
    // Goal: a pidfd is not readable while its process runs, polls readable once it
    // has died, signals exactly that process, and reports ESRCH (as pidfd_open does)
    // once it is reaped.
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let pid = held.child(
            k.spawn(&SpawnRequest::new("/bin/sleep", ["60"]))
                .expect("spawn sleep")
                .pid,
        );
        let pidfd = match k.pidfd_open(pid) {
            Ok(fd) => held.fd(fd),
            Err(Errno::ENOSYS) => panic!(
                "pidfd_open gave ENOSYS: this machine's Linux is expected to have pidfd \
                 (5.3 or later), so the pidfd path is untested"
            ),
            Err(e) => panic!("pidfd_open({pid}): {e:?}"),
        };

        let poller = k.new_poller().expect("new_poller");
        poller
            .register(pidfd, Token(7), Interest::READABLE)
            .expect("register pidfd");
        let mut events = Vec::new();
        poller
            .poll(&mut events, Some(Duration::ZERO))
            .expect("poll");
        assert_eq!(events, [], "a running process's pidfd is readable");

        assert_eq!(k.pidfd_send_signal(pidfd, Signal::SIGKILL), Ok(()));
        poller.poll(&mut events, Some(PATIENCE)).expect("poll");
        let readable = Event {
            token: Token(7),
            readable: true,
            writable: false,
        };
        assert_eq!(events, [readable], "no readable pidfd after SIGKILL");

        assert_eq!(reap_status(k, pid).returncode(), -9);
        poller.deregister(pidfd).expect("deregister");
        assert_eq!(k.pidfd_open(pid), Err(Errno::ESRCH));
        assert_eq!(
            k.pidfd_send_signal(pidfd, Signal::SIGKILL),
            Err(Errno::ESRCH)
        );
        assert_eq!(held.close(pidfd), Ok(()));
    }
}

impl Body for spawn_with_a_pidfd_returns_the_childs_pidfd {
    // Goal: a spawn that asks for a pidfd returns one that names the child (signals
    // it, peeks at its exit, and is ESRCH once the child is reaped), and none is
    // returned without asking.
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let plain = held.spawned(k.spawn(&sh("exit 0")).expect("spawn"));
        assert_eq!(plain.pidfd, None, "a pidfd nobody asked for");
        assert_eq!(reap_status(k, plain.pid).returncode(), 0);

        let request = SpawnRequest::new("/bin/sleep", ["60"]).pidfd(true);
        let spawned = match k.spawn(&request) {
            Ok(spawned) => held.spawned(spawned),
            Err(Errno::ENOSYS) => panic!(
                "spawn with a pidfd gave ENOSYS: this machine's Linux is expected to have \
                 CLONE_PIDFD (5.2 or later), so the spawn-time pidfd is untested"
            ),
            Err(e) => panic!("spawn with a pidfd: {e:?}"),
        };
        let pidfd = spawned.pidfd.expect("a pidfd was asked for");
        assert_eq!(k.pidfd_send_signal(pidfd, Signal::SIGKILL), Ok(()));
        let peek = k.wait_peek(WaitTarget::Pidfd(pidfd), WaitMode::Block);
        assert!(
            matches!(peek, Ok(WaitStatus::Terminated(pid, s)) if pid == spawned.pid && s.returncode() == -9),
            "{peek:?}"
        );
        assert_eq!(reap_status(k, spawned.pid).returncode(), -9);
        assert_eq!(
            k.pidfd_send_signal(pidfd, Signal::SIGKILL),
            Err(Errno::ESRCH)
        );
        assert_eq!(held.close(pidfd), Ok(()));
    }
}

impl Body for ignored_sigchld_makes_the_kernel_reap_children {
    // Goal: with SIGCHLD set to SIG_IGN the kernel reaps children itself: a blocking
    // wait_pid ends with ECHILD once the child has exited; putting the disposition
    // back brings zombies back.
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let previous = k
            .set_disposition(Signal::SIGCHLD, Disposition::Ignore)
            .expect("set_disposition(SIGCHLD, Ignore)");
        held.undo(move |k| {
            let _ = k.set_disposition(Signal::SIGCHLD, previous);
        });
        assert_eq!(previous, Disposition::Default);

        let request = SpawnRequest::new("/bin/true", std::iter::empty::<&str>());
        let pid = held.child(k.spawn(&request).expect("spawn true").pid);
        // Blocks until the child exits; the kernel has reaped it by then.
        assert_eq!(k.wait_pid(pid, WaitMode::Block), Err(Errno::ECHILD));

        assert_eq!(
            k.set_disposition(Signal::SIGCHLD, previous),
            Ok(Disposition::Ignore)
        );
        let pid = held.child(k.spawn(&request).expect("spawn true").pid);
        assert_eq!(reap_status(k, pid).returncode(), 0);
    }
}

fn main() -> ExitCode {
    // The children's `kill -TERM $$` and `kill -SEGV $$` need the defaults, and
    // SIGCHLD is expected at its default.
    testing::undo_inherited_ignores(&[Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGSEGV]);
    testing::main(tests())
}

impl Body for job_waits_report_stops_and_continues_once {
    // Goal (X-8): a job-control peek reports a stop, then a continue, until it is
    // taken, and a take reports it once; exit-only waits never see them; an exit is
    // peeked (the zombie stays) and never taken (a take gives ECHILD for a zombie);
    // by pid and by pidfd alike. Once the
    // child is reaped both calls give ECHILD; "any child" and pids below one are
    // refused (EINVAL), and an fd that is no pidfd is "bad" (EBADF, as for waitid's
    // P_PIDFD with exits).
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let child = held.spawned(k.spawn(&reading_child(3)).expect("spawn"));
        let (pid, stdin) = (child.pid, child.stdin.expect("a stdin pipe"));
        let pidfd = held.fd(k.pidfd_open(pid).expect("this machine's Linux has pidfds"));
        for target in [WaitTarget::Pid(pid), WaitTarget::Pidfd(pidfd)] {
            assert_eq!(
                k.wait_job_peek(target, WaitMode::NoHang),
                Ok(JobStatus::StillAlive)
            );
            assert_eq!(k.take_job(target), Ok(JobStatus::StillAlive));
            for (signal, change) in [
                (Signal::SIGSTOP, JobStatus::Stopped(pid, Signal::SIGSTOP)),
                (Signal::SIGCONT, JobStatus::Continued(pid)),
            ] {
                assert_eq!(k.kill(pid, Some(signal)), Ok(()));
                assert_eq!(
                    k.wait_job_peek(target, WaitMode::Block),
                    Ok(change),
                    "{target:?}"
                );
                assert_eq!(
                    k.wait_job_peek(target, WaitMode::NoHang),
                    Ok(change),
                    "a peek takes nothing"
                );
                assert_eq!(
                    k.wait_pid(pid, WaitMode::NoHang),
                    Ok(WaitStatus::StillAlive),
                    "an exit-only wait does not see it"
                );
                assert_eq!(k.take_job(target), Ok(change));
                assert_eq!(k.take_job(target), Ok(JobStatus::StillAlive), "taken once");
                assert_eq!(
                    k.wait_job_peek(target, WaitMode::NoHang),
                    Ok(JobStatus::StillAlive)
                );
            }
        }

        assert_eq!(held.close(stdin), Ok(()));
        let exited = k.wait_job_peek(WaitTarget::Pid(pid), WaitMode::Block);
        let Ok(JobStatus::Terminated(exited_pid, status)) = exited else {
            panic!("wait_job_peek(Pid({pid}), Block) gave {exited:?}");
        };
        assert_eq!((exited_pid, status.returncode()), (pid, 3));
        assert_eq!(
            k.wait_job_peek(WaitTarget::Pidfd(pidfd), WaitMode::NoHang),
            Ok(JobStatus::Terminated(pid, status))
        );
        assert_eq!(
            k.take_job(WaitTarget::Pid(pid)),
            Err(Errno::ECHILD),
            "a zombie is no candidate for a wait without WEXITED"
        );
        assert_eq!(k.kill(pid, None), Ok(()), "still a zombie");
        assert_eq!(reap_status(k, pid).returncode(), 3);
        for target in [WaitTarget::Pid(pid), WaitTarget::Pidfd(pidfd)] {
            assert_eq!(
                k.wait_job_peek(target, WaitMode::NoHang),
                Err(Errno::ECHILD)
            );
            assert_eq!(k.take_job(target), Err(Errno::ECHILD));
        }

        let (read, write) = held.pipe();
        for (target, errno) in [
            (WaitTarget::Any, Errno::EINVAL),
            (WaitTarget::Pid(Pid(0)), Errno::EINVAL),
            (WaitTarget::Pid(Pid(-1)), Errno::EINVAL),
            (WaitTarget::Pidfd(NEVER_OPEN), Errno::EBADF),
            (WaitTarget::Pidfd(read), Errno::EBADF),
        ] {
            assert_eq!(
                k.wait_job_peek(target, WaitMode::NoHang),
                Err(errno),
                "{target:?}"
            );
            assert_eq!(k.take_job(target), Err(errno), "{target:?}");
        }
        // So do the exit-only waits by pidfd.
        assert_eq!(k.wait_pidfd(read, WaitMode::NoHang), Err(Errno::EBADF));
        assert_eq!(
            k.wait_peek(WaitTarget::Pidfd(read), WaitMode::NoHang),
            Err(Errno::EBADF)
        );
        for fd in [pidfd, read, write] {
            assert_eq!(held.close(fd), Ok(()));
        }
    }
}
