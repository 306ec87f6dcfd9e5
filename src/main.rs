//! The `postern` binary: parse, run, report, exit (ripgrep `crates/core/main.rs`).

use std::process::ExitCode;

use clap::Parser;
use postern::{cli, report};

fn main() -> ExitCode {
    // `COMPLETE=<shell> postern …` (from `postern completions`) answers and exits here.
    clap_complete::CompleteEnv::with_factory(<cli::Args as clap::CommandFactory>::command)
        .complete();
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => report::error(&err),
    }
}
