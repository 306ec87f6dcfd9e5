//! Multiplexed port forwarding: an smux server over the data channel (agent `port_mux.go`,
//! SPEC.md §6.7). Each stream the client opens dials the destination from this machine and is
//! copied both ways; a failed dial sends the ConnectToPortError flag, then FIN. There is no
//! half-close: EOF either way closes both the stream and the connection.

use std::collections::HashMap;
use std::time::Instant as StdInstant;

use postern_protocol::Flag;
use postern_protocol::mux::{Mux, MuxConfig, MuxEvent, StreamId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::pacing::CHUNK_SIZE;
use crate::plugins::port::{Destination, dial};
use crate::plugins::{PluginInput, PluginIo, PluginOutput};

/// What a stream's connection task reports.
#[derive(Debug)]
enum FromStream {
    DialFailed(StreamId, String),
    Data(StreamId, Vec<u8>),
    Eof(StreamId),
}

/// Runs the smux server until the session ends.
pub(crate) async fn run(io: PluginIo, host: Option<String>, port: u16, client_version: String) {
    let PluginIo { mut input, output } = io;
    let destination = match Destination::resolve(host.as_deref(), port).await {
        Ok(destination) => destination,
        Err(reason) => {
            let _ = output.send(PluginOutput::Done(Err(reason))).await;
            return;
        }
    };
    let mut mux = Mux::server(MuxConfig::for_agent(&client_version), StdInstant::now());
    let mut writers: HashMap<StreamId, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut connections = JoinSet::new();
    let (from_streams_tx, mut from_streams) = mpsc::channel::<FromStream>(STREAM_EVENT_QUEUE);
    loop {
        let timer = mux.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            item = input.recv() => {
                let Some(item) = item else { return };
                // Flags and sizes mean nothing to a mux session (SPEC.md §3.7).
                if let PluginInput::Data(bytes) = item {
                    mux.handle_input(StdInstant::now(), &bytes);
                }
            }
            event = from_streams.recv() => {
                // The sender lives in this function, so the channel never closes here.
                let Some(event) = event else { return };
                match event {
                    FromStream::DialFailed(id, reason) => {
                        tracing::debug!(stream = id.get(), %reason, "stream dial failed");
                        if output.send(PluginOutput::Flag(Flag::ConnectToPortError)).await.is_err() {
                            return;
                        }
                        writers.remove(&id);
                        let _ = mux.close(id);
                    }
                    FromStream::Data(id, bytes) => {
                        let mut rest = bytes.as_slice();
                        while !rest.is_empty() {
                            match mux.write(id, rest) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => rest = &rest[n..],
                            }
                            if !drain(&mut mux, &output).await {
                                return;
                            }
                        }
                    }
                    FromStream::Eof(id) => {
                        writers.remove(&id);
                        let _ = mux.close(id);
                    }
                }
            }
            () = sleep_until(timer) => mux.handle_timeout(StdInstant::now()),
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
        while let Some(event) = mux.poll_event() {
            match event {
                MuxEvent::StreamOpened(id) => {
                    let (tx, rx) = mpsc::channel(STREAM_WRITE_QUEUE);
                    writers.insert(id, tx);
                    connections.spawn(connection(
                        id,
                        destination.clone(),
                        rx,
                        from_streams_tx.clone(),
                    ));
                }
                MuxEvent::Data(id, bytes) => {
                    if let Some(writer) = writers.get(&id)
                        && writer.send(bytes).await.is_err()
                    {
                        writers.remove(&id);
                    }
                }
                MuxEvent::StreamClosed(id) => {
                    // Dropping the writer lets the connection flush what it has, then close.
                    writers.remove(&id);
                    let _ = mux.close(id);
                }
                MuxEvent::Closed(reason) => {
                    tracing::debug!(%reason, "smux session closed");
                    let _ = drain(&mut mux, &output).await;
                    let _ = output
                        .send(PluginOutput::Done(Err(format!(
                            "smux session closed: {reason}"
                        ))))
                        .await;
                    return;
                }
            }
        }
        if !drain(&mut mux, &output).await {
            return;
        }
    }
}

/// Moves queued smux bytes to the driver in chunks of at most 1024; false when it is gone.
async fn drain(mux: &mut Mux, output: &mpsc::Sender<PluginOutput>) -> bool {
    while let Some(bytes) = mux.poll_output() {
        for chunk in bytes.chunks(CHUNK_SIZE) {
            if output
                .send(PluginOutput::Stdout(chunk.to_vec()))
                .await
                .is_err()
            {
                return false;
            }
        }
    }
    true
}

/// One stream's destination connection: dial, then copy both ways until either side ends.
async fn connection(
    id: StreamId,
    destination: Destination,
    mut writes: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<FromStream>,
) {
    let stream = match dial(&destination).await {
        Ok(stream) => stream,
        Err(reason) => {
            let _ = events.send(FromStream::DialFailed(id, reason)).await;
            return;
        }
    };
    let (mut read_half, mut write_half) = stream.into_split();
    let reader = async {
        loop {
            // A fresh buffer per read is handed on as it is, without a copy.
            let mut buf = Vec::with_capacity(READ_SIZE);
            match read_half.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if n < READ_SIZE / 4 {
                        // A small read does not hold a whole read buffer while it is queued.
                        buf.shrink_to_fit();
                    }
                    if events.send(FromStream::Data(id, buf)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = events.send(FromStream::Eof(id)).await;
    };
    let writer = async {
        while let Some(bytes) = writes.recv().await {
            if write_half.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Bytes read from a destination at once (the agent copies with io.Copy's 32 KiB buffer).
const READ_SIZE: usize = 32 * 1024;
const STREAM_EVENT_QUEUE: usize = 64;
const STREAM_WRITE_QUEUE: usize = 64;
