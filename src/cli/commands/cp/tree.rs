//! `postern cp -r`: a directory as one tar file. Downloading, the instance packs it into a
//! temporary tar file, which is downloaded like any file (striped, SHA-256 checked) and
//! unpacked beside the destination before one rename; uploading, the directory is packed
//! locally into a private temporary file, uploaded like any file into the instance's temporary
//! directory and unpacked there beside the destination before one rename. Either way the
//! destination appears whole or not at all, and an existing one is never merged or replaced.
//! A path that is not a directory is copied as a file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tokio::process::Command;

use crate::cli::commands::cp::download::{destination, fetch_file};
use crate::cli::commands::cp::interrupt::Interrupt;
use crate::cli::commands::cp::plan::CpPlan;
use crate::cli::commands::cp::remote::{Remote, capture};
use crate::cli::commands::cp::script::{self, Probe};
use crate::cli::commands::cp::upload::{Source, send_file};
use crate::cli::commands::cp::{failures, upload};
use crate::report::{ErrorKind, ExpectedError};

/// Downloads the directory `remote_path` to `local` (`None`: its tar stream to stdout).
pub(crate) async fn download(
    plan: &CpPlan,
    remote_path: &str,
    local: Option<&Path>,
    interrupt: Interrupt,
) -> anyhow::Result<ExitCode> {
    let name = base_name(remote_path);
    let target = match local {
        None => None,
        Some(local) => {
            let target = if local.is_dir() {
                local.join(&name)
            } else {
                local.to_path_buf()
            };
            if target.symlink_metadata().is_ok() {
                return Err(exists_locally(&target).into());
            }
            Some(target)
        }
    };
    let remote = Arc::new(Remote::connect(&plan.session, interrupt).await?);
    let (sink, stdout) = capture();
    let ran = remote
        .capture(&script::pack_tree(remote_path), sink)
        .await?;
    let tar = match script::parse_probe(&String::from_utf8_lossy(&stdout())) {
        Some(Probe::Packed(tar)) => tar,
        Some(Probe::NotDirectory) => {
            let dest = match local {
                Some(local) => Some(destination(local, remote_path, plan.force)?),
                None => None,
            };
            fetch_file(plan, &remote, remote_path, dest.as_deref()).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(other) => {
            return Err(failures::probe_refused(&other, remote_path, &remote.described).into());
        }
        None => {
            return Err(failures::unexpected_answer(
                "pack the directory",
                &ran.stderr_text(),
                &remote.described,
            )
            .into());
        }
    };
    let result = match &target {
        None => fetch_file(plan, &remote, &tar, None).await,
        Some(target) => unpack_locally(plan, &remote, &tar, &name, target).await,
    };
    // The remote tar file goes, whatever happened.
    remote.cleanup(&script::remove(&tar)).await;
    result.map(|()| ExitCode::SUCCESS)
}

/// Downloads the tar file `tar` (holding `name`) and unpacks it into `target`.
async fn unpack_locally(
    plan: &CpPlan,
    remote: &Arc<Remote>,
    tar: &str,
    name: &str,
    target: &Path,
) -> anyhow::Result<()> {
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Private (0700) while the tree arrives: nobody else reads it before it is in place.
    let work = tempfile::Builder::new()
        .prefix(".postern-cp-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(&parent)
        .map_err(|e| failures::local_io("create a temporary directory in", &parent, e))?;
    let tar_file = work.path().join("tree.tar");
    fetch_file(plan, remote, tar, Some(&tar_file)).await?;
    let unpacked = work.path().join("tree");
    std::fs::create_dir(&unpacked).map_err(|e| failures::local_io("create", &unpacked, e))?;
    run_tar(
        Command::new("tar")
            .arg("-C")
            .arg(&unpacked)
            .arg(if plan.preserve { "-xpf" } else { "-xf" })
            .arg(&tar_file),
        "unpack the directory",
    )
    .await?;
    let from = unpacked.join(name);
    std::fs::rename(&from, target)
        .map_err(|e| failures::local_io("move the copy to", target, e))?;
    Ok(())
}

/// Uploads the directory `local` to `remote_path` (`-` or a file: copied as a file).
pub(crate) async fn upload(
    plan: &CpPlan,
    local: Option<&Path>,
    remote_path: &str,
    interrupt: Interrupt,
) -> anyhow::Result<ExitCode> {
    let Some(dir) = local.filter(|l| l.is_dir()) else {
        return upload::run(plan, local, remote_path, interrupt).await;
    };
    let absolute = std::path::absolute(dir).map_err(|e| failures::local_io("read", dir, e))?;
    let name = absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            ExpectedError::new(
                ErrorKind::LocalFile,
                "the root directory cannot be copied with -r",
            )
        })?;
    let parent = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
    let remote = Arc::new(Remote::connect(&plan.session, interrupt).await?);
    // The destination first: no transfer for a refusal.
    unpack_remotely(&remote, remote_path, &name, None, plan.preserve).await?;

    let spool = tempfile::NamedTempFile::new()
        .map_err(|e| failures::local_io("create a temporary file in", &std::env::temp_dir(), e))?;
    run_tar(
        Command::new("tar")
            .arg("-C")
            .arg(&parent)
            .arg("-cf")
            .arg(spool.path())
            .arg("--")
            .arg(&name),
        "pack the directory",
    )
    .await?;
    let token = hex::encode(rand::random::<[u8; 8]>());
    let source = Source::spooled(spool, format!("postern-cp-{token}.tar"))
        .map_err(|e| failures::local_io("read", &std::env::temp_dir(), e))?;
    let tar = send_file(plan, &remote, &source, "/tmp/", false).await?;
    unpack_remotely(&remote, remote_path, &name, Some(&tar), plan.preserve).await?;
    Ok(ExitCode::SUCCESS)
}

/// Checks the remote destination (`tar` `None`) or unpacks `tar` there.
async fn unpack_remotely(
    remote: &Remote,
    remote_path: &str,
    name: &str,
    tar: Option<&str>,
    preserve: bool,
) -> anyhow::Result<()> {
    let (sink, stdout) = capture();
    let ran = remote
        .capture(&script::unpack_tree(remote_path, name, tar, preserve), sink)
        .await?;
    let stdout = String::from_utf8_lossy(&stdout()).into_owned();
    if script::parse_commit(&stdout) == Some(Ok(())) {
        return Ok(());
    }
    match script::parse_probe(&stdout) {
        Some(Probe::Clear) if tar.is_none() => Ok(()),
        Some(other) => Err(failures::probe_refused(&other, remote_path, &remote.described).into()),
        None => Err(failures::unexpected_answer(
            "unpack the directory",
            &ran.stderr_text(),
            &remote.described,
        )
        .into()),
    }
}

/// Runs a local tar to its end without holding up the runtime (a signal is still seen); a
/// copy abandoned meanwhile kills it.
async fn run_tar(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command.kill_on_drop(true).output().await.map_err(|e| {
        ExpectedError::new(
            ErrorKind::LocalFile,
            format!("could not {what}: tar did not run"),
        )
        .source(e)
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(ExpectedError::new(
        ErrorKind::LocalFile,
        format!(
            "could not {what}: tar failed: {}",
            crate::term::escape(String::from_utf8_lossy(&output.stderr).trim())
        ),
    )
    .into())
}

/// The last component of a remote path, as `basename` gives it.
fn base_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((_, name)) => name.to_owned(),
        None if trimmed.is_empty() => "/".to_owned(),
        None => trimmed.to_owned(),
    }
}

fn exists_locally(path: &Path) -> ExpectedError {
    ExpectedError::new(
        ErrorKind::LocalFile,
        format!(
            "local path {} already exists",
            crate::term::escape(&path.display().to_string())
        ),
    )
    .hint("-r never merges into or replaces a directory: remove it first or name a new one")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_follow_basename() {
        assert_eq!(base_name("/etc/nginx/"), "nginx");
        assert_eq!(base_name("/etc/nginx"), "nginx");
        assert_eq!(base_name("logs"), "logs");
        assert_eq!(base_name("/"), "/");
    }
}
