//! `postern list` and name targets through the real binary against a `postern emulator`
//! process serving the sample fleet: the listing, cache reuse (the emulator gone), `--refresh`,
//! a session opened by Name tag, and an unknown name.

use std::time::Duration;

use crate::support::aws::credentials_env;
use crate::support::emulator::EmulatorProcess;
use crate::support::fixtures::sample_fleet;
use crate::support::process::{base_command, run, text};

const LIMIT: Duration = Duration::from_secs(60);
/// The management account's instances of the sample fleet in us-east-1 (the base credentials
/// act there) include this one, with a current agent.
const RUNNER: (&str, &str) = ("gitlab-runner-1", "i-08008511febb9dc38");

fn sample() -> EmulatorProcess {
    EmulatorProcess::start(&["--fleet", &sample_fleet()])
}

#[test]
fn lists_from_aws_then_from_the_cache_and_refreshes_on_demand() {
    let emulator = sample();
    let cache = tempfile::tempdir().unwrap();
    let list = |emulator: &EmulatorProcess, extra: &[&str]| {
        let mut args = vec!["list"];
        args.extend_from_slice(extra);
        let mut cmd = emulator.command(&args);
        cmd.env("POSTERN_CACHE_DIR", cache.path());
        run(cmd, LIMIT)
    };
    let out = list(&emulator, &["--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.len() > 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row["region"], "us-east-1");
        assert_eq!(row["account"], "402918375561");
    }
    let runner = rows.iter().find(|r| r["name"] == RUNNER.0).unwrap();
    assert_eq!(runner["id"], RUNNER.1);
    assert_eq!(runner["ping_status"], "Online");
    assert_eq!(runner["tags"]["service"], "ci");

    let table = list(&emulator, &["runner", "--tag", "service=ci"]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    let lines: Vec<_> = table.lines().collect();
    assert!(lines[0].starts_with("ACCOUNT"), "{table}");
    assert!(lines.len() >= 3, "{table}");
    assert!(
        lines[1..].iter().all(|l| l.contains("gitlab-runner")),
        "{table}"
    );

    // The cache answers with the emulator gone; --refresh cannot.
    let endpoint = emulator.endpoint.clone();
    let credentials = emulator.credentials.clone();
    emulator.stop();
    let gone = |extra: &[&str]| {
        let mut cmd = base_command();
        credentials_env(&mut cmd, &credentials);
        cmd.env("AWS_ENDPOINT_URL", &endpoint)
            .args(["list", "--json"])
            .args(extra)
            .env("POSTERN_CACHE_DIR", cache.path());
        run(cmd, LIMIT)
    };
    let cached = gone(&[]);
    assert!(cached.status.success(), "{}", text(&cached.stderr));
    assert_eq!(text(&cached.stdout).lines().count(), rows.len());
    let refreshed = gone(&["--refresh"]);
    let stderr = text(&refreshed.stderr);
    assert!(
        stderr.contains("warning: DescribeInstances failed in default"),
        "{stderr}"
    );
    assert!(stderr.contains("showing its cached listing"), "{stderr}");
    assert!(refreshed.status.success(), "{stderr}");
    assert_eq!(text(&refreshed.stdout).lines().count(), rows.len());
}

#[test]
fn exec_resolves_a_name_tag() {
    let emulator = sample();
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = emulator.command(&["exec", RUNNER.0, "--", "echo", "hello"]);
    cmd.env("POSTERN_CACHE_DIR", cache.path());
    let out = run(cmd, LIMIT);
    assert_eq!(text(&out.stdout), "hello\n", "{}", text(&out.stderr));
    assert!(out.status.success());
}

#[test]
fn an_unknown_name_exits_244_with_a_hint() {
    let emulator = sample();
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = emulator.command(&["shell", "no-such-host"]);
    cmd.env("POSTERN_CACHE_DIR", cache.path());
    let out = run(cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(244), "{stderr}");
    assert!(
        stderr.contains("error: no instance matches `no-such-host`"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
}

#[test]
fn an_ambiguous_name_lists_the_candidates_when_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.toml");
    std::fs::write(
        &fleet,
        r#"
management_account = "111122223333"
regions = ["us-east-1"]

[[accounts]]
id = "111122223333"
alias = "acme-ops"
env = "dev"
roles = ["PosternAccess"]

[[instances]]
id = "i-0aaaaaaaaaaaaaaa1"
name = "web"
account = "111122223333"
region = "us-east-1"
private_ip = "10.0.0.1"

[[instances]]
id = "i-0aaaaaaaaaaaaaaa2"
name = "web"
account = "111122223333"
region = "us-east-1"
private_ip = "10.0.0.2"
"#,
    )
    .unwrap();
    let emulator = EmulatorProcess::start(&["--fleet", fleet.to_str().unwrap()]);
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = emulator.command(&["exec", "web", "--", "true"]);
    cmd.env("POSTERN_CACHE_DIR", cache.path());
    let out = run(cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(244), "{stderr}");
    assert!(
        stderr.starts_with("error: `web` matches 2 instances:\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  web  i-0aaaaaaaaaaaaaaa1  default us-east-1  10.0.0.1  Online\n"),
        "{stderr}"
    );
    assert!(stderr.contains("i-0aaaaaaaaaaaaaaa2"), "{stderr}");
    assert!(
        stderr.contains("hint: name one of them by instance id"),
        "{stderr}"
    );

    // The private IP is unambiguous.
    let mut cmd = emulator.command(&["exec", "10.0.0.2", "--", "echo", "two"]);
    cmd.env("POSTERN_CACHE_DIR", cache.path());
    let out = run(cmd, LIMIT);
    assert_eq!(text(&out.stdout), "two\n", "{}", text(&out.stderr));
}

#[test]
fn account_filter_keeps_only_that_account() {
    let emulator = sample();
    let cache = tempfile::tempdir().unwrap();
    let count = |extra: &[&str]| {
        let mut args = vec!["list", "--json"];
        args.extend_from_slice(extra);
        let mut cmd = emulator.command(&args);
        cmd.env("POSTERN_CACHE_DIR", cache.path());
        let out = run(cmd, LIMIT);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().count()
    };
    let all = count(&[]);
    assert!(all > 0);
    assert_eq!(count(&["--account", "402918375561"]), all);
    assert_eq!(count(&["--account", "999999999999"]), 0);
    assert_eq!(
        count(&["--env", "prod"]),
        0,
        "a single profile has no environment"
    );
}
