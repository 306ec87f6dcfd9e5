//! Opening the data channel: dial the stream URL (verified TLS; plain `ws://` only to a
//! loopback host) and send the OpenDataChannelInput text frame (SPEC.md §2.1–2.3).
//!
//! A `wss://` URL is dialled through `HTTPS_PROXY` (an HTTP CONNECT tunnel) unless `NO_PROXY`
//! matches or the host is loopback, and its TLS trusts the system's roots plus
//! `AWS_CA_BUNDLE` (`network`), as the SDK's calls do. `ws://` never goes through a proxy.
//!
//! It must not send anything else: the session core decides every later frame.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::SinkExt;
use postern_protocol::OpenDataChannelInput;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::{Host, Url};

use crate::network::{ProxyError, ProxySettings, TrustError, TunnelError, connect_through};

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
    /// `ws://` to a name that resolves (also) to an address off this machine.
    #[error(
        "refusing to open {url}: its host resolves to {address}, not a loopback address, and \
         ws:// is unencrypted"
    )]
    ResolvesOffLoopback {
        /// The URL without its query.
        url: String,
        /// The first address that is not loopback.
        address: IpAddr,
    },
    /// The host of a `ws://` URL did not resolve.
    #[error("could not resolve the host of {url}")]
    Resolve {
        /// The URL without its query.
        url: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
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
    /// A proxy variable cannot be used.
    #[error("could not use the proxy settings to reach {url}")]
    ProxySettings {
        /// The URL without its query.
        url: String,
        /// What is wrong with them.
        #[source]
        source: Box<ProxyError>,
    },
    /// The CONNECT tunnel through the proxy failed.
    #[error("could not reach {url} through the proxy {proxy}")]
    Proxy {
        /// The URL without its query.
        url: String,
        /// The proxy, without its credentials, and the variable that named it.
        proxy: String,
        /// What the proxy said, or why it could not be reached.
        #[source]
        source: Box<TunnelError>,
    },
    /// The certificates to trust could not be loaded.
    #[error("could not load the certificates to trust for {url}")]
    Trust {
        /// The URL without its query.
        url: String,
        /// The bundle's or the store's problem.
        #[source]
        source: Box<TrustError>,
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
    let dial = async {
        if url.scheme() == "ws" {
            // Plain text only to this machine: resolve the name ourselves and dial the
            // loopback address we checked, so /etc/hosts or DNS cannot send it elsewhere.
            let stream = dial_loopback(&url, &shown).await?;
            tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(ws_config()))
                .await
                .map_err(|source| OpenError::Connect {
                    url: shown.clone(),
                    source,
                })
        } else {
            let tls = crate::network::websocket_tls().map_err(|source| OpenError::Trust {
                url: shown.clone(),
                source: Box::new(source),
            })?;
            let stream = dial_tls_host(&url, &shown).await?;
            tokio_tungstenite::client_async_tls_with_config(
                url.as_str(),
                stream,
                Some(ws_config()),
                Some(Connector::Rustls(tls)),
            )
            .await
            .map_err(|source| OpenError::Connect {
                url: shown.clone(),
                source,
            })
        }
    };
    let (mut ws, _response) = match tokio::time::timeout(timeout, dial).await {
        Ok(result) => result?,
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

/// The websocket's settings: tungstenite's defaults but for the read size. Before every read
/// tungstenite zero-fills the free part of its read buffer up to the read size (tungstenite
/// `src/protocol/frame/mod.rs`, `FrameCodec::read_in`); at the default 128 KiB that was a
/// 128 KiB memset per wake-up, for an agent that sends one ~1.1 KiB message per millisecond.
/// At 32 KiB those memsets were still two thirds of the instructions a keystroke's echo cost
/// here (callgrind), and each evicted most of the L1 cache; 4 KiB (three full messages per
/// read) made the echo ~5% faster with the same unpaced throughput.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(WS_READ_SIZE)
}

/// Bytes the websocket reads from its socket at once (see [`ws_config`]).
const WS_READ_SIZE: usize = 4 * 1024;

/// Connects (Nagle off) to a `wss://` URL's host: through the proxy when the settings say so
/// (a CONNECT tunnel; the proxy resolves the name), else directly. TLS comes next, over it.
async fn dial_tls_host(url: &Url, shown: &str) -> Result<TcpStream, OpenError> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let settings = ProxySettings::global().map_err(|source| OpenError::ProxySettings {
        url: shown.to_owned(),
        source: Box::new(source),
    })?;
    if let Some(proxy) = settings.proxy_for(host, port) {
        tracing::debug!(url = %shown, %proxy, "dialling through the proxy");
        return connect_through(proxy, host, port)
            .await
            .map_err(|source| OpenError::Proxy {
                url: shown.to_owned(),
                proxy: format!("{proxy} ({})", proxy.variable()),
                source: Box::new(source),
            });
    }
    let connect = |e: std::io::Error| OpenError::Connect {
        url: shown.to_owned(),
        source: e.into(),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((host, port)).await.map_err(connect)?;
    // Nagle off: keystrokes and acks are tiny and latency-bound; with Nagle and delayed acks
    // each echo waited ~40 ms.
    stream.set_nodelay(true).map_err(connect)?;
    Ok(stream)
}

/// Resolves a `ws://` URL's host, refuses any address off loopback, and connects (Nagle off)
/// to the first one.
async fn dial_loopback(url: &Url, shown: &str) -> Result<MaybeTlsStream<TcpStream>, OpenError> {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let resolve = |source| OpenError::Resolve {
        url: shown.to_owned(),
        source,
    };
    let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(resolve)?
        .collect();
    if let Some(off) = addresses.iter().find(|a| !a.ip().is_loopback()) {
        return Err(OpenError::ResolvesOffLoopback {
            url: shown.to_owned(),
            address: off.ip(),
        });
    }
    let first = addresses.first().ok_or_else(|| {
        resolve(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address",
        ))
    })?;
    let stream = TcpStream::connect(first)
        .await
        .map_err(|e| OpenError::Connect {
            url: shown.to_owned(),
            source: e.into(),
        })?;
    stream.set_nodelay(true).map_err(|e| OpenError::Connect {
        url: shown.to_owned(),
        source: e.into(),
    })?;
    Ok(MaybeTlsStream::Plain(stream))
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

    #[tokio::test]
    async fn ws_goes_only_to_addresses_that_are_loopback_after_resolution() {
        let url = Url::parse("ws://127.0.0.1:9/v1/data-channel/s").unwrap();
        // Loopback passes the check (nothing listens on port 9: the connect fails after it).
        assert!(matches!(
            dial_loopback(&url, "u").await,
            Err(OpenError::Connect { .. })
        ));
        // A name must resolve to loopback only; `localhost` does on this machine.
        let local = Url::parse("ws://localhost:9/v1/data-channel/s").unwrap();
        assert!(!matches!(
            dial_loopback(&local, "u").await,
            Err(OpenError::ResolvesOffLoopback { .. })
        ));
        // An address off loopback is refused before any connection (this one is a TEST-NET
        // address: resolution is literal).
        let off = Url::parse("ws://192.0.2.1:80/v1/data-channel/s").unwrap();
        assert!(matches!(
            dial_loopback(&off, "u").await,
            Err(OpenError::ResolvesOffLoopback { address, .. }) if address.to_string() == "192.0.2.1"
        ));
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
