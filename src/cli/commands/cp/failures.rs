//! The errors a copy meets, in the user's terms, each of a kind with a documented exit code
//! (README "Exit codes").

use std::path::Path;

use crate::cli::commands::cp::script::Probe;
use crate::report::{ErrorKind, ExpectedError};

/// What a probe said about `path` when it is not something to copy; `upload`: the path is the
/// destination.
pub(crate) fn probe_refused(probe: &Probe, path: &str, described: &str) -> ExpectedError {
    let path = crate::term::escape(path);
    let (kind, what, hint) = match probe {
        Probe::Missing => (
            ErrorKind::RemoteFile,
            format!("remote file {path} does not exist"),
            "check the path (relative paths start in the session user's home directory)",
        ),
        Probe::Directory => (
            ErrorKind::RemoteFile,
            format!("remote path {path} is a directory"),
            "add -r to copy a directory",
        ),
        Probe::Special => (
            ErrorKind::RemoteFile,
            format!("remote path {path} is not a regular file"),
            "postern cp copies regular files only",
        ),
        Probe::Denied => (
            ErrorKind::RemoteFile,
            format!("remote path {path} cannot be read or written by the session's user"),
            "Session Manager runs as ssm-user (or the run-as user of the preferences): check \
             the permissions, or copy through a path that user may use",
        ),
        Probe::Exists => (
            ErrorKind::RemoteFile,
            format!("remote file {path} already exists"),
            "add --force to replace a file (directories are never replaced: remove it first)",
        ),
        Probe::NoParent => (
            ErrorKind::RemoteFile,
            format!("the remote directory of {path} does not exist"),
            "create it first (`postern exec TARGET -- mkdir -p DIR`)",
        ),
        Probe::NoTool(tool) => (
            ErrorKind::Unsupported,
            format!(
                "the instance has no `{}`, which postern cp needs",
                crate::term::escape(tool)
            ),
            "postern cp needs a POSIX shell with dd, base64, head and sha256sum (or shasum or \
             openssl), and tar for -r; Windows instances are not supported",
        ),
        Probe::File(_)
        | Probe::Ready { .. }
        | Probe::Packed(_)
        | Probe::NotDirectory
        | Probe::Clear => (
            ErrorKind::RemoteFile,
            format!("remote path {path} was refused"),
            "this is a bug in postern",
        ),
    };
    ExpectedError::new(kind, what)
        .target(described.to_owned())
        .hint(hint)
}

/// The target is a Windows instance (as the index says), refused before any session.
pub(crate) fn windows(target: &str, platform: &str) -> ExpectedError {
    ExpectedError::new(
        ErrorKind::Unsupported,
        format!(
            "postern cp does not copy to or from Windows instances: {} runs {}",
            crate::term::escape(target),
            crate::term::escape(platform)
        ),
    )
    .hint(
        "postern cp needs a POSIX shell with dd and base64 on the instance; on Windows, \
         forward a port to a file service (`postern forward`) or use PowerShell through \
         `postern exec`",
    )
}

/// A probe or commit script printed nothing postern understands.
pub(crate) fn unexpected_answer(what: &str, stderr: &str, described: &str) -> ExpectedError {
    let detail = if stderr.is_empty() {
        "it printed nothing postern understands".to_owned()
    } else {
        format!("its error output: {}", crate::term::escape(stderr))
    };
    ExpectedError::new(
        ErrorKind::Unsupported,
        format!("the instance could not {what}: {detail}"),
    )
    .target(described.to_owned())
    .hint(
        "postern cp needs a POSIX shell with dd, base64, head and sha256sum on the instance; \
         Windows instances are not supported",
    )
}

/// A range session ended without success.
pub(crate) fn range_failed(
    what: &str,
    status: Option<i32>,
    stderr: &str,
    described: &str,
) -> ExpectedError {
    let status = status.map_or("no exit status".to_owned(), |s| format!("exit status {s}"));
    let detail = if stderr.is_empty() {
        String::new()
    } else {
        format!(": {}", crate::term::escape(stderr))
    };
    ExpectedError::new(
        ErrorKind::ConnectionLost,
        format!("{what} failed ({status}{detail})"),
    )
    .target(described.to_owned())
    .hint("run the copy again; a full disk on the instance also ends here")
}

/// A range's bytes arrived altered, in every session it took.
pub(crate) fn range_altered(
    what: &str,
    remote: &str,
    local: &str,
    described: &str,
) -> ExpectedError {
    ExpectedError::new(
        ErrorKind::CopyVerify,
        format!(
            "{what}: the bytes that arrived hash to {local}, the instance's range to {}",
            crate::term::escape(remote)
        ),
    )
    .target(described.to_owned())
    .hint("something between the instance and this machine alters data; nothing was replaced")
}

/// The instance could not write an upload's bytes: `error` is what `dd` said. A full disk
/// gets its own words.
pub(crate) fn remote_write(dest: &str, error: &str, described: &str) -> ExpectedError {
    let dest = crate::term::escape(dest);
    if error.contains("No space left on device") {
        return ExpectedError::new(
            ErrorKind::RemoteFile,
            format!("no space left on the instance for {dest}"),
        )
        .target(described.to_owned())
        .hint(
            "free space on the file system holding it (`postern exec TARGET -- df -h DIR` \
             shows how much there is), or copy to another path; nothing was replaced",
        );
    }
    ExpectedError::new(
        ErrorKind::RemoteFile,
        format!(
            "the instance could not write {dest}: {}",
            crate::term::escape(error)
        ),
    )
    .target(described.to_owned())
    .hint("check the destination's file system on the instance; nothing was replaced")
}

/// The copy's SHA-256 disagrees with the source's.
pub(crate) fn mismatch(expected: &str, got: &str, described: &str) -> ExpectedError {
    ExpectedError::new(
        ErrorKind::CopyVerify,
        format!("the copy's SHA-256 {got} differs from the source's {expected}"),
    )
    .target(described.to_owned())
    .hint("the file may have changed during the copy; nothing was replaced: run it again")
}

/// The local destination exists and `--force` was not given.
pub(crate) fn local_exists(path: &Path) -> ExpectedError {
    ExpectedError::new(
        ErrorKind::LocalFile,
        format!(
            "local file {} already exists",
            crate::term::escape(&path.display().to_string())
        ),
    )
    .hint("add --force to replace it")
}

/// A local source that is not a regular file: `what` it is instead, and what to do.
pub(crate) fn local_not_file(path: &Path, what: &str, hint: &str) -> ExpectedError {
    ExpectedError::new(
        ErrorKind::LocalFile,
        format!(
            "local path {} is {what}",
            crate::term::escape(&path.display().to_string())
        ),
    )
    .hint(hint)
}

/// A local file or directory postern could not use.
pub(crate) fn local_io(what: &str, path: &Path, err: std::io::Error) -> ExpectedError {
    ExpectedError::new(
        ErrorKind::LocalFile,
        format!(
            "could not {what} {}",
            crate::term::escape(&path.display().to_string())
        ),
    )
    .source(err)
}
