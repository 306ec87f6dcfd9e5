//! Carries out `postern forward`: load AWS configuration, start the forwards and SOCKS
//! listeners, announce each one (a sentence or `--json`), print notices while they run (with
//! the live status line on a terminal), stop on SIGINT/SIGTERM/SIGHUP.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use postern_protocol::version::client_uses_mux;
use tokio::sync::{mpsc, watch};

use clap_complete::ArgValueCandidates;

use crate::aws::{AwsOptions, SsmClient};
use crate::cli::aws_context::load_aws;
use crate::cli::commands::forward::status::{REDRAW_EVERY, StatusLine};
use crate::cli::common::{CommonArgs, ConnectArgs, Target, aws_options, check_reason};
use crate::cli::errors::{FORWARD_PORT_WORDS, forward_failure};
use crate::cli::resilience::NoticeStyle;
use crate::forward::{
    ForwardOptions, ForwardReady, ForwardSpec, Forwarder, LinkMode, Notice, SessionCount,
    SocksAuth, SocksSpec,
};
use crate::report::{self, ErrorKind, ExpectedError};
use crate::term::{Signals, escape};

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
        required_unless_present = "socks",
        value_name = "[BIND:]LOCAL:[HOST:]PORT"
    )]
    pub forwards: Vec<String>,

    /// Run a SOCKS5 proxy on `[BIND:]PORT` whose CONNECTs go through the instance: each
    /// destination host:port gets its own session, opened on first use. BIND defaults to
    /// 127.0.0.1; any other address needs POSTERN_SOCKS_USER and POSTERN_SOCKS_PASSWORD, the
    /// username and password clients must give. Repeatable.
    #[arg(short = 'D', long = "socks", value_name = "[BIND:]PORT")]
    pub socks: Vec<String>,

    /// Close a SOCKS destination's sessions after this long without connections.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::cli::common::parse_flag_duration)]
    pub idle_close: Duration,

    /// Parallel SSM sessions per forward (and per SOCKS destination), opened as concurrent
    /// connections need them: a number, or `auto` (up to 8 sessions, another one opened when
    /// the open ones deliver near the agent's ~1 MB/s pace while connections wait, extra ones
    /// closed after a minute idle; in basic mode one connection per session).
    #[arg(long, value_name = "N|auto", default_value = "auto")]
    pub sessions: String,

    /// Print one JSON object per forward and SOCKS listener on stdout when it is ready,
    /// instead of a sentence.
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
    /// Whether logs go to stderr (then no status line is drawn over them).
    pub logs_on_stderr: bool,
    /// The configured account resolution placed the target in (set by resolution).
    pub account: Option<String>,
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
        let socks = args
            .socks
            .iter()
            .map(|raw| {
                raw.parse::<SocksSpec>().map_err(|e| {
                    ExpectedError::new(ErrorKind::Usage, e.to_string())
                        .hint("write -D 1080 (127.0.0.1:1080) or -D 127.0.0.1:0 (a free port)")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_distinct_ports(&forwards, &socks)?;
        let socks_auth = socks_auth(
            &socks,
            std::env::var(SOCKS_USER_ENV).ok(),
            std::env::var(SOCKS_PASSWORD_ENV).ok(),
        )?;
        let logs_on_stderr = common.log_file.is_none()
            && (common.verbose > 0 || std::env::var_os("POSTERN_LOG").is_some());
        Ok(Self {
            aws: aws_options(common)?,
            options: ForwardOptions {
                target: target.as_str().to_owned(),
                forwards,
                sessions: parse_sessions(&args.sessions)?,
                reason: args.connect.reason,
                handshake_timeout: args.connect.handshake_timeout,
                resilience: args.connect.resilience.resilience(NoticeStyle::WithSession),
                socks,
                idle_close: args.idle_close,
                socks_auth,
            },
            json: args.json,
            logs_on_stderr,
            account: None,
        })
    }
}

/// Refuses two listeners of this command on one local port (`-L 8080:80 -L 8080:443`), which
/// would otherwise fail at start as "in use", as if another program held the port.
fn check_distinct_ports(
    forwards: &[ForwardSpec],
    socks: &[SocksSpec],
) -> Result<(), ExpectedError> {
    let listeners: Vec<SocketAddr> = forwards
        .iter()
        .map(|f| SocketAddr::new(f.bind, f.local_port))
        .chain(socks.iter().map(|s| SocketAddr::new(s.bind, s.port)))
        .collect();
    for (i, a) in listeners.iter().enumerate() {
        let clash = listeners[i + 1..].iter().find(|b| {
            a.port() != 0
                && a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        });
        if let Some(b) = clash {
            return Err(ExpectedError::new(
                ErrorKind::Usage,
                format!(
                    "two listeners of this command on port {}: {a} and {b}",
                    a.port()
                ),
            )
            .hint("give each -L and -D a local port of its own (0 picks a free one)"));
        }
    }
    Ok(())
}

/// The SOCKS credentials from the environment: required when a `-D` listens beyond loopback,
/// optional otherwise (then every listener asks for them). Never taken from a flag, where
/// other local users would read them in the process list.
fn socks_auth(
    socks: &[SocksSpec],
    user: Option<String>,
    password: Option<String>,
) -> Result<Option<SocksAuth>, ExpectedError> {
    let hint = format!(
        "set {SOCKS_USER_ENV} and {SOCKS_PASSWORD_ENV} (1-255 bytes each); SOCKS clients give \
         them as username and password (RFC 1929)"
    );
    let exposed = socks.iter().find(|s| !s.bind.is_loopback());
    match (
        user.filter(|u| !u.is_empty()),
        password.filter(|p| !p.is_empty()),
    ) {
        (Some(user), Some(password)) => {
            SocksAuth::new(&user, &password).map(Some).ok_or_else(|| {
                ExpectedError::new(
                    ErrorKind::Usage,
                    format!("{SOCKS_USER_ENV} and {SOCKS_PASSWORD_ENV} must be 1-255 bytes each"),
                )
            })
        }
        (None, None) => match exposed {
            Some(spec) => Err(ExpectedError::new(
                ErrorKind::Usage,
                format!(
                    "-D {} listens beyond this machine and needs a username and password",
                    SocketAddr::new(spec.bind, spec.port)
                ),
            )
            .hint(hint)),
            None => Ok(None),
        },
        _ if socks.is_empty() => Ok(None),
        _ => Err(ExpectedError::new(
            ErrorKind::Usage,
            format!("only one of {SOCKS_USER_ENV} and {SOCKS_PASSWORD_ENV} is set"),
        )
        .hint(hint)),
    }
}

/// The SOCKS username clients must give.
const SOCKS_USER_ENV: &str = "POSTERN_SOCKS_USER";
/// The SOCKS password clients must give.
const SOCKS_PASSWORD_ENV: &str = "POSTERN_SOCKS_PASSWORD";

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
        // A resize (SIGWINCH) while the sessions start is not a reason to stop.
        _ = signals.ending_with_job_control() => return Ok(ExitCode::SUCCESS),
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
    for ready in forwarder.socks_ready() {
        if let Some(warning) = socks_exposure_warning(ready.local) {
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
        for ready in forwarder.socks_ready() {
            let line = if plan.json {
                serde_json::json!({
                    "local": ready.local.to_string(),
                    "socks": "socks5",
                    "target": ready.target,
                    "auth": if ready.auth { "username/password" } else { "none" },
                })
                .to_string()
            } else {
                format!(
                    "SOCKS5 proxy on {} via {} ({via}){}",
                    ready.local,
                    ready.target,
                    if ready.auth {
                        ", username and password required"
                    } else {
                        ""
                    }
                )
            };
            writeln!(stdout, "{line}")?;
        }
        stdout.flush()?;
    }
    let (notices_tx, mut notices) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let mut status = (std::io::stderr().is_terminal() && !plan.logs_on_stderr).then(|| {
        StatusLine::new(
            forwarder.traffic(),
            forwarder.ready().len() + forwarder.socks_ready().len(),
        )
    });
    let printer = tokio::spawn(async move {
        let mut redraw = tokio::time::interval(REDRAW_EVERY);
        redraw.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                notice = notices.recv() => {
                    let Some(notice) = notice else { break };
                    if let Some(text) = render_notice(&notice) {
                        if let Some(status) = status.as_mut() {
                            status.clear();
                        }
                        report::notice(&text);
                        if let Some(status) = status.as_mut() {
                            status.draw();
                        }
                    }
                }
                _ = redraw.tick(), if status.is_some() => {
                    if let Some(status) = status.as_mut() {
                        status.draw();
                    }
                }
            }
        }
        drop(status);
    });
    let mut running = tokio::spawn(forwarder.run(notices_tx, stop));
    signals.ending_with_job_control().await;
    tracing::info!("stopping the forwards");
    let _ = stop_tx.send(true);
    // Each session's polite end can take seconds (outstanding data drained, the agent's answer
    // to the TerminateSession flag awaited); another Ctrl-C stops waiting for it. Aborting
    // stops every listener, pool and link; the exit sweep then ends the sessions they left.
    let cut_short = tokio::select! {
        _ = &mut running => false,
        _ = signals.ending_with_job_control() => {
            running.abort();
            let _ = running.await;
            true
        }
    };
    // The status line goes first (the printer ends once the forwards' notices senders have).
    let _ = printer.await;
    if cut_short {
        report::notice("stopped waiting for the forwards to wind down");
    }
    Ok(ExitCode::SUCCESS)
}

/// A warning when a forward listens beyond this machine (`0.0.0.0`, `[::]`, an interface's
/// address): anyone who reaches that address reaches the instance's port.
pub(crate) fn exposure_warning(local: SocketAddr) -> Option<String> {
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

/// A warning when a SOCKS listener listens beyond this machine: whoever reaches it and knows
/// the password reaches whatever the instance reaches.
fn socks_exposure_warning(local: SocketAddr) -> Option<String> {
    (!local.ip().is_loopback()).then(|| {
        format!(
            "warning: SOCKS5 proxy {local} listens beyond this machine: anyone who can reach it \
             and knows {SOCKS_USER_ENV}/{SOCKS_PASSWORD_ENV} can reach whatever the instance \
             reaches; bind 127.0.0.1 (the default) unless that is what you want"
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

pub(crate) fn render_notice(notice: &Notice) -> Option<String> {
    Some(match notice {
        Notice::ConnectionAccepted { .. } => return None,
        Notice::ConnectToPortError {
            remote,
            target,
            session_id,
        } => format!(
            "{target} could not connect to {} (ConnectToPortError, session {session_id}); \
             check that a server listens there and that the instance may reach it",
            escape(remote)
        ),
        Notice::SessionEnded {
            target,
            session_id,
            reason,
        } => format!(
            "session {session_id} to {target} ended: {}; new connections start another",
            escape(reason)
        ),
        Notice::SessionFailed { target, reason } => {
            format!(
                "could not start another session to {target}: {}",
                escape(reason)
            )
        }
        Notice::SocksRefused {
            listener,
            destination,
            target,
            reply,
            reason,
        } => format!(
            "SOCKS5 {listener}: CONNECT {} via {target} refused ({reply}): {}",
            escape(destination),
            escape(reason)
        ),
        Notice::ConnectionDropped { local } => {
            format!("closed a connection to {local}: no session could carry it")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks_credentials_come_from_the_environment_and_guard_exposed_listeners() {
        let local: Vec<SocksSpec> = vec!["1080".parse().unwrap()];
        let exposed: Vec<SocksSpec> = vec!["0.0.0.0:1080".parse().unwrap()];
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(socks_auth(&local, None, None).unwrap(), None);
        assert!(socks_auth(&local, some("u"), some("p")).unwrap().is_some());
        let err = socks_auth(&exposed, None, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(
            socks_auth(&exposed, some("u"), some("p"))
                .unwrap()
                .is_some()
        );
        assert!(socks_auth(&exposed, some("u"), None).is_err());
        assert!(socks_auth(&local, some(&"u".repeat(256)), some("p")).is_err());
        // Without -D the variables mean nothing.
        assert_eq!(socks_auth(&[], some("u"), None).unwrap(), None);
    }

    #[test]
    fn two_listeners_on_one_local_port_are_refused_before_any_request() {
        let f = |raw: &str| -> ForwardSpec { raw.parse().unwrap() };
        let d = |raw: &str| -> SocksSpec { raw.parse().unwrap() };
        let err = check_distinct_ports(&[f("18940:80"), f("18940:443")], &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(err.to_string().contains("port 18940"), "{err}");
        assert!(check_distinct_ports(&[f("18940:80")], &[d("18940")]).is_err());
        assert!(check_distinct_ports(&[f("0.0.0.0:18940:80")], &[d("127.0.0.2:18940")]).is_err());
        // Free ports, different ports, different addresses: fine.
        assert!(check_distinct_ports(&[f("0:80"), f("0:443")], &[d("0")]).is_ok());
        assert!(check_distinct_ports(&[f("18940:80"), f("18941:80")], &[]).is_ok());
        assert!(
            check_distinct_ports(&[f("127.0.0.1:18940:80"), f("127.0.0.2:18940:80")], &[]).is_ok()
        );
    }

    #[test]
    fn notices_escape_what_aws_and_clients_wrote() {
        let text = render_notice(&Notice::SocksRefused {
            listener: "127.0.0.1:1080".to_owned(),
            destination: "db:5432".to_owned(),
            target: "i-0abc".to_owned(),
            reply: "not allowed by ruleset",
            reason: "the session ended: \x1b[31mred".to_owned(),
        })
        .unwrap();
        assert_eq!(
            text,
            "SOCKS5 127.0.0.1:1080: CONNECT db:5432 via i-0abc refused (not allowed by \
             ruleset): the session ended: \\x1b[31mred"
        );
    }

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
