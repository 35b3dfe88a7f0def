//! Fuzzes the datapath entry point: an input is a sequence of frames (see `src/framing.rs`) run
//! through the lab's two FullNAT workers, with time moving forward now and then. Beyond "no
//! panic", the runner asserts that everything the datapath sends is a valid frame and that every
//! frame is accounted for.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../src/framing.rs");

fuzz_target!(|data: &[u8]| {
    check_input(data);
});
