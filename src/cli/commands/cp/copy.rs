//! Runs a planned copy: the download or the upload.

use std::process::ExitCode;

use crate::cli::commands::cp::download::OutputClosed;
use crate::cli::commands::cp::plan::{CpPlan, Direction};
use crate::cli::commands::cp::{download, tree, upload};
use crate::report::exit_codes;

/// Runs `plan` (its target resolved) to its exit code.
pub(crate) async fn run(plan: &CpPlan) -> anyhow::Result<ExitCode> {
    let result = match (&plan.direction, plan.recursive) {
        (Direction::Download { remote, local }, false) => {
            download::run(plan, remote, local.as_deref()).await
        }
        (Direction::Download { remote, local }, true) => {
            tree::download(plan, remote, local.as_deref()).await
        }
        (Direction::Upload { local, remote }, false) => {
            upload::run(plan, local.as_deref(), remote).await
        }
        (Direction::Upload { local, remote }, true) => {
            tree::upload(plan, local.as_deref(), remote).await
        }
    };
    match result {
        Err(e) if e.is::<OutputClosed>() => Ok(ExitCode::from(exit_codes::OUTPUT_CLOSED)),
        other => other,
    }
}
