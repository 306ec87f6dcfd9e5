//! Loopback TCP for the tests: the destination a forward or port session reaches (an echo
//! server, or a source that sends fixed bytes), a round trip through a forward checked by
//! SHA-256, and a port nothing listens on. Ports are always the kernel's (port 0). A server
//! stops accepting when dropped, and each of its connections gives up on a peer that stalls
//! for [`CONNECTION_IDLE_LIMIT`], so no thread of it outlives its test for long.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use super::data::sha256;

/// A loopback TCP server, one thread per connection; it stops accepting when dropped, and a
/// connection whose peer neither sends nor reads for the idle limit is closed.
pub(crate) struct TcpServer {
    /// The port it listens on.
    pub(crate) port: u16,
    /// The address it listens on: 127.0.0.1 unless started elsewhere on loopback.
    pub(crate) ip: IpAddr,
    connections: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
}

impl TcpServer {
    /// Echoes each connection until its EOF.
    pub(crate) fn echo() -> Self {
        Self::echo_on(Ipv4Addr::LOCALHOST)
    }

    /// Echoes each connection until its EOF, listening on `ip` (a loopback address, IPv4 or
    /// IPv6).
    pub(crate) fn echo_on(ip: impl Into<IpAddr>) -> Self {
        Self::echo_with(ip.into(), CONNECTION_IDLE_LIMIT)
    }

    fn echo_with(ip: IpAddr, idle_limit: Duration) -> Self {
        Self::start_on(ip, idle_limit, |mut stream| {
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
        })
    }

    /// Writes `data` to each connection, then closes it.
    pub(crate) fn source(data: Vec<u8>) -> Self {
        let data = Arc::new(data);
        Self::start(move |mut stream| {
            let _ = stream.write_all(&data);
            let _ = stream.shutdown(Shutdown::Write);
        })
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn start(serve: impl Fn(TcpStream) + Clone + Send + 'static) -> Self {
        Self::start_on(Ipv4Addr::LOCALHOST.into(), CONNECTION_IDLE_LIMIT, serve)
    }

    /// Serves each connection on a thread of its own, with reads and writes bounded by
    /// `idle_limit` (a read or write that waits longer fails, and `serve` ends).
    fn start_on(
        ip: IpAddr,
        idle_limit: Duration,
        serve: impl Fn(TcpStream) + Clone + Send + 'static,
    ) -> Self {
        assert!(ip.is_loopback(), "test servers listen on loopback only");
        let listener = TcpListener::bind((ip, 0)).expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let (counter, stop) = (Arc::clone(&connections), Arc::clone(&stopping));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { break };
                counter.fetch_add(1, Ordering::SeqCst);
                if stream.set_read_timeout(Some(idle_limit)).is_err()
                    || stream.set_write_timeout(Some(idle_limit)).is_err()
                {
                    continue;
                }
                let serve = serve.clone();
                thread::spawn(move || serve(stream));
            }
        });
        Self {
            port,
            ip,
            connections,
            stopping,
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag; connections still open run on.
        let _ = TcpStream::connect((self.ip, self.port));
    }
}

/// Sends `data` through `local` (`HOST:PORT`, a forward to an echo server) while reading the
/// echo; panics unless every byte comes back intact.
pub(crate) fn echo_round_trip(local: &str, data: &[u8]) {
    let mut conn = TcpStream::connect(local).expect("connect to the forward");
    conn.set_read_timeout(Some(READ_LIMIT))
        .expect("set a read timeout");
    echo_through(&mut conn, data);
    let _ = conn.shutdown(Shutdown::Both);
}

/// Writes `data` through `conn` (a connection that ends at an echo server) while reading the
/// echo; panics unless every byte comes back intact. The connection stays open.
pub(crate) fn echo_through(conn: &mut TcpStream, data: &[u8]) {
    let mut writer = conn.try_clone().expect("clone the connection");
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
    sender
        .join()
        .expect("writer thread")
        .expect("write through the connection");
    assert_eq!(back.len(), data.len(), "short echo");
    assert_eq!(sha256(&back), sha256(data), "echo differs");
}

/// A loopback port that was free a moment ago: connections to it are refused, or a server
/// that cannot listen on port 0 can bind it (and retry on the rare collision).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// Longest a single read of an echo may take (a 64 MiB echo across websocket drops included).
const READ_LIMIT: Duration = Duration::from_secs(120);

/// Longest a [`TcpServer`] connection waits on its peer in one read or write: as long as a
/// client here waits for one read ([`READ_LIMIT`]), so only a peer that is stuck meets it.
const CONNECTION_IDLE_LIMIT: Duration = READ_LIMIT;

/// Asserts that the peer closed `stream`: end of file, or a reset (a close the peer did not
/// read), never more bytes and never a read that times out on a connection left open.
pub(crate) fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{n} more bytes: {:?}", &buf[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("no close: {e}"),
    }
}

#[test]
fn a_server_connection_whose_peer_stalls_is_closed_after_the_idle_limit() {
    let server = TcpServer::echo_with(Ipv4Addr::LOCALHOST.into(), Duration::from_millis(300));
    let mut conn = TcpStream::connect((server.ip, server.port)).expect("connect to the echo");
    // Far longer than the server's limit: a server without one fails here with a timeout.
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    echo_through(&mut conn, b"still here");
    // The client now sends nothing: the server's read gives up and it closes the connection.
    assert_closed(&mut conn);
    assert_eq!(server.connections(), 1);
}

#[test]
fn a_dropped_server_on_ipv6_loopback_stops_accepting() {
    let server = TcpServer::echo_on(std::net::Ipv6Addr::LOCALHOST);
    let address = (server.ip, server.port);
    let mut conn = TcpStream::connect(address).expect("connect to the IPv6 echo");
    conn.set_read_timeout(Some(READ_LIMIT))
        .expect("set a read timeout");
    echo_through(&mut conn, b"over [::1]");
    drop(server);
    // The accept loop sees the stop and closes the listener: new connections are refused.
    super::poll::poll(Duration::from_secs(10), || {
        TcpStream::connect(address).is_err().then_some(())
    });
}
