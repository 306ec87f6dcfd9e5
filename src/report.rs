//! The one place that prints user-facing errors and maps them to exit codes (ripgrep
//! `crates/core/messages.rs`, nextest `nextest-metadata/src/exit_codes.rs`).
//!
//! Every error states what failed in the user's terms, the target, the cause chain under
//! "Caused by:", and a `hint:` when there is a next step; never a secret and never a `{:?}`
//! dump. Callers restore the terminal before reporting.
//!
//! Messages carry text from AWS or an instance (service messages, CustomerMessage, close
//! reasons, agent versions, names): every line printed here is escaped on its way out
//! ([`crate::term::escape_text`]), so no control character but a newline or tab reaches the
//! terminal from a message.

use std::error::Error as StdError;
use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use crate::term::{escape, escape_text};

/// Anticipated failures, each with a documented exit code (see [`ErrorKind::exit_code`]).
#[derive(Debug)]
pub struct ExpectedError {
    kind: ErrorKind,
    what: String,
    target: Option<String>,
    hint: Option<String>,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

/// The anticipated failure classes. Exit codes are part of the CLI's contract (README,
/// "Exit codes"): they sit high so that `postern exec` rarely confuses them with the remote
/// command's own status, as ssh does with 255.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad command line (clap uses the same code).
    Usage,
    /// The session needs a feature postern lacks (an agent too old for the request).
    Unsupported,
    /// A KMS-encrypted session failed: no data key, keys that disagree, or a message that
    /// did not decrypt.
    Encryption,
    /// An AWS call failed for another reason (throttling, invalid document, server error).
    AwsRequest,
    /// `postern exec`: the session ended before the command reported its status.
    NoExitStatus,
    /// AWS configuration or credentials: no region, unknown profile, expired credentials.
    AwsConfig,
    /// The target's SSM agent is not connected (or the target does not exist there).
    TargetNotConnected,
    /// Missing IAM permission.
    AccessDenied,
    /// The SSM endpoint or the data-channel endpoint could not be reached.
    EndpointUnreachable,
    /// The agent did not start the session in time.
    HandshakeTimeout,
    /// The data channel broke or the session failed after it started.
    ConnectionLost,
    /// A local port could not be listened on (in use, not permitted, no such address).
    LocalPort,
    /// The target matched no instance of the index, or several.
    TargetUnresolved,
    /// The postern configuration file is missing or invalid.
    Config,
    /// A guardrail refused: production confirmation, reason, or source identity.
    Guardrail,
    /// `postern cp`: the remote path is missing, unreadable, a directory, not a regular file,
    /// or (uploads) exists without `--force`.
    RemoteFile,
    /// `postern cp`: the local path exists without `--force`, is a directory, or cannot be
    /// read or written.
    LocalFile,
    /// `postern cp`: the copy's SHA-256 differs from the source's.
    CopyVerify,
}

impl ErrorKind {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Usage => exit_codes::USAGE,
            Self::Unsupported => exit_codes::UNSUPPORTED,
            Self::Encryption => exit_codes::ENCRYPTION,
            Self::AwsRequest => exit_codes::AWS_REQUEST,
            Self::NoExitStatus => exit_codes::NO_EXIT_STATUS,
            Self::AwsConfig => exit_codes::AWS_CONFIG,
            Self::TargetNotConnected => exit_codes::TARGET_NOT_CONNECTED,
            Self::AccessDenied => exit_codes::ACCESS_DENIED,
            Self::EndpointUnreachable => exit_codes::ENDPOINT_UNREACHABLE,
            Self::HandshakeTimeout => exit_codes::HANDSHAKE_TIMEOUT,
            Self::ConnectionLost => exit_codes::CONNECTION_LOST,
            Self::LocalPort => exit_codes::LOCAL_PORT,
            Self::TargetUnresolved => exit_codes::TARGET_UNRESOLVED,
            Self::Config => exit_codes::CONFIG,
            Self::Guardrail => exit_codes::GUARDRAIL,
            Self::RemoteFile => exit_codes::REMOTE_FILE,
            Self::LocalFile => exit_codes::LOCAL_FILE,
            Self::CopyVerify => exit_codes::COPY_VERIFY,
        }
    }
}

impl ExpectedError {
    /// An error of `kind`; `what` says what failed, in the user's terms.
    pub fn new(kind: ErrorKind, what: impl Into<String>) -> Self {
        Self {
            kind,
            what: what.into(),
            target: None,
            hint: None,
            source: None,
        }
    }

    /// Names the target (instance, region, profile).
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Adds the next step for the user.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attaches the cause.
    pub fn source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The same error said of `context` (`tunnel db (…/tunnels.toml): …`): kind, target,
    /// hint and cause are kept.
    pub fn within(mut self, context: impl fmt::Display) -> Self {
        self.what = format!("{context}: {}", self.what);
        self
    }
}

impl fmt::Display for ExpectedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)?;
        if let Some(target) = &self.target {
            write!(f, " ({target})")?;
        }
        Ok(())
    }
}

impl StdError for ExpectedError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Prints `err` to stderr and returns its exit code: an [`ExpectedError`]'s documented code,
/// else [`exit_codes::UNEXPECTED`].
pub fn error(err: &anyhow::Error) -> ExitCode {
    if output_closed(err) {
        // `postern list | head -1`: the reader has all it wanted; nothing to report.
        return ExitCode::from(exit_codes::OUTPUT_CLOSED);
    }
    let text = render(err);
    let mut stderr = std::io::stderr().lock();
    // If stderr itself is gone there is nobody left to tell.
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
    ExitCode::from(code_of(err))
}

/// `duration` for a person: whole seconds from one second up (`1m 7s`), whole milliseconds
/// below (`250ms`), not humantime's every unit down to nanoseconds (`1m 7s 579ms 539us 735ns`).
pub fn human_duration(duration: std::time::Duration) -> String {
    let rounded = if duration >= std::time::Duration::from_secs(1) {
        std::time::Duration::from_secs(
            duration.as_secs() + u64::from(duration.subsec_millis() >= 500),
        )
    } else {
        std::time::Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    };
    humantime::format_duration(rounded).to_string()
}

/// The exit code for `err`.
pub fn code_of(err: &anyhow::Error) -> u8 {
    if output_closed(err) {
        return exit_codes::OUTPUT_CLOSED;
    }
    err.downcast_ref::<ExpectedError>()
        .map_or(exit_codes::UNEXPECTED, |e| e.kind.exit_code())
}

/// Whether `err` is a write to standard output that found its reader gone (EPIPE: Rust ignores
/// SIGPIPE, so a closed pipe is an error, not a signal): an error of no documented kind whose
/// cause is a broken pipe, while standard output is a pipe nobody reads any more. A broken
/// pipe of another kind (a supervisor gone, a child process) is reported as the error it is.
fn output_closed(err: &anyhow::Error) -> bool {
    err.downcast_ref::<ExpectedError>().is_none()
        && err.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        })
        && stdout_reader_gone()
}

/// Whether standard output is a pipe whose reading end is closed (poll reports POLLERR).
fn stdout_reader_gone() -> bool {
    let stdout = std::io::stdout();
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&stdout),
        nix::poll::PollFlags::POLLOUT,
    )];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok()
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(nix::poll::PollFlags::POLLERR))
}

/// The full message for `err`, as [`error`] prints it: what failed, the causes and the hint,
/// each escaped.
pub fn render(err: &anyhow::Error) -> String {
    let mut out = format!("error: {}\n", escape_text(&err.to_string()));
    let mut causes: Vec<String> = Vec::new();
    for cause in err.chain().skip(1) {
        let text = escape_text(&cause.to_string()).into_owned();
        if !text.is_empty() && causes.last() != Some(&text) {
            causes.push(text);
        }
    }
    if !causes.is_empty() {
        out.push_str("Caused by:\n");
        for cause in causes {
            out.push_str("  ");
            out.push_str(&cause);
            out.push('\n');
        }
    }
    if let Some(hint) = err
        .downcast_ref::<ExpectedError>()
        .and_then(|e| e.hint.as_deref())
    {
        out.push_str("hint: ");
        out.push_str(&escape_text(hint));
        out.push('\n');
    }
    out
}

/// A one-line notice on stderr outside raw mode (e.g. why the service closed the session),
/// escaped.
pub fn notice(message: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(notice_line(message).as_bytes());
}

/// A one-line notice inside a raw-mode terminal session: on stderr, on a line of its own,
/// bracketed so it stands apart from the remote screen; escaped, newlines too (the terminal
/// is raw: a bare newline would not return the cursor).
pub fn raw_notice(message: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(raw_notice_line(message).as_bytes());
    let _ = stderr.flush();
}

/// An error and its causes on one line, `a: b: c`, for notices and summaries, which have no
/// "Caused by:" block; a cause whose text the line already shows is left out.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let part = e.to_string();
        if !part.is_empty() && !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        current = e.source();
    }
    text
}

/// What [`notice`] prints.
fn notice_line(message: &str) -> String {
    format!("postern: {}\n", escape_text(message))
}

/// What [`raw_notice`] prints.
fn raw_notice_line(message: &str) -> String {
    format!("\r\n[postern: {}]\r\n", escape(message))
}

/// Exit codes. `postern exec` otherwise exits with the remote command's status, and a run
/// ended by a signal with 128 + its number, as shells do.
pub mod exit_codes {
    /// Success (or the remote command's status 0).
    pub const SUCCESS: u8 = 0;
    /// An unexpected error (a bug, or a local I/O failure).
    pub const UNEXPECTED: u8 = 1;
    /// Bad command line.
    pub const USAGE: u8 = 2;
    /// `postern cp`: the copy's SHA-256 differs from the source's (nothing was replaced).
    pub const COPY_VERIFY: u8 = 236;
    /// `postern cp`: the local path exists (no `--force`), is a directory, or cannot be used.
    pub const LOCAL_FILE: u8 = 237;
    /// `postern cp`: the remote path is missing, unreadable, a directory or not a regular
    /// file, or (uploads) exists without `--force`.
    pub const REMOTE_FILE: u8 = 238;
    /// Standard output was closed (128 + SIGPIPE), e.g. `postern exec … | head`.
    pub const OUTPUT_CLOSED: u8 = 141;
    /// `postern exec` on several instances: some could not be started (no session, or the
    /// command never began); the summary lists them.
    pub const SOME_NOT_STARTED: u8 = 239;
    /// The postern configuration file is missing or invalid.
    pub const CONFIG: u8 = 240;
    /// A guardrail refused (production confirmation, reason, source identity).
    pub const GUARDRAIL: u8 = 241;
    /// `postern exec` on several instances: every one ran, and some command exited non-zero
    /// or its session broke.
    pub const SOME_FAILED: u8 = 242;
    /// A KMS-encrypted session failed (GenerateDataKey, disagreeing keys, undecryptable data).
    pub const ENCRYPTION: u8 = 243;
    /// The target matched no instance of the index, or several (listed in the message).
    pub const TARGET_UNRESOLVED: u8 = 244;
    /// The session needs a feature postern lacks (an agent too old for what was asked).
    pub const UNSUPPORTED: u8 = 245;
    /// Another AWS service error.
    pub const AWS_REQUEST: u8 = 246;
    /// `postern exec`: the session ended before the command's status arrived.
    pub const NO_EXIT_STATUS: u8 = 247;
    /// AWS configuration or credentials.
    pub const AWS_CONFIG: u8 = 248;
    /// `postern forward`: a local port could not be listened on.
    pub const LOCAL_PORT: u8 = 249;
    /// The target is not connected to Session Manager.
    pub const TARGET_NOT_CONNECTED: u8 = 250;
    /// Access denied by IAM.
    pub const ACCESS_DENIED: u8 = 251;
    /// The SSM or data-channel endpoint could not be reached.
    pub const ENDPOINT_UNREACHABLE: u8 = 252;
    /// The agent did not start the session in time.
    pub const HANDSHAKE_TIMEOUT: u8 = 253;
    /// The data channel broke, or the session failed after it started.
    pub const CONNECTION_LOST: u8 = 254;

    /// The status of a process ended by `signal`, as shells report it: 128 + the signal.
    pub fn for_signal(signal: i32) -> u8 {
        u8::try_from(128 + signal).unwrap_or(UNEXPECTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Leaf;
    impl fmt::Display for Leaf {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("connection refused (os error 111)")
        }
    }
    impl StdError for Leaf {}

    #[test]
    fn renders_what_target_causes_and_hint() {
        let err = anyhow::Error::new(
            ExpectedError::new(
                ErrorKind::EndpointUnreachable,
                "could not reach the SSM endpoint",
            )
            .target("i-0abc in us-east-1")
            .hint("check --endpoint-url")
            .source(Leaf),
        );
        assert_eq!(
            render(&err),
            "error: could not reach the SSM endpoint (i-0abc in us-east-1)\n\
             Caused by:\n  connection refused (os error 111)\n\
             hint: check --endpoint-url\n"
        );
        assert_eq!(code_of(&err), 252);
    }

    #[test]
    fn an_error_within_a_context_keeps_its_hint_and_code() {
        let err = anyhow::Error::new(
            ExpectedError::new(ErrorKind::Usage, "-D 0.0.0.0:1080 needs credentials")
                .hint("set POSTERN_SOCKS_USER")
                .within("tunnel proxy (tunnels.toml)"),
        );
        assert_eq!(
            render(&err),
            "error: tunnel proxy (tunnels.toml): -D 0.0.0.0:1080 needs credentials\n\
             hint: set POSTERN_SOCKS_USER\n"
        );
        assert_eq!(code_of(&err), 2);
    }

    /// A service error carrying what a hostile instance or API could put in a message.
    #[derive(Debug)]
    struct Hostile;
    impl fmt::Display for Hostile {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("CustomerMessage: \x1b]0;owned\x07bye\x1b[2J\u{9b}31m\r\x7f")
        }
    }
    impl StdError for Hostile {}

    #[test]
    fn control_characters_from_aws_are_escaped_in_every_line() {
        let err = anyhow::Error::new(
            ExpectedError::new(
                ErrorKind::ConnectionLost,
                "the session on web\x1b[31m-1 ended",
            )
            .target("i-0abc, agent 3.3\x07")
            .hint("agent said \x1b[5m\nreconnect")
            .source(Hostile),
        );
        let text = render(&err);
        assert_eq!(
            text,
            "error: the session on web\\x1b[31m-1 ended (i-0abc, agent 3.3\\x07)\n\
             Caused by:\n  CustomerMessage: \\x1b]0;owned\\x07bye\\x1b[2J\\u{9b}31m\\r\\x7f\n\
             hint: agent said \\x1b[5m\nreconnect\n"
        );
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'));
    }

    #[test]
    fn notices_are_escaped_and_raw_ones_stay_on_one_line() {
        let message = "channel closed: \x1b[2Jbye\x07\nnext";
        assert_eq!(
            notice_line(message),
            "postern: channel closed: \\x1b[2Jbye\\x07\nnext\n"
        );
        assert_eq!(
            raw_notice_line(message),
            "\r\n[postern: channel closed: \\x1b[2Jbye\\x07\\nnext]\r\n"
        );
    }

    #[test]
    fn unexpected_errors_exit_one() {
        let err = anyhow::anyhow!("boom");
        assert_eq!(code_of(&err), exit_codes::UNEXPECTED);
        assert_eq!(render(&err), "error: boom\n");
    }

    #[test]
    fn exit_codes_are_distinct() {
        let kinds = [
            ErrorKind::Usage,
            ErrorKind::Unsupported,
            ErrorKind::Encryption,
            ErrorKind::AwsRequest,
            ErrorKind::NoExitStatus,
            ErrorKind::AwsConfig,
            ErrorKind::TargetNotConnected,
            ErrorKind::AccessDenied,
            ErrorKind::EndpointUnreachable,
            ErrorKind::HandshakeTimeout,
            ErrorKind::ConnectionLost,
            ErrorKind::LocalPort,
            ErrorKind::TargetUnresolved,
            ErrorKind::Config,
            ErrorKind::Guardrail,
            ErrorKind::RemoteFile,
            ErrorKind::LocalFile,
            ErrorKind::CopyVerify,
        ];
        let mut codes: Vec<u8> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
    }

    #[test]
    fn durations_read_as_a_person_writes_them() {
        assert_eq!(
            human_duration(std::time::Duration::from_nanos(67_579_539_735)),
            "1m 8s"
        );
        assert_eq!(
            human_duration(std::time::Duration::from_micros(250_400)),
            "250ms"
        );
    }

    #[test]
    fn a_broken_pipe_while_stdout_is_read_is_an_error() {
        // This test's standard output is read (the test harness): a broken pipe elsewhere
        // (a supervisor gone) is reported, not taken for `| head`.
        let elsewhere = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("could not hand the tunnels to their supervisor");
        assert_eq!(code_of(&elsewhere), exit_codes::UNEXPECTED);
    }
}
