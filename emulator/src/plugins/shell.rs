//! The shell and interactive-command plugin: a PTY running the shell (`Standard_Stream`) or
//! `sh -c <command>` (`InteractiveCommands`). Client Output goes to the PTY, Size sets its
//! window, flags are ignored (agent `shell_unix.go`); PTY output goes out in chunks of at most
//! 1024 bytes that never split a UTF-8 sequence. Done when the PTY closes.

use std::path::PathBuf;
use std::sync::Arc;

use postern_protocol::SizeData;

use crate::pacing::CHUNK_SIZE;
use crate::plugins::pty::Pty;
use crate::plugins::{PluginInput, PluginIo, PluginOutput};

/// Runs the PTY plugin until the child's side of the PTY closes.
pub(crate) async fn run(
    io: PluginIo,
    shell: PathBuf,
    command: Option<String>,
    size: SizeData,
    env: Vec<(String, String)>,
) {
    let args: Vec<&str> = match &command {
        Some(command) => vec!["-c", command.as_str()],
        None => Vec::new(),
    };
    let program = if command.is_some() {
        PathBuf::from("/bin/sh")
    } else {
        shell
    };
    let (pty, mut child) = match Pty::spawn(&program, &args, size, &env) {
        Ok((pty, child)) => (Arc::new(pty), child),
        Err(err) => {
            tracing::warn!(%err, program = %program.display(), "cannot start the PTY");
            io.done(Err(format!("cannot start {}: {err}", program.display())))
                .await;
            return;
        }
    };
    let PluginIo { mut input, output } = io;
    let writer = {
        let pty = Arc::clone(&pty);
        async move {
            while let Some(item) = input.recv().await {
                let result = match item {
                    PluginInput::Data(bytes) => pty.write_all(&bytes).await,
                    PluginInput::Size(size) => pty.resize(size),
                    // Shells ignore every flag (SPEC.md §3.7).
                    PluginInput::Flag(_) => Ok(()),
                };
                if let Err(err) = result {
                    tracing::debug!(%err, "PTY input failed");
                }
            }
        }
    };
    let reader = async {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut held = 0usize;
        loop {
            let n = match pty.read(&mut buf[held..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let filled = held + n;
            let send = utf8_boundary(&buf[..filled]);
            if send > 0
                && output
                    .send(PluginOutput::Stdout(buf[..send].to_vec()))
                    .await
                    .is_err()
            {
                return;
            }
            buf.copy_within(send..filled, 0);
            held = filled - send;
        }
        if held > 0 {
            let _ = output
                .send(PluginOutput::Stdout(buf[..held].to_vec()))
                .await;
        }
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
    let code = child.wait().await.unwrap_or(-1);
    tracing::debug!(code, "PTY child exited");
    let _ = output.send(PluginOutput::Done(Ok(()))).await;
}

/// How many leading bytes of `buf` to send now: all of it, except an incomplete UTF-8
/// sequence at the end, which waits for the next read (agent `shell.go` keeps output valid
/// UTF-8). Invalid bytes are sent as they are.
fn utf8_boundary(buf: &[u8]) -> usize {
    match std::str::from_utf8(buf) {
        Ok(_) => buf.len(),
        Err(err) if err.error_len().is_none() && buf.len() - err.valid_up_to() < 4 => {
            err.valid_up_to()
        }
        Err(_) => buf.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_an_incomplete_sequence() {
        let euro = "€".as_bytes();
        let mut buf = b"ab".to_vec();
        buf.extend_from_slice(&euro[..2]);
        assert_eq!(utf8_boundary(&buf), 2);
        buf.push(euro[2]);
        assert_eq!(utf8_boundary(&buf), 5);
    }

    #[test]
    fn sends_invalid_bytes_as_they_are() {
        assert_eq!(utf8_boundary(&[b'a', 0xff, b'b']), 3);
    }
}
