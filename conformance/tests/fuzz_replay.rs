//! The fuzz targets of `fuzz/` without cargo-fuzz: every file of their corpus
//! (`fuzz/corpus/<target>/`) and crash regressions (`fuzz/regressions/<target>/`)
//! through the targets' bodies ([`loopwatch_conformance::fuzzing`]); each crash
//! regression also has a test of its own, named after it.
//!
//! A crash found by `cargo fuzz run <target>` is added by copying its input from
//! `fuzz/artifacts/<target>/` to `fuzz/regressions/<target>/<name>` and adding a test
//! `<target>_<name>` here that calls [`regression`] (see README, "Fuzzing").

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use loopwatch_conformance::fuzzing::{self, Target};
use loopwatch_conformance::scenario::WatcherName;

/// The crash regressions, each with its test below: (target, file name).
const REGRESSIONS: &[(Target, &str)] = &[];

/// `fuzz/<kind>/<target>/`.
fn dir(kind: &str, target: Target) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target.name())
}

/// The files of `fuzz/<kind>/<target>/`, sorted (none when it does not exist).
fn files(kind: &str, target: Target) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir(kind, target)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
}

/// `path` through `target`'s body: an error naming the file when the property does
/// not hold or the body panics.
fn replay(target: Target, path: &Path) -> Result<(), String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let shown = || {
        let mut parts = path.iter().rev().take(3).collect::<Vec<_>>();
        parts.reverse();
        parts.iter().collect::<PathBuf>().display().to_string()
    };
    match catch_unwind(AssertUnwindSafe(|| target.check(&data))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(problem)) => Err(format!("{}: {problem}", shown())),
        Err(_) => Err(format!("{}: the target panicked (message above)", shown())),
    }
}

/// Every file of `target`'s corpus passes; the corpus is not empty.
fn corpus(target: Target) {
    let paths = files("corpus", target);
    assert!(!paths.is_empty(), "{} has no corpus", target.name());
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|path| replay(target, path).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The crash regression `fuzz/regressions/<target>/<name>` passes.
fn regression(target: Target, name: &str) {
    let path = dir("regressions", target).join(name);
    assert!(
        REGRESSIONS.contains(&(target, name)),
        "{name} is not listed in REGRESSIONS"
    );
    if let Err(problem) = replay(target, &path) {
        panic!("{problem}");
    }
}

#[test]
fn scenario_text_corpus() {
    // Goal: every scenario text of the corpus parses or is refused as bad input, and
    // a parsed one survives its JSON.
    corpus(Target::ScenarioText);
}

#[test]
fn sim_program_corpus() {
    // Goal: every program of the corpus completes on the simulator and breaks no
    // invariant.
    corpus(Target::SimProgram);
}

#[test]
fn wait_status_corpus() {
    // Goal: every wait status of the corpus decodes as libc decodes it.
    corpus(Target::WaitStatus);
}

#[test]
fn every_crash_regression_has_its_own_test() {
    // Goal: the files of fuzz/regressions/<target>/ are exactly REGRESSIONS, each
    // replayed by a test named after it, and all of them pass.
    let mut found = Vec::new();
    for target in Target::ALL {
        for path in files("regressions", target) {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            found.push((target, name.unwrap_or_default()));
        }
    }
    let mut listed: Vec<(Target, String)> = REGRESSIONS
        .iter()
        .map(|(target, name)| (*target, name.to_string()))
        .collect();
    found.sort();
    listed.sort();
    assert_eq!(found, listed, "fuzz/regressions against REGRESSIONS");
    for (target, name) in REGRESSIONS {
        regression(*target, name);
    }
}

#[test]
fn sim_program_seeds_are_the_hunts_cases() {
    // Goal: each seed `<watcher>-case-<n>` of the sim_program corpus is the input of
    // the hunt's generated program n for that watcher (so a change in how programs
    // are drawn shows here), and every watcher has one.
    let mut watchers = Vec::new();
    for path in files("corpus", Target::SimProgram) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let Some((watcher, case)) = name.split_once("-case-") else {
            continue;
        };
        let watcher = WatcherName::parse(watcher).unwrap_or_else(|e| panic!("{name}: {e}"));
        let case: u64 = case.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        let data = std::fs::read(&path).unwrap();
        assert!(
            data == fuzzing::sim_program_input(watcher, case),
            "{name} is not the input of case {case}: write it again with \
             fuzzing::sim_program_input"
        );
        watchers.push(watcher);
    }
    watchers.sort();
    watchers.dedup();
    assert_eq!(watchers, WatcherName::ALL);
}
