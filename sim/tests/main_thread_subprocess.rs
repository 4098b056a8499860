//! Subprocesses through the main thread's loop and the policy's child watcher: the
//! subprocess suite with each watcher, loops in worker threads, a watcher factory,
//! children spawned by other code (foreign children), spawn errors, and a process
//! whose own stdio is closed.
//!
//! Each behaviour is one body run on both kernels: `name [os]` on the real OS, on the
//! main thread of this binary, one test at a time from a fresh default policy;
//! `name [sim]` on the simulator's main thread over many seeds. Every test checks
//! that it leaves no child, fd or thread behind. What only the real OS can run says
//! why beside its registration in `main`.
//!
//! `cargo test -p loopwatch-sim --test main_thread_subprocess [NAME]`;
//! `LOOPWATCH_SEEDS=N` and `LOOPWATCH_SEED=S` choose the simulator's seeds.

mod main_thread_common;

use std::process::ExitCode;
use std::sync::Arc;

use loopwatch::kernel::{
    Errno, Fds, Kernel, Pid, Processes, SpawnRequest, Stdio, WaitMode, WaitStatus, WaitTarget,
};
use loopwatch::policy;
use loopwatch::{
    AbstractEventLoopPolicy, DefaultEventLoopPolicy, ErrorKind, OsKernel, PidfdChildWatcher,
    WatcherFactory, WatcherRef,
};
use loopwatch_sim::testing::{self, Body, Log, Test, sh};
use loopwatch_sim::{FaultPlan, Simulation};

use main_thread_common::{
    Kind, bare, child_count, fork, in_worker, install, sim, uninstall, with_pipes,
};

/// Goal (L-1 … L-4, R-1): CPython's subprocess tests in spirit, for one watcher: exit
/// codes, kill/terminate, captured stdout/stderr, communicate with input, and 1,000
/// concurrent children; afterwards no zombies, no new fds, no stray threads (the leak
/// check).
struct SubprocessSuite(Kind);

impl Body for SubprocessSuite {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = install(k, self.0.make(k)).unwrap();
        // Nothing goes to the loop's exception handler (a callback's panic would).
        let reported = Log::new();
        let sink = reported.clone();
        event_loop.set_exception_handler(Some(Arc::new(move |_, context| {
            sink.push(context.message.clone());
        })));
        let lp = event_loop.clone();
        // The simulator's children write nothing to stderr: there `echo err >&2` is
        // not modelled, and the child's stderr pipe must be empty at its end instead.
        let (script, err_expected): (&str, &[u8]) = if sim(k).is_some() {
            ("echo out", b"")
        } else {
            ("echo out; echo err >&2", b"err\n")
        };
        let outcome = event_loop.run_until_complete(async move {
            let mut problems = Vec::new();
            let mut expect = |what: &str, ok: bool| {
                if !ok {
                    problems.push(what.to_string());
                }
            };
            for (script, code) in [("exit 0", 0), ("exit 1", 1), ("exit 255", 255)] {
                let process = lp.subprocess_exec(&sh(script))?;
                expect(script, process.wait().await == code);
                expect("returncode kept", process.returncode() == Some(code));
            }
            let sleeper = lp.subprocess_exec(&SpawnRequest::new("sleep", ["30"]))?;
            sleeper.kill()?;
            expect("kill gives -9", sleeper.wait().await == -9);
            let err = sleeper.kill().unwrap_err();
            expect(
                "kill after exit",
                err.kind() == ErrorKind::ProcessLookupError,
            );
            let sleeper = lp.subprocess_exec(&SpawnRequest::new("sleep", ["30"]))?;
            sleeper.terminate()?;
            expect("terminate gives -15", sleeper.wait().await == -15);
            let mut echo = lp.subprocess_exec(&with_pipes(sh(script), false, true, true))?;
            let (out, err) = echo.communicate(None).await?;
            expect("stdout captured", out == b"out\n");
            expect("stderr captured", err == err_expected);
            let mut cat = lp.subprocess_exec(&with_pipes(bare("cat"), true, true, false))?;
            let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let (out, _) = cat.communicate(Some(&big)).await?;
            expect("communicate round-trips 200 kB", out == big);
            expect("cat exits 0", cat.returncode() == Some(0));
            let mut cat = lp.subprocess_exec(&with_pipes(bare("cat"), true, true, false))?;
            let stdin = cat.stdin.as_mut().expect("a pipe");
            stdin.write(b"ab");
            stdin.write(b"c");
            stdin.drain().await?;
            stdin.close()?;
            let echoed = cat.stdout.as_mut().expect("a pipe").read_to_end().await?;
            expect("write + drain + close", echoed == b"abc");
            expect("cat exits 0 at eof", cat.wait().await == 0);
            let mut lines =
                lp.subprocess_exec(&with_pipes(sh("echo one; echo two"), false, true, false))?;
            let stdout = lines.stdout.as_mut().expect("a pipe");
            expect("readline 1", stdout.readline().await? == b"one\n");
            expect("readline 2", stdout.readline().await? == b"two\n");
            expect("readline eof", stdout.readline().await?.is_empty());
            expect("echo exits 0", lines.wait().await == 0);
            let mut many = Vec::new();
            for _ in 0..1000 {
                many.push(lp.subprocess_exec(&bare("/bin/true"))?);
            }
            let mut zeros = 0;
            for process in &many {
                if process.wait().await == 0 {
                    zeros += 1;
                }
            }
            expect(
                &format!("1000 children report 0 (got {zeros})"),
                zeros == 1000,
            );
            Ok::<_, loopwatch::Error>(problems)
        });
        uninstall(k, event_loop).unwrap();
        let problems = outcome.unwrap().unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(reported.is_empty(), "reported: {:?}", reported.take());
        assert_eq!(child_count(k), 0, "no children left");
    }
}

/// Goal (L-4): from a loop in a worker thread, Safe and Fast attached to nothing refuse
/// with the documented error before spawning; MultiLoop attached from the main thread
/// delivers to the worker's loop, and so do Threaded and Pidfd, which need no
/// attaching.
struct SubprocessFromWorkerThread;

impl Body for SubprocessFromWorkerThread {
    fn run<K: Kernel>(&self, k: &K) {
        for kind in [Kind::Safe, Kind::Fast] {
            policy::set_child_watcher(k, Some(kind.make(k))).unwrap();
            let outcome = in_worker(k, |event_loop| {
                let lp = event_loop.clone();
                event_loop.run_until_complete(async move {
                    lp.subprocess_exec(&sh("exit 0"))
                        .map(|p| p.pid())
                        .map_err(|e| e.message().to_string())
                })
            })
            .unwrap();
            // CPython's message, then what to do.
            assert!(
                outcome.as_ref().err().is_some_and(|m| m.starts_with(
                    "asyncio.get_child_watcher() is not activated, subprocess support is not installed. "
                )),
                "{kind:?}: {outcome:?}"
            );
            assert_eq!(child_count(k), 0, "nothing was spawned");
            policy::set_child_watcher(k, None).unwrap();
        }
        for kind in [Kind::MultiLoop, Kind::Threaded, Kind::Pidfd] {
            let watcher = kind.make(k);
            policy::set_child_watcher(k, Some(watcher.clone())).unwrap();
            // From the main thread, as the policy would; a no-op for Threaded and Pidfd.
            watcher.attach_loop(None).unwrap();
            let code = in_worker(k, |event_loop| {
                let lp = event_loop.clone();
                event_loop.run_until_complete(async move {
                    match lp.subprocess_exec(&sh("exit 7")) {
                        Ok(process) => process.wait().await,
                        Err(_) => -1000,
                    }
                })
            });
            assert_eq!(code, Ok(7), "{kind:?} from a worker");
            policy::set_child_watcher(k, None).unwrap();
        }
    }
}

/// Goal: a policy built with a watcher factory hands out that watcher (here Pidfd)
/// without a custom policy class, and subprocesses use it.
struct PolicyDefaultWatcherFactory;

impl Body for PolicyDefaultWatcherFactory {
    fn run<K: Kernel>(&self, k: &K) {
        let factory: WatcherFactory<K> =
            Arc::new(|k: &K| Arc::new(PidfdChildWatcher::with_kernel(k.clone())) as WatcherRef<K>);
        let policy = Arc::new(DefaultEventLoopPolicy::with_watcher_factory(
            k.clone(),
            factory,
        ));
        policy::set_event_loop_policy(k, Some(policy.clone()));
        assert!(
            policy.state().and_then(|s| s.current_watcher()).is_none(),
            "none until asked (D-1)"
        );
        let watcher = policy::get_child_watcher(k).unwrap();
        assert!(
            watcher.type_name().contains("PidfdChildWatcher"),
            "{}",
            watcher.type_name()
        );
        let event_loop = policy::new_event_loop(k).unwrap();
        policy::set_event_loop(k, Some(event_loop.clone())).unwrap();
        let lp = event_loop.clone();
        let code = event_loop
            .run_until_complete(async move {
                lp.subprocess_exec(&sh("exit 9"))
                    .expect("spawn")
                    .wait()
                    .await
            })
            .unwrap();
        assert_eq!(code, 9, "pidfd watcher delivered");
        policy::set_child_watcher(k, None).unwrap();
        event_loop.close().unwrap();
    }
}

/// Spawns `exit 4` as other code would, behind the watcher's back, and waits until
/// it has exited without reaping it: a zombie before the test's own child runs.
fn foreign_zombie<K: Kernel>(k: &K) -> Pid {
    let foreign = testing::spawn_sh(k, "exit 4");
    k.wait_peek(WaitTarget::Pid(foreign), WaitMode::Block)
        .expect("the foreign child exits");
    foreign
}

/// Runs one child of the loop's own, `sleep 0.2; exit 0`, to its end: its SIGCHLD
/// makes the watcher do a pass.
fn own_child_exits<K: Kernel>(event_loop: &loopwatch::EventLoop<K>) {
    let lp = event_loop.clone();
    let code = event_loop
        .run_until_complete(async move {
            let ours = lp.subprocess_exec(&sh("sleep 0.2; exit 0")).expect("spawn");
            ours.wait().await
        })
        .unwrap();
    assert_eq!(code, 0, "our child reported");
}

/// Goal (F-5, spec "steals"): a child spawned by other code is reaped by Fast's
/// waitpid(-1) when any SIGCHLD is handled; the other code then gets ECHILD.
struct FastStealsForeignChild;

impl Body for FastStealsForeignChild {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = install(k, Kind::Fast.make(k)).unwrap();
        let foreign = foreign_zombie(k);
        own_child_exits(&event_loop);
        let theirs = k.wait_pid(foreign, WaitMode::NoHang);
        assert_eq!(theirs, Err(Errno::ECHILD), "the foreign child was stolen");
        uninstall(k, event_loop).unwrap();
    }
}

/// Goal (S-6, M-6, T-4, K-4): Safe, MultiLoop, Threaded and Pidfd never wait for a pid
/// they were not given: the foreign child stays a zombie for its owner to reap.
struct NonStealingWatchersLeaveForeignChild;

impl Body for NonStealingWatchersLeaveForeignChild {
    fn run<K: Kernel>(&self, k: &K) {
        for kind in [Kind::Safe, Kind::MultiLoop, Kind::Threaded, Kind::Pidfd] {
            let event_loop = install(k, kind.make(k)).unwrap();
            let foreign = foreign_zombie(k);
            own_child_exits(&event_loop);
            let theirs = k.wait_pid(foreign, WaitMode::NoHang);
            assert!(
                matches!(theirs, Ok(WaitStatus::Terminated(_, s)) if s.returncode() == 4),
                "{kind:?}: the foreign child is still ours to reap: {theirs:?}"
            );
            uninstall(k, event_loop).unwrap();
        }
    }
}

/// Goal: job events do not depend on the watcher: under the SIGCHLD watchers
/// (whose handler runs a pass for each stop and continue, and finds no exit) a
/// child's stop, continue and stop are reported in order, and its exit still reaches
/// `wait` through the watcher.
struct JobEventsUnderEachWatcher;

impl Body for JobEventsUnderEachWatcher {
    fn run<K: Kernel>(&self, k: &K) {
        use loopwatch::kernel::Signal;
        use loopwatch::subprocess::JobEvent;
        let seconds = if sim(k).is_some() { "100000" } else { "60" };
        for kind in [Kind::Safe, Kind::Fast, Kind::MultiLoop] {
            let event_loop = install(k, kind.make(k)).unwrap();
            let lp = event_loop.clone();
            let (events, code) = event_loop
                .run_until_complete(async move {
                    let process =
                        lp.subprocess_exec(&SpawnRequest::new("/bin/sleep", [seconds]))?;
                    let signals = [
                        Signal::SIGSTOP,
                        Signal::SIGCONT,
                        Signal::SIGSTOP,
                        Signal::SIGKILL,
                    ];
                    let events = testing::job_events_after(&process, &signals).await?;
                    Ok::<_, loopwatch::Error>((events, process.wait().await))
                })
                .unwrap()
                .unwrap();
            let stopped = Some(JobEvent::Stopped(Signal::SIGSTOP));
            assert_eq!(
                events,
                [stopped, Some(JobEvent::Continued), stopped, None],
                "{kind:?}"
            );
            assert_eq!(code, -9, "{kind:?}");
            uninstall(k, event_loop).unwrap();
        }
    }
}

/// Goal: a program that does not exist is the Os(ENOENT) kind, with no zombie and no
/// fd left, its pipes included (the leak check).
struct SubprocessSpawnErrorsLeaveNothing;

impl Body for SubprocessSpawnErrorsLeaveNothing {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = install(k, Kind::Safe.make(k)).unwrap();
        let lp = event_loop.clone();
        let err = event_loop
            .run_until_complete(async move {
                lp.subprocess_exec(&with_pipes(bare("/nonexistent/program"), true, true, true))
                    .map(|p| p.pid())
            })
            .unwrap();
        uninstall(k, event_loop).unwrap();
        assert_eq!(
            err.as_ref().err().map(|e| e.kind()),
            Some(ErrorKind::Os(Errno::ENOENT)),
            "{err:?}"
        );
        assert_eq!(child_count(k), 0, "no zombie");
    }
}

/// Goal: a process whose own fds 0-2 are closed (a daemon) can still give a child a
/// pipe as stdout while its stdin is /dev/null: the copy of the pipe made for the
/// child must not land on fd 0, where setting up the child's stdin would replace it.
/// Runs in a forked child, which closes its 0-2 and reports by exit code.
fn spawn_with_stdio_closed_in_the_parent() -> Result<(), String> {
    let kernel = OsKernel;
    let (read, write) = kernel.pipe().map_err(|e| e.to_string())?;
    let pid = fork::fork_running(|| {
        fork::close_stdio();
        let mut request = sh("echo through");
        request.stdin = Stdio::Null;
        request.stdout = Stdio::Fd(write);
        request.stderr = Stdio::Null;
        let Ok(child) = kernel.spawn(&request) else {
            return 2;
        };
        match kernel.wait_pid(child.pid, WaitMode::Block) {
            Ok(WaitStatus::Terminated(_, s)) if s.returncode() == 0 => 0,
            _ => 3,
        }
    });
    let status = kernel.wait_pid(pid, WaitMode::Block);
    kernel.close(write).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = kernel.read(read, &mut buf).map_err(|e| e.to_string())?;
    kernel.close(read).map_err(|e| e.to_string())?;
    assert!(
        matches!(status, Ok(WaitStatus::Terminated(_, s)) if s.returncode() == 0),
        "the forked process spawned and reaped its child: {status:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        "through\n",
        "the child's stdout reached the pipe"
    );
    Ok(())
}

fn main() -> ExitCode {
    let no_pidfd = testing::pidfd_unavailable();
    let pidfd = |test: Test| match &no_pidfd {
        Some(reason) => test.skip_os(reason.clone()),
        None => test,
    };
    // The suite's 1,000 children make a long simulated run per seed (up to 45 s of a
    // debug build for Threaded, which runs a thread per child): two seeds, no trace
    // kept. Pidfd holds a pidfd per running child, up to 1,000 at once besides the
    // loop's own fds: more than the usual soft limit of 1,024, which the simulated
    // process has unless told otherwise. The real OS's limit is the machine's.
    let suite = |name: &str, kind: Kind| {
        Test::both(name, SubprocessSuite(kind))
            .seeds(2)
            .simulation(|seed| {
                Simulation::new(seed).keep_trace(false).faults(FaultPlan {
                    fd_limit: Some(4096),
                    ..FaultPlan::default()
                })
            })
            .check_leaks()
    };
    main_thread_common::main([
        suite("subprocess_safe", Kind::Safe),
        suite("subprocess_fast", Kind::Fast),
        suite("subprocess_multi_loop", Kind::MultiLoop),
        suite("subprocess_threaded", Kind::Threaded),
        pidfd(suite("subprocess_pidfd", Kind::Pidfd)),
        pidfd(
            Test::both("subprocess_from_worker_thread", SubprocessFromWorkerThread).check_leaks(),
        ),
        pidfd(
            Test::both(
                "policy_default_watcher_factory",
                PolicyDefaultWatcherFactory,
            )
            .check_leaks(),
        ),
        Test::both("fast_steals_foreign_child", FastStealsForeignChild).check_leaks(),
        pidfd(
            Test::both(
                "non_stealing_watchers_leave_foreign_child",
                NonStealingWatchersLeaveForeignChild,
            )
            .check_leaks(),
        ),
        Test::both("job_events_under_each_watcher", JobEventsUnderEachWatcher).check_leaks(),
        Test::both(
            "subprocess_spawn_errors_leave_nothing",
            SubprocessSpawnErrorsLeaveNothing,
        )
        .check_leaks(),
        // Real OS only: it forks this process and closes the fork's own stdio; the
        // simulator models one process, whose children run no code.
        Test::new(
            "spawn_with_stdio_closed_in_the_parent",
            spawn_with_stdio_closed_in_the_parent,
        )
        .check_leaks(),
    ])
}
