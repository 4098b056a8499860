//! Scenarios that loom explores: each is run on the simulator driven by loom's
//! threads (`--cfg loom`), in every order of its threads, exits and signals up to the
//! preemption bound, and every run is judged by the invariant checker. Some of them
//! also catch a mutant of the zoo ([`LoomModel::catches`]), which is how
//! `cargo loopwatch zoo` lists loom as a technique.
//!
//! The models run in the `loom` test binary of this crate:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p loopwatch-conformance --release --test loom
//! ```
//!
//! Each model has its own preemption bound ([`LoomModel::preemptions`]);
//! `LOOM_MAX_PREEMPTIONS` sets one for all.

use loopwatch::zoo::Mutant;

use crate::Error;
use crate::explore::Fault;
use crate::scenario::{Scenario, WatcherName};

/// One scenario for loom to explore with one watcher.
#[derive(Clone, Copy, Debug)]
pub struct LoomModel {
    /// Its name, which is also its test's name in the `loom` test binary.
    pub name: &'static str,
    /// What it checks.
    pub goal: &'static str,
    /// The watcher.
    pub watcher: WatcherName,
    /// Faults switched on (the simulator's own choices come from seed 0).
    pub faults: &'static [Fault],
    /// The scenario: a built-in scenario's name, or a scenario file's text.
    pub scenario: Source,
    /// The mutant this model catches, if any: with it switched on, some explored
    /// execution breaks an invariant.
    pub catches: Option<Mutant>,
    /// Its preemption bound when `LOOM_MAX_PREEMPTIONS` does not set one: 2, or 1 for
    /// a model whose executions are too many at 2 to explore in a few minutes.
    pub preemptions: usize,
}

/// Where a model's scenario comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// A built-in scenario, by name.
    Builtin(&'static str),
    /// A scenario file of its own under `conformance/loom/`.
    Own(&'static str),
}

impl LoomModel {
    /// Its scenario.
    ///
    /// # Errors
    ///
    /// The scenario cannot be found or parsed (a bug of the table).
    pub fn scenario(&self) -> Result<Scenario, Error> {
        match self.scenario {
            Source::Builtin(name) => crate::scenario::find(std::path::Path::new(name)),
            Source::Own(text) => Scenario::parse(text),
        }
    }

    /// The command that runs this model alone.
    pub fn command(&self) -> String {
        self.command_for(self.name)
    }

    /// The command that runs this model alone with its mutant on (its test in the
    /// `loom` binary's `zoo` module), if it names one.
    pub fn zoo_command(&self) -> Option<String> {
        self.catches
            .map(|_| self.command_for(&format!("zoo::{}", self.name)))
    }

    fn command_for(&self, test: &str) -> String {
        format!(
            "RUSTFLAGS=\"--cfg loom\" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS={} \
             cargo test -p loopwatch-conformance --release --test loom -- --exact {test}",
            self.preemptions
        )
    }
}

/// The model that catches `mutant`, if one does.
pub fn catching(mutant: Mutant) -> Option<&'static LoomModel> {
    MODELS.iter().find(|m| m.catches == Some(mutant))
}

macro_rules! own {
    ($file:literal) => {
        Source::Own(include_str!(concat!("../loom/", $file, ".json")))
    };
}

/// Every model.
pub const MODELS: &[LoomModel] = &[
    LoomModel {
        name: "threaded_exit_zero",
        goal: "a child exiting at once, its waiter thread and the loop: reported 0, once",
        watcher: WatcherName::Threaded,
        faults: &[],
        scenario: Source::Builtin("exit-zero"),
        catches: Some(Mutant::ThreadedDoubleWaiter),
        preemptions: 1,
    },
    LoomModel {
        name: "threaded_waiter_against_remove_and_close",
        goal: "Threaded's waiter threads against remove_child_handler and close()",
        watcher: WatcherName::Threaded,
        faults: &[],
        scenario: own!("waiter-remove-close"),
        catches: None,
        preemptions: 1,
    },
    LoomModel {
        name: "threaded_idle_waiter_takes_the_next_child",
        goal: "a waiter going idle against the next registration and close()",
        watcher: WatcherName::Threaded,
        faults: &[],
        scenario: own!("idle-waiter-reused"),
        catches: None,
        preemptions: 1,
    },
    LoomModel {
        name: "threaded_hop_wakes_a_sleeping_loop",
        goal: "an exit reaches a loop asleep in poll through call_soon_threadsafe",
        watcher: WatcherName::Threaded,
        faults: &[],
        scenario: own!("exit-while-asleep"),
        catches: Some(Mutant::ThreadsafeNoWake),
        preemptions: 2,
    },
    LoomModel {
        name: "safe_exit_races_registration",
        goal: "Safe: a child's exit and SIGCHLD against its registration",
        watcher: WatcherName::Safe,
        faults: &[],
        scenario: Source::Builtin("exited-before-register"),
        catches: Some(Mutant::SafeNoInitialPoll),
        preemptions: 2,
    },
    LoomModel {
        name: "fast_exit_races_registration",
        goal: "Fast: an exit inside the fork window against add_child_handler",
        watcher: WatcherName::Fast,
        faults: &[],
        scenario: own!("exit-in-fork-window"),
        catches: None,
        preemptions: 2,
    },
    LoomModel {
        name: "safe_handler_table",
        goal: "Safe's handler table: add, remove, exits and close()",
        watcher: WatcherName::Safe,
        faults: &[],
        scenario: own!("handler-table"),
        catches: None,
        preemptions: 2,
    },
    LoomModel {
        name: "fast_handler_table",
        goal: "Fast's handler table: add, remove, exits and close()",
        watcher: WatcherName::Fast,
        faults: &[],
        scenario: own!("handler-table"),
        catches: None,
        preemptions: 2,
    },
    LoomModel {
        name: "pidfd_handler_table",
        goal: "Pidfd's handler table: add, remove, exits and close()",
        watcher: WatcherName::Pidfd,
        faults: &[],
        scenario: own!("handler-table"),
        catches: None,
        preemptions: 2,
    },
    LoomModel {
        name: "multi_loop_handler_table",
        goal: "MultiLoop's handler table: add, remove, exits and close()",
        watcher: WatcherName::MultiLoop,
        faults: &[],
        scenario: own!("handler-table"),
        catches: None,
        preemptions: 2,
    },
    LoomModel {
        name: "threaded_handler_table",
        goal: "Threaded's handler table: add, remove, exits and close()",
        watcher: WatcherName::Threaded,
        faults: &[],
        scenario: own!("handler-table"),
        catches: None,
        preemptions: 1,
    },
    LoomModel {
        name: "multi_loop_two_loops_one_closing",
        goal: "MultiLoop's reaper dispatching to two loops while one closes",
        watcher: WatcherName::MultiLoop,
        faults: &[],
        scenario: own!("two-loops-one-closing"),
        catches: Some(Mutant::MultiLoopNoWake),
        preemptions: 1,
    },
    LoomModel {
        name: "multi_loop_overlapping_passes",
        goal: "MultiLoop: the add-time poll against the reaper's pass",
        watcher: WatcherName::MultiLoop,
        faults: &[],
        scenario: own!("exit-in-fork-window"),
        catches: Some(Mutant::MultiLoopReentrant255),
        preemptions: 2,
    },
    LoomModel {
        name: "pidfd_reaped_elsewhere",
        goal: "Pidfd: a child reaped by other code before its pidfd is read",
        watcher: WatcherName::Pidfd,
        faults: &[],
        scenario: Source::Builtin("reaped-elsewhere"),
        catches: Some(Mutant::PidfdUnhandledEchild),
        preemptions: 2,
    },
    LoomModel {
        name: "fast_reaped_elsewhere",
        goal: "Fast: a registered child reaped by other code",
        watcher: WatcherName::Fast,
        faults: &[],
        scenario: Source::Builtin("reaped-elsewhere"),
        catches: Some(Mutant::FastHangsOnStolen),
        preemptions: 2,
    },
    LoomModel {
        name: "safe_panicking_callback",
        goal: "Safe: a panicking callback and an exit coalesced into the same SIGCHLD",
        watcher: WatcherName::Safe,
        faults: &[],
        scenario: own!("panic-and-exit"),
        catches: Some(Mutant::PanicEndsPass),
        preemptions: 2,
    },
    LoomModel {
        name: "fast_registration_from_another_thread",
        goal: "Fast: a pass in the main loop while another thread's fork window is open",
        watcher: WatcherName::Fast,
        faults: &[],
        scenario: own!("register-from-another-thread"),
        catches: Some(Mutant::FastLostEarlyExit),
        preemptions: 2,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the table is consistent without a loom build: each model's scenario parses
    // and names its watcher, names are unique, and no mutant is claimed twice (the zoo
    // names one model per mutant).
    #[test]
    fn every_model_is_well_formed() {
        for (i, model) in MODELS.iter().enumerate() {
            let scenario = model
                .scenario()
                .unwrap_or_else(|e| panic!("loom model {}: {e}", model.name));
            assert!(
                scenario.watchers.contains(&model.watcher),
                "loom model {}: scenario {} does not run on {}",
                model.name,
                scenario.name,
                model.watcher.as_str()
            );
            assert!((1..=3).contains(&model.preemptions), "{}", model.name);
            for other in &MODELS[i + 1..] {
                assert_ne!(model.name, other.name, "two loom models share a name");
                if model.catches.is_some() {
                    assert_ne!(
                        model.catches, other.catches,
                        "{} and {}",
                        model.name, other.name
                    );
                }
            }
            assert_eq!(
                model.zoo_command().is_some(),
                model.catches.is_some(),
                "{}",
                model.name
            );
        }
    }
}
