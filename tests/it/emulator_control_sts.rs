//! STS against the emulator with the real `aws-sdk-sts` client: AssumeRole into each account of
//! the sample fleet, GetCallerIdentity, AccessDenied as STS words it, credential expiry,
//! GetSessionToken with MFA, throttling and injected latency.

use std::time::{Duration, SystemTime};

use crate::support::aws::sts_credentials;
use crate::support::emulator::{account, assume, base, fleet_emulator, role_arn, sdk};
use aws_credential_types::Credentials;
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_sdk_sts::operation::RequestId;

#[tokio::test]
async fn assume_role_into_each_account_acts_in_that_account() {
    let emulator = fleet_emulator(|_| {}).await;
    let region = emulator.fleet().regions[0].clone();
    let sts = aws_sdk_sts::Client::new(&base(&emulator, &region));
    for spec in &emulator.fleet().accounts {
        let output = sts
            .assume_role()
            .role_arn(role_arn(&spec.id, "PosternAccess"))
            .role_session_name("alice")
            .send()
            .await
            .unwrap_or_else(|e| panic!("AssumeRole into {}: {e:?}", spec.alias));
        let user = output.assumed_role_user.unwrap();
        let arn = format!("arn:aws:sts::{}:assumed-role/PosternAccess/alice", spec.id);
        assert_eq!(user.arn, arn);
        assert!(user.assumed_role_id.ends_with(":alice"));
        let credentials = output.credentials.unwrap();
        assert!(credentials.access_key_id.starts_with("ASIA"));
        // One hour by default, as STS.
        let expires = SystemTime::try_from(credentials.expiration).unwrap();
        let left = expires.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600));

        let assumed = sts_credentials(credentials);
        let identity = aws_sdk_sts::Client::new(&sdk(&emulator, &region, assumed))
            .get_caller_identity()
            .send()
            .await
            .unwrap();
        assert_eq!(identity.account(), Some(spec.id.as_str()));
        assert_eq!(identity.arn(), Some(arn.as_str()));
    }
}

#[tokio::test]
async fn base_credentials_act_in_the_management_account() {
    let emulator = fleet_emulator(|_| {}).await;
    let management = emulator.fleet().management_account.clone();
    let identity = aws_sdk_sts::Client::new(&base(&emulator, "us-east-1"))
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(identity.account(), Some(management.as_str()));
    assert_eq!(
        identity.arn(),
        Some(format!("arn:aws:iam::{management}:user/postern-emulator").as_str())
    );
    assert!(identity.user_id().unwrap().starts_with("AIDA"));
}

#[tokio::test]
async fn roles_an_account_does_not_allow_are_access_denied_as_sts_words_it() {
    let emulator = fleet_emulator(|_| {}).await;
    let management = emulator.fleet().management_account.clone();
    let prod = account(&emulator, "acme-prod").id.clone();
    let sts = aws_sdk_sts::Client::new(&base(&emulator, "eu-west-1"));
    for arn in [
        role_arn(&prod, "Developer"),
        role_arn("999999999999", "PosternAccess"),
    ] {
        let err = sts
            .assume_role()
            .role_arn(&arn)
            .role_session_name("alice")
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
        assert_eq!(
            err.message(),
            Some(
                format!(
                    "User: arn:aws:iam::{management}:user/postern-emulator is not authorized \
                     to perform: sts:AssumeRole on resource: {arn}"
                )
                .as_str()
            )
        );
        assert!(err.meta().request_id().is_some());
        let raw = err.raw_response().unwrap();
        assert_eq!(raw.status().as_u16(), 403);
    }
    // A role allowed in dev is not allowed in prod, but is in dev.
    let dev = account(&emulator, "acme-dev").id.clone();
    sts.assume_role()
        .role_arn(role_arn(&dev, "Developer"))
        .role_session_name("alice")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn malformed_requests_are_validation_errors() {
    let emulator = fleet_emulator(|_| {}).await;
    let sts = aws_sdk_sts::Client::new(&base(&emulator, "eu-west-1"));
    let dev = account(&emulator, "acme-dev").id.clone();
    let err = sts
        .assume_role()
        .role_arn(role_arn(&dev, "PosternAccess"))
        .role_session_name("has space")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationError"));
    let err = sts
        .assume_role()
        .role_arn(role_arn(&dev, "PosternAccess"))
        .role_session_name("alice")
        .duration_seconds(7200)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationError"));
    assert!(err.message().unwrap().contains("MaxSessionDuration"));
}

#[tokio::test]
async fn credentials_expire_at_their_stated_time() {
    // Zero lifetime: credentials are expired the moment they are issued, no waiting needed.
    let emulator = fleet_emulator(|config| config.credential_lifetime = Some(Duration::ZERO)).await;
    let prod = account(&emulator, "acme-prod").id.clone();
    let sts = aws_sdk_sts::Client::new(&base(&emulator, "eu-west-1"));
    let output = sts
        .assume_role()
        .role_arn(role_arn(&prod, "PosternAccess"))
        .role_session_name("alice")
        .send()
        .await
        .unwrap();
    let credentials = output.credentials.unwrap();
    let expires = SystemTime::try_from(credentials.expiration).unwrap();
    assert!(expires <= SystemTime::now());
    let expired = sts_credentials(credentials);
    let config = sdk(&emulator, "eu-west-1", expired);

    let err = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ExpiredToken"));
    assert_eq!(
        err.message(),
        Some("The security token included in the request is expired")
    );
    let err = aws_sdk_ec2::Client::new(&config)
        .describe_instances()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("RequestExpired"));
    let err = aws_sdk_ssm::Client::new(&config)
        .describe_instance_information()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ExpiredTokenException"));
    // Base credentials never expire.
    aws_sdk_sts::Client::new(&base(&emulator, "eu-west-1"))
        .get_caller_identity()
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_forged_session_token_is_refused() {
    let emulator = fleet_emulator(|_| {}).await;
    let dev = account(&emulator, "acme-dev").id.clone();
    let good = assume(&emulator, &dev, "PosternAccess").await;
    let forged = Credentials::new(
        good.access_key_id(),
        good.secret_access_key(),
        Some("forged-token".to_owned()),
        None,
        "forged",
    );
    let err = aws_sdk_sts::Client::new(&sdk(&emulator, "eu-west-1", forged))
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidClientTokenId"));
}

#[tokio::test]
async fn get_session_token_with_mfa() {
    let emulator = fleet_emulator(|config| config.mfa_code = Some("246810".to_owned())).await;
    let management = emulator.fleet().management_account.clone();
    let serial = format!("arn:aws:iam::{management}:mfa/alice");
    let sts = aws_sdk_sts::Client::new(&base(&emulator, "us-east-1"));

    let err = sts
        .get_session_token()
        .serial_number(&serial)
        .token_code("135791")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
    assert_eq!(
        err.message().map(str::trim_end),
        Some("MultiFactorAuthentication failed with invalid MFA one time pass code.")
    );
    let err = sts
        .get_session_token()
        .token_code("246810")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
    let err = sts
        .get_session_token()
        .serial_number("arn:aws:iam::999999999999:mfa/alice")
        .token_code("246810")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));

    let output = sts
        .get_session_token()
        .serial_number(&serial)
        .token_code("246810")
        .duration_seconds(900)
        .send()
        .await
        .unwrap();
    let credentials = output.credentials.unwrap();
    assert!(credentials.access_key_id.starts_with("ASIA"));
    let left = SystemTime::try_from(credentials.expiration)
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left <= Duration::from_secs(900) && left > Duration::from_secs(800));
    let session = sts_credentials(credentials);
    let mfa_sts = aws_sdk_sts::Client::new(&sdk(&emulator, "us-east-1", session));
    let identity = mfa_sts.get_caller_identity().send().await.unwrap();
    assert_eq!(identity.account(), Some(management.as_str()));
    // Session credentials cannot get another session token, but can assume roles.
    let err = mfa_sts.get_session_token().send().await.unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
    assert_eq!(
        err.message(),
        Some("Cannot call GetSessionToken with session credentials")
    );
    let prod = account(&emulator, "acme-prod").id.clone();
    mfa_sts
        .assume_role()
        .role_arn(role_arn(&prod, "PosternReadOnly"))
        .role_session_name("alice")
        .serial_number(&serial)
        .token_code("246810")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn throttled_calls_get_each_services_throttling_error() {
    // A bucket of one call per account and service, refilled every 1000 s: the second call of
    // an account to a service is throttled.
    let emulator = fleet_emulator(|config| config.throttle_rate = Some(0.001)).await;
    let config = base(&emulator, "eu-west-1");
    let dev = account(&emulator, "acme-dev").id.clone();

    let sts = aws_sdk_sts::Client::new(&config);
    let output = sts
        .assume_role()
        .role_arn(role_arn(&dev, "PosternAccess"))
        .role_session_name("alice")
        .send()
        .await
        .unwrap();
    let err = sts.get_caller_identity().send().await.unwrap_err();
    assert_eq!(err.code(), Some("Throttling"));
    assert_eq!(err.message(), Some("Rate exceeded"));
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 400);

    // Buckets are per account: the dev role has its own.
    let credentials = output.credentials.unwrap();
    let dev_sts =
        aws_sdk_sts::Client::new(&sdk(&emulator, "eu-west-1", sts_credentials(credentials)));
    dev_sts.get_caller_identity().send().await.unwrap();
    let err = dev_sts.get_caller_identity().send().await.unwrap_err();
    assert_eq!(err.code(), Some("Throttling"));

    let ec2 = aws_sdk_ec2::Client::new(&config);
    ec2.describe_instances().send().await.unwrap();
    let err = ec2.describe_instances().send().await.unwrap_err();
    assert_eq!(err.code(), Some("RequestLimitExceeded"));

    let ssm = aws_sdk_ssm::Client::new(&config);
    ssm.describe_instance_information().send().await.unwrap();
    let err = ssm
        .describe_instance_information()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"));
}

#[tokio::test]
async fn injected_latency_delays_every_call() {
    let latency = Duration::from_millis(150);
    let emulator = fleet_emulator(|config| config.api_latency = Some(latency)).await;
    let sts = aws_sdk_sts::Client::new(&base(&emulator, "eu-west-1"));
    for _ in 0..2 {
        let started = std::time::Instant::now();
        sts.get_caller_identity().send().await.unwrap();
        assert!(started.elapsed() >= latency);
    }
}
