//! Log setup from `-v` and `POSTERN_LOG` (nextest `cargo-nextest/src/output.rs`). Logs go to
//! stderr, except inside a raw-mode session, where stderr is the user's screen: then to a file,
//! and only when asked for (`-v`, `POSTERN_LOG` or `--log-file`).

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `raw` says whether the session will take over the terminal.
pub(crate) fn init(verbose: u8, log_file: Option<PathBuf>, raw: bool) -> anyhow::Result<()> {
    let from_env = std::env::var("POSTERN_LOG").ok().filter(|v| !v.is_empty());
    let asked = verbose > 0 || from_env.is_some() || log_file.is_some();
    let filter = match from_env {
        Some(spec) => EnvFilter::try_new(&spec)
            .with_context(|| format!("POSTERN_LOG=`{spec}` is not a valid log filter"))?,
        None => EnvFilter::new(default_filter(verbose)),
    };
    let file = match (log_file, raw && asked) {
        (Some(path), _) => Some(path),
        (None, true) => Some(std::env::temp_dir().join("postern.log")),
        (None, false) => None,
    };
    if raw && !asked {
        return Ok(());
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("could not open the log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .try_init()
                .ok();
        }
        None => {
            builder.with_writer(std::io::stderr).try_init().ok();
        }
    }
    Ok(())
}

fn default_filter(verbose: u8) -> &'static str {
    match verbose {
        // The SDK's own warnings (an unreachable IMDS, say) are noise next to our errors.
        0 => "error,postern=warn,postern_protocol=warn",
        1 => "warn,postern=info,postern_protocol=info",
        2 => "info,postern=debug,postern_protocol=debug",
        _ => "debug,postern=trace,postern_protocol=trace",
    }
}
