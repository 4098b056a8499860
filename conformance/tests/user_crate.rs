//! A crate of a user's, outside the workspace, written as the README's "Testing your
//! own code with loopwatch" says (`tests/user-crate/`, whose files the README shows):
//! it is copied out, pointed at this checkout, built and tested with cargo. It must
//! test its own code generic over the kernel on 100 simulator seeds and on the OS, use
//! SafeChildWatcher in its own `cargo test`, check its own watcher and policy with
//! loopwatch's conformance suite, and, when its bug is switched on, print a replay
//! command that, run as printed in that crate, fails again on the same seed.
//!
//! The first run builds the user crate's dependencies (about a minute on two cores);
//! its target directory is kept under cargo's `CARGO_TARGET_TMPDIR` for later runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FILES: &[&str] = &[
    "src/lib.rs",
    "tests/sweep.rs",
    "tests/main_thread.rs",
    "tests/conformance.rs",
];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/user-crate")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("conformance/ has a parent")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Copies the fixture to a directory of its own and returns it; its target directory
/// sits beside it, so a second run reuses the build.
fn user_crate() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("user-crate");
    let dir = base.join("my-jobs");
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("remove the previous copy");
    }
    for file in FILES {
        let to = dir.join(file);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(fixture().join(file), &to).unwrap();
    }
    let manifest = fs::read_to_string(fixture().join("Cargo.toml.in"))
        .unwrap()
        .replace("@LOOPWATCH@", &workspace_root().to_string_lossy());
    fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    // The workspace's lock file pins the same versions, already downloaded.
    fs::copy(workspace_root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    dir
}

/// `cargo <args>` in `dir`, as a user would run it: none of this test's own cargo
/// variables, no seed variables, the user crate's own target directory.
fn cargo(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", dir.parent().unwrap().join("target"))
        .env("CARGO_TERM_COLOR", "never");
    clear_inherited(&mut command);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run cargo")
}

fn clear_inherited(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || key.starts_with("LOOPWATCH_")
            || key == "CARGO_MANIFEST_DIR"
            || key == "CARGO_CRATE_NAME"
            || key == "MY_JOBS_BUG"
        {
            command.env_remove(&key);
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn readme_shows_the_user_crate_as_it_is_tested() {
    // Goal: the README's walk-through is this fixture, file for file, so a user who
    // follows only the README writes the crate this test builds.
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let manifest = fs::read_to_string(fixture().join("Cargo.toml.in")).unwrap();
    let manifest = manifest
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("@LOOPWATCH@", "../loopwatch");
    let mut missing = Vec::new();
    if !readme.contains(manifest.trim()) {
        missing.push("Cargo.toml".to_string());
    }
    for file in FILES {
        let body = fs::read_to_string(fixture().join(file)).unwrap();
        if !readme.contains(body.trim()) {
            missing.push(file.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "README.md does not show these files of conformance/tests/user-crate as they are: {missing:?}"
    );
}

#[test]
fn a_users_crate_tests_its_code_on_both_kernels_and_replays_a_seed() {
    let dir = user_crate();

    // 1. Its whole suite passes: 100 seeds and the OS from a worker thread, and Safe
    // on the main thread on both kernels.
    let all = cargo(&dir, &["test"], &[]);
    let out = text(&all);
    assert!(
        all.status.success(),
        "the user crate's tests failed:\n{out}"
    );
    for test in [
        "jobs_report_their_codes",
        "jobs_with_safe [os]",
        "jobs_with_safe [sim]",
        "first_to_end_is_first [sim]",
    ] {
        let passed = out.lines().any(|l| {
            l.strip_prefix("test ")
                .and_then(|rest| rest.strip_prefix(test))
                .is_some_and(|rest| rest.trim_start().starts_with("... ok"))
        });
        assert!(passed, "`{test}` did not pass in:\n{out}");
    }
    assert!(
        !out.lines()
            .any(|l| l.contains("`my-jobs`") && l.contains("warning")),
        "the README's crate builds with warnings:\n{out}"
    );

    // 2. With the bug switched on, the sweep fails and names a seed and a command.
    let bug = [("MY_JOBS_BUG", "1")];
    let failing = cargo(
        &dir,
        &[
            "test",
            "--test",
            "main_thread",
            "--",
            "--exact",
            "first_to_end_is_first [sim]",
        ],
        &bug,
    );
    let out = text(&failing);
    assert!(!failing.status.success(), "the bug went unnoticed:\n{out}");
    let replay = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("replay: "))
        .unwrap_or_else(|| panic!("no replay command in:\n{out}"))
        .to_string();
    let seed = replay
        .strip_prefix("LOOPWATCH_SEED=")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the replay command sets no seed: {replay}"))
        .to_string();

    // 3. The command, run as printed in the user's crate, fails again on that seed.
    let mut shell = Command::new("sh");
    shell
        .args(["-c", &replay])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.parent().unwrap().join("target"))
        .env("CARGO_TERM_COLOR", "never")
        .env("MY_JOBS_BUG", "1");
    clear_inherited(&mut shell);
    shell.env("MY_JOBS_BUG", "1");
    let replayed = shell.output().expect("run the replay command");
    let out = text(&replayed);
    assert!(
        !replayed.status.success(),
        "`{replay}` passed in the user crate:\n{out}"
    );
    assert!(
        out.contains(&format!("1 of 1 seeds failed; the first is seed {seed}")),
        "`{replay}` did not fail on seed {seed}:\n{out}"
    );
}
