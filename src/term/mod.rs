//! The local terminal, through crossterm: raw mode behind a guard that always restores, the
//! window size, whether the standard streams are terminals, our own colours, the escaping of
//! strings that came from AWS or an instance, and the signals a session reacts to.
//!
//! It must not read or write session data, nor decode keys on the session path: the driver
//! pumps stdin byte for byte. Platform code lives in `unix.rs` only (a Windows port fills a
//! `windows.rs` beside it).

mod raw;
mod safe;
mod size;
mod style;
#[cfg(unix)]
mod unix;

pub use raw::TerminalGuard;
pub use safe::{escape, escape_text};
pub use size::{interactive, window_size};
pub use style::{Colour, colour_on, paint, paint_nth};
#[cfg(unix)]
pub use unix::{LocalSignal, Signals, die_of, is_terminal, suspend, termination};
