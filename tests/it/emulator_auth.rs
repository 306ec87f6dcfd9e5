//! The emulator is not an open shell: every control-plane request must carry a SigV4 signature
//! that verifies against a key it knows (its per-run base credentials or credentials it issued,
//! with their session token) and come through a loopback `Host`; anything else gets the AWS
//! error each service sends. Signed by the real SDKs with wrong keys, altered after signing by
//! an SDK interceptor, or written by hand on a raw TCP connection.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sdk_ssm::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_ssm::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ssm::error::{BoxError, ProvideErrorMetadata};
use postern_emulator::EmulatorHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::aws::static_credentials;
use crate::support::emulator::{
    CURRENT, Channel, OLD, STEP, Started, assume, base, emulator, fleet_emulator, sdk, ssm,
};

#[tokio::test]
async fn the_ready_line_and_the_handle_name_this_runs_keys() {
    let first = emulator(|_| {}).await;
    let second = emulator(|_| {}).await;
    let line = serde_json::to_value(first.ready_line()).unwrap();
    let keys = first.base_credentials();
    assert_eq!(line["access_key_id"], keys.access_key_id());
    assert_eq!(line["secret_access_key"], keys.secret_access_key());
    assert!(keys.access_key_id().starts_with("AKIA"));
    assert_ne!(keys, second.base_credentials(), "keys are random per run");
    assert!(!format!("{:?}", first.ready_line()).contains(keys.secret_access_key()));
    // And they work.
    ssm(&first)
        .describe_instance_information()
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_every_service_in_its_own_words() {
    let emulator = emulator(|_| {}).await;
    let wrong = static_credentials(
        emulator.base_credentials().access_key_id(),
        "not-the-emulators-secret",
    );
    let config = sdk(&emulator, emulator.region(), wrong);
    let err = aws_sdk_ssm::Client::new(&config)
        .start_session()
        .target(CURRENT)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    let err = aws_sdk_kms::Client::new(&config)
        .list_keys()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    let err = aws_sdk_organizations::Client::new(&config)
        .list_accounts()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    let err = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err:?}");
    let err = aws_sdk_ec2::Client::new(&config)
        .describe_instances()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AuthFailure"), "{err:?}");
}

#[tokio::test]
async fn an_unknown_access_key_is_refused() {
    let emulator = emulator(|_| {}).await;
    let stranger = static_credentials(
        "AKIAIOSFODNN7EXAMPLE",
        emulator.base_credentials().secret_access_key(),
    );
    let config = sdk(&emulator, emulator.region(), stranger);
    let err = aws_sdk_ssm::Client::new(&config)
        .start_session()
        .target(CURRENT)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");
    let err = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidClientTokenId"), "{err:?}");
    let err = aws_sdk_ec2::Client::new(&config)
        .describe_instances()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AuthFailure"), "{err:?}");
}

#[tokio::test]
async fn issued_credentials_need_their_session_token() {
    let emulator = fleet_emulator(|_| {}).await;
    let management = emulator.fleet().management_account.clone();
    let region = emulator.fleet().regions[0].clone();
    let issued = assume(&emulator, &management, "PosternAccess").await;
    let sts = |credentials: Credentials| {
        aws_sdk_sts::Client::new(&sdk(&emulator, &region, credentials))
            .get_caller_identity()
            .send()
    };
    let identity = sts(issued.clone()).await.unwrap();
    assert!(
        identity
            .arn()
            .unwrap()
            .contains(":assumed-role/PosternAccess/")
    );
    let without_token = static_credentials(issued.access_key_id(), issued.secret_access_key());
    let err = sts(without_token).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidClientTokenId"), "{err:?}");
}

#[tokio::test]
async fn a_body_changed_after_signing_is_refused() {
    let emulator = emulator(|_| {}).await;
    let config = aws_sdk_ssm::config::Builder::from(&base(&emulator, emulator.region()))
        .interceptor(Tamper)
        .build();
    let err = aws_sdk_ssm::Client::from_conf(config)
        .start_session()
        .target(CURRENT)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    // Nothing was started on either instance.
    assert_eq!(emulator.violations().total(), 0);
}

#[tokio::test]
async fn a_host_that_is_not_loopback_is_refused_even_when_signed() {
    let emulator = emulator(|_| {}).await;
    let config = aws_sdk_ssm::config::Builder::from(&base(&emulator, emulator.region()))
        .interceptor(ForeignHost)
        .build();
    let err = aws_sdk_ssm::Client::from_conf(config)
        .start_session()
        .target(CURRENT)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("MisdirectedRequest"), "{err:?}");

    // Raw, unsigned: refused for the Host before anything else, on both routes.
    let response = raw(
        &emulator,
        "POST /",
        &[
            ("Host", "rebound.example:80"),
            ("X-Amz-Target", "AmazonSSM.StartSession"),
        ],
        br#"{"Target":"i-0a1b2c3d4e5f60718"}"#,
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 421"), "{response}");
    assert!(
        response.contains(r#""__type":"MisdirectedRequest""#),
        "{response}"
    );
    let response = raw(
        &emulator,
        "GET /v1/data-channel/s-0?role=publish_subscribe",
        &[
            ("Host", "rebound.example"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 421"), "{response}");
}

#[tokio::test]
async fn hand_made_signatures_are_refused() {
    let emulator = emulator(|_| {}).await;
    let addr = emulator.endpoint().trim_start_matches("http://").to_owned();
    let body = br#"{"Target":"i-0a1b2c3d4e5f60718"}"#;
    let ssm_headers = |authorization: &str, date: &str| {
        vec![
            ("Host".to_owned(), addr.clone()),
            (
                "X-Amz-Target".to_owned(),
                "AmazonSSM.StartSession".to_owned(),
            ),
            ("X-Amz-Date".to_owned(), date.to_owned()),
            ("Authorization".to_owned(), authorization.to_owned()),
        ]
    };
    let now = amz_date(SystemTime::now());
    let stale = "20200101T000000Z".to_owned();
    let scope = |key: &str, date: &str| {
        format!(
            "AWS4-HMAC-SHA256 Credential={key}/{}/us-east-1/ssm/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-target, Signature={}",
            &date[..8],
            "0".repeat(64)
        )
    };
    let base_key = emulator.base_credentials().access_key_id().to_owned();
    for (authorization, date, code) in [
        // Not SigV4 at all (the emulator used to take any header as base credentials).
        (
            "test".to_owned(),
            now.clone(),
            "IncompleteSignatureException",
        ),
        // SigV4-shaped, the right key, a made-up signature.
        (
            scope(&base_key, &now),
            now.clone(),
            "InvalidSignatureException",
        ),
        // A key nobody issued.
        (
            scope("AKIAIOSFODNN7EXAMPLE", &now),
            now.clone(),
            "UnrecognizedClientException",
        ),
        // Signed (or claiming to be) more than 15 minutes ago.
        (
            scope(&base_key, &stale),
            stale.clone(),
            "InvalidSignatureException",
        ),
    ] {
        let headers = ssm_headers(&authorization, &date);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let response = raw(&emulator, "POST /", &headers, body).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        assert!(
            response.contains(&format!(r#""__type":"{code}""#)),
            "{authorization} {date}: {response}"
        );
    }
    // An STS request in the query protocol gets the query-protocol error.
    let headers = [
        ("Host", addr.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Authorization", "test"),
    ];
    let response = raw(
        &emulator,
        "POST /",
        &headers,
        b"Action=GetCallerIdentity&Version=2011-06-15",
    )
    .await;
    assert!(
        response.contains("<Code>IncompleteSignature</Code>"),
        "{response}"
    );
}

#[tokio::test]
async fn a_data_channel_with_a_token_never_issued_is_refused() {
    let emulator = emulator(|_| {}).await;
    let started = Started {
        session_id: "s-0123456789abcdef0".to_owned(),
        token: "not-a-token".to_owned(),
        stream_url: format!(
            "{}/v1/data-channel/s-0123456789abcdef0?role=publish_subscribe",
            emulator.endpoint().replacen("http://", "ws://", 1)
        ),
    };
    let mut channel = Channel::open(&started).await;
    assert!(channel.next_event().await.is_none());
    assert!(channel.socket_closed);
    assert_eq!(emulator.violations().get("unknown_token"), 1);
}

/// Rewrites the signed StartSession body to name another instance (same length).
#[derive(Debug)]
struct Tamper;

impl Intercept for Tamper {
    fn name(&self) -> &'static str {
        "Tamper"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let body = request.body().bytes().expect("an in-memory body").to_vec();
        let text = String::from_utf8(body)?.replace(CURRENT, OLD);
        *request.body_mut() = text.into();
        Ok(())
    }
}

/// Sets a `Host` that is not loopback before signing, so the signature covers it.
#[derive(Debug)]
struct ForeignHost;

impl Intercept for ForeignHost {
    fn name(&self) -> &'static str {
        "ForeignHost"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert("host", "rebound.example");
        Ok(())
    }
}

/// One HTTP/1.1 request on a fresh TCP connection; the whole response as text.
async fn raw(
    emulator: &EmulatorHandle,
    request_line: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    let addr = emulator.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut head = format!("{request_line} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut response))
        .await
        .expect("the emulator answers in time")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// `YYYYMMDDTHHMMSSZ`.
fn amz_date(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace(['-', ':'], "")
}
