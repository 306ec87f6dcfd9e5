//! The `postern emulator` command's edge: start, print the ready line, run until SIGINT or
//! SIGTERM, print the violation summary. The only emulator code that prints or uses `anyhow`.

use std::io::Write;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::args::EmulatorArgs;
use crate::server::Emulator;

/// Runs the emulator until SIGINT/SIGTERM (or `--exit-after`). Prints exactly one JSON line
/// on stdout once ready, and a summary of client violations on stderr at shutdown. With
/// `--print-fleet`, prints the fleet as TOML instead and returns.
pub async fn run_from_cli(args: EmulatorArgs) -> anyhow::Result<()> {
    let print_fleet = args.fleet.print_fleet;
    let config = args
        .into_config()
        .context("invalid emulator configuration")?;
    if print_fleet {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(config.fleet.to_toml().as_bytes())
            .and_then(|()| stdout.flush())
            .context("cannot write the fleet")?;
        return Ok(());
    }
    let handle = Emulator::start(config)
        .await
        .context("cannot start the emulator")?;
    let line =
        serde_json::to_string(&handle.ready_line()).context("cannot serialize the ready line")?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}").context("cannot write the ready line")?;
        stdout.flush().context("cannot write the ready line")?;
    }
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot handle SIGINT")?,
        _ = terminate.recv() => {}
        () = handle.stopping() => {}
    }
    let counts = handle
        .shutdown()
        .await
        .context("emulator did not stop cleanly")?;
    eprintln!("postern emulator: {counts}");
    Ok(())
}
