//! Replays the committed fuzz seed corpus (`fuzz/corpus/*/`) through every
//! `postern_protocol::fuzzing` entry point on stable, so the fuzz targets' code runs in every
//! test run (STYLE.md §6 item 4). The seeds are derived from the golden vectors; a test checks
//! the files still match them, and rewrites them first after the vectors change when asked:
//! `POSTERN_UPDATE_SEEDS=1 cargo test -p postern-protocol --test fuzz_corpus`.

use std::path::PathBuf;

use postern_protocol::ClientMessage;
use postern_protocol::fuzzing;
use postern_protocol::testkit::vectors::{hex_field, load_cases, str_field};

#[test]
fn every_seed_runs_through_every_entry_point() {
    let seeds = corpus_files();
    assert!(
        !seeds.is_empty(),
        "no seed files under {}: regenerate them (see this file's header)",
        corpus_root().display()
    );
    let mut accepted = 0;
    for seed in &seeds {
        let data = std::fs::read(seed).unwrap_or_else(|err| panic!("{}: {err}", seed.display()));
        let outcome = std::panic::catch_unwind(|| {
            fuzzing::decode_message(&data);
            fuzzing::session_input(&data);
            fuzzing::smux_input(&data);
        });
        assert!(
            outcome.is_ok(),
            "{}: fuzz entry point panicked",
            seed.display()
        );
        accepted += usize::from(ClientMessage::decode(&data).is_ok());
    }
    // A useful corpus reaches both the accepting and the rejecting paths.
    assert!(
        accepted > 0,
        "no seed decodes: the corpus only exercises rejection"
    );
    assert!(
        accepted < seeds.len(),
        "every seed decodes: the corpus never exercises rejection"
    );
}

#[test]
fn seeds_match_the_vectors_they_were_taken_from() {
    let dir = corpus_root().join("decode");
    for (name, bytes) in seeds_from_vectors() {
        let path = dir.join(&name);
        if std::env::var_os("POSTERN_UPDATE_SEEDS").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path)
            .unwrap_or_else(|err| panic!("{}: {err} (regenerate the seed corpus)", path.display()));
        assert_eq!(on_disk, bytes, "{name}: stale seed, regenerate the corpus");
    }
}

/// The seeds: a spread of valid golden messages (every message and payload family) and the
/// hostile inputs that make the official parsers misbehave.
fn seeds_from_vectors() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for case in load_cases("client_messages.json", 31) {
        let name = str_field(&case, "name");
        if VALID_SEEDS.contains(&name) {
            seeds.push((format!("valid-{name}"), hex_field(&case, "serialized_hex")));
        }
    }
    for case in load_cases("malformed.json", 21) {
        let name = str_field(&case, "name");
        if MALFORMED_SEEDS.contains(&name) {
            seeds.push((format!("malformed-{name}"), hex_field(&case, "input_hex")));
        }
    }
    assert_eq!(
        seeds.len(),
        VALID_SEEDS.len() + MALFORMED_SEEDS.len(),
        "a seed named here is missing from the vectors"
    );
    seeds
}

fn corpus_root() -> PathBuf {
    // The running test's package (cargo sets it at run time; the compiled-in path may name
    // another checkout that shared this target directory).
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../fuzz/corpus")
}

fn corpus_files() -> Vec<PathBuf> {
    let root = corpus_root();
    let dirs = std::fs::read_dir(&root)
        .unwrap_or_else(|err| panic!("fuzz corpus {}: {err}", root.display()));
    let mut files = Vec::new();
    for dir in dirs {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            if file.is_file() {
                files.push(file);
            }
        }
    }
    files.sort();
    files
}

const VALID_SEEDS: &[&str] = &[
    "client_output_keystrokes",
    "client_size",
    "client_flag_terminate_session",
    "client_handshake_response_kms",
    "client_acknowledge",
    "client_empty_payload",
    "agent_handshake_request_port",
    "agent_handshake_request_kms_shell",
    "agent_handshake_complete_kms",
    "agent_encryption_challenge_request",
    "agent_exit_code",
    "agent_session_state_connected",
    "service_channel_closed_with_output",
    "service_start_publication",
];

const MALFORMED_SEEDS: &[&str] = &[
    "truncated_116_bytes",
    "header_only_120_bytes",
    "header_length_zero",
    "header_length_200",
    "bad_digest",
    "payload_length_zero_bad_digest",
    "trailing_garbage",
    "created_date_zero",
    "message_type_nul_padded",
    "start_publication_all_zero_header",
    "unknown_message_type",
    "unknown_payload_type_99",
];
