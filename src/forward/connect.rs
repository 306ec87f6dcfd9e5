//! Starting and ending the sessions forwards and `ssh-proxy` run over: StartSession, open the
//! data channel, pump until the handshake is done (SPEC.md §2.7, §6.5); at the end, let
//! outstanding data be acknowledged, send the TerminateSession flag when the agent knows it
//! and call TerminateSession otherwise (§8.2).
//!
//! It must not touch local sockets or print: links own the local side, `cli` reports.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_protocol::{CloseReason, Event, Flag, ReadyInfo, Session};

use crate::aws::{AwsError, SessionCredentials, SsmClient, StartSessionRequest};
use crate::transport::{self, Lost, OpenError, Pump, Resilience, lifecycle};

/// Opens sessions of one kind (document and parameters) on one target.
#[derive(Clone, Debug)]
pub struct Connector {
    ssm: SsmClient,
    request: StartSessionRequest,
    handshake_timeout: Duration,
    resilience: Resilience,
    /// `Some` for [`Connector::adopting`]: the one session it may open, taken by the first
    /// [`Connector::connect`].
    adopted: Option<(String, Arc<Mutex<Option<SessionCredentials>>>)>,
}

/// A session whose handshake is complete. Receiving is off
/// ([`Session::set_receive_ready`]) until the caller's local side is ready.
#[derive(Debug)]
pub struct Connected {
    /// The session id, for messages and TerminateSession.
    pub session_id: String,
    /// The data channel, kept alive across drops.
    pub pump: Pump,
    /// The core, ready.
    pub session: Session,
    /// What the handshake established (agent version, properties).
    pub ready: ReadyInfo,
}

/// Why a session could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// StartSession failed.
    #[error(transparent)]
    Start(AwsError),
    /// The data channel could not be opened.
    #[error(transparent)]
    Open(OpenError),
    /// The agent did not complete the handshake in time.
    #[error("the agent did not start session {session_id} within {}", humantime::format_duration(*.after))]
    HandshakeTimeout {
        /// The session.
        session_id: String,
        /// The limit.
        after: Duration,
    },
    /// The websocket broke during the handshake and could not be restored.
    #[error("the data channel of session {session_id} was lost during the handshake")]
    Lost {
        /// The session.
        session_id: String,
        /// What happened.
        #[source]
        source: Lost,
    },
    /// The agent or the service ended the session before it was ready.
    #[error("session {session_id} ended before it started{}", if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    Ended {
        /// The session.
        session_id: String,
        /// The service's or the core's explanation.
        reason: String,
    },
}

impl Connector {
    /// Sessions from `request`, failing when the handshake takes longer than
    /// `handshake_timeout`, with the default keepalive and reconnection.
    pub fn new(ssm: SsmClient, request: StartSessionRequest, handshake_timeout: Duration) -> Self {
        Self {
            ssm,
            request,
            handshake_timeout,
            resilience: Resilience::default(),
            adopted: None,
        }
    }

    /// A connector for one session someone else started (`session-manager-plugin` mode: the
    /// AWS CLI called StartSession). The first [`Connector::connect`] opens it; later ones fail
    /// with [`ConnectError::Ended`], since that caller owns the decision to start sessions.
    pub fn adopting(
        ssm: SsmClient,
        request: StartSessionRequest,
        handshake_timeout: Duration,
        credentials: SessionCredentials,
    ) -> Self {
        Self {
            adopted: Some((
                credentials.session_id.clone(),
                Arc::new(Mutex::new(Some(credentials))),
            )),
            ..Self::new(ssm, request, handshake_timeout)
        }
    }

    /// The same, keeping data channels alive as `resilience` says.
    pub fn with_resilience(mut self, resilience: Resilience) -> Self {
        self.resilience = resilience;
        self
    }

    /// The StartSession request sessions are started with.
    pub fn request(&self) -> &StartSessionRequest {
        &self.request
    }

    /// Starts a session and runs its handshake.
    pub async fn connect(&self) -> Result<Connected, ConnectError> {
        let credentials = match &self.adopted {
            Some((adopted_id, slot)) => {
                // A poisoned lock means a panic elsewhere; the slot's content is still valid.
                let taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                let credentials = taken.ok_or_else(|| ConnectError::Ended {
                    session_id: adopted_id.clone(),
                    reason: "the session handed over by the AWS CLI has ended; start another \
                             with `aws ssm start-session`"
                        .to_owned(),
                })?;
                // Ours to end from here on, as if we had started it: the AWS CLI does not end
                // it when we exit.
                transport::ledger::adopted(&self.ssm, adopted_id);
                credentials
            }
            None => lifecycle::start(&self.ssm, &self.request)
                .await
                .map_err(ConnectError::Start)?,
        };
        let session_id = credentials.session_id.clone();
        // Ended if this call is dropped before the session is handed over.
        let unclaimed = lifecycle::Unclaimed::new(&self.ssm, &session_id);
        let result = async {
            let pump = lifecycle::open(&self.ssm, &credentials, self.resilience.clone())
                .await
                .map_err(ConnectError::Open)?;
            handshake(pump, &session_id, self.handshake_timeout).await
        }
        .await;
        if result.is_err() {
            self.terminate(&session_id).await;
        }
        unclaimed.claim();
        result
    }

    /// Calls TerminateSession, bounded; failures are logged only (the session may be gone).
    pub async fn terminate(&self, session_id: &str) {
        lifecycle::terminate(&self.ssm, session_id).await;
    }

    /// [`lifecycle::terminate_closed`]: TerminateSession for a session the service closed.
    pub async fn terminate_closed(&self, session_id: &str) {
        lifecycle::terminate_closed(&self.ssm, session_id).await;
    }
}

/// Ends `connected`'s session politely: waits up to `drain` for outstanding data to be
/// acknowledged, then sends the TerminateSession flag if the agent understands it and waits
/// briefly for its ack or `channel_closed` (SPEC.md §8.2); otherwise, or if that fails, calls
/// TerminateSession.
pub async fn finish(
    connector: &Connector,
    session_id: &str,
    pump: &mut Pump,
    session: &mut Session,
    agent_version: &str,
    drain: Duration,
) {
    let closed = pump_until(pump, session, drain, |s| !s.has_unacked()).await;
    let mut terminated = closed;
    if !closed && postern_protocol::version::client_sends_terminate_flag(agent_version) {
        pump.stop_resuming();
        session.send_flag(transport::now(), Flag::TerminateSession);
        // Keep acknowledging until the agent has ended the session: closing the websocket
        // at the flag's ack would leave its last messages unacknowledged.
        let ended = pump_until(pump, session, FLAG_GRACE, |_| false).await;
        terminated = ended || !session.has_unacked();
    }
    if terminated {
        transport::ledger::ended(session_id);
    } else {
        connector.terminate(session_id).await;
    }
    pump.close().await;
}

/// Pumps `session` until `done` holds, the agent closes the channel (returns true: the
/// session has ended), the websocket is lost or `limit` passes (false: the session may live
/// on, so the caller ends it). Events other than the end are dropped: the local side is gone.
async fn pump_until(
    pump: &mut Pump,
    session: &mut Session,
    limit: Duration,
    done: impl Fn(&Session) -> bool,
) -> bool {
    let deadline = transport::now() + limit;
    loop {
        let now = transport::now();
        if pump.flush(session, now).await.is_err() {
            return false;
        }
        while let Some(event) = session.poll_event() {
            match event {
                Event::ChannelClosed(_) => return true,
                Event::Closed(_) => return false,
                _ => {}
            }
        }
        if done(session) || now >= deadline {
            return false;
        }
        let wake = session.poll_timeout().map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            received = pump.recv(session) => {
                if received.is_err() {
                    return false;
                }
            }
            () = transport::sleep_until(Some(wake)) => session.handle_timeout(transport::now()),
        }
    }
}

async fn handshake(
    mut pump: Pump,
    session_id: &str,
    timeout: Duration,
) -> Result<Connected, ConnectError> {
    let started = transport::now();
    let mut session = lifecycle::client_core(started, None);
    // Until the local side is ready, stream data is neither delivered nor acknowledged; the
    // agent retransmits it (SPEC.md §6.5).
    session.set_receive_ready(started, false);
    let deadline = started + timeout;
    let lost = |source| ConnectError::Lost {
        session_id: session_id.to_owned(),
        source,
    };
    loop {
        let now = transport::now();
        pump.flush(&mut session, now).await.map_err(lost)?;
        while let Some(event) = session.poll_event() {
            match event {
                Event::Ready(ready) => {
                    tracing::info!(
                        session_id,
                        agent_version = ready.agent_version.as_deref().unwrap_or(""),
                        properties = %ready.properties,
                        "session ready"
                    );
                    return Ok(Connected {
                        session_id: session_id.to_owned(),
                        pump,
                        session,
                        ready,
                    });
                }
                Event::ChannelClosed(closed) => {
                    return Err(ConnectError::Ended {
                        session_id: session_id.to_owned(),
                        reason: closed.output.trim().to_owned(),
                    });
                }
                Event::Closed(reason) => {
                    return Err(ConnectError::Ended {
                        session_id: session_id.to_owned(),
                        reason: describe_close(&reason),
                    });
                }
                Event::KmsDataKeyRequired(_) => {
                    return Err(ConnectError::Ended {
                        session_id: session_id.to_owned(),
                        reason: "the agent asked for KMS encryption, which port sessions never \
                                 use"
                        .to_owned(),
                    });
                }
                Event::Violation(v) => {
                    tracing::warn!(kind = v.kind.as_str(), detail = %v.detail, "peer violation");
                }
                _ => {}
            }
        }
        if now >= deadline {
            return Err(ConnectError::HandshakeTimeout {
                session_id: session_id.to_owned(),
                after: timeout,
            });
        }
        let wake = session.poll_timeout().map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            received = pump.recv(&mut session) => received.map_err(lost)?,
            () = transport::sleep_until(Some(wake)) => session.handle_timeout(transport::now()),
        }
    }
}

/// A short text for a core close reason.
pub fn describe_close(reason: &CloseReason) -> String {
    match reason {
        CloseReason::ChannelClosed => "the service closed the channel".to_owned(),
        CloseReason::GaveUp(after) => format!(
            "the agent acknowledged nothing for {}",
            humantime::format_duration(*after)
        ),
        CloseReason::HandshakeTimeout => "the handshake timed out".to_owned(),
        CloseReason::HandshakeFailed(why) => format!("the handshake failed: {why}"),
        CloseReason::DecryptionFailed(why) => format!("a message did not decrypt: {why}"),
    }
}

/// How long to wait for the TerminateSession flag's ack or `channel_closed` (SPEC.md §8.2).
const FLAG_GRACE: Duration = Duration::from_secs(2);
