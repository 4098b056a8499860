//! The `loopwatch` binary: bad input gets a clear error on stderr, exit code 2 and
//! nothing on stdout; a divergence exits 1; a run where everything matched exits 0;
//! its output when stderr is not a terminal, without CPython, and as JUnit XML.

use std::path::{Path, PathBuf};
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
    refused(
        &output,
        "[possible values: safe, fast, multi_loop, threaded, pidfd, waitid, auto]",
    );
    let output = loopwatch(&["explore", "--watcher", "fastt"]);
    refused(&output, "a similar value exists: 'fast'");
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
    refused(&output, "invalid value 'jython' for '--backend <BACKEND>'");
    // A CPython that is not installed is bad input, naming those that are (here:
    // none, as discovery is off).
    let output = loopwatch(&[
        "scenario",
        "run",
        "two-children",
        "--backend",
        "cpython3.99",
        "--no-python-discovery",
    ]);
    refused(&output, "no CPython 3.99 found");
}

#[test]
fn explore_runs_generated_programs_alone() {
    // Goal: `--seeds 0 --programs N` runs the generated programs and no scenario, so it
    // needs no reference trace from the real OS (it used to fail asking for one).
    let output = loopwatch(&[
        "explore",
        "--watcher",
        "pidfd",
        "--seeds",
        "0",
        "--programs",
        "3",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
}

#[test]
fn zoo_refuses_a_mutant_its_watcher_never_runs() {
    // Goal: `zoo --watcher W` hunts mutants inside W, and one whose code W never runs
    // (Fast's, inside Auto) is refused before any run, with the reason.
    refused(
        &loopwatch(&[
            "zoo",
            "--watcher",
            "auto",
            "--mutant",
            "fast-hangs-on-stolen",
        ]),
        "the auto watcher never runs the code of fast-hangs-on-stolen",
    );
}

#[test]
fn bad_faults_and_negative_seeds_are_refused() {
    // Goal: an unknown fault is refused with the valid ones and a suggestion; a
    // negative seed with a message that says what a seed is (not clap's advice to
    // write `-- -1`, which does not work).
    let output = loopwatch(&["explore", "--watcher", "safe", "--faults", "eintr,lagg"]);
    refused(&output, "a similar value exists: 'lag'");
    let output = loopwatch(&[
        "replay",
        "two-children",
        "--watcher",
        "safe",
        "--seed",
        "-1",
    ]);
    refused(&output, "a seed cannot be negative");
    let output = loopwatch(&["check", "--seeds", "-3"]);
    refused(&output, "a number of seeds cannot be negative");
}

#[test]
fn a_missing_scenario_dir_or_file_is_bad_input() {
    // Goal: a scenario directory or file that does not exist exits 2 before any run.
    refused(
        &loopwatch(&["check", "--scenarios", "no-such-dir", "--no-cpython"]),
        "no-such-dir: No such file or directory",
    );
    refused(
        &loopwatch(&["explore", "--watcher", "safe", "--scenarios", "no-such-dir"]),
        "no-such-dir",
    );
    refused(
        &loopwatch(&["scenario", "run", "no-such-scenario.json"]),
        "no such file, and no built-in scenario of that name",
    );
}

#[test]
fn version_is_the_crate_version() {
    // Goal: `--version` prints the name and version and exits 0.
    let output = loopwatch(&["--version"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("loopwatch {}", env!("CARGO_PKG_VERSION"))
    );
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

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let pid = loopwatch::kernel::Processes::getpid(&loopwatch::OsKernel);
        let dir = std::env::temp_dir().join(format!("loopwatch-cli-{tag}-{}", pid.0));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A scenario directory holding the built-in `two-children` alone.
    fn with_two_children(tag: &str) -> TempDir {
        let dir = TempDir::new(tag);
        let scenarios = dir.0.join("scenarios");
        std::fs::create_dir_all(&scenarios).unwrap();
        let two = loopwatch_conformance::scenario::find(Path::new("two-children")).unwrap();
        std::fs::write(
            scenarios.join("two-children.json"),
            serde_json::to_string_pretty(&two).unwrap(),
        )
        .unwrap();
        dir
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary in `dir` (its report goes to `dir/target/loopwatch`).
fn loopwatch_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopwatch"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

#[test]
fn check_without_cpython_marks_cells_na_and_prints_plain_lines() {
    // Goal: with no CPython to compare with, `check` says so on stderr, marks the
    // CPython cells `n/a` (not `-`, which means "no such watcher in that version"),
    // never claims CPython runs, announces each phase on a line of its own when
    // stderr is not a terminal (no `\r`), prints the report's absolute path, writes
    // well-formed JUnit XML, and exits 0 as everything that ran matched.
    let dir = TempDir::with_two_children("na");
    let output = loopwatch_in(
        &dir.0,
        &[
            "check",
            "--scenarios",
            "scenarios",
            "--seeds",
            "1",
            "--no-zoo",
            "--no-python-discovery",
            "--junit",
            "report.xml",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains('\r'), "a carriage return: {stderr:?}");
    assert!(stderr.contains("notice: no CPython found"), "{stderr}");
    for phase in ["== OS and simulator runs", "== policy checks"] {
        assert!(stderr.contains(phase), "{phase:?} not announced: {stderr}");
    }
    assert!(!stderr.contains("CPython runs"), "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("two-children") && l.contains(" pidfd "))
        .expect("the pidfd row");
    assert!(row.contains("os:ok sim:ok"), "{row}");
    assert!(
        row.contains("cpython3.11:-"),
        "3.11 has no pidfd watcher: {row}"
    );
    assert!(row.contains("cpython3.12:n/a"), "{row}");
    let report = dir.0.join("target").join("loopwatch").join("report.md");
    assert!(
        stdout.contains(&format!("report: {}", report.display())),
        "{stdout}"
    );
    assert!(report.exists());
    let xml = std::fs::read_to_string(dir.0.join("report.xml")).expect("the JUnit report");
    well_formed(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert!(xml.contains("<testsuite name=\"cpython3.12\""), "{xml}");
    assert!(
        xml.contains("<skipped message=\"no CPython 3.12 found\"/>"),
        "{xml}"
    );
}

#[test]
fn a_zoo_watcher_is_caught_and_exits_1() {
    // Goal: a broken watcher's divergence is a result, not an error: exit code 1,
    // naming the scenario and the clauses it broke, with both traces.
    let dir = TempDir::with_two_children("zoo");
    let output = loopwatch_in(
        &dir.0,
        &[
            "check",
            "--zoo",
            "shell-returncode",
            "--scenarios",
            "scenarios",
            "--seeds",
            "1",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("zoo-shell-returncode(safe) breaks two-children / zoo-shell-returncode(safe) on os (clauses S-5, R-1)"),
        "{stdout}"
    );
    assert!(stdout.contains("> exit b 143"), "{stdout}");
}

/// Checks that `xml` is well-formed: one root element, every tag closed in order,
/// attribute values quoted, and no `<` or stray `&` in text or attributes.
fn well_formed(xml: &str) -> Result<(), String> {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .ok_or("no XML declaration")?;
    let entity = |text: &str| -> Result<(), String> {
        let mut rest = text;
        while let Some(at) = rest.find('&') {
            let after = &rest[at + 1..];
            let end = after
                .find(';')
                .ok_or(format!("unterminated entity in {text:?}"))?;
            let name = &after[..end];
            let known = ["amp", "lt", "gt", "quot", "apos"].contains(&name)
                || name
                    .strip_prefix('#')
                    .is_some_and(|n| n.parse::<u32>().is_ok());
            if !known {
                return Err(format!("unknown entity &{name}; in {text:?}"));
            }
            rest = &after[end + 1..];
        }
        Ok(())
    };
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let Some(open) = rest.find('<') else {
            if !rest.trim().is_empty() {
                return Err(format!("text after the root: {rest:?}"));
            }
            break;
        };
        let text = &rest[..open];
        entity(text)?;
        if stack.is_empty() && !text.trim().is_empty() {
            return Err(format!("text outside the root: {text:?}"));
        }
        let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let empty = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, mut attributes) = tag.split_once(' ').unwrap_or((tag, ""));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("bad tag name {name:?}"));
        }
        while !attributes.trim().is_empty() {
            let (key, value) = attributes
                .trim_start()
                .split_once("=\"")
                .ok_or(format!("unquoted attribute in <{tag}>"))?;
            if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad attribute name {key:?}"));
            }
            let end = value.find('"').ok_or("unterminated attribute")?;
            let text = &value[..end];
            if text.contains('<') {
                return Err(format!("'<' in attribute {key}"));
            }
            entity(text)?;
            attributes = &value[end + 1..];
        }
        if stack.is_empty() {
            roots += 1;
        }
        if !empty {
            stack.push(name.to_string());
        }
    }
    match (stack.is_empty(), roots) {
        (true, 1) => Ok(()),
        (false, _) => Err(format!("unclosed elements {stack:?}")),
        (true, n) => Err(format!("{n} root elements")),
    }
}
