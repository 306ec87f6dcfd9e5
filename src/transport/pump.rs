//! The websocket half of every session driver: move the core's transmits onto the websocket,
//! feed received frames into the core, answer pings, and turn a closed or failed websocket into
//! a [`ChannelFailure`]. Shared by the shell/exec driver, port forwarding and `ssh-proxy`.
//!
//! It must not decide anything: what to send and when is the core's business.

use std::time::Instant;

use futures_util::SinkExt;
use postern_protocol::Session;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::transport::channel::DataChannel;

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
}

/// Sends every frame the session has ready, then flushes once.
pub async fn flush_transmits(
    session: &mut Session,
    ws: &mut DataChannel,
    now: Instant,
) -> Result<(), tungstenite::Error> {
    let mut sent = false;
    while let Some(transmit) = session.poll_transmit(now) {
        ws.feed(Message::binary(transmit.frame)).await?;
        sent = true;
    }
    if sent {
        ws.flush().await?;
    }
    Ok(())
}

/// Handles what `ws.next()` returned: data frames go to the session, pings are answered,
/// anything that ends the websocket is an error.
pub async fn receive(
    session: &mut Session,
    ws: &mut DataChannel,
    message: Option<Result<Message, tungstenite::Error>>,
) -> Result<(), ChannelFailure> {
    match message {
        Some(Ok(Message::Binary(data))) => deliver(session, now(), &data),
        Some(Ok(Message::Text(text))) => deliver(session, now(), text.as_bytes()),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
            // tungstenite queued the Pong; make sure it leaves now.
            let _ = ws.flush().await;
        }
        Some(Ok(Message::Close(frame))) => {
            let (code, reason) = frame
                .map(|f| (u16::from(f.code), f.reason.to_string()))
                .unwrap_or((1005, String::new()));
            return Err(ChannelFailure::Closed { code, reason });
        }
        Some(Err(e)) => return Err(e.into()),
        None => return Err(ChannelFailure::Ended),
    }
    Ok(())
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
