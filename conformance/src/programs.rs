//! Generated programs: random operation sequences for the simulator, and their
//! shrinking to a minimal reproducer that can be written out as a scenario.
//!
//! A program is drawn as raw operations that name a child by how recent it is (0 the
//! newest child created so far that the operation may name, 1 the one before …, the
//! oldest when there are fewer), and mapped to [`Step`]s deterministically: an
//! operation that has no child to name is dropped. So every program, and every
//! simplification proptest makes of one (any subsequence of its operations, any
//! simpler operation), is a valid scenario: children are named `a`, `b`, `c` … in
//! creation order, only after they are created, each once, and `process_signal`
//! names only `subprocess` children. Counting back from the newest keeps an
//! operation on the same child when a shrink deletes an older one.
//!
//! The mapping also keeps a run finite: a `foreign_wait` (a blocking `waitpid`) names
//! only a child that ends by itself or was sent SIGKILL, and that is not stopped; the
//! sleeps and waits of a program add up to at most [`TIME_BUDGET_MS`] of virtual time.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};

use crate::explore::Fault;
use crate::scenario::{FORMAT, Fate, Origin, Scenario, SignalMethod, Step, WatcherName};

/// The most virtual time the `sleep` and `wait` steps of one program may take, in
/// milliseconds: an operation that would pass it is dropped.
pub const TIME_BUDGET_MS: u64 = 4000;

/// A generated program: operations, the faults switched on, and the scheduler seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// The operations, a valid scenario's steps.
    pub steps: Vec<Step>,
    /// The faults of the simulation ([`crate::explore::simulation`]), sorted, each once.
    pub faults: Vec<Fault>,
    /// The simulation's seed.
    pub seed: u64,
}

impl Program {
    /// As a scenario (`loopwatch-scenario/1`) for `watcher`, named `name`, which
    /// [`Scenario::parse`] accepts, so that `cargo loopwatch scenario run` replays it.
    /// Its description gives the seed and faults a replay needs.
    pub fn to_scenario(&self, name: &str, watcher: WatcherName) -> Scenario {
        let faults = if self.faults.is_empty() {
            "no faults".to_string()
        } else {
            format!("faults {}", Fault::names(&self.faults))
        };
        Scenario {
            format: FORMAT.to_string(),
            name: name.to_string(),
            description: format!(
                "A generated program ({} steps), run with seed {} and {faults}.",
                self.len(),
                self.seed
            ),
            clauses: Vec::new(),
            watchers: vec![watcher],
            steps: self.steps.clone(),
            origin: Origin::Text,
        }
    }

    /// The command that replays this program with `watcher` on the simulator, once
    /// [`Program::to_scenario`] is saved at `path`: its seed and faults included.
    pub fn replay_command(&self, path: &Path, watcher: WatcherName) -> String {
        let mut scenario = self.to_scenario("generated", watcher);
        scenario.origin = Origin::File(path.to_path_buf());
        let mut command = scenario.replay_command(watcher, self.seed);
        if !self.faults.is_empty() {
            command.push_str(&format!(" --faults {}", Fault::names(&self.faults)));
        }
        command
    }

    /// Number of operations (the size reported after shrinking).
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether it has no operation.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// The value tree of a program, which [`shrink`] simplifies.
pub type ProgramTree = Box<dyn ValueTree<Value = Program>>;

/// How a child is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Creator {
    Start,
    StartPanicking,
    ForkHolder,
    Spawn,
    Subprocess,
    ForeignSpawn,
    ThreadStart,
}

/// An operation before the mapping: children by how far back they were created
/// ([`Mapper::pick`]), durations not yet within the budget.
#[derive(Clone, Debug)]
enum RawOp {
    Active,
    Create(Creator, Fate),
    Register(u8),
    Remove(u8),
    Wait(u8, u64),
    Sleep(u64),
    Kill(u8, i32),
    ProcessSignal(u8, SignalMethod, Option<i32>),
    ForeignWait(u8),
    ForeignReapAny,
    Attach,
    Detach,
    CloseWatcher,
    ReplaceWatcher,
    LoopCycle,
}

/// A child, as far as the mapping knows it.
struct Child {
    name: String,
    creator: Creator,
    /// It ends by itself (an exit or signal fate) or was sent SIGKILL.
    ends: bool,
    /// It was sent SIGSTOP and not SIGCONT or SIGKILL since.
    stopped: bool,
}

impl Child {
    /// Whether a blocking `waitpid` on it returns: it ends and is not stopped.
    fn waitable(&self) -> bool {
        self.ends && !self.stopped
    }

    /// `signal` was sent to it.
    fn signalled(&mut self, signal: i32) {
        // A child created on another thread may not have a pid yet when the
        // signal is sent (the step then fails with NoChild): only a stop counts.
        let certain = !matches!(self.creator, Creator::ForeignSpawn | Creator::ThreadStart);
        match signal {
            9 if certain => {
                self.ends = true;
                self.stopped = false;
            }
            18 if certain => self.stopped = false,
            19 => self.stopped = true,
            _ => {}
        }
    }
}

/// Maps raw operations to steps.
struct Mapper {
    steps: Vec<Step>,
    children: Vec<Child>,
    time_left: u64,
}

/// The name of the `index`-th child: `a` … `z`, `aa`, `ab` ….
fn child_name(index: usize) -> String {
    let mut name = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        name.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    name.reverse();
    String::from_utf8(name).unwrap_or_default()
}

impl Mapper {
    /// The index of the `back`-th newest of the `children` that pass `eligible` (the
    /// oldest when there are fewer); `None` when none does.
    fn pick(&self, back: u8, eligible: impl Fn(&Child) -> bool) -> Option<usize> {
        (0..self.children.len())
            .rev()
            .filter(|&i| eligible(&self.children[i]))
            .take(usize::from(back) + 1)
            .last()
    }

    fn name(&self, index: usize) -> String {
        self.children[index].name.clone()
    }

    /// Takes `ms` from the time budget, or says that it would pass it.
    fn spend(&mut self, ms: u64) -> bool {
        if ms > self.time_left {
            return false;
        }
        self.time_left -= ms;
        true
    }

    fn push(&mut self, op: &RawOp) {
        let any = |_: &Child| true;
        let not_subprocess = |c: &Child| c.creator != Creator::Subprocess;
        let step = match op {
            RawOp::Active => Step::Active,
            RawOp::Create(creator, fate) => {
                let child = child_name(self.children.len());
                let ends = fate.forever != Some(true);
                self.children.push(Child {
                    name: child.clone(),
                    creator: *creator,
                    ends,
                    stopped: false,
                });
                let fate = fate.clone();
                match creator {
                    Creator::Start => Step::Start { child, fate },
                    Creator::StartPanicking => Step::StartPanicking { child, fate },
                    Creator::ForkHolder => Step::ForkHolder { child, fate },
                    Creator::Spawn => Step::Spawn { child, fate },
                    Creator::Subprocess => Step::Subprocess { child, fate },
                    Creator::ForeignSpawn => Step::ForeignSpawn { child, fate },
                    Creator::ThreadStart => Step::ThreadStart { child, fate },
                }
            }
            // A `subprocess` child's registration is its process's own.
            RawOp::Register(back) => match self.pick(*back, not_subprocess) {
                Some(i) => Step::Register {
                    child: self.name(i),
                },
                None => return,
            },
            RawOp::Remove(back) => match self.pick(*back, not_subprocess) {
                Some(i) => Step::Remove {
                    child: self.name(i),
                },
                None => return,
            },
            RawOp::Wait(back, ms) => match self.pick(*back, any) {
                Some(i) if self.spend(*ms) => Step::Wait {
                    child: self.name(i),
                    timeout_ms: Some(*ms),
                },
                _ => return,
            },
            RawOp::Sleep(ms) => match self.spend(*ms) {
                true => Step::Sleep { ms: *ms },
                false => return,
            },
            RawOp::Kill(back, signal) => match self.pick(*back, any) {
                Some(i) => {
                    self.children[i].signalled(*signal);
                    Step::Kill {
                        child: self.name(i),
                        signal: *signal,
                    }
                }
                None => return,
            },
            RawOp::ProcessSignal(back, method, signal) => {
                match self.pick(*back, |c| c.creator == Creator::Subprocess) {
                    Some(i) => {
                        let sent = match method {
                            SignalMethod::Kill => 9,
                            SignalMethod::Terminate => 15,
                            SignalMethod::SendSignal => signal.unwrap_or(0),
                        };
                        self.children[i].signalled(sent);
                        Step::ProcessSignal {
                            child: self.name(i),
                            method: *method,
                            signal: *signal,
                        }
                    }
                    None => return,
                }
            }
            RawOp::ForeignWait(back) => match self.pick(*back, Child::waitable) {
                Some(i) => Step::ForeignWait {
                    child: self.name(i),
                },
                None => return,
            },
            RawOp::ForeignReapAny => Step::ForeignReapAny,
            RawOp::Attach => Step::Attach,
            RawOp::Detach => Step::Detach,
            RawOp::CloseWatcher => Step::CloseWatcher,
            RawOp::ReplaceWatcher => Step::ReplaceWatcher,
            RawOp::LoopCycle => Step::LoopCycle,
        };
        self.steps.push(step);
    }
}

/// The steps of `ops` (`None` is no operation), after `ignore_sigchld` when it is
/// set, at most `max_steps`.
fn map_steps(ignore_sigchld: bool, ops: &[Option<RawOp>], max_steps: usize) -> Vec<Step> {
    let mut mapper = Mapper {
        steps: Vec::new(),
        children: Vec::new(),
        time_left: TIME_BUDGET_MS,
    };
    if ignore_sigchld {
        mapper.steps.push(Step::IgnoreSigchld);
    }
    for op in ops.iter().flatten() {
        mapper.push(op);
    }
    mapper.steps.truncate(max_steps);
    mapper.steps
}

/// A union of `options` with their weights.
fn weighted<T: std::fmt::Debug + 'static>(
    options: Vec<(u32, BoxedStrategy<T>)>,
) -> BoxedStrategy<T> {
    Union::new_weighted(options).boxed()
}

/// A child's fate: mostly a short exit, sometimes a signal, rarely (when `forever`
/// is allowed) running until killed. `after_ms` 0 is written as no `after_ms`.
fn fate(forever: bool) -> BoxedStrategy<Fate> {
    let after = (0u64..=300).prop_map(|ms| (ms > 0).then_some(ms));
    let exit = (0u8..=3, after.clone()).prop_map(|(code, after_ms)| Fate {
        exit: Some(code),
        signal: None,
        forever: None,
        after_ms,
    });
    let signal =
        (prop::sample::select(&[9, 15, 10, 2][..]), after).prop_map(|(signal, after_ms)| Fate {
            exit: None,
            signal: Some(signal),
            forever: None,
            after_ms,
        });
    let mut options = vec![(6, exit.boxed()), (3, signal.boxed())];
    if forever {
        options.push((
            2,
            Just(Fate {
                exit: None,
                signal: None,
                forever: Some(true),
                after_ms: None,
            })
            .boxed(),
        ));
    }
    weighted(options)
}

fn create(creator: Creator) -> BoxedStrategy<RawOp> {
    // A foreign spawner's child never runs forever: its thread learns the pid only
    // when it runs, maybe after the teardown has looked for it, and the teardown
    // then joins the thread, which waits for the child.
    fate(creator != Creator::ForeignSpawn)
        .prop_map(move |fate| RawOp::Create(creator, fate))
        .boxed()
}

/// One raw operation; the first alternatives are those a shrink moves towards.
fn raw_op() -> BoxedStrategy<RawOp> {
    // How far back from the newest child: shrinks towards the newest.
    let child = || 0u8..6;
    let send_signal = prop::sample::select(&[15, 10][..])
        .prop_map(|signal| (SignalMethod::SendSignal, Some(signal)));
    let method = prop_oneof![
        Just((SignalMethod::Kill, None)),
        Just((SignalMethod::Terminate, None)),
        send_signal,
    ];
    weighted(vec![
        (3, Just(RawOp::Active).boxed()),
        (10, create(Creator::Start)),
        (2, create(Creator::StartPanicking)),
        (2, create(Creator::ForkHolder)),
        (4, create(Creator::Spawn)),
        (7, create(Creator::Subprocess)),
        (3, create(Creator::ForeignSpawn)),
        (3, create(Creator::ThreadStart)),
        (5, child().prop_map(RawOp::Register).boxed()),
        (6, child().prop_map(RawOp::Remove).boxed()),
        (
            14,
            (child(), 50u64..=2000)
                .prop_map(|(c, ms)| RawOp::Wait(c, ms))
                .boxed(),
        ),
        (8, (0u64..=300).prop_map(RawOp::Sleep).boxed()),
        (
            8,
            (child(), prop::sample::select(&[9, 15, 19, 18][..]))
                .prop_map(|(c, signal)| RawOp::Kill(c, signal))
                .boxed(),
        ),
        (
            5,
            (child(), method)
                .prop_map(|(c, (method, signal))| RawOp::ProcessSignal(c, method, signal))
                .boxed(),
        ),
        (3, child().prop_map(RawOp::ForeignWait).boxed()),
        (3, Just(RawOp::ForeignReapAny).boxed()),
        (2, Just(RawOp::Attach).boxed()),
        (2, Just(RawOp::Detach).boxed()),
        (1, Just(RawOp::CloseWatcher).boxed()),
        (2, Just(RawOp::ReplaceWatcher).boxed()),
        (2, Just(RawOp::LoopCycle).boxed()),
    ])
}

/// The faults generated programs draw from: every fault but
/// [`Fault::SpawnPidfdEnosys`], whose fallback (`subprocess` spawning without a
/// pidfd) `pidfd-enosys` reaches as well, and whose weight would change every
/// program the hunt draws for a given case number (so its catch counts and the
/// committed figures).
pub(crate) fn generated_faults() -> impl Iterator<Item = Fault> {
    Fault::ALL
        .into_iter()
        .filter(|fault| *fault != Fault::SpawnPidfdEnosys)
}

/// One fault; for `watcher` Pidfd, the `pidfd_open` faults weigh more (it opens a
/// pidfd for every registration, the others only for `subprocess` children).
fn fault(watcher: WatcherName) -> BoxedStrategy<Fault> {
    let pidfd_weight = if watcher == WatcherName::Pidfd { 3 } else { 1 };
    weighted(
        generated_faults()
            .map(|fault| {
                let weight = match fault {
                    Fault::PidfdEnosys | Fault::PidfdEperm => pidfd_weight,
                    _ => 1,
                };
                (weight, Just(fault).boxed())
            })
            .collect(),
    )
}

/// Faults: often none, often one or two, sometimes more; sorted, each once.
fn faults(watcher: WatcherName) -> BoxedStrategy<Vec<Fault>> {
    let few = prop::collection::vec(fault(watcher), 0..=2);
    let many = prop::collection::vec(fault(watcher), 3..=6);
    prop_oneof![6 => few, 1 => many]
        .prop_map(|mut faults| {
            faults.sort_unstable();
            faults.dedup();
            faults
        })
        .boxed()
}

/// The strategy (proptest) of programs for `watcher`, with at most `max_steps`
/// steps. `ignore_sigchld` comes first in one program in 20; the seed does not
/// shrink (another schedule is not a simpler one). The watcher weighs the faults:
/// Pidfd, which opens a pidfd for every registration, gets the `pidfd_open` faults
/// more often.
///
/// Each operation is optional, and shrinks to none once it is as simple as it gets:
/// proptest deletes the elements of a list in one pass, before it simplifies them,
/// so an operation that became removable only later (a `wait` simplified into an
/// `active`) is still removed.
pub fn programs(watcher: WatcherName, max_steps: usize) -> impl Strategy<Value = Program> {
    let op = prop::option::weighted(0.99, raw_op());
    let ops = prop::collection::vec(op, max_steps.min(1)..=max_steps);
    (
        prop::bool::weighted(0.05),
        ops,
        faults(watcher),
        any::<u64>().no_shrink(),
    )
        .prop_map(move |(ignore_sigchld, ops, faults, seed)| Program {
            steps: map_steps(ignore_sigchld, &ops, max_steps),
            faults,
            seed,
        })
}

/// The program of `case` and its value tree, for [`shrink`]: drawn with a ChaCha
/// generator seeded from `case`, so the same case gives the same program.
pub fn sample(watcher: WatcherName, max_steps: usize, case: u64) -> (Program, ProgramTree) {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&case.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let tree: ProgramTree = match programs(watcher, max_steps).boxed().new_tree(&mut runner) {
        Ok(tree) => tree,
        // The strategy has no filter, so it never rejects a value.
        Err(reason) => unreachable!("programs are never rejected: {reason}"),
    };
    (tree.current(), tree)
}

/// Shrinks a failing program: proptest's simplify/complicate over `tree`, whose
/// current program must fail, keeping a simplification when `fails` still holds of
/// it. `fails` answers with the program that failed: the candidate itself, or a
/// variant of it (the same steps under another seed, say). Returns the smallest
/// failing program found (the most simplified of those of its size) and the number of
/// `fails` calls, at most `max_calls`. A program already judged is not run again.
pub fn shrink(
    mut tree: impl ValueTree<Value = Program>,
    mut fails: impl FnMut(&Program) -> Option<Program>,
    max_calls: usize,
) -> (Program, usize) {
    let key = |program: &Program| serde_json::to_string(program).unwrap_or_default();
    let mut best = tree.current();
    let mut judged = BTreeMap::from([(key(&best), Some(best.clone()))]);
    let mut calls = 0;
    if !tree.simplify() {
        return (best, calls);
    }
    loop {
        let candidate = tree.current();
        let failing = match judged.get(&key(&candidate)) {
            Some(failing) => failing.clone(),
            None if calls >= max_calls => break,
            None => {
                calls += 1;
                let failing = fails(&candidate);
                judged.insert(key(&candidate), failing.clone());
                failing
            }
        };
        let more = match failing {
            Some(failing) => {
                if failing.len() <= best.len() {
                    best = failing;
                }
                tree.simplify()
            }
            None => tree.complicate(),
        };
        if !more {
            break;
        }
    }
    (best, calls)
}

/// A second pass after [`shrink`]: removes one step at a time from `program` (which
/// must fail), keeping each removal after which the program is still a valid scenario
/// for `watcher` and `fails` still holds of it, until no single step can go or
/// `max_calls` calls were made. Proptest's shrink removes steps in the order its tree
/// allows and stops at the first removal that passes; this pass tries every step.
/// Returns the program and the number of `fails` calls.
pub fn drop_steps(
    mut program: Program,
    mut fails: impl FnMut(&Program) -> Option<Program>,
    watcher: WatcherName,
    max_calls: usize,
) -> (Program, usize) {
    let mut calls = 0;
    let mut i = 0;
    while i < program.steps.len() && calls < max_calls {
        let mut candidate = program.clone();
        candidate.steps.remove(i);
        if candidate.to_scenario("candidate", watcher).check().is_ok() {
            calls += 1;
            if let Some(failing) = fails(&candidate) {
                program = failing;
                continue;
            }
        }
        i += 1;
    }
    (program, calls)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const MAX_STEPS: usize = 12;

    /// `program` as a scenario, through its JSON and back: it must parse.
    fn reparsed(program: &Program, watcher: WatcherName) -> Scenario {
        let scenario = program.to_scenario("generated", watcher);
        let text = serde_json::to_string(&scenario).unwrap();
        Scenario::parse(&text).unwrap_or_else(|e| panic!("{e}: {program:?}"))
    }

    /// The name of a step's variant, as in the scenario format.
    fn op(step: &Step) -> String {
        serde_json::to_value(step).unwrap()["op"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// What makes a run finite, checked from the steps alone: a `foreign_wait` names
    /// a child that ends by itself or got SIGKILL (as a child of the runner's thread,
    /// whose pid is known when the signal is sent), and is not stopped; sleeps and
    /// waits stay within the budget; no foreign spawner's child runs forever.
    fn assert_finite(program: &Program) {
        let mut time = 0;
        let mut ends = BTreeMap::new();
        let mut runner_thread = BTreeSet::new();
        let mut stopped = BTreeSet::new();
        for step in &program.steps {
            if let Some((child, fate)) = step.creates() {
                ends.insert(child.to_string(), fate.forever.is_none());
                if !matches!(step, Step::ForeignSpawn { .. } | Step::ThreadStart { .. }) {
                    runner_thread.insert(child.to_string());
                }
            }
            match step {
                Step::Sleep { ms } => time += ms,
                Step::Wait { timeout_ms, .. } => time += timeout_ms.unwrap(),
                Step::ForeignSpawn { fate, .. } => assert_ne!(fate.forever, Some(true)),
                Step::Kill { child, signal: 19 } => {
                    stopped.insert(child.clone());
                }
                Step::Kill { child, signal: 9 }
                | Step::ProcessSignal {
                    child,
                    method: SignalMethod::Kill,
                    ..
                } if runner_thread.contains(child) => {
                    ends.insert(child.clone(), true);
                    stopped.remove(child);
                }
                Step::Kill { child, signal: 18 } if runner_thread.contains(child) => {
                    stopped.remove(child);
                }
                Step::ForeignWait { child } => {
                    assert!(ends[child] && !stopped.contains(child), "{program:?}");
                }
                _ => {}
            }
        }
        assert!(time <= TIME_BUDGET_MS, "{program:?}");
    }

    #[test]
    fn every_sampled_program_is_a_valid_scenario() {
        // Goal: over 500 cases, each watcher's programs parse back from their
        // scenario's JSON as the same steps, stay within the step limit, cannot block
        // the runner, and the program itself round-trips through JSON.
        for watcher in WatcherName::ALL {
            for case in 0..500 {
                let (program, _) = sample(watcher, MAX_STEPS, case);
                assert!(program.len() <= MAX_STEPS);
                let scenario = reparsed(&program, watcher);
                assert_eq!(scenario.steps, program.steps);
                assert_eq!(scenario.watchers, [watcher]);
                assert_finite(&program);
                let text = serde_json::to_string(&program).unwrap();
                assert_eq!(serde_json::from_str::<Program>(&text).unwrap(), program);
                let mut sorted = program.faults.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted, program.faults);
            }
        }
    }

    #[test]
    fn a_case_always_gives_the_same_program() {
        // Goal: `sample` is deterministic, and different cases give different
        // programs.
        let mut seen = BTreeSet::new();
        for case in 0..50 {
            let (first, _) = sample(WatcherName::Safe, MAX_STEPS, case);
            let (again, _) = sample(WatcherName::Safe, MAX_STEPS, case);
            assert_eq!(first, again, "case {case}");
            seen.insert(serde_json::to_string(&first).unwrap());
        }
        assert_eq!(seen.len(), 50);
    }

    #[test]
    fn every_operation_and_fault_is_generated() {
        // Goal: within 2,000 cases, every step variant and every fault programs draw
        // from appears.
        let mut ops = BTreeSet::new();
        let mut faults = BTreeSet::new();
        for case in 0..2000 {
            let watcher = WatcherName::ALL[case as usize % WatcherName::ALL.len()];
            let (program, _) = sample(watcher, MAX_STEPS, case);
            ops.extend(program.steps.iter().map(op));
            faults.extend(program.faults);
        }
        let every_op = [
            "start",
            "start_panicking",
            "fork_holder",
            "spawn",
            "register",
            "remove",
            "wait",
            "sleep",
            "kill",
            "foreign_wait",
            "active",
            "attach",
            "detach",
            "close_watcher",
            "replace_watcher",
            "loop_cycle",
            "ignore_sigchld",
            "foreign_spawn",
            "foreign_reap_any",
            "subprocess",
            "process_signal",
            "thread_start",
        ];
        assert_eq!(ops, every_op.map(String::from).into());
        assert_eq!(faults, generated_faults().collect());
    }

    #[test]
    fn the_replay_command_carries_seed_and_faults() {
        // Goal: a saved program replays with its own seed and faults.
        let program = Program {
            steps: vec![Step::Active],
            faults: vec![Fault::Eintr, Fault::FdLimit],
            seed: 42,
        };
        assert_eq!(
            program.replay_command(Path::new("found.json"), WatcherName::Fast),
            "cargo loopwatch replay found.json --watcher fast --seed 42 --faults eintr,fd-limit"
        );
        let quiet = Program {
            faults: Vec::new(),
            ..program
        };
        assert_eq!(
            quiet.replay_command(Path::new("found.json"), WatcherName::Pidfd),
            "cargo loopwatch replay found.json --watcher pidfd --seed 42"
        );
    }

    #[test]
    fn child_names_follow_the_alphabet() {
        // Goal: names are a … z, then two letters, each index its own name.
        assert_eq!(child_name(0), "a");
        assert_eq!(child_name(25), "z");
        assert_eq!(child_name(26), "aa");
        assert_eq!(child_name(27), "ab");
        assert_eq!(child_name(26 + 26 * 26), "aaa");
        let names: BTreeSet<String> = (0..1000).map(child_name).collect();
        assert_eq!(names.len(), 1000);
    }

    #[test]
    fn sampled_programs_run_to_their_end_on_the_simulator() {
        // Goal: the runner never blocks on a generated program (a `foreign_wait` on a
        // child that never ends, a stopped child): each runs to its end, with its
        // faults, for every watcher.
        for watcher in WatcherName::ALL {
            for case in 0..60 {
                let (program, _) = sample(watcher, MAX_STEPS, case);
                let scenario = program.to_scenario("generated", watcher);
                let outcome = crate::explore::run_seed_outcome(
                    &scenario,
                    watcher,
                    program.seed,
                    &program.faults,
                )
                .0;
                if let crate::explore::SeedOutcome::Incomplete(why) = outcome {
                    let file = "generated.json";
                    panic!(
                        "{watcher}, case {case}: {why}\nreplay: save the scenario below as \
                         {file}, then {}\n{}",
                        program.replay_command(Path::new(file), watcher),
                        serde_json::to_string(&scenario).unwrap()
                    );
                }
            }
        }
    }

    /// The synthetic failure: a `kill` after a `subprocess`.
    fn kill_after_subprocess(program: &Program) -> bool {
        let first = program
            .steps
            .iter()
            .position(|s| matches!(s, Step::Subprocess { .. }));
        first.is_some_and(|i| {
            program.steps[i..]
                .iter()
                .any(|s| matches!(s, Step::Kill { .. }))
        })
    }

    #[test]
    fn shrinking_finds_the_minimal_program_and_keeps_it_valid() {
        // Goal: for the first five cases with a `kill` after a `subprocess`, the
        // shrink ends at those two steps, no faults and no `ignore_sigchld`; every
        // candidate it judged was a valid scenario; it stops at `max_calls`.
        let watcher = WatcherName::Threaded;
        let failing = (0..)
            .map(|case| sample(watcher, MAX_STEPS, case))
            .filter(|(program, _)| kill_after_subprocess(program) && program.len() > 2)
            .take(5);
        for (program, tree) in failing {
            let mut calls = 0;
            let (small, counted) = shrink(
                tree,
                |candidate| {
                    calls += 1;
                    reparsed(candidate, watcher);
                    kill_after_subprocess(candidate).then(|| candidate.clone())
                },
                10_000,
            );
            assert_eq!(counted, calls);
            assert!(kill_after_subprocess(&small), "{small:?}");
            let ops: Vec<String> = small.steps.iter().map(op).collect();
            assert_eq!(ops, ["subprocess", "kill"], "from {program:?}");
            assert_eq!(small.faults, []);
            assert_eq!(small.seed, program.seed);
            reparsed(&small, watcher);
        }
        let (program, tree) = (0..)
            .map(|case| sample(watcher, MAX_STEPS, case))
            .find(|(program, _)| kill_after_subprocess(program) && program.len() > 4)
            .unwrap();
        let (small, calls) = shrink(
            tree,
            |candidate| kill_after_subprocess(candidate).then(|| candidate.clone()),
            3,
        );
        assert_eq!(calls, 3);
        assert!(kill_after_subprocess(&small));
        assert!(small.len() <= program.len());
    }
}
