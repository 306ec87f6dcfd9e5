//! Carries out `postern forward`: load AWS configuration, start the forwards, announce each
//! one (a sentence or `--json`), print notices while they run, stop on SIGINT/SIGTERM/SIGHUP.

use std::io::Write as _;
use std::process::ExitCode;

use postern_protocol::version::client_uses_mux;
use tokio::sync::{mpsc, watch};

use crate::aws::SsmClient;
use crate::cli::plan::ForwardPlan;
use crate::cli::run::{connect_failure, load_aws};
use crate::forward::{ForwardError, ForwardReady, Forwarder, LinkMode, Notice};
use crate::report::{self, ErrorKind, ExpectedError};
use crate::term::{LocalSignal, Signals};

/// Runs the forwards until a terminating signal; exits 0 then.
pub(crate) async fn run(plan: &ForwardPlan) -> anyhow::Result<ExitCode> {
    let target = plan.options.target.as_str();
    let (context, described) = load_aws(&plan.aws, target).await?;
    let mut signals = Signals::install(true)?;
    let ssm = SsmClient::new(&context);
    let start = Forwarder::start(ssm, &plan.options);
    let forwarder = tokio::select! {
        started = start => started.map_err(|e| forward_failure(e, &described))?,
        _ = signals.recv() => return Ok(ExitCode::SUCCESS),
    };
    let via = match &context.profile {
        Some(profile) => format!("{profile}, {}", context.region),
        None => context.region.clone(),
    };
    for ready in forwarder.ready() {
        if ready.mode == LinkMode::Basic {
            report::notice(&basic_mode_warning(ready));
        }
    }
    {
        let mut stdout = std::io::stdout().lock();
        for ready in forwarder.ready() {
            let line = if plan.json {
                serde_json::json!({
                    "local": ready.local.to_string(),
                    "remote": ready.remote,
                    "target": ready.target,
                    "mode": match ready.mode { LinkMode::Mux => "mux", LinkMode::Basic => "basic" },
                    "agent_version": ready.agent_version,
                })
                .to_string()
            } else {
                format!(
                    "forwarding {} -> {} via {} ({via})",
                    ready.local, ready.remote, ready.target
                )
            };
            writeln!(stdout, "{line}")?;
        }
        stdout.flush()?;
    }
    let (notices_tx, mut notices) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let printer = tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            if let Some(text) = render_notice(&notice) {
                report::notice(&text);
            }
        }
    });
    let running = tokio::spawn(forwarder.run(notices_tx, stop));
    loop {
        match signals.recv().await {
            LocalSignal::Terminate(_) | LocalSignal::Interrupt => break,
            LocalSignal::Suspend | LocalSignal::Continue | LocalSignal::Resize => {}
        }
    }
    tracing::info!("stopping the forwards");
    let _ = stop_tx.send(true);
    let _ = running.await;
    let _ = printer.await;
    Ok(ExitCode::SUCCESS)
}

fn basic_mode_warning(ready: &ForwardReady) -> String {
    debug_assert!(!client_uses_mux(&ready.agent_version) || ready.mode == LinkMode::Mux);
    format!(
        "warning: the SSM agent on {} is version {}, too old for multiplexed forwarding \
         (newer than 3.0.196.0 needed); {} -> {} falls back to basic mode: one connection at a \
         time per session, and servers that speak first (ssh, MySQL) may not answer after the \
         first connection. Update the agent (AWS-UpdateSSMAgent) for concurrent connections.",
        ready.target, ready.agent_version, ready.local, ready.remote
    )
}

fn render_notice(notice: &Notice) -> Option<String> {
    Some(match notice {
        Notice::ConnectionAccepted { .. } => return None,
        Notice::ConnectToPortError {
            remote,
            target,
            session_id,
        } => format!(
            "{target} could not connect to {remote} (ConnectToPortError, session {session_id}); \
             check that a server listens there and that the instance may reach it"
        ),
        Notice::SessionEnded {
            target,
            session_id,
            reason,
        } => format!(
            "session {session_id} to {target} ended: {reason}; new connections start another"
        ),
        Notice::SessionFailed { target, reason } => {
            format!("could not start another session to {target}: {reason}")
        }
        Notice::ConnectionDropped { local } => {
            format!("closed a connection to {local}: no session could carry it")
        }
    })
}

fn forward_failure(err: ForwardError, described: &str) -> anyhow::Error {
    forward_failure_with(
        err,
        described,
        "pick another LOCAL port",
        "use an address of this machine (the default is 127.0.0.1) and a port you may open \
         (ports below 1024 need privileges)",
    )
}

/// [`ForwardError`] for `report`; the bind hints name the caller's way of choosing the local
/// port (`another`: what to do when it is in use; `unusable`: when it may not be opened).
pub(crate) fn forward_failure_with(
    err: ForwardError,
    described: &str,
    another: &str,
    unusable: &str,
) -> anyhow::Error {
    match err {
        ForwardError::Bind(bind) => {
            let hint = if bind.in_use() {
                format!(
                    "another program listens on {}; {another}, or 0 for a free one",
                    bind.addr
                )
            } else {
                unusable.to_owned()
            };
            ExpectedError::new(
                ErrorKind::LocalPort,
                format!("could not listen on {}", bind.addr),
            )
            .hint(hint)
            .source(bind.source)
            .into()
        }
        ForwardError::Connect { remote, source } => connect_failure(
            *source,
            &format!("could not start port forwarding to {remote}"),
            described,
            &format!(
                "check that something listens on {remote} as seen from the instance, and that \
                 the instance may reach it"
            ),
        ),
        err @ ForwardError::AgentTooOld { .. } => {
            ExpectedError::new(ErrorKind::Unsupported, err.to_string())
                .target(described.to_owned())
                .hint("update the SSM agent on the instance (the AWS-UpdateSSMAgent document)")
                .into()
        }
    }
}
