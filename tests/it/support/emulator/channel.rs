//! A client-role data channel for the in-process emulator: the protocol crate's `Session`
//! driven over a real websocket (tokio-tungstenite). Every wait is bounded by [`STEP`];
//! nothing here sleeps to synchronise.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use postern_protocol::{
    ChannelClosed, ClientMessage, Event, MessageType, OpenDataChannelInput, Session, SessionConfig,
};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::in_process::{CLIENT_VERSION, STEP, Started};

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
    /// Sequence numbers of the stream data frames received, in the order they arrived on the
    /// websocket (before the session puts them in order), duplicates included.
    pub(crate) arrivals: Vec<i64>,
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
            arrivals: Vec::new(),
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
                        if let Ok(message) = ClientMessage::decode(&bytes)
                            && message.message_type == MessageType::OutputStreamData
                        {
                            self.arrivals.push(message.sequence_number.0);
                        }
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

    /// Stream data frames that arrived after one with a higher sequence number: each came in
    /// out of order on the websocket.
    pub(crate) fn arrived_out_of_order(&self) -> usize {
        let mut highest = i64::MIN;
        let mut late = 0;
        for &sequence in &self.arrivals {
            if sequence < highest {
                late += 1;
            }
            highest = highest.max(sequence);
        }
        late
    }

    /// Whether events are waiting.
    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }
}
