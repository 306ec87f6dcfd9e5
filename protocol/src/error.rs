//! Error types of the protocol crate. Each says who is at fault: the peer (a malformed or
//! unexpected message) or the caller (misuse).

use thiserror::Error;

/// Why a received frame was rejected. The peer is at fault in every case.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Shorter than the 120-byte header.
    #[error("message truncated: {len} bytes, the header alone is 120")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// Longer than the 120-byte header plus the payload cap.
    #[error(
        "message of {len} bytes exceeds the cap of 120 + {} bytes",
        crate::codec::MAX_PAYLOAD_LEN
    )]
    Oversized {
        /// Bytes received.
        len: usize,
    },
    /// HeaderLength is not 116.
    #[error("bad header length {header_length}, expected 116")]
    BadHeaderLength {
        /// The value found.
        header_length: u32,
    },
    /// MessageType blank after trimming.
    #[error("message type is missing")]
    MissingMessageType,
    /// MessageType not one we know.
    #[error("unknown message type {0:?}")]
    UnknownMessageType(String),
    /// CreatedDate is 0.
    #[error("created date is missing")]
    MissingCreatedDate,
    /// PayloadLength disagrees with the bytes after the header.
    #[error("payload length field says {declared} but {actual} bytes follow the header")]
    PayloadLengthMismatch {
        /// PayloadLength field.
        declared: u32,
        /// Bytes present.
        actual: usize,
    },
    /// SHA-256 of the payload differs from PayloadDigest.
    #[error("payload digest does not match the payload")]
    BadDigest,
    /// PayloadType not one we know.
    #[error("unknown payload type {0}")]
    UnknownPayloadType(u32),
}

/// Why a message could not be encoded. The caller is at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// MessageType longer than its 32-byte field.
    #[error("message type of {len} bytes does not fit the 32-byte field")]
    MessageTypeTooLong {
        /// Its length.
        len: usize,
    },
    /// Payload larger than the cap.
    #[error(
        "payload of {len} bytes exceeds the cap of {} bytes",
        crate::codec::MAX_PAYLOAD_LEN
    )]
    PayloadTooLarge {
        /// Its length.
        len: usize,
    },
}

/// Why a payload's content could not be understood. The peer is at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayloadError {
    /// Invalid JSON or wrong shape.
    #[error("malformed JSON payload: {0}")]
    Json(String),
    /// Flag payload not 4 bytes.
    #[error("flag payload of {len} bytes, expected 4")]
    BadFlagLength {
        /// Its length.
        len: usize,
    },
    /// Flag value not 1, 2 or 3.
    #[error("unknown flag value {0}")]
    UnknownFlag(u32),
    /// Not `EXIT_CODE: <n>`.
    #[error("malformed exit code payload")]
    BadExitCode,
}

impl PayloadError {
    /// Wraps a serde_json error.
    pub fn json(err: serde_json::Error) -> Self {
        Self::Json(err.to_string())
    }
}
