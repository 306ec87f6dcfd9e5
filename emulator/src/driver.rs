//! One session's task: owns the agent-role `Session`, the plugin and whichever websocket is
//! attached, and pumps between them with one `select!` (STYLE.md §2: drivers pump, never
//! decide). After every input it drains `poll_transmit` (through the fault [`Shaper`]) and then
//! `poll_event`, and sleeps until the earliest of the session's, the shaper's and the pacer's
//! deadlines. Input that is already there when it wakes (received frames, queued plugin
//! chunks) is handled in the same turn, one item at a time, with one websocket flush at the end.
//!
//! Lifecycle: the task starts at StartSession and creates the `Session` and plugin when the
//! first websocket attaches. A broken websocket detaches; ResumeSession's token attaches a new
//! one to the same `Session` (`handle_reconnect`). When the plugin finishes, the agent waits up
//! to 2 s for its output to be acked, then the gateway sends `channel_closed` (SPEC.md §8.3).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::{FutureExt, SinkExt, StreamExt};
use postern_protocol::{
    AgentConfig, CloseReason, DataKey, Event, Flag, KmsContext, KmsRequest, MessageType, Session,
    SessionConfig, SessionType, SizeData,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::documents::{PluginSpec, PortKind, SessionPlan};
use crate::faults::{CloseCounter, Shaper};
use crate::gateway;
use crate::instances::InstanceSpec;
use crate::pacing::{CHUNK_SIZE, Pacer};
use crate::plugins::{PluginHandle, PluginInput, PluginOutput, PluginStart, PortMode};
use crate::server::Shared;
use crate::sessions::{Attachment, SessionCommand};
use crate::violations::{Place, ViolationKind};

/// What a session task serves.
#[derive(Debug)]
pub(crate) struct SessionSpec {
    pub(crate) session_id: String,
    pub(crate) instance: InstanceSpec,
    pub(crate) plan: SessionPlan,
}

/// Runs one session from StartSession to its end.
pub(crate) async fn run(
    shared: Arc<Shared>,
    spec: SessionSpec,
    mut commands: mpsc::Receiver<SessionCommand>,
) {
    let session_id = spec.session_id.clone();
    let first = tokio::select! {
        command = commands.recv() => command,
        () = tokio::time::sleep(shared.config.attach_timeout) => None,
        _ = wait_shutdown(shared.shutdown.clone()) => None,
    };
    match first {
        Some(SessionCommand::Attach(attachment)) => {
            let mut driver = Driver::new(Arc::clone(&shared), spec, attachment);
            driver.run(&mut commands).await;
        }
        Some(SessionCommand::Terminate) | None => {
            tracing::info!(%session_id, "session ended before a data channel was opened");
        }
    }
    shared.registry.mark_ended(&session_id);
}

struct Driver {
    shared: Arc<Shared>,
    spec: SessionSpec,
    session: Session,
    socket: Option<WebSocket>,
    /// A stalled websocket ([`Faults::stall_after`]): kept open, never read or written.
    ///
    /// [`Faults::stall_after`]: crate::Faults::stall_after
    stalled: Option<WebSocket>,
    /// When the client last sent anything on the attached websocket (for the idle timeout).
    last_heard: Instant,
    /// When the attached websocket was attached (for the recycle).
    attached_at: Instant,
    detached_since: Option<Instant>,
    plugin: Option<PluginHandle>,
    plugin_input: Option<mpsc::Sender<PluginInput>>,
    plugin_done: bool,
    pending_input: VecDeque<PluginInput>,
    pacer: Pacer,
    shaper: Shaper,
    /// Frames were fed to the attached websocket since its last flush.
    unflushed: bool,
    closes: CloseCounter,
    size: SizeData,
    ending: Option<Ending>,
}

/// The session is over once `deadline` passes or everything sent is acked.
#[derive(Debug)]
struct Ending {
    deadline: Instant,
    reason: String,
}

/// Why the loop woke up.
enum Wake {
    Command(Option<SessionCommand>),
    Frame(Option<Result<Message, axum::Error>>),
    Plugin(Option<PluginOutput>),
    InputPermit(Option<mpsc::OwnedPermit<PluginInput>>),
    Timer,
    Shutdown,
}

impl Driver {
    fn new(shared: Arc<Shared>, spec: SessionSpec, attachment: Box<Attachment>) -> Self {
        let now = Instant::now();
        let agent = AgentConfig {
            // Pacing is the driver's: the agent paces its reads, not its transmissions.
            pacing: None,
            // The Session Manager preferences' key; the core ignores it for Port sessions.
            kms_key_id: shared.config.session_kms_key.clone(),
            missing_ack_after: shared.config.missing_ack_after,
            ..AgentConfig::new(
                &spec.instance.agent_version,
                spec.plan.session_type.clone(),
                spec.plan.properties.clone(),
            )
        };
        let epoch_millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let seed = shared.config.rng_seed.unwrap_or_else(rand::random);
        let mut config = SessionConfig::agent(agent, seed, epoch_millis);
        // The agent decrypts with its own instance id as aws:ssm:TargetId (SPEC.md §7.2).
        config.kms_context = Some(KmsContext {
            session_id: spec.session_id.clone(),
            target_id: spec.instance.id.clone(),
        });
        let session = Session::new(config, now.into_std());
        tracing::info!(
            session_id = %spec.session_id,
            target = %spec.instance.id,
            client_version = attachment.open.client_version.as_deref().unwrap_or(""),
            "data channel attached"
        );
        Self {
            pacer: Pacer::new(shared.config.pacing),
            shaper: Shaper::new(shared.config.faults.clone())
                .counting_tampers(Arc::clone(&shared.tampered)),
            shared,
            spec,
            session,
            socket: Some(attachment.socket),
            stalled: None,
            last_heard: now,
            attached_at: now,
            detached_since: None,
            plugin: None,
            plugin_input: None,
            plugin_done: false,
            pending_input: VecDeque::new(),
            unflushed: false,
            closes: CloseCounter::default(),
            size: DEFAULT_SIZE,
            ending: None,
        }
    }

    async fn run(&mut self, commands: &mut mpsc::Receiver<SessionCommand>) {
        let mut shutdown = self.shared.shutdown.clone();
        self.drain(Instant::now()).await;
        loop {
            if self.finished(Instant::now()) {
                break;
            }
            let deadline = self.deadline(Instant::now());
            let read_plugin = self.may_read_plugin(Instant::now());
            let wake = tokio::select! {
                command = commands.recv() => Wake::Command(command),
                frame = next_frame(self.socket.as_mut()) => Wake::Frame(frame),
                output = next_output(self.plugin.as_mut()), if read_plugin => Wake::Plugin(output),
                permit = reserve_input(self.plugin_input.clone()), if !self.pending_input.is_empty() => {
                    Wake::InputPermit(permit)
                }
                () = sleep_until(deadline) => Wake::Timer,
                _ = wait_shutdown(shutdown.clone()) => Wake::Shutdown,
            };
            let now = Instant::now();
            match wake {
                Wake::Command(Some(SessionCommand::Attach(attachment))) => {
                    self.attach(now, attachment).await;
                }
                Wake::Command(Some(SessionCommand::Terminate)) => {
                    self.end_now("").await;
                    break;
                }
                Wake::Command(None) => {}
                Wake::Frame(frame) => self.on_frame(now, frame).await,
                Wake::Plugin(output) => self.on_plugin(now, output),
                Wake::InputPermit(Some(permit)) => {
                    if let Some(item) = self.pending_input.pop_front() {
                        permit.send(item);
                    }
                }
                // The plugin is gone: its input has nowhere to go.
                Wake::InputPermit(None) => self.pending_input.clear(),
                Wake::Timer => {
                    self.session.handle_timeout(now.into_std());
                    if let Some(idle) = self.shared.config.idle_timeout
                        && self.socket.is_some()
                        && now >= self.last_heard + idle
                    {
                        tracing::info!(
                            session_id = %self.spec.session_id,
                            ?idle,
                            "idle timeout: closing the websocket"
                        );
                        self.detach(now).await;
                    }
                    if let Some(age) = self.shared.config.recycle_after
                        && self.socket.is_some()
                        && now >= self.attached_at + age
                    {
                        tracing::info!(
                            session_id = %self.spec.session_id,
                            ?age,
                            "recycle: closing the websocket"
                        );
                        self.detach(now).await;
                    }
                }
                Wake::Shutdown => {
                    self.end_now("the emulator is shutting down").await;
                    let _ = shutdown.borrow_and_update();
                    break;
                }
            }
            self.drain(now).await;
        }
        self.plugin = None;
    }

    /// Whether the session is over; sends `channel_closed` when it is.
    fn finished(&mut self, now: Instant) -> bool {
        if let Some(since) = self.detached_since
            && now >= since + self.shared.config.detach_timeout
        {
            tracing::info!(session_id = %self.spec.session_id, "no data channel came back; ending");
            return true;
        }
        let Some(ending) = &self.ending else {
            return false;
        };
        // Unacked output waits for its ack: up to the grace period while a websocket is
        // attached, and for the client's resume while none is (the detach timeout above ends
        // a session whose client never comes back).
        if self.session.has_unacked() && (now < ending.deadline || self.socket.is_none()) {
            return false;
        }
        let reason = ending.reason.clone();
        if let Some(socket) = self.socket.take() {
            let frame =
                gateway::channel_closed(&self.spec.session_id, &self.spec.instance.id, &reason);
            tokio::spawn(close_with(socket, Some(frame)));
        }
        tracing::info!(session_id = %self.spec.session_id, "session ended");
        true
    }

    /// Ends at once (TerminateSession, shutdown): `channel_closed` now, no waiting for acks.
    async fn end_now(&mut self, reason: &str) {
        self.plugin = None;
        if let Some(socket) = self.socket.take() {
            let frame =
                gateway::channel_closed(&self.spec.session_id, &self.spec.instance.id, reason);
            close_with(socket, Some(frame)).await;
        }
        tracing::info!(session_id = %self.spec.session_id, reason, "session terminated");
    }

    fn begin_ending(&mut self, now: Instant, reason: String) {
        if self.ending.is_none() {
            tracing::debug!(session_id = %self.spec.session_id, %reason, "session ending");
            self.ending = Some(Ending {
                deadline: now + CLOSE_GRACE,
                reason,
            });
        }
    }

    async fn attach(&mut self, now: Instant, attachment: Box<Attachment>) {
        if let Some(old) = self.socket.take() {
            tokio::spawn(close_with(old, None));
        }
        tracing::info!(session_id = %self.spec.session_id, "data channel re-attached");
        self.socket = Some(attachment.socket);
        self.unflushed = false;
        self.stalled = None;
        self.last_heard = now;
        self.attached_at = now;
        self.detached_since = None;
        self.closes.new_socket();
        self.shaper.reset();
        self.session.handle_reconnect(now.into_std());
        if let Some(ending) = self.ending.as_mut() {
            // The grace period for the last acks restarts with the new websocket.
            ending.deadline = ending.deadline.max(now + CLOSE_GRACE);
        }
    }

    async fn detach(&mut self, now: Instant) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        // Closing sends whatever was fed first.
        tokio::spawn(close_with(socket, None));
        self.unflushed = false;
        self.detached_since = Some(now);
        self.shaper.reset();
        self.session.handle_disconnect(now.into_std());
        tracing::info!(session_id = %self.spec.session_id, "data channel detached");
    }

    /// Stops serving the websocket without closing it ([`Faults::stall_after`]).
    ///
    /// [`Faults::stall_after`]: crate::Faults::stall_after
    fn stall(&mut self, now: Instant) {
        tracing::info!(session_id = %self.spec.session_id, "fault: stalling the websocket");
        self.stalled = self.socket.take();
        self.unflushed = false;
        self.detached_since = Some(now);
        self.shaper.reset();
        self.session.handle_disconnect(now.into_std());
    }

    async fn on_frame(&mut self, now: Instant, frame: Option<Result<Message, axum::Error>>) {
        if matches!(frame, Some(Ok(_))) {
            self.last_heard = now;
        }
        match frame {
            Some(Ok(Message::Binary(bytes))) => {
                if let Some(kind) = gateway::peek_message_type(&bytes)
                    .filter(|kind| !CLIENT_MESSAGE_TYPES.contains(kind))
                {
                    // Service-only messages from a client are not relayed to the agent (the
                    // gateway would not); feeding them would let a client pause or close it.
                    self.record(
                        postern_protocol::ViolationKind::UnexpectedMessage.as_str(),
                        &format!("{} sent by the client", kind.as_str()),
                    );
                } else {
                    // Rejected frames are reported through Event::Violation.
                    let _ = self.session.handle_message(now.into_std(), &bytes);
                }
                if self.closes.count(&self.shared.config.faults) {
                    // What was fed before this frame goes out first, as if flushed already.
                    self.flush_fed(now).await;
                    tracing::info!(session_id = %self.spec.session_id, "fault: closing the websocket");
                    self.detach(now).await;
                } else if self.closes.stall(&self.shared.config.faults) {
                    self.flush_fed(now).await;
                    self.stall(now);
                }
            }
            Some(Ok(Message::Text(_))) => {
                self.record(
                    ViolationKind::UnexpectedTextFrame.as_str(),
                    "text frame after the open frame",
                );
            }
            Some(Ok(Message::Ping(_))) => {
                // The library queued the Pong; send it now, the session may be idle.
                if let Some(socket) = self.socket.as_mut()
                    && socket.flush().await.is_err()
                {
                    self.detach(now).await;
                }
            }
            Some(Ok(Message::Pong(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => self.detach(now).await,
        }
    }

    fn on_plugin(&mut self, now: Instant, output: Option<PluginOutput>) {
        let std_now = now.into_std();
        match output {
            Some(PluginOutput::Stdout(bytes)) => {
                self.session.send_output(std_now, &bytes);
                self.paced_chunk(now);
            }
            Some(PluginOutput::Stderr(bytes)) => {
                self.session.send_stderr(std_now, &bytes);
                self.paced_chunk(now);
            }
            Some(PluginOutput::ExitCode(code)) => self.session.send_exit_code(std_now, code),
            Some(PluginOutput::Flag(flag)) => self.session.send_flag(std_now, flag),
            Some(PluginOutput::Done(result)) => {
                self.plugin_done = true;
                let reason = result.err().unwrap_or_default();
                self.begin_ending(now, reason);
            }
            None => {
                self.plugin_done = true;
                self.begin_ending(now, String::new());
            }
        }
    }

    /// Paces the next plugin read, except for separate output streams: the agent reads those
    /// pipes without sleeping (agent `agent/session/shell/shell.go`
    /// `setupRoutineToWriteCmdPipelineOutput`).
    fn paced_chunk(&mut self, now: Instant) {
        let unpaced = matches!(
            self.spec.plan.plugin,
            PluginSpec::NonInteractive {
                separate_streams: true,
                ..
            }
        );
        if !unpaced {
            self.pacer.chunk_sent(now);
        }
    }

    fn on_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Ready(info) => {
                let port_mode = self.port_mode(info.client_version.as_deref());
                tracing::info!(
                    session_id = %self.spec.session_id,
                    client_version = info.client_version.as_deref().unwrap_or(""),
                    ?port_mode,
                    "agent session ready"
                );
                let plugin = PluginHandle::start(PluginStart {
                    spec: self.spec.plan.plugin.clone(),
                    shell: self.shared.config.shell.clone(),
                    size: self.size,
                    port_mode,
                    env: instance_env(&self.spec.instance),
                });
                self.plugin_input = Some(plugin.input.clone());
                self.plugin = Some(plugin);
            }
            Event::Output(bytes) => self.pending_input.push_back(PluginInput::Data(bytes)),
            Event::Size(size) => {
                self.size = size;
                self.pending_input.push_back(PluginInput::Size(size));
            }
            Event::Flag(flag) => self.on_flag(now, flag),
            Event::Violation(violation) => {
                self.record(violation.kind.as_str(), &violation.detail);
            }
            Event::Closed(reason) => {
                let text = match reason {
                    CloseReason::HandshakeTimeout => "handshake timed out".to_owned(),
                    CloseReason::HandshakeFailed(why) => format!("handshake failed: {why}"),
                    CloseReason::GaveUp(after) => format!("no acknowledgement for {after:?}"),
                    CloseReason::DecryptionFailed(why) => format!("decryption failed: {why}"),
                    CloseReason::ChannelClosed => String::new(),
                };
                self.plugin = None;
                self.begin_ending(now, text);
            }
            Event::ChannelClosed(_) => {
                self.record(
                    ViolationKind::MalformedMessage.as_str(),
                    "channel_closed sent by the client",
                );
            }
            Event::KmsDataKeyRequired(KmsRequest::Decrypt {
                key_id,
                ciphertext_blob,
                encryption_context,
            }) => {
                let result = self
                    .shared
                    .kms
                    .decrypt(&ciphertext_blob, &encryption_context, Some(&key_id))
                    .map(|mut plaintext| {
                        if self.shared.config.faults.kms_wrong_key
                            && let Some(first) = plaintext.first_mut()
                        {
                            tracing::info!(session_id = %self.spec.session_id, "fault: wrong data key");
                            *first ^= 0xff;
                        }
                        DataKey {
                            plaintext,
                            ciphertext_blob,
                        }
                    })
                    .map_err(|e| e.to_string());
                if let Err(why) = &result {
                    tracing::info!(session_id = %self.spec.session_id, %why, "KMS Decrypt failed");
                }
                self.session.provide_data_key(now.into_std(), result);
            }
            Event::StdErr(_)
            | Event::ExitCode(_)
            | Event::KmsDataKeyRequired(KmsRequest::GenerateDataKey { .. }) => {
                self.record(
                    "unexpected_message",
                    "agent-only payload sent by the client",
                );
            }
            Event::Paused | Event::Resumed | Event::Writable => {}
        }
    }

    fn on_flag(&mut self, now: Instant, flag: Flag) {
        let is_port = self.spec.plan.session_type == SessionType::Port;
        match flag {
            // Shell and command sessions ignore every flag (SPEC.md §3.7).
            _ if !is_port => {}
            Flag::TerminateSession => {
                self.plugin = None;
                self.begin_ending(now, String::new());
            }
            Flag::DisconnectToPort => self.pending_input.push_back(PluginInput::Flag(flag)),
            Flag::ConnectToPortError => {}
        }
    }

    /// Basic or mux for a LocalPortForwarding session: the agent needs mux support (newer than
    /// 3.0.196.0, when it shipped) and a client of at least 1.1.70 (agent `port.go`).
    fn port_mode(&self, client_version: Option<&str>) -> PortMode {
        let PluginSpec::Port { kind, .. } = &self.spec.plan.plugin else {
            return PortMode::Basic;
        };
        let client_version = client_version.unwrap_or_default();
        let agent_has_mux =
            postern_protocol::version::client_uses_mux(&self.spec.instance.agent_version);
        if *kind == PortKind::LocalPortForwarding
            && agent_has_mux
            && postern_protocol::version::agent_uses_mux(client_version)
        {
            PortMode::Mux {
                client_version: client_version.to_owned(),
            }
        } else {
            PortMode::Basic
        }
    }

    /// Drains the session, then takes whatever further input is ready without waiting
    /// (client frames already received, plugin output already queued and readable) and drains
    /// again after each item, up to [`MAX_BATCH`] items; flushes the websocket once at the end.
    /// Every item is handled exactly as if it had woken the loop, its frames fed (and counted
    /// for the close and stall faults) before the next item: only the flushes are coalesced.
    /// With agent pacing the pacer closes the plugin after one chunk, so a paced session still
    /// sends one chunk per pause.
    ///
    /// The agent hands a stream message to its plugin (a shell's PTY, a port's connection)
    /// before it acknowledges it (agent `agent/session/datachannel/datachannel.go`,
    /// `handleStreamDataMessage`: `processStreamDataMessage`, then `SendAcknowledgeMessage`).
    /// So input goes to the plugin's queue in the turn that received it, before the flush that
    /// carries the acknowledgement, not on a later turn of the loop; the plugin task writes it
    /// as soon as it runs.
    async fn drain(&mut self, now: Instant) {
        self.process_and_feed(now).await;
        let mut now = now;
        for _ in 0..MAX_BATCH {
            let mut handled = false;
            if let Some(frame) = self.ready_frame() {
                now = Instant::now();
                self.on_frame(now, frame).await;
                self.process_and_feed(now).await;
                handled = true;
            }
            if self.may_read_plugin(now)
                && let Some(output) = self.ready_output()
            {
                now = Instant::now();
                self.on_plugin(now, output);
                self.process_and_feed(now).await;
                handled = true;
            }
            if !handled {
                break;
            }
        }
        self.flush_shaped(now).await;
    }

    /// [`Self::process`], then feeds the frames due to the websocket (unflushed).
    async fn process_and_feed(&mut self, now: Instant) {
        self.process(now);
        self.feed_shaped(now).await;
    }

    /// Moves the session's transmits into the shaper and handles its events.
    fn process(&mut self, now: Instant) {
        loop {
            let std_now = now.into_std();
            while let Some(transmit) = self.session.poll_transmit(std_now) {
                self.shaper.push(now, transmit.frame);
            }
            let mut any_event = false;
            while let Some(event) = self.session.poll_event() {
                any_event = true;
                self.on_event(now, event);
            }
            if !any_event {
                break;
            }
        }
        self.hand_input();
        self.session
            .set_receive_ready(now.into_std(), self.pending_input.len() < MAX_PENDING_INPUT);
    }

    /// Gives the plugin the pending input its queue has room for now; the rest waits for
    /// room in the loop's `select!`.
    fn hand_input(&mut self) {
        let Some(input) = self.plugin_input.as_ref() else {
            return;
        };
        while let Some(item) = self.pending_input.pop_front() {
            match input.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(item)) => {
                    self.pending_input.push_front(item);
                    return;
                }
                // The plugin is gone: its input has nowhere to go.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.pending_input.clear();
                    return;
                }
            }
        }
    }

    /// A frame (or the websocket's end) the attached websocket has already received, if any.
    fn ready_frame(&mut self) -> Option<Option<Result<Message, axum::Error>>> {
        self.socket.as_mut()?.next().now_or_never()
    }

    /// Output the plugin has already queued, if any; `Some(None)` once it is gone.
    fn ready_output(&mut self) -> Option<Option<PluginOutput>> {
        match self.plugin.as_mut()?.output.try_recv() {
            Ok(output) => Some(Some(output)),
            Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
            Err(mpsc::error::TryRecvError::Empty) => None,
        }
    }

    /// Feeds the shaper's due frames and flushes the websocket.
    async fn flush_shaped(&mut self, now: Instant) {
        self.feed_shaped(now).await;
        self.flush_fed(now).await;
    }

    /// Feeds the shaper's due frames to the websocket, counting each for the close and stall
    /// faults, without flushing them (except before a fault closes or stalls the websocket).
    async fn feed_shaped(&mut self, now: Instant) {
        while let Some(frame) = self.shaper.pop_due(now) {
            let Some(socket) = self.socket.as_mut() else {
                // Detached: the session retransmits stream data after the reconnect.
                continue;
            };
            if socket.feed(Message::Binary(frame.into())).await.is_err() {
                self.detach(now).await;
                return;
            }
            self.unflushed = true;
            if self.closes.count(&self.shared.config.faults) {
                self.flush_fed(now).await;
                tracing::info!(session_id = %self.spec.session_id, "fault: closing the websocket");
                self.detach(now).await;
                return;
            }
            if self.closes.stall(&self.shared.config.faults) {
                self.flush_fed(now).await;
                self.stall(now);
                return;
            }
        }
    }

    /// Flushes frames fed since the last flush; a failed flush detaches.
    async fn flush_fed(&mut self, now: Instant) {
        if !std::mem::take(&mut self.unflushed) {
            return;
        }
        if let Some(socket) = self.socket.as_mut()
            && socket.flush().await.is_err()
        {
            self.detach(now).await;
        }
    }

    fn may_read_plugin(&self, now: Instant) -> bool {
        self.plugin.is_some()
            && !self.plugin_done
            && self.ending.is_none()
            && self.pacer.wait_until(now).is_none()
            && self.session.send_capacity() >= CHUNK_SIZE
    }

    fn deadline(&self, now: Instant) -> Option<Instant> {
        [
            self.session.poll_timeout().map(Instant::from_std),
            self.shaper.next_deadline(),
            self.pacer.wait_until(now),
            self.ending.as_ref().map(|e| e.deadline),
            self.detached_since
                .map(|since| since + self.shared.config.detach_timeout),
            self.socket
                .as_ref()
                .and(self.shared.config.idle_timeout)
                .map(|idle| self.last_heard + idle),
            self.socket
                .as_ref()
                .and(self.shared.config.recycle_after)
                .map(|age| self.attached_at + age),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn record(&self, kind: &str, detail: &str) {
        let place = Place {
            session_id: &self.spec.session_id,
            target: &self.spec.instance.id,
        };
        self.shared.violations.record(place, kind, detail);
    }
}

async fn next_frame(socket: Option<&mut WebSocket>) -> Option<Result<Message, axum::Error>> {
    match socket {
        Some(socket) => socket.next().await,
        None => std::future::pending().await,
    }
}

async fn next_output(plugin: Option<&mut PluginHandle>) -> Option<PluginOutput> {
    match plugin {
        Some(plugin) => plugin.output.recv().await,
        None => std::future::pending().await,
    }
}

/// Room for one input item in the plugin's queue; `None` when the plugin is gone. Waits
/// forever before a plugin exists (input is kept until then).
async fn reserve_input(
    input: Option<mpsc::Sender<PluginInput>>,
) -> Option<mpsc::OwnedPermit<PluginInput>> {
    match input {
        Some(input) => input.reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn wait_shutdown(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn close_with(mut socket: WebSocket, last: Option<Vec<u8>>) {
    if let Some(frame) = last {
        let _ = socket.send(Message::Binary(frame.into())).await;
    }
    let close = CloseFrame {
        code: close_code::NORMAL,
        reason: "".into(),
    };
    let _ = socket.send(Message::Close(Some(close))).await;
    // Read until the client answers the close (bounded): dropping a socket whose receive buffer
    // still holds the client's last acks makes the kernel send a RST, which can destroy
    // channel_closed before the client has read it.
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// The agent waits this long for its output to be acked before closing (agent
/// `PrepareToCloseChannel`, SPEC.md §5.8).
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a closing data channel waits for the client's close reply.
const CLOSE_DRAIN: Duration = Duration::from_secs(1);
/// Inputs (client frames, plugin chunks) handled after a wake-up before the websocket is
/// flushed and the loop waits again.
const MAX_BATCH: usize = 64;
/// Client input items waiting for the plugin before the session stops acking new data.
const MAX_PENDING_INPUT: usize = 256;
/// Message types a client may send; the rest are the gateway's or the agent's.
const CLIENT_MESSAGE_TYPES: [MessageType; 2] =
    [MessageType::InputStreamData, MessageType::Acknowledge];
/// PTY size until the client sends one.
const DEFAULT_SIZE: SizeData = SizeData { cols: 80, rows: 24 };

/// What a process of a session on `instance` finds in its environment, since every emulated
/// instance runs on this machine: its id and Name tag (`POSTERN_EMULATOR_INSTANCE_ID`,
/// `POSTERN_EMULATOR_INSTANCE_NAME`), as a real instance's commands would find its hostname or
/// metadata. Commands run on many instances can tell them apart.
fn instance_env(instance: &InstanceSpec) -> Vec<(String, String)> {
    vec![
        (
            "POSTERN_EMULATOR_INSTANCE_ID".to_owned(),
            instance.id.clone(),
        ),
        (
            "POSTERN_EMULATOR_INSTANCE_NAME".to_owned(),
            instance.name.clone(),
        ),
    ]
}
