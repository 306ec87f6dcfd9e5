//! `postern exec` through the `Postern-Command` document (`postern setup`): stdout and stderr
//! apart, the exit status from the agent's ExitCode message, no in-band marker, output read by
//! the agent without pacing. Used when the session needs no input and no terminal; without the
//! document in the target's account and region, the caller falls back to
//! AWS-StartInteractiveCommand with the exit marker.
//!
//! How postern learns that the document exists: it asks StartSession for it and falls back
//! when the service answers `InvalidDocument` (no such document) or `AccessDeniedException`
//! (the role may not start it). With the document, that costs nothing; without it, one failed
//! StartSession (one round trip). A DescribeDocument first would cost a round trip on every
//! run (or a cache file to keep, and `ssm:DescribeDocument` in the role's policy) and could
//! still be wrong by the time StartSession runs.

use std::collections::HashMap;
use std::os::fd::AsRawFd;

use crate::aws::{AwsError, SessionCredentials, SsmClient, StartSessionRequest};
use crate::cli::commands::session::{ExecPlan, Mode};
use crate::cli::commands::setup::POSTERN_COMMAND_DOCUMENT;
use crate::term;

/// Starts `mode`'s command through `Postern-Command` when it applies and exists: the session's
/// credentials and the mode it runs in (its plan naming the document). `None` when the caller
/// should start its usual session: not applicable (a terminal, input to deliver, a document of
/// the user's), or the document is absent or not allowed.
pub(crate) async fn try_start(
    ssm: &SsmClient,
    mode: &Mode,
    reason: Option<&str>,
    target: &str,
) -> Result<Option<(SessionCredentials, Mode)>, AwsError> {
    let Mode::Exec {
        raw,
        tty,
        plan: exec,
    } = mode
    else {
        return Ok(None);
    };
    if *tty || exec.document.is_some() || !stdin_is_empty() {
        return Ok(None);
    }
    let request = request(target, &exec.command_line, reason);
    // Through the ledger, as every start: a Ctrl-C meanwhile leaves no session open.
    match crate::transport::lifecycle::start(ssm, &request).await {
        Ok(credentials) => {
            tracing::debug!("started through {POSTERN_COMMAND_DOCUMENT}");
            crate::audit_trail::note_document(POSTERN_COMMAND_DOCUMENT);
            let plan = ExecPlan {
                document: Some(POSTERN_COMMAND_DOCUMENT.to_owned()),
                ..(**exec).clone()
            };
            Ok(Some((
                credentials,
                Mode::Exec {
                    raw: *raw,
                    tty: false,
                    plan: Box::new(plan),
                },
            )))
        }
        Err(err) if falls_back(&err) => {
            tracing::debug!(
                code = err.code().unwrap_or_default(),
                "{POSTERN_COMMAND_DOCUMENT} not usable here; AWS-StartInteractiveCommand instead"
            );
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// The StartSession request running `command_line` on `target` through `Postern-Command`.
pub(crate) fn request(
    target: &str,
    command_line: &str,
    reason: Option<&str>,
) -> StartSessionRequest {
    StartSessionRequest {
        target: target.to_owned(),
        document_name: Some(POSTERN_COMMAND_DOCUMENT.to_owned()),
        parameters: HashMap::from([("command".to_owned(), vec![command_line.to_owned()])]),
        reason: reason.map(str::to_owned),
    }
}

/// Whether StartSession's error means "not this document here" rather than "not this target".
pub(crate) fn falls_back(err: &AwsError) -> bool {
    matches!(
        err.code(),
        Some("InvalidDocument" | "AccessDeniedException" | "InvalidParameters")
    )
}

/// Whether standard input has nothing to give the command: closed, `/dev/null` (a character
/// device that is not a terminal) or an empty regular file. A pipe, socket or non-empty file
/// may carry input, which a NonInteractiveCommands session cannot deliver (SPEC.md §6.4).
fn stdin_is_empty() -> bool {
    let fd = std::io::stdin().as_raw_fd();
    if term::is_terminal(fd) {
        return false;
    }
    match nix::sys::stat::fstat(fd) {
        Err(_) => true,
        Ok(stat) => {
            let kind = nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode)
                & nix::sys::stat::SFlag::S_IFMT;
            kind == nix::sys::stat::SFlag::S_IFCHR
                || (kind == nix::sys::stat::SFlag::S_IFREG && stat.st_size == 0)
        }
    }
}
