//! The local side of a session: standard input read on a dedicated thread (a blocking read
//! cannot be cancelled, so it must not hold up the runtime's shutdown) or, for a terminal, by
//! the driver's own task through the reactor (`tty`), and the writers the driver sends remote
//! output to.

use std::io::{self, Read};
use std::os::fd::AsFd;

use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

use crate::transport::tty::{TtyReader, TtyWriter};

/// One read from standard input.
#[derive(Debug)]
pub enum Input {
    /// Bytes read.
    Data(Vec<u8>),
    /// End of file.
    Eof,
    /// The read failed; nothing more will come.
    Failed(io::Error),
}

/// Where remote output goes.
pub struct Outputs {
    /// Remote stdout (PayloadType 1).
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    /// Remote stderr (PayloadType 11) and local notices inside a raw-mode session.
    pub stderr: Box<dyn AsyncWrite + Send + Unpin>,
}

impl Outputs {
    /// The process's standard output and error, unbuffered: `tokio::io::stdout` goes through
    /// std's line-buffered stdout, which would hold a shell prompt (no newline) back until the
    /// next flush. A terminal is written by the runtime directly (`tty`); anything else through
    /// a duplicate of the descriptor, each chunk as it comes.
    pub fn stdio() -> Self {
        let stdout: Box<dyn AsyncWrite + Send + Unpin> =
            if let Some(tty) = TtyWriter::for_fd(io::stdout().as_fd()) {
                Box::new(tty)
            } else {
                match io::stdout().as_fd().try_clone_to_owned() {
                    Ok(fd) => Box::new(tokio::fs::File::from_std(std::fs::File::from(fd))),
                    Err(_) => Box::new(tokio::io::stdout()),
                }
            };
        Self {
            stdout,
            stderr: Box::new(tokio::io::stderr()),
        }
    }
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs").finish_non_exhaustive()
    }
}

/// Local input as a driver reads it: a terminal, read by the driver's task itself, or the
/// reads another thread or task queues (a pipe or a file on standard input, an in-memory
/// source).
#[derive(Debug)]
pub struct LocalInput(Source);

#[derive(Debug)]
enum Source {
    Terminal(TtyReader),
    Queued(mpsc::Receiver<Input>),
}

impl LocalInput {
    /// The next read; `None` once a queue's sender is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Input> {
        match &mut self.0 {
            Source::Terminal(tty) => Some(tty.read().await),
            Source::Queued(queue) => queue.recv().await,
        }
    }
}

impl From<mpsc::Receiver<Input>> for LocalInput {
    fn from(queue: mpsc::Receiver<Input>) -> Self {
        Self(Source::Queued(queue))
    }
}

/// Standard input: a terminal is read by whichever task awaits it, anything else on a thread
/// of its own. That thread ends at end of file, on a read error, or when the input is dropped
/// (after its next read returns).
pub fn stdin_input() -> io::Result<LocalInput> {
    if let Some(tty) = TtyReader::for_fd(io::stdin().as_fd(), READ_SIZE) {
        return Ok(LocalInput(Source::Terminal(tty)));
    }
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    std::thread::Builder::new()
        .name("postern-stdin".to_owned())
        .spawn(move || {
            let stdin = io::stdin();
            let mut stdin = stdin.lock();
            let mut buf = vec![0u8; READ_SIZE];
            loop {
                let input = match stdin.read(&mut buf) {
                    Ok(0) => Input::Eof,
                    Ok(n) => Input::Data(buf[..n].to_vec()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Input::Failed(e),
                };
                let last = !matches!(input, Input::Data(_));
                if tx.blocking_send(input).is_err() || last {
                    break;
                }
            }
        })?;
    Ok(rx.into())
}

/// Reads queued between the reader thread and the driver; small, so backpressure reaches
/// the producer (a pipe) quickly.
const INPUT_QUEUE: usize = 4;
/// Bytes per read; the session chunks them to 1024-byte messages.
const READ_SIZE: usize = 16 * 1024;
