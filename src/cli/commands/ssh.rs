//! `postern ssh-proxy`, `postern ssh` and `postern ssh-config`.
//!
//! `ssh-proxy` keeps stdout for stream bytes only; its errors go to stderr through `report`.
//! `ssh` replaces this process with the system ssh, postern being its ProxyCommand.

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
}

/// `postern ssh-config`.
#[derive(clap::Args, Debug, Clone)]
pub struct SshConfigArgs {}

/// An SSH proxy to run.
#[derive(Clone, Debug)]
pub struct ProxyPlan {
    /// AWS configuration choices.
    pub aws: AwsOptions,
    /// What to connect to.
    pub options: ProxyOptions,
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
}

impl ProxyPlan {
    pub(crate) fn new(common: &CommonArgs, args: SshProxyArgs) -> Result<Self, ExpectedError> {
        check_reason(args.connect.reason.as_deref())?;
        let raw = args
            .target
            .strip_suffix(SSH_HOST_SUFFIX)
            .unwrap_or(&args.target);
        let target = Target::given(raw);
        Ok(Self {
            aws: aws_options(common)?,
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
        if let Some(user) = user.as_deref().filter(|u| u.starts_with('-')) {
            // ssh would read it as an option (`-oProxyCommand=...`).
            return Err(ExpectedError::new(
                ErrorKind::Usage,
                format!("the user name `{user}` begins with `-`"),
            )
            .hint("ssh reads such a name as an option: give a user name without a leading -"));
        }
        let host = host.strip_suffix(SSH_HOST_SUFFIX).unwrap_or(host);
        Ok(Self {
            aws: aws_options(common)?,
            broker_flags: broker_flags(common),
            user,
            target: Target::given(host),
            ssh_args: args.ssh_args,
            ssh_program: args.ssh_program,
            reason: args.reason,
        })
    }
}

/// The SSH session document (SPEC.md §1.2).
pub(crate) const SSH_DOCUMENT: &str = "AWS-StartSSHSession";

/// Runs the proxy; exits 0 however the stream ended.
pub(crate) async fn proxy(plan: &ProxyPlan) -> anyhow::Result<ExitCode> {
    let target = plan.options.target.as_str();
    let (context, described) = load_aws(&plan.aws, target).await?;
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

/// Replaces this process with ssh; returns only if ssh could not be started.
pub(crate) fn ssh(plan: &SshPlan) -> anyhow::Result<ExitCode> {
    let proxy = proxy_command(&plan.aws, plan.reason.as_deref(), &plan.broker_flags)?;
    let destination = match &plan.user {
        Some(user) => format!("{user}@{}", plan.target),
        None => plan.target.to_string(),
    };
    let mut command = Command::new(&plan.ssh_program);
    command
        .arg("-o")
        .arg(format!("ProxyCommand={proxy}"))
        .arg(destination)
        .args(&plan.ssh_args);
    tracing::debug!(?command, "running ssh");
    let err = command.exec();
    Err(ExpectedError::new(
        ErrorKind::Usage,
        format!("could not run `{}`", plan.ssh_program),
    )
    .hint("install OpenSSH's client, or name it with --ssh-program")
    .source(err)
    .into())
}

/// Prints the ssh_config block.
pub(crate) fn config(aws: &AwsOptions) -> anyhow::Result<ExitCode> {
    let proxy = proxy_command(aws, None, &[])?;
    println!(
        "# Added by `postern ssh-config`: `ssh i-0123456789abcdef0{SSH_HOST_SUFFIX}` reaches the \
         instance\n# through AWS Systems Manager Session Manager, with no open inbound port.\n\
         Host *{SSH_HOST_SUFFIX}\n    ProxyCommand {proxy}\n    HostKeyAlias %n\n"
    );
    Ok(ExitCode::SUCCESS)
}

/// `'/path/to/postern' [AWS options] ssh-proxy %h %p`, quoted for the shell ssh runs it with.
fn proxy_command(
    aws: &AwsOptions,
    reason: Option<&str>,
    broker_flags: &[String],
) -> anyhow::Result<String> {
    let exe: OsString = std::env::current_exe()?.into_os_string();
    let mut words = vec![shell_quote(&exe.to_string_lossy())];
    let options = [
        ("--profile", aws.profile.as_deref()),
        ("--region", aws.region.as_deref()),
        ("--endpoint-url", aws.endpoint_url.as_deref()),
        ("--reason", reason),
    ];
    for (flag, value) in options {
        if let Some(value) = value {
            words.push(flag.to_owned());
            // `%` is a ProxyCommand token: double it.
            words.push(shell_quote(&value.replace('%', "%%")));
        }
    }
    words.extend(
        broker_flags
            .iter()
            .map(|f| shell_quote(&f.replace('%', "%%"))),
    );
    words.extend(["ssh-proxy".to_owned(), "%h".to_owned(), "%p".to_owned()]);
    Ok(words.join(" "))
}
