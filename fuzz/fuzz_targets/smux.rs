//! Fuzz target: `postern_protocol::fuzzing::smux_input` (see its documentation for how the
//! bytes are read).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    postern_protocol::fuzzing::smux_input(data);
});
