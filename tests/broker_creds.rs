//! The role broker through the real binary (`postern creds`, `whoami`, `accounts`) against the
//! emulator's multi-account sample fleet: assumption into each account, MFA with a scripted
//! code source, the credentials cache, the role-chaining cap, production guardrails and
//! configuration errors.

mod control_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use aws_credential_types::Credentials;
use control_support::{assume, fleet_emulator, sdk};
use postern_emulator::EmulatorHandle;

const CONFIG: &str = concat!(
    "role = \"PosternAccess\"\nregions = [\"eu-west-1\"]\n",
    include_str!("fixtures/sample_accounts.toml")
);

/// A scratch home: config file, cache dir.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("config.toml"), config).expect("write config");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `postern ARGS` against `emulator` with base credentials (or `credentials`).
    fn run(
        &self,
        emulator: &EmulatorHandle,
        args: &[&str],
        credentials: Option<&Credentials>,
    ) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_postern"));
        command
            .args(args)
            .args([
                "--endpoint-url",
                &emulator.endpoint(),
                "--region",
                "eu-west-1",
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("POSTERN_CONFIG", self.path().join("config.toml"))
            .env("POSTERN_CACHE_DIR", self.path().join("cache"))
            .env("AWS_CONFIG_FILE", self.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.path().join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true");
        match credentials {
            Some(c) => {
                command
                    .env("AWS_ACCESS_KEY_ID", c.access_key_id())
                    .env("AWS_SECRET_ACCESS_KEY", c.secret_access_key());
                if let Some(token) = c.session_token() {
                    command.env("AWS_SESSION_TOKEN", token);
                }
            }
            None => {
                command
                    .env("AWS_ACCESS_KEY_ID", "AKIDBROKERTEST")
                    .env("AWS_SECRET_ACCESS_KEY", "broker-secret");
            }
        }
        command.output().expect("run postern")
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "postern failed: {}",
        stderr(output)
    );
    serde_json::from_slice(&output.stdout).expect("credential_process JSON")
}

fn credentials(value: &serde_json::Value) -> Credentials {
    Credentials::new(
        value["AccessKeyId"].as_str().unwrap(),
        value["SecretAccessKey"].as_str().unwrap(),
        Some(value["SessionToken"].as_str().unwrap().to_owned()),
        None,
        "test",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_assume_into_each_account_with_the_callers_name() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(CONFIG);
    for (alias, id) in [
        ("acme-shared-services", "402918375561"),
        ("acme-dev", "318402957716"),
        ("acme-staging", "529173064828"),
        ("acme-prod", "736250419937"),
    ] {
        let value = json(&home.run(&emulator, &["creds", alias, "--yes"], None));
        assert_eq!(value["Version"], 1);
        let identity = aws_sdk_sts::Client::new(&sdk(&emulator, "eu-west-1", credentials(&value)))
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
    let output = home.run(
        &emulator,
        &["creds", "318402957716", "--format", "env"],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("export AWS_ACCESS_KEY_ID=ASIA"), "{text}");
    assert!(text.contains("export AWS_SESSION_TOKEN="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_until_the_refresh_margin_and_files_are_private() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(CONFIG);
    let first = json(&home.run(&emulator, &["creds", "acme-dev"], None));
    let second = json(&home.run(&emulator, &["creds", "acme-dev"], None));
    assert_eq!(
        first["AccessKeyId"], second["AccessKeyId"],
        "second run is a cache hit"
    );
    let other = json(&home.run(&emulator, &["creds", "acme-staging"], None));
    assert_ne!(first["AccessKeyId"], other["AccessKeyId"]);
    let no_cache = json(&home.run(&emulator, &["creds", "acme-dev", "--no-cache"], None));
    assert_ne!(first["AccessKeyId"], no_cache["AccessKeyId"]);
    let dir = home.path().join("cache").join("credentials");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        files += 1;
    }
    assert_eq!(files, 3, "two roles and the last-success file");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // `postern accounts` shows the last success.
    let output = home.run(&emulator, &["accounts"], None);
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
    let home = Home::new(CONFIG);
    let first = json(&home.run(&emulator, &["creds", "acme-dev"], None));
    let second = json(&home.run(&emulator, &["creds", "acme-dev"], None));
    assert_ne!(first["AccessKeyId"], second["AccessKeyId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_code_is_asked_once_for_every_account() {
    let emulator = fleet_emulator(|c| c.mfa_code = Some("314159".to_owned())).await;
    let config =
        format!("{CONFIG}\n[source]\nmfa_serial = \"arn:aws:iam::402918375561:mfa/alice\"\n");
    let home = Home::new(&config);
    let count = home.path().join("asked");
    let command = format!("echo asked >> '{}'; echo 314159", count.display());
    for alias in ["acme-dev", "acme-staging"] {
        json(&home.run(
            &emulator,
            &["creds", alias, "--mfa-command", &command],
            None,
        ));
    }
    let asked = std::fs::read_to_string(&count).unwrap();
    assert_eq!(asked.lines().count(), 1, "one code for both accounts");

    let wrong = Home::new(&config);
    let output = wrong.run(
        &emulator,
        &["creds", "acme-dev", "--mfa-command", "echo 000000"],
        None,
    );
    assert_eq!(output.status.code(), Some(251), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("GetSessionToken failed: AccessDenied: MultiFactorAuthentication failed"),
        "{text}"
    );
    assert!(!text.contains("000000"), "the code is not echoed: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_roles_are_capped_at_one_hour() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(&format!("duration = \"4h\"\n{CONFIG}"));
    // From a user, four hours exceeds the role's maximum: STS refuses.
    let output = home.run(&emulator, &["creds", "acme-dev"], None);
    assert_eq!(output.status.code(), Some(246), "{}", stderr(&output));
    assert!(stderr(&output).contains("MaxSessionDuration"));
    // From an assumed role (an SSO session, say), postern asks for one hour.
    let shared = assume(&emulator, "402918375561", "PosternAccess").await;
    let value = json(&home.run(&emulator, &["creds", "acme-dev"], Some(&shared)));
    let expiration = humantime::parse_rfc3339(value["Expiration"].as_str().unwrap()).unwrap();
    let left = expiration
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left <= Duration::from_secs(3600), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_needs_confirmation_and_reason() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(&format!(
        "{CONFIG}\n[environments.prod]\nrequire_reason = true\n"
    ));
    let output = home.run(
        &emulator,
        &["creds", "acme-prod", "--reason", "INC-1"],
        None,
    );
    assert_eq!(output.status.code(), Some(241));
    assert_eq!(
        stderr(&output),
        "error: could not get credentials (account acme-prod, role \
         arn:aws:iam::736250419937:role/PosternAccess)\n\
         Caused by:\n  prod account acme-prod needs a confirmation\n\
         hint: pass --yes to confirm, or run on a terminal to be asked\n"
    );
    let output = home.run(&emulator, &["creds", "acme-prod", "--yes"], None);
    assert_eq!(output.status.code(), Some(241));
    assert!(stderr(&output).contains("prod account acme-prod requires a reason"));
    json(&home.run(
        &emulator,
        &["creds", "acme-prod", "--yes", "--reason", "INC-1"],
        None,
    ));
    // Dev needs neither.
    json(&home.run(&emulator, &["creds", "acme-dev"], None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_refuses_a_non_prod_source_identity() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(&format!(
        "{CONFIG}\n[sources.prod-admin]\nprofile = \"prod-admin\"\n\n[environments.prod]\nsource = \"prod-admin\"\n"
    ));
    let output = home.run(
        &emulator,
        &["creds", "acme-prod", "--yes", "--profile", "dev-user"],
        None,
    );
    assert_eq!(output.status.code(), Some(241));
    assert_eq!(
        stderr(&output),
        "error: could not get credentials (account acme-prod, role \
         arn:aws:iam::736250419937:role/PosternAccess)\n\
         Caused by:\n  refusing to assume a role in prod account acme-prod from source identity \
         profile dev-user: prod requires source identity prod-admin\n\
         hint: use the source identity prod-admin (--source prod-admin), or drop --profile / \
         --source\n"
    );
    // Dev accounts still work from the default source.
    json(&home.run(&emulator, &["creds", "acme-dev"], None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_shows_the_source_and_reachable_accounts() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(&CONFIG.replace(
        "alias = \"acme-prod\"\nenv = \"prod\"",
        "alias = \"acme-prod\"\nenv = \"prod\"\nrole = \"Developer\"",
    ));
    let output = home.run(&emulator, &["whoami"], None);
    assert!(output.status.success(), "{}", stderr(&output));
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
    let home = Home::new(
        "role = \"PosternAccess\"\n\n[[accounts]]\nid = \"318402957716\"\nalias = \"acme-dev\"\nenv = \"dev\"\nregion = \"eu-west-1\"\n",
    );
    let output = home.run(&emulator, &["creds", "acme-dev"], None);
    assert_eq!(output.status.code(), Some(240));
    assert_eq!(
        stderr(&output),
        format!(
            "error: the configuration file is not valid\n\
             Caused by:\n  {}, line 7, key `accounts[0].region`: unknown field `region`, \
             expected one of `id`, `alias`, `env`, `role`, `regions`, `source`, `external_id`\n\
             hint: see the configuration example in the README (\"Accounts and roles\")\n",
            home.path().join("config.toml").display()
        )
    );
}
