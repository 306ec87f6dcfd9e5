//! The hidden `postern tunnel-supervisor`: the background process `postern up` starts. It
//! leaves the terminal's session (setsid), reads its [`Launch`] on stdin, holds each tunnel's
//! lock, resolves and starts each tunnel as `postern forward` would (with `--yes`: `up`
//! confirmed), and once every listener is ready writes one JSON line on stdout (`up` waits for
//! it) and turns stdout to /dev/null and stderr to its log. Before that, any failure is
//! reported on stderr, which `up` relays, and ends every session already started.
//!
//! Then it keeps the tunnels' state files current (every second, atomically, 0600), keeps a
//! session open per forward (restarted with backoff when one ends for good), marks a tunnel
//! that can never work as failed (its listeners closed, its record kept with the reason), and
//! stops on SIGTERM/SIGINT/SIGHUP/SIGQUIT (every tunnel) or SIGUSR1 (the tunnels with a stop request),
//! ending each session (TerminateSession) and removing the tunnel's state.

use std::collections::HashSet;
use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::AsyncReadExt as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::aws::SsmClient;
use crate::cli::aws_context::load_aws;
use crate::cli::commands::forward::{ForwardPlan, render_notice};
use crate::cli::commands::tunnel::launch::{Launch, LaunchTunnel};
use crate::cli::commands::tunnel::status::unix_now;
use crate::cli::commands::tunnel::up::registry;
use crate::cli::errors::{FORWARD_PORT_WORDS, forward_failure};
use crate::cli::resolve::resolve_forward;
use crate::forward::{Forwarder, Notice, Traffic};
use crate::report::{ErrorKind, ExpectedError, exit_codes};
use crate::term::Signals;
use crate::transport::{Notifier, Reconnection, ledger};
use crate::tunnel::{Hold, ListenerRecord, Registry, TunnelRecord, TunnelState};

/// `postern tunnel-supervisor` (started by `postern up`; its work arrives on stdin).
#[derive(clap::Args, Debug, Clone)]
pub struct SupervisorArgs {}

/// Serves the tunnels of its launch document until told to stop.
pub(crate) async fn supervise(log: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    // Out of the terminal's session: its hangup and Ctrl-C no longer reach this process.
    let _ = nix::unistd::setsid();
    let mut document = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut document)
        .await
        .context("could not read the tunnels from `postern up`")?;
    redirect(0, std::path::Path::new("/dev/null"), false)?;
    let launch: Launch =
        serde_json::from_slice(&document).context("the tunnel description is not valid")?;
    let registry = registry()?;
    // From here on SIGTERM (what `up` sends when it gives up), SIGINT and SIGHUP end every
    // session already started rather than the process alone.
    let mut stop = Signals::install(true).context("could not install the signal handlers")?;
    let siblings: Vec<String> = launch.tunnels.iter().map(|t| t.name.clone()).collect();
    let mut holds = Vec::new();
    for tunnel in &launch.tunnels {
        let hold = registry
            .hold(&tunnel.name)
            .with_context(|| format!("could not lock {}", registry.dir().display()))?;
        let Some(hold) = hold else {
            return Err(ExpectedError::new(
                ErrorKind::Usage,
                format!("tunnel {} is already up", tunnel.name),
            )
            .hint(format!("`postern down {}` stops it", tunnel.name))
            .into());
        };
        holds.push(hold);
    }
    let mut running: Vec<Running> = Vec::new();
    for (tunnel, hold) in launch.tunnels.iter().zip(holds) {
        let started = tokio::select! {
            started = start(tunnel, &launch, hold, &siblings, log.clone()) => started,
            signal = stop.ending() => {
                tracing::info!(signal, "stopped while the tunnels started");
                stop_all(running, &registry).await;
                return Ok(ExitCode::from(exit_codes::for_signal(signal)));
            }
        };
        match started {
            Ok(started) => running.push(started),
            Err(e) => {
                stop_all(running, &registry).await;
                return Err(e);
            }
        }
    }
    if let Err(e) = announce(&mut running, &registry) {
        stop_all(running, &registry).await;
        return Err(e);
    }
    // `up` has its answer: from now on nothing goes to its pipes.
    redirect(1, std::path::Path::new("/dev/null"), true)?;
    match &log {
        Some(log) => redirect(2, log, true)?,
        None => redirect(2, std::path::Path::new("/dev/null"), true)?,
    }
    tracing::info!(tunnels = ?siblings, "tunnels ready");
    serve(running, &registry, &mut stop).await?;
    Ok(ExitCode::SUCCESS)
}

/// Writes every tunnel's state file, then the ready line `up` waits for.
fn announce(running: &mut [Running], registry: &Registry) -> anyhow::Result<()> {
    let records: Vec<TunnelRecord> = running.iter_mut().map(Running::refresh).collect();
    for record in &records {
        registry
            .write(record)
            .with_context(|| format!("could not write {}", registry.dir().display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::json!({ "ready": records }))?;
    stdout.flush()?;
    Ok(())
}

/// Stops `running`, all at once (each session ended, each state file removed).
async fn stop_all(running: Vec<Running>, registry: &Registry) {
    futures_util::future::join_all(running.into_iter().map(|tunnel| tunnel.stop(registry))).await;
}

/// A tunnel being served.
struct Running {
    record: TunnelRecord,
    traffic: Arc<Traffic>,
    health: Arc<Health>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    notices: JoinHandle<()>,
    hold: Hold,
    /// The client the tunnel's sessions were started with: what they are found by when the
    /// tunnel is cut short.
    ssm: SsmClient,
}

/// What the tunnel's reconnection notifier and notices tell the supervisor.
#[derive(Debug, Default)]
struct Health {
    /// Sessions whose websocket is being resumed.
    outages: Mutex<HashSet<String>>,
    /// Websockets resumed.
    resumes: AtomicU64,
    /// The latest trouble.
    last_error: Mutex<Option<String>>,
}

impl Health {
    fn note(&self, text: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }

    fn outages(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A poisoned lock means a panic elsewhere; the set is still whole.
        self.outages.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Resolves and starts one tunnel.
async fn start(
    tunnel: &LaunchTunnel,
    launch: &Launch,
    hold: Hold,
    siblings: &[String],
    log: Option<PathBuf>,
) -> anyhow::Result<Running> {
    let common = tunnel.common(launch);
    let plan = ForwardPlan::new(&common, tunnel.forward_args())?;
    let mut plan = resolve_forward(plan, &common).await?;
    let health = Arc::new(Health::default());
    let notified = health.clone();
    plan.options.resilience.notifier = Notifier::new(move |step: &Reconnection<'_>| {
        let session = step.session_id().to_owned();
        match step {
            Reconnection::Lost { .. } | Reconnection::Retrying { .. } => {
                notified.note(format!("session {session}: {step}"));
                notified.outages().insert(session);
            }
            Reconnection::Restored { .. } => {
                if notified.outages().remove(&session) {
                    notified.resumes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    let (context, described) = load_aws(&plan.aws, &plan.options.target).await?;
    let ssm = SsmClient::new(&context);
    let forwarder = Forwarder::start(ssm.clone(), &plan.options)
        .await
        .map_err(|e| forward_failure(e, &described, FORWARD_PORT_WORDS))?
        .keeping_sessions_open();
    let mut listeners: Vec<ListenerRecord> = forwarder
        .ready()
        .iter()
        .map(|r| ListenerRecord {
            local: r.local.to_string(),
            remote: Some(r.remote.clone()),
        })
        .collect();
    listeners.extend(forwarder.socks_ready().iter().map(|r| ListenerRecord {
        local: r.local.to_string(),
        remote: None,
    }));
    let now = unix_now();
    let record = TunnelRecord {
        name: tunnel.name.clone(),
        pid: std::process::id(),
        siblings: siblings.to_vec(),
        target: plan.options.target.clone(),
        target_given: tunnel.target_given.clone(),
        account: plan.account.clone(),
        region: Some(context.region.clone()),
        listeners,
        state: TunnelState::Ready,
        sessions: 0,
        connections: 0,
        bytes_up: 0,
        bytes_down: 0,
        since: now,
        reconnects: 0,
        last_error: None,
        updated: now,
        log,
    };
    let traffic = forwarder.traffic();
    let (notices_tx, mut notices_rx) = mpsc::unbounded_channel::<Notice>();
    let noted = health.clone();
    let name = tunnel.name.clone();
    let notices = tokio::spawn(async move {
        while let Some(notice) = notices_rx.recv().await {
            if let Notice::SessionEnded { session_id, .. } = &notice {
                noted.outages().remove(session_id);
            }
            if let Some(text) = render_notice(&notice) {
                tracing::warn!(tunnel = %name, "{text}");
                noted.note(text);
            }
        }
    });
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(forwarder.run(notices_tx, stop_rx));
    Ok(Running {
        record,
        traffic,
        health,
        stop,
        task,
        notices,
        hold,
        ssm,
    })
}

/// Serves until every tunnel has stopped or failed.
async fn serve(
    mut running: Vec<Running>,
    registry: &Registry,
    stop: &mut Signals,
) -> anyhow::Result<()> {
    let mut stop_some = signal(SignalKind::user_defined1())?;
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !running.is_empty() {
        tokio::select! {
            _ = stop.ending() => break,
            _ = stop_some.recv() => {
                let (stopping, staying): (Vec<Running>, Vec<Running>) = running
                    .into_iter()
                    .partition(|t| registry.stop_requested(&t.record.name));
                running = staying;
                for tunnel in stopping {
                    tracing::info!(tunnel = %tunnel.record.name, "stopping on request");
                    tunnel.stop(registry).await;
                }
            }
            _ = tick.tick() => {
                let mut still = Vec::new();
                for mut tunnel in running {
                    let record = tunnel.refresh();
                    if record.state == TunnelState::Failed {
                        tracing::warn!(tunnel = %record.name, reason = ?record.last_error, "tunnel failed");
                        tunnel.fail(registry).await;
                        continue;
                    }
                    if let Err(e) = registry.write(&record) {
                        tracing::warn!(tunnel = %record.name, error = %e, "could not write the tunnel's state");
                    }
                    still.push(tunnel);
                }
                running = still;
            }
        }
    }
    tracing::info!("stopping every tunnel");
    stop_all(running, registry).await;
    Ok(())
}

impl Running {
    /// The record with the counters now.
    fn refresh(&mut self) -> TunnelRecord {
        let now = self.traffic.snapshot();
        let failure = self.traffic.failure();
        let outages = !self.health.outages().is_empty();
        let record = &mut self.record;
        record.sessions = now.sessions;
        record.connections = now.connections;
        record.bytes_up = now.up;
        record.bytes_down = now.down;
        record.reconnects = self.health.resumes.load(Ordering::Relaxed) + now.restarts;
        record.state = if failure.is_some() {
            TunnelState::Failed
        } else if outages || now.restarting > 0 {
            TunnelState::Reconnecting
        } else {
            TunnelState::Ready
        };
        record.last_error = failure.or_else(|| {
            self.health
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        });
        record.updated = unix_now();
        record.clone()
    }

    /// Ends the tunnel's sessions and listeners.
    async fn end(&mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(END_LIMIT, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!(tunnel = %self.record.name, "the tunnel did not end in time");
            // Stops its listeners, pools and links at once; the sessions they were still
            // ending are ended here, not at the supervisor's exit, which may be hours away.
            self.task.abort();
            let _ = (&mut self.task).await;
            let ended = ledger::end_left_by(&self.ssm).await;
            if ended > 0 {
                tracing::warn!(tunnel = %self.record.name, sessions = ended, "ended the sessions the tunnel left open");
            }
        }
        self.notices.abort();
    }

    /// Stops the tunnel and removes its state.
    async fn stop(mut self, registry: &Registry) {
        self.end().await;
        registry.remove_held(self.hold);
        tracing::info!(tunnel = %self.record.name, "tunnel stopped");
    }

    /// Stops a tunnel that can never work, keeping its record (state failed, the reason) for
    /// `postern status` until `postern down`.
    async fn fail(mut self, registry: &Registry) {
        self.end().await;
        let mut record = self.record.clone();
        record.state = TunnelState::Failed;
        record.sessions = 0;
        record.connections = 0;
        record.updated = unix_now();
        if let Err(e) = registry.write(&record) {
            tracing::warn!(tunnel = %record.name, error = %e, "could not write the tunnel's state");
        }
        drop(self.hold);
    }
}

/// Points file descriptor `fd` at `path` (appending for a log, read or write for /dev/null).
fn redirect(fd: i32, path: &std::path::Path, write: bool) -> anyhow::Result<()> {
    let file = if path == std::path::Path::new("/dev/null") {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open(path)
    } else {
        crate::private_file::open_private_append(path)
    }
    .with_context(|| format!("could not open {}", path.display()))?;
    nix::unistd::dup2(file.as_raw_fd(), fd)
        .with_context(|| format!("could not redirect to {}", path.display()))?;
    Ok(())
}

/// How often the state files are rewritten.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// How long a tunnel may take to end its sessions.
const END_LIMIT: Duration = Duration::from_secs(15);
