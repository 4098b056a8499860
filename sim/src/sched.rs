//! Scheduling strategies: which runnable simulated thread goes next.

use std::collections::BTreeMap;

use crate::model::Tid;
use crate::rng::Rng;

/// How the scheduler picks the next thread at each scheduling point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Uniformly at random among runnable threads.
    Random,
    /// Probabilistic concurrency testing (Burckhardt et al.): threads get random
    /// priorities, the highest runnable one runs, and at `depth - 1` random steps
    /// among the first `steps` the running thread drops to the lowest priority. Finds
    /// any bug of depth `depth` with probability at least 1/(n·steps^(depth-1)).
    Pct {
        /// The bug depth aimed at (number of ordering constraints).
        depth: u32,
        /// Expected length of a run in scheduling steps.
        steps: u64,
    },
}

/// The scheduler's state for one run. Under `--cfg loom`, loom schedules instead and
/// the strategy is not used.
#[derive(Debug)]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) struct Scheduler {
    strategy: Strategy,
    priorities: BTreeMap<Tid, u64>,
    change_points: Vec<u64>,
    lowered: u64,
    last: Option<Tid>,
}

#[cfg_attr(loom, allow(dead_code))]
impl Scheduler {
    pub(crate) fn new(strategy: Strategy, rng: &mut Rng) -> Scheduler {
        let mut change_points = Vec::new();
        if let Strategy::Pct { depth, steps } = strategy {
            for _ in 1..depth {
                change_points.push(rng.below(steps.max(1)) + 1);
            }
            change_points.sort_unstable();
        }
        Scheduler {
            strategy,
            priorities: BTreeMap::new(),
            change_points,
            lowered: 0,
            last: None,
        }
    }

    /// Picks among `runnable` (sorted, non-empty) at scheduling step `step`.
    pub(crate) fn pick(&mut self, rng: &mut Rng, runnable: &[Tid], step: u64) -> Tid {
        let choice = match self.strategy {
            Strategy::Random => runnable[rng.below(runnable.len() as u64) as usize],
            Strategy::Pct { depth, .. } => {
                for &tid in runnable {
                    self.priorities
                        .entry(tid)
                        .or_insert_with(|| u64::from(depth) + 1 + rng.below(1 << 32));
                }
                if self.change_points.first() == Some(&step) {
                    self.change_points.remove(0);
                    if let Some(last) = self.last {
                        self.lowered += 1;
                        // Below every initial priority, later drops lower still.
                        self.priorities
                            .insert(last, u64::from(depth).saturating_sub(self.lowered));
                    }
                }
                *runnable
                    .iter()
                    .max_by_key(|tid| (self.priorities[tid], std::cmp::Reverse(**tid)))
                    .expect("non-empty")
            }
        };
        self.last = Some(choice);
        choice
    }
}
