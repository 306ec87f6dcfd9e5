//! Test support for the emulator integration tests: start a bounded emulator in-process, call
//! its control plane with the real `aws-sdk-ssm` client, and drive data channels with the
//! protocol crate's client-role `Session` over a real websocket (tokio-tungstenite).
//!
//! Every wait is bounded by [`STEP`]; nothing here sleeps to synchronise.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support module"
)]

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sdk_ssm::config::{BehaviorVersion, Region};
use futures_util::{SinkExt, StreamExt};
use postern_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use postern_protocol::{ChannelClosed, Event, OpenDataChannelInput, Session, SessionConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest any single wait in a test may take.
pub(crate) const STEP: Duration = Duration::from_secs(20);
/// The client version a current official plugin reports.
pub(crate) const CLIENT_VERSION: &str = "1.2.707.0";
/// Built-in instance with a current agent (mux).
pub(crate) const CURRENT: &str = "i-0a1b2c3d4e5f60718";
/// Built-in instance with an agent too old for mux (basic port forwarding).
pub(crate) const OLD: &str = "i-0e2d4f6a8c0b1d3e5";

/// An emulator that stops by itself after a minute, unpaced unless the test says otherwise.
pub(crate) async fn emulator(tweak: impl FnOnce(&mut EmulatorConfig)) -> EmulatorHandle {
    let mut config = EmulatorConfig {
        lifetime: Some(Duration::from_secs(90)),
        pacing: None,
        ..EmulatorConfig::default()
    };
    tweak(&mut config);
    Emulator::start(config).await.expect("emulator starts")
}

/// The real SSM client pointed at the emulator.
pub(crate) fn ssm(emulator: &EmulatorHandle) -> aws_sdk_ssm::Client {
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(emulator.region().to_owned()))
        .endpoint_url(emulator.endpoint())
        .credentials_provider(Credentials::new(
            "AKIDEMULATORTEST",
            "emulator-secret",
            None,
            None,
            "tests",
        ))
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

/// StartSession's answer.
#[derive(Clone, Debug)]
pub(crate) struct Started {
    pub(crate) session_id: String,
    pub(crate) token: String,
    pub(crate) stream_url: String,
}

/// Calls StartSession.
pub(crate) async fn start_session(
    emulator: &EmulatorHandle,
    target: &str,
    document: Option<&str>,
    parameters: &[(&str, &str)],
) -> Started {
    let mut request = ssm(emulator).start_session().target(target);
    if let Some(document) = document {
        request = request.document_name(document);
    }
    for (key, value) in parameters {
        request = request.parameters(*key, vec![(*value).to_owned()]);
    }
    let output = tokio::time::timeout(STEP, request.send())
        .await
        .expect("StartSession answers in time")
        .expect("StartSession succeeds");
    Started {
        session_id: output.session_id().unwrap().to_owned(),
        token: output.token_value().unwrap().to_owned(),
        stream_url: output.stream_url().unwrap().to_owned(),
    }
}

/// Calls ResumeSession and returns the new token.
pub(crate) async fn resume_session(emulator: &EmulatorHandle, session_id: &str) -> String {
    let output = tokio::time::timeout(
        STEP,
        ssm(emulator).resume_session().session_id(session_id).send(),
    )
    .await
    .expect("ResumeSession answers in time")
    .expect("ResumeSession succeeds");
    output.token_value().expect("a fresh token").to_owned()
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A client-role data channel over a real websocket.
pub(crate) struct Channel {
    socket: Option<Socket>,
    pub(crate) session: Session,
    events: VecDeque<Event>,
    /// channel_closed, once received.
    pub(crate) closed: Option<ChannelClosed>,
    /// Deliberately wrong client: never send acks.
    pub(crate) drop_acks: bool,
    /// Whether the websocket broke (or was closed by the emulator).
    pub(crate) socket_closed: bool,
    client_id: String,
}

impl Channel {
    /// Opens the websocket and sends the OpenDataChannelInput.
    pub(crate) async fn open(started: &Started) -> Self {
        Self::open_as(started, CLIENT_VERSION).await
    }

    /// Opens reporting `client_version` (in the open frame and the handshake).
    pub(crate) async fn open_as(started: &Started, client_version: &str) -> Self {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let session = Session::new(
            SessionConfig::client(client_version, 7, epoch),
            Instant::now().into_std(),
        );
        let mut channel = Self {
            socket: None,
            session,
            events: VecDeque::new(),
            closed: None,
            drop_acks: false,
            socket_closed: false,
            client_id: uuid::Uuid::new_v4().to_string(),
        };
        channel
            .connect(&started.stream_url, &started.token, client_version)
            .await;
        channel
    }

    /// Opens a new websocket with `token` (after ResumeSession), keeping the session state.
    pub(crate) async fn reconnect(&mut self, started: &Started, token: &str) {
        self.connect(&started.stream_url, token, CLIENT_VERSION)
            .await;
        self.session.handle_reconnect(Instant::now().into_std());
        self.flush().await;
    }

    async fn connect(&mut self, url: &str, token: &str, client_version: &str) {
        let (mut socket, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
            .await
            .expect("websocket connects in time")
            .expect("websocket connects");
        let open = OpenDataChannelInput {
            message_schema_version: "1.0".to_owned(),
            request_id: uuid::Uuid::new_v4().to_string(),
            token_value: token.to_owned(),
            client_id: self.client_id.clone(),
            client_version: Some(client_version.to_owned()),
        };
        socket
            .send(Message::Text(serde_json::to_string(&open).unwrap().into()))
            .await
            .expect("open frame sent");
        self.socket = Some(socket);
        self.socket_closed = false;
    }

    /// Sends one raw frame, bypassing the session (for deliberately wrong clients).
    pub(crate) async fn send_raw(&mut self, frame: Vec<u8>) {
        let socket = self.socket.as_mut().expect("connected");
        socket.send(Message::Binary(frame.into())).await.unwrap();
    }

    /// Queues Output data and sends what the session lets go.
    pub(crate) async fn send_output(&mut self, data: &[u8]) {
        let mut rest = data;
        let deadline = Instant::now() + STEP;
        while !rest.is_empty() {
            let n = self.session.send_output(Instant::now().into_std(), rest);
            rest = &rest[n..];
            self.flush().await;
            if !rest.is_empty() {
                assert!(self.step(deadline).await, "send window never opened");
            }
        }
    }

    /// Sends everything the session has to send.
    pub(crate) async fn flush(&mut self) {
        let now = Instant::now().into_std();
        while let Some(transmit) = self.session.poll_transmit(now) {
            let is_ack = transmit.frame.get(4..15) == Some(b"acknowledge".as_slice());
            if self.drop_acks && is_ack {
                continue;
            }
            if let Some(socket) = self.socket.as_mut()
                && socket
                    .send(Message::Binary(transmit.frame.into()))
                    .await
                    .is_err()
            {
                self.socket_closed = true;
            }
        }
        while let Some(event) = self.session.poll_event() {
            if let Event::ChannelClosed(closed) = &event {
                self.closed = Some(closed.clone());
            }
            self.events.push_back(event);
        }
    }

    /// One round: a frame or a timer, then flush. False when `deadline` passed first.
    pub(crate) async fn step(&mut self, deadline: Instant) -> bool {
        let timer = self
            .session
            .poll_timeout()
            .map(Instant::from_std)
            .map_or(deadline, |t| t.min(deadline));
        let socket_open = self.socket.is_some() && !self.socket_closed;
        tokio::select! {
            frame = async { self.socket.as_mut().unwrap().next().await }, if socket_open => {
                match frame {
                    Some(Ok(Message::Binary(bytes))) => {
                        let _ = self.session.handle_message(Instant::now().into_std(), &bytes);
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => self.socket_closed = true,
                    Some(Ok(_)) => {}
                }
            }
            () = tokio::time::sleep_until(timer) => {
                self.session.handle_timeout(Instant::now().into_std());
            }
        }
        self.flush().await;
        Instant::now() < deadline
    }

    /// The next event, waiting at most [`STEP`].
    pub(crate) async fn next_event(&mut self) -> Option<Event> {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            if self.socket_closed || !self.step(deadline).await {
                return self.events.pop_front();
            }
        }
    }

    /// Waits for Ready.
    pub(crate) async fn ready(&mut self) -> postern_protocol::ReadyInfo {
        loop {
            match self.next_event().await {
                Some(Event::Ready(info)) => return info,
                Some(_) => {}
                None => panic!("session never became ready"),
            }
        }
    }

    /// Collects Output bytes until `done` says so; panics after [`STEP`].
    pub(crate) async fn output_until(&mut self, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let mut out = Vec::new();
        let deadline = Instant::now() + STEP;
        while !done(&out) {
            if let Some(event) = self.events.pop_front() {
                if let Event::Output(bytes) = event {
                    out.extend_from_slice(&bytes);
                }
                continue;
            }
            assert!(
                !self.socket_closed && self.step(deadline).await,
                "output never matched; got {:?}",
                String::from_utf8_lossy(&out)
            );
        }
        out
    }

    /// Runs until channel_closed arrives; returns every event seen.
    pub(crate) async fn until_closed(&mut self) -> Vec<Event> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + STEP;
        while self.closed.is_none() {
            if let Some(event) = self.events.pop_front() {
                seen.push(event);
                continue;
            }
            assert!(
                !self.socket_closed && self.step(deadline).await,
                "no channel_closed; events {seen:?}"
            );
        }
        seen.extend(self.events.drain(..));
        seen
    }

    /// Waits until every message sent was acked.
    pub(crate) async fn until_acked(&mut self) {
        let deadline = Instant::now() + STEP;
        while self.session.has_unacked() {
            assert!(self.step(deadline).await, "messages never acked");
        }
    }

    /// Takes the events collected so far.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    /// Whether events are waiting.
    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }
}

/// A loopback echo server; each connection echoes until EOF. Stops when dropped.
pub(crate) struct EchoServer {
    pub(crate) port: u16,
    task: JoinHandle<()>,
    pub(crate) connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl EchoServer {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Self {
            port,
            task,
            connections,
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `len` random bytes.
pub(crate) fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut data);
    data
}

/// Hex SHA-256.
pub(crate) fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Whether `haystack` contains `needle`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
