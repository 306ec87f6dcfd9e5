//! Many accounts, one login, through the real binary against the emulator's multi-account
//! sample fleet: `postern accounts sync` (Organizations), the index over every configured
//! account, sessions that run with the target account's role, the production guardrails on
//! sessions, and shell completion from the cached index.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use aws_credential_types::Credentials;
use postern_emulator::EmulatorHandle;

use crate::support::aws::credentials_env;
use crate::support::doctor::check_line;
use crate::support::emulator::{assume, fleet_emulator, id_of};
use crate::support::fixtures::SAMPLE_ACCOUNTS as ACCOUNTS;
use crate::support::home::Home;
use crate::support::process::{self, run};

const LIMIT: Duration = Duration::from_secs(120);

const HEAD: &str = "role = \"PosternAccess\"\nregions = [\"eu-west-1\", \"us-east-1\"]\n";

/// Runs [`Home::against`].
fn run_in(home: &Home, emulator: &EmulatorHandle, args: &[&str]) -> Output {
    run(home.against(emulator, args), LIMIT)
}

/// Runs [`Home::against`] as `who`.
fn run_as(home: &Home, emulator: &EmulatorHandle, args: &[&str], who: &Credentials) -> Output {
    let mut command = home.against(emulator, args);
    credentials_env(&mut command, who);
    run(command, LIMIT)
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "postern failed ({:?}): {}",
        output.status.code(),
        process::text(&output.stderr)
    );
    process::text(&output.stdout)
}

fn row<'a>(table: &'a str, alias: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(&format!("{alias} ")))
        .unwrap_or_else(|| panic!("no row {alias} in {table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_records_the_organizations_accounts_with_their_environments() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(HEAD));
    let accounts_file = home.path().join("accounts.toml");

    let dry = succeeded(&run_in(
        &home,
        &emulator,
        &["accounts", "sync", "--dry-run"],
    ));
    assert!(
        dry.contains("dry run: 4 accounts would be written"),
        "{dry}"
    );
    assert!(!accounts_file.exists(), "a dry run writes nothing");

    let text = succeeded(&run_in(
        &home,
        &emulator,
        &["accounts", "sync", "--env-from-tag", "environment"],
    ));
    for (alias, id, env) in [
        ("acme-shared-services", "402918375561", "prod"),
        ("acme-dev", "318402957716", "dev"),
        ("acme-staging", "529173064828", "stg"),
        ("acme-prod", "736250419937", "prod"),
    ] {
        let line = row(&text, alias);
        assert!(line.contains(id), "{line}");
        assert!(line.contains(&format!(" {env} ")), "{line}");
        assert!(line.contains("tag environment"), "{line}");
        assert!(line.ends_with(" new"), "{line}");
    }
    assert!(text.contains("4 accounts written to"), "{text}");
    let written = std::fs::read_to_string(&accounts_file).unwrap();
    assert_eq!(written.matches("[[accounts]]").count(), 4, "{written}");
    assert!(
        !written.contains("role ="),
        "the default role is not repeated"
    );

    // The synced accounts are the configuration's now: listed, reachable.
    let listed = succeeded(&run_in(&home, &emulator, &["accounts"]));
    assert!(row(&listed, "acme-dev").contains(" dev "), "{listed}");
    assert!(row(&listed, "acme-prod").contains(" prod "), "{listed}");
    let creds = succeeded(&run_in(&home, &emulator, &["creds", "acme-staging"]));
    assert!(creds.contains("\"AccessKeyId\":\"ASIA"), "{creds}");

    // A second sync from the OUs: the management account sits in the root, so its name decides
    // (nothing in "acme-shared-services" names an environment).
    let text = succeeded(&run_in(
        &home,
        &emulator,
        &[
            "accounts",
            "sync",
            "--env-from-ou",
            "--role-name",
            "Developer",
        ],
    ));
    assert!(row(&text, "acme-dev").contains("OU Dev"), "{text}");
    assert!(row(&text, "acme-dev").ends_with(" synced"), "{text}");
    assert!(row(&text, "acme-prod").contains(" prod "), "{text}");
    assert!(
        row(&text, "acme-shared-services").contains(" unknown "),
        "{text}"
    );
    assert!(
        text.contains("1 accounts have no known environment"),
        "{text}"
    );
    let written = std::fs::read_to_string(&accounts_file).unwrap();
    assert_eq!(written.matches("role = \"Developer\"").count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_from_a_member_account_is_denied_with_a_hint() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(HEAD));
    let member = assume(&emulator, "318402957716", "PosternAccess").await;
    let output = run_as(&home, &emulator, &["accounts", "sync"], &member);
    assert_eq!(
        output.status.code(),
        Some(251),
        "{}",
        process::text(&output.stderr)
    );
    let text = process::text(&output.stderr);
    assert!(
        text.starts_with("error: could not sync the organization's accounts (organization of arn:aws:sts::318402957716:assumed-role/PosternAccess/"),
        "{text}"
    );
    assert!(
        text.contains("ListAccounts failed: AccessDeniedException"),
        "{text}"
    );
    assert!(
        text.contains("hint: ListAccounts works from the organization's management account"),
        "{text}"
    );
    assert!(!home.path().join("accounts.toml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_spans_every_configured_account_and_region() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&format!("{HEAD}{ACCOUNTS}")));
    let output = run_in(&home, &emulator, &["list", "--json"]);
    let text = succeeded(&output);
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let listed: BTreeSet<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let fleet: BTreeSet<String> = emulator
        .fleet()
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(listed, fleet, "every instance of every account and region");
    assert_eq!(rows.len(), fleet.len(), "each once");
    let web = rows
        .iter()
        .find(|r| r["name"] == "web-frontend-stg-1")
        .unwrap();
    assert_eq!(web["alias"], "acme-staging");
    assert_eq!(web["account"], "529173064828");
    assert_eq!(web["env"], "stg");

    // Filters by account and environment, served from the cache this time.
    let text = succeeded(&run_in(
        &home,
        &emulator,
        &["list", "--account", "acme-dev"],
    ));
    assert!(
        text.lines().skip(1).all(|l| l.starts_with("acme-dev ")),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1 + 8, "{text}");
    let text = succeeded(&run_in(
        &home,
        &emulator,
        &["list", "--env", "prod", "--json"],
    ));
    assert!(
        text.lines().all(|l| l.contains("\"env\":\"prod\"")),
        "{text}"
    );
    // Environment names mean the same everywhere: `production` is `prod`.
    let production = succeeded(&run_in(
        &home,
        &emulator,
        &["list", "--env", "production", "--json"],
    ));
    assert_eq!(production, text);
    // A name no instance has lists nothing, and says which there are.
    let output = run_in(&home, &emulator, &["list", "--env", "qa"]);
    let notes = process::text(&output.stderr);
    assert!(
        notes.contains("note: no instance of the index is in environment `qa` (environments: "),
        "{notes}"
    );
    assert!(notes.contains("prod"), "{notes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_listed_at_once_each_record_their_success_and_the_concurrency_is_settable() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&format!("{HEAD}{ACCOUNTS}")));
    let aliases = [
        "acme-shared-services",
        "acme-dev",
        "acme-staging",
        "acme-prod",
    ];
    let before = succeeded(&run_in(&home, &emulator, &["accounts"]));
    for alias in aliases {
        assert!(row(&before, alias).ends_with(" never"), "{before}");
    }
    // Every account assumed at once: their success times are written together, none lost.
    let cold = succeeded(&run_in(&home, &emulator, &["list", "--refresh", "--json"]));
    let after = succeeded(&run_in(&home, &emulator, &["accounts"]));
    for alias in aliases {
        assert!(!row(&after, alias).ends_with(" never"), "{after}");
    }

    // One scope at a time lists the same instances.
    let mut command = home.against(&emulator, &["list", "--refresh", "--json"]);
    command.env("POSTERN_DISCOVERY_CONCURRENCY", "1");
    let sequential = succeeded(&run(command, LIMIT));
    let ids = |text: &str| -> BTreeSet<String> {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
            .collect()
    };
    assert_eq!(ids(&sequential), ids(&cold));
    assert_eq!(ids(&cold).len(), emulator.fleet().instances.len());

    // A value that is not a count of scopes is refused, naming it.
    let mut command = home.against(&emulator, &["list", "--refresh"]);
    command.env("POSTERN_DISCOVERY_CONCURRENCY", "0");
    let refused = run(command, LIMIT);
    let stderr = process::text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("POSTERN_DISCOVERY_CONCURRENCY is 0, not a number of scopes from 1 to 512"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_account_warns_and_the_rest_is_listed() {
    let emulator = fleet_emulator(|_| {}).await;
    let broken = ACCOUNTS.replace(
        "alias = \"acme-staging\"\nenv = \"stg\"",
        "alias = \"acme-staging\"\nenv = \"stg\"\nrole = \"NoSuchRole\"",
    );
    let home = Home::new(Some(&format!("{HEAD}{broken}")));
    let output = run_in(&home, &emulator, &["list", "--regions", "eu-west-1"]);
    let text = succeeded(&output);
    let warnings = process::text(&output.stderr);
    assert!(
        warnings.contains("warning: AssumeRole failed in acme-staging (529173064828) eu-west-1"),
        "{warnings}"
    );
    assert!(warnings.contains("AccessDenied"), "{warnings}");
    assert!(!text.contains("acme-staging"), "{text}");
    assert!(text.contains("web-frontend-dev-1"), "{text}");
    assert!(text.contains("web-frontend-prod-1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_run_with_the_target_accounts_role() {
    let emulator = fleet_emulator(|_| {}).await;
    // Without the broker the base credentials act in the management account: a dev instance
    // is not theirs to reach.
    let plain = Home::new(Some(HEAD));
    let output = run_in(
        &plain,
        &emulator,
        &["exec", "i-0040c7db20bbfd67e", "--", "echo", "unreachable"],
    );
    assert_eq!(
        output.status.code(),
        Some(250),
        "{}",
        process::text(&output.stderr)
    );

    let home = Home::new(Some(&format!("{HEAD}{ACCOUNTS}")));
    // By name: resolution through the index, then the account's role.
    let output = run_in(
        &home,
        &emulator,
        &["exec", "web-frontend-dev-1", "--", "echo", "hello from dev"],
    );
    assert_eq!(succeeded(&output), "hello from dev\n");
    // By NAME@ALIAS and by a bare instance id (the cached index knows its account).
    let output = run_in(
        &home,
        &emulator,
        &["exec", "kafka-stg-1@acme-staging", "--", "echo", "stg"],
    );
    assert_eq!(succeeded(&output), "stg\n");
    let output = run_in(
        &home,
        &emulator,
        &["exec", "i-0040c7db20bbfd67e", "--", "exit", "7"],
    );
    assert_eq!(
        output.status.code(),
        Some(7),
        "{}",
        process::text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_sessions_need_confirmation_and_reason() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&format!(
        "{HEAD}{ACCOUNTS}\n[environments.prod]\nrequire_reason = true\n"
    )));
    let output = run_in(
        &home,
        &emulator,
        &[
            "exec",
            "web-frontend-prod-1",
            "--reason",
            "INC-7",
            "--",
            "echo",
            "x",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(241),
        "{}",
        process::text(&output.stderr)
    );
    assert_eq!(
        process::text(&output.stderr),
        "error: could not open a session on web-frontend-prod-1 (i-07a351b17cebd0b56), account \
         acme-prod, eu-west-1 (account acme-prod, role \
         arn:aws:iam::736250419937:role/PosternAccess)\n\
         Caused by:\n  prod account acme-prod needs a confirmation\n\
         hint: pass --yes to confirm, or run on a terminal to be asked\n"
    );
    let output = run_in(
        &home,
        &emulator,
        &["exec", "web-frontend-prod-1", "--yes", "--", "echo", "x"],
    );
    assert_eq!(
        output.status.code(),
        Some(241),
        "{}",
        process::text(&output.stderr)
    );
    assert!(process::text(&output.stderr).contains("prod account acme-prod requires a reason"));
    let output = run_in(
        &home,
        &emulator,
        &[
            "exec",
            "web-frontend-prod-1",
            "--yes",
            "--reason",
            "INC-7",
            "--",
            "echo",
            "in prod",
        ],
    );
    assert_eq!(succeeded(&output), "in prod\n");
    // Dev needs neither.
    let output = run_in(
        &home,
        &emulator,
        &["exec", "kafka-dev-1", "--", "echo", "dev"],
    );
    assert_eq!(succeeded(&output), "dev\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_prod_identity_never_reaches_prod_instances() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&format!(
        "{HEAD}{ACCOUNTS}\n[sources.prod-admin]\nprofile = \"prod-admin\"\n\n[sources.dev-user]\n\n[environments.prod]\nsource = \"prod-admin\"\n"
    )));
    let output = run_in(
        &home,
        &emulator,
        &["list", "--regions", "eu-west-1", "--source", "dev-user"],
    );
    let text = succeeded(&output);
    assert!(!text.contains("acme-prod"), "{text}");
    assert!(text.contains("web-frontend-dev-1"), "{text}");
    let notes = process::text(&output.stderr);
    assert!(
        notes.contains(
            "note: skipping account acme-prod: refusing to assume a role in prod account \
             acme-prod from source identity dev-user: prod requires source identity prod-admin"
        ),
        "{notes}"
    );
    let output = run_in(
        &home,
        &emulator,
        &[
            "exec",
            "web-frontend-prod-1",
            "--yes",
            "--source",
            "dev-user",
            "--",
            "echo",
            "x",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(244),
        "{}",
        process::text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_offers_cached_instance_names() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(&format!("{HEAD}{ACCOUNTS}")));
    let script = succeeded(&run_in(&home, &emulator, &["completions", "bash"]));
    assert!(script.contains("COMPLETE=\"bash\""), "{script}");
    // Before any listing there is nothing to offer; after one, names, NAME@ALIAS and ids.
    let ask = |word: &str| {
        let mut command = home.against(&emulator, &[]);
        command
            .env("COMPLETE", "fish")
            .args(["--", "postern", "shell", word]);
        process::text(&run(command, LIMIT).stdout)
    };
    assert!(!ask("kafka-d").contains("kafka-dev-1"));
    succeeded(&run_in(&home, &emulator, &["list"]));
    let offered = ask("kafka-d");
    assert!(
        offered.lines().any(|l| l.starts_with("kafka-dev-1\t")),
        "{offered}"
    );
    assert!(!offered.contains("kafka-prod-1"), "{offered}");
    let offered = ask("kafka-prod-1@");
    assert!(
        offered
            .lines()
            .any(|l| l.starts_with("kafka-prod-1@acme-prod\t")),
        "{offered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_with_refreshed_role_credentials_and_no_second_mfa_prompt() {
    // Role credentials live 2 s under an MFA session that lives for hours; the websocket
    // closes every 60 messages, the first time after the command slept 3 s: ResumeSession
    // needs role credentials the broker must fetch again, from the cached MFA session.
    let emulator = fleet_emulator(|c| {
        c.mfa_code = Some("271828".to_owned());
        c.role_credential_lifetime = Some(Duration::from_secs(2));
        c.faults.close_every = Some(60);
        c.pacing = None;
    })
    .await;
    let home = Home::new(Some(&format!(
        "{HEAD}{ACCOUNTS}\n[source]\nmfa_serial = \"arn:aws:iam::402918375561:mfa/alice\"\n"
    )));
    let asked = home.path().join("asked");
    let mfa = format!("echo asked >> '{}'; echo 271828", asked.display());
    let output = run_in(
        &home,
        &emulator,
        &[
            "exec",
            "web-frontend-dev-1",
            "--mfa-command",
            &mfa,
            "--",
            "sleep 3; seq 1 20000",
        ],
    );
    let expected: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    assert!(succeeded(&output) == expected, "output differs");
    let notices = process::text(&output.stderr);
    assert!(notices.contains("reconnected after"), "{notices}");
    let prompts = std::fs::read_to_string(&asked).expect("the MFA command ran");
    assert_eq!(
        prompts.lines().count(),
        1,
        "one MFA code for the whole session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_configured_source_identity_and_its_role() {
    let emulator = fleet_emulator(|_| {}).await;
    // The source identity is a named profile of the AWS files, as the configuration says; the
    // environment holds no credentials and names no profile.
    let home = Home::new(Some(&format!(
        "{HEAD}{ACCOUNTS}\n[source]\nprofile = \"dev-id\"\n"
    )));
    let keys = emulator.base_credentials();
    std::fs::write(home.path().join("aws-config"), "[profile dev-id]\n").unwrap();
    std::fs::write(
        home.path().join("aws-credentials"),
        format!(
            "[dev-id]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            keys.access_key_id(),
            keys.secret_access_key()
        ),
    )
    .unwrap();
    let instance = id_of(&emulator, "kafka-dev-1");
    let mut command = home.command();
    command
        .env("AWS_ENDPOINT_URL", emulator.endpoint())
        .env("AWS_CONFIG_FILE", home.path().join("aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.path().join("aws-credentials"),
        )
        .args(["doctor", &instance, "--account", "acme-dev", "--no-probe"]);
    let output = run(command, LIMIT);
    let stdout = process::text(&output.stdout);
    let check = |name: &str| check_line(&stdout, name);
    assert!(check("configuration").contains("dev-id"), "{stdout}");
    assert!(check("credentials").starts_with("PASS  "), "{stdout}");
    let role = check("role assumption");
    assert!(role.starts_with("PASS  "), "{stdout}");
    assert!(role.contains("PosternAccess"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_in_an_account_the_source_may_not_reach_is_refused_by_the_guardrail() {
    let emulator = fleet_emulator(|_| {}).await;
    // The README's "both ways" configuration: prod-admin reaches production only.
    let home = Home::new(Some(&format!(
        "{HEAD}{ACCOUNTS}\n[sources.prod-admin]\nenvironments = [\"prod\"]\n\n\
         [environments.prod]\nsource = \"prod-admin\"\n"
    )));
    let output = run_in(
        &home,
        &emulator,
        &[
            "exec",
            "kafka-dev-1@acme-dev",
            "--source",
            "prod-admin",
            "--",
            "true",
        ],
    );
    let stderr = process::text(&output.stderr);
    assert_eq!(output.status.code(), Some(241), "{stderr}");
    assert!(stderr.contains("acme-dev"), "{stderr}");
    assert!(stderr.contains("prod-admin"), "{stderr}");
    assert!(!stderr.contains("no instance matches"), "{stderr}");
}
