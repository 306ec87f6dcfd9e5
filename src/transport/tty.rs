//! Standard streams that are terminals, read and written by the runtime itself: the terminal
//! is opened again by its name, which gives this process an open file description of its own,
//! set non-blocking. Reads are driven by the reactor; writes go straight to the terminal and
//! involve the reactor only while it is full. A keystroke then reaches the session task, and
//! remote output reaches the terminal, without a hop through another task or thread (a reader
//! thread, the blocking pool).
//!
//! The descriptors we inherited are left alone: `O_NONBLOCK` on them would be shared with the
//! shell that started us and every other process on the terminal.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::transport::local::Input;

/// The terminal behind `fd`, opened again non-blocking (for writing when `write`, else for
/// reading); `None` when `fd` is not a terminal, the name cannot be opened (another user's
/// terminal) or names another device, or there is no runtime (whose reactor the reader, and a
/// full writer, need): the caller falls back to blocking IO.
fn reopen(fd: BorrowedFd<'_>, write: bool) -> Option<File> {
    if !crate::term::is_terminal(std::os::fd::AsRawFd::as_raw_fd(&fd)) {
        return None;
    }
    tokio::runtime::Handle::try_current().ok()?;
    let name = nix::unistd::ttyname(fd).ok()?;
    let file = OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&name)
        .ok()?;
    // The name could have been reused between ttyname(3) and open(2): same device, or nothing.
    let ours = File::from(fd.try_clone_to_owned().ok()?).metadata().ok()?;
    let opened = file.metadata().ok()?;
    if opened.rdev() != ours.rdev() || opened.file_type() != ours.file_type() {
        return None;
    }
    Some(file)
}

/// A terminal written without blocking a worker: each write goes straight to the terminal,
/// and only a write that would block registers with the reactor, until the terminal drains.
///
/// A terminal registered for writability all the time would wake this process whenever the
/// reader of the terminal (the user's terminal emulator) takes what was written: one more
/// wake-up per keystroke echo, right when the echo is being shown (issue 22).
pub(crate) struct TtyWriter {
    tty: File,
    /// A duplicate of the descriptor registered for writability while the terminal is full.
    full: Option<AsyncFd<OwnedFd>>,
}

impl TtyWriter {
    /// A writer for `fd` when it is a terminal that can be opened again (see [`reopen`]).
    pub(crate) fn for_fd(fd: BorrowedFd<'_>) -> Option<Self> {
        reopen(fd, true).map(|tty| Self { tty, full: None })
    }
}

impl AsyncWrite for TtyWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if let Some(full) = &this.full {
                let mut guard = ready!(full.poll_write_ready(cx))?;
                guard.clear_ready();
            }
            match (&this.tty).write(buf) {
                Ok(n) => {
                    if n == buf.len() {
                        // Room again: stop listening for writability.
                        this.full = None;
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if this.full.is_none() {
                        let dup = this.tty.as_fd().try_clone_to_owned()?;
                        // SAFETY: the `AsyncFd` owns the duplicate until it is dropped: the
                        // descriptor stays open and names the terminal's description
                        // throughout.
                        let full =
                            unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }?;
                        this.full = Some(full);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered here: every write went to the terminal.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A terminal read through the reactor by the task that awaits it: a keystroke reaches the
/// session's own task without a hop through another task or thread.
#[derive(Debug)]
pub(crate) struct TtyReader {
    tty: AsyncFd<File>,
    buf: Vec<u8>,
}

impl TtyReader {
    /// A reader of up to `read_size` bytes at a time for `fd` when it is a terminal that can
    /// be opened again (see [`reopen`]).
    pub(crate) fn for_fd(fd: BorrowedFd<'_>, read_size: usize) -> Option<Self> {
        let file = reopen(fd, false)?;
        // SAFETY: the `File` owns its descriptor, and the `AsyncFd` owns the `File` until it
        // is dropped: the descriptor stays open and names the same file description
        // throughout.
        let tty = unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }.ok()?;
        Some(Self {
            tty,
            buf: vec![0u8; read_size],
        })
    }

    /// The next read. Cancel-safe: bytes leave the terminal only in the poll that returns
    /// them.
    pub(crate) async fn read(&mut self) -> Input {
        let Self { tty, buf } = self;
        loop {
            let mut guard = match tty.readable().await {
                Ok(guard) => guard,
                Err(e) => return Input::Failed(e),
            };
            match guard.try_io(|file| file.get_ref().read(buf)) {
                Ok(Ok(0)) => return Input::Eof,
                Ok(Ok(n)) => {
                    // A short read emptied the terminal's queue: wait for the next readiness
                    // rather than read again only to hear EAGAIN, so a keystroke goes out one
                    // syscall sooner. (Readiness that arrived meanwhile is kept: tokio clears
                    // only what this guard saw.)
                    if n < buf.len() {
                        guard.clear_ready();
                    }
                    return Input::Data(buf[..n].to_vec());
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Input::Failed(e),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd};
    use std::time::Duration;

    use futures_util::FutureExt as _;
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A pseudo-terminal in raw mode, so the line discipline hands bytes over as they are.
    fn raw_pty() -> nix::pty::OpenptyResult {
        let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
        let mut termios = tcgetattr(&pty.slave).expect("terminal settings");
        cfmakeraw(&mut termios);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &termios).expect("raw mode");
        pty
    }

    #[tokio::test]
    async fn a_terminal_is_written_and_read_through_a_description_of_its_own() {
        let pty = raw_pty();

        let mut writer = TtyWriter::for_fd(pty.slave.as_fd()).expect("the terminal reopens");
        writer.write_all(b"out").await.expect("written");
        let mut master = File::from(pty.master.try_clone().expect("a second master fd"));
        let mut shown = [0u8; 3];
        master
            .read_exact(&mut shown)
            .expect("the terminal shows it");
        assert_eq!(&shown, b"out");
        // The inherited descriptor stays blocking: O_NONBLOCK is on our own description only.
        let flags = fcntl(pty.slave.as_raw_fd(), FcntlArg::F_GETFL).expect("flags");
        assert!(!OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK));

        let mut reader = TtyReader::for_fd(pty.slave.as_fd(), 1024).expect("the terminal reopens");
        master.write_all(b"key").expect("typed");
        let mut typed = Vec::new();
        while typed.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(10), reader.read()).await {
                Ok(Input::Data(data)) => typed.extend(data),
                other => panic!("expected the keystrokes, got {other:?}"),
            }
        }
        assert_eq!(typed, b"key");
    }

    #[tokio::test]
    async fn a_full_terminal_is_waited_for_and_nothing_is_lost() {
        let pty = raw_pty();
        let mut writer = TtyWriter::for_fd(pty.slave.as_fd()).expect("the terminal reopens");
        // Far more than a terminal buffers (a few KiB): the writer must wait for the reader.
        let sent: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        // Nobody reads yet: writes go through until one would block.
        let mut written = 0;
        while let Some(result) = writer.write(&sent[written..]).now_or_never() {
            written += result.expect("written");
            assert!(
                written < sent.len(),
                "the terminal took 1 MiB without a reader"
            );
        }
        assert!(
            writer.full.is_some(),
            "a full terminal is watched for writability"
        );
        let mut master = File::from(pty.master.try_clone().expect("a second master fd"));
        let expected = sent.len();
        let reader = std::thread::spawn(move || {
            let mut shown = vec![0u8; expected];
            master.read_exact(&mut shown).map(|()| shown)
        });
        tokio::time::timeout(Duration::from_secs(30), writer.write_all(&sent[written..]))
            .await
            .expect("the writer drains as the terminal is read")
            .expect("written");
        let shown = reader.join().expect("the reader").expect("all of it read");
        assert!(
            shown == sent,
            "the terminal showed other bytes than were written"
        );
        assert!(
            writer.full.is_none(),
            "writability is watched only while the terminal is full"
        );
    }

    #[tokio::test]
    async fn what_is_not_a_terminal_is_left_to_blocking_io() {
        let (socket, _peer) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
        assert!(TtyWriter::for_fd(socket.as_fd()).is_none());
        assert!(TtyReader::for_fd(socket.as_fd(), 16).is_none());
    }
}
