//! The local terminal: raw mode behind a guard that always restores, the window size, whether
//! the standard streams are terminals, and the signals a session reacts to.
//!
//! It must not read or write session data; the driver does that.

mod raw;
mod signals;
mod size;

pub use raw::TerminalGuard;
pub use signals::{LocalSignal, Signals, suspend};
pub use size::{interactive, is_terminal, window_size};
