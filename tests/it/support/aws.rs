//! AWS SDK configuration for the tests: every client points at a local endpoint (the emulator
//! or moto) with static credentials and retries off, so that each error reaches the test as
//! the service sent it.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::SdkConfig;
use aws_types::region::Region;

/// SDK configuration for `region` at `endpoint`, signing with `credentials`.
pub(crate) fn sdk_config(endpoint: &str, region: &str, credentials: Credentials) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}

/// Long-term keys (no session token).
pub(crate) fn static_credentials(access_key: &str, secret_key: &str) -> Credentials {
    Credentials::new(access_key, secret_key, None, None, "tests")
}

/// The keys in a `credential_process` answer (`postern creds`).
pub(crate) fn process_credentials(value: &serde_json::Value) -> Credentials {
    let field = |name: &str| {
        value[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} in {value}"))
            .to_owned()
    };
    Credentials::new(
        field("AccessKeyId"),
        field("SecretAccessKey"),
        Some(field("SessionToken")),
        None,
        "credential-process",
    )
}

/// The temporary credentials STS issued (AssumeRole, GetSessionToken).
pub(crate) fn sts_credentials(issued: aws_sdk_sts::types::Credentials) -> Credentials {
    Credentials::new(
        issued.access_key_id,
        issued.secret_access_key,
        Some(issued.session_token),
        None,
        "sts",
    )
}

/// Sets `credentials` as the AWS environment of `command` (a session token only if any).
pub(crate) fn credentials_env(command: &mut std::process::Command, credentials: &Credentials) {
    command
        .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key());
    if let Some(token) = credentials.session_token() {
        command.env("AWS_SESSION_TOKEN", token);
    }
}
