//! Fuzzes the config parser: see `check_config` in `src/parsers.rs` (shared with the stable replay
//! of this target's corpus, gateway/tests/fuzz_replay_parsers.rs).

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../src/parsers.rs");

fuzz_target!(|data: &[u8]| {
    check_config(data);
});
