//! `session-manager-plugin` mode: postern invoked under that name (a link made by
//! `postern install-plugin`, or a copy) or as `postern plugin ARGS…` honours the official
//! plugin's command line (SPEC.md §9), so `aws ssm start-session` runs its sessions.
//!
//! The AWS CLI has already called StartSession; the session's kind comes from the document
//! (shell, port forwarding to the instance or a remote host, SSH on stdin/stdout) and runs on
//! the same drivers as `postern shell`, `forward` and `ssh-proxy`. Console lines on stdout
//! follow the official plugin (§9.3), except in SSH mode, where stdout carries only the
//! stream (§6.8). Errors go to stderr through `report`; the AWS CLI turns any non-zero exit
//! into its own 255.

use std::borrow::Cow;
use std::ffi::OsString;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use crate::aws::{AwsOptions, KmsClient, SessionCredentials, SsmClient, StartSessionRequest};
use crate::cli::audit::{Audit, AuditStart};
use crate::cli::aws_context::load_aws;
use crate::cli::commands::session::{SessionPlan, run_started_shell};
use crate::cli::common::Target;
use crate::cli::errors::{LocalPortWords, forward_failure};
use crate::cli::logging;
use crate::cli::resilience::{NoticeStyle, ResilienceArgs};
use crate::forward::{
    Connector, ForwardOptions, ForwardSpec, Forwarder, LinkMode, Notice, Remote, SessionCount,
};
use crate::plugin::{self, ContractError, DocumentKind, Invocation, PluginStart};
use crate::report::{self, ErrorKind, ExpectedError};
use crate::term::{self, Signals};

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

/// The file name that makes postern act as the plugin (the AWS CLI runs this name from PATH).
pub const PLUGIN_NAME: &str = "session-manager-plugin";

/// The plugin arguments when this process was started as `session-manager-plugin`
/// (argv\[0\]'s file name), else `None`.
pub fn plugin_invocation() -> Option<Vec<String>> {
    let mut args = std::env::args_os();
    let argv0: OsString = args.next()?;
    let name = Path::new(&argv0).file_name()?;
    (name == PLUGIN_NAME).then(|| args.map(|a| a.to_string_lossy().into_owned()).collect())
}

/// Runs the plugin contract on `args` (argv without argv\[0\]).
pub fn run_plugin(args: &[String]) -> anyhow::Result<ExitCode> {
    let invocation =
        plugin::parse(args, |name| std::env::var(name).ok()).map_err(contract_error)?;
    let mut stdout = std::io::stdout().lock();
    match invocation {
        Invocation::Installed => {
            // The official greeting, word for word (plugin `sessionmanagerplugin-main/main.go`).
            write!(
                stdout,
                "\nThe Session Manager plugin was installed successfully. Use the AWS CLI to \
                 start a session.\n\n"
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Invocation::Version => {
            writeln!(stdout, "{}", plugin::PLUGIN_VERSION)?;
            Ok(ExitCode::SUCCESS)
        }
        Invocation::UnknownOperation(operation) => {
            // The official plugin repeats the argument; a StartSession response given alone
            // would put its session token on the screen, so that one is not repeated.
            let shown = if operation.trim_start().starts_with('{') {
                Cow::Borrowed("(a StartSession response, not shown)")
            } else {
                term::escape(&operation)
            };
            write!(
                stdout,
                "\nUnknown operation {shown}. \nUse session-manager-plugin --version to check \
                 the version.\n\n"
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Invocation::Start(start) => {
            drop(stdout);
            if let plugin::ResponseSource::Environment(name) = &start.response_source {
                // SAFETY: no other thread exists yet (the runtime starts below, the stdin
                // reader later), so nothing reads the environment concurrently.
                unsafe { std::env::remove_var(name) };
            }
            let raw = DocumentKind::of(start.request.document_name.as_deref())
                == DocumentKind::Shell
                && term::is_terminal(std::io::stdin().as_raw_fd());
            // Logs only to a file, and only when asked (POSTERN_LOG, POSTERN_LOG_FILE): stdout
            // and stderr belong to the session, as with the official plugin.
            let log_file = std::env::var_os("POSTERN_LOG_FILE").map(Into::into);
            logging::init(0, log_file, true)?;
            // One session: on this thread alone, as `postern shell` and `forward` (see
            // `cli::run`).
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("could not start the async runtime")?;
            let result = runtime.block_on(async {
                let result = start_session(*start, raw).await;
                // A session abandoned half-way (Ctrl-C during the handshake) is ended before
                // the runtime goes.
                crate::cli::run::end_unfinished().await;
                result
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
            result
        }
    }
}

async fn start_session(start: PluginStart, raw: bool) -> anyhow::Result<ExitCode> {
    let PluginStart {
        credentials,
        region,
        profile,
        request,
        endpoint,
        ..
    } = start;
    let kind = DocumentKind::of(request.document_name.as_deref());
    tracing::info!(
        session_id = %credentials.session_id,
        target = %request.target,
        %kind,
        "session handed over by the AWS CLI"
    );
    let aws = AwsOptions {
        profile: profile.clone(),
        region: Some(region.clone()),
        endpoint_url: endpoint,
        credentials: None,
    };
    crate::audit_trail::note_session(&credentials.session_id);
    if let Some(warning) = production_warning(&request.target) {
        report::notice(&warning);
    }
    // argv[6] is SSM's endpoint (`endpoint_url`): the identity lookup goes to STS's own.
    let audit = Audit::begin(AuditStart {
        kind: "plugin",
        target: request.target.clone(),
        aws: aws.clone(),
        document: request.document_name.clone(),
        reason: request.reason.clone(),
    });
    let result = async {
        let (context, described) = load_aws(&aws, &request.target).await?;
        let ssm = SsmClient::new(&context);
        match kind {
            DocumentKind::Shell => {
                let kms = KmsClient::new(&context);
                shell((&ssm, &kms), &request, &credentials, raw, &described).await
            }
            DocumentKind::PortForward => forward(ssm, request, credentials, &described).await,
            DocumentKind::Ssh => ssh(ssm, request, credentials, described).await,
        }
    }
    .await;
    audit.finish(&result).await;
    result
}

/// A warning when `target` is an instance of a production account in the cached index: the
/// AWS CLI started the session, so postern's confirmation never ran. No network call; nothing
/// when there is no configuration, no cache, or the index does not hold the instance.
fn production_warning(target: &str) -> Option<String> {
    let config = crate::config::load(None).ok()?;
    if config.accounts.is_empty() {
        return None;
    }
    let cache = crate::discovery::Cache::new(crate::paths::cache_dir()?);
    let entry = cache
        .all()
        .into_iter()
        .find(|entry| entry.instances.iter().any(|i| i.id == target))?;
    let id = entry.scope.account.split('-').next().unwrap_or_default();
    let account = config.account(id)?;
    config.environment(&account.env).production.then(|| {
        format!(
            "warning: {target} is a production instance (account {}, environment {}): the AWS \
             CLI started this session, so postern asked for no confirmation; use `postern shell` \
             for the production guardrails",
            account.alias, account.env
        )
    })
}

async fn shell(
    clients: (&SsmClient, &KmsClient),
    request: &StartSessionRequest,
    credentials: &SessionCredentials,
    raw: bool,
    described: &str,
) -> anyhow::Result<ExitCode> {
    let session_id = &credentials.session_id;
    console(&format!(
        "\nStarting session with SessionId: {session_id}\n"
    ));
    let plan = SessionPlan {
        target: Target::given(&request.target),
        aws: AwsOptions::default(),
        reason: request.reason.clone(),
        handshake_timeout: HANDSHAKE_TIMEOUT,
        escape: raw.then_some(b'~'),
        resilience: ResilienceArgs::default(),
    };
    let code = run_started_shell(&plan, clients, credentials, raw, described).await?;
    console(&format!(
        "\n\nExiting session with sessionId: {session_id}.\n\n"
    ));
    Ok(code)
}

async fn forward(
    ssm: SsmClient,
    request: StartSessionRequest,
    credentials: SessionCredentials,
    described: &str,
) -> anyhow::Result<ExitCode> {
    let spec = forward_spec(&request)?;
    let session_id = credentials.session_id.clone();
    console(&format!(
        "\nStarting session with SessionId: {session_id}\n"
    ));
    let options = ForwardOptions {
        target: request.target.clone(),
        forwards: vec![spec],
        sessions: SessionCount::Fixed(1),
        reason: request.reason.clone(),
        handshake_timeout: HANDSHAKE_TIMEOUT,
        resilience: ResilienceArgs::default().resilience(NoticeStyle::Line),
        socks: Vec::new(),
        idle_close: Duration::ZERO,
        socks_auth: None,
    };
    let connector = Connector::adopting(ssm, request, HANDSHAKE_TIMEOUT, credentials)
        .with_resilience(options.resilience.clone());
    // Under the AWS CLI, SIGINT, SIGQUIT and SIGTSTP start ignored: installing handlers is
    // what makes Ctrl-C, Ctrl-backslash and Ctrl-Z end the forward (SPEC.md §6.6, §6.7, §9.1).
    let mut signals = Signals::install(true)?;
    let start = Forwarder::start_with(&options, vec![connector]);
    let forwarder = tokio::select! {
        started = start => started.map_err(|e| forward_failure(e, described, PLUGIN_PORT_WORDS))?,
        // A window resize while the session opens is not a reason to stop.
        () = signals.ending_or_suspend() => return Ok(ExitCode::SUCCESS),
    };
    // One forward: its readiness is the only entry.
    let Some(ready) = forwarder.ready().first().cloned() else {
        return Ok(ExitCode::SUCCESS);
    };
    let port = ready.local.port();
    let mode = ready.mode;
    match mode {
        LinkMode::Mux => console(&format!(
            "Port {port} opened for sessionId {session_id}.\nWaiting for connections...\n"
        )),
        LinkMode::Basic => console(&format!("Port {port} opened for sessionId {session_id}.\n")),
    }
    let (notices_tx, mut notices) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let mut running = tokio::spawn(forwarder.run(notices_tx, stop));
    let mut announced = false;
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                Some(Notice::ConnectionAccepted { .. }) if !announced => {
                    announced = true;
                    console(&match mode {
                        LinkMode::Mux => format!("\nConnection accepted for session [{session_id}]\n"),
                        LinkMode::Basic => format!("Connection accepted for session {session_id}.\n"),
                    });
                }
                Some(Notice::ConnectionAccepted { .. }) => {}
                Some(Notice::ConnectToPortError { .. }) => {
                    // The official plugin's words (plugin `portsession/muxportforwarding.go`),
                    // with where to look.
                    report::notice(&format!(
                        "Connection to destination port failed, check SSM Agent logs \
                         (session {session_id}, {}).", ready.remote
                    ));
                }
                Some(Notice::SessionEnded { reason, .. }) => {
                    tracing::info!(%reason, "session ended");
                    console(&format!("\n\nExiting session with sessionId: {session_id}.\n\n"));
                    break;
                }
                Some(
                    other @ (Notice::SessionFailed { .. }
                    | Notice::ConnectionDropped { .. }
                    | Notice::SocksRefused { .. }),
                ) => {
                    tracing::info!(?other, "forward notice");
                }
                None => break,
            },
            () = signals.ending_or_suspend() => {
                console("Terminate signal received, exiting.\n");
                break;
            }
        }
    }
    let _ = stop_tx.send(true);
    // As `postern forward`: another signal stops waiting for the polite end; the exit sweep
    // then ends the session (see `ledger::adopted`).
    tokio::select! {
        _ = &mut running => {}
        () = signals.ending_or_suspend() => {
            running.abort();
            let _ = running.await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn ssh(
    ssm: SsmClient,
    request: StartSessionRequest,
    credentials: SessionCredentials,
    described: String,
) -> anyhow::Result<ExitCode> {
    let port = parameter(&request, "portNumber")
        .map(|p| parse_port(p, "portNumber"))
        .transpose()?
        .unwrap_or(DEFAULT_SSH_PORT);
    // Nothing on stdout but the stream: the official plugin's banner would reach ssh (§6.8).
    let connector = Connector::adopting(ssm, request, HANDSHAKE_TIMEOUT, credentials)
        .with_resilience(ResilienceArgs::default().resilience(NoticeStyle::Line));
    let result = crate::forward::stdio::run_with(connector).await;
    crate::cli::commands::ssh::proxy_outcome(result, port, described)
}

/// The one forward a port-forwarding document describes: `localPortNumber` (absent or 0: a
/// free port) on 127.0.0.1 to `portNumber`, on the instance or on `host`.
fn forward_spec(request: &StartSessionRequest) -> anyhow::Result<ForwardSpec> {
    let port = parameter(request, "portNumber")
        .ok_or_else(|| {
            ExpectedError::new(ErrorKind::Usage, "the portNumber parameter is missing").hint(
                "pass --parameters '{\"portNumber\":[\"80\"],\"localPortNumber\":[\"8080\"]}' \
                 to aws ssm start-session",
            )
        })
        .and_then(|p| parse_port(p, "portNumber"))?;
    let local_port = match parameter(request, "localPortNumber") {
        None | Some("") => 0,
        Some(p) => parse_port(p, "localPortNumber")?,
    };
    let host = parameter(request, "host")
        .filter(|h| !h.is_empty())
        .map(str::to_owned);
    Ok(ForwardSpec {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        local_port,
        remote: Remote { host, port },
    })
}

fn parameter<'a>(request: &'a StartSessionRequest, name: &str) -> Option<&'a str> {
    request
        .parameters
        .get(name)
        .and_then(|values| values.first())
        .map(String::as_str)
}

fn parse_port(raw: &str, name: &str) -> Result<u16, ExpectedError> {
    raw.trim().parse::<u16>().map_err(|_| {
        ExpectedError::new(
            ErrorKind::Usage,
            format!("the {name} parameter `{raw}` is not a port number"),
        )
        .hint("give a number from 0 to 65535 in --parameters")
    })
}

/// A console line on stdout, as the official plugin prints them (SPEC.md §9.3).
fn console(text: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout is not a reason to stop the session.
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

fn contract_error(err: ContractError) -> anyhow::Error {
    let hint = match &err {
        ContractError::InvalidOperation(_) => {
            "postern acts as session-manager-plugin for `aws ssm start-session`; to start \
             sessions yourself run `postern shell`, `postern forward` or `postern ssh`"
        }
        ContractError::MissingEnvironment(_) => {
            "this argument form is for the AWS CLI, which sets the variable; run the session \
             through `aws ssm start-session`"
        }
        ContractError::BadResponse(_) | ContractError::BadParameters(_) => {
            "session-manager-plugin expects the AWS CLI's arguments: RESPONSE REGION \
             StartSession PROFILE PARAMETERS ENDPOINT; upgrade the AWS CLI if it is older than \
             1.16.12"
        }
    };
    ExpectedError::new(
        ErrorKind::Usage,
        "session-manager-plugin could not start the session",
    )
    .hint(hint)
    .source(err)
    .into()
}

/// Plugin mode names the local port as the AWS CLI's parameter.
const PLUGIN_PORT_WORDS: LocalPortWords = LocalPortWords {
    another: "pass another localPortNumber",
    unusable: "pass a localPortNumber you may open (ports below 1024 need privileges)",
};
/// How long the agent may take to start the session (as `postern shell`'s default).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// sshd's port when the SSH document gets no portNumber.
const DEFAULT_SSH_PORT: u16 = 22;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn request(params: &[(&str, &str)]) -> StartSessionRequest {
        StartSessionRequest {
            target: "i-0123456789abcdef0".to_owned(),
            document_name: Some("AWS-StartPortForwardingSessionToRemoteHost".to_owned()),
            parameters: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
                .collect::<HashMap<_, _>>(),
            reason: None,
        }
    }

    #[test]
    fn forward_spec_from_document_parameters() {
        let spec = forward_spec(&request(&[
            ("portNumber", "5432"),
            ("localPortNumber", "15432"),
            ("host", "db.internal"),
        ]))
        .unwrap();
        assert_eq!(spec.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(spec.local_port, 15432);
        assert_eq!(spec.remote.host.as_deref(), Some("db.internal"));
        assert_eq!(spec.remote.port, 5432);
        let spec = forward_spec(&request(&[("portNumber", "80")])).unwrap();
        assert_eq!(spec.local_port, 0);
        assert_eq!(spec.remote.host, None);
    }

    #[test]
    fn forward_spec_rejects_missing_or_bad_ports() {
        let err = forward_spec(&request(&[])).unwrap_err();
        assert_eq!(err.to_string(), "the portNumber parameter is missing");
        let err =
            forward_spec(&request(&[("portNumber", "80"), ("localPortNumber", "x")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the localPortNumber parameter `x` is not a port number"
        );
    }
}
