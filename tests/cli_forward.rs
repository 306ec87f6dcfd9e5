//! `postern forward` against `postern emulator`: many concurrent connections with random data
//! both ways (sha256 verified), remote-host forwarding, two `-L`, LOCAL 0, a bind address,
//! basic-mode fallback for an old agent, and the clear errors (port in use, ConnectToPortError,
//! agent too old). Every run ends with zero emulator violations.

mod cli_util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use cli_util::{Emulator, run, text};
use sha2::{Digest, Sha256};

const LIMIT: Duration = Duration::from_secs(60);
/// Built-in instance whose agent is too old for mux (3.0.161.0).
const OLD_AGENT: &str = "i-0e2d4f6a8c0b1d3e5";

#[test]
fn sixteen_connections_move_4_mib_each_way_sha256_verified() {
    let emu = Emulator::start(&["--no-pacing"]);
    let echo = echo_server();
    let spec = format!("0:{echo}");
    let fw = Forward::start(
        &emu,
        &[&emu.instance, "-L", &spec, "--sessions", "4", "--json"],
        1,
    );
    let local = fw.ready[0]["local"].as_str().unwrap().to_owned();
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
    let emu = Emulator::start(&["--no-pacing"]);
    let echo = echo_server();
    let to_instance = format!("0:{echo}");
    let to_host = format!("127.0.0.2:0:127.0.0.1:{echo}");
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
    assert_eq!(second.1, format!("127.0.0.1:{echo}"));
    for line in &lines {
        assert!(
            line.ends_with(&format!("via {} (us-east-1)", emu.instance)),
            "{line}"
        );
    }
    for local in [first.0, second.0] {
        echo_round_trip(&local.to_string(), &random_bytes(256 * 1024, 99));
    }
    fw.stop_ok();
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn an_old_agent_falls_back_to_basic_mode_with_a_warning() {
    let emu = Emulator::start(&["--no-pacing"]);
    let echo = echo_server();
    let spec = format!("0:{echo}");
    let fw = Forward::start(&emu, &[OLD_AGENT, "-L", &spec, "--json"], 1);
    assert_eq!(fw.ready[0]["mode"], "basic");
    assert_eq!(fw.ready[0]["agent_version"], "3.0.161.0");
    let local = fw.ready[0]["local"].as_str().unwrap().to_owned();
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
fn a_port_in_use_is_a_clear_error() {
    let emu = Emulator::start(&[]);
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
    let emu = Emulator::start(&[]);
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spec = format!("0:{closed}");
    let mut fw = Forward::start(&emu, &[&emu.instance, "-L", &spec, "--json"], 1);
    let local = fw.ready[0]["local"].as_str().unwrap().to_owned();
    let mut conn = TcpStream::connect(&local).unwrap();
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    let _ = conn.write_all(b"anyone there?");
    let mut buf = [0u8; 16];
    let n = conn.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the connection closes without data");
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
    let emu = Emulator::start(&[]);
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

/// A running `postern forward` and what it printed when ready.
struct Forward {
    child: Child,
    /// Ready lines as printed.
    lines: Vec<String>,
    /// Ready lines parsed, with `--json`.
    ready: Vec<serde_json::Value>,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Forward {
    /// Starts `postern forward ARGS` and waits (bounded) for `count` ready lines.
    fn start(emu: &Emulator, args: &[&str], count: usize) -> Self {
        let mut full = vec!["forward"];
        full.extend_from_slice(args);
        let mut child = emu
            .command(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn postern forward");
        let stdout = child.stdout.take().unwrap();
        let stderr = spawn_line_reader(child.stderr.take().unwrap());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + LIMIT;
        let mut lines = Vec::new();
        while lines.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let err: Vec<String> = stderr.try_iter().collect();
                    panic!("forward never became ready; stdout {lines:?}; stderr {err:?}");
                }
            }
        }
        let ready = lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Self {
            child,
            lines,
            ready,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a stderr line containing `needle`.
    fn stderr_line_containing(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no stderr line with {needle:?}; got {:?}", self.seen),
            }
        }
    }

    /// SIGINT, then expects exit 0 within the limit; returns all of stderr.
    fn stop_ok(mut self) -> String {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "forward did not stop");
            thread::sleep(Duration::from_millis(20));
        };
        self.seen.extend(self.stderr.try_iter());
        // The reader thread sees EOF now; collect the rest.
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let stderr = self.seen.join("\n");
        assert_eq!(status.code(), Some(0), "stderr: {stderr}");
        stderr
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_line_reader(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `forwarding LOCAL -> REMOTE via …`: the local address and the remote.
fn parse_line(line: &str) -> (std::net::SocketAddr, String) {
    let rest = line.strip_prefix("forwarding ").expect("ready line");
    let (local, rest) = rest.split_once(" -> ").expect("arrow");
    let (remote, _) = rest.split_once(" via ").expect("via");
    (local.parse().expect("local address"), remote.to_owned())
}

/// A loopback echo server on its own threads (they end with the test process); returns the
/// port.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

/// Sends `data` through `local` while reading the echo; panics unless it comes back intact.
fn echo_round_trip(local: &str, data: &[u8]) {
    let mut conn = TcpStream::connect(local).expect("connect to the forward");
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    let mut writer = conn.try_clone().unwrap();
    let payload = data.to_vec();
    let sender = thread::spawn(move || writer.write_all(&payload));
    let mut back = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 64 * 1024];
    while back.len() < data.len() {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read after {} of {} bytes: {e}", back.len(), data.len()),
        }
    }
    sender.join().unwrap().expect("write to the forward");
    let _ = conn.shutdown(Shutdown::Both);
    assert_eq!(back.len(), data.len(), "short echo");
    assert_eq!(
        hex::encode(Sha256::digest(&back)),
        hex::encode(Sha256::digest(data)),
        "echo differs"
    );
}

/// Deterministic pseudo-random bytes (xorshift), distinct per `seed`.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (seed + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
