//! `postern up NAME...`: starts named tunnel sets in the background. Everything that can fail
//! without AWS fails first (unknown name, a bad spec, a tunnel already up, a local port in
//! use); then each target resolves with the guardrails of `postern forward` (a production
//! tunnel asks for its confirmation here, on the terminal); then one supervisor process
//! (`postern tunnel-supervisor`, detached into its own session) starts every tunnel and says
//! on a pipe when all listeners are ready, or why not. `up` waits for that (bounded) and
//! leaves nothing running when it fails.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::cli::commands::forward::{ForwardArgs, ForwardPlan, exposure_warning};
use crate::cli::commands::tunnel::launch::{Launch, LaunchTunnel};
use crate::cli::common::{CommonArgs, ConnectArgs};
use crate::cli::errors::{FORWARD_PORT_WORDS, bind_failure};
use crate::cli::reach::load_config;
use crate::cli::resolve::resolve_forward;
use crate::config::Tunnel;
use crate::forward::BindError;
use crate::report::{ErrorKind, ExpectedError, exit_codes};
use crate::tunnel::{Registry, TunnelRecord};

/// `postern up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Tunnel sets to start: `[tunnels.NAME]` tables of the configuration file or of
    /// `tunnels.toml` beside it.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,

    /// Print one JSON object per listener once ready, instead of a sentence.
    #[arg(long)]
    pub json: bool,

    /// Give up (and stop everything) when the tunnels are not ready after this long.
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = crate::cli::common::parse_flag_duration)]
    pub wait: Duration,

    /// Session options (`--reason` replaces each tunnel's `reason`).
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Tunnels to start.
#[derive(Clone, Debug)]
pub struct UpPlan {
    /// What was asked for.
    pub args: UpArgs,
}

impl UpPlan {
    pub(crate) fn new(args: UpArgs) -> Result<Self, ExpectedError> {
        crate::cli::common::check_reason(args.connect.reason.as_deref())?;
        Ok(Self { args })
    }
}

/// Starts the tunnels; exits 0 once every listener is ready.
pub(crate) async fn up(plan: &UpPlan, common: &CommonArgs) -> anyhow::Result<ExitCode> {
    let args = &plan.args;
    let registry = registry()?;
    let config = load_config(common.broker.config.as_deref())?;
    let mut names: Vec<&str> = Vec::new();
    for name in &args.names {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    // Checks that need no AWS call, for every tunnel before any resolves.
    let mut planned = Vec::new();
    for name in &names {
        let Some(tunnel) = config.tunnels.get(*name) else {
            return Err(unknown_tunnel(name, &config).into());
        };
        if registry.is_held(name) {
            let pid = registry.read(name).map(|r| r.pid);
            return Err(ExpectedError::new(
                ErrorKind::Usage,
                format!(
                    "tunnel {name} is already up{}",
                    pid.map(|p| format!(" (supervisor pid {p})"))
                        .unwrap_or_default()
                ),
            )
            .hint(format!(
                "`postern status` shows it; `postern down {name}` stops it"
            ))
            .into());
        }
        let forward = forward_plan(tunnel, args, common)
            .and_then(|plan| check_ports(&plan).map(|()| plan))
            .map_err(|e| e.within(format_args!("tunnel {name} ({})", tunnel.file.display())))?;
        // A forward bound beyond this machine (a shared tunnels file can say 0.0.0.0) is
        // said out loud, as `postern forward` says it, before the tunnel starts.
        for spec in &forward.options.forwards {
            if let Some(warning) = exposure_warning(SocketAddr::new(spec.bind, spec.local_port)) {
                crate::report::notice(&format!("tunnel {name}: {warning}"));
            }
        }
        planned.push((*name, tunnel, forward));
    }
    let mut launch = Launch {
        tunnels: Vec::new(),
        config: common.broker.config.clone(),
        source: common.broker.source.clone(),
        mfa_command: common.broker.mfa_command.clone(),
        no_cache: common.broker.no_cache,
    };
    for (name, tunnel, forward) in planned {
        let resolved = resolve_forward(forward, common).await?;
        launch.tunnels.push(LaunchTunnel {
            name: name.to_owned(),
            target: resolved.options.target.clone(),
            target_given: tunnel.target.clone(),
            account: resolved.account.clone(),
            profile: resolved.aws.profile.clone(),
            region: resolved.aws.region.clone(),
            endpoint_url: resolved.aws.endpoint_url.clone(),
            forwards: tunnel.forward.clone(),
            socks: tunnel.socks.clone(),
            sessions: tunnel.sessions.clone().unwrap_or_else(|| "auto".to_owned()),
            reason: resolved.options.reason.clone(),
            handshake_timeout_ms: millis(args.connect.handshake_timeout),
            keepalive_ms: millis(args.connect.resilience.keepalive),
            reconnect_attempts: args.connect.resilience.reconnect_attempts,
        });
    }
    match start_supervisor(&launch, &registry, common.verbose, args.wait).await? {
        Started::Ready(records) => {
            print_ready(&records, args.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Started::Failed(code) => Ok(ExitCode::from(code)),
    }
}

/// The tunnels directory, or the error of a machine without one.
pub(crate) fn registry() -> Result<Registry, ExpectedError> {
    Registry::default_location().ok_or_else(|| {
        ExpectedError::new(
            ErrorKind::Config,
            "postern has no state directory for its tunnels",
        )
        .hint("set HOME, XDG_STATE_HOME or POSTERN_STATE_DIR")
    })
}

fn unknown_tunnel(name: &str, config: &crate::config::Config) -> ExpectedError {
    let file = config.path.as_deref().map_or_else(
        || "the configuration".to_owned(),
        |p| p.display().to_string(),
    );
    let known: Vec<&str> = config.tunnels.keys().map(String::as_str).collect();
    let hint = if known.is_empty() {
        "define it as [tunnels.NAME] with target and forward (or socks) in the configuration \
         file or in tunnels.toml beside it (see the README, \"Port forwarding and databases\")"
            .to_owned()
    } else {
        format!("the tunnels defined are: {}", known.join(", "))
    };
    ExpectedError::new(
        ErrorKind::Config,
        format!("no tunnel named {name} in {file} or the tunnels file beside it"),
    )
    .hint(hint)
}

/// The `postern forward` plan of a configured tunnel (specs checked, no network).
fn forward_plan(
    tunnel: &Tunnel,
    args: &UpArgs,
    common: &CommonArgs,
) -> Result<ForwardPlan, ExpectedError> {
    let mut connect = args.connect.clone();
    if connect.reason.is_none() {
        connect.reason.clone_from(&tunnel.reason);
    }
    let forward = ForwardArgs {
        target: Some(tunnel.target.clone()),
        forwards: tunnel.forward.clone(),
        socks: tunnel.socks.clone(),
        idle_close: Duration::from_secs(300),
        sessions: tunnel.sessions.clone().unwrap_or_else(|| "auto".to_owned()),
        json: false,
        connect,
    };
    ForwardPlan::new(common, forward)
}

/// Fails when a fixed local port of `plan` is taken, before anything calls AWS.
fn check_ports(plan: &ForwardPlan) -> Result<(), ExpectedError> {
    let forwards = plan
        .options
        .forwards
        .iter()
        .map(|s| SocketAddr::new(s.bind, s.local_port));
    let socks = plan
        .options
        .socks
        .iter()
        .map(|s| SocketAddr::new(s.bind, s.port));
    for addr in forwards.chain(socks).filter(|a| a.port() != 0) {
        if let Err(source) = std::net::TcpListener::bind(addr) {
            return Err(bind_failure(BindError { addr, source }, FORWARD_PORT_WORDS));
        }
    }
    Ok(())
}

/// Starts the supervisor and waits (bounded) for its ready line; on failure relays its error
/// and exit code, and makes sure it is gone.
async fn start_supervisor(
    launch: &Launch,
    registry: &Registry,
    verbose: u8,
    wait: Duration,
) -> anyhow::Result<Started> {
    let exe = std::env::current_exe().context("could not find the postern executable")?;
    let first = &launch.tunnels[0].name;
    let log = registry.log_path(first);
    crate::private_file::create_private_dir(registry.dir())
        .with_context(|| format!("could not create {}", registry.dir().display()))?;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("tunnel-supervisor")
        .arg("--log-file")
        .arg(&log)
        .arg(format!("-{}", "v".repeat(usize::from(verbose.max(1)))))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .context("could not start the tunnel supervisor")?;
    let document = serde_json::to_vec(launch).context("could not describe the tunnels")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&document)
            .await
            .context("could not hand the tunnels to their supervisor")?;
    }
    let stdout = child.stdout.take().context("no supervisor stdout")?;
    let mut stderr = child.stderr.take().context("no supervisor stderr")?;
    let errors = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        text
    });
    let mut lines = BufReader::new(stdout).lines();
    let outcome = tokio::select! {
        line = tokio::time::timeout(wait, lines.next_line()) => line,
        _ = tokio::signal::ctrl_c() => {
            stop(&mut child).await;
            crate::report::notice("interrupted: no tunnel was started");
            // As every command ended by a signal: 128 + SIGINT.
            return Ok(Started::Failed(exit_codes::for_signal(libc::SIGINT)));
        }
    };
    match outcome {
        Ok(Ok(Some(line))) => {
            let ready: Ready = serde_json::from_str(&line)
                .with_context(|| format!("the tunnel supervisor said something else: {line}"))?;
            Ok(Started::Ready(ready.ready))
        }
        Ok(_) => {
            // The supervisor ended before it was ready: its error is on its stderr.
            let status = tokio::time::timeout(EXIT_LIMIT, child.wait()).await;
            let text = errors.await.unwrap_or_default();
            let _ = std::io::stderr().write_all(&text);
            let code = match status {
                Ok(Ok(status)) => {
                    if text.is_empty() {
                        // Killed (out of memory, SIGKILL) before it could say anything.
                        crate::report::notice(&format!(
                            "the tunnel supervisor ended ({status}) before it was ready; its \
                             log is {}",
                            log.display()
                        ));
                    }
                    status.code()
                }
                _ => {
                    stop(&mut child).await;
                    None
                }
            };
            Ok(Started::Failed(
                code.and_then(|c| u8::try_from(c).ok())
                    .filter(|c| *c != 0)
                    .unwrap_or(1),
            ))
        }
        Err(_) => {
            stop(&mut child).await;
            let text = errors.await.unwrap_or_default();
            let _ = std::io::stderr().write_all(&text);
            Err(ExpectedError::new(
                ErrorKind::HandshakeTimeout,
                format!(
                    "the tunnels were not ready within {}; nothing was left running",
                    humantime::format_duration(wait)
                ),
            )
            .hint(format!(
                "the supervisor's log is {}; `--wait` allows longer",
                log.display()
            ))
            .into())
        }
    }
}

/// What became of the supervisor.
enum Started {
    /// Every listener is ready.
    Ready(Vec<TunnelRecord>),
    /// It failed and exited with this code, its error relayed to stderr.
    Failed(u8),
}

/// The supervisor's ready line.
#[derive(serde::Deserialize)]
struct Ready {
    ready: Vec<TunnelRecord>,
}

/// Stops the supervisor: SIGTERM first, so it ends the sessions it started (TerminateSession),
/// then SIGKILL if it is still there after [`STOP_LIMIT`].
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(STOP_LIMIT, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.start_kill();
    let _ = tokio::time::timeout(EXIT_LIMIT, child.wait()).await;
}

fn print_ready(records: &[TunnelRecord], json: bool) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for record in records {
        for listener in &record.listeners {
            let line = if json {
                serde_json::json!({
                    "tunnel": record.name,
                    "local": listener.local,
                    "remote": listener.remote,
                    "socks": listener.remote.is_none().then_some("socks5"),
                    "target": record.target,
                    "account": record.account,
                    "region": record.region,
                    "pid": record.pid,
                })
                .to_string()
            } else {
                let what = match &listener.remote {
                    Some(remote) => format!("{} -> {remote}", listener.local),
                    None => format!("SOCKS5 proxy on {}", listener.local),
                };
                format!(
                    "{}: {what} via {}",
                    record.name,
                    super::status::place(record)
                )
            };
            writeln!(stdout, "{line}")?;
        }
    }
    stdout.flush()?;
    Ok(())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How long a failed or killed supervisor may take to exit.
const EXIT_LIMIT: Duration = Duration::from_secs(10);
/// How long a supervisor told to stop may take: its tunnels end together (each within 15 s:
/// drain, TerminateSession flag, TerminateSession), then unanswered StartSession calls (3 s)
/// and what they started (3 s).
const STOP_LIMIT: Duration = Duration::from_secs(25);
