//! The first websocket frame: OpenDataChannelInput (SPEC.md §2.3; plugin `src/service/service.go`).

use serde::{Deserialize, Serialize};

/// Sent as a text frame right after the websocket opens, on every (re)connect.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDataChannelInput {
    /// Always `"1.0"`.
    #[serde(rename = "MessageSchemaVersion")]
    pub message_schema_version: String,
    /// A fresh UUID v4 per open.
    #[serde(rename = "RequestId")]
    pub request_id: String,
    /// Token from StartSession or ResumeSession. Secret: redacted in `Debug`.
    #[serde(rename = "TokenValue")]
    pub token_value: String,
    /// A UUID v4 fixed for the client process.
    #[serde(rename = "ClientId")]
    pub client_id: String,
    /// The client's dotted version; older clients omit it.
    #[serde(
        rename = "ClientVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_version: Option<String>,
}

impl std::fmt::Debug for OpenDataChannelInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenDataChannelInput")
            .field("message_schema_version", &self.message_schema_version)
            .field("request_id", &self.request_id)
            .field("token_value", &"<redacted>")
            .field("client_id", &self.client_id)
            .field("client_version", &self.client_version)
            .finish()
    }
}
