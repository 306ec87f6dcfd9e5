//! `postern forward`: its arguments, plan and run (`command`), and the live status line it
//! shows on a terminal (`status`).

mod command;
mod status;

pub use command::{ForwardArgs, ForwardPlan};
pub(crate) use command::{exposure_warning, render_notice, run};
