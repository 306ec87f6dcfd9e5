//! The data-channel session state machine, usable in both roles (client and agent).
//!
//! Shaped like quinn-proto's `Connection`: inputs `handle_message(now, frame)` and
//! `handle_timeout(now)`; commands (`send_output`, `send_size`, `send_flag`, ...); outputs
//! drained after every input in this order: [`Session::poll_transmit`],
//! [`Session::poll_timeout`], [`Session::poll_event`]. It never reads a clock, a socket or OS
//! randomness: time arrives as `now`, message ids and nonces come from `SessionConfig::rng_seed`.
//!
//! What it owns: sequence numbers, acks, the reorder buffer, retransmission, publication flow
//! control, the handshake (both sides) and KMS payload encryption. What it must not do: the
//! websocket, the OpenDataChannelInput frame, PTYs, TCP, the terminal or AWS calls; those are
//! the drivers' jobs (the driver answers [`Event::KmsDataKeyRequired`] by calling KMS and then
//! [`Session::provide_data_key`]).
//!
//! State diagram (client role):
//!
//! ```text
//!  AwaitingFirstMessage --HandshakeRequest--> [AwaitingDataKey] --> AwaitingHandshakeComplete
//!          |                                      (KMS)                 |   ^ EncChallengeRequest
//!          |--Output (legacy shell)--> Ready <------HandshakeComplete---+---+
//!  any state --channel_closed / give-up / fatal--> Closed
//! ```
//!
//! Agent role: `AwaitingResponse` (or `Ready` at once when no handshake is needed) ->
//! (KMS: `AwaitingDecrypt`) -> `Ready` -> `Closed`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::codec::{
    AcknowledgeContent, ChannelClosed, ClientMessage, EncryptionChallenge, ExitCode, Flag,
    HandshakeComplete, HandshakeRequest, HandshakeResponse, KmsEncryptionParameters,
    KmsEncryptionResult, MessageId, MessageType, PayloadType, SCHEMA_VERSION, SequenceNumber,
    SessionType, SizeData,
};
use crate::crypto::{PayloadCrypto, PlaintextDataKey, encryption_context};
use crate::error::DecodeError;
use crate::flow::{Publication, SendGate};
use crate::handshake::{ClientHandshakePlan, agent_check_response, agent_request};
use crate::rng::SeededRng;
use crate::seq::{Arrival, ReorderBuffer, ResendBuffer, RttEstimator};

/// Which end of the data channel this session plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The user's side (postern, session-manager-plugin).
    Client,
    /// The managed node's side (our emulator).
    Agent,
}

/// Everything a session needs at birth.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Client or agent.
    pub role: Role,
    /// Seed for message ids, nonces and challenges.
    pub rng_seed: u64,
    /// Unix epoch milliseconds at the `now` given to [`Session::new`] (for CreatedDate).
    pub epoch_millis: u64,
    /// Client role: the ClientVersion reported in the HandshakeResponse.
    pub client_version: String,
    /// Agent role: what the agent asks for and how it behaves.
    pub agent: Option<AgentConfig>,
    /// Session id and target, for the KMS encryption context.
    pub kms_context: Option<KmsContext>,
    /// Buffer sizes and deadlines.
    pub limits: Limits,
}

impl SessionConfig {
    /// A client-role configuration with client limits.
    pub fn client(client_version: &str, rng_seed: u64, epoch_millis: u64) -> Self {
        Self {
            role: Role::Client,
            rng_seed,
            epoch_millis,
            client_version: client_version.to_owned(),
            agent: None,
            kms_context: None,
            limits: Limits::client(),
        }
    }

    /// An agent-role configuration with agent limits.
    pub fn agent(agent: AgentConfig, rng_seed: u64, epoch_millis: u64) -> Self {
        Self {
            role: Role::Agent,
            rng_seed,
            epoch_millis,
            client_version: String::new(),
            agent: Some(agent),
            kms_context: None,
            limits: Limits::agent(),
        }
    }
}

/// How the agent role behaves.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Reported in the HandshakeRequest; drives the client's feature thresholds.
    pub agent_version: String,
    /// The document's session type.
    pub session_type: SessionType,
    /// Port-session properties echoed to the client (null for shells).
    pub properties: Value,
    /// Request KMS encryption with this key (ignored for Port sessions, as the real agent).
    pub kms_key_id: Option<String>,
    /// Deadline for each handshake answer (agent `handshakeTimeout`, 15 s).
    pub handshake_timeout: Duration,
    /// Pause after each new data message (agent read loops sleep 1 ms); `None` disables.
    pub pacing: Option<Duration>,
    /// How long a message may stay unacknowledged (through several retransmissions) before
    /// the agent role reports a missing ack. A strictness threshold, not the agent's: it
    /// retransmits with no limit.
    pub missing_ack_after: Duration,
}

impl AgentConfig {
    /// An agent of `agent_version` serving `session_type`, with upstream defaults.
    pub fn new(agent_version: &str, session_type: SessionType, properties: Value) -> Self {
        Self {
            agent_version: agent_version.to_owned(),
            session_type,
            properties,
            kms_key_id: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            pacing: Some(AGENT_PACING),
            missing_ack_after: MISSING_ACK_AGE,
        }
    }

    fn needs_handshake(&self) -> bool {
        self.needs_handshake_without_kms() || self.kms_key_id.is_some()
    }

    /// Port and non-interactive sessions always shake hands (SPEC.md §2.7).
    fn needs_handshake_without_kms(&self) -> bool {
        matches!(
            self.session_type,
            SessionType::Port | SessionType::NonInteractiveCommands
        )
    }
}

/// Identifies the session for the KMS encryption context (SPEC.md §7.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsContext {
    /// `aws:ssm:SessionId`.
    pub session_id: String,
    /// `aws:ssm:TargetId`.
    pub target_id: String,
}

/// Buffer caps and deadlines.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest stream payload we send (SPEC.md §5.9: 1024).
    pub max_payload: usize,
    /// Outgoing stream messages queued or unacked before `send_*` pushes back.
    pub send_window: usize,
    /// Messages transmitted and unacked at once.
    pub max_in_flight: usize,
    /// Early messages held for reordering.
    pub reorder_capacity: usize,
    /// Early payload bytes held for reordering: a peer flooding reordered messages cannot make
    /// us hold more (those beyond are dropped unacked, and resent by a well-behaved peer).
    pub reorder_bytes: usize,
    /// Close with [`CloseReason::GaveUp`] after this long without ack progress.
    pub give_up_after: Option<Duration>,
}

impl Limits {
    /// Client defaults: official capacities, with backpressure instead of dropping (SPEC.md §12).
    pub fn client() -> Self {
        Self {
            max_payload: STREAM_PAYLOAD_SIZE,
            send_window: CLIENT_BUFFER_CAPACITY,
            max_in_flight: CLIENT_BUFFER_CAPACITY,
            reorder_capacity: CLIENT_BUFFER_CAPACITY,
            reorder_bytes: CLIENT_REORDER_BYTES,
            give_up_after: Some(CLIENT_GIVE_UP),
        }
    }

    /// Agent defaults (agent `config.go`).
    pub fn agent() -> Self {
        Self {
            max_payload: STREAM_PAYLOAD_SIZE,
            send_window: AGENT_BUFFER_CAPACITY,
            max_in_flight: AGENT_BUFFER_CAPACITY,
            reorder_capacity: AGENT_BUFFER_CAPACITY,
            reorder_bytes: AGENT_REORDER_BYTES,
            give_up_after: None,
        }
    }
}

/// One binary websocket frame to send.
#[must_use = "a transmit must be sent on the websocket"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The encoded ClientMessage.
    pub frame: Vec<u8>,
}

/// Something the driver must act on.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The session layer may start: handshake complete, or the first shell output arrived.
    Ready(ReadyInfo),
    /// Stream data (PayloadType 1), decrypted: terminal/TCP/smux bytes.
    Output(Vec<u8>),
    /// Standard error of a non-interactive command (PayloadType 11).
    StdErr(Vec<u8>),
    /// The remote command's exit status (PayloadType 12).
    ExitCode(i32),
    /// Agent role: the client's terminal size.
    Size(SizeData),
    /// A flag from the peer.
    Flag(Flag),
    /// The driver must call KMS, then [`Session::provide_data_key`].
    KmsDataKeyRequired(KmsRequest),
    /// The service closed the channel.
    ChannelClosed(ChannelClosed),
    /// The service paused publication: the peer is away.
    Paused,
    /// Publication resumed.
    Resumed,
    /// `send_*` pushed back earlier and now has room.
    Writable,
    /// The peer deviated from the protocol.
    Violation(Violation),
    /// The session is over; nothing more will be sent.
    Closed(CloseReason),
}

/// What the handshake (or its absence) established.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadyInfo {
    /// The session type.
    pub session_type: SessionType,
    /// Port-session properties (null otherwise).
    pub properties: Value,
    /// The agent's version, when a handshake told us.
    pub agent_version: Option<String>,
    /// Agent role: the version the client reported.
    pub client_version: Option<String>,
    /// Text to show the user, when non-empty.
    pub customer_message: Option<String>,
    /// Whether payloads are KMS-encrypted.
    pub encrypted: bool,
}

/// A KMS call the driver makes for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KmsRequest {
    /// Client: `GenerateDataKey` with 64 bytes and this context.
    GenerateDataKey {
        /// Key id from the request, verbatim.
        key_id: String,
        /// Encryption context.
        encryption_context: BTreeMap<String, String>,
    },
    /// Agent: `Decrypt` of the client's blob with this context.
    Decrypt {
        /// Key id.
        key_id: String,
        /// The client's CiphertextBlob.
        ciphertext_blob: Vec<u8>,
        /// Encryption context.
        encryption_context: BTreeMap<String, String>,
    },
}

/// A KMS data key: plaintext (64 bytes) and the KMS ciphertext blob.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey {
    /// 64 secret bytes.
    pub plaintext: Vec<u8>,
    /// What KMS returned as CiphertextBlob.
    pub ciphertext_blob: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("plaintext", &"<redacted>")
            .field("ciphertext_blob_len", &self.ciphertext_blob.len())
            .finish()
    }
}

/// A protocol deviation by the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What kind.
    pub kind: ViolationKind,
    /// Details for the log (never payload bytes).
    pub detail: String,
}

/// Kinds of peer deviation, stable names for logs and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViolationKind {
    /// The frame failed to decode (truncated, bad lengths, missing fields).
    MalformedMessage,
    /// The payload digest did not match.
    BadDigest,
    /// Unknown MessageType.
    UnknownMessageType,
    /// Unknown PayloadType.
    UnknownPayloadType,
    /// A message type or payload type this role never receives.
    UnexpectedMessage,
    /// An ack that could not be parsed.
    MalformedAck,
    /// An ack for a sequence number never sent.
    AckForUnknownSequence,
    /// An ack whose message id or type does not match the acked message.
    AckMismatch,
    /// One of our messages went unacknowledged through repeated retransmissions.
    MissingAck,
    /// A negative or far-ahead sequence number.
    UnexpectedSequence,
    /// An empty stream payload (official implementations never send one).
    EmptyPayload,
    /// A stream payload over the 1024-byte limit.
    OversizePayload,
    /// A HandshakeResponse that does not parse or does not answer the request.
    MalformedHandshakeResponse,
    /// A second HandshakeResponse or EncChallengeResponse.
    RepeatedHandshakeMessage,
    /// Stream data before the handshake completed (acked and discarded).
    DataBeforeHandshake,
    /// A Size payload that does not parse.
    MalformedSize,
    /// A Flag payload that does not parse or is not allowed here.
    MalformedFlag,
    /// An encrypted payload that does not decrypt or a wrong challenge answer.
    EncryptionFailure,
}

impl ViolationKind {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedMessage => "malformed_message",
            Self::BadDigest => "bad_digest",
            Self::UnknownMessageType => "unknown_message_type",
            Self::UnknownPayloadType => "unknown_payload_type",
            Self::UnexpectedMessage => "unexpected_message",
            Self::MalformedAck => "malformed_ack",
            Self::AckForUnknownSequence => "ack_for_unknown_sequence",
            Self::AckMismatch => "ack_mismatch",
            Self::MissingAck => "missing_ack",
            Self::UnexpectedSequence => "unexpected_sequence",
            Self::EmptyPayload => "empty_payload",
            Self::OversizePayload => "oversize_payload",
            Self::MalformedHandshakeResponse => "malformed_handshake_response",
            Self::RepeatedHandshakeMessage => "repeated_handshake_message",
            Self::DataBeforeHandshake => "data_before_handshake",
            Self::MalformedSize => "malformed_size",
            Self::MalformedFlag => "malformed_flag",
            Self::EncryptionFailure => "encryption_failure",
        }
    }
}

/// Why the session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The service sent channel_closed.
    ChannelClosed,
    /// No ack progress for this long (SPEC.md §5.6): the driver should call TerminateSession.
    GaveUp(Duration),
    /// A handshake deadline passed.
    HandshakeTimeout,
    /// The handshake failed (rejected response, KMS failure).
    HandshakeFailed(String),
    /// A received payload did not decrypt (wrong key or tampered ciphertext).
    DecryptionFailed(String),
}

/// Why `handle_message` dropped a frame (also reported as [`Event::Violation`]; count those).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The frame did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The frame decoded but was rejected.
    #[error("{}: {}", .0.kind.as_str(), .0.detail)]
    Rejected(Violation),
}

/// Counters for benchmarks and diagnostics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionStats {
    /// Stream messages transmitted for the first time.
    pub messages_sent: u64,
    /// Retransmissions.
    pub retransmissions: u64,
    /// Stream messages delivered in order.
    pub messages_delivered: u64,
    /// Duplicates received (re-acked).
    pub duplicates: u64,
    /// Messages too far ahead for the reorder buffer, dropped unacked for the peer to resend.
    pub dropped_out_of_window: u64,
    /// Acks sent.
    pub acks_sent: u64,
    /// Payload bytes delivered.
    pub bytes_delivered: u64,
    /// Smoothed RTT.
    pub rtt: Duration,
}

/// The data-channel session. See the module docs.
#[derive(Debug)]
pub struct Session {
    role: Role,
    client_version: String,
    agent: Option<AgentConfig>,
    kms_context: Option<KmsContext>,
    limits: Limits,
    start: Instant,
    epoch_millis: u64,
    rng: SeededRng,
    phase: Phase,
    reorder: ReorderBuffer<ClientMessage>,
    resend: ResendBuffer,
    rtt: RttEstimator,
    gate: SendGate,
    control: VecDeque<Vec<u8>>,
    held: VecDeque<(PayloadType, Vec<u8>)>,
    held_size: Option<SizeData>,
    events: VecDeque<Event>,
    receive_ready: bool,
    last_progress: Instant,
    wants_writable: bool,
    rejected_seq: Option<SequenceNumber>,
    missing_ack_reported: Option<SequenceNumber>,
    handshake_seen: HandshakeSeen,
    crypto: Option<PayloadCrypto>,
    challenge_answered: bool,
    /// Client role after a reconnect: replay unacked messages from this sequence number on.
    replay_from: Option<SequenceNumber>,
    /// Between [`Session::handle_disconnect`] and [`Session::handle_reconnect`]: nothing is
    /// transmitted, retransmission clocks and the give-up limit stand still.
    detached: bool,
    stats: SessionStats,
}

/// Session phases; the module docs draw the diagram.
#[derive(Debug)]
enum Phase {
    /// Client: nothing received yet.
    AwaitingFirstMessage,
    /// Client: waiting for the driver's GenerateDataKey answer.
    AwaitingDataKey(ClientHandshakePlan, Box<ReadyInfo>),
    /// Client: response sent, waiting for HandshakeComplete.
    AwaitingHandshakeComplete(Box<ReadyInfo>),
    /// Agent: request sent, waiting for the response.
    AwaitingResponse {
        request: HandshakeRequest,
        deadline: Instant,
        started: Instant,
    },
    /// Agent: waiting for the driver's KMS Decrypt answer.
    AwaitingDecrypt {
        client_version: String,
        deadline: Instant,
        started: Instant,
    },
    /// Agent: challenge sent, waiting for the client to re-encrypt it.
    AwaitingChallengeResponse {
        client_version: String,
        expected: Vec<u8>,
        deadline: Instant,
        started: Instant,
    },
    /// Session layer running.
    Ready(Box<ReadyInfo>),
    /// Over.
    Closed,
}

/// Which one-shot handshake messages already arrived (agent role).
#[derive(Debug, Default)]
struct HandshakeSeen {
    response: bool,
}

impl Session {
    /// A new session; an agent that needs a handshake queues its HandshakeRequest now.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        let pacing = config.agent.as_ref().and_then(|a| a.pacing);
        let mut session = Self {
            role: config.role,
            client_version: config.client_version,
            agent: config.agent,
            kms_context: config.kms_context,
            start: now,
            epoch_millis: config.epoch_millis,
            rng: SeededRng::new(config.rng_seed),
            phase: Phase::AwaitingFirstMessage,
            reorder: ReorderBuffer::with_max_bytes(
                config.limits.reorder_capacity,
                config.limits.reorder_bytes,
            ),
            resend: ResendBuffer::default(),
            rtt: RttEstimator::default(),
            gate: SendGate::new(pacing, config.limits.max_in_flight),
            control: VecDeque::new(),
            held: VecDeque::new(),
            held_size: None,
            events: VecDeque::new(),
            receive_ready: true,
            last_progress: now,
            wants_writable: false,
            rejected_seq: None,
            missing_ack_reported: None,
            handshake_seen: HandshakeSeen::default(),
            crypto: None,
            challenge_answered: false,
            replay_from: None,
            detached: false,
            stats: SessionStats::default(),
            limits: config.limits,
        };
        if session.role == Role::Agent {
            session.start_agent(now);
        }
        session
    }

    /// Feeds one received frame. On `Err` the frame was dropped and state is unchanged apart
    /// from the [`Event::Violation`] that reports it.
    pub fn handle_message(&mut self, now: Instant, frame: &[u8]) -> Result<(), MessageError> {
        let message = match ClientMessage::decode(frame) {
            Ok(m) => m,
            Err(err) => {
                let kind = match err {
                    DecodeError::BadDigest => ViolationKind::BadDigest,
                    DecodeError::UnknownMessageType(_) => ViolationKind::UnknownMessageType,
                    DecodeError::UnknownPayloadType(_) => ViolationKind::UnknownPayloadType,
                    _ => ViolationKind::MalformedMessage,
                };
                self.violation(kind, err.to_string());
                return Err(err.into());
            }
        };
        tracing::trace!(
            message_type = message.message_type.as_str(),
            seq = message.sequence_number.0,
            payload_type = ?message.payload_type,
            len = message.payload.len(),
            "received"
        );
        if matches!(self.phase, Phase::Closed) {
            return Ok(());
        }
        match message.message_type {
            MessageType::Acknowledge => self.handle_ack(now, &message),
            MessageType::InputStreamData | MessageType::OutputStreamData => {
                self.handle_stream(now, message)
            }
            MessageType::ChannelClosed => {
                let closed = ChannelClosed::parse_lenient(&message.payload);
                self.events.push_back(Event::ChannelClosed(closed));
                self.close(CloseReason::ChannelClosed);
                Ok(())
            }
            MessageType::PausePublication => {
                if self.gate.set_publication(Publication::Paused) {
                    self.events.push_back(Event::Paused);
                }
                Ok(())
            }
            MessageType::StartPublication => {
                self.resume_publication();
                Ok(())
            }
            MessageType::AgentSessionState => Ok(()),
        }
    }

    /// Lets time pass: handshake deadlines and the give-up limit. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.handshake_deadline()
            && now >= deadline
        {
            self.close(CloseReason::HandshakeTimeout);
            return;
        }
        if let Some(limit) = self.limits.give_up_after
            && !self.detached
            && self.receive_ready
            && self.resend.in_flight() > 0
            && now.duration_since(self.last_progress) >= limit
        {
            self.close(CloseReason::GaveUp(limit));
        }
    }

    /// The websocket is gone and no other is attached yet. Until [`Session::handle_reconnect`]
    /// nothing is transmitted (frames would go nowhere), no retransmission is counted and the
    /// give-up limit does not run: a peer that cannot be reached is not a peer that does not
    /// ack. Data queued meanwhile is kept and sent after the reconnect.
    pub fn handle_disconnect(&mut self, _now: Instant) {
        self.detached = true;
    }

    /// A new websocket replaced the old one: unacked messages become due for resending now.
    ///
    /// The agent role resends only the head of its buffer, one message per RTO or ack, as the
    /// real agent does (SPEC.md §5.7). The client role replays every unacked message once, in
    /// order, at once: whatever was in flight when the websocket broke is lost, and resending
    /// it one round trip at a time would stall a bulk transfer for seconds after each drop.
    pub fn handle_reconnect(&mut self, now: Instant) {
        match self.role {
            Role::Client => self.replay_from = Some(SequenceNumber(0)),
            Role::Agent => self.resend.expire_all(now, self.rtt.rto()),
        }
        self.detached = false;
        self.last_progress = now;
        self.resume_publication();
    }

    /// Queues Output (PayloadType 1) data; returns the bytes accepted (fewer when the send
    /// window is full, then [`Event::Writable`] follows when room frees up).
    pub fn send_output(&mut self, now: Instant, data: &[u8]) -> usize {
        self.queue_data(now, PayloadType::Output, data)
    }

    /// Agent role: queues StdErr (PayloadType 11) data.
    pub fn send_stderr(&mut self, now: Instant, data: &[u8]) -> usize {
        debug_assert_eq!(self.role, Role::Agent, "only agents send stderr");
        self.queue_data(now, PayloadType::StdErr, data)
    }

    /// Agent role: queues the ExitCode payload.
    pub fn send_exit_code(&mut self, now: Instant, code: i32) {
        debug_assert_eq!(self.role, Role::Agent, "only agents send exit codes");
        self.queue_message(now, PayloadType::ExitCode, ExitCode(code).encode());
    }

    /// Client role: queues a terminal size; before Ready only the latest size is kept and it is
    /// sent first once the session is ready.
    pub fn send_size(&mut self, now: Instant, size: SizeData) {
        if self.is_ready() {
            let payload = serde_json::to_vec(&size).unwrap_or_default();
            self.push_stream(now, PayloadType::Size, payload);
        } else {
            self.held_size = Some(size);
        }
    }

    /// Queues a flag (held until Ready like data).
    pub fn send_flag(&mut self, now: Instant, flag: Flag) {
        self.queue_message(now, PayloadType::Flag, flag.encode().to_vec());
    }

    /// Answers [`Event::KmsDataKeyRequired`] with the data key (client: from GenerateDataKey;
    /// agent: the plaintext from Decrypt) or the KMS error text.
    pub fn provide_data_key(&mut self, now: Instant, result: Result<DataKey, String>) {
        let key = result.and_then(|key| {
            PlaintextDataKey::from_slice(&key.plaintext)
                .map(|plain| (plain, key.ciphertext_blob))
                .map_err(|e| format!("unusable KMS data key: {e}"))
        });
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::AwaitingDataKey(plan, mut info) => {
                let challenge_ack = plan
                    .kms
                    .as_ref()
                    .and_then(|k| k.challenge.as_ref())
                    .is_some_and(|c| !c.is_empty());
                let outcome = key.map(|(plain, blob)| {
                    self.crypto = Some(PayloadCrypto::client(&plain, self.rng.next_u64()));
                    KmsEncryptionResult {
                        kms_cipher_text_key: BASE64.encode(blob),
                        kms_cipher_text_hash: None,
                        challenge_acknowledgement: challenge_ack.then_some(true),
                    }
                });
                info.encrypted = outcome.is_ok();
                self.phase = Phase::AwaitingHandshakeComplete(info);
                self.answer_handshake(now, &plan, Some(outcome));
            }
            Phase::AwaitingDecrypt {
                client_version,
                deadline,
                started,
            } => match key {
                Ok((plain, _)) => {
                    let mut nonce = [0u32; 3];
                    for word in &mut nonce {
                        *word = self.rng.next_u64() as u32;
                    }
                    let mut crypto = PayloadCrypto::agent(&plain, nonce);
                    let mut expected = vec![0u8; CHALLENGE_LEN];
                    self.rng.fill(&mut expected);
                    match crypto.encrypt(&expected) {
                        Ok(sealed) => {
                            self.crypto = Some(crypto);
                            let request = EncryptionChallenge {
                                challenge: BASE64.encode(sealed),
                            };
                            let payload = serde_json::to_vec(&request).unwrap_or_default();
                            self.push_stream(now, PayloadType::EncChallengeRequest, payload);
                            let timeout = self
                                .agent
                                .as_ref()
                                .map_or(HANDSHAKE_TIMEOUT, |a| a.handshake_timeout);
                            self.phase = Phase::AwaitingChallengeResponse {
                                client_version,
                                expected,
                                deadline: deadline.max(now + timeout),
                                started,
                            };
                        }
                        Err(e) => self.close(CloseReason::HandshakeFailed(e.to_string())),
                    }
                }
                Err(e) => self.close(CloseReason::HandshakeFailed(e)),
            },
            other => self.phase = other,
        }
    }

    /// When false, in-order stream data is neither delivered nor acked (the peer retransmits).
    /// The driver may then stop reading the peer's frames altogether (acks included): the
    /// give-up limit does not run meanwhile, and starts afresh at `now` when receiving resumes.
    pub fn set_receive_ready(&mut self, now: Instant, ready: bool) {
        if ready && !self.receive_ready {
            self.last_progress = now;
        }
        self.receive_ready = ready;
    }

    /// The next frame to send, if any: acks first, then a due retransmission, then new data.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.detached {
            return None;
        }
        if let Some(frame) = self.control.pop_front() {
            return Some(Transmit { frame });
        }
        if matches!(self.phase, Phase::Closed) {
            return None;
        }
        let running = self.gate.publication() == Publication::Running;
        if running && let Some(from) = self.replay_from {
            match self.resend.in_flight_from(from) {
                Some((seq, msg)) => {
                    msg.last_sent = Some(now);
                    msg.retransmissions += 1;
                    let frame = msg.frame.clone();
                    self.stats.retransmissions += 1;
                    self.replay_from = Some(seq.next());
                    tracing::trace!(seq = seq.0, "replay after reconnect");
                    return Some(Transmit { frame });
                }
                None => self.replay_from = None,
            }
        }
        let rto = self.rtt.rto();
        if running && let Some((seq, head)) = self.resend.head_in_flight() {
            let due = head.last_sent.is_some_and(|t| now >= t + rto);
            if due {
                head.last_sent = Some(now);
                head.retransmissions += 1;
                let frame = head.frame.clone();
                let retransmissions = head.retransmissions;
                let unacked_for = head
                    .first_sent
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                self.stats.retransmissions += 1;
                // Both a count and an age: on loopback the RTO is ~11 ms, so a client that is
                // merely descheduled for 60 ms would otherwise count as never acking.
                if self.role == Role::Agent
                    && retransmissions >= MISSING_ACK_RETRANSMISSIONS
                    && unacked_for
                        >= self
                            .agent
                            .as_ref()
                            .map_or(MISSING_ACK_AGE, |a| a.missing_ack_after)
                    && self.missing_ack_reported != Some(seq)
                {
                    self.missing_ack_reported = Some(seq);
                    self.violation(
                        ViolationKind::MissingAck,
                        format!(
                            "message {seq} unacknowledged for {} ms through {retransmissions} retransmissions",
                            unacked_for.as_millis()
                        ),
                    );
                }
                tracing::trace!(seq = seq.0, retransmissions, "retransmit");
                return Some(Transmit { frame });
            }
        }
        if self.gate.may_send(now, self.resend.in_flight())
            && let Some((seq, msg)) = self.resend.next_unsent()
        {
            let frame = msg.frame.clone();
            self.resend.mark_sent(seq, now);
            self.gate.on_sent(now);
            self.stats.messages_sent += 1;
            if self.resend.in_flight() == 1 {
                self.last_progress = now;
            }
            return Some(Transmit { frame });
        }
        None
    }

    /// When [`Session::handle_timeout`] or [`Session::poll_transmit`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Closed) {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        let running = self.gate.publication() == Publication::Running && !self.detached;
        if running {
            consider(self.resend.head_deadline(self.rtt.rto()));
            let has_unsent = self.resend.len() > self.resend.in_flight();
            if has_unsent && self.resend.in_flight() < self.gate.max_in_flight() {
                consider(self.gate.pacing_deadline(self.start));
                // pacing_deadline filters on `start`; any past deadline means "now", which the
                // driver's drain already covered, so only future ones matter here.
            }
        }
        consider(self.handshake_deadline());
        if let Some(limit) = self.limits.give_up_after
            && !self.detached
            && self.receive_ready
            && self.resend.in_flight() > 0
        {
            consider(Some(self.last_progress + limit));
        }
        next
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes `send_output` would accept now.
    pub fn send_capacity(&self) -> usize {
        if matches!(self.phase, Phase::Closed) {
            return 0;
        }
        let used = self.resend.len() + self.held.len();
        self.limits.send_window.saturating_sub(used) * self.limits.max_payload
    }

    /// Whether the session layer is running.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready(_))
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether any outgoing stream message awaits an ack (or has not been sent yet).
    pub fn has_unacked(&self) -> bool {
        !self.resend.is_empty() || !self.held.is_empty()
    }

    /// Outgoing stream messages queued but not yet transmitted (held before Ready, or waiting
    /// for pacing, the in-flight cap or publication). Drivers pace their reads on it.
    pub fn unsent_len(&self) -> usize {
        self.resend.len() - self.resend.in_flight() + self.held.len()
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        SessionStats {
            rtt: self.rtt.rtt(),
            ..self.stats.clone()
        }
    }

    /// The next incoming sequence number to deliver.
    pub fn expected_sequence_number(&self) -> SequenceNumber {
        self.reorder.expected()
    }

    /// The sequence number the next outgoing stream message gets.
    pub fn next_outgoing_sequence_number(&self) -> SequenceNumber {
        self.resend.next_seq()
    }

    /// Outgoing stream messages not yet acknowledged, ascending.
    pub fn unacked_sequence_numbers(&self) -> Vec<i64> {
        self.resend.sequence_numbers()
    }

    /// Early incoming messages waiting for a gap to fill, ascending.
    pub fn buffered_sequence_numbers(&self) -> Vec<i64> {
        self.reorder.buffered_sequence_numbers()
    }

    /// The role this session plays.
    pub fn role(&self) -> Role {
        self.role
    }

    /// What the handshake established, once ready.
    pub fn ready_info(&self) -> Option<&ReadyInfo> {
        match &self.phase {
            Phase::Ready(info) => Some(info),
            _ => None,
        }
    }

    // ----- helpers -----

    fn start_agent(&mut self, now: Instant) {
        let Some(agent) = self.agent.clone() else {
            return;
        };
        let kms_key = agent
            .kms_key_id
            .clone()
            .filter(|_| agent.session_type != SessionType::Port);
        if !agent.needs_handshake() || (kms_key.is_none() && !agent.needs_handshake_without_kms()) {
            self.become_ready(ReadyInfo {
                session_type: agent.session_type.clone(),
                properties: agent.properties.clone(),
                agent_version: Some(agent.agent_version.clone()),
                client_version: None,
                customer_message: None,
                encrypted: false,
            });
            return;
        }
        let challenge = BASE64.encode(self.rng.bytes16());
        let kms = kms_key.map(|key| KmsEncryptionParameters {
            kms_key_id: key,
            challenge: Some(challenge),
        });
        let request = agent_request(
            &agent.agent_version,
            &agent.session_type,
            &agent.properties,
            kms.as_ref(),
        );
        let payload = serde_json::to_vec(&request).unwrap_or_default();
        self.push_stream(now, PayloadType::HandshakeRequest, payload);
        self.phase = Phase::AwaitingResponse {
            request,
            deadline: now + agent.handshake_timeout,
            started: now,
        };
    }

    fn handle_ack(&mut self, now: Instant, message: &ClientMessage) -> Result<(), MessageError> {
        let ack: AcknowledgeContent = match serde_json::from_slice(&message.payload) {
            Ok(a) => a,
            Err(e) => {
                return Err(self.reject(ViolationKind::MalformedAck, format!("ack payload: {e}")));
            }
        };
        self.resume_publication();
        let seq = SequenceNumber(ack.sequence_number);
        match self.resend.ack(seq) {
            Some(acked) => {
                if acked.message_id != ack.message_id
                    || ack.message_type != self.outgoing_type().as_str()
                {
                    self.violation(
                        ViolationKind::AckMismatch,
                        format!(
                            "ack for {seq} names {} {}, sent {} {}",
                            ack.message_type,
                            ack.message_id,
                            self.outgoing_type().as_str(),
                            acked.message_id
                        ),
                    );
                }
                if acked.retransmissions == 0
                    && let Some(sent) = acked.first_sent
                {
                    self.rtt.update(now.saturating_duration_since(sent));
                }
                self.last_progress = now;
                if self.wants_writable && self.send_capacity() > 0 {
                    self.wants_writable = false;
                    self.events.push_back(Event::Writable);
                }
            }
            None if seq >= self.resend.next_seq() || seq.0 < 0 => {
                self.violation(
                    ViolationKind::AckForUnknownSequence,
                    format!("ack for {seq}, never sent"),
                );
            }
            // Late ack of a retransmitted message: harmless.
            None => {}
        }
        Ok(())
    }

    fn handle_stream(&mut self, now: Instant, message: ClientMessage) -> Result<(), MessageError> {
        if message.message_type != self.incoming_type() {
            return Err(self.reject(
                ViolationKind::UnexpectedMessage,
                format!(
                    "{} received by the {:?} side",
                    message.message_type.as_str(),
                    self.role
                ),
            ));
        }
        let seq = message.sequence_number;
        if seq.0 < 0 {
            return Err(self.reject(
                ViolationKind::UnexpectedSequence,
                format!("negative sequence number {seq}"),
            ));
        }
        self.resume_publication();
        match self.reorder.classify_sized(seq, message.payload.len()) {
            Arrival::InOrder => {
                self.deliver_in_order(now, message, false);
                while self.reorder_pending_ready() {
                    let Some(next) = self.reorder.take_expected() else {
                        break;
                    };
                    if !self.deliver_in_order(now, next.clone(), true) {
                        // Not accepted (receiver not ready): keep it for later.
                        let size = next.payload.len();
                        self.reorder
                            .insert_early_sized(next.sequence_number, next, size);
                        break;
                    }
                }
            }
            Arrival::Early => {
                self.queue_ack(now, &message);
                let size = message.payload.len();
                self.reorder.insert_early_sized(seq, message, size);
            }
            Arrival::Duplicate => {
                self.stats.duplicates += 1;
                self.queue_ack(now, &message);
            }
            Arrival::OutOfWindow => {
                // Not a violation: while our receiver pushes back, the expected message stays
                // unacked but later ones are acked into the reorder buffer, so the peer may
                // legitimately run this far ahead. Dropped unacked, it is resent, as the
                // official client's full IncomingMessageBuffer does (plugin
                // `src/datachannel/streaming.go` `HandleOutputMessage`).
                self.stats.dropped_out_of_window += 1;
                tracing::debug!(
                    %seq,
                    expected = %self.reorder.expected(),
                    "beyond the reorder window: dropped unacked"
                );
            }
        }
        Ok(())
    }

    fn reorder_pending_ready(&self) -> bool {
        self.reorder.buffered() > 0 && !matches!(self.phase, Phase::Closed)
    }

    /// Delivers the expected message; returns whether it was accepted (acked and advanced).
    /// Early messages drained from the reorder buffer were acked on arrival (`acked`).
    fn deliver_in_order(&mut self, now: Instant, mut message: ClientMessage, acked: bool) -> bool {
        let payload_type = message.payload_type;
        if payload_type.is_handshake() {
            if !acked {
                self.queue_ack(now, &message);
            }
            self.reorder.advance();
            self.process_handshake(now, message);
            return true;
        }
        if !self.receive_ready && self.is_ready() {
            return false;
        }
        let len = message.payload.len();
        let accepted = match self.role {
            Role::Client => self.client_deliver(now, &mut message),
            Role::Agent => self.agent_deliver(&message),
        };
        if accepted {
            if !acked {
                self.queue_ack(now, &message);
            }
            self.reorder.advance();
            self.stats.messages_delivered += 1;
            self.stats.bytes_delivered += len as u64;
        }
        accepted
    }

    /// Hands the payload of `message` (taken out of it) to the driver as an event.
    fn client_deliver(&mut self, now: Instant, message: &mut ClientMessage) -> bool {
        if matches!(self.phase, Phase::AwaitingFirstMessage) {
            // No handshake: legacy shell path (SPEC.md §2.7); any first payload counts as output.
            self.become_ready(ReadyInfo {
                session_type: SessionType::StandardStream,
                properties: Value::Null,
                agent_version: None,
                client_version: None,
                customer_message: None,
                encrypted: false,
            });
            self.flush_held(now);
        }
        let mut payload = std::mem::take(&mut message.payload);
        if let Some(crypto) = &self.crypto
            && matches!(
                message.payload_type,
                PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode
            )
        {
            match crypto.decrypt(&payload) {
                Ok(plain) => payload = plain,
                Err(e) => {
                    let detail = format!("message {}: {e}", message.sequence_number);
                    self.violation(ViolationKind::EncryptionFailure, detail.clone());
                    self.close(CloseReason::DecryptionFailed(detail));
                    return false;
                }
            }
        }
        match message.payload_type {
            PayloadType::Output => self.events.push_back(Event::Output(payload)),
            PayloadType::StdErr => self.events.push_back(Event::StdErr(payload)),
            PayloadType::ExitCode => match ExitCode::decode(&payload) {
                Ok(code) => self.events.push_back(Event::ExitCode(code.0)),
                Err(e) => self.violation(ViolationKind::UnexpectedMessage, e.to_string()),
            },
            PayloadType::Flag => match Flag::decode(&payload) {
                Ok(flag) => self.events.push_back(Event::Flag(flag)),
                Err(e) => self.violation(ViolationKind::MalformedFlag, e.to_string()),
            },
            other => self.violation(
                ViolationKind::UnexpectedMessage,
                format!("payload type {other:?} from the agent"),
            ),
        }
        true
    }

    fn agent_deliver(&mut self, message: &ClientMessage) -> bool {
        let seq = message.sequence_number;
        if message.payload.is_empty() {
            self.violation(ViolationKind::EmptyPayload, format!("message {seq}"));
        } else if message.payload.len() > self.limits.max_payload + self.encryption_overhead() {
            self.violation(
                ViolationKind::OversizePayload,
                format!(
                    "message {seq} carries {} bytes, limit {}",
                    message.payload.len(),
                    self.limits.max_payload
                ),
            );
        }
        if !self.is_ready() {
            // The real agent acks and discards data during the handshake (SPEC.md §2.7).
            self.violation(
                ViolationKind::DataBeforeHandshake,
                format!(
                    "{:?} message {seq} before HandshakeComplete",
                    message.payload_type
                ),
            );
            return true;
        }
        match message.payload_type {
            PayloadType::Output => {
                let payload = match &self.crypto {
                    None => message.payload.clone(),
                    Some(crypto) => match crypto.decrypt(&message.payload) {
                        Ok(plain) => plain,
                        Err(e) => {
                            // Not acked, as the real agent (SPEC.md §5.8).
                            if self.rejected_seq != Some(seq) {
                                self.rejected_seq = Some(seq);
                                self.violation(
                                    ViolationKind::EncryptionFailure,
                                    format!("message {seq}: {e}"),
                                );
                            }
                            return false;
                        }
                    },
                };
                self.events.push_back(Event::Output(payload));
                true
            }
            PayloadType::Size => match serde_json::from_slice::<SizeData>(&message.payload) {
                Ok(size) => {
                    self.events.push_back(Event::Size(size));
                    true
                }
                Err(e) => {
                    // Not acked, as the real agent: the client will retransmit it forever.
                    if self.rejected_seq != Some(seq) {
                        self.rejected_seq = Some(seq);
                        self.violation(ViolationKind::MalformedSize, e.to_string());
                    }
                    false
                }
            },
            PayloadType::Flag => {
                match Flag::decode(&message.payload) {
                    Ok(Flag::ConnectToPortError) => self.violation(
                        ViolationKind::MalformedFlag,
                        "ConnectToPortError is an agent flag".to_owned(),
                    ),
                    Ok(flag) => self.events.push_back(Event::Flag(flag)),
                    Err(e) => self.violation(ViolationKind::MalformedFlag, e.to_string()),
                }
                true
            }
            other => {
                self.violation(
                    ViolationKind::UnexpectedMessage,
                    format!("payload type {other:?} from the client"),
                );
                true
            }
        }
    }

    fn process_handshake(&mut self, now: Instant, message: ClientMessage) {
        match (self.role, message.payload_type) {
            (Role::Client, PayloadType::HandshakeRequest) => self.client_on_request(now, &message),
            (Role::Client, PayloadType::HandshakeComplete) => {
                self.client_on_complete(now, &message)
            }
            (Role::Client, PayloadType::EncChallengeRequest) => {
                self.client_on_challenge(now, &message)
            }
            (Role::Agent, PayloadType::EncChallengeResponse) => {
                self.agent_on_challenge_response(now, &message)
            }
            (Role::Agent, PayloadType::HandshakeResponse) => self.agent_on_response(now, &message),
            (role, other) => self.violation(
                ViolationKind::UnexpectedMessage,
                format!("{other:?} received by the {role:?} side"),
            ),
        }
    }

    fn client_on_request(&mut self, now: Instant, message: &ClientMessage) {
        if !matches!(self.phase, Phase::AwaitingFirstMessage) {
            self.violation(
                ViolationKind::RepeatedHandshakeMessage,
                format!("second HandshakeRequest at {}", message.sequence_number),
            );
            return;
        }
        let request: HandshakeRequest = match serde_json::from_slice(&message.payload) {
            Ok(r) => r,
            Err(e) => {
                self.violation(
                    ViolationKind::UnexpectedMessage,
                    format!("handshake request: {e}"),
                );
                self.close(CloseReason::HandshakeFailed(format!(
                    "the agent sent a malformed handshake request: {e}"
                )));
                return;
            }
        };
        let plan = ClientHandshakePlan::from_request(&request);
        let info = ReadyInfo {
            session_type: plan
                .session
                .as_ref()
                .map_or(SessionType::StandardStream, |s| s.session_type.clone()),
            properties: plan
                .session
                .as_ref()
                .map_or(Value::Null, |s| s.properties.clone()),
            agent_version: Some(request.agent_version.clone()),
            client_version: None,
            customer_message: None,
            encrypted: plan.needs_data_key(),
        };
        if let Some(kms) = &plan.kms {
            let (session_id, target_id) = self
                .kms_context
                .as_ref()
                .map_or(("", ""), |c| (c.session_id.as_str(), c.target_id.as_str()));
            let context = encryption_context(session_id, target_id, kms.challenge.as_deref());
            self.events
                .push_back(Event::KmsDataKeyRequired(KmsRequest::GenerateDataKey {
                    key_id: kms.kms_key_id.clone(),
                    encryption_context: context,
                }));
            self.phase = Phase::AwaitingDataKey(plan, Box::new(info));
            return;
        }
        self.phase = Phase::AwaitingHandshakeComplete(Box::new(info));
        self.answer_handshake(now, &plan, None);
    }

    fn answer_handshake(
        &mut self,
        now: Instant,
        plan: &ClientHandshakePlan,
        kms: Option<Result<KmsEncryptionResult, String>>,
    ) {
        let response = plan.response(&self.client_version, kms);
        let payload = serde_json::to_vec(&response).unwrap_or_default();
        self.push_stream(now, PayloadType::HandshakeResponse, payload);
    }

    fn client_on_challenge(&mut self, now: Instant, message: &ClientMessage) {
        if self.challenge_answered {
            self.violation(
                ViolationKind::RepeatedHandshakeMessage,
                format!("second EncChallengeRequest at {}", message.sequence_number),
            );
            return;
        }
        let answer = self
            .crypto
            .as_mut()
            .ok_or_else(|| "no KMS encryption was agreed".to_owned())
            .and_then(|crypto| {
                let request: EncryptionChallenge =
                    serde_json::from_slice(&message.payload).map_err(|e| e.to_string())?;
                let sealed = BASE64
                    .decode(request.challenge)
                    .map_err(|e| e.to_string())?;
                crypto.answer_challenge(&sealed).map_err(|e| e.to_string())
            });
        match answer {
            Ok(sealed) => {
                self.challenge_answered = true;
                let response = EncryptionChallenge {
                    challenge: BASE64.encode(sealed),
                };
                let payload = serde_json::to_vec(&response).unwrap_or_default();
                self.push_stream(now, PayloadType::EncChallengeResponse, payload);
            }
            Err(e) => {
                self.violation(
                    ViolationKind::EncryptionFailure,
                    format!("encryption challenge: {e}"),
                );
                self.close(CloseReason::HandshakeFailed(format!(
                    "the agent's encryption challenge could not be answered: {e}"
                )));
            }
        }
    }

    fn agent_on_challenge_response(&mut self, now: Instant, message: &ClientMessage) {
        let Phase::AwaitingChallengeResponse {
            client_version,
            expected,
            started,
            ..
        } = &self.phase
        else {
            self.violation(
                ViolationKind::RepeatedHandshakeMessage,
                format!(
                    "unexpected EncChallengeResponse at {}",
                    message.sequence_number
                ),
            );
            return;
        };
        let (client_version, expected, started) =
            (client_version.clone(), expected.clone(), *started);
        let opened = serde_json::from_slice::<EncryptionChallenge>(&message.payload)
            .map_err(|e| e.to_string())
            .and_then(|c| BASE64.decode(c.challenge).map_err(|e| e.to_string()))
            .and_then(|sealed| {
                self.crypto
                    .as_ref()
                    .ok_or_else(|| "no keys".to_owned())
                    .and_then(|c| c.decrypt(&sealed).map_err(|e| e.to_string()))
            });
        match opened {
            Ok(plain) if plain == expected => {
                self.complete_agent_handshake(now, started, client_version, KMS_CUSTOMER_MESSAGE);
            }
            Ok(_) => {
                self.violation(
                    ViolationKind::EncryptionFailure,
                    "challenge answer does not match".to_owned(),
                );
                self.close(CloseReason::HandshakeFailed(
                    "wrong encryption challenge answer".to_owned(),
                ));
            }
            Err(e) => {
                self.violation(
                    ViolationKind::EncryptionFailure,
                    format!("challenge answer: {e}"),
                );
                self.close(CloseReason::HandshakeFailed(format!(
                    "bad encryption challenge answer: {e}"
                )));
            }
        }
    }

    fn complete_agent_handshake(
        &mut self,
        now: Instant,
        started: Instant,
        client_version: String,
        customer_message: &str,
    ) {
        let complete = HandshakeComplete {
            handshake_time_to_complete: now.saturating_duration_since(started).as_nanos() as i64,
            customer_message: customer_message.to_owned(),
        };
        let payload = serde_json::to_vec(&complete).unwrap_or_default();
        self.push_stream(now, PayloadType::HandshakeComplete, payload);
        let agent = self.agent.as_ref();
        self.become_ready(ReadyInfo {
            session_type: agent.map_or(SessionType::StandardStream, |a| a.session_type.clone()),
            properties: agent.map_or(Value::Null, |a| a.properties.clone()),
            agent_version: agent.map(|a| a.agent_version.clone()),
            client_version: Some(client_version),
            customer_message: Some(customer_message.to_owned()).filter(|m| !m.is_empty()),
            encrypted: self.crypto.is_some(),
        });
        self.flush_held(now);
    }

    fn handshake_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::AwaitingResponse { deadline, .. }
            | Phase::AwaitingDecrypt { deadline, .. }
            | Phase::AwaitingChallengeResponse { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    fn client_on_complete(&mut self, now: Instant, message: &ClientMessage) {
        let Phase::AwaitingHandshakeComplete(info) = &self.phase else {
            self.violation(
                ViolationKind::UnexpectedMessage,
                "HandshakeComplete without a pending handshake".to_owned(),
            );
            return;
        };
        let mut info = (**info).clone();
        match serde_json::from_slice::<HandshakeComplete>(&message.payload) {
            Ok(complete) => {
                info.customer_message = Some(complete.customer_message).filter(|m| !m.is_empty());
            }
            Err(e) => self.violation(
                ViolationKind::UnexpectedMessage,
                format!("handshake complete: {e}"),
            ),
        }
        self.become_ready(info);
        self.flush_held(now);
    }

    fn agent_on_response(&mut self, now: Instant, message: &ClientMessage) {
        let (request, started) = match &self.phase {
            Phase::AwaitingResponse {
                request, started, ..
            } if !self.handshake_seen.response => (request.clone(), *started),
            _ => {
                self.violation(
                    ViolationKind::RepeatedHandshakeMessage,
                    format!(
                        "HandshakeResponse at {} after the first",
                        message.sequence_number
                    ),
                );
                return;
            }
        };
        self.handshake_seen.response = true;
        let response: HandshakeResponse = match serde_json::from_slice(&message.payload) {
            Ok(r) => r,
            Err(e) => {
                self.violation(ViolationKind::MalformedHandshakeResponse, e.to_string());
                self.close(CloseReason::HandshakeFailed(format!(
                    "malformed handshake response: {e}"
                )));
                return;
            }
        };
        match agent_check_response(&request, &response) {
            Err(rejection) => {
                self.violation(
                    ViolationKind::MalformedHandshakeResponse,
                    rejection.to_string(),
                );
                self.close(CloseReason::HandshakeFailed(rejection.to_string()));
            }
            Ok(Some(kms)) => {
                let Some(blob) = BASE64.decode(&kms.kms_cipher_text_key).ok() else {
                    self.violation(
                        ViolationKind::MalformedHandshakeResponse,
                        "KMSCipherTextKey is not base64".to_owned(),
                    );
                    self.close(CloseReason::HandshakeFailed(
                        "bad KMS ciphertext key".to_owned(),
                    ));
                    return;
                };
                let challenge = match request.requested_client_actions.get(1) {
                    Some(action) if kms.challenge_acknowledgement == Some(true) => {
                        action.kms_parameters().ok().and_then(|p| p.challenge)
                    }
                    _ => None,
                };
                let (session_id, target_id) = self
                    .kms_context
                    .as_ref()
                    .map_or(("", ""), |c| (c.session_id.as_str(), c.target_id.as_str()));
                let key_id = self
                    .agent
                    .as_ref()
                    .and_then(|a| a.kms_key_id.clone())
                    .unwrap_or_default();
                self.events
                    .push_back(Event::KmsDataKeyRequired(KmsRequest::Decrypt {
                        key_id,
                        ciphertext_blob: blob,
                        encryption_context: encryption_context(
                            session_id,
                            target_id,
                            challenge.as_deref(),
                        ),
                    }));
                let timeout = self
                    .agent
                    .as_ref()
                    .map_or(HANDSHAKE_TIMEOUT, |a| a.handshake_timeout);
                self.phase = Phase::AwaitingDecrypt {
                    client_version: response.client_version,
                    deadline: now + timeout,
                    started,
                };
            }
            Ok(None) => {
                self.complete_agent_handshake(now, started, response.client_version, "");
            }
        }
    }

    fn become_ready(&mut self, info: ReadyInfo) {
        self.events.push_back(Event::Ready(info.clone()));
        self.phase = Phase::Ready(Box::new(info));
    }

    fn flush_held(&mut self, now: Instant) {
        if let Some(size) = self.held_size.take() {
            let payload = serde_json::to_vec(&size).unwrap_or_default();
            self.push_stream(now, PayloadType::Size, payload);
        }
        while let Some((payload_type, payload)) = self.held.pop_front() {
            self.push_stream(now, payload_type, payload);
        }
    }

    fn queue_data(&mut self, now: Instant, payload_type: PayloadType, data: &[u8]) -> usize {
        let capacity = self.send_capacity();
        let accepted = data.len().min(capacity);
        for chunk in data[..accepted].chunks(self.limits.max_payload) {
            self.queue_message(now, payload_type, chunk.to_vec());
        }
        if accepted < data.len() {
            self.wants_writable = true;
        }
        accepted
    }

    fn queue_message(&mut self, now: Instant, payload_type: PayloadType, payload: Vec<u8>) {
        if payload.is_empty() || matches!(self.phase, Phase::Closed) {
            return;
        }
        if self.is_ready() {
            self.push_stream(now, payload_type, payload);
        } else {
            self.held.push_back((payload_type, payload));
        }
    }

    fn push_stream(&mut self, now: Instant, payload_type: PayloadType, payload: Vec<u8>) {
        let encrypt = match self.role {
            Role::Client => payload_type == PayloadType::Output,
            Role::Agent => matches!(
                payload_type,
                PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode
            ),
        };
        let payload = match self.crypto.as_mut() {
            Some(crypto) if encrypt => match crypto.encrypt(&payload) {
                Ok(sealed) => sealed,
                Err(e) => {
                    tracing::warn!(error = %e, "payload not sent: encryption failed");
                    return;
                }
            },
            _ => payload,
        };
        let message_type = self.outgoing_type();
        let role = self.role;
        let created_date = self.created_date(now);
        let id = MessageId::from_random_bytes(self.rng.bytes16());
        self.resend.push(|seq| {
            let flags = if role == Role::Agent && seq.0 == 0 {
                1
            } else {
                0
            };
            let message = ClientMessage {
                message_type,
                schema_version: SCHEMA_VERSION,
                created_date,
                sequence_number: seq,
                flags,
                message_id: id,
                payload_type,
                payload,
            };
            // Payloads are capped far below MAX_PAYLOAD_LEN and the type name is fixed.
            let frame = message.encode().unwrap_or_default();
            (frame, id.to_canonical_string())
        });
    }

    fn queue_ack(&mut self, now: Instant, message: &ClientMessage) {
        let mut payload = Vec::with_capacity(ACK_PAYLOAD_CAPACITY);
        AcknowledgeContent::write_json(
            message.message_type,
            message.message_id,
            message.sequence_number,
            &mut payload,
        );
        let ack = ClientMessage {
            message_type: MessageType::Acknowledge,
            schema_version: SCHEMA_VERSION,
            created_date: self.created_date(now),
            sequence_number: SequenceNumber(0),
            flags: ACK_FLAGS,
            message_id: MessageId::from_random_bytes(self.rng.bytes16()),
            payload_type: PayloadType::Null,
            payload,
        };
        if let Ok(frame) = ack.encode() {
            self.stats.acks_sent += 1;
            self.control.push_back(frame);
        }
    }

    fn resume_publication(&mut self) {
        if self.gate.set_publication(Publication::Running) {
            self.events.push_back(Event::Resumed);
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if !matches!(self.phase, Phase::Closed) {
            tracing::debug!(?reason, "session closed");
            self.phase = Phase::Closed;
            self.events.push_back(Event::Closed(reason));
        }
    }

    fn violation(&mut self, kind: ViolationKind, detail: String) {
        tracing::debug!(kind = kind.as_str(), %detail, "peer protocol violation");
        self.events
            .push_back(Event::Violation(Violation { kind, detail }));
    }

    fn reject(&mut self, kind: ViolationKind, detail: String) -> MessageError {
        let violation = Violation { kind, detail };
        self.events.push_back(Event::Violation(violation.clone()));
        MessageError::Rejected(violation)
    }

    fn encryption_overhead(&self) -> usize {
        if self.crypto.is_some() {
            ENCRYPTION_OVERHEAD
        } else {
            0
        }
    }

    fn created_date(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_millis() as u64;
        (self.epoch_millis + elapsed).max(1)
    }

    fn outgoing_type(&self) -> MessageType {
        match self.role {
            Role::Client => MessageType::InputStreamData,
            Role::Agent => MessageType::OutputStreamData,
        }
    }

    fn incoming_type(&self) -> MessageType {
        match self.role {
            Role::Client => MessageType::OutputStreamData,
            Role::Agent => MessageType::InputStreamData,
        }
    }
}

/// Stream payload chunk size (plugin `config.go` `StreamDataPayloadSize`).
pub const STREAM_PAYLOAD_SIZE: usize = 1024;
/// Official client buffer capacities (plugin `config.go` `OutgoingMessageBufferCapacity`,
/// `IncomingMessageBufferCapacity`).
pub const CLIENT_BUFFER_CAPACITY: usize = 10_000;
/// The client's cap on early (reordered) payload bytes: 16 MiB, far above what an honest
/// agent's window holds (its stream messages are 1 KiB, SPEC.md §5.9), far below what a
/// hostile one could otherwise make us keep (10,000 messages of up to 256 KiB).
pub const CLIENT_REORDER_BYTES: usize = 16 * 1024 * 1024;
/// The agent role's cap on early payload bytes (the emulator's, for tests).
pub const AGENT_REORDER_BYTES: usize = 64 * 1024 * 1024;
/// Agent buffer capacities (agent `agent/session/config/config.go`).
pub const AGENT_BUFFER_CAPACITY: usize = 100_000;
/// Agent handshake deadline per step (agent `datachannel.go` `handshakeTimeout`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Agent pause after each chunk read (agent read loops, SPEC.md §5.9).
pub const AGENT_PACING: Duration = Duration::from_millis(1);
/// Give up after this long without ack progress (SPEC.md §5.6 recommendation).
pub const CLIENT_GIVE_UP: Duration = Duration::from_secs(300);
/// Bytes of random challenge the agent encrypts (agent `datachannel.go`, SPEC.md §4.5).
const CHALLENGE_LEN: usize = 64;
/// Nonce and tag added to every encrypted payload (SPEC.md §7.4).
const ENCRYPTION_OVERHEAD: usize = 28;
/// HandshakeComplete text of encrypted sessions (agent `datachannel.go`).
const KMS_CUSTOMER_MESSAGE: &str = "This session is encrypted using AWS KMS.";
/// Flags of acknowledge messages (SPEC.md §3.2).
const ACK_FLAGS: u64 = 3;
/// Room for an ack's JSON: with a 32-byte type name and a 20-character sequence number it
/// comes to 209 bytes.
const ACK_PAYLOAD_CAPACITY: usize = 224;
/// Retransmissions of one message after which the agent role reports a missing ack...
const MISSING_ACK_RETRANSMISSIONS: u32 = 5;
/// ...provided it has also been unacknowledged this long since its first transmission (the
/// default of [`AgentConfig::missing_ack_after`]). A client whose receiver pushes back (a slow
/// TCP reader) legitimately holds its acks, as the official client does while it writes.
const MISSING_ACK_AGE: Duration = Duration::from_secs(5);
