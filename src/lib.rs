//! postern: reach every instance in every AWS account through SSM Session Manager, natively.
//!
//! The binary's modules live here so integration tests and benches can start the emulator and
//! drivers in-process. Dependencies point one way: `cli` -> drivers -> `postern_protocol`;
//! `aws` never imports the protocol; the emulator runs the protocol in the agent role.

pub mod aws;
pub mod broker;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod doctor;
pub mod forward;
pub mod guardrails;
pub mod history;
pub mod paths;
pub mod picker;
pub mod plugin;
pub mod private_file;
pub mod report;
pub mod stdio;
pub mod target;
pub mod term;
pub mod transport;
