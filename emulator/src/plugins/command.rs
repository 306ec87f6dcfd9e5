//! The non-interactive command plugin (`NonInteractiveCommands`): `sh -c <command>` without a
//! PTY. With separate streams stdout goes out as Output and stderr as StdErr while the command
//! runs, then the ExitCode message; without, the combined output goes out after the command
//! finishes and there is no exit code (SPEC.md §6.4, agent `shell_unix.go`).
//!
//! Input: only bytes 0x03 (SIGINT) and 0x1c (SIGQUIT) matter; sizes and other bytes are ignored.
//!
//! Separate streams are read from pipes with no pause between reads (agent
//! `agent/session/shell/shell.go` `setupRoutineToWriteCmdPipelineOutput`: no sleep, unlike
//! `writePump`), and each read goes through the agent's UTF-8 pass ([`AgentUtf8`]); the driver
//! does not pace them. ExitCode follows once both pipes have closed and the command has exited
//! (`processCommandsWithOutputStreamSeparate`).

use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::pacing::CHUNK_SIZE;
use crate::plugins::{PluginInput, PluginIo, PluginOutput};

/// Runs the command until it exits.
pub(crate) async fn run(
    io: PluginIo,
    command: String,
    separate_streams: bool,
    env: Vec<(String, String)>,
) {
    let PluginIo { mut input, output } = io;
    let mut cmd = Command::new(SHELL);
    cmd.arg("-c")
        .arg(&command)
        .envs(env)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let combined = if separate_streams {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        None
    } else {
        match nix::unistd::pipe() {
            Ok((read, write)) => {
                let both = write.try_clone().map(|copy| (copy, write));
                match both {
                    Ok((out, err)) => {
                        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
                        Some(read)
                    }
                    Err(err) => {
                        fail(&output, &format!("cannot create a pipe: {err}")).await;
                        return;
                    }
                }
            }
            Err(err) => {
                fail(&output, &format!("cannot create a pipe: {err}")).await;
                return;
            }
        }
    };
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            fail(&output, &format!("cannot run the command: {err}")).await;
            return;
        }
    };
    // The pipe's write ends live in `cmd` until it is dropped; the reader needs EOF.
    drop(cmd);
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let signals = async {
        while let Some(item) = input.recv().await {
            if let (PluginInput::Data(bytes), Some(group)) = (item, group) {
                let signal = bytes.iter().find_map(|b| match b {
                    0x03 => Some(Signal::SIGINT),
                    0x1c => Some(Signal::SIGQUIT),
                    _ => None,
                });
                if let Some(signal) = signal {
                    // The process may have exited already.
                    let _ = killpg(group, signal);
                }
            }
        }
        std::future::pending::<()>().await;
    };
    let streams = async {
        if let Some(read) = combined {
            let mut all = Vec::new();
            let mut file = tokio::fs::File::from_std(std::fs::File::from(read));
            let _ = file.read_to_end(&mut all).await;
            let status = child.wait().await;
            for chunk in all.chunks(CHUNK_SIZE) {
                if output
                    .send(PluginOutput::Stdout(chunk.to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            drop(status);
        } else {
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            let (out_done, err_done) = tokio::join!(
                pump(stdout, &output, PluginOutput::Stdout),
                pump(stderr, &output, PluginOutput::Stderr),
            );
            if !(out_done && err_done) {
                return;
            }
            let code = child
                .wait()
                .await
                .map_or(-1, |status| status.code().unwrap_or(-1));
            tracing::debug!(code, "command exited");
            if output.send(PluginOutput::ExitCode(code)).await.is_err() {
                return;
            }
        }
        let _ = output.send(PluginOutput::Done(Ok(()))).await;
    };
    tokio::select! {
        () = streams => {}
        () = signals => {}
    }
}

/// Copies one pipe to the driver; false when the driver is gone.
async fn pump<R: AsyncRead + Unpin>(
    source: Option<R>,
    output: &tokio::sync::mpsc::Sender<PluginOutput>,
    wrap: fn(Vec<u8>) -> PluginOutput,
) -> bool {
    let Some(mut source) = source else {
        return true;
    };
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut pass = AgentUtf8::default();
    loop {
        match source.read(&mut buf).await {
            // What the pass still holds is never sent (the agent drops it at EOF).
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                let processed = pass.feed(&buf[..n]);
                // The agent sends even an empty result; an empty stream message is a protocol
                // violation for our core, and carries nothing, so it is left out.
                if !processed.is_empty() && output.send(wrap(processed)).await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// The agent's UTF-8 pass over separate-stream output (agent `agent/session/shell/shell.go`
/// `processStdoutData`, Go's `bufio.Reader.ReadRune` and `utf8.RuneError`): the bytes held from
/// the previous read and the new ones are decoded rune by rune. A rune that decodes to U+FFFD
/// (an invalid byte, size 1, or a valid EF BF BD sequence, size 3) starting fewer than 4 bytes
/// before the end stops the pass: those last bytes are held for the next read, and lost if none
/// comes (EOF). Elsewhere such a rune sends only its first byte: an invalid byte passes, a real
/// U+FFFD shrinks to EF. Other runes pass unchanged.
#[derive(Debug, Default)]
pub(crate) struct AgentUtf8 {
    held: Vec<u8>,
}

impl AgentUtf8 {
    /// Returns what the agent would send for `data`.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut self.held);
        bytes.extend_from_slice(data);
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let (replacement, len) = decode_rune(&bytes[i..]);
            if replacement {
                if bytes.len() - i < UTF_MAX {
                    self.held = bytes[i..].to_vec();
                    break;
                }
                out.push(bytes[i]);
            } else {
                out.extend_from_slice(&bytes[i..i + len]);
            }
            i += len;
        }
        out
    }
}

/// Decodes the rune at the start of `bytes` as Go's `utf8.DecodeRune` does: whether it is
/// U+FFFD (`RuneError`: invalid, or a literal U+FFFD) and its length (1 when invalid).
fn decode_rune(bytes: &[u8]) -> (bool, usize) {
    let want = match bytes[0] {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return (true, 1),
    };
    match bytes.get(..want).map(std::str::from_utf8) {
        Some(Ok(text)) => (text == "\u{fffd}", want),
        _ => (true, 1),
    }
}

/// `utf8.UTFMax`.
const UTF_MAX: usize = 4;

async fn fail(output: &tokio::sync::mpsc::Sender<PluginOutput>, reason: &str) {
    tracing::warn!(reason, "non-interactive command failed to start");
    let _ = output
        .send(PluginOutput::Done(Err(reason.to_owned())))
        .await;
}

const SHELL: &str = "/bin/sh";

#[cfg(test)]
mod tests {
    use super::*;

    fn through(chunks: &[&[u8]]) -> Vec<u8> {
        let mut pass = AgentUtf8::default();
        chunks.iter().flat_map(|c| pass.feed(c)).collect()
    }

    #[test]
    fn valid_text_passes_unchanged_across_reads() {
        let euro = "a€b".as_bytes();
        assert_eq!(
            through(&[&euro[..2], &euro[2..], b"tail"]),
            b"a\xe2\x82\xacbtail"
        );
    }

    #[test]
    fn a_real_replacement_character_shrinks_to_one_byte() {
        assert_eq!(through(&[b"x\xef\xbf\xbdyyyy"]), b"x\xefyyyy");
    }

    #[test]
    fn invalid_bytes_pass_unless_near_the_end_of_the_stream() {
        assert_eq!(through(&[b"\xff\xfeabcd"]), b"\xff\xfeabcd");
        // Held at the end of a read, sent with the next one.
        assert_eq!(through(&[b"ab\xff", b"cdef"]), b"ab\xffcdef");
        // Never sent at EOF: the invalid byte and what follows it within the last 3 bytes.
        assert_eq!(through(&[b"data\xffok"]), b"data");
        assert_eq!(through(&[b"data\xef\xbf\xbd"]), b"data");
        // An incomplete sequence at EOF is lost too.
        assert_eq!(through(&[b"data\xe2\x82"]), b"data");
    }
}
