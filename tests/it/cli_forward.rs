//! `postern forward` against `postern emulator`: many concurrent connections with random data
//! both ways (sha256 verified), remote-host forwarding, two `-L`, LOCAL 0, a bind address,
//! basic-mode fallback for an old agent, and the clear errors (port in use, ConnectToPortError,
//! agent too old). Every run ends with zero emulator violations.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::data::{random_bytes, sha256};
use crate::support::emulator::EmulatorProcess;
use crate::support::forward::Forward;
use crate::support::net::{TcpServer, assert_closed, echo_round_trip, free_port};
use crate::support::poll::poll;
use crate::support::process::{exit_within, lines, process_state, run, signal, text};

const LIMIT: Duration = Duration::from_secs(60);
/// Built-in instance whose agent is too old for mux (3.0.161.0).
const OLD_AGENT: &str = "i-0e2d4f6a8c0b1d3e5";

#[test]
fn sixteen_connections_move_4_mib_each_way_sha256_verified() {
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    let server = TcpServer::echo();
    let echo = server.port;
    let spec = format!("0:{echo}");
    let fw = Forward::start(
        &emu,
        &[&emu.instance, "-L", &spec, "--sessions", "4", "--json"],
        1,
    );
    let local = fw.local();
    assert_eq!(fw.ready[0]["mode"], "mux");
    let workers: Vec<_> = (0..16)
        .map(|i| {
            let local = local.clone();
            thread::spawn(move || echo_round_trip(&local, &random_bytes(4 * 1024 * 1024, i)))
        })
        .collect();
    for worker in workers {
        worker.join().expect("connection thread");
    }
    fw.stop_ok();
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn two_forwards_remote_host_local_zero_and_bind_address() {
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    let server = TcpServer::echo();
    let echo = server.port;
    // The remote host's server listens on 127.0.0.2 only: a forward that lost the host (and
    // dialled localhost) would find nothing there.
    let remote = TcpServer::echo_on(std::net::Ipv4Addr::new(127, 0, 0, 2));
    let to_instance = format!("0:{echo}");
    let to_host = format!("127.0.0.2:0:127.0.0.2:{}", remote.port);
    let fw = Forward::start(
        &emu,
        &[&emu.instance, "-L", &to_instance, "-L", &to_host],
        2,
    );
    let lines = fw.lines.clone();
    let first = parse_line(&lines[0]);
    let second = parse_line(&lines[1]);
    assert_eq!(first.0.ip().to_string(), "127.0.0.1", "{lines:?}");
    assert_ne!(first.0.port(), 0);
    assert_eq!(first.1, format!("localhost:{echo}"));
    assert_eq!(second.0.ip().to_string(), "127.0.0.2", "{lines:?}");
    assert_eq!(second.1, format!("127.0.0.2:{}", remote.port));
    for line in &lines {
        assert!(
            line.ends_with(&format!("via {} (us-east-1)", emu.instance)),
            "{line}"
        );
    }
    for local in [first.0, second.0] {
        echo_round_trip(&local.to_string(), &random_bytes(256 * 1024, 99));
    }
    assert_eq!(
        remote.connections(),
        1,
        "the remote host's server was dialled"
    );
    fw.stop_ok();
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn an_old_agent_falls_back_to_basic_mode_with_a_warning() {
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    let server = TcpServer::echo();
    let echo = server.port;
    let spec = format!("0:{echo}");
    let fw = Forward::start(&emu, &[OLD_AGENT, "-L", &spec, "--json"], 1);
    assert_eq!(fw.ready[0]["mode"], "basic");
    assert_eq!(fw.ready[0]["agent_version"], "3.0.161.0");
    let local = fw.local();
    // One connection after the other through the same session, and two at once (the second
    // gets its own session).
    for round in 0..2 {
        echo_round_trip(&local, &random_bytes(128 * 1024, round));
    }
    let both: Vec<_> = (0..2)
        .map(|i| {
            let local = local.clone();
            thread::spawn(move || echo_round_trip(&local, &random_bytes(64 * 1024, 10 + i)))
        })
        .collect();
    for t in both {
        t.join().unwrap();
    }
    let stderr = fw.stop_ok();
    assert!(
        stderr.contains("too old for multiplexed forwarding") && stderr.contains("basic mode"),
        "{stderr}"
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn a_window_resize_while_the_sessions_start_does_not_end_the_forward() {
    let echo = TcpServer::echo();
    // Every message of the emulator held 1 s: the handshake takes that long at least.
    let emu = EmulatorProcess::start(&["--no-pacing", "--delay", "1s"]);
    let spec = format!("0:{}", echo.port);
    let mut child = emu
        .command(&["-vv", "forward", &emu.instance, "-L", &spec, "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn postern forward");
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    // The data channel is opening: the signal handlers are in place, the handshake is not done.
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = stderr
            .recv_timeout(left)
            .expect("postern logs the data channel opening");
        if line.contains("opening data channel") {
            break;
        }
    }
    for _ in 0..3 {
        signal(child.id(), Signal::SIGWINCH);
    }
    let ready = stdout
        .recv_timeout(LIMIT)
        .expect("the forward becomes ready after the resizes");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let local = ready["local"].as_str().expect("local address").to_owned();
    let data = random_bytes(64 * 1024, 5);
    echo_round_trip(&local, &data);
    signal(child.id(), Signal::SIGINT);
    let status = exit_within(&mut child, LIMIT).expect("postern exits after Ctrl-C");
    assert_eq!(status.code(), Some(0));
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn a_websocket_closed_while_the_session_ends_is_not_resumed() {
    // The emulator closes the websocket at the session's seventh message: the five of the
    // handshake, our acknowledgement of the last, then the TerminateSession flag of the
    // Ctrl-C. Resuming a session being ended would only announce a reconnection and then find
    // the session gone.
    let emu = EmulatorProcess::start(&["--no-pacing", "--close-after", "7"]);
    let fw = Forward::start(
        &emu,
        &[&emu.instance, "-L", "0:22", "--keepalive", "0s", "-v"],
        1,
    );
    let stderr = fw.stop_ok();
    // The websocket did close during the wind-down (else this test would prove nothing)...
    assert!(stderr.contains("data channel broke"), "stderr {stderr}");
    // ...and nothing tried to resume it.
    assert!(!stderr.contains("reconnecting"), "stderr {stderr}");
    assert!(!stderr.contains("connection lost"), "stderr {stderr}");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let emu = EmulatorProcess::start(&[]);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let spec = format!("{port}:22");
    let out = run(emu.command(&["forward", &emu.instance, "-L", &spec]), LIMIT);
    assert_eq!(out.status.code(), Some(249), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: could not listen on 127.0.0.1:{port}\nCaused by:\n  Address already in use \
             (os error 98)\nhint: another program listens on 127.0.0.1:{port}; pick another \
             LOCAL port, or 0 for a free one\n"
        )
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_refused_destination_closes_the_connection_and_says_why() {
    let emu = EmulatorProcess::start(&[]);
    let closed = free_port();
    let spec = format!("0:{closed}");
    let mut fw = Forward::start(&emu, &[&emu.instance, "-L", &spec, "--json"], 1);
    let local = fw.local();
    let mut conn = TcpStream::connect(&local).unwrap();
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    let _ = conn.write_all(b"anyone there?");
    // Closed without data: a connection left open would time out here and fail.
    assert_closed(&mut conn);
    let notice = fw.stderr_line_containing("ConnectToPortError");
    assert!(
        notice.starts_with(&format!(
            "postern: {} could not connect to localhost:{closed} (ConnectToPortError, session ",
            emu.instance
        )),
        "{notice}"
    );
    fw.stop_ok();
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn an_agent_too_old_for_remote_hosts_is_a_clear_error() {
    let emu = EmulatorProcess::start(&[]);
    let out = run(
        emu.command(&["forward", OLD_AGENT, "-L", "0:db.internal:5432"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(245), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: the SSM agent (version 3.0.161.0) is too old to forward to a remote host; it \
             needs 3.1.1374.0 or later ({OLD_AGENT} in us-east-1, endpoint {})\n",
            emu.endpoint
        )),
        "{stderr}"
    );
    assert!(stderr.contains("hint: update the SSM agent"), "{stderr}");
}

#[test]
fn a_socks_proxy_on_an_agent_too_old_for_it_is_refused_at_start() {
    let emu = EmulatorProcess::start(&[]);
    // Alone (the version from DescribeInstanceInformation), and beside a `-L` forward (from
    // its session, which is then ended).
    for args in [
        &["forward", OLD_AGENT, "-D", "0"][..],
        &["forward", OLD_AGENT, "-L", "0:22", "-D", "0"],
    ] {
        let out = run(emu.command(args), LIMIT);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(245), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(
                "error: the SSM agent (version 3.0.161.0) is too old to act as a SOCKS proxy"
            ),
            "{stderr}"
        );
        assert!(!stderr.contains("left open"), "{stderr}");
    }
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

/// `forwarding LOCAL -> REMOTE via …`: the local address and the remote.
fn parse_line(line: &str) -> (std::net::SocketAddr, String) {
    let rest = line.strip_prefix("forwarding ").expect("ready line");
    let (local, rest) = rest.split_once(" -> ").expect("arrow");
    let (remote, _) = rest.split_once(" via ").expect("via");
    (local.parse().expect("local address"), remote.to_owned())
}

#[test]
fn auto_sessions_scale_under_eight_parallel_downloads_and_one_connection_keeps_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("emulator.log");
    let path = log.to_str().expect("UTF-8 temp path").to_owned();
    // The agent's pacing on: each session delivers about 1 MB/s, as with AWS.
    let emu = EmulatorProcess::start(&["--log-file", &path, "-v"]);
    let data = random_bytes(512 * 1024, 42);
    let server = TcpServer::source(data.clone());
    let spec = format!("0:{}", server.port);
    let fw = Forward::start(&emu, &[&emu.instance, "-L", &spec, "--json"], 1);
    let local = fw.local();
    let sessions = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("session started"))
            .count()
    };
    // One connection after the other: the first session carries them all.
    for _ in 0..2 {
        assert_eq!(sha256(&download(&local)), sha256(&data));
    }
    assert_eq!(sessions(), 1);
    let downloads: Vec<_> = (0..8)
        .map(|_| {
            let local = local.clone();
            thread::spawn(move || download(&local))
        })
        .collect();
    for d in downloads {
        assert_eq!(sha256(&d.join().expect("download thread")), sha256(&data));
    }
    // The burst spread over sessions up to auto's limit of 8.
    assert_eq!(sessions(), 8, "sessions started");
    fw.stop_ok();
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

/// Reads a connection to `local` (a forward to a source) to its end.
fn download(local: &str) -> Vec<u8> {
    let mut conn = TcpStream::connect(local).expect("connect to the forward");
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    let mut out = Vec::new();
    conn.read_to_end(&mut out).expect("read to the end");
    out
}

#[test]
fn ctrl_z_stops_a_forward_until_it_is_continued() {
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    let echo = TcpServer::echo();
    let spec = format!("0:{}", echo.port);
    let fw = Forward::start(&emu, &[&emu.instance, "-L", &spec, "--json"], 1);
    let local = fw.local();
    let pid = fw.pid();
    // Ctrl-Z: the process stops, as any foreground job does.
    signal(pid, Signal::SIGTSTP);
    poll(LIMIT, || (process_state(pid) == Some('T')).then_some(()));
    // `fg`: it runs again and forwards as before.
    signal(pid, Signal::SIGCONT);
    poll(LIMIT, || {
        process_state(pid)
            .is_some_and(|state| state != 'T')
            .then_some(())
    });
    echo_round_trip(&local, &random_bytes(64 * 1024, 12));
    fw.stop_ok();
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn a_client_that_stops_reading_does_not_hold_up_new_connections() {
    // Agent pacing on: the flood fills the buffers in seconds, not a machine's worth of CPU.
    let emu = EmulatorProcess::start(&[]);
    let server = FloodOrEcho::start();
    let spec = format!("0:{}", server.port);
    let mut fw = Forward::start(&emu, &["-vv", &emu.instance, "-L", &spec, "--json"], 1);
    let local = fw.local();
    // A client asks for an endless download and never reads it: its session stops
    // acknowledging (smux v1 has no per-stream flow control, so every stream on it waits).
    let mut stuck = TcpStream::connect(&local).expect("connect to the forward");
    stuck.write_all(b"F").expect("ask for the flood");
    fw.stderr_line_containing("local sockets behind");
    // Once the pool's samples show it delivering nothing, the stalled session would look like
    // the roomiest one.
    fw.stderr_line_containing("a session waits for a local client that does not read");
    // A new connection is not given to that session: another one opens and carries it.
    let mut data = random_bytes(256 * 1024, 11);
    data[0] = b'E';
    echo_round_trip(&local, &data);
    fw.stderr_line_containing("opening another session");
    // The stuck client leaves: its data is dropped and the session flows again.
    drop(stuck);
    fw.stderr_line_containing("local sockets caught up: acknowledging again");
    fw.stop_ok();
    assert!(
        server.connections() >= 2,
        "both connections reached the server"
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

/// A test server: a connection whose first byte is `F` gets an endless stream of bytes (until
/// it goes away), any other is echoed, first byte included. It accepts for [`LIMIT`], and every
/// connection ends within it.
struct FloodOrEcho {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FloodOrEcho {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test server");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let until = std::time::Instant::now() + LIMIT;
        thread::spawn(move || {
            while std::time::Instant::now() < until {
                match listener.accept() {
                    Ok((conn, _)) => {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        thread::spawn(move || serve_flood_or_echo(conn, until));
                    }
                    // A bounded poll: the listener stops by itself at `until`.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        Self { port, accepted }
    }

    fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn serve_flood_or_echo(mut conn: TcpStream, until: std::time::Instant) {
    let _ = conn.set_nonblocking(false);
    let left = until.saturating_duration_since(std::time::Instant::now());
    if left.is_zero()
        || conn.set_read_timeout(Some(left)).is_err()
        || conn.set_write_timeout(Some(left)).is_err()
    {
        return;
    }
    let mut first = [0u8; 1];
    if conn.read_exact(&mut first).is_err() {
        return;
    }
    if first[0] == b'F' {
        let chunk = random_bytes(64 * 1024, 3);
        while std::time::Instant::now() < until && conn.write_all(&chunk).is_ok() {}
        return;
    }
    if conn.write_all(&first).is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 || conn.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

#[test]
fn a_client_that_pauses_gets_the_rest_with_nothing_dropped_or_resent() {
    // No agent pacing: the agent would send its whole 100,000-message window at once.
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    let data = random_bytes(24 * 1024 * 1024, 13);
    let source = Source::start(data.clone());
    let spec = format!("0:{}", source.port);
    let mut fw = Forward::start(&emu, &["-vv", &emu.instance, "-L", &spec, "--json"], 1);
    let mut conn = TcpStream::connect(fw.local()).expect("connect to the forward");
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    let mut got = vec![0u8; 1024 * 1024];
    conn.read_exact(&mut got).expect("the first MiB");
    // The client pauses: postern falls behind, and the source stops once every buffer on the
    // way is full (postern no longer reads the websocket), or has sent everything.
    fw.stderr_line_containing("local sockets behind");
    let mut last = source.written();
    poll(LIMIT, || {
        thread::sleep(Duration::from_millis(500));
        let now = source.written();
        let settled = now == last;
        last = now;
        settled.then_some(())
    });
    conn.read_to_end(&mut got).expect("the rest");
    assert_eq!(got.len(), data.len(), "every byte arrives");
    assert!(got == data, "the bytes arrive intact and in order");
    let stderr = fw.stop_ok();
    // Nothing was taken in and thrown away to be resent one message per round trip.
    assert!(
        !stderr.contains("beyond the reorder window"),
        "postern dropped data it had read: {} lines",
        stderr.matches("beyond the reorder window").count()
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

/// A test server that sends `data` to its first connection and closes it, counting what it
/// has written; it stops by itself after [`LIMIT`].
struct Source {
    port: u16,
    written: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Source {
    fn start(data: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the source");
        let port = listener.local_addr().unwrap().port();
        let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = written.clone();
        listener.set_nonblocking(true).unwrap();
        let until = std::time::Instant::now() + LIMIT;
        thread::spawn(move || {
            let mut conn = loop {
                match listener.accept() {
                    Ok((conn, _)) => break conn,
                    // A bounded poll: the source stops by itself at `until`.
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            && std::time::Instant::now() < until =>
                    {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => return,
                }
            };
            if conn.set_nonblocking(false).is_err() || conn.set_write_timeout(Some(LIMIT)).is_err()
            {
                return;
            }
            for chunk in data.chunks(64 * 1024) {
                if conn.write_all(chunk).is_err() {
                    return;
                }
                counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
            }
        });
        Self { port, written }
    }

    fn written(&self) -> usize {
        self.written.load(std::sync::atomic::Ordering::SeqCst)
    }
}
