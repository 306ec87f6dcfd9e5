//! `postern cp`: files between this machine and an instance over Session Manager, striped by
//! byte range over several sessions, base64 on the wire, SHA-256 checked end to end.

mod copy;
mod download;
mod failures;
mod interrupt;
mod plan;
mod progress;
mod ranges;
mod remote;
mod resume;
mod script;
mod tree;
mod upload;
mod upload_state;
mod wire;

pub(crate) use copy::run;
pub use plan::{CpArgs, CpPlan, Direction};
