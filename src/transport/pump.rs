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
use postern_protocol::keepalive::{Keepalive, KeepaliveAction};
use postern_protocol::reconnect::{Backoff, BackoffConfig};
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
    #[error("the connection answered no keepalive ping for {}", humantime::format_duration(*.0))]
    Unresponsive(Duration),
}

/// Why one reconnection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconnectError {
    /// ResumeSession failed.
    #[error(transparent)]
    Resume(AwsError),
    /// ResumeSession took too long.
    #[error("ResumeSession did not answer within {}", humantime::format_duration(*.0))]
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
    #[error("gave up reconnecting after {attempts} attempts over {}", humantime::format_duration(*.outage))]
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
                let shown = Duration::from_millis(outage.as_millis() as u64);
                write!(f, "reconnected after {}", humantime::format_duration(shown))
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

    /// Waits for the next thing the driver must look at: a data frame (already fed to the
    /// session), a broken websocket (reconnection scheduled) or a restored one. Pings, pongs,
    /// keepalive timers and reconnection attempts are handled inside. Cancel-safe: a dropped
    /// call loses nothing (an attempt in progress is kept for the next call). `Err` only when
    /// the data channel is gone for good.
    pub async fn recv(&mut self, session: &mut Session) -> Result<(), Lost> {
        loop {
            match &mut self.link {
                Link::Up(ws) => {
                    let wake = self.keepalive.poll_timeout();
                    let turn = match self.deferred.take() {
                        Some(turn) => turn,
                        None => tokio::select! {
                            message = ws.next() => classify(message),
                            () = sleep_until(wake), if wake.is_some() => Turn::Timer,
                        },
                    };
                    let now = now();
                    match turn {
                        Turn::Frame(data) => {
                            self.keepalive.handle_received(now);
                            deliver(session, now, &data);
                            // Frames that have already arrived are fed too, so the driver
                            // acknowledges them and writes their data in one go: one flush
                            // and one local write for many messages rather than one each.
                            // Anything else is kept for the next call.
                            for _ in 1..RECV_BATCH {
                                let Some(message) = ws.next().now_or_never() else {
                                    break;
                                };
                                match classify(message) {
                                    Turn::Frame(data) => deliver(session, now, &data),
                                    other => {
                                        self.deferred = Some(other);
                                        break;
                                    }
                                }
                            }
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
        if session.is_closed() || self.backoff.config().max_attempts == 0 {
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
/// How long a polite close may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
