//! The command line: clap derive gives raw [`Args`]; [`Plan::from_args`] validates them into a
//! [`Plan`] before any network call (ripgrep `lowargs.rs` -> `hiargs.rs`); [`run`] carries the
//! plan out. `anyhow` is used here and in `report` only.

mod args;
mod audit;
mod broker;
mod completions;
mod demo;
mod doctor;
mod forward;
mod history;
mod index;
mod install;
mod logging;
mod plan;
mod plugin;
mod reach;
mod resilience;
mod run;
mod ssh;
mod sync;

pub use args::{
    Args, Command, CommonArgs, ConnectArgs, DoctorArgs, ExecArgs, ForwardArgs, HistoryArgs,
    InstallPluginArgs, PluginArgs, SessionArgs, ShellArgs, SshArgs, SshConfigArgs, SshProxyArgs,
};
pub use broker::{AccountsArgs, AccountsCommand, BrokerArgs, BrokerPlan, CredsArgs, WhoamiArgs};
pub use completions::CompletionsArgs;
pub use demo::DemoArgs;
pub use doctor::DoctorPlan;
pub use index::{ListArgs, ListPlan};
pub use plan::{ExecPlan, ForwardPlan, Plan, ProxyPlan, SessionPlan, SshPlan, Target};
pub use plugin::{PLUGIN_NAME, plugin_invocation, run_plugin};
pub use resilience::{NoticeStyle, ResilienceArgs};
pub use run::run;
pub use sync::SyncArgs;
