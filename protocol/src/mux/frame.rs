//! smux protocol version 1 frames: encoding, and a streaming decoder fed arbitrary chunks.
//!
//! Wire layout (smux `frame.go`): `version(1) cmd(1) length(2, LE) stream_id(4, LE) data`.
//! This module only translates bytes; it keeps no stream or session state.

use std::fmt;

use thiserror::Error;

use super::stream::StreamId;

/// A frame command (smux `frame.go`, `cmdSYN`..`cmdNOP`). Version 2's `cmdUPD` (4) is not one:
/// Session Manager speaks version 1 only, and a v1 peer never sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmd {
    /// Open a stream (`cmdSYN`, 0).
    Syn,
    /// Close a stream, the EOF mark (`cmdFIN`, 1).
    Fin,
    /// Data (`cmdPSH`, 2).
    Psh,
    /// Keepalive, stream id 0 (`cmdNOP`, 3).
    Nop,
}

impl Cmd {
    /// The command byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Syn => CMD_SYN,
            Self::Fin => CMD_FIN,
            Self::Psh => CMD_PSH,
            Self::Nop => CMD_NOP,
        }
    }

    /// Parses a command byte; `None` for anything outside version 1 (including `cmdUPD`).
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            CMD_SYN => Some(Self::Syn),
            CMD_FIN => Some(Self::Fin),
            CMD_PSH => Some(Self::Psh),
            CMD_NOP => Some(Self::Nop),
            _ => None,
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Syn => "SYN",
            Self::Fin => "FIN",
            Self::Psh => "PSH",
            Self::Nop => "NOP",
        })
    }
}

/// One smux v1 frame. Only PSH frames carry data, and never more than [`MAX_FRAME_SIZE`]
/// bytes: the constructors guarantee both, so encoding cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    cmd: Cmd,
    stream_id: StreamId,
    data: Vec<u8>,
}

impl Frame {
    /// Opens `stream_id`.
    pub fn syn(stream_id: StreamId) -> Self {
        Self {
            cmd: Cmd::Syn,
            stream_id,
            data: Vec::new(),
        }
    }

    /// Closes `stream_id`.
    pub fn fin(stream_id: StreamId) -> Self {
        Self {
            cmd: Cmd::Fin,
            stream_id,
            data: Vec::new(),
        }
    }

    /// A keepalive on stream id 0.
    pub fn nop() -> Self {
        Self {
            cmd: Cmd::Nop,
            stream_id: StreamId::NOP,
            data: Vec::new(),
        }
    }

    /// Data for `stream_id`; fails when `data` exceeds [`MAX_FRAME_SIZE`] (our misuse).
    pub fn psh(stream_id: StreamId, data: Vec<u8>) -> Result<Self, FrameError> {
        if data.len() > MAX_FRAME_SIZE {
            return Err(FrameError::Oversize {
                length: data.len(),
                max: MAX_FRAME_SIZE,
            });
        }
        Ok(Self {
            cmd: Cmd::Psh,
            stream_id,
            data,
        })
    }

    /// The command.
    pub fn cmd(&self) -> Cmd {
        self.cmd
    }

    /// The stream id.
    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    /// The data (empty except for PSH).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Takes the data out of the frame.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// Bytes this frame occupies on the wire.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }

    /// Appends the encoded frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_header(self.cmd, self.stream_id, self.data.len(), out);
        out.extend_from_slice(&self.data);
    }

    /// The encoded frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Decodes the frame at the start of `bytes`, allowing data up to `max_frame_size` bytes.
    ///
    /// `Ok(None)`: more bytes are needed. `Ok(Some((frame, used)))`: one frame taken from the
    /// first `used` bytes. The header is validated as soon as it is complete, before its data
    /// arrives.
    pub fn decode(
        bytes: &[u8],
        max_frame_size: usize,
    ) -> Result<Option<(Self, usize)>, FrameError> {
        let Some(header) = bytes.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let version = header[0];
        if version != VERSION {
            return Err(FrameError::BadVersion { found: version });
        }
        let cmd = Cmd::from_byte(header[1]).ok_or(FrameError::BadCmd { found: header[1] })?;
        let length = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let stream_id = StreamId::new(u32::from_le_bytes([
            header[4], header[5], header[6], header[7],
        ]));
        if cmd != Cmd::Psh && length != 0 {
            // smux v1.5.16 ignores the length of SYN/FIN/NOP and would read the "data" as the next
            // header; later smux releases (`session.go` `recvLoop`) reject it as ErrInvalidProtocol.
            return Err(FrameError::UnexpectedData { cmd, length });
        }
        if length > max_frame_size {
            return Err(FrameError::Oversize {
                length,
                max: max_frame_size,
            });
        }
        let Some(data) = bytes.get(HEADER_LEN..HEADER_LEN + length) else {
            return Ok(None);
        };
        Ok(Some((
            Self {
                cmd,
                stream_id,
                data: data.to_vec(),
            },
            HEADER_LEN + length,
        )))
    }
}

/// Why bytes from the peer are not a valid smux v1 frame. The peer is at fault; the smux
/// session cannot continue (smux `session.go` `notifyProtoError(ErrInvalidProtocol)`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Version byte other than 1 (a version 2 peer, or a desynchronised stream).
    #[error("smux frame version {found}, expected 1")]
    BadVersion {
        /// The version byte found.
        found: u8,
    },
    /// Command byte outside SYN/FIN/PSH/NOP, including version 2's UPD (4).
    #[error("smux command {found} is not one of SYN, FIN, PSH, NOP")]
    BadCmd {
        /// The command byte found.
        found: u8,
    },
    /// Data longer than the frame size limit.
    #[error("smux frame of {length} data bytes exceeds the limit of {max}")]
    Oversize {
        /// Data length declared (or given, for our own PSH).
        length: usize,
        /// The limit.
        max: usize,
    },
    /// A SYN, FIN or NOP with a non-zero length.
    #[error("smux {cmd} frame declares {length} data bytes, expected none")]
    UnexpectedData {
        /// The command.
        cmd: Cmd,
        /// Data length declared.
        length: usize,
    },
}

/// Turns a byte stream cut at arbitrary points into frames.
///
/// Buffer cap: [`FrameDecoder::push`] takes whatever it is given; draining with
/// [`FrameDecoder::next_frame`] after every push leaves at most one partial frame,
/// `HEADER_LEN + max_frame_size - 1` bytes, buffered. After the first error the decoder stays
/// failed and returns that error again: the rest of the stream cannot be framed.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    start: usize,
    max_frame_size: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder accepting data up to [`MAX_FRAME_SIZE`] bytes per frame.
    pub fn new() -> Self {
        Self::with_max_frame_size(MAX_FRAME_SIZE)
    }

    /// A decoder accepting data up to `max_frame_size` bytes per frame (at most 65535, the
    /// largest length the header can carry).
    pub fn with_max_frame_size(max_frame_size: usize) -> Self {
        Self {
            buffer: Vec::new(),
            start: 0,
            max_frame_size,
            failed: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        } else if self.start > self.buffer.len() / 2 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, an error, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        if let Some(error) = &self.failed {
            return Some(Err(error.clone()));
        }
        match Frame::decode(&self.buffer[self.start..], self.max_frame_size) {
            Ok(None) => None,
            Ok(Some((frame, used))) => {
                self.start += used;
                Some(Ok(frame))
            }
            Err(error) => {
                self.failed = Some(error.clone());
                self.buffer = Vec::new();
                self.start = 0;
                Some(Err(error))
            }
        }
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// Whether the decoder has hit an error.
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

fn encode_header(cmd: Cmd, stream_id: StreamId, length: usize, out: &mut Vec<u8>) {
    // Frames are built only through constructors that cap PSH data at MAX_FRAME_SIZE (< 65536).
    let length = u16::try_from(length).expect("frame data is capped at MAX_FRAME_SIZE");
    out.push(VERSION);
    out.push(cmd.to_byte());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&stream_id.get().to_le_bytes());
}

/// smux protocol version spoken by Session Manager (smux `mux.go` `DefaultConfig`, `Version: 1`).
pub const VERSION: u8 = 1;
/// Frame header size (smux `frame.go` `headerSize`).
pub const HEADER_LEN: usize = 8;
/// Largest data per frame (smux `mux.go` `DefaultConfig`, `MaxFrameSize: 32768`).
pub const MAX_FRAME_SIZE: usize = 32768;
/// `cmdSYN` (smux `frame.go`).
const CMD_SYN: u8 = 0;
/// `cmdFIN` (smux `frame.go`).
const CMD_FIN: u8 = 1;
/// `cmdPSH` (smux `frame.go`).
const CMD_PSH: u8 = 2;
/// `cmdNOP` (smux `frame.go`).
const CMD_NOP: u8 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_syn_little_endian() {
        assert_eq!(
            Frame::syn(StreamId::new(3)).encode(),
            [1, 0, 0, 0, 3, 0, 0, 0]
        );
        assert_eq!(
            Frame::syn(StreamId::new(0x0102_0304)).encode(),
            [1, 0, 0, 0, 4, 3, 2, 1]
        );
    }

    #[test]
    fn encodes_psh_length_little_endian() {
        let frame = Frame::psh(StreamId::new(5), vec![7; 0x123]).unwrap();
        let bytes = frame.encode();
        assert_eq!(&bytes[..8], [1, 2, 0x23, 0x01, 5, 0, 0, 0]);
        assert_eq!(bytes.len(), 8 + 0x123);
    }

    #[test]
    fn psh_rejects_more_than_max_frame_size() {
        assert!(Frame::psh(StreamId::new(3), vec![0; MAX_FRAME_SIZE]).is_ok());
        assert_eq!(
            Frame::psh(StreamId::new(3), vec![0; MAX_FRAME_SIZE + 1]),
            Err(FrameError::Oversize {
                length: MAX_FRAME_SIZE + 1,
                max: MAX_FRAME_SIZE
            })
        );
    }

    #[test]
    fn decode_waits_for_complete_header_and_data() {
        let bytes = Frame::psh(StreamId::new(3), b"abc".to_vec())
            .unwrap()
            .encode();
        for cut in 0..bytes.len() {
            assert_eq!(
                Frame::decode(&bytes[..cut], MAX_FRAME_SIZE),
                Ok(None),
                "cut at {cut}"
            );
        }
        let (frame, used) = Frame::decode(&bytes, MAX_FRAME_SIZE).unwrap().unwrap();
        assert_eq!((frame.data(), used), (&b"abc"[..], 11));
    }

    #[test]
    fn rejects_bad_version_from_header_alone() {
        assert_eq!(
            Frame::decode(&[2, 2, 8, 0, 3, 0, 0, 0], MAX_FRAME_SIZE),
            Err(FrameError::BadVersion { found: 2 })
        );
    }

    #[test]
    fn rejects_upd_command_in_version_1() {
        assert_eq!(
            Frame::decode(&[1, 4, 8, 0, 3, 0, 0, 0], MAX_FRAME_SIZE),
            Err(FrameError::BadCmd { found: 4 })
        );
        assert_eq!(
            Frame::decode(&[1, 255, 0, 0, 3, 0, 0, 0], MAX_FRAME_SIZE),
            Err(FrameError::BadCmd { found: 255 })
        );
    }

    #[test]
    fn rejects_oversize_before_data_arrives() {
        assert_eq!(
            Frame::decode(&[1, 2, 0x01, 0x80, 3, 0, 0, 0], MAX_FRAME_SIZE),
            Err(FrameError::Oversize {
                length: 32769,
                max: MAX_FRAME_SIZE
            })
        );
    }

    #[test]
    fn rejects_control_frame_with_data() {
        assert_eq!(
            Frame::decode(&[1, 3, 1, 0, 0, 0, 0, 0, 9], MAX_FRAME_SIZE),
            Err(FrameError::UnexpectedData {
                cmd: Cmd::Nop,
                length: 1
            })
        );
    }

    #[test]
    fn decoder_reassembles_byte_by_byte() {
        let mut wire = Frame::syn(StreamId::new(3)).encode();
        Frame::psh(StreamId::new(3), b"hello".to_vec())
            .unwrap()
            .encode_into(&mut wire);
        Frame::fin(StreamId::new(3)).encode_into(&mut wire);
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for byte in wire {
            decoder.push(&[byte]);
            while let Some(frame) = decoder.next_frame() {
                frames.push(frame.unwrap());
            }
        }
        assert_eq!(
            frames,
            [
                Frame::syn(StreamId::new(3)),
                Frame::psh(StreamId::new(3), b"hello".to_vec()).unwrap(),
                Frame::fin(StreamId::new(3)),
            ]
        );
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn decoder_stays_failed_after_error() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&[9, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            decoder.next_frame(),
            Some(Err(FrameError::BadVersion { found: 9 }))
        );
        decoder.push(&Frame::nop().encode());
        assert!(decoder.is_failed());
        assert_eq!(
            decoder.next_frame(),
            Some(Err(FrameError::BadVersion { found: 9 }))
        );
    }
}
