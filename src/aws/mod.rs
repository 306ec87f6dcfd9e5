//! AWS control plane: configuration loading (profile, region, endpoint) and the three SSM
//! session calls (StartSession, ResumeSession, TerminateSession).
//!
//! It must not import the protocol crate, print, or let a token, credential or stream URL
//! query reach a log line or an error message: those travel in redacting newtypes.

mod config;
mod error;
mod ssm;

pub use config::{AwsContext, AwsOptions, CredentialsOverride, load};
pub use error::{AwsError, AwsErrorKind};
pub use ssm::{SessionCredentials, SessionToken, SsmClient, StartSessionRequest, StreamUrl};
