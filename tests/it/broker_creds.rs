//! The role broker through the real binary (`postern creds`, `whoami`, `accounts`) against the
//! emulator's multi-account sample fleet: assumption into each account, MFA with a scripted
//! code source, the credentials cache, the role-chaining cap, production guardrails and
//! configuration errors.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use aws_credential_types::Credentials;
use postern_emulator::EmulatorHandle;

use crate::support::aws::{credentials_env, process_credentials};
use crate::support::emulator::{assume, fleet_emulator, sdk};
use crate::support::fixtures::SAMPLE_ACCOUNTS as ACCOUNTS;
use crate::support::home::Home;
use crate::support::process::{run, text};

const LIMIT: Duration = Duration::from_secs(120);

/// The configuration's head; the sample fleet's accounts follow.
const HEAD: &str = "role = \"PosternAccess\"\nregions = [\"eu-west-1\"]\n";

/// The configuration: its head, then the sample fleet's accounts.
fn config() -> String {
    format!("{HEAD}{ACCOUNTS}")
}

/// `postern ARGS` living in `home` against `emulator` with base credentials (or `credentials`).
fn run_in(
    home: &Home,
    emulator: &EmulatorHandle,
    args: &[&str],
    credentials: Option<&Credentials>,
) -> Output {
    let mut command = home.against(emulator, args);
    command.args(["--region", "eu-west-1"]);
    if let Some(credentials) = credentials {
        credentials_env(&mut command, credentials);
    }
    run(command, LIMIT)
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "postern failed: {}",
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("credential_process JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_assume_into_each_account_with_the_callers_name() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&config()));
    for (alias, id) in [
        ("acme-shared-services", "402918375561"),
        ("acme-dev", "318402957716"),
        ("acme-staging", "529173064828"),
        ("acme-prod", "736250419937"),
    ] {
        let value = json(&run_in(&home, &emulator, &["creds", alias, "--yes"], None));
        assert_eq!(value["Version"], 1);
        let identity =
            aws_sdk_sts::Client::new(&sdk(&emulator, "eu-west-1", process_credentials(&value)))
                .get_caller_identity()
                .send()
                .await
                .unwrap();
        assert_eq!(identity.account(), Some(id));
        assert_eq!(
            identity.arn(),
            Some(format!("arn:aws:sts::{id}:assumed-role/PosternAccess/postern-emulator").as_str()),
            "the session name is the caller's user name"
        );
    }
    // Env exports, by account id.
    let output = run_in(
        &home,
        &emulator,
        &["creds", "318402957716", "--format", "env"],
        None,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    // Every value quoted for the shell.
    assert!(text.starts_with("export AWS_ACCESS_KEY_ID='ASIA"), "{text}");
    assert!(text.contains("export AWS_SESSION_TOKEN='"));
    assert!(
        text.lines()
            .all(|l| l.starts_with("export ") && l.ends_with('\'')),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_until_the_refresh_margin_and_files_are_private() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&config()));
    let first = json(&run_in(&home, &emulator, &["creds", "acme-dev"], None));
    let second = json(&run_in(&home, &emulator, &["creds", "acme-dev"], None));
    assert_eq!(
        first["AccessKeyId"], second["AccessKeyId"],
        "second run is a cache hit"
    );
    let other = json(&run_in(&home, &emulator, &["creds", "acme-staging"], None));
    assert_ne!(first["AccessKeyId"], other["AccessKeyId"]);
    let no_cache = json(&run_in(
        &home,
        &emulator,
        &["creds", "acme-dev", "--no-cache"],
        None,
    ));
    assert_ne!(first["AccessKeyId"], no_cache["AccessKeyId"]);
    let dir = home.path().join("cache").join("credentials");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        names.push(entry.file_name().into_string().unwrap());
    }
    names.sort();
    let roles = names
        .iter()
        .filter(|n| n.ends_with(".json") && *n != "last-success.json")
        .count();
    assert_eq!(roles, 2, "two roles: {names:?}");
    assert!(names.contains(&"last-success.json".to_owned()), "{names:?}");
    // The last-success file's lock (concurrent postern processes update it).
    assert!(
        names.contains(&"last-success.json.lock".to_owned()),
        "{names:?}"
    );
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // `postern accounts` shows the last success.
    let output = run_in(&home, &emulator, &["accounts"], None);
    let text = String::from_utf8(output.stdout).unwrap();
    let dev = text.lines().find(|l| l.starts_with("acme-dev ")).unwrap();
    assert!(!dev.ends_with("never"), "{text}");
    let prod = text.lines().find(|l| l.starts_with("acme-prod ")).unwrap();
    assert!(prod.ends_with("never"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_expiring_within_the_margin_are_refreshed() {
    // Five-minute credentials are inside the ten-minute refresh margin: every run assumes anew.
    let emulator = fleet_emulator(|c| c.credential_lifetime = Some(Duration::from_secs(300))).await;
    let home = Home::new(Some(&config()));
    let first = json(&run_in(&home, &emulator, &["creds", "acme-dev"], None));
    let second = json(&run_in(&home, &emulator, &["creds", "acme-dev"], None));
    assert_ne!(first["AccessKeyId"], second["AccessKeyId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_code_is_asked_once_for_every_account() {
    let emulator = fleet_emulator(|c| c.mfa_code = Some("314159".to_owned())).await;
    let config = format!(
        "{HEAD}{ACCOUNTS}\n[source]\nmfa_serial = \"arn:aws:iam::402918375561:mfa/alice\"\n"
    );
    let home = Home::new(Some(&config));
    let count = home.path().join("asked");
    let command = format!("echo asked >> '{}'; echo 314159", count.display());
    for alias in ["acme-dev", "acme-staging"] {
        json(&run_in(
            &home,
            &emulator,
            &["creds", alias, "--mfa-command", &command],
            None,
        ));
    }
    let asked = std::fs::read_to_string(&count).unwrap();
    assert_eq!(asked.lines().count(), 1, "one code for both accounts");

    let wrong = Home::new(Some(&config));
    let output = run_in(
        &wrong,
        &emulator,
        &["creds", "acme-dev", "--mfa-command", "echo 000000"],
        None,
    );
    assert_eq!(output.status.code(), Some(251), "{}", text(&output.stderr));
    let text = text(&output.stderr);
    assert!(
        text.contains("GetSessionToken failed: AccessDenied: MultiFactorAuthentication failed"),
        "{text}"
    );
    assert!(!text.contains("000000"), "the code is not echoed: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_roles_are_capped_at_one_hour() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&format!("duration = \"4h\"\n{HEAD}{ACCOUNTS}")));
    // From a user, four hours exceeds the role's maximum: STS refuses.
    let output = run_in(&home, &emulator, &["creds", "acme-dev"], None);
    assert_eq!(output.status.code(), Some(246), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("MaxSessionDuration"));
    // From an assumed role (an SSO session, say), postern asks for one hour.
    let shared = assume(&emulator, "402918375561", "PosternAccess").await;
    let value = json(&run_in(
        &home,
        &emulator,
        &["creds", "acme-dev"],
        Some(&shared),
    ));
    let expiration = humantime::parse_rfc3339(value["Expiration"].as_str().unwrap()).unwrap();
    let left = expiration
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left <= Duration::from_secs(3600), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_needs_confirmation_and_reason() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&format!(
        "{HEAD}{ACCOUNTS}\n[environments.prod]\nrequire_reason = true\n"
    )));
    let output = run_in(
        &home,
        &emulator,
        &["creds", "acme-prod", "--reason", "INC-1"],
        None,
    );
    assert_eq!(output.status.code(), Some(241));
    assert_eq!(
        text(&output.stderr),
        "error: could not get credentials (account acme-prod, role \
         arn:aws:iam::736250419937:role/PosternAccess)\n\
         Caused by:\n  prod account acme-prod needs a confirmation\n\
         hint: pass --yes to confirm, or run on a terminal to be asked\n"
    );
    let output = run_in(&home, &emulator, &["creds", "acme-prod", "--yes"], None);
    assert_eq!(output.status.code(), Some(241));
    assert!(text(&output.stderr).contains("prod account acme-prod requires a reason"));
    json(&run_in(
        &home,
        &emulator,
        &["creds", "acme-prod", "--yes", "--reason", "INC-1"],
        None,
    ));
    // Dev needs neither.
    json(&run_in(&home, &emulator, &["creds", "acme-dev"], None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_refuses_a_non_prod_source_identity() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&format!(
        "{HEAD}{ACCOUNTS}\n[sources.prod-admin]\nprofile = \"prod-admin\"\n\n[environments.prod]\nsource = \"prod-admin\"\n"
    )));
    let output = run_in(
        &home,
        &emulator,
        &["creds", "acme-prod", "--yes", "--profile", "dev-user"],
        None,
    );
    assert_eq!(output.status.code(), Some(241));
    assert_eq!(
        text(&output.stderr),
        "error: could not get credentials (account acme-prod, role \
         arn:aws:iam::736250419937:role/PosternAccess)\n\
         Caused by:\n  refusing to assume a role in prod account acme-prod from source identity \
         profile dev-user: prod requires source identity prod-admin\n\
         hint: use the source identity prod-admin (--source prod-admin), or drop --profile / \
         --source\n"
    );
    // Dev accounts still work from the default source.
    json(&run_in(&home, &emulator, &["creds", "acme-dev"], None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_shows_the_source_and_reachable_accounts() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&config().replace(
        "alias = \"acme-prod\"\nenv = \"prod\"",
        "alias = \"acme-prod\"\nenv = \"prod\"\nrole = \"Developer\"",
    )));
    let output = run_in(&home, &emulator, &["whoami"], None);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.starts_with(
            "source identity: arn:aws:iam::402918375561:user/postern-emulator (account \
         402918375561, source default)\n"
        ),
        "{text}"
    );
    let line = |alias: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{alias} ")))
            .unwrap_or_else(|| panic!("{alias} in {text}"))
            .to_owned()
    };
    assert!(line("acme-dev").ends_with(" yes"), "{text}");
    assert!(line("acme-staging").ends_with(" yes"), "{text}");
    assert!(line("acme-prod").ends_with(" no: AccessDenied"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_names_file_line_and_key() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(
        "role = \"PosternAccess\"\n\n[[accounts]]\nid = \"318402957716\"\nalias = \"acme-dev\"\nenv = \"dev\"\nregion = \"eu-west-1\"\n",
    ));
    let output = run_in(&home, &emulator, &["creds", "acme-dev"], None);
    assert_eq!(output.status.code(), Some(240));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: the configuration file is not valid\n\
             Caused by:\n  {}, line 7, key `accounts[0].region`: unknown field `region`, \
             expected one of `id`, `alias`, `env`, `role`, `list_role`, `regions`, `source`, `external_id`, `push_key`\n\
             hint: see the configuration example in the README (\"Accounts and roles\")\n",
            home.path().join("config.toml").display()
        )
    );
}
