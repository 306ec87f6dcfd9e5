//! Support for the control-plane tests: an emulator serving the sample fleet (bounded
//! lifetime, port 0), and the real AWS SDK clients (STS, EC2, SSM, Organizations) pointed at it
//! with static credentials, retries off so every error reaches the test as the service sent it.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support module"
)]

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::SdkConfig;
use aws_types::region::Region;
use postern_emulator::{AccountSpec, Emulator, EmulatorConfig, EmulatorHandle, Fleet};

/// Base credentials: not issued by the emulator, so they act in the management account.
pub(crate) const BASE_KEY: &str = "AKIDCONTROLTEST";

/// An emulator serving the sample fleet for at most 90 s.
pub(crate) async fn fleet_emulator(tweak: impl FnOnce(&mut EmulatorConfig)) -> EmulatorHandle {
    let fleet = Fleet::sample();
    let mut config = EmulatorConfig {
        lifetime: Some(Duration::from_secs(90)),
        pacing: None,
        region: fleet.regions[0].clone(),
        fleet,
        ..EmulatorConfig::default()
    };
    tweak(&mut config);
    Emulator::start(config).await.expect("emulator starts")
}

/// SDK configuration for `region` with `credentials`, pointed at the emulator.
pub(crate) fn sdk(emulator: &EmulatorHandle, region: &str, credentials: Credentials) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(emulator.endpoint())
        .retry_config(RetryConfig::disabled())
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}

/// SDK configuration with base credentials.
pub(crate) fn base(emulator: &EmulatorHandle, region: &str) -> SdkConfig {
    sdk(
        emulator,
        region,
        Credentials::new(BASE_KEY, "control-secret", None, None, "tests"),
    )
}

/// The fleet's account with `alias`.
pub(crate) fn account<'a>(emulator: &'a EmulatorHandle, alias: &str) -> &'a AccountSpec {
    emulator
        .fleet()
        .accounts
        .iter()
        .find(|a| a.alias == alias)
        .unwrap_or_else(|| panic!("the sample fleet has account {alias}"))
}

/// `arn:aws:iam::ACCOUNT:role/ROLE`.
pub(crate) fn role_arn(account: &str, role: &str) -> String {
    format!("arn:aws:iam::{account}:role/{role}")
}

/// AssumeRole with base credentials; the credentials it returned.
pub(crate) async fn assume(emulator: &EmulatorHandle, account: &str, role: &str) -> Credentials {
    let sts = aws_sdk_sts::Client::new(&base(emulator, &emulator.fleet().regions[0]));
    let output = sts
        .assume_role()
        .role_arn(role_arn(account, role))
        .role_session_name("control-test")
        .send()
        .await
        .expect("AssumeRole succeeds");
    let credentials = output.credentials.expect("credentials");
    Credentials::new(
        credentials.access_key_id,
        credentials.secret_access_key,
        Some(credentials.session_token),
        None,
        "assumed",
    )
}

/// Ids of the fleet's instances in `account` and `region`, EC2 only or all, in fleet order.
pub(crate) fn fleet_ids(
    emulator: &EmulatorHandle,
    account: &str,
    region: &str,
    ec2_only: bool,
) -> Vec<String> {
    emulator
        .fleet()
        .instances
        .iter()
        .filter(|i| i.account == account && i.region == region)
        .filter(|i| !(ec2_only && i.is_managed_instance()))
        .map(|i| i.id.clone())
        .collect()
}

/// The id of the fleet instance named `name`.
pub(crate) fn id_of(emulator: &EmulatorHandle, name: &str) -> String {
    emulator
        .fleet()
        .instances
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("the sample fleet has {name}"))
        .id
        .clone()
}
