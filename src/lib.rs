//! postern: reach every instance in every AWS account through SSM Session Manager, natively.
//!
//! Three floors, dependencies pointing down only: `postern_protocol` (the sans-IO protocol),
//! `postern_emulator` (the service side, for the demo and the tests; it knows only the
//! protocol), and this crate: the drivers (`transport`, `forward`, `discovery`, `broker`,
//! `aws`, `term`, `picker`, with `network`'s proxy and trust settings under `aws` and
//! `transport`) and, on top, `cli`. `aws` never imports the protocol; nothing but
//! `cli` imports `cli`.

pub mod audit_trail;
pub mod aws;
pub mod broker;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod doctor;
pub mod ephemeral_key;
pub mod forward;
pub mod network;
pub mod paths;
pub mod picker;
pub mod plugin;
pub mod private_file;
pub mod report;
pub mod setup_memory;
pub mod term;
pub mod transport;
pub mod tunnel;
