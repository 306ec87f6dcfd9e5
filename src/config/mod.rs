//! The postern configuration file (`~/.config/postern/config.toml`, `--config`,
//! `POSTERN_CONFIG`) and its sibling `accounts.toml` written by `postern accounts sync`.
//!
//! It parses and validates only: no AWS call, no printing. Every error names the file, the line
//! and the key at fault. The schema and its parser live in `postern_formats::config` (fuzzed
//! without the AWS SDK); `load` reads the files.

mod load;

pub use crate::paths::{cache_dir, default_config_path};
pub use load::load;
pub use postern_formats::config::{
    Account, AccountId, Config, ConfigError, EnvClass, Environment, SYNC_HEADER, Source, Tunnel,
    UNKNOWN_ENV, accounts_trailer, env_class, parse, parse_accounts, same_env,
};
