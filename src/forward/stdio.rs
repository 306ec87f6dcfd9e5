//! `postern ssh-proxy`: standard input and output carry the byte stream of an
//! AWS-StartSSHSession session (SPEC.md §6.8), for ssh's `ProxyCommand`.
//!
//! Nothing but stream bytes is ever written to stdout; diagnostics go to stderr (through
//! `report`, by the caller) and logs to a file. On end of input it waits for the agent to
//! acknowledge what was sent, then ends the session (flag or TerminateSession). When ssh goes
//! away (stdout closed, SIGHUP, SIGTERM) it ends the session and exits quietly.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use postern_protocol::Event;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, mpsc};

use crate::aws::{SsmClient, StartSessionRequest};
use crate::forward::{
    ConnectError, Connected, Connector, UploadWindow, agent_at_least, describe_close, finish,
    outstanding,
};
use crate::term::Signals;
use crate::transport::{self, Input, LocalInput, Resilience, now, sleep_until};

/// What `postern ssh-proxy` does.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// The instance.
    pub target: String,
    /// The port sshd listens on, on the instance.
    pub port: u16,
    /// StartSession reason.
    pub reason: Option<String>,
    /// Limit for the handshake.
    pub handshake_timeout: Duration,
    /// Keepalive and reconnection.
    pub resilience: Resilience,
}

/// How the proxy ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyEnd {
    /// The agent ended the session (sshd closed the connection).
    ChannelClosed,
    /// Our standard input ended; the session was ended after its data was acknowledged.
    InputClosed,
    /// Our standard output was closed: ssh is gone.
    OutputClosed,
    /// SIGTERM, SIGHUP or SIGINT.
    Signalled(i32),
}

/// Why the proxy failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The session did not start.
    #[error(transparent)]
    Connect(ConnectError),
    /// The agent is older than AWS-StartSSHSession.
    #[error(
        "the SSM agent (version {0}) is too old for SSH sessions; it needs {SSH_MIN_AGENT} or later"
    )]
    AgentTooOld(String),
    /// The session broke after it started.
    #[error("session {session_id} failed: {reason}")]
    Lost {
        /// The session.
        session_id: String,
        /// Why.
        reason: String,
    },
    /// Local setup (signals, the stdin thread) failed.
    #[error("could not set up standard input or signal handling")]
    Local(#[source] io::Error),
}

/// The StartSession request for `options` (SPEC.md §1.2).
pub fn start_request(options: &ProxyOptions) -> StartSessionRequest {
    let mut parameters = HashMap::new();
    parameters.insert("portNumber".to_owned(), vec![options.port.to_string()]);
    StartSessionRequest {
        target: options.target.clone(),
        document_name: Some(SSH_DOCUMENT.to_owned()),
        parameters,
        reason: options.reason.clone(),
    }
}

/// Runs the proxy over the process's standard streams.
pub async fn run(ssm: SsmClient, options: &ProxyOptions) -> Result<ProxyEnd, ProxyError> {
    let connector = Connector::new(ssm, start_request(options), options.handshake_timeout)
        .with_resilience(options.resilience.clone());
    run_with(connector).await
}

/// [`run`] over `connector`'s session (for a session started elsewhere:
/// [`Connector::adopting`]).
pub async fn run_with(connector: Connector) -> Result<ProxyEnd, ProxyError> {
    let mut signals = Signals::install(true).map_err(ProxyError::Local)?;
    let connected = tokio::select! {
        connected = connector.connect() => connected.map_err(ProxyError::Connect)?,
        // A resize (SIGWINCH: ssh runs its ProxyCommand in the terminal's foreground group)
        // while the session starts is not a reason to stop.
        signal = signals.ending() => return Ok(ProxyEnd::Signalled(signal)),
    };
    let agent = connected.ready.agent_version.clone().unwrap_or_default();
    if !agent_at_least(&agent, SSH_MIN_AGENT) {
        connector.terminate(&connected.session_id).await;
        return Err(ProxyError::AgentTooOld(agent));
    }
    let input = transport::stdin_input().map_err(ProxyError::Local)?;
    pump(connected, &connector, input, &mut signals, &agent).await
}

async fn pump(
    connected: Connected,
    connector: &Connector,
    mut input: LocalInput,
    signals: &mut Signals,
    agent_version: &str,
) -> Result<ProxyEnd, ProxyError> {
    let Connected {
        session_id,
        mut pump,
        mut session,
        ..
    } = connected;
    session.set_receive_ready(now(), true);
    let stdout = Stdout::spawn();
    let mut pending: Vec<u8> = Vec::new();
    let mut window = UploadWindow::new();
    let mut input_done = false;
    let mut receive_paused = false;
    let lost = |reason: String| ProxyError::Lost {
        session_id: session_id.clone(),
        reason,
    };
    let end = loop {
        let now = now();
        if !pending.is_empty() {
            let accepted = session.send_output(now, &pending);
            pending.drain(..accepted);
        }
        let flushed = pump.flush(&mut session, now).await;
        let mut end = None;
        while let Some(event) = session.poll_event() {
            match event {
                Event::Output(data) => stdout.write(data),
                Event::ChannelClosed(_) => end = Some(Ok(ProxyEnd::ChannelClosed)),
                Event::Closed(reason) => {
                    end.get_or_insert_with(|| Err(lost(describe_close(&reason))));
                }
                Event::Violation(v) => {
                    tracing::warn!(kind = v.kind.as_str(), detail = %v.detail, "peer violation");
                }
                _ => {}
            }
        }
        if let Some(end) = end {
            break end;
        }
        // The service closes the websocket right after channel_closed, which the loop above
        // has seen by now if it came; otherwise the channel broke.
        if let Err(e) = flushed {
            break Err(lost(crate::report::error_chain(&e)));
        }
        if stdout.is_closed() {
            break Ok(ProxyEnd::OutputClosed);
        }
        if input_done && pending.is_empty() && !session.has_unacked() {
            break Ok(ProxyEnd::InputClosed);
        }
        let behind = stdout.backlog();
        if !receive_paused && behind > STDOUT_HIGH_WATER {
            tracing::debug!(behind, "stdout behind: not reading new data");
            receive_paused = true;
            session.set_receive_ready(now, false);
        } else if receive_paused && behind < STDOUT_LOW_WATER {
            receive_paused = false;
            session.set_receive_ready(now, true);
            pump.reads_resumed(now);
        }
        let in_flight = outstanding(&session, pending.len());
        window.handle_rtt(now, session.stats().rtt, in_flight);
        let may_read = !input_done && pending.is_empty() && window.available(in_flight) > 0;
        let deadline = session.poll_timeout();
        tokio::select! {
            // While stdout is behind, the agent's data waits in TCP, not in our reorder window
            // (see `mux_link`).
            received = pump.recv(&mut session), if !receive_paused || !pump.is_up() => {
                if let Err(e) = received {
                    break Err(lost(crate::report::error_chain(&e)));
                }
            }
            read = input.recv(), if may_read => match read {
                Some(Input::Data(data)) => pending.extend(data),
                Some(Input::Eof) | None => input_done = true,
                Some(Input::Failed(error)) => {
                    tracing::debug!(%error, "reading standard input failed");
                    input_done = true;
                }
            },
            () = stdout.drained(), if receive_paused => {}
            () = stdout.closed() => {}
            n = signals.ending() => break Ok(ProxyEnd::Signalled(n)),
            () = sleep_until(deadline), if deadline.is_some() => session.handle_timeout(transport::now()),
        }
    };
    match &end {
        Ok(ProxyEnd::ChannelClosed) => connector.terminate_closed(&session_id).await,
        Err(_) => connector.terminate(&session_id).await,
        Ok(_) => {
            finish(
                connector,
                &session_id,
                &mut pump,
                &mut session,
                agent_version,
                DRAIN_ON_END,
            )
            .await;
        }
    }
    stdout.finish().await;
    end
}

/// Standard output, written by its own task so that a slow reader never blocks the session.
struct Stdout {
    writes: mpsc::UnboundedSender<Vec<u8>>,
    backlog: Arc<AtomicUsize>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Stdout {
    fn spawn() -> Self {
        let (writes, mut queued) = mpsc::unbounded_channel::<Vec<u8>>();
        let backlog = Arc::new(AtomicUsize::new(0));
        let wake = Arc::new(Notify::new());
        let (task_backlog, task_wake) = (backlog.clone(), wake.clone());
        let task = tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            while let Some(data) = queued.recv().await {
                let ok = out.write_all(&data).await.is_ok() && out.flush().await.is_ok();
                task_backlog.fetch_sub(data.len(), Ordering::AcqRel);
                task_wake.notify_one();
                if !ok {
                    // ssh closed its end of the pipe; the proxy is done.
                    break;
                }
            }
        });
        Self {
            writes,
            backlog,
            wake,
            task,
        }
    }

    fn write(&self, data: Vec<u8>) {
        let len = data.len();
        self.backlog.fetch_add(len, Ordering::AcqRel);
        if self.writes.send(data).is_err() {
            self.backlog.fetch_sub(len, Ordering::AcqRel);
        }
    }

    fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Acquire)
    }

    fn is_closed(&self) -> bool {
        self.task.is_finished()
    }

    async fn drained(&self) {
        self.wake.notified().await;
    }

    /// Resolves when the writer task ended (stdout failed).
    async fn closed(&self) {
        loop {
            if self.task.is_finished() {
                return;
            }
            self.wake.notified().await;
        }
    }

    /// Lets queued output reach stdout, bounded.
    async fn finish(self) {
        drop(self.writes);
        let _ = tokio::time::timeout(FLUSH_ON_END, self.task).await;
    }
}

/// The SSH session document.
const SSH_DOCUMENT: &str = "AWS-StartSSHSession";
/// AWS-StartSSHSession needs SSM Agent 2.3.672.0 (AWS Systems Manager user guide, "Allow and
/// control permissions for SSH connections through Session Manager").
pub const SSH_MIN_AGENT: &str = "2.3.672.0";
/// How long data sent before end of input may take to be acknowledged.
const DRAIN_ON_END: Duration = Duration::from_secs(10);
/// How long queued output may take to reach stdout at the end.
const FLUSH_ON_END: Duration = Duration::from_secs(5);
/// Stdout backlog above which the session stops acknowledging.
const STDOUT_HIGH_WATER: usize = 4 * 1024 * 1024;
/// Stdout backlog below which acknowledging resumes.
const STDOUT_LOW_WATER: usize = 1024 * 1024;
