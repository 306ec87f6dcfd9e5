//! Raw command-line arguments (clap derive). Flag doc comments are the help text.

use clap::{Parser, Subcommand};
use postern_emulator::EmulatorArgs;

use crate::cli::commands::demo::DemoArgs;
use crate::cli::commands::doctor::DoctorArgs;
use crate::cli::commands::forward::ForwardArgs;
use crate::cli::commands::history::HistoryArgs;
use crate::cli::commands::install::InstallPluginArgs;
use crate::cli::commands::plugin::PluginArgs;
use crate::cli::commands::session::{ExecArgs, ShellArgs};
use crate::cli::commands::setup::SetupArgs;
use crate::cli::commands::ssh::{SshArgs, SshConfigArgs, SshProxyArgs};
use crate::cli::commands::tunnel::{DownArgs, StatusArgs, SupervisorArgs, UpArgs};
use crate::cli::common::CommonArgs;

/// Reach every instance in every AWS account through SSM Session Manager, natively.
#[derive(Parser, Debug)]
#[command(name = "postern", version, about, max_term_width = 100)]
pub struct Args {
    /// Options shared by every command.
    #[command(flatten)]
    pub common: CommonArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open an interactive shell on an instance.
    Shell(ShellArgs),
    /// Run one command on an instance and exit with its status.
    Exec(ExecArgs),
    /// Copy a file to or from an instance (`TARGET:PATH`), striped over several sessions.
    Cp(crate::cli::commands::cp::CpArgs),
    /// Forward local ports to ports on an instance, or through it to other hosts.
    Forward(ForwardArgs),
    /// Carry one SSH connection over Session Manager on stdin/stdout (for ssh's ProxyCommand).
    SshProxy(SshProxyArgs),
    /// Run the system ssh to an instance, with postern as its ProxyCommand.
    Ssh(SshArgs),
    /// Start named tunnel sets (`[tunnels.NAME]` in the configuration or tunnels.toml) in the
    /// background; returns once every listener is ready.
    Up(UpArgs),
    /// Show the background tunnels: state, listeners, sessions, connections, bytes, errors.
    Status(StatusArgs),
    /// Stop background tunnels (their sessions end; their state is removed).
    Down(DownArgs),
    /// Serve background tunnels (started by `postern up`, which hands it its work).
    #[command(hide = true)]
    TunnelSupervisor(SupervisorArgs),
    /// Print an ssh_config block so that plain `ssh i-0123456789abcdef0.postern` works.
    SshConfig(SshConfigArgs),
    /// List the instances of the index (cached, else discovered): a table or JSON lines.
    List(crate::cli::commands::list::ListArgs),
    /// Print credentials for an account (credential_process JSON or shell exports) through the
    /// role broker.
    Creds(crate::cli::commands::broker::CredsArgs),
    /// Open the AWS console signed in to an account with its role (the account's guardrails
    /// first); `--print-url` prints the sign-in URL instead.
    Console(crate::cli::commands::console::ConsoleArgs),
    /// Show the source identity and which configured accounts it reaches.
    Whoami(crate::cli::commands::broker::WhoamiArgs),
    /// List configured accounts with environment, role and last success; `accounts sync`
    /// records the organization's accounts.
    Accounts(crate::cli::commands::broker::AccountsArgs),
    /// Print the shell's completion script (bash, zsh, fish); instance names complete from the
    /// cache. Install with e.g. `postern completions bash > ~/.local/share/bash-completion/completions/postern`.
    Completions(crate::cli::commands::completions::CompletionsArgs),
    /// Explain, step by step, whether a target is reachable and why not.
    Doctor(DoctorArgs),
    /// Create or update postern's session documents (Postern-Command) in every configured
    /// account and region, and report the Session Manager preferences that affect postern.
    Setup(SetupArgs),
    /// Show the local history of sessions (the audit trail).
    History(HistoryArgs),
    /// Link postern as `session-manager-plugin`, so `aws ssm start-session` uses it.
    InstallPlugin(InstallPluginArgs),
    /// Act as session-manager-plugin (the AWS CLI's argument contract); a link named
    /// `session-manager-plugin` does the same.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Plugin(PluginArgs),
    /// Run a local Session Manager emulator (message gateway and SSM agent) on loopback.
    Emulator(EmulatorArgs),
    /// Try postern on an emulated fleet: no AWS account, no network; every session runs on
    /// this machine.
    Demo(DemoArgs),
}
