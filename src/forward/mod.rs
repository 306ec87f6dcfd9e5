//! Port forwarding (`postern forward`) and the session plumbing `ssh-proxy` shares with it:
//! `-L` and `-D` parsing, local listeners, session start and end, mux and basic links, the
//! session pool, the SOCKS5 proxy, upload pacing and the live counters.
//!
//! It must not print or exit: results and [`Notice`]s go back to `cli`, which reports them.

mod basic_link;
mod conn;
mod connect;
mod forwarder;
mod link;
mod listener;
mod mux_link;
mod pacing;
mod pool;
mod socks;
mod spec;
pub mod stdio;
mod traffic;

pub use connect::{ConnectError, Connected, Connector, describe_close, finish};
pub use forwarder::{
    ForwardError, ForwardOptions, ForwardReady, Forwarder, SocksReady, agent_at_least,
    start_request,
};
pub use link::{Notice, outstanding};
pub use listener::BindError;
pub use pacing::{INITIAL_WINDOW, MAX_WINDOW, MIN_WINDOW, UploadWindow};
pub use pool::{AUTO_IDLE_CLOSE, AUTO_MAX_SESSIONS, AUTO_PER_SESSION, LinkMode, SessionCount};
pub use socks::SocksAuth;
pub use spec::{ForwardSpec, Remote, SocksSpec, SpecError};
pub use traffic::{Rate, Traffic, TrafficSnapshot};
