//! Where postern keeps its files: the one place that knows the configuration file, the cache
//! directory and the state directory, following the XDG base directories on Linux and the usual
//! folders on macOS. Environment overrides exist for tests, packaging and `postern demo`.
//!
//! | What | Override | Default |
//! |---|---|---|
//! | configuration | `POSTERN_CONFIG` | `$XDG_CONFIG_HOME/postern/config.toml`, `~/.config/postern/config.toml` |
//! | cache (index, credentials, frecency) | `POSTERN_CACHE_DIR` | `$XDG_CACHE_HOME/postern`, `~/Library/Caches/postern` (macOS), `~/.cache/postern` |
//! | state (session history) | `POSTERN_STATE_DIR` | `$XDG_STATE_HOME/postern`, `~/Library/Application Support/postern` (macOS), `~/.local/state/postern` |
//! | session history file | `POSTERN_HISTORY_FILE` | `history.jsonl` in the state directory |
//!
//! Every function returns `None` when neither its override nor a home directory is known.

use std::path::PathBuf;

/// The configuration file to read.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(path) = var("POSTERN_CONFIG") {
        return Some(path);
    }
    let base = match var("XDG_CONFIG_HOME") {
        Some(dir) => dir,
        None => home()?.join(".config"),
    };
    Some(base.join("postern").join("config.toml"))
}

/// postern's cache directory.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = var("POSTERN_CACHE_DIR") {
        return Some(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Some(dir.join("postern"));
    }
    let home = home()?;
    if cfg!(target_os = "macos") {
        Some(home.join("Library").join("Caches").join("postern"))
    } else {
        Some(home.join(".cache").join("postern"))
    }
}

/// postern's state directory (what must survive a cache wipe).
pub fn state_dir() -> Option<PathBuf> {
    if let Some(dir) = var("POSTERN_STATE_DIR") {
        return Some(dir);
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return Some(dir.join("postern"));
    }
    let home = home()?;
    if cfg!(target_os = "macos") {
        Some(
            home.join("Library")
                .join("Application Support")
                .join("postern"),
        )
    } else {
        Some(home.join(".local").join("state").join("postern"))
    }
}

/// The session history (`postern history`, the audit trail).
pub fn history_file() -> Option<PathBuf> {
    if let Some(file) = var("POSTERN_HISTORY_FILE") {
        return Some(file);
    }
    Some(state_dir()?.join("history.jsonl"))
}

fn home() -> Option<PathBuf> {
    var("HOME")
}

fn var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}
