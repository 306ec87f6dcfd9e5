//! Sans-IO implementation of the AWS SSM Session Manager data-channel protocol.
//!
//! Pure state machines fed with bytes and the current time; no runtime, sockets, files, clock
//! or OS randomness live here. See `docs/design/protocol-api.md` and `../shared/protocol/SPEC.md`.

pub mod codec;
pub mod crypto;
pub mod error;
pub mod flow;
#[cfg(feature = "testkit")]
pub mod fuzzing;
pub mod handshake;
pub mod keepalive;
pub mod mux;
pub mod reconnect;
pub mod rng;
pub mod seq;
pub mod session;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod version;

pub use codec::*;
pub use error::{DecodeError, EncodeError, PayloadError};
pub use session::{
    AgentConfig, CloseReason, DataKey, Event, KmsContext, KmsRequest, Limits, MessageError,
    ReadyInfo, Role, Session, SessionConfig, SessionStats, Transmit, Violation, ViolationKind,
};
