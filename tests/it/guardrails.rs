//! Production guardrails fail closed, through the real binary against the emulator's
//! multi-account sample fleet: an instance id no configured account's index holds is refused,
//! never opened with the command line's identity; `--account` opens it in the named account
//! with that account's role and guardrails; an `unknown` environment needs the confirmation
//! production needs; a source identity limited to environments reaches no other.

use std::process::Output;
use std::time::Duration;

use postern_emulator::EmulatorHandle;

use crate::support::emulator::{fleet_emulator, id_of};
use crate::support::home::Home;
use crate::support::process::{run, text};

const LIMIT: Duration = Duration::from_secs(120);

/// acme-dev everywhere it runs; acme-prod listed in us-east-1 only, so its eu-west-1
/// instances are in no configured account's index (as after a failed or skipped listing).
const CONFIG: &str = r#"role = "PosternAccess"
regions = ["eu-west-1", "us-east-1"]

[[accounts]]
id = "318402957716"
alias = "acme-dev"
env = "dev"

[[accounts]]
id = "529173064828"
alias = "acme-staging"
env = "unknown"

[[accounts]]
id = "736250419937"
alias = "acme-prod"
env = "prod"
regions = ["us-east-1"]
"#;

/// `postern ARGS` in `home` against `emulator` ([`Home::against`]).
fn postern(home: &Home, emulator: &EmulatorHandle, args: &[&str]) -> Output {
    run(home.against(emulator, args), LIMIT)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_outside_every_configured_index_is_refused_not_opened() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(CONFIG));
    let prod = id_of(&emulator, "orders-api-prod-1");
    let out = postern(&home, &emulator, &["exec", &prod, "--", "echo reached"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(244), "stderr: {stderr}");
    assert!(!text(&out.stdout).contains("reached"));
    assert!(stderr.contains(&prod), "names the id: {stderr}");
    assert!(stderr.contains("--account"), "says what to do: {stderr}");
    assert!(stderr.contains("postern list --refresh"), "{stderr}");

    // An instance of an account the configuration does not list at all (the management
    // account, where the base credentials act): refused too.
    let management = id_of(&emulator, "artifact-cache-1");
    let out = postern(
        &home,
        &emulator,
        &["exec", &management, "--", "echo reached"],
    );
    assert_eq!(out.status.code(), Some(244), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("reached"));
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn account_names_where_an_unindexed_id_lives_and_keeps_its_guardrails() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(CONFIG));
    let prod = id_of(&emulator, "orders-api-prod-1");
    // Production: no terminal and no --yes, so the confirmation refuses.
    let out = postern(
        &home,
        &emulator,
        &[
            "exec",
            &prod,
            "--account",
            "acme-prod",
            "--",
            "echo reached",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(241), "stderr: {stderr}");
    assert!(stderr.contains("acme-prod"), "{stderr}");
    assert!(!text(&out.stdout).contains("reached"));
    // Confirmed: the session runs with acme-prod's role (the base credentials could not).
    let out = postern(
        &home,
        &emulator,
        &[
            "exec",
            &prod,
            "--account",
            "acme-prod",
            "--yes",
            "--",
            "echo reached",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "reached");
    // An account the configuration does not list.
    let out = postern(
        &home,
        &emulator,
        &["exec", &prod, "--account", "acme-nowhere", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not a configured account"));
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_environment_needs_the_confirmation_production_needs() {
    let emulator = fleet_emulator(|_| {}).await;
    let home = Home::new(Some(CONFIG));
    let staging = id_of(&emulator, "orders-api-stg-1");
    let out = postern(&home, &emulator, &["exec", &staging, "--", "echo reached"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(241), "stderr: {stderr}");
    assert!(stderr.contains("unknown account acme-staging"), "{stderr}");
    let dev = id_of(&emulator, "orders-api-dev-1");
    let out = postern(&home, &emulator, &["exec", &dev, "--", "echo reached"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "reached");
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_identity_limited_to_environments_reaches_no_other() {
    let emulator = fleet_emulator(|_| {}).await;
    let config = format!("{CONFIG}\n[source]\nenvironments = [\"prod\"]\n");
    let home = Home::new(Some(&config));
    let dev = id_of(&emulator, "orders-api-dev-1");
    // The dev account is left out of the listing (the note says why), so its instance is in
    // no index postern may use: refused.
    let out = postern(&home, &emulator, &["exec", &dev, "--", "echo reached"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(244), "stderr: {stderr}");
    assert!(stderr.contains("may only reach prod"), "{stderr}");
    assert!(!text(&out.stdout).contains("reached"));
    // Named explicitly, the account's source check refuses the session itself.
    let out = postern(
        &home,
        &emulator,
        &["exec", &dev, "--account", "acme-dev", "--", "echo reached"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(241), "stderr: {stderr}");
    assert!(stderr.contains("may only reach prod"), "{stderr}");
    assert!(!text(&out.stdout).contains("reached"));
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_and_whoami_use_the_listing_role_sessions_the_session_role() {
    // acme-prod offers only a read-only role: listing it needs no session role.
    let emulator = fleet_emulator(|config| {
        for account in &mut config.fleet.accounts {
            if account.alias == "acme-prod" {
                account.roles = vec!["PosternReadOnly".to_owned()];
            }
        }
    })
    .await;
    let prod = id_of(&emulator, "orders-api-prod-1");
    let config = |list_role: &str| {
        format!(
            "role = \"PosternAccess\"\nregions = [\"eu-west-1\", \"us-east-1\"]\n\n\
             [[accounts]]\nid = \"318402957716\"\nalias = \"acme-dev\"\nenv = \"dev\"\n\n\
             [[accounts]]\nid = \"736250419937\"\nalias = \"acme-prod\"\nenv = \"prod\"\n\
             {list_role}"
        )
    };

    let home = Home::new(Some(&config("list_role = \"PosternReadOnly\"\n")));
    let out = postern(&home, &emulator, &["list", "--refresh", "--json"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(
        stdout.contains(&prod),
        "acme-prod listed with its listing role: {stdout}"
    );
    let out = postern(&home, &emulator, &["whoami"]);
    let stdout = text(&out.stdout);
    let prod_row = stdout
        .lines()
        .find(|line| line.contains("acme-prod"))
        .unwrap_or_else(|| panic!("a row for acme-prod: {stdout}"));
    assert!(prod_row.contains("PosternReadOnly"), "{prod_row}");
    assert!(prod_row.trim_end().ends_with("yes"), "{prod_row}");
    // A session still assumes the session role, which acme-prod does not offer.
    let out = postern(&home, &emulator, &["exec", &prod, "--yes", "--", "true"]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("PosternAccess"),
        "names the session role: {stderr}"
    );

    // Control: without a listing role, discovery assumes the session role and cannot list it.
    let home = Home::new(Some(&config("")));
    let out = postern(&home, &emulator, &["list", "--refresh", "--json"]);
    assert!(!text(&out.stdout).contains(&prod), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("acme-prod"),
        "{}",
        text(&out.stderr)
    );
    emulator.shutdown().await.unwrap();
}
