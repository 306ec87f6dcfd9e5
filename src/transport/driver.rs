//! The session driver: one task, one `select!` over the websocket, local input, output
//! writes, signals and the session's next timeout; after every input it drains the core
//! (`poll_transmit`, then `poll_event`) and sleeps until `poll_timeout` (STYLE.md §2, quinn
//! `quinn/src/connection.rs`). It pumps; the core decides.
//!
//! It carries shells and commands; the [`Pump`] keeps the websocket alive (keepalive,
//! ResumeSession and [`Session::handle_reconnect`] after a drop), so the driver only sees
//! [`DriverError::ConnectionLost`] once the pump gave up. KMS-encrypted sessions call
//! GenerateDataKey here when the core asks ([`Event::KmsDataKeyRequired`]).

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use postern_protocol::{CloseReason, DataKey, Event, KmsRequest, ReadyInfo, Session, SizeData};
use tokio::io::AsyncWriteExt;

use crate::aws::{AwsError, KmsClient};
use crate::term::{self, LocalSignal, Signals, TerminalGuard};
use crate::transport::escape::{EscapeFilter, Escaped, HELP};
use crate::transport::exit_marker::{Marked, MarkerScanner};
use crate::transport::local::{Input, LocalInput, Outputs};
use crate::transport::pump::{self, Lost, Pump, now, sleep_until};
use crate::transport::stdin_lines::Base64Lines;

/// How the driver treats local IO.
#[derive(Debug)]
pub struct DriverConfig {
    /// Fail when the session is not ready this long after the websocket opened.
    pub handshake_timeout: Duration,
    /// Escape character for `~.`-style sequences; `None` disables them (not a terminal).
    pub escape: Option<u8>,
    /// Send the local window size on start and on SIGWINCH.
    pub send_size: bool,
    /// At end of input send the terminal EOF character (Ctrl-D) so the remote side sees
    /// end of file, and keep the session open for the remaining output (SPEC.md §6.2).
    pub eof_sends_ctrl_d: bool,
    /// Send the input as [`Base64Lines`] (ended by their end line, not Ctrl-D), for the
    /// wrapper of [`ExitMarker::wrap_with_piped_input`](crate::transport::ExitMarker) to
    /// decode: piped input reaches the command byte for byte.
    pub input_as_base64_lines: bool,
    /// `postern exec` over AWS-StartInteractiveCommand: the wrapper's records to strip.
    pub exit_marker: Option<MarkerScanner>,
    /// KMS, for sessions the account's preferences encrypt (SPEC.md §7).
    pub kms: Option<KmsClient>,
}

/// Local resources the driver uses.
#[derive(Debug)]
pub struct Local {
    /// Local input (standard input, or what the command sends).
    pub input: LocalInput,
    /// Where remote output goes.
    pub outputs: Outputs,
    /// The raw-mode guard (no-op when not a terminal): released while suspended.
    pub terminal: TerminalGuard,
    /// Signal handlers; `None` in tests.
    pub signals: Option<Signals>,
}

/// How a session ended without error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The service closed the channel (the shell or command ended, or someone terminated it).
    ChannelClosed {
        /// The service's close text, if any.
        output: String,
    },
    /// The user typed the `~.` escape.
    Disconnected,
    /// A terminating signal arrived (SIGTERM, SIGHUP, or a second SIGINT).
    Signalled(i32),
    /// Our standard output was closed (e.g. piped into `head`).
    OutputClosed,
    /// The exit record arrived but the channel did not close within the grace period.
    ExitedWithoutClose,
}

/// What the driver learnt.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// Why it stopped.
    pub end: SessionEnd,
    /// The remote status: the ExitCode payload or the exec wrapper's record.
    pub exit_status: Option<i32>,
    /// The handshake's outcome, if the session became ready.
    pub ready: Option<ReadyInfo>,
}

/// Why the driver failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The agent sent nothing usable in time.
    #[error(
        "the agent did not start the session within {}",
        crate::report::human_duration(*.0)
    )]
    HandshakeTimeout(Duration),
    /// The websocket broke before the session ended and could not be restored.
    #[error(transparent)]
    ConnectionLost(Lost),
    /// The core closed the session (no acknowledgements for too long, handshake failure).
    #[error("the session failed: {0}")]
    Closed(String),
    /// GenerateDataKey failed for the session's KMS key.
    #[error("could not get a data key from KMS key {key_id} for the encrypted session")]
    Kms {
        /// The key the agent named.
        key_id: String,
        /// The KMS failure.
        #[source]
        source: AwsError,
    },
    /// An encrypted session's keys did not agree, or a message did not decrypt (wrong key,
    /// tampered ciphertext). Nothing undecryptable was shown.
    #[error("the encrypted session failed: {0}")]
    Encryption(String),
    /// Local output failed.
    #[error("could not write the session's output")]
    Output(#[source] io::Error),
}

/// Runs `session` over `pump`'s data channel until it ends.
///
/// The session runs as a task of its own. On a multi-thread runtime (commands that fan out) that
/// puts it on a worker, which polls the reactor itself: a future under `block_on` runs on the
/// calling thread, so every websocket or terminal event would first wake a worker and then
/// that thread, two thread hops per keystroke echo instead of none. (A one-session command's
/// runtime is the calling thread alone, where both are the same.) Dropping the returned future
/// stops the task.
pub async fn run(
    pump: Pump,
    session: Session,
    local: Local,
    config: DriverConfig,
) -> Result<Finished, DriverError> {
    let mut task = AbortOnDrop(tokio::spawn(drive(pump, session, local, config)));
    match (&mut task.0).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only the runtime's shutdown cancels the task, and then nothing awaits this.
        Err(_) => Err(DriverError::Closed(
            "the session task was cancelled".to_owned(),
        )),
    }
}

/// Aborts the task when the handle is dropped (the caller stopped waiting for the session).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn drive(
    mut pump: Pump,
    mut session: Session,
    mut local: Local,
    mut config: DriverConfig,
) -> Result<Finished, DriverError> {
    let started = now();
    let mut state = State {
        input_enabled: false,
        input_done: false,
        input_pending: Vec::new(),
        last_input_byte: b'\n',
        interrupts: 0,
        out: VecDeque::new(),
        out_bytes: 0,
        receive_paused: false,
        exit_status: None,
        grace_deadline: None,
        end: None,
        ready: None,
        last_size: None,
        escape: config.escape.map(EscapeFilter::new),
        input_lines: config.input_as_base64_lines.then(Base64Lines::default),
        stdout_closed: false,
        kms_pending: None,
        kms_requested: false,
    };
    let result = loop {
        let now = now();
        if let Some((key_id, context)) = state.kms_pending.take() {
            if let Err(e) = answer_kms(&mut session, config.kms.as_ref(), key_id, &context).await {
                // The core has sent the failure to the agent; let it leave, then stop.
                let _ = pump.flush(&mut session, pump::now()).await;
                break Err(e);
            }
            continue;
        }
        let mut failure = None;
        while let Some(event) = session.poll_event() {
            if let Err(e) = on_event(
                event,
                &mut session,
                &mut state,
                &mut local,
                &mut config,
                now,
            ) {
                failure = Some(e);
                break;
            }
        }
        if let Some(e) = failure {
            break Err(e);
        }
        // Remote output first, then the acks of the messages that carried it: a keystroke's
        // echo reaches the terminal one websocket write sooner.
        if !state.out.is_empty()
            && let Some(written) = write_some(&mut local.outputs, &mut state.out).now_or_never()
            && let Err(e) = on_written(written, &mut state)
        {
            break Err(e);
        }
        push_input(&mut session, &mut state, now);
        if let Err(lost) = pump.flush(&mut session, now).await {
            break lost_or_exited(&state, lost);
        }
        if state.kms_pending.is_some() {
            // The handshake waits for the data key: make the KMS call before anything else.
            continue;
        }
        if let Some(end) = state.end.clone() {
            break Ok(end);
        }
        if apply_backpressure(&mut session, &mut state, now) {
            pump.reads_resumed(now);
        }

        // Until local input may flow (Ready, and for exec the wrapper's start record).
        let handshake_deadline = (!state.input_enabled).then(|| started + config.handshake_timeout);
        let deadline = [
            session.poll_timeout(),
            handshake_deadline,
            state.grace_deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        let want_input = state.input_enabled
            && !state.input_done
            && state.input_pending.is_empty()
            && session.send_capacity() > 0;
        let has_output = !state.out.is_empty();
        let signals = async {
            match &mut local.signals {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };

        // In this order: a keystroke goes out before anything else is looked at (the
        // window, through `want_input`, keeps a paste from starving the websocket), and a
        // branch that is not ready costs no more than a readiness check.
        tokio::select! {
            biased;
            input = local.input.recv(), if want_input => {
                on_input(input, &mut state, &mut local, &mut session, &config);
            }
            // While local output is behind, the agent's data waits in TCP, not in our
            // reorder window (see `forward::mux_link`).
            received = pump.recv(&mut session), if !state.receive_paused || !pump.is_up() => {
                if let Err(lost) = received {
                    break lost_or_exited(&state, lost);
                }
            }
            written = write_some(&mut local.outputs, &mut state.out), if has_output => {
                if let Err(e) = on_written(written, &mut state) {
                    break Err(e);
                }
            }
            signal = signals => {
                on_signal(signal, &mut state, &mut local, &mut session, &config);
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                let now = pump::now();
                session.handle_timeout(now);
                if !state.input_enabled && now >= started + config.handshake_timeout {
                    break Err(DriverError::HandshakeTimeout(config.handshake_timeout));
                }
                if state.grace_deadline.is_some_and(|d| now >= d) {
                    break Ok(SessionEnd::ExitedWithoutClose);
                }
            }
        }
    };
    // Whatever happened, deliver the output already received.
    if let Some(scanner) = config.exit_marker.as_mut() {
        let tail = scanner.finish();
        if !tail.is_empty() {
            queue_out(&mut state, Dest::Stdout, tail);
        }
    }
    let flushed = flush_outputs(&mut local.outputs, &mut state).await;
    let end = result?;
    flushed.map_err(DriverError::Output)?;
    Ok(Finished {
        end,
        exit_status: state.exit_status,
        ready: state.ready,
    })
}

/// A lost data channel after the command reported its status is a normal end.
fn lost_or_exited(state: &State, lost: Lost) -> Result<SessionEnd, DriverError> {
    if state.exit_status.is_some() {
        Ok(SessionEnd::ExitedWithoutClose)
    } else {
        Err(DriverError::ConnectionLost(lost))
    }
}

/// Driver bookkeeping between loop turns.
struct State {
    /// Local input may be sent (the session is ready and, for exec, the wrapper started).
    input_enabled: bool,
    /// End of input seen (or reading failed).
    input_done: bool,
    /// Input not yet accepted by the session.
    input_pending: Vec<u8>,
    last_input_byte: u8,
    interrupts: u32,
    out: VecDeque<(Dest, Vec<u8>)>,
    out_bytes: usize,
    receive_paused: bool,
    exit_status: Option<i32>,
    grace_deadline: Option<Instant>,
    end: Option<SessionEnd>,
    ready: Option<ReadyInfo>,
    last_size: Option<SizeData>,
    escape: Option<EscapeFilter>,
    /// Piped input on its way as base64 lines ([`DriverConfig::input_as_base64_lines`]).
    input_lines: Option<Base64Lines>,
    stdout_closed: bool,
    /// A GenerateDataKey the core asked for, not yet made: (key id, encryption context).
    kms_pending: Option<(String, std::collections::BTreeMap<String, String>)>,
    /// Whether the agent asked for encryption (failures then are encryption failures).
    kms_requested: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dest {
    Stdout,
    Stderr,
}

fn on_event(
    event: Event,
    session: &mut Session,
    state: &mut State,
    local: &mut Local,
    config: &mut DriverConfig,
    now: Instant,
) -> Result<(), DriverError> {
    match event {
        Event::Ready(info) => {
            tracing::info!(
                session_type = ?info.session_type,
                agent_version = info.agent_version.as_deref().unwrap_or(""),
                "session ready"
            );
            if let Some(message) = info.customer_message.as_deref().filter(|m| !m.is_empty()) {
                let mut text = message.replace('\n', "\r\n").into_bytes();
                if !text.ends_with(b"\n") {
                    text.extend(b"\r\n");
                }
                queue_out(state, Dest::Stderr, text);
            }
            state.ready = Some(info);
            if config.exit_marker.is_none() {
                start_input(session, state, config, now);
            }
        }
        Event::Output(data) => match config.exit_marker.as_mut() {
            Some(scanner) => {
                let secret_line = scanner.secret_line();
                for marked in scanner.feed(&data) {
                    match marked {
                        Marked::Data(d) => queue_out(state, Dest::Stdout, d),
                        Marked::Ready => {
                            // The secret goes in as input, never on a command line.
                            tracing::debug!("exec wrapper ready for the marker");
                            session.send_output(now, &secret_line);
                        }
                        Marked::Started => {
                            tracing::debug!("exec wrapper started");
                            start_input(session, state, config, now);
                            // The newline the wrapper's `read` waits for.
                            session.send_output(now, b"\n");
                        }
                        Marked::Exited(code) => {
                            tracing::debug!(code, "exec wrapper reported the exit status");
                            state.exit_status = Some(code);
                            state.grace_deadline = Some(now + EXIT_GRACE);
                            // Piped input the command no longer reads: the end line lets the
                            // wrapper's decoder, and so the session, end now rather than when
                            // our standard input does (`sleep 600 | postern exec … -- true`).
                            if !state.input_done
                                && let Some(lines) = state.input_lines.as_mut()
                            {
                                lines.finish(&mut state.input_pending);
                                state.input_done = true;
                            }
                        }
                    }
                }
            }
            None => queue_out(state, Dest::Stdout, data),
        },
        Event::StdErr(data) => queue_out(state, Dest::Stderr, data),
        Event::ExitCode(code) => {
            tracing::debug!(code, "exit code received");
            state.exit_status = Some(code);
        }
        Event::ChannelClosed(closed) => {
            tracing::info!("channel closed by the service");
            state.end = Some(SessionEnd::ChannelClosed {
                output: closed.output,
            });
        }
        Event::Closed(reason) => {
            if state.end.is_none() {
                return Err(match reason {
                    CloseReason::ChannelClosed => {
                        state.end = Some(SessionEnd::ChannelClosed {
                            output: String::new(),
                        });
                        return Ok(());
                    }
                    CloseReason::GaveUp(after) => DriverError::Closed(format!(
                        "the agent acknowledged nothing for {}",
                        crate::report::human_duration(after)
                    )),
                    CloseReason::HandshakeTimeout => {
                        DriverError::HandshakeTimeout(config.handshake_timeout)
                    }
                    CloseReason::DecryptionFailed(why) => DriverError::Encryption(format!(
                        "a message from the agent did not decrypt ({why}); the session was closed"
                    )),
                    CloseReason::HandshakeFailed(why) if state.kms_requested => {
                        DriverError::Encryption(why)
                    }
                    // Handshake failures carry the core's explanation.
                    other => DriverError::Closed(describe_failure(other)),
                });
            }
        }
        Event::KmsDataKeyRequired(KmsRequest::GenerateDataKey {
            key_id,
            encryption_context,
        }) => {
            tracing::info!(%key_id, "the session is KMS-encrypted: GenerateDataKey");
            state.kms_requested = true;
            state.kms_pending = Some((key_id, encryption_context));
        }
        Event::KmsDataKeyRequired(KmsRequest::Decrypt { .. }) => {
            // Only agents decrypt the client's blob; the core never asks a client to.
            let _ = local;
        }
        Event::Paused => tracing::debug!("agent paused publication"),
        Event::Resumed => tracing::debug!("agent resumed publication"),
        Event::Writable => {}
        Event::Size(_) | Event::Flag(_) => {}
        Event::Violation(v) => {
            tracing::warn!(kind = v.kind.as_str(), detail = %v.detail, "peer violation");
        }
    }
    Ok(())
}

/// Calls GenerateDataKey (64 bytes, SPEC.md §7.2) and hands the key to the core; on failure
/// the core answers the agent with the error (action status Failed) and the driver stops.
async fn answer_kms(
    session: &mut Session,
    kms: Option<&KmsClient>,
    key_id: String,
    context: &std::collections::BTreeMap<String, String>,
) -> Result<(), DriverError> {
    let result = match kms {
        Some(kms) => {
            match tokio::time::timeout(KMS_TIMEOUT, kms.generate_data_key(&key_id, 64, context))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(AwsError::local(
                    crate::aws::AwsErrorKind::Unreachable,
                    "GenerateDataKey",
                    None,
                    None,
                    "KMS did not answer in time (the agent waits 15 s for the handshake)",
                )),
            }
        }
        None => Err(AwsError::local(
            crate::aws::AwsErrorKind::Configuration,
            "GenerateDataKey",
            None,
            None,
            "no KMS client is configured for this session",
        )),
    };
    match result {
        Ok(key) => {
            session.provide_data_key(
                now(),
                Ok(DataKey {
                    plaintext: key.plaintext,
                    ciphertext_blob: key.ciphertext_blob,
                }),
            );
            Ok(())
        }
        Err(source) => {
            session.provide_data_key(now(), Err(source.to_string()));
            Err(DriverError::Kms { key_id, source })
        }
    }
}

fn describe_failure(reason: CloseReason) -> String {
    match reason {
        CloseReason::HandshakeFailed(why) => format!("the handshake failed: {why}"),
        _ => "a message from the agent could not be decrypted".to_owned(),
    }
}

/// Sends the size first, then lets local input flow.
fn start_input(session: &mut Session, state: &mut State, config: &DriverConfig, now: Instant) {
    if config.send_size {
        send_size(session, state, now, true);
    }
    state.input_enabled = true;
}

fn send_size(session: &mut Session, state: &mut State, now: Instant, force: bool) {
    let Some((cols, rows)) = term::window_size() else {
        return;
    };
    let size = SizeData {
        cols: u32::from(cols),
        rows: u32::from(rows),
    };
    if force || state.last_size != Some(size) {
        tracing::debug!(cols, rows, "sending window size");
        session.send_size(now, size);
        state.last_size = Some(size);
    }
}

fn on_input(
    input: Option<Input>,
    state: &mut State,
    local: &mut Local,
    session: &mut Session,
    config: &DriverConfig,
) {
    let now = now();
    match input {
        Some(Input::Data(data)) => {
            let actions = match state.escape.as_mut() {
                Some(filter) => filter.filter(&data),
                None => vec![Escaped::Send(data)],
            };
            for action in actions {
                match action {
                    Escaped::Send(bytes) => {
                        if let Some(&last) = bytes.last() {
                            state.last_input_byte = last;
                        }
                        match state.input_lines.as_mut() {
                            Some(lines) => lines.encode(&bytes, &mut state.input_pending),
                            None => state.input_pending.extend(bytes),
                        }
                    }
                    Escaped::Disconnect => {
                        state.end = Some(SessionEnd::Disconnected);
                        return;
                    }
                    Escaped::Help => queue_out(state, Dest::Stderr, HELP.as_bytes().to_vec()),
                    Escaped::Suspend => {
                        if let Err(e) = term::suspend(&mut local.terminal) {
                            tracing::warn!(error = %e, "could not suspend");
                        }
                        if config.send_size {
                            send_size(session, state, now, false);
                        }
                    }
                }
            }
        }
        Some(Input::Eof) | None => {
            state.input_done = true;
            if let Some(lines) = state.input_lines.as_mut() {
                lines.finish(&mut state.input_pending);
            } else if config.eof_sends_ctrl_d {
                // A partial last line needs one Ctrl-D to be read and a second for EOF.
                if state.last_input_byte != b'\n' {
                    state.input_pending.push(CTRL_D);
                }
                state.input_pending.push(CTRL_D);
            }
        }
        Some(Input::Failed(e)) => {
            tracing::warn!(error = %e, "reading standard input failed");
            state.input_done = true;
        }
    }
}

fn on_signal(
    signal: LocalSignal,
    state: &mut State,
    local: &mut Local,
    session: &mut Session,
    config: &DriverConfig,
) {
    let now = now();
    tracing::debug!(?signal, "signal");
    match signal {
        LocalSignal::Terminate(n) => state.end = Some(SessionEnd::Signalled(n)),
        LocalSignal::Interrupt => {
            state.interrupts += 1;
            if state.interrupts > 1 || !state.input_enabled {
                state.end = Some(SessionEnd::Signalled(libc::SIGINT));
            } else {
                state.input_pending.push(CTRL_C);
            }
        }
        LocalSignal::Suspend => {
            if let Err(e) = term::suspend(&mut local.terminal) {
                tracing::warn!(error = %e, "could not suspend");
            }
            if config.send_size && state.input_enabled {
                send_size(session, state, now, false);
            }
        }
        LocalSignal::Continue => {
            if let Err(e) = local.terminal.retake() {
                tracing::warn!(error = %e, "could not restore raw mode");
            }
            if config.send_size && state.input_enabled {
                send_size(session, state, now, false);
            }
        }
        LocalSignal::Resize => {
            if config.send_size && state.input_enabled {
                send_size(session, state, now, false);
            }
        }
    }
}

fn push_input(session: &mut Session, state: &mut State, now: Instant) {
    if state.input_pending.is_empty() || !state.input_enabled {
        return;
    }
    let accepted = session.send_output(now, &state.input_pending);
    state.input_pending.drain(..accepted);
}

fn queue_out(state: &mut State, dest: Dest, data: Vec<u8>) {
    if data.is_empty() || (dest == Dest::Stdout && state.stdout_closed) {
        return;
    }
    state.out_bytes += data.len();
    state.out.push_back((dest, data));
}

/// Stops receiving (acknowledging, and reading the websocket) while local output is behind,
/// with hysteresis, so the agent's pace follows the terminal's and memory stays bounded; true
/// when receiving resumes.
fn apply_backpressure(session: &mut Session, state: &mut State, now: Instant) -> bool {
    if !state.receive_paused && state.out_bytes > OUTPUT_HIGH_WATER {
        tracing::debug!(
            behind = state.out_bytes,
            "local output behind: not reading new data"
        );
        session.set_receive_ready(now, false);
        state.receive_paused = true;
    } else if state.receive_paused && state.out_bytes < OUTPUT_LOW_WATER {
        session.set_receive_ready(now, true);
        state.receive_paused = false;
        return true;
    }
    false
}

/// Accounts for one [`write_some`]: a closed standard output ends the session quietly.
fn on_written(written: io::Result<usize>, state: &mut State) -> Result<(), DriverError> {
    match written {
        Ok(n) => state.out_bytes -= n,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            state.stdout_closed = true;
            state.out.clear();
            state.out_bytes = 0;
            state.end = Some(SessionEnd::OutputClosed);
        }
        Err(e) => return Err(DriverError::Output(e)),
    }
    Ok(())
}

/// Writes some of the head chunk. Cancel-safe: the only await is the write itself, which
/// consumes nothing unless it completes.
async fn write_some(
    outputs: &mut Outputs,
    out: &mut VecDeque<(Dest, Vec<u8>)>,
) -> io::Result<usize> {
    let Some((dest, data)) = out.front_mut() else {
        return Ok(0);
    };
    let writer = match dest {
        Dest::Stdout => &mut outputs.stdout,
        Dest::Stderr => &mut outputs.stderr,
    };
    // No flush here: the stdio writers hand each write to a blocking thread at once, and an
    // await after the write would make a cancelled future lose track of written bytes.
    let n = writer.write(data).await?;
    if n == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    data.drain(..n);
    if data.is_empty() {
        out.pop_front();
    }
    Ok(n)
}

async fn flush_outputs(outputs: &mut Outputs, state: &mut State) -> io::Result<()> {
    while let Some((dest, data)) = state.out.pop_front() {
        let writer = match dest {
            Dest::Stdout => &mut outputs.stdout,
            Dest::Stderr => &mut outputs.stderr,
        };
        match writer.write_all(&data).await {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => continue,
            other => other?,
        }
    }
    state.out_bytes = 0;
    for writer in [&mut outputs.stdout, &mut outputs.stderr] {
        match writer.flush().await {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
    }
    Ok(())
}

/// How long GenerateDataKey may take: the agent allows 15 s for the whole handshake answer.
const KMS_TIMEOUT: Duration = Duration::from_secs(12);
/// How long after the exit record the channel may take to close.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// Pending output above which the driver stops acknowledging new output.
const OUTPUT_HIGH_WATER: usize = 1024 * 1024;
/// Pending output below which acknowledging resumes.
const OUTPUT_LOW_WATER: usize = 256 * 1024;
const CTRL_C: u8 = 0x03;
const CTRL_D: u8 = 0x04;
