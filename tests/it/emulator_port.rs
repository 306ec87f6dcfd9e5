//! Port sessions against the emulator: basic and muxed forwarding with sha256-checked random
//! data both ways, basic-mode reconnect (DisconnectToPort, then a new destination connection),
//! SSH-style sessions, remote hosts, and the ConnectToPortError flag.

use std::collections::HashMap;

use crate::support::data::{random_bytes, sha256};
use crate::support::emulator::{CURRENT, Channel, OLD, STEP, Started, emulator, start_session};
use crate::support::net::{TcpServer, free_port};
use postern_protocol::mux::{Mux, MuxConfig, MuxEvent, StreamId};
use postern_protocol::{Event, Flag, SessionType};
use tokio::time::Instant;

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Sends `data` through a basic-mode session and returns what came back.
async fn echo_basic(channel: &mut Channel, data: &[u8]) -> Vec<u8> {
    channel.send_output(data).await;
    channel.output_until(|out| out.len() >= data.len()).await
}

#[tokio::test]
async fn basic_port_session_moves_random_data_both_ways() {
    let echo = TcpServer::echo();
    let emulator = emulator(|_| {}).await;
    let port = echo.port.to_string();
    let started = start_session(
        &emulator,
        OLD,
        Some("AWS-StartPortForwardingSession"),
        &[("portNumber", &port), ("localPortNumber", "0")],
    )
    .await;
    let mut channel = Channel::open(&started).await;
    let info = channel.ready().await;
    assert_eq!(info.session_type, SessionType::Port);
    assert_eq!(info.properties["type"], "LocalPortForwarding");
    assert_eq!(info.properties["portNumber"], port.as_str());
    assert_eq!(info.agent_version.as_deref(), Some("3.0.161.0"));
    let data = random_bytes(256 * 1024, 1);
    let started_at = Instant::now();
    let back = echo_basic(&mut channel, &data).await;
    let elapsed = started_at.elapsed();
    assert_eq!(sha256(&back), sha256(&data));
    eprintln!(
        "basic echo of {} KiB unpaced: {:.1} MB/s each way",
        data.len() / 1024,
        data.len() as f64 / elapsed.as_secs_f64() / 1e6
    );
    channel.until_acked().await;
    assert_eq!(
        emulator.violations().total(),
        0,
        "{}",
        emulator.violations()
    );
}

#[tokio::test]
async fn basic_mode_reconnects_after_disconnect_to_port() {
    let echo = TcpServer::echo();
    let emulator = emulator(|_| {}).await;
    let port = echo.port.to_string();
    let started = start_session(
        &emulator,
        OLD,
        Some("AWS-StartPortForwardingSession"),
        &[("portNumber", &port)],
    )
    .await;
    let mut channel = Channel::open(&started).await;
    channel.ready().await;
    assert_eq!(echo_basic(&mut channel, b"first").await, b"first");
    // The local connection closed: the client tells the agent, which drops its connection...
    channel.session.send_flag(now(), Flag::DisconnectToPort);
    channel.flush().await;
    channel.until_acked().await;
    // ...and dials again when the next local connection sends data.
    assert_eq!(echo_basic(&mut channel, b"second").await, b"second");
    assert_eq!(echo.connections(), 2);
    channel.session.send_flag(now(), Flag::TerminateSession);
    channel.flush().await;
    channel.until_closed().await;
    assert_eq!(
        emulator.violations().total(),
        0,
        "{}",
        emulator.violations()
    );
}

#[tokio::test]
async fn ssh_session_connects_to_the_configured_port_without_a_type() {
    let echo = TcpServer::echo();
    let ssh_port = echo.port;
    let emulator = emulator(|config| config.ssh_port = Some(ssh_port)).await;
    let started = start_session(&emulator, CURRENT, Some("AWS-StartSSHSession"), &[]).await;
    let mut channel = Channel::open(&started).await;
    let info = channel.ready().await;
    assert_eq!(info.properties, serde_json::json!({ "portNumber": "22" }));
    let data = random_bytes(10_000, 2);
    assert_eq!(
        sha256(&echo_basic(&mut channel, &data).await),
        sha256(&data)
    );
    channel.session.send_flag(now(), Flag::TerminateSession);
    channel.flush().await;
    channel.until_closed().await;
    assert_eq!(
        emulator.violations().total(),
        0,
        "{}",
        emulator.violations()
    );
}

#[tokio::test]
async fn remote_host_session_dials_the_given_host() {
    // On 127.0.0.2 only: dialling localhost instead would find nothing.
    let echo = TcpServer::echo_on(std::net::Ipv4Addr::new(127, 0, 0, 2));
    let emulator = emulator(|_| {}).await;
    let port = echo.port.to_string();
    let started = start_session(
        &emulator,
        OLD,
        Some("AWS-StartPortForwardingSessionToRemoteHost"),
        &[("host", "127.0.0.2"), ("portNumber", &port)],
    )
    .await;
    let mut channel = Channel::open(&started).await;
    let info = channel.ready().await;
    assert_eq!(info.properties["host"], "127.0.0.2");
    assert_eq!(echo_basic(&mut channel, b"remote").await, b"remote");
    assert_eq!(echo.connections(), 1);
}

/// A client-side smux session glued to a data channel, as the official plugin does.
struct MuxClient {
    channel: Channel,
    mux: Mux,
    received: HashMap<StreamId, Vec<u8>>,
    closed: Vec<StreamId>,
    flags: Vec<Flag>,
}

impl MuxClient {
    async fn open(started: &Started) -> Self {
        let mut channel = Channel::open(started).await;
        let info = channel.ready().await;
        let agent_version = info.agent_version.expect("port sessions report the agent");
        assert!(postern_protocol::version::client_uses_mux(&agent_version));
        Self {
            channel,
            mux: Mux::client(MuxConfig::for_client(&agent_version), now()),
            received: HashMap::new(),
            closed: Vec::new(),
            flags: Vec::new(),
        }
    }

    /// Moves smux output into the session and session output into smux, once.
    async fn pump(&mut self, deadline: Instant) {
        while let Some(bytes) = self.mux.poll_output() {
            self.channel.send_output(&bytes).await;
        }
        if !self.channel.has_events() {
            assert!(self.channel.step(deadline).await, "mux pump timed out");
        }
        for event in self.channel.take_events() {
            match event {
                Event::Output(bytes) => self.mux.handle_input(now(), &bytes),
                Event::Flag(flag) => self.flags.push(flag),
                _ => {}
            }
        }
        while let Some(event) = self.mux.poll_event() {
            match event {
                MuxEvent::Data(id, bytes) => self.received.entry(id).or_default().extend(bytes),
                MuxEvent::StreamClosed(id) => self.closed.push(id),
                MuxEvent::StreamOpened(_) => panic!("the agent never opens streams"),
                MuxEvent::Closed(reason) => panic!("smux closed: {reason}"),
            }
        }
    }
}

#[tokio::test]
async fn muxed_forwarding_carries_eight_concurrent_connections() {
    let echo = TcpServer::echo();
    let emulator = emulator(|_| {}).await;
    let port = echo.port.to_string();
    let started = start_session(
        &emulator,
        CURRENT,
        Some("AWS-StartPortForwardingSession"),
        &[("portNumber", &port), ("localPortNumber", "0")],
    )
    .await;
    let mut client = MuxClient::open(&started).await;
    let mut sent = HashMap::new();
    for seed in 0..8 {
        let id = client.mux.open_stream().unwrap();
        let data = random_bytes(64 * 1024, seed);
        let accepted = client.mux.write(id, &data).unwrap();
        assert_eq!(accepted, data.len());
        sent.insert(id, data);
    }
    let deadline = Instant::now() + STEP;
    while sent
        .iter()
        .any(|(id, data)| client.received.get(id).map_or(0, Vec::len) < data.len())
    {
        client.pump(deadline).await;
    }
    for (id, data) in &sent {
        assert_eq!(
            sha256(&client.received[id]),
            sha256(data),
            "stream {}",
            id.get()
        );
    }
    assert_eq!(echo.connections(), 8);
    for id in sent.keys() {
        client.mux.close(*id).unwrap();
    }
    client.pump(deadline).await;
    assert_eq!(
        emulator.violations().total(),
        0,
        "{}",
        emulator.violations()
    );
}

#[tokio::test]
async fn mux_dial_failure_sends_connect_to_port_error_then_fin() {
    // A port nothing listens on: bind one, then free it.
    let port = free_port();
    let emulator = emulator(|_| {}).await;
    let started = start_session(
        &emulator,
        CURRENT,
        Some("AWS-StartPortForwardingSession"),
        &[("portNumber", &port.to_string())],
    )
    .await;
    let mut client = MuxClient::open(&started).await;
    let id = client.mux.open_stream().unwrap();
    let deadline = Instant::now() + STEP;
    while !client.closed.contains(&id) {
        client.pump(deadline).await;
    }
    assert_eq!(client.flags, vec![Flag::ConnectToPortError]);
}
