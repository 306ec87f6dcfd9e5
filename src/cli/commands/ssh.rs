//! `postern ssh-proxy`, `postern ssh` and `postern ssh-config`.
//!
//! `ssh-proxy` keeps stdout for stream bytes only; its errors go to stderr through `report`.
//! `ssh` replaces this process with the system ssh, postern being its ProxyCommand; with
//! `--push-key` it stays ssh's parent instead, to remove the ephemeral key afterwards
//! ([`super::ssh_push_key`]).

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode};

use clap_complete::ArgValueCandidates;

use crate::aws::{AwsOptions, SsmClient};
use crate::cli::aws_context::load_aws;
use crate::cli::common::{
    CommonArgs, ConnectArgs, SSH_HOST_SUFFIX, Target, aws_options, broker_flags, check_reason,
};
use crate::cli::errors::proxy_failure;
use crate::cli::reach::load_config;
use crate::cli::resilience::NoticeStyle;
use crate::forward::stdio::{self, ProxyEnd, ProxyError, ProxyOptions};
use crate::report::{ErrorKind, ExpectedError};
use crate::transport::shell_quote;

/// `postern ssh-proxy`.
#[derive(clap::Args, Debug, Clone)]
pub struct SshProxyArgs {
    /// Instance id (i-…, mi-…) or any TARGET of `shell`, optionally with a `.postern` suffix
    /// (as `ssh-config` names it).
    #[arg(value_name = "TARGET", add = ArgValueCandidates::new(crate::cli::commands::completions::targets))]
    pub target: String,

    /// The port sshd listens on, on the instance.
    #[arg(value_name = "PORT", default_value_t = 22)]
    pub port: u16,

    /// Push an ephemeral key for the OS user --login-name through EC2 Instance Connect and
    /// add it to ssh-agent for 60 seconds before connecting (what `ssh-config --push-key`
    /// writes).
    #[arg(long, requires = "login_name")]
    pub push_key: bool,

    /// The OS user the key is pushed for (ssh's `%r`).
    #[arg(short = 'l', long, value_name = "USER")]
    pub login_name: Option<String>,

    /// Session options.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `postern ssh`.
#[derive(clap::Args, Debug, Clone)]
pub struct SshArgs {
    /// `[USER@]TARGET`: the instance (as for `shell`), optionally with the remote user.
    #[arg(value_name = "[USER@]TARGET", add = ArgValueCandidates::new(crate::cli::commands::completions::targets))]
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

    /// The remote OS user (as `USER@TARGET`; default ec2-user with --push-key).
    #[arg(short = 'l', long, value_name = "USER")]
    pub login_name: Option<String>,

    /// Push an ephemeral ed25519 key through EC2 Instance Connect (SendSSHPublicKey, valid 60
    /// seconds) and log in with it; the private key lives in a 0600 temp file removed when ssh
    /// ends. Also `push_key = true` in the configuration (top level or per account).
    #[arg(long, overrides_with = "no_push_key")]
    pub push_key: bool,

    /// Do not push a key, whatever the configuration says.
    #[arg(long, overrides_with = "push_key")]
    pub no_push_key: bool,
}

/// `postern ssh-config`.
#[derive(clap::Args, Debug, Clone)]
pub struct SshConfigArgs {
    /// Print a block whose ProxyCommand pushes an ephemeral key (EC2 Instance Connect) and
    /// hands it to ssh-agent for 60 seconds; also `push_key = true` in the configuration.
    #[arg(long)]
    pub push_key: bool,
}

/// An SSH proxy to run.
#[derive(Clone, Debug)]
pub struct ProxyPlan {
    /// AWS configuration choices.
    pub aws: AwsOptions,
    /// What to connect to.
    pub options: ProxyOptions,
    /// The OS user to push an ephemeral key for (into ssh-agent) before connecting.
    pub push_key_for: Option<String>,
}

/// `postern ssh-config`'s choices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshConfigPlan {
    /// AWS configuration choices, passed on to the ProxyCommand.
    pub aws: AwsOptions,
    /// `--push-key` (else the configuration decides).
    pub push_key: bool,
    /// `--config`, where the configuration is read from.
    pub config: Option<std::path::PathBuf>,
}

/// An ssh invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshPlan {
    /// AWS configuration choices, passed on to the ProxyCommand.
    pub aws: AwsOptions,
    /// The remote user, if given.
    pub user: Option<String>,
    /// The instance.
    pub target: Target,
    /// Further ssh arguments.
    pub ssh_args: Vec<String>,
    /// The ssh program.
    pub ssh_program: String,
    /// StartSession reason for the proxy.
    pub reason: Option<String>,
    /// Role broker flags passed on to the ProxyCommand (`--config`, `--source`, …).
    pub broker_flags: Vec<String>,
    /// `--push-key` (`Some(true)`) or `--no-push-key` (`Some(false)`); `None`: the
    /// configuration decides.
    pub push_key: Option<bool>,
    /// `--config`, where the configuration is read from.
    pub config: Option<std::path::PathBuf>,
    /// The configured account the target resolved in (set by resolution).
    pub account: Option<String>,
}

impl ProxyPlan {
    pub(crate) fn new(common: &CommonArgs, args: SshProxyArgs) -> Result<Self, ExpectedError> {
        check_reason(args.connect.reason.as_deref())?;
        let raw = args
            .target
            .strip_suffix(SSH_HOST_SUFFIX)
            .unwrap_or(&args.target);
        let target = Target::given(raw);
        if let Some(user) = &args.login_name {
            check_os_user(user)?;
        }
        Ok(Self {
            aws: aws_options(common)?,
            push_key_for: args.push_key.then_some(args.login_name).flatten(),
            options: ProxyOptions {
                target: target.as_str().to_owned(),
                port: args.port,
                reason: args.connect.reason,
                handshake_timeout: args.connect.handshake_timeout,
                resilience: args.connect.resilience.resilience(NoticeStyle::Line),
            },
        })
    }
}

impl SshPlan {
    pub(crate) fn new(common: &CommonArgs, args: SshArgs) -> Result<Self, ExpectedError> {
        check_reason(args.reason.as_deref())?;
        let (user, host) = match args.destination.rsplit_once('@') {
            Some((user, host)) if !user.is_empty() => (Some(user.to_owned()), host),
            _ => (None, args.destination.as_str()),
        };
        let user = match (user, args.login_name) {
            (Some(at), Some(login)) if at != login => {
                return Err(ExpectedError::new(
                    ErrorKind::Usage,
                    format!("two remote users: `{at}@` and -l {login}"),
                )
                .hint("give the user once, as USER@TARGET or with -l"));
            }
            (at, login) => at.or(login),
        };
        if let Some(user) = user.as_deref() {
            check_os_user(user)?;
        }
        let host = host.strip_suffix(SSH_HOST_SUFFIX).unwrap_or(host);
        let push_key = match (args.push_key, args.no_push_key) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        Ok(Self {
            aws: aws_options(common)?,
            broker_flags: broker_flags(common),
            user,
            target: Target::given(host),
            ssh_args: args.ssh_args,
            ssh_program: args.ssh_program,
            reason: args.reason,
            push_key,
            config: common.broker.config.clone(),
            account: None,
        })
    }
}

impl SshConfigPlan {
    pub(crate) fn new(common: &CommonArgs, args: &SshConfigArgs) -> Result<Self, ExpectedError> {
        Ok(Self {
            aws: aws_options(common)?,
            push_key: args.push_key,
            config: common.broker.config.clone(),
        })
    }
}

/// A remote user name ssh cannot mistake for an option (`-oProxyCommand=...`).
fn check_os_user(user: &str) -> Result<(), ExpectedError> {
    if user.starts_with('-') {
        return Err(ExpectedError::new(
            ErrorKind::Usage,
            format!("the user name `{user}` begins with `-`"),
        )
        .hint("ssh reads such a name as an option: give a user name without a leading -"));
    }
    Ok(())
}

/// The OS user keys are pushed for when none is given: Amazon Linux's (the EC2 Instance
/// Connect documentation's example user; Ubuntu images use `ubuntu`).
pub(crate) const DEFAULT_OS_USER: &str = "ec2-user";

/// The SSH session document (SPEC.md §1.2).
pub(crate) const SSH_DOCUMENT: &str = "AWS-StartSSHSession";

/// Runs the proxy; exits 0 however the stream ended.
pub(crate) async fn proxy(plan: &ProxyPlan) -> anyhow::Result<ExitCode> {
    let target = plan.options.target.as_str();
    let (context, described) = load_aws(&plan.aws, target).await?;
    if let Some(user) = &plan.push_key_for {
        super::ssh_push_key::push_into_agent(&context, target, user, &described).await?;
    }
    let ssm = SsmClient::new(&context);
    let result = stdio::run(ssm, &plan.options).await;
    proxy_outcome(result, plan.options.port, described)
}

/// The exit code or error for a proxy that ended with `result`; `port` is sshd's on the
/// instance, `described` names the target.
pub(crate) fn proxy_outcome(
    result: Result<ProxyEnd, ProxyError>,
    port: u16,
    described: String,
) -> anyhow::Result<ExitCode> {
    let end = result.map_err(|e| proxy_failure(e, port, described))?;
    tracing::info!(?end, "ssh-proxy done");
    Ok(ExitCode::SUCCESS)
}

/// Whether `plan` pushes a key: `--push-key`/`--no-push-key`, else the configuration (the
/// resolved account's `push_key`, else the top-level one).
pub(crate) fn wants_pushed_key(plan: &SshPlan) -> Result<bool, ExpectedError> {
    if let Some(push) = plan.push_key {
        return Ok(push);
    }
    let config = load_config(plan.config.as_deref())?;
    Ok(config.push_key_for(plan.account.as_deref()))
}

/// Replaces this process with ssh; returns only if ssh could not be started.
pub(crate) fn ssh(plan: &SshPlan) -> anyhow::Result<ExitCode> {
    let mut command = ssh_command(plan, None)?;
    tracing::debug!(?command, "running ssh");
    let err = command.exec();
    Err(ssh_not_started(&plan.ssh_program, err).into())
}

/// The ssh command of `plan`: postern as ProxyCommand, with `key` as its only identity when
/// given, for `user` when given.
pub(crate) fn ssh_command(
    plan: &SshPlan,
    key: Option<(&std::path::Path, &str)>,
) -> anyhow::Result<Command> {
    let proxy = proxy_command(&plan.aws, plan.reason.as_deref(), &plan.broker_flags, None)?;
    let user = key.map(|(_, user)| user).or(plan.user.as_deref());
    let destination = match user {
        Some(user) => format!("{user}@{}", plan.target),
        None => plan.target.to_string(),
    };
    let mut command = Command::new(&plan.ssh_program);
    command.arg("-o").arg(format!("ProxyCommand={proxy}"));
    if let Some((path, _)) = key {
        command
            .arg("-i")
            .arg(path)
            .args(["-o", "IdentitiesOnly=yes"]);
    }
    command.arg(destination).args(&plan.ssh_args);
    Ok(command)
}

/// The error of an ssh `program` that could not be started.
pub(crate) fn ssh_not_started(program: &str, err: std::io::Error) -> ExpectedError {
    ExpectedError::new(ErrorKind::Usage, format!("could not run `{program}`"))
        .hint("install OpenSSH's client, or name it with --ssh-program")
        .source(err)
}

/// Prints the ssh_config block.
pub(crate) fn config(plan: &SshConfigPlan) -> anyhow::Result<ExitCode> {
    let push_key = plan.push_key || load_config(plan.config.as_deref())?.push_key;
    let proxy = proxy_command(&plan.aws, None, &[], push_key.then_some("%r"))?;
    let mut block = format!(
        "# Added by `postern ssh-config`: `ssh i-0123456789abcdef0{SSH_HOST_SUFFIX}` reaches the \
         instance\n# through AWS Systems Manager Session Manager, with no open inbound port.\n"
    );
    if push_key {
        block.push_str(&format!(
            "# Each connection pushes a new ed25519 key for the remote user through EC2 Instance\n\
             # Connect and adds it to ssh-agent for 60 seconds (SSH_AUTH_SOCK must be set).\n\
             # `ssh USER@i-….postern` logs in as USER; without USER@, as {DEFAULT_OS_USER}.\n"
        ));
    }
    block.push_str(&format!(
        "Host *{SSH_HOST_SUFFIX}\n    ProxyCommand {proxy}\n    HostKeyAlias %n\n"
    ));
    if push_key {
        block.push_str(&format!("    User {DEFAULT_OS_USER}\n"));
    }
    println!("{block}");
    Ok(ExitCode::SUCCESS)
}

/// `'/path/to/postern' [AWS and broker options] ssh-proxy [--reason TEXT] [--push-key -l USER]
/// %h %p`, quoted for the shell ssh runs it with. `--reason` is `ssh-proxy`'s own option, not a
/// global one: it goes after the subcommand.
fn proxy_command(
    aws: &AwsOptions,
    reason: Option<&str>,
    broker_flags: &[String],
    push_key_for: Option<&str>,
) -> anyhow::Result<String> {
    let exe: OsString = std::env::current_exe()?.into_os_string();
    let mut words = vec![shell_quote(&exe.to_string_lossy())];
    // `%` is a ProxyCommand token: doubled in every value.
    let option =
        |flag: &str, value: &str| [flag.to_owned(), shell_quote(&value.replace('%', "%%"))];
    let global = [
        ("--profile", aws.profile.as_deref()),
        ("--region", aws.region.as_deref()),
        ("--endpoint-url", aws.endpoint_url.as_deref()),
    ];
    for (flag, value) in global {
        if let Some(value) = value {
            words.extend(option(flag, value));
        }
    }
    words.extend(
        broker_flags
            .iter()
            .map(|f| shell_quote(&f.replace('%', "%%"))),
    );
    words.push("ssh-proxy".to_owned());
    if let Some(reason) = reason {
        words.extend(option("--reason", reason));
    }
    if let Some(user) = push_key_for {
        // `%r` is ssh's token for the remote user: passed as is.
        words.extend(["--push-key".to_owned(), "-l".to_owned(), user.to_owned()]);
    }
    words.extend(["%h".to_owned(), "%p".to_owned()]);
    Ok(words.join(" "))
}
