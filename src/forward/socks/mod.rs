//! `postern forward -D`: a SOCKS5 proxy (RFC 1928, RFC 1929) whose CONNECTs go through the
//! target, one AWS-StartPortForwardingSessionToRemoteHost session (or pool of sessions) per
//! destination, opened on first use and closed when idle.
//!
//! `codec` is the wire format, sans IO; `server` drives one listener's handshakes; `router`
//! keeps a pool per destination; `reply` maps what became of a connection to a SOCKS reply.
//! It must not print: refusals reach `cli` as notices.

mod codec;
mod reply;
mod router;
mod server;

pub(crate) use router::Router;
pub use server::SocksAuth;
pub(crate) use server::{Listener, serve};
