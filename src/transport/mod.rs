//! The data channel's transport: each session's start-up and end ([`lifecycle`]), opening the websocket, the websocket pump every driver shares
//! (keepalive and reconnection live there, once), and the session driver that pumps the sans-IO core against it and the local terminal.
//!
//! It must not decide protocol behaviour (the core does) or print user-facing errors
//! (`report` does).

mod channel;
mod driver;
mod escape;
mod exit_marker;
pub mod ledger;
pub mod lifecycle;
mod local;
mod pump;
pub(crate) mod stdin_lines;
mod tty;

pub use channel::{CLIENT_VERSION, DataChannel, OpenError, client_id, open, open_frame, redact};
pub use driver::{DriverConfig, DriverError, Finished, Local, SessionEnd, run};
pub use escape::{EscapeFilter, Escaped};
pub use exit_marker::{ExitMarker, Marked, MarkerScanner, shell_quote};
pub use local::{Input, LocalInput, Outputs, stdin_input};
pub use pump::{
    ChannelFailure, DEFAULT_KEEPALIVE, Lost, Notifier, Pump, ReconnectError, Reconnection,
    Resilience, ResumeTarget, deliver, now, sleep_until,
};
pub use stdin_lines::Base64Lines;
