//! The emulator started inside the test process (port 0, stopping by itself), its control
//! plane called with the real AWS SDK clients: the built-in instances, or the multi-account
//! sample fleet with role assumption.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_types::SdkConfig;
use postern_emulator::{AccountSpec, Emulator, EmulatorConfig, EmulatorHandle, Fleet};

use crate::support::aws::{sdk_config, static_credentials, sts_credentials};

/// Longest any single wait in a test may take.
pub(crate) const STEP: Duration = Duration::from_secs(20);
/// The client version a current official plugin reports.
pub(crate) const CLIENT_VERSION: &str = "1.2.707.0";
/// Built-in instance with a current agent (mux).
pub(crate) const CURRENT: &str = "i-0a1b2c3d4e5f60718";
/// Built-in instance with an agent too old for mux (basic port forwarding).
pub(crate) const OLD: &str = "i-0e2d4f6a8c0b1d3e5";

/// An emulator with the built-in instances, unpaced unless `tweak` says otherwise; it stops by
/// itself after 90 s.
pub(crate) async fn emulator(tweak: impl FnOnce(&mut EmulatorConfig)) -> EmulatorHandle {
    let mut config = EmulatorConfig {
        lifetime: Some(LIFETIME),
        pacing: None,
        ..EmulatorConfig::default()
    };
    tweak(&mut config);
    Emulator::start(config).await.expect("emulator starts")
}

/// An emulator serving the sample fleet (its first region as the default), otherwise as
/// [`emulator`].
pub(crate) async fn fleet_emulator(tweak: impl FnOnce(&mut EmulatorConfig)) -> EmulatorHandle {
    let fleet = Fleet::sample();
    emulator(|config| {
        config.region = fleet.regions[0].clone();
        config.fleet = fleet;
        tweak(config);
    })
    .await
}

/// SDK configuration for `region` with `credentials`, pointed at the emulator.
pub(crate) fn sdk(emulator: &EmulatorHandle, region: &str, credentials: Credentials) -> SdkConfig {
    sdk_config(&emulator.endpoint(), region, credentials)
}

/// The emulator's base credentials for this run (they act in the management account): the
/// only long-term keys it accepts.
pub(crate) fn base_credentials(emulator: &EmulatorHandle) -> Credentials {
    let keys = emulator.base_credentials();
    static_credentials(keys.access_key_id(), keys.secret_access_key())
}

/// SDK configuration with base credentials.
pub(crate) fn base(emulator: &EmulatorHandle, region: &str) -> SdkConfig {
    sdk(emulator, region, base_credentials(emulator))
}

/// The real SSM client pointed at the emulator, in its default region, with base credentials.
pub(crate) fn ssm(emulator: &EmulatorHandle) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(&base(emulator, emulator.region()))
}

/// StartSession's answer.
#[derive(Clone, Debug)]
pub(crate) struct Started {
    pub(crate) session_id: String,
    pub(crate) token: String,
    pub(crate) stream_url: String,
}

/// Calls StartSession.
pub(crate) async fn start_session(
    emulator: &EmulatorHandle,
    target: &str,
    document: Option<&str>,
    parameters: &[(&str, &str)],
) -> Started {
    let mut request = ssm(emulator).start_session().target(target);
    if let Some(document) = document {
        request = request.document_name(document);
    }
    for (key, value) in parameters {
        request = request.parameters(*key, vec![(*value).to_owned()]);
    }
    let output = tokio::time::timeout(STEP, request.send())
        .await
        .expect("StartSession answers in time")
        .expect("StartSession succeeds");
    Started {
        session_id: output.session_id().expect("a session id").to_owned(),
        token: output.token_value().expect("a token").to_owned(),
        stream_url: output.stream_url().expect("a stream URL").to_owned(),
    }
}

/// Calls ResumeSession and returns the new token.
pub(crate) async fn resume_session(emulator: &EmulatorHandle, session_id: &str) -> String {
    let output = tokio::time::timeout(
        STEP,
        ssm(emulator).resume_session().session_id(session_id).send(),
    )
    .await
    .expect("ResumeSession answers in time")
    .expect("ResumeSession succeeds");
    output.token_value().expect("a fresh token").to_owned()
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
    sts_credentials(output.credentials.expect("credentials"))
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

/// The emulator stops by itself after this long, whatever happens to the test.
const LIFETIME: Duration = Duration::from_secs(90);
