//! The `postern emulator` command's edge: start, print the ready line, run until SIGINT or
//! SIGTERM, print the violation summary. The only emulator code that prints or uses `anyhow`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::args::EmulatorArgs;
use crate::server::Emulator;

/// Runs the emulator until SIGINT/SIGTERM (or `--exit-after`). Prints exactly one JSON line
/// on stdout once ready, and a summary of client violations on stderr at shutdown. With
/// `--print-fleet`, prints the fleet as TOML instead and returns.
pub async fn run_from_cli(args: EmulatorArgs) -> anyhow::Result<()> {
    let print_fleet = args.fleet.print_fleet;
    let exit_after = args.exit_after;
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
    if let Some(limit) = exit_after {
        exit_anyway_after(limit).context("cannot start the --exit-after watchdog")?;
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

/// How long the graceful stop may take past `--exit-after` before the process exits anyway.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// Exit status when `--exit-after` had to end the process without a graceful stop.
const FORCED_EXIT_STATUS: i32 = 1;

/// Ends the process `limit` + [`EXIT_GRACE`] from now, from a thread of its own: the graceful
/// stop runs on the async runtime, and a task that never yields (a bug, once a PTY writer
/// spinning) would otherwise keep a test's emulator alive past its limit.
fn exit_anyway_after(limit: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("exit-after".to_owned())
        .spawn(move || {
            std::thread::sleep(limit + EXIT_GRACE);
            eprintln!(
                "postern emulator: still running {}s after --exit-after {}; exiting without a \
                 graceful stop",
                EXIT_GRACE.as_secs(),
                humantime::format_duration(limit)
            );
            std::process::exit(FORCED_EXIT_STATUS);
        })
        .map(drop)
}
