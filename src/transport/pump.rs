//! The websocket half of every session driver, and the one place that keeps a data channel
//! alive: it moves the core's transmits onto the websocket, feeds received frames into the
//! core, answers and sends pings, and when the websocket breaks (an error, a close frame, the
//! service's hourly recycle, a keepalive timeout) it calls ResumeSession, dials the stream URL
//! with the new token (new RequestId, same ClientId) and tells the core
//! ([`Session::handle_reconnect`]), with backoff and jitter, until a documented limit
//! (SPEC.md §2.4-2.6). Shared by the shell/exec driver, port forwarding and `ssh-proxy`.
//!
//! It must not decide what to send or when (the core does) or print (its [`Notifier`] does).
//! While the websocket is down the core is detached ([`Session::handle_disconnect`]): it
//! transmits nothing, keeps every unacknowledged message and replays it after the reconnect;
//! the peer does the same.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt as _, SinkExt, StreamExt};
use postern_protocol::Session;
use postern_protocol::codec::PAYLOAD_OFFSET;
use postern_protocol::keepalive::{Keepalive, KeepaliveAction};
use postern_protocol::reconnect::{Backoff, BackoffConfig};
use postern_protocol::session::STREAM_PAYLOAD_SIZE;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::aws::{AwsError, AwsErrorKind, SsmClient, StreamUrl};
use crate::transport::channel::{self, DataChannel, OpenError};

/// What happened to the websocket.
#[derive(Debug, thiserror::Error)]
pub enum ChannelFailure {
    /// A websocket error.
    #[error(transparent)]
    Websocket(#[from] tungstenite::Error),
    /// The peer closed the websocket.
    #[error("the service closed the websocket ({code}{})", if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    Closed {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// The stream ended without a close frame.
    #[error("the connection ended without a close frame")]
    Ended,
    /// Nothing arrived, not even a Pong, for this long after a Ping.
    #[error("the connection answered no keepalive ping for {}", crate::report::human_duration(*.0))]
    Unresponsive(Duration),
}

/// Why one reconnection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconnectError {
    /// ResumeSession failed.
    #[error(transparent)]
    Resume(AwsError),
    /// ResumeSession took too long.
    #[error("ResumeSession did not answer within {}", crate::report::human_duration(*.0))]
    ResumeTimeout(Duration),
    /// The new websocket could not be opened.
    #[error(transparent)]
    Open(OpenError),
    /// ResumeSession answered without a token.
    #[error("ResumeSession returned no token")]
    NotResumable,
}

/// Why the data channel is gone for good.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    /// The websocket broke and reconnecting is off (`--reconnect-attempts 0`) or pointless
    /// (the session had already ended).
    #[error("the data channel was lost")]
    Broken(#[source] ChannelFailure),
    /// Every reconnection attempt failed.
    #[error("gave up reconnecting after {attempts} attempts over {}", crate::report::human_duration(*.outage))]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Time since the websocket broke.
        outage: Duration,
        /// The last attempt's failure.
        #[source]
        last: ReconnectError,
    },
    /// ResumeSession refused in a way no retry changes (access denied, unknown session).
    #[error("the service refused to resume session {session_id}")]
    Refused {
        /// The session.
        session_id: String,
        /// The refusal.
        #[source]
        source: AwsError,
    },
    /// ResumeSession answered without a token: the session timed out or was terminated.
    #[error("the service no longer resumes session {session_id} (it timed out or was terminated)")]
    Expired {
        /// The session.
        session_id: String,
    },
    /// The pump already reported one of the above.
    #[error("the data channel is gone")]
    Gone,
}

/// A reconnection step, for the user (through the [`Notifier`]).
#[derive(Debug)]
pub enum Reconnection<'a> {
    /// The websocket broke; attempt `attempt` follows after `delay`.
    Lost {
        /// The session.
        session_id: &'a str,
        /// What broke.
        cause: &'a ChannelFailure,
        /// The attempt that comes next (1 for the first).
        attempt: u32,
    },
    /// An attempt failed; attempt `attempt` follows.
    Retrying {
        /// The session.
        session_id: &'a str,
        /// Why the last attempt failed.
        cause: &'a ReconnectError,
        /// The attempt that comes next.
        attempt: u32,
    },
    /// The data channel is back.
    Restored {
        /// The session.
        session_id: &'a str,
        /// Time from the break to the new websocket.
        outage: Duration,
    },
}

impl Reconnection<'_> {
    /// The session concerned.
    pub fn session_id(&self) -> &str {
        match self {
            Self::Lost { session_id, .. }
            | Self::Retrying { session_id, .. }
            | Self::Restored { session_id, .. } => session_id,
        }
    }
}

impl fmt::Display for Reconnection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lost { cause, attempt, .. } => {
                write!(
                    f,
                    "connection lost ({cause}), reconnecting (attempt {attempt})…"
                )
            }
            Self::Retrying { cause, attempt, .. } => {
                write!(
                    f,
                    "reconnecting (attempt {attempt}; the last one failed: {cause})…"
                )
            }
            Self::Restored { outage, .. } => {
                write!(
                    f,
                    "reconnected after {}",
                    crate::report::human_duration(*outage)
                )
            }
        }
    }
}

/// Tells the user about reconnections (the CLI prints through `report`).
#[derive(Clone)]
pub struct Notifier(Arc<dyn Fn(&Reconnection<'_>) + Send + Sync>);

impl Notifier {
    /// A notifier calling `notify` for every step.
    pub fn new(notify: impl Fn(&Reconnection<'_>) + Send + Sync + 'static) -> Self {
        Self(Arc::new(notify))
    }

    /// A notifier that only logs.
    pub fn silent() -> Self {
        Self::new(|step| tracing::info!(session_id = step.session_id(), %step, "reconnection"))
    }

    fn notify(&self, step: &Reconnection<'_>) {
        tracing::info!(session_id = step.session_id(), %step, "reconnection");
        (self.0)(step);
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Notifier")
    }
}

/// How a pump keeps its data channel: keepalive, reconnection limit, who hears about it.
#[derive(Clone, Debug)]
pub struct Resilience {
    /// Websocket Ping interval; `None`: no pings and no dead-connection detection.
    pub keepalive: Option<Duration>,
    /// Reconnection backoff and attempt limit (`max_attempts` 0: never reconnect).
    pub backoff: BackoffConfig,
    /// Where reconnection steps go.
    pub notifier: Notifier,
}

impl Default for Resilience {
    fn default() -> Self {
        Self {
            keepalive: Some(DEFAULT_KEEPALIVE),
            backoff: BackoffConfig::default(),
            notifier: Notifier::silent(),
        }
    }
}

/// What ResumeSession needs: the session and the client that started it. The client's
/// credentials provider refreshes expired credentials; nothing here holds static ones.
#[derive(Clone, Debug)]
pub struct ResumeTarget {
    /// The SSM client (its SDK configuration's credentials provider refreshes).
    pub ssm: SsmClient,
    /// The session.
    pub session_id: String,
    /// The stream URL, kept when ResumeSession returns none.
    pub stream_url: StreamUrl,
}

/// One session's websocket, kept alive across drops. See the module docs.
pub struct Pump {
    link: Link,
    target: ResumeTarget,
    keepalive: Keepalive,
    backoff: Backoff,
    notifier: Notifier,
    outage_since: Option<Instant>,
    reconnects: u64,
    /// What the websocket gave after a batch of frames, for the next [`Pump::recv`].
    deferred: Option<Turn>,
    /// While a paced agent streams: wait before reading the websocket again (see [`Hold`]).
    hold: Option<Hold>,
    /// When the last batch of frames was read.
    last_frames: Option<Instant>,
    /// Whether the socket's receive low-water mark is raised (see [`Hold`]).
    low_water: bool,
    /// Whether a broken websocket is resumed; off once the session is being ended.
    resuming: bool,
}

/// Read coalescing for a paced stream. The agent sends a full message (1 KiB of data), then
/// sleeps 1 ms, for as long as it has data (AGENT-THROUGHPUT.md; agent
/// `agent/session/plugins/port/port_basic.go`, `port_mux.go`, `shell/shell.go` `writePump`).
/// Waking for each one as it comes costs a context switch, a read and an ack write per KiB:
/// most of the CPU of a paced download. After a batch that ended with a full message and
/// arrived no faster than a pacing agent sends, the socket's receive low-water mark
/// (`SO_RCVLOWAT`) is raised to [`HOLD_MESSAGES`] full messages, so the kernel wakes us once
/// for that many, and a deadline [`READ_HOLD`] later reads whatever came (a stream's tail).
///
/// What it costs: a message of a stream in full flow reaches the local side up to
/// [`READ_HOLD`] later, and its ack leaves as much later. That stays inside the agent's
/// retransmission timeout: RTO = RTT + max(10 ms, 4·RTTVAR), where the smoothed RTT already
/// includes the hold's average delay (about half of it), so the RTO stays some 10 ms above the
/// oldest message's wait for holds well under 20 ms (agent `config.go` `ClockGranularity`,
/// `datachannel.go` `calculateRetransmissionTimeout`; SPEC.md §5.5). What it
/// does not touch: a short message (a keystroke's echo, the end of a burst) ends the hold, the
/// first message after a quiet spell is read at once, sending stream data ends the hold (the
/// answer to it is read at once), and a sender faster than a pacing agent is never held.
#[derive(Clone, Copy, Debug)]
struct Hold {
    until: Instant,
    /// Stream messages the session had sent when the hold began.
    sent: u64,
}

impl Hold {
    /// The hold after a batch of `frames` frames read at `now` (the last `last_len` bytes
    /// long), the previous batch read at `previous`.
    fn after(
        previous: Option<Instant>,
        now: Instant,
        frames: usize,
        last_len: usize,
        session: &Session,
    ) -> Option<Self> {
        let full = last_len >= PAYLOAD_OFFSET + STREAM_PAYLOAD_SIZE;
        // A pacing agent sends at most one message per millisecond: batches at least that far
        // apart, holding no more than two messages per millisecond between them (with slack
        // for timer jitter). A batch after a quiet spell is a start, held once.
        let since = previous.map_or(Duration::MAX, |p| now.saturating_duration_since(p));
        let paced = since >= AGENT_PACE
            && (frames as u128).saturating_mul(AGENT_PACE.as_micros() / 2)
                <= since.as_micros().saturating_add(AGENT_PACE.as_micros() / 2);
        (full && paced).then(|| Self {
            until: now + READ_HOLD,
            sent: session.stats().messages_sent,
        })
    }

    /// Whether to keep holding: not once the session sent stream data.
    fn applies(&self, session: &Session) -> bool {
        session.stats().messages_sent == self.sent
    }
}

/// Sets the websocket's TCP receive low-water mark: readiness (and wake-ups) only once `bytes`
/// are queued; a read still returns whatever is there. Best effort: on failure we are merely
/// woken more often.
fn set_low_water(ws: &DataChannel, bytes: usize) {
    use std::os::fd::AsRawFd as _;
    let tcp = match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp,
        MaybeTlsStream::Rustls(tls) => tls.get_ref().0,
        _ => return,
    };
    let value = libc::c_int::try_from(bytes).unwrap_or(1);
    // SAFETY: the descriptor is the open socket `tcp` borrows; `value` outlives the call and
    // its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            std::ptr::from_ref(&value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), bytes, "SO_RCVLOWAT not set");
    }
}

enum Link {
    Up(Box<DataChannel>),
    Down { retry_at: Instant },
    Dialing(Pin<Box<dyn Future<Output = Result<DataChannel, ReconnectError>> + Send>>),
    Gone,
}

/// What one turn of [`Pump::recv`] saw.
enum Turn {
    Frame(Bytes),
    Control,
    Broken(ChannelFailure),
    Timer,
}

impl Pump {
    /// A pump over `ws`, the session's first websocket; `seed` draws the backoff jitter.
    pub fn new(ws: DataChannel, target: ResumeTarget, resilience: Resilience, seed: u64) -> Self {
        Self {
            link: Link::Up(Box::new(ws)),
            target,
            keepalive: Keepalive::new(resilience.keepalive, now()),
            backoff: Backoff::new(resilience.backoff, seed),
            notifier: resilience.notifier,
            outage_since: None,
            reconnects: 0,
            deferred: None,
            hold: None,
            last_frames: None,
            low_water: false,
            resuming: true,
        }
    }

    /// The session this pump carries.
    pub fn session_id(&self) -> &str {
        &self.target.session_id
    }

    /// Successful reconnections so far.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// From now on a broken websocket is the end ([`Lost`]), not something to resume: the
    /// session is being ended (the TerminateSession flag is on its way), so a reconnection
    /// would only announce itself and then find the session gone; TerminateSession ends it.
    pub fn stop_resuming(&mut self) {
        self.resuming = false;
        if !self.is_up() {
            // A reconnection under way is given up too.
            self.link = Link::Gone;
        }
    }

    /// Whether the websocket is up now.
    pub fn is_up(&self) -> bool {
        matches!(self.link, Link::Up(_))
    }

    /// Sends every frame the session has ready, then flushes once. While the websocket is
    /// down the frames are dropped (the core replays them after the reconnect). `Err` only
    /// when the data channel is gone for good.
    pub async fn flush(&mut self, session: &mut Session, now: Instant) -> Result<(), Lost> {
        let Link::Up(ws) = &mut self.link else {
            while session.poll_transmit(now).is_some() {}
            return match self.link {
                Link::Gone => Err(Lost::Gone),
                _ => Ok(()),
            };
        };
        let mut sent = false;
        let mut failure = None;
        while let Some(transmit) = session.poll_transmit(now) {
            if let Err(e) = ws.feed(Message::binary(transmit.frame)).await {
                failure = Some(e);
                break;
            }
            sent = true;
        }
        if failure.is_none()
            && sent
            && let Err(e) = ws.flush().await
        {
            failure = Some(e);
        }
        match failure {
            Some(e) => {
                while session.poll_transmit(now).is_some() {}
                self.broke(session, e.into(), now)
            }
            None => Ok(()),
        }
    }

    /// The driver stopped calling [`Pump::recv`] while its local side caught up, and calls it
    /// again from `now`: the silence was the driver's, so the keepalive does not count it
    /// against the connection.
    pub fn reads_resumed(&mut self, now: Instant) {
        self.keepalive.handle_received(now);
    }

    /// Waits for the next thing the driver must look at: a data frame (already fed to the
    /// session), a broken websocket (reconnection scheduled) or a restored one. Pings, pongs,
    /// keepalive timers and reconnection attempts are handled inside. Cancel-safe: a dropped
    /// call loses nothing (an attempt in progress is kept for the next call). `Err` only when
    /// the data channel is gone for good.
    pub async fn recv(&mut self, session: &mut Session) -> Result<(), Lost> {
        loop {
            match &mut self.link {
                Link::Up(ws) => {
                    if self.hold.is_some_and(|hold| !hold.applies(session)) {
                        self.hold = None;
                    }
                    // The kernel wakes us for a paced stream's data only once a few messages
                    // are in; the hold's deadline reads a stream's tail.
                    let want = self.hold.is_some();
                    if want != self.low_water {
                        set_low_water(ws, if want { HOLD_BYTES } else { 1 });
                        self.low_water = want;
                    }
                    let wake = self.keepalive.poll_timeout();
                    let hold_until = self.hold.map(|hold| hold.until);
                    let turn = match self.deferred.take() {
                        Some(turn) => turn,
                        None => tokio::select! {
                            message = ws.next() => classify(message),
                            () = sleep_until(wake), if wake.is_some() => Turn::Timer,
                            () = sleep_until(hold_until), if hold_until.is_some() => {
                                // Read what came, however little: the low-water mark goes.
                                self.hold = None;
                                continue;
                            }
                        },
                    };
                    let now = now();
                    match turn {
                        Turn::Frame(data) => {
                            self.keepalive.handle_received(now);
                            deliver(session, now, &data);
                            let mut frames = 1;
                            let mut last_len = data.len();
                            // Frames that have already arrived are fed too, so the driver
                            // acknowledges them and writes their data in one go: one flush
                            // and one local write for many messages rather than one each.
                            // Anything else is kept for the next call.
                            for _ in 1..RECV_BATCH {
                                let Some(message) = ws.next().now_or_never() else {
                                    break;
                                };
                                match classify(message) {
                                    Turn::Frame(data) => {
                                        deliver(session, now, &data);
                                        frames += 1;
                                        last_len = data.len();
                                    }
                                    other => {
                                        self.deferred = Some(other);
                                        break;
                                    }
                                }
                            }
                            self.hold =
                                Hold::after(self.last_frames, now, frames, last_len, session);
                            self.last_frames = Some(now);
                            return Ok(());
                        }
                        Turn::Control => {
                            self.keepalive.handle_received(now);
                            // tungstenite queued the Pong; make sure it leaves now.
                            if let Err(e) = ws.flush().await {
                                self.broke(session, e.into(), now)?;
                                return Ok(());
                            }
                        }
                        Turn::Broken(cause) => {
                            self.broke(session, cause, now)?;
                            return Ok(());
                        }
                        Turn::Timer => match self.keepalive.handle_timeout(now) {
                            Some(KeepaliveAction::SendPing) => {
                                tracing::trace!("keepalive ping");
                                let ping = Message::Ping(KEEPALIVE_PAYLOAD.to_vec().into());
                                if let Err(e) = ws.send(ping).await {
                                    self.broke(session, e.into(), now)?;
                                    return Ok(());
                                }
                            }
                            Some(KeepaliveAction::Dead(after)) => {
                                self.broke(session, ChannelFailure::Unresponsive(after), now)?;
                                return Ok(());
                            }
                            None => {}
                        },
                    }
                }
                Link::Down { retry_at } => {
                    sleep_until(Some(*retry_at)).await;
                    self.link = Link::Dialing(Box::pin(reconnect(self.target.clone())));
                }
                Link::Dialing(attempt) => {
                    let result = attempt.as_mut().await;
                    let now = now();
                    match result {
                        Ok(ws) => {
                            self.restored(session, ws, now);
                            return Ok(());
                        }
                        Err(e) => self.attempt_failed(e, now)?,
                    }
                }
                Link::Gone => return Err(Lost::Gone),
            }
        }
    }

    /// Closes the websocket politely (bounded); the pump is gone afterwards.
    pub async fn close(&mut self) {
        if let Link::Up(ws) = &mut self.link {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, (**ws).close(None)).await;
        }
        self.link = Link::Gone;
    }

    fn broke(
        &mut self,
        session: &mut Session,
        cause: ChannelFailure,
        now: Instant,
    ) -> Result<(), Lost> {
        tracing::info!(session_id = %self.target.session_id, %cause, "data channel broke");
        // Whatever the broken websocket still had to say is moot.
        self.deferred = None;
        self.hold = None;
        if session.is_closed() || self.backoff.config().max_attempts == 0 || !self.resuming {
            self.link = Link::Gone;
            return Err(Lost::Broken(cause));
        }
        // The core keeps everything unacked and holds its clocks until the reconnect.
        session.handle_disconnect(now);
        self.outage_since.get_or_insert(now);
        // The first attempt follows at once: most drops (a recycle, a proxy timeout) leave
        // the network fine. Later ones back off.
        self.link = Link::Down { retry_at: now };
        self.notifier.notify(&Reconnection::Lost {
            session_id: &self.target.session_id,
            cause: &cause,
            attempt: 1,
        });
        Ok(())
    }

    fn attempt_failed(&mut self, error: ReconnectError, now: Instant) -> Result<(), Lost> {
        let session_id = self.target.session_id.clone();
        tracing::info!(%session_id, %error, "reconnection attempt failed");
        let outage = now.saturating_duration_since(self.outage_since.unwrap_or(now));
        match error {
            ReconnectError::NotResumable => {
                self.link = Link::Gone;
                return Err(Lost::Expired { session_id });
            }
            ReconnectError::Resume(source) if is_fatal(&source) => {
                self.link = Link::Gone;
                return Err(Lost::Refused { session_id, source });
            }
            _ => {}
        }
        // Attempt 1 went out at once; the backoff spaces the ones after it.
        let made = self.backoff.attempts() + 1;
        let delay = match self.backoff.next_delay() {
            Some(delay) if made < self.backoff.config().max_attempts => delay,
            _ => {
                self.link = Link::Gone;
                return Err(Lost::GaveUp {
                    attempts: made,
                    outage,
                    last: error,
                });
            }
        };
        self.link = Link::Down {
            retry_at: now + delay,
        };
        self.notifier.notify(&Reconnection::Retrying {
            session_id: &session_id,
            cause: &error,
            attempt: made + 1,
        });
        Ok(())
    }

    fn restored(&mut self, session: &mut Session, ws: DataChannel, now: Instant) {
        let outage = now.saturating_duration_since(self.outage_since.take().unwrap_or(now));
        self.link = Link::Up(Box::new(ws));
        self.hold = None;
        self.low_water = false;
        self.keepalive.reset(now);
        self.backoff.reset();
        self.reconnects += 1;
        session.handle_reconnect(now);
        self.notifier.notify(&Reconnection::Restored {
            session_id: &self.target.session_id,
            outage,
        });
    }
}

impl fmt::Debug for Pump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let link = match self.link {
            Link::Up(_) => "up",
            Link::Down { .. } => "down",
            Link::Dialing(_) => "dialing",
            Link::Gone => "gone",
        };
        f.debug_struct("Pump")
            .field("session_id", &self.target.session_id)
            .field("link", &link)
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

/// One attempt: ResumeSession for a new token, then the websocket with its open frame.
async fn reconnect(target: ResumeTarget) -> Result<DataChannel, ReconnectError> {
    let resumed = tokio::time::timeout(
        RESUME_TIMEOUT,
        target
            .ssm
            .resume_session(&target.session_id, &target.stream_url),
    )
    .await
    .map_err(|_| ReconnectError::ResumeTimeout(RESUME_TIMEOUT))?
    .map_err(ReconnectError::Resume)?;
    let Some(credentials) = resumed else {
        return Err(ReconnectError::NotResumable);
    };
    tracing::debug!(session_id = %target.session_id, url = %credentials.stream_url, "session resumed");
    channel::open(
        credentials.stream_url.expose(),
        credentials.token.expose(),
        REOPEN_TIMEOUT,
    )
    .await
    .map_err(ReconnectError::Open)
}

/// Refusals that no retry changes. Credential errors are retried: the provider refreshes.
fn is_fatal(error: &AwsError) -> bool {
    matches!(
        error.kind,
        AwsErrorKind::AccessDenied | AwsErrorKind::TargetNotConnected
    ) || error.code() == Some("DoesNotExistException")
}

fn classify(message: Option<Result<Message, tungstenite::Error>>) -> Turn {
    match message {
        Some(Ok(Message::Binary(data))) => Turn::Frame(data),
        Some(Ok(Message::Text(text))) => Turn::Frame(Bytes::copy_from_slice(text.as_bytes())),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Turn::Control,
        Some(Ok(Message::Close(frame))) => {
            let (code, reason) = frame
                .map(|f| (u16::from(f.code), f.reason.to_string()))
                .unwrap_or((1005, String::new()));
            Turn::Broken(ChannelFailure::Closed { code, reason })
        }
        Some(Err(e)) => Turn::Broken(e.into()),
        None => Turn::Broken(ChannelFailure::Ended),
    }
}

/// Feeds one frame to the session; a rejected frame is logged and dropped (the core reports
/// it as a violation too).
pub fn deliver(session: &mut Session, now: Instant, frame: &[u8]) {
    if let Err(e) = session.handle_message(now, frame) {
        tracing::debug!(error = %e, "dropped a frame");
    }
}

/// Sleeps until `deadline`, or forever when there is none.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// The drivers' clock: tokio's, so tests with a paused clock control it.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Default websocket Ping interval: well inside the 60 s idle timeouts of common NATs, load
/// balancers and proxies, and the agent's own 54 s (agent `config.go`); a dead connection is
/// noticed within two intervals.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(20);
/// The official client's Ping payload (plugin `src/communicator/websocketchannel.go`).
const KEEPALIVE_PAYLOAD: &[u8] = b"keepalive";
/// How long one ResumeSession call may take.
const RESUME_TIMEOUT: Duration = Duration::from_secs(20);
/// How long re-dialling the websocket may take.
const REOPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Frames fed to the session by one [`Pump::recv`] at most (when they have already arrived):
/// 64 agent messages of up to 1 KiB of stream data each.
const RECV_BATCH: usize = 64;
/// Full agent messages per wake-up while a paced stream flows (see [`Hold`]). Every wake-up
/// costs a context switch, a websocket read and an ack write whatever it carries: six halve a
/// paced download's wake-ups against three (its system calls fell from ~1150 to ~700 per MB).
const HOLD_MESSAGES: usize = 6;
/// The receive low-water mark for [`HOLD_MESSAGES`] full messages (their websocket framing
/// comes on top).
const HOLD_BYTES: usize = HOLD_MESSAGES * (PAYLOAD_OFFSET + STREAM_PAYLOAD_SIZE);
/// How long a held stream may go unread: [`HOLD_MESSAGES`] of the agent's 1 ms pauses, with
/// room for its timer's overshoot (six took 6.2-6.6 ms from the emulator, rarely 9 ms). A hold
/// cut short costs two `setsockopt` calls and an extra wake-up.
const READ_HOLD: Duration = Duration::from_millis(8);
/// The agent's pause after each message it sends (agent `port_basic.go`, `shell.go`).
const AGENT_PACE: Duration = Duration::from_millis(1);
/// How long a polite close may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use postern_protocol::PayloadType;
    use postern_protocol::session::Role;
    use postern_protocol::testkit::scripted::ScriptedPeer;

    use crate::transport::lifecycle::client_core;

    const FULL: usize = PAYLOAD_OFFSET + STREAM_PAYLOAD_SIZE;

    /// A client session the agent has started (a legacy shell: its first output makes it
    /// ready), with its agent.
    fn ready_session(now: Instant) -> (Session, ScriptedPeer) {
        let mut session = client_core(now, None);
        let mut agent = ScriptedPeer::new(Role::Agent, 7);
        let frame = agent.stream(PayloadType::Output, &[b'x'; STREAM_PAYLOAD_SIZE]);
        assert_eq!(frame.len(), FULL, "a full agent message is {FULL} bytes");
        session.handle_message(now, &frame).unwrap();
        while session.poll_transmit(now).is_some() {}
        while session.poll_event().is_some() {}
        (session, agent)
    }

    #[test]
    fn a_full_message_after_a_quiet_spell_holds_the_next_read_and_a_short_one_does_not() {
        let now = Instant::now();
        let (session, _) = ready_session(now);
        let hold = Hold::after(None, now, 1, FULL, &session).expect("held");
        assert_eq!(hold.until, now + READ_HOLD);
        assert!(Hold::after(None, now, 1, FULL - 1, &session).is_none());
        // A keystroke's echo, however it arrives, is read at once.
        assert!(Hold::after(Some(now - READ_HOLD), now, 1, 200, &session).is_none());
    }

    #[test]
    fn a_paced_stream_stays_held_and_a_faster_sender_is_never_held() {
        let now = Instant::now();
        let (session, _) = ready_session(now);
        // Three messages in the three milliseconds of a hold: the agent's pace.
        assert!(Hold::after(Some(now - READ_HOLD), now, 3, FULL, &session).is_some());
        // Batches closer together than the agent's pause, or more messages than it sends.
        let soon = now - Duration::from_micros(300);
        assert!(Hold::after(Some(soon), now, 1, FULL, &session).is_none());
        assert!(Hold::after(Some(now - READ_HOLD), now, 20, FULL, &session).is_none());
        assert!(Hold::after(Some(now - READ_HOLD), now, 64, FULL, &session).is_none());
    }

    #[test]
    fn sending_stream_data_ends_a_hold() {
        let start = now();
        let (mut session, _) = ready_session(start);
        let hold = Hold::after(None, start, 1, FULL, &session).expect("held");
        assert!(hold.applies(&session));
        // The answer to what we send must not wait.
        assert_eq!(session.send_output(start, b"request"), 7);
        assert!(session.poll_transmit(start).is_some());
        assert!(!hold.applies(&session));
    }
}
