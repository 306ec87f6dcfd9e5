//! `postern shell` and `postern exec`: their arguments, their plan, and the session they run
//! with the terminal (raw mode, escape character, exit status), through
//! [`crate::transport::lifecycle`] and the terminal driver.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;

use clap_complete::ArgValueCandidates;
use postern_protocol::KmsContext;

use crate::aws::{AwsOptions, KmsClient, SessionCredentials, SsmClient, StartSessionRequest};
use crate::cli::aws_context::load_aws;
use crate::cli::commands::command_document;
use crate::cli::commands::exec_many::FleetArgs;
use crate::cli::common::{CommonArgs, Target, aws_options, check_reason};
use crate::cli::errors::{SessionFailure, aws_failure, session_failure};
use crate::cli::resilience::{NoticeStyle, ResilienceArgs};
use crate::report::{self, ErrorKind, ExpectedError, exit_codes};
use crate::term::{self, Signals, TerminalGuard};
use crate::transport::{
    self, DriverConfig, ExitMarker, Finished, Local, Outputs, SessionEnd, lifecycle, shell_quote,
};

/// `postern shell`.
#[derive(clap::Args, Debug, Clone)]
pub struct ShellArgs {
    /// Instance id (i-…, mi-…), Name tag, NAME@ACCOUNT-ALIAS, private IP or DNS name; none
    /// opens the instance picker (on a terminal).
    #[arg(value_name = "TARGET", add = ArgValueCandidates::new(crate::cli::commands::completions::targets))]
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
    #[arg(value_name = "TARGET", add = ArgValueCandidates::new(crate::cli::commands::completions::targets))]
    pub target: Option<String>,

    /// The command, after `--`. One argument is a shell command line for the remote shell
    /// (`-- 'df -h; exit 3'`); several are one command and its arguments, quoted so that the
    /// remote runs exactly that argv (`-- sh -c 'printf abc; exit 7'`).
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

    /// Several instances (`--all`, or Tab in the picker).
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Options of commands that open a session.
#[derive(clap::Args, Debug, Clone)]
pub struct SessionArgs {
    /// Reason recorded with the session (StartSession `Reason`, 1-256 characters).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Give up when the agent has not started the session after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::cli::common::parse_flag_duration)]
    pub handshake_timeout: Duration,

    /// Escape character for `~.` (close) and `~?` (help) after a newline, or `none`.
    #[arg(short = 'e', long, value_name = "CHAR", default_value = "~")]
    pub escape_char: String,

    /// Keepalive and reconnection.
    #[command(flatten)]
    pub resilience: ResilienceArgs,
}
/// A session to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPlan {
    /// The instance.
    pub target: Target,
    /// AWS configuration choices.
    pub aws: AwsOptions,
    /// StartSession reason.
    pub reason: Option<String>,
    /// Limit for the agent to start the session.
    pub handshake_timeout: Duration,
    /// Escape character, `None` when disabled.
    pub escape: Option<u8>,
    /// Keepalive and reconnection.
    pub resilience: ResilienceArgs,
}

/// A command to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecPlan {
    /// The session.
    pub session: SessionPlan,
    /// The shell command line the remote shell runs (see `command_line`).
    pub command_line: String,
    /// Forced interactive (`Some(true)`), forced not (`Some(false)`), or decided from the
    /// standard streams (`None`).
    pub tty: Option<bool>,
    /// Session document override.
    pub document: Option<String>,
    /// How to run on several instances (`--all`, `--parallel`, `--group`, `--json`).
    pub fleet: FleetArgs,
}

/// The remote shell command line for `postern exec`'s arguments: one argument as it is (a
/// command line the user wrote for the remote shell), several quoted one by one, so that the
/// remote runs exactly that argv (`sh -c 'printf abc; exit 7'`, not `sh -c printf abc...`).
pub(crate) fn command_line(args: &[String]) -> String {
    match args {
        [one] => one.clone(),
        many => many
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

impl ShellArgs {
    /// `postern shell` with every default (bare `postern` on a terminal).
    pub(crate) fn defaults() -> Result<Self, ExpectedError> {
        use clap::{Args as _, FromArgMatches as _};
        Self::augment_args(clap::Command::new("shell"))
            .try_get_matches_from(["shell"])
            .and_then(|matches| Self::from_arg_matches(&matches))
            .map_err(|e| ExpectedError::new(ErrorKind::Usage, e.to_string()))
    }
}

impl SessionPlan {
    pub(crate) fn new(
        common: &CommonArgs,
        target: &str,
        session: &SessionArgs,
    ) -> Result<Self, ExpectedError> {
        check_reason(session.reason.as_deref())?;
        Ok(Self {
            target: Target::given(target),
            aws: aws_options(common)?,
            reason: session.reason.clone(),
            handshake_timeout: session.handshake_timeout,
            escape: parse_escape(&session.escape_char)?,
            resilience: session.resilience.clone(),
        })
    }
}

impl ExecPlan {
    pub(crate) fn new(common: &CommonArgs, exec: ExecArgs) -> Result<Self, ExpectedError> {
        let target = exec.target.as_deref().unwrap_or_default();
        let session = SessionPlan::new(common, target, &exec.session)?;
        let command_line = command_line(&exec.command);
        if command_line.trim().is_empty() {
            return Err(ExpectedError::new(ErrorKind::Usage, "the command is empty")
                .hint("put the command after `--`: postern exec TARGET -- uptime"));
        }
        let tty = match (exec.tty, exec.no_tty) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        Ok(Self {
            session,
            command_line,
            tty,
            document: exec.document,
            fleet: exec.fleet,
        })
    }
}

fn parse_escape(raw: &str) -> Result<Option<u8>, ExpectedError> {
    if raw == "none" {
        return Ok(None);
    }
    match raw.as_bytes() {
        [b] if b.is_ascii_graphic() => Ok(Some(*b)),
        _ => Err(ExpectedError::new(
            ErrorKind::Usage,
            format!("--escape-char `{raw}` must be one printable ASCII character or `none`"),
        )),
    }
}

/// Shell or command, with the terminal decisions made.
#[derive(Clone, Debug)]
pub(crate) enum Mode {
    /// An interactive shell; `raw`: the terminal goes to raw mode.
    Shell {
        /// Raw mode.
        raw: bool,
    },
    /// One command; `tty`: in a pseudo-terminal.
    Exec {
        /// Raw mode.
        raw: bool,
        /// A pseudo-terminal on the instance.
        tty: bool,
        /// The command.
        plan: Box<ExecPlan>,
    },
}

/// Starts a shell or exec session for `plan` and runs it to its exit code.
pub(crate) async fn run(plan: &SessionPlan, mode: &Mode) -> anyhow::Result<ExitCode> {
    let target = plan.target.as_str();
    let (context, described) = load_aws(&plan.aws, target).await?;
    let ssm = SsmClient::new(&context);

    let marker = ExitMarker::new(rand::random());
    // Ctrl-C (or SIGTERM, SIGHUP) while StartSession runs or the data channel opens ends
    // postern with 128+N; the session is ended on the way out (`transport::ledger`), not left
    // open until the service's idle timeout; Ctrl-Z stops postern. Once the session runs, the
    // same handlers are the driver's (in raw mode Ctrl-C is a byte; a SIGINT from elsewhere
    // then interrupts the remote command, and a second one ends the session).
    let mut signals = Signals::install(true).map_err(|e| {
        ExpectedError::new(ErrorKind::Usage, "could not install the signal handlers").source(e)
    })?;
    let start = async {
        // `exec` without input or terminal: Postern-Command where `postern setup` created it.
        let started = command_document::try_start(&ssm, mode, plan.reason.as_deref(), target)
            .await
            .map_err(|e| aws_failure(e, "could not start a session", &described))?;
        if let Some((credentials, mode)) = started {
            return Ok((credentials, mode));
        }
        let request = start_request(plan, mode, &marker);
        let credentials = lifecycle::start(&ssm, &request)
            .await
            .map_err(|e| aws_failure(e, "could not start a session", &described))?;
        anyhow::Ok((credentials, mode.clone()))
    };
    let (credentials, mode) = tokio::select! {
        started = start => started?,
        signal = signals.ending_with_job_control() => {
            tracing::info!(signal, "stopped while the session started");
            return Ok(ExitCode::from(exit_codes::for_signal(signal)));
        }
    };
    let kms = KmsClient::new(&context);
    let clients = (&ssm, &kms);
    carry_session(
        plan,
        &mode,
        clients,
        &credentials,
        &marker,
        &described,
        Some(signals),
    )
    .await
}

/// `session-manager-plugin` mode: runs the shell session the AWS CLI started, in raw mode when
/// `raw`. `described` names the target for errors.
pub(crate) async fn run_started_shell(
    plan: &SessionPlan,
    clients: (&SsmClient, &KmsClient),
    credentials: &SessionCredentials,
    raw: bool,
    described: &str,
) -> anyhow::Result<ExitCode> {
    let marker = ExitMarker::new(rand::random());
    carry_session(
        plan,
        &Mode::Shell { raw },
        clients,
        credentials,
        &marker,
        described,
        None,
    )
    .await
}

/// Drives a started session to its end, terminates it, and turns the outcome into the exit
/// code; `signals`: the handlers installed before the start, if any.
async fn carry_session(
    plan: &SessionPlan,
    mode: &Mode,
    (ssm, kms): (&SsmClient, &KmsClient),
    credentials: &SessionCredentials,
    marker: &ExitMarker,
    described: &str,
    signals: Option<Signals>,
) -> anyhow::Result<ExitCode> {
    let outcome = drive(plan, mode, (ssm, kms), credentials, marker, signals).await;

    // Leave nothing open on the service, whatever happened.
    lifecycle::terminate_driven(ssm, &credentials.session_id, outcome.as_ref().ok()).await;

    let finished = outcome.map_err(|e| session_failure(e, described, &credentials.session_id))?;
    exit_code(&finished, mode, described)
}

fn start_request(plan: &SessionPlan, mode: &Mode, marker: &ExitMarker) -> StartSessionRequest {
    let mut request = StartSessionRequest {
        target: plan.target.as_str().to_owned(),
        document_name: None,
        parameters: HashMap::new(),
        reason: plan.reason.clone(),
    };
    if let Mode::Exec {
        tty, plan: exec, ..
    } = mode
    {
        let command = match &exec.document {
            Some(_) => exec.command_line.clone(),
            None if pipes_input(mode) => marker.wrap_with_piped_input(&exec.command_line),
            None => marker.wrap(&exec.command_line, *tty),
        };
        request.document_name = Some(
            exec.document
                .clone()
                .unwrap_or_else(|| INTERACTIVE_COMMAND_DOCUMENT.to_owned()),
        );
        request
            .parameters
            .insert("command".to_owned(), vec![command]);
    }
    request
}

async fn drive(
    plan: &SessionPlan,
    mode: &Mode,
    (ssm, kms): (&SsmClient, &KmsClient),
    credentials: &SessionCredentials,
    marker: &ExitMarker,
    signals: Option<Signals>,
) -> Result<Finished, SessionFailure> {
    let style = if raw_mode(mode) {
        NoticeStyle::Raw
    } else {
        NoticeStyle::Line
    };
    let mut signals = match signals {
        Some(signals) => signals,
        None => Signals::install(!raw_mode(mode)).map_err(SessionFailure::Local)?,
    };
    let open = lifecycle::open(ssm, credentials, plan.resilience.resilience(style));
    let pump = tokio::select! {
        pump = open => pump.map_err(SessionFailure::Open)?,
        signal = signals.ending_with_job_control() => {
            return Ok(Finished {
                end: SessionEnd::Signalled(signal),
                exit_status: None,
                ready: None,
            });
        }
    };

    let (raw, tty, exit_marker) = match mode {
        Mode::Shell { raw } => (*raw, true, None),
        Mode::Exec {
            raw,
            tty,
            plan: exec,
        } => (
            *raw,
            *tty,
            exec.document.is_none().then(|| marker.scanner()),
        ),
    };
    let stdin_tty = term::is_terminal(std::io::stdin().as_raw_fd());
    let config = DriverConfig {
        handshake_timeout: plan.handshake_timeout,
        escape: if raw { plan.escape } else { None },
        send_size: tty,
        eof_sends_ctrl_d: !stdin_tty,
        input_as_base64_lines: pipes_input(mode),
        exit_marker,
        kms: Some(kms.clone()),
    };
    let input = transport::stdin_input().map_err(SessionFailure::Local)?;
    let terminal = if raw {
        TerminalGuard::enter().map_err(SessionFailure::Local)?
    } else {
        TerminalGuard::noop()
    };
    // The encryption context names the session and the target as started (SPEC.md §7.2).
    let session = lifecycle::client_core(
        transport::now(),
        Some(KmsContext {
            session_id: credentials.session_id.clone(),
            target_id: plan.target.as_str().to_owned(),
        }),
    );
    let local = Local {
        input,
        outputs: Outputs::stdio(),
        terminal,
        signals: Some(signals),
    };
    // The guard lives in `local` and is dropped (terminal restored) when `run` returns.
    transport::run(pump, session, local, config)
        .await
        .map_err(SessionFailure::Driver)
}

fn raw_mode(mode: &Mode) -> bool {
    match mode {
        Mode::Shell { raw } | Mode::Exec { raw, .. } => *raw,
    }
}

fn exit_code(finished: &Finished, mode: &Mode, described: &str) -> anyhow::Result<ExitCode> {
    if let SessionEnd::ChannelClosed { output } = &finished.end
        && !output.trim().is_empty()
    {
        report::notice(output.trim());
    }
    match (&finished.end, mode) {
        (SessionEnd::Signalled(n), _) => Ok(ExitCode::from(exit_codes::for_signal(*n))),
        (SessionEnd::OutputClosed, _) => Ok(ExitCode::from(exit_codes::OUTPUT_CLOSED)),
        (_, Mode::Exec { .. }) => match finished.exit_status {
            // Exit statuses are 0-255 on Unix; the agent's ExitCode may carry -1.
            Some(status) => Ok(ExitCode::from(status.rem_euclid(256) as u8)),
            None => Err(ExpectedError::new(
                ErrorKind::NoExitStatus,
                "the session ended before the command reported its exit status",
            )
            .target(described.to_owned())
            .hint(if finished.end == SessionEnd::Disconnected {
                "the session was closed with the ~. escape"
            } else {
                "the session was closed by the service: terminated elsewhere, an idle or \
                 maximum-duration limit, or the agent stopped"
            })
            .into()),
        },
        (_, Mode::Shell { .. }) => Ok(ExitCode::from(
            finished
                .exit_status
                .map_or(exit_codes::SUCCESS, |s| s.rem_euclid(256) as u8),
        )),
    }
}

/// The AWS-owned document running one command in a PTY (SPEC.md §1.2, §6.3).
pub(crate) const INTERACTIVE_COMMAND_DOCUMENT: &str = "AWS-StartInteractiveCommand";

/// Whether `mode` pipes input to a command on the agent's terminal (`exec` through the marker
/// wrapper, no terminal asked for, standard input not a terminal): it then goes as base64
/// lines the wrapper decodes, so that it arrives byte for byte ([`Base64Lines`]).
///
/// [`Base64Lines`]: crate::transport::Base64Lines
fn pipes_input(mode: &Mode) -> bool {
    matches!(mode, Mode::Exec { tty: false, plan, .. } if plan.document.is_none())
        && !term::is_terminal(std::io::stdin().as_raw_fd())
}
