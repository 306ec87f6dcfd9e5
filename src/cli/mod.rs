//! The command line: clap derive gives raw [`Args`]; [`Plan::from_args`] validates them into a
//! [`Plan`] before any network call (ripgrep `lowargs.rs` -> `hiargs.rs`); [`run`] carries the
//! plan out. `anyhow` is used here and in `report` only.

mod args;
mod logging;
mod plan;
mod run;

pub use args::{Args, Command, CommonArgs, ExecArgs, SessionArgs, ShellArgs};
pub use plan::{ExecPlan, Plan, SessionPlan, Target};
pub use run::run;
