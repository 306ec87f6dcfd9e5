//! The non-interactive command plugin (`NonInteractiveCommands`): `sh -c <command>` without a
//! PTY. With separate streams stdout goes out as Output and stderr as StdErr while the command
//! runs, then the ExitCode message; without, the combined output goes out after the command
//! finishes and there is no exit code (SPEC.md §6.4, agent `shell_unix.go`).
//!
//! Input: only bytes 0x03 (SIGINT) and 0x1c (SIGQUIT) matter; sizes and other bytes are ignored.

use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::pacing::CHUNK_SIZE;
use crate::plugins::{PluginInput, PluginIo, PluginOutput};

/// Runs the command until it exits.
pub(crate) async fn run(io: PluginIo, command: String, separate_streams: bool) {
    let PluginIo { mut input, output } = io;
    let mut cmd = Command::new(SHELL);
    cmd.arg("-c")
        .arg(&command)
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
    loop {
        match source.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                if output.send(wrap(buf[..n].to_vec())).await.is_err() {
                    return false;
                }
            }
        }
    }
}

async fn fail(output: &tokio::sync::mpsc::Sender<PluginOutput>, reason: &str) {
    tracing::warn!(reason, "non-interactive command failed to start");
    let _ = output
        .send(PluginOutput::Done(Err(reason.to_owned())))
        .await;
}

const SHELL: &str = "/bin/sh";
