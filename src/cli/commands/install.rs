//! `postern install-plugin [DIR]`: links `DIR/session-manager-plugin` to this postern, so the
//! AWS CLI (`aws ssm start-session`) runs postern as its plugin, and says whether DIR is on
//! PATH and whether another `session-manager-plugin` comes first there.

use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::commands::plugin::PLUGIN_NAME;
use crate::plugin::PLUGIN_VERSION;
use crate::report::{ErrorKind, ExpectedError};

/// `postern install-plugin`.
#[derive(clap::Args, Debug, Clone)]
pub struct InstallPluginArgs {
    /// Directory for the `session-manager-plugin` link (default: ~/.local/bin).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Replace an existing `session-manager-plugin` there (the official one, say).
    #[arg(long)]
    pub force: bool,
}

/// Creates the link and reports.
pub(crate) fn run(args: &InstallPluginArgs) -> anyhow::Result<ExitCode> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => default_dir().ok_or_else(|| {
            ExpectedError::new(ErrorKind::Usage, "no home directory for ~/.local/bin")
                .hint("name the directory: postern install-plugin /usr/local/bin")
        })?,
    };
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("could not find the postern executable")?;
    let link = dir.join(PLUGIN_NAME);
    let outcome = install(&dir, &link, &exe, args.force)?;
    let mut stdout = io::stdout().lock();
    match outcome {
        Installed::Created => writeln!(stdout, "linked {} -> {}", link.display(), exe.display())?,
        Installed::Replaced => writeln!(
            stdout,
            "replaced {} with a link to {}",
            link.display(),
            exe.display()
        )?,
        Installed::Already => writeln!(
            stdout,
            "{} already links to {}",
            link.display(),
            exe.display()
        )?,
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let path_dirs: Vec<PathBuf> = std::env::split_paths(&path_var).collect();
    let on_path = path_dirs.iter().any(|d| same_dir(d, &dir));
    if on_path {
        writeln!(stdout, "{} is on PATH", dir.display())?;
        if let Some(first) = first_on_path(&path_dirs)
            && !same_file(&first, &link)
        {
            writeln!(
                stdout,
                "warning: {} comes first on PATH and will be used instead; remove it or put {} \
                 earlier in PATH",
                first.display(),
                dir.display()
            )?;
        }
    } else {
        writeln!(
            stdout,
            "warning: {} is not on PATH; add it (for example `export PATH=\"{}:$PATH\"` in your \
             shell's profile) so that the AWS CLI finds session-manager-plugin",
            dir.display(),
            dir.display()
        )?;
    }
    writeln!(
        stdout,
        "`aws ssm start-session` now runs postern (`session-manager-plugin --version` prints \
         {PLUGIN_VERSION})"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What [`install`] did.
#[derive(Debug, PartialEq, Eq)]
enum Installed {
    Created,
    Replaced,
    Already,
}

fn install(dir: &Path, link: &Path, exe: &Path, force: bool) -> anyhow::Result<Installed> {
    let not_writable = |source: io::Error| -> anyhow::Error {
        ExpectedError::new(
            ErrorKind::Usage,
            format!("could not create {} in {}", PLUGIN_NAME, dir.display()),
        )
        .hint(format!(
            "{} is not writable by you: pick a directory you own (the default is ~/.local/bin), \
             or run with the needed rights",
            dir.display()
        ))
        .source(source)
        .into()
    };
    std::fs::create_dir_all(dir).map_err(not_writable)?;
    let mut replaced = false;
    match std::fs::symlink_metadata(link) {
        Ok(_) => {
            if std::fs::read_link(link).is_ok_and(|target| same_file(&target, exe)) {
                return Ok(Installed::Already);
            }
            if !force {
                return Err(ExpectedError::new(
                    ErrorKind::Usage,
                    format!("{} already exists", link.display()),
                )
                .hint(
                    "it is probably the official plugin; pass --force to replace it with postern, \
                     or pick another DIR",
                )
                .into());
            }
            std::fs::remove_file(link).map_err(not_writable)?;
            replaced = true;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(not_writable(e)),
    }
    std::os::unix::fs::symlink(exe, link).map_err(not_writable)?;
    Ok(if replaced {
        Installed::Replaced
    } else {
        Installed::Created
    })
}

/// `~/.local/bin`, the per-user directory of the XDG base-directory spec.
fn default_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".local").join("bin"))
}

/// The `session-manager-plugin` the AWS CLI would run: the first executable one on PATH.
fn first_on_path(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(PLUGIN_NAME)).find(|candidate| {
        std::fs::metadata(candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_recognises_then_refuses_a_foreign_file_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("postern");
        std::fs::write(&exe, "").unwrap();
        let bin = dir.path().join("bin");
        let link = bin.join(PLUGIN_NAME);
        assert_eq!(
            install(&bin, &link, &exe, false).unwrap(),
            Installed::Created
        );
        assert_eq!(
            install(&bin, &link, &exe, false).unwrap(),
            Installed::Already
        );
        std::fs::remove_file(&link).unwrap();
        std::fs::write(&link, "official").unwrap();
        let err = install(&bin, &link, &exe, false).unwrap_err();
        assert!(err.to_string().ends_with("already exists"), "{err}");
        assert_eq!(
            install(&bin, &link, &exe, true).unwrap(),
            Installed::Replaced
        );
        assert!(same_file(&std::fs::read_link(&link).unwrap(), &exe));
    }
}
