//! A basic link (SPEC.md §6.6), for agents too old for smux: one SSM session carries one local
//! connection at a time. When the local connection ends the link sends DisconnectToPort and
//! takes the next one; output that arrives between connections belongs to the previous one
//! and is dropped (acknowledged) rather than leaked into the next.
//!
//! One task, one `select!`, drained after every input, like the mux link.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use postern_protocol::{Event, Flag};
use tokio::sync::mpsc;

use crate::forward::conn::{
    BACKLOG_HIGH_WATER, BACKLOG_LOW_WATER, Backlog, Conn, ConnKey, FromConn,
};
use crate::forward::connect::{Connected, describe_close};
use crate::forward::link::{
    Closed, Ending, Incoming, LinkContext, Outcome, connection_closed, outstanding, wind_down,
};
use crate::forward::pacing::UploadWindow;
use crate::transport::{self, now, sleep_until};

/// Runs the link until its session ends or the process stops.
pub(crate) async fn run(
    connected: Connected,
    mut ctx: LinkContext,
    mut new_conns: mpsc::UnboundedReceiver<Incoming>,
    load: Arc<AtomicUsize>,
) {
    let Connected {
        session_id,
        mut pump,
        mut session,
        ready,
    } = connected;
    let agent_version = ready.agent_version.clone().unwrap_or_default();
    let target = ctx.connector.request().target.clone();
    let (to_link, mut from_conns) = mpsc::channel::<FromConn>(FROM_CONN_QUEUE);
    let backlog = Arc::new(Backlog::default());
    let mut current: Option<(ConnKey, Conn)> = None;
    let mut waiting: VecDeque<Incoming> = VecDeque::new();
    let mut next_key: ConnKey = 0;
    let mut pending: Vec<u8> = Vec::new();
    let mut window = UploadWindow::new();
    let mut receive_paused = false;
    let mut first_accepted = false;
    let mut stopping = false;
    let mut discarded = 0u64;
    // Whether the service closed the session (channel_closed), not the link or the network.
    let mut closed_by_service = false;
    let end: Option<String> = loop {
        let now = now();
        if current.is_none()
            && let Some(incoming) = waiting.pop_front()
        {
            next_key += 1;
            tracing::debug!(key = next_key, "basic link takes a connection");
            let Incoming {
                stream,
                early,
                answer,
            } = incoming;
            let conn = Conn::spawn(
                next_key,
                stream,
                to_link.clone(),
                backlog.clone(),
                ctx.traffic.clone(),
            );
            // The agent dialled when the session started (agent `port_basic.go`), so the
            // destination answered: a waiting SOCKS client hears so at once.
            if let Some(answer) = answer {
                conn.write(answer.reply(Outcome::Connected));
            }
            pending.extend(early);
            current = Some((next_key, conn));
            if !first_accepted {
                // The agent dialled at session start; what it sent since goes to this one.
                first_accepted = true;
                session.set_receive_ready(now, true);
            }
        }
        if !pending.is_empty() {
            let accepted = session.send_output(now, &pending);
            pending.drain(..accepted);
        }
        if let Err(e) = pump.flush(&mut session, now).await {
            break Some(crate::report::error_chain(&e));
        }
        let mut end = None;
        while let Some(event) = session.poll_event() {
            match event {
                Event::Output(data) => match &current {
                    Some((_, conn)) => conn.write(data),
                    None => discarded += data.len() as u64,
                },
                Event::ChannelClosed(closed) => {
                    closed_by_service = true;
                    end = Some(crate::forward::link::service_close_reason(&closed));
                }
                Event::Closed(reason) => {
                    end.get_or_insert_with(|| describe_close(&reason));
                }
                Event::Violation(v) => {
                    tracing::warn!(kind = v.kind.as_str(), detail = %v.detail, "peer violation");
                }
                _ => {}
            }
        }
        if end.is_some() {
            break end;
        }
        if stopping {
            break None;
        }
        let behind = backlog.bytes();
        if first_accepted && !receive_paused && behind > BACKLOG_HIGH_WATER {
            receive_paused = true;
            session.set_receive_ready(now, false);
        } else if receive_paused && behind < BACKLOG_LOW_WATER {
            receive_paused = false;
            session.set_receive_ready(now, true);
        }
        let in_flight = outstanding(&session, pending.len());
        window.handle_rtt(now, session.stats().rtt, in_flight);
        let may_read = pending.is_empty() && window.available(in_flight) > 0;
        let deadline = session.poll_timeout();

        tokio::select! {
            received = pump.recv(&mut session) => {
                if let Err(e) = received {
                    break Some(crate::report::error_chain(&e));
                }
            }
            input = from_conns.recv(), if may_read => {
                // `to_link` lives here, so the channel never closes.
                let Some(input) = input else { break None };
                let current_key = current.as_ref().map(|(k, _)| *k);
                match input {
                    FromConn::Data(key, data) if Some(key) == current_key => pending.extend(data),
                    FromConn::Closed(key, error) if Some(key) == current_key => {
                        if let Some(error) = error {
                            tracing::debug!(%error, "local connection failed");
                        }
                        current = None;
                        // Tell the agent to drop its destination connection (SPEC.md §6.6).
                        if !pending.is_empty() {
                            let accepted = session.send_output(transport::now(), &pending);
                            pending.drain(..accepted);
                        }
                        session.send_flag(transport::now(), Flag::DisconnectToPort);
                        connection_closed(&load, &ctx.pool_wake);
                    }
                    // Late reads of a connection already closed.
                    FromConn::Data(..) | FromConn::Closed(..) => {}
                }
            }
            conn = new_conns.recv() => match conn {
                Some(stream) => waiting.push_back(stream),
                None => stopping = true,
            },
            () = backlog.drained(), if receive_paused => {}
            _ = ctx.shutdown.changed() => stopping = true,
            () = sleep_until(deadline), if deadline.is_some() => session.handle_timeout(transport::now()),
        }
    };
    if discarded > 0 {
        tracing::debug!(discarded, "dropped output that arrived between connections");
    }
    let why = end.as_deref().unwrap_or(crate::forward::link::STOPPING);
    let closing = usize::from(current.take().is_some()) + waiting.len();
    let reported = waiting.iter().any(|w| w.answer.is_some());
    for incoming in waiting.drain(..) {
        incoming.refuse(Outcome::SessionEnded(why));
    }
    wind_down(
        &ctx,
        &load,
        Closed {
            connections: closing,
            reported,
        },
        &mut new_conns,
        end,
        target,
        Ending {
            session_id: &session_id,
            pump: &mut pump,
            session: &mut session,
            agent_version: &agent_version,
            closed_by_service,
        },
    )
    .await;
}

/// Reads queued from the connection; small, so pacing stops the reader quickly.
const FROM_CONN_QUEUE: usize = 8;
