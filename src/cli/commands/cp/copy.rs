//! Runs a planned copy: the download or the upload.

use std::process::ExitCode;

use crate::cli::commands::cp::plan::{CpPlan, Direction};
use crate::cli::commands::cp::{download, upload};

/// Runs `plan` (its target resolved) to its exit code.
pub(crate) async fn run(plan: &CpPlan) -> anyhow::Result<ExitCode> {
    match &plan.direction {
        Direction::Download { remote, local } => {
            download::run(plan, remote, local.as_deref()).await
        }
        Direction::Upload { local, remote } => upload::run(plan, local.as_deref(), remote).await,
    }
}
