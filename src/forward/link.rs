//! What the mux and basic links share: the context a link runs in, how it reports to its pool
//! and to the user, and the pacing bookkeeping of upload bytes.
//!
//! A link is one SSM session carrying local connections; it pumps, the core decides.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use postern_protocol::{Limits, Session};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};

use crate::forward::Connector;
use crate::forward::connect::finish;
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
}

/// The pool's view of a running link.
#[derive(Debug)]
pub(crate) struct LinkHandle {
    /// New local connections for the link. Closed when the link ended.
    pub(crate) conns: mpsc::UnboundedSender<TcpStream>,
    /// Connections assigned and not yet closed (the pool adds, the link subtracts).
    pub(crate) load: Arc<AtomicUsize>,
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
}

/// Ends a link: releases its `closing` connections from the pool's count, then finishes the
/// session politely when the process is stopping (`end` is `None`), or reports why it ended and
/// terminates it; finally wakes the pool.
pub(crate) async fn wind_down(
    ctx: &LinkContext,
    load: &AtomicUsize,
    closing: usize,
    end: Option<String>,
    target: String,
    ending: Ending<'_>,
) {
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
            if !*ctx.shutdown.borrow() {
                let _ = ctx.notices.send(Notice::SessionEnded {
                    target,
                    session_id: session_id.to_owned(),
                    reason,
                });
            }
            ctx.connector.terminate(session_id).await;
        }
    }
    ctx.pool_wake.notify_one();
}

/// How long a stopping link waits for its outstanding data to be acknowledged.
const DRAIN_ON_STOP: std::time::Duration = std::time::Duration::from_secs(2);
