//! The files the tests share: the sample fleet (as the emulator serves it) and its accounts
//! as postern configuration.

/// The sample fleet's accounts as postern configuration (`[[accounts]]` tables).
pub(crate) const SAMPLE_ACCOUNTS: &str = include_str!("../../fixtures/sample_accounts.toml");

/// The sample fleet file, for `postern emulator --fleet`.
pub(crate) fn sample_fleet() -> String {
    repository_file("fleets/sample.toml")
}

/// A file of this repository, found from the running test's package: cargo and nextest set
/// `CARGO_MANIFEST_DIR` when they run a test. The path compiled in comes last, since a shared
/// target directory may hold this binary built from another checkout, one that may be gone.
pub(crate) fn repository_file(relative: &str) -> String {
    let root = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    format!("{root}/{relative}")
}
