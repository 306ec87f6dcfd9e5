//! `postern ssh-proxy`, `postern ssh` and `postern ssh-config`.
//!
//! `ssh-proxy` keeps stdout for stream bytes only; its errors go to stderr through `report`.
//! `ssh` replaces this process with the system ssh, postern being its ProxyCommand.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode};

use crate::aws::{AwsOptions, SsmClient};
use crate::cli::plan::{ProxyPlan, SSH_HOST_SUFFIX, SshPlan};
use crate::cli::run::{connect_failure, load_aws};
use crate::report::{ErrorKind, ExpectedError};
use crate::stdio::{self, ProxyEnd, ProxyError};
use crate::transport::shell_quote;

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
    match result {
        Ok(end) => {
            tracing::info!(?end, "ssh-proxy done");
            Ok(ExitCode::SUCCESS)
        }
        Err(ProxyError::Connect(e)) => Err(connect_failure(
            e,
            &format!("could not start an SSH session to port {port}"),
            &described,
            &format!("check that sshd listens on port {port} of the instance"),
        )),
        Err(e @ ProxyError::AgentTooOld(_)) => {
            Err(ExpectedError::new(ErrorKind::Unsupported, e.to_string())
                .target(described)
                .hint("update the SSM agent on the instance (the AWS-UpdateSSMAgent document)")
                .into())
        }
        Err(e @ ProxyError::Lost { .. }) => Err(ExpectedError::new(
            ErrorKind::ConnectionLost,
            "the SSH session was interrupted",
        )
        .target(described)
        .hint("check the network; reconnect with ssh")
        .source(e)
        .into()),
        Err(ProxyError::Local(e)) => Err(anyhow::Error::new(e).context("ssh-proxy setup failed")),
    }
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
