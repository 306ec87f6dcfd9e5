//! The instance index: every instance the caller can reach, per account and region, from EC2
//! DescribeInstances joined with SSM DescribeInstanceInformation, listed in parallel with
//! bounded concurrency and kept in a local cache (one file, [`Cache`]).
//!
//! Listing one scope (account x region) sits behind [`InstanceSource`]: [`SdkSource`] calls AWS
//! with the SDK configuration a [`ScopeConfigs`] gives it (today [`SingleProfile`], the
//! default credential chain or `--profile`; the role broker plugs in there), `FakeSource` (tests)
//! serves tests.

mod cache;
mod discover;
#[cfg(test)]
mod fake;
mod index;
mod indexed;
mod open_files;
mod source;
pub mod target;

// The rows and the cache's file format are parsers of untrusted bytes, fuzzed without the AWS
// SDK in `postern-formats`; the paths `discovery::instance` and `discovery::snapshot` stay.
use postern_formats::index::{instance, snapshot};

pub use cache::{Cache, CacheEntry, CachedIndex};
pub use discover::{Discovery, Progress, RetryPolicy, ScopeFailure, discover};
#[cfg(test)]
pub(crate) use fake::FakeSource;
pub use index::{DEFAULT_CONCURRENCY, DEFAULT_MAX_AGE, Index, IndexOptions, build_index};
pub use indexed::{CachedInstance, Indexed, Listed, SearchedText};
pub use instance::{Instance, Scope, Summary};
pub use source::{InstanceSource, ScopeConfigs, SdkSource, SingleProfile, SourceError};
