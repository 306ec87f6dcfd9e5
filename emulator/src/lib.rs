//! The emulator: the service side of Session Manager (the message gateway plus the SSM agent's
//! session behaviour) and the AWS control plane postern calls (STS, EC2, SSM, Organizations, and
//! the console federation endpoint's getSigninToken, EC2 Instance Connect's SendSSHPublicKey)
//! for a fleet of accounts, on loopback,
//! strict and faithful, for tests, benchmarks and `postern demo`.
//!
//! It runs `postern_protocol` in the agent role; each module below has one job. It must not
//! bind anything but loopback, log tokens or credentials, or decide protocol behaviour the core
//! owns. Every session, on any instance of any account, runs on this machine.

mod args;
mod auth;
mod awserror;
mod cli;
mod config;
mod control;
mod datachannel;
mod document_store;
mod documents;
mod driver;
mod ec2;
mod error;
mod faults;
mod federation;
mod fleet;
mod gateway;
mod generate;
mod instance_connect;
mod instances;
mod kms;
mod organizations;
mod pacing;
mod plugins;
mod query;
mod server;
mod sessions;
mod sigv4;
mod ssm;
mod sts;
mod throttle;
mod violations;

pub use args::{ApiArgs, EmulatorArgs, FaultArgs, FleetArgs};
pub use auth::BaseCredentials;
pub use cli::run_from_cli;
pub use config::{EmulatorConfig, Faults};
pub use error::EmulatorError;
pub use federation::SigninGrant;
pub use fleet::{AccountSpec, Env, Fleet};
pub use generate::{FleetShape, generate};
pub use instances::{InstanceSpec, InstanceState, PingStatus, Platform, default_instances};
pub use pacing::Pacing;
pub use server::{Emulator, EmulatorHandle, ReadyLine, active_keys_url};
pub use violations::{ViolationCounts, ViolationKind};
