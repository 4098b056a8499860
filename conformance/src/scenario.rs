//! Scenarios as data: the `loopwatch-scenario/1` format (see `SCENARIOS.md` and
//! `scenario.schema.json` beside this crate).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The format tag every scenario carries.
pub const FORMAT: &str = "loopwatch-scenario/1";

/// A watcher a scenario can run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatcherName {
    /// `SafeChildWatcher`.
    Safe,
    /// `FastChildWatcher`.
    Fast,
    /// `MultiLoopChildWatcher`.
    MultiLoop,
    /// `ThreadedChildWatcher`.
    Threaded,
    /// `PidfdChildWatcher`.
    Pidfd,
    /// `WaitidChildWatcher`: Safe's contract with an O(1) pass. It runs every
    /// scenario that lists Safe (see [`Scenario::runs_with`]), and is compared with
    /// CPython's Safe, CPython having no such watcher.
    Waitid,
    /// `AutoChildWatcher`: Pidfd's contract on a ladder of rungs. It runs every
    /// scenario that lists Pidfd, and is compared with CPython's Pidfd.
    Auto,
}

impl WatcherName {
    /// Every watcher, in a fixed order.
    pub const ALL: [WatcherName; 7] = [
        WatcherName::Safe,
        WatcherName::Fast,
        WatcherName::MultiLoop,
        WatcherName::Threaded,
        WatcherName::Pidfd,
        WatcherName::Waitid,
        WatcherName::Auto,
    ];

    /// The name used on the command line and in scenarios.
    pub fn as_str(self) -> &'static str {
        match self {
            WatcherName::Safe => "safe",
            WatcherName::Fast => "fast",
            WatcherName::MultiLoop => "multi_loop",
            WatcherName::Threaded => "threaded",
            WatcherName::Pidfd => "pidfd",
            WatcherName::Waitid => "waitid",
            WatcherName::Auto => "auto",
        }
    }

    /// Parses a name, or says which names exist.
    ///
    /// # Errors
    ///
    /// [`Error::Unknown`], listing the valid names.
    pub fn parse(text: &str) -> Result<WatcherName, Error> {
        WatcherName::ALL
            .into_iter()
            .find(|w| w.as_str() == text)
            .ok_or_else(|| Error::Unknown {
                what: "watcher",
                given: text.to_string(),
                valid: WatcherName::ALL.iter().map(|w| w.to_string()).collect(),
            })
    }

    /// The built-in watcher whose contract this one keeps, and whose scenarios and
    /// CPython counterpart it is judged by: itself, but Safe for Waitid (CPython has no
    /// such watcher; Waitid keeps Safe's contract, I-1), and Pidfd for Auto.
    pub fn contract(self) -> WatcherName {
        match self {
            WatcherName::Waitid => WatcherName::Safe,
            WatcherName::Auto => WatcherName::Pidfd,
            other => other,
        }
    }

    /// The first CPython minor version (3.x) that has this watcher in the form
    /// loopwatch implements (Pidfd: the stateless form of 3.12), or, for Waitid, its
    /// counterpart there ([`WatcherName::contract`]).
    pub fn since_cpython(self) -> u32 {
        match self {
            WatcherName::Safe | WatcherName::Fast | WatcherName::Waitid => 7,
            WatcherName::MultiLoop | WatcherName::Threaded => 8,
            WatcherName::Pidfd | WatcherName::Auto => 12,
        }
    }
}

impl clap::ValueEnum for WatcherName {
    fn value_variants<'a>() -> &'a [Self] {
        &WatcherName::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            WatcherName::Safe => "SafeChildWatcher",
            WatcherName::Fast => "FastChildWatcher",
            WatcherName::MultiLoop => "MultiLoopChildWatcher (CPython 3.8+)",
            WatcherName::Threaded => "ThreadedChildWatcher (CPython 3.8+)",
            WatcherName::Pidfd => "PidfdChildWatcher (CPython 3.12+ form)",
            WatcherName::Waitid => "WaitidChildWatcher (Safe's contract, O(1) per exit)",
            WatcherName::Auto => "AutoChildWatcher (Pidfd's contract, a ladder of rungs)",
        };
        Some(clap::builder::PossibleValue::new(self.as_str()).help(help))
    }
}

impl fmt::Display for WatcherName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a child does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fate {
    /// Exit with this code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<u8>,
    /// Die from this signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Run until killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forever: Option<bool>,
    /// Wait this long first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_ms: Option<u64>,
}

impl Fate {
    /// The `/bin/sh -c` script, or `None` for a child that runs forever.
    pub fn script(&self) -> Option<String> {
        let pause = match self.after_ms {
            Some(ms) if ms > 0 => format!("sleep {}; ", seconds(ms)),
            _ => String::new(),
        };
        if let Some(code) = self.exit {
            Some(format!("{pause}exit {code}"))
        } else {
            self.signal
                .map(|signal| format!("{pause}kill -{signal} $$"))
        }
    }

    fn check(&self) -> Result<(), Error> {
        let kinds = [
            self.exit.is_some(),
            self.signal.is_some(),
            self.forever == Some(true),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(Error::invalid(
                "a fate needs exactly one of exit, signal, forever",
            ));
        }
        match self.signal {
            Some(signal) => check_signal("fate.signal", signal, SignalUse::Fate),
            None => Ok(()),
        }
    }
}

/// Where a signal number appears.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SignalUse {
    /// A fate: the child sends it to itself (`kill -S $$`) and must die from it.
    Fate,
    /// A `kill` step: the runner sends it to the child.
    Kill,
}

/// Refuses a signal number whose effect the backends would not agree on, naming
/// `field` and the value: every backend must run a scenario the same way, and the
/// simulator models the kernel's default actions, not a particular C library's or
/// terminal session's.
fn check_signal(field: &str, signal: i32, usage: SignalUse) -> Result<(), Error> {
    let refuse = |why: &str| Err(Error::invalid(format!("{field} {signal} {why}")));
    match signal {
        0 => refuse("is not a signal: kill(pid, 0) only checks that the process exists; use 1..64"),
        _ if !(1..=64).contains(&signal) => refuse("is out of range: use 1..64"),
        // glibc reserves them for itself (thread cancellation, setxid) and catches
        // them, so whether a child dies depends on the C library it runs on.
        32 | 33 => refuse("is reserved by the C library, which catches it: use 34..64"),
        // Job-control stops act only when the child's process group is not orphaned,
        // which depends on how the suite was started.
        20..=22 => refuse(&format!(
            "({}) stops a child only when its process group is not orphaned: use 19 (SIGSTOP)",
            signal_name(signal)
        )),
        17 | 18 | 23 | 28 if usage == SignalUse::Fate => refuse(&format!(
            "({}) is ignored by default: the child would not die from it but exit 0; use {{\"exit\": 0}}",
            signal_name(signal)
        )),
        19 if usage == SignalUse::Fate => refuse(
            "(SIGSTOP) stops the child instead of ending it: use {\"forever\": true} and a kill step with 19",
        ),
        _ => Ok(()),
    }
}

/// The name of a signal this module mentions in its errors.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        17 => "SIGCHLD",
        18 => "SIGCONT",
        19 => "SIGSTOP",
        20 => "SIGTSTP",
        21 => "SIGTTIN",
        22 => "SIGTTOU",
        23 => "SIGURG",
        28 => "SIGWINCH",
        _ => "a signal",
    }
}

/// `ms` as seconds the way `sleep` takes them: `0.02`, `1.5`, `2`.
fn seconds(ms: u64) -> String {
    let text = format!("{}.{:03}", ms / 1000, ms % 1000);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Spawn and register in one fork window.
    Start {
        /// The child's name.
        child: String,
        /// What it does.
        fate: Fate,
    },
    /// Spawn only.
    Spawn {
        /// The child's name.
        child: String,
        /// What it does.
        fate: Fate,
    },
    /// Register a spawned child.
    Register {
        /// The child's name.
        child: String,
    },
    /// Remove a child's handler.
    Remove {
        /// The child's name.
        child: String,
    },
    /// Await a child's callback.
    Wait {
        /// The child's name.
        child: String,
        /// Give up after this long (default 5000 ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// Await a loop timer.
    Sleep {
        /// How long.
        ms: u64,
    },
    /// Signal a child.
    Kill {
        /// The child's name.
        child: String,
        /// The signal number.
        signal: i32,
    },
    /// Foreign code waits for the child itself.
    ForeignWait {
        /// The child's name.
        child: String,
    },
    /// Record `watcher.is_active()`.
    Active,
    /// `watcher.attach_loop(loop)`, the runner's loop.
    Attach,
    /// `watcher.attach_loop(None)`.
    Detach,
    /// `watcher.close()`.
    CloseWatcher,
    /// A new watcher of the same kind is attached to the loop and installed as the
    /// policy's; the old one is closed.
    ReplaceWatcher,
    /// A second loop is made and the watcher attached to it; the second loop is
    /// closed, and the watcher goes back to the runner's loop.
    LoopCycle,
    /// Foreign code sets SIGCHLD to `SIG_IGN` (as a parent may leave it, across
    /// `exec`): only as the first step, applied before the loop and watcher are set up.
    IgnoreSigchld,
    /// A foreign thread spawns its own child and waits for it with `waitpid(pid)`.
    ForeignSpawn {
        /// The child's name.
        child: String,
        /// What it does.
        fate: Fate,
    },
    /// Foreign code reaps every zombie child with `waitpid(-1, WNOHANG)`.
    ForeignReapAny,
    /// Start a child through loopwatch's subprocess API (`create_subprocess_exec`,
    /// registered with the policy's watcher); `wait` awaits `process.wait()`.
    Subprocess {
        /// The child's name.
        child: String,
        /// What it does.
        fate: Fate,
    },
    /// `process.kill()`, `process.terminate()` or `process.send_signal(signal)` of a
    /// child started with `subprocess`.
    ProcessSignal {
        /// The child's name.
        child: String,
        /// Which method.
        method: SignalMethod,
        /// The signal, for `send_signal` only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// As `start`, with a callback that panics once it has recorded the exit (the loop
    /// reports the panic to its exception handler and goes on, R-6).
    StartPanicking {
        /// The child's name.
        child: String,
        /// What it does.
        fate: Fate,
    },
    /// Spawn a child that also holds the write end of the pipe SIGCHLD is notified
    /// on (as a child forked without `exec` holds every fd of its parent): its stdout
    /// is that fd when SIGCHLD has one, else inherited. It is not registered.
    ForkHolder {
        /// The child's name.
        child: String,
        /// What it does.
        fate: Fate,
    },
    /// A thread with a loop of its own starts and registers a child with the
    /// policy's watcher, runs its loop until the child's callback (at most 5 s), then
    /// closes its loop.
    ThreadStart {
        /// The child's name.
        child: String,
        /// What it does.
        fate: Fate,
    },
}

/// How [`Step::ProcessSignal`] signals a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalMethod {
    /// `process.kill()`: SIGKILL.
    Kill,
    /// `process.terminate()`: SIGTERM.
    Terminate,
    /// `process.send_signal(signal)`.
    SendSignal,
}

impl Step {
    /// The child the step names, if it names one.
    pub fn child(&self) -> Option<&str> {
        match self {
            Step::Start { child, .. }
            | Step::Spawn { child, .. }
            | Step::Register { child }
            | Step::Remove { child }
            | Step::Wait { child, .. }
            | Step::Kill { child, .. }
            | Step::ForeignWait { child }
            | Step::ForeignSpawn { child, .. }
            | Step::Subprocess { child, .. }
            | Step::ProcessSignal { child, .. }
            | Step::ThreadStart { child, .. }
            | Step::StartPanicking { child, .. }
            | Step::ForkHolder { child, .. } => Some(child),
            Step::Sleep { .. }
            | Step::Active
            | Step::Attach
            | Step::Detach
            | Step::CloseWatcher
            | Step::ReplaceWatcher
            | Step::LoopCycle
            | Step::IgnoreSigchld
            | Step::ForeignReapAny => None,
        }
    }

    /// The child the step creates, and its fate.
    pub fn creates(&self) -> Option<(&str, &Fate)> {
        match self {
            Step::Start { child, fate }
            | Step::Spawn { child, fate }
            | Step::ForeignSpawn { child, fate }
            | Step::Subprocess { child, fate }
            | Step::ThreadStart { child, fate }
            | Step::StartPanicking { child, fate }
            | Step::ForkHolder { child, fate } => Some((child, fate)),
            _ => None,
        }
    }
}

/// Where a scenario came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// Parsed from text given directly ([`Scenario::parse`]).
    #[default]
    Text,
    /// One of the scenarios built into this crate ([`builtin`]).
    Builtin,
    /// A file ([`Scenario::load`]).
    File(PathBuf),
}

/// A scenario file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Always [`FORMAT`].
    pub format: String,
    /// Identifier.
    pub name: String,
    /// One sentence.
    pub description: String,
    /// Spec clauses checked.
    pub clauses: Vec<String>,
    /// Watchers it applies to.
    pub watchers: Vec<WatcherName>,
    /// The operations.
    pub steps: Vec<Step>,
    /// Where it came from (not part of the format).
    #[serde(skip)]
    pub origin: Origin,
}

impl Scenario {
    /// Parses and checks a scenario.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`]: line and column for malformed JSON, or what is wrong.
    pub fn parse(text: &str) -> Result<Scenario, Error> {
        let scenario: Scenario = serde_json::from_str(text).map_err(|e| {
            Error::invalid(format!("line {}, column {}: {e}", e.line(), e.column()))
        })?;
        scenario.check()?;
        Ok(scenario)
    }

    /// The scenario inside a regression file of the hunt (`regressions/*.json`: the
    /// scenario with its watcher, seed and faults), if `text` is one.
    fn of_regression(text: &str) -> Option<Scenario> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        value.get("watcher")?;
        Scenario::parse(&value.get("scenario")?.to_string()).ok()
    }

    /// Reads and parses a scenario file (or the scenario of a hunt's regression
    /// file).
    ///
    /// # Errors
    ///
    /// [`Error::Unreadable`], or [`Scenario::parse`]'s error said of the path.
    pub fn load(path: &Path) -> Result<Scenario, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let mut scenario = Scenario::parse(&text)
            .or_else(|error| Scenario::of_regression(&text).ok_or(error))
            .map_err(|e| e.at(path.display().to_string()))?;
        scenario.origin = Origin::File(path.to_path_buf());
        Ok(scenario)
    }

    /// Whether the scenario runs with `watcher`: it lists it, or lists the watcher whose
    /// contract it keeps ([`WatcherName::contract`]: Waitid runs Safe's scenarios).
    pub fn runs_with(&self, watcher: WatcherName) -> bool {
        self.watchers.contains(&watcher) || self.watchers.contains(&watcher.contract())
    }

    /// Every watcher the scenario runs with ([`Scenario::runs_with`]), in
    /// [`WatcherName::ALL`]'s order.
    pub fn all_watchers(&self) -> Vec<WatcherName> {
        WatcherName::ALL
            .into_iter()
            .filter(|w| self.runs_with(*w))
            .collect()
    }

    /// How a command names this scenario: its path, or the name of a built-in one
    /// (what `cargo loopwatch replay` and `scenario run` take).
    pub fn locator(&self) -> String {
        match &self.origin {
            Origin::File(path) => path.display().to_string(),
            Origin::Builtin | Origin::Text => self.name.clone(),
        }
    }

    /// The command that replays `seed` of this scenario with `watcher` on the
    /// simulator.
    pub fn replay_command(&self, watcher: WatcherName, seed: u64) -> String {
        format!(
            "cargo loopwatch replay {} --watcher {watcher} --seed {seed}",
            self.locator()
        )
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.format != FORMAT {
            return Err(Error::invalid(format!(
                "format must be {FORMAT:?}, not {:?}",
                self.format
            )));
        }
        if self.watchers.is_empty() {
            return Err(Error::invalid("watchers must not be empty"));
        }
        let mut known = std::collections::BTreeSet::new();
        let mut subprocesses = std::collections::BTreeSet::new();
        for (index, step) in self.steps.iter().enumerate() {
            let at = |e: Error| match e {
                Error::Invalid { message, .. } => {
                    Error::invalid(format!("step {index}: {message}"))
                }
                other => other,
            };
            if let Some((child, fate)) = step.creates() {
                fate.check().map_err(at)?;
                if !known.insert(child.to_string()) {
                    return Err(Error::invalid(format!(
                        "step {index}: child {child:?} started twice"
                    )));
                }
                if matches!(step, Step::Subprocess { .. }) {
                    subprocesses.insert(child.to_string());
                }
                continue;
            }
            if let Some(child) = step.child() {
                if !known.contains(child) {
                    return Err(Error::invalid(format!(
                        "step {index}: child {child:?} used before it is spawned"
                    )));
                }
            }
            match step {
                Step::Kill { signal, .. } => {
                    check_signal("kill.signal", *signal, SignalUse::Kill).map_err(at)?;
                }
                Step::ProcessSignal {
                    child,
                    method,
                    signal,
                } => {
                    if !subprocesses.contains(child) {
                        return Err(Error::invalid(format!(
                            "step {index}: process_signal needs a child started with subprocess, not {child:?}"
                        )));
                    }
                    match (method, signal) {
                        (SignalMethod::SendSignal, Some(signal)) => {
                            check_signal("process_signal.signal", *signal, SignalUse::Kill)
                                .map_err(at)?;
                        }
                        (SignalMethod::SendSignal, None) => {
                            return Err(Error::invalid(format!(
                                "step {index}: send_signal needs a signal"
                            )));
                        }
                        (_, Some(_)) => {
                            return Err(Error::invalid(format!(
                                "step {index}: only send_signal takes a signal"
                            )));
                        }
                        (_, None) => {}
                    }
                }
                Step::IgnoreSigchld if index != 0 => {
                    return Err(Error::invalid(format!(
                        "step {index}: ignore_sigchld must be the first step"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Every scenario file in `dir`, sorted by file name.
///
/// # Errors
///
/// [`Error::Unreadable`] when `dir` cannot be read, [`Error::Invalid`] when it holds
/// no scenario file, or the first file's error that cannot be read or parsed.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, Error> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| Error::Unreadable {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    if paths.is_empty() {
        return Err(Error::invalid("no scenario files (*.json) here").at(dir.display().to_string()));
    }
    paths.sort();
    paths.iter().map(|p| Scenario::load(p)).collect()
}

// `BUILTIN`: (file name, text) of every file of `scenarios/`, written by the build
// script, so that the binary runs wherever it is copied.
include!(concat!(env!("OUT_DIR"), "/builtin_scenarios.rs"));

/// The scenarios built into this crate (the files of its `scenarios/` directory when
/// it was built), sorted by file name.
///
/// # Errors
///
/// [`Error::Invalid`] naming the file, if one of them is not valid (a test of this
/// crate checks that none is).
pub fn builtin() -> Result<Vec<Scenario>, Error> {
    BUILTIN
        .iter()
        .map(|(file, text)| {
            let mut scenario =
                Scenario::parse(text).map_err(|e| e.at(format!("built-in {file}")))?;
            scenario.origin = Origin::Builtin;
            Ok(scenario)
        })
        .collect()
}

/// The scenarios of `dir`, or the built-in ones when `dir` is `None`.
///
/// # Errors
///
/// As [`load_dir`] and [`builtin`].
pub fn load(dir: Option<&Path>) -> Result<Vec<Scenario>, Error> {
    match dir {
        Some(dir) => load_dir(dir),
        None => builtin(),
    }
}

/// A scenario named on a command line: the file at `name` if there is one, else the
/// built-in scenario of that name (`two-children` or `two-children.json`).
///
/// # Errors
///
/// The file's error ([`Scenario::load`]), or [`Error::NoScenario`] when there is
/// neither a file nor a built-in scenario of that name.
pub fn find(name: &Path) -> Result<Scenario, Error> {
    if name.exists() {
        return Scenario::load(name);
    }
    let wanted = name.to_string_lossy();
    let wanted = wanted.strip_suffix(".json").unwrap_or(&wanted);
    builtin()?
        .into_iter()
        .find(|s| s.name == wanted)
        .ok_or_else(|| Error::NoScenario {
            given: name.display().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_scenario_is_valid_and_named_after_its_file() {
        // Goal: the scenarios built into the binary parse, and each is found by its
        // name, which is its file's name without `.json`.
        let scenarios = builtin().unwrap();
        assert_eq!(scenarios.len(), BUILTIN.len());
        for (scenario, (file, _)) in scenarios.iter().zip(BUILTIN) {
            assert_eq!(format!("{}.json", scenario.name), *file);
            assert_eq!(scenario.origin, Origin::Builtin);
        }
        let found = find(Path::new("two-children.json")).unwrap();
        assert_eq!(found.name, "two-children");
        assert_eq!(
            found.replay_command(WatcherName::Fast, 3),
            "cargo loopwatch replay two-children --watcher fast --seed 3"
        );
    }

    #[test]
    fn a_name_that_is_neither_file_nor_built_in_is_bad_input() {
        // Goal: an unknown scenario name is refused as bad input, pointing at the list.
        let error = find(Path::new("no-such-scenario")).unwrap_err();
        assert!(error.is_bad_input());
        assert!(error.to_string().contains("scenario list"), "{error}");
        let error = load_dir(Path::new("no-such-dir")).unwrap_err();
        assert!(error.is_bad_input());
        assert!(error.to_string().starts_with("no-such-dir: "), "{error}");
    }
}
