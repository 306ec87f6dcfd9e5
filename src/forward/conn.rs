//! One local TCP connection of a link: a reader task that hands what it reads to the link
//! (bounded, so a link that may not send stops the reads); what the link received goes to the
//! socket at once as far as the socket takes it, the rest through a writer task, counting that
//! backlog in bytes so the link can stop acknowledging when local sockets fall behind.
//!
//! It must not speak the protocol: the link frames, paces and acknowledges.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::forward::traffic::Traffic;

/// A link's key for a connection.
pub(crate) type ConnKey = u64;

/// What connection tasks tell their link.
#[derive(Debug)]
pub(crate) enum FromConn {
    /// Bytes read from the local connection.
    Data(ConnKey, Vec<u8>),
    /// The local side closed, or reading or writing failed.
    Closed(ConnKey, Option<io::Error>),
}

/// Bytes handed to writer tasks and not yet written, for all connections of a link.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    bytes: AtomicUsize,
    drained: Notify,
}

/// The link's handle on one connection. Dropping it stops the reader and lets the writer
/// finish what it has, then close the socket.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The socket's write half, shared with the writer task: [`Conn::write`] writes at once
    /// what the socket takes while nothing waits in the queue.
    socket: Arc<OwnedWriteHalf>,
    writes: mpsc::UnboundedSender<Vec<u8>>,
    /// This connection's bytes handed to the writer task and not yet written.
    queued: Arc<AtomicUsize>,
    reader: JoinHandle<()>,
    backlog: Arc<Backlog>,
    traffic: Arc<Traffic>,
}

impl Conn {
    /// Starts the reader and writer tasks for `stream`, counting it and its bytes in
    /// `traffic`.
    pub(crate) fn spawn(
        key: ConnKey,
        stream: TcpStream,
        to_link: mpsc::Sender<FromConn>,
        backlog: Arc<Backlog>,
        traffic: Arc<Traffic>,
    ) -> Self {
        let _ = stream.set_nodelay(true);
        traffic.connection_opened();
        let reader_traffic = traffic.clone();
        let (mut read_half, write_half) = stream.into_split();
        let socket = Arc::new(write_half);
        let queued = Arc::new(AtomicUsize::new(0));
        let (writes, queue) = mpsc::unbounded_channel::<Vec<u8>>();
        let reader_link = to_link.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; READ_SIZE];
            let end = loop {
                match read_half.read(&mut buf).await {
                    Ok(0) => break None,
                    Ok(n) => {
                        reader_traffic.sent(n);
                        if reader_link
                            .send(FromConn::Data(key, buf[..n].to_vec()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Some(e),
                }
            };
            let _ = reader_link.send(FromConn::Closed(key, end)).await;
        });
        tokio::spawn(
            Writer {
                key,
                socket: socket.clone(),
                queue,
                queued: queued.clone(),
                backlog: backlog.clone(),
                traffic: traffic.clone(),
                to_link,
            }
            .run(),
        );
        Self {
            socket,
            writes,
            queued,
            reader,
            backlog,
            traffic,
        }
    }

    /// Writes `data` to the local socket: at once, as far as the socket takes it while nothing
    /// of this connection waits for the writer task; the rest is queued for the writer task
    /// (and counted in the link's [`Backlog`]). Data of one agent message burst thus reaches
    /// the socket in the link's own turn, with no queue, task wake-up or copy in between.
    pub(crate) fn write(&self, data: Vec<u8>) {
        let mut written = 0;
        if self.queued.load(Ordering::Acquire) == 0 {
            // An error other than a full socket is met again, and reported, by the writer.
            if let Ok(n) = self.socket.try_write(&data) {
                self.traffic.received(n);
                written = n;
            }
        }
        if written == data.len() {
            return;
        }
        let rest = if written == 0 {
            data
        } else {
            data[written..].to_vec()
        };
        let len = rest.len();
        self.queued.fetch_add(len, Ordering::AcqRel);
        self.backlog.bytes.fetch_add(len, Ordering::AcqRel);
        if self.writes.send(rest).is_err() {
            // The writer is gone (it never exits while we hold the sender, but be exact).
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.backlog.written(len);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
        self.traffic.connection_closed();
    }
}

/// The writer task of one connection: writes what [`Conn::write`] queued, in order, several
/// queued buffers per system call (vectored, without copying them together), then closes the
/// socket's write side once the link dropped the [`Conn`].
struct Writer {
    key: ConnKey,
    socket: Arc<OwnedWriteHalf>,
    queue: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    backlog: Arc<Backlog>,
    traffic: Arc<Traffic>,
    to_link: mpsc::Sender<FromConn>,
}

impl Writer {
    async fn run(mut self) {
        let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
        // Bytes of `pending[0]` already written.
        let mut offset = 0;
        let mut failed = false;
        loop {
            if pending.is_empty() {
                match self.queue.recv().await {
                    Some(data) => pending.push_back(data),
                    None => break,
                }
            }
            while pending.len() < WRITE_SLICES {
                let Ok(more) = self.queue.try_recv() else {
                    break;
                };
                pending.push_back(more);
            }
            let written = if failed {
                // Dropped: the link heard of the failure and stops writing.
                pending.iter().map(Vec::len).sum::<usize>() - offset
            } else {
                match self.write_some(&pending, offset).await {
                    Ok(n) => {
                        self.traffic.received(n);
                        n
                    }
                    Err(e) => {
                        failed = true;
                        let _ = self.to_link.send(FromConn::Closed(self.key, Some(e))).await;
                        continue;
                    }
                }
            };
            // Forget what is written; only then count it as written.
            let mut left = written;
            while let Some(front) = pending.front() {
                let rest = front.len() - offset;
                if left < rest {
                    offset += left;
                    break;
                }
                left -= rest;
                offset = 0;
                pending.pop_front();
            }
            self.queued.fetch_sub(written, Ordering::AcqRel);
            self.backlog.written(written);
        }
        // Dropping the last handle on the write half shuts its side of the connection down.
    }

    /// One vectored write of the pending buffers, waiting until the socket takes some.
    async fn write_some(&self, pending: &VecDeque<Vec<u8>>, offset: usize) -> io::Result<usize> {
        loop {
            self.socket.writable().await?;
            let slices: Vec<IoSlice<'_>> = pending
                .iter()
                .enumerate()
                .map(|(i, b)| IoSlice::new(if i == 0 { &b[offset..] } else { b }))
                .collect();
            match self.socket.try_write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => return Ok(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Backlog {
    /// Bytes not yet written to local sockets.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Resolves after some backlog was written; a wake-up may be spurious.
    pub(crate) async fn drained(&self) {
        self.drained.notified().await;
    }

    fn written(&self, len: usize) {
        let before = self.bytes.fetch_sub(len, Ordering::AcqRel);
        if before.saturating_sub(len) < BACKLOG_LOW_WATER {
            self.drained.notify_one();
        }
    }
}

/// Local backlog above which a link stops acknowledging new data (the agent then holds it).
pub(crate) const BACKLOG_HIGH_WATER: usize = 4 * 1024 * 1024;
/// Local backlog below which acknowledging resumes.
pub(crate) const BACKLOG_LOW_WATER: usize = 1024 * 1024;
/// Bytes read from a local socket at once.
const READ_SIZE: usize = 32 * 1024;
/// The most queued buffers handed to one vectored write (Linux takes up to 1024).
const WRITE_SLICES: usize = 64;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpSocket;

    use super::*;

    /// A connected pair on loopback whose buffers are small, so a peer that reads nothing
    /// soon leaves writes waiting in the connection's queue.
    async fn small_buffered_pair() -> (TcpStream, TcpStream) {
        let listening = TcpSocket::new_v4().unwrap();
        listening.set_recv_buffer_size(SMALL_BUFFER).unwrap();
        listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listening.listen(1).unwrap();
        let connecting = TcpSocket::new_v4().unwrap();
        connecting.set_send_buffer_size(SMALL_BUFFER).unwrap();
        let ours = connecting
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        (ours, peer)
    }

    #[tokio::test]
    async fn data_written_at_once_and_data_queued_reach_the_socket_in_order() {
        let (ours, mut peer) = small_buffered_pair().await;
        let (to_link, _from_conns) = mpsc::channel(8);
        let backlog = Arc::new(Backlog::default());
        let conn = Conn::spawn(1, ours, to_link, backlog.clone(), Arc::default());
        let chunks: Vec<Vec<u8>> = (0..CHUNKS)
            .map(|i| (0..CHUNK).map(|j| (i * 31 + j * 7) as u8).collect())
            .collect();
        for chunk in &chunks {
            conn.write(chunk.clone());
        }
        assert!(
            backlog.bytes() > 0,
            "the peer read nothing: some data must wait in the queue"
        );
        // Later data queues behind what waits, even once the socket has room again.
        conn.write(b"tail".to_vec());
        drop(conn);
        let mut received = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), peer.read_to_end(&mut received))
            .await
            .expect("the writer finishes and closes")
            .unwrap();
        let mut expected = chunks.concat();
        expected.extend_from_slice(b"tail");
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "the bytes arrived out of order");
        assert_eq!(backlog.bytes(), 0);
    }

    #[tokio::test]
    async fn a_write_after_a_partly_queued_one_waits_behind_it_even_when_the_socket_has_room() {
        let (ours, peer) = small_buffered_pair().await;
        let mut peer = peer.into_std().unwrap();
        peer.set_nonblocking(false).unwrap();
        let (to_link, _from_conns) = mpsc::channel(8);
        let backlog = Arc::new(Backlog::default());
        let conn = Conn::spawn(1, ours, to_link, backlog.clone(), Arc::default());
        // More than the socket buffers hold: written in part, the rest queued. The writer task
        // cannot run before this task awaits.
        let first: Vec<u8> = (0..BIG).map(|j| (j % 251) as u8).collect();
        conn.write(first.clone());
        assert!(
            backlog.bytes() > 0,
            "the rest of the first write waits in the queue"
        );
        // The peer makes room, so the socket would take the next write at once.
        let mut head = vec![0u8; 16 * 1024];
        io::Read::read_exact(&mut peer, &mut head).unwrap();
        conn.write(b"second".to_vec());
        drop(conn);
        let rest = tokio::task::spawn_blocking(move || {
            let mut rest = Vec::new();
            io::Read::read_to_end(&mut peer, &mut rest).map(|_| rest)
        });
        let rest = tokio::time::timeout(Duration::from_secs(30), rest)
            .await
            .expect("the writer finishes and closes")
            .unwrap()
            .unwrap();
        let mut received = head;
        received.extend_from_slice(&rest);
        let mut expected = first;
        expected.extend_from_slice(b"second");
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "the second write overtook the first");
        assert_eq!(backlog.bytes(), 0);
    }

    const SMALL_BUFFER: u32 = 64 * 1024;
    const BIG: usize = 4 * 1024 * 1024;
    const CHUNK: usize = 32 * 1024;
    const CHUNKS: usize = 128;
}
