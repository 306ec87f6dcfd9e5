//! Raw command-line arguments (clap derive). Flag doc comments are the help text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use clap_complete::ArgValueCandidates;

use crate::cli::demo::DemoArgs;
use postern_emulator::EmulatorArgs;

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

/// Options shared by every command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// AWS profile from the shared config files (default: AWS_PROFILE, else the default
    /// profile).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, or the profile's).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,

    /// Endpoint URL for AWS calls (the emulator, a VPC endpoint). AWS_ENDPOINT_URL_SSM and
    /// AWS_ENDPOINT_URL are honoured too, as in the AWS CLI.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// More logging: -v info, -vv debug, -vvv trace. POSTERN_LOG (a tracing filter such as
    /// `postern=debug`) overrides it. Inside a raw-mode session logs go to --log-file.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// File for logs (default inside a raw-mode session: postern.log in the temp directory).
    #[arg(long, global = true, value_name = "FILE", env = "POSTERN_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Role broker options.
    #[command(flatten)]
    pub broker: crate::cli::broker::BrokerArgs,

    /// Pre-fill the instance picker's query (bare `postern`, or a command without TARGET).
    #[arg(long, global = true, value_name = "TEXT")]
    pub query: Option<String>,

    /// With the picker: take the only online match of --query without showing the picker.
    #[arg(long = "select-1", global = true)]
    pub select_one: bool,

    /// The target account's credentials, chosen by target resolution (not a flag).
    #[arg(skip)]
    pub credentials: Option<crate::aws::CredentialsOverride>,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open an interactive shell on an instance.
    Shell(ShellArgs),
    /// Run one command on an instance and exit with its status.
    Exec(ExecArgs),
    /// Forward local ports to ports on an instance, or through it to other hosts.
    Forward(ForwardArgs),
    /// Carry one SSH connection over Session Manager on stdin/stdout (for ssh's ProxyCommand).
    SshProxy(SshProxyArgs),
    /// Run the system ssh to an instance, with postern as its ProxyCommand.
    Ssh(SshArgs),
    /// Print an ssh_config block so that plain `ssh i-0123456789abcdef0.postern` works.
    SshConfig(SshConfigArgs),
    /// List the instances of the index (cached, else discovered): a table or JSON lines.
    List(crate::cli::index::ListArgs),
    /// Print credentials for an account (credential_process JSON or shell exports) through the
    /// role broker.
    Creds(crate::cli::broker::CredsArgs),
    /// Show the source identity and which configured accounts it reaches.
    Whoami(crate::cli::broker::WhoamiArgs),
    /// List configured accounts with environment, role and last success; `accounts sync`
    /// records the organization's accounts.
    Accounts(crate::cli::broker::AccountsArgs),
    /// Print the shell's completion script (bash, zsh, fish); instance names complete from the
    /// cache. Install with e.g. `postern completions bash > ~/.local/share/bash-completion/completions/postern`.
    Completions(crate::cli::completions::CompletionsArgs),
    /// Explain, step by step, whether a target is reachable and why not.
    Doctor(DoctorArgs),
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

/// `postern doctor`.
#[derive(clap::Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Instance id (i-…, mi-…) to check; without one only credentials, endpoint and clock are
    /// checked.
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,

    /// Check role assumption into this account (alias, id or role ARN from the postern
    /// configuration) and run the remaining checks with its credentials.
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,

    /// Do not probe StartSession permission with a real session (StartSession followed at
    /// once by TerminateSession).
    #[arg(long)]
    pub no_probe: bool,

    /// The session document to probe with (default: the shell).
    #[arg(long, value_name = "NAME")]
    pub document: Option<String>,

    /// Print one JSON object per check instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// `postern history`.
#[derive(clap::Args, Debug, Clone)]
pub struct HistoryArgs {
    /// Print the records as JSON lines, as stored.
    #[arg(long)]
    pub json: bool,

    /// Show the last N sessions.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
}

/// `postern install-plugin`.
#[derive(clap::Args, Debug, Clone)]
pub struct InstallPluginArgs {
    /// Directory for the `session-manager-plugin` link (default: ~/.local/bin).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Replace an existing `session-manager-plugin` there (the official one, say).
    #[arg(long)]
    pub force: bool,
}

/// `postern plugin`: the official plugin's arguments, passed through.
#[derive(clap::Args, Debug, Clone)]
pub struct PluginArgs {
    /// RESPONSE REGION StartSession PROFILE PARAMETERS ENDPOINT, or `--version`.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..
    )]
    pub args: Vec<String>,
}

/// `postern forward`.
#[derive(clap::Args, Debug, Clone)]
pub struct ForwardArgs {
    /// Instance id (i-…, mi-…), Name tag, NAME@ACCOUNT-ALIAS, private IP or DNS name; none
    /// opens the instance picker (on a terminal).
    #[arg(value_name = "TARGET", add = ArgValueCandidates::new(crate::cli::completions::targets))]
    pub target: Option<String>,

    /// Forward `[BIND:]LOCAL` to REMOTE_PORT on the instance, or `[BIND:]LOCAL:HOST:PORT` to HOST:PORT
    /// as reached from the instance. LOCAL 0 picks a free port; BIND defaults to 127.0.0.1.
    /// Repeatable.
    #[arg(
        short = 'L',
        long = "local",
        required = true,
        value_name = "[BIND:]LOCAL:[HOST:]PORT"
    )]
    pub forwards: Vec<String>,

    /// Parallel SSM sessions per forward, opened as concurrent connections need them: a number,
    /// or `auto` (up to 4 sessions, a new one once each carries 4 connections; in basic mode one
    /// connection per session).
    #[arg(long, value_name = "N|auto", default_value = "auto")]
    pub sessions: String,

    /// Print one JSON object per forward on stdout when it is ready, instead of a sentence.
    #[arg(long)]
    pub json: bool,

    /// Session options.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `postern ssh-proxy`.
#[derive(clap::Args, Debug, Clone)]
pub struct SshProxyArgs {
    /// Instance id (i-…, mi-…) or any TARGET of `shell`, optionally with a `.postern` suffix
    /// (as `ssh-config` names it).
    #[arg(value_name = "TARGET", add = ArgValueCandidates::new(crate::cli::completions::targets))]
    pub target: String,

    /// The port sshd listens on, on the instance.
    #[arg(value_name = "PORT", default_value_t = 22)]
    pub port: u16,

    /// Session options.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `postern ssh`.
#[derive(clap::Args, Debug, Clone)]
pub struct SshArgs {
    /// `[USER@]TARGET`: the instance (as for `shell`), optionally with the remote user.
    #[arg(value_name = "[USER@]TARGET", add = ArgValueCandidates::new(crate::cli::completions::targets))]
    pub destination: String,

    /// Arguments for ssh after `--` (options, then the remote command).
    #[arg(last = true, value_name = "SSH ARGS")]
    pub ssh_args: Vec<String>,

    /// The ssh program to run.
    #[arg(long, value_name = "PROGRAM", default_value = "ssh")]
    pub ssh_program: String,

    /// Reason recorded with the session (StartSession `Reason`, 1-256 characters).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `postern ssh-config`.
#[derive(clap::Args, Debug, Clone)]
pub struct SshConfigArgs {}

/// Options of commands that start port or SSH sessions.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Reason recorded with the session (StartSession `Reason`, 1-256 characters).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Give up when the agent has not started a session after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Keepalive and reconnection.
    #[command(flatten)]
    pub resilience: crate::cli::resilience::ResilienceArgs,
}

/// `postern shell`.
#[derive(clap::Args, Debug, Clone)]
pub struct ShellArgs {
    /// Instance id (i-…, mi-…), Name tag, NAME@ACCOUNT-ALIAS, private IP or DNS name; none
    /// opens the instance picker (on a terminal).
    #[arg(value_name = "TARGET", add = ArgValueCandidates::new(crate::cli::completions::targets))]
    pub target: Option<String>,

    /// Session options.
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `postern exec`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExecArgs {
    /// Instance id (i-…, mi-…), Name tag, NAME@ACCOUNT-ALIAS, private IP or DNS name; none
    /// opens the instance picker (on a terminal).
    #[arg(value_name = "TARGET", add = ArgValueCandidates::new(crate::cli::completions::targets))]
    pub target: Option<String>,

    /// The command and its arguments, after `--`. As with ssh, they are joined with spaces and
    /// run by the remote `sh -c`, so quote what the remote shell must not expand.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,

    /// Give the command an interactive terminal (default: when stdin and stdout are both
    /// terminals).
    #[arg(short = 't', long, conflicts_with = "no_tty")]
    pub tty: bool,

    /// Never treat the session as interactive: no raw mode, byte-exact output.
    #[arg(short = 'T', long)]
    pub no_tty: bool,

    /// Run COMMAND through this session document's `command` parameter instead of
    /// AWS-StartInteractiveCommand. The exit status then comes only from the document's
    /// ExitCode message (NonInteractiveCommands documents with separate output streams).
    #[arg(long, value_name = "NAME")]
    pub document: Option<String>,

    /// Session options.
    #[command(flatten)]
    pub session: SessionArgs,
}

/// Options of commands that open a session.
#[derive(clap::Args, Debug, Clone)]
pub struct SessionArgs {
    /// Reason recorded with the session (StartSession `Reason`, 1-256 characters).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Give up when the agent has not started the session after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Escape character for `~.` (close) and `~?` (help) after a newline, or `none`.
    #[arg(short = 'e', long, value_name = "CHAR", default_value = "~")]
    pub escape_char: String,

    /// Keepalive and reconnection.
    #[command(flatten)]
    pub resilience: crate::cli::resilience::ResilienceArgs,
}
