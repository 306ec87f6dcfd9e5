//! A multiplexed link (SPEC.md §6.7): one SSM session carrying an smux client session; every
//! local connection is one smux stream. One task, one `select!` over the websocket, connection
//! reads, new connections, the local write backlog, shutdown and the next timer (session and
//! smux keepalive); after every input it drains the core and the mux.
//!
//! SOCKS connections wait for their reply: smux has no "connected" signal, so a stream counts
//! as connected when the destination's first bytes arrive, or when [`settle_time`] passes
//! without the agent's ConnectToPortError flag and FIN (agent
//! `agent/session/plugins/port/port_mux.go` sends the flag, then closes the stream, when its
//! dial fails). Once any stream of the link has received data the destination is known to
//! answer, and later connections are answered at once.
//!
//! Upload pacing: connection reads are taken only while the [`UploadWindow`] allows, so the
//! agent's 4 MiB smux buffer is never overrun. Download backpressure: when local sockets fall
//! behind, the session stops acknowledging (the agent holds the data).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use postern_protocol::mux::{Mux, MuxConfig, MuxEvent, StreamId};
use postern_protocol::{Event, Flag, Session};
use tokio::sync::mpsc;

use crate::forward::conn::{
    BACKLOG_HIGH_WATER, BACKLOG_LOW_WATER, Backlog, Conn, ConnKey, FromConn,
};
use crate::forward::connect::{Connected, describe_close};
use crate::forward::link::{
    Answer, Closed, Ending, Incoming, LinkContext, Notice, Outcome, connection_closed, outstanding,
    wind_down,
};
use crate::forward::pacing::UploadWindow;
use crate::transport::{self, Lost, Pump, now, sleep_until};

/// What a link tells its pool while it runs.
pub(crate) struct Gauges {
    /// Connections assigned and not yet closed (the pool adds, the link subtracts).
    pub(crate) load: Arc<AtomicUsize>,
    /// Bytes received for the link's connections, ever.
    pub(crate) delivered: Arc<AtomicU64>,
    /// Whether the link has stopped acknowledging for local sockets that fell behind.
    pub(crate) stalled: Arc<AtomicBool>,
}

/// Runs the link until its session ends or the process stops.
pub(crate) async fn run(
    connected: Connected,
    mut ctx: LinkContext,
    mut new_conns: mpsc::UnboundedReceiver<Incoming>,
    gauges: Gauges,
) {
    let Gauges {
        load,
        delivered,
        stalled,
    } = gauges;
    let Connected {
        session_id,
        mut pump,
        mut session,
        ready,
    } = connected;
    let agent_version = ready.agent_version.clone().unwrap_or_default();
    let target = ctx.connector.request().target.clone();
    let mux_config = MuxConfig::for_client(&agent_version);
    // While local sockets are behind, the websocket is not read at all: the agent's data
    // waits in TCP (as it does for the official client, whose reader blocks), rather than
    // arriving unacknowledged beyond our reorder window, dropped, and resent one message per
    // round trip afterwards (SPEC.md §5.7). Not with smux keepalive on (old agents): that
    // closes a session that hears nothing for 30 s.
    let may_hold_reads = mux_config.keepalive.is_none();
    let mut mux = Mux::client(mux_config, now());
    // The smux side is ready at once (the official client's "internal pipe", SPEC.md §6.5).
    session.set_receive_ready(now(), true);
    let (to_link, mut from_conns) = mpsc::channel::<FromConn>(FROM_CONN_QUEUE);
    let backlog = Arc::new(Backlog::default());
    let mut conns: HashMap<StreamId, Conn> = HashMap::new();
    let mut pending = Vec::new();
    let mut window = UploadWindow::new();
    let mut receive_paused = false;
    let mut stopping = false;
    // SOCKS streams not answered yet, with the time they count as connected.
    let mut waiting: HashMap<StreamId, (Answer, Instant)> = HashMap::new();
    // ConnectToPortError flags not yet matched with a waiting stream's FIN.
    let mut port_errors = 0usize;
    // Whether a destination's bytes came through this link.
    let mut answered = false;
    // Whether the service closed the session (channel_closed), not the link or the network.
    let mut closed_by_service = false;
    let end: Option<String> = loop {
        let now = now();
        if let Err(e) = pump_out(&mut mux, &mut session, &mut pump, &mut pending, now).await {
            break Some(crate::report::error_chain(&e));
        }
        let mut end = None;
        while let Some(event) = session.poll_event() {
            match event {
                Event::Output(data) => mux.handle_input(now, &data),
                Event::Flag(Flag::ConnectToPortError) if !waiting.is_empty() => {
                    // The FIN that follows names the stream; its reply reports the error.
                    port_errors += 1;
                }
                Event::Flag(Flag::ConnectToPortError) => {
                    let _ = ctx.notices.send(Notice::ConnectToPortError {
                        remote: ctx.remote.clone(),
                        target: target.clone(),
                        session_id: session_id.clone(),
                    });
                }
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
        while let Some(event) = mux.poll_event() {
            match event {
                MuxEvent::Data(id, data) => {
                    delivered.fetch_add(data.len() as u64, Ordering::Relaxed);
                    if let Some(conn) = conns.get(&id) {
                        answered = true;
                        if let Some((answer, _)) = waiting.remove(&id) {
                            conn.write(answer.reply(Outcome::Connected));
                        }
                        conn.write(data);
                    }
                }
                MuxEvent::StreamClosed(id) => {
                    tracing::debug!(stream = %id, "stream closed by the agent");
                    if let Some((answer, _)) = waiting.remove(&id)
                        && let Some(conn) = conns.get(&id)
                    {
                        let outcome = if port_errors > 0 {
                            port_errors -= 1;
                            Outcome::ConnectToPortError {
                                session_id: &session_id,
                            }
                        } else {
                            // The destination accepted and closed at once.
                            Outcome::Connected
                        };
                        conn.write(answer.reply(outcome));
                    }
                    if conns.remove(&id).is_some() {
                        connection_closed(&load, &ctx.pool_wake);
                    }
                    let _ = mux.close(id);
                }
                MuxEvent::Closed(reason) => {
                    end.get_or_insert_with(|| format!("the smux session failed: {reason}"));
                }
                MuxEvent::StreamOpened(_) => {}
            }
        }
        if waiting.is_empty() {
            // Flags no waiting stream can claim belong to connections already gone.
            port_errors = 0;
        }
        if end.is_some() {
            break end;
        }
        if let Err(e) = pump_out(&mut mux, &mut session, &mut pump, &mut pending, now).await {
            break Some(crate::report::error_chain(&e));
        }
        if stopping {
            break None;
        }
        // Download backpressure, with hysteresis.
        let behind = backlog.bytes() + mux.unread_bytes();
        if !receive_paused && behind > BACKLOG_HIGH_WATER {
            tracing::debug!(behind, "local sockets behind: not acknowledging new data");
            receive_paused = true;
            session.set_receive_ready(now, false);
            stalled.store(true, Ordering::Release);
        } else if receive_paused && behind < BACKLOG_LOW_WATER {
            tracing::debug!(behind, "local sockets caught up: acknowledging again");
            receive_paused = false;
            session.set_receive_ready(now, true);
            if may_hold_reads {
                pump.reads_resumed(now);
            }
            stalled.store(false, Ordering::Release);
            // Connections queued while every link was stalled may come here now.
            ctx.pool_wake.notify_one();
        }
        // Upload pacing.
        let in_flight = outstanding(&session, pending.len() + mux.queued_output());
        window.handle_rtt(now, session.stats().rtt, in_flight);
        let may_read =
            pending.is_empty() && mux.send_budget() > 0 && window.available(in_flight) > 0;
        let settled = waiting.values().map(|(_, at)| *at).min();
        let deadline = [session.poll_timeout(), mux.poll_timeout(), settled]
            .into_iter()
            .flatten()
            .min();

        // A broken websocket is still mended meanwhile (its reconnection lives in `recv`).
        let reading = !(receive_paused && may_hold_reads && pump.is_up());

        tokio::select! {
            received = pump.recv(&mut session), if reading => {
                if let Err(e) = received {
                    break Some(crate::report::error_chain(&e));
                }
            }
            input = from_conns.recv(), if may_read => {
                // `to_link` lives here, so the channel never closes.
                let Some(input) = input else { break None };
                match input {
                    FromConn::Data(key, data) => {
                        let id = stream_id(key);
                        if conns.contains_key(&id) {
                            let mut rest = data.as_slice();
                            while !rest.is_empty() {
                                match mux.write(id, rest) {
                                    Ok(n) if n > 0 => rest = &rest[n..],
                                    _ => break,
                                }
                            }
                            if !rest.is_empty() {
                                // Only when the budget was short: move what the mux holds
                                // out (that resets its budget) and queue the rest after it.
                                pending.extend(mux.poll_output().unwrap_or_default());
                                let _ = mux.write(id, rest);
                            }
                        }
                    }
                    FromConn::Closed(key, error) => {
                        let id = stream_id(key);
                        if let Some(error) = error {
                            tracing::debug!(stream = %id, %error, "local connection failed");
                        }
                        waiting.remove(&id);
                        if conns.remove(&id).is_some() {
                            let _ = mux.close(id);
                            connection_closed(&load, &ctx.pool_wake);
                        }
                    }
                }
            }
            conn = new_conns.recv() => {
                let Some(incoming) = conn else {
                    stopping = true;
                    continue;
                };
                match mux.open_stream() {
                    Ok(id) => {
                        let Incoming { stream, early, answer } = incoming;
                        tracing::debug!(stream = %id, peer = ?stream.peer_addr().ok(), "new connection");
                        let conn = Conn::spawn(key(id), stream, to_link.clone(), backlog.clone(), ctx.traffic.clone());
                        match answer {
                            Some(answer) if answered => conn.write(answer.reply(Outcome::Connected)),
                            Some(answer) => {
                                let at = transport::now() + settle_time(session.stats().rtt);
                                waiting.insert(id, (answer, at));
                            }
                            None => {}
                        }
                        if !early.is_empty() {
                            // Within the stream's budget: a SOCKS request's trailing bytes.
                            let _ = mux.write(id, &early);
                        }
                        conns.insert(id, conn);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no smux stream for a new connection");
                        incoming.refuse(Outcome::SessionEnded("no smux stream is left"));
                        connection_closed(&load, &ctx.pool_wake);
                    }
                }
            }
            () = backlog.drained(), if receive_paused => {}
            _ = ctx.shutdown.changed() => stopping = true,
            () = sleep_until(deadline), if deadline.is_some() => {
                let now = transport::now();
                session.handle_timeout(now);
                mux.handle_timeout(now);
                let due: Vec<StreamId> = waiting
                    .iter()
                    .filter(|(_, (_, at))| *at <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in due {
                    if let (Some((answer, _)), Some(conn)) = (waiting.remove(&id), conns.get(&id)) {
                        conn.write(answer.reply(Outcome::Connected));
                    }
                }
            }
        }
    };
    // Answer the waiting, refuse further connections, close the local ones.
    let why = end.as_deref().unwrap_or(crate::forward::link::STOPPING);
    let reported = !waiting.is_empty();
    for (id, (answer, _)) in waiting.drain() {
        if let Some(conn) = conns.get(&id) {
            conn.write(answer.reply(Outcome::SessionEnded(why)));
        }
    }
    let closing = conns.len();
    conns.clear();
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

/// Moves smux output into the session as far as it accepts, then sends what the session has.
async fn pump_out(
    mux: &mut Mux,
    session: &mut Session,
    pump: &mut Pump,
    pending: &mut Vec<u8>,
    now: Instant,
) -> Result<(), Lost> {
    if let Some(out) = mux.poll_output() {
        pending.extend(out);
    }
    if !pending.is_empty() {
        let accepted = session.send_output(now, pending);
        pending.drain(..accepted);
    }
    pump.flush(session, now).await
}

fn key(id: StreamId) -> ConnKey {
    u64::from(id.get())
}

fn stream_id(key: ConnKey) -> StreamId {
    // Keys are made from stream ids by `key`, so they fit.
    StreamId::new(u32::try_from(key).unwrap_or(u32::MAX))
}

/// How long a SOCKS stream waits for the agent's word before it counts as connected: long
/// enough for a refused or unresolvable destination's ConnectToPortError to come back (one
/// round trip plus the agent's dial), short enough not to slow clients that speak first.
pub(crate) fn settle_time(srtt: Duration) -> Duration {
    (srtt * 3).clamp(SETTLE_MIN, SETTLE_MAX)
}

/// Reads queued from all connections of a link; small, so a paused link stops the readers.
const FROM_CONN_QUEUE: usize = 8;
/// Shortest wait for a SOCKS stream's fate (a loopback agent answers within it).
const SETTLE_MIN: Duration = Duration::from_millis(100);
/// Longest wait for a SOCKS stream's fate.
const SETTLE_MAX: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_time_follows_the_rtt_within_bounds() {
        assert_eq!(settle_time(Duration::ZERO), SETTLE_MIN);
        assert_eq!(settle_time(Duration::from_millis(1)), SETTLE_MIN);
        assert_eq!(
            settle_time(Duration::from_millis(80)),
            Duration::from_millis(240)
        );
        assert_eq!(settle_time(Duration::from_secs(2)), SETTLE_MAX);
    }
}
