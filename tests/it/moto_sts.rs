//! The role broker's STS requests (GetCallerIdentity, AssumeRole, GetSessionToken) through the
//! real `postern` binary against moto: `postern creds` and `postern whoami` with a
//! configuration file, the credentials moto issued checked back with moto itself.
//!
//! moto's AssumeRole accepts any role ARN (the role need not exist in its IAM), and its
//! GetSessionToken accepts any serial number and code: these tests check that moto accepts
//! the requests postern sends and that postern reads moto's answers, not trust policies or MFA
//! verification (the emulator tests cover those).

use std::time::{Duration, SystemTime};

use crate::support::aws::process_credentials;
use crate::support::home::Home;
use crate::support::moto::{MOTO_ACCOUNT, Moto};
use crate::support::process::{run, text};
use postern::broker::CredentialCache;

const LIMIT: Duration = Duration::from_secs(60);
const REGION: &str = "eu-west-1";
const DEV: &str = "111111111111";
const STAGING: &str = "222222222222";

const CONFIG: &str = r#"
role = "PosternAccess"
regions = ["eu-west-1"]

[[accounts]]
id = "111111111111"
alias = "moto-dev"
env = "dev"

[[accounts]]
id = "222222222222"
alias = "moto-staging"
env = "stg"
"#;

/// moto's identity for credentials it did not issue (what postern's session name comes from).
const MOTO_CALLER: &str = "arn:aws:sts::123456789012:user/moto";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_returns_the_keys_moto_issued_for_the_configured_role() {
    let moto = Moto::start();
    let home = Home::new(Some(CONFIG));
    let before = SystemTime::now();
    let value = creds(&moto, &home, &["creds", "moto-dev"]);
    assert_eq!(value["Version"], 1);
    let key = value["AccessKeyId"].as_str().expect("AccessKeyId");
    assert!(key.starts_with("ASIA"), "moto issues ASIA keys: {value}");
    assert!(!value["SecretAccessKey"].as_str().unwrap().is_empty());
    assert!(!value["SessionToken"].as_str().unwrap().is_empty());
    // postern asks for the configured duration (one hour by default); moto echoes it.
    let expiration = humantime::parse_rfc3339(value["Expiration"].as_str().unwrap())
        .expect("Expiration is RFC 3339");
    let lifetime = expiration.duration_since(before).expect("in the future");
    assert!(
        lifetime > Duration::from_secs(3500) && lifetime <= Duration::from_secs(3660),
        "{lifetime:?}"
    );

    // moto knows these keys as a session of the role postern asked for, named after the caller.
    assert_eq!(
        caller_arn(&moto, &value).await,
        format!("arn:aws:sts::{DEV}:assumed-role/PosternAccess/moto")
    );

    // Cached under the source identity moto reported and the role ARN.
    let cache = CredentialCache::new(&home.cache());
    let file = cache.path(
        MOTO_CALLER,
        &format!("arn:aws:iam::{DEV}:role/PosternAccess"),
    );
    assert!(file.is_file(), "{} missing", file.display());
    let again = creds(&moto, &home, &["creds", "moto-dev"]);
    assert_eq!(again["AccessKeyId"], value["AccessKeyId"], "a cache hit");

    // A role ARN and env exports.
    let arn = format!("arn:aws:iam::{STAGING}:role/Deployer");
    let mut command = moto.postern(&home, REGION, &["creds", &arn, "--format", "env"]);
    command.arg("--no-cache");
    let output = run(command, LIMIT);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let exports = text(&output.stdout);
    let field = |name: &str| {
        exports
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}='")))
            .and_then(|quoted| quoted.strip_suffix('\''))
            .unwrap_or_else(|| panic!("{name}, quoted, in {exports}"))
            .to_owned()
    };
    let value = serde_json::json!({
        "AccessKeyId": field("AWS_ACCESS_KEY_ID"),
        "SecretAccessKey": field("AWS_SECRET_ACCESS_KEY"),
        "SessionToken": field("AWS_SESSION_TOKEN"),
    });
    assert_eq!(
        caller_arn(&moto, &value).await,
        format!("arn:aws:sts::{STAGING}:assumed-role/Deployer/moto")
    );
}

#[test]
fn whoami_reports_the_moto_caller_and_reaches_every_account() {
    let moto = Moto::start();
    let home = Home::new(Some(CONFIG));
    let output = run(moto.postern(&home, REGION, &["whoami"]), LIMIT);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let out = text(&output.stdout);
    assert!(
        out.starts_with(&format!(
            "source identity: {MOTO_CALLER} (account {MOTO_ACCOUNT}, source default)\n"
        )),
        "{out}"
    );
    for alias in ["moto-dev", "moto-staging"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{alias} ")))
            .unwrap_or_else(|| panic!("{alias} in {out}"));
        assert!(line.ends_with(" yes"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_source_gets_one_session_token_for_every_account() {
    let moto = Moto::start();
    let home = Home::new(Some(&format!(
        "{CONFIG}\n[source]\nmfa_serial = \"arn:aws:iam::{MOTO_ACCOUNT}:mfa/alice\"\n"
    )));
    let asked = home.path().join("asked");
    let command = format!(
        "echo \"$POSTERN_MFA_SERIAL\" >> '{}'; echo 123456",
        asked.display()
    );
    for (alias, id) in [("moto-dev", DEV), ("moto-staging", STAGING)] {
        let value = creds(&moto, &home, &["creds", alias, "--mfa-command", &command]);
        assert_eq!(
            caller_arn(&moto, &value).await,
            format!("arn:aws:sts::{id}:assumed-role/PosternAccess/moto")
        );
    }
    let asked = std::fs::read_to_string(&asked).expect("the MFA command ran");
    assert_eq!(
        asked,
        format!("arn:aws:iam::{MOTO_ACCOUNT}:mfa/alice\n"),
        "one code for both accounts"
    );
    // Two roles, the GetSessionToken credentials, the last-success file and its lock.
    let mut files: Vec<String> = std::fs::read_dir(home.cache().join("credentials"))
        .expect("credentials cache")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 5, "{files:?}");
    assert!(
        files.contains(&"last-success.json.lock".to_owned()),
        "{files:?}"
    );
}

/// `postern ARGS` must succeed and print credential_process JSON.
fn creds(moto: &Moto, home: &Home, args: &[&str]) -> serde_json::Value {
    let output = run(moto.postern(home, REGION, args), LIMIT);
    assert!(
        output.status.success(),
        "postern {args:?} failed: {}\nmoto log:\n{}",
        text(&output.stderr),
        moto.log()
    );
    serde_json::from_slice(&output.stdout).expect("credential_process JSON")
}

/// GetCallerIdentity with the credentials in `value`, as moto answers it.
async fn caller_arn(moto: &Moto, value: &serde_json::Value) -> String {
    aws_sdk_sts::Client::new(&moto.sdk_with(REGION, process_credentials(value)))
        .get_caller_identity()
        .send()
        .await
        .expect("moto answers GetCallerIdentity")
        .arn
        .expect("an ARN")
}
