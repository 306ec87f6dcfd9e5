//! Where postern keeps its configuration and caches, following the XDG base directories on
//! Linux and the usual folders on macOS. Environment overrides exist for tests and packaging.

use std::path::PathBuf;

/// The configuration file to read: `POSTERN_CONFIG`, else `$XDG_CONFIG_HOME/postern/config.toml`,
/// else `~/.config/postern/config.toml`. `None` when no home directory is known.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(path) = non_empty_var("POSTERN_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = match non_empty_var("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(non_empty_var("HOME")?).join(".config"),
    };
    Some(base.join("postern").join("config.toml"))
}

/// postern's cache directory: `POSTERN_CACHE_DIR`, else `$XDG_CACHE_HOME/postern`, else
/// `~/Library/Caches/postern` on macOS and `~/.cache/postern` elsewhere.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = non_empty_var("POSTERN_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = non_empty_var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("postern"));
    }
    let home = PathBuf::from(non_empty_var("HOME")?);
    if cfg!(target_os = "macos") {
        Some(home.join("Library").join("Caches").join("postern"))
    } else {
        Some(home.join(".cache").join("postern"))
    }
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
