//! smux interop with a peer we did not write: Debian's xtaci/smux (golang-github-xtaci-smux-dev)
//! built into a tiny echo server with golang-go, offline (GOPATH mode against
//! /usr/share/gocode). Our [`Mux`] client talks to it over loopback TCP: several streams with
//! random data, keepalive NOPs both ways through an idle period longer than either side's
//! timeout, and closing streams. Each side's frames are counted off the wire: ours by a header
//! scan of what the server sends, the server's by the lines it prints of what it received.
//! Missing tools fail the test with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_protocol::mux::{Keepalive, Mux, MuxConfig, MuxEvent, StreamId};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::data::random_bytes;
use crate::support::fixtures::repository_file;

const GOPATH: &str = "/usr/share/gocode";
const LIMIT: Duration = Duration::from_secs(60);
/// NOPs each side must see during the idle period: both send one every 500 ms for 3 s.
const IDLE_NOPS: usize = 3;

#[tokio::test]
async fn our_mux_talks_to_xtaci_smux() {
    let dir = tempfile::tempdir().unwrap();
    let server = build_server(dir.path());
    let mut child = tokio::process::Command::new(&server)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the smux echo server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = tokio::time::timeout(LIMIT, lines.next_line())
        .await
        .expect("server prints its port in time")
        .unwrap()
        .expect("a port line")
        .trim()
        .parse()
        .unwrap();
    let peer = PeerLog::collect(lines);
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut link = Link::new(tcp, peer.clone());

    // Several streams at once, interleaved.
    let payloads: Vec<Vec<u8>> = (0..4).map(|seed| random_bytes(200_000, seed)).collect();
    let ids: Vec<StreamId> = payloads
        .iter()
        .map(|_| link.mux.open_stream().unwrap())
        .collect();
    assert_eq!(ids[0].get(), 3, "client stream ids start at 3");
    for (id, data) in ids.iter().zip(&payloads) {
        let mut rest = data.as_slice();
        while !rest.is_empty() {
            let n = link.mux.write(*id, rest).unwrap();
            rest = &rest[n..];
            link.step_until(|_| true).await;
        }
    }
    let expected: usize = payloads.iter().map(Vec::len).sum();
    link.step_until(|l| l.received_total() >= expected).await;
    for (id, data) in ids.iter().zip(&payloads) {
        assert_eq!(&link.received(*id), data, "stream {id} echoed intact");
    }

    // Idle for longer than both 2 s keepalive timeouts: only NOPs cross, ours keep the server's
    // session alive and its NOPs keep ours alive. The idle time is the subject, so the clock
    // ends this step; the server's report of our NOPs may trail it by a moment.
    let ours_before = link.peer.count("nop");
    let theirs_before = link.wire.nops;
    let idle_until = Instant::now() + Duration::from_millis(3_000);
    link.step_until(|_| Instant::now() >= idle_until).await;
    assert!(!link.mux.is_closed(), "our mux survived the idle period");
    let theirs = link.wire.nops - theirs_before;
    assert!(
        theirs >= IDLE_NOPS,
        "{theirs} NOPs from the server while idle"
    );
    link.step_until(|l| l.peer.count("nop") >= ours_before + IDLE_NOPS)
        .await;
    let again = link.mux.open_stream().unwrap();
    link.mux.write(again, b"still there?").unwrap();
    link.step_until(|l| l.received(again).len() >= 12).await;
    assert_eq!(link.received(again), b"still there?");

    // Closing: our FIN reaches the server and ends its copy, whose close sends FIN back. The
    // other streams stay open on both sides.
    link.mux.close(ids[0]).unwrap();
    link.mux.close(again).unwrap();
    let closed = [ids[0], again];
    link.step_until(|l| {
        closed.iter().all(|id| {
            l.wire.fins.contains(id)
                && l.peer.count(&format!("fin {id}")) == 1
                && l.peer.count(&format!("echoed {id} ")) == 1
        })
    })
    .await;
    assert_eq!(link.peer.count(&format!("echoed {} 200000", ids[0])), 1);
    assert_eq!(link.peer.count(&format!("echoed {again} 12")), 1);
    for id in &ids[1..] {
        assert!(
            !link.wire.fins.contains(id),
            "no FIN from the server for {id}"
        );
        assert_eq!(
            link.peer.count(&format!("fin {id}")),
            0,
            "no FIN sent for {id}"
        );
    }
    assert!(link.closed_by_peer.is_empty(), "{:?}", link.closed_by_peer);
    assert_eq!(
        link.mux.stream_count(),
        3,
        "the other streams are still open"
    );
    assert!(!link.mux.is_closed());
    link.mux.shutdown();
    drop(link);
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("server exits")
        .unwrap();
    assert!(status.success(), "server exit status {status}");
}

/// The lines the server printed after its port, collected as they come.
#[derive(Clone, Default)]
struct PeerLog(Arc<Mutex<Vec<String>>>);

impl PeerLog {
    fn collect(mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Self {
        let log = Self::default();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.0.lock().unwrap().push(line);
            }
        });
        log
    }

    /// Lines that start with `prefix`.
    fn count(&self, prefix: &str) -> usize {
        let lines = self.0.lock().unwrap();
        lines.iter().filter(|l| l.starts_with(prefix)).count()
    }
}

/// The server's frames as they cross the wire, followed by their 8-byte smux v1 headers
/// (version, command, little-endian u16 length, little-endian u32 stream id), independently
/// of our mux's decoder.
#[derive(Default)]
struct WireFrames {
    header: Vec<u8>,
    skip: usize,
    nops: usize,
    fins: Vec<StreamId>,
}

impl WireFrames {
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let k = self.skip.min(bytes.len());
                self.skip -= k;
                bytes = &bytes[k..];
                continue;
            }
            let k = (8 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..k]);
            bytes = &bytes[k..];
            if self.header.len() < 8 {
                return;
            }
            let header = std::mem::take(&mut self.header);
            self.skip = usize::from(u16::from_le_bytes([header[2], header[3]]));
            let id = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            match header[1] {
                1 => self.fins.push(StreamId::new(id)),
                3 => self.nops += 1,
                _ => {}
            }
        }
    }
}

/// Our mux over a TCP connection, with a tiny driver.
struct Link {
    tcp: TcpStream,
    mux: Mux,
    streams: std::collections::HashMap<StreamId, Vec<u8>>,
    /// Streams our mux reported closed by the peer.
    closed_by_peer: Vec<StreamId>,
    wire: WireFrames,
    peer: PeerLog,
}

impl Link {
    fn new(tcp: TcpStream, peer: PeerLog) -> Self {
        let config = MuxConfig {
            keepalive: Some(Keepalive {
                interval: Duration::from_millis(500),
                timeout: Duration::from_secs(2),
            }),
            ..MuxConfig::new()
        };
        Self {
            tcp,
            mux: Mux::client(config, Instant::now().into_std()),
            streams: Default::default(),
            closed_by_peer: Vec::new(),
            wire: WireFrames::default(),
            peer,
        }
    }

    fn received(&self, id: StreamId) -> Vec<u8> {
        self.streams.get(&id).cloned().unwrap_or_default()
    }

    fn received_total(&self) -> usize {
        self.streams.values().map(Vec::len).sum()
    }

    /// Pumps (writes, reads, timers) until `done`, bounded by [`LIMIT`].
    async fn step_until(&mut self, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + LIMIT;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(out) = self.mux.poll_output() {
                self.tcp.write_all(&out).await.expect("write to the server");
            }
            while let Some(event) = self.mux.poll_event() {
                match event {
                    MuxEvent::Data(id, data) => self.streams.entry(id).or_default().extend(data),
                    MuxEvent::StreamClosed(id) => {
                        self.closed_by_peer.push(id);
                        let _ = self.mux.close(id);
                    }
                    MuxEvent::Closed(reason) => panic!("our mux closed: {reason}"),
                    MuxEvent::StreamOpened(_) => panic!("the server never opens streams"),
                }
            }
            if self.mux.poll_output().is_some() {
                panic!("output appeared while handling events without being sent");
            }
            if done(self) {
                return;
            }
            assert!(Instant::now() < deadline, "no progress within {LIMIT:?}");
            let timer = self
                .mux
                .poll_timeout()
                .map(Instant::from_std)
                .map_or(deadline, |t| t.min(deadline))
                .min(Instant::now() + Duration::from_millis(100));
            tokio::select! {
                read = self.tcp.read(&mut buf) => {
                    let n = read.expect("read from the server");
                    assert!(n > 0, "the server closed the connection");
                    self.wire.scan(&buf[..n]);
                    self.mux.handle_input(Instant::now().into_std(), &buf[..n]);
                }
                () = tokio::time::sleep_until(timer) => self.mux.handle_timeout(Instant::now().into_std()),
            }
        }
    }
}

/// Builds tests/smux_echo/main.go offline against Debian's smux; fails loudly when a tool or
/// the library is missing.
fn build_server(dir: &Path) -> PathBuf {
    let smux = Path::new(GOPATH).join("src/github.com/xtaci/smux/session.go");
    assert!(
        smux.exists(),
        "{} not found: install golang-github-xtaci-smux-dev (`.ci/run` does)",
        smux.display()
    );
    let source = PathBuf::from(repository_file("tests/smux_echo/main.go"));
    let out = dir.join("smux-echo");
    let status = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .status()
        .unwrap_or_else(|e| panic!("cannot run `go` ({e}): install golang-go (`.ci/run` does)"));
    assert!(status.success(), "go build of {} failed", source.display());
    out
}
