//! Shell completion: `postern completions bash|zsh|fish` prints the shell's registration, which
//! asks postern itself for candidates (clap_complete's dynamic completion, `COMPLETE=<shell>`),
//! so every TARGET completes instance names, `NAME@ALIAS` and ids from the cached index, with
//! no AWS call.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap_complete::CompletionCandidate;
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

use crate::discovery::Cache;
use crate::paths::cache_dir;

/// `postern completions`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh or fish.
    #[arg(value_name = "SHELL", value_parser = ["bash", "zsh", "fish"])]
    pub shell: String,
}

/// Prints the registration script for `args.shell`.
pub(crate) fn print(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let completer: &dyn EnvCompleter = match args.shell.as_str() {
        "zsh" => &Zsh,
        "fish" => &Fish,
        _ => &Bash,
    };
    let exe = std::env::current_exe().context("could not find the postern executable")?;
    let mut text = Vec::new();
    completer
        .write_registration(
            COMPLETE_VAR,
            "postern",
            "postern",
            &exe.to_string_lossy(),
            &mut text,
        )
        .context("could not write the completion script")?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&text)
        .and_then(|()| stdout.flush())
        .context("could not write the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// Candidates for a TARGET: every cached instance's id, Name tag and `NAME@ALIAS`, described
/// with account and region.
pub(crate) fn targets() -> Vec<CompletionCandidate> {
    let Some(dir) = cache_dir() else {
        return Vec::new();
    };
    let mut candidates = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in Cache::new(dir).all() {
        for instance in entry.instances {
            let about = format!("{} {} {}", instance.alias, instance.region, instance.id);
            let mut names = vec![instance.id.clone()];
            if !instance.name.is_empty() {
                names.push(instance.name.clone());
                names.push(format!("{}@{}", instance.name, instance.alias));
            }
            for name in names {
                if seen.insert(name.clone()) {
                    candidates
                        .push(CompletionCandidate::new(name).help(Some(about.clone().into())));
                }
            }
        }
    }
    candidates
}

/// The environment variable the registration sets when it asks postern for candidates.
pub(crate) const COMPLETE_VAR: &str = "COMPLETE";
