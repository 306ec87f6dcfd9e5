//! Handshake payloads (SPEC.md §4.2–4.5; agent `datachannel.go` `buildHandshakeRequestPayload`,
//! `model.go`; plugin `streaming.go` `handleHandshakeRequest`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::PayloadError;

/// HandshakeRequest (PayloadType 5, agent → client).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandshakeRequest {
    /// Dotted agent version; drives the client's feature thresholds.
    #[serde(rename = "AgentVersion")]
    pub agent_version: String,
    /// Actions the client must process, `SessionType` first.
    #[serde(rename = "RequestedClientActions")]
    pub requested_client_actions: Vec<RequestedClientAction>,
}

/// One requested action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestedClientAction {
    /// Which action.
    #[serde(rename = "ActionType")]
    pub action_type: ActionType,
    /// Action-specific parameters; see [`SessionTypeParameters`], [`KmsEncryptionParameters`].
    #[serde(rename = "ActionParameters")]
    pub action_parameters: Value,
}

impl RequestedClientAction {
    /// Parses the parameters of a `SessionType` action.
    pub fn session_type_parameters(&self) -> Result<SessionTypeParameters, PayloadError> {
        serde_json::from_value(self.action_parameters.clone()).map_err(PayloadError::json)
    }

    /// Parses the parameters of a `KMSEncryption` action.
    pub fn kms_parameters(&self) -> Result<KmsEncryptionParameters, PayloadError> {
        serde_json::from_value(self.action_parameters.clone()).map_err(PayloadError::json)
    }
}

/// Action types (agent `model.go`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ActionType {
    /// Tells the client the session type and its properties.
    SessionType,
    /// Asks the client to set up KMS encryption.
    KmsEncryption,
    /// An action this implementation does not know.
    Other(String),
}

impl From<String> for ActionType {
    fn from(value: String) -> Self {
        match value.as_str() {
            "SessionType" => Self::SessionType,
            "KMSEncryption" => Self::KmsEncryption,
            _ => Self::Other(value),
        }
    }
}

impl From<ActionType> for String {
    fn from(value: ActionType) -> Self {
        match value {
            ActionType::SessionType => "SessionType".to_owned(),
            ActionType::KmsEncryption => "KMSEncryption".to_owned(),
            ActionType::Other(other) => other,
        }
    }
}

/// Parameters of the `SessionType` action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionTypeParameters {
    /// The agent-side session type.
    #[serde(rename = "SessionType")]
    pub session_type: SessionType,
    /// Document properties for `Port` sessions (keys alphabetical), else null.
    #[serde(rename = "Properties")]
    pub properties: Value,
}

/// Agent session types (SPEC.md §1.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum SessionType {
    /// Interactive shell.
    StandardStream,
    /// A command in a PTY.
    InteractiveCommands,
    /// A command without a PTY, with optional separate streams and exit code.
    NonInteractiveCommands,
    /// Port forwarding or SSH.
    Port,
    /// Unknown to us; answered with status Failed.
    Other(String),
}

impl From<String> for SessionType {
    fn from(value: String) -> Self {
        match value.as_str() {
            "Standard_Stream" => Self::StandardStream,
            "InteractiveCommands" => Self::InteractiveCommands,
            "NonInteractiveCommands" => Self::NonInteractiveCommands,
            "Port" => Self::Port,
            _ => Self::Other(value),
        }
    }
}

impl From<SessionType> for String {
    fn from(value: SessionType) -> Self {
        match value {
            SessionType::StandardStream => "Standard_Stream".to_owned(),
            SessionType::InteractiveCommands => "InteractiveCommands".to_owned(),
            SessionType::NonInteractiveCommands => "NonInteractiveCommands".to_owned(),
            SessionType::Port => "Port".to_owned(),
            SessionType::Other(other) => other,
        }
    }
}

/// Parameters of the `KMSEncryption` action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsEncryptionParameters {
    /// KMS key id, ARN or alias, used verbatim in GenerateDataKey.
    #[serde(rename = "KMSKeyId")]
    pub kms_key_id: String,
    /// Base64 of 16 random bytes (newer agents only, SPEC.md §7.8).
    #[serde(rename = "Challenge", default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
}

/// HandshakeResponse (PayloadType 6, client → agent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandshakeResponse {
    /// The client's version; changes agent behaviour (SPEC.md §6.9).
    #[serde(rename = "ClientVersion")]
    pub client_version: String,
    /// One entry per requested action, same order.
    #[serde(rename = "ProcessedClientActions")]
    pub processed_client_actions: Vec<ProcessedClientAction>,
    /// Error strings, or null when none.
    #[serde(rename = "Errors")]
    pub errors: Option<Vec<String>>,
}

/// The outcome of one requested action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessedClientAction {
    /// The action processed.
    #[serde(rename = "ActionType")]
    pub action_type: ActionType,
    /// 1 success, 2 failed, 3 unsupported.
    #[serde(rename = "ActionStatus")]
    pub action_status: ActionStatus,
    /// Action-specific result ([`KmsEncryptionResult`] for KMS), else null.
    #[serde(rename = "ActionResult")]
    pub action_result: Value,
    /// Error text, `""` on success.
    #[serde(rename = "Error")]
    pub error: String,
}

/// ActionStatus values (SPEC.md §4.3). Any other value is kept verbatim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "i64", into = "i64")]
pub enum ActionStatus {
    /// 1.
    Success,
    /// 2.
    Failed,
    /// 3.
    Unsupported,
    /// Anything else (the official client sends 0 for unknown actions).
    Other(i64),
}

impl From<i64> for ActionStatus {
    fn from(value: i64) -> Self {
        match value {
            1 => Self::Success,
            2 => Self::Failed,
            3 => Self::Unsupported,
            other => Self::Other(other),
        }
    }
}

impl From<ActionStatus> for i64 {
    fn from(value: ActionStatus) -> Self {
        match value {
            ActionStatus::Success => 1,
            ActionStatus::Failed => 2,
            ActionStatus::Unsupported => 3,
            ActionStatus::Other(other) => other,
        }
    }
}

/// `ActionResult` of a successful KMSEncryption action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsEncryptionResult {
    /// Base64 of the GenerateDataKey CiphertextBlob.
    #[serde(rename = "KMSCipherTextKey")]
    pub kms_cipher_text_key: String,
    /// Always null.
    #[serde(rename = "KMSCipherTextHash")]
    pub kms_cipher_text_hash: Option<String>,
    /// Set when the client used the random-challenge context (SPEC.md §7.8).
    #[serde(
        rename = "ChallengeAcknowledgement",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub challenge_acknowledgement: Option<bool>,
}

/// HandshakeComplete (PayloadType 7, agent → client).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeComplete {
    /// Nanoseconds the handshake took (Go `time.Duration`).
    #[serde(rename = "HandshakeTimeToComplete")]
    pub handshake_time_to_complete: i64,
    /// Printed by the client when non-empty.
    #[serde(rename = "CustomerMessage")]
    pub customer_message: String,
}

/// EncChallengeRequest (8) and EncChallengeResponse (9): base64 of `nonce || ciphertext || tag`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionChallenge {
    /// Standard base64 with padding.
    #[serde(rename = "Challenge")]
    pub challenge: String,
}
