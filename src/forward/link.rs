//! What the mux and basic links share: the context a link runs in, how it reports to its pool
//! and to the user, and the pacing bookkeeping of upload bytes.
//!
//! A link is one SSM session carrying local connections; it pumps, the core decides.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use postern_protocol::{ChannelClosed, Limits, Session};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};

use crate::forward::Connector;
use crate::forward::connect::{ConnectError, finish};
use crate::forward::traffic::Traffic;
use crate::transport::Pump;

/// Something the user should hear about while forwards run (printed by `cli` via `report`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The agent could not connect to the destination for one connection.
    ConnectToPortError {
        /// The forward's remote end.
        remote: String,
        /// The target.
        target: String,
        /// The session.
        session_id: String,
    },
    /// A session ended or failed; connections on it were closed.
    SessionEnded {
        /// The target.
        target: String,
        /// The session.
        session_id: String,
        /// Why.
        reason: String,
    },
    /// An extra session could not be started; connections go to the others or are closed.
    SessionFailed {
        /// The target.
        target: String,
        /// What went wrong, with its causes.
        reason: String,
    },
    /// A local connection was accepted (`session-manager-plugin` mode announces the first).
    ConnectionAccepted {
        /// The forward's local address.
        local: String,
    },
    /// A local connection was refused because no session could carry it.
    ConnectionDropped {
        /// The forward's local address.
        local: String,
    },
    /// A SOCKS CONNECT was answered with a failure.
    SocksRefused {
        /// The SOCKS listener's address.
        listener: String,
        /// The requested `host:port` (a client's string: escape before printing).
        destination: String,
        /// The target.
        target: String,
        /// The reply sent, in RFC 1928's words.
        reply: &'static str,
        /// Why (may carry AWS or agent text: escape before printing).
        reason: String,
    },
}

/// A local connection handed to a pool: a `-L` connection, or a SOCKS connection waiting for
/// its reply.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The local socket.
    pub(crate) stream: TcpStream,
    /// Bytes the client sent before its connection was handed over (sent first).
    pub(crate) early: Vec<u8>,
    /// For a SOCKS connection: how to answer once the destination's fate is known.
    pub(crate) answer: Option<Answer>,
}

/// The reply of a connection that waits to learn whether its destination was reached: given
/// the outcome, the bytes written to the local socket before any data (or before it closes).
pub(crate) struct Answer(Box<dyn FnOnce(Outcome<'_>) -> Vec<u8> + Send>);

/// What became of a connection's destination, as far as the link can tell.
#[derive(Debug)]
pub(crate) enum Outcome<'a> {
    /// The destination answered, or nothing said otherwise in time.
    Connected,
    /// The agent could not connect to the destination (ConnectToPortError).
    ConnectToPortError {
        /// The session.
        session_id: &'a str,
    },
    /// The session ended before the destination answered.
    SessionEnded(&'a str),
    /// No session could be started for it.
    NoSession(&'a ConnectError),
}

impl Incoming {
    /// A connection that needs no answer.
    pub(crate) fn plain(stream: TcpStream) -> Self {
        Self {
            stream,
            early: Vec::new(),
            answer: None,
        }
    }

    /// Closes the connection, first writing its failure reply if it waits for one. The reply
    /// is a few bytes on a socket nothing was written to, so a non-blocking write takes it.
    pub(crate) fn refuse(self, outcome: Outcome<'_>) {
        if let Some(answer) = self.answer {
            let reply = answer.reply(outcome);
            let _ = self.stream.try_write(&reply);
        }
    }
}

impl Answer {
    /// An answer computed by `reply`.
    pub(crate) fn new(reply: impl FnOnce(Outcome<'_>) -> Vec<u8> + Send + 'static) -> Self {
        Self(Box::new(reply))
    }

    /// The reply bytes for `outcome`.
    pub(crate) fn reply(self, outcome: Outcome<'_>) -> Vec<u8> {
        (self.0)(outcome)
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Answer")
    }
}

/// What a link needs besides its session.
#[derive(Clone, Debug)]
pub(crate) struct LinkContext {
    /// Restarts nothing; used to end the session (TerminateSession API fallback).
    pub(crate) connector: Connector,
    /// Where notices go.
    pub(crate) notices: mpsc::UnboundedSender<Notice>,
    /// The forward's remote end, for notices.
    pub(crate) remote: String,
    /// Becomes true when the process is stopping.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Woken when a link's load drops or the link ends.
    pub(crate) pool_wake: Arc<Notify>,
    /// Counters for the status line.
    pub(crate) traffic: Arc<Traffic>,
}

/// The pool's view of a running link. Dropping it asks the link to end its session politely.
#[derive(Debug)]
pub(crate) struct LinkHandle {
    /// New local connections for the link. Closed when the link ended.
    pub(crate) conns: mpsc::UnboundedSender<Incoming>,
    /// Connections assigned and not yet closed (the pool adds, the link subtracts).
    pub(crate) load: Arc<AtomicUsize>,
    /// Bytes the link has received for its connections, ever (the link adds; mux links only).
    pub(crate) delivered: Arc<AtomicU64>,
    /// `delivered` at the pool's last sample.
    pub(crate) sampled: u64,
    /// Bytes per second delivered between the pool's last two samples.
    pub(crate) rate: f64,
    /// The link has stopped acknowledging because its local sockets fell behind (a client that
    /// does not read): with smux v1 every stream of the session waits, so new connections
    /// belong elsewhere (the link sets it; mux links only).
    pub(crate) stalled: Arc<AtomicBool>,
    /// The pool has logged the stall (after its delivery rate fell).
    pub(crate) stall_noted: bool,
    /// When the pool last gave the link a connection.
    pub(crate) assigned_at: Option<Instant>,
    /// Since when the link has carried no connection.
    pub(crate) idle_since: Option<Instant>,
}

impl LinkHandle {
    /// Whether the link still runs.
    pub(crate) fn is_alive(&self) -> bool {
        !self.conns.is_closed()
    }

    /// Connections on the link.
    pub(crate) fn load(&self) -> usize {
        self.load.load(Ordering::Acquire)
    }

    /// Whether the link has stopped taking data for its connections.
    pub(crate) fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }
}

/// Bytes handed to `session` and not yet acknowledged, plus `queued` bytes waiting to be
/// handed over. Counts whole messages, so small writes count as full ones: conservative.
pub fn outstanding(session: &Session, queued: usize) -> usize {
    let limits = Limits::client();
    let total = limits.send_window * limits.max_payload;
    total.saturating_sub(session.send_capacity()) + queued
}

/// Decrements a link's load when a connection closes and wakes the pool.
pub(crate) fn connection_closed(load: &AtomicUsize, pool_wake: &Notify) {
    let _ = load.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    pool_wake.notify_one();
}

/// The session parts a link hands back when it ends.
pub(crate) struct Ending<'a> {
    /// The session id.
    pub(crate) session_id: &'a str,
    /// Its data channel.
    pub(crate) pump: &'a mut Pump,
    /// Its protocol state.
    pub(crate) session: &'a mut Session,
    /// The agent's version, for the TerminateSession flag decision.
    pub(crate) agent_version: &'a str,
    /// Whether the service closed the session itself (channel_closed).
    pub(crate) closed_by_service: bool,
}

/// Why a link's session ended when the service closed it: the service's own words, if any.
pub(crate) fn service_close_reason(closed: &ChannelClosed) -> String {
    let said = closed.output.trim();
    if said.is_empty() {
        "the service closed the session".to_owned()
    } else {
        said.to_owned()
    }
}

/// What an ending link closed itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Closed {
    /// Connections it carried, now closed.
    pub(crate) connections: usize,
    /// Whether a SOCKS reply already told the user why the session ended.
    pub(crate) reported: bool,
}

/// Ends a link: refuses the connections handed to it and not yet taken, releases them and the
/// `closed` connections from the pool's count, then finishes the session politely when the
/// process is stopping (`end` is `None`), or reports why it ended (unless a SOCKS reply already
/// did) and terminates it; finally wakes the pool.
pub(crate) async fn wind_down(
    ctx: &LinkContext,
    load: &AtomicUsize,
    closed: Closed,
    new_conns: &mut mpsc::UnboundedReceiver<Incoming>,
    end: Option<String>,
    target: String,
    ending: Ending<'_>,
) {
    let Closed {
        connections: mut closing,
        mut reported,
    } = closed;
    new_conns.close();
    let why = end.as_deref().unwrap_or(STOPPING);
    while let Ok(incoming) = new_conns.try_recv() {
        reported |= incoming.answer.is_some();
        incoming.refuse(Outcome::SessionEnded(why));
        closing += 1;
    }
    for _ in 0..closing {
        connection_closed(load, &ctx.pool_wake);
    }
    let session_id = ending.session_id;
    match end {
        None => {
            finish(
                &ctx.connector,
                session_id,
                ending.pump,
                ending.session,
                ending.agent_version,
                DRAIN_ON_STOP,
            )
            .await;
        }
        Some(reason) => {
            tracing::info!(%session_id, %reason, "session ended");
            if !*ctx.shutdown.borrow() && !reported {
                let _ = ctx.notices.send(Notice::SessionEnded {
                    target,
                    session_id: session_id.to_owned(),
                    reason,
                });
            }
            if ending.closed_by_service {
                ctx.connector.terminate_closed(session_id).await;
            } else {
                ctx.connector.terminate(session_id).await;
            }
        }
    }
    ctx.pool_wake.notify_one();
}

/// Why connections a stopping link never took are refused.
pub(crate) const STOPPING: &str = "postern is stopping";
/// How long a stopping link waits for its outstanding data to be acknowledged.
const DRAIN_ON_STOP: std::time::Duration = std::time::Duration::from_secs(2);
