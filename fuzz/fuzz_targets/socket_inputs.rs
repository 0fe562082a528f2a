//! Drives the Socket state machine with an arbitrary sequence of user commands, server frames
//! (well-formed, stale, forged, garbage), opens, closes and time steps. The shared driver checks
//! every guarantee after each step (each push ends exactly once, nothing delivered before its
//! join reply, deadlines never in the past, bounded buffers, internal invariants); any failure or
//! panic is a crash.
#![no_main]

#[path = "../../phx-proto/tests/driver/mod.rs"]
mod driver;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, Vec<driver::Op>)| {
    let (seed, ops) = input;
    let mut d = driver::Driver::new(seed);
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = d.step(op) {
            panic!("step {i} ({op:?}): {e}");
        }
    }
    if let Err(e) = d.finish() {
        panic!("finish: {e}");
    }
});
