//! The data-channel websocket endpoint: upgrades `/v1/data-channel/{session_id}`, reads the
//! first frame (a text OpenDataChannelInput), checks its token and hands the websocket to the
//! session's task. Everything after the open frame is the driver's job.
//!
//! The websocket is authenticated by the token StartSession or ResumeSession returned (one use
//! each), not by SigV4, as the service does; the upgrade itself must come through a loopback
//! `Host`. A bad open frame or token is a client violation; the websocket is then closed with a
//! reason. Tokens are never logged.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use postern_protocol::OpenDataChannelInput;

use crate::auth::is_loopback_host;
use crate::server::Shared;
use crate::sessions::{Attachment, RedeemError, SessionCommand, Token};
use crate::violations::{Place, ViolationKind};

/// Upgrades the request to a websocket and accepts it in the background.
pub(crate) async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Path(session_id): Path<String>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !is_loopback_host(host) {
        tracing::info!(%session_id, "data channel through a non-loopback Host refused");
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "the emulator serves loopback hosts only",
        )
            .into_response();
    }
    upgrade
        .max_message_size(MAX_FRAME)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| accept(shared, session_id, socket))
}

async fn accept(shared: Arc<Shared>, session_id: String, mut socket: WebSocket) {
    let target = shared.registry.target(&session_id).unwrap_or_default();
    let place = Place {
        session_id: &session_id,
        target: &target,
    };
    let open = match read_open_frame(&mut socket).await {
        Ok(open) => open,
        Err(problem) => {
            shared
                .violations
                .record_kind(place, ViolationKind::BadOpenFrame, problem);
            close(socket, close_code::PROTOCOL, problem).await;
            return;
        }
    };
    let token = Token::from_client(open.token_value.clone());
    let redeemed = match shared.registry.redeem(&session_id, &token) {
        Ok(redeemed) => redeemed,
        Err(err) => {
            let kind = match err {
                RedeemError::Reused(_) => Some(ViolationKind::TokenReuse),
                RedeemError::Unknown(_) => Some(ViolationKind::UnknownToken),
                RedeemError::Ended(_) => None,
            };
            if let Some(kind) = kind {
                shared.violations.record_kind(place, kind, &err.to_string());
            }
            tracing::info!(%session_id, %err, "data channel refused");
            close(socket, close_code::POLICY, "invalid token").await;
            return;
        }
    };
    tracing::info!(
        %session_id,
        client_version = open.client_version.as_deref().unwrap_or(""),
        "data channel opened"
    );
    let attachment = Box::new(Attachment { socket, open });
    if let Err(returned) = redeemed
        .commands
        .send(SessionCommand::Attach(attachment))
        .await
    {
        // The task ended between the redeem and now.
        if let SessionCommand::Attach(attachment) = returned.0 {
            close(attachment.socket, close_code::AWAY, "session ended").await;
        }
    }
}

/// Reads the first frame; the error is a short description for the violations log.
async fn read_open_frame(socket: &mut WebSocket) -> Result<OpenDataChannelInput, &'static str> {
    let first = tokio::time::timeout(OPEN_FRAME_TIMEOUT, async {
        loop {
            match socket.next().await {
                // Pings before the open frame are answered by the library; skip them.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => return other,
            }
        }
    })
    .await
    .map_err(|_| "no open frame within 10 s")?;
    match first {
        Some(Ok(Message::Text(text))) => {
            let open: OpenDataChannelInput = serde_json::from_str(text.as_str())
                .map_err(|_| "open frame is not an OpenDataChannelInput")?;
            if open.message_schema_version != OPEN_SCHEMA_VERSION {
                return Err("open frame MessageSchemaVersion is not 1.0");
            }
            Ok(open)
        }
        Some(Ok(Message::Binary(_))) => Err("first frame is binary, expected the text open frame"),
        Some(Ok(_)) | None => Err("websocket closed before the open frame"),
        Some(Err(_)) => Err("websocket failed before the open frame"),
    }
}

async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // The peer may already be gone; nothing to do about it.
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// The largest websocket message accepted: one ClientMessage with the codec's payload cap.
const MAX_FRAME: usize = postern_protocol::PAYLOAD_OFFSET + postern_protocol::MAX_PAYLOAD_LEN;
/// The websocket's read buffer. tungstenite zero-fills its free capacity before every read
/// attempt, including those that find nothing to read; its 128 KiB default made that
/// zero-filling the emulator's largest user-space cost in an unpaced download (one attempt per
/// loop iteration, a few hundred bytes of acks each), and at 16 KiB it was still half the
/// instructions of a keystroke's round trip. 4 KiB takes three full input messages per read.
const READ_BUFFER: usize = 4 * 1024;
const OPEN_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
const OPEN_SCHEMA_VERSION: &str = "1.0";
