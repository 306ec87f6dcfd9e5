//! `postern forward -D` against `postern emulator`, through a minimal SOCKS5 client written
//! here: CONNECT to two destinations (sha256-checked echoes), one session per destination
//! (counted in the emulator's own log) reused by later connections, a domain name and an IPv6
//! address, BIND and UDP ASSOCIATE refused with 0x07, a malformed greeting that closes only its
//! connection, a refused destination (0x04) and a forbidden one (0x02) with the reason on
//! stderr, RFC 1929 credentials, and idle sessions closed and reopened. Every run ends with zero
//! emulator violations.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::data::random_bytes;
use crate::support::emulator::EmulatorProcess;
use crate::support::forward::Forward;
use crate::support::net::{TcpServer, assert_closed, echo_through, free_port};
use crate::support::poll::poll;
use crate::support::process::{run, text};

const LIMIT: Duration = Duration::from_secs(60);
const REMOTE_HOST_DOCUMENT: &str = "document=AWS-StartPortForwardingSessionToRemoteHost";

#[test]
fn socks_connects_to_two_destinations_with_one_shared_session_each() {
    let (emu, log, _dir) = emulator_with_log();
    let first = TcpServer::echo();
    let second = TcpServer::echo();
    // One session per destination at most: under `--sessions auto` a destination whose
    // session is busy (as right after a 1 MiB echo) may get a second one, which
    // cli_forward's auto test covers.
    let fw = Forward::start(
        &emu,
        &[&emu.instance, "-D", "0", "--json", "--sessions", "1"],
        1,
    );
    assert_eq!(fw.ready[0]["socks"], "socks5", "{:?}", fw.lines);
    assert_eq!(fw.ready[0]["auth"], "none");
    assert_eq!(fw.ready[0]["target"], emu.instance.as_str());
    let proxy = fw.local();
    assert!(proxy.starts_with("127.0.0.1:"), "{proxy}");

    let to_first = Dest::V4(Ipv4Addr::LOCALHOST);
    let mut a = connect(&proxy, &to_first, first.port);
    echo_through(&mut a, &random_bytes(1024 * 1024, 1));
    let mut b = connect(&proxy, &Dest::V4(Ipv4Addr::LOCALHOST), second.port);
    echo_through(&mut b, &random_bytes(512 * 1024, 2));
    // A second connection to the first destination, while the first is still open, and a
    // third after both closed: the same session carries them.
    let mut c = connect(&proxy, &to_first, first.port);
    echo_through(&mut c, &random_bytes(256 * 1024, 3));
    drop((a, c));
    let mut d = connect(&proxy, &to_first, first.port);
    echo_through(&mut d, &random_bytes(64 * 1024, 4));
    drop((b, d));

    assert_eq!(first.connections(), 3);
    assert_eq!(second.connections(), 1);
    assert_eq!(remote_sessions(&log, first.port), 1, "{}", read(&log));
    assert_eq!(remote_sessions(&log, second.port), 1, "{}", read(&log));
    assert_eq!(count(&log, REMOTE_HOST_DOCUMENT), 2, "{}", read(&log));
    fw.stop_ok();
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn socks_reaches_a_domain_name_and_an_ipv6_address() {
    let (emu, log, _dir) = emulator_with_log();
    let v4 = TcpServer::echo();
    let v6 = TcpServer::echo_on(Ipv6Addr::LOCALHOST);
    let fw = Forward::start(&emu, &[&emu.instance, "-D", "127.0.0.1:0"], 1);
    let proxy = socks_address(&fw.lines[0]);
    let mut by_name = connect(&proxy, &Dest::Name("localhost"), v4.port);
    echo_through(&mut by_name, &random_bytes(256 * 1024, 5));
    let mut by_v6 = connect(&proxy, &Dest::V6(Ipv6Addr::LOCALHOST), v6.port);
    echo_through(&mut by_v6, &random_bytes(256 * 1024, 6));
    let sessions = read(&log);
    assert_eq!(remote_sessions(&log, v4.port), 1, "{sessions}");
    assert_eq!(remote_sessions(&log, v6.port), 1, "{sessions}");
    // The emulator resolved the name itself (the agent's LookupHost), and got the literal as is.
    assert!(
        sessions
            .lines()
            .any(|l| l.contains(&format!("host=localhost port={}", v4.port))),
        "{sessions}"
    );
    assert!(
        sessions
            .lines()
            .any(|l| l.contains(&format!("host=::1 port={}", v6.port))),
        "{sessions}"
    );
    drop((by_name, by_v6));
    fw.stop_ok();
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn socks_refuses_bind_udp_and_garbage_without_touching_other_connections() {
    let (emu, log, _dir) = emulator_with_log();
    let echo = TcpServer::echo();
    let fw = Forward::start(&emu, &[&emu.instance, "-D", "0", "--json"], 1);
    let proxy = fw.local();
    // One connection stays open across the refusals.
    let mut kept = connect(&proxy, &Dest::V4(Ipv4Addr::LOCALHOST), echo.port);
    for (command, name) in [(0x02, "BIND"), (0x03, "UDP ASSOCIATE")] {
        let mut s = TcpStream::connect(&proxy).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        assert_eq!(greet(&mut s, &[0x00]), 0x00);
        let reply = request(&mut s, command, &Dest::V4(Ipv4Addr::LOCALHOST), echo.port);
        assert_eq!(reply, 0x07, "{name}");
        assert_closed(&mut s);
    }
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[4, 1, 0, 80, 127, 0, 0, 1, 0],
    ] {
        let mut s = TcpStream::connect(&proxy).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s.write_all(garbage).unwrap();
        assert_closed(&mut s);
    }
    // An address type that does not exist is answered 0x08.
    let mut s = TcpStream::connect(&proxy).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(greet(&mut s, &[0x00]), 0x00);
    s.write_all(&[5, 1, 0, 9, 1, 2, 3, 4, 0, 80]).unwrap();
    assert_eq!(read_reply(&mut s), 0x08);
    echo_through(&mut kept, &random_bytes(128 * 1024, 7));
    drop(kept);
    // None of them started a session.
    assert_eq!(count(&log, REMOTE_HOST_DOCUMENT), 1, "{}", read(&log));
    fw.stop_ok();
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn socks_answers_refused_and_forbidden_destinations_with_the_reason_on_stderr() {
    let emu = EmulatorProcess::start(&[]);
    let mut fw = Forward::start(&emu, &[&emu.instance, "-D", "0", "--json"], 1);
    let proxy = fw.local();
    let closed = free_port();
    let (mut s, reply) = try_connect(&proxy, &Dest::V4(Ipv4Addr::LOCALHOST), closed);
    assert_eq!(reply, 0x04, "host unreachable");
    assert_closed(&mut s);
    let line = fw.stderr_line_containing(&format!("CONNECT 127.0.0.1:{closed}"));
    assert!(
        line.starts_with(&format!(
            "postern: SOCKS5 {proxy}: CONNECT 127.0.0.1:{closed} via {} refused (host \
             unreachable): the instance could not connect to it (ConnectToPortError, session ",
            emu.instance
        )),
        "{line}"
    );
    // The agent refuses the instance metadata service in its own words.
    let (mut s, reply) = try_connect(&proxy, &Dest::V4(Ipv4Addr::new(169, 254, 169, 254)), 80);
    assert_eq!(reply, 0x02, "not allowed by ruleset");
    assert_closed(&mut s);
    let line = fw.stderr_line_containing("CONNECT 169.254.169.254:80");
    assert!(
        line.ends_with(
            "refused (not allowed by ruleset): the session ended: Forwarding to IP address \
             169.254.169.254 is forbidden."
        ),
        "{line}"
    );
    let stderr = fw.stop_ok();
    // The reply's line says it all: no second line about the same session.
    assert!(
        !stderr.contains("new connections start another"),
        "{stderr}"
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn socks_credentials_come_from_the_environment_and_are_required_off_loopback() {
    let emu = EmulatorProcess::start(&[]);
    let out = run(
        emu.command(&["forward", &emu.instance, "-D", "0.0.0.0:0"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with(
            "error: -D 0.0.0.0:0 listens beyond this machine and needs a username and password"
        ),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("POSTERN_SOCKS_USER"));

    let echo = TcpServer::echo();
    let mut child = emu.command(&["forward", &emu.instance, "-D", "0", "--json"]);
    child
        .env("POSTERN_SOCKS_USER", "alice")
        .env("POSTERN_SOCKS_PASSWORD", "correct horse");
    let fw = Forward::spawn(child, 1);
    assert_eq!(fw.ready[0]["auth"], "username/password");
    let proxy = fw.local();
    // No acceptable method without username/password.
    let mut s = TcpStream::connect(&proxy).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(greet(&mut s, &[0x00]), 0xff);
    // A wrong password is refused.
    let mut s = TcpStream::connect(&proxy).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(greet(&mut s, &[0x00, 0x02]), 0x02);
    assert_eq!(authenticate(&mut s, "alice", "battery staple"), 0x01);
    assert_closed(&mut s);
    // The right one goes through.
    let mut s = TcpStream::connect(&proxy).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(greet(&mut s, &[0x00, 0x02]), 0x02);
    assert_eq!(authenticate(&mut s, "alice", "correct horse"), 0x00);
    assert_eq!(
        request(&mut s, 0x01, &Dest::V4(Ipv4Addr::LOCALHOST), echo.port),
        0x00
    );
    echo_through(&mut s, &random_bytes(64 * 1024, 8));
    drop(s);
    fw.stop_ok();
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn socks_idle_destination_sessions_close_and_reopen_on_demand() {
    let (emu, log, _dir) = emulator_with_log();
    let echo = TcpServer::echo();
    let fw = Forward::start(
        &emu,
        &[&emu.instance, "-D", "0", "--json", "--idle-close", "1s"],
        1,
    );
    let proxy = fw.local();
    let mut s = connect(&proxy, &Dest::V4(Ipv4Addr::LOCALHOST), echo.port);
    echo_through(&mut s, &random_bytes(32 * 1024, 9));
    drop(s);
    // The emulator sees the session end (the client terminated it), with no connection open.
    poll(LIMIT, || {
        (count(&log, "session ended") + count(&log, "session terminated") >= 1).then_some(())
    });
    let mut s = connect(&proxy, &Dest::V4(Ipv4Addr::LOCALHOST), echo.port);
    echo_through(&mut s, &random_bytes(32 * 1024, 10));
    drop(s);
    assert_eq!(remote_sessions(&log, echo.port), 2, "{}", read(&log));
    fw.stop_ok();
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

/// An emulator logging at info level to a file (its sessions and their destinations).
fn emulator_with_log() -> (EmulatorProcess, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("emulator.log");
    let path = log.to_str().expect("UTF-8 temp path").to_owned();
    let emu = EmulatorProcess::start(&["--no-pacing", "--log-file", &path, "-v"]);
    (emu, log, dir)
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

fn count(log: &Path, needle: &str) -> usize {
    read(log).lines().filter(|l| l.contains(needle)).count()
}

/// Port sessions the emulator's agent started towards a remote host on `port`.
fn remote_sessions(log: &Path, port: u16) -> usize {
    read(log)
        .lines()
        .filter(|l| {
            l.contains("port session to a remote host") && l.contains(&format!(" port={port} "))
        })
        .count()
}

/// `SOCKS5 proxy on ADDR via …`: the address.
fn socks_address(line: &str) -> String {
    line.strip_prefix("SOCKS5 proxy on ")
        .and_then(|rest| rest.split_once(' '))
        .map(|(addr, _)| addr.to_owned())
        .unwrap_or_else(|| panic!("not a SOCKS ready line: {line}"))
}

/// A SOCKS destination address.
enum Dest<'a> {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    Name(&'a str),
}

/// Greets, CONNECTs and expects success.
fn connect(proxy: &str, dest: &Dest<'_>, port: u16) -> TcpStream {
    let (stream, reply) = try_connect(proxy, dest, port);
    assert_eq!(reply, 0x00, "CONNECT refused");
    stream
}

/// Greets (no authentication) and CONNECTs; the stream and the reply code.
fn try_connect(proxy: &str, dest: &Dest<'_>, port: u16) -> (TcpStream, u8) {
    let mut stream = TcpStream::connect(proxy).expect("connect to the SOCKS proxy");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(greet(&mut stream, &[0x00]), 0x00, "no-auth method");
    let reply = request(&mut stream, 0x01, dest, port);
    (stream, reply)
}

/// Offers `methods`; the method the server chose.
fn greet(stream: &mut TcpStream, methods: &[u8]) -> u8 {
    let mut greeting = vec![5, u8::try_from(methods.len()).unwrap()];
    greeting.extend_from_slice(methods);
    stream.write_all(&greeting).unwrap();
    let mut answer = [0u8; 2];
    stream.read_exact(&mut answer).expect("method selection");
    assert_eq!(answer[0], 5);
    answer[1]
}

/// RFC 1929; the status byte.
fn authenticate(stream: &mut TcpStream, user: &str, password: &str) -> u8 {
    let mut message = vec![1, u8::try_from(user.len()).unwrap()];
    message.extend_from_slice(user.as_bytes());
    message.push(u8::try_from(password.len()).unwrap());
    message.extend_from_slice(password.as_bytes());
    stream.write_all(&message).unwrap();
    let mut answer = [0u8; 2];
    stream
        .read_exact(&mut answer)
        .expect("authentication status");
    assert_eq!(answer[0], 1);
    answer[1]
}

/// Sends a request with `command`; the reply code.
fn request(stream: &mut TcpStream, command: u8, dest: &Dest<'_>, port: u16) -> u8 {
    let mut message = vec![5, command, 0];
    match dest {
        Dest::V4(ip) => {
            message.push(1);
            message.extend_from_slice(&ip.octets());
        }
        Dest::V6(ip) => {
            message.push(4);
            message.extend_from_slice(&ip.octets());
        }
        Dest::Name(name) => {
            message.push(3);
            message.push(u8::try_from(name.len()).unwrap());
            message.extend_from_slice(name.as_bytes());
        }
    }
    message.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&message).unwrap();
    read_reply(stream)
}

/// Reads a whole reply; its REP.
fn read_reply(stream: &mut TcpStream) -> u8 {
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).expect("reply");
    assert_eq!((head[0], head[2]), (5, 0), "{head:?}");
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        other => panic!("reply address type {other}"),
    };
    let mut bound = vec![0u8; rest];
    stream.read_exact(&mut bound).expect("reply address");
    head[1]
}
