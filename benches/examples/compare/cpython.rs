//! The CPython side: the interpreters pyenv has installed, and `harness.py` run under
//! one of them with one watcher, its JSON read back and checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use loopwatch_benches::Watcher;
use serde_json::Value;

use crate::report::Version;

/// The oldest and newest CPython whose asyncio has child watchers (3.14 removed them).
const OLDEST: (u32, u32) = (3, 7);
const NEWEST: (u32, u32) = (3, 13);

/// A CPython interpreter installed by pyenv.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Python {
    pub(crate) version: Version,
    pub(crate) executable: PathBuf,
}

/// The CPythons under `$(pyenv root)/versions/` that the harness runs on, oldest
/// first, and a notice for each other entry or for pyenv's absence.
pub(crate) fn discover() -> (Vec<Python>, Vec<String>) {
    #[allow(
        clippy::disallowed_methods,
        reason = "asking pyenv where it keeps its interpreters"
    )]
    let output = Command::new("pyenv")
        .arg("root")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let root = match output {
        Ok(output) if output.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
        Ok(output) => {
            return (
                Vec::new(),
                vec![format!(
                    "`pyenv root` failed ({}): no CPython rows",
                    output.status
                )],
            );
        }
        Err(error) => {
            return (
                Vec::new(),
                vec![format!("pyenv not found ({error}): no CPython rows")],
            );
        }
    };
    let (pythons, mut notices) = scan(&root.join("versions"));
    if pythons.is_empty() {
        notices.push(format!(
            "no CPython {}.{} to {}.{} under {}: no CPython rows",
            OLDEST.0,
            OLDEST.1,
            NEWEST.0,
            NEWEST.1,
            root.join("versions").display()
        ));
    }
    (pythons, notices)
}

/// The usable CPythons in a pyenv `versions` directory, and notices for the rest.
pub(crate) fn scan(versions: &Path) -> (Vec<Python>, Vec<String>) {
    let mut pythons = Vec::new();
    let mut notices = Vec::new();
    let entries = match std::fs::read_dir(versions) {
        Ok(entries) => entries,
        Err(error) => {
            notices.push(format!("cannot list {}: {error}", versions.display()));
            return (pythons, notices);
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(version) = Version::parse(&name) else {
            notices.push(format!(
                "skipping pyenv version {name:?}: not a CPython release"
            ));
            continue;
        };
        let minor = (version.major, version.minor);
        if minor < OLDEST || minor > NEWEST {
            notices.push(format!(
                "skipping CPython {version}: the harness needs {}.{} to {}.{} (asyncio's child watchers)",
                OLDEST.0, OLDEST.1, NEWEST.0, NEWEST.1
            ));
            continue;
        }
        let executable = entry.path().join("bin").join("python3");
        if !executable.is_file() {
            notices.push(format!(
                "skipping CPython {version}: no {}",
                executable.display()
            ));
            continue;
        }
        pythons.push(Python {
            version,
            executable,
        });
    }
    pythons.sort_by_key(|python| python.version);
    (pythons, notices)
}

/// What the harness reported for one watcher.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Per K asked for: the per-reap samples (ns) and their median.
    Measured(Vec<Case>),
    /// This version lacks the watcher, with the harness's reason.
    Unavailable(String),
}

/// One K's figures from the harness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Case {
    pub(crate) k: u64,
    pub(crate) samples_ns: Vec<u64>,
    pub(crate) median_ns: u64,
}

/// Runs `harness` under `python` with `watcher`: `reps` timed reaps (after `warmup`)
/// at each of `ks`.
///
/// # Errors
///
/// The interpreter could not be started, the harness failed (its stderr is in the
/// message), or its output is not the JSON it promises.
pub(crate) fn run(
    python: &Python,
    harness: &Path,
    watcher: Watcher,
    ks: &[u64],
    reps: usize,
    warmup: usize,
) -> Result<Outcome, String> {
    let ks_text: Vec<String> = ks.iter().map(u64::to_string).collect();
    #[allow(
        clippy::disallowed_methods,
        reason = "running the CPython harness is what this comparison is for"
    )]
    let output = Command::new(&python.executable)
        .arg(harness)
        .args(["--watcher", watcher.name()])
        .args(["--k", &ks_text.join(",")])
        .args(["--reps", &reps.to_string()])
        .args(["--warmup", &warmup.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("starting {}: {error}", python.executable.display()))?;
    if !output.status.success() {
        return Err(format!(
            "harness.py under CPython {} ({watcher}) failed, {}: {}",
            python.version,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse(&stdout, &python.version, watcher, ks, reps).map_err(|error| {
        format!(
            "harness.py under CPython {} ({watcher}): {error} in {:?}",
            python.version,
            stdout.trim()
        )
    })
}

/// Reads and checks the harness's JSON.
///
/// # Errors
///
/// Not JSON, or not the object the harness documents for this version, watcher, list
/// of K and number of repetitions.
pub(crate) fn parse(
    text: &str,
    version: &Version,
    watcher: Watcher,
    ks: &[u64],
    reps: usize,
) -> Result<Outcome, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let field = |name: &str| value.get(name).ok_or_else(|| format!("no {name:?}"));
    let string = |name: &str| {
        field(name)?
            .as_str()
            .ok_or_else(|| format!("{name:?} is not a string"))
    };
    if string("implementation")? != "CPython" {
        return Err("\"implementation\" is not \"CPython\"".into());
    }
    if string("version")? != version.to_string() {
        return Err(format!("\"version\" is not \"{version}\""));
    }
    if string("watcher")? != watcher.name() {
        return Err(format!("\"watcher\" is not \"{watcher}\""));
    }
    let available = field("available")?
        .as_bool()
        .ok_or("\"available\" is not a boolean")?;
    if !available {
        return Ok(Outcome::Unavailable(string("reason")?.to_string()));
    }
    let cases = field("cases")?
        .as_array()
        .ok_or("\"cases\" is not an array")?;
    if cases.len() != ks.len() {
        return Err(format!("{} cases for {} K", cases.len(), ks.len()));
    }
    let mut out = Vec::with_capacity(cases.len());
    for (case, &k) in cases.iter().zip(ks) {
        let number = |name: &str| {
            case.get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("a case's {name:?} is not a whole number"))
        };
        if number("k")? != k {
            return Err(format!("a case is not for K = {k}"));
        }
        let samples_ns = case
            .get("samples_ns")
            .and_then(Value::as_array)
            .ok_or("a case's \"samples_ns\" is not an array")?
            .iter()
            .map(|sample| sample.as_u64().filter(|&ns| ns > 0))
            .collect::<Option<Vec<u64>>>()
            .ok_or("a sample is not a positive whole number")?;
        if samples_ns.len() != reps {
            return Err(format!(
                "{} samples for {reps} repetitions",
                samples_ns.len()
            ));
        }
        let median_ns = number("median_ns")?;
        if !samples_ns.contains(&median_ns) {
            return Err("the median is not one of the samples".into());
        }
        out.push(Case {
            k,
            samples_ns,
            median_ns,
        });
    }
    Ok(Outcome::Measured(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Version = Version {
        major: 3,
        minor: 12,
        patch: 1,
    };

    fn harness() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("cpython/harness.py")
    }

    #[test]
    fn parses_the_documented_shapes() {
        let measured = r#"{"implementation": "CPython", "version": "3.12.1", "watcher": "safe",
            "available": true, "cases": [{"k": 0, "samples_ns": [3, 1, 2], "median_ns": 2},
            {"k": 100, "samples_ns": [5, 4, 6], "median_ns": 5}]}"#;
        assert_eq!(
            parse(measured, &V, Watcher::Safe, &[0, 100], 3),
            Ok(Outcome::Measured(vec![
                Case {
                    k: 0,
                    samples_ns: vec![3, 1, 2],
                    median_ns: 2
                },
                Case {
                    k: 100,
                    samples_ns: vec![5, 4, 6],
                    median_ns: 5
                }
            ]))
        );
        let unavailable = r#"{"implementation": "CPython", "version": "3.12.1",
            "watcher": "pidfd", "available": false, "reason": "pidfd_open failed"}"#;
        assert_eq!(
            parse(unavailable, &V, Watcher::Pidfd, &[0], 3),
            Ok(Outcome::Unavailable("pidfd_open failed".into()))
        );
    }

    #[test]
    fn rejects_other_shapes() {
        let good = r#"{"implementation": "CPython", "version": "3.12.1", "watcher": "safe",
            "available": true, "cases": [{"k": 0, "samples_ns": [3, 1, 2], "median_ns": 2}]}"#;
        assert!(parse(good, &V, Watcher::Safe, &[0], 3).is_ok());
        for (bad, why) in [
            (good.replace("3.12.1", "3.11.0"), "version"),
            (good.replace("safe", "fast"), "watcher"),
            (good.replace("[3, 1, 2]", "[3, 1]"), "samples"),
            (good.replace("[3, 1, 2]", "[3, -1, 2]"), "sample"),
            (
                good.replace("\"median_ns\": 2", "\"median_ns\": 7"),
                "median",
            ),
            (good.replace("\"k\": 0", "\"k\": 5"), "K"),
            (good.replace("true", "\"yes\""), "available"),
            (good[..40].to_string(), "JSON"),
        ] {
            let error = parse(&bad, &V, Watcher::Safe, &[0], 3).unwrap_err();
            assert!(error.contains(why), "{why}: {error}");
        }
        assert!(parse(good, &V, Watcher::Safe, &[0, 100], 3).is_err());
    }

    #[test]
    fn scans_a_versions_directory() {
        #[allow(
            clippy::disallowed_methods,
            reason = "a directory of this test process's own"
        )]
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("loopwatch-compare-scan-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        for name in [
            "3.12.1",
            "3.6.15",
            "3.14.0",
            "pypy3.10-7.3.17",
            "3.9.18",
            "3.8.1",
        ] {
            std::fs::create_dir_all(dir.join(name).join("bin")).unwrap();
        }
        for name in ["3.12.1", "3.6.15", "3.14.0", "3.9.18"] {
            std::fs::write(dir.join(name).join("bin/python3"), "").unwrap();
        }
        let (pythons, notices) = scan(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let versions: Vec<String> = pythons.iter().map(|p| p.version.to_string()).collect();
        assert_eq!(versions, ["3.9.18", "3.12.1"]);
        assert_eq!(notices.len(), 4, "{notices:?}");
        assert!(notices.iter().any(|n| n.contains("3.6.15")));
        assert!(notices.iter().any(|n| n.contains("3.14.0")));
        assert!(notices.iter().any(|n| n.contains("pypy")));
        assert!(
            notices
                .iter()
                .any(|n| n.contains("3.8.1") && n.contains("no "))
        );
    }

    /// The plumbing from this side to harness.py and back, on the first CPython found:
    /// every watcher either measured with the shape asked for or reported unavailable
    /// (with 3.9 or later and `pidfd_open` working, all five are measured).
    #[test]
    fn the_harness_answers_in_quick_mode() {
        let (pythons, notices) = discover();
        let Some(python) = pythons.first() else {
            println!("SKIPPED the_harness_answers_in_quick_mode: {notices:?}");
            eprintln!("SKIPPED the_harness_answers_in_quick_mode: {notices:?}");
            return;
        };
        let mut measured = 0;
        for watcher in Watcher::ALL.into_iter().filter(|w| w.in_cpython()) {
            match run(python, &harness(), watcher, &[0, 3], 2, 0) {
                Ok(Outcome::Measured(cases)) => {
                    assert_eq!(cases.len(), 2);
                    measured += 1;
                }
                Ok(Outcome::Unavailable(reason)) => {
                    assert!(!reason.is_empty());
                    let minor = (python.version.major, python.version.minor);
                    assert!(
                        matches!(watcher, Watcher::MultiLoop | Watcher::Threaded) && minor < (3, 8)
                            || watcher == Watcher::Pidfd,
                        "{watcher} unavailable on {}: {reason}",
                        python.version
                    );
                }
                Err(error) => panic!("{error}"),
            }
        }
        // Safe and Fast exist in every version the harness accepts.
        assert!(measured >= 2);
    }

    #[test]
    fn the_harness_refuses_bad_arguments() {
        let (pythons, notices) = discover();
        let Some(python) = pythons.first() else {
            println!("SKIPPED the_harness_refuses_bad_arguments: {notices:?}");
            eprintln!("SKIPPED the_harness_refuses_bad_arguments: {notices:?}");
            return;
        };
        for args in [
            &["--watcher", "slow"][..],
            &["--watcher", "safe", "--k", "0,lots"],
            &["--watcher", "safe", "--reps", "0"],
            &[],
        ] {
            #[allow(clippy::disallowed_methods, reason = "running the harness")]
            let output = Command::new(&python.executable)
                .arg(harness())
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(2), "{args:?}");
            assert!(output.stdout.is_empty(), "{args:?}");
        }
    }
}
