//! Tests that need the process's main thread, on the real OS.
//!
//! cargo's test harness runs tests in worker threads, where the default policy never
//! creates loops and signal handlers cannot be installed. This binary has no harness
//! (`harness = false`): `main` runs each test in turn on the main thread, one at a
//! time, so process-wide state (the policy slot, signal dispositions, the fd table)
//! is this test's alone. It ends with the line `N passed, M failed`.
//!
//! Run it alone with `cargo test -p loopwatch --test main_thread`; name tests as
//! arguments to run only those.

#[path = "../../examples/custom_policy.rs"]
mod custom_policy;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use loopwatch::kernel::{
    Clock, Disposition, Fds, Pid, Processes, Signal, Signals, SpawnRequest, Stdio, Threads,
    WaitMode, WaitStatus,
};
use loopwatch::policy::base;
use loopwatch::{
    AbstractEventLoopPolicy, ChildWatcher, DefaultEventLoopPolicy, ErrorKind, EventLoop, OsKernel,
    PolicyState, Result, WatcherRef,
};

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;
type Test = (&'static str, fn() -> TestResult);

fn main() {
    let tests: &[Test] = &[
        ("get_event_loop", get_event_loop),
        (
            "get_event_loop_calls_set_event_loop",
            get_event_loop_calls_set_event_loop,
        ),
        (
            "get_event_loop_after_set_none_main_thread",
            get_event_loop_after_set_none_main_thread,
        ),
        (
            "set_none_before_first_get_disables_creation",
            set_none_before_first_get_disables_creation,
        ),
        (
            "set_event_loop_policy_none_gives_fresh_default",
            set_event_loop_policy_none_gives_fresh_default,
        ),
        (
            "custom_policy_override_is_used",
            custom_policy_override_is_used,
        ),
        (
            "signal_handler_delivers_on_raise",
            signal_handler_delivers_on_raise,
        ),
        (
            "signal_handler_wakes_loop_blocked_in_poll",
            signal_handler_wakes_loop_blocked_in_poll,
        ),
        (
            "remove_signal_handler_restores_previous_disposition",
            remove_signal_handler_restores_previous_disposition,
        ),
        (
            "uncatchable_signal_is_runtime_error",
            uncatchable_signal_is_runtime_error,
        ),
        (
            "close_and_drop_restore_dispositions",
            close_and_drop_restore_dispositions,
        ),
        (
            "forked_child_does_not_see_running_loop",
            forked_child_does_not_see_running_loop,
        ),
        ("loop_life_leaks_nothing", loop_life_leaks_nothing),
        ("subprocess_safe", || {
            subprocess_suite(Arc::new(loopwatch::SafeChildWatcher::new()))
        }),
        ("subprocess_fast", || {
            subprocess_suite(Arc::new(loopwatch::FastChildWatcher::new()))
        }),
        ("subprocess_multi_loop", || {
            subprocess_suite(Arc::new(loopwatch::watcher::MultiLoopChildWatcher::new()))
        }),
        ("subprocess_threaded", || {
            subprocess_suite(Arc::new(loopwatch::ThreadedChildWatcher::new()))
        }),
        ("subprocess_pidfd", || {
            subprocess_suite(Arc::new(loopwatch::PidfdChildWatcher::new()))
        }),
        (
            "subprocess_from_worker_thread",
            subprocess_from_worker_thread,
        ),
        (
            "policy_default_watcher_factory",
            policy_default_watcher_factory,
        ),
        ("fast_steals_foreign_child", fast_steals_foreign_child),
        (
            "non_stealing_watchers_leave_foreign_child",
            non_stealing_watchers_leave_foreign_child,
        ),
        (
            "subprocess_spawn_errors_leave_nothing",
            subprocess_spawn_errors_leave_nothing,
        ),
        (
            "finding_09_safe_panic_does_not_hide_coalesced_exits",
            || {
                finding_09_panic_does_not_hide_coalesced_exits(Arc::new(
                    loopwatch::SafeChildWatcher::new(),
                ))
            },
        ),
        (
            "finding_09_fast_panic_does_not_hide_coalesced_exits",
            || {
                finding_09_panic_does_not_hide_coalesced_exits(Arc::new(
                    loopwatch::FastChildWatcher::new(),
                ))
            },
        ),
        (
            "finding_11_multi_loop_close_returns_while_a_forked_child_lives",
            finding_11_multi_loop_close_returns_while_a_forked_child_lives,
        ),
        (
            "finding_13_reaper_dropping_the_last_handle_closes_cleanly",
            finding_13_reaper_dropping_the_last_handle_closes_cleanly,
        ),
        (
            "finding_14_callback_may_ask_for_the_watcher_being_attached",
            finding_14_callback_may_ask_for_the_watcher_being_attached,
        ),
        (
            "finding_01_two_loops_sigchld_close_first_added_first",
            || finding_01_two_loops_sigchld(true),
        ),
        (
            "finding_01_two_loops_sigchld_close_last_added_first",
            || finding_01_two_loops_sigchld(false),
        ),
        (
            "finding_02_two_multi_loop_watchers_close_first_first",
            || finding_02_two_multi_loop_watchers(true),
        ),
        (
            "finding_02_two_multi_loop_watchers_close_second_first",
            || finding_02_two_multi_loop_watchers(false),
        ),
        (
            "finding_10_forked_child_drops_the_parents_signal_wiring",
            finding_10_forked_child_drops_the_parents_signal_wiring,
        ),
        (
            "finding_16_foreign_sigchld_handler_after_attach_safe",
            || {
                finding_16_foreign_sigchld_handler_after_attach(Arc::new(
                    loopwatch::SafeChildWatcher::new(),
                ))
            },
        ),
        (
            "finding_16_foreign_sigchld_handler_after_attach_fast",
            || {
                finding_16_foreign_sigchld_handler_after_attach(Arc::new(
                    loopwatch::FastChildWatcher::new(),
                ))
            },
        ),
        (
            "finding_16_foreign_sigchld_handler_after_attach_multi_loop",
            || {
                finding_16_foreign_sigchld_handler_after_attach(Arc::new(
                    loopwatch::watcher::MultiLoopChildWatcher::new(),
                ))
            },
        ),
        (
            "spawn_with_stdio_closed_in_the_parent",
            spawn_with_stdio_closed_in_the_parent,
        ),
    ];
    // Reliability finding 7: the tests below rely on these signals' default actions
    // (SIGCHLD reaches the watchers; a child spawned without `restore_signals` is
    // killed by SIGTERM). A binary started under `nohup` or as a background job may
    // inherit some of them ignored; a handler cannot be inherited, so SIG_IGN is all
    // there is to undo.
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTERM,
    ] {
        if OsKernel.disposition(signal) == Ok(Disposition::Ignore) {
            OsKernel
                .set_disposition(signal, Disposition::Default)
                .expect("reset an ignored signal to its default");
        }
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        // Each test starts from a fresh default policy.
        loopwatch::set_event_loop_policy(None);
        let outcome = catch_unwind(AssertUnwindSafe(test));
        match outcome {
            Ok(Ok(())) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Ok(Err(error)) => {
                failed += 1;
                println!("test {name} ... FAILED: {error}");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED (panicked, message above)");
            }
        }
    }
    loopwatch::set_event_loop_policy(None);
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

fn check(condition: bool, what: &str) -> TestResult {
    if condition { Ok(()) } else { Err(what.into()) }
}

fn get_event_loop() -> TestResult {
    // Port of test_get_event_loop (C-2): in the main thread a fresh policy creates a
    // loop on first use and returns the same one afterwards.
    let kernel = OsKernel;
    check(kernel.is_main_thread(), "runs on the main thread")?;
    let policy = DefaultEventLoopPolicy::new();
    let first = policy.get_event_loop()?;
    let second = policy.get_event_loop()?;
    check(first == second, "same loop twice")?;
    first.close()?;
    Ok(())
}

fn get_event_loop_calls_set_event_loop() -> TestResult {
    // Port of test_get_event_loop_calls_set_event_loop (C-2): creation goes through
    // self.set_event_loop(self.new_event_loop()), so overrides see it.
    struct Spy {
        state: PolicyState,
        set_with: loopwatch_test_slot::Slot<Option<EventLoop>>,
    }
    impl AbstractEventLoopPolicy for Spy {
        fn state(&self) -> Option<&PolicyState> {
            Some(&self.state)
        }
        fn set_event_loop(&self, event_loop: Option<EventLoop>) -> Result<()> {
            self.set_with.push(event_loop.clone());
            base::set_event_loop(self, event_loop)
        }
    }
    let spy = Spy {
        state: PolicyState::new(OsKernel),
        set_with: Default::default(),
    };
    let created = spy.get_event_loop()?;
    let calls = spy.set_with.take();
    check(calls.len() == 1, "set_event_loop called once")?;
    check(calls[0].as_ref() == Some(&created), "with the created loop")?;
    spy.get_event_loop()?;
    check(spy.set_with.take().is_empty(), "not again")?;
    created.close()?;
    Ok(())
}

fn get_event_loop_after_set_none_main_thread() -> TestResult {
    // Port of test_get_event_loop_after_set_none (C-3, C-4) in the main thread: the
    // message names 'MainThread'.
    let policy = DefaultEventLoopPolicy::new();
    let created = policy.get_event_loop()?;
    policy.set_event_loop(None)?;
    let err = policy.get_event_loop().unwrap_err();
    check(err.kind() == ErrorKind::RuntimeError, "RuntimeError")?;
    check(
        err.message() == "There is no current event loop in thread 'MainThread'.",
        "CPython's message",
    )?;
    created.close()?;
    Ok(())
}

fn set_none_before_first_get_disables_creation() -> TestResult {
    // Goal (C-4): set_event_loop(None) before any get stops auto-creation for good.
    let policy = DefaultEventLoopPolicy::new();
    policy.set_event_loop(None)?;
    for _ in 0..2 {
        check(policy.get_event_loop().is_err(), "never creates")?;
    }
    Ok(())
}

fn set_event_loop_policy_none_gives_fresh_default() -> TestResult {
    // Goal (P-3): after set_event_loop_policy(None) the new default policy has none of
    // the old one's loops: the main thread gets a different, new loop.
    let first = loopwatch::get_event_loop()?;
    loopwatch::set_event_loop_policy(None);
    let second = loopwatch::get_event_loop()?;
    check(first != second, "fresh policy, fresh loop")?;
    first.close()?;
    second.close()?;
    Ok(())
}

fn custom_policy_override_is_used() -> TestResult {
    // Goal (seed "Custom Policies", C-2): with MyEventLoopPolicy installed, the module
    // get_event_loop() goes through its override, which calls the default behaviour.
    let policy = Arc::new(custom_policy::MyEventLoopPolicy::new());
    loopwatch::set_event_loop_policy(Some(policy.clone()));
    let event_loop = loopwatch::get_event_loop()?;
    check(policy.calls.load(Ordering::SeqCst) == 1, "override ran")?;
    check(event_loop.get_debug(), "override's change is visible")?;
    check(loopwatch::get_event_loop()? == event_loop, "same loop")?;
    check(
        policy.calls.load(Ordering::SeqCst) == 2,
        "override ran again",
    )?;
    event_loop.close()?;
    Ok(())
}

fn signal_handler_delivers_on_raise() -> TestResult {
    // Goal: add_signal_handler(SIGUSR1) runs the callback in the loop after raise;
    // adding again replaces the handler.
    let kernel = OsKernel;
    let event_loop = EventLoop::new()?;
    let calls = Arc::new(AtomicUsize::new(0));
    let (count, lp) = (calls.clone(), event_loop.clone());
    let first =
        event_loop.add_signal_handler(Signal::SIGUSR1, || panic!("replaced handler ran"))?;
    event_loop.add_signal_handler(Signal::SIGUSR1, move || {
        count.fetch_add(1, Ordering::SeqCst);
        lp.stop();
    })?;
    check(first.cancelled(), "replaced handle is cancelled")?;
    event_loop.call_soon(move || kernel.raise(Signal::SIGUSR1).expect("raise"))?;
    event_loop.run_forever()?;
    check(calls.load(Ordering::SeqCst) == 1, "handler ran once")?;
    check(
        event_loop.remove_signal_handler(Signal::SIGUSR1)?,
        "was set",
    )?;
    check(
        !event_loop.remove_signal_handler(Signal::SIGUSR1)?,
        "now gone",
    )?;
    event_loop.close()?;
    Ok(())
}

fn signal_handler_wakes_loop_blocked_in_poll() -> TestResult {
    // Goal: a signal sent from another thread while the loop is blocked in poll (no
    // timers, nothing ready) wakes it through the wakeup fd.
    let kernel = OsKernel;
    let event_loop = EventLoop::new()?;
    let lp = event_loop.clone();
    event_loop.add_signal_handler(Signal::SIGUSR2, move || lp.stop())?;
    let sender = kernel.spawn_thread(
        "signal-sender",
        Box::new(move || {
            let pid = kernel.getpid();
            kernel.kill(pid, Some(Signal::SIGUSR2)).expect("kill");
        }),
    )?;
    event_loop.run_forever()?;
    kernel.join_thread(sender).map_err(|_| "sender panicked")?;
    event_loop.remove_signal_handler(Signal::SIGUSR2)?;
    event_loop.close()?;
    Ok(())
}

fn remove_signal_handler_restores_previous_disposition() -> TestResult {
    // Goal: remove_signal_handler puts back what was there before add, here SIG_IGN
    // and then SIG_DFL, and the wakeup fd is released once no handler is left.
    let kernel = OsKernel;
    let event_loop = EventLoop::new()?;
    let before = kernel.set_disposition(Signal::SIGUSR1, Disposition::Ignore)?;
    event_loop.add_signal_handler(Signal::SIGUSR1, || {})?;
    check(
        kernel.disposition(Signal::SIGUSR1)? == Disposition::Wakeup,
        "handler installed",
    )?;
    check(
        kernel.set_wakeup_fd(None)?.is_some(),
        "wakeup fd set by the loop",
    )?;
    // Put it back for the loop (set_wakeup_fd(None) above only looked).
    event_loop.remove_signal_handler(Signal::SIGUSR1)?;
    check(
        kernel.disposition(Signal::SIGUSR1)? == Disposition::Ignore,
        "SIG_IGN restored",
    )?;
    kernel.set_disposition(Signal::SIGUSR1, before)?;
    event_loop.add_signal_handler(Signal::SIGUSR1, || {})?;
    event_loop.remove_signal_handler(Signal::SIGUSR1)?;
    check(
        kernel.disposition(Signal::SIGUSR1)? == Disposition::Default,
        "SIG_DFL restored",
    )?;
    check(kernel.set_wakeup_fd(None)?.is_none(), "wakeup fd released")?;
    event_loop.close()?;
    Ok(())
}

fn uncatchable_signal_is_runtime_error() -> TestResult {
    // Goal: as CPython, an uncatchable signal is RuntimeError 'sig 9 cannot be caught'
    // and leaves no wakeup fd behind.
    let kernel = OsKernel;
    let event_loop = EventLoop::new()?;
    let err = event_loop
        .add_signal_handler(Signal::SIGKILL, || {})
        .unwrap_err();
    check(err.kind() == ErrorKind::RuntimeError, "RuntimeError")?;
    check(
        err.message() == "sig 9 cannot be caught",
        "CPython's message",
    )?;
    check(
        kernel.set_wakeup_fd(None)?.is_none(),
        "wakeup fd not left set",
    )?;
    event_loop.close()?;
    Ok(())
}

fn close_and_drop_restore_dispositions() -> TestResult {
    // Goal: close() removes the loop's signal handlers, and so does dropping a loop
    // that was never closed.
    let kernel = OsKernel;
    let event_loop = EventLoop::new()?;
    event_loop.add_signal_handler(Signal::SIGUSR1, || {})?;
    event_loop.close()?;
    check(
        kernel.disposition(Signal::SIGUSR1)? == Disposition::Default,
        "close restored",
    )?;
    let dropped = EventLoop::new()?;
    dropped.add_signal_handler(Signal::SIGUSR2, || {})?;
    drop(dropped);
    check(
        kernel.disposition(Signal::SIGUSR2)? == Disposition::Default,
        "drop restored",
    )?;
    check(kernel.set_wakeup_fd(None)?.is_none(), "wakeup fd released")?;
    Ok(())
}

fn forked_child_does_not_see_running_loop() -> TestResult {
    // Port of test_get_event_loop_new_process (P-5): a child forked while a loop runs
    // does not see the parent's running loop, and can run a new loop of its own.
    let kernel = OsKernel;
    let event_loop = EventLoop::new()?;
    let child_pid = Arc::new(AtomicUsize::new(0));
    let (slot, lp) = (child_pid.clone(), event_loop.clone());
    event_loop.call_soon(move || {
        // SAFETY: this binary is single-threaded here (tests run one at a time on the
        // main thread and join what they start), so the child may run Rust code.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match child_after_fork() {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(_) => 2,
            };
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) };
        }
        slot.store(pid as usize, Ordering::SeqCst);
        lp.stop();
    })?;
    event_loop.run_forever()?;
    let pid = Pid(child_pid.load(Ordering::SeqCst) as i32);
    check(pid.0 > 0, "fork succeeded")?;
    match kernel.wait_pid(pid, WaitMode::Block)? {
        WaitStatus::Terminated(_, status) => check(
            status.returncode() == 0,
            &format!("child reported returncode {}", status.returncode()),
        )?,
        WaitStatus::StillAlive => return Err("blocking wait returned early".into()),
    }
    event_loop.close()?;
    Ok(())
}

fn child_after_fork() -> Result<bool> {
    if loopwatch::try_get_running_loop().is_some() {
        return Ok(false);
    }
    let event_loop = loopwatch::new_event_loop()?;
    loopwatch::set_event_loop(Some(event_loop.clone()))?;
    let hello = event_loop.run_until_complete(async { "hello" })?;
    event_loop.close()?;
    Ok(hello == "hello")
}

fn loop_life_leaks_nothing() -> TestResult {
    // Goal: a loop's whole life (create, run callbacks, timers, a task, a reader, a
    // signal handler, threadsafe calls from a thread, close) leaves the fd table,
    // the thread count and the child list as they were.
    let kernel = OsKernel;
    let fds_before = count_entries("/proc/self/fd")?;
    let threads_before = count_entries("/proc/self/task")?;
    let children_before = children()?;
    {
        let event_loop = EventLoop::new()?;
        let (read, write) = kernel.pipe()?;
        let got = Arc::new(AtomicBool::new(false));
        let (flag, lp) = (got.clone(), event_loop.clone());
        event_loop.add_reader(read, move || {
            let mut buf = [0u8; 8];
            let _ = kernel.read(read, &mut buf);
            flag.store(true, Ordering::SeqCst);
            lp.remove_reader(read).expect("remove_reader");
        })?;
        event_loop.add_signal_handler(Signal::SIGUSR1, || {})?;
        event_loop.call_later(0.001, move || {
            kernel.write(write, b"x").expect("write");
        })?;
        let remote = event_loop.clone();
        let thread = kernel.spawn_thread(
            "leak-check",
            Box::new(move || {
                remote.call_soon_threadsafe(|| {}).expect("threadsafe");
            }),
        )?;
        let task = event_loop.create_task(async { 5 })?;
        let out = event_loop.run_until_complete(async move {
            let value = task.await.expect("task");
            while !got.load(Ordering::SeqCst) {
                loopwatch_test_slot::yield_now().await;
            }
            value
        })?;
        check(out == 5, "task output")?;
        kernel.join_thread(thread).map_err(|_| "thread panicked")?;
        event_loop.close()?;
        kernel.close(read)?;
        kernel.close(write)?;
    }
    check(
        count_entries("/proc/self/fd")? == fds_before,
        "fd count back to where it was",
    )?;
    check(
        count_entries("/proc/self/task")? == threads_before,
        "no stray threads",
    )?;
    check(children()? == children_before, "no children left")?;
    Ok(())
}

fn sh(script: &str) -> SpawnRequest {
    SpawnRequest::new("/bin/sh", ["-c", script])
}

fn with_pipes(mut request: SpawnRequest, stdin: bool, stdout: bool, stderr: bool) -> SpawnRequest {
    if stdin {
        request.stdin = Stdio::Pipe;
    }
    if stdout {
        request.stdout = Stdio::Pipe;
    }
    if stderr {
        request.stderr = Stdio::Pipe;
    }
    request
}

/// The main thread's loop with `watcher` installed as the policy's and attached, as
/// CPython's SubprocessWatcherMixin sets up.
fn install(watcher: WatcherRef) -> Result<EventLoop> {
    let event_loop = loopwatch::new_event_loop()?;
    loopwatch::set_event_loop(Some(event_loop.clone()))?;
    loopwatch::set_child_watcher(Some(watcher.clone()))?;
    watcher.attach_loop(Some(event_loop.clone()))?;
    Ok(event_loop)
}

fn uninstall(event_loop: EventLoop) -> TestResult {
    loopwatch::set_child_watcher(None)?;
    loopwatch::set_event_loop(None)?;
    event_loop.close()?;
    Ok(())
}

fn subprocess_suite(watcher: WatcherRef) -> TestResult {
    // Goal (L-1 … L-4, R-1): CPython's subprocess tests in spirit, for one watcher:
    // exit codes, kill/terminate, captured stdout/stderr, communicate with input, and
    // 1,000 concurrent children; afterwards no zombies, no new fds, no stray threads.
    let fds_before = count_entries("/proc/self/fd")?;
    let threads_before = count_entries("/proc/self/task")?;
    let event_loop = install(watcher)?;
    let lp = event_loop.clone();
    let outcome: Result<Vec<String>> = event_loop.run_until_complete(async move {
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
        let mut echo =
            lp.subprocess_exec(&with_pipes(sh("echo out; echo err >&2"), false, true, true))?;
        let (out, err) = echo.communicate(None).await?;
        expect("stdout captured", out == b"out\n");
        expect("stderr captured", err == b"err\n");
        let mut cat = lp.subprocess_exec(&with_pipes(
            SpawnRequest::new("cat", Vec::<String>::new()),
            true,
            true,
            false,
        ))?;
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (out, _) = cat.communicate(Some(&big)).await?;
        expect("communicate round-trips 200 kB", out == big);
        expect("cat exits 0", cat.returncode() == Some(0));
        let mut cat = lp.subprocess_exec(&with_pipes(
            SpawnRequest::new("cat", Vec::<String>::new()),
            true,
            true,
            false,
        ))?;
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
            many.push(lp.subprocess_exec(&SpawnRequest::new("/bin/true", Vec::<String>::new()))?);
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
        Ok(problems)
    })?;
    uninstall(event_loop)?;
    let problems = outcome?;
    check(problems.is_empty(), &format!("{problems:?}"))?;
    check(children()?.is_empty(), "no children left")?;
    check(
        count_entries("/proc/self/fd")? == fds_before,
        "fd count back",
    )?;
    check(
        count_entries("/proc/self/task")? == threads_before,
        "no stray threads",
    )?;
    Ok(())
}

fn subprocess_from_worker_thread() -> TestResult {
    // Goal (L-4): from a loop in a worker thread, Safe and Fast attached to nothing
    // refuse with the documented error before spawning; MultiLoop attached from the
    // main thread delivers to the worker's loop.
    let kernel = OsKernel;
    for (name, watcher) in [
        (
            "safe",
            Arc::new(loopwatch::SafeChildWatcher::new()) as WatcherRef,
        ),
        (
            "fast",
            Arc::new(loopwatch::FastChildWatcher::new()) as WatcherRef,
        ),
    ] {
        loopwatch::set_child_watcher(Some(watcher))?;
        let outcome = in_worker(|event_loop| {
            let lp = event_loop.clone();
            event_loop.run_until_complete(async move {
                lp.subprocess_exec(&sh("exit 0"))
                    .map(|p| p.pid())
                    .map_err(|e| e.message().to_string())
            })
        })??;
        // CPython's message, then what to do.
        check(
            outcome.as_ref().err().is_some_and(|m| m.starts_with(
                "asyncio.get_child_watcher() is not activated, subprocess support is not installed. ",
            )),
            &format!("{name}: {outcome:?}"),
        )?;
        check(children()?.is_empty(), "nothing was spawned")?;
        loopwatch::set_child_watcher(None)?;
    }
    for (name, watcher) in [
        (
            "multi-loop",
            Arc::new(loopwatch::watcher::MultiLoopChildWatcher::new()) as WatcherRef,
        ),
        (
            "threaded",
            Arc::new(loopwatch::ThreadedChildWatcher::new()) as WatcherRef,
        ),
        (
            "pidfd",
            Arc::new(loopwatch::PidfdChildWatcher::new()) as WatcherRef,
        ),
    ] {
        loopwatch::set_child_watcher(Some(watcher.clone()))?;
        // From the main thread, as the policy would; a no-op for Threaded and Pidfd.
        watcher.attach_loop(None)?;
        let code = in_worker(|event_loop| {
            let lp = event_loop.clone();
            event_loop.run_until_complete(async move {
                match lp.subprocess_exec(&sh("exit 7")) {
                    Ok(process) => process.wait().await,
                    Err(_) => -1000,
                }
            })
        })?;
        check(code == Ok(7), &format!("{name} from a worker: {code:?}"))?;
        loopwatch::set_child_watcher(None)?;
    }
    let _ = kernel;
    Ok(())
}

/// Runs `body` with a fresh loop in a new thread and returns its result.
fn in_worker<T: Send + 'static>(
    body: impl FnOnce(&EventLoop) -> Result<T> + Send + 'static,
) -> std::result::Result<Result<T>, Box<dyn std::error::Error>> {
    let kernel = OsKernel;
    let slot = Arc::new(loopwatch_test_slot::Slot::default());
    let out = slot.clone();
    let handle = kernel.spawn_thread(
        "Worker-S",
        Box::new(move || {
            let result = EventLoop::new().and_then(|event_loop| {
                let result = body(&event_loop);
                event_loop.close()?;
                result
            });
            out.push(result);
        }),
    )?;
    kernel.join_thread(handle).map_err(|_| "worker panicked")?;
    Ok(slot.take().pop().ok_or("no result")?)
}

fn fast_steals_foreign_child() -> TestResult {
    // Goal (F-5, spec "steals"): a child spawned by other code is reaped by Fast's
    // waitpid(-1) when any SIGCHLD is handled; the other code then gets ECHILD.
    let kernel = OsKernel;
    let watcher = Arc::new(loopwatch::FastChildWatcher::new());
    let event_loop = install(watcher.clone())?;
    let foreign = kernel.spawn(&sh("exit 4"))?;
    let lp = event_loop.clone();
    let code = event_loop.run_until_complete(async move {
        // Our own child's SIGCHLD makes Fast reap everything that has exited.
        let ours = lp.subprocess_exec(&sh("sleep 0.2; exit 0")).expect("spawn");
        ours.wait().await
    })?;
    check(code == 0, "our child reported")?;
    let theirs = kernel.wait_pid(foreign.pid, WaitMode::NoHang);
    check(
        theirs == Err(loopwatch::kernel::Errno::ECHILD),
        &format!("the foreign child was stolen: {theirs:?}"),
    )?;
    uninstall(event_loop)
}

fn non_stealing_watchers_leave_foreign_child() -> TestResult {
    // Goal (S-6, M-6, T-4, K-4): Safe, MultiLoop, Threaded and Pidfd never wait for a
    // pid they were not given: the foreign child stays a zombie for its owner to reap.
    let kernel = OsKernel;
    for watcher in [
        Arc::new(loopwatch::SafeChildWatcher::new()) as WatcherRef,
        Arc::new(loopwatch::watcher::MultiLoopChildWatcher::new()) as WatcherRef,
        Arc::new(loopwatch::ThreadedChildWatcher::new()) as WatcherRef,
        Arc::new(loopwatch::PidfdChildWatcher::new()) as WatcherRef,
    ] {
        let event_loop = install(watcher)?;
        let foreign = kernel.spawn(&sh("exit 4"))?;
        let lp = event_loop.clone();
        let code = event_loop.run_until_complete(async move {
            let ours = lp.subprocess_exec(&sh("sleep 0.2; exit 0")).expect("spawn");
            ours.wait().await
        })?;
        check(code == 0, "our child reported")?;
        let theirs = kernel.wait_pid(foreign.pid, WaitMode::NoHang)?;
        check(
            matches!(theirs, WaitStatus::Terminated(_, s) if s.returncode() == 4),
            &format!("the foreign child is still ours to reap: {theirs:?}"),
        )?;
        uninstall(event_loop)?;
    }
    Ok(())
}

fn policy_default_watcher_factory() -> TestResult {
    // Goal: a policy built with a watcher factory hands out that watcher (here Pidfd)
    // without a custom policy class, and subprocesses use it.
    let factory: loopwatch::WatcherFactory =
        Arc::new(|_: &OsKernel| Arc::new(loopwatch::PidfdChildWatcher::new()) as WatcherRef);
    let policy = Arc::new(DefaultEventLoopPolicy::with_watcher_factory(
        OsKernel, factory,
    ));
    loopwatch::set_event_loop_policy(Some(policy.clone()));
    check(
        policy.state().and_then(|s| s.current_watcher()).is_none(),
        "none until asked (D-1)",
    )?;
    let watcher = loopwatch::get_child_watcher()?;
    check(
        watcher.type_name().contains("PidfdChildWatcher"),
        watcher.type_name(),
    )?;
    let event_loop = loopwatch::new_event_loop()?;
    loopwatch::set_event_loop(Some(event_loop.clone()))?;
    let lp = event_loop.clone();
    let code = event_loop.run_until_complete(async move {
        lp.subprocess_exec(&sh("exit 9"))
            .expect("spawn")
            .wait()
            .await
    })?;
    check(code == 9, "pidfd watcher delivered")?;
    loopwatch::set_child_watcher(None)?;
    event_loop.close()?;
    Ok(())
}

fn subprocess_spawn_errors_leave_nothing() -> TestResult {
    // Goal: a program that does not exist is the Os(ENOENT) kind, with no zombie and
    // no fd left (its pipes included).
    let fds_before = count_entries("/proc/self/fd")?;
    let event_loop = install(Arc::new(loopwatch::SafeChildWatcher::new()))?;
    let lp = event_loop.clone();
    let err = event_loop.run_until_complete(async move {
        lp.subprocess_exec(&with_pipes(
            SpawnRequest::new("/nonexistent/program", Vec::<String>::new()),
            true,
            true,
            true,
        ))
        .map(|p| p.pid())
    })?;
    uninstall(event_loop)?;
    check(
        err.as_ref().err().map(|e| e.kind())
            == Some(ErrorKind::Os(loopwatch::kernel::Errno::ENOENT)),
        &format!("{err:?}"),
    )?;
    check(children()?.is_empty(), "no zombie")?;
    check(count_entries("/proc/self/fd")? == fds_before, "no fd left")?;
    Ok(())
}

// ----- reliability findings ----------------------------------------------------------

/// How long a test waits for what should happen at once before it fails instead of
/// hanging. Generous: a loaded machine must not fail a test.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Calls `probe` every 10 ms until it is true, for at most [`PATIENCE`].
fn poll_until(mut probe: impl FnMut() -> bool) -> bool {
    let kernel = OsKernel;
    let step = std::time::Duration::from_millis(10);
    let mut waited = std::time::Duration::ZERO;
    while !probe() {
        if waited >= PATIENCE {
            return false;
        }
        kernel.sleep(step);
        waited += step;
    }
    true
}

/// Unblocks SIGCHLD in this thread when dropped, however the test ends.
struct SigchldBlocked;

impl SigchldBlocked {
    fn new() -> std::result::Result<SigchldBlocked, loopwatch::kernel::Errno> {
        OsKernel.block_signal(Signal::SIGCHLD)?;
        Ok(SigchldBlocked)
    }
}

impl Drop for SigchldBlocked {
    fn drop(&mut self) {
        let _ = OsKernel.unblock_signal(Signal::SIGCHLD);
    }
}

fn finding_09_panic_does_not_hide_coalesced_exits(watcher: WatcherRef) -> TestResult {
    // Goal (reliability finding 9): five exits coalesced into one SIGCHLD, the first callback panicking: the panic goes to the loop's exception handler on its own, the other four are reported in the same pass, and no zombie is left.
    let kernel = OsKernel;
    // SIGCHLD can then only reach the main thread, which blocks it: the five exits
    // make one pending signal, and one pass of the watcher.
    check(
        poll_until(|| count_entries("/proc/self/task").is_ok_and(|n| n == 1)),
        "the process is single-threaded",
    )?;
    let event_loop = install(watcher.clone())?;
    let reported = Arc::new(loopwatch_test_slot::Slot::default());
    let panics = Arc::new(loopwatch_test_slot::Slot::default());
    let seen = panics.clone();
    event_loop.set_exception_handler(Some(Arc::new(move |_, context| {
        seen.push(context.message.clone());
    })));
    let mut pids = Vec::new();
    let mut stdins = Vec::new();
    let outcome = (|| -> TestResult {
        let blocked = SigchldBlocked::new()?;
        {
            let _window = loopwatch::watcher::fork_window(&*watcher);
            for code in 0..5 {
                // Each child exits once its stdin closes, after all are registered.
                let request = with_pipes(sh(&format!("read x; exit {code}")), true, false, false);
                let spawned = kernel.spawn(&request)?;
                let pid = spawned.pid;
                pids.push(pid);
                stdins.extend(spawned.stdin);
                let slot = reported.clone();
                let callback: loopwatch::watcher::ChildCallback = if code == 0 {
                    Box::new(|_, _| panic!("boom in the first callback"))
                } else {
                    Box::new(move |pid, code| slot.push((pid, code)))
                };
                watcher.add_child_handler(pid, callback)?;
            }
        }
        for fd in stdins.drain(..) {
            kernel.close(fd)?;
        }
        for &pid in &pids {
            // Waits for the exit without reaping: the child stays a zombie.
            kernel.wait_peek(loopwatch::kernel::WaitTarget::Pid(pid), WaitMode::Block)?;
        }
        // The one pending SIGCHLD is delivered here, to this thread.
        drop(blocked);
        let out = reported.clone();
        event_loop.run_until_complete(async move {
            for _ in 0..100 {
                loopwatch_test_slot::yield_now().await;
                if out.len() == 4 {
                    break;
                }
            }
        })?;
        let mut got = reported.take();
        got.sort();
        let expected: Vec<(Pid, i32)> = pids[1..].iter().copied().zip(1..).collect();
        check(got == expected, &format!("the other four: {got:?}"))?;
        let panics = panics.take();
        check(
            panics == ["Unknown exception in SIGCHLD handler"],
            &format!("one report: {panics:?}"),
        )?;
        Ok(())
    })();
    uninstall(event_loop)?;
    // Whatever the outcome, leave no child or fd behind for the next test.
    for fd in stdins {
        let _ = kernel.close(fd);
    }
    for &pid in &pids {
        let _ = kernel.wait_pid(pid, WaitMode::Block);
    }
    outcome?;
    check(children()?.is_empty(), "no zombie left")
}

/// Forks a child that does not exec and sleeps: it holds copies of every fd.
fn fork_sleeper() -> std::result::Result<Pid, Box<dyn std::error::Error>> {
    // SAFETY: the child only calls async-signal-safe functions (sleep, _exit), so it
    // is sound whatever the parent's other threads held at the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            libc::sleep(600);
            libc::_exit(0);
        }
    }
    if pid < 0 {
        return Err("fork failed".into());
    }
    Ok(Pid(pid))
}

fn finding_11_multi_loop_close_returns_while_a_forked_child_lives() -> TestResult {
    // Goal (reliability finding 11): close, Drop and set_child_watcher replacing a MultiLoop watcher return while a forked child that did not exec still holds the watcher's pipe, instead of waiting for that child to end.
    let kernel = OsKernel;
    for how in ["close", "drop", "set_child_watcher"] {
        let watcher = Arc::new(loopwatch::watcher::MultiLoopChildWatcher::new());
        watcher.attach_loop(None)?;
        if how == "set_child_watcher" {
            loopwatch::set_child_watcher(Some(watcher.clone()))?;
        }
        let child = fork_sleeper()?;
        // A safety net: if closing hangs, the child is killed after a long while, so
        // that the suite ends (and this test fails: the child must outlive the close).
        let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
        let net = kernel.spawn_thread(
            "finding-11-net",
            Box::new(move || {
                if cancelled.recv_timeout(PATIENCE).is_err() {
                    let _ = OsKernel.kill(child, Some(Signal::SIGKILL));
                }
            }),
        )?;
        match how {
            "close" => watcher.close()?,
            "drop" => drop(watcher),
            _ => {
                drop(watcher);
                loopwatch::set_child_watcher(None)?;
            }
        }
        let alive = kernel.wait_pid(child, WaitMode::NoHang)? == WaitStatus::StillAlive;
        let _ = cancel.send(());
        kernel
            .join_thread(net)
            .map_err(|_| "the safety net panicked")?;
        let _ = kernel.kill(child, Some(Signal::SIGKILL));
        while kernel.wait_pid(child, WaitMode::Block) == Err(loopwatch::kernel::Errno::EINTR) {}
        check(
            alive,
            &format!("{how} returned only once the forked child ended"),
        )?;
        check(
            kernel.disposition(Signal::SIGCHLD)? == Disposition::Default,
            "SIGCHLD restored",
        )?;
    }
    Ok(())
}

fn finding_13_reaper_dropping_the_last_handle_closes_cleanly() -> TestResult {
    // Goal (reliability finding 13): when MultiLoop's reaper thread drops a callback that holds the last handle of the watcher, the watcher closes inside its own reaper without joining itself: the thread ends, the pipe's fds are closed, SIGCHLD is restored.
    let kernel = OsKernel;
    let fds_before = count_entries("/proc/self/fd")?;
    let threads_before = count_entries("/proc/self/task")?;
    let watcher: WatcherRef = Arc::new(loopwatch::watcher::MultiLoopChildWatcher::new());
    watcher.attach_loop(None)?;
    let mut request = SpawnRequest::new("cat", Vec::<String>::new());
    request.stdin = Stdio::Pipe;
    let child = kernel.spawn(&request)?;
    let w = watcher.clone();
    // The worker's loop is closed when it returns, before the child exits.
    in_worker(move |event_loop| {
        event_loop.run_until_complete(async move {
            let keep = w.clone();
            w.add_child_handler(child.pid, Box::new(move |_, _| drop(keep)))
        })?
    })??;
    drop(watcher);
    // cat exits at end of input; the reaper finds its loop closed and drops the
    // callback, and with it the watcher.
    kernel.close(child.stdin.ok_or("a stdin pipe")?)?;
    let settled = poll_until(|| {
        children().is_ok_and(|c| c.is_empty())
            && count_entries("/proc/self/task").is_ok_and(|n| n == threads_before)
            && count_entries("/proc/self/fd").is_ok_and(|n| n == fds_before)
    });
    check(children()?.is_empty(), "the reaper reaped the child")?;
    check(
        count_entries("/proc/self/task")? == threads_before,
        "the reaper thread ended",
    )?;
    check(
        count_entries("/proc/self/fd")? == fds_before,
        &format!(
            "the watcher's fds are closed ({} open, {fds_before} before)",
            count_entries("/proc/self/fd")?
        ),
    )?;
    check(settled, "settled")?;
    check(
        kernel.disposition(Signal::SIGCHLD)? == Disposition::Default,
        "SIGCHLD restored",
    )
}

fn finding_14_callback_may_ask_for_the_watcher_being_attached() -> TestResult {
    // Goal (reliability finding 14): a custom watcher factory hands out a Safe watcher with a registered child that has exited; attaching it inside get_child_watcher runs that child's callback, which calls get_child_watcher and gets the same watcher instead of deadlocking on the policy's lock.
    let kernel = OsKernel;
    // Run in a forked child, so that a deadlock fails this test (the parent gives up
    // after a long while) rather than hanging the suite.
    // SAFETY: this binary runs one test at a time on the main thread and joins what it
    // starts, so the child may run Rust code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // Whatever happens, the child ends here: an unwinding panic must not return
        // into this copy of the test runner.
        let code = match catch_unwind(attach_runs_callback_asking_for_watcher) {
            Ok(Ok(true)) => 0,
            Ok(Ok(false)) => 1,
            Ok(Err(_)) => 2,
            Err(_) => 3,
        };
        // SAFETY: ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    check(pid > 0, "fork succeeded")?;
    let pid = Pid(pid);
    let mut status = None;
    let ended = poll_until(|| match kernel.wait_pid(pid, WaitMode::NoHang) {
        Ok(WaitStatus::Terminated(_, s)) => {
            status = Some(s.returncode());
            true
        }
        _ => false,
    });
    if !ended {
        let _ = kernel.kill(pid, Some(Signal::SIGKILL));
        let _ = kernel.wait_pid(pid, WaitMode::Block);
        return Err("get_child_watcher deadlocked (the child was killed)".into());
    }
    check(status == Some(0), &format!("the child reported {status:?}"))
}

/// The body of finding 14's child: whether the callback got the policy's watcher.
fn attach_runs_callback_asking_for_watcher() -> Result<bool> {
    let got: Arc<loopwatch_test_slot::Slot<WatcherRef>> = Arc::default();
    let slot = got.clone();
    let factory: loopwatch::WatcherFactory = Arc::new(move |_: &OsKernel| {
        let kernel = OsKernel;
        let watcher = loopwatch::SafeChildWatcher::new();
        // A loop of the factory's own, to register with (3.7: Safe needs one).
        let own = EventLoop::new().expect("a loop");
        watcher.attach_loop(Some(own.clone())).expect("attach");
        // It exits once its stdin is closed, after it was registered.
        let child = kernel
            .spawn(&with_pipes(sh("read x; exit 0"), true, false, false))
            .expect("spawn");
        let pid = child.pid;
        let slot = slot.clone();
        watcher
            .add_child_handler(
                pid,
                Box::new(move |_, _| {
                    slot.push(loopwatch::get_child_watcher().expect("get_child_watcher"));
                }),
            )
            .expect("add_child_handler");
        watcher.attach_loop(None).expect("detach");
        own.close().expect("close");
        kernel
            .close(child.stdin.expect("a stdin pipe"))
            .expect("close its stdin");
        kernel
            .wait_peek(loopwatch::kernel::WaitTarget::Pid(pid), WaitMode::Block)
            .expect("the child exits");
        Arc::new(watcher) as WatcherRef
    });
    let policy = Arc::new(DefaultEventLoopPolicy::with_watcher_factory(
        OsKernel, factory,
    ));
    loopwatch::set_event_loop_policy(Some(policy.clone()));
    let event_loop = loopwatch::new_event_loop()?;
    loopwatch::set_event_loop(Some(event_loop.clone()))?;
    let watcher = loopwatch::get_child_watcher()?;
    let got = got.take();
    let same = got.len() == 1 && Arc::ptr_eq(&got[0], &watcher);
    loopwatch::set_child_watcher(None)?;
    loopwatch::set_event_loop(None)?;
    event_loop.close()?;
    Ok(same)
}

fn count_entries(dir: &str) -> std::io::Result<usize> {
    Ok(std::fs::read_dir(dir)?.count())
}

/// Pids of this process's children, zombies included.
fn children() -> std::io::Result<Vec<String>> {
    let mut all = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path().join("children");
        let text = std::fs::read_to_string(path)?;
        all.extend(text.split_whitespace().map(str::to_string));
    }
    all.sort();
    Ok(all)
}

/// Small helpers shared by the tests above.
mod loopwatch_test_slot {
    #[allow(clippy::disallowed_types, reason = "test-only bookkeeping")]
    type StdMutex<T> = std::sync::Mutex<T>;

    /// A list shared with a callback.
    pub(super) struct Slot<T>(StdMutex<Vec<T>>);

    impl<T> Default for Slot<T> {
        fn default() -> Self {
            Slot(StdMutex::new(Vec::new()))
        }
    }

    impl<T> Slot<T> {
        pub(super) fn push(&self, value: T) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(value);
        }
        pub(super) fn take(&self) -> Vec<T> {
            std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
        }
        pub(super) fn len(&self) -> usize {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
        }
    }

    /// Sleeps on the loop, as `asyncio.sleep(seconds)`.
    pub(super) async fn sleep(event_loop: &loopwatch::EventLoop, seconds: f64) {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        event_loop
            .call_later(seconds, move || {
                flag.store(true, std::sync::atomic::Ordering::SeqCst)
            })
            .expect("call_later");
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            yield_now().await;
        }
    }

    /// A `tracing` subscriber that keeps the `(category, message)` of each warning on
    /// the `asyncio` target.
    pub(super) struct Capture(pub(super) std::sync::Arc<Slot<(String, String)>>);

    struct Fields(String, String);

    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            match field.name() {
                "message" => self.0 = format!("{value:?}"),
                "category" => self.1 = format!("{value:?}"),
                _ => {}
            }
        }
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            match field.name() {
                "message" => self.0 = value.to_string(),
                "category" => self.1 = value.to_string(),
                _ => {}
            }
        }
    }

    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let meta = event.metadata();
            if meta.target() != "asyncio" || *meta.level() != tracing::Level::WARN {
                return;
            }
            let mut fields = Fields(String::new(), String::new());
            event.record(&mut fields);
            self.0.push((fields.1, fields.0));
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// Yields once to the loop, as `asyncio.sleep(0)`.
    pub(super) async fn yield_now() {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                std::task::Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .await;
    }
}

/// Runs `event_loop` until a SIGCHLD handler of its own sees a new child exit, or a
/// generous safety limit passes (a loop that never hears SIGCHLD would otherwise hang
/// the binary). Returns whether the handler saw it; the child is reaped either way.
fn loop_hears_sigchld(
    event_loop: &EventLoop,
) -> std::result::Result<bool, Box<dyn std::error::Error>> {
    let kernel = OsKernel;
    let child = kernel.spawn(&sh("exit 0"))?;
    let heard = Arc::new(AtomicBool::new(false));
    let (flag, lp) = (heard.clone(), event_loop.clone());
    event_loop.add_signal_handler(Signal::SIGCHLD, move || {
        if let Ok(WaitStatus::Terminated(..)) = kernel.wait_pid(child.pid, WaitMode::NoHang) {
            flag.store(true, Ordering::SeqCst);
            lp.stop();
        }
    })?;
    let lp = event_loop.clone();
    let limit = event_loop.call_later(60.0, move || lp.stop())?;
    event_loop.run_forever()?;
    limit.cancel();
    let _ = kernel.wait_pid(child.pid, WaitMode::Block);
    Ok(heard.load(Ordering::SeqCst))
}

/// Opens pipes onto the fd numbers just freed, lets a child exit (its SIGCHLD is
/// handled before the blocking wait returns: this binary is single-threaded here) and
/// says whether any of the pipes received a byte. Two rounds, the second shifted by
/// one number, so that every freed number is a pipe's write end in one of them.
fn sigchld_writes_into_reused_fds() -> std::result::Result<bool, Box<dyn std::error::Error>> {
    let kernel = OsKernel;
    let mut wrote = false;
    for shift in [false, true] {
        let mut fds = Vec::new();
        if shift {
            let (read, write) = kernel.pipe()?;
            kernel.close(write)?;
            fds.push(read);
        }
        let mut reads = Vec::new();
        for _ in 0..16 {
            let (read, write) = kernel.pipe()?;
            kernel.set_nonblocking(read, true)?;
            reads.push(read);
            fds.extend([read, write]);
        }
        let child = kernel.spawn(&sh("exit 0"))?;
        kernel.wait_pid(child.pid, WaitMode::Block)?;
        let mut buf = [0u8; 16];
        for read in reads {
            match kernel.read(read, &mut buf) {
                Err(loopwatch::kernel::Errno::EAGAIN) => {}
                _ => wrote = true,
            }
        }
        for fd in fds {
            kernel.close(fd)?;
        }
    }
    Ok(wrote)
}

fn finding_01_two_loops_sigchld(close_first_added_first: bool) -> TestResult {
    // Reliability finding 1: loops A and B both handle SIGCHLD; whichever closes first,
    // the other still hears SIGCHLD, and once both are closed SIGCHLD is back to
    // SIG_DFL, the wakeup fd is unset, and no byte reaches an fd number reused later.
    let kernel = OsKernel;
    check(
        kernel.disposition(Signal::SIGCHLD)? == Disposition::Default,
        "SIGCHLD starts at SIG_DFL",
    )?;
    let a = EventLoop::new()?;
    let b = EventLoop::new()?;
    a.add_signal_handler(Signal::SIGCHLD, || {})?;
    b.add_signal_handler(Signal::SIGCHLD, || {})?;
    let (first, second) = if close_first_added_first {
        (a, b)
    } else {
        (b, a)
    };
    first.close()?;
    check(
        loop_hears_sigchld(&second)?,
        "the loop still open hears SIGCHLD after the other closed",
    )?;
    second.close()?;
    let disposition = kernel.disposition(Signal::SIGCHLD)?;
    let wrote = sigchld_writes_into_reused_fds()?;
    let wakeup = kernel.set_wakeup_fd(None)?;
    check(
        disposition == Disposition::Default,
        &format!("SIGCHLD back to SIG_DFL, not {disposition:?}"),
    )?;
    check(
        wakeup.is_none(),
        &format!("wakeup fd unset, not {wakeup:?}"),
    )?;
    check(
        !wrote,
        "a byte reached an fd opened after both loops closed",
    )?;
    Ok(())
}

fn finding_02_two_multi_loop_watchers(close_first_first: bool) -> TestResult {
    // Reliability finding 2: two MultiLoop watchers attached one after the other and
    // closed in either order: the one left still reports its children, and once both
    // are closed SIGCHLD is back to SIG_DFL and no byte reaches an fd number reused
    // later.
    use loopwatch::ChildWatcher;
    use loopwatch::watcher::MultiLoopChildWatcher;
    let kernel = OsKernel;
    check(
        kernel.disposition(Signal::SIGCHLD)? == Disposition::Default,
        "SIGCHLD starts at SIG_DFL",
    )?;
    let first = Arc::new(MultiLoopChildWatcher::new());
    let second = Arc::new(MultiLoopChildWatcher::new());
    first.attach_loop(None)?;
    second.attach_loop(None)?;
    let (closed, left) = if close_first_first {
        (first, second)
    } else {
        (second, first)
    };
    closed.close()?;
    let event_loop = EventLoop::new()?;
    let (lp, watcher) = (event_loop.clone(), left.clone());
    let code = event_loop.run_until_complete(async move {
        let child = kernel.spawn(&sh("exit 5")).expect("spawn");
        let got = Arc::new(loopwatch_test_slot::Slot::default());
        let sink = got.clone();
        watcher
            .add_child_handler(child.pid, Box::new(move |_, code| sink.push(code)))
            .expect("add_child_handler");
        // A generous limit instead of a hang if the exit is never reported.
        let deadline = lp.time() + 60.0;
        loop {
            if let Some(code) = got.take().pop() {
                return Some(code);
            }
            if lp.time() > deadline {
                let _ = kernel.wait_pid(child.pid, WaitMode::Block);
                return None;
            }
            loopwatch_test_slot::sleep(&lp, 0.01).await;
        }
    })?;
    event_loop.close()?;
    check(
        code == Some(5),
        &format!("the watcher left open reports its child: {code:?}"),
    )?;
    left.close()?;
    let disposition = kernel.disposition(Signal::SIGCHLD)?;
    let wrote = sigchld_writes_into_reused_fds()?;
    check(
        disposition == Disposition::Default,
        &format!("SIGCHLD back to SIG_DFL, not {disposition:?}"),
    )?;
    check(
        !wrote,
        "a byte reached an fd opened after both watchers closed",
    )?;
    Ok(())
}

fn finding_10_forked_child_drops_the_parents_signal_wiring() -> TestResult {
    // Reliability finding 10: a child forked (without exec) while a loop handles
    // SIGUSR1 and SIGUSR2 has its own signal wired to a pipe (`Notify`) must not write
    // into the parent's pipes when signalled: its wakeup fd is unset, and the signals
    // it raises reach neither the parent's loop nor the parent's notify pipe.
    let kernel = OsKernel;
    let event_loop = EventLoop::new()?;
    let heard = Arc::new(AtomicUsize::new(0));
    let count = heard.clone();
    event_loop.add_signal_handler(Signal::SIGUSR1, move || {
        count.fetch_add(1, Ordering::SeqCst);
    })?;
    let (notify_read, notify_write) = kernel.pipe()?;
    kernel.set_nonblocking(notify_read, true)?;
    kernel.set_nonblocking(notify_write, true)?;
    let previous = kernel.set_disposition(Signal::SIGUSR2, Disposition::Notify(notify_write))?;
    // SAFETY: this binary is single-threaded here (tests run one at a time on the main
    // thread and join what they start), so the child may run Rust code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let unset = kernel.set_wakeup_fd(None) == Ok(None);
        let raised = kernel.raise(Signal::SIGUSR1).is_ok() && kernel.raise(Signal::SIGUSR2).is_ok();
        // SAFETY: ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(if unset && raised { 0 } else { 1 }) };
    }
    check(pid > 0, "fork succeeded")?;
    let status = kernel.wait_pid(Pid(pid), WaitMode::Block)?;
    let mut buf = [0u8; 8];
    let notified = kernel.read(notify_read, &mut buf);
    let lp = event_loop.clone();
    event_loop.call_soon(move || lp.stop())?;
    event_loop.run_forever()?;
    kernel.set_disposition(Signal::SIGUSR2, previous)?;
    kernel.close(notify_read)?;
    kernel.close(notify_write)?;
    event_loop.close()?;
    check(
        matches!(status, WaitStatus::Terminated(_, s) if s.returncode() == 0),
        &format!("the child found its wakeup fd unset: {status:?}"),
    )?;
    check(
        notified == Err(loopwatch::kernel::Errno::EAGAIN),
        &format!("the child's SIGUSR2 reached the parent's notify pipe: {notified:?}"),
    )?;
    check(
        heard.load(Ordering::SeqCst) == 0,
        "the child's SIGUSR1 ran the parent loop's handler",
    )?;
    Ok(())
}

static FOREIGN_SIGCHLD: AtomicUsize = AtomicUsize::new(0);

extern "C" fn foreign_sigchld(_signum: libc::c_int) {
    FOREIGN_SIGCHLD.fetch_add(1, Ordering::SeqCst);
}

/// Installs `foreign_sigchld` for SIGCHLD with libc, as another library would.
fn install_foreign_sigchld() -> libc::sighandler_t {
    // SAFETY: sigaction is plain data; all-zero is an empty mask with no flags.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = foreign_sigchld as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action` is valid and its handler only bumps an atomic.
    let rc = unsafe { libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "sigaction(SIGCHLD)");
    action.sa_sigaction
}

/// The SIGCHLD handler installed right now, straight from libc.
fn sigchld_handler_now() -> libc::sighandler_t {
    // SAFETY: sigaction is plain data; all-zero is valid to be overwritten.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a NULL new action only queries; `action` is writable.
    let rc = unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut action) };
    assert_eq!(rc, 0, "sigaction(SIGCHLD)");
    action.sa_sigaction
}

fn finding_16_foreign_sigchld_handler_after_attach(watcher: WatcherRef) -> TestResult {
    // Reliability finding 16: another library installs its own SIGCHLD handler after
    // the watcher was attached. Registering the next child warns (RuntimeWarning on
    // the `asyncio` target) that its exit will not be heard, and closing the watcher
    // and its loop leaves the other library's handler in place.
    let kernel = OsKernel;
    let event_loop = install(watcher.clone())?;
    let foreign = install_foreign_sigchld();
    let warnings = Arc::new(loopwatch_test_slot::Slot::default());
    let capture = loopwatch_test_slot::Capture(warnings.clone());
    let (lp, w) = (event_loop.clone(), watcher.clone());
    let child = tracing::subscriber::with_default(capture, || {
        lp.clone().run_until_complete(async move {
            // Fast wants spawn and registration in one window, as asyncio's `with`.
            let _window = loopwatch::watcher::fork_window(&*w);
            let child = kernel.spawn(&sh("exit 0")).expect("spawn");
            w.add_child_handler(child.pid, Box::new(|_, _| {}))
                .expect("add_child_handler");
            child.pid
        })
    })?;
    // The watcher's own poll in `add_child_handler` may already have reaped a child
    // that exited that fast (S-3, M-4); otherwise nothing will, so reap it here.
    match kernel.wait_pid(child, WaitMode::Block) {
        Ok(_) | Err(loopwatch::kernel::Errno::ECHILD) => {}
        Err(errno) => return Err(errno.into()),
    }
    uninstall(event_loop)?;
    let after = sigchld_handler_now();
    let ran = FOREIGN_SIGCHLD.swap(0, Ordering::SeqCst);
    OsKernel.set_disposition(Signal::SIGCHLD, Disposition::Default)?;
    let warned = warnings.take();
    check(ran > 0, "the foreign handler got the child's SIGCHLD")?;
    check(
        warned
            .iter()
            .any(|(category, _)| category == "RuntimeWarning"),
        &format!("a RuntimeWarning when registering the child: {warned:?}"),
    )?;
    check(
        after == foreign,
        "closing the watcher and its loop left the foreign handler in place",
    )?;
    Ok(())
}

fn spawn_with_stdio_closed_in_the_parent() -> TestResult {
    // Goal: a process whose own fds 0-2 are closed (a daemon) can still give a child a
    // pipe as stdout while its stdin is /dev/null: the copy of the pipe made for the
    // child must not land on fd 0, where setting up the child's stdin would replace
    // it. Runs in a forked child, which closes its 0-2 and reports by exit code.
    let kernel = OsKernel;
    let (read, write) = kernel.pipe()?;
    // SAFETY: this binary is single-threaded here (tests run one at a time on the main
    // thread and join what they start), so the child may run Rust code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = (|| {
            for fd in 0..3 {
                // SAFETY: closes this forked child's own standard fds.
                unsafe { libc::close(fd) };
            }
            let mut request = SpawnRequest::new("/bin/sh", ["-c", "echo through"]);
            request.stdin = Stdio::Null;
            request.stdout = Stdio::Fd(write);
            request.stderr = Stdio::Null;
            let child = kernel.spawn(&request).map_err(|_| 2)?;
            match kernel.wait_pid(child.pid, WaitMode::Block) {
                Ok(WaitStatus::Terminated(_, s)) if s.returncode() == 0 => Ok(()),
                _ => Err(3),
            }
        })();
        // SAFETY: ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code.err().unwrap_or(0)) };
    }
    check(pid > 0, "fork succeeded")?;
    let status = kernel.wait_pid(Pid(pid), WaitMode::Block)?;
    kernel.close(write)?;
    let mut buf = [0u8; 64];
    let n = kernel.read(read, &mut buf)?;
    kernel.close(read)?;
    check(
        matches!(status, WaitStatus::Terminated(_, s) if s.returncode() == 0),
        &format!("the forked process spawned and reaped its child: {status:?}"),
    )?;
    check(
        &buf[..n] == b"through\n",
        &format!(
            "the child's stdout reached the pipe: got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
    )?;
    Ok(())
}
