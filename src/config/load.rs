//! Reading the configuration file and its siblings; the parsing is `postern_formats::config`.

use std::path::Path;

use postern_formats::config::{Config, ConfigError, parse, parse_accounts};

/// Loads `path`, or the default path when `None`. A missing default file is no configuration;
/// a missing explicit file is an error. The sibling accounts file is merged in when present.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let (path, explicit) = match path {
        Some(path) => (path.to_owned(), true),
        None => match super::default_config_path() {
            Some(path) => (path, false),
            None => return Ok(Config::default()),
        },
    };
    let mut config = match std::fs::read_to_string(&path) {
        Ok(text) => parse(&path, &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Config {
            path: Some(path.clone()),
            ..Config::default()
        },
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let accounts_path = Config::accounts_path(&path);
    match std::fs::read_to_string(&accounts_path) {
        Ok(text) => config.add_accounts(parse_accounts(&accounts_path, &text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ConfigError::Read {
                path: accounts_path,
                source,
            });
        }
    }
    let tunnels_path = Config::tunnels_path(&path);
    match std::fs::read_to_string(&tunnels_path) {
        Ok(text) => config.add_tunnels(&tunnels_path, &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ConfigError::Read {
                path: tunnels_path,
                source,
            });
        }
    }
    Ok(config)
}
