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

use crate::report::{ErrorKind, ExpectedError};
use crate::term::colour_on;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the global subscriber. `raw` says whether the session will take over the terminal.
pub(crate) fn init(verbose: u8, log_file: Option<PathBuf>, raw: bool) -> anyhow::Result<()> {
    let from_env = std::env::var("POSTERN_LOG").ok().filter(|v| !v.is_empty());
    let asked = verbose > 0 || from_env.is_some() || log_file.is_some();
    let filter = match from_env {
        Some(spec) => EnvFilter::try_new(&spec).map_err(|e| {
            ExpectedError::new(
                ErrorKind::Usage,
                format!("POSTERN_LOG=`{spec}` is not a valid log filter"),
            )
            .hint("use levels or target=level pairs (POSTERN_LOG=postern=debug), or unset it")
            .source(e)
        })?,
        None => EnvFilter::new(default_filter(verbose)),
    };
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
    // The cap is a second global filter: it only removes events (debug and trace of the
    // capped targets), never enables one the user's filter left out. It is installed only when
    // the filter enables more than info somewhere: at the usual levels the subscriber keeps
    // its static level hint, so the data path's disabled trace! and debug! cost nothing.
    let needs_cap = filter
        .max_level_hint()
        .is_none_or(|level| level > LevelFilter::INFO);
    let cap = needs_cap.then(|| filter_fn(|meta| !capped(meta.target(), meta.level())));
    let registry = tracing_subscriber::registry().with(filter).with(cap);
    match file {
        Some(path) => {
            let file = crate::private_file::open_private_append(&path).map_err(|e| {
                ExpectedError::new(
                    ErrorKind::Usage,
                    format!("could not open the log file {}", path.display()),
                )
                .hint("name a --log-file (or POSTERN_LOG_FILE) in a directory you own")
                .source(e)
            })?;
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(Mutex::new(file));
            registry.with(layer).try_init().ok();
        }
        None => {
            // Colour only on a terminal: a log piped to a file or a CI job stays plain text.
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(colour_on(&std::io::stderr()))
                .with_writer(std::io::stderr);
            registry.with(layer).try_init().ok();
        }
    }
    Ok(())
}

/// Whether an event of `target` at `level` is debug or trace of a target that may print
/// secrets there.
fn capped(target: &str, level: &tracing::Level) -> bool {
    *level > tracing::Level::INFO
        && CAPPED_TARGETS.iter().any(|capped| {
            target == *capped
                || target
                    .strip_prefix(capped)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn only_debug_and_trace_of_the_secret_printing_targets_are_capped() {
        assert!(capped("aws_sigv4::sign", &Level::DEBUG));
        assert!(capped("aws_smithy_runtime::client", &Level::TRACE));
        assert!(capped("tungstenite", &Level::TRACE));
        assert!(!capped("aws_sigv4::sign", &Level::INFO));
        assert!(!capped("aws_config::profile", &Level::WARN));
        assert!(!capped("postern::transport", &Level::TRACE));
        // A prefix is a crate, not any name that starts alike.
        assert!(!capped("hyperion", &Level::TRACE));
    }
}
