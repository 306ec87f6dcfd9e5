//! Runs a planned copy: the download or the upload.

use std::process::ExitCode;

use crate::cli::commands::cp::download::OutputClosed;
use crate::cli::commands::cp::failures;
use crate::cli::commands::cp::interrupt::{self, Interrupt};
use crate::cli::commands::cp::plan::{CpPlan, Direction};
use crate::cli::commands::cp::{download, tree, upload};
use crate::report::exit_codes;

/// Runs `plan` (its target resolved) to its exit code; a signal stops it (128+N) with its
/// temporary files removed.
pub(crate) async fn run(plan: &CpPlan) -> anyhow::Result<ExitCode> {
    if let Some(platform) = plan.platform.as_deref()
        && platform.to_ascii_lowercase().contains("windows")
    {
        return Err(failures::windows(plan.session.target.as_str(), platform).into());
    }
    interrupt::run(|interrupt| copy(plan, interrupt)).await
}

async fn copy(plan: &CpPlan, interrupt: Interrupt) -> anyhow::Result<ExitCode> {
    let result = match (&plan.direction, plan.recursive) {
        (Direction::Download { remote, local }, false) => {
            download::run(plan, remote, local.as_deref(), interrupt).await
        }
        (Direction::Download { remote, local }, true) => {
            tree::download(plan, remote, local.as_deref(), interrupt).await
        }
        (Direction::Upload { local, remote }, false) => {
            upload::run(plan, local.as_deref(), remote, interrupt).await
        }
        (Direction::Upload { local, remote }, true) => {
            tree::upload(plan, local.as_deref(), remote, interrupt).await
        }
    };
    match result {
        Err(e) if e.is::<OutputClosed>() => Ok(ExitCode::from(exit_codes::OUTPUT_CLOSED)),
        other => other,
    }
}
