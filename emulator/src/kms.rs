//! KMS (JSON 1.1, `TrentService.*`): `GenerateDataKey` for clients of encrypted sessions, and
//! the `Decrypt` the agent side performs on the client's blob (SPEC.md §7.2). Data keys are
//! random; a ciphertext blob names its entry in this emulator's key store, which remembers the
//! key id, the encryption context and the plaintext, so Decrypt checks the context exactly as
//! KMS does (a different `aws:ssm:TargetId` fails with InvalidCiphertextException).
//!
//! It must not log key material or blobs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::awserror::AwsError;
use crate::control::Caller;
use crate::server::Shared;

/// Data keys issued by GenerateDataKey, by ciphertext blob.
#[derive(Debug, Default)]
pub(crate) struct KeyStore {
    keys: Mutex<HashMap<Vec<u8>, Issued>>,
}

#[derive(Clone)]
struct Issued {
    key_arn: String,
    context: BTreeMap<String, String>,
    plaintext: Vec<u8>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("key_arn", &self.key_arn)
            .finish_non_exhaustive()
    }
}

/// Why a Decrypt failed, as KMS words it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecryptError {
    /// Unknown blob or a different encryption context.
    #[error("InvalidCiphertextException: the ciphertext or its encryption context is not valid")]
    InvalidCiphertext,
    /// The blob belongs to another key than the one named.
    #[error("IncorrectKeyException: the ciphertext was not encrypted under the key {0}")]
    IncorrectKey(String),
}

impl KeyStore {
    fn generate(
        &self,
        key_arn: String,
        context: BTreeMap<String, String>,
        len: usize,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut plaintext = vec![0u8; len];
        rand::rng().fill_bytes(&mut plaintext);
        let mut blob = BLOB_PREFIX.to_vec();
        let mut id = [0u8; BLOB_ID_LEN];
        rand::rng().fill_bytes(&mut id);
        blob.extend_from_slice(&id);
        self.lock().insert(
            blob.clone(),
            Issued {
                key_arn,
                context,
                plaintext: plaintext.clone(),
            },
        );
        (plaintext, blob)
    }

    /// KMS Decrypt of `blob` with `context`; `key_id`, when given, must name the blob's key.
    pub(crate) fn decrypt(
        &self,
        blob: &[u8],
        context: &BTreeMap<String, String>,
        key_id: Option<&str>,
    ) -> Result<Vec<u8>, DecryptError> {
        let issued = self
            .lock()
            .get(blob)
            .cloned()
            .ok_or(DecryptError::InvalidCiphertext)?;
        if issued.context != *context {
            return Err(DecryptError::InvalidCiphertext);
        }
        if let Some(key) = key_id
            && !names_key(&issued.key_arn, key)
        {
            return Err(DecryptError::IncorrectKey(key.to_owned()));
        }
        Ok(issued.plaintext)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Issued>> {
        // Each update is one insert: a poisoned map is still consistent.
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs one KMS operation.
pub(crate) fn handle(
    shared: &Shared,
    caller: &Caller,
    operation: &str,
    body: &[u8],
) -> Result<Value, AwsError> {
    match operation {
        "GenerateDataKey" => generate_data_key(shared, caller, parse(body)?),
        "Decrypt" => decrypt(shared, parse(body)?),
        other => Err(AwsError::unknown_operation(&format!(
            "TrentService.{other}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyRequest {
    key_id: Option<String>,
    number_of_bytes: Option<i64>,
    key_spec: Option<String>,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest {
    ciphertext_blob: Option<String>,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
    key_id: Option<String>,
}

fn generate_data_key(
    shared: &Shared,
    caller: &Caller,
    request: GenerateDataKeyRequest,
) -> Result<Value, AwsError> {
    let key_id = request
        .key_id
        .filter(|k| !k.is_empty())
        .ok_or_else(|| validation("KeyId is required"))?;
    let len = match (request.number_of_bytes, request.key_spec.as_deref()) {
        (Some(n), None) if (1..=1024).contains(&n) => n as usize,
        (Some(_), None) => return Err(validation("NumberOfBytes must be between 1 and 1024")),
        (None, Some("AES_256")) => 32,
        (None, Some("AES_128")) => 16,
        (None, Some(other)) => return Err(validation(&format!("KeySpec {other} is not valid"))),
        (None, None) | (Some(_), Some(_)) => {
            return Err(validation(
                "exactly one of NumberOfBytes and KeySpec is required",
            ));
        }
    };
    let key_arn = key_arn(&key_id, &shared.config.region, &caller.principal.account);
    let (plaintext, blob) = shared
        .kms
        .generate(key_arn.clone(), request.encryption_context, len);
    tracing::info!(key = %key_arn, bytes = len, "GenerateDataKey");
    Ok(json!({
        "CiphertextBlob": BASE64.encode(blob),
        "Plaintext": BASE64.encode(plaintext),
        "KeyId": key_arn,
    }))
}

fn decrypt(shared: &Shared, request: DecryptRequest) -> Result<Value, AwsError> {
    let blob = request
        .ciphertext_blob
        .and_then(|b| BASE64.decode(b).ok())
        .ok_or_else(|| validation("CiphertextBlob is required (base64)"))?;
    let plaintext = shared
        .kms
        .decrypt(
            &blob,
            &request.encryption_context,
            request.key_id.as_deref(),
        )
        .map_err(|e| match e {
            DecryptError::InvalidCiphertext => {
                AwsError::new("InvalidCiphertextException", e.to_string())
            }
            DecryptError::IncorrectKey(_) => AwsError::new("IncorrectKeyException", e.to_string()),
        })?;
    Ok(json!({
        "Plaintext": BASE64.encode(plaintext),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

/// `alias/x`, a key id or an ARN, as the ARN GenerateDataKey reports.
fn key_arn(key_id: &str, region: &str, account: &str) -> String {
    if key_id.starts_with("arn:") {
        key_id.to_owned()
    } else if key_id.starts_with("alias/") {
        format!("arn:aws:kms:{region}:{account}:{key_id}")
    } else {
        format!("arn:aws:kms:{region}:{account}:key/{key_id}")
    }
}

/// Whether `key` (an id, alias or ARN) names `arn`.
fn names_key(arn: &str, key: &str) -> bool {
    arn == key || arn.ends_with(&format!(":{key}")) || arn.ends_with(&format!("/{key}"))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AwsError> {
    serde_json::from_slice(body).map_err(|err| AwsError::serialization(err.to_string()))
}

fn validation(message: &str) -> AwsError {
    AwsError::new("ValidationException", message)
}

/// Marks this emulator's blobs (real KMS blobs carry a key reference up front too).
const BLOB_PREFIX: &[u8] = b"postern-emulator-kms:";
const BLOB_ID_LEN: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn context(target: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("aws:ssm:SessionId".to_owned(), "s-1".to_owned()),
            ("aws:ssm:TargetId".to_owned(), target.to_owned()),
        ])
    }

    #[test]
    fn decrypt_returns_the_key_only_for_the_same_context_and_key() {
        let store = KeyStore::default();
        let arn = key_arn("alias/ssm", "us-east-1", "111122223333");
        let (plain, blob) = store.generate(arn, context("i-1"), 64);
        assert_eq!(plain.len(), 64);
        assert_eq!(
            store.decrypt(&blob, &context("i-1"), None),
            Ok(plain.clone())
        );
        assert_eq!(
            store.decrypt(&blob, &context("i-1"), Some("alias/ssm")),
            Ok(plain)
        );
        assert_eq!(
            store.decrypt(&blob, &context("i-2"), None),
            Err(DecryptError::InvalidCiphertext)
        );
        assert!(matches!(
            store.decrypt(&blob, &context("i-1"), Some("alias/other")),
            Err(DecryptError::IncorrectKey(_))
        ));
        assert_eq!(
            store.decrypt(b"garbage", &context("i-1"), None),
            Err(DecryptError::InvalidCiphertext)
        );
    }
}
