//! A watcher and a generated program, run on the simulator under the invariant
//! checker: it completes and breaks no invariant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopwatch_conformance::fuzzing::Target;

fuzz_target!(|data: &[u8]| Target::SimProgram.fuzz(data));
