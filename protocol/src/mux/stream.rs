//! Identity and state of one smux stream.
//!
//! Holds no data: received bytes leave the multiplexer as events at once, and bytes to send go
//! straight into the session's output queue. Knows nothing about frames or timers.

use std::fmt;

/// An smux stream identifier (the little-endian `u32` at offset 4 of every frame).
///
/// Streams opened by the client are odd, starting at 3; id 0 is used only by NOP frames
/// (smux `session.go`, `OpenStream` and `keepalive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(u32);

impl StreamId {
    /// The id carried by NOP keepalive frames, which belong to no stream.
    pub const NOP: Self = Self(0);

    /// Wraps a raw stream id.
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// The raw id as it appears on the wire.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a stream is in its life.
///
/// ```text
///            SYN sent (client) / SYN received (server)
///                          |
///                          v
///                        Open ----FIN received----> FinReceived
///                          |                              |
///                          +--------- close() ------------+
///                                        |
///                                        v
///                         Closed (forgotten: FIN sent, removed from the table)
/// ```
///
/// smux v1 has no half-close (smux `stream.go`, `Stream.Close` sends FIN and forgets the
/// stream): after a local `close` nothing more is sent or delivered, and data arriving for the
/// id is discarded. After a received FIN the stream may still be written until it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Both directions carry data.
    Open,
    /// The peer sent FIN: no more data will be delivered; writing is still allowed.
    FinReceived,
    /// Closed locally or never known: data for this id is discarded.
    Closed,
}

/// One live stream: its state and byte counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    id: StreamId,
    state: StreamState,
    bytes_received: u64,
    bytes_sent: u64,
}

impl Stream {
    /// A freshly opened stream.
    pub fn new(id: StreamId) -> Self {
        Self {
            id,
            state: StreamState::Open,
            bytes_received: 0,
            bytes_sent: 0,
        }
    }

    /// Its id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Its state (never [`StreamState::Closed`] while it is in a table).
    pub fn state(&self) -> StreamState {
        self.state
    }

    /// Data bytes delivered from the peer so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Data bytes queued for the peer so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Whether data from the peer is still delivered.
    pub fn accepts_data(&self) -> bool {
        self.state == StreamState::Open
    }

    /// Records delivered peer data.
    pub fn record_received(&mut self, len: usize) {
        self.bytes_received = self.bytes_received.saturating_add(len as u64);
    }

    /// Records data queued for the peer.
    pub fn record_sent(&mut self, len: usize) {
        self.bytes_sent = self.bytes_sent.saturating_add(len as u64);
    }

    /// Records the peer's FIN. Returns `false` when it had already been received.
    pub fn receive_fin(&mut self) -> bool {
        match self.state {
            StreamState::Open => {
                self.state = StreamState::FinReceived;
                true
            }
            StreamState::FinReceived | StreamState::Closed => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_stream_is_open_and_accepts_data() {
        let stream = Stream::new(StreamId::new(3));
        assert_eq!(stream.state(), StreamState::Open);
        assert!(stream.accepts_data());
    }

    #[test]
    fn fin_stops_delivery_and_is_reported_once() {
        let mut stream = Stream::new(StreamId::new(3));
        assert!(stream.receive_fin());
        assert_eq!(stream.state(), StreamState::FinReceived);
        assert!(!stream.accepts_data());
        assert!(!stream.receive_fin());
    }

    #[test]
    fn counters_accumulate() {
        let mut stream = Stream::new(StreamId::new(5));
        stream.record_received(10);
        stream.record_received(5);
        stream.record_sent(7);
        assert_eq!((stream.bytes_received(), stream.bytes_sent()), (15, 7));
    }
}
