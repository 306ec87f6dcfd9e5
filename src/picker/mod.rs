//! Choosing an instance: the [`Picker`] trait (a TTY implementation, or a scripted one in
//! tests), the fuzzy [`Matcher`], and the rows the picker shows.

mod frecency;
mod matcher;
mod rows;
mod tty;

pub use frecency::Frecency;
pub use matcher::Matcher;
#[cfg(test)]
pub(crate) use rows::ScriptedPicker;
pub use rows::{PickOutcome, Picker, Row, choose, rows_for};
pub use tty::TtyPicker;
