//! Loads the AWS SDK configuration from `--profile` and `--region`, on top of the SDK's usual
//! sources (environment, shared config files, `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_<SERVICE>`, as in the AWS CLI). `--endpoint-url` is SSM's endpoint only,
//! as `aws ssm ... --endpoint-url` is: STS, EC2, KMS and Organizations keep their own.
//!
//! Loading makes no network call by itself: credentials are resolved lazily by the first
//! request, so a plain StartSession is the only AWS call before the data channel opens.

use std::fmt;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::aws::error::{AwsError, AwsErrorKind};
use crate::aws::http::https_client;

/// What the user chose on the command line; `None` defers to the SDK's sources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsOptions {
    /// Named profile from the shared config files (`--profile`; else `AWS_PROFILE`).
    pub profile: Option<String>,
    /// Region (`--region`; else `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile).
    pub region: Option<String>,
    /// SSM's endpoint (`--endpoint-url`, a VPC endpoint say), for SSM's client only. Without
    /// it the SDK honours `AWS_ENDPOINT_URL_SSM`, `AWS_ENDPOINT_URL` and `endpoint_url` in the
    /// profile; the other services always follow those.
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
    /// SSM's endpoint override (`--endpoint-url`), applied by [`AwsContext::ssm_client`].
    pub ssm_endpoint: Option<String>,
}

impl AwsContext {
    /// An SSM client: the shared configuration, with `--endpoint-url` when one was given.
    pub fn ssm_client(&self) -> aws_sdk_ssm::Client {
        ssm_client(&self.sdk, self.ssm_endpoint.as_deref())
    }
}

/// An SSM client for `sdk`, sent to `endpoint` when one is given (`--endpoint-url`).
pub fn ssm_client(sdk: &SdkConfig, endpoint: Option<&str>) -> aws_sdk_ssm::Client {
    let mut config = aws_sdk_ssm::config::Builder::from(sdk);
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_ssm::Client::from_conf(config.build())
}

/// SSM's endpoint when it is not AWS's, for messages: `--endpoint-url`, else
/// `AWS_ENDPOINT_URL_SSM`, else `AWS_ENDPOINT_URL` (the SDK's order).
pub fn ssm_endpoint_in_effect(endpoint_url: Option<&str>) -> Option<String> {
    endpoint_url
        .map(str::to_owned)
        .or_else(|| service_endpoint_from_env("SSM"))
}

/// `SERVICE`'s endpoint from the SDK's variables: `AWS_ENDPOINT_URL_<SERVICE>`, else
/// `AWS_ENDPOINT_URL` (empty values count as unset).
pub fn service_endpoint_from_env(service: &str) -> Option<String> {
    [
        format!("AWS_ENDPOINT_URL_{service}"),
        "AWS_ENDPOINT_URL".to_owned(),
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// Every endpoint override in effect (`--endpoint-url` and the `AWS_ENDPOINT_URL*`
/// variables postern's services read), in one string: the cache keys listings by it, so the
/// emulator and AWS never share one. `None` when nothing is overridden.
pub fn endpoint_overrides(ssm_endpoint: Option<&str>) -> Option<String> {
    let mut parts: Vec<String> = ssm_endpoint
        .map(|e| format!("ssm={e}"))
        .into_iter()
        .collect();
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SSM",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_STS",
    ] {
        if let Ok(value) = std::env::var(name)
            && !value.is_empty()
        {
            parts.push(format!("{name}={value}"));
        }
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The profile `options` ask for, if any: `--profile`, else `AWS_PROFILE` (what [`load`]
/// gives as [`AwsContext::profile`], known without loading the configuration).
pub fn profile_in_effect(options: &AwsOptions) -> Option<String> {
    options
        .profile
        .clone()
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()))
}

/// Loads the configuration. Fails when no region can be found, or when a proxy variable or
/// the CA bundle cannot be used (operation [`NETWORK_SETTINGS`]).
pub async fn load(options: &AwsOptions) -> Result<AwsContext, AwsError> {
    // `--endpoint-url` and every `AWS_ENDPOINT_URL*` variable, whichever service it names.
    let from_env = std::env::vars().filter(|(name, _)| name.starts_with("AWS_ENDPOINT_URL"));
    let overridden = options
        .endpoint_url
        .iter()
        .cloned()
        .chain(from_env.map(|(_, value)| value));
    for endpoint in overridden {
        if let Some(refusal) = crate::aws::http::plain_http_refusal(&endpoint) {
            return Err(AwsError::local(
                AwsErrorKind::Configuration,
                ENDPOINT_SETTINGS,
                options.region.clone(),
                options.profile.clone(),
                &refusal,
            ));
        }
    }
    // Proxy and CA bundle (`HTTPS_PROXY`, `NO_PROXY`, `AWS_CA_BUNDLE`): see `aws::http`.
    let http_client = https_client().map_err(|e| {
        AwsError::local(
            AwsErrorKind::Configuration,
            NETWORK_SETTINGS,
            options.region.clone(),
            options.profile.clone(),
            &e.chain(),
        )
    })?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client);
    if let Some(profile) = &options.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(credentials) = &options.credentials {
        loader = loader.credentials_provider(credentials.provider.clone());
    }
    let sdk = loader.load().await;
    let profile = profile_in_effect(options);
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
        ssm_endpoint: options.endpoint_url.clone(),
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

/// The operation of an [`AwsError`] about an endpoint override that may not be used.
pub const ENDPOINT_SETTINGS: &str = "LoadEndpointSettings";

/// The operation of an [`AwsError`] about the proxy variables or the CA bundle.
pub const NETWORK_SETTINGS: &str = "LoadNetworkSettings";
