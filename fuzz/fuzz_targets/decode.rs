//! Fuzz target: one websocket binary frame from a hostile peer through the strict decoder,
//! re-encoding and the typed payload parsers (`postern_protocol::fuzzing::decode_message`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    postern_protocol::fuzzing::decode_message(data);
});
