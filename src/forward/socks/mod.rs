//! `postern forward -D`: a SOCKS5 proxy (RFC 1928, RFC 1929) whose CONNECTs go through the
//! target, one AWS-StartPortForwardingSessionToRemoteHost session (or pool of sessions) per
//! destination, opened on first use and closed when idle.
//!
//! `codec` is the wire format, sans IO (`postern_formats::socks`); `server` drives one
//! listener's handshakes; `router` keeps a pool per destination; `reply` maps what became of a
//! connection to a SOCKS reply.
//! It must not print: refusals reach `cli` as notices.

mod reply;
mod router;
mod server;

// The wire format lives in `postern-formats` (fuzzed without the AWS SDK); `socks::codec` stays.
use postern_formats::socks as codec;

pub(crate) use router::Router;
pub use server::SocksAuth;
pub(crate) use server::{Listener, serve};
