//! Opening the data channel: dial the stream URL (verified TLS; plain `ws://` only to a
//! loopback host) and send the OpenDataChannelInput text frame (SPEC.md §2.1–2.3).
//!
//! It must not send anything else: the session core decides every later frame.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::SinkExt;
use postern_protocol::OpenDataChannelInput;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::{Host, Url};

/// The websocket carrying the data channel.
pub type DataChannel = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why the data channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL does not parse. The URL itself is not shown: its query is secret.
    #[error("the stream URL returned by the service is not a valid URL")]
    InvalidUrl,
    /// `ws://` to a host that is not loopback, or another scheme.
    #[error("refusing to open {url}: only wss:// (or ws:// to a loopback host) is allowed")]
    InsecureUrl {
        /// The URL without its query.
        url: String,
    },
    /// Dialling or the websocket handshake failed.
    #[error("could not connect to {url}")]
    Connect {
        /// The URL without its query.
        url: String,
        /// The underlying error.
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
    /// Dialling took longer than the limit.
    #[error("connecting to {url} timed out after {}", humantime::format_duration(*.after))]
    Timeout {
        /// The URL without its query.
        url: String,
        /// The limit.
        after: Duration,
    },
    /// Sending the open frame failed.
    #[error("could not send the OpenDataChannelInput frame to {url}")]
    Send {
        /// The URL without its query.
        url: String,
        /// The underlying error.
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
}

/// Dials `stream_url` and sends the OpenDataChannelInput frame with `token`.
pub async fn open(
    stream_url: &str,
    token: &str,
    timeout: Duration,
) -> Result<DataChannel, OpenError> {
    let url = Url::parse(stream_url).map_err(|_| OpenError::InvalidUrl)?;
    let shown = redact(&url);
    check_scheme(&url).map_err(|()| OpenError::InsecureUrl { url: shown.clone() })?;
    // Nagle off: keystrokes and acks are tiny and latency-bound; with Nagle and delayed acks
    // each echo waited ~40 ms.
    let dial = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true);
    let (mut ws, _response) = match tokio::time::timeout(timeout, dial).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(source)) => return Err(OpenError::Connect { url: shown, source }),
        Err(_) => {
            return Err(OpenError::Timeout {
                url: shown,
                after: timeout,
            });
        }
    };
    let input = open_frame(token);
    // Serialising a struct of strings cannot fail.
    let text = serde_json::to_string(&input).unwrap_or_default();
    tracing::debug!(url = %shown, request_id = %input.request_id, "opening data channel");
    ws.send(Message::text(text))
        .await
        .map_err(|source| OpenError::Send { url: shown, source })?;
    Ok(ws)
}

/// The OpenDataChannelInput for one open: a fresh RequestId, the process's ClientId.
pub fn open_frame(token: &str) -> OpenDataChannelInput {
    OpenDataChannelInput {
        message_schema_version: "1.0".to_owned(),
        request_id: uuid::Uuid::new_v4().to_string(),
        token_value: token.to_owned(),
        client_id: client_id().to_owned(),
        client_version: Some(CLIENT_VERSION.to_owned()),
    }
}

/// The ClientId: a UUID v4 generated once per process and reused on every reconnect
/// (SPEC.md §2.3).
pub fn client_id() -> &'static str {
    static CLIENT_ID: OnceLock<String> = OnceLock::new();
    CLIENT_ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// A URL for messages and logs: scheme, host, port and path, never the query.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// `wss` anywhere; `ws` only to loopback (tests, the emulator); nothing else.
fn check_scheme(url: &Url) -> Result<(), ()> {
    match url.scheme() {
        "wss" => Ok(()),
        "ws" if is_loopback(url) => Ok(()),
        _ => Err(()),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The ClientVersion we report, in the open frame and the HandshakeResponse. It must be a
/// plain dotted version greater than `1.2.331.0` so the agent treats us as a fully featured
/// plugin (smux without keepalive, separate stdout/stderr without a warning) and not older than
/// the thresholds of SPEC.md §6.9 (agent `port.go`, `port_mux.go`, `datachannel.go`); this is
/// the official plugin's current release.
pub const CLIENT_VERSION: &str = "1.2.707.0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_wss_and_loopback_ws_only() {
        let ok = |s: &str| check_scheme(&Url::parse(s).unwrap()).is_ok();
        assert!(ok(
            "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s?role=x"
        ));
        assert!(ok("ws://127.0.0.1:1234/v1/data-channel/s"));
        assert!(ok("ws://[::1]:1234/v1/data-channel/s"));
        assert!(ok("ws://localhost:1234/v1/data-channel/s"));
        assert!(!ok("ws://10.0.0.1:1234/v1/data-channel/s"));
        assert!(!ok("ws://example.com/v1/data-channel/s"));
        assert!(!ok("http://127.0.0.1/v1/data-channel/s"));
    }

    #[test]
    fn redact_drops_query_and_userinfo() {
        let url =
            Url::parse("wss://u:p@h:1/v1/data-channel/s-1?role=publish_subscribe&t=x").unwrap();
        assert_eq!(redact(&url), "wss://h:1/v1/data-channel/s-1");
    }

    #[test]
    fn open_frame_has_fresh_request_id_and_fixed_client_id() {
        let a = open_frame("tok");
        let b = open_frame("tok");
        assert_ne!(a.request_id, b.request_id);
        assert_eq!(a.client_id, b.client_id);
        assert_eq!(a.client_version.as_deref(), Some(CLIENT_VERSION));
        assert!(!format!("{a:?}").contains("tok\""));
    }

    #[test]
    fn client_version_is_above_the_fully_featured_threshold() {
        let parts: Vec<u64> = CLIENT_VERSION
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(parts.len(), 4);
        assert!(parts > vec![1, 2, 331, 0]);
    }
}
