//! The `postern` binary: parse, run, report, exit (ripgrep `crates/core/main.rs`).
//!
//! Started as `session-manager-plugin` (a link or a copy) it speaks the official plugin's
//! command line instead (SPEC.md §9), for `aws ssm start-session`.

use std::process::ExitCode;

use clap::Parser;
use postern::{cli, report};

fn main() -> ExitCode {
    let result = match cli::plugin_invocation() {
        Some(args) => cli::run_plugin(&args),
        None => cli::run(cli::Args::parse()),
    };
    match result {
        Ok(code) => code,
        Err(err) => report::error(&err),
    }
}
