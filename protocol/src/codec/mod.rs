//! Wire encodings: the binary ClientMessage and the JSON/binary payloads it carries.
//!
//! Pure functions only: nothing here keeps session state.

mod ack;
mod control;
mod handshake;
mod header;
mod open;

pub use ack::AcknowledgeContent;
pub use control::{AgentSessionState, ChannelClosed, ExitCode, Flag, SizeData};
pub use handshake::{
    ActionStatus, ActionType, EncryptionChallenge, HandshakeComplete, HandshakeRequest,
    HandshakeResponse, KmsEncryptionParameters, KmsEncryptionResult, ProcessedClientAction,
    RequestedClientAction, SessionType, SessionTypeParameters,
};
pub use header::{
    ClientMessage, HEADER_LENGTH, MAX_MESSAGE_TYPE_LEN, MAX_PAYLOAD_LEN, MessageId, MessageType,
    PAYLOAD_OFFSET, PayloadType, SCHEMA_VERSION, SequenceNumber,
};
pub use open::OpenDataChannelInput;
