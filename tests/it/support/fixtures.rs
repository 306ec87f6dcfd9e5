//! The files the tests share: the sample fleet (as the emulator serves it) and its accounts
//! as postern configuration.

/// The sample fleet's accounts as postern configuration (`[[accounts]]` tables).
pub(crate) const SAMPLE_ACCOUNTS: &str = include_str!("../../fixtures/sample_accounts.toml");

/// The sample fleet file, for `postern emulator --fleet`.
pub(crate) const SAMPLE_FLEET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fleets/sample.toml");
