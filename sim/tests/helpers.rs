//! asyncio's everyday helpers on both kernels: `sleep`, `wait_for`, `create_future`,
//! `gather`/`join_all`, `asyncio::run`, the `SpawnRequest` builder and the spawn
//! error that names the program.
//!
//! Each body runs as `name [os]` on the real OS (on this binary's main thread) and as
//! `name [sim]` on the simulator. Time is only compared on the simulator, where it is
//! virtual; on the real OS the bodies check the order of events alone. What one
//! kernel cannot show is skipped there, with the reason.
//!
//! `cargo test -p loopwatch-sim --test helpers [NAME]`; `LOOPWATCH_SEEDS=N` and
//! `LOOPWATCH_SEED=S` choose the simulator's seeds.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use loopwatch::kernel::{Errno, Kernel, SpawnRequest, Stdio};
use loopwatch::{Error, ErrorKind, EventLoop, Result, asyncio, gather, join_all, policy};
use loopwatch_sim::SimKernel;
use loopwatch_sim::testing::{self, Body, Log, Test};

/// The simulator's kernel, when the body runs there: the only place where loop time
/// may be compared.
fn sim<K: Kernel>(k: &K) -> Option<&SimKernel> {
    (k as &dyn Any).downcast_ref::<SimKernel>()
}

fn new_loop<K: Kernel>(k: &K) -> EventLoop<K> {
    EventLoop::with_kernel(k.clone()).expect("a new loop")
}

/// Records into `log` when dropped: how a test sees that a future was cancelled.
struct DropFlag(Log<&'static str>, &'static str);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.push(self.1);
    }
}

// ----- sleep -----------------------------------------------------------------------

/// Goal: sleeping tasks wake in the order of their deadlines, not of their creation;
/// on the simulator the loop's clock has moved on by the longest delay, at once.
struct SleepOrder;

impl Body for SleepOrder {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let woke = Log::new();
        let start = event_loop.time();
        let tasks = [0.3, 0.1, 0.2]
            .into_iter()
            .map(|delay| {
                let (lp, woke) = (event_loop.clone(), woke.clone());
                event_loop.create_task(async move {
                    lp.sleep(delay).await?;
                    woke.push(delay);
                    // A task's future may give anything, so its error type is named.
                    Ok::<_, Error>(())
                })
            })
            .collect::<Result<Vec<_>>>()
            .unwrap();
        event_loop.try_run_until_complete(gather(tasks)).unwrap();
        assert_eq!(woke.take(), [0.1, 0.2, 0.3]);
        if sim(k).is_some() {
            let elapsed = event_loop.time() - start;
            assert!(
                (0.3..1.0).contains(&elapsed),
                "virtual time passed: {elapsed}"
            );
        }
        event_loop.close().unwrap();
    }
}

/// Goal: `sleep(0)` (and a negative delay) yields to the loop once: a callback
/// scheduled before it runs first, and no timer is involved.
struct SleepZeroYields;

impl Body for SleepZeroYields {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let order = Log::new();
        let (lp, log) = (event_loop.clone(), order.clone());
        event_loop
            .try_run_until_complete(async move {
                let cb = log.clone();
                lp.call_soon(move || cb.push("callback"))?;
                lp.sleep(0.0).await?;
                log.push("after sleep(0)");
                let cb = log.clone();
                lp.call_soon(move || cb.push("second callback"))?;
                lp.sleep(-1.0).await?;
                log.push("after sleep(-1)");
                Ok(())
            })
            .unwrap();
        assert_eq!(
            order.take(),
            [
                "callback",
                "after sleep(0)",
                "second callback",
                "after sleep(-1)"
            ]
        );
        event_loop.close().unwrap();
    }
}

/// Goal: a NaN delay is a ValueError and a sleep on a closed loop a RuntimeError,
/// not a hang; a sleep on another, not-running loop whose timer is dropped by its
/// close ends with RuntimeError too.
struct SleepBadInput;

impl Body for SleepBadInput {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let closed = new_loop(k);
        closed.close().unwrap();
        let lp = event_loop.clone();
        let (nan, on_closed) = event_loop
            .try_run_until_complete(async move {
                Ok((lp.sleep(f64::NAN).await, closed.sleep(1.0).await))
            })
            .unwrap();
        let nan = nan.unwrap_err();
        assert_eq!(nan.kind(), ErrorKind::ValueError);
        let on_closed = on_closed.unwrap_err();
        assert_eq!(
            (on_closed.kind(), on_closed.message()),
            (ErrorKind::RuntimeError, "Event loop is closed")
        );

        // Armed on an idle loop, which is then closed under it.
        let idle = new_loop(k);
        let (sleeping, waker) = (idle.sleep(3600.0), idle.clone());
        let lp = event_loop.clone();
        let outcome = event_loop
            .try_run_until_complete(async move {
                let mut sleeping = std::pin::pin!(sleeping);
                // The first poll arms the timer on the idle loop.
                let first = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(sleeping.as_mut().poll(cx).is_pending())
                })
                .await;
                assert!(first, "a sleep of an hour is pending");
                waker.close()?;
                lp.sleep(0.0).await?;
                Ok(sleeping.await)
            })
            .unwrap();
        assert_eq!(outcome.unwrap_err().message(), "Event loop is closed");
        event_loop.close().unwrap();
    }
}

// ----- wait_for --------------------------------------------------------------------

/// Goal: wait_for gives the output of a future that finishes in time, and
/// TimeoutError after dropping one that does not; a zero timeout polls once, an
/// infinite one waits as long as it takes, and NaN is a ValueError.
struct WaitFor;

impl Body for WaitFor {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let dropped = Log::new();
        let lp = event_loop.clone();
        let log = dropped.clone();
        let start = event_loop.time();
        let (slow, slow_at, quick, instant, never, endless, nan) = event_loop
            .try_run_until_complete(async move {
                let flag = DropFlag(log.clone(), "slow future dropped");
                let lp2 = lp.clone();
                let slow = lp
                    .wait_for(
                        async move {
                            let _flag = flag;
                            lp2.sleep(3600.0).await?;
                            Ok::<_, Error>("too late")
                        },
                        0.05,
                    )
                    .await;
                log.push("wait_for returned");
                let slow_at = lp.time();
                let lp2 = lp.clone();
                let quick = lp
                    .wait_for(
                        async move {
                            lp2.sleep(0.01).await?;
                            Ok::<_, Error>("in time")
                        },
                        3600.0,
                    )
                    .await;
                let instant = lp.wait_for(async { 7 }, 0.0).await;
                let never = lp.wait_for(lp.sleep(0.0), 0.0).await;
                let endless = lp.wait_for(lp.sleep(0.01), f64::INFINITY).await;
                let nan = lp.wait_for(async { 1 }, f64::NAN).await;
                Ok((slow, slow_at, quick, instant, never, endless, nan))
            })
            .unwrap();
        let timeout = slow.unwrap_err();
        assert_eq!(
            (timeout.kind(), timeout.to_string()),
            (ErrorKind::TimeoutError, "TimeoutError".to_string())
        );
        // The inner future is dropped before wait_for returns: that is its cancellation.
        assert_eq!(dropped.take(), ["slow future dropped", "wait_for returned"]);
        assert_eq!(quick.unwrap().unwrap(), "in time");
        assert_eq!(instant.unwrap(), 7);
        assert_eq!(never.unwrap_err().kind(), ErrorKind::TimeoutError);
        endless.unwrap().unwrap();
        assert_eq!(nan.unwrap_err().kind(), ErrorKind::ValueError);
        if sim(k).is_some() {
            let waited = slow_at - start;
            assert!((0.05..1.0).contains(&waited), "timed out after {waited}");
        }
        event_loop.close().unwrap();
    }
}

// ----- create_future ---------------------------------------------------------------

/// Goal: a future from create_future gives what its setter set (from a callback or
/// from another thread), the error of set_exception, or CancelledError; settling it
/// twice, or after a cancel, is InvalidStateError('invalid state'); a future whose
/// setters are all gone is cancelled rather than awaited for ever.
struct CreateFuture;

impl Body for CreateFuture {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);

        // Set from a callback; a second set fails and changes nothing.
        let (future, setter) = event_loop.create_future::<&str>();
        assert!(!future.done() && !setter.done());
        let second = Log::new();
        let record = second.clone();
        event_loop
            .call_soon(move || {
                setter.set_result("first").unwrap();
                let again = setter.set_result("second").unwrap_err();
                record.push((again.kind(), again.message().to_string()));
                let again = setter.set_exception(Error::value("late")).unwrap_err();
                record.push((again.kind(), again.message().to_string()));
                assert!(!setter.cancel(), "a settled future cannot be cancelled");
            })
            .unwrap();
        assert_eq!(event_loop.try_run_until_complete(future).unwrap(), "first");
        let invalid = (ErrorKind::InvalidStateError, "invalid state".to_string());
        assert_eq!(second.take(), [invalid.clone(), invalid.clone()]);

        // set_exception: done, not cancelled, and the error comes out.
        let (future, setter) = event_loop.create_future::<u8>();
        setter.set_exception(Error::value("bad value")).unwrap();
        assert!(future.done() && !future.cancelled());
        let error = event_loop.try_run_until_complete(future).unwrap_err();
        assert_eq!(
            (error.kind(), error.message()),
            (ErrorKind::ValueError, "bad value")
        );

        // cancel: CancelledError for the awaiter, InvalidStateError for the setter.
        let (future, setter) = event_loop.create_future::<u8>();
        assert!(future.cancel());
        assert!(!future.cancel());
        assert!(setter.cancelled() && setter.done());
        let late = setter.set_result(1).unwrap_err();
        assert_eq!((late.kind(), late.message().to_string()), invalid);
        let error = event_loop.try_run_until_complete(future).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::CancelledError);

        // Every setter dropped: cancelled, with a message saying why.
        let (future, setter) = event_loop.create_future::<u8>();
        let copy = setter.clone();
        drop(setter);
        assert!(!future.done(), "a clone still can set it");
        drop(copy);
        assert!(future.cancelled());
        let error = event_loop.try_run_until_complete(future).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::CancelledError);
        assert!(error.message().contains("dropped"), "{error:?}");

        // Set from another thread while the loop waits for it.
        let (future, setter) = event_loop.create_future::<u32>();
        let thread = k
            .spawn_thread("setter", Box::new(move || setter.set_result(99).unwrap()))
            .unwrap();
        assert_eq!(event_loop.try_run_until_complete(future).unwrap(), 99);
        k.join_thread(thread).unwrap();
        event_loop.close().unwrap();
    }
}

// ----- gather and join_all ---------------------------------------------------------

/// Goal: gather gives the values in the order the futures were given, whatever order
/// they finish in; the first error wins and drops (cancels) the futures still
/// running; join_all keeps every output, errors included; nothing to gather is an
/// empty list at once.
struct GatherOrder;

impl Body for GatherOrder {
    fn run<K: Kernel>(&self, k: &K) {
        let event_loop = new_loop(k);
        let dropped = Log::new();
        let lp = event_loop.clone();
        let log = dropped.clone();
        let (values, first_error, all, nothing) = event_loop
            .try_run_until_complete(async move {
                let sleeper = |label: &'static str, delay: f64, outcome: Result<f64>| {
                    let (lp, flag) = (lp.clone(), DropFlag(log.clone(), label));
                    async move {
                        let _flag = flag;
                        lp.sleep(delay).await?;
                        outcome
                    }
                };
                let values = gather([
                    sleeper("3", 0.03, Ok(3.0)),
                    sleeper("1", 0.01, Ok(1.0)),
                    sleeper("2", 0.02, Ok(2.0)),
                ])
                .await;
                log.push("gather returned");
                let first_error = gather([
                    sleeper("hour", 3600.0, Ok(0.0)),
                    sleeper("first", 0.01, Err(Error::value("first"))),
                    sleeper("second", 0.02, Err(Error::value("second"))),
                ])
                .await;
                log.push("gather returned");
                let all = join_all([
                    sleeper("late", 0.02, Err(Error::value("late"))),
                    sleeper("early", 0.01, Ok(1.0)),
                ])
                .await;
                let nothing = gather(Vec::<std::future::Ready<Result<u8>>>::new()).await;
                Ok((values, first_error, all, nothing))
            })
            .unwrap();
        assert_eq!(values.unwrap(), [3.0, 1.0, 2.0]);
        assert_eq!(first_error.unwrap_err().message(), "first");
        // Each future ends (and drops its flag) as it finishes; on the first error
        // the two still sleeping are dropped, in order, before gather returns.
        assert_eq!(
            dropped.take(),
            [
                "1",
                "2",
                "3",
                "gather returned",
                "first",
                "hour",
                "second",
                "gather returned",
                "early",
                "late"
            ]
        );
        assert_eq!(all[0].as_ref().unwrap_err().message(), "late");
        assert_eq!(*all[1].as_ref().unwrap(), 1.0);
        assert!(nothing.unwrap().is_empty());
        event_loop.close().unwrap();
    }
}

// ----- asyncio::run ----------------------------------------------------------------

/// Goal (asyncio.run): the future runs on a new loop that is the running and the
/// current loop meanwhile; afterwards that loop is closed, no loop is current (3.7's
/// set_event_loop(None)), the tasks left pending were cancelled, and a run inside a
/// running loop is refused with CPython's RuntimeError.
struct RunClosesItsLoop;

impl Body for RunClosesItsLoop {
    fn run<K: Kernel>(&self, k: &K) {
        let seen = Log::new();
        let leftover = Log::new();
        let nested = Log::new();
        let (kernel, seen_in, leftover_in, nested_in) =
            (k.clone(), seen.clone(), leftover.clone(), nested.clone());
        let answer = asyncio::run(k, async move {
            let running = policy::get_running_loop(&kernel)?;
            assert!(policy::get_event_loop(&kernel)? == running);
            let current = policy::get_event_loop_policy(&kernel).get_event_loop()?;
            assert!(current == running, "the run's loop is the current loop");
            let lp = running.clone();
            leftover_in.push(running.create_task(async move {
                lp.sleep(3600.0).await?;
                Ok::<_, Error>("never")
            })?);
            let inner_ran = Arc::new(AtomicBool::new(false));
            let flag = inner_ran.clone();
            let refused = asyncio::run(&kernel, async move {
                flag.store(true, Ordering::SeqCst);
                Ok(())
            })
            .unwrap_err();
            assert!(!inner_ran.load(Ordering::SeqCst));
            nested_in.push((refused.kind(), refused.message().to_string()));
            running.sleep(0.0).await?;
            seen_in.push(running);
            Ok(42)
        })
        .unwrap();
        assert_eq!(answer, 42);
        let [used] = <[_; 1]>::try_from(seen.take()).unwrap();
        assert!(used.is_closed() && !used.is_running());
        let [task] = <[_; 1]>::try_from(leftover.take()).unwrap();
        assert!(task.done() && task.cancelled(), "{task:?}");
        assert_eq!(
            nested.take(),
            [(
                ErrorKind::RuntimeError,
                "asyncio.run() cannot be called from a running event loop".to_string()
            )]
        );
        assert!(policy::try_get_running_loop(k).is_none());
        let none = policy::get_event_loop(k).unwrap_err();
        assert_eq!(none.kind(), ErrorKind::RuntimeError, "{none:?}");
    }
}

/// Goal: run gives the future's error, and a panic in the future propagates; either
/// way the loop is closed and unset afterwards.
struct RunFailures;

impl Body for RunFailures {
    fn run<K: Kernel>(&self, k: &K) {
        let seen = Log::new();
        let (kernel, seen_in) = (k.clone(), seen.clone());
        let error = asyncio::run(k, async move {
            seen_in.push(policy::get_running_loop(&kernel)?);
            Err::<(), _>(Error::value("from the future"))
        })
        .unwrap_err();
        assert_eq!(error.message(), "from the future");

        let (kernel, seen_in) = (k.clone(), seen.clone());
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            asyncio::run(k, async move {
                seen_in.push(policy::get_running_loop(&kernel)?);
                panic!("inside run");
                #[allow(unreachable_code)]
                Ok(())
            })
        }));
        assert!(panicked.is_err());
        let loops = seen.take();
        assert_eq!(loops.len(), 2);
        assert!(loops.iter().all(|lp| lp.is_closed() && !lp.is_running()));
        assert!(policy::try_get_running_loop(k).is_none());
        assert!(policy::get_event_loop(k).is_err(), "no loop is current");
    }
}

// ----- subprocesses ----------------------------------------------------------------

/// Runs `request` under `asyncio::run` with the policy's watcher, feeding `input` to
/// stdin, and gives the returncode and stdout; the watcher is closed afterwards.
fn run_child<K: Kernel>(
    k: &K,
    request: SpawnRequest,
    input: Option<&'static [u8]>,
) -> (i32, Vec<u8>) {
    let kernel = k.clone();
    let outcome = asyncio::run(k, async move {
        let event_loop = policy::get_running_loop(&kernel)?;
        let mut process = event_loop.subprocess_exec(&request)?;
        let (out, _) = process.communicate(input).await?;
        Ok((process.wait().await, out))
    });
    policy::set_child_watcher(k, None).unwrap();
    outcome.unwrap()
}

/// Goal: the builder's arguments and stdio choices reach the child: `arg` and `args`
/// append in order, a piped stdin and stdout carry the data, a null stderr is
/// accepted.
struct BuilderArgsAndPipes;

impl Body for BuilderArgsAndPipes {
    fn run<K: Kernel>(&self, k: &K) {
        let echo = SpawnRequest::new("/bin/echo", ["one"])
            .arg("two")
            .args(["three", "four"])
            .stdout(Stdio::Pipe);
        assert_eq!(
            run_child(k, echo, None),
            (0, b"one two three four\n".to_vec())
        );
        let cat = SpawnRequest::new("/bin/cat", [] as [&str; 0])
            .stdin(Stdio::Pipe)
            .stdout(Stdio::Pipe)
            .stderr(Stdio::Null);
        assert_eq!(
            run_child(k, cat, Some(b"through the pipes")),
            (0, b"through the pipes".to_vec())
        );
    }
}

/// A variable of this process's environment that a shell script can name and that
/// the shell does not set itself, to check that `env_remove` keeps it from the child.
fn inherited_variable() -> Option<String> {
    const SHELL_OWN: [&str; 6] = ["PWD", "OLDPWD", "SHLVL", "_", "IFS", "PPID"];
    std::env::vars_os()
        .filter_map(|(key, _)| key.into_string().ok())
        .find(|key| {
            !SHELL_OWN.contains(&key.as_str())
                && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Goal: the builder's environment and working directory reach the child: `env`
/// sets (the last value wins), `env_remove` removes an inherited variable and one set
/// earlier, `env_clear` leaves only what is set after it, `current_dir` is the
/// child's cwd.
struct BuilderEnvAndCwd;

impl Body for BuilderEnvAndCwd {
    fn run<K: Kernel>(&self, k: &K) {
        let inherited = inherited_variable().expect("the test runs with some environment");
        let script =
            format!("echo \"$1|$GREETING|${{DROPPED-unset}}|${{{inherited}-unset}}\"; pwd");
        let request = SpawnRequest::new("/bin/sh", ["-c", script.as_str(), "sh"])
            .arg("first")
            .env("GREETING", "hi")
            .env("GREETING", "hello")
            .env("DROPPED", "1")
            .env_remove("DROPPED")
            .env_remove(inherited.as_str())
            .current_dir("/")
            .stdout(Stdio::Pipe);
        let (code, out) = run_child(k, request, None);
        assert_eq!(code, 0);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "first|hello|unset|unset\n/\n"
        );

        let keep = SpawnRequest::new(
            "/bin/sh",
            ["-c", &format!("echo \"${{{inherited}-unset}}\"")],
        )
        .stdout(Stdio::Pipe);
        let (_, out) = run_child(k, keep, None);
        assert_ne!(
            out, b"unset\n",
            "without env_remove, {inherited} is inherited"
        );

        let clear = SpawnRequest::new("/usr/bin/env", [] as [&str; 0])
            .env("FORGOTTEN", "1")
            .env_clear()
            .env("ONLY", "1")
            .stdout(Stdio::Pipe);
        assert_eq!(run_child(k, clear, None), (0, b"ONLY=1\n".to_vec()));
    }
}

/// Goal: a program that does not exist gives Os(ENOENT) (FileNotFoundError) whose
/// message names it, as CPython's does, and leaves no child or fd behind.
struct SpawnErrorNamesTheProgram;

impl Body for SpawnErrorNamesTheProgram {
    fn run<K: Kernel>(&self, k: &K) {
        let kernel = k.clone();
        let error = asyncio::run(k, async move {
            let event_loop = policy::get_running_loop(&kernel)?;
            let request = SpawnRequest::new("loopwatch-no-such-program", ["--flag"])
                .stdin(Stdio::Pipe)
                .stdout(Stdio::Pipe);
            event_loop
                .subprocess_exec(&request)
                .map(|process| process.pid())
        })
        .unwrap_err();
        policy::set_child_watcher(k, None).unwrap();
        assert_eq!(error.kind(), ErrorKind::Os(Errno::ENOENT));
        assert_eq!(error.errno(), Some(Errno::ENOENT));
        assert_eq!(
            error.message(),
            "[Errno 2] No such file or directory: 'loopwatch-no-such-program'"
        );
    }
}

/// Goal: a file that is not executable gives Os(EACCES) (PermissionError) naming it.
struct SpawnErrorPermission;

impl Body for SpawnErrorPermission {
    fn run<K: Kernel>(&self, k: &K) {
        let kernel = k.clone();
        let error = asyncio::run(k, async move {
            let event_loop = policy::get_running_loop(&kernel)?;
            let request = SpawnRequest::new("/etc/passwd", [] as [&str; 0]);
            event_loop
                .subprocess_exec(&request)
                .map(|process| process.pid())
        })
        .unwrap_err();
        policy::set_child_watcher(k, None).unwrap();
        assert_eq!(error.kind(), ErrorKind::Os(Errno::EACCES));
        assert_eq!(
            error.message(),
            "[Errno 13] Permission denied: '/etc/passwd'"
        );
    }
}

fn main() -> ExitCode {
    const NO_ENV_MODEL: &str = "the simulated process's environment is its own (empty at \
        start), not this process's, and the simulator's shell has no `$1`, `${NAME-word}` or \
        `pwd`, nor an `env` program (see loopwatch_sim::program)";
    testing::main([
        Test::both("sleep_wakes_in_deadline_order", SleepOrder).check_leaks(),
        Test::both("sleep_zero_yields_once", SleepZeroYields).check_leaks(),
        Test::both("sleep_bad_input_and_closed_loop", SleepBadInput).check_leaks(),
        Test::both("wait_for_timeout_and_success", WaitFor).check_leaks(),
        Test::both("create_future_set_cancel_and_double_set", CreateFuture).check_leaks(),
        Test::both("gather_and_join_all_keep_order", GatherOrder).check_leaks(),
        Test::both("run_closes_its_loop_and_refuses_nesting", RunClosesItsLoop).check_leaks(),
        Test::both("run_gives_errors_and_panics_after_closing", RunFailures).check_leaks(),
        Test::both(
            "builder_args_and_pipes_reach_the_child",
            BuilderArgsAndPipes,
        )
        .check_leaks(),
        Test::both("builder_env_and_cwd_reach_the_child", BuilderEnvAndCwd)
            .skip_sim(NO_ENV_MODEL)
            .check_leaks(),
        Test::both("spawn_enoent_names_the_program", SpawnErrorNamesTheProgram).check_leaks(),
        Test::both("spawn_eacces_names_the_program", SpawnErrorPermission)
            .skip_sim("the simulator has no file permissions: every unknown program is ENOENT")
            .check_leaks(),
    ])
}
