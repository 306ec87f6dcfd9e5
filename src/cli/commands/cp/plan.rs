//! `postern cp`'s arguments and their validated plan: which side is the instance, the
//! session count, the flags. No network call.

use std::path::PathBuf;

use clap_complete::ArgValueCandidates;

use crate::cli::commands::session::{SessionArgs, SessionPlan};
use crate::cli::common::CommonArgs;
use crate::report::{ErrorKind, ExpectedError};

/// `postern cp`.
#[derive(clap::Args, Debug, Clone)]
pub struct CpArgs {
    /// What to copy: `TARGET:REMOTE` (download), a local path, or `-` (standard input).
    /// TARGET is an instance id, Name tag, NAME@ACCOUNT-ALIAS, private IP or DNS name.
    // Its own id: the global `--source` (a source identity) is `source` too, and clap would
    // fill both from this positional.
    #[arg(id = "copy_source", value_name = "SOURCE", add = ArgValueCandidates::new(crate::cli::commands::completions::targets))]
    pub source: String,

    /// Where to: a local path (`-`: standard output) or `TARGET:REMOTE` (upload). A directory
    /// receives the file under its own name.
    #[arg(value_name = "DEST")]
    pub dest: String,

    /// Parallel sessions, each copying one byte range: a number, or `auto` (4).
    #[arg(long, value_name = "N|auto", default_value = "auto")]
    pub sessions: String,

    /// Replace an existing destination file.
    #[arg(short = 'f', long)]
    pub force: bool,

    /// Keep the source's permission bits and modification time.
    #[arg(short = 'p', long)]
    pub preserve: bool,

    /// Continue an interrupted copy: a download fetches only the ranges its kept partial file
    /// lacks (when the remote file is unchanged); an upload sends only the ranges not yet
    /// verified in the instance's temporary file (when the local file is unchanged).
    #[arg(long)]
    pub resume: bool,

    /// Copy a directory and everything below it (as a tar stream; `tar` on both sides). The
    /// destination directory must not exist yet (inside an existing directory, the source's
    /// name is used).
    #[arg(short = 'r', long)]
    pub recursive: bool,

    /// Session options.
    #[command(flatten)]
    pub session: SessionArgs,
}

/// Which way a copy goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the instance's `remote` to `local`.
    Download {
        /// The remote path.
        remote: String,
        /// The local path; `None`: standard output.
        local: Option<PathBuf>,
    },
    /// From `local` to the instance's `remote`.
    Upload {
        /// The local path; `None`: standard input.
        local: Option<PathBuf>,
        /// The remote path.
        remote: String,
    },
}

/// A validated copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpPlan {
    /// The session settings; the target is the instance side's TARGET.
    pub session: SessionPlan,
    /// Which way, and the paths.
    pub direction: Direction,
    /// Sessions in parallel.
    pub sessions: usize,
    /// Replace an existing destination.
    pub force: bool,
    /// Keep mode and mtime.
    pub preserve: bool,
    /// Directories too (`-r`).
    pub recursive: bool,
    /// Continue an interrupted copy.
    pub resume: bool,
    /// The instance's platform, when the index knew the target (set by resolution).
    pub platform: Option<String>,
}

impl CpPlan {
    pub(crate) fn new(common: &CommonArgs, args: CpArgs) -> Result<Self, ExpectedError> {
        let (target, direction) = match (split_remote(&args.source), split_remote(&args.dest)) {
            (Some((target, remote)), None) => (
                target,
                Direction::Download {
                    remote,
                    local: local_path(&args.dest),
                },
            ),
            (None, Some((target, remote))) => (
                target,
                Direction::Upload {
                    local: local_path(&args.source),
                    remote,
                },
            ),
            (Some(_), Some(_)) => {
                return Err(ExpectedError::new(
                    ErrorKind::Usage,
                    "postern cp copies between this machine and one instance, not between two",
                )
                .hint("copy to a local file first, then from it"));
            }
            (None, None) => {
                return Err(ExpectedError::new(
                    ErrorKind::Usage,
                    "neither side of postern cp names an instance",
                )
                .hint(
                    "write the instance side as TARGET:PATH, e.g. `postern cp web-1:/var/log/syslog \
                     .`; a local path with a colon can be written ./a:b",
                ));
            }
        };
        if args.resume && matches!(direction, Direction::Upload { local: None, .. }) {
            return Err(ExpectedError::new(
                ErrorKind::Usage,
                "--resume continues the upload of a file; standard input cannot be resumed",
            )
            .hint("write the stream to a file first, then upload the file"));
        }
        Ok(Self {
            session: SessionPlan::new(common, &target, &args.session)?,
            direction,
            sessions: parse_sessions(&args.sessions)?,
            force: args.force,
            preserve: args.preserve,
            recursive: args.recursive,
            resume: args.resume,
            platform: None,
        })
    }
}

/// `TARGET:PATH` as (TARGET, PATH); `None` for a local path (no colon, a colon after a slash,
/// or nothing before the colon). An empty PATH is the remote user's home directory (`.`).
fn split_remote(raw: &str) -> Option<(String, String)> {
    let (target, path) = raw.split_once(':')?;
    if target.is_empty() || target.contains('/') {
        return None;
    }
    let path = if path.is_empty() { "." } else { path };
    Some((target.to_owned(), path.to_owned()))
}

fn local_path(raw: &str) -> Option<PathBuf> {
    (raw != "-").then(|| PathBuf::from(raw))
}

fn parse_sessions(raw: &str) -> Result<usize, ExpectedError> {
    if raw == "auto" {
        return Ok(DEFAULT_SESSIONS);
    }
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_SESSIONS).contains(&n) => Ok(n),
        _ => Err(ExpectedError::new(
            ErrorKind::Usage,
            format!("--sessions `{raw}` must be `auto` or a number from 1 to {MAX_SESSIONS}"),
        )),
    }
}

/// Sessions under `--sessions auto`: enough to leave one session's pace behind, few enough
/// that a small instance's agent is not crowded with worker processes.
const DEFAULT_SESSIONS: usize = 4;
/// Upper bound for `--sessions`: each session is a StartSession call and an agent process.
const MAX_SESSIONS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_target_and_path() {
        assert_eq!(
            split_remote("web-1:/var/log/syslog"),
            Some(("web-1".to_owned(), "/var/log/syslog".to_owned()))
        );
        assert_eq!(
            split_remote("i-0123456789abcdef0:"),
            Some(("i-0123456789abcdef0".to_owned(), ".".to_owned()))
        );
        assert_eq!(split_remote("./a:b"), None);
        assert_eq!(split_remote(":x"), None);
        assert_eq!(split_remote("plain"), None);
    }

    #[test]
    fn sessions_are_auto_or_a_bounded_number() {
        assert_eq!(parse_sessions("auto").unwrap(), DEFAULT_SESSIONS);
        assert_eq!(parse_sessions("8").unwrap(), 8);
        assert!(parse_sessions("0").is_err());
        assert!(parse_sessions("many").is_err());
    }
}
