//! `postern doctor`: checks, one pass/fail line each, explaining whether a target is reachable
//! through Session Manager and, when not, what to do next.
//!
//! It makes AWS calls and reads the environment; it never prints (`cli` does).

mod check;
mod probe;

pub use check::{Check, Status, exit_code};
pub use probe::{
    Identity, InstanceFacts, agent_features, clock, configuration, credentials, instance, kms,
    kms_key_of, network_settings, session_permission,
};
