//! The AWS configuration of a command on one target, with the description of that target
//! (target, region, profile, endpoint, role) that every later error message names.

use crate::aws;
use crate::cli::errors::aws_failure;

/// Loads the AWS configuration for a command on `target`; returns it with the target's
/// description (target, region, profile, endpoint) that every later error message names.
pub(crate) async fn load_aws(
    options: &aws::AwsOptions,
    target: &str,
) -> anyhow::Result<(aws::AwsContext, String)> {
    let endpoint = aws::ssm_endpoint_in_effect(options.endpoint_url.as_deref());
    let endpoint = endpoint.as_deref();
    let context = aws::load(options).await.map_err(|e| {
        aws_failure(
            e,
            "could not load the AWS configuration",
            &describe(target, None, options.profile.as_deref(), endpoint),
        )
    })?;
    let mut described = describe(
        target,
        Some(&context.region),
        context.profile.as_deref(),
        endpoint,
    );
    if let Some(credentials) = &options.credentials {
        described.push_str(", ");
        described.push_str(&credentials.label);
    }
    crate::setup_memory::between_steps("the SDK's configuration");
    Ok((context, described))
}

pub(crate) fn describe(
    target: &str,
    region: Option<&str>,
    profile: Option<&str>,
    endpoint: Option<&str>,
) -> String {
    let mut text = target.to_owned();
    if let Some(region) = region {
        text.push_str(" in ");
        text.push_str(region);
    }
    if let Some(profile) = profile {
        text.push_str(", profile ");
        text.push_str(profile);
    }
    if let Some(endpoint) = endpoint {
        text.push_str(", endpoint ");
        text.push_str(endpoint);
    }
    text
}
