//! The `loopwatch` binary's handling of bad input: a clear error on stderr, exit code
//! 2, and nothing on stdout.

use std::process::{Command, Output};

fn loopwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopwatch"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn scenario(name: &str) -> String {
    format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn refused(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "no partial output");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
}

#[test]
fn malformed_json_names_line_and_column() {
    // Goal: a scenario that is not valid JSON is refused with its line and column.
    let pid = loopwatch::kernel::Processes::getpid(&loopwatch::OsKernel);
    let dir = std::env::temp_dir().join(format!("loopwatch-cli-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.json");
    std::fs::write(
        &path,
        "{\n  \"format\": \"loopwatch-scenario/1\",\n  \"name\": oops\n}\n",
    )
    .unwrap();
    let output = loopwatch(&[
        "scenario",
        "run",
        path.to_str().unwrap(),
        "--backend",
        "sim",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    refused(&output, "line 3, column");
}

#[test]
fn unknown_watcher_lists_the_valid_ones() {
    // Goal: an unknown watcher name is refused with the list of valid names.
    let output = loopwatch(&[
        "scenario",
        "run",
        &scenario("two-children.json"),
        "--backend",
        "sim",
        "--watcher",
        "speedy",
    ]);
    refused(&output, "valid: safe, fast, multi_loop, threaded, pidfd");
    let output = loopwatch(&["explore", "--watcher", "speedy"]);
    refused(&output, "valid: safe, fast");
}

#[test]
fn bad_shard_and_backend_are_refused() {
    // Goal: a shard out of range and an unknown backend are refused before any run.
    refused(
        &loopwatch(&["explore", "--watcher", "safe", "--shard", "4/4"]),
        "i must be below n",
    );
    refused(
        &loopwatch(&["explore", "--watcher", "safe", "--shard", "x"]),
        "not of the form i/n",
    );
    let output = loopwatch(&[
        "scenario",
        "run",
        &scenario("two-children.json"),
        "--backend",
        "jython",
    ]);
    refused(&output, "unknown backend");
}

#[test]
fn scenario_runs_on_the_simulator() {
    // Goal: a good scenario on the simulator prints its trace as one JSON line per
    // watcher and exits 0.
    let output = loopwatch(&[
        "scenario",
        "run",
        &scenario("two-children.json"),
        "--backend",
        "sim",
        "--seed",
        "5",
        "--watcher",
        "fast",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("\"trace\":[\"exit a 3\",\"exit b -15\"]"),
        "{stdout}"
    );
}

#[test]
fn finding_17_scenario_the_simulator_would_misrun_is_refused() {
    // Goal (reliability finding 17): a scenario whose child should die from SIGCHLD
    // (ignored by default, so it would exit 0 on the OS) is refused before any run:
    // exit code 2, a message naming the step, the field and the value, no output.
    let pid = loopwatch::kernel::Processes::getpid(&loopwatch::OsKernel);
    let dir = std::env::temp_dir().join(format!("loopwatch-cli-17-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sigchld-fate.json");
    std::fs::write(
        &path,
        r#"{"format": "loopwatch-scenario/1", "name": "sigchld-fate", "description": "d",
            "clauses": [], "watchers": ["safe"],
            "steps": [{"op": "start", "child": "a", "fate": {"signal": 17}},
                      {"op": "wait", "child": "a"}]}"#,
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let run = loopwatch(&["scenario", "run", file, "--backend", "sim"]);
    let replay = loopwatch(&["replay", file, "--watcher", "safe", "--seed", "1"]);
    std::fs::remove_dir_all(&dir).unwrap();
    refused(
        &run,
        "step 0: fate.signal 17 (SIGCHLD) is ignored by default",
    );
    refused(&replay, "fate.signal 17");
}
