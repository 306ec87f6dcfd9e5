//! Fuzz target: `postern_formats::fuzzing::snapshot_bytes` (see its documentation for the properties
//! it checks).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    postern_formats::fuzzing::snapshot_bytes(data);
});
