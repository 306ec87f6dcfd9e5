//! `Pair`: a client-role and an agent-role [`Session`] joined by a simulated link with a virtual
//! clock. The link drops, duplicates, reorders and delays frames from a seed, and breaks for
//! scheduled reconnects and outages, so every run replays exactly. A scenario that never goes idle fails ([`Pair::run_until_idle`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use crate::rng::SeededRng;
use crate::session::{DataKey, Event, KmsRequest, Session, SessionConfig};

/// How the simulated link mistreats frames (applied independently in each direction).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Base one-way latency.
    pub latency: Duration,
    /// Extra random delay in `[0, jitter)`; larger than the gap between frames, it reorders.
    pub jitter: Duration,
    /// Probability that a frame is lost.
    pub drop: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
}

impl LinkConfig {
    /// A perfect link with `latency`.
    pub fn perfect(latency: Duration) -> Self {
        Self {
            latency,
            jitter: Duration::ZERO,
            drop: 0.0,
            duplicate: 0.0,
        }
    }

    /// A random hostile link drawn from `rng`: up to 20% loss, 10% duplicates, 40 ms jitter.
    pub fn random(rng: &mut SeededRng) -> Self {
        let unit = |rng: &mut SeededRng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        Self {
            latency: Duration::from_millis(1 + rng.next_u64() % 30),
            jitter: Duration::from_millis(rng.next_u64() % 40),
            drop: unit(rng) * 0.2,
            duplicate: unit(rng) * 0.1,
        }
    }
}

/// Which session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// The client-role session.
    Client,
    /// The agent-role session.
    Agent,
}

/// A frame on the simulated wire: (arrival, tiebreak, destination, bytes).
type WireFrame = (Instant, u64, Side, Vec<u8>);

/// Two sessions, a link and a virtual clock.
pub struct Pair {
    /// The client-role session.
    pub client: Session,
    /// The agent-role session.
    pub agent: Session,
    /// Virtual now.
    pub now: Instant,
    link: LinkConfig,
    rng: SeededRng,
    /// Frames on the wire: (arrival, tiebreak, destination, frame).
    wire: BinaryHeap<Reverse<WireFrame>>,
    counter: u64,
    /// Bytes the client still has to hand to its session (fed as capacity allows).
    pub client_outbox: VecDeque<u8>,
    /// Bytes the agent still has to hand to its session.
    pub agent_outbox: VecDeque<u8>,
    /// Output delivered to the client.
    pub client_received: Vec<u8>,
    /// Output delivered to the agent.
    pub agent_received: Vec<u8>,
    /// Every non-output event seen by the client.
    pub client_events: Vec<Event>,
    /// Every non-output event seen by the agent.
    pub agent_events: Vec<Event>,
    /// Frames put on the wire (before loss), per direction: (client→agent, agent→client).
    pub frames_sent: (u64, u64),
    /// Scheduled reconnects: at these instants both sessions see `handle_reconnect` and every
    /// frame on the wire is lost.
    pub reconnects: Vec<Instant>,
    /// Scheduled outages (start, length): at the start every frame on the wire is lost and
    /// both sessions see `handle_disconnect` (a broken websocket, as the drivers report it);
    /// frames sent meanwhile are lost too; at the end both sessions see `handle_reconnect`.
    pub outages: Vec<(Instant, Duration)>,
    down_until: Option<Instant>,
}

impl Pair {
    /// Builds both sessions at a common virtual start.
    pub fn new(client: SessionConfig, agent: SessionConfig, link: LinkConfig, seed: u64) -> Self {
        // The origin is arbitrary; nothing below reads the clock again.
        let now = Instant::now();
        Self {
            client: Session::new(client, now),
            agent: Session::new(agent, now),
            now,
            link,
            rng: SeededRng::new(seed ^ 0x5eed),
            wire: BinaryHeap::new(),
            counter: 0,
            client_outbox: VecDeque::new(),
            agent_outbox: VecDeque::new(),
            client_received: Vec::new(),
            agent_received: Vec::new(),
            client_events: Vec::new(),
            agent_events: Vec::new(),
            frames_sent: (0, 0),
            reconnects: Vec::new(),
            outages: Vec::new(),
            down_until: None,
        }
    }

    /// Runs until nothing is on the wire, nothing is left to send and no timer is armed;
    /// returns `Err` with a description when `max_steps` pass first.
    pub fn run_until_idle(&mut self, max_steps: usize) -> Result<usize, String> {
        for step in 0..max_steps {
            if !self.step() {
                return Ok(step);
            }
        }
        Err(format!(
            "not idle after {max_steps} steps: wire={} client_outbox={} agent_outbox={} \
             client_unacked={} agent_unacked={} client_timeout={:?} agent_timeout={:?}",
            self.wire.len(),
            self.client_outbox.len(),
            self.agent_outbox.len(),
            self.client.has_unacked(),
            self.agent.has_unacked(),
            self.client.poll_timeout().map(|t| t - self.now),
            self.agent.poll_timeout().map(|t| t - self.now),
        ))
    }

    /// One step: feed outboxes, drain transmits onto the wire, then advance the clock to the
    /// next arrival or timer and process it. Returns false when idle.
    pub fn step(&mut self) -> bool {
        self.feed(Side::Client);
        self.feed(Side::Agent);
        self.drain(Side::Client);
        self.drain(Side::Agent);
        let next_arrival = self.wire.peek().map(|Reverse((t, ..))| *t);
        let next_timer = [self.client.poll_timeout(), self.agent.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let next_reconnect = self.reconnects.iter().copied().min();
        let next_outage = self.outages.iter().map(|(start, _)| *start).min();
        let Some(next) = [
            next_arrival,
            next_timer,
            next_reconnect,
            next_outage,
            self.down_until,
        ]
        .into_iter()
        .flatten()
        .min() else {
            return false;
        };
        if next > self.now {
            self.now = next;
        }
        if let Some(until) = self.down_until
            && until <= self.now
        {
            self.down_until = None;
            self.client.handle_reconnect(self.now);
            self.agent.handle_reconnect(self.now);
        }
        if let Some(i) = self
            .outages
            .iter()
            .position(|(start, _)| *start <= self.now)
        {
            let (_, length) = self.outages.swap_remove(i);
            self.wire.clear();
            self.client.handle_disconnect(self.now);
            self.agent.handle_disconnect(self.now);
            let until = self.now + length;
            self.down_until = Some(self.down_until.map_or(until, |d| d.max(until)));
        }
        if next_reconnect.is_some_and(|t| t <= self.now) {
            self.reconnects.retain(|&t| t > self.now);
            self.wire.clear();
            self.client.handle_reconnect(self.now);
            self.agent.handle_reconnect(self.now);
        }
        while let Some(Reverse((t, ..))) = self.wire.peek() {
            if *t > self.now {
                break;
            }
            let Some(Reverse((_, _, side, frame))) = self.wire.pop() else {
                break;
            };
            let session = match side {
                Side::Client => &mut self.client,
                Side::Agent => &mut self.agent,
            };
            // Rejections surface as violation events, which the tests inspect.
            let _ = session.handle_message(self.now, &frame);
            self.drain(Side::Client);
            self.drain(Side::Agent);
        }
        self.client.handle_timeout(self.now);
        self.agent.handle_timeout(self.now);
        true
    }

    fn feed(&mut self, side: Side) {
        let (session, outbox) = match side {
            Side::Client => (&mut self.client, &mut self.client_outbox),
            Side::Agent => (&mut self.agent, &mut self.agent_outbox),
        };
        if outbox.is_empty() || session.is_closed() {
            return;
        }
        let (a, b) = outbox.as_slices();
        let chunk = if a.is_empty() { b } else { a };
        let take = chunk.len().min(4096);
        let accepted = session.send_output(self.now, &chunk[..take]);
        outbox.drain(..accepted);
    }

    fn drain(&mut self, side: Side) {
        let now = self.now;
        loop {
            let session = match side {
                Side::Client => &mut self.client,
                Side::Agent => &mut self.agent,
            };
            let Some(transmit) = session.poll_transmit(now) else {
                break;
            };
            let destination = match side {
                Side::Client => {
                    self.frames_sent.0 += 1;
                    Side::Agent
                }
                Side::Agent => {
                    self.frames_sent.1 += 1;
                    Side::Client
                }
            };
            self.put_on_wire(destination, transmit.frame);
        }
        let mut kms_answered = false;
        loop {
            let (session, received, events) = match side {
                Side::Client => (
                    &mut self.client,
                    &mut self.client_received,
                    &mut self.client_events,
                ),
                Side::Agent => (
                    &mut self.agent,
                    &mut self.agent_received,
                    &mut self.agent_events,
                ),
            };
            let Some(event) = session.poll_event() else {
                break;
            };
            match event {
                Event::Output(bytes) => received.extend_from_slice(&bytes),
                Event::KmsDataKeyRequired(request) => {
                    // The fake KMS: one data key, whose "ciphertext" is a fixed blob.
                    let answer = match &request {
                        KmsRequest::GenerateDataKey { .. } => Ok(fake_data_key()),
                        KmsRequest::Decrypt {
                            ciphertext_blob, ..
                        } if *ciphertext_blob == FAKE_KMS_BLOB => Ok(fake_data_key()),
                        KmsRequest::Decrypt { .. } => Err("InvalidCiphertextException".to_owned()),
                    };
                    events.push(Event::KmsDataKeyRequired(request));
                    session.provide_data_key(now, answer);
                    kms_answered = true;
                }
                other => events.push(other),
            }
        }
        if kms_answered {
            // The answer queued handshake frames: send them now.
            self.drain(side);
        }
    }

    fn put_on_wire(&mut self, destination: Side, frame: Vec<u8>) {
        if self.down_until.is_some() || self.chance(self.link.drop) {
            return;
        }
        let copies = if self.chance(self.link.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter_ns = self.link.jitter.as_nanos() as u64;
            let extra = if jitter_ns == 0 {
                0
            } else {
                self.rng.next_u64() % jitter_ns
            };
            let arrival = self.now + self.link.latency + Duration::from_nanos(extra);
            self.counter += 1;
            self.wire
                .push(Reverse((arrival, self.counter, destination, frame.clone())));
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// The fake KMS's data key: bytes 0..64.
pub fn fake_data_key() -> DataKey {
    DataKey {
        plaintext: (0u8..64).collect(),
        ciphertext_blob: FAKE_KMS_BLOB.to_vec(),
    }
}

/// The fake KMS's ciphertext blob for [`fake_data_key`].
pub const FAKE_KMS_BLOB: &[u8] = b"fake-kms-ciphertext-blob";
