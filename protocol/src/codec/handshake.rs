//! Handshake payloads (SPEC.md §4.2–4.5; agent `datachannel.go` `buildHandshakeRequestPayload`,
//! `model.go`; plugin `streaming.go` `handleHandshakeRequest`).

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
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
    /// Serialized with the upstream Go struct's key order, so the JSON is byte-identical to the
    /// official encoders' (a plain `Value` map would sort the keys).
    #[serde(rename = "ActionParameters", serialize_with = "serialize_in_go_order")]
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
    /// Document properties for `Port` sessions (keys alphabetical), else null. A missing key
    /// reads as null, as Go's decoder does.
    #[serde(rename = "Properties", default)]
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
    /// Serialized with the upstream Go struct's key order, so the JSON is byte-identical to the
    /// official encoders' (a plain `Value` map would sort the keys).
    #[serde(rename = "ActionResult", serialize_with = "serialize_in_go_order")]
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

/// Serializes an action's `ActionParameters`/`ActionResult` with the key order the upstream Go
/// structs produce, so our JSON is byte-identical to the official encoders' output.
///
/// The fields are untyped [`Value`]s, whose maps serialize with keys sorted; that would emit
/// `{"Properties":…,"SessionType":…}` where the agent emits `{"SessionType":…,"Properties":…}`
/// (agent `model.go` `SessionTypeRequest`, `KMSEncryptionRequest`; plugin `clientmessage.go`
/// `KMSEncryptionResponse`). Top-level keys of those structs come first in declaration order;
/// any other key follows, sorted, as Go sorts map keys. Nested values (such as `Properties`, a
/// Go map) keep sorted keys.
fn serialize_in_go_order<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    let Value::Object(map) = value else {
        return value.serialize(serializer);
    };
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|(a, _), (b, _)| go_struct_rank(a).cmp(&go_struct_rank(b)).then(a.cmp(b)));
    let mut out = serializer.serialize_map(Some(entries.len()))?;
    for (key, entry) in entries {
        out.serialize_entry(key, entry)?;
    }
    out.end()
}

/// Declaration index of `key` in the upstream struct that carries it; unknown keys sort last.
/// The three structs share no key, so one table serves all of them.
fn go_struct_rank(key: &str) -> usize {
    GO_STRUCT_KEY_ORDER
        .iter()
        .find_map(|fields| fields.iter().position(|field| *field == key))
        .unwrap_or(usize::MAX)
}

/// Field order of the upstream structs carried in `ActionParameters` and `ActionResult`:
/// agent `model.go` `SessionTypeRequest` and `KMSEncryptionRequest`, plugin `clientmessage.go`
/// `KMSEncryptionResponse` (plus the agent's `ChallengeAcknowledgement` extension).
const GO_STRUCT_KEY_ORDER: [&[&str]; 3] = [
    &["SessionType", "Properties"],
    &["KMSKeyId", "Challenge"],
    &[
        "KMSCipherTextKey",
        "KMSCipherTextHash",
        "ChallengeAcknowledgement",
    ],
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_parameters_keep_upstream_key_order() {
        let action = RequestedClientAction {
            action_type: ActionType::SessionType,
            action_parameters: serde_json::to_value(SessionTypeParameters {
                session_type: SessionType::Port,
                properties: serde_json::json!({"type": "LocalPortForwarding", "portNumber": "22"}),
            })
            .unwrap(),
        };
        assert_eq!(
            serde_json::to_string(&action).unwrap(),
            r#"{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"22","type":"LocalPortForwarding"}}}"#
        );
    }

    #[test]
    fn action_result_keeps_upstream_key_order_and_sorts_unknown_keys_last() {
        let action = ProcessedClientAction {
            action_type: ActionType::KmsEncryption,
            action_status: ActionStatus::Success,
            action_result: serde_json::json!({
                "Zeta": 1, "Alpha": 2, "KMSCipherTextHash": null, "KMSCipherTextKey": "k",
            }),
            error: String::new(),
        };
        assert_eq!(
            serde_json::to_string(&action).unwrap(),
            r#"{"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":{"KMSCipherTextKey":"k","KMSCipherTextHash":null,"Alpha":2,"Zeta":1},"Error":""}"#
        );
    }

    #[test]
    fn session_type_parameters_read_missing_properties_as_null() {
        let action: RequestedClientAction = serde_json::from_str(
            r#"{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream"}}"#,
        )
        .unwrap();
        let params = action.session_type_parameters().unwrap();
        assert_eq!(params.session_type, SessionType::StandardStream);
        assert_eq!(params.properties, Value::Null);
    }
}
