//! The role broker: from one source identity (a profile, SSO, environment credentials) to
//! credentials in any configured account, with one MFA prompt, an on-disk cache and the
//! guardrails of each account's environment.
//!
//! It makes STS calls (and the federation endpoint's, for console sign-in) and reads and writes
//! its cache; it never prints, and no secret reaches a log line or an error message (they
//! travel in [`Secret`]).

mod assume;
mod cache;
pub mod federation;
pub mod guardrails;
mod identity;
mod mfa;
mod provider;

pub use assume::{
    AssumedCredentials, Broker, BrokerError, BrokerOptions, CallerIdentity, RoleTarget,
};
pub use cache::CredentialCache;
pub use identity::{Secret, role_arn, session_name};
pub use mfa::{MfaError, MfaSource};
pub use postern_formats::credentials::LastSuccess;
pub use provider::BrokerCredentials;
