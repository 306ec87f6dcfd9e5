//! One local TCP connection of a link: a reader task that hands what it reads to the link
//! (bounded, so a link that may not send stops the reads) and a writer task that writes what
//! the link received, counting its backlog so the link can stop acknowledging when local
//! sockets fall behind.
//!
//! It must not speak the protocol: the link frames, paces and acknowledges.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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
    writes: mpsc::UnboundedSender<Vec<u8>>,
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
        let writer_traffic = traffic.clone();
        let (mut read_half, mut write_half) = stream.into_split();
        let (writes, mut queued) = mpsc::unbounded_channel::<Vec<u8>>();
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
        let writer_backlog = backlog.clone();
        tokio::spawn(async move {
            let mut failed = false;
            let mut batch = Vec::new();
            while let Some(first) = queued.recv().await {
                // What is queued already goes out in one write: one syscall for the data of
                // many agent messages rather than one each.
                batch.clear();
                batch.extend_from_slice(&first);
                while batch.len() < WRITE_BATCH {
                    let Ok(more) = queued.try_recv() else { break };
                    batch.extend_from_slice(&more);
                }
                if !failed {
                    match write_half.write_all(&batch).await {
                        Ok(()) => writer_traffic.received(batch.len()),
                        Err(e) => {
                            failed = true;
                            let _ = to_link.send(FromConn::Closed(key, Some(e))).await;
                        }
                    }
                }
                writer_backlog.written(batch.len());
            }
            let _ = write_half.shutdown().await;
        });
        Self {
            writes,
            reader,
            backlog,
            traffic,
        }
    }

    /// Queues `data` for the local socket.
    pub(crate) fn write(&self, data: Vec<u8>) {
        let len = data.len();
        self.backlog.bytes.fetch_add(len, Ordering::AcqRel);
        if self.writes.send(data).is_err() {
            // The writer is gone (it never exits while we hold the sender, but be exact).
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
/// The most bytes gathered from the queue for one write to the local socket.
const WRITE_BATCH: usize = 256 * 1024;
