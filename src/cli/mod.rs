//! The command line, flowing one way (ripgrep `lowargs.rs` -> `hiargs.rs`):
//!
//! 1. `args`: clap parses the raw arguments (each command's arguments live in its file
//!    under `commands`).
//! 2. `plan`: [`Plan::from_args`] validates them into a plan; no network call.
//! 3. `resolve`: a session command's TARGET becomes one instance id (index, picker,
//!    guardrails, the account's role).
//! 4. `run`: the command runs.
//! 5. `crate::report` prints the error, if any; `errors` mapped it to its exit code and hint.
//!
//! Files here are the layers; `commands/` holds one file per command (its arguments, plan and
//! run). Commands import layers, never `args`, `plan` or `run`; `anyhow` is used here and in
//! `report` only.

mod args;
mod audit;
mod aws_context;
mod commands;
mod common;
mod errors;
mod logging;
mod plan;
mod reach;
mod resilience;
mod resolve;
mod run;

pub use args::{Args, Command};
pub use commands::broker::{AccountsArgs, AccountsCommand, BrokerPlan, CredsArgs, WhoamiArgs};
pub use commands::completions::CompletionsArgs;
pub use commands::cp::{CpArgs, CpPlan, Direction};
pub use commands::demo::DemoArgs;
pub use commands::doctor::{DoctorArgs, DoctorPlan};
pub use commands::exec_many::{ExecManyPlan, FleetArgs, OutputMode};
pub use commands::forward::{ForwardArgs, ForwardPlan};
pub use commands::history::HistoryArgs;
pub use commands::install::InstallPluginArgs;
pub use commands::list::{ListArgs, ListPlan};
pub use commands::plugin::{PLUGIN_NAME, PluginArgs, plugin_invocation, run_plugin};
pub use commands::session::{ExecArgs, ExecPlan, SessionArgs, SessionPlan, ShellArgs};
pub use commands::ssh::{ProxyPlan, SshArgs, SshConfigArgs, SshConfigPlan, SshPlan, SshProxyArgs};
pub use commands::sync::SyncArgs;
pub use commands::tunnel::{DownArgs, StatusArgs, SupervisorArgs, UpArgs, UpPlan};
pub use common::{CommonArgs, ConnectArgs, Target};
pub use plan::Plan;
pub use resilience::{NoticeStyle, ResilienceArgs};
pub use run::run;
