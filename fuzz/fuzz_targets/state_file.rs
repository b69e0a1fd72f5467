//! The state file decoder: never panics on a torn or hostile file; what it
//! accepts encodes and decodes back to the same state.
#![no_main]

use iris_init::persist::state_file::{encode, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = parse(data) else {
        return;
    };
    let again = parse(&encode(&state)).expect("its own encoding parses");
    assert_eq!(again, state);
});
