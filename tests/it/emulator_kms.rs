//! The emulator's KMS endpoint through the real aws-sdk-kms client: GenerateDataKey with the
//! SSM encryption context (the request shape postern sends, SPEC.md §7.2), Decrypt only under
//! the same context and key, and KMS-shaped errors otherwise.

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use postern_emulator::EmulatorHandle;

use crate::support::emulator::{base, emulator};

/// The real KMS client pointed at the emulator, with its base credentials.
fn kms(emulator: &EmulatorHandle) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&base(emulator, emulator.region()))
}

#[tokio::test]
async fn generate_data_key_then_decrypt_only_under_the_same_context() {
    let emulator = emulator(|_| {}).await;
    let client = kms(&emulator);
    let generated = client
        .generate_data_key()
        .key_id("alias/session-manager")
        .number_of_bytes(64)
        .encryption_context("aws:ssm:SessionId", "alice-0123")
        .encryption_context("aws:ssm:TargetId", "i-0123456789abcdef0")
        .send()
        .await
        .expect("GenerateDataKey");
    let plaintext = generated.plaintext().expect("plaintext").as_ref().to_vec();
    assert_eq!(plaintext.len(), 64);
    assert!(
        generated
            .key_id()
            .unwrap()
            .ends_with(":alias/session-manager")
    );
    let blob = generated.ciphertext_blob().expect("blob").clone();
    let decrypted = client
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("aws:ssm:SessionId", "alice-0123")
        .encryption_context("aws:ssm:TargetId", "i-0123456789abcdef0")
        .send()
        .await
        .expect("Decrypt");
    assert_eq!(
        decrypted.plaintext().unwrap().as_ref(),
        plaintext.as_slice()
    );
    let wrong_target = client
        .decrypt()
        .ciphertext_blob(blob)
        .encryption_context("aws:ssm:SessionId", "alice-0123")
        .encryption_context("aws:ssm:TargetId", "i-0fffffffffffffff0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        wrong_target.as_service_error().and_then(|e| e.code()),
        Some("InvalidCiphertextException")
    );
    let garbage = client
        .decrypt()
        .ciphertext_blob(Blob::new(b"not a blob".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        garbage.as_service_error().and_then(|e| e.code()),
        Some("InvalidCiphertextException")
    );
}

#[tokio::test]
async fn generate_data_key_needs_exactly_one_size() {
    let emulator = emulator(|_| {}).await;
    let err = kms(&emulator)
        .generate_data_key()
        .key_id("alias/k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().and_then(|e| e.code()),
        Some("ValidationException")
    );
}
