//! A raw wait status, decoded by `loopwatch::kernel::ExitStatus` as libc's `W*`
//! macros decode it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopwatch_conformance::fuzzing::Target;

fuzz_target!(|data: &[u8]| Target::WaitStatus.fuzz(data));
