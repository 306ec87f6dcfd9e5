//! `postern ssh --push-key` and `ssh-proxy --push-key`: an ephemeral ed25519 key pushed through
//! EC2 Instance Connect (SendSSHPublicKey, for one OS user, valid 60 seconds), then used once.
//!
//! `postern ssh` keeps the private key in a 0600 file of a 0700 temp dir, runs ssh as its child
//! with `-i KEY -o IdentitiesOnly=yes`, forwards SIGTERM, SIGHUP and SIGINT to it and removes
//! the key when ssh ends, however it ends. When ssh stops itself (`~^Z`), postern stops too, so
//! the shell's job control sees the job stopped; `fg` continues both (one process group). `ssh-proxy` (the ProxyCommand `ssh-config --push-key`
//! writes) hands the key to ssh-agent for 60 seconds instead and removes the file at once.
//! Nothing here prints the private key or its path's contents.

use std::process::{ExitCode, Stdio};

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use crate::aws::{AwsContext, InstanceConnectClient};
use crate::cli::aws_context::load_aws;
use crate::cli::commands::ssh::{DEFAULT_OS_USER, SshPlan, ssh_command, ssh_not_started};
use crate::cli::errors::aws_failure;
use crate::ephemeral_key::EphemeralKey;
use crate::report::{ErrorKind, ExpectedError};

/// Pushes a key for the plan's user (default [`DEFAULT_OS_USER`]) and runs ssh with it; the
/// exit code is ssh's.
pub(crate) async fn run(plan: &SshPlan) -> anyhow::Result<ExitCode> {
    let user = plan.user.as_deref().unwrap_or(DEFAULT_OS_USER);
    let instance = plan.target.as_str();
    let (context, described) = load_aws(&plan.aws, instance).await?;
    // Signals are caught before the key exists: from here on none may skip its removal. One
    // during the push abandons it (the future, and the key with it, is dropped).
    let mut signals = Signals::new()?;
    let key = tokio::select! {
        key = push(&context, instance, user, &described) => key?,
        Some(sig) = signals.next() => return Ok(ExitCode::from(128 + sig as u8)),
    };
    let mut command = ssh_command(plan, Some((key.path(), user)))?;
    tracing::debug!(?command, "running ssh with the pushed key");
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            remove(key);
            return Err(ssh_not_started(&plan.ssh_program, e).into());
        }
    };
    // Reaped by `wait_following_stops` (waitpid), never by `Child::wait`.
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let waiter = tokio::task::spawn_blocking(move || wait_following_stops(pid));
    tokio::pin!(waiter);
    let code = loop {
        tokio::select! {
            code = &mut waiter => break code,
            Some(sig) = signals.next() => {
                // The terminal sends SIGINT to ssh too; a second one does no harm.
                let _ = kill(pid, sig);
            }
        }
    };
    remove(key);
    let code = code
        .map_err(std::io::Error::other)
        .and_then(|code| code.map_err(std::io::Error::from))
        .with_context(|| format!("could not wait for `{}`", plan.ssh_program))?;
    Ok(ExitCode::from(code))
}

/// Waits for ssh to end; when it stops (job control), stops this process too, so the shell sees
/// the job stopped. Returns ssh's exit code, or 128 + the signal that ended it.
fn wait_following_stops(pid: Pid) -> nix::Result<u8> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WUNTRACED)) {
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
            Ok(WaitStatus::Stopped(..)) => {
                // SIGCONT from `fg` reaches ssh too: it is in our process group.
                let _ = kill(nix::unistd::getpid(), Signal::SIGTSTP);
            }
            Ok(status) => {
                if let Some(code) = finished(status) {
                    return Ok(code);
                }
            }
        }
    }
}

/// The exit code of a process that ended with `status` (128 + N when signal N ended it, as
/// shells report it); `None` while it has not ended.
fn finished(status: WaitStatus) -> Option<u8> {
    match status {
        WaitStatus::Exited(_, code) => Some(u8::try_from(code).unwrap_or(u8::MAX)),
        WaitStatus::Signaled(_, sig, _) => Some(128u8.saturating_add(sig as u8)),
        _ => None,
    }
}

/// Pushes a key for `user` on `instance` and adds it to ssh-agent for 60 seconds (the time
/// the instance accepts it); the key file is removed before this returns.
pub(crate) async fn push_into_agent(
    context: &AwsContext,
    instance: &str,
    user: &str,
    described: &str,
) -> anyhow::Result<()> {
    if std::env::var_os(AGENT_SOCKET).is_none_or(|s| s.is_empty()) {
        return Err(ExpectedError::new(
            ErrorKind::Usage,
            "ssh-proxy --push-key hands the key to ssh-agent, but SSH_AUTH_SOCK is not set",
        )
        .target(described.to_owned())
        .hint("start an agent (`eval \"$(ssh-agent)\"`), or use `postern ssh --push-key`")
        .into());
    }
    let key = push(context, instance, user, described).await?;
    let added = tokio::process::Command::new("ssh-add")
        .args(["-q", "-t", AGENT_LIFETIME])
        .arg(key.path())
        // stdout carries ssh's stream: nothing else may reach it.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await;
    remove(key);
    let failure = |detail: String| -> anyhow::Error {
        ExpectedError::new(
            ErrorKind::Usage,
            "could not add the pushed key to ssh-agent (ssh-add)",
        )
        .target(described.to_owned())
        .hint("check that ssh-agent runs (`ssh-add -l`) and SSH_AUTH_SOCK names its socket")
        .source(std::io::Error::other(detail))
        .into()
    };
    match added {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(failure(format!(
            "ssh-add exited with {}: {}",
            output.status,
            crate::term::escape(String::from_utf8_lossy(&output.stderr).trim())
        ))),
        Err(e) => Err(failure(format!("could not run ssh-add: {e}"))),
    }
}

/// Generates a key and pushes its public half for `user` on `instance`, in the instance's
/// availability zone.
async fn push(
    context: &AwsContext,
    instance: &str,
    user: &str,
    described: &str,
) -> anyhow::Result<EphemeralKey> {
    if !instance.starts_with("i-") {
        return Err(ExpectedError::new(
            ErrorKind::Unsupported,
            format!("{instance} is not an EC2 instance: EC2 Instance Connect cannot push a key"),
        )
        .target(described.to_owned())
        .hint("hybrid (mi-) nodes take no pushed keys: use `postern ssh` without --push-key")
        .into());
    }
    let client = InstanceConnectClient::new(context);
    let zone = client.availability_zone(instance).await.map_err(|e| {
        aws_failure(
            e,
            &format!("could not find the availability zone of {instance} to push an ssh key"),
            described,
        )
    })?;
    // A local I/O failure: exit code 1, as the README's table says.
    let key = EphemeralKey::generate(KEY_COMMENT).with_context(|| {
        format!(
            "could not write an ephemeral ssh key in {} (TMPDIR)",
            std::env::temp_dir().display()
        )
    })?;
    let pushed = client
        .send_ssh_public_key(instance, user, key.public_openssh(), &zone)
        .await
        .map_err(|e| {
            aws_failure(
                e,
                &format!("could not push an ssh key for {user} to {instance}"),
                &format!("{described}, availability zone {zone}"),
            )
        })?;
    tracing::info!(
        %instance,
        %user,
        %zone,
        request_id = pushed.request_id.as_deref().unwrap_or("-"),
        "pushed an ephemeral ssh key"
    );
    Ok(key)
}

/// Removes the key now; a failure is reported (the instance stops accepting it within 60
/// seconds anyway).
fn remove(key: EphemeralKey) {
    let dir = key.dir().to_owned();
    if let Err(e) = key.remove() {
        crate::report::notice(&format!(
            "could not remove the ephemeral key directory {}: {e}; remove it by hand",
            dir.display()
        ));
    }
}

/// The signals forwarded to ssh while it runs (and that must not end postern before the key
/// is removed).
struct Signals {
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        let listen = |kind| {
            signal(kind).map_err(|e| {
                anyhow::Error::from(
                    ExpectedError::new(ErrorKind::Usage, "could not listen for signals").source(e),
                )
            })
        };
        Ok(Self {
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
            interrupt: listen(SignalKind::interrupt())?,
        })
    }

    /// The next signal received.
    async fn next(&mut self) -> Option<Signal> {
        tokio::select! {
            s = self.terminate.recv() => s.map(|()| Signal::SIGTERM),
            s = self.hangup.recv() => s.map(|()| Signal::SIGHUP),
            s = self.interrupt.recv() => s.map(|()| Signal::SIGINT),
        }
    }
}

/// The environment variable naming ssh-agent's socket.
const AGENT_SOCKET: &str = "SSH_AUTH_SOCK";
/// How long ssh-agent keeps a pushed key: as long as the instance accepts it (60 s,
/// per the SendSSHPublicKey API reference).
const AGENT_LIFETIME: &str = "60";
/// The pushed public key's comment.
const KEY_COMMENT: &str = "postern-ephemeral";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_is_sshs_or_128_plus_its_signal() {
        let pid = Pid::from_raw(1);
        assert_eq!(finished(WaitStatus::Exited(pid, 0)), Some(0));
        assert_eq!(finished(WaitStatus::Exited(pid, 255)), Some(255));
        assert_eq!(
            finished(WaitStatus::Signaled(pid, Signal::SIGTERM, false)),
            Some(143)
        );
        assert_eq!(finished(WaitStatus::Stopped(pid, Signal::SIGTSTP)), None);
        assert_eq!(finished(WaitStatus::Continued(pid)), None);
    }
}
