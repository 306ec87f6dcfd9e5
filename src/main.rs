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
        None => {
            // `COMPLETE=<shell> postern …` (from `postern completions`) answers and exits here.
            clap_complete::CompleteEnv::with_factory(<cli::Args as clap::CommandFactory>::command)
                .complete();
            cli::run(cli::Args::parse())
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => report::error(&err),
    }
}
