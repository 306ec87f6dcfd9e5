//! The command line: clap derive gives raw [`Args`]; [`Plan::from_args`] validates them into a
//! [`Plan`] before any network call (ripgrep `lowargs.rs` -> `hiargs.rs`); [`run`] carries the
//! plan out. `anyhow` is used here and in `report` only.

mod args;
mod audit;
mod broker;
mod doctor;
mod forward;
mod history;
mod index;
mod install;
mod logging;
mod plan;
mod plugin;
mod run;
mod ssh;

pub use args::{
    Args, Command, CommonArgs, ConnectArgs, DoctorArgs, ExecArgs, ForwardArgs, HistoryArgs,
    InstallPluginArgs, PluginArgs, SessionArgs, ShellArgs, SshArgs, SshConfigArgs, SshProxyArgs,
};
pub use broker::{AccountsArgs, BrokerArgs, BrokerPlan, CredsArgs, WhoamiArgs};
pub use doctor::DoctorPlan;
pub use index::{ListArgs, ListPlan};
pub use plan::{ExecPlan, ForwardPlan, Plan, ProxyPlan, SessionPlan, SshPlan, Target};
pub use plugin::{PLUGIN_NAME, plugin_invocation, run_plugin};
pub use run::run;
