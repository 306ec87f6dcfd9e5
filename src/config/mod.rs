//! The postern configuration file (`~/.config/postern/config.toml`, `--config`,
//! `POSTERN_CONFIG`) and its sibling `accounts.toml` written by `postern accounts sync`.
//!
//! It parses and validates only: no AWS call, no printing. Every error names the file, the line
//! and the key at fault.

mod file;

pub use crate::paths::{cache_dir, default_config_path};
pub use file::{
    Account, AccountId, Config, ConfigError, EnvClass, Environment, SYNC_HEADER, Source, Tunnel,
    UNKNOWN_ENV, accounts_trailer, env_class, load, parse, parse_accounts, same_env,
};
