//! Scenarios as data: the `loopwatch-scenario/1` format (see `SCENARIOS.md` and
//! `scenario.schema.json` beside this crate).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

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
}

impl WatcherName {
    /// Every watcher, in a fixed order.
    pub const ALL: [WatcherName; 5] = [
        WatcherName::Safe,
        WatcherName::Fast,
        WatcherName::MultiLoop,
        WatcherName::Threaded,
        WatcherName::Pidfd,
    ];

    /// The name used on the command line and in scenarios.
    pub fn as_str(self) -> &'static str {
        match self {
            WatcherName::Safe => "safe",
            WatcherName::Fast => "fast",
            WatcherName::MultiLoop => "multi_loop",
            WatcherName::Threaded => "threaded",
            WatcherName::Pidfd => "pidfd",
        }
    }

    /// Parses a name, or says which names exist.
    ///
    /// # Errors
    ///
    /// A message listing the valid names.
    pub fn parse(text: &str) -> Result<WatcherName, String> {
        WatcherName::ALL
            .into_iter()
            .find(|w| w.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = WatcherName::ALL.iter().map(|w| w.as_str()).collect();
                format!("unknown watcher {text:?}; valid: {}", names.join(", "))
            })
    }

    /// The first CPython minor version (3.x) that has this watcher in the form
    /// loopwatch implements (Pidfd: the stateless form of 3.12).
    pub fn since_cpython(self) -> u32 {
        match self {
            WatcherName::Safe | WatcherName::Fast => 7,
            WatcherName::MultiLoop | WatcherName::Threaded => 8,
            WatcherName::Pidfd => 12,
        }
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

    fn check(&self) -> Result<(), String> {
        let kinds = [
            self.exit.is_some(),
            self.signal.is_some(),
            self.forever == Some(true),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err("a fate needs exactly one of exit, signal, forever".into());
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
fn check_signal(field: &str, signal: i32, usage: SignalUse) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("{field} {signal} {why}"));
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
}

impl Scenario {
    /// Parses and checks a scenario.
    ///
    /// # Errors
    ///
    /// A message with line and column for malformed JSON, or naming what is wrong.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = serde_json::from_str(text)
            .map_err(|e| format!("line {}, column {}: {e}", e.line(), e.column()))?;
        scenario.check()?;
        Ok(scenario)
    }

    /// Reads and parses a scenario file.
    ///
    /// # Errors
    ///
    /// The file's read error, or [`Scenario::parse`]'s, prefixed with the path.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Scenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format must be {FORMAT:?}, not {:?}", self.format));
        }
        if self.watchers.is_empty() {
            return Err("watchers must not be empty".into());
        }
        let mut known = std::collections::BTreeSet::new();
        for (index, step) in self.steps.iter().enumerate() {
            let at = |e: String| format!("step {index}: {e}");
            match step {
                Step::Start { child, fate } | Step::Spawn { child, fate } => {
                    fate.check().map_err(at)?;
                    if !known.insert(child.clone()) {
                        return Err(at(format!("child {child:?} started twice")));
                    }
                }
                Step::Kill { child, signal } => {
                    check_signal("kill.signal", *signal, SignalUse::Kill).map_err(at)?;
                    if !known.contains(child) {
                        return Err(at(format!("child {child:?} used before it is spawned")));
                    }
                }
                Step::Register { child }
                | Step::Remove { child }
                | Step::Wait { child, .. }
                | Step::ForeignWait { child } => {
                    if !known.contains(child) {
                        return Err(at(format!("child {child:?} used before it is spawned")));
                    }
                }
                Step::Sleep { .. } | Step::Active => {}
            }
        }
        Ok(())
    }
}

/// Every scenario file in `dir`, sorted by file name.
///
/// # Errors
///
/// The first file that cannot be read or parsed.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Scenario::load(p)).collect()
}
