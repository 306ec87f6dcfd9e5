//! The emulator: the service side of Session Manager (the message gateway plus the SSM agent's
//! session behaviour) on loopback, strict and faithful, for tests, benchmarks and `postern demo`.
//!
//! It runs `postern_protocol` in the agent role; each module below has one job. It must not
//! bind anything but loopback, log tokens, or decide protocol behaviour the core owns.

mod args;
mod awserror;
mod cli;
mod config;
mod control;
mod datachannel;
mod documents;
mod driver;
mod error;
mod faults;
mod fleet;
mod gateway;
mod instances;
mod pacing;
mod plugins;
mod server;
mod sessions;
mod ssm;
mod violations;

pub use args::EmulatorArgs;
pub use cli::run_from_cli;
pub use config::{EmulatorConfig, Faults};
pub use error::EmulatorError;
pub use instances::{InstanceSpec, default_instances};
pub use pacing::Pacing;
pub use server::{Emulator, EmulatorHandle, ReadyLine};
pub use violations::{ViolationCounts, ViolationKind};
