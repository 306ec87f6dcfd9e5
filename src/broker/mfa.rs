//! Where MFA codes come from: the terminal (`/dev/tty`, so pipes stay untouched), or a command
//! (`--mfa-command`, e.g. `ykman oath accounts code -s aws`), which also scripts tests.

use std::io::{BufRead, BufReader, Write};

use crate::broker::Secret;

/// A source of one-time MFA codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MfaSource {
    /// Ask on the controlling terminal.
    Terminal,
    /// Run `sh -c COMMAND` (with `POSTERN_MFA_SERIAL` set) and read the code from its stdout.
    Command(String),
}

/// No code could be had.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// No terminal to ask on.
    #[error("no terminal to ask for the MFA code on")]
    NoTerminal(#[source] std::io::Error),
    /// The command could not run or failed.
    #[error("the MFA command `{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// What went wrong.
        reason: String,
    },
    /// What was typed or printed is not a six-digit code.
    #[error("the MFA code must be six digits")]
    Malformed,
}

impl MfaSource {
    /// One code for the device `serial`.
    pub async fn code(&self, serial: &str) -> Result<Secret, MfaError> {
        let text = match self {
            Self::Terminal => {
                let serial = serial.to_owned();
                tokio::task::spawn_blocking(move || ask_terminal(&serial))
                    .await
                    .map_err(|e| MfaError::NoTerminal(std::io::Error::other(e)))??
            }
            Self::Command(command) => run_command(command, serial).await?,
        };
        let code = text.trim();
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Secret::new(code))
        } else {
            Err(MfaError::Malformed)
        }
    }
}

fn ask_terminal(serial: &str) -> Result<String, MfaError> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(MfaError::NoTerminal)?;
    let mut writer = &tty;
    write!(writer, "MFA code for {serial}: ").map_err(MfaError::NoTerminal)?;
    writer.flush().map_err(MfaError::NoTerminal)?;
    let mut line = String::new();
    BufReader::new(&tty)
        .read_line(&mut line)
        .map_err(MfaError::NoTerminal)?;
    Ok(line)
}

async fn run_command(command: &str, serial: &str) -> Result<String, MfaError> {
    let failed = |reason: String| MfaError::Command {
        command: command.to_owned(),
        reason,
    };
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("POSTERN_MFA_SERIAL", serial)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!("it exited with {}", output.status)));
    }
    String::from_utf8(output.stdout).map_err(|_| MfaError::Malformed)
}
