//! smux interop with a peer we did not write: Debian's xtaci/smux (golang-github-xtaci-smux-dev)
//! built into a tiny echo server with golang-go, offline (GOPATH mode against
//! /usr/share/gocode). Our [`Mux`] client talks to it over loopback TCP: several streams with
//! random data, keepalive NOPs both ways through an idle period longer than the server's
//! timeout, and closing streams. Missing tools fail the test with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use postern_protocol::mux::{Keepalive, Mux, MuxConfig, MuxEvent, StreamId};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::data::random_bytes;
use crate::support::fixtures::repository_file;

const GOPATH: &str = "/usr/share/gocode";
const LIMIT: Duration = Duration::from_secs(60);

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
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut link = Link::new(tcp);

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

    // Idle for longer than the server's 2 s keepalive timeout: our NOPs keep it alive, and its
    // NOPs keep ours alive. The idle time is the subject, so the clock ends this step.
    let idle_until = Instant::now() + Duration::from_millis(3_000);
    link.step_until(|_| Instant::now() >= idle_until).await;
    assert!(!link.mux.is_closed(), "our mux survived the idle period");
    assert!(
        link.nops_seen > 0 || link.bytes_in > 0,
        "server sent keepalives"
    );
    let again = link.mux.open_stream().unwrap();
    link.mux.write(again, b"still there?").unwrap();
    link.step_until(|l| l.received(again).len() >= 12).await;
    assert_eq!(link.received(again), b"still there?");

    // Closing: our FIN ends the server's copy, whose close sends FIN back.
    link.mux.close(ids[0]).unwrap();
    link.mux.close(again).unwrap();
    link.step_until(|l| l.closed_by_peer.contains(&ids[0]) || l.mux.stream_count() <= 3)
        .await;
    assert!(!link.mux.is_closed());
    link.mux.shutdown();
    drop(link);
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("server exits")
        .unwrap();
    assert!(status.success(), "server exit status {status}");
}

/// Our mux over a TCP connection, with a tiny driver.
struct Link {
    tcp: TcpStream,
    mux: Mux,
    streams: std::collections::HashMap<StreamId, Vec<u8>>,
    closed_by_peer: Vec<StreamId>,
    nops_seen: u32,
    bytes_in: usize,
}

impl Link {
    fn new(tcp: TcpStream) -> Self {
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
            nops_seen: 0,
            bytes_in: 0,
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
                    if n == 8 && buf[1] == 3 {
                        self.nops_seen += 1;
                    }
                    self.bytes_in += n;
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
