//! `loopwatch_sim::testing` seen from outside, as cargo, nextest and a person see it:
//! runs the `testing_demo` binary (built on `testing::Harness`) with libtest's
//! arguments and checks what it prints, and runs this binary's own failing
//! `for_seeds` fixture in a child process to check its report and its replay command.
//!
//! The demo binary is found beside this one (cargo builds every test target of the
//! package before it runs any: `cargo test -p loopwatch-sim`).

use std::path::PathBuf;
use std::process::Command;

use loopwatch::kernel::{Kernel, Processes, WaitMode, WaitStatus};
use loopwatch_sim::testing::{self, Body, Capture};

/// The newest `testing_demo-<hash>` executable in this test binary's directory.
fn demo() -> PathBuf {
    let exe = std::env::current_exe().expect("this test's path");
    let dir = exe.parent().expect("a directory");
    let newest = std::fs::read_dir(dir)
        .expect("the test binaries' directory")
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_prefix("testing_demo-")
                .is_some_and(|hash| hash.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .max_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok());
    match newest {
        Some(entry) => entry.path(),
        None => panic!(
            "no testing_demo binary beside {}: build it with `cargo test -p loopwatch-sim --no-run`",
            exe.display()
        ),
    }
}

/// What a run printed and how it ended.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `program` with `args` and `env`, without the seed variables of the caller's
/// environment, so the counts below hold whatever the caller set.
fn run(program: &PathBuf, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove("LOOPWATCH_SEED")
        .env_remove("LOOPWATCH_SEEDS")
        .env_remove("RUST_BACKTRACE")
        .env("CARGO_PKG_NAME", "loopwatch-sim");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("the binary runs");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every trial of the demo binary, in `--list`'s order and format.
const TRIALS: [&str; 14] = [
    "exit_codes [os]: test",
    "exit_codes [sim]: test",
    "pipe_then_eof [os]: test",
    "pipe_then_eof [sim]: test",
    "pid_reused_after_reap [os]: test",
    "pid_reused_after_reap [sim]: test",
    "unknown_child_warning [os]: test",
    "unknown_child_warning [sim]: test",
    "deadlock_is_reported [sim]: test",
    "runs_on_the_main_thread: test",
    "leaks_a_pipe [os]: test",
    "leaks_a_pipe [sim]: test",
    "first_reaped_is_first_spawned [sim]: test",
    "sweep_in_a_main_thread_test: test",
];

#[test]
fn list_names_every_trial_without_running_any() {
    // Goal: `--list` prints one `name: test` line per trial, in
    // the terse format nextest reads, and runs nothing; `--ignored` lists the ignored.
    let demo = demo();
    for args in [&["--list"][..], &["--list", "--format", "terse"]] {
        let ran = run(&demo, args, &[]);
        assert_eq!(ran.code, Some(0), "{}", ran.all());
        assert_eq!(ran.stdout.lines().collect::<Vec<_>>(), TRIALS, "{args:?}");
        assert!(!ran.all().contains("running"), "{}", ran.all());
    }
    let ran = run(&demo, &["--list", "--ignored"], &[]);
    assert_eq!(
        ran.stdout.lines().collect::<Vec<_>>(),
        [
            "leaks_a_pipe [os]: test",
            "leaks_a_pipe [sim]: test",
            "first_reaped_is_first_spawned [sim]: test",
            "sweep_in_a_main_thread_test: test",
        ]
    );
}

#[test]
fn filter_runs_both_arms_of_a_body() {
    // Goal: a name filter selects by substring: both arms of `exit_codes` run, on the
    // OS and the simulator, and the rest is counted as filtered out.
    let ran = run(&demo(), &["exit_codes"], &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let lines: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("test "))
        .collect();
    assert_eq!(lines.len(), 3, "{}", ran.stdout);
    assert!(lines[0].starts_with("test exit_codes [os]") && lines[0].ends_with("... ok"));
    assert!(lines[1].starts_with("test exit_codes [sim]") && lines[1].ends_with("... ok"));
    assert!(
        lines[2].starts_with(
            "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 12 filtered out;"
        ),
        "{}",
        ran.stdout
    );
}

#[test]
fn exact_and_skip_select_single_trials() {
    // Goal: `--exact` matches a whole trial name, arm included; `--skip` leaves out
    // what it matches.
    let demo = demo();
    let ran = run(&demo, &["--exact", "exit_codes [sim]"], &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert!(
        ran.stdout.contains("test exit_codes [sim] ... ok"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("1 passed; 0 failed; 0 ignored; 0 measured; 13 filtered out")
    );
    let ran = run(&demo, &["--exact", "exit_codes"], &[]);
    assert!(
        ran.stdout
            .contains("0 passed; 0 failed; 0 ignored; 0 measured; 14 filtered out")
    );
    let ran = run(&demo, &["pipe_then", "--skip", "[os]"], &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert!(
        ran.stdout.contains("test pipe_then_eof [sim] ... ok"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("1 passed; 0 failed; 0 ignored; 0 measured; 13 filtered out")
    );
}

#[test]
fn skipped_arm_prints_its_reason() {
    // Goal: an arm skipped with a reason is reported as ignored with that reason,
    // while the other arm of the same body runs.
    let ran = run(&demo(), &["pid_reused"], &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert!(
        ran.stdout.contains(
            "test pid_reused_after_reap [os]  ... ignored (Linux hands out pids in turn up to pid_max: reuse cannot be provoked on demand)"
        ),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("test pid_reused_after_reap [sim] ... ok"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("1 passed; 0 failed; 1 ignored;"),
        "{}",
        ran.stdout
    );
}

#[test]
fn tests_run_on_the_main_thread_whatever_test_threads_says() {
    // Goal: `--test-threads 4` is accepted with a note, and the test still runs on the
    // main thread (the demo's test fails anywhere else).
    let ran = run(
        &demo(),
        &["--test-threads", "4", "runs_on_the_main_thread"],
        &[],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert!(
        ran.stderr.contains("note: --test-threads ignored"),
        "{}",
        ran.stderr
    );
    assert!(ran.stdout.contains("1 passed; 0 failed"), "{}", ran.stdout);
}

#[test]
fn leak_check_fails_on_both_kernels() {
    // Goal: a body that leaves a pipe open fails its leak check on the real OS (from
    // /proc) and on the simulator (from the report), saying what leaked.
    let ran = run(&demo(), &["--ignored", "leaks_a_pipe"], &[]);
    assert_eq!(ran.code, Some(101), "{}", ran.all());
    let os = ran
        .stdout
        .split("---- leaks_a_pipe [os] ----")
        .nth(1)
        .unwrap();
    assert!(
        os.trim_start().starts_with("leaked: 2 fds ("),
        "{}",
        ran.stdout
    );
    let sim = ran
        .stdout
        .split("---- leaks_a_pipe [sim] ----")
        .nth(1)
        .unwrap();
    assert!(
        sim.contains("16 of 16 seeds failed; the first is seed 0:\n  leaked: 2 fds (0 → 2)"),
        "{}",
        ran.stdout
    );
}

/// The first failing seed a report names, and its replay line.
fn first_seed_and_replay(output: &str) -> (u64, String) {
    let seed = output
        .split("the first is seed ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no first seed in:\n{output}"));
    let replay = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("replay: "))
        .unwrap_or_else(|| panic!("no replay line in:\n{output}"))
        .to_string();
    (seed, replay)
}

#[test]
fn failing_sim_arm_prints_one_report_and_replays() {
    // Goal: a simulator arm failing on some seeds prints one short
    // report (the seed count, the first seed's panic and trace tail, a replay command
    // for this package and binary), also with RUST_BACKTRACE set; the replay command's
    // seed, run alone, fails the same way.
    let demo = demo();
    let name = "first_reaped_is_first_spawned [sim]";
    for backtrace in ["0", "1"] {
        let ran = run(
            &demo,
            &["--ignored", "--exact", name],
            &[("RUST_BACKTRACE", backtrace)],
        );
        let all = ran.all();
        assert_eq!(ran.code, Some(101), "{all}");
        assert!(
            all.lines().count() <= 60,
            "{} lines:\n{all}",
            all.lines().count()
        );
        assert!(
            all.contains(" of 16 seeds failed; the first is seed "),
            "{all}"
        );
        assert!(all.contains("the first child was reaped first"), "{all}");
        assert!(all.contains("at sim/tests/testing_demo.rs:"), "{all}");
        assert!(
            all.contains("T1 waitpid(-1, Block)"),
            "the trace tail: {all}"
        );
        let (seed, replay) = first_seed_and_replay(&all);
        assert_eq!(
            replay,
            format!(
                "LOOPWATCH_SEED={seed} cargo test -p loopwatch-sim --test testing_demo '{name}' -- --exact"
            )
        );
        let again = run(
            &demo,
            &["--ignored", "--exact", name],
            &[("LOOPWATCH_SEED", &seed.to_string())],
        );
        assert!(
            again
                .all()
                .contains(&format!("1 of 1 seeds failed; the first is seed {seed}:")),
            "{}",
            again.all()
        );
    }
}

#[test]
fn sweep_in_a_harness_test_names_the_trial() {
    // Goal: a for_seeds inside a harness binary's main-thread test names that test
    // in its replay command (the thread there is "main", not the test), and its
    // report is printed once.
    let ran = run(
        &demo(),
        &["--ignored", "--exact", "sweep_in_a_main_thread_test"],
        &[],
    );
    let all = ran.all();
    let (seed, replay) = first_seed_and_replay(&all);
    assert_eq!(
        replay,
        format!(
            "LOOPWATCH_SEED={seed} cargo test -p loopwatch-sim --test testing_demo sweep_in_a_main_thread_test -- --exact"
        )
    );
    // The report is printed once, in the failure's section, with where the test
    // panicked.
    assert_eq!(
        all.matches("seeds failed; the first is seed").count(),
        1,
        "{all}"
    );
    assert!(!all.contains("thread 'main'"), "{all}");
    assert!(all.trim_end().lines().count() <= 60, "{all}");
}

#[test]
#[ignore = "fails on purpose: for_seeds_failure_prints_one_report runs it and reads its output"]
fn failing_for_seeds() {
    // Goal (a fixture): fails on some seeds, not all: of two children that exit at
    // once, the seed decides which one waitpid(-1) reaps first.
    testing::for_seeds(24, |k| {
        let first = testing::spawn_sh(k, "exit 1");
        let second = testing::spawn_sh(k, "exit 2");
        let reaped = match k.wait_any(WaitMode::Block) {
            Ok(WaitStatus::Terminated(pid, _)) => pid,
            other => panic!("wait_any gave {other:?}"),
        };
        testing::reap(k, if reaped == first { second } else { first });
        assert_eq!(reaped, first, "the first child was reaped first");
    });
}

#[test]
fn for_seeds_failure_prints_one_report() {
    // Goal: a failing for_seeds in an ordinary #[test] prints one
    // report, under 60 lines, with one panic message (not one per seed), the count of
    // failing seeds and a replay command for this package, binary and test, and that
    // command's seed fails alone.
    let this = std::env::current_exe().unwrap();
    let args = ["--ignored", "--exact", "failing_for_seeds"];
    let ran = run(&this, &args, &[]);
    let all = ran.all();
    assert_eq!(ran.code, Some(101), "{all}");
    assert!(
        all.lines().count() <= 60,
        "{} lines:\n{all}",
        all.lines().count()
    );
    assert_eq!(all.matches("panicked at").count(), 1, "{all}");
    let failed: usize = all
        .split(" of 24 seeds failed")
        .next()
        .and_then(|head| head.rsplit(['\n', ' ', ':']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in:\n{all}"));
    assert!((1..24).contains(&failed), "{all}");
    let (seed, replay) = first_seed_and_replay(&all);
    assert_eq!(
        replay,
        format!(
            "LOOPWATCH_SEED={seed} cargo test -p loopwatch-sim --test testing_harness failing_for_seeds -- --exact"
        )
    );
    let again = run(&this, &args, &[("LOOPWATCH_SEED", &seed.to_string())]);
    assert!(
        again
            .all()
            .contains(&format!("1 of 1 seeds failed; the first is seed {seed}:")),
        "{}",
        again.all()
    );
}

/// Goal: a waitpid for any child, on either kernel, reaps the one child there is.
struct WaitAnyReapsTheChild;

impl Body for WaitAnyReapsTheChild {
    fn run<K: Kernel>(&self, k: &K) {
        let pid = testing::spawn_sh(k, "exit 5");
        match k.wait_any(WaitMode::Block) {
            Ok(WaitStatus::Terminated(got, status)) => {
                assert_eq!((got, status.returncode()), (pid, 5));
            }
            other => panic!("wait_any gave {other:?}"),
        }
    }
}

#[test]
fn for_seeds_and_os_passes_a_correct_body() {
    // Goal: a correct body passes on the real OS and on every seed, and the sweep
    // says how many seeds ran.
    let swept = testing::for_seeds_and_os(8, WaitAnyReapsTheChild);
    assert_eq!(swept.seeds, testing::Sweep::new(8).seeds().len());
}

#[test]
fn capture_sees_simulated_threads() {
    // Goal: a capture around a simulation records events logged by every simulated
    // thread, with their level, target and fields.
    let capture = Capture::new();
    let report = capture.during(|| {
        loopwatch_sim::Simulation::new(2).run(|k| {
            use loopwatch::kernel::Threads;
            let worker = k
                .spawn_thread(
                    "worker",
                    Box::new(|| tracing::warn!(target: "asyncio", pid = 7, "from the worker")),
                )
                .unwrap();
            tracing::info!(target: "mine", "from main");
            k.join_thread(worker).unwrap();
        })
    });
    report.assert_completed("capture_sees_simulated_threads");
    assert_eq!(capture.warnings(), ["from the worker"]);
    let events = capture.events();
    assert_eq!(events.len(), 2);
    let warning = events.iter().find(|e| e.target == "asyncio").unwrap();
    assert_eq!(warning.fields["pid"], "7");
}
