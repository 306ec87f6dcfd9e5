//! Log setup from `-v` and `POSTERN_LOG` (nextest `cargo-nextest/src/output.rs`). Logs go to
//! stderr, except inside a raw-mode session, where stderr is the user's screen: then to a file
//! (`postern.log` in the private state directory unless `--log-file` says otherwise), and only
//! when asked for (`-v`, `POSTERN_LOG` or `--log-file`).
//!
//! Whatever the filter, the libraries that print request lines, signing material or bodies at
//! their debug and trace levels (the SDK's signer and HTTP stack, hyper, rustls, tungstenite)
//! are capped at `info`: a StreamUrl query, a session token or a signature never reaches a log.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `raw` says whether the session will take over the terminal.
pub(crate) fn init(verbose: u8, log_file: Option<PathBuf>, raw: bool) -> anyhow::Result<()> {
    let from_env = std::env::var("POSTERN_LOG").ok().filter(|v| !v.is_empty());
    let asked = verbose > 0 || from_env.is_some() || log_file.is_some();
    let mut filter = match from_env {
        Some(spec) => EnvFilter::try_new(&spec)
            .with_context(|| format!("POSTERN_LOG=`{spec}` is not a valid log filter"))?,
        None => EnvFilter::new(default_filter(verbose)),
    };
    for target in CAPPED_TARGETS {
        // Directives are static and valid; a parse failure would only lose the cap's detail.
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let file = match (log_file, raw && asked) {
        (Some(path), _) => Some(path),
        (None, true) => Some(
            crate::paths::state_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("postern.log"),
        ),
        (None, false) => None,
    };
    if raw && !asked {
        return Ok(());
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            let file = crate::private_file::open_private_append(&path)
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

/// Log targets that print secrets (signing material, request lines with a StreamUrl's query,
/// bodies) below `info`.
const CAPPED_TARGETS: &[&str] = &[
    "aws_sigv4",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_smithy_http",
    "aws_config",
    "aws_credential_types",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tungstenite",
    "tokio_tungstenite",
];

fn default_filter(verbose: u8) -> &'static str {
    match verbose {
        // The SDK's own warnings (an unreachable IMDS, say) are noise next to our errors.
        0 => "error,postern=warn,postern_protocol=warn",
        1 => "warn,postern=info,postern_protocol=info",
        2 => "info,postern=debug,postern_protocol=debug",
        _ => "debug,postern=trace,postern_protocol=trace",
    }
}
