//! Carries out a [`Plan`]: StartSession, open the data channel, drive the session with the
//! terminal in raw mode, TerminateSession, and turn the outcome into an exit code.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use postern_protocol::KmsContext;

use crate::aws::{
    self, AwsError, AwsErrorKind, KmsClient, SessionCredentials, SsmClient, StartSessionRequest,
};
use crate::cli::args::Args;
use crate::cli::audit::{Audit, AuditStart};
use crate::cli::logging;
use crate::cli::plan::{ExecPlan, Plan, SessionPlan};
use crate::cli::resilience::NoticeStyle;
use crate::forward::ConnectError;
use crate::report::{self, ErrorKind, ExpectedError, exit_codes};
use crate::term::{self, Signals, TerminalGuard};
use crate::transport::{
    self, DriverConfig, DriverError, ExitMarker, Finished, Local, OpenError, Outputs, SessionEnd,
    lifecycle,
};

/// Runs the command line; errors are for [`report::error`].
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(crate::cli::args::Command::Plugin(plugin)) = &args.command {
        return crate::cli::plugin::run_plugin(&plugin.args);
    }
    let verbose = args.common.verbose;
    let log_file = args.common.log_file.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    // Resolution runs on the runtime the session uses: the broker's credential providers and
    // their HTTP connections live on it.
    let args = runtime.block_on(crate::cli::index::resolve_targets(args))?;
    let plan = Plan::from_args(args)?;
    let stdin_tty = term::is_terminal(std::io::stdin().as_raw_fd());
    let stdout_tty = term::is_terminal(std::io::stdout().as_raw_fd());
    let raw = match &plan {
        Plan::Shell(_) => stdin_tty,
        Plan::Exec(exec) => stdin_tty && exec.tty.unwrap_or(stdout_tty),
        Plan::Forward(_) | Plan::Ssh(_) | Plan::SshConfig(_) | Plan::Emulator(_) => false,
        Plan::Broker(_) | Plan::Completions(_) => false,
        Plan::List(_) => false,
        Plan::Doctor(_) | Plan::History(_) | Plan::InstallPlugin(_) => false,
        // The demo's shell is a child `postern shell`, which takes the terminal itself.
        Plan::Demo(_) => false,
        // stdout carries the stream and stderr is ssh's screen: logs only to a file.
        Plan::SshProxy(_) => true,
    };
    logging::init(verbose, log_file, raw)?;
    match &plan {
        Plan::Ssh(ssh) => return crate::cli::ssh::ssh(ssh),
        Plan::SshConfig(aws) => return crate::cli::ssh::config(aws),
        Plan::Completions(args) => return crate::cli::completions::print(args),
        Plan::History(history) => return crate::cli::history::show(history),
        Plan::InstallPlugin(install) => return crate::cli::install::run(install),
        _ => {}
    }
    let audit = audit_start(&plan);
    let result = runtime.block_on(async {
        let audit = audit.map(Audit::begin);
        let result = match plan {
            Plan::Emulator(args) => postern_emulator::run_from_cli(args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Plan::Demo(args) => crate::cli::demo::run(args).await,
            Plan::Broker(plan) => crate::cli::broker::run(plan).await,
            Plan::List(list) => crate::cli::index::list(&list).await,
            Plan::Forward(forward) => crate::cli::forward::run(&forward).await,
            Plan::SshProxy(proxy) => crate::cli::ssh::proxy(&proxy).await,
            // Handled before the runtime starts.
            Plan::Ssh(_) | Plan::SshConfig(_) | Plan::Completions(_) => Ok(ExitCode::SUCCESS),
            Plan::Shell(session) => {
                let mode = Mode::Shell { raw };
                run_session(&session, &mode).await
            }
            Plan::Exec(exec) => {
                let tty = exec.tty.unwrap_or(stdin_tty && stdout_tty);
                let mode = Mode::Exec {
                    raw,
                    tty,
                    plan: Box::new(exec.clone()),
                };
                run_session(&exec.session, &mode).await
            }
            Plan::Doctor(doctor) => crate::cli::doctor::run(&doctor).await,
            // Handled before the runtime starts.
            Plan::History(_) | Plan::InstallPlugin(_) => Ok(ExitCode::SUCCESS),
        };
        if let Some(audit) = audit {
            audit.finish(&result).await;
        }
        result
    });
    // Standard-stream writes may still sit in blocking threads; give them a moment, never
    // hang on them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The audit-trail facts of a session command; `None` for other commands.
fn audit_start(plan: &Plan) -> Option<AuditStart> {
    let (kind, target, aws, document, reason) = match plan {
        Plan::Shell(p) => ("shell", p.target.to_string(), &p.aws, None, &p.reason),
        Plan::Exec(p) => (
            "exec",
            p.session.target.to_string(),
            &p.session.aws,
            Some(
                p.document
                    .clone()
                    .unwrap_or_else(|| INTERACTIVE_COMMAND_DOCUMENT.to_owned()),
            ),
            &p.session.reason,
        ),
        Plan::Forward(p) => (
            "forward",
            p.options.target.clone(),
            &p.aws,
            None,
            &p.options.reason,
        ),
        Plan::SshProxy(p) => (
            "ssh",
            p.options.target.clone(),
            &p.aws,
            Some(SSH_DOCUMENT.to_owned()),
            &p.options.reason,
        ),
        _ => return None,
    };
    Some(AuditStart {
        kind,
        target,
        aws: aws.clone(),
        document,
        reason: reason.clone(),
    })
}

/// Shell or command, with the terminal decisions made.
enum Mode {
    Shell {
        raw: bool,
    },
    Exec {
        raw: bool,
        tty: bool,
        plan: Box<ExecPlan>,
    },
}

async fn run_session(plan: &SessionPlan, mode: &Mode) -> anyhow::Result<ExitCode> {
    let target = plan.target.as_str();
    let (context, described) = load_aws(&plan.aws, target).await?;
    let ssm = SsmClient::new(&context);

    let marker = ExitMarker::new(rand::random());
    let request = start_request(plan, mode, &marker);
    let credentials = lifecycle::start(&ssm, &request)
        .await
        .map_err(|e| aws_failure(e, "could not start a session", &described))?;
    let kms = KmsClient::new(&context);
    carry_session(plan, mode, (&ssm, &kms), &credentials, &marker, &described).await
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
    )
    .await
}

/// Drives a started session to its end, terminates it, and turns the outcome into the exit
/// code.
async fn carry_session(
    plan: &SessionPlan,
    mode: &Mode,
    (ssm, kms): (&SsmClient, &KmsClient),
    credentials: &SessionCredentials,
    marker: &ExitMarker,
    described: &str,
) -> anyhow::Result<ExitCode> {
    let outcome = drive(plan, mode, (ssm, kms), credentials, marker).await;

    // Leave nothing open on the service, whatever happened.
    lifecycle::terminate(ssm, &credentials.session_id).await;

    let finished = outcome.map_err(|e| driver_failure(e, described, &credentials.session_id))?;
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
) -> Result<Finished, SessionFailure> {
    let style = if raw_mode(mode) {
        NoticeStyle::Raw
    } else {
        NoticeStyle::Line
    };
    let pump = lifecycle::open(ssm, credentials, plan.resilience.resilience(style))
        .await
        .map_err(SessionFailure::Open)?;

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
        exit_marker,
        kms: Some(kms.clone()),
    };
    let input = transport::spawn_stdin_reader().map_err(SessionFailure::Local)?;
    let signals = Signals::install(!raw).map_err(SessionFailure::Local)?;
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

/// Why a started session failed.
#[derive(Debug)]
enum SessionFailure {
    Open(OpenError),
    Driver(DriverError),
    Local(std::io::Error),
}

fn exit_code(finished: &Finished, mode: &Mode, described: &str) -> anyhow::Result<ExitCode> {
    if let SessionEnd::ChannelClosed { output } = &finished.end
        && !output.trim().is_empty()
    {
        report::notice(output.trim());
    }
    match (&finished.end, mode) {
        (SessionEnd::Signalled(n), _) => Ok(ExitCode::from(signal_code(*n))),
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

fn signal_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(exit_codes::UNEXPECTED)
}

/// Loads the AWS configuration for a command on `target`; returns it with the target's
/// description (target, region, profile, endpoint) that every later error message names.
pub(crate) async fn load_aws(
    options: &aws::AwsOptions,
    target: &str,
) -> anyhow::Result<(aws::AwsContext, String)> {
    let endpoint = options.endpoint_url.as_deref();
    let context = aws::load(options).await.map_err(|e| {
        aws_failure(
            e,
            "could not load the AWS configuration",
            &describe(target, None, options.profile.as_deref(), endpoint),
        )
    })?;
    let mut described = describe(
        target,
        Some(&context.region),
        context.profile.as_deref(),
        endpoint,
    );
    if let Some(credentials) = &options.credentials {
        described.push_str(", ");
        described.push_str(&credentials.label);
    }
    Ok((context, described))
}

pub(crate) fn describe(
    target: &str,
    region: Option<&str>,
    profile: Option<&str>,
    endpoint: Option<&str>,
) -> String {
    let mut text = target.to_owned();
    if let Some(region) = region {
        text.push_str(" in ");
        text.push_str(region);
    }
    if let Some(profile) = profile {
        text.push_str(", profile ");
        text.push_str(profile);
    }
    if let Some(endpoint) = endpoint {
        text.push_str(", endpoint ");
        text.push_str(endpoint);
    }
    text
}

pub(crate) fn aws_failure(err: AwsError, what: &str, described: &str) -> anyhow::Error {
    let (kind, hint) = match err.kind {
        AwsErrorKind::TargetNotConnected => (
            ErrorKind::TargetNotConnected,
            "check that the instance exists in this account and region, is running, and that \
             its SSM agent is online (`aws ssm describe-instance-information`)"
                .to_owned(),
        ),
        AwsErrorKind::AccessDenied => (
            ErrorKind::AccessDenied,
            format!(
                "the caller needs IAM permission for ssm:{} on the instance and the session \
                 document, and ssm:TerminateSession on its own sessions",
                err.operation
            ),
        ),
        AwsErrorKind::Credentials => (
            ErrorKind::AwsConfig,
            "check the credentials: refresh them (e.g. `aws sso login`), or pick another \
             --profile"
                .to_owned(),
        ),
        AwsErrorKind::Configuration => (
            ErrorKind::AwsConfig,
            "pass --region or set AWS_REGION".to_owned(),
        ),
        AwsErrorKind::Unreachable => (
            ErrorKind::EndpointUnreachable,
            "check the network, --endpoint-url and AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_SSM"
                .to_owned(),
        ),
        AwsErrorKind::Service => (
            ErrorKind::AwsRequest,
            "retry later; if it persists, quote the request id to AWS support".to_owned(),
        ),
    };
    ExpectedError::new(kind, what)
        .target(described.to_owned())
        .hint(hint)
        .source(err)
        .into()
}

/// A port or SSH session that did not start. `ended_hint` applies when the agent ended it
/// (typically: nothing listens at the destination).
pub(crate) fn connect_failure(
    err: ConnectError,
    what: &str,
    described: &str,
    ended_hint: &str,
) -> anyhow::Error {
    let (kind, hint) = match err {
        ConnectError::Start(e) => return aws_failure(e, what, described),
        ConnectError::Open(_) => (
            ErrorKind::EndpointUnreachable,
            "check the network and any proxy between here and the Session Manager endpoint",
        ),
        ConnectError::HandshakeTimeout { .. } => (
            ErrorKind::HandshakeTimeout,
            "the agent may be overloaded or too old; check its logs on the instance \
             (/var/log/amazon/ssm/amazon-ssm-agent.log)",
        ),
        ConnectError::Lost { .. } => (
            ErrorKind::ConnectionLost,
            "check the network; run the command again",
        ),
        ConnectError::Ended { .. } => (ErrorKind::ConnectionLost, ended_hint),
    };
    ExpectedError::new(kind, what)
        .target(described.to_owned())
        .hint(hint)
        .source(err)
        .into()
}

fn driver_failure(err: SessionFailure, described: &str, session_id: &str) -> anyhow::Error {
    let target = format!("{described}, session {session_id}");
    match err {
        SessionFailure::Open(e) => ExpectedError::new(
            ErrorKind::EndpointUnreachable,
            "could not open the session's data channel",
        )
        .target(target)
        .hint("check the network and any proxy between here and the Session Manager endpoint")
        .source(e)
        .into(),
        SessionFailure::Local(e) => {
            anyhow::Error::new(e).context(format!("could not set up the local terminal ({target})"))
        }
        SessionFailure::Driver(e) => {
            let (kind, what, hint) = match &e {
                DriverError::HandshakeTimeout(_) => (
                    ErrorKind::HandshakeTimeout,
                    "the session did not start",
                    "the agent may be overloaded or too old; check its logs on the instance \
                     (/var/log/amazon/ssm/amazon-ssm-agent.log)",
                ),
                DriverError::ConnectionLost(_) => (
                    ErrorKind::ConnectionLost,
                    "the session was interrupted",
                    "check the network (and --reconnect-attempts, --keepalive); run the command \
                     again to start a new session",
                ),
                DriverError::Closed(_) => (
                    ErrorKind::ConnectionLost,
                    "the session was interrupted",
                    "check the network; run the command again to start a new session",
                ),
                DriverError::Encryption(_) => (
                    ErrorKind::Encryption,
                    "the KMS-encrypted session was closed",
                    "the agent's data key does not match ours or a message was altered on the \
                     way; nothing undecryptable was shown. Check the KMS key named in the \
                     Session Manager preferences (the instance role needs kms:Decrypt) and retry",
                ),
                DriverError::Kms { source, .. } => {
                    let (kind, hint) = match source.kind {
                        AwsErrorKind::AccessDenied => (
                            ErrorKind::AccessDenied,
                            "the caller needs kms:GenerateDataKey on the key named in the \
                             account's Session Manager preferences",
                        ),
                        AwsErrorKind::Credentials => (
                            ErrorKind::AwsConfig,
                            "check the credentials: refresh them (e.g. `aws sso login`)",
                        ),
                        _ => (
                            ErrorKind::Encryption,
                            "check that the KMS key in the Session Manager preferences exists \
                             and is enabled in this region",
                        ),
                    };
                    (
                        kind,
                        "the session is KMS-encrypted and no data key could be made",
                        hint,
                    )
                }
                DriverError::Output(_) => {
                    return anyhow::Error::new(e)
                        .context(format!("session output failed ({target})"));
                }
            };
            ExpectedError::new(kind, what)
                .target(target)
                .hint(hint)
                .source(e)
                .into()
        }
    }
}

/// The SSH session document (SPEC.md §1.2).
const SSH_DOCUMENT: &str = "AWS-StartSSHSession";
/// The AWS-owned document running one command in a PTY (SPEC.md §1.2, §6.3).
const INTERACTIVE_COMMAND_DOCUMENT: &str = "AWS-StartInteractiveCommand";
