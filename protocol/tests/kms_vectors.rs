//! KMS session encryption against `kms.json`, recorded from the official client
//! (`encryption.Encrypter`) and agent (`crypto.BlockCipher`): key split, byte-exact AES-GCM
//! outputs for fixed nonces, the agent's counter nonces, decryption, tampering, the challenge
//! exchange and the KMS encryption contexts.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use postern_protocol::crypto::{
    Aes256GcmCipher, CryptoError, DATA_KEY_LEN, NONCE_LEN, NonceSource, OVERHEAD, PayloadCrypto,
    PlaintextDataKey, encryption_context, open_wire, seal_with_nonce,
};
use postern_protocol::testkit::vectors::{hex_field, load_json, str_field};
use serde_json::Value;

#[test]
fn data_key_splits_into_recorded_client_and_agent_keys() {
    let file = load_json("kms.json");
    let key = data_key(&file);
    assert_eq!(
        key.client_keys().encrypt_key().as_bytes()[..],
        hex_field(&file, "client_encryption_key_hex")[..]
    );
    assert_eq!(
        key.client_keys().decrypt_key().as_bytes()[..],
        hex_field(&file, "client_decryption_key_hex")[..]
    );
    assert_eq!(
        key.agent_keys().encrypt_key().as_bytes()[..],
        hex_field(&file, "agent_encryption_key_hex")[..]
    );
    assert_eq!(
        key.agent_keys().decrypt_key().as_bytes()[..],
        hex_field(&file, "agent_decryption_key_hex")[..]
    );
}

#[test]
fn client_encrypt_examples_are_byte_exact() {
    let file = load_json("kms.json");
    let keys = data_key(&file).client_keys();
    let agent_keys = data_key(&file).agent_keys();
    let examples = array(&file, "client_encrypt_examples", 5);
    for example in &examples {
        let name = str_field(example, "name");
        let nonce: [u8; NONCE_LEN] = hex_field(example, "nonce_hex").try_into().unwrap();
        let plaintext = hex_field(example, "plaintext_hex");
        let output =
            seal_with_nonce(&Aes256GcmCipher, keys.encrypt_key(), &nonce, &plaintext).unwrap();
        assert_eq!(output, hex_field(example, "output_hex"), "{name}");
        assert_eq!(
            output.len() as u64,
            example["output_length"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(output.len(), plaintext.len() + OVERHEAD, "{name}");
        // And the agent, holding the mirror keys, opens it.
        assert_eq!(
            open_wire(&Aes256GcmCipher, agent_keys.decrypt_key(), &output).unwrap(),
            plaintext,
            "{name}"
        );
    }
}

#[test]
fn agent_encrypt_examples_follow_the_counter_nonce() {
    let file = load_json("kms.json");
    let initial = initial_nonce(&file);
    let mut agent = PayloadCrypto::agent(&data_key(&file), initial);
    let examples = array(&file, "agent_encrypt_examples", 3);
    for example in &examples {
        let name = str_field(example, "name");
        let output = agent.encrypt(&hex_field(example, "plaintext_hex")).unwrap();
        assert_eq!(
            output[..NONCE_LEN],
            hex_field(example, "nonce_hex")[..],
            "{name}"
        );
        assert_eq!(output, hex_field(example, "output_hex"), "{name}");
        assert_eq!(
            BASE64.encode(&output),
            str_field(example, "output_base64"),
            "{name}"
        );
    }
}

#[test]
fn agent_initial_nonce_state_is_the_first_nonce() {
    let file = load_json("kms.json");
    let first = array(&file, "agent_encrypt_examples", 3)[0].clone();
    let mut nonces = NonceSource::agent(initial_nonce(&file));
    assert_eq!(nonces.next_nonce()[..], hex_field(&first, "nonce_hex")[..]);
}

#[test]
fn client_decrypts_every_agent_example() {
    let file = load_json("kms.json");
    let client = PayloadCrypto::client(&data_key(&file), 1);
    let examples = array(&file, "client_decrypts_agent_examples", 3);
    for example in &examples {
        let name = str_field(example, "name");
        assert_eq!(example["matches_agent_plaintext"], true, "{name}");
        let plaintext = client.decrypt(&hex_field(example, "input_hex")).unwrap();
        assert_eq!(
            plaintext,
            hex_field(example, "plugin_decrypted_hex"),
            "{name}"
        );
    }
}

#[test]
fn tampered_ciphertext_fails_authentication() {
    let file = load_json("kms.json");
    assert!(
        str_field(&file, "tampered_ciphertext_plugin_error")
            .contains("message authentication failed")
    );
    let client = PayloadCrypto::client(&data_key(&file), 1);
    let mut input = hex_field(
        &array(&file, "client_decrypts_agent_examples", 3)[1],
        "input_hex",
    );
    for position in [0, NONCE_LEN, input.len() - 1] {
        input[position] ^= 0x01;
        assert_eq!(
            client.decrypt(&input),
            Err(CryptoError::AuthenticationFailed),
            "byte {position}"
        );
        input[position] ^= 0x01;
    }
    assert!(client.decrypt(&input).is_ok());
    assert_eq!(
        client.decrypt(&input[..OVERHEAD - 1]),
        Err(CryptoError::TooShort { len: OVERHEAD - 1 })
    );
}

#[test]
fn challenge_is_decrypted_with_client_key_and_re_encrypted() {
    let file = load_json("kms.json");
    let challenge = &file["encryption_challenge"];
    let request = challenge_bytes(str_field(challenge, "request_payload_from_agent"));
    let response = challenge_bytes(str_field(challenge, "response_payload_from_client"));
    let plaintext = hex_field(challenge, "challenge_plaintext_hex");
    let key = data_key(&file);

    let mut client = PayloadCrypto::client(&key, 99);
    assert_eq!(client.decrypt(&request).unwrap(), plaintext);

    // With the recorded nonce, our re-encryption is the recorded response byte for byte.
    let nonce: [u8; NONCE_LEN] = response[..NONCE_LEN].try_into().unwrap();
    let recorded = seal_with_nonce(
        &Aes256GcmCipher,
        key.client_keys().encrypt_key(),
        &nonce,
        &plaintext,
    )
    .unwrap();
    assert_eq!(recorded, response);

    // With our own nonce, the agent still recovers its challenge.
    let answer = client.answer_challenge(&request).unwrap();
    assert_ne!(answer[..NONCE_LEN], request[..NONCE_LEN]);
    let agent = PayloadCrypto::agent(&key, initial_nonce(&file));
    assert_eq!(agent.decrypt(&answer).unwrap(), plaintext);
    assert_eq!(agent.decrypt(&response).unwrap(), plaintext);
}

#[test]
fn generate_data_key_context_has_session_and_target() {
    let file = load_json("kms.json");
    let calls = array(&file, "client_generate_data_key_calls", 1);
    let call = &calls[0];
    assert_eq!(call["NumberOfBytes"].as_u64(), Some(DATA_KEY_LEN as u64));
    assert_eq!(str_field(call, "KeyId"), str_field(&file, "kms_key_id"));
    let context = encryption_context(
        str_field(&file, "session_id"),
        str_field(&file, "target_id"),
        None,
    );
    assert_eq!(context, string_map(&call["EncryptionContext"]));
}

#[test]
fn decrypt_context_without_challenge_ack_has_two_keys() {
    let file = load_json("kms.json");
    let call = &file["agent_kms_decrypt_call_without_challenge_ack"];
    assert_eq!(call["CiphertextBlob_hex"], file["ciphertext_blob_hex"]);
    let context = encryption_context(
        str_field(&file, "session_id"),
        str_field(&file, "target_id"),
        None,
    );
    assert_eq!(context, string_map(&call["EncryptionContext"]));
}

#[test]
fn decrypt_context_with_challenge_ack_adds_random_challenge() {
    let file = load_json("kms.json");
    let call = &file["agent_kms_decrypt_call_with_challenge_ack"];
    let context = encryption_context(
        str_field(&file, "session_id"),
        str_field(&file, "target_id"),
        Some(str_field(&file, "agent_random_challenge")),
    );
    assert_eq!(context, string_map(&call["EncryptionContext"]));
    assert_eq!(context.len(), 3);
}

fn data_key(file: &Value) -> PlaintextDataKey {
    PlaintextDataKey::from_slice(&hex_field(file, "data_key_hex")).unwrap()
}

fn initial_nonce(file: &Value) -> [u32; 3] {
    let words: Vec<u32> = file["agent_initial_nonce_state_u32_le"]
        .as_array()
        .expect("kms.json: agent_initial_nonce_state_u32_le")
        .iter()
        .map(|word| u32::try_from(word.as_u64().unwrap()).unwrap())
        .collect();
    words.try_into().expect("three words")
}

fn array(file: &Value, key: &str, expected: usize) -> Vec<Value> {
    let items = file[key]
        .as_array()
        .unwrap_or_else(|| panic!("kms.json: no {key:?}"))
        .clone();
    assert_eq!(items.len(), expected, "kms.json: {key} count");
    items
}

fn challenge_bytes(payload: &str) -> Vec<u8> {
    let json: Value = serde_json::from_str(payload).unwrap();
    BASE64.decode(str_field(&json, "Challenge")).unwrap()
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(value.clone()).unwrap()
}
