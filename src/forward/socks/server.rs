//! One SOCKS5 listener: accepts connections and runs each one's handshake (method choice,
//! RFC 1929 authentication when required, the request) in its own task, bounded in time and
//! bytes. A CONNECT goes to the [`Router`](super::Router) with an answer that writes the reply
//! once the destination's fate is known; BIND and UDP ASSOCIATE get "command not supported";
//! anything that is not SOCKS5 closes that connection only.
//!
//! It must not decide sessions: the router and the pools do.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::forward::link::{Answer, Incoming, Notice};
use crate::forward::listener::AcceptBackoff;
use crate::forward::socks::codec::{
    self, CodecError, Command, Destination, METHOD_NO_AUTH, METHOD_NONE_ACCEPTABLE,
    METHOD_USER_PASS, Reply,
};
use crate::forward::socks::reply::reply_for;
use crate::forward::socks::router::Routed;

/// The username and password SOCKS clients must give (RFC 1929). `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SocksAuth {
    user: Vec<u8>,
    password: Vec<u8>,
}

impl SocksAuth {
    /// Credentials clients must present; each at most 255 bytes (RFC 1929), neither empty.
    pub fn new(user: &str, password: &str) -> Option<Self> {
        let fits = |s: &str| !s.is_empty() && s.len() <= 255;
        (fits(user) && fits(password)).then(|| Self {
            user: user.as_bytes().to_vec(),
            password: password.as_bytes().to_vec(),
        })
    }

    /// Whether `user` and `password` match, comparing every byte whatever differs first.
    fn matches(&self, user: &[u8], password: &[u8]) -> bool {
        let same = |a: &[u8], b: &[u8]| {
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        };
        // `&` rather than `&&`: both comparisons run.
        same(&self.user, user) & same(&self.password, password)
    }
}

impl fmt::Debug for SocksAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocksAuth")
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What one listener needs.
#[derive(Clone, Debug)]
pub(crate) struct Listener {
    /// Its address, for notices.
    pub(crate) local: SocketAddr,
    /// Required credentials, if any.
    pub(crate) auth: Option<Arc<SocksAuth>>,
    /// The target, for notices.
    pub(crate) target: String,
    /// Where CONNECTs go.
    pub(crate) router: mpsc::UnboundedSender<Routed>,
    /// Where refusals are reported.
    pub(crate) notices: mpsc::UnboundedSender<Notice>,
}

/// Serves `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    config: Listener,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut handshakes = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.accepted();
                    tracing::debug!(%peer, local = %config.local, "SOCKS connection");
                    let config = config.clone();
                    handshakes.spawn(async move {
                        let outcome = tokio::time::timeout(
                            HANDSHAKE_LIMIT,
                            handshake(stream, &config),
                        )
                        .await;
                        match outcome {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "SOCKS handshake failed");
                            }
                            Err(_) => tracing::debug!(%peer, "SOCKS handshake timed out"),
                        }
                    });
                }
                Err(error) => backoff.failed(&error, &config.local.to_string()).await,
            },
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    handshakes.abort_all();
}

/// Why a handshake ended without a request for the router.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("reading or writing failed")]
    Io(#[from] io::Error),
    #[error("the client closed the connection")]
    Closed,
    #[error("the handshake is longer than {MAX_HANDSHAKE_BYTES} bytes")]
    TooLong,
    #[error("not SOCKS5")]
    Codec(#[from] CodecError),
    #[error("refused: {0}")]
    Refused(&'static str),
}

async fn handshake(mut stream: TcpStream, config: &Listener) -> Result<(), HandshakeError> {
    let mut buf = Vec::with_capacity(512);
    let greeting = read_message(&mut stream, &mut buf, codec::parse_greeting).await?;
    let method = match &config.auth {
        Some(_) if greeting.methods.contains(&METHOD_USER_PASS) => METHOD_USER_PASS,
        None if greeting.methods.contains(&METHOD_NO_AUTH) => METHOD_NO_AUTH,
        _ => METHOD_NONE_ACCEPTABLE,
    };
    stream.write_all(&codec::encode_method(method)).await?;
    if method == METHOD_NONE_ACCEPTABLE {
        return Err(HandshakeError::Refused(
            "no acceptable authentication method",
        ));
    }
    if let Some(auth) = &config.auth {
        let given = read_message(&mut stream, &mut buf, codec::parse_user_pass).await?;
        let ok = auth.matches(&given.user, &given.password);
        stream
            .write_all(&codec::encode_user_pass_status(ok))
            .await?;
        if !ok {
            return Err(HandshakeError::Refused("wrong username or password"));
        }
    }
    let request = match read_message(&mut stream, &mut buf, codec::parse_request).await {
        Err(HandshakeError::Codec(CodecError::AddressType(kind))) => {
            let reply = codec::encode_reply_unbound(Reply::AddressTypeNotSupported);
            stream.write_all(&reply).await?;
            return Err(CodecError::AddressType(kind).into());
        }
        other => other?,
    };
    if request.command != Command::Connect {
        let reply = codec::encode_reply_unbound(Reply::CommandNotSupported);
        stream.write_all(&reply).await?;
        return Err(HandshakeError::Refused(
            "only CONNECT is supported (Session Manager carries TCP to one destination)",
        ));
    }
    let destination = request.destination;
    let answer = answer(config, destination.clone());
    let incoming = Incoming {
        stream,
        early: buf,
        answer: Some(answer),
    };
    if let Err(returned) = config.router.send(Routed {
        destination,
        incoming,
    }) {
        // postern is stopping.
        let routed = returned.0;
        routed
            .incoming
            .refuse(crate::forward::link::Outcome::SessionEnded(
                crate::forward::link::STOPPING,
            ));
    }
    Ok(())
}

/// The answer of a CONNECT to `destination`: the reply for the outcome, and a notice when it
/// is a failure.
fn answer(config: &Listener, destination: Destination) -> Answer {
    let notices = config.notices.clone();
    let listener = config.local.to_string();
    let target = config.target.clone();
    Answer::new(move |outcome| {
        let (reply, reason) = reply_for(&outcome);
        if let Some(reason) = reason {
            let _ = notices.send(Notice::SocksRefused {
                listener,
                destination: destination.to_string(),
                target,
                reply: reply.words(),
                reason,
            });
        }
        codec::encode_reply_unbound(reply)
    })
}

/// Reads until `parse` yields a message, which it removes from the front of `buf`.
async fn read_message<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, CodecError>,
) -> Result<T, HandshakeError> {
    loop {
        if let Some((message, used)) = parse(buf)? {
            buf.drain(..used);
            return Ok(message);
        }
        if buf.len() >= MAX_HANDSHAKE_BYTES {
            return Err(HandshakeError::TooLong);
        }
        let mut chunk = [0u8; 512];
        let room = (MAX_HANDSHAKE_BYTES - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// How long a client may take to send its greeting, credentials and request.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// The longest handshake message is an RFC 1929 request (513 bytes); a request is at most 262.
const MAX_HANDSHAKE_BYTES: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_match_exactly_and_hide_the_password() {
        let auth = SocksAuth::new("alice", "s3cret").unwrap();
        assert!(auth.matches(b"alice", b"s3cret"));
        assert!(!auth.matches(b"alice", b"s3cre"));
        assert!(!auth.matches(b"alicE", b"s3cret"));
        assert!(!format!("{auth:?}").contains("s3cret"));
        assert!(SocksAuth::new("", "x").is_none());
        assert!(SocksAuth::new("u", &"p".repeat(256)).is_none());
    }
}
