//! The command line: clap derive gives raw [`Args`]; [`Plan::from_args`] validates them into a
//! [`Plan`] before any network call (ripgrep `lowargs.rs` -> `hiargs.rs`); [`run`] carries the
//! plan out. `anyhow` is used here and in `report` only.

mod args;
mod broker;
mod completions;
mod forward;
mod index;
mod logging;
mod plan;
mod reach;
mod resilience;
mod run;
mod ssh;
mod sync;

pub use args::{
    Args, Command, CommonArgs, ConnectArgs, ExecArgs, ForwardArgs, SessionArgs, ShellArgs, SshArgs,
    SshConfigArgs, SshProxyArgs,
};
pub use broker::{AccountsArgs, AccountsCommand, BrokerArgs, BrokerPlan, CredsArgs, WhoamiArgs};
pub use completions::CompletionsArgs;
pub use index::{ListArgs, ListPlan};
pub use plan::{ExecPlan, ForwardPlan, Plan, ProxyPlan, SessionPlan, SshPlan, Target};
pub use resilience::{NoticeStyle, ResilienceArgs};
pub use run::run;
pub use sync::SyncArgs;
