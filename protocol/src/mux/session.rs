//! [`Mux`]: one smux v1 session (client or server end) as a sans-IO state machine.
//!
//! Fed with the bytes of the data channel's Output payloads and the current time; produces
//! bytes to send, events and a timer deadline. It never touches the data channel itself: the
//! driver moves [`Mux::poll_output`] into `Session::send_output` (which cuts 1024-byte messages)
//! and the `Event::Output` payloads it receives into [`Mux::handle_input`]. Frame boundaries
//! are unrelated to message boundaries (SPEC §6.7).
//!
//! # Budgets
//!
//! smux v1 has no per-stream flow control and no window updates: a receiver has one
//! session-wide budget of 4 MiB (smux `mux.go` `MaxReceiveBuffer`) and, when it is used up,
//! stops reading the whole session (smux `session.go` `recvLoop`). What this type provides:
//!
//! * Receiving: every `Data` event is handed out as an owned buffer; [`Mux::unread_bytes`] is
//!   the data queued in events not yet polled. The `Mux` never stops reading on its own; a driver
//!   that cannot write a stream's data to its local socket at once keeps a backlog, and should
//!   call `Session::set_receive_ready(now, false)` while that backlog plus `unread_bytes()` exceeds
//!   [`MuxConfig::max_receive_buffer`] (the agent relies on acks for pacing, SPEC §5).
//! * Sending: the peer's consumption is invisible in v1, so nothing can tell how much of the
//!   agent's 4 MiB is in use. When the agent's budget runs out it stops reading its smux pipe,
//!   hence stops acknowledging data-channel messages; our `Session` send window fills, the driver
//!   stops draining [`Mux::poll_output`], [`Mux::queued_output`] grows to
//!   [`MuxConfig::max_queued_output`] and [`Mux::write`] accepts fewer bytes
//!   ([`Mux::send_budget`]), so the driver stops reading its local sockets. The chain holds at
//!   most `max_queued_output` bytes here plus the session's send window in flight.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{debug, trace};

use super::frame::{Cmd, Frame, FrameDecoder, FrameError, MAX_FRAME_SIZE};
use super::stream::{StreamId, StreamState};
use super::table::StreamTable;
use crate::version;

/// Which end of the smux session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxRole {
    /// Opens streams (our client, the plugin's `smux.Client`).
    Client,
    /// Accepts streams (the agent's `smux.Server`, our emulator).
    Server,
}

/// smux keepalive timing (smux `mux.go` `DefaultConfig`: 10 s and 30 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// A NOP is sent this often.
    pub interval: Duration,
    /// The session is closed when nothing at all was received for this long.
    pub timeout: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            interval: KEEPALIVE_INTERVAL,
            timeout: KEEPALIVE_TIMEOUT,
        }
    }
}

/// Settings of a [`Mux`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuxConfig {
    /// `Some` to send NOPs and close after silence. Enable it only for peers that send NOPs
    /// themselves (old agents, SPEC §6.7): see [`MuxConfig::for_client`].
    pub keepalive: Option<Keepalive>,
    /// Largest data per frame, sent and accepted (default [`MAX_FRAME_SIZE`]).
    pub max_frame_size: usize,
    /// Session-wide receive budget the driver honours (default [`MAX_RECEIVE_BUFFER`]).
    pub max_receive_buffer: usize,
    /// Cap on output queued for [`Mux::poll_output`] by [`Mux::write`] (default
    /// [`MAX_RECEIVE_BUFFER`], the peer's budget). SYN, FIN and NOP frames are never refused.
    pub max_queued_output: usize,
    /// Cap on live streams; a SYN beyond it is answered with FIN (default [`MAX_STREAMS`]).
    pub max_streams: usize,
}

impl MuxConfig {
    /// Defaults with keepalive off.
    pub fn new() -> Self {
        Self {
            keepalive: None,
            max_frame_size: MAX_FRAME_SIZE,
            max_receive_buffer: MAX_RECEIVE_BUFFER,
            max_queued_output: MAX_RECEIVE_BUFFER,
            max_streams: MAX_STREAMS,
        }
    }

    /// The client's settings for an agent reporting `agent_version`: keepalive on exactly when
    /// the official client keeps it on ([`version::client_disables_smux_keepalive`]).
    pub fn for_client(agent_version: &str) -> Self {
        let keepalive =
            (!version::client_disables_smux_keepalive(agent_version)).then(Keepalive::default);
        Self {
            keepalive,
            ..Self::new()
        }
    }

    /// The agent's settings for a client reporting `client_version`
    /// ([`version::agent_disables_smux_keepalive`]).
    pub fn for_agent(client_version: &str) -> Self {
        let keepalive =
            (!version::agent_disables_smux_keepalive(client_version)).then(Keepalive::default);
        Self {
            keepalive,
            ..Self::new()
        }
    }

    /// The same settings with smux's default keepalive on.
    pub fn with_keepalive(self) -> Self {
        Self {
            keepalive: Some(Keepalive::default()),
            ..self
        }
    }
}

impl Default for MuxConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// What happened, for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxEvent {
    /// Server only: the peer opened this stream (SYN).
    StreamOpened(StreamId),
    /// Data for a live stream, in order.
    Data(StreamId, Vec<u8>),
    /// The peer sent FIN (or the session died): no more data for this stream. The driver closes
    /// its local connection and calls [`Mux::close`] (there is no half-close).
    StreamClosed(StreamId),
    /// The session is over; always the last event.
    Closed(MuxCloseReason),
}

/// Why the session ended.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MuxCloseReason {
    /// The peer sent bytes that are not smux v1 (detected here).
    #[error("peer broke the smux protocol")]
    Protocol(#[source] FrameError),
    /// Keepalive on and nothing received for the timeout (detected here).
    #[error("nothing received from the smux peer for {idle:?}")]
    KeepaliveTimeout {
        /// How long the link was silent.
        idle: Duration,
    },
    /// [`Mux::shutdown`] was called (requested).
    #[error("smux session shut down locally")]
    Shutdown,
}

/// A command the multiplexer could not carry out. The caller is at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MuxError {
    /// Only the client opens streams.
    #[error("only the client end opens smux streams")]
    NotClient,
    /// Stream ids are used up or the stream cap is reached (smux `ErrGoAway`).
    #[error("no smux stream id available")]
    StreamsExhausted,
    /// The stream is not live: never opened, or closed.
    #[error("smux stream {0} is not open")]
    UnknownStream(StreamId),
    /// The session is over.
    #[error("smux session is closed")]
    Closed,
}

/// One smux v1 session, client or server end. See the module docs for the driver contract.
#[derive(Debug)]
pub struct Mux {
    role: MuxRole,
    config: MuxConfig,
    decoder: FrameDecoder,
    streams: StreamTable,
    output: Vec<u8>,
    queued_data: usize,
    events: VecDeque<MuxEvent>,
    unread: usize,
    keepalive: Option<KeepaliveTimers>,
    closed: bool,
    discarded: u64,
}

impl Mux {
    /// The client end (opens streams 3, 5, 7, ...).
    pub fn client(config: MuxConfig, now: Instant) -> Self {
        Self::new(MuxRole::Client, config, now)
    }

    /// The server end (accepts streams).
    pub fn server(config: MuxConfig, now: Instant) -> Self {
        Self::new(MuxRole::Server, config, now)
    }

    /// Either end; `now` starts the keepalive timers.
    pub fn new(role: MuxRole, config: MuxConfig, now: Instant) -> Self {
        let keepalive = config.keepalive.map(|keepalive| KeepaliveTimers {
            config: keepalive,
            next_ping: now + keepalive.interval,
            last_received: now,
        });
        Self {
            role,
            decoder: FrameDecoder::with_max_frame_size(config.max_frame_size),
            streams: StreamTable::new(config.max_streams),
            config,
            output: Vec::new(),
            queued_data: 0,
            events: VecDeque::new(),
            unread: 0,
            keepalive,
            closed: false,
            discarded: 0,
        }
    }

    /// Bytes received from the data channel (concatenated Output payloads, cut anywhere).
    ///
    /// A protocol error ends the session with [`MuxEvent::Closed`]; input after that is ignored.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if self.closed || bytes.is_empty() {
            return;
        }
        if let Some(timers) = &mut self.keepalive {
            timers.last_received = now;
        }
        self.decoder.push(bytes);
        while let Some(frame) = self.decoder.next_frame() {
            match frame {
                Ok(frame) => self.handle_frame(frame),
                Err(error) => {
                    debug!(%error, "smux protocol error");
                    self.fail(MuxCloseReason::Protocol(error));
                    return;
                }
            }
        }
    }

    /// Client only: opens the next stream (3, 5, 7, ...) and queues its SYN.
    pub fn open_stream(&mut self) -> Result<StreamId, MuxError> {
        if self.closed {
            return Err(MuxError::Closed);
        }
        if self.role != MuxRole::Client {
            return Err(MuxError::NotClient);
        }
        let id = self.streams.allocate().ok_or(MuxError::StreamsExhausted)?;
        // `allocate` returned an id above every earlier one and checked the cap.
        let inserted = self.streams.insert(id);
        debug_assert!(inserted, "allocated ids are fresh");
        self.queue_frame(&Frame::syn(id));
        debug!(stream = %id, "smux stream opened");
        Ok(id)
    }

    /// Queues `data` for `stream` as PSH frames of at most `max_frame_size` bytes and returns how
    /// many bytes were accepted: fewer than `data.len()` when [`Mux::send_budget`] is short.
    pub fn write(&mut self, stream: StreamId, data: &[u8]) -> Result<usize, MuxError> {
        if self.closed {
            return Err(MuxError::Closed);
        }
        if self.streams.get(stream).is_none() {
            return Err(MuxError::UnknownStream(stream));
        }
        let accepted = data.len().min(self.send_budget());
        for chunk in data[..accepted].chunks(self.config.max_frame_size.clamp(1, MAX_FRAME_SIZE)) {
            // Chunks are at most MAX_FRAME_SIZE bytes, the only condition `psh` checks.
            let frame = Frame::psh(stream, chunk.to_vec()).expect("chunk within MAX_FRAME_SIZE");
            self.queue_frame(&frame);
        }
        self.queued_data += accepted;
        if let Some(entry) = self.streams.get_mut(stream) {
            entry.record_sent(accepted);
        }
        Ok(accepted)
    }

    /// Sends FIN for `stream` and forgets it (no half-close, smux `stream.go` `Close`).
    /// Closing after the session ended is a no-op.
    pub fn close(&mut self, stream: StreamId) -> Result<(), MuxError> {
        if self.closed {
            return Ok(());
        }
        if self.streams.remove(stream).is_none() {
            return Err(MuxError::UnknownStream(stream));
        }
        self.queue_frame(&Frame::fin(stream));
        debug!(%stream, "smux stream closed locally");
        Ok(())
    }

    /// Ends the session at once: no more output, every live stream reported closed.
    pub fn shutdown(&mut self) {
        if !self.closed {
            self.fail(MuxCloseReason::Shutdown);
        }
    }

    /// Bytes to send over the data channel, all that is queued, or `None`.
    pub fn poll_output(&mut self) -> Option<Vec<u8>> {
        if self.output.is_empty() {
            return None;
        }
        self.queued_data = 0;
        Some(std::mem::take(&mut self.output))
    }

    /// The next event, or `None`.
    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        let event = self.events.pop_front()?;
        if let MuxEvent::Data(_, data) = &event {
            self.unread -= data.len();
        }
        Some(event)
    }

    /// When [`Mux::handle_timeout`] is due, or `None` (keepalive off or session closed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.keepalive.as_ref().map(KeepaliveTimers::next_deadline)
    }

    /// Sends a due NOP, or closes the session after `timeout` of silence. Spurious calls are
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let Some(timers) = &mut self.keepalive else {
            return;
        };
        let idle = now.saturating_duration_since(timers.last_received);
        if idle >= timers.config.timeout {
            debug!(?idle, "smux keepalive timeout");
            self.fail(MuxCloseReason::KeepaliveTimeout { idle });
            return;
        }
        if now >= timers.next_ping {
            timers.next_ping = now + timers.config.interval;
            self.queue_frame(&Frame::nop());
        }
    }

    /// The end this is.
    pub fn role(&self) -> MuxRole {
        self.role
    }

    /// The state of `stream` ([`StreamState::Closed`] when not live).
    pub fn stream_state(&self, stream: StreamId) -> StreamState {
        self.streams.state(stream)
    }

    /// Number of live streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Data bytes in `Data` events not yet taken by [`Mux::poll_event`].
    pub fn unread_bytes(&self) -> usize {
        self.unread
    }

    /// Bytes waiting for [`Mux::poll_output`] (frames included).
    pub fn queued_output(&self) -> usize {
        self.output.len()
    }

    /// How many more data bytes [`Mux::write`] accepts now.
    pub fn send_budget(&self) -> usize {
        self.config
            .max_queued_output
            .saturating_sub(self.queued_data)
    }

    /// Data bytes received for unknown, closed or finished streams and thrown away.
    pub fn discarded_bytes(&self) -> u64 {
        self.discarded
    }

    fn handle_frame(&mut self, frame: Frame) {
        let id = frame.stream_id();
        trace!(cmd = %frame.cmd(), stream = %id, len = frame.data().len(), "smux frame received");
        match frame.cmd() {
            Cmd::Nop => {}
            Cmd::Syn => self.handle_syn(id),
            Cmd::Fin => {
                if self
                    .streams
                    .get_mut(id)
                    .is_some_and(|stream| stream.receive_fin())
                {
                    debug!(stream = %id, "smux stream finished by peer");
                    self.events.push_back(MuxEvent::StreamClosed(id));
                }
            }
            Cmd::Psh => {
                let data = frame.into_data();
                if data.is_empty() {
                    return;
                }
                match self.streams.get_mut(id) {
                    Some(stream) if stream.accepts_data() => {
                        stream.record_received(data.len());
                        self.unread += data.len();
                        self.events.push_back(MuxEvent::Data(id, data));
                    }
                    // smux `recvLoop` reads and drops data for streams it does not know.
                    _ => self.discarded += data.len() as u64,
                }
            }
        }
    }

    fn handle_syn(&mut self, id: StreamId) {
        if self.role == MuxRole::Client {
            // The agent never opens streams (SPEC §6.7); the plugin never accepts them.
            trace!(stream = %id, "ignoring SYN sent to the smux client");
            return;
        }
        if self.streams.get(id).is_some() {
            // smux `recvLoop`: a SYN for a live stream is ignored.
            return;
        }
        if self.streams.insert(id) {
            debug!(stream = %id, "smux stream accepted");
            self.events.push_back(MuxEvent::StreamOpened(id));
        } else {
            debug!(stream = %id, "smux stream cap reached, refusing stream");
            self.queue_frame(&Frame::fin(id));
        }
    }

    fn queue_frame(&mut self, frame: &Frame) {
        trace!(cmd = %frame.cmd(), stream = %frame.stream_id(), len = frame.data().len(), "smux frame queued");
        frame.encode_into(&mut self.output);
    }

    fn fail(&mut self, reason: MuxCloseReason) {
        self.closed = true;
        self.output.clear();
        self.queued_data = 0;
        for id in self.streams.drain_ids() {
            self.events.push_back(MuxEvent::StreamClosed(id));
        }
        self.events.push_back(MuxEvent::Closed(reason));
    }
}

#[derive(Debug, Clone)]
struct KeepaliveTimers {
    config: Keepalive,
    next_ping: Instant,
    last_received: Instant,
}

impl KeepaliveTimers {
    fn next_deadline(&self) -> Instant {
        self.next_ping.min(self.last_received + self.config.timeout)
    }
}

/// Session-wide receive budget (smux `mux.go` `DefaultConfig`, `MaxReceiveBuffer: 4194304`).
pub const MAX_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;
/// NOP period when keepalive is on (smux `mux.go` `DefaultConfig`, `KeepAliveInterval`).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Silence after which a keepalive session closes (smux `mux.go`, `KeepAliveTimeout`).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on live streams (ours; smux has none).
pub const MAX_STREAMS: usize = 16_384;

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_events(mux: &mut Mux) -> Vec<MuxEvent> {
        std::iter::from_fn(|| mux.poll_event()).collect()
    }

    fn client_and_server(now: Instant) -> (Mux, Mux) {
        (
            Mux::client(MuxConfig::new(), now),
            Mux::server(MuxConfig::new(), now),
        )
    }

    fn pump(now: Instant, from: &mut Mux, to: &mut Mux) {
        while let Some(bytes) = from.poll_output() {
            to.handle_input(now, &bytes);
        }
    }

    #[test]
    fn client_opens_odd_streams_from_three() {
        let now = Instant::now();
        let mut client = Mux::client(MuxConfig::new(), now);
        assert_eq!(client.open_stream(), Ok(StreamId::new(3)));
        assert_eq!(client.open_stream(), Ok(StreamId::new(5)));
        assert_eq!(
            client.poll_output().unwrap(),
            [1, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0]
        );
    }

    #[test]
    fn server_refuses_to_open_streams() {
        let mut server = Mux::server(MuxConfig::new(), Instant::now());
        assert_eq!(server.open_stream(), Err(MuxError::NotClient));
    }

    #[test]
    fn server_reports_opened_stream_and_data() {
        let now = Instant::now();
        let (mut client, mut server) = client_and_server(now);
        let id = client.open_stream().unwrap();
        assert_eq!(client.write(id, b"ping"), Ok(4));
        pump(now, &mut client, &mut server);
        assert_eq!(
            drain_events(&mut server),
            [
                MuxEvent::StreamOpened(id),
                MuxEvent::Data(id, b"ping".to_vec())
            ]
        );
    }

    #[test]
    fn write_splits_at_max_frame_size() {
        let mut client = Mux::client(MuxConfig::new(), Instant::now());
        let id = client.open_stream().unwrap();
        client.poll_output();
        assert_eq!(client.write(id, &vec![0xab; 40_000]), Ok(40_000));
        let out = client.poll_output().unwrap();
        assert_eq!(out.len(), 8 + 32768 + 8 + 7232);
        assert_eq!(&out[..8], [1, 2, 0x00, 0x80, 3, 0, 0, 0]);
        assert_eq!(
            &out[8 + 32768..8 + 32768 + 8],
            [1, 2, 0x40, 0x1c, 3, 0, 0, 0]
        );
    }

    #[test]
    fn write_stops_at_send_budget_until_output_is_polled() {
        let config = MuxConfig {
            max_queued_output: 100,
            ..MuxConfig::new()
        };
        let mut client = Mux::client(config, Instant::now());
        let id = client.open_stream().unwrap();
        assert_eq!(client.write(id, &[1; 70]), Ok(70));
        assert_eq!(client.send_budget(), 30);
        assert_eq!(client.write(id, &[1; 70]), Ok(30));
        assert_eq!(client.write(id, &[1; 70]), Ok(0));
        assert!(client.poll_output().is_some());
        assert_eq!(client.send_budget(), 100);
    }

    #[test]
    fn close_sends_fin_and_forgets_stream() {
        let now = Instant::now();
        let (mut client, mut server) = client_and_server(now);
        let id = client.open_stream().unwrap();
        client.close(id).unwrap();
        assert_eq!(client.stream_state(id), StreamState::Closed);
        assert_eq!(client.write(id, b"x"), Err(MuxError::UnknownStream(id)));
        assert_eq!(client.close(id), Err(MuxError::UnknownStream(id)));
        pump(now, &mut client, &mut server);
        assert_eq!(
            drain_events(&mut server),
            [MuxEvent::StreamOpened(id), MuxEvent::StreamClosed(id)]
        );
        assert_eq!(server.stream_state(id), StreamState::FinReceived);
    }

    #[test]
    fn data_for_closed_stream_is_discarded() {
        let now = Instant::now();
        let (mut client, mut server) = client_and_server(now);
        let id = client.open_stream().unwrap();
        pump(now, &mut client, &mut server);
        drain_events(&mut server);
        client.close(id).unwrap();
        client.poll_output();
        server.write(id, b"late").unwrap();
        pump(now, &mut server, &mut client);
        assert_eq!(drain_events(&mut client), []);
        assert_eq!(client.discarded_bytes(), 4);
        assert!(!client.is_closed());
    }

    #[test]
    fn data_after_peer_fin_is_discarded_but_writes_still_go_out() {
        let now = Instant::now();
        let mut server = Mux::server(MuxConfig::new(), now);
        let id = StreamId::new(3);
        let mut wire = Frame::syn(id).encode();
        Frame::fin(id).encode_into(&mut wire);
        Frame::psh(id, b"after".to_vec())
            .unwrap()
            .encode_into(&mut wire);
        server.handle_input(now, &wire);
        assert_eq!(
            drain_events(&mut server),
            [MuxEvent::StreamOpened(id), MuxEvent::StreamClosed(id)]
        );
        assert_eq!(server.discarded_bytes(), 5);
        assert_eq!(server.write(id, b"reply"), Ok(5));
    }

    #[test]
    fn client_ignores_peer_syn() {
        let now = Instant::now();
        let mut client = Mux::client(MuxConfig::new(), now);
        client.handle_input(now, &Frame::syn(StreamId::new(2)).encode());
        assert_eq!(drain_events(&mut client), []);
        assert_eq!(client.stream_count(), 0);
    }

    #[test]
    fn server_refuses_streams_beyond_cap_with_fin() {
        let now = Instant::now();
        let mut server = Mux::server(
            MuxConfig {
                max_streams: 1,
                ..MuxConfig::new()
            },
            now,
        );
        let mut wire = Frame::syn(StreamId::new(3)).encode();
        Frame::syn(StreamId::new(5)).encode_into(&mut wire);
        server.handle_input(now, &wire);
        assert_eq!(
            drain_events(&mut server),
            [MuxEvent::StreamOpened(StreamId::new(3))]
        );
        assert_eq!(
            server.poll_output().unwrap(),
            Frame::fin(StreamId::new(5)).encode()
        );
    }

    #[test]
    fn protocol_error_closes_session_and_live_streams() {
        let now = Instant::now();
        let mut server = Mux::server(MuxConfig::new(), now);
        let mut wire = Frame::syn(StreamId::new(3)).encode();
        wire.extend_from_slice(&[1, 4, 8, 0, 3, 0, 0, 0]);
        server.handle_input(now, &wire);
        assert_eq!(
            drain_events(&mut server),
            [
                MuxEvent::StreamOpened(StreamId::new(3)),
                MuxEvent::StreamClosed(StreamId::new(3)),
                MuxEvent::Closed(MuxCloseReason::Protocol(FrameError::BadCmd { found: 4 })),
            ]
        );
        assert!(server.is_closed());
        assert_eq!(server.write(StreamId::new(3), b"x"), Err(MuxError::Closed));
        server.handle_input(now, &Frame::nop().encode());
        assert_eq!(server.poll_event(), None);
    }

    #[test]
    fn keepalive_off_sets_no_timer() {
        let now = Instant::now();
        let mut client = Mux::client(MuxConfig::new(), now);
        assert_eq!(client.poll_timeout(), None);
        client.handle_timeout(now + Duration::from_secs(3600));
        assert!(!client.is_closed());
        assert_eq!(client.poll_output(), None);
    }

    #[test]
    fn keepalive_sends_nop_every_interval() {
        let start = Instant::now();
        let mut client = Mux::client(MuxConfig::new().with_keepalive(), start);
        assert_eq!(client.poll_timeout(), Some(start + KEEPALIVE_INTERVAL));
        client.handle_timeout(start + Duration::from_secs(5));
        assert_eq!(client.poll_output(), None, "early timeout is harmless");
        client.handle_timeout(start + KEEPALIVE_INTERVAL);
        assert_eq!(client.poll_output().unwrap(), Frame::nop().encode());
        assert_eq!(client.poll_timeout(), Some(start + 2 * KEEPALIVE_INTERVAL));
    }

    #[test]
    fn keepalive_closes_after_silence_and_input_defers_it() {
        let start = Instant::now();
        let mut client = Mux::client(MuxConfig::new().with_keepalive(), start);
        let id = client.open_stream().unwrap();
        let mut now = start;
        for _ in 0..2 {
            now += KEEPALIVE_INTERVAL;
            client.handle_timeout(now);
        }
        client.handle_input(now, &Frame::nop().encode());
        for _ in 0..2 {
            now += KEEPALIVE_INTERVAL;
            client.handle_timeout(now);
        }
        assert!(!client.is_closed(), "20 s since the last NOP");
        now += KEEPALIVE_INTERVAL;
        assert_eq!(client.poll_timeout(), Some(now));
        client.handle_timeout(now);
        assert!(client.is_closed());
        assert_eq!(client.poll_timeout(), None);
        assert_eq!(
            drain_events(&mut client),
            [
                MuxEvent::StreamClosed(id),
                MuxEvent::Closed(MuxCloseReason::KeepaliveTimeout {
                    idle: KEEPALIVE_TIMEOUT
                }),
            ]
        );
    }

    #[test]
    fn unread_bytes_count_queued_data_events() {
        let now = Instant::now();
        let (mut client, mut server) = client_and_server(now);
        let id = client.open_stream().unwrap();
        client.write(id, &[0; 10]).unwrap();
        client.write(id, &[0; 20]).unwrap();
        pump(now, &mut client, &mut server);
        assert_eq!(server.unread_bytes(), 30);
        server.poll_event();
        server.poll_event();
        assert_eq!(server.unread_bytes(), 20);
        drain_events(&mut server);
        assert_eq!(server.unread_bytes(), 0);
    }

    #[test]
    fn config_keepalive_follows_version_thresholds() {
        assert!(MuxConfig::for_client("3.1.1511.0").keepalive.is_some());
        assert!(MuxConfig::for_client("3.1.1512.0").keepalive.is_none());
        assert!(MuxConfig::for_agent("1.2.331.0").keepalive.is_some());
        assert!(MuxConfig::for_agent("1.2.332.0").keepalive.is_none());
    }
}
