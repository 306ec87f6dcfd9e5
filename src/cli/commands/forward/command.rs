//! Carries out `postern forward`: load AWS configuration, start the forwards, announce each
//! one (a sentence or `--json`), print notices while they run, stop on SIGINT/SIGTERM/SIGHUP.

use std::io::Write as _;
use std::process::ExitCode;

use postern_protocol::version::client_uses_mux;
use tokio::sync::{mpsc, watch};

use clap_complete::ArgValueCandidates;

use crate::aws::{AwsOptions, SsmClient};
use crate::cli::aws_context::load_aws;
use crate::cli::common::{CommonArgs, ConnectArgs, Target, aws_options, check_reason};
use crate::cli::errors::{FORWARD_PORT_WORDS, forward_failure};
use crate::cli::resilience::NoticeStyle;
use crate::forward::{
    ForwardOptions, ForwardReady, ForwardSpec, Forwarder, LinkMode, Notice, SessionCount,
};
use crate::report::{self, ErrorKind, ExpectedError};
use crate::term::{LocalSignal, Signals};

/// `postern forward`.
#[derive(clap::Args, Debug, Clone)]
pub struct ForwardArgs {
    /// Instance id (i-…, mi-…), Name tag, NAME@ACCOUNT-ALIAS, private IP or DNS name; none
    /// opens the instance picker (on a terminal).
    #[arg(value_name = "TARGET", add = ArgValueCandidates::new(crate::cli::commands::completions::targets))]
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

/// Port forwards to run.
#[derive(Clone, Debug)]
pub struct ForwardPlan {
    /// AWS configuration choices.
    pub aws: AwsOptions,
    /// What to forward.
    pub options: ForwardOptions,
    /// `--json` ready lines.
    pub json: bool,
}

impl ForwardPlan {
    pub(crate) fn new(common: &CommonArgs, args: ForwardArgs) -> Result<Self, ExpectedError> {
        check_reason(args.connect.reason.as_deref())?;
        let target = Target::given(args.target.as_deref().unwrap_or_default());
        let forwards = args
            .forwards
            .iter()
            .map(|raw| {
                raw.parse::<ForwardSpec>().map_err(|e| {
                    ExpectedError::new(ErrorKind::Usage, e.to_string()).hint(
                        "write -L 8080:80 (local 8080 to port 80 on the instance) or \
                         -L 0:db.internal:5432 (a free local port to db.internal:5432 as the \
                         instance reaches it)",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            aws: aws_options(common)?,
            options: ForwardOptions {
                target: target.as_str().to_owned(),
                forwards,
                sessions: parse_sessions(&args.sessions)?,
                reason: args.connect.reason,
                handshake_timeout: args.connect.handshake_timeout,
                resilience: args.connect.resilience.resilience(NoticeStyle::WithSession),
            },
            json: args.json,
        })
    }
}

fn parse_sessions(raw: &str) -> Result<SessionCount, ExpectedError> {
    if raw == "auto" {
        return Ok(SessionCount::Auto);
    }
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_SESSIONS).contains(&n) => Ok(SessionCount::Fixed(n)),
        _ => Err(ExpectedError::new(
            ErrorKind::Usage,
            format!("--sessions `{raw}` must be `auto` or a number from 1 to {MAX_SESSIONS}"),
        )),
    }
}

/// Upper bound for `--sessions`: each session is a StartSession call and an agent process.
const MAX_SESSIONS: usize = 32;

/// Runs the forwards until a terminating signal; exits 0 then.
pub(crate) async fn run(plan: &ForwardPlan) -> anyhow::Result<ExitCode> {
    let target = plan.options.target.as_str();
    let (context, described) = load_aws(&plan.aws, target).await?;
    let mut signals = Signals::install(true)?;
    let ssm = SsmClient::new(&context);
    let start = Forwarder::start(ssm, &plan.options);
    let forwarder = tokio::select! {
        started = start => started.map_err(|e| forward_failure(e, &described, FORWARD_PORT_WORDS))?,
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
        if let Some(warning) = exposure_warning(ready.local) {
            report::notice(&warning);
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

/// A warning when a forward listens beyond this machine (`0.0.0.0`, `[::]`, an interface's
/// address): anyone who reaches that address reaches the instance's port.
pub(crate) fn exposure_warning(local: std::net::SocketAddr) -> Option<String> {
    let ip = local.ip();
    (!ip.is_loopback()).then(|| {
        let scope = if ip.is_unspecified() {
            "every network interface of this machine"
        } else {
            "the network"
        };
        format!(
            "warning: {local} listens on {scope}: anyone who can reach it can use this forward; \
             bind 127.0.0.1 (the default) unless that is what you want"
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_reachable_from_the_network_are_warned_about() {
        assert!(exposure_warning("127.0.0.1:5432".parse().unwrap()).is_none());
        assert!(exposure_warning("[::1]:5432".parse().unwrap()).is_none());
        for local in ["0.0.0.0:5432", "[::]:5432", "192.168.1.4:5432"] {
            let warning = exposure_warning(local.parse().unwrap()).unwrap();
            assert!(warning.starts_with("warning: "), "{warning}");
            assert!(warning.contains(local), "{warning}");
        }
    }
}
