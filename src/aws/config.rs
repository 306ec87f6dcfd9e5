//! Loads the AWS SDK configuration from `--profile`, `--region` and `--endpoint-url`, on top of
//! the SDK's usual sources (environment, shared config files, `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_SSM`, as in the AWS CLI).
//!
//! Loading makes no network call by itself: credentials are resolved lazily by the first
//! request, so a plain StartSession is the only AWS call before the data channel opens.

use aws_config::{BehaviorVersion, Region, SdkConfig};

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
