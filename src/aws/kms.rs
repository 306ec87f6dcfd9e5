//! KMS GenerateDataKey for encrypted sessions (SPEC.md §7.2): 64 bytes, no key spec, the
//! session's encryption context. The plaintext travels in a redacting newtype.
//!
//! It must not import the protocol crate, print, or log key material.

use std::collections::BTreeMap;
use std::fmt;

use aws_sdk_kms::primitives::Blob;

use crate::aws::config::AwsContext;
use crate::aws::error::{AwsError, AwsErrorKind};

/// KMS client bound to one region and profile (the session's: KMS calls use the same
/// region and credentials as SSM, SPEC.md §1.5).
#[derive(Clone, Debug)]
pub struct KmsClient {
    client: aws_sdk_kms::Client,
    region: String,
    profile: Option<String>,
}

/// A data key: the plaintext (secret) and the blob KMS encrypted it into.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// The plaintext key. Secret.
    pub plaintext: Vec<u8>,
    /// KMS's CiphertextBlob, for the agent's Decrypt.
    pub ciphertext_blob: Vec<u8>,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("plaintext", &"<redacted>")
            .field("ciphertext_blob_len", &self.ciphertext_blob.len())
            .finish()
    }
}

impl KmsClient {
    /// A client using `context`'s configuration.
    pub fn new(context: &AwsContext) -> Self {
        Self {
            client: aws_sdk_kms::Client::new(&context.sdk),
            region: context.region.clone(),
            profile: context.profile.clone(),
        }
    }

    /// GenerateDataKey of `bytes` bytes under `key_id` with `context`.
    pub async fn generate_data_key(
        &self,
        key_id: &str,
        bytes: i32,
        context: &BTreeMap<String, String>,
    ) -> Result<GeneratedKey, AwsError> {
        let mut call = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .number_of_bytes(bytes);
        for (key, value) in context {
            call = call.encryption_context(key, value);
        }
        let output = call.send().await.map_err(|err| {
            AwsError::from_sdk(
                "GenerateDataKey",
                &self.region,
                self.profile.as_deref(),
                err,
            )
        })?;
        match (output.plaintext, output.ciphertext_blob) {
            (Some(plaintext), Some(blob)) => Ok(GeneratedKey {
                plaintext: plaintext.into_inner(),
                ciphertext_blob: Blob::into_inner(blob),
            }),
            _ => Err(AwsError::local(
                AwsErrorKind::Service,
                "GenerateDataKey",
                Some(self.region.clone()),
                self.profile.clone(),
                "the response lacks the plaintext or the ciphertext blob",
            )),
        }
    }
}
