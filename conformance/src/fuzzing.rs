//! The bodies of the fuzz targets of `fuzz/` (cargo-fuzz, libFuzzer), here so that
//! `cargo test` replays their corpus and crash regressions (`tests/fuzz_replay.rs`)
//! without cargo-fuzz.
//!
//! Each [`Target`] takes the fuzzer's bytes and says whether a property held
//! ([`Target::check`]); a fuzz target is [`Target::fuzz`], which panics when it did
//! not, so that libFuzzer records the input.
//!
//! - [`Target::ScenarioText`]: any text given to [`Scenario::parse`] is a scenario or
//!   bad input, never a panic, and a scenario survives its JSON (the form regression
//!   files and the CPython runner take) unchanged; so does a hunt's [`Regression`].
//! - [`Target::SimProgram`]: the bytes pick a watcher, a generated program of the hunt
//!   ([`crate::programs`]) and steps of its shrinking ([`program_of`]), which [`hunt::run_program`] runs on the simulator under the
//!   invariant checker: it must complete and break no invariant.
//! - [`Target::WaitStatus`]: a raw wait status decoded by [`ExitStatus`] as libc's
//!   `W*` macros decode it, and the statuses the kernel seam builds from `waitid`'s
//!   `si_status` decoding back to what they were built from.

use std::path::Path;

use arbitrary::Unstructured;
use loopwatch::kernel::{ExitStatus, Signal};
use loopwatch::zoo::Mutant;
use proptest::strategy::ValueTree;

use crate::explore::Fault;
use crate::hunt::{self, Regression};
use crate::programs::{self, Program};
use crate::scenario::{Scenario, WatcherName};

/// A fuzz target: its name is that of its `fuzz/fuzz_targets/<name>.rs` and of its
/// `fuzz/corpus/<name>/` and `fuzz/regressions/<name>/` directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Bytes, as text (lossy UTF-8), parsed as a scenario and as a regression file.
    ScenarioText,
    /// A watcher, a hunt case and shrinking steps ([`program_of`]): a program run on
    /// the simulator.
    SimProgram,
    /// A raw wait status (the first four bytes, little-endian, zero-padded).
    WaitStatus,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 3] = [Target::ScenarioText, Target::SimProgram, Target::WaitStatus];

    /// Its name (`scenario_text` …).
    pub fn name(self) -> &'static str {
        match self {
            Target::ScenarioText => "scenario_text",
            Target::SimProgram => "sim_program",
            Target::WaitStatus => "wait_status",
        }
    }

    /// Checks the target's property of `data`.
    ///
    /// # Errors
    ///
    /// What did not hold, with what a replay needs.
    pub fn check(self, data: &[u8]) -> Result<(), String> {
        match self {
            Target::ScenarioText => scenario_text(data),
            Target::SimProgram => sim_program(data),
            Target::WaitStatus => wait_status(data),
        }
    }

    /// [`Target::check`], for a fuzz target.
    ///
    /// # Panics
    ///
    /// When the property does not hold, with [`Target::check`]'s message.
    pub fn fuzz(self, data: &[u8]) {
        if let Err(problem) = self.check(data) {
            panic!("{}: {problem}", self.name());
        }
    }
}

/// `value` through its JSON (compact and pretty) and back must be itself.
fn round_trips<T>(
    what: &str,
    value: &T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<(), String>
where
    T: serde::Serialize + PartialEq + std::fmt::Debug,
{
    for pretty in [false, true] {
        let text = if pretty {
            serde_json::to_string_pretty(value)
        } else {
            serde_json::to_string(value)
        }
        .map_err(|e| format!("{what} {value:?} does not serialise: {e}"))?;
        match parse(&text) {
            Ok(again) if again == *value => {}
            Ok(again) => {
                return Err(format!(
                    "{what} changed through its JSON {text}: {value:?} became {again:?}"
                ));
            }
            Err(e) => return Err(format!("{what}'s own JSON {text} does not parse: {e}")),
        }
    }
    Ok(())
}

/// [`Target::ScenarioText`].
fn scenario_text(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    match Scenario::parse(&text) {
        Ok(scenario) => round_trips("the scenario", &scenario, |text| {
            Scenario::parse(text).map_err(|e| e.to_string())
        })?,
        Err(error) if error.is_bad_input() => {}
        Err(error) => {
            return Err(format!(
                "{text:?} is refused, but not as bad input: {error}"
            ));
        }
    }
    // The other form a scenario comes in: a hunt's regression file. What its loader
    // (`Regression::load`) parses, it must write back the same.
    if let Ok(regression) = serde_json::from_str::<Regression>(&text) {
        round_trips("the regression", &regression, |text| {
            serde_json::from_str(text).map_err(|e| e.to_string())
        })?;
    }
    Ok(())
}

/// The most simplification steps one [`Target::SimProgram`] input takes.
pub const MAX_MOVES: usize = 64;

/// The watcher and program `data` gives [`Target::SimProgram`]: its first byte picks
/// the watcher (through [`Unstructured::choose`]), the next eight (little-endian,
/// zero-padded) the hunt's generated case ([`programs::sample`] with
/// [`hunt::MAX_STEPS`]), and each further byte, up to [`MAX_MOVES`], one step of
/// proptest's shrinking of that program: simplify when it is even, complicate when
/// odd. So every program the hunt generates is an input, every input is a valid
/// program (a shrink keeps it one, see [`crate::programs`]), and a mutation of the
/// tail explores the simpler programs around a case.
pub fn program_of(data: &[u8]) -> (WatcherName, Program) {
    let mut input = Unstructured::new(data);
    let watcher = input
        .choose(&WatcherName::ALL)
        .copied()
        .unwrap_or(WatcherName::Safe);
    let mut case = [0u8; 8];
    // Fills what there is and zeroes the rest; it fails on no buffer only.
    let _ = input.fill_buffer(&mut case);
    let (_, mut tree) = programs::sample(watcher, hunt::MAX_STEPS, u64::from_le_bytes(case));
    for byte in input.take_rest().iter().take(MAX_MOVES) {
        if byte % 2 == 0 {
            tree.simplify();
        } else {
            tree.complicate();
        }
    }
    (watcher, tree.current())
}

/// The [`Target::SimProgram`] input of the hunt's generated program `case` for
/// `watcher`: [`program_of`] gives that program back. For seeding the corpus.
pub fn sim_program_input(watcher: WatcherName, case: u64) -> Vec<u8> {
    let index = WatcherName::ALL.iter().position(|w| *w == watcher);
    let mut input = vec![index.and_then(|i| u8::try_from(i).ok()).unwrap_or(0)];
    input.extend(case.to_le_bytes());
    input
}

/// [`Target::SimProgram`].
fn sim_program(data: &[u8]) -> Result<(), String> {
    let (watcher, program) = program_of(data);
    judged(watcher, &program, None)
}

/// `program` run with `watcher` (and `mutant`): an error with the replay command and
/// the scenario when it did not complete or broke an invariant.
fn judged(watcher: WatcherName, program: &Program, mutant: Option<Mutant>) -> Result<(), String> {
    let (scenario, _, verdict) = hunt::run_program(program, "fuzzed", watcher, mutant);
    if verdict.ok {
        return Ok(());
    }
    let file = "fuzzed.json";
    let mut replay = program.replay_command(Path::new(file), watcher);
    if let Some(mutant) = mutant {
        replay.push_str(&format!(" --mutant {mutant}"));
    }
    let breaches: Vec<String> = verdict.breaches.iter().map(ToString::to_string).collect();
    Err(format!(
        "{watcher}, seed {}, faults [{}]: {}{}\nreplay: save the scenario below as {file}, then {}\n{}",
        program.seed,
        Fault::names(&program.faults),
        verdict.problem.as_deref().unwrap_or("the invariants broke"),
        breaches
            .iter()
            .map(|b| format!("\n  {b}"))
            .collect::<String>(),
        replay,
        serde_json::to_string(&scenario).unwrap_or_else(|e| format!("(no JSON: {e})"))
    ))
}

/// The raw status of a [`Target::WaitStatus`] input: its first four bytes,
/// little-endian, missing ones zero.
pub fn raw_status(data: &[u8]) -> i32 {
    let mut bytes = [0u8; 4];
    let n = data.len().min(4);
    bytes[..n].copy_from_slice(&data[..n]);
    i32::from_le_bytes(bytes)
}

/// How libc decodes `raw`: (exit code, terminating signal, core dumped, stopped).
fn libc_decoded(raw: i32) -> (Option<i32>, Option<i32>, bool, bool) {
    let signaled = libc::WIFSIGNALED(raw);
    (
        libc::WIFEXITED(raw).then(|| libc::WEXITSTATUS(raw)),
        signaled.then(|| libc::WTERMSIG(raw)),
        signaled && libc::WCOREDUMP(raw),
        libc::WIFSTOPPED(raw),
    )
}

/// `status` decoded as libc decodes its raw value, and its returncode as asyncio
/// computes it (spec R-1: `-signum`, the exit code, else the raw status).
fn decodes_as_libc(status: ExitStatus) -> Result<(), String> {
    let raw = status.0;
    let (code, signal, core, stopped) = libc_decoded(raw);
    let ours = (
        status.code(),
        status.signal().map(|s| s.0),
        status.core_dumped(),
    );
    if ours != (code, signal, core) {
        return Err(format!(
            "status {raw:#x}: (code, signal, core dumped) {ours:?}, libc says {:?}",
            (code, signal, core)
        ));
    }
    if stopped && (ours.0.is_some() || ours.1.is_some()) {
        return Err(format!("status {raw:#x} is a stop, but reads as {ours:?}"));
    }
    let expected = signal.map(|s| -s).or(code).unwrap_or(raw);
    if status.returncode() != expected {
        return Err(format!(
            "status {raw:#x}: returncode {}, expected {expected}",
            status.returncode()
        ));
    }
    Ok(())
}

/// [`Target::WaitStatus`]: the raw status as `waitpid` fills it in, then the two
/// statuses `waitid`'s conversion builds from a `si_status` made of the same bits
/// (`CLD_EXITED`: the low byte as the exit code; `CLD_KILLED`/`CLD_DUMPED`: a signal
/// 1..=64 and bit 7 as the core dump). The conversion's `si_code` dispatch itself
/// reads a `siginfo_t` in `src/sys`, out of reach without `unsafe`.
fn wait_status(data: &[u8]) -> Result<(), String> {
    let raw = raw_status(data);
    decodes_as_libc(ExitStatus(raw))?;
    let code = raw.to_le_bytes()[0];
    let exited = ExitStatus::from_exit_code(code);
    decodes_as_libc(exited)?;
    if exited.code() != Some(i32::from(code)) || exited.returncode() != i32::from(code) {
        return Err(format!(
            "exit code {code} reads back as {:?}, returncode {}",
            exited.code(),
            exited.returncode()
        ));
    }
    let signal = Signal(1 + raw.rem_euclid(Signal::MAX));
    let core = raw & 0x80 != 0;
    let killed = ExitStatus::from_signal(signal, core);
    decodes_as_libc(killed)?;
    if killed.signal() != Some(signal)
        || killed.core_dumped() != core
        || killed.returncode() != -signal.0
    {
        return Err(format!(
            "death by signal {} (core dumped: {core}) reads back as {:?}, core dumped {}, returncode {}",
            signal.0,
            killed.signal(),
            killed.core_dumped(),
            killed.returncode()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn a_hunt_case_is_an_input_that_gives_its_program_back() {
        // Goal: the recorded input of a generated case decodes to the very program
        // (and watcher) the hunt draws for it, so every program the hunt can make is
        // reachable from the fuzzer's bytes.
        for watcher in WatcherName::ALL {
            for case in 0..40 {
                let input = sim_program_input(watcher, case);
                let (sample, _) = programs::sample(watcher, hunt::MAX_STEPS, case);
                assert_eq!(program_of(&input), (watcher, sample), "{watcher} {case}");
            }
        }
    }

    /// The name of a step's variant, as in the scenario format.
    fn op(step: &crate::scenario::Step) -> String {
        serde_json::to_value(step).unwrap()["op"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn any_bytes_give_a_valid_program_and_reach_what_the_hunt_reaches() {
        // Goal: arbitrary bytes (here from a xorshift generator, the empty input and
        // runs of one byte) always give a program within the step limit whose scenario parses, and
        // 1,500 inputs reach every operation and fault that 1,500 of the hunt's
        // cases reach.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let (mut ops, mut faults) = (BTreeSet::new(), BTreeSet::new());
        let (mut hunt_ops, mut hunt_faults) = (BTreeSet::new(), BTreeSet::new());
        for case in 0..1500u64 {
            let data: Vec<u8> = (0..case % 700)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()[0]
                })
                .collect();
            let (watcher, program) = program_of(&data);
            assert!(program.len() <= hunt::MAX_STEPS);
            let text = serde_json::to_string(&program.to_scenario("fuzzed", watcher)).unwrap();
            let scenario = Scenario::parse(&text).unwrap_or_else(|e| panic!("{e}: {program:?}"));
            assert_eq!(scenario.steps, program.steps);
            ops.extend(program.steps.iter().map(op));
            faults.extend(program.faults);
            let watcher = WatcherName::ALL[case as usize % WatcherName::ALL.len()];
            let (sample, _) = programs::sample(watcher, hunt::MAX_STEPS, case);
            hunt_ops.extend(sample.steps.iter().map(op));
            hunt_faults.extend(sample.faults);
        }
        // Long runs of one byte: at most MAX_MOVES of them are moves.
        for data in [vec![0; 1], vec![0; 5000], vec![0xff; 5000]] {
            let (_, program) = program_of(&data);
            assert!(program.len() <= hunt::MAX_STEPS);
        }
        assert_eq!(ops, hunt_ops);
        assert_eq!(faults, hunt_faults);
        assert_eq!(faults, programs::generated_faults().collect());
    }

    #[test]
    fn wait_statuses_of_every_kind_hold() {
        // Goal: exits, deaths with and without a core, stops, the continued status
        // and statuses with stray high bits all decode as libc decodes them.
        for raw in [
            0,
            0x100,
            0xff00,
            9,
            0x8b,
            0x137f,
            0xffff,
            0x7f,
            0xff,
            0x7e,
            -1,
            i32::MIN,
            i32::MAX,
        ] {
            assert_eq!(
                Target::WaitStatus.check(&raw.to_le_bytes()),
                Ok(()),
                "{raw:#x}"
            );
        }
        assert_eq!(raw_status(&[0x09]), 9);
        assert_eq!(raw_status(&[0, 1, 0, 0, 0xff]), 0x100);
    }

    #[test]
    fn libc_decodes_the_statuses_the_check_compares_with() {
        // Goal: the reference the check uses reads an exit, a death with a core dump
        // and a stop as they are.
        assert_eq!(libc_decoded(0x100), (Some(1), None, false, false));
        assert_eq!(libc_decoded(0x8b), (None, Some(11), true, false));
        assert_eq!(libc_decoded(0x137f), (None, None, false, true));
    }

    #[test]
    fn scenario_text_accepts_the_scenario_files_and_refuses_garbage_as_bad_input() {
        // Goal: every scenario and regression file round-trips; broken text and
        // invalid UTF-8 are refused without a panic.
        for dir in ["scenarios", "regressions"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                assert_eq!(
                    Target::ScenarioText.check(&data),
                    Ok(()),
                    "{}",
                    path.display()
                );
            }
        }
        for data in [&b""[..], b"{", b"\xff\xfe", b"{\"format\": 1}", b"[]"] {
            assert_eq!(Target::ScenarioText.check(data), Ok(()));
        }
    }

    #[test]
    fn a_program_that_breaks_an_invariant_fails_with_its_replay() {
        // Goal: the check is not vacuous: the committed regression of a zoo mutant,
        // as a program, fails under that mutant with the watcher, seed and replay
        // command in the message, and passes with the real watcher.
        let (_, regression) = hunt::committed()
            .unwrap()
            .into_iter()
            .find(|(_, r)| r.mutant.is_some() && !r.breaks.is_empty())
            .unwrap();
        let watcher = regression.watcher;
        let mutant = regression.mutant().unwrap();
        // A mutant's schedule may drift off its recorded seed when the kernel calls
        // change (as the hunt's regression test allows): the first of the seeds after
        // it at which the mutant breaks what it records serves.
        let (program, failure) = (0..256u64)
            .find_map(|drift| {
                let program = Program {
                    steps: regression.scenario.steps.clone(),
                    faults: regression.faults.clone(),
                    seed: regression.seed.wrapping_add(drift),
                };
                let failure = judged(watcher, &program, mutant).err()?;
                failure
                    .contains(&regression.breaks[0])
                    .then_some((program, failure))
            })
            .expect("the mutant breaks at its seed or one of the 256 after it");
        assert_eq!(judged(watcher, &program, None), Ok(()));
        for part in [
            format!("{watcher}, seed {}", program.seed),
            regression.breaks[0].clone(),
            format!(
                "cargo loopwatch replay fuzzed.json --watcher {watcher} --seed {}",
                program.seed
            ),
        ] {
            assert!(failure.contains(&part), "{part:?} not in {failure}");
        }
    }
}
