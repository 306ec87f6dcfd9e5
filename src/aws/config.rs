//! Loads the AWS SDK configuration from `--profile`, `--region` and `--endpoint-url`, on top of
//! the SDK's usual sources (environment, shared config files, `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_SSM`, as in the AWS CLI).
//!
//! Loading makes no network call by itself: credentials are resolved lazily by the first
//! request, so a plain StartSession is the only AWS call before the data channel opens.

use std::fmt;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::aws::error::{AwsError, AwsErrorKind};

/// What the user chose on the command line; `None` defers to the SDK's sources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsOptions {
    /// Named profile from the shared config files (`--profile`; else `AWS_PROFILE`).
    pub profile: Option<String>,
    /// Region (`--region`; else `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile).
    pub region: Option<String>,
    /// Endpoint override for every service (`--endpoint-url`). Without it the SDK honours
    /// `AWS_ENDPOINT_URL_SSM`, `AWS_ENDPOINT_URL` and `endpoint_url` in the profile.
    pub endpoint_url: Option<String>,
    /// Credentials postern chose itself (the role broker's for the target's account) instead
    /// of the SDK's chain.
    pub credentials: Option<CredentialsOverride>,
}

/// Credentials from postern's role broker, with the label messages name (`role R in account
/// A`). Equality and `Debug` use the label only: never a secret.
#[derive(Clone)]
pub struct CredentialsOverride {
    /// What the credentials are, for messages.
    pub label: String,
    /// Where they come from (refreshed by the provider before they lapse).
    pub provider: SharedCredentialsProvider,
}

/// A loaded configuration with the facts error messages name.
#[derive(Clone, Debug)]
pub struct AwsContext {
    /// The SDK configuration shared by every client.
    pub sdk: SdkConfig,
    /// The resolved region.
    pub region: String,
    /// The profile asked for, if any (`--profile` or `AWS_PROFILE`).
    pub profile: Option<String>,
}

/// Loads the configuration. Fails only when no region can be found.
pub async fn load(options: &AwsOptions) -> Result<AwsContext, AwsError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = &options.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &options.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(credentials) = &options.credentials {
        loader = loader.credentials_provider(credentials.provider.clone());
    }
    let sdk = loader.load().await;
    let profile = options
        .profile
        .clone()
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()));
    let Some(region) = sdk.region().map(|r| r.to_string()) else {
        return Err(AwsError::local(
            AwsErrorKind::Configuration,
            "LoadConfig",
            None,
            profile,
            "no region is configured",
        ));
    };
    Ok(AwsContext {
        sdk,
        region,
        profile,
    })
}

impl PartialEq for CredentialsOverride {
    fn eq(&self, other: &Self) -> bool {
        self.label == other.label
    }
}

impl Eq for CredentialsOverride {}

impl fmt::Debug for CredentialsOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsOverride")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}
