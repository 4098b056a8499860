//! Seeded exploration: every scenario of a watcher on the simulator, over many seeds,
//! with faults a real kernel may show that must not change what the watcher reports
//! (EINTR on blocking calls, spurious poll wake-ups). The invariant: each seed's trace
//! equals the real OS's. Seeds are sharded by `seed % n == i`, so the shards of one
//! sweep cover its seeds exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::runner::execute;
use crate::scenario::{Scenario, WatcherName};

/// `i/n`: this run's part of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which part, `0..count`.
    pub index: u64,
    /// How many parts.
    pub count: u64,
}

impl Shard {
    /// The whole sweep.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `i/n`.
    ///
    /// # Errors
    ///
    /// A message when the form is wrong, `n` is 0, or `i` is not below `n`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("shard {text:?} is not of the form i/n"))?;
        let index: u64 = index
            .parse()
            .map_err(|_| format!("shard {text:?}: {index:?} is not a number"))?;
        let count: u64 = count
            .parse()
            .map_err(|_| format!("shard {text:?}: {count:?} is not a number"))?;
        if count == 0 {
            return Err(format!("shard {text:?}: n must be at least 1"));
        }
        if index >= count {
            return Err(format!("shard {text:?}: i must be below n ({count})"));
        }
        Ok(Shard { index, count })
    }

    /// The seeds of `0..seeds` that belong to this shard.
    pub fn seeds(self, seeds: u64) -> impl Iterator<Item = u64> {
        (0..seeds).filter(move |s| s % self.count == self.index)
    }
}

/// Faults an exploration may switch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// EINTR from blocking calls (probability 0.3).
    Eintr,
    /// Polls that wake with nothing to report (probability 0.3).
    Spurious,
    /// A process-directed signal taken by another thread that does not block it
    /// rather than the one Linux tries first (probability 0.3): legal, but rare on a
    /// real machine, so traces may then differ from the OS's in a way that shows a
    /// race rather than a simulator error.
    OtherThread,
    /// Scheduling delays of up to [`LAG`], as on a loaded machine (the simulator's
    /// `lag` fault): a scenario's trace must not depend on timing margins that small.
    Lag,
}

/// The longest delay the [`Fault::Lag`] fault adds to a child's start or a woken
/// thread. Two CPU hogs on two cores delay a thread by a few milliseconds to tens of
/// them; scenarios keep their timing margins above this.
pub const LAG: std::time::Duration = std::time::Duration::from_millis(LAG_MS);
const LAG_MS: u64 = 100;

impl Fault {
    /// Parses a comma-separated list of `eintr`, `spurious`, `other-thread`, `lag`.
    ///
    /// # Errors
    ///
    /// A message naming the unknown fault and the valid ones.
    pub fn parse_list(text: &str) -> Result<Vec<Fault>, String> {
        text.split(',')
            .filter(|f| !f.is_empty())
            .map(|f| match f {
                "eintr" => Ok(Fault::Eintr),
                "spurious" => Ok(Fault::Spurious),
                "other-thread" => Ok(Fault::OtherThread),
                "lag" => Ok(Fault::Lag),
                other => Err(format!(
                    "unknown fault {other:?}; valid: eintr, spurious, other-thread, lag"
                )),
            })
            .collect()
    }

    fn names(faults: &[Fault]) -> String {
        faults
            .iter()
            .map(|f| match f {
                Fault::Eintr => "eintr",
                Fault::Spurious => "spurious",
                Fault::OtherThread => "other-thread",
                Fault::Lag => "lag",
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The simulation for `seed` with `faults`.
pub fn simulation(seed: u64, faults: &[Fault]) -> loopwatch_sim::Simulation {
    let mut plan = loopwatch_sim::FaultPlan::none();
    for fault in faults {
        match fault {
            Fault::Eintr => plan.eintr = 0.3,
            Fault::Spurious => plan.spurious_wakeup = 0.3,
            Fault::OtherThread => plan.signal_other_thread = 0.3,
            Fault::Lag => plan.lag = LAG,
        }
    }
    loopwatch_sim::Simulation::new(seed).faults(plan)
}

/// One seed's verdict, printed as a JSON line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The seed.
    pub seed: u64,
    /// The scenario.
    pub scenario: String,
    /// The watcher.
    pub watcher: String,
    /// Whether the invariant held.
    pub ok: bool,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The command that replays this seed.
    pub replay: String,
}

/// Runs `scenario` with `watcher` on the simulator: the scenario trace (or why there
/// is none) and the simulation's report, which has the kernel trace either way.
pub fn run_seed(
    scenario: &Scenario,
    watcher: WatcherName,
    seed: u64,
    faults: &[Fault],
) -> (Result<Vec<String>, String>, loopwatch_sim::Report) {
    let scenario = scenario.clone();
    let (result, report) =
        simulation(seed, faults).run_returning(move |kernel| execute(&kernel, &scenario, watcher));
    let trace = match result {
        None => Err(format!("simulation ended: {:?}", report.outcome)),
        Some(result) => result.map_err(|e| e.to_string()),
    };
    (trace, report)
}

/// Each scenario's trace on the real OS, by scenario name: what exploration compares
/// the simulator's traces with.
pub type References = BTreeMap<String, Vec<String>>;

/// The real OS's trace of every scenario of `watcher` under `dir`. Must run on the
/// process's main thread.
///
/// # Errors
///
/// The scenarios cannot be loaded, or a run failed.
pub fn os_references(dir: &Path, watcher: WatcherName) -> Result<References, String> {
    let scenarios = crate::scenario::load_dir(dir)?;
    scenarios
        .iter()
        .filter(|s| s.watchers.contains(&watcher))
        .map(|scenario| {
            execute(&loopwatch::OsKernel, scenario, watcher)
                .map(|trace| (scenario.name.clone(), trace))
                .map_err(|e| format!("{} on the OS: {e}", scenario.name))
        })
        .collect()
}

/// Explores every scenario of `watcher` under `dir` over this shard's seeds, calling
/// `emit` with each verdict. Runs each scenario once on the real OS first, for the
/// reference, so it must run on the process's main thread.
///
/// # Errors
///
/// The scenarios cannot be loaded, or the reference run failed.
pub fn explore(
    dir: &Path,
    watcher: WatcherName,
    seeds: u64,
    shard: Shard,
    faults: &[Fault],
    emit: impl FnMut(&Verdict),
) -> Result<(), String> {
    let references = os_references(dir, watcher)?;
    explore_against(dir, watcher, &references, seeds, shard, faults, emit)
}

/// As [`explore`], against reference traces computed beforehand ([`os_references`],
/// or [`Matrix::os_traces`](crate::matrix::Matrix::os_traces) after a check), so that
/// several sweeps share one run of each scenario on the real OS. Runs only the
/// simulator, on any thread.
///
/// # Errors
///
/// The scenarios cannot be loaded, or one of them has no reference.
pub fn explore_against(
    dir: &Path,
    watcher: WatcherName,
    references: &References,
    seeds: u64,
    shard: Shard,
    faults: &[Fault],
    mut emit: impl FnMut(&Verdict),
) -> Result<(), String> {
    let scenarios = crate::scenario::load_dir(dir)?;
    for scenario in scenarios.iter().filter(|s| s.watchers.contains(&watcher)) {
        let reference = references
            .get(&scenario.name)
            .ok_or_else(|| format!("no reference trace of {} with {watcher}", scenario.name))?;
        let path: PathBuf = dir.join(format!("{}.json", scenario.name));
        for seed in shard.seeds(seeds) {
            let problem = match run_seed(scenario, watcher, seed, faults).0 {
                Ok(trace) if trace == *reference => None,
                Ok(trace) => Some(format!("expected {reference:?}, got {trace:?}")),
                Err(error) => Some(error),
            };
            let mut replay = format!(
                "cargo loopwatch replay {} --watcher {watcher} --seed {seed}",
                path.display()
            );
            if !faults.is_empty() {
                replay.push_str(&format!(" --faults {}", Fault::names(faults)));
            }
            emit(&Verdict {
                seed,
                scenario: scenario.name.clone(),
                watcher: watcher.to_string(),
                ok: problem.is_none(),
                problem,
                replay,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_seeds() {
        // Goal: for several n, the shards i/n are disjoint and together give 0..N.
        for count in 1..6 {
            let mut all: Vec<u64> = (0..count)
                .flat_map(|index| Shard { index, count }.seeds(37).collect::<Vec<_>>())
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..37).collect::<Vec<_>>(), "n = {count}");
        }
    }

    #[test]
    fn bad_shards_and_faults_are_refused() {
        // Goal: malformed or out-of-range shards and unknown faults are clear errors.
        for bad in ["", "1", "a/2", "1/b", "2/2", "0/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Shard::parse("3/4"), Ok(Shard { index: 3, count: 4 }));
        assert!(
            Fault::parse_list("eintr,bogus")
                .unwrap_err()
                .contains("bogus")
        );
    }
}
