//! `postern console` through the real binary against the emulator's multi-account sample
//! fleet and its federation endpoint (`POSTERN_FEDERATION_ENDPOINT`): the printed login URL
//! carries the sign-in token the emulator issued for that account role's credentials and the
//! landing page asked for; production needs its confirmation; the token and the credentials
//! never reach the logs; the emulator refuses credentials it did not issue.

use std::process::{Command, Output};
use std::time::Duration;

use postern_emulator::EmulatorHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::support::emulator::fleet_emulator;
use crate::support::fixtures::SAMPLE_ACCOUNTS as ACCOUNTS;
use crate::support::home::Home;
use crate::support::process::{run, text};

const LIMIT: Duration = Duration::from_secs(120);

/// The configuration: a role in every account, then the sample fleet's accounts.
fn config() -> String {
    format!("role = \"PosternAccess\"\nregions = [\"eu-west-1\"]\n{ACCOUNTS}")
}

/// `postern ARGS` in `home` against `emulator`, its federation endpoint included.
fn console_command(home: &Home, emulator: &EmulatorHandle, args: &[&str]) -> Command {
    let mut command = home.against(emulator, args);
    command.env(
        "POSTERN_FEDERATION_ENDPOINT",
        emulator.federation_endpoint(),
    );
    command
}

fn postern(home: &Home, emulator: &EmulatorHandle, args: &[&str]) -> Output {
    run(console_command(home, emulator, args), LIMIT)
}

/// The role credentials `postern creds ACCOUNT` prints (and caches, so `console` uses them):
/// access key id, secret key, session token.
fn creds(home: &Home, emulator: &EmulatorHandle, account: &str) -> (String, String, String) {
    let out = postern(home, emulator, &["creds", account, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("creds JSON");
    let field = |name: &str| json[name].as_str().expect(name).to_owned();
    (
        field("AccessKeyId"),
        field("SecretAccessKey"),
        field("SessionToken"),
    )
}

/// The one URL on stdout, and its query.
fn login_url(out: &Output) -> (Url, Vec<(String, String)>) {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    let url = Url::parse(stdout.trim()).expect("a URL");
    let query = url.query_pairs().into_owned().collect();
    (url, query)
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> &'a str {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} in {query:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_print_url_signs_in_with_the_token_issued_for_the_accounts_role() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&config()));
    let (key, _, _) = creds(&home, &emulator, "acme-dev");
    let out = postern(&home, &emulator, &["console", "acme-dev", "--print-url"]);
    let (url, query) = login_url(&out);
    let endpoint = Url::parse(&emulator.federation_endpoint()).unwrap();
    assert_eq!(
        (url.scheme(), url.host_str(), url.port(), url.path()),
        (
            endpoint.scheme(),
            endpoint.host_str(),
            endpoint.port(),
            endpoint.path()
        )
    );
    assert_eq!(param(&query, "Action"), "login");
    assert_eq!(param(&query, "Issuer"), "postern");
    assert_eq!(
        param(&query, "Destination"),
        "https://console.aws.amazon.com/console/home"
    );
    let grant = emulator
        .signin_grant_for(&key)
        .expect("a token issued for acme-dev's role credentials");
    assert_eq!(param(&query, "SigninToken"), grant.token);
    assert_eq!(
        emulator.signin_token_for(&key).as_deref(),
        Some(grant.token.as_str())
    );
    assert!(
        grant
            .arn
            .starts_with("arn:aws:sts::318402957716:assumed-role/PosternAccess/"),
        "{}",
        grant.arn
    );
    // The base credentials are an IAM user's: no role chaining, the configured hour asked.
    assert_eq!(grant.session_duration, Some(3600));
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_service_and_region_land_in_the_destination() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&config()));
    let out = postern(
        &home,
        &emulator,
        &[
            "console",
            "acme-dev",
            "--service",
            "ec2",
            "--region",
            "eu-west-1",
            "--print-url",
        ],
    );
    let (_, query) = login_url(&out);
    assert_eq!(
        param(&query, "Destination"),
        "https://console.aws.amazon.com/ec2/home?region=eu-west-1"
    );
    let out = postern(
        &home,
        &emulator,
        &[
            "console",
            "acme-dev",
            "--service",
            "ec2/../iam",
            "--print-url",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_of_a_prod_account_needs_its_confirmation() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&config()));
    let out = postern(&home, &emulator, &["console", "acme-prod", "--print-url"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(241), "{stderr}");
    assert!(stderr.contains("acme-prod"), "{stderr}");
    assert!(out.stdout.is_empty(), "no URL: {}", text(&out.stdout));
    let (key, _, _) = creds(&home, &emulator, "acme-prod");
    let out = postern(
        &home,
        &emulator,
        &[
            "console",
            "acme-prod",
            "--print-url",
            "--yes",
            "--reason",
            "INC-1234",
        ],
    );
    let (_, query) = login_url(&out);
    assert_eq!(
        Some(param(&query, "SigninToken")),
        emulator.signin_token_for(&key).as_deref()
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_never_logs_the_token_or_the_credentials() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&config()));
    let (key, secret, session_token) = creds(&home, &emulator, "acme-dev");
    let mut command = console_command(&home, &emulator, &["console", "acme-dev", "--print-url"]);
    command.env("POSTERN_LOG", "trace");
    let out = run(command, LIMIT);
    let (_, query) = login_url(&out);
    let token = param(&query, "SigninToken");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("sign-in token"),
        "trace logs are on: {stderr}"
    );
    for (what, value) in [
        ("token", token),
        ("secret", &secret),
        ("session token", &session_token),
    ] {
        assert!(!stderr.contains(value), "{what} on stderr: {stderr}");
    }
    assert!(!stderr.contains("SigninToken="), "{stderr}");
    assert!(!stderr.contains("Session="), "{stderr}");
    assert_eq!(emulator.signin_token_for(&key).as_deref(), Some(token));
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_without_an_opener_suggests_print_url() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&config()));
    let empty = tempfile::tempdir().unwrap();
    let mut command = console_command(&home, &emulator, &["console", "acme-dev"]);
    command.env("PATH", empty.path());
    let out = run(command, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(245), "{stderr}");
    assert!(stderr.contains("--print-url"), "{stderr}");
    assert!(out.stdout.is_empty());
    // Plain http to another machine is refused before any credential leaves.
    let mut command = home.against(&emulator, &["console", "acme-dev", "--print-url"]);
    command.env("POSTERN_FEDERATION_ENDPOINT", "http://192.0.2.1/federation");
    let out = run(command, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("POSTERN_FEDERATION_ENDPOINT"));
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_federation_endpoint_refuses_credentials_it_did_not_issue() {
    let emulator = fleet_emulator(|_| {}).await;
    let base = emulator.base_credentials();
    let session = serde_json::json!({
        "sessionId": base.access_key_id(),
        "sessionKey": base.secret_access_key(),
        "sessionToken": "made-up",
    })
    .to_string();
    let made_up = serde_json::json!({
        "sessionId": "ASIAMADEUPMADEUPMAD",
        "sessionKey": "secret",
        "sessionToken": "token",
    })
    .to_string();
    for session in [session, made_up, "not json".to_owned()] {
        let (status, body) = get_signin_token(&emulator, &session).await;
        assert_eq!(status, 400, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(json["message"].is_string(), "{body}");
    }
    emulator.shutdown().await.unwrap();
}

/// `GET /federation?Action=getSigninToken&Session=SESSION` on the emulator: status and body.
async fn get_signin_token(emulator: &EmulatorHandle, session: &str) -> (u16, String) {
    let endpoint = Url::parse(&emulator.federation_endpoint()).unwrap();
    let mut url = endpoint.clone();
    url.query_pairs_mut()
        .append_pair("Action", "getSigninToken")
        .append_pair("Session", session);
    let authority = format!(
        "{}:{}",
        endpoint.host_str().unwrap(),
        endpoint.port().unwrap()
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let request = format!(
            "GET {}?{} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n",
            url.path(),
            url.query().unwrap()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8(answer).unwrap()
    };
    let answer = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("the emulator answers");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
