//! The parsers of postern that read untrusted bytes, apart from the data-channel protocol
//! (`postern-protocol`): the SOCKS5 wire format, the configuration files, the index cache's
//! snapshot format and the credentials cache's entries.
//!
//! Pure parsing and encoding: no AWS SDK, no runtime, no sockets, and no file reads or writes
//! (the `postern` package reads and writes the files). Kept apart so that the fuzz targets in
//! `fuzz/` (over [`fuzzing`]) build without the AWS SDK.

pub mod config;
pub mod credentials;
pub mod fuzzing;
pub mod index;
pub mod socks;
