//! Any bytes, as text, given to `Scenario::parse` (and read as a regression file): a
//! scenario that survives its JSON, or bad input; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopwatch_conformance::fuzzing::Target;

fuzz_target!(|data: &[u8]| Target::ScenarioText.fuzz(data));
