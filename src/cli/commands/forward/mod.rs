//! `postern forward`: its arguments, plan and run (`command`), and the live status line it
//! shows on a terminal (`status`).

mod command;
mod status;

pub(crate) use command::run;
pub use command::{ForwardArgs, ForwardPlan};
